/* Force-included into ggml's sapphirerapids CPU variant when cross-compiling with mingw-w64 GCC < 13 (see
 * CMakeLists.txt; the Windows cross-compile check only).
 *
 * GCC 12's AMX tile load/store macros pass the row stride to the assembler as a `long`, which is 32 bits on
 * Windows (LLP64), so the assembler rejects the resulting `(%rax,%edi,1)` addresses; GCC 13 passes a
 * pointer-sized integer. The three macros are redefined here with a pointer-sized stride. */
#ifndef CRISPMOSS_MINGW_W64_AMX_FIX_H
#define CRISPMOSS_MINGW_W64_AMX_FIX_H
#include <immintrin.h>
#if defined(_WIN64) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#undef _tile_loadd_internal
#undef _tile_stream_loadd_internal
#undef _tile_stored_internal
#define _tile_loadd_internal(dst, base, stride)                                                  \
    __asm__ volatile("{tileloadd\t(%0,%1,1), %%tmm" #dst "|tileloadd\t%%tmm" #dst ", [%0+%1*1]}" \
                     ::"r"((const void*)(base)), "r"((__PTRDIFF_TYPE__)(stride)))
#define _tile_stream_loadd_internal(dst, base, stride)                                                 \
    __asm__ volatile("{tileloaddt1\t(%0,%1,1), %%tmm" #dst "|tileloaddt1\t%%tmm" #dst ", [%0+%1*1]}" \
                     ::"r"((const void*)(base)), "r"((__PTRDIFF_TYPE__)(stride)))
#define _tile_stored_internal(src, base, stride)                                                     \
    __asm__ volatile("{tilestored\t%%tmm" #src ", (%0,%1,1)|tilestored\t[%0+%1*1], %%tmm" #src "}" \
                     ::"r"((void*)(base)), "r"((__PTRDIFF_TYPE__)(stride))                          \
                     : "memory")
#endif
#endif
