#include "nn/qwen3.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "errors.h"
#include "nn/decode_attention.h"
#include "nn/layers.h"

namespace cm {

// CrispASR's schema (the published MOSS-Transcribe-Diarize GGUFs): keys under "<prefix>.llm.", tensors as llama.cpp
// names them.
const Qwen3Names kLlamaStyleQwen3 = [] {
    Qwen3Names n;
    n.hidden_size = "llm.dim", n.num_layers = "llm.n_layers", n.num_heads = "llm.n_heads";
    n.num_kv_heads = "llm.n_kv_heads", n.head_dim = "llm.head_dim", n.intermediate_size = "llm.ff_dim";
    n.vocab_size = "llm.vocab_size", n.max_positions = "llm.max_position_embeddings";
    n.rope_theta = "llm.rope_theta", n.rms_eps = "llm.rms_eps";
    n.embed = "token_embd.weight", n.final_norm = "output_norm.weight", n.head = "output.weight";
    n.blk = "blk.", n.attn_norm = "attn_norm.weight", n.wq = "attn_q.weight", n.wk = "attn_k.weight";
    n.wv = "attn_v.weight", n.wo = "attn_o.weight", n.q_norm = "q_norm.weight", n.k_norm = "k_norm.weight";
    n.ffn_norm = "ffn_norm.weight", n.gate = "ffn_gate.weight", n.up = "ffn_up.weight", n.down = "ffn_down.weight";
    return n;
}();

Qwen3Config Qwen3Config::read(const ModelFile& f, const std::string& prefix, const Qwen3Names& n) {
    const std::string p = prefix + ".";
    for (const char* k : {n.hidden_size, n.num_layers, n.num_heads, n.intermediate_size}) {
        if (!f.has_key(p + k)) f.fail("missing key " + p + k);
    }
    // Upper bounds keep every size product in range and every graph under Compute::Graph's node budget
    // (about 40 nodes per layer).
    Qwen3Config c;
    c.n_embd = f.u32_in(p + n.hidden_size, 0, 1, 1 << 16);
    c.n_layer = f.u32_in(p + n.num_layers, 0, 1, 256);
    c.n_head = f.u32_in(p + n.num_heads, 0, 1, 1024);
    c.n_head_kv = f.u32_in(p + n.num_kv_heads, c.n_head, 1, c.n_head);
    c.head_dim = f.u32_in(p + n.head_dim, c.n_embd / c.n_head, 2, 1024);
    c.n_ff = f.u32_in(p + n.intermediate_size, 0, 1, 1 << 20);
    c.n_vocab = f.u32_in(p + n.vocab_size, 151936, 1, 1 << 22);
    c.n_ctx_train = f.u32_in(p + n.max_positions, n.default_max_positions, 1, 1 << 24);
    c.rope_theta = f.f32_in(p + n.rope_theta, 1e6f, 1e-3f, 1e12f);
    c.rms_eps = f.f32_in(p + n.rms_eps, 1e-6f, 0.0f, 1.0f);
    if (c.n_head % c.n_head_kv != 0) {
        const std::string kv = n.num_kv_heads;  // named without its "llm." group, as in "... of num_kv_heads"
        f.fail(p + n.num_heads + " must be a multiple of " + kv.substr(kv.find('.') + 1));
    }
    if (c.head_dim % 2 != 0) f.fail(p + n.head_dim + " must be even (RoPE)");
    return c;
}

Qwen3Weights Qwen3Weights::load(const ModelFile& f, const Qwen3Config& c, const Qwen3Names& n) {
    using K = TensorKind;
    Qwen3Weights w;
    w.cfg = c;
    const int64_t d = c.n_embd, dq = int64_t(c.n_head) * c.head_dim, dkv = int64_t(c.n_head_kv) * c.head_dim;
    w.embed = f.require(n.embed, K::Matrix, {d, c.n_vocab});
    w.final_norm = f.require(n.final_norm, K::Vector, {d});
    w.head = f.optional(n.head, K::Matrix, {d, c.n_vocab});
    if (!w.head) w.head = w.embed;
    for (int il = 0; il < c.n_layer; ++il) {
        const std::string p = n.blk + std::to_string(il) + ".";
        Qwen3Layer l{};
        l.attn_norm = f.require(p + n.attn_norm, K::Vector, {d});
        l.wq = f.require(p + n.wq, K::Matrix, {d, dq});
        l.wk = f.require(p + n.wk, K::Matrix, {d, dkv});
        l.wv = f.require(p + n.wv, K::Matrix, {d, dkv});
        l.wo = f.require(p + n.wo, K::Matrix, {dq, d});
        l.q_norm = f.require(p + n.q_norm, K::Vector, {c.head_dim});
        l.k_norm = f.require(p + n.k_norm, K::Vector, {c.head_dim});
        l.ffn_norm = f.require(p + n.ffn_norm, K::Vector, {d});
        l.ffn = nn::GatedMLP::load(f, p + n.gate, p + n.up, p + n.down, d, c.n_ff, d);
        w.layers.push_back(l);
    }
    return w;
}

KvCache::KvCache(const Qwen3Config& cfg, int n_ctx, ggml_type type, ggml_backend_t backend)
    : KvCache(cfg, n_ctx, type,
              std::vector<ggml_backend_buffer_type_t>(cfg.n_layer, ggml_backend_get_default_buffer_type(backend))) {}

KvCache::KvCache(const Qwen3Config& cfg, int n_ctx, ggml_type type,
                 const std::vector<ggml_backend_buffer_type_t>& layer_buft)
    : n_ctx_(n_ctx), type_(type) {
    const int n = cfg.n_layer;
    if (static_cast<int>(layer_buft.size()) != n) throw Error("internal: KV cache placement does not cover every layer");
    const int64_t dkv = int64_t(cfg.n_head_kv) * cfg.head_dim;
    k_.resize(n);
    v_.resize(n);
    // One context and one buffer per distinct memory (host, device).
    std::vector<ggml_backend_buffer_type_t> kinds;
    for (auto b : layer_buft)
        if (std::find(kinds.begin(), kinds.end(), b) == kinds.end()) kinds.push_back(b);
    for (ggml_backend_buffer_type_t buft : kinds) {
        ggml_init_params p{ggml_tensor_overhead() * size_t(2 * n + 2), nullptr, true};
        ggml_context* ctx = ggml_init(p);
        if (!ctx) throw Error("ggml_init failed");
        ctxs_.push_back(ctx);
        for (int il = 0; il < n; ++il) {
            if (layer_buft[il] != buft) continue;
            k_[il] = ggml_new_tensor_2d(ctx, type, dkv, n_ctx);
            v_[il] = ggml_new_tensor_2d(ctx, type, dkv, n_ctx);
        }
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, buft);
        if (!buf) {
            for (auto b : bufs_) ggml_backend_buffer_free(b);
            for (auto c : ctxs_) ggml_free(c);
            throw InputError("cannot allocate a KV cache of " + std::to_string(n_ctx) + " positions in " +
                             ggml_backend_buft_name(buft) + " memory");
        }
        ggml_backend_buffer_clear(buf, 0);
        bufs_.push_back(buf);
    }
}

