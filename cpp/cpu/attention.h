// Decode attention on x86 CPUs: one query row per head against a sequence's KV cache (F16 or F32), for the
// decode step of one or many sequences (nn/decode_attention.h builds the graph op that calls it).
//
// Why our own kernel: ggml's flash attention is one graph op per sequence, each with a fixed cost (threads woken,
// the query and mask prepared, the cache rows visited one by one per query head), about 28 ms of a 207 ms step at
// 8 sequences, and 11 ms a step at position 1000 for one sequence. Here each (sequence, KV head) is one unit of
// work: the G query heads that share the KV head (grouped-query attention) read each cached key and value once.
//
// Streaming (at position 1000 the F16 cache of MOSS-Transcribe's decoder is 115 MB a step against 1.42 GB of Q4_K
// weights, so the kernel must read it at memory speed): a KV head's query rows in groups of 4, 2 or 1; per group
// and block each cached key and value is loaded once and converted from F16 in registers (no F32 copy), the scores
// of the group's rows for 8 / 4 / 2 positions at a time (1 / 2 / 4 rows; AVX-512: 16 / 8 / 4) in register
// accumulators reduced by one tree, the value sums with the group's output vectors in registers; while a block is read, the same head's next block is prefetched row by row.
// A thread's KV heads of a sequence are visited block by block, heads in turn (each cached row's piece of the
// thread's heads read close together).
//
// Arithmetic, per unit (one thread computes it whole): positions in blocks of kAttnBlock, counted from position 0;
// per block the scores s_t = scale * (q . k_t) (F32 FMAs over the head, the cache values converted to F32 exactly),
// the block's maximum, and an online softmax: when the running maximum m grows, the accumulated sum l and output
// are rescaled by exp(m_old - m_new); p_t = exp(s_t - m) (never above 1, so nothing overflows), l += the block's
// sum of p_t, out += p_t v_t; at the end out / l. The result depends only on the query, the cached rows and the
// position count: never on the thread split or on which other sequences share the op, so a sequence decoded in a
// batch gets the bits it gets alone (nor on the thread count, nor on how a head's rows are grouped: every score is
// reduced by the same tree, every value sum runs over the positions in order). The AVX2 and AVX-512 levels sum in 8- and 16-lane pieces, so their results
// differ in the last bits (as ggml's would), never within a level.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/level.h"
#include "ggml.h"

namespace cm::cpu {

// Positions per online-softmax block.
constexpr int kAttnBlock = 32;
// Largest head size the kernels take (the models' configuration allows up to 1024).
constexpr int64_t kAttnMaxHead = 1024;
// Query rows per pass over the cached rows (more: another pass).
constexpr int kAttnMaxRows = 16;

// One sequence's consecutive KV heads: n_q query rows attend to n_cached positions; row r uses KV head r / g.
struct AttnHeads {
    const float* q;   // n_q rows of d floats, ldq floats apart (already rotated)
    int64_t ldq;
    int n_q;          // a multiple of g, >= 1
    int g;            // query heads per KV head (grouped-query attention), >= 1
    const void* k;    // the first KV head's key at position t: d values of the cache type at (const char*)k + t *
    const void* v;    // stride, the next head's d values after it; values likewise
    size_t stride;
    int n_kv;         // >= 1
    int d;
    float scale;      // applied to q . k
    float* out;       // n_q rows of d floats, ldo floats apart
    int64_t ldo;
};

// Whether attend() takes this cache type and head size at `level`: F16 or F32, d a multiple of 8 up to
// kAttnMaxHead, and a level with kernels (avx2 or more). At the avx512 and amx levels a head size that is not a
// multiple of 16 runs the AVX2 kernel.
bool attention_supports(ggml_type type, int64_t d, Level level = active_level());

// Floats of work space attend() needs for head size d.
size_t attention_work_floats(int64_t d);

// Computes the query rows of one sequence's KV heads (each row as described above, whichever heads share the
// call). Requires attention_supports(type, h.d, level). work: attention_work_floats(h.d)
// floats, or null (then a buffer on the stack, or the heap for head sizes above 256).
void attend(ggml_type type, const AttnHeads& h, Level level = active_level(), float* work = nullptr);

// Encoder attention: all h.n_q query rows on one KV head (h.g == h.n_q) against the same h.n_kv keys and values,
// F32 rows (an encoder window's q, k, v). Scores as a small matrix product with the keys transposed once per call
// into the vector lanes (each score one FMA chain over the head, in order, then times scale), an exact softmax over
// the whole row, the value sums in position order divided by the row's sum: no horizontal sums and no online
// rescaling, which the one-row-at-a-time decode kernel (attend) needs and an encoder's hundreds of rows a head do
// not. A row's result depends only on its query, the keys and the values (not on which rows share the call); the
// levels differ in the last bits (8- or 16-lane softmax sums). Requires attention_supports(GGML_TYPE_F32, h.d,
// level). work: attention_full_work_floats(h.d, h.n_kv) floats, 64-byte aligned, or null (a buffer per thread).
size_t attention_full_work_floats(int64_t d, int64_t n_kv);
void attend_full(const AttnHeads& h, Level level = active_level(), float* work = nullptr);

// Writes n floats as one cache row piece of `type`: F16 rounded to nearest even (the same bits as ggml's copy),
// F32 copied. Requires attention_supports(type, n, level).
void store_kv(ggml_type type, const float* x, void* dst, int64_t n, Level level = active_level());

}  // namespace cm::cpu
