#include "nn/layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cpu/amx.h"
#include "cpu/amx_dequant.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/gemv.h"
#include "errors.h"
#include "ggml-backend.h"
#include "nn/decode_attention.h"

namespace cm::nn {

namespace {

// Set while a DecodeRows lives on this thread: nn::mul_mat builds a decode step's products.
thread_local bool g_decode_rows = false;

// Most activation rows the products built on this thread now give the matrix-vector kernels: kMaxDecodeRows in a
// decode step, else kMaxGemvRows (prefill chunks with more rows keep the tiles, the F16 matrix kernel or ggml).
int64_t gemv_rows_limit() { return g_decode_rows ? cpu::kMaxDecodeRows : cpu::kMaxGemvRows; }

// ggml custom op: dst[j][r] = row r of src[0] . column j of src[1] (1..gemv_rows_limit() columns), weight rows
// split evenly over ggml's threads; more than kMaxGemvRows columns in groups over cache-sized sub-blocks of each
// thread's rows (cpu::gemv_rows: every weight block read from memory once, every row's bits as alone).
void gemv_op(ggml_tensor* dst, int ith, int nth, void*) {
    const ggml_tensor* w = dst->src[0];
    const ggml_tensor* x = dst->src[1];
    const int64_t rows = w->ne[1], r0 = rows * ith / nth, r1 = rows * (ith + 1) / nth;
    if (r0 >= r1) return;
    // Each thread quantizes x itself (a few µs a row, no barrier) into its stack: ~11 KB a row for the widest LM
    // row. Not a thread_local vector: its destructor at thread exit races with glibc freeing the TLS block (TSan
    // report).
    alignas(64) unsigned char stack[32768];
    const int n_x = static_cast<int>(x->ne[1]);
    const size_t need = cpu::gemv_scratch_bytes(w->type, w->ne[0]) * size_t(n_x);
    std::vector<unsigned char> heap(need > sizeof(stack) ? need : 0);
    cpu::gemv_rows(w->type, w->data, w->nb[1], w->ne[0], r0, r1, static_cast<const float*>(x->data),
                   static_cast<int64_t>(x->nb[1] / sizeof(float)), n_x, static_cast<float*>(dst->data),
                   static_cast<int64_t>(dst->nb[1] / sizeof(float)), heap.empty() ? stack : heap.data());
}

// Our kernels run where this weight's part of the graph runs on the CPU: the weight is in host memory.
bool cpu_kernels_for(const ggml_tensor* w) {
    return w && w->buffer && ggml_backend_buffer_is_host(w->buffer) && cpu::gemv_available();
}

// Up to gemv_rows_limit() activation rows (a decode step of several sequences, a short prefill chunk) go through
// the matrix-vector kernel, each row computed as it would be alone; more rows through the tiles, the matrix kernel
// (F16) or ggml.
bool use_gemv(const ggml_tensor* w, const ggml_tensor* x) {
    return x->type == GGML_TYPE_F32 && x->ne[1] >= 1 && x->ne[1] <= gemv_rows_limit() && x->ne[2] == 1 &&
           x->ne[3] == 1 && x->nb[0] == sizeof(float) && x->nb[1] % sizeof(float) == 0 && w->ne[2] == 1 &&
           w->ne[3] == 1 && cpu::gemv_supports(w->type) && cpu_kernels_for(w);
}

// Products with more activation rows than gemv (above) takes: the matrix kernel's tile is 32 rows wide.
bool use_gemm(const ggml_tensor* w, const ggml_tensor* x) {
    return w->type == GGML_TYPE_F16 && x->type == GGML_TYPE_F32 && x->ne[1] > gemv_rows_limit() && x->ne[2] == 1 &&
           x->ne[3] == 1 && w->ne[2] == 1 && w->ne[3] == 1 && cpu_kernels_for(w);
}

// gemm_op's userdata: bit flags.
constexpr intptr_t kGemmTransposed = 1, kGemmGelu = 2;

// ggml custom op: dst = src[0] x src[1] (+ src[2], a bias) with src[1] given transposed (k rows of n), weight rows
// split over threads in whole tiles; userdata: kGemmTransposed: dst transposed ([n, rows]); kGemmGelu: GELU
// applied to the outputs as they are written.
void gemm_op(ggml_tensor* dst, int ith, int nth, void* flags) {
    const ggml_tensor* w = dst->src[0];
    const ggml_tensor* xt = dst->src[1];
    const auto [r0, r1] = cpu::gemm_thread_rows(w->ne[1], ith, nth);
    if (r0 >= r1) return;
    const float* bias = dst->src[2] ? static_cast<const float*>(dst->src[2]->data) : nullptr;
    cpu::gemm_f16(w->data, w->nb[1], w->ne[0], r0, r1, static_cast<const float*>(xt->data), xt->nb[1] / sizeof(float),
                  xt->ne[0], cpu::GemmOut{static_cast<float*>(dst->data), dst->nb[1] / sizeof(float), bias,
                                          (reinterpret_cast<intptr_t>(flags) & kGemmTransposed) != 0,
                                          (reinterpret_cast<intptr_t>(flags) & kGemmGelu) != 0});
}

// dst = src[0] (F16 weight rows) x src[1] (activations transposed: k rows of n) (+ b) (then GELU), [w rows, n] or,
// transposed, [n, w rows] (what the next product takes as its x^T): our matrix kernel.
ggml_tensor* gemm_t(ggml_context* ctx, ggml_tensor* w, ggml_tensor* xt, ggml_tensor* b = nullptr,
                    bool transposed = false, bool gelu = false) {
    ggml_tensor* args[3] = {w, xt, b};
    const intptr_t flags = (transposed ? kGemmTransposed : 0) | (gelu ? kGemmGelu : 0);
    ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, transposed ? xt->ne[0] : w->ne[1],
                                    transposed ? w->ne[1] : xt->ne[0], 1, 1, args, b ? 3 : 2, gemm_op,
                                    GGML_N_TASKS_MAX, reinterpret_cast<void*>(flags));
    ggml_format_name(y, "gemm %s", w->name);
    return y;
}

// ggml custom op: dst [n1, n0] = src[0] [n0, n1] transposed (F32, any strides), in 32 x 32 blocks (ggml's copy
// of a transposed view goes element by element with index arithmetic: ~5 ns an element, 3.5 % of a 5 s encode at
// the AVX2 level); dst rows split over threads.
void transpose_op(ggml_tensor* dst, int ith, int nth, void*) {
    const ggml_tensor* x = dst->src[0];
    const int64_t n0 = x->ne[0], n1 = x->ne[1], r0 = n0 * ith / nth, r1 = n0 * (ith + 1) / nth;
    constexpr int64_t kBlock = 32;
    const auto* base = static_cast<const char*>(x->data);
    auto* y = static_cast<float*>(dst->data);
    const size_t ldy = dst->nb[1] / sizeof(float), s0 = x->nb[0], s1 = x->nb[1];
    for (int64_t j0 = 0; j0 < n1; j0 += kBlock) {
        const int64_t j1 = std::min(n1, j0 + kBlock);
        for (int64_t i0 = r0; i0 < r1; i0 += kBlock) {
            const int64_t i1 = std::min(r1, i0 + kBlock);
            for (int64_t j = j0; j < j1; ++j) {
                const char* row = base + j * s1;
                for (int64_t i = i0; i < i1; ++i) y[i * ldy + j] = *reinterpret_cast<const float*>(row + i * s0);
            }
        }
    }
}

// x^T (x: F32, 2-D) for our matrix kernel: a graph node of its own, so ggml's threads share it before the
// products start.
ggml_tensor* transposed(ggml_context* ctx, ggml_tensor* x) {
    ggml_tensor* args[1] = {x};
    ggml_tensor* t = ggml_custom_4d(ctx, GGML_TYPE_F32, x->ne[1], x->ne[0], 1, 1, args, 1, transpose_op,
                                    GGML_N_TASKS_MAX, nullptr);
    ggml_set_name(t, "transpose");
    return t;
}

// ggml custom op: dst [OW, OH, OC, B] = GELU(the 3x3 / stride 2 / padding 1 convolution of src[1] [W, H, C, B]
// with src[0] (F16, viewed as [9 C, OC]) + src[2]), channel-major as the next convolution and the flattening read
// it (cpu::conv3x3s2_f16); output positions split over threads.
void conv_op(ggml_tensor* dst, int ith, int nth, void*) {
    const ggml_tensor* w = dst->src[0];
    const ggml_tensor* in = dst->src[1];
    const size_t f = sizeof(float);
    const cpu::ConvPlanes x{static_cast<const float*>(in->data), in->ne[0], in->ne[1], in->ne[2], in->ne[3],
                            in->nb[1] / f, in->nb[2] / f, in->nb[3] / f};
    const auto [p0, p1] = cpu::conv_thread_positions(x, ith, nth);
    if (p0 >= p1) return;
    cpu::conv3x3s2_f16(w->data, w->nb[1], w->ne[1], x, p0, p1, static_cast<const float*>(dst->src[2]->data), true,
                       static_cast<float*>(dst->data), dst->nb[2] / f, dst->nb[3] / f);
}

// Conv1d (kernel 3, padding 1) im2col, transposed and in F32: x^T[kw + 3 c][j] = in[s (c0 + j) + kw - 1][c] (zero
// outside), in = [T, C] with any strides (time nb[0], channel nb[1]), s = op_params' stride. An XSource.
struct Conv1dSource {
    const ggml_tensor* in;
    int64_t stride;
};

void im2col1d_slice(const void* ctx, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
    const auto* src = static_cast<const Conv1dSource*>(ctx);
    const ggml_tensor* in = src->in;
    const int64_t T = in->ne[0], s = src->stride;
    const auto* base = static_cast<const char*>(in->data);
    for (int64_t k = k0; k < k0 + kc; ++k, out += nc) {
        const int64_t kw = k % 3, c = k / 3;
        const char* row = base + c * in->nb[1];
        for (int64_t j = 0; j < nc; ++j) {
            const int64_t it = s * (c0 + j) + kw - 1;
            out[j] = it >= 0 && it < T ? *reinterpret_cast<const float*>(row + it * in->nb[0]) : 0.0f;
        }
    }
}

// Weights with an AMX copy (AudioLM::pack_for_amx): every product of theirs runs on the tiles. Per weight, the
// two kernels' arguments (userdata of the custom ops): the copy, and whether GELU follows the bias.
struct AmxCall {
    const cpu::AmxMatrix* m;
    bool gelu;
};
struct AmxEntry {
    AmxCall plain, gelu;
};
std::mutex g_amx_mu;
std::unordered_map<const ggml_tensor*, std::unique_ptr<AmxEntry>> g_amx;

const AmxEntry* amx_of(const ggml_tensor* w) {
    if (!w) return nullptr;
    std::lock_guard<std::mutex> lock(g_amx_mu);
    const auto it = g_amx.find(w);
    return it == g_amx.end() ? nullptr : it->second.get();
}

// The tiles' operand tensor (amx_rows, amx_norm_operand, amx_rows_b): [k_pad, rows, planes] BF16 with one row of
// slack, its planes starting at the first 64-byte boundary of the tensor's data (ggml aligns tensors to 32 bytes
// only; tile rows that straddle two cache lines cost the large products about a fifth of their speed).
int64_t amx_operand_rows(int64_t n) { return cpu::amx_rows_pad(n) + 1; }
size_t amx_plane(const ggml_tensor* xb) { return size_t(xb->ne[0]) * size_t(xb->ne[1]); }
uint16_t* amx_hi(const ggml_tensor* xb) { return cpu::amx_align64(xb->data); }

// ggml custom op: src[0] (F32 rows) → BF16 rows of the tiles' A operand (hi, then lo for the exact split),
// rows split over threads.
void amx_rows_op(ggml_tensor* dst, int ith, int nth, void*) {
    const ggml_tensor* x = dst->src[0];
    const int64_t n_pad = cpu::amx_rows_pad(x->ne[1]);
    uint16_t* hi = amx_hi(dst);
    cpu::amx_convert_rows(static_cast<const float*>(x->data), x->nb[1] / sizeof(float), x->ne[1], x->ne[0],
                          n_pad * ith / nth, n_pad * (ith + 1) / nth, hi, dst->ne[2] == 2 ? hi + amx_plane(dst) : nullptr);
}

// Columns [c0, c1) of rows [j0, j1) of y: + bias (src b, F32, one value a column), then GELU in place. The same
// F32 addition as ggml_add and the same GELU as gelu_erf(): the unfused graph's bits.
// (+ residual src r: F32 rows, the shape of y, as ggml_add(r, y)).
void amx_epilogue(float* y, size_t ldy, int64_t j0, int64_t j1, int64_t c0, int64_t c1, const ggml_tensor* b, bool gelu,
                  const ggml_tensor* r = nullptr) {
    const float* bias = b ? static_cast<const float*>(b->data) : nullptr;
    for (int64_t j = j0; j < j1 && c0 < c1; ++j) {
        float* row = y + j * ldy;
        if (bias) {
            for (int64_t c = c0; c < c1; ++c) row[c] += bias[c];
        }
        if (gelu) cpu::gelu_erf(row + c0, row + c0, c1 - c0);
        if (r) {
            const auto* res = reinterpret_cast<const float*>(static_cast<const char*>(r->data) + j * r->nb[1]);
            for (int64_t c = c0; c < c1; ++c) row[c] = res[c] + row[c];
        }
    }
}

// ggml custom op: dst [OC, T'] = the kernel-3 / padding-1 convolution of src[1] with src[0] (F16, viewed as
// [3 C, OC]) at the stride given as userdata, plus the bias src[2]; output channels split over threads.
void conv1d_op(ggml_tensor* dst, int ith, int nth, void* userdata) {
    const ggml_tensor* w = dst->src[0];
    const auto [r0, r1] = cpu::gemm_thread_rows(w->ne[1], ith, nth);
    if (r0 >= r1) return;
    const Conv1dSource src{dst->src[1], static_cast<int64_t>(reinterpret_cast<intptr_t>(userdata))};
    cpu::gemm_f16(w->data, w->nb[1], w->ne[0], r0, r1, cpu::XSource{im2col1d_slice, &src}, dst->ne[1],
                  cpu::GemmOut{static_cast<float*>(dst->data), dst->nb[1] / sizeof(float),
                               static_cast<const float*>(dst->src[2]->data)});
}

// ggml custom op: dst = src[0] x src[1] (+ src[2], GELU) with src[0]'s AMX copy (userdata) and src[1] from
// amx_rows_op, weight rows split over threads in 32-row blocks.
void amx_op(ggml_tensor* dst, int ith, int nth, void* ud) {
    const auto& call = *static_cast<const AmxCall*>(ud);
    const ggml_tensor* xb = dst->src[1];
    int64_t r0, r1;
    cpu::amx_thread_rows(call.m->rows, ith, nth, &r0, &r1);
    const uint16_t* hi = amx_hi(xb);
    auto* y = static_cast<float*>(dst->data);
    const size_t ldy = dst->nb[1] / sizeof(float);
    cpu::amx_gemm(*call.m, r0, r1, hi, hi + amx_plane(xb), dst->ne[1], y, ldy);
    amx_epilogue(y, ldy, 0, dst->ne[1], r0, r1, dst->src[2], call.gelu, dst->src[3]);
}

// ggml custom op: the stem's convolution on the tiles (+ bias, GELU), src[1] channel-last [C, W, H, B], output
// positions split over threads.
void amx_conv_op(ggml_tensor* dst, int ith, int nth, void* ud) {
    const auto& call = *static_cast<const AmxCall*>(ud);
    const ggml_tensor* in = dst->src[1];
    const int64_t P = dst->ne[1], p0 = P * ith / nth, p1 = P * (ith + 1) / nth;
    const size_t f = sizeof(float), ldy = dst->nb[1] / f;
    const cpu::ConvInput ci{static_cast<const float*>(in->data), in->ne[0], in->ne[1], in->ne[2], in->ne[3],
                            in->nb[1] / f, in->nb[2] / f, in->nb[3] / f};
    auto* y = static_cast<float*>(dst->data);
    cpu::amx_conv3x3(*call.m, ci, p0, p1, y, ldy);
    amx_epilogue(y, ldy, p0, p1, 0, dst->ne[0], dst->src[2], call.gelu);
}

// ggml custom op: the encoder's attention on our kernel (cpu::attend, the decode kernel: every query row of a window
// against the window's keys and values, one KV head shared by all of them). src[0..2]: q, k, v as the projections
// give them ([d, L], rows d floats apart); userdata: w << 16 | the head size, w the window length (the windows are
// [0, w), [w, 2w), ..., the last one shorter). dst [d, L]; units (window, head) split over threads. ggml's flash
// attention took ~10 GFLOP/s on these short windows (3.6 % of a 5 s encode at the AVX2 level).
void enc_attn_op(ggml_tensor* dst, int ith, int nth, void* userdata) {
    const ggml_tensor* q = dst->src[0];
    const ggml_tensor* k = dst->src[1];
    const ggml_tensor* v = dst->src[2];
    const int64_t d = q->ne[0], L = q->ne[1], packed = static_cast<int64_t>(reinterpret_cast<intptr_t>(userdata));
    const int64_t w = packed >> 16, hd = packed & 0xFFFF, n_head = d / hd, n_win = (L + w - 1) / w;
    const int64_t units = n_win * n_head, u0 = units * ith / nth, u1 = units * (ith + 1) / nth;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const size_t f = sizeof(float);
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t win = u / n_head, h = u % n_head, r0 = win * w, n = std::min(w, L - r0);
        const auto at = [&](const ggml_tensor* t) { return static_cast<const char*>(t->data) + r0 * t->nb[1] + h * hd * f; };
        cpu::AttnHeads a{reinterpret_cast<const float*>(at(q)), int64_t(q->nb[1] / f), int(n), int(n), at(k), at(v),
                         k->nb[1], int(n), int(hd), scale,
                         reinterpret_cast<float*>(static_cast<char*>(dst->data) + r0 * dst->nb[1]) + h * hd,
                         int64_t(dst->nb[1] / f)};
        cpu::attend_full(a);
    }
}

