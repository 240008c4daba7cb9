#include "models/audio_lm.h"

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
        tokenizer_ = std::make_shared<Tokenizer>(std::move(tokens), std::move(merges));
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

std::unique_ptr<AudioLM> AudioLM::load(const std::string& path) {
    auto f = std::make_unique<ModelFile>(path);
    const std::string arch = f->arch();
    if (arch == "moss_transcribe") return load_moss_transcribe(std::move(f));
    if (arch == "moss_audio") return load_moss_audio(std::move(f));
    f->fail("architecture '" + arch + "' is not supported (expected moss_transcribe or moss_audio)");
}

}  // namespace cm
