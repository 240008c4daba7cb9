// Matrix products on the AMX tiles (Intel Sapphire Rapids and later): F16 weights converted once, at load, to BF16
// in the tiles' layout; F32 activations rounded to BF16 per product; F32 sums (TDPBF16PS). For the encoders'
// and adapters' products and the conv stems (cpu level amx, see level.h), through nn::mul_mat and the stem.
//
// Layout of a packed matrix (rows = output features, k = inputs): panels of 16 rows; in a panel, one 1 KB tile per
// 32 values of k, tile row i holding the pairs (w[f][2i], w[f][2i + 1]) of the panel's rows f = 0..15 (the
// "VNNI" pairs TDPBF16PS takes as its B operand). Rows padded to 16, k to 32, with zeros. Activations: BF16 rows
// of k_pad values (the A operand, in place), rows padded to 16 with zeros.
//
// Exact split (`split`): an F16 weight is exactly hi + lo with hi = bf16(w), lo = bf16(w - hi) (F16 has 11
// significant bits, BF16 8); an F32 activation ~ hi + lo to 16 bits. The product then sums hi*hi + lo*hi + hi*lo
// (three tile products, lo*lo dropped: ~2^-16 relative): about the F16 kernel's accuracy at 3x the tile work and
// twice the packed size. Plain BF16 (the default) rounds weights and activations to 8 significant bits.
//
// Availability: Linux on x86-64 with GCC or Clang, a CPU with AMX-TILE + AMX-BF16 + AVX512-BF16, and the
// kernel's permission for the tile data (arch_prctl(ARCH_REQ_XCOMP_PERM), asked once). Elsewhere (Windows: the
// mingw-w64 GCC 12 tile intrinsics do not assemble there, see cmake/mingw-w64-amx-fix.h) amx_usable() is false
// and the amx level runs the avx512 kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace cm::cpu {

// CPU and OS allow the tile kernels (requests the tile permission on first call; thread-safe, cached).
bool amx_usable();

// amx_usable() and the CPU has AMX-INT8 (the integer tile products: cpu/gemv.cpp's Q4_K kernel for many rows).
bool amx_int8_usable();

struct AmxMatrix {
    int64_t rows = 0, k = 0, rows_pad = 0, k_pad = 0;
    bool split = false;
    uint16_t* hi = nullptr;  // rows_pad * k_pad BF16 values in tiles
    uint16_t* lo = nullptr;  // the same for the low parts (split only)
    std::unique_ptr<uint16_t[], void (*)(uint16_t*)> mem{nullptr, nullptr};
    size_t bytes() const { return size_t(rows_pad) * size_t(k_pad) * 2 * (split ? 2 : 1); }
};

inline int64_t amx_k_pad(int64_t k) { return (k + 31) / 32 * 32; }
// The first 64-byte boundary at or after p: activation operands (amx_convert_rows' rows) run fastest from there, the
// tile rows then on whole cache lines (buffers get 32 bytes of slack for it).
inline uint16_t* amx_align64(void* p) {
    return reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
}
inline int64_t amx_rows_pad(int64_t n) { return (n + 15) / 16 * 16; }

// F16 weight rows (row_bytes apart, k values each) packed. conv_c > 0: the rows are 3x3 convolution kernels
// [C][3][3] (kw fastest) and k is reordered to (kh, kw, c), c fastest, the order amx_conv3x3's im2col rows use.
std::unique_ptr<AmxMatrix> amx_pack_f16(const void* w, size_t row_bytes, int64_t rows, int64_t k, bool split,
                                        int64_t conv_c = 0);

// Activation rows [j0, j1) of the BF16 operand (n_pad = amx_rows_pad(n) rows of k_pad; rows >= n are zeros):
// hi = bf16(x), and lo = bf16(x - hi) when lo is given.
void amx_convert_rows(const float* x, size_t ldx, int64_t n, int64_t k, int64_t j0, int64_t j1, uint16_t* hi,
                      uint16_t* lo);

// As amx_convert_rows for LayerNorm(x) * w + b (eps), row by row: mean and variance over the row's k values
// in F32 lanes, then the normed values rounded to BF16 (never stored in F32).
void amx_norm_rows(const float* x, size_t ldx, int64_t n, int64_t k, const float* w, const float* b, float eps,
                   int64_t j0, int64_t j1, uint16_t* hi, uint16_t* lo);

// y[j * ldy + r] = sum over i of x[j][i] w[r][i] for weight rows [r0, r1) (r0 a multiple of 16) and the n
// activation rows of xh (+ xl when w.split; from amx_convert_rows). Sums in a fixed order: the result does not
// depend on how rows are split over threads.
void amx_gemm(const AmxMatrix& w, int64_t r0, int64_t r1, const uint16_t* xh, const uint16_t* xl, int64_t n,
              float* y, size_t ldy);

// Weight rows [first, second) of thread ith of nth: whole 32-row blocks, as even as they come.
inline void amx_thread_rows(int64_t rows, int ith, int nth, int64_t* r0, int64_t* r1) {
    const int64_t blocks = (rows + 31) / 32;
    *r0 = blocks * ith / nth * 32;
    *r1 = blocks * (ith + 1) / nth * 32;
    if (*r0 > rows) *r0 = rows;
    if (*r1 > rows) *r1 = rows;
}

// The 3x3 / stride 2 / padding 1 convolution of a channel-last input (in[b][h][w][c]: C channels fastest, then W,
// H, B; strides in floats) with a packed kernel (amx_pack_f16 with conv_c = C): y[p][oc] for output positions
// p = ow + OW (oh + OH b) in [p0, p1), no bias. The im2col rows are made per block of positions, in BF16.
struct ConvInput {
    const float* data;
    int64_t C, W, H, B;
    size_t sw, sh, sb;  // strides of w, h, b in floats (c is contiguous)
};
void amx_conv3x3(const AmxMatrix& w, const ConvInput& in, int64_t p0, int64_t p1, float* y, size_t ldy);

// The tile configuration every kernel here uses (all 8 tiles 16 rows x 64 bytes: a 16 x 16 F32 C tile, a 16 x 32
// BF16 A tile, a 16-pair x 16 B tile), set on the calling thread; amx_tiles_release() frees the tile state. For
// kernels in other files (amx_dequant.cpp) that run the tiles themselves.
void amx_tiles_configure();
void amx_tiles_release();

// The tile unit's own limit on this thread: `iters` x 4 TDPBF16PS on resident tiles (no memory traffic). Returns
// the FLOP done (2 x 16 x 16 x 32 a product); the caller times it (benchmarks).
double amx_peak_run(int64_t iters);

}  // namespace cm::cpu
