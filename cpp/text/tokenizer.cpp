// Qwen byte-level BPE: hand-written pre-tokenizer state machine + rank-ordered pair merging.
#include "text/tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "errors.h"
#include "text/unicode_tables.h"
#include "text/utf8.h"

namespace cm {
namespace {

using unicode::kLetter;
using unicode::kNumber;
using unicode::kOther;
using unicode::kSpace;

// ------------------------------------------------------------------------------------------------
// Character classes: a flat table for the BMP (where almost all text lives), binary search above.

struct ClassTable {
    std::array<uint8_t, 65536> bmp{};
    ClassTable() {
        for (size_t r = 0; r < unicode::kNumRanges; ++r) {
            const auto& rg = unicode::kRanges[r];
            if (rg.lo > 0xFFFF) break;
            const uint32_t hi = std::min<uint32_t>(rg.hi, 0xFFFF);
            for (uint32_t cp = rg.lo; cp <= hi; ++cp) bmp[cp] = rg.cls;
        }
    }
};
const ClassTable g_classes;

inline uint8_t classify(uint32_t cp) {
    if (cp <= 0xFFFF) return g_classes.bmp[cp];
    size_t lo = 0, hi = unicode::kNumRanges;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (unicode::kRanges[mid].hi < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < unicode::kNumRanges && unicode::kRanges[lo].lo <= cp) return unicode::kRanges[lo].cls;
    return kOther;
}

constexpr uint32_t kInvalidCp = 0xFFFFFFFFu;

struct Unit {
    uint32_t cp;  // kInvalidCp for a byte that is not part of a well-formed character
    uint8_t len;
    uint8_t cls;
};

inline Unit unit_at(const uint8_t* s, size_t n, size_t i) {
    const uint8_t b = s[i];
    if (b < 0x80) return {b, 1, g_classes.bmp[b]};
    const utf8::Decoded d = utf8::decode(s + i, n - i);
    if (d.kind != utf8::Decoded::kValid) return {kInvalidCp, 1, kOther};
    return {d.cp, d.len, classify(d.cp)};
}

// Simple case folding restricted to what the contraction alternatives can meet: the regex engine's (?i)
// also lets U+017F LATIN SMALL LETTER LONG S match 's' (checked against tiktoken).
inline uint32_t fold(uint32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp == 0x17F) return 's';
    return cp;
}

inline size_t skip_class(const uint8_t* s, size_t n, size_t j, uint8_t cls) {
    while (j < n) {
        const Unit u = unit_at(s, n, j);
        if (u.cls != cls) break;
        j += u.len;
    }
    return j;
}

constexpr size_t npos = static_cast<size_t>(-1);

// End of the pre-token that starts at i: the alternatives of the pattern in order, first match wins.
size_t match_at(const uint8_t* s, size_t n, size_t i) {
    const Unit u0 = unit_at(s, n, i);
    const size_t i1 = i + u0.len;
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (u0.cp == '\'' && i1 < n) {
        const Unit u1 = unit_at(s, n, i1);
        const uint32_t c1 = fold(u1.cp);
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i1 + u1.len;
        if ((c1 == 'r' || c1 == 'v' || c1 == 'l') && i1 + u1.len < n) {
            const Unit u2 = unit_at(s, n, i1 + u1.len);
            if (fold(u2.cp) == (c1 == 'l' ? 'l' : 'e')) return i1 + u1.len + u2.len;
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (u0.cls == kLetter) return skip_class(s, n, i1, kLetter);
    const bool has1 = i1 < n;
    const Unit u1 = has1 ? unit_at(s, n, i1) : Unit{kInvalidCp, 0, 0xFF};
    if (u0.cls != kNumber && u0.cp != '\r' && u0.cp != '\n' && has1 && u1.cls == kLetter)
        return skip_class(s, n, i1 + u1.len, kLetter);
    // \p{N}
    if (u0.cls == kNumber) return i1;
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    size_t j = npos;
    if (u0.cls == kOther)
        j = i1;
    else if (u0.cp == ' ' && has1 && u1.cls == kOther)
        j = i1 + u1.len;
    if (j != npos) {
        j = skip_class(s, n, j, kOther);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) ++j;
        return j;
    }
    // u0 is white space. \s*[\r\n]+ ends after the last CR/LF of the run; otherwise \s+(?!\S) gives the
    // last space of the run back to the next pre-token unless the run ends the text or is one character
    // long (then \s+ takes it).
    size_t last_nl = npos, last_start = i;
    j = i;
    while (j < n) {
        const Unit u = unit_at(s, n, j);
        if (u.cls != kSpace) break;
        if (u.cp == '\r' || u.cp == '\n') last_nl = j;
        last_start = j;
        j += u.len;
    }
    if (last_nl != npos) return last_nl + 1;
    if (j == n || last_start == i) return j;
    return last_start;
}

template <class F>
inline void for_each_pretoken(const uint8_t* s, size_t n, F&& f) {
    size_t i = 0;
    while (i < n) {
        const size_t e = match_at(s, n, i);
        f(i, e);
        i = e;
    }
}

// ------------------------------------------------------------------------------------------------
// GPT-2 byte <-> unicode map: printable Latin-1 bytes stand for themselves, the other 68 bytes are moved to
// U+0100.. in byte order.

struct ByteUnicode {
    std::array<int16_t, 324> to_byte;  // code point -> byte, -1 if not in the map
    ByteUnicode() {
        to_byte.fill(-1);
        int extra = 0;
        for (int b = 0; b < 256; ++b) {
            const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            to_byte[keep ? b : 256 + extra++] = static_cast<int16_t>(b);
        }
    }
};
const ByteUnicode g_byte_unicode;

// Appends the bytes a byte-unicode string stands for; false (out unchanged) if it is not such a string.
bool byte_decode_append(std::string_view piece, std::string& out) {
    const size_t mark = out.size();
    const auto* s = reinterpret_cast<const uint8_t*>(piece.data());
    size_t i = 0;
    while (i < piece.size()) {
        const utf8::Decoded d = utf8::decode(s + i, piece.size() - i);
        if (d.kind != utf8::Decoded::kValid || d.cp >= g_byte_unicode.to_byte.size() ||
            g_byte_unicode.to_byte[d.cp] < 0) {
            out.resize(mark);
            return false;
        }
        out.push_back(static_cast<char>(g_byte_unicode.to_byte[d.cp]));
        i += d.len;
    }
    return true;
}

// ------------------------------------------------------------------------------------------------
// Open-addressing map from token bytes to (id, merge rank), looked up with byte ranges of the input.

inline uint64_t hash_bytes(const uint8_t* p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(n) * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        h = (h ^ v) * 0x9FB21C651E98DF25ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        std::memcpy(&v, p, n);
        h = (h ^ v) * 0x9FB21C651E98DF25ull;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

constexpr int32_t kRankByte = -1;         // a single-byte token (not produced by a merge)
constexpr int32_t kRankUnreachable = -2;  // in the vocabulary but no merge produces it: never emitted

struct Entry {
    uint64_t hash = 0;
    uint32_t off = 0, len = 0;
    int32_t id = -1;  // -1: empty slot
    int32_t rank = kRankUnreachable;
};

class BytesTable {
public:
    void init(size_t n_keys) {
        size_t cap = 16;
        while (cap < n_keys * 2 + 16) cap <<= 1;
        slots_.assign(cap, Entry{});
        mask_ = cap - 1;
    }
    const Entry* find(const std::string& pool, const uint8_t* p, size_t len) const {
        const uint64_t h = hash_bytes(p, len);
        for (size_t k = h & mask_;; k = (k + 1) & mask_) {
            const Entry& e = slots_[k];
            if (e.id < 0) return nullptr;
            if (e.hash == h && e.len == len && std::memcmp(pool.data() + e.off, p, len) == 0) return &e;
        }
    }
    Entry* find(const std::string& pool, const uint8_t* p, size_t len) {
        return const_cast<Entry*>(static_cast<const BytesTable*>(this)->find(pool, p, len));
    }
    // Inserts unless the key exists; returns the entry holding the key.
    Entry* insert(const std::string& pool, uint32_t off, uint32_t len, int32_t id) {
        const auto* p = reinterpret_cast<const uint8_t*>(pool.data() + off);
        const uint64_t h = hash_bytes(p, len);
        for (size_t k = h & mask_;; k = (k + 1) & mask_) {
            Entry& e = slots_[k];
            if (e.id < 0) {
                e.hash = h;
                e.off = off;
                e.len = len;
                e.id = id;
                return &e;
            }
            if (e.hash == h && e.len == len && std::memcmp(pool.data() + e.off, p, len) == 0) return &e;
        }
    }

private:
    std::vector<Entry> slots_;
    size_t mask_ = 0;
};

enum class Kind : uint8_t {
    kByte,         // BPE token of one byte
    kMerged,       // BPE token produced by a merge
    kUnreachable,  // in the BPE id range but neither: decoded, never emitted by encode
    kAdded,        // added/special token, literal text
    kFiller,       // "[PAD<id>]"
};

struct CacheSlot {
    uint64_t hash = 0;
    std::string key;
    std::vector<int32_t> ids;
};

constexpr size_t kCacheSlots = 1 << 16;  // direct-mapped: bounded memory, no eviction bookkeeping
constexpr size_t kCacheMaxLen = 64;
constexpr size_t kLinearMaxLen = 96;  // longer pre-tokens merge with a heap instead of linear scans

}  // namespace

// ------------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
    std::vector<std::string> pieces;  // as given (id_to_piece / token_to_id)
    std::vector<Kind> kinds;
    std::string pool;  // decoded bytes of every id
    std::vector<std::pair<uint32_t, uint32_t>> spans;
    size_t n_merges = 0;
    BytesTable table;
    std::array<int32_t, 256> byte_id;
    std::vector<int32_t> pair_rank;  // rank of each two-byte token, INT32_MAX if none: the first merge round
    std::unordered_map<std::string_view, int32_t> piece_to_id;

    // Added tokens for matching in text: sorted by (first byte, length descending).
    struct Special {
        std::string text;
        int32_t id;
    };
    std::vector<Special> specials;
    std::array<uint32_t, 257> special_begin{};
    std::array<bool, 256> special_first{};
    std::vector<int32_t> forced;  // set_special ids, in call order

    mutable std::shared_mutex mu;
    mutable std::mutex cache_mu;
    mutable std::vector<CacheSlot> cache;

    void build_specials();
    size_t find_special(const uint8_t* s, size_t n, size_t from, size_t* len, int32_t* id) const;
    void encode_ordinary(const uint8_t* s, size_t n, std::vector<int32_t>& out) const;
    void encode_piece(const uint8_t* p, size_t len, std::vector<int32_t>& out) const;
    void merge_linear(const uint8_t* p, size_t len, std::vector<int32_t>& out) const;
    void merge_heap(const uint8_t* p, size_t len, std::vector<int32_t>& out) const;
    int32_t rank_of(const uint8_t* p, size_t len) const {
        const Entry* e = table.find(pool, p, len);
        return (e && e->rank >= 0) ? e->rank : INT32_MAX;
    }
    int32_t part_id(const uint8_t* p, size_t len) const {
        if (len == 1) {
            const int32_t id = byte_id[p[0]];
            if (id < 0) throw InputError("tokenizer: the vocabulary has no token for byte " + std::to_string(p[0]));
            return id;
        }
        const Entry* e = table.find(pool, p, len);
        return e->id;  // every merged part is a merge result, hence in the table
    }
    void check_id(int32_t id) const {
        if (id < 0 || static_cast<size_t>(id) >= pieces.size())
            throw InputError("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(pieces.size()) + ")");
    }
};

Tokenizer::Tokenizer(std::vector<std::string> tokens, std::vector<std::string> merges, size_t n_bpe)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const size_t n = tokens.size();
    if (n == 0) throw ModelError("tokenizer: empty vocabulary");
    if (n >= static_cast<size_t>(INT32_MAX)) throw ModelError("tokenizer: vocabulary too large");
    m.pieces = std::move(tokens);
    m.n_merges = merges.size();
    const size_t bpe_end = std::min(n, n_bpe ? n_bpe : 256 + merges.size());
    m.kinds.assign(n, Kind::kUnreachable);
    m.spans.resize(n);
    m.byte_id.fill(-1);

