// MOSS-Transcribe-preview-2B: Qwen3-Omni-MoE audio tower (chunked conv stem, windowed attention,
// conv_out/proj1/proj2 head) → SwiGLU adapter → Qwen3 decoder with tied head, ChatML prompt without text.
#include <algorithm>
#include <map>

#include "errors.h"
#include "models/audio_lm.h"
#include "nn/layers.h"
#include "text/tokenizer.h"

namespace cm {
namespace {

constexpr const char* kArch = "moss_transcribe";
constexpr int32_t kPlaceholderId = 0;  // what audio positions hold in Prompt::ids (the rows replace them)

// No instruction: the model recognises the language itself. English and Chinese, the languages it covers, are
// accepted as a no-op hint; other languages are refused.
std::string transcription_instruction(const std::string& language, bool /*timestamps*/) {
    if (language.empty() || language == "English" || language == "Chinese") return "";
    throw InputError("MOSS-Transcribe takes no language hint and covers only English and Chinese; use a " +
                     model_names([](const ModelSpec& s) { return s.accepts_instructions; }) + " model for " + language);
}

struct Hparams : nn::EncoderConfig {
    int n_window, n_window_infer, out_dim;
    int32_t bos, eos, start, audio_start, audio_end;
};

class MossTranscribe final : public AudioLM {
public:
    explicit MossTranscribe(std::unique_ptr<ModelFile> f) : AudioLM(std::move(f)) {
        const ModelFile& m = *file_;
        const std::string a = std::string(kArch) + ".";
        static_cast<nn::EncoderConfig&>(hp_) = nn::EncoderConfig::read(m, kArch);
        // The stem's three halvings must leave the 16 frequency rows conv_out was trained on.
        if (hp_.n_mel != 128) m.fail(a + "enc.num_mel_bins must be 128");
        mel_.n_mel = hp_.n_mel;
        hp_.n_window = m.u32_in(a + "enc.n_window", 50, 1, 4096);
        hp_.n_window_infer = m.u32_in(a + "enc.n_window_infer", 800, 1, 1 << 16);
        hp_.out_dim = m.u32_in(a + "enc.output_dim", 2048, 1, 1 << 16);
        hp_.bos = m.u32(a + "bos_token_id", 151643);
        hp_.eos = m.u32(a + "eos_token_id", 151645);
        hp_.start = m.u32(a + "start_token_id", 151644);
        hp_.audio_start = m.u32(a + "audio_start_id", 151669);
        hp_.audio_end = m.u32(a + "audio_end_id", 151670);
        if (hp_.n_window_infer < 2 * hp_.n_window) m.fail("encoder windowing hyper-parameters out of range");
        lm_ = Qwen3Weights::load(m, Qwen3Config::read(m, kArch));
        const int64_t d = hp_.d, flat = int64_t(hp_.conv_ch) * nn::ConvStem::out_len(hp_.n_mel);
        stem_ = nn::ConvStem::load(m, "enc.", hp_.conv_ch);
        conv_out_ = m.require("enc.conv_out.weight", TensorKind::Matrix, {flat, d});
        for (int il = 0; il < hp_.n_layer; ++il) {
            layers_.push_back(nn::EncoderLayer::load(m, "enc.blk." + std::to_string(il), d, hp_.d_ff));
        }
        ln_post_w_ = m.require("enc.ln_post.weight", TensorKind::Vector, {d});
        ln_post_b_ = m.require("enc.ln_post.bias", TensorKind::Vector, {d});
        proj1_w_ = m.require("enc.proj1.weight", TensorKind::Matrix, {d, d});
        proj1_b_ = m.require("enc.proj1.bias", TensorKind::Vector, {d});
        proj2_w_ = m.require("enc.proj2.weight", TensorKind::Matrix, {d, hp_.out_dim});
        proj2_b_ = m.require("enc.proj2.bias", TensorKind::Vector, {hp_.out_dim});
        adapter_ = nn::GatedMLP::load(m, "adapter", hp_.out_dim, hp_.adapter_hidden, lm_.cfg.n_embd);
        pos_ = nn::sinusoids(tokens_per_chunk(chunk_frames()), d);
        load_tokenizer({{hp_.bos, "<|endoftext|>"}, {hp_.start, "<|im_start|>"}, {hp_.eos, "<|im_end|>"},
                        {hp_.audio_start, "<|audio_bos|>"}, {hp_.audio_end, "<|audio_eos|>"}});
        // The template's text is tokenized once: its ids index the embedding like any prompt id.
        head_ = tokenizer().encode("<|im_start|>user\n<|audio_bos|>", true);
        tail_ = tokenizer().encode("<|audio_eos|><|im_end|>\n<|im_start|>assistant\n", true);
        // The model was trained on Qwen's vocabulary, where each role name is one token; a vocabulary that
        // spells them in pieces gives a prompt the model has never seen.
        for (const char* role : {"user", "assistant"}) {
            const size_t n = tokenizer().encode(role, false).size();
            if (n != 1) {
                m.fail(std::string("the chat template's role '") + role + "' is " + std::to_string(n) +
                       " tokens in this vocabulary of " + std::to_string(lm_.cfg.n_vocab) + ", not one");
            }
        }
    }

