// Where graphs run: a ggml backend scheduler (the CPU, with a GPU backend ahead of it when the model is offloaded),
// its compute buffers reused from graph to graph, and named stage outputs for tests ("dumps").
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"

namespace cm {

// A host copy of a tensor: data in ggml order, ne[0] fastest.
struct HostTensor {
    std::vector<int64_t> ne;
    std::vector<float> data;
};

// Named stage outputs of the graphs run while `on` (tests compare them with a reference).
struct Dumps {
    bool on = false;
    std::map<std::string, HostTensor> tensors;
};

class Compute {
public:
    // `gpu`: an accelerator to run graphs on ahead of the CPU (weights in its memory run there, the rest on the
    // CPU, the scheduler splits); nullptr = CPU only.
    explicit Compute(int n_threads, ggml_backend_dev_t gpu = nullptr);
    ~Compute();
    Compute(const Compute&) = delete;
    Compute& operator=(const Compute&) = delete;

    int n_threads() const { return n_threads_; }
    ggml_backend_t cpu() const { return cpu_; }
    ggml_backend_t gpu() const { return gpu_; }

    // Dumps: while enabled, tensors passed to dump() while building a graph are copied out after it runs, into the
    // Compute's own store or the one routed to it (the engine runs many sessions' graphs on one Compute).
    void enable_dumps(bool on) { dumps_->on = on; }
    bool dumps_enabled() const { return dumps_->on; }
    std::map<std::string, HostTensor>& dumps() { return dumps_->tensors; }
    void route_dumps(Dumps* d) { dumps_ = d ? d : &own_dumps_; }

    // One graph: a metadata context to build it in, inputs to fill once memory is assigned.
    class Graph {
    public:
        explicit Graph(Compute& c, size_t max_nodes = 16384);
        ~Graph();
        ggml_context* ctx() const { return ctx_; }
        ggml_cgraph* gf() const { return gf_; }
        // Declares an input tensor whose host data is copied in before the graph runs.
        ggml_tensor* input(ggml_type type, std::vector<int64_t> ne, const void* data, const char* name);
        void dump(const std::string& name, ggml_tensor* t);
        // Marks `t` an output, expands the graph to it, allocates, uploads inputs, runs.
        void run(std::vector<ggml_tensor*> outputs);

    private:
        Compute& c_;
        ggml_context* ctx_ = nullptr;
        ggml_cgraph* gf_ = nullptr;
        std::vector<std::pair<ggml_tensor*, const void*>> inputs_;
        std::vector<std::pair<std::string, ggml_tensor*>> dumps_;
    };

    static std::vector<float> read(ggml_tensor* t);

private:
    int n_threads_;
    ggml_backend_t cpu_ = nullptr;
    ggml_backend_t gpu_ = nullptr;
    ggml_backend_sched_t sched_ = nullptr;
    Dumps own_dumps_;
    Dumps* dumps_ = &own_dumps_;
};

}  // namespace cm
