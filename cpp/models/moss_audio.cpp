// MOSS-Audio-4B-Instruct: Whisper-style encoder over the whole clip (global attention) with DeepStack taps,
// GatedMLP adapter and mergers, Qwen3 decoder with untied head; ChatML prompt with time markers.
#include <algorithm>
#include <map>

#include "errors.h"
#include "models/audio_lm.h"
#include "nn/layers.h"
#include "text/tokenizer.h"

namespace cm {
namespace {

constexpr const char* kArch = "moss_audio";
constexpr int kFirstDigitId = 15;  // "0".."9" are ids 15..24

constexpr const char* kTranscribeInstruction = "Please transcribe this audio.";
constexpr const char* kChineseInstruction = "请转录这段音频。";  // official (OpenMOSS repo, moss_audio_usage_guide.md)
constexpr const char* kSystemPrompt = "You are a helpful assistant.";  // the official default
// The official repo has no timestamped-ASR instruction; this follows the wording and line format of its
// "Time-Aware QA" prompt (demo/assets/metadata.jsonl) with transcription as the task.
constexpr const char* kTimestampInstruction =
    "Transcribe the speech in this audio in chronological order. Output one segment per line using this "
    "format:\nstart_sec - end_sec: transcript\nUse plain decimal seconds for start_sec and end_sec. Cover "
    "the full timeline from beginning to end when possible.";

// No hint or English: "" (the official instruction, or the timestamp one); Chinese: the official Chinese one; any
// other language: "Please transcribe this audio in <Language>." (a hint in the official style, not an official
// prompt).
std::string transcription_instruction(const std::string& language, bool timestamps) {
    if (language.empty() || language == "English") return "";
    if (language == "Chinese" && !timestamps) return kChineseInstruction;
    return "Please transcribe this audio in " + language + (timestamps ? " with timestamps." : ".");
}

struct Hparams : nn::EncoderConfig {
    int n_inject;
    std::vector<int> taps;
    int32_t bos, eos, start, audio_id, audio_start, audio_end;
};

class MossAudio final : public AudioLM {
public:
    explicit MossAudio(std::unique_ptr<ModelFile> f) : AudioLM(std::move(f)) {
        const ModelFile& m = *file_;
        const std::string a = std::string(kArch) + ".";
        static_cast<nn::EncoderConfig&>(hp_) = nn::EncoderConfig::read(m, kArch);
        // The stem's three halvings must leave the 16 frequency rows stem_proj was trained on.
        if (hp_.n_mel != 128) m.fail(a + "enc.num_mel_bins must be 128");
        mel_.n_mel = hp_.n_mel;
        const int n_taps = m.u32_in(a + "deepstack.num_taps", 3, 0, 64);
        const int defaults[] = {8, 16, 24};
        for (int i = 0; i < n_taps; ++i) {
            hp_.taps.push_back(m.u32(a + "deepstack.tap." + std::to_string(i), i < 3 ? defaults[i] : 0));
        }
        hp_.n_inject = m.u32_in(a + "deepstack.num_inject_layers", n_taps, 0, n_taps);
        hp_.bos = m.u32(a + "bos_token_id", 151643);
        hp_.eos = m.u32(a + "eos_token_id", 151645);
        hp_.start = 151644;
        hp_.audio_id = m.u32(a + "audio_token_id", 151654);
        hp_.audio_start = m.u32(a + "audio_start_id", 151669);
        hp_.audio_end = m.u32(a + "audio_end_id", 151670);
        for (int t : hp_.taps) {
            if (t < 0 || t >= hp_.n_layer) m.fail("DeepStack tap layer " + std::to_string(t) + " is outside the encoder");
        }
        // Each injected merger reads its own tap layer; two on one layer would leave one without input.
        for (int i = 0; i < hp_.n_inject; ++i) {
            for (int j = 0; j < i; ++j) {
                if (hp_.taps[i] == hp_.taps[j]) m.fail("DeepStack taps " + std::to_string(j) + " and " + std::to_string(i) + " both read encoder layer " + std::to_string(hp_.taps[i]));
            }
        }
        lm_ = Qwen3Weights::load(m, Qwen3Config::read(m, kArch));
        if (hp_.n_inject > lm_.cfg.n_layer) m.fail("more DeepStack injections than LM layers");
        const int64_t d = hp_.d, flat = int64_t(hp_.conv_ch) * nn::ConvStem::out_len(hp_.n_mel), d_lm = lm_.cfg.n_embd;
        stem_ = nn::ConvStem::load(m, "enc.", hp_.conv_ch);
        stem_w_ = m.require("enc.stem_proj.weight", TensorKind::Matrix, {flat, d});
        stem_b_ = m.require("enc.stem_proj.bias", TensorKind::Vector, {d});
        for (int il = 0; il < hp_.n_layer; ++il) {
            layers_.push_back(nn::EncoderLayer::load(m, "enc.blk." + std::to_string(il), d, hp_.d_ff));
        }
        norm_w_ = m.require("enc.norm.weight", TensorKind::Vector, {d});
        norm_b_ = m.require("enc.norm.bias", TensorKind::Vector, {d});
        adapter_ = nn::GatedMLP::load(m, "adapter", d, hp_.adapter_hidden, d_lm);
        for (int i = 0; i < hp_.n_inject; ++i) {
            mergers_.push_back(nn::GatedMLP::load(m, "deepstack." + std::to_string(i), d, hp_.adapter_hidden, d_lm));
        }
        load_tokenizer({{hp_.bos, "<|endoftext|>"}, {hp_.start, "<|im_start|>"}, {hp_.eos, "<|im_end|>"},
                        {hp_.audio_id, "<|AUDIO|>"}, {hp_.audio_start, "<|audio_bos|>"}, {hp_.audio_end, "<|audio_eos|>"}});
        // Time markers are the digit tokens; they index the embedding like any prompt id.
        if (kFirstDigitId + 9 >= lm_.cfg.n_vocab) {
            m.fail("the time-marker digit ids (15..24) are outside the vocabulary of " + std::to_string(lm_.cfg.n_vocab));
        }
    }

