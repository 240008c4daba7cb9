#include "model_file.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_set>

#include "checked.h"
#include "errors.h"
#ifndef GGML_BACKEND_DL
#include "ggml-cpu.h"
#endif
#include "log.h"
#include "platform/mapped_file.h"
#include "text/utf8.h"

namespace cm {

bool supported_weight_type(ggml_type type) {
    if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) return true;
    if (type < 0 || type >= GGML_TYPE_COUNT) return false;
    const auto* traits = ggml_get_type_traits(type);
#ifdef GGML_BACKEND_DL
    // Portable builds cannot reach the CPU backend's traits (it is a library loaded later): every live
    // quantized type but the two that only ever hold matmul activations has a CPU dot product.
    return traits && traits->is_quantized && traits->blck_size > 0 && traits->to_float &&
           type != GGML_TYPE_Q8_1 && type != GGML_TYPE_Q8_K;
#else
    const auto* cpu = ggml_get_type_traits_cpu(type);
    // Quantized types the CPU backend can multiply with (ggml drops removed types' kernels).
    return traits && traits->is_quantized && traits->blck_size > 0 && traits->to_float && cpu && cpu->vec_dot;
#endif
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

namespace {

// Printable form of a key or tensor name taken from the file, for error messages.
std::string printable(const uint8_t* p, size_t n) {
    std::string s;
    for (size_t i = 0; i < n && i < 96; ++i) s += (p[i] >= 0x20 && p[i] < 0x7f) ? static_cast<char>(p[i]) : '?';
    if (n > 96) s += "...";
    return s;
}

// GGUF strings are UTF-8; Python receives keys, names and values as str, so invalid bytes must stop here.
bool valid_utf8(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        const utf8::Decoded d = utf8::decode(p + i, n - i);
        if (d.kind != utf8::Decoded::kValid) return false;
        i += d.len;
    }
    return true;
}

size_t gguf_scalar_size(uint32_t type) {
    switch (type) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
        case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
        case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
        case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
        default: return 0;
    }
}

// The description of what is being read, built only when an error needs it (a vocabulary has 10^5 strings).
template <typename W>
std::string describe(const W& what) {
    if constexpr (std::is_invocable_v<W>) {
        return what();
    } else {
        return std::string(what);
    }
}

// Sequential reader over the mapped header; every read is bounded by the file size.
class HeaderReader {
public:
    HeaderReader(const ModelFile& f, const uint8_t* p, size_t n) : f_(f), p_(p), n_(n) {}
    size_t pos() const { return pos_; }
    size_t left() const { return n_ - pos_; }

