#include "compute.h"

#include <thread>

#include "backend.h"
#include "errors.h"
#include "log.h"
#include "profile.h"

namespace cm {

Compute::Compute(int n_threads, ggml_backend_dev_t gpu) {
    install_ggml_log();
    if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    n_threads_ = n_threads;
    cpu_ = init_cpu_backend(n_threads_);
    if (gpu) {
        gpu_ = ggml_backend_dev_init(gpu, nullptr);
        if (!gpu_) {
            ggml_backend_free(cpu_);
            throw ModelError(std::string("cannot initialise the device ") + ggml_backend_dev_name(gpu));
        }
    }
    // The scheduler wants the CPU last. With a GPU, op_offload lets large batches (prefill) run on the GPU
    // even where the weights stayed in host memory.
    ggml_backend_t backends[] = {gpu_ ? gpu_ : cpu_, cpu_};
    const int n = gpu_ ? 2 : 1;
    sched_ = ggml_backend_sched_new(gpu_ ? backends : backends + 1, nullptr, n, 16384, false, gpu_ != nullptr);
    if (!sched_) {
        if (gpu_) ggml_backend_free(gpu_);
        ggml_backend_free(cpu_);
        throw Error("cannot create the ggml scheduler");
    }
    profile::attach(sched_);  // per-op timing for benchmarks; only with CRISPMOSS_PROFILE set
}

Compute::~Compute() {
    if (sched_) ggml_backend_sched_free(sched_);
    if (gpu_) ggml_backend_free(gpu_);
    if (cpu_) ggml_backend_free(cpu_);
}

Compute::Graph::Graph(Compute& c, size_t max_nodes) : c_(c) {
    ggml_init_params p{ggml_tensor_overhead() * max_nodes + ggml_graph_overhead_custom(max_nodes, false), nullptr, true};
    ctx_ = ggml_init(p);
    if (!ctx_) throw Error("ggml_init failed");
    gf_ = ggml_new_graph_custom(ctx_, max_nodes, false);
}

Compute::Graph::~Graph() {
    ggml_backend_sched_reset(c_.sched_);
    ggml_free(ctx_);
}

ggml_tensor* Compute::Graph::input(ggml_type type, std::vector<int64_t> ne, const void* data, const char* name) {
    ne.resize(4, 1);
    ggml_tensor* t = ggml_new_tensor_4d(ctx_, type, ne[0], ne[1], ne[2], ne[3]);
    ggml_set_name(t, name);
    ggml_set_input(t);
    inputs_.emplace_back(t, data);
    return t;
}

void Compute::Graph::dump(const std::string& name, ggml_tensor* t) {
    if (!c_.dumps_->on) return;
    ggml_set_output(t);
    dumps_.emplace_back(name, t);
}

void Compute::Graph::run(std::vector<ggml_tensor*> outputs) {
    for (ggml_tensor* t : outputs) {
        ggml_set_output(t);
        ggml_build_forward_expand(gf_, t);
    }
    for (auto& d : dumps_) ggml_build_forward_expand(gf_, d.second);
    ggml_backend_sched_reset(c_.sched_);
    if (!ggml_backend_sched_alloc_graph(c_.sched_, gf_)) throw Error("cannot allocate compute memory for a graph");
    for (auto& [t, data] : inputs_) {
        if (!t->buffer) throw Error(std::string("internal: graph input '") + ggml_get_name(t) + "' is not part of the graph");
        ggml_backend_tensor_set(t, data, 0, ggml_nbytes(t));
    }
    if (ggml_backend_sched_graph_compute(c_.sched_, gf_) != GGML_STATUS_SUCCESS) throw Error("graph computation failed");
    for (auto& [name, t] : dumps_) {
        HostTensor h;
        for (int i = 0; i < GGML_MAX_DIMS; ++i) h.ne.push_back(t->ne[i]);
        while (h.ne.size() > 1 && h.ne.back() == 1) h.ne.pop_back();
        h.data = read(t);
        c_.dumps_->tensors[name] = std::move(h);
    }
}

std::vector<float> Compute::read(ggml_tensor* t) {
    if (t->type != GGML_TYPE_F32) throw Error("internal: reading a non-F32 tensor");
    std::vector<float> out(ggml_nelements(t));
    if (ggml_is_contiguous(t)) {
        ggml_backend_tensor_get(t, out.data(), 0, ggml_nbytes(t));
    } else {
        throw Error("internal: reading a non-contiguous tensor");
    }
    return out;
}

}  // namespace cm
