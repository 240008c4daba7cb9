// A session holds one clip's encoder output and a KV cache. Requests on the same audio reuse the encoder
// output and every cached position their prompt shares with what the cache already holds, so a second
// question costs only its own tokens.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "compute.h"
#include "engine.h"
#include "models/audio_lm.h"
#include "text/sampler.h"

namespace cm {

struct GenerateParams {
    int max_new_tokens = 512;
    SamplingParams sampling;
    double timeout_s = 0.0;  // 0: none
    void validate() const;   // throws InputError: the one check of generation options (Python calls it too)
};

struct Timings {
    double mel_ms = 0, encode_ms = 0, prefill_ms = 0, decode_ms = 0;
    int n_prompt = 0, n_prefilled = 0, n_generated = 0;
};

struct GenerateResult {
    std::vector<int32_t> tokens;  // generated ids, stop token excluded
    std::string text;             // UTF-8 bytes of the generated ids, special tokens skipped
    std::string stop_reason;      // "stop", "length", "interrupted", "timeout"
    Timings timings;
};

// Called once per generated token with its new text (whole UTF-8 characters only; empty for special tokens and
// partial characters); returning false stops generation.
using PieceCallback = std::function<bool(const std::string&)>;
// Called at least every 100 ms while a request waits or runs; returning false stops it (interrupted).
using PollCallback = std::function<bool()>;

// The encoder pass and the generation run on the model's engine (shared by all its sessions, which are batched
// there); the session holds what belongs to its clip: mel, encoder output, KV cache, stage dumps.
class Session {
public:
    Session(std::shared_ptr<const AudioLM> model, std::shared_ptr<Engine> engine, ggml_type kv_type = GGML_TYPE_F16);

    // Round the log-mel to bfloat16 before the encoder, as the official processors do (default on).
    void set_mel_bf16(bool on) { mel_bf16_ = on; }
    // Computes the mel (the model's front end) and runs the encoder once; drops any cached prompt. Throws
    // InputError first when the clip's audio rows alone would fill the context (AudioLM::check_audio_fits).
    void set_audio(const float* pcm, size_t n_samples);
    bool has_audio() const { return has_audio_; }
    int n_audio() const { return enc_.n_audio; }
    double duration() const { return duration_; }

    Prompt prompt(const PromptRequest& req) const;
    GenerateResult generate(const PromptRequest& req, const GenerateParams& params, const PieceCallback& on_piece,
                            const PollCallback& poll = PollCallback());

    Dumps& dumps() { return dumps_; }
    int n_threads() const { return engine_->n_threads(); }
    const std::vector<float>& mel() const { return mel_; }
    int n_frames() const { return n_frames_; }
    const Timings& audio_timings() const { return audio_t_; }

private:
    std::shared_ptr<const AudioLM> model_;
    std::shared_ptr<Engine> engine_;
    ggml_type kv_type_;
    std::unique_ptr<KvCache> cache_;
    std::vector<int32_t> cached_ids_;    // what the cache holds, position by position (audio rows marked -2 - row)
    std::vector<int32_t> prompt_keys_;   // the last prefilled prompt and the logits of its last position
    std::vector<float> prompt_logits_;
    bool has_audio_ = false;
    bool mel_bf16_ = true;
    EncodedAudio enc_;
    std::vector<float> mel_;
    int n_frames_ = 0;
    double duration_ = 0;
    Timings audio_t_;
    Dumps dumps_;
};

}  // namespace cm
