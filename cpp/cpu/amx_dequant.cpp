#include "cpu/amx_dequant.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cpu/amx.h"

#if defined(__linux__) && defined(__x86_64__) && defined(__GNUC__)
#define CM_AMX_DQ 1
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 + AVX-512 intrinsics, see gemv.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Per function (see amx.cpp): nothing here may be compiled for AVX-512 or AMX where another CPU could run it.
#define CM_DQ_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#define CM_DQ_AMX_FN \
    __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
// Tile loads and stores take plain addresses: the compiler does not see them touch memory (see amx.cpp).
#define CM_DQ_BARRIER() __asm__ __volatile__("" ::: "memory")
#endif

namespace cm::cpu {

bool amx_dequant_supports(ggml_type type) {
    return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q8_0 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
}

namespace {

constexpr int64_t kSliceSteps = kAmxDequantSlice / 32;  // 32-value steps of k a slice
static_assert(kAmxDequantSlice % 256 == 0, "a slice holds whole Q4_K blocks");
static_assert(kAmxDequantRows % 32 == 0 && kAmxDequantPass % 32 == 0, "whole tile pairs");

// The A tiles of one block and slice (BF16), then the F32 accumulators of the block x one pass of activation rows.
size_t a_tiles_values(int64_t k) {
    return size_t(kAmxDequantRows) * size_t(std::min(kSliceSteps, amx_k_pad(k) / 32)) * 32;
}

}  // namespace

size_t amx_dequant_scratch_bytes(int64_t k) {
    return a_tiles_values(k) * 2 + size_t(kAmxDequantRows) * size_t(kAmxDequantPass) * 4;
}

#ifdef CM_AMX_DQ

namespace {

// ggml's block layouts (facts from ggml-common.h; the code is ours).
// Q4_K: 256 values in 144 bytes: d (F16), dmin (F16), 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32,
// 128 bytes of 4-bit quants: sub-block 2c in the low nibbles of bytes 32c..32c+31, sub-block 2c+1 in their high
// nibbles. Value = d * sc * q - dmin * m.
constexpr int64_t kQ4kValues = 256, kQ4kBytes = 144, kQ4kQs = 16;
// Q8_0: 32 values in 34 bytes: d (F16), 32 signed 8-bit quants. Value = d * q.
constexpr int64_t kQ80Values = 32, kQ80Bytes = 34;

CM_DQ_FN inline float half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// The 6-bit scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K block's 8 sub-blocks from its 12 scale bytes
// s: sub-block j < 4: scale = s[j] & 63, min = s[j + 4] & 63; j >= 4: scale = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4,
// min = (s[j + 4] >> 4) | (s[j] >> 6) << 4 (ggml's packing) — four bytes at a time in 32-bit words.
inline void q4k_scales_mins(const uint8_t* s, uint8_t out[16]) {
    uint32_t w[3], o[4];
    std::memcpy(w, s, 12);
    constexpr uint32_t low6 = 0x3F3F3F3Fu, low4 = 0x0F0F0F0Fu, top2 = 0x03030303u;
    o[0] = w[0] & low6;                                   // scales 0..3
    o[1] = (w[2] & low4) | (((w[0] >> 6) & top2) << 4);   // scales 4..7
    o[2] = w[1] & low6;                                   // mins 0..3
    o[3] = ((w[2] >> 4) & low4) | (((w[1] >> 6) & top2) << 4);  // mins 4..7
    std::memcpy(out, o, 16);
}

// 32 F32 values (lo: the first 16) as 32 BF16 in k order, rounded to nearest, ties to even.
CM_DQ_FN inline __m512i to_bf16_32(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

// The 16 x 16 transpose of 32-bit values in r (row a, lane l → row l, lane a): 4 butterfly stages, stage h
// exchanging bit h of the row index with bit h of the lane index.
struct Transpose {
    __m512i lo[4], hi[4];
    CM_DQ_FN Transpose() {
        for (int s = 0; s < 4; ++s) {
            const int h = 8 >> s;
            alignas(64) int32_t a[16], b[16];
            for (int l = 0; l < 16; ++l) {
                a[l] = (l & h) ? 16 + l - h : l;
                b[l] = (l & h) ? 16 + l : l + h;
            }
            lo[s] = _mm512_load_si512(a);
            hi[s] = _mm512_load_si512(b);
        }
    }
    CM_DQ_FN void operator()(__m512i r[16]) const {
        for (int s = 0; s < 4; ++s) {
            const int h = 8 >> s;
            for (int a = 0; a < 16; ++a) {
                if (a & h) continue;
                const __m512i x = r[a], y = r[a + h];
                r[a] = _mm512_permutex2var_epi32(x, lo[s], y);
                r[a + h] = _mm512_permutex2var_epi32(x, hi[s], y);
            }
        }
    }
};

// ---- The B operand: activations in VNNI pairs ----

CM_DQ_FN void convert_b(const float* x, size_t ldx, int64_t n, int64_t k, int64_t p0, int64_t p1, uint16_t* out) {
    static const Transpose transpose;
    const int64_t kb_n = amx_k_pad(k) / 32;
    __m512i r[16];
    for (int64_t p = p0; p < p1; ++p) {
        const int valid = int(std::clamp<int64_t>(n - 16 * p, 0, 16));
        for (int64_t kb = 0; kb < kb_n; ++kb) {
            const int64_t left = k - kb * 32;
            const __mmask16 m0 = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
            const __mmask16 m1 = left >= 32 ? 0xFFFF : left > 16 ? static_cast<__mmask16>((1u << (left - 16)) - 1) : 0;
            for (int j = 0; j < 16; ++j) {
                if (j >= valid) {
                    r[j] = _mm512_setzero_si512();
                    continue;
                }
                const float* src = x + (16 * p + j) * ldx + kb * 32;
                r[j] = to_bf16_32(_mm512_maskz_loadu_ps(m0, src), _mm512_maskz_loadu_ps(m1, src + 16));
            }
            transpose(r);  // row j's pair i → tile row i, lane j
            uint16_t* tile = out + (p * kb_n + kb) * 512;
            for (int i = 0; i < 16; ++i) _mm512_storeu_si512(tile + 32 * i, r[i]);
        }
    }
}

// ---- The A operand: weight rows dequantized to row-major BF16 tiles ----
// Each writes one row's values [32 kb0, 32 kb1) as tile rows: step t at out + 512 t (out: the row's place in its
// panel's first tile).

CM_DQ_FN void a_row_q4k(const uint8_t* row, int64_t kb0, int64_t kb1, uint16_t* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    alignas(64) float f[16];  // d * scale of sub-blocks 0..7, then -(dmin * min)
    alignas(16) uint8_t sm[16];
    for (int64_t sb = kb0 / 8; sb < kb1 / 8; ++sb) {
        const uint8_t* b = row + sb * kQ4kBytes;
        _mm_prefetch(reinterpret_cast<const char*>(b + 4 * kQ4kBytes), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(b + 4 * kQ4kBytes + 64), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(b + 4 * kQ4kBytes + 128), _MM_HINT_T0);
        q4k_scales_mins(b + 4, sm);
        // d*sc and dmin*m exact (11 x 6 significant bits)
        const __m512 dd = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(half(b)), _mm512_set1_ps(-half(b + 2)));
        const __m128i sm8 = _mm_load_si128(reinterpret_cast<const __m128i*>(sm));
        _mm512_store_ps(f, _mm512_mul_ps(dd, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sm8))));
        uint16_t* o = out + (sb * 8 - kb0) * 512;
        for (int c = 0; c < 4; ++c) {  // sub-blocks 2c (low nibbles) and 2c + 1 (high) share 32 bytes
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQ4kQs + 32 * c));
            for (int h = 0; h < 2; ++h) {
                const int j = 2 * c + h;
                // d*sc*q exact too (+4 bits): the FMA rounds once, as ggml's d1 * q - m1 does.
                const __m512 scale = _mm512_set1_ps(f[j]), negmin = _mm512_set1_ps(f[8 + j]);
                const __m256i v = _mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, low4);
                const __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(v)));
                const __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(v, 1)));
                const __m512 a = _mm512_fmadd_ps(q0, scale, negmin), e = _mm512_fmadd_ps(q1, scale, negmin);
                _mm512_storeu_si512(o + j * 512, to_bf16_32(a, e));
            }
        }
    }
}

