#include "cpu/gemv.h"

#include "cpu/amx.h"

#include "cpu/gemv_avx2.h"
#include "cpu/gemv_common.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#define CM_GEMV_X86 1
#include <immintrin.h>
#if !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn wherever they are inlined (GCC bug
// 105593, fixed in GCC 13): silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#endif

namespace cm::cpu {

#ifdef CM_GEMV_X86

namespace {

using namespace detail;

// Horizontal reductions written out (GCC 12's _mm512_reduce_* start from an undefined register and warn).
CM_AVX512 float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

CM_AVX512 float hsum(__m512 v) { return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1))); }

CM_AVX512 float hmax(__m512 v) {
    const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

CM_AVX512 float fp16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Quantizes 32 floats with the inverse scale (round to nearest even, saturated to int8).
CM_AVX512 void quantize32(const float* x, float iscale, int8_t* q) {
    const __m512 s = _mm512_set1_ps(iscale);
    const __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), s));
    const __m512i b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16), s));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(a));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(b));
}

CM_AVX512 float abs_max(const float* x, int n) {
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    return hmax(m);
}

CM_AVX512 int32_t sum32(const int8_t* q) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    const __m512i s = _mm512_madd_epi16(_mm512_cvtepi8_epi16(v), _mm512_set1_epi16(1));  // 16 sums of 2
    return int32_t(hsum(_mm512_cvtepi32_ps(s)));  // exact: |sum| <= 32 * 127
}

void quantize_q4k(const float* x, int64_t n, ActQ4K a) { quantize_q4k_with(x, n, a, abs_max, quantize32, sum32); }

// Q4_K, 16 weight rows at once, interleaved in registers: the lane r of every vector belongs to weight row r.
// Per block the 16 rows' bytes are transposed (VPERMT2D, three steps for the nibbles, two for the scale header) so
// that one vector holds the same 4 bytes of all 16 rows; VPDPBUSD against 4 activation bytes broadcast to every
// lane then sums 4 products per row, and 4 such steps (16 weights of one sub-block) are scaled by the rows'
// 6-bit sub-block scales in one VPDPWSSD for all 16 rows (|sum| <= 16 * 15 * 127 < 2^15 sits in the low half of
// its lane, the high half is its sign, the scales' high halves are zero: exact products). Per 256 weights and
// activation row that is 4 VPDPBUSD + 1 VPDPWSSD (+ 1/4 for the mins and a few float operations per 16 rows),
// where one row at a time needs 4 + 4 + the float work for each row: the scale decode, the nibble masks and the
// float work are shared by 16 weight rows, the transposition (shuffle port) by all activation rows.
// Float part, per block, activation row j and weight row r (lane): the integer sum of sub-blocks 0-3 and of 4-7
// (each |s| <= 4 * 63 * 32 * 15 * 127 < 2^24, exact in float), then the mins' sum (exact), into one accumulator:
//   acc = fma(float(s03), d_r * d_j, acc); acc = fma(float(s47), d_r * d_j, acc);
//   acc = fnma(float(m), dmin_r * d_j, acc)
// and y = acc after the last block. The same operations for every activation row whatever shares the call, and
// for every weight row whatever lane it sits in: a row's result does not depend on the other rows (weight or
// activation) of the call.

// Lane layouts of the transpositions: element (row r, dword t) of the input is at (register, lane); each step
// moves one bit of the register number into the lane number and back with one two-source permute per register.
struct Pos {
    int reg, lane;
};
struct Q4KPerm {
    alignas(64) int32_t qs[3][8][16];  // nibble bytes: 16 rows x 8 dwords of a 32-byte chunk
    alignas(64) int32_t hdr[2][4][16];  // header: 16 rows x 4 dwords (d and dmin, 12 bytes of scales and mins)
};

// Input: rows 2p, 2p+1 in register p (8 dwords each); output: dword t of row r in register t, lane r.
inline Pos qs_layout(int step, int r, int t) {
    switch (step) {
        case 0: return {r >> 1, (r & 1) * 8 + t};
        case 1: return {(r >> 2) * 2 + (t >> 2), (r & 3) * 4 + (t & 3)};
        case 2: return {(r >> 3) * 4 + (t >> 1), (r & 7) * 2 + (t & 1)};
        default: return {t, r};
    }
}
// the two source registers of output register R at each step (the registers that differ in the moved bit)
constexpr int qs_src(int step, int R) { return step == 1 ? (R >> 1) * 2 : step == 2 ? (R >> 2) * 4 + ((R >> 1) & 1) : R >> 1; }
constexpr int qs_src2(int step, int R) { return qs_src(step, R) + (step == 1 ? 1 : step == 2 ? 2 : 4); }

// Input: rows 4q..4q+3 in register q (4 dwords each); output: dword k of row r in register k, lane r.
inline Pos hdr_layout(int step, int r, int k) {
    switch (step) {
        case 0: return {r >> 2, (r & 3) * 4 + k};
        case 1: return {(r >> 3) * 2 + (k >> 1), (r & 7) * 2 + (k & 1)};
        default: return {k, r};
    }
}
constexpr int hdr_src(int step, int R) { return step == 1 ? (R >> 1) * 2 : R >> 1; }
constexpr int hdr_src2(int step, int R) { return hdr_src(step, R) + (step == 1 ? 1 : 2); }

