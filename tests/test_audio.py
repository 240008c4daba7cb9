"""crispmoss.load_audio: files and arrays to float32 mono 16 kHz, with AudioError for unusable input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import crispmoss
from crispmoss import AudioError, load_audio
from shared_paths import AUDIO_DIR

AUDIO = AUDIO_DIR


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    wav, sr = sf.read(AUDIO / "jfk.wav", dtype="float32")
    assert sr == 16000
    return wav


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_sample_rate_constant():
    assert crispmoss.SAMPLE_RATE == 16000


def test_wav_file(jfk):
    for path in (AUDIO / "jfk.wav", str(AUDIO / "jfk.wav"), str(AUDIO / "jfk.wav").encode()):
        out = load_audio(path)
        assert out.dtype == np.float32 and out.ndim == 1 and out.flags.c_contiguous
        assert np.array_equal(out, jfk)


def test_stereo_flac_44k1_is_averaged_and_resampled(jfk):
    out = load_audio(AUDIO / "jfk_stereo_44k1.flac")
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == 176000
    # Right channel = 0.5 * left, so an averaging downmix gives 0.75 of the original level.
    assert rms(out) / rms(jfk) == pytest.approx(0.75, abs=0.02)
    assert np.abs(out).max() / np.abs(jfk).max() == pytest.approx(0.75, abs=0.03)
    assert np.corrcoef(out, jfk)[0, 1] > 0.85


def test_sample_rate_must_match_file():
    assert len(load_audio(AUDIO / "jfk.wav", sample_rate=16000)) == 176000
    with pytest.raises(AudioError, match="does not match"):
        load_audio(AUDIO / "jfk.wav", sample_rate=8000)


@pytest.mark.parametrize("fmt,subtype,ext", [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3"),
                                             ("WAV", "PCM_U8", "wav"), ("WAV", "FLOAT", "wav")])
def test_other_formats(tmp_path, jfk, fmt, subtype, ext):
    src = jfk[:48000]
    path = tmp_path / f"clip.{ext}"
    sf.write(path, src, 16000, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32
    # Lossy codecs may add a little priming or padding.
    assert abs(len(out) - len(src)) <= 2000
    assert rms(out) == pytest.approx(rms(src), rel=0.1)


def test_int16_scaling():
    x = np.array([-32768, -16384, 0, 16384, 32767], np.int16)
    out = load_audio(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([-1.0, -0.5, 0.0, 0.5, 32767 / 32768], np.float32))


def test_int32_uint8_int8_scaling():
    np.testing.assert_allclose(load_audio(np.array([-2**31, 2**30, 2**31 - 1], np.int32)),
                               [-1.0, 0.5, (2**31 - 1) / 2**31], rtol=1e-7)
    np.testing.assert_array_equal(load_audio(np.array([0, 64, 128, 192, 255], np.uint8)),
                                  np.array([-1.0, -0.5, 0.0, 0.5, 127 / 128], np.float32))
    np.testing.assert_array_equal(load_audio(np.array([-128, 64], np.int8)), np.array([-1.0, 0.5], np.float32))


def test_float_samples_kept_as_they_are():
    x = np.array([-3.0, 0.25, 1.5], np.float64)
    out = load_audio(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))
    assert np.array_equal(load_audio([0.1, -0.2, 0.3]), np.array([0.1, -0.2, 0.3], np.float32))


def test_two_channel_downmix(jfk):
    stereo = np.stack([jfk, 0.5 * jfk], axis=1)  # (n, 2)
    out = load_audio(stereo)
    np.testing.assert_allclose(out, 0.75 * jfk, atol=1e-7)
    np.testing.assert_allclose(load_audio(stereo.T.copy()), out, atol=0)  # (2, n)
    assert np.array_equal(load_audio(jfk[:, None]), jfk)  # (n, 1)
    assert np.array_equal(load_audio(jfk[None, :]), jfk)  # (1, n)


def test_int16_stereo_downmix():
    x = np.array([[32767, -32768], [16384, 16384], [0, -16384]], np.int16)
    np.testing.assert_allclose(load_audio(x), [-0.5 / 32768, 0.5, -0.25], atol=1e-7)


def test_six_channels():
    n = 16000
    chans = np.stack([np.full(n, c / 10.0, np.float32) for c in range(6)], axis=1)  # (n, 6)
    out = load_audio(chans)
    assert out.shape == (n,)
    np.testing.assert_allclose(out, 0.25, atol=1e-7)
    np.testing.assert_allclose(load_audio(chans.T), 0.25, atol=1e-7)  # (6, n)


def test_six_channel_file(tmp_path):
    n = 8000
    data = np.stack([np.full(n, c / 10.0, np.float32) for c in range(6)], axis=1)
    path = tmp_path / "six.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), 0.25, atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000, 11025.0])
def test_resampling_lengths(rate):
    seconds = 2
    t = np.arange(int(rate * seconds)) / rate
    x = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    out = load_audio(x, sample_rate=rate)
    assert out.dtype == np.float32
    assert abs(len(out) - 16000 * seconds) <= 1
    # A 440 Hz tone survives resampling with its level.
    assert rms(out[1000:-1000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resampled_8k_jfk_keeps_speech(jfk):
    import soxr

    down = soxr.resample(jfk, 16000, 8000, quality="VHQ").astype(np.float32)
    out = load_audio(down, sample_rate=8000)
    assert len(out) == 176000
    # Speech energy lies mostly below 4 kHz, so the round trip is close to the original.
    assert np.corrcoef(out, jfk)[0, 1] > 0.9


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="nope.wav"):
        load_audio(missing)
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_text_file_named_wav(tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match="notes.wav"):
        load_audio(bogus)
    with pytest.raises(AudioError):
        crispmoss.log_mel(bogus)


def test_empty_file_and_arrays(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav"):
        load_audio(path)
    for empty in (np.zeros(0, np.float32), np.zeros((0, 2), np.int16), np.zeros((2, 0)), []):
        with pytest.raises(AudioError):
            load_audio(empty)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite(value):
    x = np.zeros(1000, np.float32)
    x[123] = value
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(x)
    with pytest.raises(AudioError):
        load_audio(np.stack([x, x], axis=1), sample_rate=44100)


def test_bad_shapes_and_types():
    for bad in (np.zeros((2, 3, 1000)), np.float32(0.5), np.zeros((100, 200)), np.zeros(10, bool),
                np.zeros(10, np.complex64), np.array(["a", "b"]), {"a": 1}):
        with pytest.raises(AudioError):
            load_audio(bad)


@pytest.mark.parametrize("rate", [0, -16000, float("nan"), float("inf"), True, "16000"])
def test_bad_sample_rate(rate):
    with pytest.raises(AudioError, match="sample_rate"):
        load_audio(np.zeros(1000, np.float32), sample_rate=rate)


def test_audio_error_is_value_error():
    with pytest.raises(ValueError):
        load_audio(np.zeros(0))
