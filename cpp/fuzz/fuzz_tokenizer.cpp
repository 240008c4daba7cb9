// libFuzzer target: the Qwen byte-level BPE tokenizer (real vocabulary, loaded once from a GGUF) on
// arbitrary bytes. Oracles: decode(encode(x)) == x with and without special-token matching, pre-tokens tile
// the input, every id is in range, arbitrary ids decode or throw cm::InputError, and Utf8Stream fed in random
// pieces equals an independent UTF-8 "replace" decoder (maximal-subpart rule, as Python's).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "gguf.h"
#include "text/tokenizer.h"

namespace {

cm::Tokenizer* g_tok = nullptr;

std::vector<std::string> read_array(gguf_context* g, const char* key) {
    const int64_t k = gguf_find_key(g, key);
    if (k < 0 || gguf_get_kv_type(g, k) != GGUF_TYPE_ARRAY || gguf_get_arr_type(g, k) != GGUF_TYPE_STRING) {
        std::fprintf(stderr, "fuzz_tokenizer: vocabulary file lacks %s\n", key);
        std::exit(2);
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < gguf_get_arr_n(g, k); ++i) out.emplace_back(gguf_get_arr_str(g, k, i));
    return out;
}

// U+FFFD per maximal ill-formed subpart (Unicode 3.9 / WHATWG / Python errors="replace").
std::string reference_replace(const std::string& s) {
    static const char kRep[] = "\xEF\xBF\xBD";
    std::string out;
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        const uint8_t b = static_cast<uint8_t>(s[i]);
        int need = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            out += static_cast<char>(b);
            ++i;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            out += kRep;
            ++i;
            continue;
        }
        size_t j = i + 1;
        int got = 0;
        while (got < need && j < n) {
            const uint8_t c = static_cast<uint8_t>(s[j]);
            const uint8_t l = got == 0 ? lo : 0x80, h = got == 0 ? hi : 0xBF;
            if (c < l || c > h) break;
            ++j;
            ++got;
        }
        if (got == need) {
            out.append(s, i, j - i);
        } else {
            out += kRep;
        }
        i = j;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* path = std::getenv("CRISPMOSS_FUZZ_VOCAB");
    if (!path) {
        std::fprintf(stderr, "fuzz_tokenizer: set CRISPMOSS_FUZZ_VOCAB to a GGUF with the Qwen vocabulary\n");
        std::exit(2);
    }
    gguf_init_params params{true, nullptr};
    gguf_context* g = gguf_init_from_file(path, params);
    if (!g) {
        std::fprintf(stderr, "fuzz_tokenizer: cannot read %s\n", path);
        std::exit(2);
    }
    g_tok = new cm::Tokenizer(read_array(g, "tokenizer.ggml.tokens"), read_array(g, "tokenizer.ggml.merges"));
    gguf_free(g);
    const std::pair<int32_t, const char*> specials[] = {{151643, "<|endoftext|>"}, {151644, "<|im_start|>"},
                                                        {151645, "<|im_end|>"},    {151654, "<|AUDIO|>"},
                                                        {151669, "<|audio_bos|>"}, {151670, "<|audio_eos|>"}};
    for (const auto& [id, text] : specials)
        if (static_cast<size_t>(id) < g_tok->n_vocab()) g_tok->set_special(id, text);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
    const cm::Tokenizer& tok = *g_tok;
    const int32_t n_vocab = static_cast<int32_t>(tok.n_vocab());

    for (bool special : {false, true}) {
        const std::vector<int32_t> ids = tok.encode(text, special);
        for (int32_t id : ids)
            if (id < 0 || id >= n_vocab) __builtin_trap();
        if (tok.decode(ids) != text) __builtin_trap();
        if (!special) {
            for (int32_t id : ids)
                if (tok.is_special(id)) __builtin_trap();
        }
    }
    size_t covered = 0;
    for (std::string_view piece : tok.pretokenize(text)) {
        if (piece.data() != text.data() + covered) __builtin_trap();
        covered += piece.size();
    }
    if (covered != text.size()) __builtin_trap();

    // Utf8Stream against the reference decoder, with chunk boundaries taken from the mode byte.
    {
        cm::Utf8Stream st;
        std::string out;
        const size_t step = 1 + (mode % 7);
        for (size_t i = 0; i < text.size(); i += step) out += st.push(std::string_view(text).substr(i, step));
        out += st.flush();
        if (out != reference_replace(text)) __builtin_trap();
    }

    // Arbitrary ids: in range decode, out of range throw InputError.
    if (mode & 0x80) {
        std::vector<int32_t> ids;
        for (size_t i = 0; i + 4 <= text.size(); i += 4) {
            int32_t v;
            std::memcpy(&v, text.data() + i, 4);
            ids.push_back((mode & 0x40) ? v : static_cast<int32_t>(static_cast<uint32_t>(v) % (n_vocab + 16)));
        }
        bool in_range = true;
        for (int32_t id : ids) in_range = in_range && id >= 0 && id < n_vocab;
        try {
            (void)tok.decode(ids, (mode & 0x20) != 0);
            if (!in_range) __builtin_trap();
        } catch (const cm::InputError&) {
            if (in_range) __builtin_trap();
        }
        try {
            if (!ids.empty()) (void)tok.id_to_piece(ids[0]);
        } catch (const cm::InputError&) {
        }
    }
    (void)tok.token_to_id(text);
    return 0;
}
