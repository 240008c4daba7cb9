#include "profile.h"

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "ggml.h"

namespace cm::profile {
namespace {

using Clock = std::chrono::steady_clock;

std::mutex g_mu;
std::map<std::string, OpStat> g_table;

// One open range of nodes per computing thread (sessions may run in parallel threads).
thread_local bool t_open = false;
thread_local Clock::time_point t_start;

bool is_noop(const ggml_tensor* t) {
    switch (t->op) {
        case GGML_OP_NONE:
        case GGML_OP_VIEW:
        case GGML_OP_RESHAPE:
        case GGML_OP_PERMUTE:
        case GGML_OP_TRANSPOSE:
            return true;
        default:
            return false;
    }
}

// "llm.blk.12.ffn.up.weight" -> "llm.blk.N.ffn.up"; graph-internal names ("node_7", "leaf_3", "") -> "".
std::string weight_role(const ggml_tensor* w) {
    if (!w || w->buffer == nullptr || ggml_backend_buffer_get_usage(w->buffer) != GGML_BACKEND_BUFFER_USAGE_WEIGHTS)
        return "";
    std::string name = ggml_get_name(w);
    std::string out;
    for (size_t i = 0; i < name.size();) {
        const bool at_field = i == 0 || name[i - 1] == '.';
        if (at_field && std::isdigit(static_cast<unsigned char>(name[i]))) {
            while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) ++i;
            out += 'N';
        } else {
            out += name[i++];
        }
    }
    const std::string suffix = ".weight";
    if (out.size() > suffix.size() && out.compare(out.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.resize(out.size() - suffix.size());
    return out;
}

// nn::mul_mat's own kernels: the only custom ops with two sources (weight, activations). One activation row
// is the matrix-vector kernel, several (given transposed) the matrix kernel.
// (F32 out: the AMX operand conversions, BF16 out, take sources too; the attention ops, named "decode_attention"
// and "encoder_attention", take three and are listed as CUSTOM decode_attention / encoder_attention; the screened
// head's ops, nn/head.cpp, are listed by their names: CUSTOM head screen <weight> / head select <weight>.)
bool is_own_product(const ggml_tensor* t) {
    return t->op == GGML_OP_CUSTOM && t->src[0] && t->src[1] && t->type == GGML_TYPE_F32 &&
           std::strcmp(t->name, "decode_attention") != 0 && std::strcmp(t->name, "encoder_attention") != 0 &&
           std::strncmp(t->name, "head ", 5) != 0;
}

std::string key_of(const ggml_tensor* t) {
    const bool own = is_own_product(t);
    const bool vec = own && t->ne[1] == 1;
    const bool amx = own && std::strncmp(t->name, "amx", 3) == 0;  // nn::mul_mat's and the stem's tile products
    std::string k = own ? (amx ? "AMX" : vec ? "GEMV" : "GEMM") : t->op == GGML_OP_CUSTOM ? std::string("CUSTOM ") + t->name
                                                                           : ggml_op_desc(t);
    const ggml_tensor* w = t->src[0];
    if (own) {
        const std::string role = weight_role(w);
        k += std::string(" ") + ggml_type_name(w->type) + (role.empty() ? "" : " " + role) + (vec ? " [vec]" : " [mat]");
    } else if (t->op == GGML_OP_MUL_MAT || t->op == GGML_OP_GET_ROWS) {
        const std::string role = weight_role(w);
        k += std::string(" ") + ggml_type_name(w->type);
        if (!role.empty()) {
            k += " " + role;
        } else if (t->op == GGML_OP_MUL_MAT) {
            k += " (activations)";
        }
        if (t->op == GGML_OP_MUL_MAT) k += t->src[1]->ne[1] == 1 ? " [vec]" : " [mat]";
    }
    return k;
}

bool on_eval(ggml_tensor* t, bool ask, void*) {
    if (ask) {
        if (!t_open) {
            t_open = true;
            t_start = Clock::now();
        }
        return !is_noop(t);
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
    t_open = false;
    double flop = 0;
    if (t->op == GGML_OP_MUL_MAT || is_own_product(t)) {
        flop = 2.0 * double(t->src[0]->ne[0]) * double(ggml_nelements(t));  // each output sums ne0 products
    }
    const std::string k = key_of(t);
    std::lock_guard<std::mutex> lock(g_mu);
    OpStat& s = g_table[k];
    s.ms += ms;
    s.calls += 1;
    s.flop += flop;
    return true;
}

}  // namespace

bool enabled() {
    const char* v = std::getenv("CRISPMOSS_PROFILE");
    return v && *v && std::strcmp(v, "0") != 0;
}

void attach(ggml_backend_sched_t sched) {
    if (enabled()) ggml_backend_sched_set_eval_callback(sched, on_eval, nullptr);
}

void reset() {
    std::lock_guard<std::mutex> lock(g_mu);
    g_table.clear();
}

std::map<std::string, OpStat> snapshot() {
    std::lock_guard<std::mutex> lock(g_mu);
    return g_table;
}

}  // namespace cm::profile