const Q4KPerm& q4k_perm() {
    static const Q4KPerm p = [] {
        Q4KPerm q{};
        for (int step = 1; step <= 3; ++step) {
            for (int r = 0; r < 16; ++r)
                for (int t = 0; t < 8; ++t) {
                    const Pos to = qs_layout(step, r, t), from = qs_layout(step - 1, r, t);
                    const int a = qs_src(step, to.reg), b = qs_src2(step, to.reg);
                    if (from.reg != a && from.reg != b) std::abort();  // the layouts above are wrong
                    q.qs[step - 1][to.reg][to.lane] = from.lane + (from.reg == a ? 0 : 16);
                }
        }
        for (int step = 1; step <= 2; ++step) {
            for (int r = 0; r < 16; ++r)
                for (int k = 0; k < 4; ++k) {
                    const Pos to = hdr_layout(step, r, k), from = hdr_layout(step - 1, r, k);
                    const int a = hdr_src(step, to.reg), b = hdr_src2(step, to.reg);
                    if (from.reg != a && from.reg != b) std::abort();
                    q.hdr[step - 1][to.reg][to.lane] = from.lane + (from.reg == a ? 0 : 16);
                }
        }
        // every step's index vectors depend only on the output register's parity: two per step (in registers)
        for (int step = 0; step < 3; ++step)
            for (int R = 2; R < 8; ++R)
                if (std::memcmp(q.qs[step][R], q.qs[step][R & 1], sizeof q.qs[step][R]) != 0) std::abort();
        for (int step = 0; step < 2; ++step)
            for (int R = 2; R < 4; ++R)
                if (std::memcmp(q.hdr[step][R], q.hdr[step][R & 1], sizeof q.hdr[step][R]) != 0) std::abort();
        return q;
    }();
    return p;
}

CM_AVX512 __m512i load2x256(const uint8_t* a, const uint8_t* b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)), 1);
}

CM_AVX512 __m512i load4x128(const uint8_t* a, const uint8_t* b, const uint8_t* c, const uint8_t* d) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(c)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(d)), 3);
}

CM_AVX512 __m512i bcast32(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

// 16 Q4_K weight rows (rp[k], nb blocks each) against the n_x activation rows: out[j * 16 + k] = dot(row k, x_j).
// Activation rows in groups of up to Max per pass over a block's transposed nibbles (their integer sums in
// registers); each row's float accumulator in acc[].
// The per-activation-row work of a block, for G rows at a time (inlined into q4k_rows16, so that a chunk's
// transposed nibbles stay in registers): Op::run<G>(j, args...) for rows [j, j + G), groups as for_groups<Max>.
#define CM_AVX512_INLINE \
    __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma"))) inline
template <int Max, typename Op, typename... Args>
CM_AVX512_INLINE void q4k_each_group(int n_x, Args... args) {
    int j = 0;
    for (; j + Max <= n_x; j += Max) Op::template run<Max>(j, args...);
    if constexpr (Max > 4) {
        if (n_x - j >= 4) {
            Op::template run<4>(j, args...);
            j += 4;
        }
    }
    switch (n_x - j) {
        case 3: if constexpr (Max > 3) Op::template run<3>(j, args...); break;
        case 2: if constexpr (Max > 2) Op::template run<2>(j, args...); break;
        case 1: Op::template run<1>(j, args...); break;
        default: break;
    }
}

// One 32-byte chunk c of 16 rows (T8[t] lane r = dword t of row r's chunk) against G activation rows: into is[j]
// the scaled integer sums of sub-blocks 2c (low nibbles, scale sca) and 2c + 1 (high nibbles, scb).
struct Q4KChunk {
    template <int G>
    CM_AVX512_INLINE static void run(int j0, const __m512i* T8, __m512i sca, __m512i scb, const ActQ4K* a, int64_t xo,
                                     __m512i* is) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        __m512i s[G];
        for (int j = 0; j < G; ++j) s[j] = is[j0 + j];
        for (int h = 0; h < 2; ++h) {  // low nibbles: sub-block 2c; high: 2c + 1
            for (int q = 0; q < 2; ++q) {
                __m512i nib[4];
                for (int k = 0; k < 4; ++k) nib[k] = _mm512_and_si512(h == 0 ? T8[4 * q + k] : _mm512_srli_epi16(T8[4 * q + k], 4), m4);
                for (int j = 0; j < G; ++j) {
                    const int8_t* xq = a[j0 + j].q + xo + 32 * h + 16 * q;
                    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib[0], bcast32(xq));
                    p = _mm512_dpbusd_epi32(p, nib[1], bcast32(xq + 4));
                    p = _mm512_dpbusd_epi32(p, nib[2], bcast32(xq + 8));
                    p = _mm512_dpbusd_epi32(p, nib[3], bcast32(xq + 12));
                    s[j] = _mm512_dpwssd_epi32(s[j], p, h == 0 ? sca : scb);
                }
            }
        }
        for (int j = 0; j < G; ++j) is[j0 + j] = s[j];
    }
};

// acc[j] += float(is[j]) * (d_r * d_j) (sub-blocks 0-3 or 4-7 of block i), is[j] = 0.
struct Q4KFlush {
    template <int G>
    CM_AVX512_INLINE static void run(int j0, __m512i* is, __m512 wd, const ActQ4K* a, int64_t i, __m512* acc) {
        for (int j = j0; j < j0 + G; ++j) {
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[j]), _mm512_mul_ps(wd, _mm512_set1_ps(a[j].d[i])), acc[j]);
            is[j] = _mm512_setzero_si512();
        }
    }
};

// acc[j] -= float(sum over sub-blocks of min * x sums) * (dmin_r * d_j), block i.
struct Q4KMins {
    template <int G>
    CM_AVX512_INLINE static void run(int j0, const __m512i* mp, __m512 wdmin, const ActQ4K* a, int64_t i, __m512* acc) {
        for (int j = j0; j < j0 + G; ++j) {
            const int16_t* sm = a[j].sums + 8 * i;
            __m512i m = _mm512_madd_epi16(mp[0], bcast32(sm));
            m = _mm512_dpwssd_epi32(m, mp[1], bcast32(sm + 2));
            m = _mm512_dpwssd_epi32(m, mp[2], bcast32(sm + 4));
            m = _mm512_dpwssd_epi32(m, mp[3], bcast32(sm + 6));
            acc[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(wdmin, _mm512_set1_ps(a[j].d[i])), acc[j]);
        }
    }
};


