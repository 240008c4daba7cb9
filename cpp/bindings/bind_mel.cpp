// Python surface of the mel front end: _core.log_mel, _core.mel_filters and the STFT constants.
#include <pybind11/numpy.h>

#include <memory>
#include <string>
#include <utility>

#include "audio/mel.h"
#include "bindings/bind.h"
#include "errors.h"

namespace py = pybind11;

namespace cm::bind {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

FloatArray as_float_array(const py::handle& obj, const char* what) {
    FloatArray arr = FloatArray::ensure(obj);
    if (!arr) {
        PyErr_Clear();
        throw AudioError(std::string(what) + " must be a numeric array");
    }
    return arr;
}

// Hands the vector's buffer to numpy without a copy; the capsule frees it with the array.
py::array_t<float> to_numpy(std::vector<float>&& data, py::ssize_t rows, py::ssize_t cols) {
    auto* owner = new std::vector<float>(std::move(data));
    py::capsule free_owner(owner, [](void* p) { delete static_cast<std::vector<float>*>(p); });
    return py::array_t<float>({rows, cols}, owner->data(), free_owner);
}

}  // namespace

void bind_mel(py::module_& m) {
    m.attr("MEL_SAMPLE_RATE") = kMelSampleRate;
    m.attr("MEL_N_FFT") = kMelNFFT;
    m.attr("MEL_HOP_LENGTH") = kMelHop;
    m.attr("MEL_N_MELS") = kMelBins;

    m.def(
        "log_mel",
        [](const py::object& audio, int n_threads, const py::object& filters) {
            FloatArray pcm = as_float_array(audio, "audio");
            if (pcm.ndim() != 1)
                throw AudioError("audio must be a 1-D array of mono samples, got " + std::to_string(pcm.ndim()) +
                                 " dimensions");
            MelFilterbank custom;
            const bool has_filters = !filters.is_none();
            if (has_filters) {
                FloatArray fb = FloatArray::ensure(filters);
                if (!fb) {
                    PyErr_Clear();
                    throw InputError("filters must be a numeric array of shape (201, n_mels)");
                }
                if (fb.ndim() != 2)
                    throw InputError("filters must have shape (201, n_mels), got " + std::to_string(fb.ndim()) +
                                     " dimensions");
                try {
                    custom = mel_filterbank_from_freq_major(fb.data(), static_cast<int>(fb.shape(0)),
                                                            static_cast<int>(fb.shape(1)));
                } catch (const ModelError& e) {
                    throw InputError(e.what());
                }
            }
            const float* data = pcm.data();
            const size_t n = static_cast<size_t>(pcm.shape(0));
            MelSpectrogram mel;
            {
                py::gil_scoped_release release;
                mel = has_filters ? log_mel(data, n, custom, n_threads) : log_mel(data, n, n_threads);
            }
            return to_numpy(std::move(mel.data), mel.n_mel, mel.n_frames);
        },
        py::arg("audio"), py::arg("n_threads") = 0, py::arg("filters") = py::none(),
        "Whisper log-mel (128, n_samples // 160) float32 of mono 16 kHz audio. filters: optional\n"
        "(201, n_mels) filterbank (transformers / GGUF layout) instead of the built-in Slaney one.");

    m.def(
        "mel_filters",
        [](int n_mels) {
            if (n_mels < 1 || n_mels > 1024) throw InputError("n_mels must be in 1..1024");
            const MelFilterbank fb = n_mels == kMelBins ? whisper_mel_filterbank()
                                                        : slaney_mel_filterbank(kMelNFreq, n_mels, 0.0, 8000.0,
                                                                                kMelSampleRate);
            py::array_t<double> out({static_cast<py::ssize_t>(fb.n_freq), static_cast<py::ssize_t>(fb.n_mel)});
            auto w = out.mutable_unchecked<2>();
            for (int f = 0; f < fb.n_freq; ++f)
                for (int k = 0; k < fb.n_mel; ++k) w(f, k) = fb.weights[static_cast<size_t>(k) * fb.n_freq + f];
            return out;
        },
        py::arg("n_mels") = kMelBins,
        "The built-in Slaney filterbank, shape (201, n_mels) float64, as transformers' mel_filter_bank.");
}

}  // namespace cm::bind
