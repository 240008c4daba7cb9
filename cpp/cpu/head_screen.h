// Greedy output head by screening (decode steps whose rows sample greedily): an approximate product of the whole
// F16 head on the AMX tiles, a rigorous bound on its error, and the exact logits (our matrix-vector kernel, the
// bits the full product gives) of only the tokens that can still be the argmax. Every other logit becomes -inf,
// so argmax (text/sampler.h, after its repetition penalty) picks exactly the token of the full exact logits.
//
// Screening product: y~[v][i] = bf16(w_v) . bf16(x_i) on the tiles with F32 sums. The weight rows are the A
// operand as they lie in memory (a 16 x 32 BF16 tile is 16 rows' 32 consecutive values, converted F16 -> BF16 in
// registers, no transpose); the activation rows the B operand, VNNI-packed once per step (16 rows a group).
// C = 16 weight rows x 16 activation rows, stored as y~[group][v][16]. The weights stream from memory once for all
// rows: the cost is the 1-row matrix-vector product's at any row count.
//
// The bound (per weight row v, activation row i). y = what cpu::gemv computes (w_v F16 exactly in F32, x_i F32,
// F32 FMAs in some order), w~ = bf16(w_v), x~ = bf16(x_i) with BF16 denormals flushed (as packed; the tiles treat
// BF16 denormals as zero, so flushing them first makes the packed values the ones multiplied), s = sum_j w_j x_j
// in exact arithmetic, u = 2^-24, g = gamma_n = n u / (1 - n u) with n = k + 64 (k products and the few extra
// additions of either reduction tree: lanes, hsum), tiny = 2^-126:
//   |y - s| <= g sum|w x| + n tiny                    (n roundings of a sum of exact products; each may also
//                                                      flush or lose at most tiny below the normal range)
//   |y~ - s~| <= g sum|w~ x~| + n tiny                (s~ = sum w~ x~: the tiles' products of BF16 values are
//                                                      exact in F32 and summed with F32 roundings, flushing
//                                                      denormal results)
//   s~ - s = sum w (x~ - x) + sum (w~ - w) x~        (exact identity)
// and by Cauchy-Schwarz, with N = ||w||, D = ||w~ - w||, X = ||x||, dX = ||x~ - x|| (2-norms):
//   |y~ - y| <= N dX + D (X + dX) + g ((N + D)(X + dX) + N X) + 2 n tiny
//            =  N A + D B + C,  A = dX + g (2 X + dX),  B = (X + dX)(1 + g),  C = 2 n tiny
// (A also gets sqrt(k) tiny: the exact kernel's change were it run with denormal inputs read as zero).
// D = 0 for rows whose values are all BF16-exact. N and D are computed once per head (head_norms, F32 sums of
// exact squares, inflated by their own gamma and rounded up); A, B, C per step in double from the packed bits and
// rounded up to F32; the bound N A + D B + C and y~ -/+ it are evaluated with AVX-512 upward/downward rounding,
// so no rounding of the bound's own arithmetic can shrink it. A row is screened only when it is finite and
// N_max X < 2^100 (no product or partial sum can overflow, so the exact logits are finite too); otherwise (or
// when y~ has a non-finite value) the row's logits are all computed exactly.
//
// Selection (head_screen_select): per activation row, M = max over v (not in the row's exact set) of y~ - bound;
// the exact logits are computed for every v with y~ + bound >= M and every v of the exact set (the repetition
// penalty's history), -inf elsewhere. The argmax t of the exact logits (after the penalty) has y_t >= y_u >=
// y~_u - b_u for the u attaining M (if t is not in the exact set), so y~_t + b_t >= M: t is computed; every
// v left out has y_v <= y~_v + b_v < M <= y_t, strictly below, so ties (lowest index wins) are unaffected.
//
// Availability: amx_usable() (Linux x86-64, AMX-BF16, the tile permission) and the avx512/amx kernel level; F16
// heads only (the exact F16 head runs through cpu::gemv, whose per-row bits the recompute reproduces; BF16 heads
// run through ggml's kernels, whose bits a per-row recompute cannot promise).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace cm::cpu {

struct HeadNorms {
    int64_t rows = 0, k = 0;
    std::vector<float> norm;   // ||w_v||_2, rounded up
    std::vector<float> dnorm;  // ||bf16(w_v) - w_v||_2, rounded up (all 0 when bf16_exact)
    float max_norm = 0;
    bool bf16_exact = true;    // every value of the head is a BF16 value
    size_t bytes() const { return (norm.capacity() + dnorm.capacity()) * sizeof(float); }
};

// Whether this process can screen: amx_usable() and the active kernel level runs our AVX-512 matrix-vector
// kernels (the recompute's).
bool head_screen_available();

// Norms of an F16 head (rows of k values, row_bytes apart); nullptr when a value is not finite (such a head is
// never screened). Reads the whole head once.
std::unique_ptr<HeadNorms> head_norms(const void* w, size_t row_bytes, int64_t rows, int64_t k);

// Per activation row: the bound's coefficients (b = N A + D B + C) and whether the row may be screened.
struct ScreenRow {
    float a = 0, b = 0, c = 0;
    bool ok = false;
};

// Activation rows padded to groups of 16; bytes of the packed B operand for n rows of k values.
inline int64_t head_screen_groups(int64_t n) { return (n + 15) / 16; }
size_t head_screen_x_bytes(int64_t n, int64_t k);

// Packs activation rows [0, n) (x_i = x + i * ldx) for the tiles (xp: head_screen_x_bytes, 64-byte aligned) and
// fills rows[0..n).
void head_screen_pack(const float* x, int64_t ldx, int64_t n, int64_t k, const HeadNorms& norms, uint16_t* xp,
                      ScreenRow* rows);

// The screening product for weight rows [r0, r1) (r0 a multiple of 32): yt[(g * rows_pad + v) * 16 + l] =
// y~ of weight row v and activation row 16 g + l (yt: any 4-byte alignment), rows_pad = (norms.rows + 31) / 32 * 32. hist (nullable): per group,
// rows_pad masks, bit l set where v is in activation row 16 g + l's exact set. lo_max[i] = the max over this
// range's v not in row i's exact set of y~ - bound (rounded down; -inf when none), bad[i] = a y~ of row i
// was not finite.
void head_screen_product(const void* w, size_t row_bytes, const HeadNorms& norms, int64_t r0, int64_t r1,
                         const uint16_t* xp, int64_t n, const ScreenRow* rows, const uint16_t* hist, float* yt,
                         float* lo_max, uint8_t* bad);

// Writes the logits of weight rows [r0, r1) for activation rows [0, n): out[i * ldo + v] = the exact logit (as
// cpu::gemv computes it) where v is a candidate of row i (y~ + bound >= m[i]) or in its exact set, else -inf.
// full[i]: row i gets every logit exactly.
void head_screen_select(const void* w, size_t row_bytes, const HeadNorms& norms, int64_t r0, int64_t r1,
                        const float* yt, const float* x, int64_t ldx, int64_t n, const ScreenRow* rows,
                        const uint16_t* hist, const float* m, const uint8_t* full, float* out, int64_t ldo);

// Logits head_screen_select computed exactly so far in this process (candidates, exact sets, rows computed whole).
long long head_screen_recomputed();

// Padding of head_screen_product's rows.
inline int64_t head_screen_rows_pad(int64_t rows) { return (rows + 31) / 32 * 32; }

}  // namespace cm::cpu
