// Backends and devices: crispmoss.system_info(), `crispmoss info --backends`, and the loading of the
// backend libraries of portable builds at import.
#include <pybind11/stl.h>

#include "backend.h"
#include "bindings/bind.h"
#include "ggml.h"

namespace py = pybind11;

namespace cm::bind {

void bind_backend(py::module_& m) {
    m.def("dynamic_backends", &dynamic_backends, "True when ggml's backends are shared libraries loaded at import.");
    m.def(
        "load_backends",
        [](const std::string& dir) {
            py::gil_scoped_release nogil;
            load_backends(dir);
        },
        py::arg("dir"), "Load the ggml backend libraries in `dir` (portable builds; a no-op otherwise).");
    m.def("system_info", [] {
        std::vector<std::string> compiled;
        std::vector<DeviceInfo> devs;
        std::vector<std::pair<std::string, std::string>> feats;
        {
            py::gil_scoped_release nogil;
            compiled = compiled_backends();
            devs = devices();
            feats = cpu_features();
        }
        py::dict d;
        d["ggml_version"] = std::string(ggml_version());
        d["backends"] = compiled;
        d["dynamic_backends"] = dynamic_backends();
        py::list dl;
        for (const DeviceInfo& x : devs) {
            py::dict e;
            e["backend"] = x.backend;
            e["name"] = x.name;
            e["description"] = x.description;
            e["type"] = x.type;
            e["memory_free"] = x.memory_free;
            e["memory_total"] = x.memory_total;
            dl.append(e);
        }
        d["devices"] = dl;
        py::dict f;
        for (const auto& [k, v] : feats) f[py::str(k)] = v;
        d["cpu_features"] = f;
        return d;
    });
}

}  // namespace cm::bind
