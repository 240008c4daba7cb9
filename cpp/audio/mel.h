// Whisper log-mel front end, as both OpenMOSS processors compute it
// (WhisperFeatureExtractor._np_extract_fbank_features on the raw clip, no 30 s padding):
// 16 kHz, n_fft 400, hop 160, periodic Hann, centred STFT with reflect padding, power spectrum,
// 128 Slaney mel filters 0-8000 Hz with area norm, log10(max(x, 1e-10)), clamp to (clip max - 8),
// (x + 4) / 4, and the last STFT frame dropped so that T = n_samples / 160.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cm {

constexpr int kMelSampleRate = 16000;
constexpr int kMelNFFT = 400;
constexpr int kMelHop = 160;
constexpr int kMelNFreq = kMelNFFT / 2 + 1;  // 201
constexpr int kMelBins = 128;
// Fewer samples than one hop give no frame at all (T = n / 160 = 0).
constexpr size_t kMelMinSamples = kMelHop;

struct MelSpectrogram {
    int n_mel = 0;
    int n_frames = 0;
    std::vector<float> data;  // [n_mel][n_frames] row-major
};

// Triangular mel filters, weights[m * n_freq + f] for filter m and FFT bin f.
struct MelFilterbank {
    int n_mel = 0;
    int n_freq = 0;
    std::vector<double> weights;
    std::vector<int> first, last;  // per filter: nonzero weights lie in [first, last)
};

// transformers' mel_filter_bank(n_freq, n_mel, f_min, f_max, sample_rate, norm="slaney",
// mel_scale="slaney") in float64, stored filter-major.
MelFilterbank slaney_mel_filterbank(int n_freq, int n_mel, double f_min, double f_max, double sample_rate);

// The n_mel x 201 Whisper filterbank (Slaney, 0-8000 Hz), built once per n_mel.
const MelFilterbank& whisper_mel_filterbank(int n_mel = kMelBins);

// A model's mel front end (declared by the model, see models/audio_lm.h). This build computes the Whisper STFT
// (16 kHz, n_fft 400, hop 160); n_mel is free. window_samples = 0: over the whole clip, unpadded (T = n / hop).
// window_samples > 0: the clip is cut into windows of that many samples, the last one zero-padded to it, and each
// window is a log-mel of its own (its own STFT padding and its own max - 8 floor), as WhisperFeatureExtractor
// gives for 30 s chunks; the windows' frames are concatenated (window_samples / hop frames each).
struct MelSpec {
    int sample_rate = kMelSampleRate;
    int n_fft = kMelNFFT;
    int hop = kMelHop;
    int n_mel = kMelBins;
    size_t window_samples = 0;
};

// A filterbank stored frequency-major, data[f * n_mel + m] (torch shape [n_freq, n_mel], i.e. the
// GGUF tensor audio.mel_filters with ne = (n_mel, n_freq)). Throws ModelError on bad sizes or values.
MelFilterbank mel_filterbank_from_freq_major(const float* data, int n_freq, int n_mel);

// The front-end tensors a GGUF file may carry (audio.mel_filters, frequency-major with ne = (n_mel, n_freq);
// audio.mel_window, n_fft samples) compared with what log_mel computes for `spec`: "" when they match within F32
// rounding (1e-5 of the largest weight), else what differs (for a ModelError naming the file).
std::string mel_filters_mismatch(const float* data, int64_t n_mel, int64_t n_freq, const MelSpec& spec);
std::string mel_window_mismatch(const float* data, int64_t n, const MelSpec& spec);

// Log-mel of mono 16 kHz float PCM. n_threads: 0 = hardware concurrency; the result does not
// depend on it. Throws AudioError for empty input, non-finite samples or fewer than 160 samples
// (which give no frame), InputError for a negative n_threads. Inputs of 160..200 samples are
// reflect-padded as numpy.pad(mode="reflect") does (repeated reflection).
MelSpectrogram log_mel(const float* pcm, size_t n, int n_threads);
// Same with a caller-supplied filterbank (n_freq must be 201); throws ModelError otherwise.
MelSpectrogram log_mel(const float* pcm, size_t n, const MelFilterbank& filters, int n_threads);
// Same with the Whisper filterbank of spec.n_mel bins, over the whole clip or per window (MelSpec::window_samples);
// throws ModelError for an STFT this build does not compute.
MelSpectrogram log_mel(const float* pcm, size_t n, const MelSpec& spec, int n_threads);

}  // namespace cm
