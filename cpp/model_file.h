// A GGUF model file: validated header, typed hyper-parameter access, tensors mapped in place (through
// platform/mapped_file.h). Every reader of GGUF input goes through it: the model loader, inspect() and quantize.
//
// Opening never trusts the file: our own walk bounds every count, length and offset of the header by the file
// size before ggml's gguf reader parses it, every tensor's data range is checked against the file size, and each model checks the tensors it needs
// (name, shape, type) through `require()`. Any problem throws cm::ModelError naming the file and the
// tensor or key at fault.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"

namespace cm {

namespace platform {
class MappedFile;
}

// What kind of data a tensor slot may hold.
enum class TensorKind {
    Vector,  // 1-D: biases and norm weights, F32
    Matrix,  // 2-D weight of a matmul or embedding: F32, F16, BF16 or any ggml quant type we can compute with
    Conv,    // 4-D convolution kernel: F32 or F16
};

class ModelFile {
public:
    // Opens, parses and maps `path`; throws ModelError on any problem.
    explicit ModelFile(const std::string& path);
    ~ModelFile();
    ModelFile(const ModelFile&) = delete;
    ModelFile& operator=(const ModelFile&) = delete;

    const std::string& path() const { return path_; }
    const std::string& arch() const { return arch_; }
    size_t file_size() const { return file_size_; }

    // Hyper-parameters: `key` is looked up as given; a missing key yields `fallback`, a key of the wrong
    // type throws. `require_u32` throws when the key is missing.
    bool has_key(const std::string& key) const;
    uint32_t u32(const std::string& key, uint32_t fallback) const;
    uint32_t require_u32(const std::string& key) const;
    float f32(const std::string& key, float fallback) const;
    bool flag(const std::string& key, bool fallback) const;
    std::string str(const std::string& key, const std::string& fallback) const;
    std::vector<std::string> str_array(const std::string& key) const;
    // As u32() / f32(), and the value (given or fallback) must lie in [lo, hi] (floats: and be finite);
    // the error names the key, its value and the range. hi must fit an int.
    int u32_in(const std::string& key, uint32_t fallback, uint32_t lo, uint32_t hi) const;
    float f32_in(const std::string& key, float fallback, float lo, float hi) const;

    // The tensor `name`, checked against kind and expected shape (ne order; -1 = any). Throws if missing.
    ggml_tensor* require(const std::string& name, TensorKind kind, std::vector<int64_t> ne) const;
    // As require(), but returns nullptr when the tensor is absent.
    ggml_tensor* optional(const std::string& name, TensorKind kind, std::vector<int64_t> ne) const;
    ggml_tensor* find(const std::string& name) const;
    // A tensor's values as F32 (dequantized where needed), wherever its buffer lives.
    std::vector<float> floats(const ggml_tensor* t) const;

    int64_t n_tensors() const;
    std::vector<ggml_tensor*> tensors() const;
    gguf_context* gguf() const { return gguf_; }

    // Buffer that wraps the mapping (weights live here; nothing is copied).
    ggml_backend_buffer_t weights_buffer() const { return buffer_; }

    // Copies the tensors `on_device` selects from the mapping into one buffer of `buft` (an accelerator's
    // memory), once; from then on find(), require() and optional() hand out the copies. Call before a model
    // takes its tensors. Returns the bytes copied; throws ModelError when the device memory runs out.
    size_t offload(ggml_backend_buffer_type_t buft, const std::function<bool(const std::string&)>& on_device);
    size_t offloaded_bytes() const { return offloaded_bytes_; }

    // Drops the mapping's resident pages that lie wholly inside [p, p + n) from this process (they stay in the
    // page cache and fault back in when read). For a table read once to make a copy and afterwards only a few
    // rows at a time. No-op for memory outside the mapping or where the OS has no such call.
    void release_pages(const void* p, size_t n) const;
    // As release_pages() for the whole mapping (quantize: after the header was parsed and copied).
    void release_all_pages() const;
    // Hint that the mapping will be read once, front to back (quantize streams the file this way).
    void advise_sequential() const;
    // A fresh, modifiable copy of the (validated) header without tensor data: the caller owns it
    // (gguf_free). Quantize writes its output header from it.
    gguf_context* copy_header() const;

    [[noreturn]] void fail(const std::string& what) const;

private:
    void check_tensor(const ggml_tensor* t, TensorKind kind, const std::vector<int64_t>& ne) const;

    std::string path_;
    std::string arch_;
    size_t file_size_ = 0;
    gguf_context* gguf_ = nullptr;
    ggml_context* meta_ = nullptr;
    std::unique_ptr<platform::MappedFile> map_;
    ggml_backend_buffer_t buffer_ = nullptr;
    ggml_context* dev_meta_ = nullptr;
    ggml_backend_buffer_t dev_buffer_ = nullptr;
    std::unordered_map<std::string, ggml_tensor*> on_device_;
    size_t offloaded_bytes_ = 0;
};

// True when ggml's CPU backend can multiply with weights of this type.
bool supported_weight_type(ggml_type type);

}  // namespace cm