    std::vector<int32_t> stop_ids() const override { return {hp_.eos, hp_.bos}; }

    int n_audio_tokens(int n_frames) const override {
        return static_cast<int>(nn::conv_out_len(nn::conv_out_len(nn::conv_out_len(n_frames))));
    }

    EncodedAudio encode(Compute& c, const float* mel, int T, size_t /*n_samples*/) const override {
        if (T <= 0) throw AudioError("audio too short: no mel frames");
        const int64_t n = n_audio_tokens(T);
        const std::vector<float> pos = nn::sinusoids(n, hp_.d);
        const std::vector<float> stem = run_stem(c, mel, T, n);
        Compute::Graph g(c);
        ggml_context* ctx = g.ctx();
        ggml_tensor* h = g.input(GGML_TYPE_F32, {hp_.d, n}, stem.data(), "stem");
        h = ggml_add(ctx, h, g.input(GGML_TYPE_F32, {hp_.d, n}, pos.data(), "pos"));
        std::vector<ggml_tensor*> outs;
        std::map<int, int> tap_of_layer;
        for (int i = 0; i < hp_.n_inject; ++i) tap_of_layer[hp_.taps[i]] = i;
        std::vector<ggml_tensor*> ds(hp_.n_inject, nullptr);
        for (int il = 0; il < hp_.n_layer; ++il) {
            h = nn::encoder_layer(ctx, layers_[il], h, hp_.n_head, hp_.eps);
            if (il == 0) g.dump("enc.layer0", h);
            auto it = tap_of_layer.find(il);
            if (it != tap_of_layer.end()) {
                g.dump("enc.tap." + std::to_string(it->second), h);
                ds[it->second] = mergers_[it->second](ctx, h);
                g.dump("deepstack." + std::to_string(it->second), ds[it->second]);
            }
        }
        h = nn::layer_norm(ctx, h, norm_w_, norm_b_, hp_.eps);
        g.dump("enc.out", h);
        ggml_tensor* a = adapter_(ctx, h);
        g.dump("adapter", a);
        outs.push_back(a);
        outs.insert(outs.end(), ds.begin(), ds.end());
        g.run(outs);
        EncodedAudio out;
        out.n_embd = lm_.cfg.n_embd;
        out.n_audio = static_cast<int>(n);
        out.embd = Compute::read(a);
        for (ggml_tensor* t : ds) out.deepstack.push_back(Compute::read(t));
        return out;
    }

