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
    CM_T static __m256 fold(F v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)); }
    CM_T static float hsum(F v) { return _mm512_reduce_add_ps(v); }
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

CM_ATTN_ENTRY(attend_avx512)


}  // namespace cm::cpu

#endif
