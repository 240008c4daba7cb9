#include "log.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "ggml.h"

namespace cm {
namespace {

thread_local std::string* g_capture = nullptr;

void on_log(ggml_log_level level, const char* text, void*) {
    if (g_capture && (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN)) g_capture->append(text);
    static const bool verbose = std::getenv("CRISPMOSS_LOG") != nullptr;
    if (verbose) std::fputs(text, stderr);
}

}  // namespace

void install_ggml_log() {
    static std::once_flag once;
    std::call_once(once, [] { ggml_log_set(on_log, nullptr); });
}

LogCapture::LogCapture() {
    install_ggml_log();
    g_capture = new std::string();
}

LogCapture::~LogCapture() {
    delete g_capture;
    g_capture = nullptr;
}

std::string LogCapture::text() const {
    std::string s = g_capture ? *g_capture : std::string();
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace cm