// The parts of a block that do not depend on the activation rows, for 16 weight rows (shared by q4k_rows16 and the
// tile kernel q4k_rows16_amx): the transpositions' index vectors, the prefetches, the header decoded per lane
// (row), and a 32-byte chunk transposed.
struct Q4KIdx {
    __m512i iq[3][2], ih[2][2];
};
CM_AVX512_INLINE void q4k_idx(Q4KIdx& ix) {
    const Q4KPerm& perm = q4k_perm();
    for (int k = 0; k < 2; ++k) {
        for (int step = 0; step < 3; ++step) ix.iq[step][k] = _mm512_load_si512(perm.qs[step][k]);
        for (int step = 0; step < 2; ++step) ix.ih[step][k] = _mm512_load_si512(perm.hdr[step][k]);
    }
}

// sc[s]: the 6-bit scale of sub-block s as an int32 (high bits zero) in each row's lane; mp[p]: the mins of
// sub-blocks 2p, 2p + 1 as an int16 pair; wd, wdmin: d and dmin.
struct Q4KHead {
    __m512i sc[8], mp[4];
    __m512 wd, wdmin;
};
CM_AVX512_INLINE void q4k_head(const uint8_t* const* rp, size_t off, const Q4KIdx& ix, Q4KHead& hd) {
    const __m512i m6 = _mm512_set1_epi8(0x3f), m4lo = _mm512_set1_epi8(0x0f), m2hi = _mm512_set1_epi8(0x30);
    // header: H[0] = d | dmin << 16 (fp16), H[1..3] = the 12 bytes of scales and mins
    __m512i h0[4], h1[4], H[4];
    for (int q = 0; q < 4; ++q)
        h0[q] = load4x128(rp[4 * q] + off, rp[4 * q + 1] + off, rp[4 * q + 2] + off, rp[4 * q + 3] + off);
#pragma GCC unroll 4
    for (int R = 0; R < 4; ++R)
        h1[R] = _mm512_permutex2var_epi32(h0[hdr_src(1, R)], ix.ih[0][R & 1], h0[hdr_src2(1, R)]);
#pragma GCC unroll 4
    for (int R = 0; R < 4; ++R)
        H[R] = _mm512_permutex2var_epi32(h1[hdr_src(2, R)], ix.ih[1][R & 1], h1[hdr_src2(2, R)]);
    // 6-bit scales and mins as in the one-row layout: sc0-3 | mn0-3 low 6 bits of bytes 0-3 | 4-7; sc4-7, mn4-7
    // low 4 bits from the nibbles of bytes 8-11, top 2 bits from the top bits of bytes 0-3 | 4-7.
    const __m512i sc_lo = _mm512_and_si512(H[1], m6), mn_lo = _mm512_and_si512(H[2], m6);
    const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(H[3], m4lo), _mm512_and_si512(_mm512_srli_epi32(H[1], 2), m2hi));
    const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(H[3], 4), m4lo),
                                          _mm512_and_si512(_mm512_srli_epi32(H[2], 2), m2hi));
    // (VPSHUFB selects within 128-bit lanes: byte 4d + s of dword d into the low byte, zeros above)
    const __m512i dw = _mm512_set4_epi32(int32_t(0x8080800cu), int32_t(0x80808008u), int32_t(0x80808004u),
                                         int32_t(0x80808000u));
    for (int s = 0; s < 4; ++s) {
        const __m512i sel = _mm512_or_si512(dw, _mm512_set1_epi32(s));
        hd.sc[s] = _mm512_shuffle_epi8(sc_lo, sel);
        hd.sc[s + 4] = _mm512_shuffle_epi8(sc_hi, sel);
    }
    const __m512i dwp = _mm512_set4_epi32(int32_t(0x800c800cu), int32_t(0x80088008u), int32_t(0x80048004u),
                                          int32_t(0x80008000u));
    for (int p = 0; p < 2; ++p) {
        const __m512i sel = _mm512_add_epi32(dwp, _mm512_set1_epi32(2 * p + ((2 * p + 1) << 16)));
        hd.mp[p] = _mm512_shuffle_epi8(mn_lo, sel);
        hd.mp[p + 2] = _mm512_shuffle_epi8(mn_hi, sel);
    }
    hd.wd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(H[0]));
    hd.wdmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(H[0], 16)));
}

// Block i of the 16 rows: its byte offset, returned after the rows' prefetches and with its header decoded into hd.
CM_AVX512_INLINE size_t q4k_block(const uint8_t* const* rp, int64_t i, size_t row_bytes, size_t next, const Q4KIdx& ix,
                                  Q4KHead& hd) {
    const size_t off = size_t(i) * kQ4KBytes;
    q4k_prefetch<16>(rp, off, row_bytes, next);
    q4k_head(rp, off, ix, hd);
    return off;
}

// The 32-byte chunk at offset o of the 16 rows: T8[t] lane r = dword t of row r's chunk.
CM_AVX512_INLINE void q4k_chunk(const uint8_t* const* rp, size_t o, const Q4KIdx& ix, __m512i* T8) {
    __m512i z[8], u[8], v[8];
    for (int p = 0; p < 8; ++p) z[p] = load2x256(rp[2 * p] + o, rp[2 * p + 1] + o);
#pragma GCC unroll 8
    for (int R = 0; R < 8; ++R) u[R] = _mm512_permutex2var_epi32(z[qs_src(1, R)], ix.iq[0][R & 1], z[qs_src2(1, R)]);
#pragma GCC unroll 8
    for (int R = 0; R < 8; ++R) v[R] = _mm512_permutex2var_epi32(u[qs_src(2, R)], ix.iq[1][R & 1], u[qs_src2(2, R)]);
#pragma GCC unroll 8
    for (int R = 0; R < 8; ++R) T8[R] = _mm512_permutex2var_epi32(v[qs_src(3, R)], ix.iq[2][R & 1], v[qs_src2(3, R)]);
}

