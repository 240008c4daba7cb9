// GGUF re-quantization for crispmoss models (see quantize.h).
#include "quantize.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <thread>

#include "errors.h"
#include "gguf.h"
#include "model_file.h"
#include "models/audio_lm.h"

namespace cm {
namespace {

namespace fs = std::filesystem;

// A tensor is a candidate when it is 2-D, its name ends in "weight" and contains no "norm", and its model's
// keep-rules (ModelSpec::keep_prefixes / keep_names, declared in the model's file) do not match it. Everything
// else is copied byte for byte, in its source type (CrispASR's crispasr-quantize does the same: excluded tensors
// keep their converter type).
using ArchRule = ModelSpec;

struct TargetName {
    const char* name;
    ggml_type type;
    uint32_t ftype;  // ggml_ftype value
};

const TargetName kTargets[] = {
    {"f32", GGML_TYPE_F32, GGML_FTYPE_ALL_F32},        {"f16", GGML_TYPE_F16, GGML_FTYPE_MOSTLY_F16},
    {"q8_0", GGML_TYPE_Q8_0, GGML_FTYPE_MOSTLY_Q8_0}, {"q4_k", GGML_TYPE_Q4_K, GGML_FTYPE_MOSTLY_Q4_K},
    {"q5_k", GGML_TYPE_Q5_K, GGML_FTYPE_MOSTLY_Q5_K}, {"q6_k", GGML_TYPE_Q6_K, GGML_FTYPE_MOSTLY_Q6_K},
};

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
    return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

const ArchRule* find_rule(const std::string& arch) { return find_model_spec(arch); }

bool is_candidate(const ArchRule& rule, const std::string& name, int n_dims) {
    if (n_dims != 2 || !ends_with(name, "weight") || name.find("norm") != std::string::npos) return false;
    for (const auto& p : rule.keep_prefixes)
        if (starts_with(name, p)) return false;
    for (const auto& n : rule.keep_names)
        if (name == n) return false;
    return true;
}

// Sources we can turn into F32 rows: the float types and every quant type ggml can dequantize.
bool convertible_source(ggml_type t) {
    if (t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) return true;
    const ggml_type_traits* tr = ggml_get_type_traits(t);
    return tr && tr->is_quantized && tr->to_float && tr->blck_size > 0;
}

std::string type_name(ggml_type t) {
    const char* n = ggml_type_name(t);
    return n ? n : ("type " + std::to_string(int(t)));
}

// ---- input ------------------------------------------------------------------------------------------
// Read through ModelFile, so quantize gets the loader's hostile-input checks (header walk, tensor table,
// data ranges) and its one file mapping.

// Friendlier messages than ModelFile's for the two mistakes a user makes at the command line.
void check_input_path(const std::string& path) {
    std::error_code ec;
    const auto st = fs::status(fs::u8path(path), ec);
    if (ec || !fs::exists(st)) throw ModelError("model file not found: '" + path + "'");
    if (fs::is_directory(st)) throw ModelError("'" + path + "' is a directory, not a GGUF file");
}

// Owns the output header: a copy of the input's, which the plan's types are written into.
struct HeaderCopy {
    gguf_context* gguf = nullptr;
    ~HeaderCopy() {
        if (gguf) gguf_free(gguf);
    }
};

struct Input {
    std::string path;
    std::unique_ptr<ModelFile> file;
    std::string arch;
};

QuantizeReport plan_from(Input& in, ggml_type target, uint64_t file_size) {
    const ArchRule* rule = find_rule(in.arch);
    if (!rule) {
        std::string known;
        for (const ModelSpec* r : model_specs()) known += std::string(known.empty() ? "" : ", ") + r->arch;
        throw ModelError("'" + in.path + "' has architecture '" + in.arch + "', which crispmoss cannot quantize (known: " +
                         known + ")");
    }
    QuantizeReport rep;
    rep.arch = in.arch;
    rep.target = target;
    rep.in_bytes = file_size;
    const gguf_context* g = in.file->gguf();
    const int64_t n = gguf_get_n_tensors(g);
    rep.tensors.reserve(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
        TensorPlan p;
        p.name = gguf_get_tensor_name(g, i);
        // ModelFile has checked every tensor's type, shape and data range against the file.
        const ggml_tensor* t = in.file->find(p.name);
        if (!t) throw ModelError("'" + in.path + "': tensor '" + p.name + "' missing from the metadata context");
        p.src_type = t->type;
        p.n_dims = ggml_n_dims(t);
        for (int d = 0; d < 4; ++d) p.ne[d] = t->ne[d];

        p.dst_type = p.src_type;
        p.candidate = is_candidate(*rule, p.name, p.n_dims);
        if (p.candidate) {
            if (!convertible_source(p.src_type))
                throw ModelError("'" + in.path + "': tensor '" + p.name + "' has type " + type_name(p.src_type) +
                                 ", which cannot be converted (F32, F16, BF16 or a ggml quant type expected)");
            ggml_type want = target;
            const int64_t ne0 = p.ne[0];
            if (ne0 % ggml_blck_size(want) != 0) {
                // K-quants need 256-wide rows, Q8_0 32-wide; fall back to the nearest type that fits.
                ggml_type fb = (want != GGML_TYPE_Q8_0 && ne0 % ggml_blck_size(GGML_TYPE_Q8_0) == 0) ? GGML_TYPE_Q8_0
                                                                                                    : GGML_TYPE_F16;
                p.note = "row length " + std::to_string(ne0) + " is not a multiple of " +
                         std::to_string(ggml_blck_size(want)) + " (" + type_name(want) + "): " + type_name(fb) +
                         " instead";
                want = fb;
            }
            p.dst_type = want;
        }
        rep.tensors.push_back(std::move(p));
    }
    return rep;
}

void load_input(const std::string& path, Input& in) {
    check_input_path(path);
    in.path = path;
    try {
        in.file = std::make_unique<ModelFile>(path);
    } catch (const ModelError& e) {
        // ModelFile's messages start with "<path>: "; say once that the file is unusable as GGUF.
        std::string why = e.what();
        if (why.compare(0, path.size() + 2, path + ": ") == 0) why.erase(0, path.size() + 2);
        throw ModelError("'" + path + "' is a malformed GGUF file: " + why);
    }
    in.arch = in.file->arch();
}

// ---- output ----------------------------------------------------------------------------------------------
class PartFile {
public:
    PartFile(std::string final_path) : final_(std::move(final_path)), part_(final_ + ".part") {
        f_ = std::fopen(part_.c_str(), "wb");
        if (!f_) throw InputError("cannot create output file '" + part_ + "': " + std::strerror(errno));
        buf_.resize(size_t(1) << 20);
        std::setvbuf(f_, buf_.data(), _IOFBF, buf_.size());
    }
    ~PartFile() {
        if (f_) std::fclose(f_);
        if (!committed_) std::remove(part_.c_str());
    }
    PartFile(const PartFile&) = delete;
    PartFile& operator=(const PartFile&) = delete;

