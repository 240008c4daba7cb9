// Benchmark hooks: the decoder driven directly (prefill of N text tokens, single-token decode at any context
// position) and the per-op profile table. Used by benchmarks/run.py; not part of the public API.
#include <cstring>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "cpu/amx.h"
#include "cpu/amx_dequant.h"

#include "cpu/gemm.h"
#include "cpu/attention.h"
#include "cpu/gemv.h"
#include "cpu/head_screen.h"
#include "cpu/level.h"

#include "bindings/bind.h"
#include "compute.h"
#include "errors.h"
#include "models/audio_lm.h"
#include "nn/qwen3.h"
#include "profile.h"
#include "quantize.h"

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
    DecoderBench(const std::string& path, int n_threads, const std::string& kv_type, const std::string& head_type)
        : lm_(AudioLM::load(path, options(head_type))), compute_(n_threads) {
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

    // Milliseconds of each of n_steps decode steps of n_seq sequences together (decoder_step, as the engine runs
    // them), every sequence at position n_past in a cache of its own.
    std::vector<double> decode_batch(int n_seq, int n_past, int n_steps, int32_t token, const std::string& head) {
        if (n_seq < 1 || n_steps < 1 || n_past < 0) throw InputError("need n_seq >= 1, n_steps >= 1, n_past >= 0");
        if (head != "greedy" && head != "exact") throw InputError("head must be 'greedy' or 'exact'");
        if (n_past + n_steps > lm_->lm().cfg.n_ctx_train) throw InputError("beyond the model's context");
        std::vector<std::unique_ptr<KvCache>> caches;
        std::vector<KvCache*> ptrs;
        for (int i = 0; i < n_seq; ++i) {
            caches.push_back(std::make_unique<KvCache>(lm_->lm().cfg, n_past + n_steps, kv_type_, compute_.cpu()));
            caches.back()->n_past = n_past;
            ptrs.push_back(caches.back().get());
        }
        std::vector<int32_t> ids(n_seq, token);
        // As the engine runs greedy rows (the head screened where it can be, nn/head.h), or every row's full logits.
        const std::vector<nn::HeadRow> rows(size_t(n_seq), nn::HeadRow{head == "greedy", nullptr});
        std::vector<double> ms;
        for (int i = 0; i < n_steps; ++i) {
            const auto t0 = Clock::now();
            decoder_step(compute_, lm_->lm(), ptrs, ids, &rows);
            ms.push_back(ms_since(t0));
        }
        return ms;
    }

    // Greedy continuation of `ids`: each step's token, its top-2 logit margin, and the logits after the prompt.
    struct Greedy {
        std::vector<int32_t> tokens;
        std::vector<float> margins;
        std::vector<float> first_logits;
    };
    Greedy greedy(const std::vector<int32_t>& ids, int n_steps) {
        if (ids.empty() || n_steps < 1) throw InputError("need ids and n_steps >= 1");
        reserve(static_cast<int>(ids.size()) + n_steps);
        cache_->n_past = 0;
        DecoderInput in;
        in.ids = ids;
        Greedy g;
        for (int i = 0; i < n_steps; ++i) {
            std::vector<float> logits = decoder_forward(compute_, lm_->lm(), *cache_, in);
            const auto best = std::max_element(logits.begin(), logits.end());
            const float top = *best;
            *best = -INFINITY;
            g.margins.push_back(top - *std::max_element(logits.begin(), logits.end()));
            *best = top;
            g.tokens.push_back(static_cast<int32_t>(best - logits.begin()));
            if (i == 0) g.first_logits = std::move(logits);
            in.ids = {g.tokens.back()};
        }
        return g;
    }

    int n_vocab() const { return lm_->lm().cfg.n_vocab; }

private:
    static LoadOptions options(const std::string& head_type) {
        LoadOptions o;
        o.backend = "cpu";  // the bench computes on the CPU
        o.head_type = head_type;
        return o;
    }

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

// The level a kernel test runs at: `name` ("" = the active level), which this CPU must have.
cpu::Level test_level(const char* fn, const std::string& name) {
    cpu::Level lv = cpu::active_level();
    if (!name.empty() && !cpu::parse_level(name.c_str(), &lv))
        throw InputError(std::string(fn) + ": level must be avx2, avx512 or amx, not '" + name + "'");
    if (lv == cpu::Level::none || cpu::usable(lv) != lv)
        throw InputError(std::string(fn) + ": this CPU cannot run our kernels at level '" + cpu::level_name(lv) + "'");
    return lv;
}

// Runs fn(t) on nth threads, one std::thread each (their start, ~50 us, is inside the time).
template <class Fn>
double run_threads_ms(int nth, Fn&& fn) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < nth; ++t) pool.emplace_back([&fn, t] { fn(t); });
    for (auto& th : pool) th.join();
    return ms_since(t0);
}

// As run_threads_ms, but the largest CPU time of one of the threads (ms): less sensitive to other processes
// sharing the cores than wall time (not to their use of caches and memory).
template <class Fn>
double run_threads_cpu_ms(int nth, Fn&& fn) {
    std::vector<double> cpu(size_t(nth), 0.0);
    run_threads_ms(nth, [&](int t) {
        timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        fn(t);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        cpu[size_t(t)] = double(b.tv_sec - a.tv_sec) * 1e3 + double(b.tv_nsec - a.tv_nsec) * 1e-6;
    });
    return *std::max_element(cpu.begin(), cpu.end());
}

// The tiles' activation operand, 64-byte aligned as nn::mul_mat places it (tile rows on whole cache lines).
struct AmxRows {
    std::vector<uint16_t> mem;
    uint16_t* p;
    explicit AmxRows(size_t n) : mem(n + 32), p(cpu::amx_align64(mem.data())) {}
    uint16_t* data() { return p; }
};

// Best of `reps` wall times (ms) of run_threads_ms(nth, fn).
template <class Fn>
double best_ms(int nth, int reps, Fn&& fn) {
    double best = 1e30;
    for (int rep = 0; rep < reps; ++rep) best = std::min(best, run_threads_ms(nth, fn));
    return best;
}