template <int Max>
CM_AVX512 void q4k_rows16(const uint8_t* const* rp, int64_t nb, const ActQ4K* a, int n_x, float* out, size_t row_bytes,
          size_t next) {
    Q4KIdx ix;
    q4k_idx(ix);
    __m512 acc[kMaxGemvRows];
    for (int j = 0; j < n_x; ++j) acc[j] = _mm512_setzero_ps();
    __m512i is[kMaxGemvRows];
    for (int j = 0; j < n_x; ++j) is[j] = _mm512_setzero_si512();
    for (int64_t i = 0; i < nb; ++i) {
        Q4KHead hd;
        const size_t off = q4k_block(rp, i, row_bytes, next, ix, hd);
        for (int c = 0; c < 4; ++c) {
            __m512i T8[8];
            q4k_chunk(rp, off + 16 + 32 * size_t(c), ix, T8);
            q4k_each_group<Max, Q4KChunk>(n_x, static_cast<const __m512i*>(T8), hd.sc[2 * c], hd.sc[2 * c + 1], a,
                                          i * kQK + 64 * c, is);
            if (c == 1 || c == 3) q4k_each_group<Max, Q4KFlush>(n_x, is, hd.wd, a, i, acc);
        }
        q4k_each_group<Max, Q4KMins>(n_x, static_cast<const __m512i*>(hd.mp), hd.wdmin, a, i, acc);
    }
    for (int j = 0; j < n_x; ++j) _mm512_storeu_ps(out + 16 * j, acc[j]);
}

#if defined(__linux__)
#define CM_Q4K_AMX 1
#define CM_AMX_INT8 __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
// GCC's tile loads take their address as a plain operand: stores to what they load must not be sunk past them.
#define CM_TILE_BARRIER() __asm__ __volatile__("" ::: "memory")

// Q4_K on the AMX-INT8 tiles, for many activation rows (a decode step of several sequences): the same result,
// bit for bit, as q4k_rows16. The integer sums of a block run on the tiles, TDPBSUD (signed activation bytes, the
// A operand, rows j loaded straight from the quantized scratch, by unsigned weight bytes, B), exact int32 sums.
// The sub-block scales go into the weight bytes: with sc = 16 sh + sl (sl < 16, sh < 4), q sl <= 225 and
// q sh <= 45 are bytes, so for the four sub-blocks of a half block
//   s = sum over s of sc_s dot(x_s, q_s) = C_l + 16 C_h,  C_l = dot(x, q sl),  C_h = dot(x, q sh)
// over 128 values each: two C tiles a half, with full 64-byte K. That is q4k_rows16's integer s03 / s47 exactly
// (|C_l| <= 128 * 225 * 127, no overflow), so float(s) and every float operation after it are q4k_rows16's, in
// its order. The B operand is q4k_chunk's transposition (lane r = 4 bytes of weight row r: the tiles' "VNNI"
// layout), nibbles masked and multiplied by the scale parts with VPMULLW (per byte: b sl <= 225 never carries
// into the next byte). Tiles: 0, 1 A (activation rows 0-15, 16-31), 2, 3 B (q sl, q sh of a chunk), 4, 5 C_l,
// C_h of rows 0-15, 6, 7 those of rows 16-31.
CM_AMX_INT8 void q4k_amx_configure(int n0, int n1) {
    alignas(64) unsigned char cfg[64] = {};
    cfg[0] = 1;  // palette 1; colsb[i] at 16 + 2i (16 bits), rows[i] at 48 + i
    auto set = [&cfg](int t, int rows) {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = static_cast<unsigned char>(rows);
    };
    set(0, n0), set(2, 16), set(3, 16), set(4, n0), set(5, n0);
    if (n1 > 0) set(1, n1), set(6, n1), set(7, n1);
    CM_TILE_BARRIER();
    _tile_loadconfig(cfg);
}

struct alignas(64) Q4KAmxBuf {
    uint8_t b[4][2][16][64];     // B of each chunk: q sl, q sh (rows 0-7 the low nibbles' sub-block, 8-15 the high)
    int32_t c[2][2][2][16][16];  // C per half: [half][l/h][row group][row j][weight row]
};

constexpr int kQ4KMinsGroup = 8;  // q4k_each_group's Max for the mins (any Max gives each row the same operations)