    template <typename T, typename W>
    T get(const W& what) {
        if (left() < sizeof(T)) f_.fail("truncated GGUF header: the file ends inside " + describe(what));
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    // A length-prefixed string; returns its bytes in place.
    template <typename W>
    const uint8_t* str(const W& what, uint64_t* len) {
        *len = get<uint64_t>([&] { return "the length of " + describe(what); });
        if (*len > left()) {
            f_.fail(describe(what) + " has length " + std::to_string(*len) + " but only " + std::to_string(left()) +
                    " bytes of the file remain");
        }
        const uint8_t* s = p_ + pos_;
        pos_ += static_cast<size_t>(*len);
        return s;
    }
    void skip(uint64_t bytes, const std::string& what) {
        if (bytes > left()) f_.fail("truncated GGUF header: " + what + " runs past the end of the file");
        pos_ += static_cast<size_t>(bytes);
    }

private:
    const ModelFile& f_;
    const uint8_t* p_;
    size_t n_;
    size_t pos_ = 0;
};

// Walks the whole GGUF header (magic, version, key/value pairs, tensor table, data layout) before ggml's
// reader does. Counts are bounded by the bytes left, sizes computed without overflow, names and keys unique
// and NUL-free, tensor types known, offsets aligned, packed in table order and inside the file.
void check_header(const ModelFile& f, const uint8_t* p, size_t size) {
    HeaderReader r(f, p, size);
    r.skip(4, "the magic");
    const uint32_t version = r.get<uint32_t>("the version");
    if (version != 2 && version != 3) {
        std::string why = "unsupported GGUF version " + std::to_string(version) + " (this reader handles 2 and 3)";
        if (version != 0 && (version & 0xFFFF) == 0) why += "; the file looks byte-swapped (big-endian?)";
        f.fail(why);
    }
    const int64_t n_tensors = r.get<int64_t>("the tensor count");
    const int64_t n_kv = r.get<int64_t>("the metadata count");
    // Smallest possible entries: a key/value pair takes 8+1+4+1 bytes, a tensor-table row 8+1+4+4+8.
    if (n_kv < 0 || static_cast<uint64_t>(n_kv) > r.left() / 14) {
        f.fail("the header declares " + std::to_string(n_kv) + " metadata entries but the file (" +
               std::to_string(size) + " bytes) cannot hold that many");
    }
    if (n_tensors < 0 || static_cast<uint64_t>(n_tensors) > r.left() / 25) {
        f.fail("the header declares " + std::to_string(n_tensors) + " tensors but the file (" +
               std::to_string(size) + " bytes) cannot hold that many");
    }

    std::unordered_set<std::string_view> keys;
    uint64_t alignment = GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < n_kv; ++i) {
        const std::string what = "metadata key #" + std::to_string(i);
        uint64_t klen = 0;
        const uint8_t* kp = r.str(what, &klen);
        const std::string key = printable(kp, klen);
        if (klen == 0) f.fail(what + " is empty");
        if (std::memchr(kp, 0, klen)) f.fail("metadata key '" + key + "' contains a NUL byte");
        if (!valid_utf8(kp, klen)) f.fail("metadata key '" + key + "' is not valid UTF-8");
        if (!keys.insert(std::string_view(reinterpret_cast<const char*>(kp), klen)).second) {
            f.fail("duplicate metadata key '" + key + "'");
        }
        uint32_t type = r.get<uint32_t>("the type of key '" + key + "'");
        uint64_t count = 1;
        const bool is_array = type == GGUF_TYPE_ARRAY;
        if (is_array) {
            type = r.get<uint32_t>("the element type of key '" + key + "'");
            count = r.get<uint64_t>("the length of key '" + key + "'");
            if (type == GGUF_TYPE_ARRAY) f.fail("key '" + key + "' is an array of arrays, which GGUF does not support");
        }
        if (type >= GGUF_TYPE_COUNT) {
            f.fail("key '" + key + "' has unknown value type " + std::to_string(type));
        }
        const bool is_alignment = key == GGUF_KEY_GENERAL_ALIGNMENT;
        if (is_alignment && (is_array || type != GGUF_TYPE_UINT32)) f.fail("key general.alignment must be a u32");
        if (type == GGUF_TYPE_STRING) {
            if (count > r.left() / 8) {
                f.fail("key '" + key + "' declares " + std::to_string(count) + " strings, more than the file holds");
            }
            for (uint64_t j = 0; j < count; ++j) {
                uint64_t len = 0;
                auto what_j = [&] {
                    return is_array ? "element " + std::to_string(j) + " of key '" + key + "'" : "the value of key '" + key + "'";
                };
                const uint8_t* sp = r.str(what_j, &len);
                if (!valid_utf8(sp, len)) f.fail(what_j() + " is not valid UTF-8");
            }
        } else {
            const size_t es = gguf_scalar_size(type);
            if (count > r.left() / es) {
                f.fail("key '" + key + "' declares " + std::to_string(count) + " elements, more than the file holds");
            }
            if (is_alignment) {
                uint32_t a = 0;
                std::memcpy(&a, p + r.pos(), 4);
                if (a < 8 || (a & (a - 1)) != 0) {
                    f.fail("general.alignment is " + std::to_string(a) + "; it must be a power of two >= 8");
                }
                alignment = a;
            }
            r.skip(count * es, "the value of key '" + key + "'");
        }
    }