    Prompt build_prompt(int n_audio, const PromptRequest& req) const override {
        Prompt p;
        auto text = [&](const std::string& s) {
            for (int32_t id : tokenizer().encode(s, true)) {
                p.ids.push_back(id);
                p.audio_row.push_back(-1);
            }
        };
        auto token = [&](int32_t id, int32_t row) {
            p.ids.push_back(id);
            p.audio_row.push_back(row);
        };
        text("<|im_start|>system\n" + (req.system.empty() ? std::string(kSystemPrompt) : req.system) +
             "<|im_end|>\n<|im_start|>user\n");
        token(hp_.audio_start, -1);
        int emitted = 0;
        if (req.time_markers) {
            // A marker "s" follows the audio token that ends second s (12.5 tokens per second), every 2 s.
            const int whole_seconds = n_audio * 2 / 25;
            for (int s = 2; s <= whole_seconds; s += 2) {
                for (; emitted < 25 * (s / 2); ++emitted) token(hp_.audio_id, emitted);
                for (char ch : std::to_string(s)) token(kFirstDigitId + (ch - '0'), -1);
            }
        }
        for (; emitted < n_audio; ++emitted) token(hp_.audio_id, emitted);
        token(hp_.audio_end, -1);
        std::string ins = instruction(req);
        if (ins.empty()) ins = req.timestamps ? kTimestampInstruction : kTranscribeInstruction;
        text("\n" + ins + "<|im_end|>\n<|im_start|>assistant\n");
        return p;
    }

private:
    // The conv stem + stem_proj over the whole clip, in pieces of kStemPiece output frames so its memory does
    // not grow with the clip. Pieces overlap by one output frame on each side: with pieces aligned to 8 mel
    // frames only a piece's first and last outputs see the zero padding at its inner edges, and those are
    // taken from the neighbouring piece instead, so the result equals one pass over the whole clip.
    std::vector<float> run_stem(Compute& c, const float* mel, int T, int64_t n) const {
        // 64 output frames = 512 mel frames, about 5 s: the first conv's F32 output and the second conv's F16
        // im2col columns take ~17 MB per 64 frames (a 256-frame piece held ~270 MB at its peak).
        constexpr int64_t kStemPiece = 64;
        std::vector<float> out(static_cast<size_t>(n * hp_.d));
        for (int64_t k0 = 0; k0 < n; k0 += kStemPiece) {
            const int64_t k1 = std::min(n, k0 + kStemPiece);
            const int64_t lo = std::max<int64_t>(0, k0 - 1), hi = std::min(n, k1 + 1);
            const int64_t f0 = 8 * lo, f1 = std::min<int64_t>(T, 8 * hi), len = f1 - f0;
            std::vector<float> piece(static_cast<size_t>(len * hp_.n_mel));
            for (int f = 0; f < hp_.n_mel; ++f) {
                std::copy(mel + size_t(f) * T + f0, mel + size_t(f) * T + f1, piece.begin() + size_t(f) * len);
            }
            Compute::Graph g(c);
            ggml_context* ctx = g.ctx();
            ggml_tensor* h = stem_(ctx, g.input(GGML_TYPE_F32, {len, hp_.n_mel, 1, 1}, piece.data(), "mel"));
            if (h->ne[1] != hi - lo) throw Error("internal: stem piece length mismatch");
            h = nn::linear(ctx, ggml_reshape_2d(ctx, h, h->ne[0], hi - lo), stem_w_, stem_b_);
            g.run({h});
            const std::vector<float> rows = Compute::read(h);
            std::copy(rows.begin() + (k0 - lo) * hp_.d, rows.begin() + (k1 - lo) * hp_.d, out.begin() + k0 * hp_.d);
        }
        return out;
    }

    Hparams hp_{};
    nn::ConvStem stem_{};
    ggml_tensor *stem_w_ = nullptr, *stem_b_ = nullptr, *norm_w_ = nullptr, *norm_b_ = nullptr;
    std::vector<nn::EncoderLayer> layers_;
    nn::GatedMLP adapter_;
    std::vector<nn::GatedMLP> mergers_;
};

}  // namespace

// Free-form questions, timed lines on request; 1024 new tokens as the official inference code; 120 s passes
// (README, "Long audio"). quantize keeps the encoder, adapter and DeepStack mergers (the published MOSS-Audio
// quantizations do quantize the embedding and the untied lm_head).
extern const ModelSpec kMossAudioSpec;
const ModelSpec kMossAudioSpec{kArch, "MOSS-Audio", true, kTranscribeInstruction, kSystemPrompt, true,
                               "timed_lines", 1024, 120.0, {"enc.", "adapter.", "deepstack."}, {},
                               transcription_instruction, make_model<MossAudio>};

}  // namespace cm
