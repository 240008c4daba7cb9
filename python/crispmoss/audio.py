"""Audio input: files or arrays to float32 mono 16 kHz, and the Whisper log-mel of the C++ core."""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Optional, Union

import numpy as np

from .errors import AudioError, InputError

SAMPLE_RATE = 16000
# Both processors resample with a high-quality polyphase filter; soxr "HQ" is at least as good.
_RESAMPLE_QUALITY = "HQ"
# A 2-D array whose smaller side is at most this many rows is taken as (channels, n).
_MAX_CHANNELS_FIRST = 8

AudioInput = Union[str, bytes, "os.PathLike[str]", np.ndarray, Any]


def _check_rate(sample_rate: Any) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise AudioError(f"sample_rate must be a positive number, got {sample_rate!r}")
    rate = float(sample_rate)
    if not math.isfinite(rate) or rate <= 0:
        raise AudioError(f"sample_rate must be a positive number, got {sample_rate!r}")
    return rate


def audio_file_name(path: Union[str, bytes, "os.PathLike[str]"]) -> str:
    """The path as a str, checked to name an existing file (AudioError otherwise)."""
    name = os.fsdecode(os.fspath(path))
    if not os.path.exists(name):
        raise AudioError(f"audio file not found: {name}")
    if os.path.isdir(name):
        raise AudioError(f"audio path is a directory, not a file: {name}")
    return name


def _read_file(path: Union[str, bytes, "os.PathLike[str]"]) -> "tuple[np.ndarray, float, str]":
    import soundfile as sf

    name = audio_file_name(path)
    try:
        data, rate = sf.read(name, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot read audio file {name}: {exc}") from exc
    if data.size == 0:
        raise AudioError(f"audio file has no samples: {name}")
    return data, float(rate), name


def _to_float(arr: np.ndarray) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "f":
        return arr
    if kind == "i":
        # Signed PCM: full scale is 2^(bits-1), so int16 -32768..32767 maps to [-1, 1).
        return arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))
    if kind == "u":
        # Unsigned PCM (e.g. 8-bit WAV) is offset binary around 2^(bits-1).
        half = float(2 ** (8 * arr.dtype.itemsize - 1))
        return (arr.astype(np.float64) - half) / half
    if kind == "b":
        raise AudioError("audio array has boolean dtype; expected integer or floating-point samples")
    if kind == "c":
        raise AudioError("audio array is complex; expected real-valued samples")
    raise AudioError(f"audio array has unsupported dtype {arr.dtype}; expected integer or floating-point samples")


def _to_mono(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 1:
        return arr
    if arr.ndim != 2:
        raise AudioError(
            f"audio array has shape {arr.shape}; expected (n,), (n, channels) or (channels, n)")
    rows, cols = arr.shape
    if rows <= _MAX_CHANNELS_FIRST < cols:
        arr = arr.T
    elif not (cols <= _MAX_CHANNELS_FIRST or cols <= rows):
        raise AudioError(
            f"audio array has shape {arr.shape}: cannot tell samples from channels; expected (n,), "
            f"(n, channels) or (channels, n) with at most {_MAX_CHANNELS_FIRST} channels")
    if arr.shape[1] == 0 or arr.shape[0] == 0:
        raise AudioError(f"audio array has shape {arr.shape}, which holds no samples")
    if arr.shape[1] == 1:
        return arr[:, 0]
    return arr.mean(axis=1, dtype=np.float64)


def load_audio(audio: AudioInput, sample_rate: Optional[float] = None) -> np.ndarray:
    """Return ``audio`` as a contiguous float32 mono array at 16 kHz.

    ``audio`` is a path (anything libsndfile reads: wav, flac, ogg, mp3, ...) or an array of samples:
    shape (n,), (n, channels) or (channels, n) with at most 8 channels; integer samples are scaled
    to [-1, 1), floating-point samples are kept as they are. Channels are averaged. An array's rate is
    ``sample_rate`` (16 kHz when omitted); a file's rate is its own (``sample_rate``, if given, must
    match it). Other rates are resampled with soxr. Raises AudioError for a missing or unreadable
    file, empty audio, NaN/inf samples, bad shapes or a non-positive sample rate.
    """
    if isinstance(audio, (str, bytes, os.PathLike)):
        data, rate, name = _read_file(audio)
        if sample_rate is not None and _check_rate(sample_rate) != rate:
            raise AudioError(
                f"sample_rate={sample_rate!r} does not match {name}, which is {rate:g} Hz "
                f"(leave sample_rate out for files)")
        where = f" in {name}"
    else:
        rate = SAMPLE_RATE if sample_rate is None else _check_rate(sample_rate)
        try:
            data = np.asarray(audio)
        except (TypeError, ValueError) as exc:
            raise AudioError(f"cannot convert {type(audio).__name__} to an audio array: {exc}") from exc
        if data.dtype == object or data.dtype.kind in "SUV":
            raise AudioError(
                f"expected a file path or an array of samples, got {type(audio).__name__} of dtype {data.dtype}")
        if data.ndim == 0:
            raise AudioError("audio must be an array of samples, got a scalar")
        if data.size == 0:
            raise AudioError(f"audio is empty (shape {data.shape})")
        data = _to_float(data)
        where = ""

    mono = _to_mono(data)
    if not np.all(np.isfinite(mono)):
        bad = int(np.flatnonzero(~np.isfinite(mono))[0])
        raise AudioError(f"audio contains NaN or infinite samples{where} (first at sample {bad})")
    mono = np.ascontiguousarray(mono, dtype=np.float32)

    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality=_RESAMPLE_QUALITY)
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if mono.size == 0:
            raise AudioError(f"audio is empty after resampling from {rate:g} Hz to {SAMPLE_RATE} Hz{where}")
    return mono


def log_mel(audio: AudioInput, n_threads: int = 0, *, sample_rate: Optional[float] = None) -> np.ndarray:
    """Whisper log-mel features of ``audio`` (anything :func:`load_audio` accepts): float32 array of
    shape (128, n_samples // 160) at 16 kHz, computed by the C++ core on ``n_threads`` threads
    (0 = all cores). Raises AudioError for audio shorter than 160 samples (10 ms)."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 0:
        raise InputError(f"n_threads must be a non-negative integer (0 = all cores), got {n_threads!r}")
    pcm = load_audio(audio, sample_rate)
    from . import _core

    # The core caps threads itself; the cap here only keeps huge ints from overflowing a C int.
    return _core.log_mel(pcm, int(min(n_threads, 1024)))


__all__ = ["SAMPLE_RATE", "load_audio", "log_mel"]