    struct Row {
        std::string name;
        uint64_t offset, nbytes;
    };
    std::vector<Row> rows;
    rows.reserve(static_cast<size_t>(n_tensors));
    std::unordered_set<std::string> names;
    for (int64_t i = 0; i < n_tensors; ++i) {
        const std::string what = "the name of tensor #" + std::to_string(i);
        uint64_t nlen = 0;
        const uint8_t* np = r.str(what, &nlen);
        const std::string name = printable(np, nlen);
        if (nlen == 0) f.fail("tensor #" + std::to_string(i) + " has an empty name");
        if (nlen >= GGML_MAX_NAME) {
            f.fail("tensor #" + std::to_string(i) + " has a name of " + std::to_string(nlen) + " bytes ('" + name +
                   "'); ggml allows at most " + std::to_string(GGML_MAX_NAME - 1));
        }
        if (std::memchr(np, 0, nlen)) f.fail("tensor name '" + name + "' contains a NUL byte");
        if (!valid_utf8(np, nlen)) f.fail("tensor name '" + name + "' is not valid UTF-8");
        if (!names.insert(std::string(reinterpret_cast<const char*>(np), nlen)).second) {
            f.fail("duplicate tensor '" + name + "'");
        }
        const std::string t = "tensor '" + name + "'";
        const uint32_t n_dims = r.get<uint32_t>("the dimension count of " + t);
        if (n_dims > GGML_MAX_DIMS) {
            f.fail(t + " has " + std::to_string(n_dims) + " dimensions; ggml supports at most " +
                   std::to_string(GGML_MAX_DIMS));
        }
        int64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
        int64_t n_elements = 1;
        for (uint32_t j = 0; j < n_dims; ++j) {
            ne[j] = r.get<int64_t>("the shape of " + t);
            if (ne[j] < 0) f.fail(t + " has negative dimension " + std::to_string(ne[j]));
            // An empty dimension makes the element count 0 whatever the others say, which ggml_new_tensor
            // then multiplies without it and aborts on (found by fuzz_ggml_gguf); no model has one.
            if (ne[j] == 0) f.fail(t + " has an empty dimension (ne[" + std::to_string(j) + "] = 0)");
        }
        for (int j = 0; j < GGML_MAX_DIMS; ++j) {
            if (mul_overflow(n_elements, ne[j], &n_elements)) {
                f.fail(t + " has dimensions whose product overflows 64 bits");
            }
        }
        const int32_t type = r.get<int32_t>("the type of " + t);
        if (type < 0 || type >= GGML_TYPE_COUNT || ggml_blck_size(static_cast<ggml_type>(type)) <= 0 ||
            ggml_type_size(static_cast<ggml_type>(type)) == 0) {
            f.fail(t + " has unknown ggml type " + std::to_string(type));
        }
        const ggml_type gt = static_cast<ggml_type>(type);
        const int64_t blck = ggml_blck_size(gt);
        if (ne[0] % blck != 0) {
            f.fail(t + " of type " + ggml_type_name(gt) + " has rows of " + std::to_string(ne[0]) +
                   " elements, not a multiple of its block size " + std::to_string(blck));
        }
        uint64_t nbytes = 0;
        if (mul_overflow(static_cast<uint64_t>(n_elements / blck), static_cast<uint64_t>(ggml_type_size(gt)), &nbytes) ||
            nbytes > size) {
            f.fail("truncated or corrupt: " + t + " needs more bytes than the whole file (" + std::to_string(size) +
                   " bytes) holds");
        }
        const uint64_t offset = r.get<uint64_t>("the data offset of " + t);
        rows.push_back({name, offset, nbytes});
    }

    if (n_tensors == 0) return;
    const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
    if (data_start > size) f.fail("truncated: the tensor data section starts past the end of the file");
    const uint64_t data_size = size - data_start;
    uint64_t expected = 0;
    for (const Row& row : rows) {
        if (row.offset > data_size || row.nbytes > data_size - row.offset) {
            f.fail("truncated: data of tensor '" + row.name + "' lies past the end of the file (offset " +
                   std::to_string(row.offset) + " + " + std::to_string(row.nbytes) + " bytes, data section " +
                   std::to_string(data_size) + " bytes)");
        }
        if (row.offset % alignment != 0) {
            f.fail("tensor '" + row.name + "' has data offset " + std::to_string(row.offset) +
                   ", not aligned to " + std::to_string(alignment) + " bytes");
        }
        if (row.offset != expected) {
            f.fail("tensor '" + row.name + "' has data offset " + std::to_string(row.offset) + ", expected " +
                   std::to_string(expected) + " (tensor data must follow the table order without gaps or overlap)");
        }
        expected += (row.nbytes + alignment - 1) / alignment * alignment;
    }
}

}  // namespace