CM_DQ_FN void a_row_q80(const uint8_t* row, int64_t kb0, int64_t kb1, uint16_t* out) {
    for (int64_t kb = kb0; kb < kb1; ++kb) {
        const uint8_t* b = row + kb * kQ80Bytes;
        _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kQ80Bytes), _MM_HINT_T0);
        const __m512 d = _mm512_set1_ps(half(b));
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
        const __m512 a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), d);
        const __m512 e = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), d);
        _mm512_storeu_si512(out + (kb - kb0) * 512, to_bf16_32(a, e));  // d * q exact in F32, one rounding to BF16
    }
}

// F16 (bf16_in false) or BF16 values of a row of k: the step holding k's end masked, zeros beyond.
CM_DQ_FN void a_row_16bit(const uint8_t* row, int64_t k, int64_t kb0, int64_t kb1, bool bf16_in, uint16_t* out) {
    const auto* src = reinterpret_cast<const uint16_t*>(row);
    for (int64_t kb = kb0; kb < kb1; ++kb) {
        const int64_t left = k - kb * 32;
        const __mmask32 m = left >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1ull << left) - 1);
        _mm_prefetch(reinterpret_cast<const char*>(src + kb * 32 + 256), _MM_HINT_T0);
        const __m512i v = _mm512_maskz_loadu_epi16(m, src + kb * 32);
        __m512i o = v;
        if (!bf16_in) {
            o = to_bf16_32(_mm512_cvtph_ps(_mm512_castsi512_si256(v)),
                           _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1)));
        }
        _mm512_storeu_si512(out + (kb - kb0) * 512, o);
    }
}

