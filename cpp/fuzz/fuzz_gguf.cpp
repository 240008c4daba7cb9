// libFuzzer target: arbitrary bytes as a model file. The loader (our header walk, ggml's gguf reader, typed
// keys, tensor checks, hyper-parameters, tokenizer construction) must either load or throw cm::ModelError;
// any other exception, an abort, a sanitizer report or a leak is a finding.
//
// The bytes go through a file in /dev/shm because the loader maps files (that path is what users run).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "errors.h"
#include "models/audio_lm.h"
#include "text/tokenizer.h"

namespace {

std::string scratch_path() {
    const char* dir = std::getenv("CRISPMOSS_FUZZ_TMP");
    return std::string(dir ? dir : "/dev/shm") + "/crispmoss-fuzz-gguf-" + std::to_string(::getpid()) + ".gguf";
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = scratch_path();
    write_file(path, data, size);
    try {
        std::unique_ptr<cm::AudioLM> m = cm::AudioLM::load(path);
        // A model that loads must answer the cheap questions without surprises.
        (void)m->n_audio_tokens(3000);
        cm::PromptRequest req;
        if (m->accepts_instructions()) req.instruction = "Describe the audio.";
        cm::Prompt p = m->build_prompt(m->n_audio_tokens(1000), req);
        if (p.ids.size() != p.audio_row.size()) __builtin_trap();
        for (int32_t id : p.ids)
            if (id < 0 || id >= m->lm().cfg.n_vocab) __builtin_trap();
        (void)m->tokenizer().encode("hello <|im_end|> world", true);
    } catch (const cm::ModelError&) {
    }
    return 0;
}
