#include "session.h"

#include <algorithm>

#include "audio/mel.h"
#include "errors.h"
#include "text/tokenizer.h"

namespace cm {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// One id per position that tells audio rows apart from text, for prefix matching against the cache.
std::vector<int32_t> position_keys(const Prompt& p) {
    std::vector<int32_t> keys(p.ids.size());
    for (size_t i = 0; i < p.ids.size(); ++i) keys[i] = p.audio_row[i] >= 0 ? -2 - p.audio_row[i] : p.ids[i];
    return keys;
}

}  // namespace

Session::Session(std::shared_ptr<const AudioLM> model, int n_threads, ggml_type kv_type)
    : model_(std::move(model)), compute_(n_threads, model_->placement().device), kv_type_(kv_type) {}

void Session::set_audio(const float* pcm, size_t n_samples) {
    auto t0 = Clock::now();
    MelSpectrogram mel = log_mel(pcm, n_samples, compute_.n_threads());
    // The official processors hand the encoder a bfloat16 mel; rounding here keeps us on the same inputs.
    if (mel_bf16_) {
        for (float& v : mel.data) v = ggml_bf16_to_fp32(ggml_fp32_to_bf16(v));
    }
    audio_t_ = Timings{};
    audio_t_.mel_ms = ms_since(t0);
    mel_ = std::move(mel.data);
    n_frames_ = mel.n_frames;
    duration_ = static_cast<double>(n_samples) / kMelSampleRate;
    t0 = Clock::now();
    enc_ = model_->encode(compute_, mel_.data(), n_frames_);
    audio_t_.encode_ms = ms_since(t0);
    if (compute_.dumps_enabled()) compute_.dumps()["mel"] = HostTensor{{n_frames_, mel.n_mel}, mel_};
    has_audio_ = true;
    cached_ids_.clear();
    prompt_keys_.clear();
    prompt_logits_.clear();
    if (cache_) cache_->n_past = 0;
}

Prompt Session::prompt(const PromptRequest& req) const {
    if (!has_audio_) throw InputError("the session has no audio");
    return model_->build_prompt(enc_.n_audio, req);
}

GenerateResult Session::generate(const PromptRequest& req, const GenerateParams& params, const PieceCallback& on_piece) {
    params.sampling.validate();
    if (params.max_new_tokens < 0) throw InputError("max_new_tokens must be >= 0");
    const Prompt p = prompt(req);
    const Qwen3Config& cfg = model_->lm().cfg;
    const int n_prompt = static_cast<int>(p.ids.size());
    const int n_need = n_prompt + params.max_new_tokens;
    if (n_prompt >= cfg.n_ctx_train) {
        throw InputError("the prompt is " + std::to_string(n_prompt) + " tokens long but the model's context is " +
                         std::to_string(cfg.n_ctx_train) + " tokens; shorten the audio or the instruction");
    }
    const int n_ctx = std::min(cfg.n_ctx_train, n_need);
    if (!cache_ || cache_->n_ctx() < n_ctx) {
        // Grow in steps so a few more tokens next time do not reallocate again.
        const int alloc = std::min(cfg.n_ctx_train, ((n_ctx + 255) / 256) * 256);
        std::vector<ggml_backend_buffer_type_t> where(cfg.n_layer);
        for (int il = 0; il < cfg.n_layer; ++il) where[il] = model_->placement().kv_buft(il);
        cache_.reset();  // free the old cache first: device memory may not hold both
        cache_ = std::make_unique<KvCache>(cfg, alloc, kv_type_, where);
        cached_ids_.clear();
        prompt_keys_.clear();
        prompt_logits_.clear();
    }
    // Reuse the longest cached prefix. The same prompt again reuses the logits its prefill produced (a lone
    // recomputation of the last position would round differently and could flip a greedy near-tie); any other
    // prompt recomputes at least its last position.
    const std::vector<int32_t> keys = position_keys(p);
    size_t lcp = 0;
    while (lcp < cached_ids_.size() && lcp < keys.size() && cached_ids_[lcp] == keys[lcp]) ++lcp;
    const bool same_prompt = lcp == keys.size() && keys == prompt_keys_ && !prompt_logits_.empty();
    if (!same_prompt) lcp = std::min(lcp, keys.size() - 1);
    cache_->n_past = static_cast<int>(lcp);
    cached_ids_.resize(lcp);

    GenerateResult res;
    res.timings = audio_t_;
    res.timings.n_prompt = n_prompt;
    res.timings.n_prefilled = n_prompt - static_cast<int>(lcp);
    const auto t_start = Clock::now();
    auto t0 = t_start;
    std::vector<float> logits;
    if (same_prompt) {
        logits = prompt_logits_;
    } else {
        DecoderInput in;
        in.ids.assign(p.ids.begin() + lcp, p.ids.end());
        in.audio_row.assign(p.audio_row.begin() + lcp, p.audio_row.end());
        in.audio = enc_.embd.data();
        for (const auto& d : enc_.deepstack) in.deepstack.push_back(d.data());
        logits = decoder_forward(compute_, model_->lm(), *cache_, in);
        cached_ids_.insert(cached_ids_.end(), keys.begin() + lcp, keys.end());
        prompt_keys_ = keys;
        prompt_logits_ = logits;
    }
    res.timings.prefill_ms = ms_since(t0);
    if (compute_.dumps_enabled()) compute_.dumps()["logits"] = HostTensor{{static_cast<int64_t>(logits.size())}, logits};

    // Stage dumps describe the prefill; decode steps must not overwrite them.
    const bool dumps_were_on = compute_.dumps_enabled();
    compute_.enable_dumps(false);
    t0 = Clock::now();
    const Tokenizer& tok = model_->tokenizer();
    const std::vector<int32_t> stops = model_->stop_ids();
    std::vector<int32_t> history;
    for (size_t i = 0; i < p.ids.size(); ++i)
        if (p.audio_row[i] < 0) history.push_back(p.ids[i]);
    Sampler sampler(params.sampling);
    Utf8Stream utf8;
    res.stop_reason = "length";
    for (int step = 0; step < params.max_new_tokens; ++step) {
        const int32_t id = sampler.sample(logits, history);
        if (std::find(stops.begin(), stops.end(), id) != stops.end()) {
            res.stop_reason = "stop";
            break;
        }
        res.tokens.push_back(id);
        history.push_back(id);
        // The callback runs every step, with an empty piece for special tokens and partial characters, so an
        // interruption is seen even while the model emits no text.
        const std::string piece = tok.is_special(id) ? std::string() : utf8.push(tok.decode({id}));
        res.text += piece;
        if (on_piece && !on_piece(piece)) {
            res.stop_reason = "interrupted";
            break;
        }
        if (params.timeout_s > 0 && ms_since(t_start) > params.timeout_s * 1000.0) {
            res.stop_reason = "timeout";
            break;
        }
        if (step + 1 == params.max_new_tokens || cache_->n_past >= cache_->n_ctx()) break;
        DecoderInput next;
        next.ids = {id};
        next.audio_row = {-1};
        logits = decoder_forward(compute_, model_->lm(), *cache_, next);
        cached_ids_.push_back(id);
    }
    const std::string tail = utf8.flush();
    if (!tail.empty()) {
        res.text += tail;
        if (on_piece) on_piece(tail);
    }
    compute_.enable_dumps(dumps_were_on);
    res.timings.n_generated = static_cast<int>(res.tokens.size());
    res.timings.decode_ms = ms_since(t0);
    return res;
}

}  // namespace cm
