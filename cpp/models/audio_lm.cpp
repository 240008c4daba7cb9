#include "models/audio_lm.h"

#include <algorithm>
#include <cstdlib>
#include <functional>

#include "backend.h"
#include "errors.h"
#include "text/tokenizer.h"

namespace cm {

AudioLM::AudioLM(std::unique_ptr<ModelFile> f) : file_(std::move(f)) {}

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
std::function<bool(const std::string&)> device_tensors(const ModelFile& f, const Placement& pl) {
    const bool tied = f.find("llm.lm_head.weight") == nullptr;
    return [pl, tied](const std::string& name) {
        const std::string blk = "llm.blk.";
        if (name.compare(0, blk.size(), blk) == 0) {
            const int il = std::atoi(name.c_str() + blk.size());
            return il >= pl.n_layer - pl.n_gpu_layers;
        }
        if (!pl.full) return false;
        if (name == "llm.embed.weight") return tied;
        return true;
    };
}

}  // namespace

std::unique_ptr<AudioLM> AudioLM::load(const std::string& path, const LoadOptions& opts) {
    if (opts.n_gpu_layers < -1) throw InputError("n_gpu_layers must be >= -1 (-1 = all), got " + std::to_string(opts.n_gpu_layers));
    BackendChoice choice = choose_backend(opts.backend, opts.device);
    auto f = std::make_unique<ModelFile>(path);
    const std::string arch = f->arch();
    if (arch != "moss_transcribe" && arch != "moss_audio") {
        f->fail("architecture '" + arch + "' is not supported (expected moss_transcribe or moss_audio)");
    }
    Placement pl;
    pl.notice = choice.notice;
    ggml_backend_buffer_type_t buft = choice.device ? ggml_backend_dev_buffer_type(choice.device) : opts.test_offload_buft;
    if (buft && f->has_key(arch + ".llm.num_layers")) {
        // The layer count is validated again when the decoder loads; here it only sizes the split.
        pl.n_layer = f->u32_in(arch + ".llm.num_layers", 0, 0, 256);
        pl.n_gpu_layers = opts.n_gpu_layers < 0 ? pl.n_layer : std::min(opts.n_gpu_layers, pl.n_layer);
        pl.full = pl.n_gpu_layers == pl.n_layer;
        pl.backend = choice.backend;
        pl.device = choice.device;
        pl.device_bytes = f->offload(buft, device_tensors(*f, pl));
    }
    std::unique_ptr<AudioLM> m = arch == "moss_transcribe" ? load_moss_transcribe(std::move(f)) : load_moss_audio(std::move(f));
    pl.n_layer = m->lm().cfg.n_layer;
    m->placement_ = pl;
    return m;
}

}  // namespace cm
