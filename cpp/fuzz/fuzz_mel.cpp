// libFuzzer target: the log-mel front end on arbitrary sample buffers (any length, NaN/inf, denormals,
// extremes) and on arbitrary filterbank tensors. It must return T = n / 160 finite frames or throw
// cm::AudioError (bad audio) / cm::ModelError (bad filterbank); nothing else.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "audio/mel.h"
#include "errors.h"

namespace {

void check(const cm::MelSpectrogram& m, size_t n) {
    if (m.n_mel != cm::kMelBins) __builtin_trap();
    if (static_cast<size_t>(m.n_frames) != n / cm::kMelHop) __builtin_trap();
    if (m.data.size() != static_cast<size_t>(m.n_mel) * m.n_frames) __builtin_trap();
    for (float v : m.data)
        if (!std::isfinite(v)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t mode = data[0];
    const int threads = 1 + (data[1] % 3);
    data += 2;
    size -= 2;
    std::vector<float> pcm;
    switch (mode % 4) {
        case 0:  // raw float32 samples
            pcm.resize(size / 4);
            if (!pcm.empty()) std::memcpy(pcm.data(), data, pcm.size() * 4);
            break;
        case 1:  // int16 PCM scaled like soundfile's float reading
            for (size_t i = 0; i + 2 <= size; i += 2) {
                int16_t v;
                std::memcpy(&v, data + i, 2);
                pcm.push_back(static_cast<float>(v) / 32768.0f);
            }
            break;
        case 2: {  // a few bytes stretched into a longer, mostly constant signal (up to 1 s: longer signals only
                   // repeat the same frame loop and cost the fuzzer most of its executions)
            const size_t n = size ? (static_cast<size_t>(data[0]) << 8 | (size > 1 ? data[1] : 0)) % 16001 : 0;
            pcm.assign(n, 0.0f);
            for (size_t i = 2; i < size && !pcm.empty(); ++i) pcm[(i * 7919) % n] = (data[i] - 128) / 128.0f;
            break;
        }
        default: {  // custom filterbank: [n_freq, n_mel] floats, then samples
            if (size < 2) return 0;
            const int n_freq = 1 + data[0] % 255, n_mel = 1 + data[1] % 160;
            std::vector<float> fb(static_cast<size_t>(n_freq) * n_mel, 0.0f);
            const size_t avail = (size - 2) / 4;
            std::memcpy(fb.data(), data + 2, std::min(avail, fb.size()) * 4);
            try {
                const cm::MelFilterbank bank = cm::mel_filterbank_from_freq_major(fb.data(), n_freq, n_mel);
                std::vector<float> x(4000);
                for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.01f * static_cast<float>(i * (1 + data[0])));
                const cm::MelSpectrogram m = cm::log_mel(x.data(), x.size(), bank, threads);
                if (m.n_frames != 25 || m.data.size() != static_cast<size_t>(m.n_mel) * 25) __builtin_trap();
            } catch (const cm::ModelError&) {
            }
            return 0;
        }
    }
    try {
        check(cm::log_mel(pcm.data(), pcm.size(), threads), pcm.size());
    } catch (const cm::AudioError&) {
    }
    return 0;
}
