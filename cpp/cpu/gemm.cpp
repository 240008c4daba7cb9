#include "cpu/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

#include "ggml.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define CM_GEMM_X86 1
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 + AVX-512 intrinsics, see gemv.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))
#endif

namespace cm::cpu {

#ifdef CM_GEMM_X86

namespace {

// Tile: kRows weight rows x kCols activation rows, 2 x kRows accumulators of 16 activation rows each (24 of
// the 32 vector registers). Per k: two loads of x^T, twelve broadcasts of the weight, 24 FMAs.
constexpr int kRows = int(kGemmTileRows), kCols = 32;
// K slice: its x^T rows (kSlice x n floats) stay in L2 while every weight tile of the thread passes over them;
// the packed weight tile (kRows x kSlice floats, 12 KB) stays in L1.
constexpr int64_t kSlice = 256;
constexpr int64_t kColBlock = 256;

// acc[i][v][l] += sum over k of w[i][k] * xt[k][16v + l], for V vectors of 16 columns (masks m0, m1 select
// the valid ones). V = 1 serves a last tile of at most 16 columns at half the waste.
template <int R, int V>
CM_AVX512 void tile(const float* wp, int64_t kc, const float* xt, size_t ldx, __mmask16 m0, __mmask16 m1,
                    float* acc, bool first) {
    __m512 a0[R], a1[R];
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
        a0[i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + i * 32);
        if (V == 2) a1[i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + i * 32 + 16);
    }
    for (int64_t k = 0; k < kc; ++k) {
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, xt + k * ldx);
        const __m512 x1 = V == 2 ? _mm512_maskz_loadu_ps(m1, xt + k * ldx + 16) : x0;
#pragma GCC unroll 12
        for (int i = 0; i < R; ++i) {
            const __m512 w = _mm512_set1_ps(wp[i * kc + k]);
            a0[i] = _mm512_fmadd_ps(x0, w, a0[i]);
            if (V == 2) a1[i] = _mm512_fmadd_ps(x1, w, a1[i]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
        _mm512_storeu_ps(acc + i * 32, a0[i]);
        if (V == 2) _mm512_storeu_ps(acc + i * 32 + 16, a1[i]);
    }
}

using TileFn = void (*)(const float*, int64_t, const float*, size_t, __mmask16, __mmask16, float*, bool);

// tile<rows, v> for rows in 1..kRows.
template <int V, int... R>
constexpr TileFn pick(int rows, std::integer_sequence<int, R...>) {
    constexpr TileFn fns[] = {tile<R + 1, V>...};
    return fns[rows - 1];
}

// Rows [0, rows) of F16 weights, columns [k0, k0 + kc), into F32 rows kc apart.
CM_AVX512 void pack(const uint8_t* w, size_t w_row_bytes, int64_t rows, int64_t k0, int64_t kc, float* out) {
    for (int64_t i = 0; i < rows; ++i) {
        const auto* src = reinterpret_cast<const ggml_fp16_t*>(w + i * w_row_bytes) + k0;
        float* dst = out + i * kc;
        int64_t k = 0;
        for (; k + 16 <= kc; k += 16) {
            _mm512_storeu_ps(dst + k, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k))));
        }
        if (k < kc) {
            const __mmask16 m = static_cast<__mmask16>((1u << (kc - k)) - 1);
            _mm512_mask_storeu_ps(dst + k, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + k)));
        }
    }
}

// Columns [c0, c0 + n) of the product for weight rows [r0, r1): k slices outermost, so a slice of x^T is
// reused by every weight tile; partial sums wait in `acc` between slices. x^T comes from memory (xt) or, slice
// by slice, from `gen` into `xbuf`.
CM_AVX512 void gemm_block(const uint8_t* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt,
                          size_t ldx, const XSource* gen, int64_t c0, int64_t n, float* y, size_t ldy, float* wp,
                          float* acc, float* xbuf) {
    const int64_t n_row_tiles = (r1 - r0 + kRows - 1) / kRows, n_col_tiles = (n + kCols - 1) / kCols;
    for (int64_t k0 = 0; k0 < k; k0 += kSlice) {
        const int64_t kc = std::min(kSlice, k - k0);
        const bool first = k0 == 0, last = k0 + kc == k;
        const float* xs = xt + k0 * ldx + c0;
        size_t lds = ldx;
        if (gen) {
            gen->fill(gen->ctx, k0, kc, c0, n, xbuf);
            xs = xbuf;
            lds = size_t(n);
        }
        for (int64_t rt = 0; rt < n_row_tiles; ++rt) {
            const int64_t ra = r0 + rt * kRows, rows = std::min<int64_t>(kRows, r1 - ra);
            pack(w + ra * w_row_bytes, w_row_bytes, rows, k0, kc, wp);
            const TileFn fn2 = pick<2>(int(rows), std::make_integer_sequence<int, kRows>{});
            const TileFn fn1 = pick<1>(int(rows), std::make_integer_sequence<int, kRows>{});
            for (int64_t ct = 0; ct < n_col_tiles; ++ct) {
                const int64_t j0 = ct * kCols, cols = std::min<int64_t>(kCols, n - j0);
                const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
                const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? static_cast<__mmask16>((1u << (cols - 16)) - 1) : 0;
                float* a = acc + (rt * n_col_tiles + ct) * kRows * kCols;
                (cols > 16 ? fn2 : fn1)(wp, kc, xs + j0, lds, m0, m1, a, first);
                if (!last) continue;
                for (int64_t i = 0; i < rows; ++i) {
                    for (int64_t j = 0; j < cols; ++j) y[(c0 + j0 + j) * ldy + ra + i] = a[i * kCols + j];
                }
            }
        }
    }
}

void gemm_any(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt, size_t ldx,
              const XSource* gen, int64_t n, float* y, size_t ldy) {
    // Columns in blocks, so the partial sums of one block (rows x kColBlock floats) stay within L2 for the row
    // ranges threads get, and x^T's slice (kSlice x kColBlock floats, 256 KB) too.
    std::vector<float> wp(size_t(kRows) * kSlice);
    const int64_t cb = std::min(n, kColBlock);
    std::vector<float> acc(size_t((r1 - r0 + kRows - 1) / kRows) * ((cb + kCols - 1) / kCols) * kRows * kCols);
    std::vector<float> xbuf(gen ? size_t(std::min(k, kSlice) * cb) : 0);
    for (int64_t c0 = 0; c0 < n; c0 += kColBlock) {
        gemm_block(static_cast<const uint8_t*>(w), w_row_bytes, k, r0, r1, xt, ldx, gen, c0,
                   std::min(kColBlock, n - c0), y, ldy, wp.data(), acc.data(), xbuf.data());
    }
}

}  // namespace

void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt, size_t ldx,
              int64_t n, float* y, size_t ldy) {
    gemm_any(w, w_row_bytes, k, r0, r1, xt, ldx, nullptr, n, y, ldy);
}

void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const XSource& x, int64_t n,
              float* y, size_t ldy) {
    gemm_any(w, w_row_bytes, k, r0, r1, nullptr, 0, &x, n, y, ldy);
}

#else

void gemm_f16(const void*, size_t, int64_t, int64_t, int64_t, const float*, size_t, int64_t, float*, size_t) {
    std::abort();
}

void gemm_f16(const void*, size_t, int64_t, int64_t, int64_t, const XSource&, int64_t, float*, size_t) { std::abort(); }

#endif

}  // namespace cm::cpu
