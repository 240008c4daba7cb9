// The levels of cpu/attention.h (internal: called by cpu::attend and cpu::store_kv; x86-64 with GCC or Clang).
#pragma once

#include "cpu/attention.h"

namespace cm::cpu {

// work: attention_work_floats(h.d) floats, 64-byte aligned
void attend_avx2(ggml_type type, const AttnHeads& h, float* work);    // d a multiple of 8
void attend_avx512(ggml_type type, const AttnHeads& h, float* work);  // d a multiple of 16
// work: attention_full_work_floats(h.d, h.n_kv) floats, 64-byte aligned
void attend_avx2_full(const AttnHeads& h, float* work);
void attend_avx512_full(const AttnHeads& h, float* work);  // d a multiple of 16
void store_kv_avx2(ggml_type type, const float* x, void* dst, int64_t n);

}  // namespace cm::cpu

// The arithmetic members of a level's vector struct V (see attention_impl.inc) from the intrinsics' prefix
// (_mm256, _mm512) and the vector type; CM_T is the level's target attribute.
#define CM_ATTN_VECTOR_OPS(P, F)                                                  \
    CM_T static F zero() { return P##_setzero_ps(); }                             \
    CM_T static F set1(float x) { return P##_set1_ps(x); }                        \
    CM_T static F load(const float* p) { return P##_loadu_ps(p); }                \
    CM_T static void store(float* p, F x) { P##_storeu_ps(p, x); }                \
    CM_T static F add(F a, F b) { return P##_add_ps(a, b); }                      \
    CM_T static F sub(F a, F b) { return P##_sub_ps(a, b); }                      \
    CM_T static F mul(F a, F b) { return P##_mul_ps(a, b); }                      \
    CM_T static F div(F a, F b) { return P##_div_ps(a, b); }                      \
    CM_T static F fma(F a, F b, F c) { return P##_fmadd_ps(a, b, c); }            \
    CM_T static F max(F a, F b) { return P##_max_ps(a, b); }