// Best of `reps` wall times (ms) of cpu::gemv over all rows, split as the ggml custom op splits them over nth
// threads (one std::thread each; their start, ~50 us, is inside the time).
double best_gemv_ms(ggml_type type, const uint8_t* q, size_t rb, int64_t rows, int64_t cols, const float* x, int n_x,
                    float* y, int nth, int reps, cpu::Level lv, size_t block_bytes) {
    const size_t per = cpu::gemv_scratch_bytes(type, cols) * size_t(n_x) + 1;
    std::vector<std::vector<uint8_t>> scratch(static_cast<size_t>(nth), std::vector<uint8_t>(per));
    return best_ms(nth, reps, [&](int t) {
        cpu::gemv_rows(type, q, rb, cols, rows * t / nth, rows * (t + 1) / nth, x, cols, n_x, y, rows,
                       scratch[size_t(t)].data(), lv, block_bytes);
    });
}

}  // namespace

void bind_bench(py::module_& m) {
    py::class_<DecoderBench>(m, "DecoderBench")
        .def(py::init([](const std::string& path, int n_threads, const std::string& kv_type,
                         const std::string& head_type) {
                 py::gil_scoped_release nogil;
                 return std::make_unique<DecoderBench>(path, n_threads, kv_type, head_type);
             }),
             py::arg("path"), py::arg("n_threads") = 0, py::arg("kv_type") = "f16", py::arg("head_type") = "")
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
        .def("greedy",
             [](DecoderBench& b, const std::vector<int32_t>& ids, int n_steps) {
                 DecoderBench::Greedy g;
                 {
                     py::gil_scoped_release nogil;
                     g = b.greedy(ids, n_steps);
                 }
                 return py::make_tuple(g.tokens, g.margins, py::array_t<float>(g.first_logits.size(),
                                                                                g.first_logits.data()));
             },
             py::arg("ids"), py::arg("n_steps"), "(tokens, top-2 margins, logits after the prompt), greedy.")
        .def("decode_batch", &DecoderBench::decode_batch, py::arg("n_seq"), py::arg("n_past"), py::arg("n_steps"),
             py::arg("token") = 0, py::arg("head") = "greedy",
             "Milliseconds of each batched decode step of n_seq sequences; head 'greedy' (rows sampled greedily, as "
             "the engine runs them: the head screened where it can be) or 'exact' (every row's full logits).")
        .def_property_readonly("n_vocab", &DecoderBench::n_vocab);

    m.def("gemv_available", &cpu::gemv_available,
          "Whether our CPU kernels (matrix-vector, F16 matrix, GELU) run: cpu_level() is not 'none'.");
    m.def("cpu_level", [] { return std::string(cpu::level_name(cpu::active_level())); },
          "The level our CPU kernels run at: 'none' (ggml's kernels), 'avx2', 'avx512' or 'amx' (CRISPMOSS_CPU).");
    m.def("cpu_best_level", [] { return std::string(cpu::level_name(cpu::best_level())); },
          "The best level this CPU and OS support (what CRISPMOSS_CPU can ask for at most).");
    m.def(
        "gemv_test",
        [](const std::string& type_name, py::array_t<float, py::array::c_style | py::array::forcecast> w,
           py::array_t<float, py::array::c_style | py::array::forcecast> x, int nth, const std::string& level,
           int64_t block_bytes) {
            const ggml_type type = type_name == "f32" ? GGML_TYPE_F32 : parse_quant_type(type_name);
            // x: one activation row [cols] or several [n_x, cols] (1..kMaxGemvRows: gemv; up to 64: gemv_rows)
            const bool one = x.ndim() == 1;
            const int64_t n_x = one ? 1 : (x.ndim() == 2 ? x.shape(0) : 0);
            const int64_t xc = x.ndim() >= 1 ? x.shape(x.ndim() - 1) : 0;
            if (!cpu::gemv_supports(type) || w.ndim() != 2 || n_x < 1 || n_x > 64 || xc != w.shape(1) || nth < 1 ||
                block_bytes < 1)
                throw InputError("gemv_test: type q4_k|q8_0|f16|f32, w [rows, cols], x [cols] or [1..64, cols], "
                                 "nth >= 1, block_bytes >= 1");
            const cpu::Level lv = test_level("gemv_test", level);
            const int64_t rows = w.shape(0), cols = w.shape(1);
            if (cols % ggml_blck_size(type) != 0) throw InputError("gemv_test: cols must be whole blocks");
            const size_t rb = ggml_row_size(type, cols);
            std::vector<uint8_t> q(rb * size_t(rows));
            py::array_t<float> deq({rows, cols});
            if (type == GGML_TYPE_F32) {
                std::memcpy(q.data(), w.data(), q.size());
                std::memcpy(deq.mutable_data(), w.data(), q.size());
            } else {
                ggml_quantize_chunk(type, w.data(), q.data(), 0, rows, cols, nullptr);
                const auto* tt = ggml_get_type_traits(type);
                for (int64_t r = 0; r < rows; ++r) tt->to_float(q.data() + r * rb, deq.mutable_data() + r * cols, cols);
            }
            py::array_t<float> y = one ? py::array_t<float>(rows) : py::array_t<float>({n_x, rows});
            std::vector<uint8_t> scratch(cpu::gemv_scratch_bytes(type, cols) * size_t(n_x) + 1);
            for (int t = 0; t < nth; ++t)  // the row split of a ggml custom op with nth threads
                cpu::gemv_rows(type, q.data(), rb, cols, rows * t / nth, rows * (t + 1) / nth, x.data(), cols,
                               int(n_x), y.mutable_data(), rows, scratch.data(), lv, size_t(block_bytes));
            return py::make_tuple(y, deq);
        },
        py::arg("type"), py::arg("w"), py::arg("x"), py::arg("nth") = 1, py::arg("level") = "",
        py::arg("block_bytes") = int64_t(cpu::kGemvRowsBlockBytes),
        "(y, dequantized w): our kernel on w quantized to `type`, x one row or [n_x, cols] (more than 16 rows: "
        "cpu::gemv_rows, weight sub-blocks of about block_bytes) (tests).");
    m.def(
        "gemm_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> w,
           py::array_t<float, py::array::c_style | py::array::forcecast> x, int nth, const std::string& level,
           std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> bias, bool gelu) {
            if (w.ndim() != 2 || x.ndim() != 2 || x.shape(1) != w.shape(1) || nth < 1 ||
                (bias && (bias->ndim() != 1 || bias->shape(0) != w.shape(0))))
                throw InputError("gemm_test: w [rows, k], x [n, k], bias [rows], nth >= 1");
            const cpu::Level lv = test_level("gemm_test", level);
            const int64_t rows = w.shape(0), k = w.shape(1), n = x.shape(0);
            std::vector<ggml_fp16_t> wh(size_t(rows * k));
            ggml_fp32_to_fp16_row(w.data(), wh.data(), rows * k);
            std::vector<float> xt(size_t(k * n));
            for (int64_t j = 0; j < n; ++j)
                for (int64_t i = 0; i < k; ++i) xt[i * n + j] = x.data()[j * k + i];
            py::array_t<float> y({n, rows});
            for (int t = 0; t < nth; ++t) {  // the row split of the ggml custom op with nth threads
                const auto [r0, r1] = cpu::gemm_thread_rows(rows, t, nth);
                if (r0 < r1) cpu::gemm_f16(wh.data(), k * sizeof(ggml_fp16_t), k, r0, r1, xt.data(), n, n,
                                           cpu::GemmOut{y.mutable_data(), size_t(rows), bias ? bias->data() : nullptr,
                                                        false, gelu}, lv);
            }
            return y;
        },
        py::arg("w"), py::arg("x"), py::arg("nth") = 1, py::arg("level") = "", py::arg("bias") = py::none(),
        py::arg("gelu") = false,
        "y = x @ f16(w).T (+ bias, then GELU) through our F16 matrix kernel (tests).");
    m.def(
        "conv_stem_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> w,
           py::array_t<float, py::array::c_style | py::array::forcecast> x,
           py::array_t<float, py::array::c_style | py::array::forcecast> b, int nth, bool gelu,
           const std::string& level) {
            // w [OC, C, 3, 3], x [B, C, H, W], b [OC] -> y [B, OC, OH, OW]
            if (w.ndim() != 4 || w.shape(2) != 3 || w.shape(3) != 3 || x.ndim() != 4 || x.shape(1) != w.shape(1) ||
                b.ndim() != 1 || b.shape(0) != w.shape(0) || nth < 1)
                throw InputError("conv_stem_test: w [OC, C, 3, 3], x [B, C, H, W], b [OC], nth >= 1");
            const cpu::Level lv = test_level("conv_stem_test", level);
            const int64_t OC = w.shape(0), C = w.shape(1), B = x.shape(0), H = x.shape(2), W = x.shape(3);
            const int64_t OH = (H - 1) / 2 + 1, OW = (W - 1) / 2 + 1;
            std::vector<ggml_fp16_t> wh(size_t(OC * C * 9));
            ggml_fp32_to_fp16_row(w.data(), wh.data(), OC * C * 9);
            const cpu::ConvPlanes in{x.data(), W, H, C, B, size_t(W), size_t(W * H), size_t(W * H * C)};
            py::array_t<float> y({B, OC, OH, OW});
            for (int t = 0; t < nth; ++t) {  // the position split of the ggml custom op with nth threads
                const auto [p0, p1] = cpu::conv_thread_positions(in, t, nth);
                if (p0 < p1) cpu::conv3x3s2_f16(wh.data(), 9 * C * sizeof(ggml_fp16_t), OC, in, p0, p1, b.data(), gelu,
                                                y.mutable_data(), size_t(OH * OW), size_t(OC * OH * OW), lv);
            }
            return y;
        },
        py::arg("w"), py::arg("x"), py::arg("b"), py::arg("nth") = 1, py::arg("gelu") = true, py::arg("level") = "",
        "The conv stem's 3x3 / stride 2 / padding 1 convolution (+ bias, GELU) through our F16 matrix kernel (tests).");
    m.def("amx_usable", &cpu::amx_usable, "Whether the AMX tile kernels can run here (CPU, OS permission).");
    m.def("amx_int8_usable", &cpu::amx_int8_usable,
          "Whether the AMX-INT8 tile products (the Q4_K kernel for many rows at the amx level) can run here.");
    m.def("head_screen_available", &cpu::head_screen_available,
          "Whether greedy decode steps can screen an F16 head on the AMX tiles here (nn/head.h).");
    m.def("head_screen_recomputed", &cpu::head_screen_recomputed,
          "Logits the screened head computed exactly so far in this process (candidates and exact sets).");
    m.def("head_screened_rows", &nn::head_screened_rows,
          "Decode-step rows given to the screened head so far in this process (CRISPMOSS_HEAD).");
    m.def(
        "head_screen_bench",
        [](int64_t rows, int64_t k, int64_t n, int reps) {
            if (!cpu::head_screen_available()) throw InputError("head_screen_bench: no AMX screening here");
            if (rows < 32 || k < 32 || n < 1 || n > cpu::kMaxGemvRows || reps < 1)
                throw InputError("head_screen_bench: rows >= 32, k >= 32, 1 <= n <= 16, reps >= 1");
            const size_t rb = size_t(k) * 2;
            std::vector<ggml_fp16_t> wh(size_t(rows * k));
            uint32_t st = 12345;
            for (auto& v : wh) {
                st = st * 1664525u + 1013904223u;
                v = ggml_fp32_to_fp16((float(st >> 8) / 16777216.0f - 0.5f) * 0.1f);
            }
            std::vector<float> x(size_t(n * k));
            for (auto& v : x) {
                st = st * 1664525u + 1013904223u;
                v = float(st >> 8) / 16777216.0f - 0.5f;
            }
            auto norms = cpu::head_norms(wh.data(), rb, rows, k);
            const int64_t rows_pad = cpu::head_screen_rows_pad(rows), groups = cpu::head_screen_groups(n);
            std::vector<uint16_t> xmem(cpu::head_screen_x_bytes(n, k) / 2 + 32);
            uint16_t* xp = cpu::amx_align64(xmem.data());
            std::vector<cpu::ScreenRow> sr(static_cast<size_t>(n));
            std::vector<float> yt(size_t(groups * rows_pad * 16 + 16)), out(size_t(n * rows)), lo(static_cast<size_t>(n));
            float* ytp = reinterpret_cast<float*>(cpu::amx_align64(yt.data()));
            std::vector<uint8_t> bad(static_cast<size_t>(n)), full(static_cast<size_t>(n));
            double best_p = 1e30, best_s = 1e30, best_g = 1e30;
            for (int r = 0; r < reps; ++r) {
                auto t0 = Clock::now();
                cpu::head_screen_pack(x.data(), k, n, k, *norms, xp, sr.data());
                cpu::head_screen_product(wh.data(), rb, *norms, 0, rows, xp, n, sr.data(), nullptr, ytp, lo.data(), bad.data());
                best_p = std::min(best_p, ms_since(t0));
                t0 = Clock::now();
                cpu::head_screen_select(wh.data(), rb, *norms, 0, rows, ytp, x.data(), k, n, sr.data(), nullptr, lo.data(),
                                        full.data(), out.data(), rows);
                best_s = std::min(best_s, ms_since(t0));
                t0 = Clock::now();
                cpu::gemv(GGML_TYPE_F16, wh.data(), rb, k, 0, rows, x.data(), k, int(n), out.data(), rows, nullptr);
                best_g = std::min(best_g, ms_since(t0));
            }
            return py::make_tuple(best_p, best_s, best_g);
        },
        py::arg("rows"), py::arg("k"), py::arg("n"), py::arg("reps") = 5,
        "(screening product ms, selection ms, exact product ms), best of reps, one thread, random F16 weights "
        "rows x k and n activation rows (benchmarks).");
    m.def(
        "head_screen_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> w,
           py::array_t<float, py::array::c_style | py::array::forcecast> x, std::vector<std::vector<int32_t>> exact,
           int nth) {
            if (!cpu::head_screen_available()) throw InputError("head_screen_test: no AMX screening here");
            if (w.ndim() != 2 || x.ndim() != 2 || x.shape(1) != w.shape(1) || x.shape(0) < 1 || nth < 1 ||
                (!exact.empty() && int64_t(exact.size()) != x.shape(0)))
                throw InputError("head_screen_test: w [rows, k], x [n, k], exact: [] or one id list per row, nth >= 1");
            const int64_t rows = w.shape(0), k = w.shape(1), n = x.shape(0);
            const size_t rb = size_t(k) * 2;
            std::vector<ggml_fp16_t> wh(size_t(rows * k));
            ggml_fp32_to_fp16_row(w.data(), wh.data(), rows * k);
            auto norms = cpu::head_norms(wh.data(), rb, rows, k);
            if (!norms) throw InputError("head_screen_test: the weights have a non-finite value");
            const int64_t rows_pad = cpu::head_screen_rows_pad(rows), groups = cpu::head_screen_groups(n);
            std::vector<uint16_t> hist;
            for (int64_t i = 0; i < int64_t(exact.size()); ++i) {
                if (exact[size_t(i)].empty()) continue;
                if (hist.empty()) hist.assign(size_t(groups * rows_pad), 0);
                for (int32_t id : exact[size_t(i)])
                    if (id >= 0 && id < rows) hist[size_t((i / 16) * rows_pad + id)] |= uint16_t(1u << (i % 16));
            }
            std::vector<uint16_t> xmem(cpu::head_screen_x_bytes(n, k) / 2 + 32);
            uint16_t* xp = cpu::amx_align64(xmem.data());
            std::vector<cpu::ScreenRow> sr(static_cast<size_t>(n));
            cpu::head_screen_pack(x.data(), k, n, k, *norms, xp, sr.data());
            std::vector<float> yt(size_t(groups * rows_pad * 16 + 16));
            float* ytp = reinterpret_cast<float*>(cpu::amx_align64(yt.data()));
            std::vector<float> lo(size_t(nth * n));
            std::vector<uint8_t> bad(size_t(nth * n));
            for (int t = 0; t < nth; ++t) {  // the split of the graph op over nth threads
                int64_t r0, r1;
                cpu::amx_thread_rows(rows, t, nth, &r0, &r1);
                cpu::head_screen_product(wh.data(), rb, *norms, r0, r1, xp, n, sr.data(), hist.empty() ? nullptr : hist.data(),
                                         ytp, lo.data() + t * n, bad.data() + t * n);
            }
            std::vector<float> mv(static_cast<size_t>(n), -INFINITY);
            std::vector<uint8_t> full(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) {
                full[size_t(i)] = !sr[size_t(i)].ok;
                for (int t = 0; t < nth; ++t) {
                    mv[size_t(i)] = std::max(mv[size_t(i)], lo[size_t(t * n + i)]);
                    full[size_t(i)] |= bad[size_t(t * n + i)];
                }
            }
            py::array_t<float> approx({n, rows}), bound({n, rows}), sel({n, rows}), ex({n, rows});
            for (int64_t i = 0; i < n; ++i) {
                for (int64_t v = 0; v < rows; ++v) {
                    approx.mutable_at(i, v) = ytp[((i / 16) * rows_pad + v) * 16 + i % 16];
                    const cpu::ScreenRow& r = sr[size_t(i)];
                    bound.mutable_at(i, v) = float(double(norms->norm[size_t(v)]) * r.a +
                                                   double(norms->dnorm[size_t(v)]) * r.b + r.c);
                }
            }
            for (int t = 0; t < nth; ++t) {
                int64_t r0, r1;
                cpu::amx_thread_rows(rows, t, nth, &r0, &r1);
                cpu::head_screen_select(wh.data(), rb, *norms, r0, r1, ytp, x.data(), k, n, sr.data(),
                                        hist.empty() ? nullptr : hist.data(), mv.data(), full.data(), sel.mutable_data(), rows);
                // the full exact product: all n rows in one call, as the decode step's matrix-vector op runs them
                // (at most kMaxGemvRows rows a call)
                for (int64_t j = 0; j < n; j += cpu::kMaxGemvRows)
                    cpu::gemv(GGML_TYPE_F16, wh.data(), rb, k, rows * t / nth, rows * (t + 1) / nth, x.data() + j * k, k,
                              int(std::min<int64_t>(cpu::kMaxGemvRows, n - j)), ex.mutable_data() + j * rows, rows, nullptr);
            }
            std::vector<float> wq(size_t(rows * k));
            ggml_fp16_to_fp32_row(wh.data(), wq.data(), rows * k);
            py::dict d;
            d["approx"] = approx, d["bound"] = bound, d["logits"] = sel, d["exact"] = ex;
            d["w"] = py::array_t<float>({rows, k}, wq.data());
            std::vector<bool> ok;
            for (int64_t i = 0; i < n; ++i) ok.push_back(sr[size_t(i)].ok && !full[size_t(i)]);
            d["screened"] = ok;
            d["m"] = mv;
            d["bf16_exact"] = norms->bf16_exact;
            return d;
        },
        py::arg("w"), py::arg("x"), py::arg("exact") = std::vector<std::vector<int32_t>>(), py::arg("nth") = 1,
        "Screened head on w (rounded to F16) and x [n, k] (tests): approx y~, its bound, the selected logits, the "
        "full exact product, which rows were screened.");
    m.def(
        "amx_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> w,
           py::array_t<float, py::array::c_style | py::array::forcecast> x, int nth, bool split) {
            if (w.ndim() != 2 || x.ndim() != 2 || x.shape(1) != w.shape(1) || nth < 1)
                throw InputError("amx_test: w [rows, k], x [n, k], nth >= 1");
            if (!cpu::amx_usable()) throw InputError("amx_test: this CPU or OS cannot run the AMX tiles");
            const int64_t rows = w.shape(0), k = w.shape(1), n = x.shape(0);
            std::vector<ggml_fp16_t> wh(size_t(rows * k));
            ggml_fp32_to_fp16_row(w.data(), wh.data(), rows * k);
            const auto pw = cpu::amx_pack_f16(wh.data(), k * sizeof(ggml_fp16_t), rows, k, split);
            const size_t plane = size_t(cpu::amx_rows_pad(n) * cpu::amx_k_pad(k));
            AmxRows xb(plane * (split ? 2 : 1));
            py::array_t<float> y({n, rows});
            for (int t = 0; t < nth; ++t) {  // the splits of the ggml custom ops with nth threads
                const int64_t n_pad = cpu::amx_rows_pad(n);
                cpu::amx_convert_rows(x.data(), k, n, k, n_pad * t / nth, n_pad * (t + 1) / nth, xb.data(),
                                      split ? xb.data() + plane : nullptr);
            }
            for (int t = 0; t < nth; ++t) {
                int64_t r0, r1;
                cpu::amx_thread_rows(rows, t, nth, &r0, &r1);
                cpu::amx_gemm(*pw, r0, r1, xb.data(), xb.data() + plane, n, y.mutable_data(), rows);
            }
            return y;
        },
        py::arg("w"), py::arg("x"), py::arg("nth") = 1, py::arg("split") = false,
        "y = x @ f16(w).T on the AMX tiles, BF16 or the exact split (tests).");
    m.def(
        "amx_bench",
        [](int64_t rows, int64_t k, int64_t n, int nth, int reps, bool split) {
            if (!cpu::amx_usable()) throw InputError("amx_bench: this CPU or OS cannot run the AMX tiles");
            if (rows < 1 || k < 1 || n < 1 || nth < 1 || reps < 1) throw InputError("amx_bench: sizes, nth, reps >= 1");
            py::gil_scoped_release nogil;
            std::vector<float> w(size_t(rows * k)), x(size_t(n * k)), y(size_t(n * rows));
            for (size_t i = 0; i < w.size(); ++i) w[i] = float(int(i * 2654435761u % 2001) - 1000) * 1e-3f;
            for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 40503u % 2001) - 1000) * 1e-3f;
            std::vector<ggml_fp16_t> wh(w.size());
            ggml_fp32_to_fp16_row(w.data(), wh.data(), rows * k);
            const auto pw = cpu::amx_pack_f16(wh.data(), k * sizeof(ggml_fp16_t), rows, k, split);
            const int64_t n_pad = cpu::amx_rows_pad(n);
            const size_t plane = size_t(n_pad * cpu::amx_k_pad(k));
            AmxRows xb(plane * 2);
            double best = 1e30;
            for (int rep = 0; rep < reps; ++rep) {  // as the two ggml custom ops: rows converted, then the product
                const double ms = run_threads_ms(nth, [&](int t) {
                    cpu::amx_convert_rows(x.data(), k, n, k, n_pad * t / nth, n_pad * (t + 1) / nth, xb.data(),
                                          split ? xb.data() + plane : nullptr);
                });
                best = std::min(best, ms + run_threads_ms(nth, [&](int t) {
                    int64_t r0, r1;
                    cpu::amx_thread_rows(rows, t, nth, &r0, &r1);
                    cpu::amx_gemm(*pw, r0, r1, xb.data(), xb.data() + plane, n, y.data(), rows);
                }));
            }
            return best;
        },
        py::arg("rows"), py::arg("k"), py::arg("n"), py::arg("nth") = 1, py::arg("reps") = 5, py::arg("split") = false,
        "Best ms of our AMX product (activation conversion included) for a rows x k weight and n activation rows.");
    m.def(
        "amx_dequant_test",
        [](const std::string& type_name, py::array_t<float, py::array::c_style | py::array::forcecast> w,
           py::array_t<float, py::array::c_style | py::array::forcecast> x, int nth) {
            const ggml_type type = type_name == "bf16" ? GGML_TYPE_BF16 : parse_quant_type(type_name);
            if (!cpu::amx_dequant_supports(type) || w.ndim() != 2 || x.ndim() != 2 || x.shape(1) != w.shape(1) || nth < 1)
                throw InputError("amx_dequant_test: type q4_k|q8_0|f16|bf16, w [rows, k], x [n, k], nth >= 1");
            if (!cpu::amx_usable()) throw InputError("amx_dequant_test: this CPU or OS cannot run the AMX tiles");
            const int64_t rows = w.shape(0), k = w.shape(1), n = x.shape(0);
            if (k % ggml_blck_size(type) != 0) throw InputError("amx_dequant_test: k must be whole blocks");
            const size_t rb = ggml_row_size(type, k);
            std::vector<uint8_t> q(rb * size_t(rows));
            ggml_quantize_chunk(type, w.data(), q.data(), 0, rows, k, nullptr);
            py::array_t<float> deq({rows, k});
            const auto* tt = ggml_get_type_traits(type);
            for (int64_t r = 0; r < rows; ++r) tt->to_float(q.data() + r * rb, deq.mutable_data() + r * k, k);
            const int64_t n_pad = cpu::amx_rows_pad(n);
            AmxRows xb(size_t(n_pad * cpu::amx_k_pad(k)));
            // as the two ggml custom ops with nth threads: panels of rows converted, then each thread's 32-row blocks
            for (int t = 0; t < nth; ++t)
                cpu::amx_convert_rows_b(x.data(), k, n, k, n_pad / 16 * t / nth, n_pad / 16 * (t + 1) / nth, xb.data());
            py::array_t<float> y({n, rows});
            AmxRows scratch(cpu::amx_dequant_scratch_bytes(k) / 2);
            for (int t = 0; t < nth; ++t) {
                int64_t r0, r1;
                cpu::amx_thread_rows(rows, t, nth, &r0, &r1);
                cpu::amx_gemm_dequant(type, q.data(), rb, k, r0, r1, xb.data(), n, y.mutable_data(), rows, scratch.data());
            }
            return py::make_tuple(y, deq);
        },
        py::arg("type"), py::arg("w"), py::arg("x"), py::arg("nth") = 1,
        "(y, dequantized w): y = x @ w.T on the AMX tiles with w quantized to `type` and dequantized block by block "
        "(the decoder's prefill path; tests).");
    m.def(
        "amx_rows_b_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> x, int nth) {
            if (x.ndim() != 2 || nth < 1) throw InputError("amx_rows_b_test: x [n, k], nth >= 1");
            if (!cpu::amx_usable()) throw InputError("amx_rows_b_test: this CPU or OS cannot run the AMX tiles");
            const int64_t n = x.shape(0), k = x.shape(1), panels = cpu::amx_rows_pad(n) / 16, kp = cpu::amx_k_pad(k);
            py::array_t<uint16_t> out({panels, kp / 32, int64_t(16), int64_t(32)});
            std::fill(out.mutable_data(), out.mutable_data() + out.size(), uint16_t(0xFFFF));  // every value written
            for (int t = 0; t < nth; ++t)
                cpu::amx_convert_rows_b(x.data(), k, n, k, panels * t / nth, panels * (t + 1) / nth, out.mutable_data());
            return out;
        },
        py::arg("x"), py::arg("nth") = 1,
        "x's rows as the B operand of the dequantized products, BF16 bits [panel, k step, tile row, 32] (tests).");
    m.def(
        "amx_dequant_bench",
        [](const std::string& type_name, int64_t rows, int64_t k, int64_t n, int nth, int reps, bool cpu_time) {
            const ggml_type type = type_name == "bf16" ? GGML_TYPE_BF16 : parse_quant_type(type_name);
            if (!cpu::amx_usable()) throw InputError("amx_dequant_bench: this CPU or OS cannot run the AMX tiles");
            if (!cpu::amx_dequant_supports(type) || rows < 1 || k < 1 || k % ggml_blck_size(type) != 0 || n < 1 ||
                nth < 1 || reps < 1)
                throw InputError("amx_dequant_bench: type q4_k|q8_0|f16|bf16, sizes >= 1 (k whole blocks), nth, reps >= 1");
            py::gil_scoped_release nogil;
            std::vector<float> w(size_t(rows * k)), x(size_t(n * k)), y(size_t(n * rows));
            for (size_t i = 0; i < w.size(); ++i) w[i] = float(int(i * 2654435761u % 2001) - 1000) * 1e-3f;
            for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 40503u % 2001) - 1000) * 1e-3f;
            const size_t rb = ggml_row_size(type, k);
            std::vector<uint8_t> q(rb * size_t(rows));
            ggml_quantize_chunk(type, w.data(), q.data(), 0, rows, k, nullptr);
            const int64_t n_pad = cpu::amx_rows_pad(n), kp = cpu::amx_k_pad(k), kb_n = kp / 32;
            AmxRows xb(size_t(n_pad * kp));
            std::vector<AmxRows> scratch;
            for (int t = 0; t < nth; ++t) scratch.emplace_back(cpu::amx_dequant_scratch_bytes(k) / 2);
            const auto timed = [nth, cpu_time](auto&& fn) {
                return cpu_time ? run_threads_cpu_ms(nth, fn) : run_threads_ms(nth, fn);
            };
            double best_all = 1e30, best_dq = 1e30;
            for (int rep = 0; rep < reps; ++rep) {
                const double ms = timed([&](int t) {
                    cpu::amx_convert_rows_b(x.data(), k, n, k, n_pad / 16 * t / nth, n_pad / 16 * (t + 1) / nth, xb.data());
                });
                best_all = std::min(best_all, ms + timed([&](int t) {
                    int64_t r0, r1;
                    cpu::amx_thread_rows(rows, t, nth, &r0, &r1);
                    cpu::amx_gemm_dequant(type, q.data(), rb, k, r0, r1, xb.data(), n, y.data(), rows,
                                          scratch[size_t(t)].data());
                }));
                best_dq = std::min(best_dq, timed([&](int t) {  // the dequantizing alone
                    int64_t r0, r1;
                    cpu::amx_thread_rows(rows, t, nth, &r0, &r1);
                    for (int64_t r = r0; r < r1; r += cpu::kAmxDequantRows) {
                        const int64_t nr = std::min(cpu::kAmxDequantRows, r1 - r);
                        const int64_t steps = cpu::kAmxDequantSlice / 32;
                        for (int64_t kb0 = 0; kb0 < kb_n; kb0 += steps)
                            cpu::amx_dequant_a_tiles(type, q.data(), rb, k, r, nr, kb0, std::min(kb_n, kb0 + steps),
                                                     scratch[size_t(t)].data());
                    }
                }));
            }
            return std::make_pair(best_all, best_dq);  // converted after the GIL is back
        },
        py::arg("type"), py::arg("rows"), py::arg("k"), py::arg("n"), py::arg("nth") = 1, py::arg("reps") = 5,
        py::arg("cpu_time") = false,
        "(best ms of the whole product, best ms of the dequantizing alone): the prefill path on the tiles for a "
        "rows x k weight of `type` and n activation rows (benchmarks). cpu_time: the busiest thread's CPU time "
        "instead of wall time (for a machine shared with other work).");
    m.def(
        "amx_peak",
        [](int nth, int64_t iters) {
            if (!cpu::amx_usable()) throw InputError("amx_peak: this CPU or OS cannot run the AMX tiles");
            py::gil_scoped_release nogil;
            std::vector<double> flop(size_t(std::max(nth, 1)));
            const double s = run_threads_ms(nth, [&](int t) { flop[size_t(t)] = cpu::amx_peak_run(iters); }) / 1000;
            double sum = 0;
            for (double f : flop) sum += f;
            return sum / s / 1e9;
        },
        py::arg("nth") = 1, py::arg("iters") = 2000000,
        "GFLOP/s of TDPBF16PS on resident tiles over nth threads: the tile unit's limit (benchmarks).");
    m.def(
        "gemm_bench",
        [](int64_t rows, int64_t k, int64_t n, int nth, int reps, const std::string& level) {
            const cpu::Level lv = test_level("gemm_bench", level);
            py::gil_scoped_release nogil;
            std::vector<ggml_fp16_t> wh(size_t(rows * k));
            for (size_t i = 0; i < wh.size(); ++i) wh[i] = ggml_fp32_to_fp16(float(int(i * 2654435761u % 2001) - 1000) * 1e-3f);
            std::vector<float> xt(size_t(n * k), 0.5f), y(size_t(n * rows));
            return best_ms(nth, reps, [&](int t) {
                const auto [r0, r1] = cpu::gemm_thread_rows(rows, t, nth);
                if (r0 < r1) cpu::gemm_f16(wh.data(), k * sizeof(ggml_fp16_t), k, r0, r1, xt.data(), n, n, y.data(), rows, lv);
            });
        },
        py::arg("rows"), py::arg("k"), py::arg("n"), py::arg("nth") = 1, py::arg("reps") = 5, py::arg("level") = "",
        "Best ms of our F16 matrix kernel (FMA tiles) for a rows x k weight and n activation rows (x given transposed).");
    m.def(
        "amx_conv_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> w,
           py::array_t<float, py::array::c_style | py::array::forcecast> x, int nth, bool split) {
            // w [OC, C, 3, 3], x [B, H, W, C] (channel-last) -> y [B, OH, OW, OC]
            if (w.ndim() != 4 || w.shape(2) != 3 || w.shape(3) != 3 || x.ndim() != 4 || x.shape(3) != w.shape(1) || nth < 1)
                throw InputError("amx_conv_test: w [OC, C, 3, 3], x [B, H, W, C], nth >= 1");
            if (!cpu::amx_usable()) throw InputError("amx_conv_test: this CPU or OS cannot run the AMX tiles");
            const int64_t OC = w.shape(0), C = w.shape(1), B = x.shape(0), H = x.shape(1), W = x.shape(2);
            const int64_t OH = (H - 1) / 2 + 1, OW = (W - 1) / 2 + 1, P = B * OH * OW;
            std::vector<ggml_fp16_t> wh(size_t(OC * C * 9));
            ggml_fp32_to_fp16_row(w.data(), wh.data(), OC * C * 9);
            const auto pw = cpu::amx_pack_f16(wh.data(), 9 * C * sizeof(ggml_fp16_t), OC, 9 * C, split, C);
            const cpu::ConvInput in{x.data(), C, W, H, B, size_t(C), size_t(C * W), size_t(C * W * H)};
            py::array_t<float> y({B, OH, OW, OC});
            for (int t = 0; t < nth; ++t) cpu::amx_conv3x3(*pw, in, P * t / nth, P * (t + 1) / nth, y.mutable_data(), OC);
            return y;
        },
        py::arg("w"), py::arg("x"), py::arg("nth") = 1, py::arg("split") = false,
        "3x3 / stride 2 / padding 1 convolution on the AMX tiles, channel-last (tests).");
    m.def(
        "gelu_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> x, const std::string& level) {
            const cpu::Level lv = test_level("gelu_test", level);
            py::array_t<float> y(x.size());
            cpu::gelu_erf(x.data(), y.mutable_data(), x.size(), lv);
            return y;
        },
        py::arg("x"), py::arg("level") = "", "Our vectorized GELU (erf form) of a flat float array (tests).");
    m.def(
        "attention_test",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> q,
           py::array_t<float, py::array::c_style | py::array::forcecast> k,
           py::array_t<float, py::array::c_style | py::array::forcecast> v, const std::string& kv_type, float scale,
           const std::string& level, int heads_per_call, bool full) {
            const ggml_type type = kv_type == "f16" ? GGML_TYPE_F16 : kv_type == "f32" ? GGML_TYPE_F32 : GGML_TYPE_COUNT;
            if (full && (type != GGML_TYPE_F32 || k.ndim() != 3 || k.shape(1) != 1))
                throw InputError("attention_test: full (the encoder kernel) takes f32 and one KV head");
            if (type == GGML_TYPE_COUNT || q.ndim() != 2 || k.ndim() != 3 || v.ndim() != 3 || k.shape(0) < 1 ||
                v.shape(0) != k.shape(0) || v.shape(1) != k.shape(1) || v.shape(2) != k.shape(2) ||
                k.shape(2) != q.shape(1) || k.shape(1) < 1 || q.shape(0) % k.shape(1) != 0 || heads_per_call < 1)
                throw InputError("attention_test: q [n_head, d], k and v [n_kv, n_head_kv, d], kv_type f16|f32");
            const cpu::Level lv = test_level("attention_test", level);
            const int64_t n_kv = k.shape(0), hkv = k.shape(1), d = k.shape(2), g = q.shape(0) / hkv;
            if (!cpu::attention_supports(type, d, lv)) throw InputError("attention_test: head size not taken");
            // the cache as the model keeps it: one row of n_head_kv * d values per position, written by store_kv
            const size_t row = size_t(hkv * d) * ggml_type_size(type);
            std::vector<uint8_t> kc(row * n_kv), vc(row * n_kv);
            for (int64_t t = 0; t < n_kv; ++t) {
                cpu::store_kv(type, k.data() + t * hkv * d, kc.data() + t * row, hkv * d, lv);
                cpu::store_kv(type, v.data() + t * hkv * d, vc.data() + t * row, hkv * d, lv);
            }
            py::array_t<float> out({q.shape(0), d});
            // KV heads in runs of `heads_per_call` (the split ggml's threads may give the graph op)
            for (int64_t h = 0; h < hkv; h += heads_per_call) {
                const int64_t nh = std::min<int64_t>(heads_per_call, hkv - h);
                const size_t off = size_t(h * d) * ggml_type_size(type);
                cpu::AttnHeads u{q.data() + h * g * d, d, int(nh * g), int(g), kc.data() + off, vc.data() + off, row,
                                 int(n_kv), int(d), scale, out.mutable_data() + h * g * d, d};
                if (full) {
                    cpu::attend_full(u, lv);
                } else {
                    cpu::attend(type, u, lv);
                }
            }
            return out;
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("kv_type"), py::arg("scale"), py::arg("level") = "",
        py::arg("heads_per_call") = 1, py::arg("full") = false,
        "softmax(scale q k^T) v per head through our decode-attention kernel (q head j uses KV head j // (n_head / "
        "n_head_kv)), k and v stored as a KV cache of kv_type first; full: the encoder kernel (cpu::attend_full: "
        "f32, one KV head, every row against the same keys) (tests).");
    m.def(
        "attention_bench",
        [](const std::string& kv_type, int n_kv, int n_head, int n_head_kv, int d, int copies, int reps,
           const std::string& level, int nth) {
            const ggml_type type = kv_type == "f16" ? GGML_TYPE_F16 : GGML_TYPE_F32;
            const cpu::Level lv = test_level("attention_bench", level);
            if (n_kv < 1 || n_head_kv < 1 || n_head % n_head_kv != 0 || copies < 1 || reps < 1 || nth < 1 ||
                nth > n_head_kv || !cpu::attention_supports(type, d, lv))
                throw InputError("attention_bench: bad shape (or more threads than KV heads)");
            double best_wall = 1e30, best_cpu = 1e30, nbytes = 0;
            {
            py::gil_scoped_release nogil;
            // `copies` caches (one per layer of a model), visited in turn so that they come from memory
            const size_t row = size_t(n_head_kv) * d * ggml_type_size(type), bytes = row * n_kv;
            std::vector<uint8_t> kc(bytes * copies), vc(bytes * copies);
            std::vector<float> vals(size_t(n_head_kv) * d);
            for (size_t i = 0; i < vals.size(); ++i) vals[i] = float(int((i * 2654435761u) >> 20) % 2001 - 1000) / 1000.0f;
            for (size_t t = 0; t < size_t(n_kv) * copies; ++t) {
                cpu::store_kv(type, vals.data(), kc.data() + t * row, int64_t(vals.size()), lv);
                cpu::store_kv(type, vals.data(), vc.data() + t * row, int64_t(vals.size()), lv);
            }
            std::vector<float> q(size_t(n_head) * d, 0.01f), out(size_t(n_head) * d);
            const int g = n_head / n_head_kv;
            // each thread's CPU time: on a shared machine, time-slicing does not count
            auto cpu_ms = [] {
                timespec ts;
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
                return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
            };
            std::vector<double> thread_ms(static_cast<size_t>(nth));
            for (int r = 0; r < reps; ++r) {
                // as the graph op: thread t takes KV heads [t * hkv / nth, (t + 1) * hkv / nth) of each layer
                const double wall = run_threads_ms(nth, [&](int t) {
                    const int ha = n_head_kv * t / nth, hb = n_head_kv * (t + 1) / nth;
                    const size_t off = size_t(ha) * d * ggml_type_size(type);
                    const double t0 = cpu_ms();
                    for (int c = 0; c < copies; ++c) {
                        cpu::AttnHeads u{q.data() + size_t(ha) * g * d, d, (hb - ha) * g, g,
                                         kc.data() + bytes * c + off, vc.data() + bytes * c + off, row, n_kv, d,
                                         0.088f, out.data() + size_t(ha) * g * d, d};
                        cpu::attend(type, u, lv);
                    }
                    thread_ms[size_t(t)] = cpu_ms() - t0;
                });
                best_wall = std::min(best_wall, wall);
                best_cpu = std::min(best_cpu, *std::max_element(thread_ms.begin(), thread_ms.end()));
            }
            nbytes = 2.0 * double(bytes) * copies;
            }
            return py::make_tuple(best_cpu, best_wall, nbytes);
        },
        py::arg("kv_type"), py::arg("n_kv"), py::arg("n_head"), py::arg("n_head_kv"), py::arg("d"),
        py::arg("copies"), py::arg("reps"), py::arg("level") = "", py::arg("nth") = 1,
        "(best ms of the slowest thread's CPU time, best wall ms, bytes read): our decode-attention kernel over "
        "`copies` caches in turn (one per layer), KV heads split over nth threads as the graph op splits them "
        "(benchmarks).");
    m.def(
        "gemv_bench",
        [](const std::string& type_name, int64_t rows, int64_t cols, int n_x, int nth, int reps, const std::string& level,
           int64_t block_bytes) {
            const ggml_type type = type_name == "f32" ? GGML_TYPE_F32 : parse_quant_type(type_name);
            if (!cpu::gemv_supports(type) || rows < 1 || cols < 1 || n_x < 1 || n_x > 64 || nth < 1 || reps < 1 ||
                cols % ggml_blck_size(type) != 0 || block_bytes < 1)
                throw InputError("gemv_bench: type q4_k|q8_0|f16|f32, rows >= 1, cols whole blocks, n_x 1..64, "
                                 "nth >= 1, reps >= 1, block_bytes >= 1");
            const cpu::Level lv = test_level("gemv_bench", level);
            const size_t rb = ggml_row_size(type, cols);
            std::vector<uint8_t> q(rb * size_t(rows));
            std::vector<float> x(size_t(cols) * size_t(n_x)), y(size_t(rows) * size_t(n_x));
            {
                py::gil_scoped_release nogil;
                uint32_t s = 12345;  // xorshift: weights in [-1, 1), made a row at a time
                auto next = [&s] {
                    s ^= s << 13, s ^= s >> 17, s ^= s << 5;
                    return float(s >> 8) / float(1 << 23) - 1.0f;
                };
                std::vector<float> row(static_cast<size_t>(cols));
                for (int64_t r = 0; r < rows; ++r) {
                    for (float& v : row) v = next();
                    if (type == GGML_TYPE_F32) {
                        std::memcpy(q.data() + r * rb, row.data(), rb);
                    } else {
                        ggml_quantize_chunk(type, row.data(), q.data() + r * rb, 0, 1, cols, nullptr);
                    }
                }
                for (float& v : x) v = next();
            }
            double best;
            {
                py::gil_scoped_release nogil;
                best = best_gemv_ms(type, q.data(), rb, rows, cols, x.data(), n_x, y.data(), nth, reps, lv,
                                    size_t(block_bytes));
            }
            return py::make_tuple(best, double(q.size()));
        },
        py::arg("type"), py::arg("rows"), py::arg("cols"), py::arg("n_x") = 1, py::arg("nth") = 1,
        py::arg("reps") = 5, py::arg("level") = "", py::arg("block_bytes") = int64_t(cpu::kGemvRowsBlockBytes),
        "(best ms, weight bytes): our matrix-vector kernel over a rows x cols weight of `type` (random values) "
        "for n_x activation rows (more than 16: cpu::gemv_rows, weight sub-blocks of about block_bytes), split "
        "over nth threads, at `level` (benchmarks).");
    m.def("profile_enabled", &profile::enabled, "Whether CRISPMOSS_PROFILE was set (read when a Compute is made).");
    m.def("profile_reset", &profile::reset);
    m.def("profile_snapshot", [] {
        py::dict d;
        for (const auto& [k, s] : profile::snapshot()) d[py::str(k)] = py::make_tuple(s.ms, s.calls, s.flop);
        return d;
    }, "{key: (ms, calls, flop)} accumulated since the last profile_reset().");
}

}  // namespace cm::bind