    void write(const void* p, size_t n) {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        while (n > 0) {
            const size_t step = std::min<size_t>(n, size_t(1) << 30);
            if (std::fwrite(b, 1, step, f_) != step)
                throw ModelError("cannot write '" + part_ + "': " + std::strerror(errno));
            b += step;
            n -= step;
            pos_ += step;
        }
    }
    void zeros(size_t n) {
        static const uint8_t z[256] = {};
        while (n > 0) {
            const size_t step = std::min(n, sizeof(z));
            write(z, step);
            n -= step;
        }
    }
    void pad_to(uint64_t pos) {
        if (pos < pos_) throw ModelError("internal error: output offset went backwards in '" + part_ + "'");
        zeros(size_t(pos - pos_));
    }
    uint64_t pos() const { return pos_; }

    void commit() {
        const bool bad = std::fflush(f_) != 0 || std::ferror(f_);
        const int rc = std::fclose(f_);
        f_ = nullptr;
        if (bad || rc != 0) throw ModelError("cannot finish writing '" + part_ + "': " + std::strerror(errno));
        std::error_code ec;
        fs::rename(fs::u8path(part_), fs::u8path(final_), ec);
        if (ec) throw ModelError("cannot rename '" + part_ + "' to '" + final_ + "': " + ec.message());
        committed_ = true;
    }

private:
    std::string final_, part_;
    std::FILE* f_ = nullptr;
    std::vector<char> buf_;
    uint64_t pos_ = 0;
    bool committed_ = false;
};

// Runs fn(t) for t in [0, n) on n threads (the calling thread takes t = 0).
template <typename Fn>
void run_parallel(int n, const Fn& fn) {
    std::vector<std::thread> workers;
    workers.reserve(size_t(std::max(0, n - 1)));
    try {
        for (int t = 1; t < n; ++t) workers.emplace_back(fn, t);
    } catch (...) {
        for (auto& w : workers) w.join();
        throw;
    }
    fn(0);
    for (auto& w : workers) w.join();
}

// Largest number of F32 values converted at once: bounds the scratch memory to ~64 MiB + output block.
// CRISPMOSS_QUANTIZE_BLOCK_ELEMS overrides it so tests can drive the multi-block path with tiny tensors.
int64_t block_elems() {
    int64_t v = int64_t(16) << 20;
    if (const char* e = std::getenv("CRISPMOSS_QUANTIZE_BLOCK_ELEMS")) {
        char* end = nullptr;
        const long long x = std::strtoll(e, &end, 10);
        if (end != e && x > 0) v = x;
    }
    return v;
}

// Copies the `n` mapped bytes at `src`, dropping consumed pages as it goes.
void copy_range(const ModelFile& file, const uint8_t* src, size_t n, PartFile& out) {
    const size_t step = size_t(64) << 20;
    for (size_t done = 0; done < n; done += step) {
        const size_t len = std::min(step, n - done);
        out.write(src + done, len);
        file.release_pages(src + done, len);
    }
}

void convert_tensor(const ModelFile& file, const uint8_t* src, const TensorPlan& p, int n_threads, PartFile& out,
                    std::vector<float>& f32, std::vector<uint8_t>& q, const QuantizePoll& poll) {
    const int64_t ne0 = p.ne[0];
    const int64_t nrows = p.ne[1] * p.ne[2] * p.ne[3];
    const size_t src_row = ggml_row_size(p.src_type, ne0);
    const size_t dst_row = ggml_row_size(p.dst_type, ne0);
    const int64_t block_rows = std::max<int64_t>(1, block_elems() / ne0);
    for (int64_t r0 = 0; r0 < nrows; r0 += block_rows) {
        if (poll && r0 > 0) poll();
        const int64_t rows = std::min(block_rows, nrows - r0);
        q.resize(size_t(rows) * dst_row);
        convert_rows(src + size_t(r0) * src_row, p.src_type, q.data(), p.dst_type, rows, ne0, n_threads, f32);
        out.write(q.data(), q.size());
        file.release_pages(src + size_t(r0) * src_row, size_t(rows) * src_row);
    }
}

int resolve_threads(int n_threads) {
    if (n_threads > 0) return std::min(n_threads, 256);
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? int(std::min(hc, 256u)) : 1;
}

}  // namespace

ggml_type parse_quant_type(const std::string& name) {
    std::string s = name;
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& t : kTargets)
        if (s == t.name) return t.type;
    std::string all;
    for (const auto& t : kTargets) all += std::string(all.empty() ? "" : ", ") + t.name;
    throw InputError("unsupported quantization type '" + name + "' (supported: " + all + ")");
}

