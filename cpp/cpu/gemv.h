// Matrix-vector products for a few activation rows (decoded tokens) on x86 CPUs with AVX-512 VNNI or AVX2.
//
// Why our own kernel: a decode step is one row of activations against every weight matrix, so it should run at
// memory bandwidth. ggml 0.25.3's x86 row dot products (AVX2 for Q4_K and Q8_0) stream weights at 5-7 GB/s on
// one core, where a plain read loop gets 11: a single thread has too few loads in flight. These kernels do the
// same arithmetic (Q4_K/Q8_0: 8-bit activations, integer sums with 512-bit VPDPBUSD; F16: F32 activations)
// with software prefetches 4 KB ahead and reach 9-10 GB/s per core (measured: tests in test_gemv.py,
// benchmarks/RESULTS.md).
// Used through nn::mul_mat for 1..kMaxGemvRows activation rows (short prefill chunks, decode steps) and, in a
// decode step, up to kMaxDecodeRows rows (gemv_rows: one decode step of up to 32 sequences), Q4_K/Q8_0/F16/F32 weights in host memory and a CPU that has the instructions (checked at run
// time, so one build runs everywhere); everything else stays with ggml.
// Two instruction-set levels (cpu/level.h): AVX-512 (here, in gemv.cpp) and AVX2 + FMA + F16C (gemv_avx2.cpp,
// the same arithmetic on 256-bit registers, VPMADDUBSW for VPDPBUSD).
// At the amx level (with AMX-INT8), Q4_K products of 16 or more activation rows (decode steps of many sequences)
// run their integer sums on the tiles (gemv.cpp's q4k_rows16_amx): the same bits as the AVX-512 kernel, faster
// where the VNNI instructions bound it. Every function takes the level it runs at,
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

// gemv() in its two halves, for a caller that runs several products on the same activation rows (gemv_rows):
// gemv_prepare quantizes n_x (any number of) rows x_j = x + j * ldx into `scratch` (n_x * gemv_scratch_bytes(type,
// n) bytes; nothing for F16/F32 weights, which use x as it is); gemv_prepared is then gemv() for n_x
// (1..kMaxGemvRows) of those rows, `prepared` pointing at the first one's part of the scratch. The same
// quantization and arithmetic as gemv(): the same bits.
void gemv_prepare(ggml_type type, int64_t n, const float* x, int64_t ldx, int n_x, void* scratch,
                  Level level = active_level());
void gemv_prepared(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                   int64_t ldx, int n_x, float* y, int64_t ldy, void* prepared, Level level = active_level());

// Most activation rows of a decode step's products (nn::mul_mat inside nn::DecodeRows: one row per sequence; the
// engine's steps hold at most this many sequences). 32: a 10-minute recording's 23 passes, or a folder's 32
// clips, share every step; beyond, the fixed weight read (~50 ms a step for MOSS-Transcribe Q4_K on 2 cores) is
// already under a sixth of a step that costs ~8 ms a row, and every sequence's step latency grows with the rows.
constexpr int kMaxDecodeRows = 32;

// Weight bytes gemv_rows() walks at a time: small enough to stay in L2 (2 MB a core on the machines measured)
// beside the activations while each group of kMaxGemvRows activation rows passes over them.
constexpr size_t kGemvRowsBlockBytes = 256 * 1024;

// gemv() for any number n_x >= 1 of activation rows with each weight row read from memory once: up to
// kMaxGemvRows rows it is gemv(); beyond, the rows are quantized once (gemv_prepare) and rows [r0, r1) walked in
// sub-blocks of about block_bytes (whole groups of 16 weight rows), each sub-block passed to gemv_prepared for
// every group of kMaxGemvRows activation rows in turn (the later groups read it from cache). Each row's result is
// the bits gemv() gives it alone. `scratch`: n_x * gemv_scratch_bytes(type, n) bytes.
void gemv_rows(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
               int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, Level level = active_level(),
               size_t block_bytes = kGemvRowsBlockBytes);

// GELU with the exact erf form, y = x/2 (1 + erf(x/sqrt 2)), for n floats: ggml computes it with scalar erff
// (7.5 ns a value, 6 % of the encoder); this is a 16-wide version (|error| < 2e-7 relative to max(1, |y|)), and
// an 8-wide one at the AVX2 level that gives the same bits. Same availability as gemv().
void gelu_erf(const float* x, float* y, int64_t n, Level level = active_level());

}  // namespace cm::cpu
