#include "cpu/amx.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/level.h"

#if defined(__linux__) && defined(__x86_64__) && defined(__GNUC__)
#define CM_AMX 1
#include <cpuid.h>
#include <immintrin.h>

#include "platform/tile_permission.h"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 + AVX-512 intrinsics, see gemv.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Per function, not per file (-mamx-tile ...): inline functions of the standard library instantiated here must not
// be compiled for AMX/AVX-512 and then chosen by the linker for code that runs on any x86-64 CPU.
#define CM_AMX_FN __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#define CM_BF16_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#endif

namespace cm::cpu {

#ifdef CM_AMX

namespace {

bool detect() {
    if (best_level() != Level::amx) return false;  // AMX-TILE, AMX-BF16, AVX-512 and the tile state in XCR0
    unsigned a, b, c, d;
    __cpuid_count(7, 1, a, b, c, d);
    if (!(a & (1u << 5))) return false;  // AVX512-BF16 (the conversions)
    return platform::request_tile_data();  // Linux: the tile data state only on request
}

// All 8 tiles 16 rows x 64 bytes: C 0..3 (16 x 16 F32), A 4..5 (16 x 32 BF16), B 6..7 (16 pairs x 16 BF16 pairs).
// The 64-byte configuration is written as bytes: the intrinsic reads it through its own struct type, and stores
// through another type could be dropped as dead under strict aliasing (they were: SIGILL at the first tile load).
// GCC's tile load intrinsic takes its address as a plain register operand: the compiler does not know that it
// reads memory, and may drop or sink stores to what it loads (it did, for stack buffers). A compiler barrier
// before tile loads of memory written nearby.
#define CM_MEMORY_BARRIER() __asm__ __volatile__("" ::: "memory")

CM_AMX_FN void configure() {
    alignas(64) unsigned char cfg[64] = {};
    cfg[0] = 1;  // palette 1
    for (int i = 0; i < 8; ++i) {
        cfg[16 + 2 * i] = 64;  // colsb[i], little-endian 16 bits
        cfg[48 + i] = 16;      // rows[i]
    }
    CM_MEMORY_BARRIER();
    _tile_loadconfig(cfg);
}

CM_BF16_FN inline __m256i to_bf16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }
CM_BF16_FN inline __m512 from_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// n floats (any count) to BF16 hi (+ lo): masked at the tail.
CM_BF16_FN inline void convert_span(const float* x, int64_t n, uint16_t* hi, uint16_t* lo) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m256i h = to_bf16(v);
        _mm256_mask_storeu_epi16(hi + i, m, h);
        if (lo) _mm256_mask_storeu_epi16(lo + i, m, to_bf16(_mm512_sub_ps(v, from_bf16(h))));
    }
}

CM_BF16_FN void convert_rows(const float* x, size_t ldx, int64_t n, int64_t k, int64_t j0, int64_t j1, uint16_t* hi,
                             uint16_t* lo) {
    const int64_t kp = amx_k_pad(k);
    for (int64_t j = j0; j < j1; ++j) {
        uint16_t* h = hi + j * kp;
        uint16_t* l = lo ? lo + j * kp : nullptr;
        const int64_t done = j < n ? k : 0;
        if (done) convert_span(x + j * ldx, k, h, l);
        std::memset(h + done, 0, size_t(kp - done) * 2);
        if (l) std::memset(l + done, 0, size_t(kp - done) * 2);
    }
}

CM_BF16_FN void norm_rows(const float* x, size_t ldx, int64_t n, int64_t k, const float* w, const float* b, float eps,
                          int64_t j0, int64_t j1, uint16_t* hi, uint16_t* lo) {
    const int64_t kp = amx_k_pad(k);
    for (int64_t j = j0; j < j1; ++j) {
        uint16_t* h = hi + j * kp;
        uint16_t* l = lo ? lo + j * kp : nullptr;
        std::memset(h, 0, size_t(kp) * 2);
        if (l) std::memset(l, 0, size_t(kp) * 2);
        if (j >= n) continue;
        const float* xr = x + j * ldx;
        __m512 s = _mm512_setzero_ps();
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (k - i)) - 1);
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, xr + i));
        }
        const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(s) / float(k));
        __m512 s2 = _mm512_setzero_ps();
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (k - i)) - 1);
            const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + i), mean);
            s2 = _mm512_fmadd_ps(d, d, s2);
        }
        const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(_mm512_reduce_add_ps(s2) / float(k) + eps));
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (k - i)) - 1);
            const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + i), mean), scale);
            const __m512 v = _mm512_add_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + i)), _mm512_maskz_loadu_ps(m, b + i));
            const __m256i hv = to_bf16(v);
            _mm256_mask_storeu_epi16(h + i, m, hv);
            if (l) _mm256_mask_storeu_epi16(l + i, m, to_bf16(_mm512_sub_ps(v, from_bf16(hv))));
        }
    }
}

