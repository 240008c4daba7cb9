// The operating system's permission for the AMX tile data (cpu/amx.h): Linux gives a process the 8 KB tile state
// only when asked (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), once per process, for all its threads).
#pragma once

namespace cm::platform {

// True when the tile data may be used: Linux granted the request; false elsewhere (the amx level's tile kernels
// are built for Linux only) or when refused (an old kernel, a seccomp filter).
bool request_tile_data();

}  // namespace cm::platform
