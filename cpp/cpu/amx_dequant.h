// Products of quantized (Q4_K, Q8_0) and F16/BF16 weights on the AMX tiles without a BF16 copy of the weights:
// each thread dequantizes 32 weight rows at a time into a small scratch in the tiles' layout (cpu/amx.h: panels
// of 16 rows, one 1 KB VNNI tile per 32 values of k) and runs amx_gemm over all activation rows on them. For the
// decoder's prefill (nn::mul_mat with more than kMaxGemvRows activation rows at the amx level): the dequantizing
// is paid once per weight block and product, so it is amortized over the prefill chunk's rows; decode steps (at
// most kMaxDecodeRows rows, built inside nn::DecodeRows) keep the matrix-vector kernels.
//
// The weights after dequantizing, exactly as ggml's dequantizers give them in F32 (Q4_K: d*sc*q - dmin*m, each
// factor product exact in F32, one rounding for the difference; Q8_0: d*q, exact; F16: exact), then rounded to
// BF16 (to nearest, ties to even). So y = bf16(dequant(W)) bf16(x), with F32 sums in amx_gemm's fixed order:
// the result does not depend on the thread split or on how many activation rows share the product.
//
// Availability: as amx_gemm (amx_usable()); the callers check it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ggml.h"

namespace cm::cpu {

// Q4_K, Q8_0, F16, BF16.
bool amx_dequant_supports(ggml_type type);

// Weight rows one dequantized block holds (amx_thread_rows splits in whole blocks of this size).
constexpr int64_t kAmxDequantRows = 32;

// Bytes of the per-thread scratch of amx_gemm_dequant for rows of k values (one block in the tile layout).
size_t amx_dequant_scratch_bytes(int64_t k);

// Weight rows [r0, r0 + nr) (nr <= kAmxDequantRows; w: rows of `type`, row_bytes apart, k values each, k a
// multiple of the type's block) dequantized to BF16 in the tile layout of an AmxMatrix of nr rows (rows padded to
// 16, k to 32, with zeros) at out.
void amx_dequant_tiles(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t nr,
                       uint16_t* out);

// y[j * ldy + r] = sum over i of x[j][i] w[r][i] for weight rows [r0, r1) (r0 a multiple of kAmxDequantRows)
// and the n activation rows of xh (amx_convert_rows, k_pad = amx_k_pad(k)): one block of rows dequantized into
// `scratch` (amx_dequant_scratch_bytes(k), 64-byte aligned), then amx_gemm on it, block after block.
void amx_gemm_dequant(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t r1,
                      const uint16_t* xh, int64_t n, float* y, size_t ldy, uint16_t* scratch);

}  // namespace cm::cpu
