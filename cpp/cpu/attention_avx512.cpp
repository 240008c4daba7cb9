// The AVX-512 level of cpu/attention.h: the kernel of attention_impl.inc on 16-lane vectors (head sizes that are
// multiples of 16; cpu/attention.cpp sends others to the AVX2 kernel). Per-function target attributes, as
// attention_avx2.cpp.
#include "cpu/attention_x86.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#include <cmath>

#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 + AVX-512 intrinsics (bug 105593), see gemv.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define CM_T __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

namespace cm::cpu {

namespace {

struct V {
    using F = __m512;
    static constexpr int W = 16;
    static constexpr int kAcc = 16;
    static constexpr int kFullRows = 6, kFullKeys = 4, kFullCols = 4;  // 24 accumulators of 32 registers
    CM_ATTN_VECTOR_OPS(_mm512, F)
    CM_T static F load_h(const uint8_t* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    CM_T static F load_f(const uint8_t* p) { return _mm512_loadu_ps(p); }
    CM_T static F round(F x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    CM_T static F pow2(F n) {
        const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
        return _mm512_castsi512_ps(e);
    }
    CM_T static F zero_below(F x, float c, F y) {
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(c), _CMP_GE_OQ), y);
    }
    CM_T static float hsum(F v) { return _mm512_reduce_add_ps(v); }
    CM_T static float hmax(F v) { return _mm512_reduce_max_ps(v); }
    // out[j] = c * (the sum of a[j]'s lanes) for 16 vectors: a transpose-and-add tree (lanes i and i + 2 of each
    // 128-bit piece, then the pairs, then the pieces), the same order for every j.
    CM_T static inline void reduce_scaled(const F* a, float c, float* out) {
        F b[8], d[4];
        for (int i = 0; i < 8; ++i) b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                                                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
        for (int i = 0; i < 4; ++i) {
            const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
            d[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
        }
        const F e0 = _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], 0x88), _mm512_shuffle_f32x4(d[0], d[1], 0xdd));
        const F e1 = _mm512_add_ps(_mm512_shuffle_f32x4(d[2], d[3], 0x88), _mm512_shuffle_f32x4(d[2], d[3], 0xdd));
        const F s = _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, 0x88), _mm512_shuffle_f32x4(e0, e1, 0xdd));
        _mm512_storeu_ps(out, _mm512_mul_ps(s, _mm512_set1_ps(c)));
    }
};

#include "cpu/attention_impl.inc"

}  // namespace

CM_ATTN_ENTRY(attend_avx512)


}  // namespace cm::cpu

#endif
