#include "cpu/head_screen.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu/amx.h"
#include "cpu/gemv.h"
#include "cpu/level.h"

#if defined(__linux__) && defined(__x86_64__) && defined(__GNUC__)
#define CM_HS 1
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 + AVX-512 intrinsics, see gemv.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Per function (see amx.cpp): nothing here may be compiled for AVX-512 where another CPU could run it.
#define CM_HS_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#define CM_HS_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c,fma")))
#define CM_HS_BARRIER() __asm__ __volatile__("" ::: "memory")  // see amx.cpp: before tile loads of fresh stores
#endif

namespace cm::cpu {

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24
constexpr double kTiny = 1.1754943508222875e-38;  // 2^-126

// gamma_n for the F32 sums of a head of k values (k products plus the reductions' few extra additions).
double gamma_k(int64_t k) {
    const double n = double(k + 64);
    return n * kU / (1.0 - n * kU);
}

// The smallest float >= v (v >= 0, finite).
float round_up(double v) {
    const float f = static_cast<float>(v);
    return double(f) >= v ? f : std::nextafter(f, INFINITY);
}

}  // namespace

size_t head_screen_x_bytes(int64_t n, int64_t k) {
    return size_t(head_screen_groups(n)) * size_t(amx_k_pad(k)) * 16 * 2;
}

bool head_screen_available() {
    return active_level() == Level::amx && amx_usable();
}

#ifdef CM_HS

namespace {

CM_HS_FN inline __m512i bf16_pair(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
// Values 0..15 (lo) and 16..31 (hi) of bf16_pair's result back in F32.
CM_HS_FN inline __m512 bf16_lo(__m512i p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(p)), 16));
}
CM_HS_FN inline __m512 bf16_hi(__m512i p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(p, 1)), 16));
}

// 32 F16 values (masked) of a row as BF16: even/odd halves as _mm512_cvtne2ps_pbh pairs them (value j of the 32
// at 16-bit lane j).
CM_HS_FN inline __m512i f16x32_to_bf16(const uint16_t* src, __mmask32 m, __m512* a, __m512* c) {
    const __m512i v = _mm512_maskz_loadu_epi16(m, src);
    *a = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
    *c = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1));
    return bf16_pair(*a, *c);
}

CM_HS_FN std::unique_ptr<HeadNorms> norms_impl(const void* w, size_t rb, int64_t rows, int64_t k) {
    auto h = std::make_unique<HeadNorms>();
    h->rows = rows, h->k = k;
    h->norm.resize(size_t(rows));
    h->dnorm.resize(size_t(rows));
    // The squares are exact in F32 (F16: 11 significant bits; w - bf16(w): exact, fewer bits); their F32 lane sums
    // have relative error <= gamma of k terms, so dividing by (1 - gamma) bounds the true sums from above.
    const double inflate = (1.0 + 1e-9) / (1.0 - 2.0 * gamma_k(k));
    bool exact = true;
    float max_norm = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const auto* row = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w) + size_t(r) * rb);
        __m512 s = _mm512_setzero_ps(), d = _mm512_setzero_ps();
        __mmask16 bad = 0;
        for (int64_t i = 0; i < k; i += 32) {
            const __mmask32 m = k - i >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1ull << (k - i)) - 1);
            _mm_prefetch(reinterpret_cast<const char*>(row + i) + 4096, _MM_HINT_T0);
            __m512 a, c;
            const __m512i p = f16x32_to_bf16(row + i, m, &a, &c);
            bad |= _mm512_fpclass_ps_mask(a, 0x99) | _mm512_fpclass_ps_mask(c, 0x99);  // NaN, +-inf
            const __m512 da = _mm512_sub_ps(a, bf16_lo(p)), dc = _mm512_sub_ps(c, bf16_hi(p));
            s = _mm512_fmadd_ps(a, a, _mm512_fmadd_ps(c, c, s));
            d = _mm512_fmadd_ps(da, da, _mm512_fmadd_ps(dc, dc, d));
        }
        if (bad) return nullptr;
        alignas(64) float ls[16], ld[16];
        _mm512_store_ps(ls, s);
        _mm512_store_ps(ld, d);
        double ss = 0, dd = 0;
        for (int l = 0; l < 16; ++l) ss += ls[l], dd += ld[l];
        h->norm[size_t(r)] = round_up(std::sqrt(ss * inflate) * (1.0 + 1e-12));
        h->dnorm[size_t(r)] = dd > 0 ? round_up(std::sqrt(dd * inflate) * (1.0 + 1e-12)) : 0.0f;
        exact = exact && dd == 0;
        max_norm = std::max(max_norm, h->norm[size_t(r)]);
    }
    h->bf16_exact = exact;
    h->max_norm = max_norm;
    return h;
}