    size_t total = 0;
    for (const auto& p : m.pieces) total += p.size();
    m.pool.reserve(total + 64);
    std::vector<uint8_t> decodable(n, 0);
    for (size_t id = 0; id < n; ++id) {
        const std::string& piece = m.pieces[id];
        const uint32_t off = static_cast<uint32_t>(m.pool.size());
        if (id < bpe_end && byte_decode_append(piece, m.pool)) {
            decodable[id] = 1;
        } else {
            m.pool.append(piece);
            if (id >= bpe_end)
                m.kinds[id] = (piece == "[PAD" + std::to_string(id) + "]") ? Kind::kFiller : Kind::kAdded;
        }
        m.spans[id] = {off, static_cast<uint32_t>(m.pool.size() - off)};
    }

    m.table.init(bpe_end);
    for (size_t id = 0; id < bpe_end; ++id) {
        if (!decodable[id] || m.spans[id].second == 0) continue;
        Entry* e = m.table.insert(m.pool, m.spans[id].first, m.spans[id].second, static_cast<int32_t>(id));
        if (e->id == static_cast<int32_t>(id) && m.spans[id].second == 1) {
            e->rank = kRankByte;
            m.byte_id[static_cast<uint8_t>(m.pool[m.spans[id].first])] = static_cast<int32_t>(id);
            m.kinds[id] = Kind::kByte;
        }
    }

