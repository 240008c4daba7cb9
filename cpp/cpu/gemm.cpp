#include "cpu/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

#include "cpu/gemv.h"
#include "ggml.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define CM_GEMM_X86 1
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 + AVX-512 intrinsics, see gemv.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))
#define CM_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

namespace cm::cpu {

#ifdef CM_GEMM_X86

namespace {

// Tile: kRows weight rows x kCols activation rows, 2 x kRows accumulators of 16 activation rows each (24 of
// the 32 vector registers). Per k: two loads of x^T, twelve broadcasts of the weight, 24 FMAs.
constexpr int kRows = int(kGemmTileRows), kCols = 32;
// K slice: the packed weight tile (kRows x kSlice floats, 6 KB) stays in L1 while the tile runs over its columns.
// (128 rather than 256: 2-3 % faster at the AVX2 level for 65 and 375 activation rows, one thread.)
constexpr int64_t kSlice = 128;
// Columns per block at most: a product of n columns runs as ceil(n / kColBlock) equal blocks (whole tiles), each
// packing every weight once. (Blocks of 256 cut MOSS-Audio's 30 s window, 375 columns, into 256 + 119 and packed the
// weights twice: 5-7 % slower at the AVX2 level.)
constexpr int64_t kColBlock = 512;
// x^T's rows a k panel of gemm_block holds at most (half a core's L2 on the machines measured).
constexpr int64_t kPanelBytes = int64_t(1) << 20;

// acc[i][v][l] += sum over k of w[i][k] * xt[k][16v + l], for V vectors of 16 columns (the first `cols` are
// valid). V = 1 serves a last tile of at most 16 columns at half the waste.
template <int R, int V>
CM_AVX512 void tile(const float* wp, int64_t kc, const float* xt, size_t ldx, int cols, float* acc, bool first) {
    const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? static_cast<__mmask16>((1u << (cols - 16)) - 1) : 0;
    __m512 a0[R], a1[R];
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
        a0[i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + i * 32);
        if (V == 2) a1[i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + i * 32 + 16);
    }
    for (int64_t k = 0; k < kc; ++k) {
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, xt + k * ldx);
        const __m512 x1 = V == 2 ? _mm512_maskz_loadu_ps(m1, xt + k * ldx + 16) : x0;
#pragma GCC unroll 12
        for (int i = 0; i < R; ++i) {
            const __m512 w = _mm512_set1_ps(wp[i * kc + k]);
            a0[i] = _mm512_fmadd_ps(x0, w, a0[i]);
            if (V == 2) a1[i] = _mm512_fmadd_ps(x1, w, a1[i]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
        _mm512_storeu_ps(acc + i * 32, a0[i]);
        if (V == 2) _mm512_storeu_ps(acc + i * 32 + 16, a1[i]);
    }
}

// The weights the next pack reads (rows of `w_row_bytes`, `bytes` from `at` in each): fetched into L1 while this
// pack's tile runs, so that pack does not wait on memory (3-4 % of an F16 product at one thread).
struct NextPack {
    const uint8_t* at;
    int64_t rows, bytes;
};

inline void prefetch_row(const NextPack& nx, size_t w_row_bytes, int64_t i) {
    if (i >= nx.rows) return;
    const char* p = reinterpret_cast<const char*>(nx.at + i * w_row_bytes);
    for (int64_t q = 0; q < nx.bytes; q += 64) _mm_prefetch(p + q, _MM_HINT_T0);
}

// Rows [0, rows) of F16 weights, columns [k0, k0 + kc), into F32 rows kc apart.
CM_AVX512 void pack(const uint8_t* w, size_t w_row_bytes, int64_t rows, int64_t k0, int64_t kc, float* out, const NextPack& nx) {
    for (int64_t i = 0; i < rows; ++i) {
        prefetch_row(nx, w_row_bytes, i);
        const auto* src = reinterpret_cast<const ggml_fp16_t*>(w + i * w_row_bytes) + k0;
        float* dst = out + i * kc;
        int64_t k = 0;
        for (; k + 16 <= kc; k += 16) {
            _mm512_storeu_ps(dst + k, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k))));
        }
        if (k < kc) {
            const __mmask16 m = static_cast<__mmask16>((1u << (kc - k)) - 1);
            _mm512_mask_storeu_ps(dst + k, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + k)));
        }
    }
}

