// The Qwen3 decoder both models share: weights, a persistent KV cache, and one forward pass that serves
// prefill (audio embeddings spliced in, DeepStack residuals added) and single-token decode alike.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compute.h"
#include "model_file.h"
#include "nn/head.h"
#include "nn/layers.h"

namespace cm::cpu {
struct HeadNorms;
}

namespace cm {

// Where a GGUF schema keeps the decoder: its hyper-parameter keys (after "<prefix>.") and tensor names. The default
// is our converters' schema (llm.*); the published MOSS-Transcribe-Diarize files use llama.cpp-style names
// (kLlamaStyleQwen3).
struct Qwen3Names {
    const char *hidden_size = "llm.hidden_size", *num_layers = "llm.num_layers", *num_heads = "llm.num_heads",
               *num_kv_heads = "llm.num_kv_heads", *head_dim = "llm.head_dim", *intermediate_size = "llm.intermediate_size",
               *vocab_size = "llm.vocab_size", *max_positions = "llm.max_position_embeddings",
               *rope_theta = "llm.rope_theta", *rms_eps = "llm.rms_norm_eps";
    int default_max_positions = 40960;  // the context when the file has no max_positions key
    const char *embed = "llm.embed.weight", *final_norm = "llm.final_norm.weight", *head = "llm.lm_head.weight";
    // Layer tensors are blk + index + "." + the name.
    const char *blk = "llm.blk.", *attn_norm = "attn_norm.weight", *wq = "attn.q.weight", *wk = "attn.k.weight",
               *wv = "attn.v.weight", *wo = "attn.o.weight", *q_norm = "attn.q_norm.weight",
               *k_norm = "attn.k_norm.weight", *ffn_norm = "ffn_norm.weight", *gate = "ffn.gate.weight",
               *up = "ffn.up.weight", *down = "ffn.down.weight";
};
extern const Qwen3Names kLlamaStyleQwen3;

struct Qwen3Config {
    int n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, n_vocab = 0, n_ctx_train = 0;
    float rope_theta = 1e6f, rms_eps = 1e-6f;
    // Reads the `<prefix>.` keys `names` lists (default: `<prefix>.llm.*`, the published files' schema).
    static Qwen3Config read(const ModelFile& f, const std::string& prefix, const Qwen3Names& names = Qwen3Names());
};

struct Qwen3Layer {
    ggml_tensor *attn_norm, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *ffn_norm;
    nn::GatedMLP ffn;  // SwiGLU
};

struct Qwen3Weights {
    Qwen3Config cfg;
    ggml_tensor* embed = nullptr;
    ggml_tensor* final_norm = nullptr;
    ggml_tensor* head = nullptr;  // llm.lm_head.weight, or the tied embedding
    // The head's norms for screened greedy decode steps (nn/head.h), set at load where screening can run.
    std::shared_ptr<const cpu::HeadNorms> head_norms;
    std::vector<Qwen3Layer> layers;
    static Qwen3Weights load(const ModelFile& f, const Qwen3Config& cfg, const Qwen3Names& names = Qwen3Names());
};

class KvCache {
public:
    KvCache(const Qwen3Config& cfg, int n_ctx, ggml_type type, ggml_backend_t backend);
    // Layer il's keys and values in memory of layer_buft[il] (offloaded layers keep theirs on the device).
    KvCache(const Qwen3Config& cfg, int n_ctx, ggml_type type, const std::vector<ggml_backend_buffer_type_t>& layer_buft);
    ~KvCache();
    KvCache(const KvCache&) = delete;
    KvCache& operator=(const KvCache&) = delete;
    int n_ctx() const { return n_ctx_; }
    ggml_type type() const { return type_; }
    ggml_tensor* k(int il) const { return k_[il]; }
    ggml_tensor* v(int il) const { return v_[il]; }
    int n_past = 0;  // positions 0..n_past-1 hold valid entries

private:
    int n_ctx_;
    ggml_type type_;
    std::vector<ggml_context*> ctxs_;
    std::vector<ggml_backend_buffer_t> bufs_;
    std::vector<ggml_tensor*> k_, v_;
};

// One pass over positions [cache.n_past, cache.n_past + n_tokens).
struct DecoderInput {
    std::vector<int32_t> ids;              // token ids; entries at audio positions are ignored
    std::vector<int32_t> audio_row;        // per position: row of `audio` to splice in, or -1
    const float* audio = nullptr;          // [n_audio][n_embd]
    std::vector<const float*> deepstack;   // per injected layer k: [n_audio][n_embd] added to layer k's output
};

// Runs the pass in chunks of at most `n_batch` positions, appends to the cache and returns the logits
// of the last position. Stage dumps: "llm.layer<k>" (k < 3) and "logits".
// With logits = false the output head is skipped (an inner piece of a longer prefill) and the result is empty.
std::vector<float> decoder_forward(Compute& c, const Qwen3Weights& w, KvCache& cache, const DecoderInput& in,
                                   int n_batch = 512, bool logits = true);

// One decode step of several sequences: token ids[i] at position caches[i]->n_past of sequence i's own cache.
// Every weight matrix is read once for all rows; attention runs per sequence over its own cache. Row i's logits
// (returned as [n][n_vocab]) are the bits decoder_forward would give that sequence alone wherever our CPU
// kernels run the products (every op is per row; the matrix-vector kernel reduces each row in its one-row order)
// and there are at most cpu::kMaxDecodeRows of them (nn::DecodeRows; more rows take the prefill paths, so the
// engine groups its steps by that). Each cache's n_past advances by one. head (nullptr: every row's full logits):
// per row, whether only its greedy argmax matters (nn::head_logits may then screen the head: exact logits for the
// tokens that can win and the given exact set, -inf elsewhere; the argmax, with or without the repetition penalty,
// is the full logits' token).
std::vector<float> decoder_step(Compute& c, const Qwen3Weights& w, const std::vector<KvCache*>& caches,
                                const std::vector<int32_t>& ids, const std::vector<nn::HeadRow>* head = nullptr);

}  // namespace cm
