#include "cpu/gemv.h"

#include "cpu/gemv_avx2.h"
#include "cpu/gemv_common.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#define CM_GEMV_X86 1
#include <immintrin.h>
#if !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn wherever they are inlined (GCC bug
// 105593, fixed in GCC 13): silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#endif

namespace cm::cpu {

#ifdef CM_GEMV_X86

namespace {

using namespace detail;

// Horizontal reductions written out (GCC 12's _mm512_reduce_* start from an undefined register and warn).
CM_AVX512 float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

CM_AVX512 float hsum(__m512 v) { return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1))); }

CM_AVX512 float hmax(__m512 v) {
    const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

CM_AVX512 float fp16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Q4_K's activations (ActQ4K, gemv_common.h) are stored so that one 64-byte load lines up with the low or the high
// nibbles of 64 weight bytes: sub-blocks in the order 0 2 1 3 4 6 5 7.

// Quantizes 32 floats with the inverse scale (round to nearest even, saturated to int8).
CM_AVX512 void quantize32(const float* x, float iscale, int8_t* q) {
    const __m512 s = _mm512_set1_ps(iscale);
    const __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), s));
    const __m512i b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16), s));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(a));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(b));
}

CM_AVX512 float abs_max(const float* x, int n) {
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    return hmax(m);
}

CM_AVX512 int32_t sum32(const int8_t* q) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    const __m512i s = _mm512_madd_epi16(_mm512_cvtepi8_epi16(v), _mm512_set1_epi16(1));  // 16 sums of 2
    return int32_t(hsum(_mm512_cvtepi32_ps(s)));  // exact: |sum| <= 32 * 127
}

CM_AVX512 void quantize_q4k(const float* x, int64_t n, ActQ4K a) {
    static constexpr int kOrder[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int64_t i = 0; i < n / kQK; ++i) {
        const float* xb = x + i * kQK;
        const float amax = abs_max(xb, kQK);
        const float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
        a.d[i] = amax / 127.0f;
        int8_t* qb = a.q + i * kQK;
        for (int k = 0; k < 8; ++k) {
            int8_t* dst = qb + 32 * k;
            quantize32(xb + 32 * kOrder[k], iscale, dst);
            a.sums[8 * i + kOrder[k]] = sum32(dst);
        }
    }
}

