// What a model is: its registry entry (ModelSpec: the facts of an architecture, declared in its model file) and
// the interface every model implements (AudioLM: audio → embeddings for the decoder, and the prompt around them).
// Everything else (decoder, tokenizer, sampler, generate loop, sessions) is shared. registry.cpp lists the models.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "audio/mel.h"
#include "compute.h"
#include "cpu/amx.h"
#include "model_file.h"
#include "nn/qwen3.h"

namespace cm {

class Tokenizer;
class AudioLM;

// One architecture, declared once in its model file (cpp/models/<model>.cpp) and listed in registry.cpp.
struct ModelSpec {
    std::string arch;  // GGUF general.architecture
    std::string name;  // product name in messages, e.g. "MOSS-Transcribe"
    bool accepts_instructions = false;  // free-form prompts (else transcription only)
    // The instruction a prompt without one gets and the default system prompt ("" = the model's template has
    // none); crispmoss.server continues a conversation from the former.
    std::string default_instruction, system_prompt;
    bool timestamps = false;            // writes timed lines on request (PromptRequest::timestamps)
    // How the answer with timestamps is parsed in Python (crispmoss.results): "timed_lines", "diarized" (always
    // timed: [start][Sxx]text[end] segments, whatever the request's timestamps flag), or "text".
    std::string timed_output = "text";
    int max_new_tokens = 512;   // default generation length of the official inference code
    double pass_seconds = 30;   // single-pass length: longer audio is split into passes (crispmoss.longform)
    // quantize keeps these at their source precision: whole sub-networks by name prefix, single tensors by name
    std::vector<std::string> keep_prefixes, keep_names;
    // The instruction of a transcription request with an optional language hint (a name from language_name();
    // "" = none): "" for the model's official default. Throws InputError for a request the model cannot take.
    std::string (*transcription_instruction)(const std::string& language, bool timestamps) = nullptr;
    std::unique_ptr<AudioLM> (*load)(std::unique_ptr<ModelFile> f) = nullptr;
    bool hotwords = false;  // takes PromptRequest::hotwords (names and terms to spell as given)
    // The GGUF schema: hyper-parameter keys under "<key_prefix>." (nullptr: the arch name) and the decoder's names.
    const char* key_prefix = nullptr;
    const Qwen3Names* lm_names = nullptr;  // nullptr: Qwen3Names()

    std::string prefix() const { return key_prefix ? key_prefix : arch; }
    const Qwen3Names& decoder_names() const;
};

// ModelSpec::load for a model class constructed from its file.
template <class M>
std::unique_ptr<AudioLM> make_model(std::unique_ptr<ModelFile> f) {
    return std::make_unique<M>(std::move(f));
}

// The registered models, and the one for a GGUF architecture (nullptr if none).
const std::vector<const ModelSpec*>& model_specs();
const ModelSpec* find_model_spec(const std::string& arch);
// The names of the registered models that `pred` accepts, joined with " or " (for messages).
std::string model_names(bool (*pred)(const ModelSpec&));

// The English name of a language given as an ISO 639 code ("de") or a name ("german", "Deutsch" stays as given,
// capitalised); throws InputError for anything that is not a plausible language name.
std::string language_name(const std::string& language);

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
    std::string language;     // transcription only: a language hint (see ModelSpec::transcription_instruction)
    bool time_markers = true;  // MOSS-Audio: digit markers every 2 s inside the audio span
    std::string system;        // MOSS-Audio: the system turn's text (empty: "You are a helpful assistant.")
    std::vector<std::string> hotwords;  // ModelSpec::hotwords models only: names and terms, each non-empty
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
    size_t amx_bytes = 0;                 // host bytes of the weights' AMX copies (AudioLM::pack_for_amx)
    size_t head_screen_bytes = 0;         // host bytes of the head's norms for screened greedy steps (nn/head.h)
    int amx_prefill_weights = 0;          // LM matrices whose prefill products run on the tiles (no copy)
    std::string notice;                   // "auto" fell back to the CPU (see BackendChoice)
    // Memory for layer il's KV cache.
    ggml_backend_buffer_type_t kv_buft(int il) const;
};

class AudioLM {
public:
    virtual ~AudioLM();

    // Opens a GGUF of a registered architecture; throws ModelError for anything else.
    static std::unique_ptr<AudioLM> load(const std::string& path, const LoadOptions& opts = LoadOptions());

    const ModelSpec& spec() const { return *spec_; }
    const std::string& arch() const { return spec_->arch; }
    // The model's mel front end (from its GGUF hyper-parameters).
    const MelSpec& mel_spec() const { return mel_; }
    // Number of audio rows the encoder yields for `n_frames` mel frames.
    virtual int n_audio_tokens(int n_frames) const = 0;
    // ... and for a clip of n_samples samples, without running anything (models whose count depends on the
    // samples, not only the frames, override it).
    virtual int n_audio_tokens_for(size_t n_samples) const;
    // The context check, once for every path (sessions, prompt_ids): throws InputError when a clip of n_samples
    // samples gives more audio rows than the decoder's context holds.
    void check_audio_fits(size_t n_samples) const;
    // The mel of a clip of n_samples samples (log_mel with mel_spec()): n_frames frames, [n_mel][n_frames].
    virtual EncodedAudio encode(Compute& c, const float* mel, int n_frames, size_t n_samples) const = 0;
    // The prompt around n_audio audio rows; an empty instruction asks for a transcription (with the request's
    // language hint). Throws InputError for a request the model cannot take.
    virtual Prompt build_prompt(int n_audio, const PromptRequest& req) const = 0;
    virtual std::vector<int32_t> stop_ids() const = 0;

    const ModelFile& file() const { return *file_; }
    const Qwen3Weights& lm() const { return lm_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const Placement& placement() const { return placement_; }

protected:
    explicit AudioLM(std::unique_ptr<ModelFile> f);
    // The transcription instruction for req (its own, or the model's for its language and timestamps).
    std::string instruction(const PromptRequest& req) const;
    void load_tokenizer(const std::vector<std::pair<int32_t, std::string>>& specials);

    std::unique_ptr<ModelFile> file_;
    Qwen3Weights lm_;
    std::shared_ptr<Tokenizer> tokenizer_;
    Placement placement_;
    MelSpec mel_;

private:
    const ModelSpec* spec_ = nullptr;
    void copy_head(const std::string& type);
    // At the amx CPU level (cpu/amx.h): the encoder's, adapters' and DeepStack mergers' F16 matrices and conv
    // kernels (host memory) copied to the tiles' BF16 layout, their products routed there (nn::amx_attach), and
    // the F16 pages released (nothing else reads them); the LM's Q4_K/Q8_0/F16/BF16 matrices routed to the tiles
    // for prefill-sized products, dequantized per product (nn::amx_attach_dequant, no copy). CRISPMOSS_AMX=split:
    // the exact split for the audio side and today's kernels for the LM, =off: none.
    void pack_for_amx();
    std::vector<std::unique_ptr<cpu::AmxMatrix>> amx_;
    // The file's optional audio.mel_filters / audio.mel_window (written by converters, published files carry them)
    // must be the front end mel_ computes; otherwise ModelError (another front end would be silently mis-read).
    void check_front_end() const;
    ggml_context* head_ctx_ = nullptr;
    ggml_backend_buffer_t head_buf_ = nullptr;
};


}  // namespace cm
