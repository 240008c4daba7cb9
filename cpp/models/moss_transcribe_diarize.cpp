// MOSS-Transcribe-Diarize 0.9B: Whisper-medium encoder over 30 s windows (each zero-padded, log-mel'd and encoded on
// its own, 4·L_k frames kept), 4x frame-major merge, VQ adaptor (Linear, SiLU, Linear, LayerNorm), Qwen3 decoder with
// tied head; ChatML prompt with the default system turn, the official Chinese instruction (plus hotwords) and digit
// time markers every 5 s. Writes "[start][Sxx]text[end]" segments. Facts: shared/spec/moss-transcribe-diarize.md;
// the published GGUF schema (keys "moss_diarize.*", llama.cpp-style tensor names) is read as is.
#include <algorithm>
#include <map>

#include "errors.h"
#include "models/audio_lm.h"
#include "nn/layers.h"
#include "text/tokenizer.h"

namespace cm {
namespace {

constexpr const char* kArch = "moss_transcribe_diarize";
constexpr const char* kPrefix = "moss_diarize";
constexpr int kFirstDigitId = 15;  // "0".."9" are ids 15..24
constexpr size_t kWindowSamples = 480000;  // 30 s: the processor's feature_extractor.n_samples
constexpr int kWindowFrames = kWindowSamples / kMelHop;  // 3000 mel frames, 1500 encoder frames
constexpr int32_t kEndOfText = 151643, kImStart = 151644, kImEnd = 151645, kAudioStart = 151669, kAudioEnd = 151670;

constexpr const char* kSystemPrompt = "You are a helpful assistant.";  // the chat template's default system turn
// inference_utils.DEFAULT_PROMPT of the official repository; hotwords follow it after kHotwordsPrefix, ", "-joined
// (README, "Custom Prompt and Hotwords").
constexpr const char* kDefaultInstruction =
    "请将音频转写为文本，每一段需以起始时间戳和说话人编号（[S01]、[S02]、[S03]…）开头，正文为对应的语音内容，"
    "并在段末标注结束时间戳，以清晰标明该段语音范围。";
constexpr const char* kHotwordsPrefix = "热词提示：";

// The model recognises the language itself; English and Chinese are accepted as a no-op hint, others refused.
std::string transcription_instruction(const std::string& language, bool /*timestamps: always written*/) {
    if (language.empty() || language == "English" || language == "Chinese") return "";
    throw InputError("MOSS-Transcribe-Diarize takes no language hint (it recognises the language itself); use a " +
                     model_names([](const ModelSpec& s) { return s.accepts_instructions; }) + " model to ask for " +
                     language);
}

struct Hparams {
    int n_layer, d, n_head, n_mel, d_ff, n_pos, adaptor_in, merge, marker_every;
    float tokens_per_second;
    int32_t audio_id;
};

class MossTranscribeDiarize final : public AudioLM {
public:
    explicit MossTranscribeDiarize(std::unique_ptr<ModelFile> f) : AudioLM(std::move(f)) {
        const ModelFile& m = *file_;
        const std::string a = std::string(kPrefix) + ".";
        hp_.n_layer = m.u32_in(a + "enc.n_layers", 24, 1, 256);
        hp_.d = m.u32_in(a + "enc.d_model", 1024, 2, 1 << 16);
        hp_.n_head = m.u32_in(a + "enc.n_heads", 16, 1, 1024);
        hp_.n_mel = m.u32_in(a + "enc.n_mels", 80, 1, 4096);
        hp_.d_ff = m.u32_in(a + "enc.ffn_dim", 4096, 1, 1 << 20);
        hp_.n_pos = m.u32_in(a + "enc.max_pos", kWindowFrames / 2, 1, 1 << 20);
        hp_.merge = m.u32_in(a + "audio_merge_size", 4, 1, 64);
        hp_.adaptor_in = m.u32_in(a + "adaptor.in_dim", hp_.d * hp_.merge, 1, 1 << 20);
        hp_.audio_id = m.u32(a + "audio_token_id", 151671);
        hp_.marker_every = m.u32_in(a + "time_marker_every_seconds", 5, 0, 1 << 20);
        hp_.tokens_per_second = m.f32_in(a + "audio_tokens_per_second", 12.5f, 1e-3f, 1e6f);
        if (hp_.d % hp_.n_head != 0) m.fail("encoder width is not a multiple of its heads");
        // Every window is encoded at its full 3000 frames (1500 after the stride-2 conv), one position each.
        if (hp_.n_pos != kWindowFrames / 2) m.fail(a + "enc.max_pos must be " + std::to_string(kWindowFrames / 2) + " (30 s windows)");
        if (hp_.adaptor_in != hp_.d * hp_.merge) m.fail(a + "adaptor.in_dim must be enc.d_model x audio_merge_size");
        // A window's 1500 frames hold ceil(480000 / samples_per_token) * merge frames at most.
        if ((kWindowFrames / 2) % hp_.merge != 0) m.fail(a + "audio_merge_size must divide 1500");
        mel_.n_mel = hp_.n_mel;
        mel_.window_samples = kWindowSamples;

        lm_ = Qwen3Weights::load(m, Qwen3Config::read(m, kPrefix, kLlamaStyleQwen3), kLlamaStyleQwen3);
        if (!m.flag(a + "llm.tied_embeddings", true) && !m.find(kLlamaStyleQwen3.head)) {
            m.fail(a + "llm.tied_embeddings is false but the file has no output.weight");
        }
        using K = TensorKind;
        const int64_t d = hp_.d, d_lm = lm_.cfg.n_embd;
        conv1_w_ = m.require("enc.conv1.weight", K::Conv, {3, hp_.n_mel, d});
        conv1_b_ = m.require("enc.conv1.bias", K::Vector, {d});
        conv2_w_ = m.require("enc.conv2.weight", K::Conv, {3, d, d});
        conv2_b_ = m.require("enc.conv2.bias", K::Vector, {d});
        pos_ = m.floats(m.require("enc.pos_embed.weight", K::Matrix, {d, hp_.n_pos}));
        nn::EncoderLayerNames names;
        names.q = ".attn_q", names.k = ".attn_k", names.v = ".attn_v", names.o = ".attn_out";
        names.fc1 = ".ffn_up", names.fc2 = ".ffn_down";
        for (int il = 0; il < hp_.n_layer; ++il) {
            const std::string p = "enc.blk." + std::to_string(il);
            layers_.push_back(nn::EncoderLayer::load(m, p, d, hp_.d_ff, names));
            const nn::EncoderLayer& l = layers_.back();
            // Whisper: q, v and out carry biases, k has none.
            if (!l.q_b || !l.v_b || !l.o_b) m.fail(p + ": Whisper attention needs the q, v and out biases");
            if (l.k_b) m.fail(p + ".attn_k.bias: Whisper's k projection has no bias");
        }
        ln_post_w_ = m.require("enc.ln_post.weight", K::Vector, {d});
        ln_post_b_ = m.require("enc.ln_post.bias", K::Vector, {d});
        fc1_w_ = m.require("adaptor.fc1.weight", K::Matrix, {hp_.adaptor_in, d_lm});
        fc1_b_ = m.require("adaptor.fc1.bias", K::Vector, {d_lm});
        fc2_w_ = m.require("adaptor.fc2.weight", K::Matrix, {d_lm, d_lm});
        fc2_b_ = m.require("adaptor.fc2.bias", K::Vector, {d_lm});
        norm_w_ = m.require("adaptor.norm.weight", K::Vector, {d_lm});
        norm_b_ = m.require("adaptor.norm.bias", K::Vector, {d_lm});
        load_tokenizer({{kEndOfText, "<|endoftext|>"}, {kImStart, "<|im_start|>"}, {kImEnd, "<|im_end|>"},
                        {kAudioStart, "<|audio_start|>"}, {kAudioEnd, "<|audio_end|>"}, {hp_.audio_id, "<|audio_pad|>"}});
        if (kFirstDigitId + 9 >= lm_.cfg.n_vocab) {
            m.fail("the time-marker digit ids (15..24) are outside the vocabulary of " + std::to_string(lm_.cfg.n_vocab));
        }
    }