CM_BF16_FN void pack(const void* w, size_t row_bytes, int64_t rows, int64_t k, int64_t conv_c, AmxMatrix& m) {
    const int64_t kp = m.k_pad, kb_n = kp / 32;
    std::vector<uint16_t> src(size_t(kp) + 32);  // one F16 row, reordered for a conv, zero-padded
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(16));
    for (int64_t r = 0; r < m.rows_pad; ++r) {
        std::fill(src.begin(), src.end(), uint16_t(0));
        if (r < rows) {
            const auto* row = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w) + r * row_bytes);
            if (conv_c > 0) {
                for (int64_t i = 0; i < k; ++i) src[size_t(i)] = row[i / conv_c + 9 * (i % conv_c)];
            } else {
                std::memcpy(src.data(), row, size_t(k) * 2);
            }
        }
        const int64_t p = r / 16, f = r % 16;
        for (int64_t kb = 0; kb < kb_n; ++kb) {
            const auto* s = reinterpret_cast<const __m256i*>(src.data() + kb * 32);
            const __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256(s)), b = _mm512_cvtph_ps(_mm256_loadu_si256(s + 1));
            const __m256i ha = to_bf16(a), hb = to_bf16(b);
            const size_t at = size_t(p * kb_n + kb) * 512 + size_t(f) * 2;
            _mm512_i32scatter_epi32(m.hi + at, idx, _mm512_inserti64x4(_mm512_castsi256_si512(ha), hb, 1), 4);
            if (m.lo) {
                const __m256i la = to_bf16(_mm512_sub_ps(a, from_bf16(ha))), lb = to_bf16(_mm512_sub_ps(b, from_bf16(hb)));
                _mm512_i32scatter_epi32(m.lo + at, idx, _mm512_inserti64x4(_mm512_castsi256_si512(la), lb, 1), 4);
            }
        }
    }
}

// One C tile: in place in y when all its 16 x 16 outputs exist, else through a 16 x 16 buffer.
struct CTile {
    float* p;
    size_t stride;  // bytes
    float* y;       // the outputs (tail tiles)
    size_t ldy;
    int rows, cols;  // valid activation rows, weight rows
};

inline CTile c_tile(float* y, size_t ldy, int64_t toks_left, int64_t rows_left, float* buf) {
    const int rows = int(std::min<int64_t>(16, toks_left)), cols = int(std::min<int64_t>(16, rows_left));
    if (rows == 16 && cols == 16) return {y, ldy * 4, y, ldy, 16, 16};
    return {buf, 64, y, ldy, rows, cols};
}

inline void tail_in(const CTile& t, bool first) {
    if (t.p == t.y || first) return;
    std::memset(t.p, 0, 16 * 64);
    for (int i = 0; i < t.rows; ++i) std::memcpy(t.p + i * 16, t.y + i * t.ldy, size_t(t.cols) * 4);
}

inline void tail_out(const CTile& t) {
    if (t.p == t.y) return;
    for (int i = 0; i < t.rows; ++i) std::memcpy(t.y + i * t.ldy, t.p + i * 16, size_t(t.cols) * 4);
}

