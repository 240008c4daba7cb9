// One graph op for the attention of a decode step: every sequence's single new token, every head, against that
// sequence's own KV cache (cpu/attention.h's kernel), threaded over (sequence, KV head) pairs with ggml's threads.
// It also writes each sequence's new key and value into its cache at its position (each pair writes its own piece
// before reading it), so a step needs no copy ops, no per-sequence attention ops and no concatenation.
// The same op serves a prefill chunk (DecodeAttnArgs::written): each position is a row against the cache up to
// itself, so a position's result depends only on its query and the cached rows, never on the chunk it came in.
// Used where our CPU kernels run and the caches are in host memory; elsewhere (CRISPMOSS_CPU=ggml, a GPU layer)
// the per-sequence ggml flash attention stays, and CRISPMOSS_ATTN=ggml (read once) keeps it everywhere: for A/B
// measurements of this op alone.
#pragma once

#include <vector>

#include "ggml.h"

namespace cm::nn {

// What the op reads and writes besides its sources (it must outlive the graph's run): per sequence its layer's
// cache tensors [n_head_kv * head_dim, n_ctx] and the position its token is written at (it attends over
// positions 0..n_past).
struct DecodeAttnArgs {
    std::vector<ggml_tensor*> k, v;
    std::vector<int> n_past;
    int n_head = 0, n_head_kv = 0;
    float scale = 1.0f;
    // The caches already hold every row's key and value (graph copies ran before the op): the op only reads.
    // A prefill chunk of one sequence is this op with one "sequence" per position, all on the same cache, row i at
    // n_past + i (causal: it attends over positions 0..n_past + i); its rows read keys that other rows' threads
    // wrote, so the chunk's rows are copied into the cache first, as for ggml's flash attention.
    bool written = false;
};

// Whether our attention kernels may run (decode, and the encoder layers': nn::encoder_layer): not turned off by
// CRISPMOSS_ATTN=ggml (read once).
bool own_attention();

// Whether decode_attention() can serve these caches: not turned off by CRISPMOSS_ATTN=ggml, our kernels run, all of them in host memory, one cache type
// the kernel takes (F16/F32) and a head size it takes.
bool decode_attention_ok(const DecodeAttnArgs& a, int64_t head_dim);

// q [hd, n_head, n], k [hd, n_head_kv, n], v [hd * n_head_kv, n] (F32, this step's rows, q and k rotated) →
// [hd * n_head, n]: sequence i's attention output in column i.
ggml_tensor* decode_attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v,
                              const DecodeAttnArgs* a);

}  // namespace cm::nn