template <bool Two>
CM_AMX_INT8 void q4k_rows16_amx(const uint8_t* const* rp, int64_t nb, const ActQ4K* a, size_t stride, int n_x,
                                float* out, size_t row_bytes, size_t next, Q4KAmxBuf& buf) {
    Q4KIdx ix;
    q4k_idx(ix);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[kMaxDecodeRows];
    for (int j = 0; j < n_x; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        Q4KHead hd;
        const size_t off = q4k_block(rp, i, row_bytes, next, ix, hd);
        __m512i sl[8], sh[8];  // the scale parts of sub-block s in both 16-bit halves of each row's lane
        for (int s = 0; s < 8; ++s) {
            const __m512i l = _mm512_and_si512(hd.sc[s], _mm512_set1_epi32(15)), h = _mm512_srli_epi32(hd.sc[s], 4);
            sl[s] = _mm512_or_si512(l, _mm512_slli_epi32(l, 16));
            sh[s] = _mm512_or_si512(h, _mm512_slli_epi32(h, 16));
        }
        for (int c = 0; c < 4; ++c) {
            __m512i T8[8];
            q4k_chunk(rp, off + 16 + 32 * size_t(c), ix, T8);
            for (int t = 0; t < 8; ++t) {
                const __m512i lo = _mm512_and_si512(T8[t], m4), hi = _mm512_and_si512(_mm512_srli_epi16(T8[t], 4), m4);
                _mm512_store_si512(buf.b[c][0][t], _mm512_mullo_epi16(lo, sl[2 * c]));
                _mm512_store_si512(buf.b[c][0][8 + t], _mm512_mullo_epi16(hi, sl[2 * c + 1]));
                _mm512_store_si512(buf.b[c][1][t], _mm512_mullo_epi16(lo, sh[2 * c]));
                _mm512_store_si512(buf.b[c][1][8 + t], _mm512_mullo_epi16(hi, sh[2 * c + 1]));
            }
        }
        CM_TILE_BARRIER();
        for (int half = 0; half < 2; ++half) {
            _tile_zero(4);
            _tile_zero(5);
            if constexpr (Two) {
                _tile_zero(6);
                _tile_zero(7);
            }
            for (int cc = 0; cc < 2; ++cc) {
                const int c = 2 * half + cc;
                const int8_t* x = a[0].q + i * kQK + 64 * c;
                _tile_loadd(2, buf.b[c][0], 64);
                _tile_loadd(3, buf.b[c][1], 64);
                _tile_loadd(0, x, stride);
                _tile_dpbsud(4, 0, 2);
                _tile_dpbsud(5, 0, 3);
                if constexpr (Two) {
                    _tile_loadd(1, x + 16 * stride, stride);
                    _tile_dpbsud(6, 1, 2);
                    _tile_dpbsud(7, 1, 3);
                }
            }
            _tile_stored(4, buf.c[half][0][0], 64);
            _tile_stored(5, buf.c[half][1][0], 64);
            if constexpr (Two) {
                _tile_stored(6, buf.c[half][0][1], 64);
                _tile_stored(7, buf.c[half][1][1], 64);
            }
        }
        CM_TILE_BARRIER();
        for (int half = 0; half < 2; ++half) {
            for (int j = 0; j < n_x; ++j) {
                const int g = j < 16 ? 0 : 1, jj = j - 16 * g;
                const __m512i cl = _mm512_load_si512(buf.c[half][0][g][jj]), ch = _mm512_load_si512(buf.c[half][1][g][jj]);
                const __m512 sum = _mm512_cvtepi32_ps(_mm512_add_epi32(cl, _mm512_slli_epi32(ch, 4)));
                acc[j] = _mm512_fmadd_ps(sum, _mm512_mul_ps(hd.wd, _mm512_set1_ps(a[j].d[i])), acc[j]);
            }
        }
        q4k_each_group<kQ4KMinsGroup, Q4KMins>(n_x, static_cast<const __m512i*>(hd.mp), hd.wdmin, a, i, acc);
    }
    for (int j = 0; j < n_x; ++j) _mm512_storeu_ps(out + 16 * j, acc[j]);
}
#endif

void quantize_q80(const float* x, int64_t n, ActQ80 a) { quantize_q80_with(x, n, a, abs_max, quantize32); }

// G activation rows against one Q8_0 weight row (each row the same instruction sequence whatever G is; G = 1 is the one-row kernel).
template <int G>
CM_AVX512 void dot_q80(const uint8_t* row, int64_t nb, const ActQ80* a, float* out) {
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[G];
    __m256 tail[G];
    for (int j = 0; j < G; ++j) acc[j] = _mm512_setzero_ps(), tail[j] = _mm256_setzero_ps();
    int64_t i = 0;
    // VPDPBUSD multiplies unsigned by signed bytes: |w| times x with w's sign (|-128| = 128 as unsigned).
    for (; i + 1 < nb; i += 2) {
        const uint8_t* b0 = row + i * kQ8Bytes;
        const uint8_t* b1 = b0 + kQ8Bytes;
        _mm_prefetch(reinterpret_cast<const char*>(b0) + kPrefetch, _MM_HINT_T0);
        const __m512i w = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2)), 1);
        const __mmask64 neg = _mm512_movepi8_mask(w);
        const __m512i wabs = _mm512_abs_epi8(w);
        const float d0 = fp16(b0), d1 = fp16(b1);
        for (int j = 0; j < G; ++j) {
            const __m512i x = _mm512_loadu_si512(a[j].q + i * kQ8Block);
            const __m512i xs = _mm512_mask_sub_epi8(x, neg, zero, x);
            const __m512i p = _mm512_dpbusd_epi32(zero, wabs, xs);
            const __m512 sv = _mm512_insertf32x8(_mm512_set1_ps(d0 * a[j].d[i]), _mm256_set1_ps(d1 * a[j].d[i + 1]), 1);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sv, acc[j]);
        }
    }
    if (i < nb) {  // an odd block count: the last block on its own
        const uint8_t* b = row + i * kQ8Bytes;
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
        const __mmask32 neg = _mm256_movepi8_mask(w);
        const __m256i wabs = _mm256_abs_epi8(w);
        const float d = fp16(b);
        for (int j = 0; j < G; ++j) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[j].q + i * kQ8Block));
            const __m256i xs = _mm256_mask_sub_epi8(x, neg, _mm256_setzero_si256(), x);
            const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wabs, xs);
            tail[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * a[j].d[i]));
        }
    }
    for (int j = 0; j < G; ++j) out[j] = hsum(acc[j]) + hsum(tail[j]);
}

// F16 (or F32) weights against F32 activations (no rounding of x, unlike ggml's F16 path which rounds x to F16).
template <bool F16>
CM_AVX512 __m512 load_w(const uint8_t* row, int64_t i) {
    if constexpr (F16) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
    } else {
        return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
    }
}

template <bool F16>
CM_AVX512 __m512 load_w_tail(const uint8_t* row, int64_t i, __mmask16 m) {
    if constexpr (F16) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + i));
    } else {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
    }
}