// C[a][b] (tiles 2a + b) += A_a B_b over nkb steps of 32 values of k, for TA activation tiles (16 rows each, xs
// values apart) and TB weight panels (pe values apart).
template <int TA, int TB>
CM_AMX_FN void micro(const uint16_t* xh, const uint16_t*, int64_t xs, const uint16_t* wh, const uint16_t*,
                     int64_t pe, int64_t nkb, const CTile* c, bool first) {
    const size_t xb = size_t(xs) * 2;
    const int64_t a1 = 16 * xs;
    for (int i = 0; i < TA * 2; ++i) {
        if ((i & 1) < TB) tail_in(c[i], first);
    }
    CM_MEMORY_BARRIER();
    if (first) {
        _tile_zero(0);
        if constexpr (TB == 2) _tile_zero(1);
        if constexpr (TA == 2) _tile_zero(2);
        if constexpr (TA == 2 && TB == 2) _tile_zero(3);
    } else {
        _tile_loadd(0, c[0].p, c[0].stride);
        if constexpr (TB == 2) _tile_loadd(1, c[1].p, c[1].stride);
        if constexpr (TA == 2) _tile_loadd(2, c[2].p, c[2].stride);
        if constexpr (TA == 2 && TB == 2) _tile_loadd(3, c[3].p, c[3].stride);
    }
    for (int64_t kb = 0; kb < nkb; ++kb) {  // each product as soon as its operands are in (loads overlap products)
        const int64_t xo = kb * 32, wo = kb * 512;
        _tile_loadd(4, xh + xo, xb);
        _tile_loadd(6, wh + wo, 64);
        _tile_dpbf16ps(0, 4, 6);
        if constexpr (TB == 2) {
            _tile_loadd(7, wh + pe + wo, 64);
            _tile_dpbf16ps(1, 4, 7);
        }
        if constexpr (TA == 2) {
            _tile_loadd(5, xh + a1 + xo, xb);
            _tile_dpbf16ps(2, 5, 6);
        }
        if constexpr (TA == 2 && TB == 2) _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c[0].p, c[0].stride);
    if constexpr (TB == 2) _tile_stored(1, c[1].p, c[1].stride);
    if constexpr (TA == 2) _tile_stored(2, c[2].p, c[2].stride);
    if constexpr (TA == 2 && TB == 2) _tile_stored(3, c[3].p, c[3].stride);
    for (int i = 0; i < TA * 2; ++i) {
        if ((i & 1) < TB) tail_out(c[i]);
    }
}

// The exact split: C[b] (tile b) += Ah Bh_b + Al Bh_b + Ah Bl_b for one activation tile (A hi 2, lo 3) and TB
// weight panels (B hi 4 + 2b, lo 5 + 2b): every operand has a tile of its own, no tile is reloaded in a step.
template <int TA, int TB>
CM_AMX_FN void micro_split(const uint16_t* xh, const uint16_t* xl, int64_t xs, const uint16_t* wh, const uint16_t* wl,
                           int64_t pe, int64_t nkb, const CTile* c, bool first) {
    static_assert(TA == 1, "one activation tile");
    const size_t xb = size_t(xs) * 2;
    tail_in(c[0], first);
    if constexpr (TB == 2) tail_in(c[1], first);
    CM_MEMORY_BARRIER();
    if (first) {
        _tile_zero(0);
        if constexpr (TB == 2) _tile_zero(1);
    } else {
        _tile_loadd(0, c[0].p, c[0].stride);
        if constexpr (TB == 2) _tile_loadd(1, c[1].p, c[1].stride);
    }
    for (int64_t kb = 0; kb < nkb; ++kb) {
        const int64_t xo = kb * 32, wo = kb * 512;
        _tile_loadd(2, xh + xo, xb);
        _tile_loadd(3, xl + xo, xb);
        _tile_loadd(4, wh + wo, 64);
        _tile_loadd(5, wl + wo, 64);
        _tile_dpbf16ps(0, 2, 4);
        _tile_dpbf16ps(0, 3, 4);
        _tile_dpbf16ps(0, 2, 5);
        if constexpr (TB == 2) {
            _tile_loadd(6, wh + pe + wo, 64);
            _tile_loadd(7, wl + pe + wo, 64);
            _tile_dpbf16ps(1, 2, 6);
            _tile_dpbf16ps(1, 3, 6);
            _tile_dpbf16ps(1, 2, 7);
        }
    }
    _tile_stored(0, c[0].p, c[0].stride);
    if constexpr (TB == 2) _tile_stored(1, c[1].p, c[1].stride);
    tail_out(c[0]);
    if constexpr (TB == 2) tail_out(c[1]);
}

using MicroFn = void (*)(const uint16_t*, const uint16_t*, int64_t, const uint16_t*, const uint16_t*, int64_t, int64_t,
                         const CTile*, bool);
constexpr MicroFn kMicro[2][2] = {{micro<1, 1>, micro<1, 2>}, {micro<2, 1>, micro<2, 2>}};
constexpr MicroFn kMicroSplit[2] = {micro_split<1, 1>, micro_split<1, 2>};

// Blocking, per thread (measured on Emerald Rapids, 2 MB L2 a core; benchmarks/RESULTS.md): k in slices of at most
// kSliceSteps steps of 32 (C stays in the tiles over a slice); in a slice, blocks of kRowBlock weight rows that stay
// in L2 while all activation rows pass, in blocks of kTokBlock rows (L2 too), each block then 32 x 32 outputs a
// kernel call. The weights thus come from L3 / memory once per slice whatever n is, and an activation block once
// per weight block. The sum of every output runs over k in order, one step of 32 after the other, whatever the
// blocking (the F32 C tiles go to memory and back exactly between slices): the result depends neither on n nor on
// the thread split.
constexpr int64_t kSliceSteps = 40;
constexpr int64_t kRowBlock = 256;
constexpr int64_t kTokBlock = 64;

