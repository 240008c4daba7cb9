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
    std::string system;        // MOSS-Audio: the system turn's text (empty: "You are a helpful assistant.")
};

struct Prompt {
    std::vector<int32_t> ids;        // audio positions hold the model's placeholder id
    std::vector<int32_t> audio_row;  // per position: encoder row, or -1
};

// Where a model runs (see Model(backend=, device=, n_gpu_layers=) in Python).
struct LoadOptions {
    std::string backend = "auto";  // "auto", "cpu", "cuda", "metal"
    int device = 0;                // index among the backend's devices
    int n_gpu_layers = -1;         // LM layers on the device; -1 (or >= the layer count): everything
    // Tests without a GPU: with no device chosen, copy the weights a device would get into this (host)
    // memory instead, so the placement and copy path runs on any machine.
    ggml_backend_buffer_type_t test_offload_buft = nullptr;
    // Output head computed from a copy in this type made at load ("" keeps the file's). MOSS-Transcribe ties
    // its head to the F16 embedding: a Q8_0 copy halves the bytes the head reads per token, while the F16
    // table keeps serving embedding lookups (quantizing the table itself would corrupt inputs and logits).
    std::string head_type;
};

// What went where. Offloading the last n LM layers keeps the rest mmapped on the host; only a full offload
// also moves the encoder, adapter, final norm and output head (and a tied embedding) to the device.
struct Placement {
    std::string backend = "cpu";          // "cpu" when nothing runs on an accelerator
    ggml_backend_dev_t device = nullptr;  // the accelerator graphs are scheduled on, or nullptr
    int n_layer = 0;                      // LM layers in the model
    int n_gpu_layers = 0;                 // LM layers whose weights and KV cache live on the device
    bool full = false;                    // every weight on the device
    size_t device_bytes = 0;              // weight bytes copied to the device
    std::string notice;                   // "auto" fell back to the CPU (see BackendChoice)
    // Memory for layer il's KV cache.
    ggml_backend_buffer_type_t kv_buft(int il) const;
};

class AudioLM {
public:
    virtual ~AudioLM();

    // Opens a GGUF of either architecture; throws ModelError for anything else.
    static std::unique_ptr<AudioLM> load(const std::string& path, const LoadOptions& opts = LoadOptions());

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
    const Placement& placement() const { return placement_; }

protected:
    explicit AudioLM(std::unique_ptr<ModelFile> f);
    void load_tokenizer(const std::vector<std::pair<int32_t, std::string>>& specials);

    std::unique_ptr<ModelFile> file_;
    Qwen3Weights lm_;
    std::shared_ptr<Tokenizer> tokenizer_;
    Placement placement_;

private:
    void copy_head(const std::string& type);
    ggml_context* head_ctx_ = nullptr;
    ggml_backend_buffer_t head_buf_ = nullptr;
};

std::unique_ptr<AudioLM> load_moss_transcribe(std::unique_ptr<ModelFile> f);
std::unique_ptr<AudioLM> load_moss_audio(std::unique_ptr<ModelFile> f);

}  // namespace cm
