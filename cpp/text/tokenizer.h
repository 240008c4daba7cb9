// Qwen2/Qwen3 byte-level BPE tokenizer (GPT-2 byte<->unicode map), built from the GGUF vocabulary arrays.
//
// Encoding matches tiktoken with the Qwen pattern token for token on valid UTF-8:
//   - the pre-tokenizer regex
//       (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//     is a hand-written state machine over Unicode 16.0 tables (letters \p{L}, numbers \p{N}, White_Space \s);
//     Unicode 16.0 because that is what the official tokenizer uses in practice: the official code runs Hugging
//     Face `tokenizers` (tokenizer.json, Oniguruma regex), Qwen's own code tiktoken (Rust regex), and the releases
//     we test against (tokenizers 0.23, tiktoken 0.14; bounds in pyproject.toml) both classify every code point as
//     Unicode 16.0 does (swept in tests/test_tokenizer.py). Code points assigned later (e.g. Sidetic, U+10940, in
//     17.0) are 'other' here, as they are there; `crispmoss._core.unicode_version()` reports the version;
//   - a pre-token that is itself a vocabulary entry becomes that token; otherwise adjacent parts are merged,
//     lowest rank first (leftmost on ties), where the rank of a pair is the merge index that produces the
//     concatenated bytes (tiktoken's rule, which for Qwen's rank-ordered merge list equals the token id).
// Invalid UTF-8 input is accepted: each byte that is not part of a well-formed character is one "other"
// unit (neither letter, number nor space), so any byte string round-trips through encode/decode.
//
// Token classes: ids below 256 + n_merges are BPE tokens (their strings are byte-unicode encoded); ids at or
// above are added tokens whose string is literal text, except the "[PAD<id>]" fillers of the embedding
// padding, which are never produced by encode (they decode to their literal text).
//
// Thread safety: encode/decode may run concurrently; set_special takes an exclusive lock.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cm {

class Tokenizer {
public:
    // tokens[id] as stored in tokenizer.ggml.tokens; merges as "left right" in rank order. Throws ModelError
    // on a malformed merge (no separator, or a result that is not in the vocabulary).
    // n_bpe (0: 256 + merges.size()) is the id of the first added token when the caller knows it. Some
    // converters drop merges whose text starts with '#' (they read them as comments); with n_bpe given, every
    // byte-level token below it stays an ordinary token and merges by its id, as tiktoken ranks them, so such
    // files still tokenize exactly and never mistake those tokens for added ones.
    Tokenizer(std::vector<std::string> tokens, std::vector<std::string> merges, size_t n_bpe = 0);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // special=true: added tokens found in the text (longest match at the leftmost position) become their id
    // and split the text around them; special=false: their text is encoded like any other text.
    std::vector<int32_t> encode(std::string_view text, bool special = true) const;

    // Exact bytes (may be invalid UTF-8 when ids split a character). skip_special drops added tokens.
    // Throws InputError for an id outside [0, n_vocab).
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
    void decode_append(int32_t id, std::string& out) const;
    std::string token_bytes(int32_t id) const;

    // Id of a token string in its stored form ("Ġthe", "<|im_end|>"), or -1.
    int32_t token_to_id(std::string_view piece) const;
    // The stored string of an id; throws InputError when out of range.
    std::string id_to_piece(int32_t id) const;
    size_t n_vocab() const;
    size_t n_merges() const;
    bool is_special(int32_t id) const;  // an added token (matched in text, skipped by skip_special)

    // Force `id` to be the added token `text` (as CrispASR does for <|endoftext|>, <|im_start|>, ...).
    // Throws InputError if id is out of range, is a BPE token, or text is empty.
    void set_special(int32_t id, std::string text);

    // The pre-tokens of `text` (no special-token splitting); exposed for tests and debugging.
    std::vector<std::string_view> pretokenize(std::string_view text) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Incremental UTF-8 sanitiser for streamed token bytes: returns only complete characters, holds back a
// trailing sequence that may still be completed, and turns ill-formed bytes into U+FFFD (one per maximal
// subpart, as Python's errors="replace"). Concatenated output + flush() == bytes.decode("utf-8", "replace").
class Utf8Stream {
public:
    std::string push(std::string_view bytes);
    std::string flush();
    size_t pending() const { return pending_.size(); }

private:
    std::string pending_;
};

}  // namespace cm