// Layer-norm epsilons, interned: the fused op's userdata points at one.
const float* intern_eps(float eps) {
    static std::mutex mu;
    static std::vector<std::unique_ptr<float>> all;
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& e : all) {
        if (*e == eps) return e.get();
    }
    all.push_back(std::make_unique<float>(eps));
    return all.back().get();
}

// ggml custom op: as amx_rows_op for LayerNorm(src[0]) * src[1] + src[2] (eps: userdata), the normed rows never
// stored in F32 (cpu::amx_norm_rows).
void amx_norm_rows_op(ggml_tensor* dst, int ith, int nth, void* ud) {
    const ggml_tensor* x = dst->src[0];
    const int64_t n_pad = cpu::amx_rows_pad(x->ne[1]);
    uint16_t* hi = amx_hi(dst);
    cpu::amx_norm_rows(static_cast<const float*>(x->data), x->nb[1] / sizeof(float), x->ne[1], x->ne[0],
                       static_cast<const float*>(dst->src[1]->data), static_cast<const float*>(dst->src[2]->data),
                       *static_cast<const float*>(ud), n_pad * ith / nth, n_pad * (ith + 1) / nth, hi,
                       dst->ne[2] == 2 ? hi + amx_plane(dst) : nullptr);
}

// x's rows as the tiles' operand for weights of k_pad values a row (split: hi and lo planes).
ggml_tensor* amx_rows(ggml_context* ctx, int64_t k_pad, bool split, ggml_tensor* x) {
    ggml_tensor* xa[1] = {x};
    ggml_tensor* xb = ggml_custom_4d(ctx, GGML_TYPE_BF16, k_pad, amx_operand_rows(x->ne[1]), split ? 2 : 1, 1, xa, 1,
                                     amx_rows_op, GGML_N_TASKS_MAX, nullptr);
    ggml_set_name(xb, "amx rows");
    return xb;
}

