// The interface both MOSS models implement: audio → embeddings for the decoder, and the prompt around them.
// Everything else (decoder, tokenizer, sampler, generate loop, sessions) is shared.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compute.h"
#include "model_file.h"
#include "nn/qwen3.h"

namespace cm {

class Tokenizer;

// Encoder output for one clip: rows spliced into the prompt, plus optional DeepStack rows per LM layer.
struct EncodedAudio {
    int n_audio = 0;
    int n_embd = 0;
    std::vector<float> embd;                   // [n_audio][n_embd]
    std::vector<std::vector<float>> deepstack;  // [k][n_audio][n_embd]
};

// What the caller asks for; each model maps it onto its official prompt format.
struct PromptRequest {
    std::string instruction;  // empty: the model's default task (transcription)
    bool timestamps = false;  // ask for the time-aware transcription (MOSS-Audio)
    bool time_markers = true;  // MOSS-Audio: digit markers every 2 s inside the audio span
};

struct Prompt {
    std::vector<int32_t> ids;        // audio positions hold the model's placeholder id
    std::vector<int32_t> audio_row;  // per position: encoder row, or -1
};

class AudioLM {
public:
    virtual ~AudioLM() = default;

    // Opens a GGUF of either architecture; throws ModelError for anything else.
    static std::unique_ptr<AudioLM> load(const std::string& path);

    virtual std::string arch() const = 0;
    // Number of audio rows the encoder yields for `n_frames` mel frames.
    virtual int n_audio_tokens(int n_frames) const = 0;
    virtual EncodedAudio encode(Compute& c, const float* mel, int n_frames) const = 0;
    virtual Prompt build_prompt(int n_audio, const PromptRequest& req) const = 0;
    virtual bool accepts_instructions() const = 0;
    virtual std::vector<int32_t> stop_ids() const = 0;

    const ModelFile& file() const { return *file_; }
    const Qwen3Weights& lm() const { return lm_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }

protected:
    explicit AudioLM(std::unique_ptr<ModelFile> f);
    void load_tokenizer(const std::vector<std::pair<int32_t, std::string>>& specials);

    std::unique_ptr<ModelFile> file_;
    Qwen3Weights lm_;
    std::shared_ptr<Tokenizer> tokenizer_;
};

std::unique_ptr<AudioLM> load_moss_transcribe(std::unique_ptr<ModelFile> f);
std::unique_ptr<AudioLM> load_moss_audio(std::unique_ptr<ModelFile> f);

}  // namespace cm