// R weight rows (w_r = row + r * row_bytes) against G activation rows (x_j = x + j * ldx), F16 or F32 weights:
// out[r * G + j] = dot(w_r, x_j). Every (r, j) pair has accumulators of its own and the one-row kernel's order
// (even 16-wide chunks in a0, odd in a1, the masked tail into a0, hsum(a0 + a1)), so a pair's result does not
// depend on R, G or the other rows. Several weight rows per pass let each activation load serve R rows: with many
// activation rows, reading x (8 KB a row for the LM's width) for every weight row, not the weights, would bind.
template <int R, int G, bool F16>
CM_AVX512 void dot_float(const uint8_t* row, size_t row_bytes, int64_t n, const float* x, int64_t ldx, float* out) {
    constexpr int kBytes = F16 ? 2 : 4;
    __m512 a0[R][G], a1[R][G];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) a0[r][j] = _mm512_setzero_ps(), a1[r][j] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0[R], w1[R];
        for (int r = 0; r < R; ++r) {
            const uint8_t* wr = row + r * row_bytes;
            _mm_prefetch(reinterpret_cast<const char*>(wr + kBytes * i) + kPrefetch, _MM_HINT_T0);
            if constexpr (!F16) _mm_prefetch(reinterpret_cast<const char*>(wr + kBytes * i) + kPrefetch + 64, _MM_HINT_T0);
            w0[r] = load_w<F16>(wr, i);
            w1[r] = load_w<F16>(wr, i + 16);
        }
        for (int j = 0; j < G; ++j) {
            const __m512 x0 = _mm512_loadu_ps(x + j * ldx + i), x1 = _mm512_loadu_ps(x + j * ldx + i + 16);
            for (int r = 0; r < R; ++r) {
                a0[r][j] = _mm512_fmadd_ps(w0[r], x0, a0[r][j]);
                a1[r][j] = _mm512_fmadd_ps(w1[r], x1, a1[r][j]);
            }
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
        for (int r = 0; r < R; ++r) {
            const __m512 w = load_w_tail<F16>(row + r * row_bytes, i, m);
            for (int j = 0; j < G; ++j) a0[r][j] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + j * ldx + i), a0[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) out[r * G + j] = hsum(_mm512_add_ps(a0[r][j], a1[r][j]));
}

// K-blocked form of dot_float for many activation rows (kFloatKBlockRows or more): with 8 activation rows of the
// LM's width (8 KB each) the activations no longer fit in L1 beside the weights, and converting F16 weights again
// for every pair of activation rows doubles the work on the FMA ports. So per block of R <= 4 weight rows and kb
// values: the weights converted once into wb (F32, kb values a row, in L1), then each pair of activation rows
// runs its accumulators (kept in acc between blocks) over them. The FMAs of every (weight row, activation row)
// pair are exactly dot_float's, in its order (even 16-wide chunks into a0, odd into a1, the tail into a0, then
// hsum(a0 + a1)): the same bits as dot_float, for any number of rows.
template <int R, int G>
CM_AVX512 void float_kblock(const float* wb, int kb_stride, int64_t kl, const float* x, int64_t ldx, __m512* acc) {
    // acc[(r * kMaxGemvRows + j) * 2 + {0, 1}]: a0, a1 of weight row r and activation row j (j relative to x)
    __m512 a0[R][G], a1[R][G];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) a0[r][j] = acc[(r * kMaxGemvRows + j) * 2], a1[r][j] = acc[(r * kMaxGemvRows + j) * 2 + 1];
    for (int64_t i = 0; i < kl; i += 32) {
        __m512 w0[R], w1[R];
        for (int r = 0; r < R; ++r) {
            w0[r] = _mm512_load_ps(wb + r * kb_stride + i), w1[r] = _mm512_load_ps(wb + r * kb_stride + i + 16);
            // in registers, loaded once for all G activation rows (GCC would fold a load into every FMA: 20 loads
            // per 16 FMAs instead of 12, more than two load ports serve)
            __asm__("" : "+v"(w0[r]), "+v"(w1[r]));
        }
        for (int j = 0; j < G; ++j) {
            const __m512 x0 = _mm512_loadu_ps(x + j * ldx + i), x1 = _mm512_loadu_ps(x + j * ldx + i + 16);
            for (int r = 0; r < R; ++r) {
                a0[r][j] = _mm512_fmadd_ps(w0[r], x0, a0[r][j]);
                a1[r][j] = _mm512_fmadd_ps(w1[r], x1, a1[r][j]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < G; ++j) acc[(r * kMaxGemvRows + j) * 2] = a0[r][j], acc[(r * kMaxGemvRows + j) * 2 + 1] = a1[r][j];
}

// R weight rows from `row` (values [k0, k0 + kl), kl a multiple of 32) converted to F32 into wb (rows kb_stride
// apart). Prefetched: the same rows two blocks ahead, past the rows' end the next 4 rows (the weights arrive
// while the FMAs of the blocks between run; a whole row ahead would fetch in bursts, a block of 4 rows at a time).
template <int R, bool F16>
CM_AVX512 void float_convert(const uint8_t* row, size_t row_bytes, int64_t k0, int64_t kl, int kb, float* wb,
                             int kb_stride) {
    constexpr int kBytes = F16 ? 2 : 4;
    const size_t ahead = size_t(2 * kb * kBytes);
    const size_t pf = size_t(kBytes * k0) + ahead >= row_bytes ? ahead + 3 * row_bytes : ahead;
    for (int r = 0; r < R; ++r) {
        const uint8_t* wr = row + r * row_bytes;
        for (int64_t i = 0; i < kl; i += 32) {
            _mm_prefetch(reinterpret_cast<const char*>(wr + kBytes * (k0 + i)) + pf, _MM_HINT_T0);
            if constexpr (!F16) _mm_prefetch(reinterpret_cast<const char*>(wr + kBytes * (k0 + i)) + pf + 64, _MM_HINT_T0);
            _mm512_store_ps(wb + r * kb_stride + i, load_w<F16>(wr, k0 + i));
            _mm512_store_ps(wb + r * kb_stride + i + 16, load_w<F16>(wr, k0 + i + 16));
        }
    }
}

// The tail (n not a multiple of 32) as dot_float does it, then y = hsum(a0 + a1) of each pair.
template <int R, bool F16>
CM_AVX512 void float_finish(const uint8_t* row, size_t row_bytes, int64_t n, const float* x, int64_t ldx, int n_x,
                            const __m512* acc, float* y, int64_t ldy) {
    for (int r = 0; r < R; ++r) {
        for (int j = 0; j < n_x; ++j) {
            __m512 a0 = acc[(r * kMaxGemvRows + j) * 2];
            for (int64_t i = n / 32 * 32; i < n; i += 16) {
                const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
                a0 = _mm512_fmadd_ps(load_w_tail<F16>(row + r * row_bytes, i, m), _mm512_maskz_loadu_ps(m, x + j * ldx + i), a0);
            }
            y[j * ldy + r] = hsum(_mm512_add_ps(a0, acc[(r * kMaxGemvRows + j) * 2 + 1]));
        }
    }
}

CM_AVX512 void zero_acc(__m512* acc, int n) {
    for (int k = 0; k < n; ++k) acc[k] = _mm512_setzero_ps();
}

template <bool F16>
void gemv_float_kblocked(const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                         int64_t ldx, int n_x, float* y, int64_t ldy) {
    alignas(64) float wb[4 * 512];
    __m512 acc[4 * kMaxGemvRows * 2];
    gemv_float_kblocked_with(
        rows, row_bytes, n / 32 * 32, r0, r1, n_x, [&] { zero_acc(acc, 4 * kMaxGemvRows * 2); },
        [&](auto rr, const uint8_t* row, int64_t k0, int64_t kl, int kb) {
            float_convert<decltype(rr)::value, F16>(row, row_bytes, k0, kl, kb, wb, kb);
        },
        [&](auto rr, auto g, int j, int64_t k0, int64_t kl, int kb) {
            float_kblock<decltype(rr)::value, decltype(g)::value>(wb, kb, kl, x + j * ldx + k0, ldx, acc + j * 2);
        },
        [&](auto rr, const uint8_t* row, int64_t r) {
            float_finish<decltype(rr)::value, F16>(row, row_bytes, n, x, ldx, n_x, acc, y + r, ldy);
        });
}

// F16/F32 weights, rows [r0, r1) against n_x activation rows: blocks of 4 weight rows by 2 activation rows (16
// accumulator registers), tails with fewer.
template <bool F16>
void gemv_float(const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                          int64_t ldx, int n_x, float* y, int64_t ldy) {
    gemv_float_blocks(r0, r1, n_x, y, ldy, [&](auto rr, auto g, int64_t r, int j, float* out) {
        dot_float<decltype(rr)::value, decltype(g)::value, F16>(rows + r * row_bytes, row_bytes, n, x + j * ldx, ldx,
                                                                 out);
    });
}

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7): erf(a) = 1 - t (a1 + t (a2 + ... a5)) exp(-a^2),
// t = 1 / (1 + p a), a = |x|, sign restored; exp by Cody-Waite reduction to [-ln2/2, ln2/2], a degree-6
// polynomial and VSCALEFPS.
CM_AVX512 __m512 exp_neg(__m512 z) {  // exp(z) for z in [-88, 0]
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(z, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), z);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

CM_AVX512 __m512 gelu16(__m512 x) {
    const __m512 u = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
    const __m512 a = _mm512_min_ps(_mm512_abs_ps(u), _mm512_set1_ps(9.0f));
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 q = _mm512_set1_ps(1.061405429f);
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-1.453152027f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.421413741f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-0.284496736f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0.254829592f));
    q = _mm512_mul_ps(q, t);
    const __m512 erf_a = _mm512_fnmadd_ps(q, exp_neg(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)),
                                          _mm512_set1_ps(1.0f));
    // 1 + erf(u): erf takes the sign of u
    const __mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 one_plus = _mm512_mask_sub_ps(_mm512_add_ps(_mm512_set1_ps(1.0f), erf_a), neg,
                                               _mm512_set1_ps(1.0f), erf_a);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), one_plus);
}