// x's rows as the tiles' operand for w's copy.
ggml_tensor* amx_rows(ggml_context* ctx, const cpu::AmxMatrix& m, ggml_tensor* x) {
    return amx_rows(ctx, m.k_pad, m.split, x);
}

bool amx_takes(const ggml_tensor* x) {
    return x->type == GGML_TYPE_F32 && x->ne[2] == 1 && x->ne[3] == 1 && x->nb[0] == sizeof(float);
}

// W x (+ b, GELU) on the tiles; xb: x already converted for a weight of the same k and mode, or nullptr.
ggml_tensor* amx_linear(ggml_context* ctx, ggml_tensor* w, const AmxEntry& e, ggml_tensor* x, ggml_tensor* b, bool gelu,
                        ggml_tensor* xb, ggml_tensor* res = nullptr) {
    const cpu::AmxMatrix& m = *e.plain.m;
    if (!xb || xb->ne[0] != m.k_pad || (xb->ne[2] == 2) != m.split || xb->src[0] != x) xb = amx_rows(ctx, m, x);
    ggml_tensor* args[4] = {w, xb, b, res};
    ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], x->ne[1], 1, 1, args, res ? 4 : b ? 3 : 2, amx_op,
                                    GGML_N_TASKS_MAX, const_cast<AmxCall*>(gelu ? &e.gelu : &e.plain));
    ggml_format_name(y, "amx %s", w->name);
    return y;
}