// The AVX2 level: 16 registers of 8 floats hold a tile of at most 6 weight rows x 16 columns (12 accumulators,
// two activation vectors, one broadcast weight), or of 12 rows x 8 columns; a 12 x 32 tile of the driver is done
// as up to four of them.
// Each output's sum is the same FMA chain over k as at the AVX-512 level (first slice from zero, later slices
// from the stored partial sums): only the tiling differs, so the two levels agree to the last bit.
// Tail: the last vector holds fewer than 8 valid columns (a masked load; the mask takes the 16th register). Every
// loop is unrolled so the accumulators stay in registers (with a 17th live vector GCC 12 kept the arrays on the
// stack and stored every accumulator at every k: a third of the speed).
template <int R, int V, bool Tail>
CM_AVX2 void tile8(const float* wp, int64_t kc, const float* xt, size_t ldx, int cols, float* acc, bool first) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8 * (V - 1)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a0[R], a1[R];
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
        a0[i] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + i * 32);
        if (V == 2) a1[i] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + i * 32 + 8);
    }
    for (int64_t k = 0; k < kc; ++k) {
        const float* xk = xt + k * ldx;
        const __m256 x0 = V == 1 && Tail ? _mm256_maskload_ps(xk, mask) : _mm256_loadu_ps(xk);
        const __m256 x1 = V == 1 ? x0 : Tail ? _mm256_maskload_ps(xk + 8, mask) : _mm256_loadu_ps(xk + 8);
#pragma GCC unroll 12
        for (int i = 0; i < R; ++i) {
            const __m256 w = _mm256_broadcast_ss(wp + i * kc + k);
            a0[i] = _mm256_fmadd_ps(x0, w, a0[i]);
            if (V == 2) a1[i] = _mm256_fmadd_ps(x1, w, a1[i]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
        _mm256_storeu_ps(acc + i * 32, a0[i]);
        if (V == 2) _mm256_storeu_ps(acc + i * 32 + 8, a1[i]);
    }
}

// R rows by 1..16 columns: one or two vectors, the last masked where it is not whole.
template <int R>
void tile8_any(const float* wp, int64_t kc, const float* xt, size_t ldx, int cols, float* acc, bool first) {
    if (cols == 16) {
        tile8<R, 2, false>(wp, kc, xt, ldx, cols, acc, first);
    } else if (cols > 8) {
        tile8<R, 2, true>(wp, kc, xt, ldx, cols, acc, first);
    } else if (cols == 8) {
        tile8<R, 1, false>(wp, kc, xt, ldx, cols, acc, first);
    } else {
        tile8<R, 1, true>(wp, kc, xt, ldx, cols, acc, first);
    }
}

// R (1..12) weight rows by `cols` (1..32) columns in tiles of at most 6 x 16, except a last group of at most 8
// columns under more than 6 rows: one tile of R x 8. (As two tiles of 6 x 8 it ran 6 dependent FMA chains at a
// time, bound by the FMA latency: MOSS-Transcribe's 5 s window, 65 = 2 x 32 + 1 columns, lost ~12 % of each
// product to its last column; R chains keep both FMA ports busy.)
template <int R, int V>
void tile_avx2(const float* wp, int64_t kc, const float* xt, size_t ldx, int cols, float* acc, bool first) {
    constexpr int kTop = R < 6 ? R : 6;
    for (int c0 = 0; c0 < cols; c0 += 16) {
        const int cc = std::min(16, cols - c0);
        if constexpr (R > 6) {
            if (cc <= 8) {
                if (cc == 8) {
                    tile8<R, 1, false>(wp, kc, xt + c0, ldx, cc, acc + c0, first);
                } else {
                    tile8<R, 1, true>(wp, kc, xt + c0, ldx, cc, acc + c0, first);
                }
                continue;
            }
        }
        tile8_any<kTop>(wp, kc, xt + c0, ldx, cc, acc + c0, first);
        if constexpr (R > 6) tile8_any<R - 6>(wp + 6 * kc, kc, xt + c0, ldx, cc, acc + 6 * 32 + c0, first);
    }
}

CM_AVX2 void pack_avx2(const uint8_t* w, size_t w_row_bytes, int64_t rows, int64_t k0, int64_t kc, float* out,
                       const NextPack& nx) {
    for (int64_t i = 0; i < rows; ++i) {
        prefetch_row(nx, w_row_bytes, i);
        const auto* src = reinterpret_cast<const ggml_fp16_t*>(w + i * w_row_bytes) + k0;
        float* dst = out + i * kc;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
        }
        for (; k < kc; ++k) dst[k] = _cvtsh_ss(src[k]);
    }
}

