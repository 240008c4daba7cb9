// GGUF re-quantization with the per-model keep/quantize rules of MOSS-Transcribe and MOSS-Audio.
//
// The output keeps every KV pair and every tensor (same names, same order, same shapes); only the types
// of the eligible LM matrices change. It is written as a stream: metadata first (all sizes are known from
// the planned types), then tensor by tensor in bounded row blocks, so neither model is ever held in memory
// whole. The input is read through ModelFile (its hostile-input checks and its file mapping), and its pages
// are dropped as they are consumed. Writing goes to "<out>.part" and is renamed into place at the end, so a
// failed or interrupted run never leaves a half-written model under the requested name.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ggml.h"

namespace cm {

// Target types accepted by quantize_file: f32, f16, q8_0, q4_k, q5_k, q6_k (case-insensitive).
// Throws InputError naming the accepted set for anything else.
ggml_type parse_quant_type(const std::string& name);

// Converts `nrows` rows of `ne0` values from `src` (any type with a to_float) to `dst_type` at `dst`, rows
// split over n_threads (0: all cores). `scratch` holds the F32 rows between the two steps.
void convert_rows(const void* src, ggml_type src_type, void* dst, ggml_type dst_type, int64_t nrows, int64_t ne0,
                  int n_threads, std::vector<float>& scratch);
std::vector<std::string> quant_type_names();

// general.file_type written for a target: ggml's ggml_ftype numbering, which is what CrispASR's
// crispasr-quantize writes (F32=0, F16=1, Q8_0=7, Q4_K=12, Q5_K=13, Q6_K=14). Note this is not llama.cpp's
// LLAMA_FTYPE (where 12/14 mean Q3_K_L/Q4_K_S): the files are not llama.cpp models.
uint32_t file_type_for(ggml_type target);

// What happens to one tensor.
struct TensorPlan {
    std::string name;
    ggml_type src_type = GGML_TYPE_F32;
    ggml_type dst_type = GGML_TYPE_F32;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    bool candidate = false;  // passed the architecture's rules (may still have fallen back to another type)
    std::string note;        // why a candidate did not get the requested type (row length), empty otherwise
};

struct QuantizeReport {
    std::string arch;
    ggml_type target = GGML_TYPE_F32;
    std::vector<TensorPlan> tensors;
    uint64_t in_bytes = 0;   // input file size
    uint64_t out_bytes = 0;  // output file size
    int n_threads = 1;
    double seconds = 0.0;
};

// Called on the calling thread: once with (0, total, "") before the first tensor, then after each tensor
// with (done, total, name). May throw to abort the run (the partial output is removed).
using QuantizeProgress = std::function<void(int done, int total, const std::string& name)>;
// Called on the calling thread between row blocks of large tensors (every ~16 M values), so a caller can
// cancel within seconds even inside a 400 M-value embedding; cancel by throwing.
using QuantizePoll = std::function<void()>;

// Plans without writing: which type each tensor of `in_path` would get for `target`.
QuantizeReport plan_quantization(const std::string& in_path, ggml_type target);

// Re-quantizes `in_path` into `out_path`. n_threads <= 0 means one per hardware thread.
// Throws ModelError (missing / malformed input, unknown architecture, unsupported source tensor type,
// write failure) or InputError (bad target type, output path equal to the input, uncreatable output).
QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path, ggml_type target,
                             int n_threads = 0, const QuantizeProgress& progress = nullptr,
                             const QuantizePoll& poll = nullptr);

}  // namespace cm
