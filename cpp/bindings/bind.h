// Each part of the core registers its Python surface in its own translation unit.
#pragma once
#include <pybind11/pybind11.h>

namespace cm::bind {
void bind_mel(pybind11::module_& m);
void bind_tokenizer(pybind11::module_& m);
void bind_model(pybind11::module_& m);
void bind_quantize(pybind11::module_& m);
void bind_backend(pybind11::module_& m);
void bind_bench(pybind11::module_& m);
}  // namespace cm::bind
