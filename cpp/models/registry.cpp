// The model registry: every architecture crispmoss runs, each declared in its own file (cpp/models/<model>.cpp);
// adding a model adds its spec here. Also the language names that transcription instructions use.
#include <cctype>
#include <utility>

#include "errors.h"
#include "models/audio_lm.h"
#include "text/unicode_tables.h"
#include "text/utf8.h"

namespace cm {

extern const ModelSpec kMossTranscribeSpec;  // moss_transcribe.cpp
extern const ModelSpec kMossAudioSpec;       // moss_audio.cpp
extern const ModelSpec kMossTranscribeDiarizeSpec;  // moss_transcribe_diarize.cpp

const std::vector<const ModelSpec*>& model_specs() {
    static const std::vector<const ModelSpec*> specs = {&kMossTranscribeSpec, &kMossAudioSpec,
                                                         &kMossTranscribeDiarizeSpec};
    return specs;
}

const ModelSpec* find_model_spec(const std::string& arch) {
    for (const ModelSpec* s : model_specs())
        if (s->arch == arch) return s;
    return nullptr;
}

std::string model_names(bool (*pred)(const ModelSpec&)) {
    std::string out;
    for (const ModelSpec* s : model_specs())
        if (pred(*s)) out += (out.empty() ? "" : " or ") + s->name;
    return out;
}

namespace {

const std::pair<const char*, const char*> kLanguages[] = {
    {"en", "English"},    {"zh", "Chinese"},   {"yue", "Cantonese"},  {"de", "German"},     {"fr", "French"},
    {"es", "Spanish"},    {"it", "Italian"},   {"pt", "Portuguese"},  {"nl", "Dutch"},      {"ru", "Russian"},
    {"uk", "Ukrainian"},  {"pl", "Polish"},    {"ja", "Japanese"},    {"ko", "Korean"},     {"ar", "Arabic"},
    {"hi", "Hindi"},      {"tr", "Turkish"},   {"vi", "Vietnamese"},  {"th", "Thai"},       {"id", "Indonesian"},
    {"sv", "Swedish"},    {"cs", "Czech"},     {"el", "Greek"},       {"he", "Hebrew"},
};
const char* const kChinese[] = {"zh", "chinese", "mandarin", "cmn", "zh-cn", "zh-hans"};

unicode::Class class_of(uint32_t cp) {
    size_t lo = 0, hi = unicode::kNumRanges;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (cp < unicode::kRanges[mid].lo) hi = mid;
        else if (cp > unicode::kRanges[mid].hi) lo = mid + 1;
        else return unicode::kRanges[mid].cls;
    }
    return unicode::kOther;
}

}  // namespace

std::string language_name(const std::string& language) {
    const auto bad = [&]() { return InputError("language must be a language code or name, got '" + language + "'"); };
    // Code points, stripped of surrounding white space.
    std::vector<std::pair<uint32_t, std::string>> cps;
    const auto* p = reinterpret_cast<const uint8_t*>(language.data());
    for (size_t i = 0; i < language.size();) {
        const utf8::Decoded d = utf8::decode(p + i, language.size() - i);
        if (d.kind != utf8::Decoded::kValid) throw bad();
        cps.emplace_back(d.cp, language.substr(i, d.len));
        i += d.len;
    }
    while (!cps.empty() && class_of(cps.back().first) == unicode::kSpace) cps.pop_back();
    size_t b = 0;
    while (b < cps.size() && class_of(cps[b].first) == unicode::kSpace) ++b;
    cps.erase(cps.begin(), cps.begin() + b);
    if (cps.empty() || cps.size() > 40) throw bad();
    std::string lower, name;
    for (size_t i = 0; i < cps.size(); ++i) {
        const uint32_t cp = cps[i].first;
        const bool sep = cp == ' ' || cp == '-' || cp == '_';
        if (!sep && class_of(cp) != unicode::kLetter) throw bad();
        // Case is changed for ASCII letters only; other scripts are kept as written.
        const std::string& s = cps[i].second;
        const char c = s.size() == 1 ? s[0] : 0;
        lower += c ? std::string(1, c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)))) : s;
        name += c ? std::string(1, static_cast<char>(i == 0 ? std::toupper(static_cast<unsigned char>(c))
                                                             : std::tolower(static_cast<unsigned char>(c))))
                  : s;
    }
    for (const char* z : kChinese)
        if (lower == z) return "Chinese";
    for (const auto& [code, english] : kLanguages)
        if (lower == code) return english;
    return name;
}

}  // namespace cm