using TileFn = void (*)(const float*, int64_t, const float*, size_t, int, float*, bool);
using PackFn = void (*)(const uint8_t*, size_t, int64_t, int64_t, int64_t, float*, const NextPack&);

// One level's kernels: the packing of weight rows and the tile for each row count 1..kRows, for at most 16
// columns ([0]) and at most 32 ([1]).
struct Kernels {
    PackFn pack;
    TileFn tile[2][kRows];
};

template <template <int, int> class Tile, int... R>
constexpr Kernels make_kernels(PackFn pack, std::integer_sequence<int, R...>) {
    return {pack, {{Tile<R + 1, 1>::fn...}, {Tile<R + 1, 2>::fn...}}};
}

template <int R, int V>
struct Avx512Tile {
    static constexpr TileFn fn = tile<R, V>;
};
template <int R, int V>
struct Avx2Tile {
    static constexpr TileFn fn = tile_avx2<R, V>;
};

constexpr Kernels kAvx512 = make_kernels<Avx512Tile>(pack, std::make_integer_sequence<int, kRows>{});
constexpr Kernels kAvx2 = make_kernels<Avx2Tile>(pack_avx2, std::make_integer_sequence<int, kRows>{});

// A weight tile's finished sums (acc: rows x n, column tiles of kRows x kCols) to the outputs of weight rows
// [ra, ra + rows), columns [c0, c0 + n).
void write_outputs(const float* acc, int64_t ra, int64_t rows, int64_t c0, int64_t n, const GemmOut& out, Level level) {
    float* y = out.y;
    const size_t ldy = out.ldy;
    for (int64_t j0 = 0; j0 < n; j0 += kCols) {
        const int64_t cols = std::min<int64_t>(kCols, n - j0);
        const float* a = acc + j0 / kCols * kRows * kCols;
        // (the branches keep an exact copy where there is no bias: adding 0 would turn -0 into +0)
        if (out.transposed) {
            for (int64_t i = 0; i < rows; ++i) {
                const float* ai = a + i * kCols;
                const int64_t r = ra + i;
                float* yr = y + r * ldy + c0 + j0;
                if (out.bias) {
                    for (int64_t j = 0; j < cols; ++j) yr[j] = ai[j] + out.bias[r];
                } else {
                    for (int64_t j = 0; j < cols; ++j) yr[j] = ai[j];
                }
                if (out.gelu) gelu_erf(yr, yr, cols, level);
            }
            continue;
        }
        // Output rows are positions: the tile's `rows` outputs of a position are contiguous, so they are written
        // position by position (one run of cache lines each). Row by row, every store went to another line of an
        // output that, for 5120 weight rows, does not stay in L2: 8-11 % of MOSS-Transcribe's fc1 at one thread.
        for (int64_t j = 0; j < cols; ++j) {
            float* yj = y + (c0 + j0 + j) * ldy + ra;
            if (out.bias) {
                for (int64_t i = 0; i < rows; ++i) yj[i] = a[i * kCols + j] + out.bias[ra + i];
            } else {
                for (int64_t i = 0; i < rows; ++i) yj[i] = a[i * kCols + j];
            }
            if (out.gelu) gelu_erf(yj, yj, rows, level);
        }
    }
}

