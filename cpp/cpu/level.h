// Which of our CPU kernels run: the instruction-set level, chosen once at first use from CPUID, XCR0 (what the OS
// saves on a context switch) and the CRISPMOSS_CPU environment variable.
//
//   none    no kernels of ours (not x86-64, a CPU without AVX2/FMA/F16C, or CRISPMOSS_GEMV=ggml): ggml's serve all
//   avx2    AVX2 + FMA + F16C (Haswell and later, AMD Zen): cpu/gemv_avx2.cpp, the AVX2 tile of cpu/gemm.cpp
//   avx512  AVX-512 F/BW/VL/DQ + VNNI (Ice Lake, Sapphire Rapids, Zen 4): cpu/gemv.cpp, gemm.cpp's 512-bit tile
//   amx     avx512 plus the AMX tiles (AMX-TILE, AMX-BF16, tile state enabled in XCR0): the avx512 kernels, and the
//           encoder side's matrix products on the BF16 tiles (cpu/amx.h; where the OS grants the tile data)
//
// CRISPMOSS_CPU=avx2|avx512|amx forces a level (tests and benchmarks run every level on one machine); a level the
// CPU lacks falls back to the best it has, an unknown value to the default, each with one line on stderr. Every
// level is detected before anything is executed, so one binary runs on any x86-64 CPU.
#pragma once

namespace cm::cpu {

enum class Level : int { none = 0, avx2 = 1, avx512 = 2, amx = 3 };

// The best level this CPU and OS support (CRISPMOSS_CPU and CRISPMOSS_GEMV ignored).
Level best_level();

// The level our kernels run at: best_level(), or the one CRISPMOSS_CPU asks for (read once, at first use).
Level active_level();

// "none", "avx2", "avx512", "amx".
const char* level_name(Level level);

// Parses a level name ("ggml" or "none" is Level::none); false for an unknown name.
bool parse_level(const char* name, Level* out);

// The level to run at when `requested` is asked for: requested if the CPU has it, otherwise the best it has.
inline Level usable(Level requested) {
    const Level best = best_level();
    return static_cast<int>(requested) <= static_cast<int>(best) ? requested : best;
}

}  // namespace cm::cpu
