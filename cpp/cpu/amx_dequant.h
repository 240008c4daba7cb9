// Products of quantized (Q4_K, Q8_0) and F16/BF16 weights on the AMX tiles without a BF16 copy of the weights, for
// the decoder's prefill (nn::mul_mat with more than kMaxGemvRows activation rows at the amx level); decode steps (at
// most kMaxDecodeRows rows, built inside nn::DecodeRows) keep the matrix-vector kernels.
//
// Roles of the operands (the reverse of amx_gemm's): the WEIGHTS are TDPBF16PS's A operand — a 16 x 32 BF16 A tile
// is 16 weight rows' 32 consecutive values of k, so a weight block is dequantized straight to row-major BF16 (no
// transpose); the ACTIVATIONS are the B operand, in VNNI pairs, converted from F32 once per product
// (amx_convert_rows_b: one 16 x 16 32-bit transpose per tile, paid on the activations, not per weight block). A C
// tile holds 16 weight rows x 16 activation rows and is transposed (16 x 16 floats) into y at the end of k.
//
// The weights after dequantizing, exactly as ggml's dequantizers give them in F32 (Q4_K: d*sc*q - dmin*m, each
// factor product exact in F32, one rounding for the difference; Q8_0: d*q, exact; F16: exact), then rounded to
// BF16 (to nearest, ties to even). So y = bf16(dequant(W)) bf16(x), with F32 sums over k in order, one step of 32
// after the other (TDPBF16PS adds each k pair's two products in k order whichever operand is A: the bits equal
// those of the same product with the roles as in amx_gemm). The result depends neither on the thread split nor on
// how many activation rows share the product.
//
// Availability: as amx_gemm (amx_usable()); the callers check it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ggml.h"

namespace cm::cpu {

// Q4_K, Q8_0, F16, BF16.
bool amx_dequant_supports(ggml_type type);

// Blocking of amx_gemm_dequant, per thread: weight blocks of kAmxDequantRows rows, dequantized one k slice of
// kAmxDequantSlice values at a time (a multiple of Q4_K's 256) into a scratch that stays in L2 while every
// activation row (in passes of at most kAmxDequantPass rows: the F32 accumulators of a block x pass stay in L2
// too) goes over it. The activations thus come from L3 once per weight block and slice.
constexpr int64_t kAmxDequantRows = 128;
constexpr int64_t kAmxDequantSlice = 1024;
constexpr int64_t kAmxDequantPass = 256;

// Bytes of the per-thread scratch of amx_gemm_dequant for weights of k values a row (64-byte multiple).
size_t amx_dequant_scratch_bytes(int64_t k);

// Activation rows (F32, ldx floats apart; n of them, k values each) as the B operand: panels of 16 rows
// (amx_rows_pad(n) / 16 of them, rows >= n zeros), in a panel one 1 KB tile per 32 values of k (k padded to
// amx_k_pad(k) with zeros), tile row i holding the BF16 pairs (x[j][2i], x[j][2i + 1]) of the panel's rows j.
// Writes panels [p0, p1) of out (rounding to nearest, ties to even, as amx_convert_rows).
void amx_convert_rows_b(const float* x, size_t ldx, int64_t n, int64_t k, int64_t p0, int64_t p1, uint16_t* out);

// Weight rows [r0, r0 + nr) (w: rows of `type`, row_bytes apart, k values each, k a multiple of the type's block)
// and values [32 kb0, 32 kb1) of k (kb0 at a block of the type: for Q4_K a multiple of 8) dequantized to BF16 as
// A tiles: panels of 16 rows (rows >= nr zeros), in a panel one 1 KB tile per 32 values (values >= k zeros), tile
// row f holding row f's 32 values in k order. Panel p's tile t at out + (p * (kb1 - kb0) + t) * 512.
void amx_dequant_a_tiles(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t nr,
                         int64_t kb0, int64_t kb1, uint16_t* out);

// y[j * ldy + r] = sum over i of x[j][i] w[r][i] for weight rows [r0, r1) and the n activation rows of xb
// (amx_convert_rows_b's layout, k_pad = amx_k_pad(k)). scratch: amx_dequant_scratch_bytes(k), 64-byte aligned, one
// per thread.
void amx_gemm_dequant(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t r1,
                      const uint16_t* xb, int64_t n, float* y, size_t ldy, uint16_t* scratch);

}  // namespace cm::cpu