    std::string scratch;
    for (size_t r = 0; r < merges.size(); ++r) {
        const std::string& mg = merges[r];
        const size_t sp = mg.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= mg.size() || mg.find(' ', sp + 1) != std::string::npos)
            throw ModelError("tokenizer: merge " + std::to_string(r) + " is not \"left right\": \"" + mg + "\"");
        scratch.clear();
        if (!byte_decode_append(std::string_view(mg).substr(0, sp), scratch) ||
            !byte_decode_append(std::string_view(mg).substr(sp + 1), scratch))
            throw ModelError("tokenizer: merge " + std::to_string(r) + " is not in byte-unicode form: \"" + mg + "\"");
        Entry* e = m.table.find(m.pool, reinterpret_cast<const uint8_t*>(scratch.data()), scratch.size());
        if (!e)
            throw ModelError("tokenizer: merge " + std::to_string(r) + " (\"" + mg +
                             "\") produces a token that is not in the vocabulary");
        if (e->rank == kRankUnreachable) {
            e->rank = static_cast<int32_t>(r);
            m.kinds[e->id] = Kind::kMerged;
        }
    }

    if (n_bpe) {
        // Rank by id (merges are listed in id order, so nothing changes when none is missing), and let
        // tokens whose merge is absent still be produced.
        for (size_t id = 256; id < bpe_end; ++id) {
            if (!decodable[id] || m.spans[id].second < 2) continue;
            Entry* e = m.table.find(m.pool, reinterpret_cast<const uint8_t*>(m.pool.data() + m.spans[id].first),
                                    m.spans[id].second);
            if (!e || e->id != static_cast<int32_t>(id)) continue;
            e->rank = static_cast<int32_t>(id);
            m.kinds[id] = Kind::kMerged;
        }
    }

    m.pair_rank.assign(65536, INT32_MAX);
    for (size_t id = 0; id < bpe_end; ++id) {
        if (m.kinds[id] != Kind::kMerged || m.spans[id].second != 2) continue;
        const auto* b = reinterpret_cast<const uint8_t*>(m.pool.data() + m.spans[id].first);
        const Entry* e = m.table.find(m.pool, b, 2);
        m.pair_rank[(size_t{b[0]} << 8) | b[1]] = e->rank;
    }

    m.piece_to_id.reserve(n);
    for (size_t id = 0; id < n; ++id) m.piece_to_id.emplace(m.pieces[id], static_cast<int32_t>(id));
    m.build_specials();
    m.cache.resize(kCacheSlots);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::Impl::build_specials() {
    // First id wins for a duplicated text, except that set_special's choices override (latest call last).
    std::unordered_map<std::string_view, int32_t> by_text;
    for (size_t id = 0; id < pieces.size(); ++id)
        if (kinds[id] == Kind::kAdded && !pieces[id].empty()) by_text.emplace(pieces[id], static_cast<int32_t>(id));
    for (int32_t id : forced)
        if (kinds[id] == Kind::kAdded) by_text[pieces[id]] = id;
    specials.clear();
    for (const auto& [text, id] : by_text) specials.push_back({std::string(text), id});
    std::sort(specials.begin(), specials.end(), [](const Special& a, const Special& b) {
        const auto fa = static_cast<uint8_t>(a.text[0]), fb = static_cast<uint8_t>(b.text[0]);
        if (fa != fb) return fa < fb;
        if (a.text.size() != b.text.size()) return a.text.size() > b.text.size();
        return a.text < b.text;
    });
    special_first.fill(false);
    size_t k = 0;
    for (int b = 0; b < 256; ++b) {
        special_begin[b] = static_cast<uint32_t>(k);
        while (k < specials.size() && static_cast<uint8_t>(specials[k].text[0]) == b) {
            special_first[b] = true;
            ++k;
        }
    }
    special_begin[256] = static_cast<uint32_t>(k);
}

