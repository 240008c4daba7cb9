// crispmoss._core.quantize / quantize_plan / quant_types.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings/bind.h"
#include "quantize.h"

namespace py = pybind11;

namespace cm::bind {
namespace {

py::dict report_to_dict(const QuantizeReport& rep) {
    py::list tensors;
    for (const auto& p : rep.tensors) {
        py::list shape;
        for (int d = 0; d < std::max(1, p.n_dims); ++d) shape.append(p.ne[d]);
        py::dict t;
        t["name"] = p.name;
        t["src_type"] = ggml_type_name(p.src_type);
        t["dst_type"] = ggml_type_name(p.dst_type);
        t["shape"] = shape;  // ggml order (ne0 first)
        t["candidate"] = p.candidate;
        t["note"] = p.note;
        tensors.append(t);
    }
    py::dict d;
    d["arch"] = rep.arch;
    d["type"] = ggml_type_name(rep.target);
    d["file_type"] = file_type_for(rep.target);
    d["n_threads"] = rep.n_threads;
    d["seconds"] = rep.seconds;
    d["in_bytes"] = rep.in_bytes;
    d["out_bytes"] = rep.out_bytes;
    d["tensors"] = tensors;
    return d;
}

}  // namespace

void bind_quantize(py::module_& m) {
    m.def("quant_types", &quant_type_names, "Target types accepted by quantize().");

    m.def(
        "quantize_plan",
        [](const std::string& in_path, const std::string& type) {
            const ggml_type target = parse_quant_type(type);
            QuantizeReport rep;
            {
                py::gil_scoped_release nogil;
                rep = plan_quantization(in_path, target);
            }
            return report_to_dict(rep);
        },
        py::arg("in_path"), py::arg("type"),
        "Which type each tensor of a crispmoss GGUF would get for `type`, without writing anything.");

    m.def(
        "quantize",
        [](const std::string& in_path, const std::string& out_path, const std::string& type, int n_threads,
           py::object progress) {
            const ggml_type target = parse_quant_type(type);
            const bool has_cb = !progress.is_none();
            if (has_cb && !PyCallable_Check(progress.ptr())) throw py::type_error("progress must be callable or None");
            // Always called: checking for signals here makes Ctrl-C stop a long run between tensors.
            QuantizeProgress cb = [&](int done, int total, const std::string& name) {
                py::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                if (has_cb) progress(done, total, name);
            };
            QuantizePoll poll = [] {
                py::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            };
            QuantizeReport rep;
            {
                py::gil_scoped_release nogil;
                rep = quantize_file(in_path, out_path, target, n_threads, cb, poll);
            }
            return report_to_dict(rep);
        },
        py::arg("in_path"), py::arg("out_path"), py::arg("type"), py::arg("n_threads") = 0,
        py::arg("progress") = py::none(),
        "Re-quantize a crispmoss GGUF. progress(done, total, name) is called after each tensor. Returns a report "
        "dict (per-tensor source/destination types, sizes, seconds).");
}

}  // namespace cm::bind
