// The AVX2 + FMA + F16C level of cpu/attention.h: the kernel of attention_impl.inc on 8-lane vectors. Compiled
// with per-function target attributes, so the binary runs on any x86-64 CPU; cpu/attention.cpp calls it only when
// the level allows.
#include "cpu/attention_x86.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#include <cmath>
#include <cstring>

#define CM_T __attribute__((target("avx2,fma,f16c")))

namespace cm::cpu {

namespace {

struct V {
    using F = __m256;
    static constexpr int W = 8;
    static constexpr int kAcc = 8;
    static constexpr int kFullRows = 5, kFullKeys = 2, kFullCols = 2;  // 10 accumulators of 16 registers
    CM_ATTN_VECTOR_OPS(_mm256, F)
    CM_T static F load_h(const uint8_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    CM_T static F load_f(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
    CM_T static F round(F x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    CM_T static F pow2(F n) {
        const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
        return _mm256_castsi256_ps(e);
    }
    CM_T static F zero_below(F x, float c, F y) {
        return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(c), _CMP_GE_OQ), y);
    }
    CM_T static float hsum(F v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    }
    CM_T static float hmax(F v) {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    }
    // out[j] = c * (the sum of a[j]'s lanes) for 8 vectors (pairwise horizontal adds, then the halves), the same
    // order for every j.
    CM_T static inline void reduce_scaled(const F* a, float c, float* out) {
        const F h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
        const F h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
        const F s = _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
        _mm256_storeu_ps(out, _mm256_mul_ps(s, _mm256_set1_ps(c)));
    }
};

#include "cpu/attention_impl.inc"

}  // namespace

CM_ATTN_ENTRY(attend_avx2)


CM_T void store_kv_avx2(ggml_type type, const float* x, void* dst, int64_t n) {
    if (type != GGML_TYPE_F16) {
        std::memcpy(dst, x, size_t(n) * sizeof(float));
        return;
    }
    auto* o = static_cast<uint8_t*>(dst);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; ++i) {
        const uint16_t v = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        std::memcpy(o + 2 * i, &v, 2);
    }
}

}  // namespace cm::cpu

#endif
