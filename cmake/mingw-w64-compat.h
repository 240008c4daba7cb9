/* Force-included into C sources by cmake/mingw-w64-x86_64.cmake (the Windows cross-compile check only).
 *
 * mingw-w64 before version 11 (Debian 12 ships 10) lacks the thread power-throttling declarations that ggml's
 * CPU backend uses to keep Windows 11 from parking its worker threads; Microsoft's SDK, which the Windows wheel
 * is built with, has them. They are declared here exactly as in mingw-w64 11's processthreadsapi.h. */
#ifndef CRISPMOSS_MINGW_W64_COMPAT_H
#define CRISPMOSS_MINGW_W64_COMPAT_H
#include <_mingw.h>
#if defined(__MINGW64_VERSION_MAJOR) && __MINGW64_VERSION_MAJOR < 11
#define THREAD_POWER_THROTTLING_CURRENT_VERSION 1
#define THREAD_POWER_THROTTLING_EXECUTION_SPEED 0x1
#define THREAD_POWER_THROTTLING_VALID_FLAGS (THREAD_POWER_THROTTLING_EXECUTION_SPEED)
typedef struct _THREAD_POWER_THROTTLING_STATE {
    unsigned long Version;
    unsigned long ControlMask;
    unsigned long StateMask;
} THREAD_POWER_THROTTLING_STATE;
#endif
#endif