// Weights whose prefill products run on the tiles, dequantized block by block (AudioLM::pack_for_amx: the LM's
// Q4_K/Q8_0/F16/BF16 matrices at the amx level; no copy of theirs is kept).
std::unordered_set<const ggml_tensor*> g_amx_dequant;

bool amx_dequant_of(const ggml_tensor* w) {
    if (!w) return false;
    std::lock_guard<std::mutex> lock(g_amx_mu);
    return g_amx_dequant.count(w) != 0;
}

// A prefill-sized product of such a weight: more activation rows than the matrix-vector kernels take (decode
// steps of up to kMaxDecodeRows sequences keep those, bit for bit as alone), F32 rows. What the weight itself
// must be (a 2-D host matrix of a type the dequantizer takes, whole blocks a row) amx_attach_dequant checked.
bool use_amx_dequant(const ggml_tensor* w, const ggml_tensor* x) {
    return x->ne[1] > gemv_rows_limit() && amx_takes(x) && x->nb[1] % sizeof(float) == 0 && amx_dequant_of(w);
}

// ggml custom op: src[0] (F32 rows) → the B operand of the dequantized products (cpu::amx_convert_rows_b: 16-row
// panels of VNNI tiles), panels split over threads.
void amx_rows_b_op(ggml_tensor* dst, int ith, int nth, void*) {
    const ggml_tensor* x = dst->src[0];
    const int64_t panels = cpu::amx_rows_pad(x->ne[1]) / 16;
    cpu::amx_convert_rows_b(static_cast<const float*>(x->data), x->nb[1] / sizeof(float), x->ne[1], x->ne[0],
                            panels * ith / nth, panels * (ith + 1) / nth, amx_hi(dst));
}

constexpr const char* kAmxRowsB = "amx rows b";

// x's rows as the B operand of dequantized products for weights of k_pad values a row.
ggml_tensor* amx_rows_b(ggml_context* ctx, int64_t k_pad, ggml_tensor* x) {
    ggml_tensor* xa[1] = {x};
    ggml_tensor* xb = ggml_custom_4d(ctx, GGML_TYPE_BF16, k_pad, amx_operand_rows(x->ne[1]), 1, 1, xa, 1, amx_rows_b_op,
                                     GGML_N_TASKS_MAX, nullptr);
    ggml_set_name(xb, kAmxRowsB);
    return xb;
}

// ggml custom op: dst = src[0] x src[1] (amx_rows_b_op's operand) on the tiles, each thread dequantizing its weight
// rows (32-row blocks, amx_thread_rows) block by block into a scratch of its own (cpu::amx_gemm_dequant).
void amx_dequant_op(ggml_tensor* dst, int ith, int nth, void*) {
    const ggml_tensor* w = dst->src[0];
    int64_t r0, r1;
    cpu::amx_thread_rows(w->ne[1], ith, nth, &r0, &r1);
    if (r0 >= r1) return;
    const size_t bytes = cpu::amx_dequant_scratch_bytes(w->ne[0]);
    auto* scratch = static_cast<uint16_t*>(::operator new(bytes, std::align_val_t(64)));
    cpu::amx_gemm_dequant(w->type, w->data, w->nb[1], w->ne[0], r0, r1, amx_hi(dst->src[1]),
                          dst->ne[1], static_cast<float*>(dst->data), dst->nb[1] / sizeof(float), scratch);
    ::operator delete(scratch, std::align_val_t(64));
}

