// The levels of cpu/attention.h (internal: called by cpu::attend and cpu::store_kv; x86-64 with GCC or Clang).
#pragma once

#include "cpu/attention.h"

namespace cm::cpu {

// work: attention_work_floats(h.d) floats, 64-byte aligned
void attend_avx2(ggml_type type, const AttnHeads& h, float* work);    // d a multiple of 8
void attend_avx512(ggml_type type, const AttnHeads& h, float* work);  // d a multiple of 16
void store_kv_avx2(ggml_type type, const float* x, void* dst, int64_t n);

}  // namespace cm::cpu
