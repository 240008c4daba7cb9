#include "session.h"

#include <algorithm>
#include <cmath>

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

void GenerateParams::validate() const {
    sampling.validate();
    if (max_new_tokens < 0) throw InputError("max_new_tokens must be >= 0, got " + std::to_string(max_new_tokens));
    if (!(timeout_s >= 0.0) || !std::isfinite(timeout_s)) throw InputError("timeout must be > 0 seconds");
}

Session::Session(std::shared_ptr<const AudioLM> model, std::shared_ptr<Engine> engine, ggml_type kv_type)
    : model_(std::move(model)), engine_(std::move(engine)), kv_type_(kv_type) {
    if (!engine_ || &engine_->model() != model_.get()) throw Error("internal: a session needs its model's engine");
}

void Session::set_audio(const float* pcm, size_t n_samples) {
    model_->check_audio_fits(n_samples);
    const MelSpec& spec = model_->mel_spec();
    auto t0 = Clock::now();
    MelSpectrogram mel = log_mel(pcm, n_samples, spec, engine_->n_threads());
    // The official processors hand the encoder a bfloat16 mel; rounding here keeps us on the same inputs.
    if (mel_bf16_) {
        for (float& v : mel.data) v = ggml_bf16_to_fp32(ggml_fp32_to_bf16(v));
    }
    has_audio_ = false;
    cached_ids_.clear();
    prompt_keys_.clear();
    prompt_logits_.clear();
    if (cache_) cache_->n_past = 0;
    audio_t_ = Timings{};
    audio_t_.mel_ms = ms_since(t0);
    mel_ = std::move(mel.data);
    n_frames_ = mel.n_frames;
    duration_ = static_cast<double>(n_samples) / spec.sample_rate;
    t0 = Clock::now();
    // The encoder runs on the engine's worker, between other sessions' decode steps.
    engine_->run_job([&](Compute& c) { enc_ = model_->encode(c, mel_.data(), n_frames_, n_samples); }, &dumps_);
    audio_t_.encode_ms = ms_since(t0);
    if (dumps_.on) dumps_.tensors["mel"] = HostTensor{{n_frames_, mel.n_mel}, mel_};
    has_audio_ = true;
}

Prompt Session::prompt(const PromptRequest& req) const {
    if (!has_audio_) throw InputError("the session has no audio");
    return model_->build_prompt(enc_.n_audio, req);
}

GenerateResult Session::generate(const PromptRequest& req, const GenerateParams& params, const PieceCallback& on_piece,
                                 const PollCallback& poll) {
    params.validate();
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

    SeqRequest sr;
    sr.cache = cache_.get();
    sr.cache_keys = &cached_ids_;
    if (same_prompt) {
        sr.logits = prompt_logits_;
        if (dumps_.on) {
            dumps_.tensors["logits"] = HostTensor{{static_cast<int64_t>(prompt_logits_.size())}, prompt_logits_};
        }
    } else {
        sr.prefill.ids.assign(p.ids.begin() + lcp, p.ids.end());
        sr.prefill.audio_row.assign(p.audio_row.begin() + lcp, p.audio_row.end());
        sr.prefill.audio = enc_.embd.data();
        for (const auto& d : enc_.deepstack) sr.prefill.deepstack.push_back(d.data());
        sr.prefill_keys.assign(keys.begin() + lcp, keys.end());
        // The prompt's keys stand for the cached logits only once its prefill has run to the end.
        prompt_keys_.clear();
        prompt_logits_.clear();
    }
    for (size_t i = 0; i < p.ids.size(); ++i)
        if (p.audio_row[i] < 0) sr.history.push_back(p.ids[i]);
    sr.stops = model_->stop_ids();
    sr.sampling = params.sampling;
    sr.max_new_tokens = params.max_new_tokens;
    sr.timeout_s = params.timeout_s;
    sr.dumps = &dumps_;

    GenerateResult res;
    res.timings = audio_t_;
    res.timings.n_prompt = n_prompt;
    res.timings.n_prefilled = n_prompt - static_cast<int>(lcp);
    const Tokenizer& tok = model_->tokenizer();
    Utf8Stream utf8;
    // The callback runs every token, with an empty piece for special tokens and partial characters, so an
    // interruption is seen even while the model emits no text.
    auto on_token = [&](int32_t id) {
        const std::string piece = tok.is_special(id) ? std::string() : utf8.push(tok.decode({id}));
        res.text += piece;
        return !on_piece || on_piece(piece);
    };
    EngineResult er = engine_->generate(std::move(sr), on_token, poll);
    if (!er.prompt_logits.empty()) {
        prompt_keys_ = keys;
        prompt_logits_ = std::move(er.prompt_logits);
    }
    const std::string tail = utf8.flush();
    if (!tail.empty()) {
        res.text += tail;
        if (on_piece) on_piece(tail);
    }
    res.tokens = std::move(er.tokens);
    res.stop_reason = er.stop_reason;
    res.timings.prefill_ms = er.prefill_ms;
    res.timings.decode_ms = er.decode_ms;
    res.timings.n_generated = static_cast<int>(res.tokens.size());
    return res;
}

}  // namespace cm