    std::vector<int32_t> stop_ids() const override { return {kImEnd, kEndOfText}; }

    // n_frames mel frames of a clip: the tokens of n_frames * hop samples.
    int n_audio_tokens(int n_frames) const override {
        return n_audio_tokens_for(static_cast<size_t>(std::max(n_frames, 0)) * kMelHop);
    }

    // Window k of n_k samples gives L_k = (n_k - 1) / samples_per_token + 1 tokens (processor
    // _compute_audio_token_length): hop 160 x conv stride 2 x merge.
    int n_audio_tokens_for(size_t n_samples) const override {
        if (n_samples == 0) return 0;
        const size_t full = n_samples / kWindowSamples, rest = n_samples % kWindowSamples;
        const size_t total = full * tokens_in(kWindowSamples) + (rest ? tokens_in(rest) : 0);
        return static_cast<int>(std::min<size_t>(total, size_t(1) << 30));
    }

    EncodedAudio encode(Compute& c, const float* mel, int T, size_t n_samples) const override {
        if (T <= 0 || n_samples == 0) throw AudioError("audio too short: no mel frames");
        const size_t n_windows = (n_samples + kWindowSamples - 1) / kWindowSamples;
        if (static_cast<size_t>(T) != n_windows * kWindowFrames) {
            throw Error("internal: " + std::to_string(T) + " mel frames for " + std::to_string(n_windows) + " windows");
        }
        EncodedAudio out;
        out.n_embd = lm_.cfg.n_embd;
        std::map<std::string, std::vector<float>> dumps;
        std::vector<float> x(size_t(hp_.n_mel) * kWindowFrames);
        // One graph per window: the windows do not see each other, and memory stays that of one window.
        for (size_t k = 0; k < n_windows; ++k) {
            const size_t n_k = std::min(kWindowSamples, n_samples - k * kWindowSamples);
            const int64_t L = static_cast<int64_t>(tokens_in(n_k));
            for (int f = 0; f < hp_.n_mel; ++f) {
                const float* row = mel + size_t(f) * T + k * kWindowFrames;
                std::copy(row, row + kWindowFrames, x.begin() + size_t(f) * kWindowFrames);
            }
            Compute::Graph g(c);
            ggml_context* ctx = g.ctx();
            ggml_tensor* h = g.input(GGML_TYPE_F32, {kWindowFrames, hp_.n_mel}, x.data(), "mel");
            h = nn::conv1d_k3_gelu(ctx, h, conv1_w_, conv1_b_, 1);                     // [d, 3000]
            h = nn::conv1d_k3_gelu(ctx, ggml_transpose(ctx, h), conv2_w_, conv2_b_, 2);  // [d, 1500]
            h = ggml_add(ctx, h, g.input(GGML_TYPE_F32, {hp_.d, hp_.n_pos}, pos_.data(), "pos"));
            for (int il = 0; il < hp_.n_layer; ++il) h = nn::encoder_layer(ctx, layers_[il], h, hp_.n_head, 1e-5f);
            h = nn::layer_norm(ctx, h, ln_post_w_, ln_post_b_, 1e-5f);
            // The first merge * L frames, then merge consecutive frames per row (frame merge*j first).
            h = ggml_view_2d(ctx, h, hp_.d, hp_.merge * L, h->nb[1], 0);
            g.dump("enc.out", h);
            h = ggml_reshape_2d(ctx, h, int64_t(hp_.d) * hp_.merge, L);
            h = ggml_silu(ctx, nn::linear(ctx, h, fc1_w_, fc1_b_));
            h = nn::linear(ctx, h, fc2_w_, fc2_b_);
            ggml_tensor* a = nn::layer_norm(ctx, h, norm_w_, norm_b_, lm_.cfg.rms_eps);
            g.dump("adapter", a);
            g.run({a});
            const std::vector<float> rows = Compute::read(a);
            out.embd.insert(out.embd.end(), rows.begin(), rows.end());
            if (c.dumps_enabled()) {
                for (const char* name : {"enc.out", "adapter"}) {
                    const auto& d = c.dumps().at(name).data;
                    dumps[name].insert(dumps[name].end(), d.begin(), d.end());
                }
            }
        }
        out.n_audio = static_cast<int>(out.embd.size() / out.n_embd);
        for (auto& [name, data] : dumps) {  // the windows' rows, concatenated
            const int64_t width = name == "enc.out" ? hp_.d : out.n_embd;
            c.dumps()[name] = HostTensor{{width, static_cast<int64_t>(data.size()) / width}, std::move(data)};
        }
        return out;
    }