// Columns [c0, c0 + n) of the product for weight rows [r0, r1). The k range is cut into panels whose x^T rows
// (kp x n floats, at most kPanelBytes) stay in L2; within a panel each weight tile runs its k slices in turn, so a
// tile's weights are read as 12 runs of up to kp contiguous values, which the hardware prefetchers follow from
// memory. (With k slices outermost, every tile's pack read 12 pieces of 512 bytes far apart, each a wait on memory:
// MOSS-Transcribe's encoder, whose weights do not fit in L3, ran 6-12 % slower at one thread.) Partial sums wait
// in `acc` between slices. x^T comes from memory (xt) or, slice by slice, from `gen` into `xbuf` (then a panel is
// one slice: k slices outermost, as the fill makes a slice for all tiles).
void gemm_block(const Kernels& kern, const uint8_t* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt,
                size_t ldx, const XSource* gen, int64_t c0, int64_t n, const GemmOut& out, float* wp, float* acc,
                float* xbuf, Level level) {
    const int64_t n_row_tiles = (r1 - r0 + kRows - 1) / kRows, n_col_tiles = (n + kCols - 1) / kCols;
    const int64_t kp = gen ? kSlice : std::max(kSlice, kPanelBytes / int64_t(sizeof(float) * n) / kSlice * kSlice);
    for (int64_t p0 = 0; p0 < k; p0 += kp) {
        const int64_t p1 = std::min(k, p0 + kp);
        if (gen) gen->fill(gen->ctx, p0, p1 - p0, c0, n, xbuf);
        for (int64_t rt = 0; rt < n_row_tiles; ++rt) {
            const int64_t ra = r0 + rt * kRows, rows = std::min<int64_t>(kRows, r1 - ra);
            float* at = acc + rt * n_col_tiles * kRows * kCols;  // the tile's partial sums, column tile after column tile
            for (int64_t k0 = p0; k0 < p1; k0 += kSlice) {
                const int64_t kc = std::min(kSlice, p1 - k0);
                const float* xs = gen ? xbuf : xt + k0 * ldx + c0;
                const size_t lds = gen ? size_t(n) : ldx;
                // the next pack: this tile's next slice, or the next tile's first slice of this panel
                const bool last = k0 + kc >= p1;
                const int64_t na = last ? ra + kRows : ra, nk = last ? p0 : k0 + kc;
                const NextPack nx = na < r1 ? NextPack{w + na * w_row_bytes + nk * int64_t(sizeof(ggml_fp16_t)),
                                                       std::min<int64_t>(kRows, r1 - na), std::min(kSlice, p1 - nk) * int64_t(sizeof(ggml_fp16_t))}
                                            : NextPack{w, 0, 0};
                kern.pack(w + ra * w_row_bytes, w_row_bytes, rows, k0, kc, wp, nx);
                for (int64_t ct = 0; ct < n_col_tiles; ++ct) {
                    const int64_t j0 = ct * kCols, cols = std::min<int64_t>(kCols, n - j0);
                    kern.tile[cols > 16][rows - 1](wp, kc, xs + j0, lds, int(cols), at + ct * kRows * kCols, k0 == 0);
                }
            }
            if (p1 == k) write_outputs(at, ra, rows, c0, n, out, level);
        }
    }
}

void gemm_any(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt, size_t ldx,
              const XSource* gen, int64_t n, const GemmOut& out, Level level) {
    if (level != Level::avx2 && level != Level::avx512 && level != Level::amx) std::abort();  // see gemv_available()
    const Kernels& kern = level == Level::avx2 ? kAvx2 : kAvx512;
    // Columns in blocks of whole tiles, as even as the tiles allow, so the partial sums of a weight tile
    // (kRows x cb floats) and x^T's slice (kSlice x cb floats, at most 256 KB) stay in L2.
    const int64_t n_blocks = (n + kColBlock - 1) / kColBlock;
    const int64_t cb = std::min(n, ((n + n_blocks - 1) / n_blocks + kCols - 1) / kCols * kCols);
    const size_t n_wp = size_t(kRows) * kSlice, n_acc = size_t((r1 - r0 + kRows - 1) / kRows) * ((cb + kCols - 1) / kCols) * kRows * kCols;
    const size_t n_xbuf = gen ? size_t(std::min(k, kSlice) * cb) : 0;
    // The packed weights, partial sums and im2col slices: per thread, kept from one product to the next up to
    // kKeepFloats (an encoder layer's products take a few ms each; allocating and zeroing ~1 MB of partial sums per
    // call, on pages the allocator may have handed back, cost a few percent of them). Every value is written before
    // it is read, so what a buffer held before does not matter.
    constexpr size_t kKeepFloats = size_t(2) << 20;  // 8 MB: an encoder layer at 2 threads up to 30 s windows
    thread_local std::vector<float> kept;
    std::vector<float> once;
    const size_t need = n_wp + n_acc + n_xbuf;
    std::vector<float>& buf = need <= kKeepFloats ? kept : once;
    if (buf.size() < need) buf.resize(need);
    float *wp = buf.data(), *acc = wp + n_wp, *xbuf = acc + n_acc;
    for (int64_t c0 = 0; c0 < n; c0 += cb) {
        gemm_block(kern, static_cast<const uint8_t*>(w), w_row_bytes, k, r0, r1, xt, ldx, gen, c0,
                   std::min(cb, n - c0), out, wp, acc, xbuf, level);
    }
}

// conv3x3s2_f16's im2col for one input of the batch, an XSource: x^T[kw + 3 kh + 9 c][p] =
// x[b][c][2 oh + kh - 1][2 ow + kw - 1] (zero outside), p = ow + OW oh.
struct Im2col {
    const ConvPlanes* x;
    int64_t b, p0;  // the batch entry; the position of the product's column 0
};