size_t Tokenizer::Impl::find_special(const uint8_t* s, size_t n, size_t from, size_t* len, int32_t* id) const {
    for (size_t i = from; i < n; ++i) {
        if (!special_first[s[i]]) continue;
        for (uint32_t k = special_begin[s[i]]; k < special_begin[s[i] + 1]; ++k) {
            const std::string& t = specials[k].text;
            if (t.size() <= n - i && std::memcmp(s + i, t.data(), t.size()) == 0) {
                *len = t.size();
                *id = specials[k].id;
                return i;
            }
        }
    }
    return npos;
}

void Tokenizer::Impl::merge_linear(const uint8_t* p, size_t len, std::vector<int32_t>& out) const {
    // parts[k] = (start byte, rank of merging part k with part k+1); parts.back() is the end sentinel.
    struct Part {
        uint32_t start;
        int32_t rank;
    };
    Part parts[kLinearMaxLen + 1];
    size_t np = len + 1;
    for (size_t k = 0; k < np; ++k) parts[k] = {static_cast<uint32_t>(k), INT32_MAX};
    for (size_t k = 0; k + 2 < np; ++k) parts[k].rank = pair_rank[(size_t{p[k]} << 8) | p[k + 1]];
    auto merged_rank = [&](size_t k) {
        return k + 2 < np ? rank_of(p + parts[k].start, parts[k + 2].start - parts[k].start) : INT32_MAX;
    };
    for (;;) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t k = 0; k + 1 < np; ++k)
            if (parts[k].rank < best) {
                best = parts[k].rank;
                bi = k;
            }
        if (best == INT32_MAX) break;
        std::memmove(parts + bi + 1, parts + bi + 2, (np - bi - 2) * sizeof(Part));
        --np;
        parts[bi].rank = merged_rank(bi);
        if (bi > 0) parts[bi - 1].rank = merged_rank(bi - 1);
    }
    for (size_t k = 0; k + 1 < np; ++k) out.push_back(part_id(p + parts[k].start, parts[k + 1].start - parts[k].start));
}