std::vector<std::string> quant_type_names() {
    std::vector<std::string> v;
    for (const auto& t : kTargets) v.emplace_back(t.name);
    return v;
}

uint32_t file_type_for(ggml_type target) {
    for (const auto& t : kTargets)
        if (t.type == target) return t.ftype;
    throw InputError("unsupported quantization target " + type_name(target));
}

QuantizeReport plan_quantization(const std::string& in_path, ggml_type target) {
    file_type_for(target);  // validates the target
    Input in;
    load_input(in_path, in);
    return plan_from(in, target, in.file->file_size());
}

QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path, ggml_type target,
                             int n_threads, const QuantizeProgress& progress, const QuantizePoll& poll) {
    const auto t_start = std::chrono::steady_clock::now();
    const uint32_t ftype = file_type_for(target);
    if (out_path.empty()) throw InputError("output path is empty");

    Input in;
    load_input(in_path, in);
    {
        std::error_code ec;
        if (fs::exists(fs::u8path(out_path), ec) && fs::equivalent(fs::u8path(in_path), fs::u8path(out_path), ec))
            throw InputError("output path '" + out_path + "' is the input file; choose another name");
    }
    in.file->advise_sequential();
    QuantizeReport rep = plan_from(in, target, in.file->file_size());
    rep.n_threads = resolve_threads(n_threads);

    // The output header is a copy of the input's: it keeps the KV order and general.alignment, which a
    // fresh gguf_init_empty context would not honour for the data layout.
    HeaderCopy out_meta{in.file->copy_header()};
    gguf_context* og = out_meta.gguf;
    gguf_set_val_u32(og, "general.quantization_version", GGML_QNT_VERSION);
    gguf_set_val_u32(og, "general.file_type", ftype);
    for (const auto& p : rep.tensors)
        if (p.dst_type != p.src_type) gguf_set_tensor_type(og, p.name.c_str(), p.dst_type);

    const size_t meta_size = gguf_get_meta_size(og);
    std::vector<uint8_t> meta(meta_size);
    gguf_get_meta_data(og, meta.data());
    const size_t alignment = gguf_get_alignment(og);
    // The header (a vocabulary can take megabytes) has been read twice and is not needed again.
    in.file->release_all_pages();

    ggml_quantize_init(target);

    const int total = int(rep.tensors.size());
    if (progress) progress(0, total, "");

    PartFile out(out_path);
    out.write(meta.data(), meta.size());
    std::vector<float> f32;
    std::vector<uint8_t> q;
    for (int i = 0; i < total; ++i) {
        const TensorPlan& p = rep.tensors[size_t(i)];
        out.pad_to(uint64_t(meta_size) + gguf_get_tensor_offset(og, i));
        const ggml_tensor* t = in.file->find(p.name);
        const auto* src = static_cast<const uint8_t*>(t->data);
        const uint64_t start = out.pos();
        if (p.dst_type == p.src_type)
            copy_range(*in.file, src, ggml_nbytes(t), out);
        else
            convert_tensor(*in.file, src, p, rep.n_threads, out, f32, q, poll);
        if (out.pos() - start != gguf_get_tensor_size(og, i))
            throw ModelError("internal error: tensor '" + p.name + "' wrote " + std::to_string(out.pos() - start) +
                             " bytes, header says " + std::to_string(gguf_get_tensor_size(og, i)));
        if (progress) progress(i + 1, total, p.name);
    }
    // ggml's reader expects the last tensor padded too.
    out.pad_to((out.pos() + alignment - 1) / alignment * alignment);
    rep.out_bytes = out.pos();
    out.commit();
    f32 = {};
    q = {};
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return rep;
}