// B operand of group g: per k block of 32, 16 rows (pairs p) of 16 32-bit words (activation rows l):
// word (kb * 16 + p) * 16 + l = (x_l[32 kb + 2 p], x_l[32 kb + 2 p + 1]) in BF16.
CM_HS_FN void pack_impl(const float* x, int64_t ldx, int64_t n, int64_t k, const HeadNorms& norms, uint16_t* xp,
                        ScreenRow* rows) {
    const int64_t kp = amx_k_pad(k);
    std::memset(xp, 0, head_screen_x_bytes(n, k));
    auto* words = reinterpret_cast<uint32_t*>(xp);
    const double g = gamma_k(k);
    alignas(64) uint16_t tmp[32];
    for (int64_t i = 0; i < n; ++i) {
        const float* xr = x + i * ldx;
        uint32_t* gw = words + (i / 16) * (kp / 2) * 16;
        const int64_t l = i % 16;
        double xx = 0, dd = 0;
        bool finite = true;
        for (int64_t j = 0; j < k; j += 32) {
            const int64_t left = k - j;
            const __mmask16 m0 = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
            const __mmask16 m1 = left >= 32 ? 0xFFFF : left > 16 ? static_cast<__mmask16>((1u << (left - 16)) - 1) : 0;
            const __m512 a = _mm512_maskz_loadu_ps(m0, xr + j), c = _mm512_maskz_loadu_ps(m1, xr + j + 16);
            __m512i p = bf16_pair(a, c);
            // BF16 denormals flushed here, so the packed values are the ones the tiles multiply (they treat
            // denormal inputs as zero) and dX below measures them.
            const __mmask32 den = _mm512_cmpeq_epi16_mask(_mm512_and_si512(p, _mm512_set1_epi16(0x7F80)),
                                                          _mm512_setzero_si512());
            p = _mm512_mask_mov_epi16(p, den, _mm512_setzero_si512());
            _mm512_store_si512(tmp, p);
            const int64_t cnt = std::min<int64_t>(32, left);
            for (int64_t t = 0; t < cnt; ++t) {
                const float v = xr[j + t];
                uint32_t bits = uint32_t(tmp[t]) << 16;
                float vb;
                std::memcpy(&vb, &bits, 4);
                finite = finite && std::isfinite(v);
                xx += double(v) * double(v);
                const double e = double(v) - double(vb);
                dd += e * e;
            }
            for (int64_t q = 0; q < 16; ++q) {
                const uint32_t pair = uint32_t(tmp[2 * q]) | (uint32_t(tmp[2 * q + 1]) << 16);
                gw[(j / 32 * 16 + q) * 16 + l] = pair;
            }
        }
        ScreenRow& s = rows[i];
        const double X = std::sqrt(xx * (1.0 + 1e-9)) * (1.0 + 1e-12), dX = std::sqrt(dd * (1.0 + 1e-9)) * (1.0 + 1e-12);
        s.ok = finite && std::isfinite(X) && double(norms.max_norm) * X < 1.2676506002282294e30;  // 2^100
        if (!s.ok) continue;
        // + sqrt(k) tiny: were the exact kernel run with denormal inputs as zero (MXCSR DAZ), x's denormals would
        // move its sum by at most ||w|| ||x - daz(x)|| <= N sqrt(k) tiny.
        s.a = round_up((dX + g * (2.0 * X + dX) + std::sqrt(double(k)) * kTiny) * (1.0 + 1e-9));
        s.b = round_up((X + dX) * (1.0 + g) * (1.0 + 1e-9));
        s.c = round_up(2.0 * double(k + 64) * kTiny);
    }
}