// W x on the tiles for a dequantized weight; xb: x already converted (amx_lm_operand) or nullptr.
ggml_tensor* amx_dequant_product(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x, ggml_tensor* xb) {
    const int64_t kp = cpu::amx_k_pad(w->ne[0]);
    if (!xb || xb->ne[0] != kp || xb->src[0] != x || std::strcmp(xb->name, kAmxRowsB) != 0) xb = amx_rows_b(ctx, kp, x);
    ggml_tensor* args[2] = {w, xb};
    ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], x->ne[1], 1, 1, args, 2, amx_dequant_op,
                                    GGML_N_TASKS_MAX, nullptr);
    ggml_format_name(y, "amx %s", w->name);
    return y;
}

// ggml custom op: dst = GELU(src[0]) elementwise, in 16-value-aligned slices per thread.
void gelu_op(ggml_tensor* dst, int ith, int nth, void*) {
    const int64_t n = ggml_nelements(dst);
    const int64_t per = ((n + nth - 1) / nth + 15) / 16 * 16;
    const int64_t i0 = std::min(n, per * ith), i1 = std::min(n, i0 + per);
    if (i1 > i0) cpu::gelu_erf(static_cast<const float*>(dst->src[0]->data) + i0, static_cast<float*>(dst->data) + i0, i1 - i0);
}

}  // namespace

void amx_attach(const ggml_tensor* w, const cpu::AmxMatrix* m) {
    std::lock_guard<std::mutex> lock(g_amx_mu);
    g_amx_dequant.erase(w);
    if (m) {
        g_amx[w] = std::make_unique<AmxEntry>(AmxEntry{{m, false}, {m, true}});
    } else {
        g_amx.erase(w);
    }
}

bool amx_attach_dequant(const ggml_tensor* w) {
    if (!w || !cpu::amx_dequant_supports(w->type) || ggml_n_dims(w) != 2 || !w->buffer ||
        !ggml_backend_buffer_is_host(w->buffer) || w->ne[0] % ggml_blck_size(w->type) != 0)
        return false;
    std::lock_guard<std::mutex> lock(g_amx_mu);
    g_amx.erase(w);
    g_amx_dequant.insert(w);
    return true;
}

ggml_tensor* amx_lm_operand(ggml_context* ctx, ggml_tensor* x, std::initializer_list<const ggml_tensor*> ws) {
    for (const ggml_tensor* w : ws) {
        if (!use_amx_dequant(w, x) || w->ne[0] != x->ne[0]) return nullptr;
    }
    return amx_rows_b(ctx, cpu::amx_k_pad(x->ne[0]), x);
}

ggml_tensor* amx_operand(ggml_context* ctx, ggml_tensor* x, const ggml_tensor* w) {
    const AmxEntry* e = amx_of(w);
    return e && amx_takes(x) ? amx_rows(ctx, *e->plain.m, x) : nullptr;
}

ggml_tensor* amx_norm_operand(ggml_context* ctx, ggml_tensor* x, ggml_tensor* nw, ggml_tensor* nb, float eps,
                              std::initializer_list<const ggml_tensor*> ws) {
    const AmxEntry* first = amx_of(*ws.begin());
    if (!first || !amx_takes(x) || x->nb[1] % sizeof(float) != 0) return nullptr;
    const cpu::AmxMatrix& m = *first->plain.m;
    for (const ggml_tensor* w : ws) {
        const AmxEntry* e = amx_of(w);
        if (!e || e->plain.m->k_pad != m.k_pad || e->plain.m->split != m.split || e->plain.m->k != x->ne[0]) return nullptr;
    }
    for (const ggml_tensor* t : {nw, nb}) {
        if (t->type != GGML_TYPE_F32 || ggml_nelements(t) != x->ne[0] || !ggml_is_contiguous(t)) return nullptr;
    }
    ggml_tensor* args[3] = {x, nw, nb};
    ggml_tensor* xb = ggml_custom_4d(ctx, GGML_TYPE_BF16, m.k_pad, amx_operand_rows(x->ne[1]), m.split ? 2 : 1, 1, args, 3,
                                     amx_norm_rows_op, GGML_N_TASKS_MAX, const_cast<float*>(intern_eps(eps)));
    ggml_set_name(xb, "amx norm rows");
    return xb;
}

ggml_tensor* gelu_erf(ggml_context* ctx, ggml_tensor* x, const ggml_tensor* near) {
    if (x->type != GGML_TYPE_F32 || !ggml_is_contiguous(x) || !cpu_kernels_for(near)) {
        return ggml_gelu_erf(ctx, x);
    }
    ggml_tensor* args[1] = {x};
    ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, x->ne[0], x->ne[1], x->ne[2], x->ne[3], args, 1, gelu_op,
                                    GGML_N_TASKS_MAX, nullptr);
    ggml_set_name(y, "gelu_erf");
    return y;
}

DecodeRows::DecodeRows() : outer_(g_decode_rows) { g_decode_rows = true; }

DecodeRows::~DecodeRows() { g_decode_rows = outer_; }

ggml_tensor* mul_mat(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x, ggml_tensor* amx_x) {
    if (const AmxEntry* e = amx_of(w); e && amx_takes(x)) return amx_linear(ctx, w, *e, x, nullptr, false, nullptr);
    if (use_amx_dequant(w, x)) return amx_dequant_product(ctx, w, x, amx_x);
    // The transpose is a graph node of its own, so ggml's threads share it before the product starts.
    if (use_gemm(w, x)) return gemm_t(ctx, w, transposed(ctx, x));
    if (!use_gemv(w, x)) return ggml_mul_mat(ctx, w, x);
    ggml_tensor* args[2] = {w, x};
    ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], x->ne[1], 1, 1, args, 2, gemv_op,
                                    GGML_N_TASKS_MAX, nullptr);
    ggml_format_name(y, "gemv %s", w->name);
    return y;
}

