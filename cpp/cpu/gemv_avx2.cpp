// The AVX2 + FMA + F16C level of cpu/gemv.h (Haswell and later, AMD Zen): the same products as the AVX-512 kernels
// in gemv.cpp, on 256-bit registers and without VNNI. Compiled with per-function target attributes, so the
// binary runs on any x86-64 CPU; cpu/level.cpp decides at run time whether these are called.
//
// Exactness contract (as at the AVX-512 level): each activation row's result is computed by the same instruction
// sequence whatever the number of rows in the call and whichever rows share it. The integer parts are exact sums
// (their order does not matter); the float operations of a row (one FMA per weight block into that row's own
// accumulator, the final horizontal sum) are the same for every group size. Q8_0/F16/F32 results differ from the
// AVX-512 level's in the last bits (8-lane instead of 16-lane partial sums), never between rows of one level; Q4_K
// results are the AVX-512 level's bits (each weight row has a lane of its own at both levels, q4k_rows8).
#include "cpu/gemv_avx2.h"

#include "cpu/gemv_common.h"

#include <cstring>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define CM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace cm::cpu {

namespace {

using namespace detail;

CM_AVX2 float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

CM_AVX2 float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

CM_AVX2 int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

CM_AVX2 float fp16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

CM_AVX2 __m256 abs_ps(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }

CM_AVX2 float abs_max(const float* x, int n) {
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + i)));
    return hmax(m);
}

// Quantizes 32 floats with the inverse scale: round to nearest even, saturated to int8 (the values the AVX-512
// level's VPMOVSDB gives).
CM_AVX2 void quantize32(const float* x, float iscale, int8_t* q) {
    const __m256 s = _mm256_set1_ps(iscale);
    __m256i v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), s));
    // the packs work per 128-bit lane: dwords come out as a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    const __m256i o = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), o);
}

CM_AVX2 int32_t sum32(const int8_t* q) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)), ones);
    const __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)), ones);
    return hsum_epi32(_mm256_add_epi32(lo, hi));
}

void quantize_q4k(const float* x, int64_t n, ActQ4K a) { quantize_q4k_with(x, n, a, abs_max, quantize32, sum32); }

CM_AVX2 __m256i bcast32(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

CM_AVX2 __m256i load2x128(const uint8_t* a, const uint8_t* b) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1);
}

// 8 Q4_K weight rows (rp[k], nb blocks each) against the n_x activation rows: out[j * 8 + k] = dot(row k, x_j).
// The AVX-512 level's weight-row-interleaved kernel (q4k_rows16 in gemv.cpp) on 8 lanes: per block the 8 rows'
// bytes transposed (VPUNPCK*, VPERM2I128) so that lane r belongs to row r; VPMADDUBSW of the nibbles by 4
// activation bytes broadcast to every lane (pairs at most 2 * 15 * 127), four of them added (16 products, at most
// 16 * 15 * 127 < 2^15 in two 16-bit halves), then VPMADDWD by the sub-block's scale in both halves: the exact
// int32 sum. Each row's float operations are the AVX-512 level's (same terms, same order), so the two levels give
// the same bits for Q4_K.
// One block's transposed weights, scales and mins for the activation rows [j0, j0 + G).
struct Q4KBlock256 {
    __m256i T[32];  // the nibble bytes: T[8c + t] lane r = dword t of row r's chunk c
    __m256i sc[8], mp[4];  // sub-block scales, mins in pairs
    __m256 wd, wdmin;
};