    // "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<|audio_start|>" span
    // "<|audio_end|>\n{instruction}<|im_end|>\n<|im_start|>assistant\n", the two texts tokenized on their own.
    Prompt build_prompt(int n_audio, const PromptRequest& req) const override {
        if (!req.instruction.empty()) {
            throw InputError("MOSS-Transcribe-Diarize takes no instruction: it transcribes with speakers and "
                             "timestamps (pass hotwords for names and terms)");
        }
        std::string ins = instruction(req);  // validates the language hint and the hotwords
        if (ins.empty()) ins = kDefaultInstruction;
        if (!req.hotwords.empty()) {
            ins += kHotwordsPrefix;
            for (size_t i = 0; i < req.hotwords.size(); ++i) ins += (i ? ", " : "") + req.hotwords[i];
        }
        Prompt p;
        auto text = [&](const std::string& s) {
            for (int32_t id : tokenizer().encode(s, true)) token(p, id, -1);
        };
        text("<|im_start|>system\n" + (req.system.empty() ? std::string(kSystemPrompt) : req.system) +
             "<|im_end|>\n<|im_start|>user\n<|audio_start|>");
        // A marker (the digits of the elapsed second) after every int(tokens/s x interval) placeholders, counted
        // over the whole clip (processor _audio_span_ids); interval 0 or time_markers off: none.
        int emitted = 0;
        const int per_marker = static_cast<int>(hp_.tokens_per_second * static_cast<float>(hp_.marker_every));
        if (req.time_markers && hp_.marker_every > 0 && per_marker > 0) {
            const int last = static_cast<int>(static_cast<double>(n_audio) / hp_.tokens_per_second);
            for (int s = hp_.marker_every; s <= last; s += hp_.marker_every) {
                for (const int pos = (s / hp_.marker_every) * per_marker; emitted < pos; ++emitted) token(p, hp_.audio_id, emitted);
                for (char ch : std::to_string(s)) token(p, kFirstDigitId + (ch - '0'), -1);
            }
        }
        for (; emitted < n_audio; ++emitted) token(p, hp_.audio_id, emitted);
        text("<|audio_end|>\n" + ins + "<|im_end|>\n<|im_start|>assistant\n");
        return p;
    }

private:
    static void token(Prompt& p, int32_t id, int32_t row) {
        p.ids.push_back(id);
        p.audio_row.push_back(row);
    }
    size_t tokens_in(size_t n) const { return (n - 1) / (size_t(kMelHop) * 2 * hp_.merge) + 1; }