CM_HS_AMX void tile_config() {
    alignas(64) unsigned char cfg[64] = {};
    cfg[0] = 1;  // palette 1: all 8 tiles 16 rows x 64 bytes
    for (int i = 0; i < 8; ++i) {
        cfg[16 + 2 * i] = 64;
        cfg[48 + i] = 16;
    }
    CM_HS_BARRIER();
    _tile_loadconfig(cfg);
}

// C[p][g] (tiles 2p + g) for TP weight panels of 16 rows (A tiles 4, 5) and TG activation groups (B tiles 6, 7).
template <int TP, int TG>
CM_HS_AMX inline void tiles_zero() {
    _tile_zero(0);
    if constexpr (TG == 2) _tile_zero(1);
    if constexpr (TP == 2) _tile_zero(2);
    if constexpr (TP == 2 && TG == 2) _tile_zero(3);
}

// One k block: C[p][g] += A_p B_g, A_p at a + 512 p (1 KB tiles), B_g at b + gs g; each product issued as soon as
// its two tiles are in.
template <int TP, int TG>
CM_HS_AMX inline void tiles_step(const uint16_t* a, const uint16_t* b, int64_t gs) {
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (TP == 2) {
        _tile_loadd(5, a + 512, 64);
        _tile_dpbf16ps(2, 5, 6);
    }
    if constexpr (TG == 2) {
        _tile_loadd(7, b + gs, 64);
        _tile_dpbf16ps(1, 4, 7);
        if constexpr (TP == 2) _tile_dpbf16ps(3, 5, 7);
    }
}

// C stored to yt (rows of 16 floats): panel p, group g at yt + g * ys + 16 * 16 p.
template <int TP, int TG>
CM_HS_AMX inline void tiles_store(float* yt, int64_t ys) {
    _tile_stored(0, yt, 64);
    if constexpr (TG == 2) _tile_stored(1, yt + ys, 64);
    if constexpr (TP == 2) _tile_stored(2, yt + 256, 64);
    if constexpr (TP == 2 && TG == 2) _tile_stored(3, yt + ys + 256, 64);
    CM_HS_BARRIER();
}

// The products of a converted block (a: per k block 1 KB per panel, kb * 1024 apart) with groups b (gs apart).
template <int TP, int TG>
CM_HS_AMX void micro(const uint16_t* a, const uint16_t* b, int64_t gs, int64_t kbn, float* yt, int64_t ys) {
    CM_HS_BARRIER();
    tiles_zero<TP, TG>();
    for (int64_t kb = 0; kb < kbn; ++kb) tiles_step<TP, TG>(a + kb * 1024, b + kb * 512, gs);
    tiles_store<TP, TG>(yt, ys);
}

using MicroFn = void (*)(const uint16_t*, const uint16_t*, int64_t, int64_t, float*, int64_t);
constexpr MicroFn kMicro[2][2] = {{micro<1, 1>, micro<1, 2>}, {micro<2, 1>, micro<2, 2>}};

// Weight rows [v0, v0 + nr) (nr <= 32) as BF16 A tiles: scratch[kb * 1024 + panel * 512 + m * 32 + j] = row
// v0 + 16 panel + m, value 32 kb + j; rows past nr zero. Read row by row (one sequential stream).
CM_HS_FN void convert_block(const uint8_t* w, size_t rb, int64_t k, int64_t v0, int64_t nr, uint16_t* scratch) {
    const int64_t kbn = amx_k_pad(k) / 32;
    for (int64_t r = 0; r < 32; ++r) {
        uint16_t* dst = scratch + (r / 16) * 512 + (r % 16) * 32;
        if (r >= nr) {
            for (int64_t kb = 0; kb < kbn; ++kb) _mm512_store_si512(dst + kb * 1024, _mm512_setzero_si512());
            continue;
        }
        const auto* row = reinterpret_cast<const uint16_t*>(w + size_t(v0 + r) * rb);
        for (int64_t kb = 0; kb < kbn; ++kb) {
            const int64_t left = k - kb * 32;
            const __mmask32 m = left >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1ull << left) - 1);
            _mm_prefetch(reinterpret_cast<const char*>(row + kb * 32) + 8192, _MM_HINT_T0);
            __m512 a, c;
            _mm512_store_si512(dst + kb * 1024, f16x32_to_bf16(row + kb * 32, m, &a, &c));
        }
    }
}