template <int G>
CM_AVX2 void q4k_group(const Q4KBlock256& b, const ActQ4K* aj, int64_t i, __m256* acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i is[G];
    for (int half = 0; half < 2; ++half) {
        for (int j = 0; j < G; ++j) is[j] = _mm256_setzero_si256();
        for (int c = 2 * half; c < 2 * half + 2; ++c) {
            for (int s = 0; s < 2; ++s) {  // low nibbles: sub-block 2c; high: 2c + 1
                for (int q = 0; q < 2; ++q) {
                    __m256i nib[4];
                    for (int k = 0; k < 4; ++k) {
                        const __m256i w = b.T[8 * c + 4 * q + k];
                        nib[k] = _mm256_and_si256(s == 0 ? w : _mm256_srli_epi16(w, 4), m4);
                    }
                    const int64_t xo = i * kQK + 64 * c + 32 * s + 16 * q;
                    for (int j = 0; j < G; ++j) {
                        const int8_t* xq = aj[j].q + xo;
                        const __m256i p = _mm256_add_epi16(
                            _mm256_add_epi16(_mm256_maddubs_epi16(nib[0], bcast32(xq)),
                                             _mm256_maddubs_epi16(nib[1], bcast32(xq + 4))),
                            _mm256_add_epi16(_mm256_maddubs_epi16(nib[2], bcast32(xq + 8)),
                                             _mm256_maddubs_epi16(nib[3], bcast32(xq + 12))));
                        is[j] = _mm256_add_epi32(is[j], _mm256_madd_epi16(p, b.sc[2 * c + s]));
                    }
                }
            }
        }
        for (int j = 0; j < G; ++j)
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[j]), _mm256_mul_ps(b.wd, _mm256_set1_ps(aj[j].d[i])),
                                          acc[j]);
    }
    for (int j = 0; j < G; ++j) {
        const int16_t* sm = aj[j].sums + 8 * i;
        const __m256i m = _mm256_add_epi32(
            _mm256_add_epi32(_mm256_madd_epi16(b.mp[0], bcast32(sm)), _mm256_madd_epi16(b.mp[1], bcast32(sm + 2))),
            _mm256_add_epi32(_mm256_madd_epi16(b.mp[2], bcast32(sm + 4)), _mm256_madd_epi16(b.mp[3], bcast32(sm + 6))));
        acc[j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(b.wdmin, _mm256_set1_ps(aj[j].d[i])),
                                       acc[j]);
    }
}

