#include "bindings/bind.h"

namespace cm::bind {
void bind_model(pybind11::module_& m) {}
}  // namespace cm::bind
