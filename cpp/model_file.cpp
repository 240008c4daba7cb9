#include "model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "errors.h"
#include "ggml-cpu.h"
#include "log.h"

namespace cm {

bool supported_weight_type(ggml_type type) {
    if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) return true;
    if (type < 0 || type >= GGML_TYPE_COUNT) return false;
    const auto* cpu = ggml_get_type_traits_cpu(type);
    const auto* traits = ggml_get_type_traits(type);
    // Quantized types the CPU backend can multiply with (ggml drops removed types' kernels).
    return traits && traits->is_quantized && traits->blck_size > 0 && traits->to_float && cpu && cpu->vec_dot;
}

static std::string shape_str(const ggml_tensor* t) {
    std::string s = "[";
    for (int i = 0; i < ggml_n_dims(t); ++i) s += (i ? ", " : "") + std::to_string(t->ne[i]);
    return s + "]";
}

static std::string shape_str(const std::vector<int64_t>& ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + (ne[i] < 0 ? std::string("*") : std::to_string(ne[i]));
    return s + "]";
}

void ModelFile::fail(const std::string& what) const { throw ModelError(path_ + ": " + what); }

ModelFile::ModelFile(const std::string& path) : path_(path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) fail("no such file");
    if (!S_ISREG(st.st_mode)) fail("not a regular file");
    file_size_ = static_cast<size_t>(st.st_size);
    {
        char magic[4] = {0, 0, 0, 0};
        std::ifstream f(path, std::ios::binary);
        if (!f) fail("cannot open for reading");
        f.read(magic, 4);
        if (f.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0) fail("not a GGUF file (bad magic)");
    }
    {
        LogCapture log;
        gguf_init_params params{/*no_alloc=*/true, /*ctx=*/&meta_};
        gguf_ = gguf_init_from_file(path.c_str(), params);
        if (!gguf_) {
            std::string why = log.text();
            fail("invalid or truncated GGUF" + (why.empty() ? std::string() : " (" + why + ")"));
        }
    }
    // Every tensor's bytes must lie inside the file: a truncated download must fail here, not fault later.
    const size_t data_off = gguf_get_data_offset(gguf_);
    const int64_t n = gguf_get_n_tensors(gguf_);
    for (int64_t i = 0; i < n; ++i) {
        const size_t off = gguf_get_tensor_offset(gguf_, i);
        const size_t size = gguf_get_tensor_size(gguf_, i);
        if (data_off > file_size_ || off > file_size_ - data_off || size > file_size_ - data_off - off) {
            fail(std::string("truncated: data of tensor '") + gguf_get_tensor_name(gguf_, i) + "' lies past the end of the file");
        }
    }
    const int64_t k = gguf_find_key(gguf_, "general.architecture");
    if (k < 0) fail("missing key general.architecture");
    if (gguf_get_kv_type(gguf_, k) != GGUF_TYPE_STRING) fail("general.architecture is not a string");
    arch_ = gguf_get_val_str(gguf_, k);
    map_file();
}

ModelFile::~ModelFile() {
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (map_) ::munmap(map_, map_size_);
    if (meta_) ggml_free(meta_);
    if (gguf_) gguf_free(gguf_);
}

void ModelFile::map_file() {
    if (gguf_get_n_tensors(gguf_) == 0) fail("contains no tensors");
    int fd = ::open(path_.c_str(), O_RDONLY);
    if (fd < 0) fail("cannot open for reading");
    map_size_ = file_size_;
    map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        fail("mmap failed");
    }
    buffer_ = ggml_backend_cpu_buffer_from_ptr(map_, map_size_);
    if (!buffer_) fail("cannot wrap the mapping in a ggml buffer");
    ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    char* base = static_cast<char*>(map_) + gguf_get_data_offset(gguf_);
    for (ggml_tensor* t = ggml_get_first_tensor(meta_); t; t = ggml_get_next_tensor(meta_, t)) {
        const int64_t id = gguf_find_tensor(gguf_, ggml_get_name(t));
        ggml_backend_tensor_alloc(buffer_, t, base + gguf_get_tensor_offset(gguf_, id));
    }
}

bool ModelFile::has_key(const std::string& key) const { return gguf_find_key(gguf_, key.c_str()) >= 0; }

