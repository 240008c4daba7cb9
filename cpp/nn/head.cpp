#include "nn/head.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/amx.h"
#include "cpu/gemv.h"
#include "cpu/head_screen.h"
#include "ggml-backend.h"
#include "nn/layers.h"

namespace cm::nn {

namespace {

std::atomic<long long> g_screened_rows{0};

// One screened product's state, shared by its three ops (pack, product, select).
struct ScreenStep {
    const cpu::HeadNorms* norms = nullptr;
    int64_t n = 0;  // screened rows
    std::vector<cpu::ScreenRow> rows;
    std::vector<uint16_t> hist;  // per group and weight row: the rows whose exact set holds it (empty: none)
    // Per thread of the product: each row's max of y~ - bound over its range, and whether a y~ was not finite.
    int slots = 0;
    std::vector<float> lo;
    std::vector<uint8_t> bad;
    std::atomic<int> nth{0};
    std::atomic<bool> overflow{false};
    std::vector<int32_t> idx_s, idx_f, perm;  // graph inputs of a mixed step
};

uint16_t* packed(const ggml_tensor* t) { return cpu::amx_align64(t->data); }

// ggml custom op: src[0] = x [k, n] packed for the tiles into dst (one thread: a few µs), the rows' bounds.
void pack_op(ggml_tensor* dst, int ith, int, void* ud) {
    if (ith != 0) return;
    auto* s = static_cast<ScreenStep*>(ud);
    const ggml_tensor* x = dst->src[0];
    cpu::head_screen_pack(static_cast<const float*>(x->data), int64_t(x->nb[1] / sizeof(float)), s->n, x->ne[0],
                          *s->norms, packed(dst), s->rows.data());
}

// ggml custom op: the screening product (src[0] the head, src[1] pack_op's), weight rows in 32-row blocks per
// thread; dst = y~ [16 rows_pad, groups].
void product_op(ggml_tensor* dst, int ith, int nth, void* ud) {
    auto* s = static_cast<ScreenStep*>(ud);
    const ggml_tensor* w = dst->src[0];
    s->nth.store(nth, std::memory_order_relaxed);
    if (nth > s->slots) {  // more threads than planned: the rows are computed exactly (select_op)
        s->overflow.store(true, std::memory_order_relaxed);
        return;
    }
    int64_t r0, r1;
    cpu::amx_thread_rows(w->ne[1], ith, nth, &r0, &r1);
    cpu::head_screen_product(w->data, w->nb[1], *s->norms, r0, r1, packed(dst->src[1]), s->n, s->rows.data(),
                             s->hist.empty() ? nullptr : s->hist.data(), static_cast<float*>(dst->data),
                             s->lo.data() + size_t(ith) * size_t(s->n), s->bad.data() + size_t(ith) * size_t(s->n));
}

// ggml custom op: the logits [n_vocab, n] (src[0] the head, src[1] x, src[2] product_op's y~, src[3] pack_op's).
void select_op(ggml_tensor* dst, int ith, int nth, void* ud) {
    auto* s = static_cast<ScreenStep*>(ud);
    const ggml_tensor* w = dst->src[0];
    const ggml_tensor* x = dst->src[1];
    const int64_t n = s->n;
    const int pn = s->nth.load(std::memory_order_relaxed);
    const bool over = s->overflow.load(std::memory_order_relaxed);
    std::vector<float> m(size_t(n), -INFINITY);
    std::vector<uint8_t> full(size_t(n), 0);
    for (int64_t i = 0; i < n; ++i) {
        full[size_t(i)] = over || !s->rows[size_t(i)].ok;
        for (int t = 0; t < pn && !over; ++t) {
            m[size_t(i)] = std::max(m[size_t(i)], s->lo[size_t(t) * size_t(n) + size_t(i)]);
            full[size_t(i)] |= s->bad[size_t(t) * size_t(n) + size_t(i)];
        }
    }
    int64_t r0, r1;
    cpu::amx_thread_rows(w->ne[1], ith, nth, &r0, &r1);
    cpu::head_screen_select(w->data, w->nb[1], *s->norms, r0, r1, static_cast<const float*>(dst->src[2]->data),
                            static_cast<const float*>(x->data), int64_t(x->nb[1] / sizeof(float)), n, s->rows.data(),
                            s->hist.empty() ? nullptr : s->hist.data(), m.data(), full.data(),
                            static_cast<float*>(dst->data), int64_t(dst->nb[1] / sizeof(float)));
}

ggml_tensor* screened(Compute::Graph& g, ggml_tensor* w, const cpu::HeadNorms* norms, ggml_tensor* x,
                      const std::vector<const std::vector<int32_t>*>& exact, std::shared_ptr<ScreenStep> s,
                      int slots) {
    ggml_context* ctx = g.ctx();
    const int64_t n = x->ne[1], k = x->ne[0], groups = cpu::head_screen_groups(n);
    const int64_t rows_pad = cpu::head_screen_rows_pad(w->ne[1]);
    s->norms = norms;
    s->n = n;
    s->rows.resize(size_t(n));
    s->slots = slots;
    s->lo.assign(size_t(s->slots) * size_t(n), -INFINITY);
    s->bad.assign(size_t(s->slots) * size_t(n), 0);
    for (int64_t i = 0; i < n; ++i) {
        if (!exact[size_t(i)]) continue;
        if (s->hist.empty()) s->hist.assign(size_t(groups * rows_pad), 0);
        for (const int32_t id : *exact[size_t(i)]) {
            if (id >= 0 && id < w->ne[1]) s->hist[size_t((i / 16) * rows_pad + id)] |= uint16_t(1u << (i % 16));
        }
    }
    ggml_tensor* xa[1] = {x};
    // bytes of the packed rows + 64 of alignment slack, as F32 elements
    const int64_t pack_f32 = int64_t(cpu::head_screen_x_bytes(n, k) + 64 + 3) / 4;
    ggml_tensor* xp = ggml_custom_4d(ctx, GGML_TYPE_F32, pack_f32, 1, 1, 1, xa, 1, pack_op, 1, s.get());
    ggml_set_name(xp, "head screen rows");
    ggml_tensor* pa[2] = {w, xp};
    ggml_tensor* yt = ggml_custom_4d(ctx, GGML_TYPE_F32, 16 * rows_pad, groups, 1, 1, pa, 2, product_op,
                                     GGML_N_TASKS_MAX, s.get());
    ggml_format_name(yt, "head screen %s", w->name);
    ggml_tensor* sa[4] = {w, x, yt, xp};
    ggml_tensor* out = ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], n, 1, 1, sa, 4, select_op, GGML_N_TASKS_MAX,
                                      s.get());
    ggml_format_name(out, "head select %s", w->name);
    return out;
}

}  // namespace

