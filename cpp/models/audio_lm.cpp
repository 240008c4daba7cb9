#include "models/audio_lm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "backend.h"
#include "cpu/head_screen.h"
#include "cpu/level.h"
#include "ggml-backend.h"
#include "nn/layers.h"
#include "errors.h"
#include "quantize.h"
#include "text/tokenizer.h"

namespace cm {

AudioLM::AudioLM(std::unique_ptr<ModelFile> f) : file_(std::move(f)) {}

int AudioLM::n_audio_tokens_for(size_t n_samples) const {
    const size_t frames = n_samples / static_cast<size_t>(mel_.hop);
    return n_audio_tokens(static_cast<int>(std::min<size_t>(frames, size_t(1) << 30)));
}

void AudioLM::check_audio_fits(size_t n_samples) const {
    const int n_audio = n_audio_tokens_for(n_samples);
    const int n_ctx = lm_.cfg.n_ctx_train;
    if (n_audio < n_ctx) return;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f", static_cast<double>(n_samples) / mel_.sample_rate);
    throw InputError(std::string(secs) + " s of audio is " + std::to_string(n_audio) +
                     " audio tokens but the model's context is " + std::to_string(n_ctx) +
                     " tokens; use Model.transcribe (it splits long audio) or a shorter clip");
}

const Qwen3Names& ModelSpec::decoder_names() const {
    static const Qwen3Names ours;
    return lm_names ? *lm_names : ours;
}

std::string AudioLM::instruction(const PromptRequest& req) const {
    if (!req.hotwords.empty()) {
        if (!spec().hotwords) {
            throw InputError(spec().name + " does not take hotwords; use a " +
                             model_names([](const ModelSpec& s) { return s.hotwords; }) + " model for hotwords");
        }
        for (const std::string& w : req.hotwords) {
            if (w.find_first_not_of(" \t\r\n") == std::string::npos) throw InputError("a hotword is empty");
        }
    }
    if (req.timestamps && !spec().timestamps) {
        throw InputError(spec().name + " writes no timestamps; use a " +
                         model_names([](const ModelSpec& s) { return s.timestamps; }) + " model for timestamps=True");
    }
    if (!req.instruction.empty()) {
        if (!req.language.empty()) throw InputError("a language hint applies to transcription, not to an instruction");
        return req.instruction;
    }
    return spec().transcription_instruction(req.language.empty() ? std::string() : language_name(req.language),
                                            req.timestamps);
}

void AudioLM::load_tokenizer(const std::vector<std::pair<int32_t, std::string>>& specials) {
    std::vector<std::string> tokens = file_->str_array("tokenizer.ggml.tokens");
    std::vector<std::string> merges = file_->str_array("tokenizer.ggml.merges");
    if (static_cast<int>(tokens.size()) != lm_.cfg.n_vocab) {
        file_->fail("tokenizer.ggml.tokens has " + std::to_string(tokens.size()) + " entries but the vocabulary has " +
                    std::to_string(lm_.cfg.n_vocab));
    }
    try {
        // The first special token (<|endoftext|>) ends the byte-level vocabulary.
        int32_t first_special = lm_.cfg.n_vocab;
        for (const auto& sp : specials) first_special = std::min(first_special, sp.first);
        tokenizer_ = std::make_shared<Tokenizer>(std::move(tokens), std::move(merges), static_cast<size_t>(first_special));
        for (const auto& [id, text] : specials) {
            if (id < 0 || id >= lm_.cfg.n_vocab) file_->fail("special token id " + std::to_string(id) + " is outside the vocabulary");
            tokenizer_->set_special(id, text);
        }
    } catch (const ModelError& e) {
        // The tokenizer's own errors do not know the file; name it like every other load error.
        const std::string what = e.what();
        if (what.compare(0, file_->path().size() + 2, file_->path() + ": ") == 0) throw;
        file_->fail(what);
    } catch (const std::exception& e) {
        file_->fail(std::string("bad tokenizer data: ") + e.what());
    }
}

ggml_backend_buffer_type_t Placement::kv_buft(int il) const {
    if (device && il >= n_layer - n_gpu_layers) return ggml_backend_dev_buffer_type(device);
    return ggml_backend_cpu_buffer_type();
}

namespace {

// Which tensors go to the device: LM layers [n_layer - n_gpu, n_layer) and, for a full offload, everything
// (the token embedding only where it doubles as the output head; otherwise its lookups stay on the host).
std::function<bool(const std::string&)> device_tensors(const ModelFile& f, const Placement& pl, const Qwen3Names& n) {
    const bool tied = f.find(n.head) == nullptr;
    const std::string blk = n.blk, embed = n.embed;
    return [pl, tied, blk, embed](const std::string& name) {
        if (name.compare(0, blk.size(), blk) == 0) {
            const int il = std::atoi(name.c_str() + blk.size());
            return il >= pl.n_layer - pl.n_gpu_layers;
        }
        if (!pl.full) return false;
        if (name == embed) return tied;
        return true;
    };
}

}  // namespace

void AudioLM::check_front_end() const {
    auto floats = [this](const ggml_tensor* t) {
        if (t->type != GGML_TYPE_F32) file_->fail(std::string("tensor '") + t->name + "' must be f32");
        return file_->floats(t);
    };
    if (const ggml_tensor* t = file_->find("audio.mel_filters")) {
        if (ggml_n_dims(t) != 2) file_->fail("tensor 'audio.mel_filters' must be 2-D (n_mel, n_freq)");
        const std::string bad = mel_filters_mismatch(floats(t).data(), t->ne[0], t->ne[1], mel_);
        if (!bad.empty()) file_->fail(bad);
    }
    if (const ggml_tensor* t = file_->find("audio.mel_window")) {
        if (ggml_n_dims(t) != 1) file_->fail("tensor 'audio.mel_window' must be 1-D");
        const std::string bad = mel_window_mismatch(floats(t).data(), t->ne[0], mel_);
        if (!bad.empty()) file_->fail(bad);
    }
}

AudioLM::~AudioLM() {
    for (ggml_tensor* t : file_->tensors()) nn::amx_attach(t, nullptr);
    if (head_buf_) ggml_backend_buffer_free(head_buf_);
    if (head_ctx_) ggml_free(head_ctx_);
}

void AudioLM::copy_head(const std::string& type_name) {
    const ggml_type type = parse_quant_type(type_name);
    ggml_tensor* src = lm_.head;
    if (src->type == type) return;
    if (!src->buffer || !ggml_backend_buffer_is_host(src->buffer)) {
        throw InputError("head_type needs the output head in host memory (it is offloaded to " + placement_.backend + ")");
    }
    if (ggml_is_quantized(src->type) && ggml_is_quantized(type)) {
        throw InputError(std::string("the output head is already ") + ggml_type_name(src->type) + "; head_type re-quantizes F16/F32 heads only");
    }
    const int64_t n_in = src->ne[0], n_rows = src->ne[1];
    if (n_in % ggml_blck_size(type) != 0) {
        throw InputError("head_type " + type_name + " needs rows of a multiple of " + std::to_string(ggml_blck_size(type)) + " values");
    }
    ggml_init_params p{ggml_tensor_overhead(), nullptr, true};
    head_ctx_ = ggml_init(p);
    ggml_tensor* dst = ggml_new_tensor_2d(head_ctx_, type, n_in, n_rows);
    ggml_set_name(dst, "llm.head.copy");
    head_buf_ = ggml_backend_alloc_ctx_tensors_from_buft(head_ctx_, ggml_backend_cpu_buffer_type());
    if (!head_buf_) throw InputError("cannot allocate the output-head copy");
    std::vector<float> scratch;
    const int64_t block = std::max<int64_t>(1, (int64_t(8) << 20) / n_in);  // ~32 MB of F32 at a time
    for (int64_t r0 = 0; r0 < n_rows; r0 += block) {
        const int64_t rows = std::min(block, n_rows - r0);
        convert_rows(static_cast<const char*>(src->data) + r0 * src->nb[1], src->type,
                     static_cast<char*>(dst->data) + r0 * dst->nb[1], type, rows, n_in, 0, scratch);
    }
    lm_.head = dst;
    // From now on the F16/F32 table serves at most embedding lookups (a few rows per step): its pages, all read
    // once for the copy, need not stay resident. This makes the copy cost its own size minus the table's.
    file_->release_pages(src->data, ggml_nbytes(src));
}

void AudioLM::pack_for_amx() {
    const char* mode = std::getenv("CRISPMOSS_AMX");
    std::string m = mode ? mode : "";
    if (m != "" && m != "bf16" && m != "split" && m != "off" && m != "0") {
        std::fprintf(stderr, "crispmoss: unknown CRISPMOSS_AMX=%s (bf16|split|off); using bf16\n", m.c_str());
        m = "bf16";
    }
    if (m == "off" || m == "0" || cpu::active_level() != cpu::Level::amx || !cpu::amx_usable()) return;
    const bool split = m == "split";
    // The audio side: what the quantizer keeps at source precision (encoder, adapter/adaptor, mergers).
    auto audio_side = [&](const std::string& name) {
        bool audio = false;
        for (const std::string& p : spec().keep_prefixes) audio = audio || name.rfind(p, 0) == 0;
        return audio;
    };
    for (ggml_tensor* t : file_->tensors()) {
        const std::string name = ggml_get_name(t);
        if (!audio_side(name) || t->type != GGML_TYPE_F16 || !t->buffer || !ggml_backend_buffer_is_host(t->buffer)) continue;
        const bool conv = ggml_n_dims(t) == 4 && t->ne[0] == 3 && t->ne[1] == 3;  // [3, 3, C, OC] kernels
        if (!conv && ggml_n_dims(t) != 2) continue;
        const int64_t rows = conv ? t->ne[3] : t->ne[1], k = conv ? 9 * t->ne[2] : t->ne[0];
        auto pw = cpu::amx_pack_f16(t->data, conv ? t->nb[3] : t->nb[1], rows, k, split, conv ? t->ne[2] : 0);
        if (!pw) throw InputError("cannot allocate the AMX copy of " + name);
        placement_.amx_bytes += pw->bytes();
        nn::amx_attach(t, pw.get());
        amx_.push_back(std::move(pw));
        // Every product of t now reads the copy: its F16 pages (read once for it) need not stay resident.
        file_->release_pages(t->data, ggml_nbytes(t));
    }
    // The LM's matrices (Q4_K/Q8_0/F16/BF16, host memory): prefill products on the tiles, dequantized block by
    // block per product (cpu/amx_dequant.h), no copy. Not with `split` (it promises about F16 accuracy; BF16
    // weights-after-dequant do not give that): the LM keeps the matrix-vector kernels and ggml's there.
    if (split) return;
    for (ggml_tensor* t : file_->tensors()) {
        if (!audio_side(ggml_get_name(t)) && nn::amx_attach_dequant(t)) ++placement_.amx_prefill_weights;
    }
}

std::unique_ptr<AudioLM> AudioLM::load(const std::string& path, const LoadOptions& opts) {
    if (opts.n_gpu_layers < -1) throw InputError("n_gpu_layers must be >= -1 (-1 = all), got " + std::to_string(opts.n_gpu_layers));
    BackendChoice choice = choose_backend(opts.backend, opts.device);
    auto f = std::make_unique<ModelFile>(path);
    const std::string arch = f->arch();
    const ModelSpec* spec = find_model_spec(arch);
    if (!spec) {
        std::string known;
        for (const ModelSpec* s : model_specs()) known += (known.empty() ? "" : " or ") + s->arch;
        f->fail("architecture '" + arch + "' is not supported (expected " + known + ")");
    }
    Placement pl;
    pl.notice = choice.notice;
    ggml_backend_buffer_type_t buft = choice.device ? ggml_backend_dev_buffer_type(choice.device) : opts.test_offload_buft;
    const Qwen3Names& names = spec->decoder_names();
    const std::string layers_key = spec->prefix() + "." + names.num_layers;
    if (buft && f->has_key(layers_key)) {
        // The layer count is validated again when the decoder loads; here it only sizes the split.
        pl.n_layer = f->u32_in(layers_key, 0, 0, 256);
        pl.n_gpu_layers = opts.n_gpu_layers < 0 ? pl.n_layer : std::min(opts.n_gpu_layers, pl.n_layer);
        pl.full = pl.n_gpu_layers == pl.n_layer;
        pl.backend = choice.backend;
        pl.device = choice.device;
        pl.device_bytes = f->offload(buft, device_tensors(*f, pl, names));
    }
    std::unique_ptr<AudioLM> m = spec->load(std::move(f));
    m->spec_ = spec;
    m->check_front_end();
    pl.n_layer = m->lm().cfg.n_layer;
    m->placement_ = pl;
    if (!opts.head_type.empty()) m->copy_head(opts.head_type);
    m->pack_for_amx();
    // Greedy decode steps may screen the head on the tiles (nn/head.h): its per-row norms, once.
    if (auto hn = nn::head_screen_prepare(m->lm_.head)) {
        m->placement_.head_screen_bytes = hn->bytes();
        m->lm_.head_norms = std::move(hn);
    }
    return m;
}

}  // namespace cm