// The caller configured the tiles. xh/xl: activation rows xs values apart, amx_rows_pad(n) of them.
CM_AMX_FN void gemm(const AmxMatrix& w, int64_t r0, int64_t r1, const uint16_t* xh, const uint16_t* xl, int64_t xs,
                    int64_t n, float* y, size_t ldy) {
    const int64_t kb_n = w.k_pad / 32, pe = kb_n * 512;
    const int64_t n_slices = (kb_n + kSliceSteps - 1) / kSliceSteps;
    const int64_t step = w.split ? 16 : 32;  // activation rows per kernel call
    alignas(64) float buf[4][256];
    for (int64_t s = 0; s < n_slices; ++s) {
        const int64_t kb0 = kb_n * s / n_slices, kb1 = kb_n * (s + 1) / n_slices;
        for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
            const int64_t re = std::min(r1, rb + kRowBlock);
            for (int64_t jb = 0; jb < n; jb += kTokBlock) {
                const int64_t je = std::min(n, jb + kTokBlock);
                for (int64_t r = rb; r < re; r += 32) {
                    const int tb = r + 16 < re ? 2 : 1;
                    const uint16_t* wh = w.hi + (r / 16) * pe + kb0 * 512;
                    const uint16_t* wl = w.lo ? w.lo + (r / 16) * pe + kb0 * 512 : nullptr;
                    for (int64_t j = jb; j < je; j += step) {
                        const int ta = j + 16 < je && !w.split ? 2 : 1;
                        CTile c[4];
                        for (int a = 0; a < ta; ++a) {
                            for (int b = 0; b < tb; ++b) {
                                c[2 * a + b] = c_tile(y + (j + 16 * a) * ldy + r + 16 * b, ldy, n - j - 16 * a,
                                                      r1 - r - 16 * b, buf[2 * a + b]);
                            }
                        }
                        (w.split ? kMicroSplit[tb - 1] : kMicro[ta - 1][tb - 1])(
                            xh + j * xs + kb0 * 32, xl ? xl + j * xs + kb0 * 32 : nullptr, xs, wh, wl, pe, kb1 - kb0, c,
                            s == 0);
                    }
                }
            }
        }
    }
}

CM_AMX_FN void gemm_entry(const AmxMatrix& w, int64_t r0, int64_t r1, const uint16_t* xh, const uint16_t* xl,
                          int64_t n, float* y, size_t ldy) {
    configure();
    gemm(w, r0, r1, xh, xl, w.k_pad, n, y, ldy);
    _tile_release();
}

// Output positions of the convolution per block of im2col rows (512 measured no faster: the im2col conversion, not
// the weights' traffic, bounds the stems' 480 x 4320 kernels).
constexpr int64_t kConvBlock = 128;

// im2col rows in BF16 for positions [p0, p0 + np), (kh, kw, c) order, then the product with all weight rows.
CM_AMX_FN void conv_entry(const AmxMatrix& w, const ConvInput& in, int64_t p0, int64_t p1, float* y, size_t ldy) {
    const int64_t C = in.C, OW = (in.W - 1) / 2 + 1, OH = (in.H - 1) / 2 + 1, kp = w.k_pad;
    const size_t plane = size_t(kConvBlock * kp);  // 64-byte multiple
    const std::unique_ptr<uint16_t[]> mem(new uint16_t[plane * (w.split ? 2 : 1) + 32]);  // every row written below
    uint16_t* const hi = amx_align64(mem.get());
    uint16_t* const lo = w.split ? hi + plane : nullptr;  // tile rows on cache lines
    configure();
    for (int64_t pb = p0; pb < p1; pb += kConvBlock) {
        const int64_t np = std::min(kConvBlock, p1 - pb), npad = amx_rows_pad(np);
        for (int64_t q = 0; q < npad; ++q) {
            uint16_t* h = hi + q * kp;
            uint16_t* l = lo ? lo + q * kp : nullptr;
            std::memset(h, 0, size_t(kp) * 2);
            if (l) std::memset(l, 0, size_t(kp) * 2);
            if (q >= np) continue;
            const int64_t p = pb + q, ow = p % OW, oh = (p / OW) % OH, b = p / (OW * OH);
            for (int64_t kh = 0; kh < 3; ++kh) {
                const int64_t ih = 2 * oh + kh - 1;
                if (ih < 0 || ih >= in.H) continue;
                for (int64_t kw = 0; kw < 3; ++kw) {
                    const int64_t iw = 2 * ow + kw - 1;
                    if (iw < 0 || iw >= in.W) continue;
                    const int64_t at = C * (kw + 3 * kh);
                    convert_span(in.data + b * in.sb + ih * in.sh + iw * in.sw, C, h + at, l ? l + at : nullptr);
                }
            }
        }
        gemm(w, 0, w.rows, hi, lo, kp, np, y + pb * ldy, ldy);
    }
    _tile_release();
}