void ModelFile::fail(const std::string& what) const { throw ModelError(path_ + ": " + what); }

ModelFile::ModelFile(const std::string& path) : path_(path) {
    // A throwing constructor runs no destructor: this guard releases whatever was acquired before the throw.
    struct Release {
        ModelFile& f;
        bool keep = false;
        ~Release() {
            if (keep) return;
            if (f.buffer_) ggml_backend_buffer_free(f.buffer_);
            if (f.meta_) ggml_free(f.meta_);
            if (f.gguf_) gguf_free(f.gguf_);
            f.buffer_ = nullptr;
            f.meta_ = nullptr;
            f.gguf_ = nullptr;
            f.map_.reset();
        }
    } release{*this};
    {
        namespace fs = std::filesystem;
        std::error_code ec;
        const fs::file_status st = fs::status(fs::u8path(path), ec);
        if (ec || !fs::exists(st)) fail("no such file");
        if (!fs::is_regular_file(st)) fail("not a regular file");
    }
    std::string map_error;
    map_ = platform::MappedFile::open(path, map_error);
    if (!map_) fail(map_error);
    file_size_ = map_->size();
    if (file_size_ < 4 || std::memcmp(map_->data(), "GGUF", 4) != 0) fail("not a GGUF file (bad magic)");
    // Our own walk first: it bounds every count, length and offset by the file size and names the key or
    // tensor at fault, so ggml's reader only ever sees a well-formed header.
    check_header(*this, map_->data(), file_size_);
    {
        LogCapture log;
        gguf_init_params params{/*no_alloc=*/true, /*ctx=*/&meta_};
        gguf_ = gguf_init_from_buffer(map_->data(), file_size_, params);
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
    if (n == 0) fail("contains no tensors");
    // ggml's buffer API takes a writable pointer; weights buffers are only ever read.
    void* base_ptr = const_cast<uint8_t*>(map_->data());
    buffer_ = ggml_backend_cpu_buffer_from_ptr(base_ptr, file_size_);
    if (!buffer_) fail("cannot wrap the mapping in a ggml buffer");
    ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    char* base = static_cast<char*>(base_ptr) + data_off;
    for (ggml_tensor* t = ggml_get_first_tensor(meta_); t; t = ggml_get_next_tensor(meta_, t)) {
        const int64_t id = gguf_find_tensor(gguf_, ggml_get_name(t));
        if (id < 0) fail(std::string("tensor '") + ggml_get_name(t) + "' is not in the tensor table");
        ggml_backend_tensor_alloc(buffer_, t, base + gguf_get_tensor_offset(gguf_, id));
    }
    release.keep = true;
}

ModelFile::~ModelFile() {
    if (dev_buffer_) ggml_backend_buffer_free(dev_buffer_);
    if (dev_meta_) ggml_free(dev_meta_);
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (meta_) ggml_free(meta_);
    if (gguf_) gguf_free(gguf_);
}

void ModelFile::release_pages(const void* p, size_t n) const { map_->release(p, n); }

void ModelFile::release_all_pages() const { map_->release(map_->data(), map_->size()); }

void ModelFile::advise_sequential() const { map_->advise_sequential(); }

gguf_context* ModelFile::copy_header() const {
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* g = gguf_init_from_buffer(map_->data(), file_size_, params);
    if (!g) fail("internal: the validated header could not be parsed a second time");
    return g;
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

bool ModelFile::flag(const std::string& key, bool fallback) const {
    const int64_t k = gguf_find_key(gguf_, key.c_str());
    if (k < 0) return fallback;
    if (gguf_get_kv_type(gguf_, k) != GGUF_TYPE_BOOL) fail("key " + key + " is not a bool");
    return gguf_get_val_bool(gguf_, k);
}

std::vector<float> ModelFile::floats(const ggml_tensor* t) const {
    const int64_t n = ggml_nelements(t);
    std::vector<uint8_t> raw(ggml_nbytes(t));
    ggml_backend_tensor_get(t, raw.data(), 0, raw.size());
    std::vector<float> out(static_cast<size_t>(n));
    const auto* traits = ggml_get_type_traits(t->type);
    if (t->type == GGML_TYPE_F32) {
        std::memcpy(out.data(), raw.data(), raw.size());
    } else if (traits && traits->to_float) {
        traits->to_float(raw.data(), out.data(), n);
    } else {
        fail(std::string("tensor '") + ggml_get_name(t) + "': cannot read type " + ggml_type_name(t->type));
    }
    return out;
}

int ModelFile::u32_in(const std::string& key, uint32_t fallback, uint32_t lo, uint32_t hi) const {
    const uint32_t v = u32(key, fallback);
    if (v < lo || v > hi) {
        fail("key " + key + " is " + std::to_string(v) + (has_key(key) ? "" : " (default)") + ", outside [" +
             std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return static_cast<int>(v);
}

float ModelFile::f32_in(const std::string& key, float fallback, float lo, float hi) const {
    const float v = f32(key, fallback);
    if (!(std::isfinite(v) && v >= lo && v <= hi)) {
        auto g = [](float x) {
            char b[32];
            std::snprintf(b, sizeof b, "%g", static_cast<double>(x));
            return std::string(b);
        };
        fail("key " + key + " is " + g(v) + ", outside [" + g(lo) + ", " + g(hi) + "]");
    }
    return v;
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

ggml_tensor* ModelFile::find(const std::string& name) const {
    if (!on_device_.empty()) {
        auto it = on_device_.find(name);
        if (it != on_device_.end()) return it->second;
    }
    return ggml_get_tensor(meta_, name.c_str());
}

size_t ModelFile::offload(ggml_backend_buffer_type_t buft, const std::function<bool(const std::string&)>& on_device) {
    if (dev_buffer_) fail("internal: weights were already offloaded");
    std::vector<ggml_tensor*> picked;
    for (ggml_tensor* t = ggml_get_first_tensor(meta_); t; t = ggml_get_next_tensor(meta_, t)) {
        if (on_device(ggml_get_name(t))) picked.push_back(t);
    }
    if (picked.empty()) return 0;
    ggml_init_params p{ggml_tensor_overhead() * picked.size(), nullptr, true};
    dev_meta_ = ggml_init(p);
    if (!dev_meta_) fail("ggml_init failed");
    std::vector<std::pair<ggml_tensor*, ggml_tensor*>> copies;
    size_t bytes = 0;
    for (ggml_tensor* t : picked) {
        ggml_tensor* d = ggml_dup_tensor(dev_meta_, t);
        ggml_set_name(d, ggml_get_name(t));
        copies.emplace_back(t, d);
        bytes += ggml_backend_buft_get_alloc_size(buft, d);
    }
    dev_buffer_ = ggml_backend_alloc_ctx_tensors_from_buft(dev_meta_, buft);
    if (!dev_buffer_) {
        ggml_free(dev_meta_);
        dev_meta_ = nullptr;
        fail("cannot allocate " + std::to_string(bytes >> 20) + " MiB of " + ggml_backend_buft_name(buft) +
             " memory for the offloaded weights; offload fewer layers (n_gpu_layers) or use the CPU");
    }
    ggml_backend_buffer_set_usage(dev_buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    for (auto& [host, dev] : copies) {
        ggml_backend_tensor_set(dev, host->data, 0, ggml_nbytes(host));
        on_device_[ggml_get_name(dev)] = dev;
    }
    offloaded_bytes_ = ggml_backend_buffer_get_size(dev_buffer_);
    return offloaded_bytes_;
}

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
        // ggml's CPU add/mul take an f32 activation with an f32 operand only: an f16 bias would abort there.
        case TensorKind::Vector: type_ok = type == GGML_TYPE_F32; break;
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