void Tokenizer::Impl::merge_heap(const uint8_t* p, size_t len, std::vector<int32_t>& out) const {
    // Doubly linked parts over byte offsets; a min-heap of candidate pairs ordered by (rank, start) picks the
    // same pair as the linear scan (lowest rank, leftmost). Stale candidates are skipped when popped.
    struct Cand {
        int32_t rank;
        uint32_t start, mid, end;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : start > o.start; }
    };
    std::vector<uint32_t> next(len + 1), prev(len + 1);
    std::vector<uint8_t> alive(len + 1, 1);
    for (size_t k = 0; k <= len; ++k) {
        next[k] = static_cast<uint32_t>(k + 1);
        prev[k] = static_cast<uint32_t>(k ? k - 1 : 0);
    }
    std::vector<Cand> heap;
    heap.reserve(len);
    auto push = [&](uint32_t a, uint32_t b, uint32_t c) {
        const int32_t r = rank_of(p + a, c - a);
        if (r != INT32_MAX) {
            heap.push_back({r, a, b, c});
            std::push_heap(heap.begin(), heap.end(), std::greater<Cand>());
        }
    };
    for (uint32_t k = 0; k + 1 < len; ++k) push(k, k + 1, k + 2);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<Cand>());
        const Cand c = heap.back();
        heap.pop_back();
        if (!alive[c.start] || !alive[c.mid] || next[c.start] != c.mid || next[c.mid] != c.end) continue;
        alive[c.mid] = 0;
        next[c.start] = c.end;
        prev[c.end] = c.start;
        if (c.start > 0) push(prev[c.start], c.start, c.end);
        if (c.end < len) push(c.start, c.end, next[c.end]);
    }
    for (uint32_t k = 0; k < len; k = next[k]) out.push_back(part_id(p + k, next[k] - k));
}

