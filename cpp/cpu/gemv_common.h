// The parts of the matrix-vector kernels that do not depend on the instruction-set level (internal to
// cpu/gemv.cpp and cpu/gemv_avx2.cpp): block layouts, the activations' scratch layout, and the loops that hand
// weight rows and groups of activation rows to a level's dot products.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "cpu/gemv.h"

namespace cm::cpu::detail {

// Block layouts (the GGUF formats): Q4_K holds 256 weights as fp16 d, fp16 dmin, 12 bytes of packed 6-bit
// scales and mins for its eight 32-weight sub-blocks, then 128 bytes of nibbles; byte l of 32-byte chunk c holds
// weight 64c+l in its low nibble and weight 64c+32+l in its high nibble; w = d*scale*q - dmin*min.
// Q8_0 holds 32 weights as fp16 d and 32 int8: w = d*q.
// A single thread streams weights at 5-7 GB/s on its own and at ~9.5 GB/s with software prefetches 4 KB ahead
// (measured on Sapphire Rapids, 1 thread, 175-330 MB matrices; 1-16 KB all help, 4 KB best).
constexpr int kPrefetch = 4096;
// The weight-row-interleaved Q4_K kernels stream R rows at once: each row is prefetched kPrefetchRows bytes ahead,
// continuing into the same row of the next block of R rows past the row's end (see q4k_prefetch).
#ifndef CM_Q4K_PREFETCH
#define CM_Q4K_PREFETCH 1024
#endif
constexpr size_t kPrefetchRows = CM_Q4K_PREFETCH;

#if defined(__x86_64__) || defined(_M_X64)
// The R interleaved rows' prefetch at block offset off: each row kPrefetchRows ahead, past its end the same row of
// the next R (the next call's, `next` bytes on). Plain SSE prefetches: the same code for every level.
template <int R>
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline void q4k_prefetch(const uint8_t* const* rp, size_t off, size_t row_bytes, size_t next) {
    const size_t pf = off + kPrefetchRows + (off + kPrefetchRows >= row_bytes ? next - row_bytes : 0);
    for (int k = 0; k < R; ++k) {
        const char* p = reinterpret_cast<const char*>(rp[k]) + pf;
        _mm_prefetch(p, _MM_HINT_T0);
        _mm_prefetch(p + 64, _MM_HINT_T0);
        _mm_prefetch(p + 128, _MM_HINT_T0);
    }
}
#endif
// From this many activation rows on, F16/F32 weights go through a level's gemv_float_kblocked (weights converted
// once per block of values for all activation rows; the same bits as its gemv_float).
#ifndef CM_FLOAT_KBLOCK_ROWS
#define CM_FLOAT_KBLOCK_ROWS 3
#endif
constexpr int kFloatKBlockRows = CM_FLOAT_KBLOCK_ROWS;
constexpr int kQK = 256, kQ4KBytes = 144, kQ8Block = 32, kQ8Bytes = 34;

// Q4_K weights: per 256 activations one scale d, int8 values q = round(x / d) with |q| <= 127 in order, and the
// sums of each 32-value sub-block (for the mins; |sum| <= 32 * 127, so int16).
struct ActQ4K {
    int8_t* q;
    float* d;
    int16_t* sums;
};

inline ActQ4K act_q4k(void* scratch, int64_t n) {
    auto* base = static_cast<uint8_t*>(scratch);
    const int64_t nb = n / kQK;
    return {reinterpret_cast<int8_t*>(base), reinterpret_cast<float*>(base + n),
            reinterpret_cast<int16_t*>(base + n + 4 * nb)};
}

// Q4_K's activations for x (n values) with a level's abs_max(x, 256), quantize32(x, inverse scale, q) and
// sum32(q): per 256 values d = amax / 127, q = round(x * 127 / amax), the sub-block sums.
template <typename AbsMax, typename Quantize32, typename Sum32>
void quantize_q4k_with(const float* x, int64_t n, ActQ4K a, AbsMax abs_max, Quantize32 quantize32, Sum32 sum32) {
    for (int64_t i = 0; i < n / kQK; ++i) {
        const float* xb = x + i * kQK;
        const float amax = abs_max(xb, kQK);
        a.d[i] = amax / 127.0f;
        for (int k = 0; k < 8; ++k) {
            int8_t* dst = a.q + i * kQK + 32 * k;
            quantize32(xb + 32 * k, amax > 0.0f ? 127.0f / amax : 0.0f, dst);
            a.sums[8 * i + k] = static_cast<int16_t>(sum32(dst));
        }
    }
}

// Each activation row j quantized into its part of the scratch: a[j] = make(part, n), quantize(x_j, n, a[j])
// (parts gemv_scratch_bytes(type, n) apart). `prepared`: the scratch already holds them (gemv_prepare), only a[j]
// is laid out.
template <typename MakeAct, typename Quantize, typename Act>
void quantize_rows(ggml_type type, int64_t n, const float* x, int64_t ldx, int n_x, void* scratch, MakeAct make,
                   Quantize quantize, Act* a, bool prepared = false) {
    const size_t per_row = gemv_scratch_bytes(type, n);
    auto* base = static_cast<uint8_t*>(scratch);
    for (int j = 0; j < n_x; ++j) {
        a[j] = make(base + j * per_row, n);
        if (!prepared) quantize(x + j * ldx, n, a[j]);
    }
}

// gemv_prepare at a level: each of the n_x activation rows quantized into its part of the scratch for a quantized
// type (Q4_K: make_q4k / quantize_q4k, Q8_0: make_q80 / quantize_q80); nothing for F16/F32 (x is used as it is).
template <typename MakeQ4K, typename QuantizeQ4K, typename MakeQ80, typename QuantizeQ80>
void prepare_rows(ggml_type type, int64_t n, const float* x, int64_t ldx, int n_x, void* scratch, MakeQ4K make_q4k,
                  QuantizeQ4K quantize_q4k, MakeQ80 make_q80, QuantizeQ80 quantize_q80) {
    const size_t per_row = gemv_scratch_bytes(type, n);
    auto* base = static_cast<uint8_t*>(scratch);
    for (int j = 0; j < n_x; ++j) {
        if (type == GGML_TYPE_Q4_K) quantize_q4k(x + j * ldx, n, make_q4k(base + j * per_row, n));
        if (type == GGML_TYPE_Q8_0) quantize_q80(x + j * ldx, n, make_q80(base + j * per_row, n));
    }
}

// Q4_K weights, several weight rows at once (the weight-row-interleaved kernels, see gemv.cpp): every activation
// row quantized into its scratch, then rows [r0, r1) in blocks of R (the last block padded with copies of row
// r1 - 1, whose results are dropped): block(row pointers[R], acts, n_x, out) writes out[j * R + k] = dot(row k, x_j)
// for all n_x activation rows (row_bytes, R * row_bytes: the rows' stride and the next block's distance).
// `prepared`: the scratch already holds the quantized rows (gemv_prepared). n_x <= MaxRows.
template <int R, int MaxRows = kMaxGemvRows, typename Quantize, typename Block>
void gemv_q4k_blocks(const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                     int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, bool prepared, Quantize quantize,
                     Block block) {
    ActQ4K a[MaxRows];
    quantize_rows(GGML_TYPE_Q4_K, n, x, ldx, n_x, scratch, act_q4k, quantize, a, prepared);
    float out[MaxRows * R];
    const uint8_t* rp[R];
    for (int64_t r = r0; r < r1; r += R) {
        for (int k = 0; k < R; ++k) rp[k] = rows + (r + k < r1 ? r + k : r1 - 1) * row_bytes;
        block(rp, a, n_x, out, row_bytes, R * row_bytes);
        const int64_t m = r1 - r < R ? r1 - r : R;
        for (int j = 0; j < n_x; ++j)
            for (int64_t k = 0; k < m; ++k) y[j * ldy + r + k] = out[j * R + k];
    }
}

// Q8_0 weights: x quantized per 32 values (as ggml does for this type), stored in order.
struct ActQ80 {
    int8_t* q;
    float* d;
};

inline ActQ80 act_q80(void* scratch, int64_t n) {
    auto* base = static_cast<uint8_t*>(scratch);
    return {reinterpret_cast<int8_t*>(base), reinterpret_cast<float*>(base + n)};
}

// Q8_0's activations for x (n values): per 32, d = amax / 127 and q = round(x * 127 / amax), with a level's
// abs_max(x, 32) and quantize32(x, inverse scale, q).
template <typename AbsMax, typename Quantize32>
void quantize_q80_with(const float* x, int64_t n, ActQ80 a, AbsMax abs_max, Quantize32 quantize32) {
    for (int64_t i = 0; i < n / kQ8Block; ++i) {
        const float amax = abs_max(x + i * kQ8Block, kQ8Block);
        a.d[i] = amax / 127.0f;
        quantize32(x + i * kQ8Block, amax > 0.0f ? 127.0f / amax : 0.0f, a.q + i * kQ8Block);
    }
}

// Rows of activations in groups of Max per pass over a weight row (the accumulators of a group stay in
// registers; the weight row, a few KB, is read from L1 again for the next group), then a group of 4 where
// Max > 4, then one of 3, 2 or 1. fn(j, std::integral_constant<int, G>) handles rows [j, j + G).
template <int Max, typename Fn>
void for_groups(int n_x, Fn&& fn) {
    int j = 0;
    for (; j + Max <= n_x; j += Max) fn(j, std::integral_constant<int, Max>());
    if constexpr (Max > 4) {
        if (n_x - j >= 4) {
            fn(j, std::integral_constant<int, 4>());
            j += 4;
        }
    }
    const int left = n_x - j;
    if constexpr (Max > 3) {
        if (left == 3) fn(j, std::integral_constant<int, 3>());
    }
    if constexpr (Max > 2) {
        if (left == 2) fn(j, std::integral_constant<int, 2>());
    }
    if (left == 1) fn(j, std::integral_constant<int, 1>());
}

// Weight rows [r0, r1) in blocks of 4, then one of 3, 2 or 1: fn(r, std::integral_constant<int, R>).
template <typename Fn>
void for_row_blocks(int64_t r0, int64_t r1, Fn&& fn) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) fn(r, std::integral_constant<int, 4>());
    switch (r1 - r) {
        case 3: fn(r, std::integral_constant<int, 3>()); break;
        case 2: fn(r, std::integral_constant<int, 2>()); break;
        case 1: fn(r, std::integral_constant<int, 1>()); break;
        default: break;
    }
}

