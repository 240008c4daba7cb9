// Matrix products of F16 weights with several rows of F32 activations on x86 CPUs with AVX-512: the encoders'
// layers and conv stems, the adapters, the prefill of F16 decoders.
//
// Why our own kernel: ggml 0.25.3 rounds the activations to F16 and multiplies through tinyBLAS, which converts
// both operands back to F32 inside its inner loop: ~155 GFLOP/s on two Sapphire Rapids cores, where an F32 GEMM
// (OpenBLAS) reaches 240-325 on the same shapes. Here 12 weight rows are converted to F32 once per 128-wide
// slice of k (6 KB, stays in L1; the next slice's weights prefetched meanwhile), the activations are given
// transposed (in column blocks of at most 512, so a window of up to 512 positions packs each weight once), and a
// 12 x 32 tile of FMAs runs with
// the weights broadcast from L1: 225-255 GFLOP/s on the encoder's shapes. The activations stay F32 (ggml's F16
// rounding is gone, so results are closer to the reference), the sums are F32 in a fixed order: the result does
// not depend on the thread count.
// Same availability as gemv() (cpu::gemv_available(), CRISPMOSS_GEMV=ggml turns both off); used through
// nn::mul_mat and the conv stem for weights in host memory. At the AVX2 level (cpu/level.h) the same tile is done
// as four 6 x 16 tiles on 256-bit registers; every output is the same FMA chain over k at every level, so the
// levels give the same bits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "cpu/level.h"

namespace cm::cpu {

// y[j][r] = sum over i of w[r][i] * xt[i][j], for weight rows r in [r0, r1) and activation rows j in [0, n).
// w: F16 rows of k values, w_row_bytes apart; xt: the activations transposed, k rows of n floats, ldx apart
// (the caller transposes once per product; every weight tile then reads 32 contiguous columns per step);
// y: rows of ldy floats.
void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt, size_t ldx,
              int64_t n, float* y, size_t ldy, Level level = active_level());

// The same product with x^T made on the fly, a slice at a time: fill(ctx, k0, kc, c0, nc, out) writes rows
// [k0, k0 + kc), columns [c0, c0 + nc) of x^T to out (kc rows of nc floats). For the conv stem: its im2col
// columns are never stored whole (each thread makes the slices it reads: cheap next to the products).
struct XSource {
    void (*fill)(const void* ctx, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out);
    const void* ctx;
};
void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const XSource& x, int64_t n,
              float* y, size_t ldy, Level level = active_level());

// Where a product's outputs go: y[j][r] (rows of ldy floats, the default) or, transposed, y[r][j] (the next
// product's x^T, without a transpose node); bias[r], when given, is added to each output as it is written (one F32
// addition, the same as adding it afterwards); gelu: then cpu::gelu_erf on each output as it is written (an
// elementwise function: the same bits as a GELU pass over the whole output afterwards).
struct GemmOut {
    float* y;
    size_t ldy;
    const float* bias = nullptr;
    bool transposed = false;
    bool gelu = false;
};
void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt, size_t ldx,
              int64_t n, const GemmOut& out, Level level = active_level());
void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const XSource& x, int64_t n,
              const GemmOut& out, Level level = active_level());

// The conv stems' 3x3 / stride 2 / padding 1 convolution through this kernel, for the output positions [p0, p1) of
// the batch's B OH OW (position p = ow + OW (oh + OH b)) and all OC channels: y[b][oc][oh][ow] (at
// y + ow + OW oh + ldc oc + ldb b) = GELU(bias[oc] + sum over c, kh, kw of w[oc][c][kh][kw]
// x[b][c][2 oh + kh - 1][2 ow + kw - 1]) (zero outside the input), OW = (W - 1) / 2 + 1, OH = (H - 1) / 2 + 1.
// w: OC F16 rows of 9 C values in (c, kh, kw) order (ggml's [3, 3, C, OC] kernel), w_row_bytes apart. The im2col
// columns are made in F32 a k slice at a time inside the product (never stored whole; threads split the positions,
// so each makes only its own columns); the output is written channel-major, the layout the next convolution
// reads, bias and GELU added as it is written. conv_thread_positions: thread ith's share, in whole column tiles.
struct ConvPlanes {
    const float* data;  // x[b][c][h][w] at data + w + h sh + c sc + b sb
    int64_t W, H, C, B;
    size_t sh, sc, sb;
};
void conv3x3s2_f16(const void* w, size_t w_row_bytes, int64_t oc, const ConvPlanes& x, int64_t p0, int64_t p1,
                   const float* bias, bool gelu, float* y, size_t ldc, size_t ldb, Level level = active_level());
std::pair<int64_t, int64_t> conv_thread_positions(const ConvPlanes& x, int ith, int nth);

// Weight rows the kernel handles together (its register tile's height).
constexpr int64_t kGemmTileRows = 12;

// Weight rows [first, second) of thread ith of nth: whole tiles of the kernel, as even as they come.
inline std::pair<int64_t, int64_t> gemm_thread_rows(int64_t rows, int ith, int nth) {
    const int64_t tiles = (rows + kGemmTileRows - 1) / kGemmTileRows;
    return {std::min(rows, tiles * ith / nth * kGemmTileRows), std::min(rows, tiles * (ith + 1) / nth * kGemmTileRows)};
}

}  // namespace cm::cpu
