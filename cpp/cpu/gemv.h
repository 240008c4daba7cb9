// Matrix-vector products for a few activation rows (decoded tokens) on x86 CPUs with AVX-512 VNNI or AVX2.
//
// Why our own kernel: a decode step is one row of activations against every weight matrix, so it should run at
// memory bandwidth. ggml 0.25.3's x86 row dot products (AVX2 for Q4_K and Q8_0) stream weights at 5-7 GB/s on
// one core, where a plain read loop gets 11: a single thread has too few loads in flight. These kernels do the
// same arithmetic (Q4_K/Q8_0: 8-bit activations, integer sums with 512-bit VPDPBUSD; F16: F32 activations)
// with software prefetches 4 KB ahead and reach 9-10 GB/s per core (measured: tests in test_gemv.py,
// benchmarks/RESULTS.md).
// Used through nn::mul_mat for 1..kMaxGemvRows activation rows (one decode step of up to 16 sequences, short
// prefill chunks), Q4_K/Q8_0/F16/F32 weights in host memory and a CPU that has the instructions (checked at run
// time, so one build runs everywhere); everything else stays with ggml.
// Two instruction-set levels (cpu/level.h): AVX-512 (here, in gemv.cpp) and AVX2 + FMA + F16C (gemv_avx2.cpp,
// the same arithmetic on 256-bit registers, VPMADDUBSW for VPDPBUSD). Every function takes the level it runs at,
// by default cpu::active_level(); the exactness contract below holds within each level.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/level.h"
#include "ggml.h"

namespace cm::cpu {

// True when our kernels run: active_level() is not Level::none (the CPU and OS support AVX2 + FMA + F16C or
// more, and neither CRISPMOSS_GEMV=ggml nor CRISPMOSS_CPU=ggml turned them off).
bool gemv_available();

// Whether gemv() handles weights of this type.
bool gemv_supports(ggml_type type);

// Most activation rows one gemv() call takes (decode steps of several sequences, short prefill chunks).
constexpr int kMaxGemvRows = 16;

// Bytes of scratch gemv() needs per activation row of n values (x quantized to 8 bits; 0 for F16/F32 weights).
size_t gemv_scratch_bytes(ggml_type type, int64_t n);

// y[j * ldy + r] = dot(row r of w, x_j) for r in [r0, r1) and the n_x (1..kMaxGemvRows) activation rows
// x_j = x + j * ldx. w: rows of `type` blocks, `row_bytes` apart, n values each (n a multiple of the block size).
// The weights are read from memory once for all rows. Each row's result is computed by exactly the same
// arithmetic whatever n_x is and whichever rows share the call: a sequence decoded in a batch gets the bits it
// gets alone. `scratch`: n_x * gemv_scratch_bytes(type, n) bytes.
void gemv(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
          int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, Level level = active_level());

// GELU with the exact erf form, y = x/2 (1 + erf(x/sqrt 2)), for n floats: ggml computes it with scalar erff
// (7.5 ns a value, 6 % of the encoder); this is a 16-wide version (|error| < 2e-7 relative to max(1, |y|)), and
// an 8-wide one at the AVX2 level that gives the same bits. Same availability as gemv().
void gelu_erf(const float* x, float* y, int64_t n, Level level = active_level());

}  // namespace cm::cpu