long long head_screened_rows() { return g_screened_rows.load(std::memory_order_relaxed); }

bool head_screen_enabled() {
    const char* v = std::getenv("CRISPMOSS_HEAD");
    return !(v && std::string(v) == "exact");
}

std::unique_ptr<cpu::HeadNorms> head_screen_prepare(const ggml_tensor* head) {
    if (!head || !head_screen_enabled() || !cpu::head_screen_available() || head->type != GGML_TYPE_F16 ||
        ggml_n_dims(head) != 2 || !head->buffer || !ggml_backend_buffer_is_host(head->buffer) || !cpu::gemv_available())
        return nullptr;
    return cpu::head_norms(head->data, head->nb[1], head->ne[1], head->ne[0]);
}

ggml_tensor* head_logits(Compute::Graph& g, ggml_tensor* head, const cpu::HeadNorms* norms, ggml_tensor* x,
                         const std::vector<HeadRow>* rows, std::vector<std::shared_ptr<void>>& keep) {
    ggml_context* ctx = g.ctx();
    const int64_t n = x->ne[1];
    std::vector<int32_t> scr, rest;
    if (rows && norms && int64_t(rows->size()) == n && x->type == GGML_TYPE_F32 && ggml_is_contiguous(x) &&
        norms->k == head->ne[0] && norms->rows == head->ne[1]) {
        for (int64_t i = 0; i < n; ++i) ((*rows)[size_t(i)].greedy ? scr : rest).push_back(int32_t(i));
    }
    if (int(scr.size()) < kHeadScreenMinRows) return mul_mat(ctx, head, x);
    auto s = std::make_shared<ScreenStep>();
    keep.push_back(s);
    g_screened_rows.fetch_add(static_cast<long long>(scr.size()), std::memory_order_relaxed);
    std::vector<const std::vector<int32_t>*> exact;
    for (const int32_t i : scr) exact.push_back((*rows)[size_t(i)].exact);
    constexpr int slots = 256;  // threads of the product with a slot of their own (more: the rows go exact)
    if (rest.empty()) return screened(g, head, norms, x, exact, s, slots);
    // Mixed: the screened rows and the others as two products, then back in the step's row order.
    s->idx_s = scr, s->idx_f = rest;
    s->perm.resize(size_t(n));
    for (size_t j = 0; j < scr.size(); ++j) s->perm[size_t(scr[j])] = int32_t(j);
    for (size_t j = 0; j < rest.size(); ++j) s->perm[size_t(rest[j])] = int32_t(scr.size() + j);
    ggml_tensor* xs = ggml_get_rows(ctx, x, g.input(GGML_TYPE_I32, {int64_t(scr.size())}, s->idx_s.data(), "head rows s"));
    ggml_tensor* xf = ggml_get_rows(ctx, x, g.input(GGML_TYPE_I32, {int64_t(rest.size())}, s->idx_f.data(), "head rows f"));
    ggml_tensor* both = ggml_concat(ctx, screened(g, head, norms, xs, exact, s, slots), mul_mat(ctx, head, xf), 1);
    return ggml_get_rows(ctx, both, g.input(GGML_TYPE_I32, {n}, s->perm.data(), "head perm"));
}

}  // namespace cm::nn