uint32_t ModelFile::u32(const std::string& key, uint32_t fallback) const {
    const int64_t k = gguf_find_key(gguf_, key.c_str());
    if (k < 0) return fallback;
    switch (gguf_get_kv_type(gguf_, k)) {
        case GGUF_TYPE_UINT32: return gguf_get_val_u32(gguf_, k);
        case GGUF_TYPE_INT32: {
            const int32_t v = gguf_get_val_i32(gguf_, k);
            if (v < 0) fail("key " + key + " is negative");
            return static_cast<uint32_t>(v);
        }
        case GGUF_TYPE_UINT16: return gguf_get_val_u16(gguf_, k);
        case GGUF_TYPE_UINT8: return gguf_get_val_u8(gguf_, k);
        default: fail("key " + key + " is not an unsigned integer");
    }
}

uint32_t ModelFile::require_u32(const std::string& key) const {
    if (!has_key(key)) fail("missing key " + key);
    return u32(key, 0);
}

float ModelFile::f32(const std::string& key, float fallback) const {
    const int64_t k = gguf_find_key(gguf_, key.c_str());
    if (k < 0) return fallback;
    switch (gguf_get_kv_type(gguf_, k)) {
        case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(gguf_, k);
        case GGUF_TYPE_FLOAT64: return static_cast<float>(gguf_get_val_f64(gguf_, k));
        default: fail("key " + key + " is not a float");
    }
}

std::string ModelFile::str(const std::string& key, const std::string& fallback) const {
    const int64_t k = gguf_find_key(gguf_, key.c_str());
    if (k < 0) return fallback;
    if (gguf_get_kv_type(gguf_, k) != GGUF_TYPE_STRING) fail("key " + key + " is not a string");
    return gguf_get_val_str(gguf_, k);
}

std::vector<std::string> ModelFile::str_array(const std::string& key) const {
    const int64_t k = gguf_find_key(gguf_, key.c_str());
    if (k < 0) fail("missing key " + key);
    if (gguf_get_kv_type(gguf_, k) != GGUF_TYPE_ARRAY || gguf_get_arr_type(gguf_, k) != GGUF_TYPE_STRING) {
        fail("key " + key + " is not an array of strings");
    }
    const size_t n = gguf_get_arr_n(gguf_, k);
    std::vector<std::string> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) out.emplace_back(gguf_get_arr_str(gguf_, k, i));
    return out;
}

ggml_tensor* ModelFile::find(const std::string& name) const { return ggml_get_tensor(meta_, name.c_str()); }

void ModelFile::check_tensor(const ggml_tensor* t, TensorKind kind, const std::vector<int64_t>& ne) const {
    const std::string name = ggml_get_name(t);
    bool shape_ok = ggml_n_dims(t) <= static_cast<int>(ne.size());
    for (size_t i = 0; shape_ok && i < GGML_MAX_DIMS; ++i) {
        const int64_t want = i < ne.size() ? ne[i] : 1;
        if (want >= 0 && t->ne[i] != want) shape_ok = false;
    }
    if (!shape_ok) fail("tensor '" + name + "' has shape " + shape_str(t) + ", expected " + shape_str(ne));
    const ggml_type type = t->type;
    bool type_ok = false;
    switch (kind) {
        case TensorKind::Vector: type_ok = type == GGML_TYPE_F32 || type == GGML_TYPE_F16; break;
        case TensorKind::Conv: type_ok = type == GGML_TYPE_F32 || type == GGML_TYPE_F16; break;
        case TensorKind::Matrix: type_ok = supported_weight_type(type); break;
    }
    if (!type_ok) fail("tensor '" + name + "' has unsupported type " + ggml_type_name(type));
}

ggml_tensor* ModelFile::optional(const std::string& name, TensorKind kind, std::vector<int64_t> ne) const {
    ggml_tensor* t = find(name);
    if (t) check_tensor(t, kind, ne);
    return t;
}

ggml_tensor* ModelFile::require(const std::string& name, TensorKind kind, std::vector<int64_t> ne) const {
    ggml_tensor* t = find(name);
    if (!t) fail("missing tensor '" + name + "'");
    check_tensor(t, kind, ne);
    return t;
}

int64_t ModelFile::n_tensors() const { return gguf_get_n_tensors(gguf_); }

std::vector<ggml_tensor*> ModelFile::tensors() const {
    std::vector<ggml_tensor*> out;
    for (ggml_tensor* t = ggml_get_first_tensor(meta_); t; t = ggml_get_next_tensor(meta_, t)) out.push_back(t);
    return out;
}

}  // namespace cm