// G activation rows against one Q4_K weight row: out[j] = dot(row, x_j). The weight-side work (nibbles, scales)
// is done once per block for all G rows; each row's arithmetic is the same instruction sequence whatever G is, so
// a row's result does not depend on which rows share the call (G = 1 is the one-row kernel).
// The sub-block scales multiply the VPDPBUSD sums with VPMADDWD / VPDPWSSD: a sum of four u4 x s8 products is at
// most 4 * 15 * 127 in magnitude, so it sits in the low 16 bits of its lane (the high 16 are its sign) and the
// scales (6 bits) have zero high halves: the 16-bit products are the exact 32-bit ones.
template <int G>
CM_AVX512 void dot_q4k(const uint8_t* row, int64_t nb, const ActQ4K* a, float* out) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i zero = _mm512_setzero_si512();
    // Lane groups of the four VPDPBUSD results: (sub-block 0 | 2), (1 | 3), (4 | 6), (5 | 7).
    const __m512i i0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i i1 = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m512i i2 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    const __m512i i3 = _mm512_setr_epi32(5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7);
    __m512 acc[G];
    __m256 acc_min[G];
    for (int j = 0; j < G; ++j) acc[j] = _mm512_setzero_ps(), acc_min[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i, row += kQ4KBytes) {
        const float wd = fp16(row), wdmin = fp16(row + 2);
        uint32_t s0, s1, s2;
        std::memcpy(&s0, row + 4, 4);
        std::memcpy(&s1, row + 8, 4);
        std::memcpy(&s2, row + 12, 4);
        // Scales 0-3 and mins 0-3 are the low 6 bits of bytes 0-3 and 4-7; scales and mins 4-7 take their low
        // 4 bits from the nibbles of bytes 8-11 and their top 2 bits from the top bits of bytes 0-3 and 4-7.
        const uint32_t sc_lo = s0 & 0x3f3f3f3f, mn_lo = s1 & 0x3f3f3f3f;
        const uint32_t sc_hi = (s2 & 0x0f0f0f0f) | ((s0 >> 2) & 0x30303030);
        const uint32_t mn_hi = ((s2 >> 4) & 0x0f0f0f0f) | ((s1 >> 2) & 0x30303030);
        const __m512i sm = _mm512_cvtepu8_epi32(_mm_setr_epi32(int(sc_lo), int(sc_hi), int(mn_lo), int(mn_hi)));
        const __m512i sc0 = _mm512_permutexvar_epi32(i0, sm), sc1 = _mm512_permutexvar_epi32(i1, sm);
        const __m512i sc2 = _mm512_permutexvar_epi32(i2, sm), sc3 = _mm512_permutexvar_epi32(i3, sm);
        const __m256i mins = _mm512_extracti32x8_epi32(sm, 1);

        const uint8_t* qs = row + 16;
        _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetch, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetch + 64, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetch + 128, _MM_HINT_T0);
        const __m512i w0 = _mm512_loadu_si512(qs), w1 = _mm512_loadu_si512(qs + 64);
        const __m512i n0 = _mm512_and_si512(w0, m4), n1 = _mm512_and_si512(_mm512_srli_epi16(w0, 4), m4);
        const __m512i n2 = _mm512_and_si512(w1, m4), n3 = _mm512_and_si512(_mm512_srli_epi16(w1, 4), m4);
        for (int j = 0; j < G; ++j) {
            const int8_t* xq = a[j].q + i * kQK;
            const __m512i p0 = _mm512_dpbusd_epi32(zero, n0, _mm512_loadu_si512(xq));
            const __m512i p1 = _mm512_dpbusd_epi32(zero, n1, _mm512_loadu_si512(xq + 64));
            const __m512i p2 = _mm512_dpbusd_epi32(zero, n2, _mm512_loadu_si512(xq + 128));
            const __m512i p3 = _mm512_dpbusd_epi32(zero, n3, _mm512_loadu_si512(xq + 192));
            __m512i s = _mm512_madd_epi16(p0, sc0);
            s = _mm512_dpwssd_epi32(s, p1, sc1);
            s = _mm512_dpwssd_epi32(s, p2, sc2);
            s = _mm512_dpwssd_epi32(s, p3, sc3);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(wd * a[j].d[i]), acc[j]);
            // the sub-block sums are at most 32 * 127 in magnitude: 16-bit products again
            const __m256i ms = _mm256_madd_epi16(mins, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[j].sums + 8 * i)));
            acc_min[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(wdmin * a[j].d[i]), acc_min[j]);
        }
    }
    for (int j = 0; j < G; ++j) out[j] = hsum(acc[j]) - hsum(acc_min[j]);
}

void quantize_q80(const float* x, int64_t n, ActQ80 a) { quantize_q80_with(x, n, a, abs_max, quantize32); }

// G activation rows against one Q8_0 weight row (same contract as dot_q4k).
template <int G>
CM_AVX512 void dot_q80(const uint8_t* row, int64_t nb, const ActQ80* a, float* out) {
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[G];
    __m256 tail[G];
    for (int j = 0; j < G; ++j) acc[j] = _mm512_setzero_ps(), tail[j] = _mm256_setzero_ps();
    int64_t i = 0;
    // VPDPBUSD multiplies unsigned by signed bytes: |w| times x with w's sign (|-128| = 128 as unsigned).
    for (; i + 1 < nb; i += 2) {
        const uint8_t* b0 = row + i * kQ8Bytes;
        const uint8_t* b1 = b0 + kQ8Bytes;
        _mm_prefetch(reinterpret_cast<const char*>(b0) + kPrefetch, _MM_HINT_T0);
        const __m512i w = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2)), 1);
        const __mmask64 neg = _mm512_movepi8_mask(w);
        const __m512i wabs = _mm512_abs_epi8(w);
        const float d0 = fp16(b0), d1 = fp16(b1);
        for (int j = 0; j < G; ++j) {
            const __m512i x = _mm512_loadu_si512(a[j].q + i * kQ8Block);
            const __m512i xs = _mm512_mask_sub_epi8(x, neg, zero, x);
            const __m512i p = _mm512_dpbusd_epi32(zero, wabs, xs);
            const __m512 sv = _mm512_insertf32x8(_mm512_set1_ps(d0 * a[j].d[i]), _mm256_set1_ps(d1 * a[j].d[i + 1]), 1);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sv, acc[j]);
        }
    }
    if (i < nb) {  // an odd block count: the last block on its own
        const uint8_t* b = row + i * kQ8Bytes;
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
        const __mmask32 neg = _mm256_movepi8_mask(w);
        const __m256i wabs = _mm256_abs_epi8(w);
        const float d = fp16(b);
        for (int j = 0; j < G; ++j) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[j].q + i * kQ8Block));
            const __m256i xs = _mm256_mask_sub_epi8(x, neg, _mm256_setzero_si256(), x);
            const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wabs, xs);
            tail[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * a[j].d[i]));
        }
    }
    for (int j = 0; j < G; ++j) out[j] = hsum(acc[j]) + hsum(tail[j]);
}