void convert_rows(const void* src, ggml_type src_type, void* dst, ggml_type dst_type, int64_t nrows, int64_t ne0,
                  int n_threads, std::vector<float>& scratch) {
    const auto* sblock = static_cast<const uint8_t*>(src);
    const size_t src_row = ggml_row_size(src_type, ne0);
    const ggml_type_traits* tr = ggml_get_type_traits(src_type);
    const bool direct_f32 = src_type == GGML_TYPE_F32 && reinterpret_cast<uintptr_t>(src) % alignof(float) == 0;
    const float* fbase;
    if (direct_f32) {
        fbase = static_cast<const float*>(src);
    } else {
        scratch.resize(size_t(nrows * ne0));
        fbase = scratch.data();
    }
    // Rows are independent in every ggml quantizer, so any split gives the same bytes.
    const int64_t min_rows_per_thread = std::max<int64_t>(1, (int64_t(1) << 16) / ne0);
    const int nt = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(n_threads), nrows / min_rows_per_thread)));
    run_parallel(nt, [&](int t) {
        const int64_t a = nrows * t / nt, b = nrows * (t + 1) / nt;
        if (a >= b) return;
        if (!direct_f32) {
            float* d = scratch.data() + a * ne0;
            const uint8_t* s = sblock + size_t(a) * src_row;
            if (src_type == GGML_TYPE_F32)
                std::memcpy(d, s, size_t(b - a) * src_row);
            else
                tr->to_float(s, d, (b - a) * ne0);
        }
        ggml_quantize_chunk(dst_type, fbase, dst, a * ne0, b - a, ne0, nullptr);
    });
}

}  // namespace cm
