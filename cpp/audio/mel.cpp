#include "audio/mel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "audio/fft.h"
#include "errors.h"

namespace cm {

namespace {

// librosa / transformers "slaney" mel scale: linear below 1 kHz, logarithmic above.
constexpr double kMinLogHz = 1000.0;
constexpr double kMinLogMel = 15.0;

double hz_to_mel_slaney(double hz) {
    if (hz >= kMinLogHz) return kMinLogMel + std::log(hz / kMinLogHz) * (27.0 / std::log(6.4));
    return 3.0 * hz / 200.0;
}

double mel_to_hz_slaney(double mel) {
    if (mel >= kMinLogMel) return kMinLogHz * std::exp((std::log(6.4) / 27.0) * (mel - kMinLogMel));
    return 200.0 * mel / 3.0;
}

// numpy.linspace(start, stop, num) element i: start + i*step, with the end point exact.
double linspace_at(double start, double stop, int num, int i) {
    if (i == num - 1) return stop;
    const double step = (stop - start) / static_cast<double>(num - 1);
    return start + static_cast<double>(i) * step;
}

void find_spans(MelFilterbank& fb) {
    fb.first.assign(fb.n_mel, 0);
    fb.last.assign(fb.n_mel, 0);
    for (int m = 0; m < fb.n_mel; ++m) {
        const double* w = fb.weights.data() + static_cast<size_t>(m) * fb.n_freq;
        int lo = 0, hi = fb.n_freq;
        while (lo < hi && w[lo] == 0.0) ++lo;
        while (hi > lo && w[hi - 1] == 0.0) --hi;
        fb.first[m] = lo;
        fb.last[m] = hi;
    }
}

// Index into a signal of length n extended by repeated reflection (edge sample not repeated),
// which is what numpy.pad(mode="reflect") produces for any pad width.
inline size_t reflect_index(long long i, long long n) {
    if (n == 1) return 0;
    const long long period = 2 * (n - 1);
    long long j = i % period;
    if (j < 0) j += period;
    if (j >= n) j = period - j;
    return static_cast<size_t>(j);
}

struct Frontend {
    RealFFT fft{kMelNFFT};
    std::vector<double> window;
    Frontend() : window(kMelNFFT) {
        // periodic Hann = numpy.hanning(401)[:-1]
        for (int i = 0; i < kMelNFFT; ++i)
            window[i] = 0.5 - 0.5 * std::cos(2.0 * kPi * static_cast<double>(i) / kMelNFFT);
    }
};

const Frontend& frontend() {
    static const Frontend f;
    return f;
}

// Frames [t0, t1): raw log10 mel into out (column t of [n_mel][T]); returns the largest value.
float log_mel_frames(const float* pcm, size_t n, const MelFilterbank& fb, int t0, int t1, int n_frames,
                     float* out) {
    const Frontend& fe = frontend();
    std::vector<double> frame(kMelNFFT), power(kMelNFreq);
    std::vector<cplx> work(fe.fft.work_size());
    const long long half = kMelNFFT / 2;
    const long long nn = static_cast<long long>(n);
    float local_max = -std::numeric_limits<float>::infinity();
    for (int t = t0; t < t1; ++t) {
        const long long start = static_cast<long long>(t) * kMelHop - half;
        if (start >= 0 && start + kMelNFFT <= nn) {
            const float* src = pcm + start;
            for (int i = 0; i < kMelNFFT; ++i) frame[i] = static_cast<double>(src[i]) * fe.window[i];
        } else {
            for (int i = 0; i < kMelNFFT; ++i)
                frame[i] = static_cast<double>(pcm[reflect_index(start + i, nn)]) * fe.window[i];
        }
        fe.fft.power(frame.data(), power.data(), work.data());
        for (int m = 0; m < fb.n_mel; ++m) {
            const double* w = fb.weights.data() + static_cast<size_t>(m) * fb.n_freq;
            double acc = 0.0;
            for (int f = fb.first[m]; f < fb.last[m]; ++f) acc += w[f] * power[f];
            const float v = static_cast<float>(std::log10(std::max(acc, 1e-10)));
            out[static_cast<size_t>(m) * n_frames + t] = v;
            local_max = std::max(local_max, v);
        }
    }
    return local_max;
}

// Runs fn(i) for i in [0, n_tasks) on up to n_tasks threads; the caller's thread takes task 0 and
// any task whose thread could not be started. An exception in a task is rethrown here after all
// threads have joined, never left to terminate the process.
template <class Fn>
void run_tasks(int n_tasks, Fn fn) {
    std::vector<std::exception_ptr> errors(n_tasks);
    auto guarded = [&](int i) {
        try {
            fn(i);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    };
    std::vector<std::thread> threads;
    std::vector<int> inline_tasks{0};
    threads.reserve(n_tasks);
    for (int i = 1; i < n_tasks; ++i) {
        try {
            threads.emplace_back(guarded, i);
        } catch (const std::system_error&) {
            inline_tasks.push_back(i);
        }
    }
    for (int i : inline_tasks) guarded(i);
    for (auto& th : threads) th.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace

MelFilterbank slaney_mel_filterbank(int n_freq, int n_mel, double f_min, double f_max, double sample_rate) {
    if (n_freq < 2 || n_mel < 1 || !(f_min >= 0.0) || !(f_max > f_min) || !(sample_rate > 0.0))
        throw InputError("invalid mel filterbank parameters");
    MelFilterbank fb;
    fb.n_mel = n_mel;
    fb.n_freq = n_freq;
    const double mel_lo = hz_to_mel_slaney(f_min), mel_hi = hz_to_mel_slaney(f_max);
    std::vector<double> edges(n_mel + 2);
    for (int i = 0; i < n_mel + 2; ++i) edges[i] = mel_to_hz_slaney(linspace_at(mel_lo, mel_hi, n_mel + 2, i));
    // transformers uses linspace(0, sample_rate // 2, n_freq) for the bin frequencies.
    const double nyquist = std::floor(sample_rate / 2.0);
    fb.weights.assign(static_cast<size_t>(n_mel) * n_freq, 0.0);
    for (int m = 0; m < n_mel; ++m) {
        const double lower = edges[m], centre = edges[m + 1], upper = edges[m + 2];
        const double enorm = 2.0 / (upper - lower);
        for (int f = 0; f < n_freq; ++f) {
            const double hz = linspace_at(0.0, nyquist, n_freq, f);
            const double down = -(lower - hz) / (centre - lower);
            const double up = (upper - hz) / (upper - centre);
            fb.weights[static_cast<size_t>(m) * n_freq + f] = std::max(0.0, std::min(down, up)) * enorm;
        }
    }
    find_spans(fb);
    return fb;
}

const MelFilterbank& whisper_mel_filterbank(int n_mel) {
    static std::mutex mu;
    static std::map<int, std::unique_ptr<const MelFilterbank>> banks;
    std::lock_guard<std::mutex> lk(mu);
    auto& fb = banks[n_mel];
    if (!fb) fb = std::make_unique<const MelFilterbank>(slaney_mel_filterbank(kMelNFreq, n_mel, 0.0, 8000.0, kMelSampleRate));
    return *fb;
}

namespace {

// "" if data[i] (i < n) equals expected(i) within tol, else where it first differs.
template <class F>
std::string first_difference(const char* what, const float* data, int64_t n, double tol, F expected) {
    for (int64_t i = 0; i < n; ++i) {
        const double e = expected(i);
        if (!(std::abs(static_cast<double>(data[i]) - e) <= tol)) {
            char buf[256];
            std::snprintf(buf, sizeof buf, "%s differs from the front end this runtime computes at element %lld "
                          "(%.9g, expected %.9g)", what, static_cast<long long>(i), static_cast<double>(data[i]), e);
            return buf;
        }
    }
    return "";
}

}  // namespace

std::string mel_filters_mismatch(const float* data, int64_t n_mel, int64_t n_freq, const MelSpec& spec) {
    if (n_mel != spec.n_mel || n_freq != spec.n_fft / 2 + 1)
        return "audio.mel_filters has " + std::to_string(n_mel) + " x " + std::to_string(n_freq) + " weights, not " +
               std::to_string(spec.n_mel) + " mel bins x " + std::to_string(spec.n_fft / 2 + 1) + " frequencies";
    if (spec.n_fft != kMelNFFT) return "";  // log_mel refuses this STFT anyway
    const MelFilterbank& fb = whisper_mel_filterbank(spec.n_mel);
    double peak = 0.0;
    for (double w : fb.weights) peak = std::max(peak, w);
    // element f * n_mel + m of the file is filter m at frequency f
    return first_difference("audio.mel_filters (a different mel filterbank)", data, n_mel * n_freq, 1e-5 * peak,
                            [&](int64_t i) { return fb.weights[size_t(i % n_mel) * fb.n_freq + size_t(i / n_mel)]; });
}

std::string mel_window_mismatch(const float* data, int64_t n, const MelSpec& spec) {
    if (n != spec.n_fft)
        return "audio.mel_window has " + std::to_string(n) + " samples, not n_fft = " + std::to_string(spec.n_fft);
    if (spec.n_fft != kMelNFFT) return "";
    return first_difference("audio.mel_window (not the periodic Hann window)", data, n, 1e-6,
                            [](int64_t i) { return frontend().window[size_t(i)]; });
}

MelFilterbank mel_filterbank_from_freq_major(const float* data, int n_freq, int n_mel) {
    if (data == nullptr || n_freq != kMelNFreq || n_mel < 1 || n_mel > 4096)
        throw ModelError("mel filterbank must have shape [" + std::to_string(kMelNFreq) +
                         ", n_mel]; got [" + std::to_string(n_freq) + ", " + std::to_string(n_mel) + "]");
    MelFilterbank fb;
    fb.n_mel = n_mel;
    fb.n_freq = n_freq;
    fb.weights.resize(static_cast<size_t>(n_mel) * n_freq);
    for (int f = 0; f < n_freq; ++f) {
        for (int m = 0; m < n_mel; ++m) {
            const float v = data[static_cast<size_t>(f) * n_mel + m];
            if (!std::isfinite(v) || v < 0.0f)
                throw ModelError("mel filterbank has a negative or non-finite weight at [" + std::to_string(f) +
                                 ", " + std::to_string(m) + "]");
            fb.weights[static_cast<size_t>(m) * n_freq + f] = v;
        }
    }
    find_spans(fb);
    return fb;
}

MelSpectrogram log_mel(const float* pcm, size_t n, const MelSpec& spec, int n_threads) {
    if (spec.sample_rate != kMelSampleRate || spec.n_fft != kMelNFFT || spec.hop != kMelHop)
        throw ModelError("the mel front end computes a 16 kHz STFT with n_fft 400 and hop 160 only, not " +
                         std::to_string(spec.sample_rate) + " Hz / n_fft " + std::to_string(spec.n_fft) + " / hop " +
                         std::to_string(spec.hop));
    if (spec.n_mel < 1 || spec.n_mel > 4096) throw ModelError("mel bins out of range: " + std::to_string(spec.n_mel));
    const MelFilterbank& fb = whisper_mel_filterbank(spec.n_mel);
    const size_t W = spec.window_samples;
    if (W == 0) return log_mel(pcm, n, fb, n_threads);
    if (W % kMelHop != 0 || W / kMelHop > (1u << 20)) throw ModelError("mel window of " + std::to_string(W) + " samples");
    if (n == 0 || pcm == nullptr) throw AudioError("audio is empty");
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(pcm[i]))
            throw AudioError("audio contains a non-finite sample (NaN or inf) at index " + std::to_string(i));
    }
    const size_t n_windows = (n + W - 1) / W, per = W / kMelHop;
    if (n_windows * per * size_t(spec.n_mel) > static_cast<size_t>(std::numeric_limits<int>::max()))
        throw AudioError("audio too long: " + std::to_string(n) + " samples");
    MelSpectrogram mel;
    mel.n_mel = spec.n_mel;
    mel.n_frames = static_cast<int>(n_windows * per);
    mel.data.resize(size_t(mel.n_mel) * mel.n_frames);
    std::vector<float> window(W);
    for (size_t k = 0; k < n_windows; ++k) {
        const size_t s0 = k * W, len = std::min(W, n - s0);
        std::copy(pcm + s0, pcm + s0 + len, window.begin());
        std::fill(window.begin() + len, window.end(), 0.0f);
        const MelSpectrogram one = log_mel(window.data(), W, fb, n_threads);
        for (int m = 0; m < mel.n_mel; ++m) {
            std::copy(one.data.begin() + size_t(m) * per, one.data.begin() + size_t(m + 1) * per,
                      mel.data.begin() + size_t(m) * mel.n_frames + k * per);
        }
    }
    return mel;
}

MelSpectrogram log_mel(const float* pcm, size_t n, int n_threads) {
    return log_mel(pcm, n, whisper_mel_filterbank(), n_threads);
}

MelSpectrogram log_mel(const float* pcm, size_t n, const MelFilterbank& fb, int n_threads) {
    if (fb.n_freq != kMelNFreq || fb.n_mel < 1 || fb.weights.size() != static_cast<size_t>(fb.n_mel) * fb.n_freq ||
        fb.first.size() != static_cast<size_t>(fb.n_mel) || fb.last.size() != static_cast<size_t>(fb.n_mel))
        throw ModelError("mel filterbank does not have " + std::to_string(kMelNFreq) + " frequency bins");
    if (n_threads < 0) throw InputError("n_threads must be >= 0 (0 = all cores), got " + std::to_string(n_threads));
    if (n == 0 || pcm == nullptr) throw AudioError("audio is empty");
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(pcm[i]))
            throw AudioError("audio contains a non-finite sample (NaN or inf) at index " + std::to_string(i));
    }
    if (n < kMelMinSamples)
        throw AudioError("audio too short for a mel frame: " + std::to_string(n) + " samples, need at least " +
                         std::to_string(kMelMinSamples) + " (10 ms at 16 kHz)");
    const size_t frames = n / kMelHop;
    const size_t max_frames = static_cast<size_t>(std::numeric_limits<int>::max()) / static_cast<size_t>(fb.n_mel);
    if (frames > max_frames) throw AudioError("audio too long: " + std::to_string(n) + " samples");

