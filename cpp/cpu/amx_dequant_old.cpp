// TEMPORARY (branch amx-swap): the VNNI-layout dequant path before the operand swap, for the bit comparison
// and same-process timing. Removed before merge.
#include "cpu/amx_dequant.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cpu/amx.h"

#if defined(__linux__) && defined(__x86_64__) && defined(__GNUC__)
#define CM_AMX_DQ_OLD 1
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 + AVX-512 intrinsics, see gemv.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Per function (see amx.cpp): nothing here may be compiled for AVX-512 where another CPU could run it.
#define CM_DQ_FN_OLD __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#endif

namespace cm::cpu::old {

constexpr int64_t kOldRows = 32;

#ifdef CM_AMX_DQ_OLD

namespace {

// ggml's block layouts (facts from ggml-common.h; the code is ours).
// Q4_K: 256 values in 144 bytes: d (F16), dmin (F16), 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32,
// 128 bytes of 4-bit quants: sub-block 2c in the low nibbles of bytes 32c..32c+31, sub-block 2c+1 in their high
// nibbles. Value = d * sc * q - dmin * m.
constexpr int64_t kQ4kValues = 256, kQ4kBytes = 144, kQ4kQs = 16;
// Q8_0: 32 values in 34 bytes: d (F16), 32 signed 8-bit quants. Value = d * q.
constexpr int64_t kQ80Values = 32, kQ80Bytes = 34;

CM_DQ_FN_OLD inline float half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Sub-block j's 6-bit scale and min of a Q4_K block's 12 scale bytes (ggml's packing).
inline void q4k_scale_min(const uint8_t* s, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Butterfly index vectors of the 16 x 16 transpose of 32-bit values: stage h exchanges bit h of the row index
// with bit h of the lane index (lo: rows with bit h clear, hi: set).
struct Transpose {
    __m512i lo[4], hi[4];
    CM_DQ_FN_OLD Transpose() {
        for (int s = 0; s < 4; ++s) {
            const int h = 8 >> s;
            alignas(64) int32_t a[16], b[16];
            for (int l = 0; l < 16; ++l) {
                a[l] = (l & h) ? 16 + l - h : l;
                b[l] = (l & h) ? 16 + l : l + h;
            }
            lo[s] = _mm512_load_si512(a);
            hi[s] = _mm512_load_si512(b);
        }
    }
};

// r[f] holds row f's 32 BF16 values of one k block (as 16 pairs); the tile wants pair i of rows 0..15 in its row
// i: the 16 x 16 transpose of the pairs, then 16 stores of 64 bytes.
CM_DQ_FN_OLD inline void store_tile(__m512i r[16], const Transpose& t, uint16_t* tile) {
    for (int s = 0; s < 4; ++s) {
        const int h = 8 >> s;
        for (int a = 0; a < 16; ++a) {
            if (a & h) continue;
            const __m512i x = r[a], y = r[a + h];
            r[a] = _mm512_permutex2var_epi32(x, t.lo[s], y);
            r[a + h] = _mm512_permutex2var_epi32(x, t.hi[s], y);
        }
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_si512(tile + 32 * i, r[i]);
}

CM_DQ_FN_OLD inline __m512i to_bf16_pair(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

// One panel (16 rows from `row0`, `valid` of them real) of a Q4_K matrix.
CM_DQ_FN_OLD void panel_q4k(const uint8_t* row0, size_t rb, int valid, int64_t k, uint16_t* out, const Transpose& t) {
    const int64_t n_sb = k / kQ4kValues;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    alignas(64) float dsc[16][8], dmn[16][8];
    __m512i r[16];
    for (int64_t sb = 0; sb < n_sb; ++sb) {
        for (int f = 0; f < valid; ++f) {
            const uint8_t* b = row0 + f * rb + sb * kQ4kBytes;
            _mm_prefetch(reinterpret_cast<const char*>(b + 2 * kQ4kBytes), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + 2 * kQ4kBytes + 64), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + 2 * kQ4kBytes + 128), _MM_HINT_T0);
            const float d = half(b), dmin = half(b + 2);
            for (int j = 0; j < 8; ++j) {
                int sc, m;
                q4k_scale_min(b + 4, j, &sc, &m);
                dsc[f][j] = d * float(sc);  // exact: 11 x 6 significant bits
                dmn[f][j] = dmin * float(m);
            }
        }
        for (int j = 0; j < 8; ++j) {
            for (int f = 0; f < 16; ++f) {
                if (f >= valid) {
                    r[f] = _mm512_setzero_si512();
                    continue;
                }
                const uint8_t* qs = row0 + f * rb + sb * kQ4kBytes + kQ4kQs + 32 * (j / 2);
                __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
                if (j & 1) q = _mm256_srli_epi16(q, 4);
                q = _mm256_and_si256(q, low4);
                const __m512 scale = _mm512_set1_ps(dsc[f][j]), negmin = _mm512_set1_ps(-dmn[f][j]);
                // d*sc*q exact (+4 bits), so the FMA rounds once, as ggml's d1 * q - m1 does.
                const __m512 a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q))),
                                                 scale, negmin);
                const __m512 c = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1))),
                                                 scale, negmin);
                r[f] = to_bf16_pair(a, c);
            }
            store_tile(r, t, out + (sb * 8 + j) * 512);
        }
    }
}