void im2col_slice(const void* ctx, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
    const auto& src = *static_cast<const Im2col*>(ctx);
    const ConvPlanes& x = *src.x;
    const int64_t W = x.W, H = x.H, OW = (W - 1) / 2 + 1;
    const float* base = x.data + src.b * x.sb;
    c0 += src.p0;
    for (int64_t k = k0; k < k0 + kc; ++k, out += nc) {
        const int64_t kw = k % 3, kh = (k / 3) % 3, c = k / 9;
        // the output columns whose input column 2 ow + kw - 1 lies inside the row: [lo, hi)
        const int64_t lo = kw == 0 ? 1 : 0, hi = W - kw >= 0 ? std::min(OW, (W - kw) / 2 + 1) : 0;
        int64_t ow = c0 % OW, oh = c0 / OW;
        for (int64_t j = 0; j < nc;) {
            // one output row (fixed oh) at a time: a stride-2 read of one input row, or zeros
            const int64_t run = std::min(nc - j, OW - ow), ih = 2 * oh + kh - 1;
            float* o = out + j - ow;  // o[i] for output column i in [ow, ow + run)
            if (ih < 0 || ih >= H) {
                std::fill(o + ow, o + ow + run, 0.0f);
            } else {
                const float* row = base + ih * x.sh + c * x.sc;
                const int64_t a = std::max(ow, lo), e = std::max(a, std::min(ow + run, hi));
                for (int64_t i = ow; i < a; ++i) o[i] = 0.0f;
                for (int64_t i = a; i < e; ++i) o[i] = row[2 * i + kw - 1];  // branch-free: vectorized
                for (int64_t i = e; i < ow + run; ++i) o[i] = 0.0f;
            }
            j += run;
            ow = 0;
            ++oh;
        }
    }
}

}  // namespace

void conv3x3s2_f16(const void* w, size_t w_row_bytes, int64_t oc, const ConvPlanes& x, int64_t p0, int64_t p1,
                   const float* bias, bool gelu, float* y, size_t ldc, size_t ldb, Level level) {
    const int64_t P = ((x.W - 1) / 2 + 1) * ((x.H - 1) / 2 + 1);
    for (int64_t b = p0 / P; b < x.B && b * P < p1; ++b) {  // the batch entries the range meets
        const int64_t a = std::max(p0 - b * P, int64_t(0)), e = std::min(p1 - b * P, P);
        const Im2col src{&x, b, a};
        const XSource gen{im2col_slice, &src};
        gemm_any(w, w_row_bytes, 9 * x.C, 0, oc, nullptr, 0, &gen, e - a,
                 GemmOut{y + b * ldb + a, ldc, bias, true, gelu}, level);
    }
}

std::pair<int64_t, int64_t> conv_thread_positions(const ConvPlanes& x, int ith, int nth) {
    const int64_t n = x.B * ((x.W - 1) / 2 + 1) * ((x.H - 1) / 2 + 1), tiles = (n + kCols - 1) / kCols;
    return {std::min(n, tiles * ith / nth * kCols), std::min(n, tiles * (ith + 1) / nth * kCols)};
}

void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt, size_t ldx,
              int64_t n, const GemmOut& out, Level level) {
    gemm_any(w, w_row_bytes, k, r0, r1, xt, ldx, nullptr, n, out, level);
}

void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const XSource& x, int64_t n,
              const GemmOut& out, Level level) {
    gemm_any(w, w_row_bytes, k, r0, r1, nullptr, 0, &x, n, out, level);
}

#else

void gemm_f16(const void*, size_t, int64_t, int64_t, int64_t, const float*, size_t, int64_t, const GemmOut&, Level) {
    std::abort();
}

void gemm_f16(const void*, size_t, int64_t, int64_t, int64_t, const XSource&, int64_t, const GemmOut&, Level) {
    std::abort();
}

void conv3x3s2_f16(const void*, size_t, int64_t, const ConvPlanes&, int64_t, int64_t, const float*, bool, float*, size_t,
                   size_t, Level) {
    std::abort();
}

std::pair<int64_t, int64_t> conv_thread_positions(const ConvPlanes&, int, int) { std::abort(); }

#endif

void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const float* xt, size_t ldx,
              int64_t n, float* y, size_t ldy, Level level) {
    gemm_f16(w, w_row_bytes, k, r0, r1, xt, ldx, n, GemmOut{y, ldy}, level);
}

void gemm_f16(const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1, const XSource& x, int64_t n,
              float* y, size_t ldy, Level level) {
    gemm_f16(w, w_row_bytes, k, r0, r1, x, n, GemmOut{y, ldy}, level);
}

}  // namespace cm::cpu
