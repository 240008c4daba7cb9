"""Shared helpers of the product-surface tests (session, sampling, long audio, CLI, formats, hub, threads).

Tiny random models are written once per pytest run into the session's base temp folder and reused by every
test module that imports these fixtures; conftest's tiny_*_gguf_f16 fixtures are used instead when they exist.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import crispmoss
from crispmoss.convert import convert
from crispmoss.testing import make_diarize_checkpoint, make_tiny_checkpoint
from shared_paths import AUDIO_DIR


JFK = AUDIO_DIR / "jfk.wav"
LIBRI_0870 = AUDIO_DIR / "librivox_ss_0870.wav"
LIBRI_0880 = AUDIO_DIR / "librivox_ss_0880.wav"
JFK_FLAC = AUDIO_DIR / "jfk_stereo_44k1.flac"
SR = 16000

# One compute thread per session keeps the tiny models fast and stable on a loaded 2-core machine.
THREADS = 1


def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, arch: str, seed: int = 0) -> str:
    root = tmp_path_factory.getbasetemp() / "surface_models"
    root.mkdir(exist_ok=True)
    out = root / f"{arch}-seed{seed}-f16.gguf"
    if not out.exists():
        hf_dir = root / f"{arch}-seed{seed}-hf"
        hf = (make_diarize_checkpoint(hf_dir, seed=seed) if arch == "moss_transcribe_diarize"
              else make_tiny_checkpoint(arch, hf_dir, seed=seed))
        tmp = root / f"{out.name}.part"
        convert(hf, tmp, "f16", progress=False)
        os.replace(tmp, out)
    return str(out)


def _conftest_or_own(request: pytest.FixtureRequest, name: str, arch: str) -> str:
    try:
        return str(request.getfixturevalue(name))
    except pytest.FixtureLookupError:
        return tiny_gguf(request.getfixturevalue("tmp_path_factory"), arch)


@pytest.fixture(scope="session")
def transcribe_gguf(request: pytest.FixtureRequest) -> str:
    return _conftest_or_own(request, "tiny_transcribe_gguf_f16", "moss_transcribe")


@pytest.fixture(scope="session")
def audio_gguf(request: pytest.FixtureRequest) -> str:
    return _conftest_or_own(request, "tiny_audio_gguf_f16", "moss_audio")


@pytest.fixture(scope="session")
def diarize_gguf(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random MOSS-Transcribe-Diarize (crispmoss.testing.make_diarize_checkpoint), converted to F16."""
    return tiny_gguf(tmp_path_factory, "moss_transcribe_diarize")


@pytest.fixture(scope="session")
def transcribe_model(transcribe_gguf: str) -> crispmoss.Model:
    return crispmoss.Model(transcribe_gguf, THREADS)


@pytest.fixture(scope="session")
def audio_model(audio_gguf: str) -> crispmoss.Model:
    return crispmoss.Model(audio_gguf, THREADS)


@pytest.fixture(scope="session")
def jfk() -> np.ndarray:
    return crispmoss.load_audio(JFK)


def speechlike(seconds: float, seed: int = 0, gap_every: float = 0.0) -> np.ndarray:
    """Shared speech clips laid end to end (with short pauses) plus faint noise, cut to ``seconds``."""
    rng = np.random.default_rng(seed)
    clips = [crispmoss.load_audio(p) for p in (JFK, LIBRI_0870, LIBRI_0880)]
    parts, n, k = [], 0, 0
    target = int(seconds * SR)
    while n < target:
        c = clips[k % len(clips)]
        pause = np.zeros(int(SR * (0.3 + 0.4 * rng.random())), dtype=np.float32)
        parts += [c, pause]
        n += len(c) + len(pause)
        k += 1
    x = np.concatenate(parts)[:target]
    x = x + rng.normal(0, 1e-3, size=len(x)).astype(np.float32)
    return x.astype(np.float32)


__all__ = ["AUDIO_DIR", "JFK", "JFK_FLAC", "LIBRI_0870", "LIBRI_0880", "SR", "THREADS", "audio_gguf", "audio_model",
           "diarize_gguf",
           "jfk", "speechlike", "tiny_gguf", "transcribe_gguf", "transcribe_model"]
