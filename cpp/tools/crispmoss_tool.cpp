// crispmoss-tool: a small command line over the C++ core without Python (CRISPMOSS_TOOLS=ON).
//
// It exists so the core can be built, linked and run where the Python extension cannot be built: the
// Windows cross-compile check (scripts/check_windows_build.sh) links every core object into it.
//
//   crispmoss-tool backends                          loads ggml's backends from the executable's folder, lists devices
//   crispmoss-tool inspect  MODEL.gguf               architecture, tensor count, file size
//   crispmoss-tool quantize IN.gguf OUT.gguf TYPE [N_THREADS]
//
// Errors print one line to stderr and exit with status 1; usage errors exit with status 2.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

#include "backend.h"
#include "errors.h"
#include "model_file.h"
#include "quantize.h"

namespace {

int usage() {
    std::fprintf(stderr,
                 "usage: crispmoss-tool backends\n"
                 "       crispmoss-tool inspect MODEL.gguf\n"
                 "       crispmoss-tool quantize IN.gguf OUT.gguf TYPE [N_THREADS]\n");
    return 2;
}

int backends(const char* argv0) {
    cm::load_backends(std::filesystem::absolute(std::filesystem::u8path(argv0)).parent_path().u8string());
    for (const auto& b : cm::compiled_backends()) std::printf("backend %s\n", b.c_str());
    for (const auto& d : cm::devices()) {
        std::printf("device %s (%s, %s): %s\n", d.name.c_str(), d.backend.c_str(), d.type.c_str(), d.description.c_str());
    }
    return 0;
}

int inspect(const std::string& path) {
    const cm::ModelFile f(path);
    std::printf("%s: architecture %s, %lld tensors, %llu bytes\n", path.c_str(), f.arch().c_str(),
                static_cast<long long>(f.n_tensors()), static_cast<unsigned long long>(f.file_size()));
    return 0;
}

int quantize(const std::string& in, const std::string& out, const std::string& type, int n_threads) {
    const cm::QuantizeReport r = cm::quantize_file(in, out, cm::parse_quant_type(type), n_threads);
    int changed = 0;
    for (const auto& t : r.tensors) changed += t.dst_type != t.src_type;
    std::printf("%s -> %s: %d of %zu tensors converted to %s, %llu -> %llu bytes, %.2f s\n", in.c_str(),
                out.c_str(), changed, r.tensors.size(), ggml_type_name(r.target),
                static_cast<unsigned long long>(r.in_bytes), static_cast<unsigned long long>(r.out_bytes),
                r.seconds);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string cmd = argc > 1 ? argv[1] : "";
    try {
        if (cmd == "backends" && argc == 2) return backends(argv[0]);
        if (cmd == "inspect" && argc == 3) return inspect(argv[2]);
        if (cmd == "quantize" && (argc == 5 || argc == 6)) {
            char* end = nullptr;
            const long n = argc == 6 ? std::strtol(argv[5], &end, 10) : 0;
            if (argc == 6 && (*end != '\0' || n < 0 || n > 1024)) return usage();
            return quantize(argv[2], argv[3], argv[4], static_cast<int>(n));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crispmoss-tool: %s\n", e.what());
        return 1;
    }
    return usage();
}
