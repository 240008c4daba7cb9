#include "backend.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <mutex>

#include "errors.h"
#include "log.h"

namespace cm {
namespace {

std::string lower(std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

const char* type_name(enum ggml_backend_dev_type t) {
    switch (t) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
        case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
        default: return "other";
    }
}

bool is_gpu(ggml_backend_dev_t d) {
    const enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
    return t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU;
}

// The build option that brings a backend in, for error messages.
std::string build_hint(const std::string& key) {
    if (key == "cuda") return " (a CUDA build: pip install with CMAKE_ARGS=\"-DCRISPMOSS_CUDA=on\", or a CUDA wheel)";
    if (key == "metal") return " (a Metal build: pip install with CMAKE_ARGS=\"-DCRISPMOSS_METAL=on\"; macOS only)";
    return "";
}

std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? "none" : s;
}

std::once_flag g_load_once;
bool g_loaded = false;
std::string g_load_dir;
std::string g_load_log;  // ggml's complaints while loading (e.g. a GPU backend whose runtime is missing)

// A backend library of `key` that sits in the load directory although its backend did not register.
std::string unloaded_library(const std::string& key) {
    if (!dynamic_backends() || g_load_dir.empty()) return "";
    const std::string want = "ggml-" + key;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(g_load_dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.find(want) != std::string::npos) return name;
    }
    return "";
}

}  // namespace

bool dynamic_backends() {
#ifdef GGML_BACKEND_DL
    return true;
#else
    return false;
#endif
}

void load_backends(const std::string& dir) {
    if (!dynamic_backends()) return;
    std::call_once(g_load_once, [&] {
        install_ggml_log();
        LogCapture log;
        ggml_backend_load_all_from_path(dir.c_str());
        g_load_dir = dir;
        g_load_log = log.text();
        g_loaded = true;
    });
}

std::string backend_key(const std::string& reg_name) {
    const std::string k = lower(reg_name);
    return k == "mtl" ? "metal" : k;
}

std::vector<std::string> compiled_backends() {
    install_ggml_log();
    std::vector<std::string> out;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) out.push_back(backend_key(ggml_backend_reg_name(ggml_backend_reg_get(i))));
    return out;
}

std::vector<DeviceInfo> devices() {
    install_ggml_log();
    std::vector<DeviceInfo> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        DeviceInfo info;
        info.backend = backend_key(ggml_backend_reg_name(ggml_backend_dev_backend_reg(d)));
        info.name = ggml_backend_dev_name(d);
        const char* desc = ggml_backend_dev_description(d);
        info.description = desc ? desc : "";
        info.type = type_name(ggml_backend_dev_type(d));
        ggml_backend_dev_memory(d, &info.memory_free, &info.memory_total);
        out.push_back(std::move(info));
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> cpu_features() {
    std::vector<std::pair<std::string, std::string>> out;
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) return out;
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    auto get = reinterpret_cast<ggml_backend_get_features_t>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
    if (!get) return out;
    for (const ggml_backend_feature* f = get(reg); f && f->name; ++f) out.emplace_back(f->name, f->value ? f->value : "");
    return out;
}

BackendChoice choose_backend(const std::string& backend_in, int device) {
    install_ggml_log();
    const std::string backend = lower(backend_in);
    if (device < 0) throw InputError("device must be >= 0, got " + std::to_string(device));
    BackendChoice c;
    if (backend == "cpu") return c;
    const std::vector<std::string> compiled = compiled_backends();
    if (backend == "auto") {
        // The device-th accelerator of the first backend that has one (ggml registers GPU backends first).
        for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
            ggml_backend_reg_t reg = ggml_backend_reg_get(i);
            std::vector<ggml_backend_dev_t> gpus;
            for (size_t j = 0; j < ggml_backend_reg_dev_count(reg); ++j) {
                if (is_gpu(ggml_backend_reg_dev_get(reg, j))) gpus.push_back(ggml_backend_reg_dev_get(reg, j));
            }
            if (gpus.empty()) continue;
            if (static_cast<size_t>(device) >= gpus.size()) {
                throw ModelError("device " + std::to_string(device) + " does not exist: the " +
                                 backend_key(ggml_backend_reg_name(reg)) + " backend found " +
                                 std::to_string(gpus.size()) + " device(s)");
            }
            c.backend = backend_key(ggml_backend_reg_name(reg));
            c.device = gpus[device];
            c.device_index = device;
            return c;
        }
        std::vector<std::string> gpu_backends;
        for (const auto& k : compiled)
            if (k != "cpu") gpu_backends.push_back(k);
        if (!gpu_backends.empty()) {
            c.notice = "crispmoss: no GPU found by the " + joined(gpu_backends) + " backend; running on the CPU";
        }
        for (const char* k : {"cuda", "metal"}) {
            if (c.notice.empty() && !unloaded_library(k).empty()) {
                c.notice = std::string("crispmoss: the ") + k + " backend is installed but could not be loaded " +
                           "(GPU driver or runtime missing?); running on the CPU";
            }
        }
        return c;
    }
    if (std::find(compiled.begin(), compiled.end(), backend) == compiled.end()) {
        if (backend != "cuda" && backend != "metal") {
            throw InputError("unknown backend '" + backend_in + "' (choose auto, cpu, cuda or metal)");
        }
        const std::string lib = unloaded_library(backend);
        if (!lib.empty()) {
            throw ModelError("the " + backend + " backend (" + lib + ") is installed but could not be loaded" +
                             (backend == "cuda" ? ": it needs the NVIDIA driver and the CUDA runtime and cuBLAS libraries" : "") +
                             (g_load_log.empty() ? std::string() : " (" + g_load_log + ")"));
        }
        throw ModelError("backend '" + backend + "' is not available in this build of crispmoss (it has: " +
                         joined(compiled) + "); install one built with it" + build_hint(backend));
    }
    std::vector<ggml_backend_dev_t> devs;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        ggml_backend_reg_t reg = ggml_backend_reg_get(i);
        if (backend_key(ggml_backend_reg_name(reg)) != backend) continue;
        for (size_t j = 0; j < ggml_backend_reg_dev_count(reg); ++j) devs.push_back(ggml_backend_reg_dev_get(reg, j));
    }
    if (devs.empty()) throw ModelError("the " + backend + " backend found no device (driver missing or no GPU visible?)");
    if (static_cast<size_t>(device) >= devs.size()) {
        throw ModelError("device " + std::to_string(device) + " does not exist: the " + backend + " backend found " +
                         std::to_string(devs.size()) + " device(s)");
    }
    c.backend = backend;
    c.device = devs[device];
    c.device_index = device;
    return c;
}

ggml_backend_t init_cpu_backend(int n_threads) {
    install_ggml_log();
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!dev) {
        throw ModelError(dynamic_backends() && !g_loaded
                             ? "no ggml CPU backend loaded (crispmoss._core.load_backends was not called)"
                             : "no ggml CPU backend found next to the crispmoss extension; reinstall crispmoss");
    }
    ggml_backend_t b = ggml_backend_dev_init(dev, nullptr);
    if (!b) throw Error("cannot initialise ggml's CPU backend");
    auto set_threads = reinterpret_cast<ggml_backend_set_n_threads_t>(
        ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev), "ggml_backend_set_n_threads"));
    if (set_threads) set_threads(b, n_threads);
    return b;
}

}  // namespace cm