template <int Max>
CM_AVX2 void q4k_rows8(const uint8_t* const* rp, int64_t nb, const ActQ4K* a, int n_x, float* out, size_t row_bytes,
        size_t next) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m6 = _mm256_set1_epi8(0x3f), m2hi = _mm256_set1_epi8(0x30);
    __m256 acc[kMaxGemvRows];
    for (int j = 0; j < n_x; ++j) acc[j] = _mm256_setzero_ps();
    Q4KBlock256 b;
    for (int64_t i = 0; i < nb; ++i) {
        const size_t off = size_t(i) * kQ4KBytes;
        q4k_prefetch<8>(rp, off, row_bytes, next);
        // header (rows q and q + 4 in h[q]), transposed: H[k] lane r = dword k of row r's first 16 bytes
        __m256i h[4], H[4];
        for (int q = 0; q < 4; ++q) h[q] = load2x128(rp[q] + off, rp[q + 4] + off);
        {
            const __m256i t0 = _mm256_unpacklo_epi32(h[0], h[1]), t1 = _mm256_unpackhi_epi32(h[0], h[1]);
            const __m256i t2 = _mm256_unpacklo_epi32(h[2], h[3]), t3 = _mm256_unpackhi_epi32(h[2], h[3]);
            H[0] = _mm256_unpacklo_epi64(t0, t2), H[1] = _mm256_unpackhi_epi64(t0, t2);
            H[2] = _mm256_unpacklo_epi64(t1, t3), H[3] = _mm256_unpackhi_epi64(t1, t3);
        }
        const __m256i sc_lo = _mm256_and_si256(H[1], m6), mn_lo = _mm256_and_si256(H[2], m6);
        const __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(H[3], m4), _mm256_and_si256(_mm256_srli_epi32(H[1], 2), m2hi));
        const __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(H[3], 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi32(H[2], 2), m2hi));
        // scale of sub-block s in both 16-bit halves of each row's lane; mins of sub-blocks 2p, 2p+1 as a pair
        const __m256i dws = _mm256_setr_epi32(int32_t(0x80008000u), int32_t(0x80048004u), int32_t(0x80088008u),
                                              int32_t(0x800c800cu), int32_t(0x80008000u), int32_t(0x80048004u),
                                              int32_t(0x80088008u), int32_t(0x800c800cu));
        for (int s = 0; s < 4; ++s) {
            const __m256i sel = _mm256_add_epi32(dws, _mm256_set1_epi32(s | s << 16));
            b.sc[s] = _mm256_shuffle_epi8(sc_lo, sel);
            b.sc[s + 4] = _mm256_shuffle_epi8(sc_hi, sel);
        }
        for (int p = 0; p < 2; ++p) {
            const __m256i sel = _mm256_add_epi32(dws, _mm256_set1_epi32(2 * p + ((2 * p + 1) << 16)));
            b.mp[p] = _mm256_shuffle_epi8(mn_lo, sel);
            b.mp[p + 2] = _mm256_shuffle_epi8(mn_hi, sel);
        }
        // d and dmin (fp16, low and high half of H[0]) of the 8 rows
        const __m256i dd = _mm256_permute4x64_epi64(
            _mm256_shuffle_epi8(H[0], _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8,
                                                       9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15)),
            0xd8);
        b.wd = _mm256_cvtph_ps(_mm256_castsi256_si128(dd));
        b.wdmin = _mm256_cvtph_ps(_mm256_extracti128_si256(dd, 1));
        for (int c = 0; c < 4; ++c) {
            __m256i z[8], t[8], u[8];
            for (int r = 0; r < 8; ++r)
                z[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rp[r] + off + 16 + 32 * size_t(c)));
            for (int q = 0; q < 4; ++q) {
                t[2 * q] = _mm256_unpacklo_epi32(z[2 * q], z[2 * q + 1]);
                t[2 * q + 1] = _mm256_unpackhi_epi32(z[2 * q], z[2 * q + 1]);
            }
            for (int g = 0; g < 2; ++g) {  // rows 4g..4g+3: u[4g + k] = dwords k | k + 4
                u[4 * g] = _mm256_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
                u[4 * g + 1] = _mm256_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
                u[4 * g + 2] = _mm256_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
                u[4 * g + 3] = _mm256_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
            }
            for (int k = 0; k < 4; ++k) {
                b.T[8 * c + k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
                b.T[8 * c + k + 4] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
            }
        }
        for_groups<Max>(n_x, [&](int j0, auto g) { q4k_group<decltype(g)::value>(b, a + j0, i, acc + j0); });
    }
    for (int j = 0; j < n_x; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

void quantize_q80(const float* x, int64_t n, ActQ80 a) { quantize_q80_with(x, n, a, abs_max, quantize32); }

// G activation rows against one Q8_0 weight row: VPMADDUBSW of |w| (unsigned, |-128| = 128) by x with w's sign
// (VPSIGNB), pairs at most 2 * 128 * 127 < 2^15, then VPMADDWD by ones: an exact int32 per 4 values; one FMA per
// block and row.
template <int G>
CM_AVX2 void dot_q80(const uint8_t* row, int64_t nb, const ActQ80* a, float* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[G];
    for (int j = 0; j < G; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = row + i * kQ8Bytes;
        if ((i & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(b) + kPrefetch, _MM_HINT_T0);
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
        const __m256i wabs = _mm256_sign_epi8(w, w);
        const float d = fp16(b);
        for (int j = 0; j < G; ++j) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[j].q + i * kQ8Block));
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x, w)), ones);
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * a[j].d[i]), acc[j]);
        }
    }
    for (int j = 0; j < G; ++j) out[j] = hsum(acc[j]);
}

// 8 weights from an F16 or F32 row at value i; the last `left` < 8 of a row through a zero-padded copy.
template <bool F16>
CM_AVX2 __m256 load_w(const uint8_t* row, int64_t i) {
    if constexpr (F16) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
    } else {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
    }
}

template <bool F16>
CM_AVX2 __m256 load_w_tail(const uint8_t* row, int64_t i, int64_t left) {
    constexpr int kBytes = F16 ? 2 : 4;
    alignas(32) uint8_t buf[32] = {};
    std::memcpy(buf, row + kBytes * i, size_t(kBytes * left));
    return load_w<F16>(buf, 0);
}