    Hparams hp_{};
    ggml_tensor *conv1_w_ = nullptr, *conv1_b_ = nullptr, *conv2_w_ = nullptr, *conv2_b_ = nullptr;
    std::vector<float> pos_;  // [n_pos][d]
    std::vector<nn::EncoderLayer> layers_;
    ggml_tensor *ln_post_w_ = nullptr, *ln_post_b_ = nullptr;
    ggml_tensor *fc1_w_ = nullptr, *fc1_b_ = nullptr, *fc2_w_ = nullptr, *fc2_b_ = nullptr;
    ggml_tensor *norm_w_ = nullptr, *norm_b_ = nullptr;
};

}  // namespace

// Always timed and speaker-attributed ("diarized"); hotwords; 2048 new tokens as the official README, CLI and web
// app. 240 s passes: at the ~8 tokens/s that dense speech with its timestamps and labels takes, 2048 tokens cover
// about 4 min, and a pass of 3000 audio rows + 2048 new tokens keeps a 0.6 GB F16 KV cache (labels restart per pass).
// quantize keeps the encoder, the adaptor and the tied token_embd.weight (CrispASR's crispasr-quantize rule).
extern const ModelSpec kMossTranscribeDiarizeSpec;
const ModelSpec kMossTranscribeDiarizeSpec{kArch, "MOSS-Transcribe-Diarize", false, kDefaultInstruction, kSystemPrompt,
                                           true, "diarized", 2048, 240.0, {"enc.", "adaptor."}, {"token_embd.weight"},
                                           transcription_instruction, make_model<MossTranscribeDiarize>,
                                           /*hotwords=*/true, kPrefix, &kLlamaStyleQwen3};

}  // namespace cm
