"""Audio input: files or arrays to float32 mono 16 kHz, and the Whisper log-mel of the C++ core."""
from __future__ import annotations

import io
import math
import numbers
import os
from typing import Any, BinaryIO, Iterator, Optional, Tuple, Union

import numpy as np

from .errors import AudioError, InputError

SAMPLE_RATE = 16000
# Both processors resample with a high-quality polyphase filter; soxr "HQ" is at least as good.
_RESAMPLE_QUALITY = "HQ"
BLOCK_SECONDS = 10.0  # file_blocks' read granularity
# A 2-D array whose smaller side is at most this many rows is taken as (channels, n).
_MAX_CHANNELS_FIRST = 8

AudioInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, np.ndarray, Any]
# Encoded audio as bytes: a bytes value shorter than this, without NUL bytes, that names an existing file is taken
# as that file's name (bytes paths were accepted before encoded bytes were); real encoded audio has NULs.
_MAX_BYTES_PATH = 4096


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


def _is_file_object(audio: Any) -> bool:
    return not isinstance(audio, np.ndarray) and callable(getattr(audio, "read", None))


def is_encoded(audio: Any) -> bool:
    """Whether ``audio`` is taken as an encoded file: a path, encoded bytes (``bytes``, ``bytearray``,
    ``memoryview``) or a binary file object, as opposed to an array of samples."""
    return isinstance(audio, (str, os.PathLike, bytes, bytearray, memoryview)) or _is_file_object(audio)


def _bytes_path(data: bytes) -> Optional[str]:
    """The file name a short, NUL-free bytes value names, when such a file exists (else None: encoded audio)."""
    if len(data) >= _MAX_BYTES_PATH or b"\0" in data:
        return None
    name = os.fsdecode(data)
    return name if os.path.isfile(name) else None


def audio_source(audio: Any) -> "Tuple[Union[str, BinaryIO], str]":
    """What libsndfile opens for an encoded input, and a name for messages: ``(file name, name)`` for a path,
    ``(binary file object, description)`` for bytes or a file object.

    Bytes-like values are wrapped in a read-only in-memory file (``bytes`` are not copied); a file object is read
    from its current position (seekable objects as they are, others read once into memory). A ``bytes`` value
    that names an existing file is taken as that path. Raises AudioError for a missing path or an object whose
    ``read`` does not return bytes.
    """
    if isinstance(audio, bytes):
        name = _bytes_path(audio)
        if name is not None:
            return name, name
    if isinstance(audio, (str, os.PathLike)):
        name = audio_file_name(audio)
        return name, name
    if isinstance(audio, (bytes, bytearray, memoryview)):
        # BytesIO shares an immutable bytes object; other buffers are copied once.
        data = audio if isinstance(audio, bytes) else memoryview(audio).tobytes()
        if not data:
            raise AudioError("encoded audio is empty (0 bytes)")
        return io.BytesIO(data), f"<{len(data)} bytes of encoded audio>"
    if _is_file_object(audio):
        label = getattr(audio, "name", None)
        label = f"<file object {label}>" if isinstance(label, str) else f"<{type(audio).__name__} file object>"
        seekable = getattr(audio, "seekable", None)
        ok = callable(getattr(audio, "seek", None)) and callable(getattr(audio, "tell", None))
        try:
            text = isinstance(audio, io.TextIOBase) or isinstance(audio.read(0), str)
            if callable(seekable):
                ok = ok and bool(seekable())
        except (OSError, ValueError, TypeError) as exc:
            raise AudioError(f"cannot read audio from {label}: {exc}") from exc
        if text:
            raise AudioError(f"{label} is a text file object; open the file in binary mode")
        if ok:
            return audio, label
        try:
            data = audio.read()
        except (OSError, ValueError) as exc:
            raise AudioError(f"cannot read audio from {label}: {exc}") from exc
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioError(f"{label} returned {type(data).__name__} from read(); open the file in binary mode")
        return io.BytesIO(bytes(data)), label
    raise AudioError(f"expected a file path, encoded audio bytes, a binary file object or an array of samples, "
                     f"got {type(audio).__name__}")


def read_error(exc: BaseException, source: Any) -> str:
    """libsndfile's reason, without the repr of an in-memory file that soundfile puts into its message."""
    if isinstance(source, str):
        return str(exc)
    reason = getattr(exc, "error_string", None)
    if not isinstance(reason, str) or not reason:
        reason = str(exc).replace(f"Error opening {source!r}: ", "")
    return reason


def _decode_hint(audio: Any) -> str:
    if isinstance(audio, bytes) and len(audio) < _MAX_BYTES_PATH and b"\0" not in audio:
        return f" (taken as encoded audio; as a file name: no such file {os.fsdecode(audio)!r})"
    return ""


