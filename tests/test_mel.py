"""The C++ log-mel against transformers' WhisperFeatureExtractor numpy path (no 30 s padding), which is
what both OpenMOSS processors call."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import crispmoss
from crispmoss import _core
from shared_paths import AUDIO_DIR

AUDIO = AUDIO_DIR
TOL = 1e-4


@pytest.fixture(scope="module")
def extractor():
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400)


def reference(extractor, wav: np.ndarray) -> np.ndarray:
    return extractor._np_extract_fbank_features(wav[None], device="cpu")[0]


def jfk() -> np.ndarray:
    wav, sr = sf.read(AUDIO / "jfk.wav", dtype="float32")
    assert sr == 16000
    return wav


def signals():
    rng = np.random.default_rng(1234)
    t = np.arange(16000 * 2) / 16000.0
    yield "jfk", jfk()
    yield "white_noise", (0.3 * rng.standard_normal(16000 * 3)).astype(np.float32)
    yield "silence", np.zeros(16000, np.float32)
    yield "sine_440", (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    yield "loud_sine_3k", (40.0 * np.sin(2 * np.pi * 3000.0 * t)).astype(np.float32)
    yield "dc", np.full(4000, 0.25, np.float32)
    for n in (16001, 12345, 1000, 401, 320, 201, 200, 199, 161, 160):
        yield f"noise_{n}", rng.uniform(-1, 1, n).astype(np.float32)


@pytest.mark.parametrize("name,wav", list(signals()), ids=[name for name, _ in signals()])
def test_matches_whisper_feature_extractor(extractor, name, wav):
    ref = reference(extractor, wav)
    ours = _core.log_mel(wav, 1)
    assert ours.dtype == np.float32
    assert ours.shape == (128, len(wav) // 160) == ref.shape
    assert np.abs(ours - ref).max() <= TOL


def test_jfk_frame_count_and_range():
    mel = crispmoss.log_mel(AUDIO / "jfk.wav")
    assert mel.shape == (128, 1100)
    # After the clamp to (max - 8) and (x + 4) / 4 every value lies within 2 of the clip maximum.
    assert mel.max() - mel.min() <= 2.0 + 1e-6


def test_threads_give_identical_output():
    wav = jfk()
    one = _core.log_mel(wav, 1)
    for n in (2, 3, 0, 64):
        assert np.array_equal(one, _core.log_mel(wav, n))


def test_filterbank_equals_transformers():
    audio_utils = pytest.importorskip("transformers.audio_utils")
    ref = audio_utils.mel_filter_bank(201, 128, 0, 8000, 16000, norm="slaney", mel_scale="slaney")
    ours = _core.mel_filters()
    assert ours.shape == ref.shape == (201, 128) and ours.dtype == np.float64
    # Equal up to the last bit of libm's exp/log against numpy's SIMD versions.
    np.testing.assert_allclose(ours, ref, rtol=1e-14, atol=1e-15)
    # As float32, the dtype the GGUF stores (audio.mel_filters), the two agree exactly.
    assert np.array_equal(ours.astype(np.float32), ref.astype(np.float32))


def test_external_filterbank(extractor):
    wav = jfk()
    ref = reference(extractor, wav)
    gguf_layout = extractor.mel_filters.astype(np.float32)  # torch shape [201, 128]
    ours = _core.log_mel(wav, 2, filters=gguf_layout)
    assert np.abs(ours - ref).max() <= TOL
    with pytest.raises(crispmoss.InputError):
        _core.log_mel(wav, 1, filters=np.ones((200, 128), np.float32))
    with pytest.raises(crispmoss.InputError):
        _core.log_mel(wav, 1, filters=np.full((201, 128), np.nan, np.float32))


def test_python_wrapper_accepts_load_audio_inputs():
    wav = jfk()
    direct = _core.log_mel(wav, 1)
    as_int16 = np.round(wav * 32768).astype(np.int16)
    assert np.array_equal(crispmoss.log_mel(as_int16), direct)
    assert np.array_equal(crispmoss.log_mel(str(AUDIO / "jfk.wav"), n_threads=2), direct)
    stereo = crispmoss.log_mel(np.stack([wav, wav], axis=1))
    assert np.array_equal(stereo, direct)
    resampled = crispmoss.log_mel(wav[::2].copy(), sample_rate=8000)
    assert resampled.shape == (128, 1100)


@pytest.mark.parametrize("bad", [np.zeros(0, np.float32), np.array([0.0, np.nan] * 200, np.float32),
                                 np.array([np.inf] + [0.0] * 500, np.float32)])
def test_bad_audio_raises_audio_error(bad):
    with pytest.raises(crispmoss.AudioError):
        _core.log_mel(bad, 1)


def test_too_short_raises_audio_error():
    for n in (1, 100, 159):
        with pytest.raises(crispmoss.AudioError, match="too short"):
            _core.log_mel(np.zeros(n, np.float32), 1)
    assert _core.log_mel(np.zeros(160, np.float32), 1).shape == (128, 1)


def test_bad_arguments():
    wav = np.zeros(1600, np.float32)
    with pytest.raises(crispmoss.InputError):
        _core.log_mel(wav, -1)
    with pytest.raises(crispmoss.InputError):
        crispmoss.log_mel(wav, n_threads=-2)
    with pytest.raises(crispmoss.AudioError):
        _core.log_mel(np.zeros((2, 1600), np.float32), 1)
    with pytest.raises(crispmoss.AudioError):
        _core.log_mel(np.array(["a", "b"]), 1)


def test_float64_and_strided_input_are_converted():
    wav = jfk()
    direct = _core.log_mel(wav, 1)
    assert np.array_equal(_core.log_mel(wav.astype(np.float64), 1), direct)
    doubled = np.repeat(wav, 2)
    assert np.array_equal(_core.log_mel(doubled[::2], 1), direct)