CM_AVX2 __m256 load_x_tail(const float* x, int64_t left) {
    alignas(32) float buf[8] = {};
    std::memcpy(buf, x, sizeof(float) * size_t(left));
    return _mm256_load_ps(buf);
}

// R weight rows against G activation rows, F16 or F32 weights: out[r * G + j] = dot(w_r, x_j). Every (r, j) pair
// has two accumulators of its own and one order whatever R, G and the other rows are: 8-wide chunks alternately
// into a0 and a1 (16 values a step), a last whole chunk into a0, the zero-padded tail into a1, then hsum(a0 + a1).
// Two chains per pair hide the FMA latency when a weight load waits for memory. R x G <= 4 pairs (8 accumulators,
// R weight vectors and one activation vector in the 16 registers): dot_block splits larger blocks.
template <int R, int G, bool F16>
CM_AVX2 void dot_float(const uint8_t* row, size_t row_bytes, int64_t n, const float* x, int64_t ldx, float* out) {
    constexpr int kBytes = F16 ? 2 : 4;
    __m256 a0[R][G], a1[R][G];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) a0[r][j] = _mm256_setzero_ps(), a1[r][j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if ((i & (64 / kBytes - 1)) == 0) {  // 64 bytes of each row, 4 KB ahead
            for (int r = 0; r < R; ++r)
                _mm_prefetch(reinterpret_cast<const char*>(row + r * row_bytes + kBytes * i) + kPrefetch, _MM_HINT_T0);
        }
        __m256 w0[R], w1[R];
        for (int r = 0; r < R; ++r) {
            w0[r] = load_w<F16>(row + r * row_bytes, i);
            w1[r] = load_w<F16>(row + r * row_bytes, i + 8);
        }
        for (int j = 0; j < G; ++j) {
            const __m256 x0 = _mm256_loadu_ps(x + j * ldx + i), x1 = _mm256_loadu_ps(x + j * ldx + i + 8);
            for (int r = 0; r < R; ++r) {
                a0[r][j] = _mm256_fmadd_ps(w0[r], x0, a0[r][j]);
                a1[r][j] = _mm256_fmadd_ps(w1[r], x1, a1[r][j]);
            }
        }
    }
    if (i + 8 <= n) {
        for (int r = 0; r < R; ++r) {
            const __m256 w = load_w<F16>(row + r * row_bytes, i);
            for (int j = 0; j < G; ++j) a0[r][j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + j * ldx + i), a0[r][j]);
        }
        i += 8;
    }
    if (i < n) {
        for (int r = 0; r < R; ++r) {
            const __m256 w = load_w_tail<F16>(row + r * row_bytes, i, n - i);
            for (int j = 0; j < G; ++j) a1[r][j] = _mm256_fmadd_ps(w, load_x_tail(x + j * ldx + i, n - i), a1[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) out[r * G + j] = hsum(_mm256_add_ps(a0[r][j], a1[r][j]));
}

// R x G pairs as blocks of at most 4 (2 weight rows at a time when G > 1).
template <int R, int G, bool F16>
void dot_block(const uint8_t* row, size_t row_bytes, int64_t n, const float* x, int64_t ldx, float* out) {
    if constexpr (G > 1 && R > 2) {
        dot_float<2, G, F16>(row, row_bytes, n, x, ldx, out);
        dot_block<R - 2, G, F16>(row + 2 * row_bytes, row_bytes, n, x, ldx, out + 2 * G);
    } else {
        dot_float<R, G, F16>(row, row_bytes, n, x, ldx, out);
    }
}

// K-blocked form of dot_float for many activation rows (as gemv.cpp's gemv_float_kblocked): per block of R <= 4
// weight rows and kb values, the weights converted once into wb (F32, in L1), then each pair of activation rows
// runs its accumulators (kept in acc between blocks) over them, two weight rows at a time. dot_float's FMAs in
// its order: the same bits as dot_float.
template <int R, int G>
CM_AVX2 void float_kblock(const float* wb, int kb_stride, int64_t kl, const float* x, int64_t ldx, __m256* acc) {
    __m256 a0[R][G], a1[R][G];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) a0[r][j] = acc[(r * kMaxGemvRows + j) * 2], a1[r][j] = acc[(r * kMaxGemvRows + j) * 2 + 1];
    for (int64_t i = 0; i < kl; i += 16) {
        __m256 w0[R], w1[R];
        for (int r = 0; r < R; ++r) {
            w0[r] = _mm256_load_ps(wb + r * kb_stride + i), w1[r] = _mm256_load_ps(wb + r * kb_stride + i + 8);
            __asm__("" : "+x"(w0[r]), "+x"(w1[r]));  // in registers for all G rows (see gemv.cpp)
        }
        for (int j = 0; j < G; ++j) {
            const __m256 x0 = _mm256_loadu_ps(x + j * ldx + i), x1 = _mm256_loadu_ps(x + j * ldx + i + 8);
            for (int r = 0; r < R; ++r) {
                a0[r][j] = _mm256_fmadd_ps(w0[r], x0, a0[r][j]);
                a1[r][j] = _mm256_fmadd_ps(w1[r], x1, a1[r][j]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) acc[(r * kMaxGemvRows + j) * 2] = a0[r][j], acc[(r * kMaxGemvRows + j) * 2 + 1] = a1[r][j];
}

template <bool F16>
CM_AVX2 void float_convert(const uint8_t* row, size_t row_bytes, int R, int64_t k0, int64_t kl, float* wb, int kb_stride) {
    constexpr int kBytes = F16 ? 2 : 4;
    for (int r = 0; r < R; ++r) {
        const uint8_t* wr = row + r * row_bytes;
        for (int64_t i = 0; i < kl; i += 16) {
            if (((k0 + i) & (64 / kBytes - 1)) == 0)
                _mm_prefetch(reinterpret_cast<const char*>(wr + kBytes * (k0 + i)) + kPrefetch, _MM_HINT_T0);
            _mm256_store_ps(wb + r * kb_stride + i, load_w<F16>(wr, k0 + i));
            _mm256_store_ps(wb + r * kb_stride + i + 8, load_w<F16>(wr, k0 + i + 8));
        }
    }
}

// dot_float's tail (a whole 8-chunk into a0, the zero-padded rest into a1), then y = hsum(a0 + a1) of each pair.
template <bool F16>
CM_AVX2 void float_finish(const uint8_t* row, size_t row_bytes, int R, int64_t n, const float* x, int64_t ldx, int n_x,
                          const __m256* acc, float* y, int64_t ldy) {
    for (int r = 0; r < R; ++r) {
        for (int j = 0; j < n_x; ++j) {
            __m256 a0 = acc[(r * kMaxGemvRows + j) * 2], a1 = acc[(r * kMaxGemvRows + j) * 2 + 1];
            int64_t i = n / 16 * 16;
            if (i + 8 <= n) {
                a0 = _mm256_fmadd_ps(load_w<F16>(row + r * row_bytes, i), _mm256_loadu_ps(x + j * ldx + i), a0);
                i += 8;
            }
            if (i < n) a1 = _mm256_fmadd_ps(load_w_tail<F16>(row + r * row_bytes, i, n - i), load_x_tail(x + j * ldx + i, n - i), a1);
            y[j * ldy + r] = hsum(_mm256_add_ps(a0, a1));
        }
    }
}

CM_AVX2 void zero_acc(__m256* acc, int n) {
    for (int k = 0; k < n; ++k) acc[k] = _mm256_setzero_ps();
}

template <bool F16>
void gemv_float_kblocked(const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                         int64_t ldx, int n_x, float* y, int64_t ldy) {
    alignas(32) float wb[4 * 512];
    __m256 acc[4 * kMaxGemvRows * 2];
    gemv_float_kblocked_with(
        rows, row_bytes, n / 16 * 16, r0, r1, n_x, [&] { zero_acc(acc, 4 * kMaxGemvRows * 2); },
        [&](auto rr, const uint8_t* row, int64_t k0, int64_t kl, int kb) {
            float_convert<F16>(row, row_bytes, decltype(rr)::value, k0, kl, wb, kb);
        },
        [&](auto rr, auto g, int j, int64_t k0, int64_t kl, int kb) {  // two weight rows at a time
            constexpr int R = decltype(rr)::value, G = decltype(g)::value;
            float_kblock<R < 2 ? R : 2, G>(wb, kb, kl, x + j * ldx + k0, ldx, acc + j * 2);
            if constexpr (R > 2)
                float_kblock<R - 2, G>(wb + 2 * kb, kb, kl, x + j * ldx + k0, ldx, acc + (2 * kMaxGemvRows + j) * 2);
        },
        [&](auto rr, const uint8_t* row, int64_t r) {
            float_finish<F16>(row, row_bytes, decltype(rr)::value, n, x, ldx, n_x, acc, y + r, ldy);
        });
}

template <bool F16>
void gemv_float(const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                int64_t ldx, int n_x, float* y, int64_t ldy) {
    gemv_float_blocks(r0, r1, n_x, y, ldy, [&](auto rr, auto g, int64_t r, int j, float* out) {
        dot_block<decltype(rr)::value, decltype(g)::value, F16>(rows + r * row_bytes, row_bytes, n, x + j * ldx, ldx,
                                                                 out);
    });
}

// GELU, bit-identical to the AVX-512 level's gelu16 (gemv.cpp): the same operations in the same order, each
// correctly rounded on either width (FMA, division, min, round to nearest); VSCALEFPS there is a multiplication
// by 2^n here, exact because p 2^n stays a normal float (n >= -117 for the clamped arguments).
CM_AVX2 __m256 exp_neg(__m256 z) {  // exp(z) for z in [-81, 0]
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(z, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), z);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

CM_AVX2 __m256 gelu8(__m256 x) {
    const __m256 u = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
    const __m256 a = _mm256_min_ps(abs_ps(u), _mm256_set1_ps(9.0f));
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(a, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
    __m256 q = _mm256_set1_ps(1.061405429f);
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-1.453152027f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.421413741f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.284496736f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.254829592f));
    q = _mm256_mul_ps(q, t);
    const __m256 erf_a = _mm256_fnmadd_ps(q, exp_neg(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), a), a)),
                                          _mm256_set1_ps(1.0f));
    const __m256 neg = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 one_plus = _mm256_blendv_ps(_mm256_add_ps(one, erf_a), _mm256_sub_ps(one, erf_a), neg);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), one_plus);
}

}  // namespace