// F16 (or F32) weights against F32 activations (no rounding of x, unlike ggml's F16 path which rounds x to F16).
template <bool F16>
CM_AVX512 __m512 load_w(const uint8_t* row, int64_t i) {
    if constexpr (F16) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
    } else {
        return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
    }
}

template <bool F16>
CM_AVX512 __m512 load_w_tail(const uint8_t* row, int64_t i, __mmask16 m) {
    if constexpr (F16) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + i));
    } else {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
    }
}

// R weight rows (w_r = row + r * row_bytes) against G activation rows (x_j = x + j * ldx), F16 or F32 weights:
// out[r * G + j] = dot(w_r, x_j). Every (r, j) pair has accumulators of its own and the one-row kernel's order
// (even 16-wide chunks in a0, odd in a1, the masked tail into a0, hsum(a0 + a1)), so a pair's result does not
// depend on R, G or the other rows. Several weight rows per pass let each activation load serve R rows: with many
// activation rows, reading x (8 KB a row for the LM's width) for every weight row, not the weights, would bind.
template <int R, int G, bool F16>
CM_AVX512 void dot_float(const uint8_t* row, size_t row_bytes, int64_t n, const float* x, int64_t ldx, float* out) {
    constexpr int kBytes = F16 ? 2 : 4;
    __m512 a0[R][G], a1[R][G];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) a0[r][j] = _mm512_setzero_ps(), a1[r][j] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0[R], w1[R];
        for (int r = 0; r < R; ++r) {
            const uint8_t* wr = row + r * row_bytes;
            _mm_prefetch(reinterpret_cast<const char*>(wr + kBytes * i) + kPrefetch, _MM_HINT_T0);
            if constexpr (!F16) _mm_prefetch(reinterpret_cast<const char*>(wr + kBytes * i) + kPrefetch + 64, _MM_HINT_T0);
            w0[r] = load_w<F16>(wr, i);
            w1[r] = load_w<F16>(wr, i + 16);
        }
        for (int j = 0; j < G; ++j) {
            const __m512 x0 = _mm512_loadu_ps(x + j * ldx + i), x1 = _mm512_loadu_ps(x + j * ldx + i + 16);
            for (int r = 0; r < R; ++r) {
                a0[r][j] = _mm512_fmadd_ps(w0[r], x0, a0[r][j]);
                a1[r][j] = _mm512_fmadd_ps(w1[r], x1, a1[r][j]);
            }
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
        for (int r = 0; r < R; ++r) {
            const __m512 w = load_w_tail<F16>(row + r * row_bytes, i, m);
            for (int j = 0; j < G; ++j) a0[r][j] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + j * ldx + i), a0[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) out[r * G + j] = hsum(_mm512_add_ps(a0[r][j], a1[r][j]));
}

