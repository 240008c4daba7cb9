// Which ggml backends this build carries, which devices they find, and the choice of one for a model.
//
// Everything goes through ggml's backend registry (never a backend's own header), so the same code serves
// the static local build and the portable wheel build, where the CPU variants and GPU backends are
// shared libraries loaded at import (GGML_BACKEND_DL).
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "ggml-backend.h"

namespace cm {

// True when backends are shared libraries that load_backends() must load (portable builds).
bool dynamic_backends();
// Loads the backend libraries found in `dir` (once; later calls do nothing). Static builds ignore it.
void load_backends(const std::string& dir);

struct DeviceInfo {
    std::string backend;      // "cpu", "cuda", "metal", ... (see backend_key)
    std::string name;         // ggml's device name: "CPU", "CUDA0", "MTL0"
    std::string description;  // e.g. the GPU's marketing name
    std::string type;         // "cpu", "gpu", "igpu", "accel"
    size_t memory_free = 0, memory_total = 0;
};

// Backends registered in this process (compiled in, or loaded), as user-facing keys.
std::vector<std::string> compiled_backends();
std::vector<DeviceInfo> devices();
// Instruction-set features the CPU backend was built for and found (name, value).
std::vector<std::pair<std::string, std::string>> cpu_features();
// The user-facing key of a ggml registry name: "CPU" -> "cpu", "CUDA" -> "cuda", "MTL" -> "metal".
std::string backend_key(const std::string& reg_name);

struct BackendChoice {
    std::string backend = "cpu";          // what runs the model's offloaded part ("cpu": nothing offloaded)
    ggml_backend_dev_t device = nullptr;  // the accelerator, or nullptr for CPU only
    int device_index = 0;                 // among the backend's devices
    std::string notice;                   // set when "auto" fell back to the CPU despite a GPU backend
};

// Resolves backend = "auto" | "cpu" | "cuda" | "metal" (or another registered backend's key) and the device
// index. "auto" takes the first GPU device of any registered backend, else the CPU. An explicit backend
// that is not compiled in, or has no such device, throws ModelError; an unknown name throws InputError.
BackendChoice choose_backend(const std::string& backend, int device);

// ggml's CPU backend with `n_threads` threads; throws ModelError if no CPU backend is available.
ggml_backend_t init_cpu_backend(int n_threads);

}  // namespace cm
