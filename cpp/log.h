// ggml's log goes through here: quiet by default (CRISPMOSS_LOG=1 prints it), and the errors it reports
// during a call are captured so they can be put into the exception that call throws.
#pragma once
#include <string>

namespace cm {

void install_ggml_log();

// Collects ggml error messages logged by this thread while alive.
class LogCapture {
public:
    LogCapture();
    ~LogCapture();
    std::string text() const;
};

}  // namespace cm
