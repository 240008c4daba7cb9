"""Hostile and unusual audio: every input gives a transcript or a clear crispmoss.AudioError, never a crash,
a hang or another exception type. Tiny random models (both architectures), two generated tokens per request.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

import crispmoss
from crispmoss import AudioError
from shared_paths import JFK

ROOT = Path(__file__).resolve().parents[1]
# The package under test (the dev tree, or a staged/installed one), for child processes.
PKG_PARENT = str(Path(crispmoss.__file__).absolute().parent.parent)



def _speech(seconds: float = 2.0) -> np.ndarray:
    if JFK.exists():
        x, sr = sf.read(str(JFK), dtype="float32")
        assert sr == 16000
        return np.ascontiguousarray(x[: int(seconds * 16000)])
    t = np.arange(int(seconds * 16000)) / 16000.0
    return (0.3 * np.sin(2 * np.pi * (150 + 400 * t) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tiny_transcribe_gguf_f16, tiny_audio_gguf_f16):
    return {"moss_transcribe": crispmoss.Model(tiny_transcribe_gguf_f16, 2),
            "moss_audio": crispmoss.Model(tiny_audio_gguf_f16, 2)}


def _ok(t: crispmoss.Transcript, duration: float) -> None:
    assert isinstance(t.text, str)
    assert t.stop_reason in ("stop", "length")
    assert t.duration == pytest.approx(duration, abs=2e-3)


rng = np.random.default_rng(0)

# name → (array, sample_rate or None, expected: "ok" or a regex of the AudioError)
ARRAYS = {
    "empty": (np.zeros(0, np.float32), None, r"audio is empty"),
    "empty_2d": (np.zeros((0, 2), np.float32), None, r"audio is empty"),
    "one_sample": (np.array([0.1], np.float32), None, r"too short for a mel frame: 1 samples"),
    "159_samples": (np.full(159, 0.1, np.float32), None, r"too short for a mel frame: 159 samples"),
    "160_samples": (rng.standard_normal(160).astype(np.float32) * 0.1, None, "ok"),
    "161_samples": (rng.standard_normal(161).astype(np.float32) * 0.1, None, "ok"),
    "all_zero": (np.zeros(16000, np.float32), None, "ok"),
    "denormals": (np.full(16000, 1e-40, np.float32), None, "ok"),
    "nan": (np.array([0.1, np.nan] * 800, np.float32), None, r"NaN or infinite samples .*first at sample 1"),
    "inf": (np.array([0.1, -np.inf] * 800, np.float32), None, r"NaN or infinite samples"),
    "float_extremes": (np.array([3.4e38, -3.4e38] * 8000, np.float32), None, "ok"),
    "int16_clipped": (np.array([32767, -32768] * 8000, np.int16), None, "ok"),
    "int16_square": (np.repeat(np.array([32767, -32768], np.int16), 40)[np.arange(16000) % 80], None, "ok"),
    "uint8": (np.full(8000, 255, np.uint8), None, "ok"),
    "bool": (np.ones(16000, bool), None, r"boolean dtype"),
    "complex": (np.ones(16000, np.complex64), None, r"complex"),
    "3d": (np.zeros((2, 2, 16000), np.float32), None, r"shape \(2, 2, 16000\)"),
    "six_channels": (np.stack([_speech(1.0) * (i + 1) / 7 for i in range(6)], 1), None, "ok"),
    "six_channels_first": (np.stack([_speech(1.0) * (i + 1) / 7 for i in range(6)], 0), None, "ok"),
    "8_khz": (soxr.resample(_speech(1.0), 16000, 8000), 8000, "ok"),
    "96_khz": (soxr.resample(_speech(1.0), 16000, 96000), 96000, "ok"),
    "rate_zero": (_speech(1.0), 0, r"sample_rate must be a positive number"),
    "rate_nan": (_speech(1.0), float("nan"), r"sample_rate must be a positive number"),
    "rate_1hz": (np.zeros(3, np.float32), 1, "ok"),  # 3 s once resampled
    "strings": (np.array(["a", "b"]), None, r"expected a file path or an array"),
}


@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_array_inputs(models, arch, case):
    audio, rate, expect = ARRAYS[case]
    m = models[arch]
    if expect == "ok":
        t = m.transcribe(audio, sample_rate=rate, max_new_tokens=2)
        n = len(crispmoss.load_audio(audio, rate))
        _ok(t, n / 16000)
    else:
        with pytest.raises(AudioError, match=expect):
            m.transcribe(audio, sample_rate=rate, max_new_tokens=2)


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_audio")
    sp = _speech(2.0)
    sf.write(d / "8k.wav", soxr.resample(sp, 16000, 8000), 8000, subtype="PCM_16")
    sf.write(d / "96k.wav", soxr.resample(sp, 16000, 96000), 96000, subtype="PCM_24")
    sf.write(d / "6ch.wav", np.stack([sp * (i + 1) / 7 for i in range(6)], 1), 16000, subtype="PCM_16")
    sf.write(d / "clipped.wav", np.array([32767, -32768] * 16000, np.int16), 16000, subtype="PCM_16")
    sf.write(d / "silence.flac", np.zeros(16000, np.int16), 16000)
    sf.write(d / "nan.wav", np.array([0.1, np.nan] * 8000, np.float32), 16000, subtype="FLOAT")
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(d / "one_sample.wav", np.array([0.5], np.float32), 16000)
    raw = (d / "8k.wav").read_bytes()
    (d / "truncated_data.wav").write_bytes(raw[: len(raw) // 2])
    (d / "truncated_header.wav").write_bytes(raw[:30])
    (d / "text.wav").write_text("this is not audio\n" * 20)
    (d / "random.wav").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (d / "riff_lies.wav").write_bytes(b"RIFF\xff\xff\xff\x7fWAVEfmt " + bytes(100))
    (d / "zero_bytes.wav").write_bytes(b"")
    (d / "a_directory.wav").mkdir()
    return d


FILES = {
    "8k.wav": ("ok", 2.0),
    "96k.wav": ("ok", 2.0),
    "6ch.wav": ("ok", 2.0),
    "clipped.wav": ("ok", 2.0),
    "silence.flac": ("ok", 1.0),
    "truncated_data.wav": ("ok", None),  # what libsndfile can read of it
    "nan.wav": (r"NaN or infinite samples in .*nan.wav", None),
    "empty.wav": (r"audio file has no samples", None),
    "one_sample.wav": (r"too short for a mel frame", None),
    "truncated_header.wav": (r"cannot read audio file .*truncated_header.wav", None),
    "text.wav": (r"cannot read audio file .*text.wav", None),
    "random.wav": (r"cannot read audio file", None),
    "riff_lies.wav": (r"cannot read audio file", None),
    "zero_bytes.wav": (r"cannot read audio file", None),
    "a_directory.wav": (r"is a directory", None),
    "missing.wav": (r"audio file not found", None),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_files(models, audio_files, case):
    expect, duration = FILES[case]
    m = models["moss_transcribe"]
    path = audio_files / case
    if expect == "ok":
        t = m.transcribe(path, max_new_tokens=2)
        if duration is None:
            duration = len(crispmoss.load_audio(path)) / 16000
        _ok(t, duration)
    else:
        with pytest.raises(AudioError, match=expect):
            m.transcribe(path, max_new_tokens=2)


def test_file_sample_rate_mismatch(models, audio_files):
    with pytest.raises(AudioError, match=r"does not match .*8000 Hz"):
        models["moss_transcribe"].transcribe(audio_files / "8k.wav", sample_rate=16000, max_new_tokens=2)


def test_session_on_hostile_arrays(models):
    """The lower-level Session path validates too (its own checks, before the C++ core)."""
    m = models["moss_audio"]
    with pytest.raises(AudioError):
        m.session(np.array([np.nan] * 400, np.float32))
    with pytest.raises(AudioError):
        m.session(np.zeros(100, np.float32))
    s = m.session(np.zeros(400, np.float32))
    assert s.n_audio_tokens >= 1
    _ok(s.transcribe(max_new_tokens=2), 400 / 16000)


def test_core_set_audio_rejects_bad_buffers(models):
    """Straight to the binding: wrong rank, NaN and too-short buffers raise AudioError in C++."""
    core = crispmoss._core.Session(models["moss_transcribe"]._core, n_threads=1)
    with pytest.raises(AudioError):
        core.set_audio(np.zeros((2, 400), np.float32))
    with pytest.raises(AudioError, match="non-finite"):
        core.set_audio(np.array([0.0] * 300 + [np.inf], np.float32))
    with pytest.raises(AudioError, match="too short"):
        core.set_audio(np.zeros(10, np.float32))
    with pytest.raises(AudioError, match="empty"):
        core.set_audio(np.zeros(0, np.float32))


THREE_HOURS = textwrap.dedent(
    """
    import json, sys, time
    import crispmoss

    def peak_mib():  # VmHWM: this address space only (ru_maxrss carries the forking pytest's peak over exec)
        return [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024

    m = crispmoss.Model(sys.argv[1], 2)
    out = {}
    for name in sys.argv[2:]:  # a short file first: its peak is the baseline the long one must not exceed much
        t0 = time.time()
        r = m.transcribe(name, max_new_tokens=4)
        out[name] = {"seconds": time.time() - t0, "duration": r.duration,
                     "segments": [[s.start, s.end, s.text] for s in r.segments],
                     "maxrss_mib": peak_mib()}
    print(json.dumps(out))
    """
)


def _write_mostly_silent(path: Path, seconds: int, speech: np.ndarray) -> None:
    """Digital silence with `speech` at the start, in the middle and in the last minute."""
    n = seconds * 16000
    minute = 60 * 16000
    marks = {0, (n // 2) // minute * minute, n - minute}
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16") as f:
        for start in range(0, n, minute):
            block = np.zeros(minute, np.int16)
            if start in marks:
                block[: len(speech)] = speech
            f.write(block)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc/self/status")
def test_three_hour_file_bounded_memory(tiny_transcribe_gguf_f16, tmp_path):
    """3 h of 16 kHz audio (330 MiB as int16, 660 MiB as float32): digital silence with speech at the start,
    the middle and the end. The long-form path reads it in blocks, so the process peaks no higher than for a
    10-minute file (and far below the decoded audio's size), and it finishes quickly because silent passes skip
    the model."""
    speech = (_speech(11.0) * 32767).astype(np.int16)
    short, long_ = tmp_path / "ten_minutes.wav", tmp_path / "three_hours.wav"
    _write_mostly_silent(short, 600, speech)
    _write_mostly_silent(long_, 3 * 3600, speech)
    sanitized = "san" in os.environ.get("LD_PRELOAD", "")
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    if sanitized:  # ASan's quarantine of freed blocks would grow with the run, not with our buffers
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"
    try:
        out = subprocess.run([sys.executable, "-c", THREE_HOURS, str(tiny_transcribe_gguf_f16), str(short),
                              str(long_)], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        res = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        long_.unlink()
    base, r = res[str(short)], res[str(long_)]
    assert r["duration"] == pytest.approx(3 * 3600.0)
    segs = r["segments"]
    assert segs[0][0] == 0.0 and segs[-1][1] == pytest.approx(3 * 3600.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(segs, segs[1:]))  # passes tile the recording
    spoken = [s for s in segs if s[2]]
    assert 1 <= len(spoken) <= 6  # the three speech bursts (a burst may straddle a cut)
    assert any(s[0] < 30 for s in spoken) and any(abs(s[0] - 5400) < 60 for s in spoken)
    assert r["maxrss_mib"] - base["maxrss_mib"] < 100, (base["maxrss_mib"], r["maxrss_mib"])
    if not sanitized:
        assert r["maxrss_mib"] < 400, r["maxrss_mib"]  # decoded whole, the audio alone would be 660 MiB
    print(f"3 h file: {r['seconds']:.1f} s, {len(segs)} passes, peak RSS {r['maxrss_mib']:.0f} MiB "
          f"(10 min file: {base['maxrss_mib']:.0f} MiB)")