CM_DQ_FN_OLD void panel_q80(const uint8_t* row0, size_t rb, int valid, int64_t k, uint16_t* out, const Transpose& t) {
    const int64_t n_b = k / kQ80Values;
    __m512i r[16];
    for (int64_t kb = 0; kb < n_b; ++kb) {
        for (int f = 0; f < 16; ++f) {
            if (f >= valid) {
                r[f] = _mm512_setzero_si512();
                continue;
            }
            const uint8_t* b = row0 + f * rb + kb * kQ80Bytes;
            _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kQ80Bytes), _MM_HINT_T0);
            const __m512 d = _mm512_set1_ps(half(b));
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
            const __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), d);
            const __m512 c = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), d);
            r[f] = to_bf16_pair(a, c);  // d * q exact in F32 (11 x 8 bits), one rounding to BF16
        }
        store_tile(r, t, out + kb * 512);
    }
}

// F16 (bf16_in false) or BF16 rows of any k: the last block masked, zeros beyond k.
CM_DQ_FN_OLD void panel_16bit(const uint8_t* row0, size_t rb, int valid, int64_t k, bool bf16_in, uint16_t* out,
                          const Transpose& t) {
    const int64_t kb_n = amx_k_pad(k) / 32;
    __m512i r[16];
    for (int64_t kb = 0; kb < kb_n; ++kb) {
        const int64_t left = k - kb * 32;
        const __mmask32 m = left >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1ull << left) - 1);
        for (int f = 0; f < 16; ++f) {
            if (f >= valid) {
                r[f] = _mm512_setzero_si512();
                continue;
            }
            const auto* src = reinterpret_cast<const uint16_t*>(row0 + f * rb) + kb * 32;
            _mm_prefetch(reinterpret_cast<const char*>(src + 256), _MM_HINT_T0);
            const __m512i v = _mm512_maskz_loadu_epi16(m, src);
            if (bf16_in) {
                r[f] = v;
            } else {
                const __m512 a = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
                const __m512 c = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1));
                r[f] = to_bf16_pair(a, c);  // as amx_pack_f16
            }
        }
        store_tile(r, t, out + kb * 512);
    }
}

CM_DQ_FN_OLD void dequant_tiles(ggml_type type, const void* w, size_t rb, int64_t k, int64_t r0, int64_t nr, uint16_t* out) {
    static const Transpose t;
    const int64_t pe = amx_k_pad(k) * 16;  // values of a panel
    for (int64_t p = 0; p * 16 < nr; ++p) {
        const uint8_t* row0 = static_cast<const uint8_t*>(w) + (r0 + 16 * p) * rb;
        const int valid = int(std::min<int64_t>(16, nr - 16 * p));
        uint16_t* po = out + p * pe;
        switch (type) {
            case GGML_TYPE_Q4_K: panel_q4k(row0, rb, valid, k, po, t); break;
            case GGML_TYPE_Q8_0: panel_q80(row0, rb, valid, k, po, t); break;
            case GGML_TYPE_F16: panel_16bit(row0, rb, valid, k, false, po, t); break;
            case GGML_TYPE_BF16: panel_16bit(row0, rb, valid, k, true, po, t); break;
            default: std::abort();
        }
    }
}

}  // namespace

void amx_dequant_tiles_old(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t nr,
                       uint16_t* out) {
    if (nr > 0) dequant_tiles(type, w, row_bytes, k, r0, nr, out);
}

void amx_gemm_dequant_old(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t r1,
                      const uint16_t* xh, int64_t n, float* y, size_t ldy, uint16_t* scratch) {
    if (n <= 0) return;
    for (int64_t r = r0; r < r1; r += kOldRows) {
        const int64_t nr = std::min(kOldRows, r1 - r);
        dequant_tiles(type, w, row_bytes, k, r, nr, scratch);
        // A view of the block as a matrix of nr rows (no memory of its own): amx_gemm's public entry.
        AmxMatrix view;
        view.rows = nr, view.k = k, view.rows_pad = amx_rows_pad(nr), view.k_pad = amx_k_pad(k);
        view.hi = scratch;
        amx_gemm(view, 0, nr, xh, nullptr, n, y + r, ldy);
    }
}

#else

void amx_dequant_tiles_old(ggml_type, const void*, size_t, int64_t, int64_t, int64_t, uint16_t*) { std::abort(); }
void amx_gemm_dequant_old(ggml_type, const void*, size_t, int64_t, int64_t, int64_t, const uint16_t*, int64_t, float*,
                      size_t, uint16_t*) {
    std::abort();
}

#endif

}  // namespace cm::cpu