    std::vector<int32_t> stop_ids() const override { return {hp_.eos, hp_.bos}; }

    int n_audio_tokens(int n_frames) const override {
        int n = 0;
        for (int t0 = 0; t0 < n_frames; t0 += chunk_frames()) n += tokens_per_chunk(std::min(chunk_frames(), n_frames - t0));
        return n;
    }

    EncodedAudio encode(Compute& c, const float* mel, int T, size_t /*n_samples*/) const override {
        if (T <= 0) throw AudioError("audio too short: no mel frames");
        const int cf = chunk_frames();
        const int n_chunks = (T + cf - 1) / cf;
        // The reference pads every chunk to the longest one in the clip: 100 frames unless there is only one.
        const int chunk_len = n_chunks > 1 ? cf : T;
        const int chunks_per_window = hp_.n_window_infer / cf;
        EncodedAudio out;
        out.n_embd = lm_.cfg.n_embd;
        std::map<std::string, std::vector<float>> dumps;
        // Windows attend only within themselves and restart nothing else. Up to kWindowsPerGraph of them run as one
        // graph: attention per window, every other op over all their rows at once (a product then streams its
        // weights once for all of them; its rows' sums do not depend on how many rows there are).
        const int chunks_per_graph = kWindowsPerGraph * chunks_per_window;
        for (int c0 = 0; c0 < n_chunks; c0 += chunks_per_graph) {
            const int nc = std::min(chunks_per_graph, n_chunks - c0);
            std::vector<float> x(size_t(chunk_len) * hp_.n_mel * nc, 0.0f);
            std::vector<int32_t> rows;
            std::vector<int64_t> windows;  // rows per window
            const int tpc = tokens_per_chunk(chunk_len);
            for (int ci = 0; ci < nc; ++ci) {
                const int t0 = (c0 + ci) * cf, len = std::min(cf, T - t0);
                for (int f = 0; f < hp_.n_mel; ++f) {
                    std::copy(mel + size_t(f) * T + t0, mel + size_t(f) * T + t0 + len,
                              x.begin() + (size_t(ci) * hp_.n_mel + f) * chunk_len);
                }
                if (ci % chunks_per_window == 0) windows.push_back(0);
                windows.back() += tokens_per_chunk(len);
                for (int t = 0; t < tokens_per_chunk(len); ++t) rows.push_back(ci * tpc + t);
            }
            Compute::Graph g(c);
            ggml_context* ctx = g.ctx();
            ggml_tensor* h = stem_chunks(ctx, g.input(GGML_TYPE_F32, {chunk_len, hp_.n_mel, 1, nc}, x.data(), "mel"));
            h = ggml_add(ctx, h, g.input(GGML_TYPE_F32, {hp_.d, tpc}, pos_.data(), "pos"));
            h = ggml_get_rows(ctx, ggml_reshape_2d(ctx, h, hp_.d, int64_t(tpc) * nc),
                              g.input(GGML_TYPE_I32, {int64_t(rows.size())}, rows.data(), "valid"));
            for (int il = 0; il < hp_.n_layer; ++il) {
                h = nn::encoder_layer(ctx, layers_[il], h, hp_.n_head, hp_.eps, windows);
                if (il == 0) g.dump("enc.layer0", h);
            }
            h = nn::layer_norm(ctx, h, ln_post_w_, ln_post_b_, hp_.eps);
            h = nn::linear_gelu(ctx, h, proj1_w_, proj1_b_);
            h = nn::linear(ctx, h, proj2_w_, proj2_b_);
            g.dump("enc.out", h);
            ggml_tensor* a = adapter_(ctx, h);
            g.dump("adapter", a);
            g.run({a});
            const std::vector<float> rows_out = Compute::read(a);
            out.embd.insert(out.embd.end(), rows_out.begin(), rows_out.end());
            if (c.dumps_enabled()) {
                for (const char* name : {"enc.layer0", "enc.out", "adapter"}) {
                    auto& acc = dumps[name];
                    const auto& d = c.dumps().at(name).data;
                    acc.insert(acc.end(), d.begin(), d.end());
                }
            }
        }
        out.n_audio = static_cast<int>(out.embd.size() / out.n_embd);
        for (auto& [name, data] : dumps) {
            HostTensor& h = c.dumps()[name];
            const int64_t width = name == std::string("enc.layer0") ? hp_.d : name == std::string("enc.out") ? hp_.out_dim : out.n_embd;
            h.ne = {width, static_cast<int64_t>(data.size()) / width};
            h.data = std::move(data);
        }
        return out;
    }