CM_AVX2 void gelu_erf_avx2(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        alignas(32) float buf[8];
        _mm256_store_ps(buf, gelu8(load_x_tail(x + i, n - i)));
        std::memcpy(y + i, buf, sizeof(float) * size_t(n - i));
    }
}

void gemv_prepare_avx2(ggml_type type, int64_t n, const float* x, int64_t ldx, int n_x, void* scratch) {
    prepare_rows(type, n, x, ldx, n_x, scratch, act_q4k, quantize_q4k, act_q80, quantize_q80);
}

void gemv_avx2(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
               int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, bool prepared) {
    const auto* rows = static_cast<const uint8_t*>(w);
    const bool kblocked = n_x >= kFloatKBlockRows;
    if (type == GGML_TYPE_F16) {
        return kblocked ? gemv_float_kblocked<true>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy)
                        : gemv_float<true>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy);
    }
    if (type == GGML_TYPE_F32) {
        return kblocked ? gemv_float_kblocked<false>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy)
                        : gemv_float<false>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy);
    }
    if (type == GGML_TYPE_Q4_K) {
        return gemv_q4k_blocks<8>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, prepared, quantize_q4k,
                                  [n](const uint8_t* const* rp, const ActQ4K* a, int nx, float* out, size_t rb, size_t next) {
                                      q4k_rows8<4>(rp, n / kQK, a, nx, out, rb, next);
                                  });
    }
    gemv_quantized<4>(type, rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, prepared, act_q80, quantize_q80,
                      [n](auto g, const uint8_t* row, const ActQ80* a, float* out) {
                          dot_q80<decltype(g)::value>(row, n / kQ8Block, a, out);
                      });
}

}  // namespace cm::cpu

#endif