CM_DQ_FN void dequant_a(ggml_type type, const void* w, size_t rb, int64_t k, int64_t r0, int64_t nr, int64_t kb0,
                        int64_t kb1, uint16_t* out) {
    const int64_t ns = kb1 - kb0, pe = ns * 512;  // values of a panel
    for (int64_t f = 0; f < amx_rows_pad(nr); ++f) {
        uint16_t* o = out + (f / 16) * pe + (f % 16) * 32;
        if (f >= nr) {
            for (int64_t t = 0; t < ns; ++t) _mm512_storeu_si512(o + t * 512, _mm512_setzero_si512());
            continue;
        }
        const uint8_t* row = static_cast<const uint8_t*>(w) + (r0 + f) * rb;
        switch (type) {
            case GGML_TYPE_Q4_K: a_row_q4k(row, kb0, kb1, o); break;
            case GGML_TYPE_Q8_0: a_row_q80(row, kb0, kb1, o); break;
            case GGML_TYPE_F16: a_row_16bit(row, k, kb0, kb1, false, o); break;
            case GGML_TYPE_BF16: a_row_16bit(row, k, kb0, kb1, true, o); break;
            default: std::abort();
        }
    }
}

// ---- The product ----

// C tile `c` (a literal: the tile intrinsics paste their register number into the instruction) from its
// accumulator at p (zero when `first`), and back.
#define CM_DQ_ACC_IN(c, p, first) \
    do {                          \
        if (first) {              \
            _tile_zero(c);        \
        } else {                  \
            _tile_loadd(c, p, 64); \
        }                         \
    } while (0)
#define CM_DQ_ACC_OUT(c, p) _tile_stored(c, p, 64)

// C (tile 2w + x, at acc + w * acc_pe + 256 x; F32, 16 x 16) += A_w B_x over ns steps of 32 values of k, for TW
// weight panels (A tiles 4, 5: pe_a values apart) and TX activation panels (B tiles 6, 7: pe_b apart). first: C
// starts at zero, else at acc. Each product is issued as soon as its two tiles are loaded.
template <int TW, int TX>
CM_DQ_AMX_FN void micro(const uint16_t* a, int64_t pe_a, const uint16_t* b, int64_t pe_b, int64_t ns, float* acc,
                        int64_t acc_pe, bool first) {
    float* const c[4] = {acc, acc + 256, acc + acc_pe, acc + acc_pe + 256};
    CM_DQ_BARRIER();
    CM_DQ_ACC_IN(0, c[0], first);
    if constexpr (TX == 2) CM_DQ_ACC_IN(1, c[1], first);
    if constexpr (TW == 2) CM_DQ_ACC_IN(2, c[2], first);
    if constexpr (TW == 2 && TX == 2) CM_DQ_ACC_IN(3, c[3], first);
    for (const uint16_t *at = a, *bt = b, *end = a + ns * 512; at < end; at += 512, bt += 512) {
        _tile_loadd(6, bt, 64);  // activations 0 with weights 0, then 1; activations 1 with both
        _tile_loadd(4, at, 64);
        _tile_dpbf16ps(0, 4, 6);
        if constexpr (TW == 2) _tile_loadd(5, at + pe_a, 64);
        if constexpr (TW == 2) _tile_dpbf16ps(2, 5, 6);
        if constexpr (TX == 2) _tile_loadd(7, bt + pe_b, 64);
        if constexpr (TX == 2) _tile_dpbf16ps(1, 4, 7);
        if constexpr (TW == 2 && TX == 2) _tile_dpbf16ps(3, 5, 7);
    }
    CM_DQ_ACC_OUT(0, c[0]);
    if constexpr (TX == 2) CM_DQ_ACC_OUT(1, c[1]);
    if constexpr (TW == 2) CM_DQ_ACC_OUT(2, c[2]);
    if constexpr (TW == 2 && TX == 2) CM_DQ_ACC_OUT(3, c[3]);
    CM_DQ_BARRIER();
}

using MicroFn = void (*)(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, float*, int64_t, bool);
constexpr MicroFn kMicro[2][2] = {{micro<1, 1>, micro<1, 2>}, {micro<2, 1>, micro<2, 2>}};