CM_AVX512 void gelu_erf_avx512(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

}  // namespace

bool gemv_available() { return active_level() != Level::none; }

namespace {

#ifndef CM_Q4K_GROUP
#define CM_Q4K_GROUP 8
#endif
constexpr int kQ4KGroup = CM_Q4K_GROUP;

// From this many activation rows on, Q4_K products at the amx level run on the AMX-INT8 tiles (q4k_rows16_amx,
// the same bits as q4k_rows16), up to kMaxDecodeRows rows a call. Measured on Sapphire Rapids, one thread, a
// 2048-wide matrix in L2 (ns per 16 weight rows x 256 values, tiles / VNNI): 4 rows 260 / 218, 8 rows 354 / 332,
// 16 rows 519 / 557, 23 rows 752 / 920, 32 rows 1066 / 1184; a whole MOSS-Transcribe Q4_K decode step of 23
// sequences, one thread, 385-391 / 414-431 ms, of 8 sequences 207-218 / 183-195 ms.
#ifndef CM_Q4K_AMX_ROWS
#define CM_Q4K_AMX_ROWS 16
#endif
constexpr int kQ4KAmxRows = CM_Q4K_AMX_ROWS;

// CRISPMOSS_Q4K=vnni keeps Q4_K on the AVX-512 kernel at the amx level too (A/B benchmarks; the same bits).
bool q4k_tiles_allowed() {
    static const bool ok = [] {
        const char* v = std::getenv("CRISPMOSS_Q4K");
        return !(v && std::string(v) == "vnni");
    }();
    return ok;
}

bool q4k_on_tiles(ggml_type type, Level level, int n_x) {
#ifdef CM_Q4K_AMX
    return type == GGML_TYPE_Q4_K && level == Level::amx && n_x >= kQ4KAmxRows && q4k_tiles_allowed() &&
           amx_int8_usable();
#else
    (void)type, (void)level, (void)n_x;
    return false;
#endif
}

#ifdef CM_Q4K_AMX
CM_AMX_INT8 void gemv_q4k_amx(const uint8_t* rows, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                              int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, bool prepared) {
    Q4KAmxBuf buf;
    const size_t stride = gemv_scratch_bytes(GGML_TYPE_Q4_K, n);  // a[j].q = a[0].q + j * stride (quantize_rows)
    q4k_amx_configure(n_x < 16 ? n_x : 16, n_x > 16 ? n_x - 16 : 0);
    gemv_q4k_blocks<16, kMaxDecodeRows>(
        rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, prepared, quantize_q4k,
        [n, stride, &buf](const uint8_t* const* rp, const ActQ4K* a, int nx, float* out, size_t rb, size_t next) {
            if (nx > 16) {
                q4k_rows16_amx<true>(rp, n / kQK, a, stride, nx, out, rb, next, buf);
            } else {
                q4k_rows16_amx<false>(rp, n / kQK, a, stride, nx, out, rb, next, buf);
            }
        });
    _tile_release();
}
#endif

// gemv (prepared false) and gemv_prepared (true) at a level.
void gemv_at(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
             int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, Level level, bool prepared) {
    if (level == Level::avx2) return gemv_avx2(type, w, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, prepared);
    if (level != Level::avx512 && level != Level::amx) std::abort();  // callers check gemv_available()
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
#ifdef CM_Q4K_AMX
        if (q4k_on_tiles(type, level, n_x))
            return gemv_q4k_amx(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, prepared);
#endif
        return gemv_q4k_blocks<16>(rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, prepared, quantize_q4k,
                                   [n](const uint8_t* const* rp, const ActQ4K* a, int nx, float* out, size_t rb, size_t next) {
                                       q4k_rows16<kQ4KGroup>(rp, n / kQK, a, nx, out, rb, next);
                                   });
    }
    gemv_quantized<4>(type, rows, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, prepared, act_q80, quantize_q80,
                      [n](auto g, const uint8_t* row, const ActQ80* a, float* out) {
                          dot_q80<decltype(g)::value>(row, n / kQ8Block, a, out);
                      });
}

}  // namespace

