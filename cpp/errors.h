// Exception types of the C++ core. The binding maps each one to the Python class of the same name
// in crispmoss.errors, so every failure reaches Python as a specific exception, never a crash.
#pragma once
#include <stdexcept>
#include <string>

namespace cm {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A model file that is missing, malformed, of another architecture or otherwise unusable.
struct ModelError : Error {
    using Error::Error;
};
// Audio that cannot be processed (empty, non-finite samples, ...).
struct AudioError : Error {
    using Error::Error;
};
// A request that does not fit the model (prompt longer than the context, bad sampling setting, ...).
struct InputError : Error {
    using Error::Error;
};

}  // namespace cm
