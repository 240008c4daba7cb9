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
    CM_T static F zero() { return _mm512_setzero_ps(); }
    CM_T static F set1(float x) { return _mm512_set1_ps(x); }
    CM_T static F load(const float* p) { return _mm512_loadu_ps(p); }
    CM_T static void store(float* p, F x) { _mm512_storeu_ps(p, x); }
    CM_T static F add(F a, F b) { return _mm512_add_ps(a, b); }
    CM_T static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    CM_T static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    CM_T static F div(F a, F b) { return _mm512_div_ps(a, b); }
    CM_T static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    CM_T static F max(F a, F b) { return _mm512_max_ps(a, b); }
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
    CM_T static __m256 fold(F v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)); }
    CM_T static float hsum(F v) {
        const __m256 h = fold(v);
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    }
    CM_T static float hmax(F v) { return _mm512_reduce_max_ps(v); }
    // out[j] = c * (the sum of aj's lanes): each folded to 8 lanes, then pairwise horizontal adds.
    CM_T static inline void reduce8_scaled(F a0, F a1, F a2, F a3, F a4, F a5, F a6, F a7, float c, float* out) {
        const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(fold(a0), fold(a1)), _mm256_hadd_ps(fold(a2), fold(a3)));
        const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(fold(a4), fold(a5)), _mm256_hadd_ps(fold(a6), fold(a7)));
        const __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
        _mm256_storeu_ps(out, _mm256_mul_ps(s, _mm256_set1_ps(c)));
    }
};

#include "cpu/attention_impl.inc"

}  // namespace

void attend_avx512(ggml_type type, const AttnHeads& h, float* work) {
    if (type == GGML_TYPE_F16) {
        attend_impl<true>(h, work);
    } else {
        attend_impl<false>(h, work);
    }
}

}  // namespace cm::cpu

#endif