ggml_tensor* linear(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, ggml_tensor* amx_x) {
    const AmxEntry* e = amx_of(w);
    if (e && amx_takes(x) && (!b || (b->type == GGML_TYPE_F32 && ggml_nelements(b) == w->ne[1] && ggml_is_contiguous(b)))) {
        return amx_linear(ctx, w, *e, x, b, false, amx_x);
    }
    // amx_x stands for a transform of x (amx_norm_operand: its LayerNorm) that only the tiles apply.
    if (amx_x) throw Error("internal: an AMX operand for a product the tiles cannot take");
    if (b && use_gemm(w, x) && b->type == GGML_TYPE_F32 && ggml_is_contiguous(b)) {
        return gemm_t(ctx, w, transposed(ctx, x), b);  // the bias added as the outputs are written
    }
    ggml_tensor* y = mul_mat(ctx, w, x);
    return b ? ggml_add(ctx, y, b) : y;
}

ggml_tensor* linear_gelu(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, ggml_tensor* amx_x) {
    const AmxEntry* e = amx_of(w);
    if (e && amx_takes(x) && b && b->type == GGML_TYPE_F32 && ggml_nelements(b) == w->ne[1] && ggml_is_contiguous(b)) {
        return amx_linear(ctx, w, *e, x, b, true, amx_x);
    }
    if (!amx_x && b && use_gemm(w, x) && b->type == GGML_TYPE_F32 && ggml_is_contiguous(b)) {
        return gemm_t(ctx, w, transposed(ctx, x), b, false, true);  // bias and GELU as the outputs are written
    }
    return gelu_erf(ctx, linear(ctx, x, w, b, amx_x), w);
}

ggml_tensor* linear_add(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, ggml_tensor* res) {
    const AmxEntry* e = amx_of(w);
    if (e && amx_takes(x) && b && b->type == GGML_TYPE_F32 && ggml_nelements(b) == w->ne[1] && ggml_is_contiguous(b) &&
        res->type == GGML_TYPE_F32 && res->ne[0] == w->ne[1] && res->ne[1] == x->ne[1] && res->ne[2] == 1 &&
        res->ne[3] == 1 && res->nb[0] == sizeof(float)) {
        return amx_linear(ctx, w, *e, x, b, false, nullptr, res);
    }
    return ggml_add(ctx, res, linear(ctx, x, w, b));
}

ggml_tensor* layer_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, float eps) {
    return ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, eps), w), b);
}

ggml_tensor* rms_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

GatedMLP GatedMLP::load(const ModelFile& f, const std::string& p, int64_t n_in, int64_t n_hidden, int64_t n_out) {
    return load(f, p + ".gate.weight", p + ".up.weight", p + ".down.weight", n_in, n_hidden, n_out);
}

GatedMLP GatedMLP::load(const ModelFile& f, const std::string& gate, const std::string& up, const std::string& down,
                        int64_t n_in, int64_t n_hidden, int64_t n_out) {
    GatedMLP m;
    m.gate = f.require(gate, TensorKind::Matrix, {n_in, n_hidden});
    m.up = f.require(up, TensorKind::Matrix, {n_in, n_hidden});
    m.down = f.require(down, TensorKind::Matrix, {n_hidden, n_out});
    return m;
}

ggml_tensor* GatedMLP::operator()(ggml_context* ctx, ggml_tensor* x) const {
    ggml_tensor* xb = amx_lm_operand(ctx, x, {gate, up});  // one conversion for both on the tiles
    ggml_tensor* h = ggml_swiglu_split(ctx, mul_mat(ctx, gate, x, xb), mul_mat(ctx, up, x, xb));
    return mul_mat(ctx, down, h);
}

EncoderLayer EncoderLayer::load(const ModelFile& f, const std::string& p, int64_t d, int64_t d_ff,
                                const EncoderLayerNames& n) {
    using K = TensorKind;
    // In file order, so the first missing tensor is the one reported.
    auto vec = [&](const std::string& s, int64_t len) { return f.require(p + s, K::Vector, {len}); };
    auto mat = [&](const char* s, int64_t in, int64_t out) { return f.require(p + s + ".weight", K::Matrix, {in, out}); };
    auto bias = [&](const char* s) { return f.optional(p + s + ".bias", K::Vector, {d}); };  // may be absent
    EncoderLayer l{};
    l.attn_norm_w = vec(".attn_norm.weight", d), l.attn_norm_b = vec(".attn_norm.bias", d);
    l.q_w = mat(n.q, d, d), l.q_b = bias(n.q);
    l.k_w = mat(n.k, d, d), l.k_b = bias(n.k);
    l.v_w = mat(n.v, d, d), l.v_b = bias(n.v);
    l.o_w = mat(n.o, d, d), l.o_b = bias(n.o);
    l.ffn_norm_w = vec(".ffn_norm.weight", d), l.ffn_norm_b = vec(".ffn_norm.bias", d);
    l.fc1_w = mat(n.fc1, d, d_ff), l.fc1_b = vec(std::string(n.fc1) + ".bias", d_ff);
    l.fc2_w = mat(n.fc2, d_ff, d), l.fc2_b = vec(std::string(n.fc2) + ".bias", d);
    return l;
}

