#include "bindings/bind.h"

namespace cm::bind {
void bind_tokenizer(pybind11::module_& m) {}
}  // namespace cm::bind
