#include "cpu/level.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__)
#include <cpuid.h>
#define CM_LEVEL_X86 1
#endif

namespace cm::cpu {

namespace {

#ifdef CM_LEVEL_X86
// CPUID and XGETBV directly: GCC and Clang accept different __builtin_cpu_supports names.
Level detect() {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return Level::none;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return Level::none;
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return Level::none;  // the OS saves SSE and AVX (YMM) state
    if (__get_cpuid_max(0, nullptr) < 7) return Level::none;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = b & (1u << 5);
    if (!avx2) return Level::none;
    const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    const bool vnni = c & (1u << 11);
    // and the opmask and all ZMM state
    if (!(f && dq && bw && vl && vnni) || (xcr0_lo & 0xe6) != 0xe6) return Level::avx2;
    const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
    // XTILECFG and XTILEDATA in XCR0 (Linux still asks each process to request the tile data: the AMX kernels do)
    if (!(amx_bf16 && amx_tile) || (xcr0_lo & 0x60000) != 0x60000) return Level::avx512;
    return Level::amx;
}
#else
Level detect() { return Level::none; }
#endif

Level choose() {
    const Level best = best_level();
    const char* gemv = std::getenv("CRISPMOSS_GEMV");
    if (gemv && std::strcmp(gemv, "ggml") == 0) return Level::none;  // our kernels off: ggml's everywhere
    const char* e = std::getenv("CRISPMOSS_CPU");
    if (!e || !*e) return best;
    Level want;
    if (!parse_level(e, &want)) {
        std::fprintf(stderr, "crispmoss: unknown CRISPMOSS_CPU=%s (avx2|avx512|amx); using %s\n", e, level_name(best));
        return best;
    }
    if (static_cast<int>(want) > static_cast<int>(best)) {
        std::fprintf(stderr, "crispmoss: CRISPMOSS_CPU=%s but this CPU lacks it; using %s\n", e, level_name(best));
        return best;
    }
    return want;
}

}  // namespace

Level best_level() {
    static const Level level = detect();
    return level;
}

Level active_level() {
    static const Level level = choose();
    return level;
}

const char* level_name(Level level) {
    switch (level) {
        case Level::avx2: return "avx2";
        case Level::avx512: return "avx512";
        case Level::amx: return "amx";
        default: return "none";
    }
}

bool parse_level(const char* name, Level* out) {
    static const struct {
        const char* name;
        Level level;
    } kNames[] = {{"none", Level::none}, {"ggml", Level::none}, {"avx2", Level::avx2}, {"avx512", Level::avx512},
                  {"amx", Level::amx}};
    for (const auto& n : kNames) {
        if (std::strcmp(name, n.name) == 0) {
            *out = n.level;
            return true;
        }
    }
    return false;
}

}  // namespace cm::cpu
