// The AVX2 level of the kernels in cpu/gemv.h (internal: called by cpu::gemv and cpu::gelu_erf when
// cpu::active_level() is Level::avx2; x86-64 with GCC or Clang only).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/gemv.h"

namespace cm::cpu {

// cpu::gemv at the AVX2 level; `prepared`: cpu::gemv_prepared (the scratch holds x quantized by gemv_prepare_avx2).
void gemv_avx2(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
               int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, bool prepared = false);

// cpu::gemv_prepare at the AVX2 level.
void gemv_prepare_avx2(ggml_type type, int64_t n, const float* x, int64_t ldx, int n_x, void* scratch);

// cpu::gelu_erf at the AVX2 level (bit-identical to the AVX-512 level).
void gelu_erf_avx2(const float* x, float* y, int64_t n);

}  // namespace cm::cpu