CM_AMX_FN double peak_run(int64_t iters) {
    configure();
    alignas(64) uint16_t zeros[512] = {};
    CM_MEMORY_BARRIER();
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t i = 0; i < iters; ++i) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_release();
    CM_MEMORY_BARRIER();
    return double(iters) * 4 * 2 * 16 * 16 * 32;
}

void free_aligned(uint16_t* p) { std::free(p); }

}  // namespace

bool amx_usable() {
    static const bool ok = detect();
    return ok;
}

bool amx_int8_usable() {
    static const bool ok = [] {
        if (!amx_usable()) return false;
        unsigned a, b, c, d;
        __cpuid_count(7, 0, a, b, c, d);
        return (d & (1u << 25)) != 0;  // AMX-INT8
    }();
    return ok;
}

double amx_peak_run(int64_t iters) { return peak_run(iters); }

CM_AMX_FN void amx_tiles_configure() { configure(); }
CM_AMX_FN void amx_tiles_release() { _tile_release(); }

std::unique_ptr<AmxMatrix> amx_pack_f16(const void* w, size_t row_bytes, int64_t rows, int64_t k, bool split,
                                        int64_t conv_c) {
    auto m = std::make_unique<AmxMatrix>();
    m->rows = rows, m->k = k, m->rows_pad = amx_rows_pad(rows), m->k_pad = amx_k_pad(k), m->split = split;
    void* mem = nullptr;
    if (::posix_memalign(&mem, 64, m->bytes()) != 0) return nullptr;
    m->mem = std::unique_ptr<uint16_t[], void (*)(uint16_t*)>(static_cast<uint16_t*>(mem), free_aligned);
    m->hi = m->mem.get();
    m->lo = split ? m->hi + size_t(m->rows_pad) * size_t(m->k_pad) : nullptr;
    pack(w, row_bytes, rows, k, conv_c, *m);
    return m;
}

void amx_convert_rows(const float* x, size_t ldx, int64_t n, int64_t k, int64_t j0, int64_t j1, uint16_t* hi,
                      uint16_t* lo) {
    convert_rows(x, ldx, n, k, j0, j1, hi, lo);
}

void amx_norm_rows(const float* x, size_t ldx, int64_t n, int64_t k, const float* w, const float* b, float eps,
                   int64_t j0, int64_t j1, uint16_t* hi, uint16_t* lo) {
    norm_rows(x, ldx, n, k, w, b, eps, j0, j1, hi, lo);
}

void amx_gemm(const AmxMatrix& w, int64_t r0, int64_t r1, const uint16_t* xh, const uint16_t* xl, int64_t n,
              float* y, size_t ldy) {
    if (r0 < r1 && n > 0) gemm_entry(w, r0, r1, xh, w.split ? xl : nullptr, n, y, ldy);
}

void amx_conv3x3(const AmxMatrix& w, const ConvInput& in, int64_t p0, int64_t p1, float* y, size_t ldy) {
    if (p0 < p1) conv_entry(w, in, p0, p1, y, ldy);
}

#else

bool amx_usable() { return false; }
bool amx_int8_usable() { return false; }

std::unique_ptr<AmxMatrix> amx_pack_f16(const void*, size_t, int64_t, int64_t, bool, int64_t) { std::abort(); }
void amx_convert_rows(const float*, size_t, int64_t, int64_t, int64_t, int64_t, uint16_t*, uint16_t*) { std::abort(); }
void amx_gemm(const AmxMatrix&, int64_t, int64_t, const uint16_t*, const uint16_t*, int64_t, float*, size_t) {
    std::abort();
}
void amx_conv3x3(const AmxMatrix&, const ConvInput&, int64_t, int64_t, float*, size_t) { std::abort(); }
double amx_peak_run(int64_t) { std::abort(); }
void amx_tiles_configure() { std::abort(); }
void amx_tiles_release() { std::abort(); }
void amx_norm_rows(const float*, size_t, int64_t, int64_t, const float*, const float*, float, int64_t, int64_t,
                   uint16_t*, uint16_t*) {
    std::abort();
}

#endif

}  // namespace cm::cpu