// A C tile (16 weight rows x 16 activation rows, F32) into y transposed: y[j * ldy + r] for the nj activation rows
// and nr weight rows that exist.
CM_DQ_FN void c_out(const float* c, float* y, size_t ldy, int nj, int nr, const Transpose& transpose) {
    __m512i r[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(c + 16 * i);
    transpose(r);
    const __mmask16 m = nr >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nr) - 1);
    for (int j = 0; j < nj; ++j) _mm512_mask_storeu_ps(y + j * ldy, m, _mm512_castsi512_ps(r[j]));
}

// Per thread: passes of up to kAmxDequantPass activation rows; in a pass, blocks of kAmxDequantRows weight rows; in
// a block, k slices dequantized in turn, every activation row of the pass going over each slice (32 x 32 outputs a
// kernel call, C through the accumulators between slices); at the end of k the block's outputs are written. Every
// output sums over k in order, one step of 32 after the other (the F32 C tiles go to memory and back exactly).
CM_DQ_AMX_FN void gemm(ggml_type type, const void* w, size_t rb, int64_t k, int64_t r0, int64_t r1, const uint16_t* xb,
                       int64_t n, float* y, size_t ldy, uint16_t* scratch) {
    static const Transpose transpose;
    const int64_t kb_n = amx_k_pad(k) / 32, pe_b = kb_n * 512;
    uint16_t* const a = scratch;
    float* const acc = reinterpret_cast<float*>(scratch + a_tiles_values(k));
    amx_tiles_configure();
    for (int64_t jb = 0; jb < n; jb += kAmxDequantPass) {
        const int64_t je = std::min(n, jb + kAmxDequantPass), nt = (je - jb + 15) / 16;
        const int64_t acc_pe = nt * 256;  // floats between the accumulators of consecutive weight panels
        for (int64_t rb0 = r0; rb0 < r1; rb0 += kAmxDequantRows) {
            const int64_t nr = std::min(kAmxDequantRows, r1 - rb0), np = (nr + 15) / 16;
            for (int64_t kb0 = 0; kb0 < kb_n; kb0 += kSliceSteps) {
                const int64_t kb1 = std::min(kb_n, kb0 + kSliceSteps), ns = kb1 - kb0;
                dequant_a(type, w, rb, k, rb0, nr, kb0, kb1, a);
                for (int64_t p = 0; p < np; p += 2) {
                    const int tw = p + 1 < np ? 2 : 1;
                    for (int64_t q = 0; q < nt; q += 2) {
                        const int tx = q + 1 < nt ? 2 : 1;
                        kMicro[tw - 1][tx - 1](a + p * ns * 512, ns * 512, xb + (jb / 16 + q) * pe_b + kb0 * 512, pe_b,
                                               ns, acc + p * acc_pe + q * 256, acc_pe, kb0 == 0);
                    }
                }
            }
            for (int64_t p = 0; p < np; ++p) {
                for (int64_t q = 0; q < nt; ++q) {
                    c_out(acc + p * acc_pe + q * 256, y + (jb + 16 * q) * ldy + rb0 + 16 * p, ldy,
                          int(std::min<int64_t>(16, je - jb - 16 * q)), int(std::min<int64_t>(16, nr - 16 * p)),
                          transpose);
                }
            }
        }
    }
    amx_tiles_release();
}

}  // namespace

void amx_convert_rows_b(const float* x, size_t ldx, int64_t n, int64_t k, int64_t p0, int64_t p1, uint16_t* out) {
    if (p0 < p1) convert_b(x, ldx, n, k, p0, p1, out);
}

void amx_dequant_a_tiles(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t nr,
                         int64_t kb0, int64_t kb1, uint16_t* out) {
    if (nr > 0 && kb0 < kb1) dequant_a(type, w, row_bytes, k, r0, nr, kb0, kb1, out);
}

void amx_gemm_dequant(ggml_type type, const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t r1,
                      const uint16_t* xb, int64_t n, float* y, size_t ldy, uint16_t* scratch) {
    if (n > 0 && r0 < r1) gemm(type, w, row_bytes, k, r0, r1, xb, n, y, ldy, scratch);
}

#else

void amx_convert_rows_b(const float*, size_t, int64_t, int64_t, int64_t, int64_t, uint16_t*) { std::abort(); }
void amx_dequant_a_tiles(ggml_type, const void*, size_t, int64_t, int64_t, int64_t, int64_t, int64_t, uint16_t*) {
    std::abort();
}
void amx_gemm_dequant(ggml_type, const void*, size_t, int64_t, int64_t, int64_t, const uint16_t*, int64_t, float*,
                      size_t, uint16_t*) {
    std::abort();
}

#endif

}  // namespace cm::cpu