    MelSpectrogram mel;
    mel.n_mel = fb.n_mel;
    mel.n_frames = static_cast<int>(frames);
    mel.data.resize(static_cast<size_t>(mel.n_mel) * frames);

    // A task per contiguous range of frames; tiny inputs stay on one thread.
    constexpr int kMinFramesPerTask = 32;
    constexpr int kMaxThreads = 256;
    int threads = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
    threads = std::max(1, std::min({threads, kMaxThreads, (mel.n_frames + kMinFramesPerTask - 1) / kMinFramesPerTask}));
    const int T = mel.n_frames;
    auto range = [&](int i) { return std::make_pair(static_cast<int>(static_cast<long long>(T) * i / threads),
                                                    static_cast<int>(static_cast<long long>(T) * (i + 1) / threads)); };

    std::vector<float> task_max(threads, -std::numeric_limits<float>::infinity());
    run_tasks(threads, [&](int i) {
        const auto [t0, t1] = range(i);
        task_max[i] = log_mel_frames(pcm, n, fb, t0, t1, T, mel.data.data());
    });
    const float floor = *std::max_element(task_max.begin(), task_max.end()) - 8.0f;
    run_tasks(threads, [&](int i) {
        const auto [t0, t1] = range(i);
        for (int m = 0; m < mel.n_mel; ++m) {
            float* row = mel.data.data() + static_cast<size_t>(m) * T;
            for (int t = t0; t < t1; ++t) row[t] = (std::max(row[t], floor) + 4.0f) / 4.0f;
        }
    });
    return mel;
}

}  // namespace cm