KvCache::~KvCache() {
    for (auto b : bufs_) ggml_backend_buffer_free(b);
    for (auto c : ctxs_) ggml_free(c);
}

namespace {

// Replaces the columns of x [d, n] at the positions listed in `sel` (see DecoderInput) by `rows` [d, n_a].
ggml_tensor* splice_rows(ggml_context* ctx, ggml_tensor* x, ggml_tensor* rows, ggml_tensor* sel) {
    return ggml_get_rows(ctx, ggml_concat(ctx, x, rows, 1), sel);
}

struct Qkv {
    ggml_tensor *q, *k, *v;
};

// A layer's attention inputs for n positions of x [d, n] at positions t_pos: q [hd, n_head, n] and
// k [hd, n_head_kv, n] normed per head and rotated (NEOX), v [dkv, n].
Qkv attention_inputs(ggml_context* ctx, const Qwen3Config& cfg, const Qwen3Layer& l, ggml_tensor* x,
                     ggml_tensor* t_pos, int n) {
    const int64_t hd = cfg.head_dim;
    ggml_tensor* h = nn::rms_norm(ctx, x, l.attn_norm, cfg.rms_eps);
    ggml_tensor* hb = nn::amx_lm_operand(ctx, h, {l.wq, l.wk, l.wv});  // prefill on the tiles: h converted once
    ggml_tensor* q = ggml_reshape_3d(ctx, nn::mul_mat(ctx, l.wq, h, hb), hd, cfg.n_head, n);
    ggml_tensor* k = ggml_reshape_3d(ctx, nn::mul_mat(ctx, l.wk, h, hb), hd, cfg.n_head_kv, n);
    ggml_tensor* v = nn::mul_mat(ctx, l.wv, h, hb);
    q = nn::rms_norm(ctx, q, l.q_norm, cfg.rms_eps);
    k = nn::rms_norm(ctx, k, l.k_norm, cfg.rms_eps);
    q = ggml_rope_ext(ctx, q, t_pos, nullptr, hd, GGML_ROPE_TYPE_NEOX, 0, cfg.rope_theta, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    k = ggml_rope_ext(ctx, k, t_pos, nullptr, hd, GGML_ROPE_TYPE_NEOX, 0, cfg.rope_theta, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    return {q, k, v};
}

// The rest of a layer after attention: output projection, residual, SwiGLU FFN, residual.
ggml_tensor* layer_rest(ggml_context* ctx, const Qwen3Config& cfg, const Qwen3Layer& l, ggml_tensor* x,
                        ggml_tensor* attn) {
    x = ggml_add(ctx, x, nn::mul_mat(ctx, l.wo, attn));
    ggml_tensor* h = nn::rms_norm(ctx, x, l.ffn_norm, cfg.rms_eps);
    return ggml_add(ctx, x, l.ffn(ctx, h));
}

// Layer il's arguments for one decode-attention op over these caches (each sequence's one new token at its
// n_past), or null where the op cannot serve them (ggml's kernels, a cache in device memory, a head size or cache
// type our kernel does not take): then each sequence gets ggml's flash attention.
std::unique_ptr<nn::DecodeAttnArgs> decode_attn_args(const Qwen3Config& cfg, const std::vector<KvCache*>& caches,
                                                     int il) {
    auto a = std::make_unique<nn::DecodeAttnArgs>();
    for (KvCache* kv : caches) {
        a->k.push_back(kv->k(il));
        a->v.push_back(kv->v(il));
        a->n_past.push_back(kv->n_past);
    }
    a->n_head = cfg.n_head;
    a->n_head_kv = cfg.n_head_kv;
    a->scale = 1.0f / std::sqrt(static_cast<float>(cfg.head_dim));
    if (!nn::decode_attention_ok(*a, cfg.head_dim)) return nullptr;
    return a;
}

// Layer il's arguments for a prefill chunk of n positions on our kernel (row i at n_past + i, the chunk's keys and
// values already copied into the cache), or null where the op cannot serve the cache.
std::unique_ptr<nn::DecodeAttnArgs> prefill_attn_args(const Qwen3Config& cfg, KvCache& cache, int n, int il) {
    auto a = decode_attn_args(cfg, {&cache}, il);
    if (!a) return nullptr;
    a->written = true;
    a->k.assign(size_t(n), cache.k(il));
    a->v.assign(size_t(n), cache.v(il));
    a->n_past.resize(size_t(n));
    for (int i = 0; i < n; ++i) a->n_past[size_t(i)] = cache.n_past + i;
    if (!nn::decode_attention_ok(*a, cfg.head_dim)) return nullptr;
    return a;
}

}  // namespace

std::vector<float> decoder_forward(Compute& c, const Qwen3Weights& w, KvCache& cache, const DecoderInput& in,
                                   int n_batch, bool want_logits) {
    const Qwen3Config& cfg = w.cfg;
    const int n_total = static_cast<int>(in.ids.size());
    if (n_total == 0) throw InputError("empty decoder input");
    if (cache.n_past + n_total > cache.n_ctx()) {
        throw InputError("the prompt needs " + std::to_string(cache.n_past + n_total) +
                         " positions but the context holds " + std::to_string(cache.n_ctx()));
    }
    const bool has_audio = !in.audio_row.empty();
    const int64_t d = cfg.n_embd, hd = cfg.head_dim, dkv = int64_t(cfg.n_head_kv) * hd;
    const size_t kv_row = ggml_row_size(cache.type(), dkv);
    std::vector<float> logits;

    for (int p0 = 0; p0 < n_total; p0 += n_batch) {
        const int n = std::min(n_batch, n_total - p0);
        const int n_past = cache.n_past;
        const int n_kv = n_past + n;
        Compute::Graph g(c);
        ggml_context* ctx = g.ctx();

        std::vector<int32_t> ids(in.ids.begin() + p0, in.ids.begin() + p0 + n);
        std::vector<int32_t> pos(n);
        for (int i = 0; i < n; ++i) pos[i] = n_past + i;
        // Audio rows of this chunk, and the selection that puts them at their positions.
        std::vector<int32_t> sel(n), audio_pos;
        std::vector<float> audio_rows;
        std::vector<std::vector<float>> ds_rows(in.deepstack.size());
        if (has_audio) {
            for (int i = 0; i < n; ++i) {
                const int32_t r = in.audio_row[p0 + i];
                if (r < 0) {
                    sel[i] = i;
                    continue;
                }
                sel[i] = n + static_cast<int32_t>(audio_pos.size());
                audio_pos.push_back(i);
                audio_rows.insert(audio_rows.end(), in.audio + r * d, in.audio + (r + 1) * d);
                for (size_t k = 0; k < in.deepstack.size(); ++k) {
                    ds_rows[k].insert(ds_rows[k].end(), in.deepstack[k] + r * d, in.deepstack[k] + (r + 1) * d);
                }
            }
        }
        const int64_t n_a = static_cast<int64_t>(audio_pos.size());

        ggml_tensor* t_ids = g.input(GGML_TYPE_I32, {n}, ids.data(), "ids");
        ggml_tensor* t_pos = g.input(GGML_TYPE_I32, {n}, pos.data(), "pos");
        ggml_tensor* x = ggml_get_rows(ctx, w.embed, t_ids);
        ggml_tensor *t_sel = nullptr, *t_apos = nullptr;
        if (n_a > 0) {
            t_sel = g.input(GGML_TYPE_I32, {n}, sel.data(), "sel");
            if (!in.deepstack.empty()) t_apos = g.input(GGML_TYPE_I32, {n_a}, audio_pos.data(), "audio_pos");
            x = splice_rows(ctx, x, g.input(GGML_TYPE_F32, {d, n_a}, audio_rows.data(), "audio"), t_sel);
        }
        // Prefill attention on our kernel (decode_attention with one row per position, the chunk's keys and values
        // copied into the cache first), where it serves this cache; otherwise ggml's flash attention with a causal
        // mask over the cache (a single new token sees every cached position and needs none).
        std::vector<std::unique_ptr<nn::DecodeAttnArgs>> chunk_args;
        if (n > 1) {
            for (int il = 0; il < cfg.n_layer; ++il) {
                auto a = prefill_attn_args(cfg, cache, n, il);
                if (!a) {
                    chunk_args.clear();
                    break;
                }
                chunk_args.push_back(std::move(a));
            }
        }
        std::vector<ggml_fp16_t> mask;
        ggml_tensor* t_mask = nullptr;
        if (n > 1 && chunk_args.empty()) {
            mask.resize(size_t(n_kv) * n);
            const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), ninf = ggml_fp32_to_fp16(-INFINITY);
            for (int i = 0; i < n; ++i)
                for (int j = 0; j < n_kv; ++j) mask[size_t(i) * n_kv + j] = j <= n_past + i ? zero : ninf;
            t_mask = g.input(GGML_TYPE_F16, {n_kv, n}, mask.data(), "kq_mask");
        }
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        std::vector<std::unique_ptr<nn::DecodeAttnArgs>> one_token;  // the decode-attention op's, per layer
        for (int il = 0; il < cfg.n_layer; ++il) {
            const Qwen3Layer& l = w.layers[il];
            auto [q, k, v] = attention_inputs(ctx, cfg, l, x, t_pos, n);
            // One token: the same op as a decode step of several sequences (the same bits as in a batch).
            ggml_tensor* a = nullptr;
            if (n == 1) {
                if (auto args = decode_attn_args(cfg, {&cache}, il)) {
                    one_token.push_back(std::move(args));
                    a = nn::decode_attention(ctx, q, k, v, one_token.back().get());
                }
            }
            if (!a) {
                // Write this chunk's keys and values into the cache before attention reads it (graph order).
                ggml_tensor* kc = cache.k(il);
                ggml_tensor* vc = cache.v(il);
                ggml_build_forward_expand(g.gf(), ggml_cpy(ctx, ggml_reshape_2d(ctx, k, dkv, n),
                                                            ggml_view_2d(ctx, kc, dkv, n, kv_row, kv_row * n_past)));
                ggml_build_forward_expand(g.gf(),
                                          ggml_cpy(ctx, v, ggml_view_2d(ctx, vc, dkv, n, kv_row, kv_row * n_past)));
                if (!chunk_args.empty()) {
                    a = nn::decode_attention(ctx, q, k, v, chunk_args[size_t(il)].get());
                } else {
                    ggml_tensor* K =
                        ggml_view_3d(ctx, kc, hd, cfg.n_head_kv, n_kv, ggml_row_size(kc->type, hd), kv_row, 0);
                    ggml_tensor* V =
                        ggml_view_3d(ctx, vc, hd, cfg.n_head_kv, n_kv, ggml_row_size(vc->type, hd), kv_row, 0);
                    a = ggml_flash_attn_ext(ctx, ggml_permute(ctx, q, 0, 2, 1, 3), ggml_permute(ctx, K, 0, 2, 1, 3),
                                            ggml_permute(ctx, V, 0, 2, 1, 3), t_mask, scale, 0.0f, 0.0f);
                    ggml_flash_attn_ext_set_prec(a, GGML_PREC_F32);
                    a = ggml_reshape_2d(ctx, a, hd * cfg.n_head, n);
                }
            }
            x = layer_rest(ctx, cfg, l, x, a);
            // DeepStack: layer il's output gains the merger features at the audio positions.
            if (n_a > 0 && il < static_cast<int>(in.deepstack.size())) {
                ggml_tensor* ds = g.input(GGML_TYPE_F32, {d, n_a}, ds_rows[il].data(), "deepstack");
                ggml_tensor* xa = ggml_add(ctx, ggml_get_rows(ctx, x, t_apos), ds);
                x = splice_rows(ctx, x, xa, t_sel);
            }
            if (il < 3) g.dump("llm.layer" + std::to_string(il), x);
        }
        const bool final = p0 + n == n_total;
        if (final && want_logits) {
            ggml_tensor* last = ggml_view_2d(ctx, x, d, 1, x->nb[1], x->nb[1] * (n - 1));
            last = nn::rms_norm(ctx, last, w.final_norm, cfg.rms_eps);
            ggml_tensor* out = nn::mul_mat(ctx, w.head, last);
            g.run({out});
            logits = Compute::read(out);
        } else {
            g.run({x});  // the cache writes are what counts; no head for positions whose logits nobody reads
        }
        cache.n_past += n;
    }
    return logits;
}

std::vector<float> decoder_step(Compute& c, const Qwen3Weights& w, const std::vector<KvCache*>& caches,
                                const std::vector<int32_t>& ids, const std::vector<nn::HeadRow>* head) {
    const Qwen3Config& cfg = w.cfg;
    const int n = static_cast<int>(ids.size());
    if (n == 0 || caches.size() != ids.size()) throw Error("internal: decoder_step needs one cache per token");
    for (const KvCache* kv : caches) {
        if (kv->n_past + 1 > kv->n_ctx()) throw InputError("a sequence's context is full");
    }
    const int64_t hd = cfg.head_dim, dkv = int64_t(cfg.n_head_kv) * hd;
    nn::DecodeRows decode_rows;  // up to kMaxDecodeRows sequences' rows through the matrix-vector kernels
    // Tensors: ~25 per layer plus ~16 per sequence and layer (its cache writes, views, attention, concatenation).
    Compute::Graph g(c, size_t(cfg.n_layer) * (40 + 20 * size_t(n)) + 128);
    ggml_context* ctx = g.ctx();
    std::vector<int32_t> pos(n);
    for (int i = 0; i < n; ++i) pos[i] = caches[i]->n_past;
    ggml_tensor* t_pos = g.input(GGML_TYPE_I32, {n}, pos.data(), "pos");
    ggml_tensor* x = ggml_get_rows(ctx, w.embed, g.input(GGML_TYPE_I32, {n}, ids.data(), "ids"));
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<std::unique_ptr<nn::DecodeAttnArgs>> attn_args;  // alive until the graph has run
    for (int il = 0; il < cfg.n_layer; ++il) {
        const Qwen3Layer& l = w.layers[il];
        auto [q, k, v] = attention_inputs(ctx, cfg, l, x, t_pos, n);
        // All sequences in one op where our kernel serves their caches.
        if (auto a = decode_attn_args(cfg, caches, il)) {
            attn_args.push_back(std::move(a));
            x = layer_rest(ctx, cfg, l, x, nn::decode_attention(ctx, q, k, v, attn_args.back().get()));
            continue;
        }
        // Per sequence: write its key and value at its position, attend over its cache (no mask: one query sees
        // every cached position), as decoder_forward does for a single token.
        std::vector<ggml_tensor*> outs(n);
        for (int i = 0; i < n; ++i) {
            KvCache& kv = *caches[i];
            ggml_tensor* kc = kv.k(il);
            ggml_tensor* vc = kv.v(il);
            const size_t kv_row = ggml_row_size(kc->type, dkv);
            const int n_kv = kv.n_past + 1;
            ggml_build_forward_expand(g.gf(), ggml_cpy(ctx, ggml_view_1d(ctx, k, dkv, k->nb[2] * i),
                                                        ggml_view_1d(ctx, kc, dkv, kv_row * kv.n_past)));
            ggml_build_forward_expand(g.gf(), ggml_cpy(ctx, ggml_view_1d(ctx, v, dkv, v->nb[1] * i),
                                                        ggml_view_1d(ctx, vc, dkv, kv_row * kv.n_past)));
            ggml_tensor* K = ggml_view_3d(ctx, kc, hd, cfg.n_head_kv, n_kv, ggml_row_size(kc->type, hd), kv_row, 0);
            ggml_tensor* V = ggml_view_3d(ctx, vc, hd, cfg.n_head_kv, n_kv, ggml_row_size(vc->type, hd), kv_row, 0);
            ggml_tensor* qi = ggml_view_3d(ctx, q, hd, cfg.n_head, 1, q->nb[1], q->nb[2], q->nb[2] * i);
            ggml_tensor* a = ggml_flash_attn_ext(ctx, ggml_permute(ctx, qi, 0, 2, 1, 3), ggml_permute(ctx, K, 0, 2, 1, 3),
                                                 ggml_permute(ctx, V, 0, 2, 1, 3), nullptr, scale, 0.0f, 0.0f);
            ggml_flash_attn_ext_set_prec(a, GGML_PREC_F32);
            outs[i] = ggml_reshape_2d(ctx, a, hd * cfg.n_head, 1);
        }
        // [hd * n_head, n]: pairwise concatenation (a balanced tree keeps the copies at log2 n per row)
        while (outs.size() > 1) {
            std::vector<ggml_tensor*> next;
            for (size_t i = 0; i + 1 < outs.size(); i += 2) next.push_back(ggml_concat(ctx, outs[i], outs[i + 1], 1));
            if (outs.size() % 2) next.push_back(outs.back());
            outs.swap(next);
        }
        x = layer_rest(ctx, cfg, l, x, outs[0]);
    }
    x = nn::rms_norm(ctx, x, w.final_norm, cfg.rms_eps);
    std::vector<std::shared_ptr<void>> head_state;  // alive until the graph has run
    ggml_tensor* out = nn::head_logits(g, w.head, w.head_norms.get(), x, head, head_state);
    g.run({out});
    for (KvCache* kv : caches) kv->n_past += 1;
    return Compute::read(out);
}

}  // namespace cm