ggml_tensor* encoder_layer(ggml_context* ctx, const EncoderLayer& l, ggml_tensor* x, int n_head, float eps,
                           const std::vector<int64_t>& windows) {
    const int64_t d = x->ne[0], L = x->ne[1];
    const int64_t hd = d / n_head;
    // On the tiles: the norm made in the conversion of its rows, once for q, k and v (then `h` stands for x).
    ggml_tensor* hx = amx_norm_operand(ctx, x, l.attn_norm_w, l.attn_norm_b, eps, {l.q_w, l.k_w, l.v_w});
    ggml_tensor* h = hx ? x : layer_norm(ctx, x, l.attn_norm_w, l.attn_norm_b, eps);
    // [d, L] → [hd, L, H]
    auto heads = [&](ggml_tensor* t) {
        return ggml_permute(ctx, ggml_reshape_3d(ctx, t, hd, n_head, L), 0, 2, 1, 3);
    };
    // Elsewhere q, k and v read one x^T where all three take our matrix kernel (the same sums as three linear()
    // calls).
    const bool shared = !hx && use_gemm(l.q_w, h) && use_gemm(l.k_w, h) && use_gemm(l.v_w, h);
    ggml_tensor* ht = shared ? transposed(ctx, h) : nullptr;
    auto proj = [&](ggml_tensor* w, ggml_tensor* b) { return shared ? gemm_t(ctx, w, ht, b) : linear(ctx, h, w, b, hx); };
    ggml_tensor* q2 = proj(l.q_w, l.q_b);
    ggml_tensor* k2 = proj(l.k_w, l.k_b);
    ggml_tensor* v2 = proj(l.v_w, l.v_b);
    ggml_tensor* a = nullptr;
    // Our attention kernel where q, k and v are F32 rows of d floats (the projections ran on our matrix kernel or
    // on the tiles) and the windows are one length but the last (no longer): every window's rows against its own
    // keys.
    bool uniform = windows.empty() || windows.back() <= windows[0];
    int64_t total = 0;
    for (size_t i = 0; i < windows.size(); ++i) {
        total += windows[i];
        uniform = uniform && windows[i] > 0 && (i + 1 == windows.size() || windows[i] == windows[0]);
    }
    uniform = uniform && (windows.empty() || total == L);
    const auto f32_rows = [&](const ggml_tensor* t) {
        return t->type == GGML_TYPE_F32 && t->ne[0] == d && t->ne[1] == L && t->ne[2] == 1 && t->ne[3] == 1 &&
               t->nb[0] == sizeof(float) && t->nb[1] % sizeof(float) == 0;
    };
    const bool ours = shared || (hx && cpu_kernels_for(l.q_w));
    if (ours && uniform && f32_rows(q2) && f32_rows(k2) && f32_rows(v2) && own_attention() &&
        cpu::attention_supports(GGML_TYPE_F32, hd)) {
        ggml_tensor* args[3] = {q2, k2, v2};
        const int64_t w = windows.size() > 1 ? windows[0] : L;
        a = ggml_custom_4d(ctx, GGML_TYPE_F32, d, L, 1, 1, args, 3, enc_attn_op, GGML_N_TASKS_MAX,
                           reinterpret_cast<void*>(static_cast<intptr_t>(w << 16 | hd)));
        ggml_set_name(a, "encoder_attention");
    }
    ggml_tensor* q = heads(q2);
    ggml_tensor* k = heads(k2);
    ggml_tensor* v = heads(v2);
    auto attend = [&](ggml_tensor* qw, ggml_tensor* kw, ggml_tensor* vw) {  // [hd, n, H, B] each → [d, n B]
        ggml_tensor* a = ggml_flash_attn_ext(ctx, qw, kw, vw, nullptr, 1.0f / std::sqrt(static_cast<float>(hd)), 0.0f, 0.0f);
        ggml_flash_attn_ext_set_prec(a, GGML_PREC_F32);
        return ggml_reshape_2d(ctx, a, d, ggml_nelements(a) / d);
    };
    if (!a && windows.size() > 1) {
        // The leading windows of one size as one batch (their rows as a 4th dimension), the rest (the clip's
        // last, shorter window) one by one, appended: each query row meets the same keys in the same order.
        size_t same = 1;
        while (same < windows.size() && windows[same] == windows[0]) ++same;
        int64_t r0 = 0;
        for (size_t i = 0; i < windows.size(); i = i == 0 ? same : i + 1) {
            const int64_t n = windows[i], nb = i == 0 ? int64_t(same) : 1;
            auto rows = [&](ggml_tensor* t) {
                return ggml_view_4d(ctx, t, hd, n, n_head, nb, t->nb[1], t->nb[2], size_t(n) * t->nb[1], size_t(r0) * t->nb[1]);
            };
            ggml_tensor* aw = attend(rows(q), rows(k), rows(v));
            a = a ? ggml_concat(ctx, a, aw, 1) : aw;
            r0 += n * nb;
        }
        if (r0 != L) throw Error("internal: encoder_layer's windows do not add up to its rows");
    } else if (!a) {
        a = attend(q, k, v);
    }
    x = linear_add(ctx, a, l.o_w, l.o_b, x);
    hx = amx_norm_operand(ctx, x, l.ffn_norm_w, l.ffn_norm_b, eps, {l.fc1_w});
    if (hx) return linear_add(ctx, linear_gelu(ctx, x, l.fc1_w, l.fc1_b, hx), l.fc2_w, l.fc2_b, x);
    h = layer_norm(ctx, x, l.ffn_norm_w, l.ffn_norm_b, eps);
    if (use_gemm(l.fc1_w, h) && use_gemm(l.fc2_w, h)) {
        // fc1 writes its output transposed, which is fc2's x^T: no transpose of the wide hidden layer; its bias
        // and GELU added as it is written.
        ggml_tensor* ft = gemm_t(ctx, l.fc1_w, transposed(ctx, h), l.fc1_b, true, true);
        return ggml_add(ctx, x, gemm_t(ctx, l.fc2_w, ft, l.fc2_b));
    }
    return linear_add(ctx, linear_gelu(ctx, h, l.fc1_w, l.fc1_b, nullptr), l.fc2_w, l.fc2_b, x);
}

ggml_tensor* conv1d_k3_gelu(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, int stride) {
    const int64_t T = x->ne[0], OC = w->ne[2], OT = (T - 1) / stride + 1;
    if (w->type != GGML_TYPE_F16 || x->type != GGML_TYPE_F32 || !cpu_kernels_for(w)) {
        ggml_tensor* y = ggml_conv_1d(ctx, w, ggml_cont(ctx, x), stride, 1, 1);  // [T', OC]
        y = ggml_cont(ctx, ggml_transpose(ctx, ggml_reshape_2d(ctx, y, y->ne[0], y->ne[1])));
        return gelu_erf(ctx, ggml_add(ctx, y, b), w);
    }
    ggml_tensor* args[3] = {ggml_reshape_2d(ctx, w, 3 * w->ne[1], OC), x, b};
    ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, OC, OT, 1, 1, args, 3, conv1d_op, GGML_N_TASKS_MAX,
                                    reinterpret_cast<void*>(static_cast<intptr_t>(stride)));
    ggml_format_name(y, "conv1d %s", w->name);
    return gelu_erf(ctx, y, w);
}

int64_t ConvStem::out_len(int64_t n) { return conv_out_len(conv_out_len(conv_out_len(n))); }

ConvStem ConvStem::load(const ModelFile& f, const std::string& p, int64_t ch) {
    using K = TensorKind;
    ConvStem s{};
    s.w1 = f.require(p + "conv1.weight", K::Conv, {3, 3, 1, ch});
    s.b1 = f.require(p + "conv1.bias", K::Vector, {ch});
    s.w2 = f.require(p + "conv2.weight", K::Conv, {3, 3, ch, ch});
    s.b2 = f.require(p + "conv2.bias", K::Vector, {ch});
    s.w3 = f.require(p + "conv3.weight", K::Conv, {3, 3, ch, ch});
    s.b3 = f.require(p + "conv3.bias", K::Vector, {ch});
    return s;
}

