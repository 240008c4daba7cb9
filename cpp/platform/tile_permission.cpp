#include "platform/tile_permission.h"

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace cm::platform {

#if defined(__linux__) && defined(__x86_64__)
bool request_tile_data() {
    constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (::syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
    unsigned long granted = 0;
    if (::syscall(SYS_arch_prctl, kArchGetXcompPerm, &granted) != 0) return false;
    return (granted >> kXfeatureXtiledata) & 1;
}
#else
bool request_tile_data() { return false; }
#endif

}  // namespace cm::platform
