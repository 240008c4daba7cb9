// Overflow-checked integer arithmetic in portable C++ (no compiler builtins), for sizes computed from
// untrusted input such as a GGUF header.
#pragma once

#include <limits>
#include <type_traits>

namespace cm {

// Stores a * b in *out and returns false; returns true (and leaves *out alone) when the product overflows T.
template <typename T>
[[nodiscard]] constexpr bool mul_overflow(T a, T b, T* out) {
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>, "integers only");
    using L = std::numeric_limits<T>;
    bool overflow;
    if constexpr (std::is_unsigned_v<T>) {
        overflow = a != 0 && b > L::max() / a;
    } else if (a > 0) {
        overflow = b > 0 ? a > L::max() / b : b < L::min() / a;
    } else {
        overflow = b > 0 ? a < L::min() / b : (a != 0 && b < L::max() / a);
    }
    if (!overflow) *out = static_cast<T>(a * b);
    return overflow;
}

}  // namespace cm