ggml_tensor* ConvStem::operator()(ggml_context* ctx, ggml_tensor* x) const {
    // [W, H, C, B] -> [OW, OH, OC, B]: 3x3 kernel, stride 2, padding 1, bias, GELU.
    auto conv = [&](ggml_tensor* in, ggml_tensor* w, ggml_tensor* b) {
        if (w->type != GGML_TYPE_F16 || in->type != GGML_TYPE_F32 || in->nb[0] != sizeof(float) ||
            in->nb[1] % sizeof(float) != 0 || in->nb[2] % sizeof(float) != 0 || in->nb[3] % sizeof(float) != 0 ||
            b->type != GGML_TYPE_F32 || !ggml_is_contiguous(b) || !cpu_kernels_for(w)) {
            ggml_tensor* y = ggml_conv_2d(ctx, w, in, 2, 2, 1, 1, 1, 1);
            y = ggml_add(ctx, y, ggml_reshape_4d(ctx, b, 1, 1, b->ne[0], 1));
            return gelu_erf(ctx, y, w);
        }
        // Our kernel on F32 columns (ggml rounds them to F16, and stores them whole), bias and GELU inside:
        // [OW, OH, OC, B] out, no permute.
        const int64_t OW = (in->ne[0] - 1) / 2 + 1, OH = (in->ne[1] - 1) / 2 + 1, B = in->ne[3];
        ggml_tensor* args[3] = {ggml_reshape_2d(ctx, w, 9 * w->ne[2], w->ne[3]), in, b};
        ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, OW, OH, w->ne[3], B, args, 3, conv_op,
                                        GGML_N_TASKS_MAX, nullptr);
        ggml_format_name(y, "conv %s", w->name);
        return y;
    };
    const AmxEntry* pw[3] = {amx_of(w1), amx_of(w2), amx_of(w3)};
    if (pw[0] && pw[1] && pw[2] && x->type == GGML_TYPE_F32 && x->ne[2] == 1) {
        // On the tiles, channel-last throughout ([C, W, H, B]: the products' natural output), so no permutes
        // between the convolutions; the mel input [W, H, 1, B] is such a view as it is. Bias and GELU inside.
        ggml_tensor* h = ggml_view_4d(ctx, x, 1, x->ne[0], x->ne[1], x->ne[3], x->nb[0], x->nb[1], x->nb[3], 0);
        ggml_tensor* ws[3] = {w1, w2, w3};
        ggml_tensor* bs[3] = {b1, b2, b3};
        for (int i = 0; i < 3; ++i) {
            const int64_t OW = (h->ne[1] - 1) / 2 + 1, OH = (h->ne[2] - 1) / 2 + 1, B = h->ne[3], OC = ws[i]->ne[3];
            ggml_tensor* args[3] = {ggml_reshape_2d(ctx, ws[i], 9 * ws[i]->ne[2], OC), h, bs[i]};
            ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, OC, OW * OH * B, 1, 1, args, 3, amx_conv_op,
                                            GGML_N_TASKS_MAX, const_cast<AmxCall*>(&pw[i]->gelu));
            ggml_format_name(y, "amx conv %s", ws[i]->name);
            h = ggml_reshape_4d(ctx, y, OC, OW, OH, B);
        }
        // [C, T', F, N] → [F, C, T', N] → [F*C, T', N], as below
        const int64_t C = h->ne[0], T = h->ne[1], F = h->ne[2], N = h->ne[3];
        return ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, h, 1, 2, 0, 3)), F * C, T, N);
    }
    x = conv(x, w1, b1);
    x = conv(x, w2, b2);
    x = conv(x, w3, b3);
    // [T', F, C, N] → [F, C, T', N] → [C*F, T', N]: the reference flattens channel-major, frequency fastest.
    const int64_t T = x->ne[0], F = x->ne[1], C = x->ne[2], N = x->ne[3];
    x = ggml_cont(ctx, ggml_permute(ctx, x, 2, 0, 1, 3));
    return ggml_reshape_3d(ctx, x, F * C, T, N);
}

EncoderConfig EncoderConfig::read(const ModelFile& m, const std::string& arch) {
    const std::string a = arch + ".";
    EncoderConfig c{};
    c.n_mel = m.u32_in(a + "enc.num_mel_bins", 128, 1, 4096);
    c.n_layer = m.u32_in(a + "enc.encoder_layers", 32, 1, 256);
    c.d = m.u32_in(a + "enc.d_model", 1280, 2, 1 << 16);
    c.n_head = m.u32_in(a + "enc.encoder_attention_heads", 20, 1, 1024);
    c.d_ff = m.u32_in(a + "enc.encoder_ffn_dim", 5120, 1, 1 << 20);
    c.conv_ch = m.u32_in(a + "enc.downsample_hidden_size", 480, 1, 1 << 14);
    c.eps = m.f32_in(a + "enc.layer_norm_eps", 1e-5f, 0.0f, 1.0f);
    c.adapter_hidden = m.u32_in(a + "adapter.hidden_size", 8192, 1, 1 << 20);
    if (c.d % c.n_head != 0) m.fail("encoder width is not a multiple of its heads");
    if (c.d % 2 != 0) m.fail(a + "enc.d_model must be even (sinusoidal positions)");
    return c;
}

std::vector<float> sinusoids(int64_t n_pos, int64_t d) {
    // Single-precision arithmetic in the order the reference uses, so long tables agree to the last bit.
    const int64_t half = d / 2;
    const float inc = static_cast<float>(std::log(10000.0) / static_cast<double>(half - 1));
    std::vector<float> inv(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) inv[i] = std::exp(-inc * static_cast<float>(i));
    std::vector<float> t(static_cast<size_t>(n_pos * d));
    for (int64_t p = 0; p < n_pos; ++p) {
        for (int64_t i = 0; i < half; ++i) {
            const float a = static_cast<float>(p) * inv[i];
            t[p * d + i] = std::sin(a);
            t[p * d + half + i] = std::cos(a);
        }
    }
    return t;
}

}  // namespace cm::nn
