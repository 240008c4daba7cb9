// Strict UTF-8 decoding (Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF) and the
// "maximal subpart" replacement rule, so that our U+FFFD substitution matches Python's errors="replace".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cm::utf8 {

// Result of looking at the bytes at one position.
struct Decoded {
    enum Kind : uint8_t { kValid, kInvalid, kIncomplete } kind;
    // kValid: length of the character. kInvalid: length of the maximal subpart to replace by one U+FFFD
    // (>= 1). kIncomplete: the input ends inside a sequence that is valid so far; len = bytes present.
    uint8_t len;
    uint32_t cp;  // only for kValid
};

inline Decoded decode(const uint8_t* s, size_t n) {
    const uint8_t b0 = s[0];
    if (b0 < 0x80) return {Decoded::kValid, 1, b0};
    int need;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    uint32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;  // excludes UTF-16 surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;  // caps at U+10FFFF
    } else {
        return {Decoded::kInvalid, 1, 0};
    }
    for (int k = 1; k < need; ++k) {
        if (static_cast<size_t>(k) >= n) return {Decoded::kIncomplete, static_cast<uint8_t>(k), 0};
        const uint8_t b = s[k];
        const uint8_t l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xBF;
        if (b < l || b > h) return {Decoded::kInvalid, static_cast<uint8_t>(k), 0};
        cp = (cp << 6) | (b & 0x3F);
    }
    return {Decoded::kValid, static_cast<uint8_t>(need), cp};
}

inline void append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Appends `in` to `out` with every ill-formed subsequence replaced by U+FFFD. If `final` is false, a
// trailing incomplete sequence is not consumed; returns the number of input bytes consumed.
inline size_t sanitize_append(std::string_view in, std::string& out, bool final = true) {
    const auto* s = reinterpret_cast<const uint8_t*>(in.data());
    const size_t n = in.size();
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] < 0x80) ++j;  // ASCII fast path
        if (j > i) {
            out.append(in.data() + i, j - i);
            i = j;
            if (i == n) break;
        }
        const Decoded d = decode(s + i, n - i);
        if (d.kind == Decoded::kValid) {
            out.append(in.data() + i, d.len);
        } else if (d.kind == Decoded::kIncomplete && !final) {
            return i;
        } else {
            out.append(kReplacement);
        }
        i += d.len;
    }
    return n;
}

inline std::string sanitize(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    sanitize_append(in, out, true);
    return out;
}

}  // namespace cm::utf8