def _read_file(audio: Any) -> "tuple[np.ndarray, float, str]":
    import soundfile as sf

    source, name = audio_source(audio)
    what = f"audio file {name}" if isinstance(source, str) else f"audio from {name}"
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot read {what}: {read_error(exc, source)}{_decode_hint(audio)}") from exc
    if data.size == 0:
        raise AudioError(f"audio file has no samples: {name}" if isinstance(source, str) else f"{what} has no samples")
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
    return _downmix(arr)


def _downmix(frames: np.ndarray) -> np.ndarray:
    """Mono of a (n, channels) array: the one channel, or the channels' average in float64."""
    if frames.shape[1] == 1:
        return frames[:, 0]
    return frames.mean(axis=1, dtype=np.float64)


def _finite_float32(mono: np.ndarray, where: str = "", offset: int = 0) -> np.ndarray:
    """``mono`` as contiguous float32; AudioError at its first NaN/inf sample (numbered from ``offset``)."""
    if not np.all(np.isfinite(mono)):
        bad = offset + int(np.flatnonzero(~np.isfinite(mono))[0])
        raise AudioError(f"audio contains NaN or infinite samples{where} (first at sample {bad})")
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_audio(audio: AudioInput, sample_rate: Optional[float] = None) -> np.ndarray:
    """Return ``audio`` as a contiguous float32 mono array at 16 kHz.

    ``audio`` is a path (anything libsndfile reads: wav, flac, ogg, mp3, ...), the encoded contents of such a
    file (``bytes``, ``bytearray``, ``memoryview``, or a binary file object read from its current position;
    see :func:`audio_source`) or an array of samples: shape (n,), (n, channels) or (channels, n) with at most
    8 channels; integer samples are scaled to [-1, 1), floating-point samples are kept as they are. Channels
    are averaged. An array's rate is ``sample_rate`` (16 kHz when omitted); a file's rate is its own
    (``sample_rate``, if given, must match it). Other rates are resampled with soxr. Raises AudioError for a
    missing or unreadable file, undecodable bytes, empty audio, NaN/inf samples, bad shapes or a non-positive
    sample rate.
    """
    if is_encoded(audio):
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

    mono = _finite_float32(_to_mono(data), where)

    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality=_RESAMPLE_QUALITY)
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if mono.size == 0:
            raise AudioError(f"audio is empty after resampling from {rate:g} Hz to {SAMPLE_RATE} Hz{where}")
    return mono


def file_blocks(path: "os.PathLike[str] | str | bytes | bytearray | memoryview | BinaryIO",
                sample_rate: Optional[float] = None,
                block_s: float = BLOCK_SECONDS) -> Tuple[float, Iterator[np.ndarray]]:
    """Opens an audio file (a path, encoded bytes or a binary file object; see :func:`crispmoss.audio.audio_source`)
    for block-wise reading as float32 mono 16 kHz (the same samples :func:`crispmoss.load_audio` returns, without
    holding the whole file). Returns the duration from the header (seconds, 0 if unknown) and the block iterator."""
    import soundfile as sf

    source, name = audio_source(path)
    try:
        f = sf.SoundFile(source)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot read audio file {name}: {read_error(exc, source)}") from exc
    rate = float(f.samplerate)
    if sample_rate is not None and _check_rate(sample_rate) != rate:
        f.close()
        raise AudioError(f"sample_rate={sample_rate!r} does not match {name}, which is {rate:g} Hz "
                         f"(leave sample_rate out for files)")
    duration = f.frames / rate if f.frames and f.frames > 0 else 0.0
    block = max(1, int(block_s * rate))

    def blocks() -> Iterator[np.ndarray]:
        import soxr

        stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32",
                                                                         quality=_RESAMPLE_QUALITY)
        seen = 0
        with f:
            while True:
                try:
                    data = f.read(block, dtype="float32", always_2d=True)
                except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
                    raise AudioError(f"cannot read audio file {name}: {exc}") from exc
                last = len(data) < block
                if len(data):
                    mono = _finite_float32(_downmix(data), f" in {name}", seen)
                    seen += len(mono)
                    out = mono if stream is None else stream.resample_chunk(mono, last=last)
                    if len(out):
                        yield out
                elif stream is not None:
                    out = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                    if len(out):
                        yield out
                if last:
                    break
            if seen == 0:
                raise AudioError(f"audio file has no samples: {name}")

    return duration, blocks()


def open_audio(audio: AudioInput, sample_rate: Optional[float] = None) -> Tuple[float, Iterator[np.ndarray]]:
    """Duration (seconds, 0 if unknown) and 16 kHz mono blocks of a path, encoded bytes or a binary file object
    (streamed) or an array (in memory)."""
    if is_encoded(audio):
        return file_blocks(audio, sample_rate)
    x = load_audio(audio, sample_rate)
    return len(x) / SAMPLE_RATE, iter([x])


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


__all__ = ["SAMPLE_RATE", "audio_source", "file_blocks", "is_encoded", "load_audio", "log_mel", "open_audio"]
