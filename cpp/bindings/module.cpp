// crispmoss._core: the thin native layer. C++ exceptions become crispmoss.errors classes.
#include "bindings/bind.h"
#include <cstdio>

#include "errors.h"
#include "ggml.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "crispmoss native core (ggml)";
    // Should a ggml assertion ever fire, end at once with its message: ggml's default handler forks gdb for a
    // backtrace, which hung a loaded test machine for minutes. (The loader's checks keep inputs away from them.)
    ggml_set_abort_callback([](const char* msg) { std::fprintf(stderr, "crispmoss: fatal ggml error: %s\n", msg); });
    py::register_exception_translator([](std::exception_ptr p) {
        if (!p) return;
        auto raise = [](const char* cls, const char* msg) {
            py::object errors = py::module_::import("crispmoss.errors");
            PyErr_SetString(errors.attr(cls).ptr(), msg);
        };
        try {
            std::rethrow_exception(p);
        } catch (const cm::ModelError& e) {
            raise("ModelError", e.what());
        } catch (const cm::AudioError& e) {
            raise("AudioError", e.what());
        } catch (const cm::InputError& e) {
            raise("InputError", e.what());
        } catch (const cm::Error& e) {
            raise("CrispMossError", e.what());  // e.g. a model whose weights give no finite logit
        }
    });
    cm::bind::bind_mel(m);
    cm::bind::bind_tokenizer(m);
    cm::bind::bind_model(m);
    cm::bind::bind_quantize(m);
    cm::bind::bind_backend(m);
    cm::bind::bind_bench(m);
}
