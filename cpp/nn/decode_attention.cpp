#include "nn/decode_attention.h"

#include <cstdlib>
#include <cstring>

#include "cpu/attention.h"
#include "ggml-backend.h"

namespace cm::nn {

namespace {

// ggml custom op: units (sequence i, KV head h) in order, split over threads in contiguous runs of about equal
// cost (a unit costs its positions plus a fixed part); a thread's heads of one sequence go to the kernel together
// (one contiguous piece of each cached row). Which thread computes a head, and with which others, never changes
// its result.
void decode_attention_op(ggml_tensor* dst, int ith, int nth, void* userdata) {
    const auto& a = *static_cast<const DecodeAttnArgs*>(userdata);
    const ggml_tensor* q = dst->src[0];
    const ggml_tensor* k = dst->src[1];
    const ggml_tensor* v = dst->src[2];
    const int n = static_cast<int>(a.n_past.size()), hkv = a.n_head_kv, g = a.n_head / a.n_head_kv;
    const int64_t hd = q->ne[0];
    const ggml_type type = a.k[0]->type;
    const size_t elt = ggml_type_size(type);
    constexpr int64_t kFixed = 64;  // a unit's fixed cost in positions (set-up, the last block's padding)
    int64_t total = 0;
    for (int i = 0; i < n; ++i) total += (a.n_past[i] + 1 + kFixed) * hkv;
    const int64_t lo = total * ith / nth, hi = total * (ith + 1) / nth;
    int64_t before = 0;
    for (int i = 0; i < n; ++i) {
        const int64_t cost = a.n_past[i] + 1 + kFixed;
        // this thread's KV heads of sequence i: those whose cost range has its middle in [lo, hi) (contiguous)
        int ha = hkv, hb = hkv;
        for (int h = 0; h < hkv; ++h, before += cost) {
            const int64_t mid = before + cost / 2;
            if (mid >= lo && mid < hi) {
                if (ha == hkv) ha = h;
                hb = h + 1;
            }
        }
        if (ha >= hb) continue;
        char* kc = static_cast<char*>(a.k[i]->data);
        char* vc = static_cast<char*>(a.v[i]->data);
        const size_t row = a.k[i]->nb[1], head = size_t(hd) * elt;
        // the new key and value of these heads first (only this thread reads them)
        const auto* kn = reinterpret_cast<const float*>(static_cast<const char*>(k->data) + i * k->nb[2]);
        const auto* vn = reinterpret_cast<const float*>(static_cast<const char*>(v->data) + i * v->nb[1]);
        for (int h = ha; h < hb && !a.written; ++h) {
            cpu::store_kv(type, kn + h * (k->nb[1] / sizeof(float)), kc + size_t(a.n_past[i]) * row + h * head, hd);
            cpu::store_kv(type, vn + h * hd, vc + size_t(a.n_past[i]) * row + h * head, hd);
        }
        cpu::AttnHeads u;
        u.q = reinterpret_cast<const float*>(static_cast<const char*>(q->data) + int64_t(ha) * g * q->nb[1] + i * q->nb[2]);
        u.ldq = static_cast<int64_t>(q->nb[1] / sizeof(float));
        u.n_q = (hb - ha) * g;
        u.g = g;
        u.k = kc + ha * head;
        u.v = vc + ha * head;
        u.stride = row;
        u.n_kv = a.n_past[i] + 1;
        u.d = static_cast<int>(hd);
        u.scale = a.scale;
        u.out = reinterpret_cast<float*>(static_cast<char*>(dst->data) + i * dst->nb[1]) + int64_t(ha) * g * hd;
        u.ldo = hd;
        cpu::attend(type, u);
    }
}

bool host(const ggml_tensor* t) { return t && t->buffer && ggml_backend_buffer_is_host(t->buffer); }

}  // namespace

bool own_attention() {
    static const bool off = [] {
        const char* e = std::getenv("CRISPMOSS_ATTN");
        return e && std::strcmp(e, "ggml") == 0;
    }();
    return !off;
}

bool decode_attention_ok(const DecodeAttnArgs& a, int64_t head_dim) {
    if (!own_attention()) return false;
    if (a.k.empty() || a.k.size() != a.v.size() || a.k.size() != a.n_past.size()) return false;
    if (a.n_head_kv < 1 || a.n_head % a.n_head_kv != 0) return false;
    const ggml_type type = a.k[0]->type;
    if (!cpu::attention_supports(type, head_dim)) return false;
    for (size_t i = 0; i < a.k.size(); ++i) {
        for (const ggml_tensor* t : {a.k[i], a.v[i]}) {
            if (!host(t) || t->type != type || t->ne[0] != head_dim * a.n_head_kv || t->nb[1] != a.k[i]->nb[1] ||
                a.n_past[i] < 0 || a.n_past[i] >= t->ne[1])
                return false;
        }
    }
    return true;
}

ggml_tensor* decode_attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v,
                              const DecodeAttnArgs* a) {
    ggml_tensor* args[3] = {q, k, v};
    ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, q->ne[0] * q->ne[1], q->ne[2], 1, 1, args, 3,
                                    decode_attention_op, GGML_N_TASKS_MAX, const_cast<DecodeAttnArgs*>(a));
    ggml_set_name(y, "decode_attention");
    return y;
}

}  // namespace cm::nn