void Tokenizer::Impl::encode_piece(const uint8_t* p, size_t len, std::vector<int32_t>& out) const {
    if (len == 1) {
        out.push_back(part_id(p, 1));
        return;
    }
    // A pre-token that is itself a token is taken whole (tiktoken does so before merging).
    if (const Entry* e = table.find(pool, p, len); e && e->rank != kRankUnreachable) {
        out.push_back(e->id);
        return;
    }
    if (len > kCacheMaxLen) {
        if (len <= kLinearMaxLen)
            merge_linear(p, len, out);
        else
            merge_heap(p, len, out);
        return;
    }
    const uint64_t h = hash_bytes(p, len);
    CacheSlot& slot = cache[h & (kCacheSlots - 1)];
    {
        std::lock_guard<std::mutex> lk(cache_mu);
        if (slot.hash == h && slot.key.size() == len && std::memcmp(slot.key.data(), p, len) == 0) {
            out.insert(out.end(), slot.ids.begin(), slot.ids.end());
            return;
        }
    }
    const size_t mark = out.size();
    merge_linear(p, len, out);
    std::lock_guard<std::mutex> lk(cache_mu);
    slot.hash = h;
    slot.key.assign(reinterpret_cast<const char*>(p), len);
    slot.ids.assign(out.begin() + static_cast<std::ptrdiff_t>(mark), out.end());
}

void Tokenizer::Impl::encode_ordinary(const uint8_t* s, size_t n, std::vector<int32_t>& out) const {
    for_each_pretoken(s, n, [&](size_t a, size_t b) { encode_piece(s + a, b - a, out); });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool special) const {
    const Impl& m = *impl_;
    std::shared_lock<std::shared_mutex> lk(m.mu);
    const auto* s = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    std::vector<int32_t> out;
    out.reserve(n / 3 + 4);
    if (!special || m.specials.empty()) {
        m.encode_ordinary(s, n, out);
        return out;
    }
    size_t pos = 0;
    while (pos < n) {
        size_t len = 0;
        int32_t id = -1;
        const size_t at = m.find_special(s, n, pos, &len, &id);
        if (at == npos) {
            m.encode_ordinary(s + pos, n - pos, out);
            break;
        }
        m.encode_ordinary(s + pos, at - pos, out);
        out.push_back(id);
        pos = at + len;
    }
    return out;
}

