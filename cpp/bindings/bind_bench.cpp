// Benchmark hooks: the decoder driven directly (prefill of N text tokens, single-token decode at any context
// position) and the per-op profile table. Used by benchmarks/run.py; not part of the public API.
#include <chrono>
#include <memory>

#include <pybind11/stl.h>

#include "bindings/bind.h"
#include "compute.h"
#include "errors.h"
#include "models/audio_lm.h"
#include "nn/qwen3.h"
#include "profile.h"

namespace py = pybind11;

namespace cm::bind {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Attention cost depends on how many cached positions a step reads, not on their values, so a decode step
// "at position p" only needs n_past = p in a cache that large; no prefill of p tokens is required.
class DecoderBench {
public:
    DecoderBench(const std::string& path, int n_threads, const std::string& kv_type)
        : lm_(AudioLM::load(path)), compute_(n_threads) {
        if (kv_type == "f16") {
            kv_type_ = GGML_TYPE_F16;
        } else if (kv_type == "f32") {
            kv_type_ = GGML_TYPE_F32;
        } else {
            throw InputError("kv_type must be 'f16' or 'f32'");
        }
    }

    // Milliseconds for one pass over `ids` starting at position n_past.
    double prefill(const std::vector<int32_t>& ids, int n_past, int n_batch) {
        if (ids.empty()) throw InputError("ids is empty");
        if (n_batch < 1) throw InputError("n_batch must be >= 1");
        reserve(n_past + static_cast<int>(ids.size()));
        cache_->n_past = n_past;
        DecoderInput in;
        in.ids = ids;
        const auto t0 = Clock::now();
        decoder_forward(compute_, lm_->lm(), *cache_, in, n_batch);
        return ms_since(t0);
    }

    // Milliseconds of each of n_steps single-token passes, the first at position n_past.
    std::vector<double> decode(int n_past, int n_steps, int32_t token) {
        if (n_steps < 1 || n_past < 0) throw InputError("need n_steps >= 1 and n_past >= 0");
        reserve(n_past + n_steps);
        cache_->n_past = n_past;
        std::vector<double> ms;
        DecoderInput in;
        in.ids = {token};
        for (int i = 0; i < n_steps; ++i) {
            const auto t0 = Clock::now();
            decoder_forward(compute_, lm_->lm(), *cache_, in);
            ms.push_back(ms_since(t0));
        }
        return ms;
    }

    int n_vocab() const { return lm_->lm().cfg.n_vocab; }

private:
    void reserve(int n_ctx) {
        if (n_ctx > lm_->lm().cfg.n_ctx_train) throw InputError("beyond the model's context");
        if (!cache_ || cache_->n_ctx() < n_ctx) {
            cache_.reset();
            cache_ = std::make_unique<KvCache>(lm_->lm().cfg, n_ctx, kv_type_, compute_.cpu());
        }
    }

    std::unique_ptr<AudioLM> lm_;
    Compute compute_;
    ggml_type kv_type_ = GGML_TYPE_F16;
    std::unique_ptr<KvCache> cache_;
};

}  // namespace

void bind_bench(py::module_& m) {
    py::class_<DecoderBench>(m, "DecoderBench")
        .def(py::init([](const std::string& path, int n_threads, const std::string& kv_type) {
                 py::gil_scoped_release nogil;
                 return std::make_unique<DecoderBench>(path, n_threads, kv_type);
             }),
             py::arg("path"), py::arg("n_threads") = 0, py::arg("kv_type") = "f16")
        .def("prefill",
             [](DecoderBench& b, const std::vector<int32_t>& ids, int n_past, int n_batch) {
                 py::gil_scoped_release nogil;
                 return b.prefill(ids, n_past, n_batch);
             },
             py::arg("ids"), py::arg("n_past") = 0, py::arg("n_batch") = 512)
        .def("decode",
             [](DecoderBench& b, int n_past, int n_steps, int32_t token) {
                 py::gil_scoped_release nogil;
                 return b.decode(n_past, n_steps, token);
             },
             py::arg("n_past"), py::arg("n_steps"), py::arg("token") = 1000)
        .def_property_readonly("n_vocab", &DecoderBench::n_vocab);

    m.def("profile_enabled", &profile::enabled, "Whether CRISPMOSS_PROFILE was set (read when a Compute is made).");
    m.def("profile_reset", &profile::reset);
    m.def("profile_snapshot", [] {
        py::dict d;
        for (const auto& [k, s] : profile::snapshot()) d[py::str(k)] = py::make_tuple(s.ms, s.calls, s.flop);
        return d;
    }, "{key: (ms, calls, flop)} accumulated since the last profile_reset().");
}

}  // namespace cm::bind