// One block of up to 32 weight rows against up to 2 activation groups, the conversion fused with the tile
// products: per k block, the rows' 32 values converted into `a` (2 KB, L1: A tiles 4, 5) and multiplied at once;
// each row's same 64 bytes of the next block prefetched to L2 meanwhile (one prefetch per line read, one block
// ahead: the weight stream keeps loads in flight while the tiles work). C as micro's.
template <int TP, int TG>
CM_HS_AMX void fused(const uint8_t* w, size_t rb, int64_t k, int64_t v0, int64_t nr, const uint16_t* b, int64_t gs,
                     float* yt, int64_t ys, uint16_t* a) {
    const int64_t kbn = amx_k_pad(k) / 32;
    const size_t ahead = 32 * rb;
    for (int64_t r = nr; r < 16 * TP; ++r) _mm512_store_si512(a + r * 32, _mm512_setzero_si512());
    CM_HS_BARRIER();
    tiles_zero<TP, TG>();
    for (int64_t kb = 0; kb < kbn; ++kb) {
        const int64_t left = k - kb * 32;
        const __mmask32 m = left >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1ull << left) - 1);
        const uint8_t* col = w + size_t(v0) * rb + size_t(kb) * 64;
        for (int64_t r = 0; r < nr; ++r) {
            const uint8_t* src = col + size_t(r) * rb;
            _mm_prefetch(reinterpret_cast<const char*>(src + ahead), _MM_HINT_T1);
            __m512 lo, hi;
            _mm512_store_si512(a + r * 32, f16x32_to_bf16(reinterpret_cast<const uint16_t*>(src), m, &lo, &hi));
        }
        CM_HS_BARRIER();
        tiles_step<TP, TG>(a, b + kb * 512, gs);
    }
    tiles_store<TP, TG>(yt, ys);
}

using FusedFn = void (*)(const uint8_t*, size_t, int64_t, int64_t, int64_t, const uint16_t*, int64_t, float*, int64_t,
                         uint16_t*);
constexpr FusedFn kFused[2][2] = {{fused<1, 1>, fused<1, 2>}, {fused<2, 1>, fused<2, 2>}};

// Bound vectors of a group: b = N A + D B + C per lane (rounded up).
struct GroupBound {
    __m512 a, b, c;
};

CM_HS_FN GroupBound group_bound(const ScreenRow* rows, int64_t n, int64_t g) {
    alignas(64) float a[16] = {}, b[16] = {}, c[16] = {};
    for (int64_t l = 0; l < 16 && 16 * g + l < n; ++l) {
        a[l] = rows[16 * g + l].a, b[l] = rows[16 * g + l].b, c[l] = rows[16 * g + l].c;
    }
    return {_mm512_load_ps(a), _mm512_load_ps(b), _mm512_load_ps(c)};
}

CM_HS_FN inline __m512 bound_at(const GroupBound& gb, float nv, float dv) {
    constexpr int up = _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC;
    return _mm512_fmadd_round_ps(_mm512_set1_ps(nv), gb.a, _mm512_fmadd_round_ps(_mm512_set1_ps(dv), gb.b, gb.c, up), up);
}