void Tokenizer::decode_append(int32_t id, std::string& out) const {
    const Impl& m = *impl_;
    std::shared_lock<std::shared_mutex> lk(m.mu);
    m.check_id(id);
    const auto& sp = m.spans[id];
    out.append(m.pool, sp.first, sp.second);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    const Impl& m = *impl_;
    std::shared_lock<std::shared_mutex> lk(m.mu);
    std::string out;
    out.reserve(ids.size() * 4);
    for (int32_t id : ids) {
        m.check_id(id);
        if (skip_special && m.kinds[id] == Kind::kAdded) continue;
        const auto& sp = m.spans[id];
        out.append(m.pool, sp.first, sp.second);
    }
    return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
    std::string out;
    decode_append(id, out);
    return out;
}

int32_t Tokenizer::token_to_id(std::string_view piece) const {
    std::shared_lock<std::shared_mutex> lk(impl_->mu);
    const auto it = impl_->piece_to_id.find(piece);
    return it == impl_->piece_to_id.end() ? -1 : it->second;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
    std::shared_lock<std::shared_mutex> lk(impl_->mu);
    impl_->check_id(id);
    return impl_->pieces[id];
}

size_t Tokenizer::n_vocab() const { return impl_->pieces.size(); }
size_t Tokenizer::n_merges() const { return impl_->n_merges; }

bool Tokenizer::is_special(int32_t id) const {
    std::shared_lock<std::shared_mutex> lk(impl_->mu);
    impl_->check_id(id);
    return impl_->kinds[id] == Kind::kAdded;
}

void Tokenizer::set_special(int32_t id, std::string text) {
    Impl& m = *impl_;
    std::unique_lock<std::shared_mutex> lk(m.mu);
    m.check_id(id);
    if (text.empty()) throw InputError("set_special: empty text for id " + std::to_string(id));
    if (m.kinds[id] == Kind::kByte || m.kinds[id] == Kind::kMerged)
        throw InputError("set_special: id " + std::to_string(id) + " is a BPE token (\"" + m.pieces[id] + "\")");
    if (auto it = m.piece_to_id.find(m.pieces[id]); it != m.piece_to_id.end() && it->second == id)
        m.piece_to_id.erase(it);
    m.piece_to_id.erase(text);  // its key may view another id's string; the forced id takes the text
    m.pieces[id] = std::move(text);
    m.piece_to_id.emplace(m.pieces[id], id);
    const uint32_t off = static_cast<uint32_t>(m.pool.size());
    m.pool.append(m.pieces[id]);
    m.spans[id] = {off, static_cast<uint32_t>(m.pieces[id].size())};
    m.kinds[id] = Kind::kAdded;
    m.forced.erase(std::remove(m.forced.begin(), m.forced.end(), id), m.forced.end());
    m.forced.push_back(id);
    m.build_specials();
}

std::vector<std::string_view> Tokenizer::pretokenize(std::string_view text) const {
    std::vector<std::string_view> out;
    for_each_pretoken(reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                      [&](size_t a, size_t b) { out.push_back(text.substr(a, b - a)); });
    return out;
}

// ------------------------------------------------------------------------------------------------

std::string Utf8Stream::push(std::string_view bytes) {
    pending_.append(bytes);
    std::string out;
    const size_t used = utf8::sanitize_append(pending_, out, false);
    pending_.erase(0, used);
    return out;
}

std::string Utf8Stream::flush() {
    std::string out;
    utf8::sanitize_append(pending_, out, true);
    pending_.clear();
    return out;
}

}  // namespace cm