    // ChatML without text: "<|im_start|>user\n<|audio_bos|>" audio "<|audio_eos|><|im_end|>\n<|im_start|>assistant\n".
    Prompt build_prompt(int n_audio, const PromptRequest& req) const override {
        if (!req.system.empty()) throw InputError("MOSS-Transcribe takes no system prompt");
        if (!req.instruction.empty()) throw InputError("MOSS-Transcribe takes no instruction: it only transcribes");
        instruction(req);  // validates the language hint and timestamps; the prompt has no text either way
        Prompt p;
        p.ids = head_;
        p.audio_row.assign(p.ids.size(), -1);
        for (int i = 0; i < n_audio; ++i) {
            p.ids.push_back(kPlaceholderId);
            p.audio_row.push_back(i);
        }
        p.ids.insert(p.ids.end(), tail_.begin(), tail_.end());
        p.audio_row.resize(p.ids.size(), -1);
        return p;
    }

private:
    // Conv stem and conv_out over a window's chunks, kStemChunks at a time and concatenated: each group's
    // activations (the F32 conv outputs and F16 im2col columns, ~15 MB per chunk) are freed before the next group
    // runs, so a window's compute buffer holds two chunks' worth instead of eight. Same arithmetic per chunk.
    static constexpr int kStemChunks = 2;
    // Windows a graph holds (8 s each: ~830 rows; the full-size model's peak during a 64 s encode grows by ~130 MB
    // against ~55 MB with one window a graph).
    static constexpr int kWindowsPerGraph = 8;
    ggml_tensor* stem_chunks(ggml_context* ctx, ggml_tensor* mel) const {
        ggml_tensor* out = nullptr;
        for (int64_t c0 = 0; c0 < mel->ne[3]; c0 += kStemChunks) {
            const int64_t n = std::min<int64_t>(kStemChunks, mel->ne[3] - c0);
            ggml_tensor* part = ggml_view_4d(ctx, mel, mel->ne[0], mel->ne[1], mel->ne[2], n, mel->nb[1], mel->nb[2],
                                             mel->nb[3], size_t(c0) * mel->nb[3]);
            ggml_tensor* s = stem_(ctx, part);  // [F*C, tpc, n]
            ggml_tensor* h = nn::mul_mat(ctx, conv_out_, ggml_reshape_2d(ctx, s, s->ne[0], s->ne[1] * s->ne[2]));
            h = ggml_reshape_3d(ctx, h, h->ne[0], s->ne[1], s->ne[2]);  // [d, tpc, n]
            out = out ? ggml_concat(ctx, out, h, 2) : h;
        }
        return out;
    }

    int chunk_frames() const { return 2 * hp_.n_window; }
    static int tokens_per_chunk(int frames) {
        return static_cast<int>(nn::conv_out_len(nn::conv_out_len(nn::conv_out_len(frames))));
    }

    Hparams hp_{};
    nn::ConvStem stem_{};
    ggml_tensor* conv_out_ = nullptr;
    std::vector<nn::EncoderLayer> layers_;
    ggml_tensor *ln_post_w_ = nullptr, *ln_post_b_ = nullptr, *proj1_w_ = nullptr, *proj1_b_ = nullptr;
    ggml_tensor *proj2_w_ = nullptr, *proj2_b_ = nullptr;
    nn::GatedMLP adapter_;
    std::vector<float> pos_;
    std::vector<int32_t> head_, tail_;  // the template's ids before and after the audio rows
};

}  // namespace

// Transcription only, no timestamps; 512 new tokens as the official inference code; 30 s passes (README, "Long
// audio"). quantize keeps the encoder, the adapter and the tied head: llm.embed.weight is both the input table
// and the output projection, so quantizing it degrades both ends.
extern const ModelSpec kMossTranscribeSpec;
const ModelSpec kMossTranscribeSpec{kArch, "MOSS-Transcribe", false, "", "", false, "text", 512, 30.0,
                                    {"enc.", "adapter."}, {"llm.embed.weight"}, transcription_instruction,
                                    make_model<MossTranscribe>};

}  // namespace cm