// F16/F32 weights, rows [r0, r1) against n_x activation rows: blocks of 4 weight rows by 2 activation rows (16
// accumulator registers), tails with fewer.
template <bool F16>
void gemv_float(const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                          int64_t ldx, int n_x, float* y, int64_t ldy) {
    gemv_float_blocks(r0, r1, n_x, y, ldy, [&](auto rr, auto g, int64_t r, int j, float* out) {
        dot_float<decltype(rr)::value, decltype(g)::value, F16>(rows + r * row_bytes, row_bytes, n, x + j * ldx, ldx,
                                                                 out);
    });
}

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7): erf(a) = 1 - t (a1 + t (a2 + ... a5)) exp(-a^2),
// t = 1 / (1 + p a), a = |x|, sign restored; exp by Cody-Waite reduction to [-ln2/2, ln2/2], a degree-6
// polynomial and VSCALEFPS.
CM_AVX512 __m512 exp_neg(__m512 z) {  // exp(z) for z in [-88, 0]
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(z, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), z);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

CM_AVX512 __m512 gelu16(__m512 x) {
    const __m512 u = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
    const __m512 a = _mm512_min_ps(_mm512_abs_ps(u), _mm512_set1_ps(9.0f));
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 q = _mm512_set1_ps(1.061405429f);
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-1.453152027f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.421413741f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-0.284496736f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0.254829592f));
    q = _mm512_mul_ps(q, t);
    const __m512 erf_a = _mm512_fnmadd_ps(q, exp_neg(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)),
                                          _mm512_set1_ps(1.0f));
    // 1 + erf(u): erf takes the sign of u
    const __mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 one_plus = _mm512_mask_sub_ps(_mm512_add_ps(_mm512_set1_ps(1.0f), erf_a), neg,
                                               _mm512_set1_ps(1.0f), erf_a);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), one_plus);
}

CM_AVX512 void gelu_erf_avx512(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

}  // namespace

bool gemv_available() { return active_level() != Level::none; }

namespace {

#ifndef CM_Q4K_GROUP
#define CM_Q4K_GROUP 8
#endif
constexpr int kQ4KGroup = CM_Q4K_GROUP;

}  // namespace

void gemv(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
          int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, Level level) {
    if (level == Level::avx2) return gemv_avx2(type, w, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch);
    if (level != Level::avx512 && level != Level::amx) std::abort();  // callers check gemv_available()
    const auto* rows = static_cast<const uint8_t*>(w);
    if (type == GGML_TYPE_F16) return gemv_float<true>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy);
    if (type == GGML_TYPE_F32) return gemv_float<false>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy);
    if (type == GGML_TYPE_Q4_K) {
        return gemv_quantized<kQ4KGroup>(type, rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, act_q4k,
                                         quantize_q4k, [n](auto g, const uint8_t* row, const ActQ4K* a, float* out) {
                                             dot_q4k<decltype(g)::value>(row, n / kQK, a, out);
                                         });
    }
    gemv_quantized<4>(type, rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, act_q80, quantize_q80,
                      [n](auto g, const uint8_t* row, const ActQ80* a, float* out) {
                          dot_q80<decltype(g)::value>(row, n / kQ8Block, a, out);
                      });
}

void gelu_erf(const float* x, float* y, int64_t n, Level level) {
    if (level == Level::avx2) return gelu_erf_avx2(x, y, n);
    if (level != Level::avx512 && level != Level::amx) std::abort();
    gelu_erf_avx512(x, y, n);
}

#else  // not x86-64 with GCC/Clang: ggml's kernels serve every case

bool gemv_available() { return false; }

void gemv(ggml_type, const void*, size_t, int64_t, int64_t, int64_t, const float*, int64_t, int, float*, int64_t, void*,
          Level) {
    std::abort();
}

void gelu_erf(const float*, float*, int64_t, Level) { std::abort(); }

#endif

bool gemv_supports(ggml_type type) {
    return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q8_0 || type == GGML_TYPE_F16 || type == GGML_TYPE_F32;
}

size_t gemv_scratch_bytes(ggml_type type, int64_t n) {
    // int8 values, then one float per block (and for Q4_K eight int32 sums per block)
    if (type == GGML_TYPE_F16 || type == GGML_TYPE_F32) return 0;  // x is used as it is
    return type == GGML_TYPE_Q4_K ? size_t(n) + 4 * size_t(n / kQK) * 9 : size_t(n) + 4 * size_t(n / kQ8Block);
}

}  // namespace cm::cpu