void gemv(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
          int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, Level level) {
    gemv_at(type, w, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, level, false);
}

void gemv_prepare(ggml_type type, int64_t n, const float* x, int64_t ldx, int n_x, void* scratch, Level level) {
    if (level == Level::avx2) return gemv_prepare_avx2(type, n, x, ldx, n_x, scratch);
    if (level != Level::avx512 && level != Level::amx) std::abort();
    prepare_rows(type, n, x, ldx, n_x, scratch, act_q4k, quantize_q4k, act_q80, quantize_q80);
}

void gemv_prepared(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
                   int64_t ldx, int n_x, float* y, int64_t ldy, void* prepared, Level level) {
    gemv_at(type, w, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, prepared, level, true);
}

void gelu_erf(const float* x, float* y, int64_t n, Level level) {
    if (level == Level::avx2) return gelu_erf_avx2(x, y, n);
    if (level != Level::avx512 && level != Level::amx) std::abort();
    gelu_erf_avx512(x, y, n);
}

#else  // not x86-64 with GCC/Clang: ggml's kernels serve every case

namespace {
bool q4k_on_tiles(ggml_type, Level, int) { return false; }
}  // namespace

bool gemv_available() { return false; }

void gemv(ggml_type, const void*, size_t, int64_t, int64_t, int64_t, const float*, int64_t, int, float*, int64_t, void*,
          Level) {
    std::abort();
}

void gemv_prepare(ggml_type, int64_t, const float*, int64_t, int, void*, Level) { std::abort(); }

void gemv_prepared(ggml_type, const void*, size_t, int64_t, int64_t, int64_t, const float*, int64_t, int, float*,
                   int64_t, void*, Level) {
    std::abort();
}

void gelu_erf(const float*, float*, int64_t, Level) { std::abort(); }

#endif

void gemv_rows(ggml_type type, const void* w, size_t row_bytes, int64_t n, int64_t r0, int64_t r1, const float* x,
               int64_t ldx, int n_x, float* y, int64_t ldy, void* scratch, Level level, size_t block_bytes) {
    if (n_x <= kMaxGemvRows) return gemv(type, w, row_bytes, n, r0, r1, x, ldx, n_x, y, ldy, scratch, level);
    const size_t per_row = gemv_scratch_bytes(type, n);
    if (q4k_on_tiles(type, level, n_x)) {  // the tile kernel takes up to kMaxDecodeRows rows in one pass
        for (int j = 0; j < n_x; j += kMaxDecodeRows) {
            gemv(type, w, row_bytes, n, r0, r1, x + j * ldx, ldx, std::min(kMaxDecodeRows, n_x - j), y + j * ldy, ldy,
                 static_cast<uint8_t*>(scratch) + size_t(j) * per_row, level);
        }
        return;
    }
    gemv_prepare(type, n, x, ldx, n_x, scratch, level);
    // whole groups of 16 weight rows (the interleaved Q4_K kernels' block) per sub-block, at least one
    const int64_t block = std::max<int64_t>(16, int64_t(block_bytes / row_bytes) / 16 * 16);
    auto* prepared = static_cast<uint8_t*>(scratch);
    for (int64_t s = r0; s < r1; s += block) {
        const int64_t e = std::min(r1, s + block);
        for (int j = 0; j < n_x; j += kMaxGemvRows) {
            gemv_prepared(type, w, row_bytes, n, s, e, x + j * ldx, ldx, std::min(kMaxGemvRows, n_x - j), y + j * ldy,
                          ldy, prepared + size_t(j) * per_row, level);
        }
    }
}

bool gemv_supports(ggml_type type) {
    return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q8_0 || type == GGML_TYPE_F16 || type == GGML_TYPE_F32;
}

size_t gemv_scratch_bytes(ggml_type type, int64_t n) {
    // int8 values, then one float per block (and for Q4_K eight int32 sums per block)
    if (type == GGML_TYPE_F16 || type == GGML_TYPE_F32) return 0;  // x is used as it is
    return type == GGML_TYPE_Q4_K ? size_t(n) + 4 * size_t(n / kQK) * 9 : size_t(n) + 4 * size_t(n / kQ8Block);
}

}  // namespace cm::cpu