CM_HS_AMX void product_impl(const uint8_t* w, size_t rb, const HeadNorms& norms, int64_t r0, int64_t r1,
                            const uint16_t* xp, int64_t n, const ScreenRow* rows, const uint16_t* hist, float* yt,
                            float* lo_max, uint8_t* bad) {
    const int64_t k = norms.k, kbn = amx_k_pad(k) / 32, groups = head_screen_groups(n);
    const int64_t rows_pad = head_screen_rows_pad(norms.rows), gs = kbn * 512, ys = rows_pad * 16;
    uint16_t* scratch = static_cast<uint16_t*>(::operator new(size_t(kbn) * 2048, std::align_val_t(64)));
    constexpr int down = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
    std::vector<float> lo(static_cast<size_t>(groups) * 16, -INFINITY);
    std::vector<__mmask16> nonfinite(static_cast<size_t>(groups), 0);
    tile_config();
    for (int64_t v0 = r0; v0 < r1; v0 += 32) {
        const int64_t nr = std::min<int64_t>(32, r1 - v0);
        const int tp = nr > 16 ? 2 : 1;
        if (groups <= 2) {
            kFused[tp - 1][groups - 1](w, rb, k, v0, nr, xp, gs, yt + v0 * 16, ys, scratch);
        } else {  // more activation rows than C tiles: the block converted whole, then the groups in pairs
            convert_block(w, rb, k, v0, nr, scratch);
            for (int64_t g = 0; g < groups; g += 2) {
                const int tg = g + 1 < groups ? 2 : 1;
                kMicro[tp - 1][tg - 1](scratch, xp + g * gs, gs, kbn, yt + g * ys + v0 * 16, ys);
            }
        }
        for (int64_t g = 0; g < groups; ++g) {
            const float* yg = yt + g * ys;
            const uint16_t* hg = hist ? hist + g * rows_pad : nullptr;
            const GroupBound gb = group_bound(rows, n, g);
            __m512 acc = _mm512_loadu_ps(lo.data() + 16 * g);
            __mmask16 nf = nonfinite[size_t(g)];
            for (int64_t v = v0; v < v0 + nr; ++v) {
                const __m512 y = _mm512_loadu_ps(yg + v * 16);
                nf |= _mm512_fpclass_ps_mask(y, 0x99);
                const __m512 l = _mm512_sub_round_ps(y, bound_at(gb, norms.norm[size_t(v)],
                                                                 norms.dnorm[size_t(v)]), down);
                acc = _mm512_mask_max_ps(acc, hg ? __mmask16(~hg[v]) : __mmask16(0xFFFF), acc, l);
            }
            _mm512_storeu_ps(lo.data() + 16 * g, acc);
            nonfinite[size_t(g)] = nf;
        }
    }
    _tile_release();
    ::operator delete(scratch, std::align_val_t(64));
    for (int64_t g = 0; g < groups; ++g) {
        const float* out = lo.data() + 16 * g;
        for (int64_t l = 0; l < 16 && 16 * g + l < n; ++l) {
            lo_max[16 * g + l] = out[l];
            bad[16 * g + l] = (nonfinite[size_t(g)] >> l) & 1;
        }
    }
}

std::atomic<long long> g_recomputed{0};

// Candidates above this many in one call's range: the row's range is computed whole (one matrix-vector pass is
// cheaper than that many single rows; the logits are the same bits either way).
constexpr size_t kMaxCandidates = 2048;