// F16/F32 weights: rows [r0, r1) in blocks of R (4, then the tail) against activation rows in groups of G (2, then
// 1): dot(R, G, r, j, out) writes out[a * G + b] = dot(w_{r+a}, x_{j+b}), scattered into y here.
template <typename Dot>
void gemv_float_blocks(int64_t r0, int64_t r1, int n_x, float* y, int64_t ldy, Dot dot) {
    float out[4 * 2];
    for_row_blocks(r0, r1, [&](int64_t r, auto rr) {
        constexpr int R = decltype(rr)::value;
        for_groups<2>(n_x, [&](int j, auto g) {
            constexpr int G = decltype(g)::value;
            dot(rr, g, r, j, out);
            for (int a = 0; a < R; ++a)
                for (int b = 0; b < G; ++b) y[(j + b) * ldy + r + a] = out[a * G + b];
        });
    });
}

// The K-blocked F16/F32 product of a level (gemv.cpp's gemv_float_kblocked): rows [r0, r1) in blocks of R <= 4,
// values [0, n_main) (n_main: n rounded down to the level's step) in blocks of kb (512, 256 for more than 8
// activation rows: the activation rows' block, the converted weights (16 KB at most) and the accumulators stay in
// L1). Per row block: zero(acc), per value block convert(R, row, k0, kl, kb) into the level's buffer, then
// kblock(R, G, j, k0, kl, kb) for the activation rows in pairs; finish(R, row, r) adds the tail and writes y.
template <typename Zero, typename Convert, typename KBlock, typename Finish>
void gemv_float_kblocked_with(const uint8_t* rows, size_t row_bytes, int64_t n_main, int64_t r0, int64_t r1, int n_x,
                              Zero zero, Convert convert, KBlock kblock, Finish finish) {
    const int kb = n_x > 8 ? 256 : 512;
    for_row_blocks(r0, r1, [&](int64_t r, auto rr) {
        const uint8_t* row = rows + r * row_bytes;
        zero();
        for (int64_t k0 = 0; k0 < n_main; k0 += kb) {
            const int64_t kl = n_main - k0 < kb ? n_main - k0 : kb;
            convert(rr, row, k0, kl, kb);
            for_groups<2>(n_x, [&](int j, auto g) { kblock(rr, g, j, k0, kl, kb); });
        }
        finish(rr, row, r);
    });
}

// A quantized type's product: each activation row quantized into its scratch (quantize(x_j, n, act_j)), then
// every weight row against the activation rows in groups of at most Max:
// dot(std::integral_constant<int, G>, weight row, acts of the group, out[G]).
// make(scratch, n) lays out one row's Act in its part of the scratch (per_row = gemv_scratch_bytes(type, n)).
// `prepared`: the scratch already holds the quantized rows (gemv_prepared).
template <int Max, typename MakeAct, typename Quantize, typename Dot>
void gemv_quantized(ggml_type type, const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1,
                    const float* x, int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, bool prepared,
                    MakeAct make, Quantize quantize, Dot dot) {
    decltype(make(scratch, n)) a[kMaxGemvRows];
    quantize_rows(type, n, x, ldx, n_x, scratch, make, quantize, a, prepared);
    float out[Max];
    for (int64_t r = r0; r < r1; ++r) {
        for_groups<Max>(n_x, [&](int j, auto g) {
            constexpr int G = decltype(g)::value;
            dot(g, rows + r * row_bytes, a + j, out);
            for (int k = 0; k < G; ++k) y[(j + k) * ldy + r] = out[k];
        });
    }
}

}  // namespace cm::cpu::detail