CM_HS_FN void select_impl(const uint8_t* w, size_t rb, const HeadNorms& norms, int64_t r0, int64_t r1,
                          const float* yt, const float* x, int64_t ldx, int64_t n, const ScreenRow* rows,
                          const uint16_t* hist, const float* m, const uint8_t* full, float* out, int64_t ldo) {
    const int64_t k = norms.k, groups = head_screen_groups(n);
    const int64_t rows_pad = head_screen_rows_pad(norms.rows), ys = rows_pad * 16;
    constexpr int up = _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC;
    std::vector<std::vector<int32_t>> cand(static_cast<size_t>(n));
    for (int64_t g = 0; g < groups; ++g) {
        alignas(64) float mv[16];
        __mmask16 live = 0;
        for (int64_t l = 0; l < 16; ++l) {
            const int64_t i = 16 * g + l;
            mv[l] = i < n ? m[i] : INFINITY;
            if (i < n && !full[i]) live |= __mmask16(1u << l);
        }
        if (!live) continue;
        const __m512 M = _mm512_load_ps(mv);
        const GroupBound gb = group_bound(rows, n, g);
        const float* yg = yt + g * ys;
        const uint16_t* hg = hist ? hist + g * rows_pad : nullptr;
        for (int64_t v = r0; v < r1; ++v) {
            const __m512 hi = _mm512_add_round_ps(_mm512_loadu_ps(yg + v * 16),
                                                  bound_at(gb, norms.norm[size_t(v)], norms.dnorm[size_t(v)]), up);
            __mmask16 c = _mm512_cmp_ps_mask(hi, M, _CMP_GE_OQ);
            if (hg) c |= hg[v];
            c &= live;
            while (c) {
                const int l = __builtin_ctz(c);
                c &= __mmask16(c - 1);
                cand[size_t(16 * g + l)].push_back(int32_t(v));
            }
        }
    }
    for (int64_t i = 0; i < n; ++i) {
        float* o = out + i * ldo;
        const float* xi = x + i * ldx;
        if (full[i] || cand[size_t(i)].size() > kMaxCandidates) {
            g_recomputed.fetch_add(r1 - r0, std::memory_order_relaxed);
            gemv(GGML_TYPE_F16, w, rb, k, r0, r1, xi, ldx, 1, o, ldo, nullptr);
            continue;
        }
        std::fill(o + r0, o + r1, -INFINITY);
        g_recomputed.fetch_add(static_cast<long long>(cand[size_t(i)].size()), std::memory_order_relaxed);
        for (const int32_t v : cand[size_t(i)]) gemv(GGML_TYPE_F16, w, rb, k, v, v + 1, xi, ldx, 1, o, ldo, nullptr);
    }
}

}  // namespace

long long head_screen_recomputed() { return g_recomputed.load(std::memory_order_relaxed); }

std::unique_ptr<HeadNorms> head_norms(const void* w, size_t row_bytes, int64_t rows, int64_t k) {
    if (rows <= 0 || k <= 0) return nullptr;
    return norms_impl(w, row_bytes, rows, k);
}

void head_screen_pack(const float* x, int64_t ldx, int64_t n, int64_t k, const HeadNorms& norms, uint16_t* xp,
                      ScreenRow* rows) {
    pack_impl(x, ldx, n, k, norms, xp, rows);
}

void head_screen_product(const void* w, size_t row_bytes, const HeadNorms& norms, int64_t r0, int64_t r1,
                         const uint16_t* xp, int64_t n, const ScreenRow* rows, const uint16_t* hist, float* yt,
                         float* lo_max, uint8_t* bad) {
    if (r0 >= r1) {
        for (int64_t i = 0; i < n; ++i) lo_max[i] = -INFINITY, bad[i] = 0;
        return;
    }
    product_impl(static_cast<const uint8_t*>(w), row_bytes, norms, r0, r1, xp, n, rows, hist, yt, lo_max, bad);
}

void head_screen_select(const void* w, size_t row_bytes, const HeadNorms& norms, int64_t r0, int64_t r1,
                        const float* yt, const float* x, int64_t ldx, int64_t n, const ScreenRow* rows,
                        const uint16_t* hist, const float* m, const uint8_t* full, float* out, int64_t ldo) {
    if (r0 < r1) select_impl(static_cast<const uint8_t*>(w), row_bytes, norms, r0, r1, yt, x, ldx, n, rows, hist, m, full, out, ldo);
}

#else

long long head_screen_recomputed() { return 0; }
std::unique_ptr<HeadNorms> head_norms(const void*, size_t, int64_t, int64_t) { return nullptr; }
void head_screen_pack(const float*, int64_t, int64_t, int64_t, const HeadNorms&, uint16_t*, ScreenRow*) { std::abort(); }
void head_screen_product(const void*, size_t, const HeadNorms&, int64_t, int64_t, const uint16_t*, int64_t,
                         const ScreenRow*, const uint16_t*, float*, float*, uint8_t*) {
    std::abort();
}
void head_screen_select(const void*, size_t, const HeadNorms&, int64_t, int64_t, const float*, const float*, int64_t,
                        int64_t, const ScreenRow*, const uint16_t*, const float*, const uint8_t*, float*, int64_t) {
    std::abort();
}

#endif

}  // namespace cm::cpu
