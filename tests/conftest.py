"""Shared fixtures: tiny random MOSS checkpoints (official HF layout) and their GGUF conversions.

Everything is built once per test session into a temporary directory and cached by (arch, seed, ...).

Fixtures (all return pathlib.Path):
  tiny_transcribe_hf, tiny_transcribe_gguf_f32, tiny_transcribe_gguf_f16      MOSS-Transcribe, seed 0
  tiny_audio_hf, tiny_audio_gguf_f32, tiny_audio_gguf_f16                      MOSS-Audio, seed 0
  tiny_transcribe_hf_seed1, tiny_transcribe_gguf_f32_seed1                     same config, other weights
  tiny_audio_hf_seed1, tiny_audio_gguf_f32_seed1
  tiny_models: factory with .hf(arch, seed=0, shards=2) and .gguf(arch, seed=0, outtype="f32", shards=2)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

# The source tree is tested only where a developer build put the extension into it
# (scripts/dev_build.sh); otherwise the installed package is (pip install ., as CI does).
_PY = Path(__file__).resolve().parent.parent / "python"
if (str(_PY) not in sys.path and not os.environ.get("CRISPMOSS_TEST_INSTALLED")
        and any((_PY / "crispmoss").glob("_core*.so"))):
    sys.path.insert(0, str(_PY))


class TinyModels:
    """Builds tiny checkpoints / GGUFs on demand, each at most once per session."""

    def __init__(self, root: Path):
        self.root = root
        self._hf: Dict[Tuple[str, int, int], Path] = {}
        self._gguf: Dict[Tuple[str, int, str, int], Path] = {}

    def hf(self, arch: str, seed: int = 0, shards: int = 2) -> Path:
        from crispmoss.testing import make_checkpoint

        key = (arch, seed, shards)
        if key not in self._hf:
            self._hf[key] = make_checkpoint(
                arch, self.root / f"{arch}-s{seed}-sh{shards}-hf", seed=seed, sizes="tiny", shards=shards
            )
        return self._hf[key]

    def gguf(self, arch: str, seed: int = 0, outtype: str = "f32", shards: int = 2) -> Path:
        from crispmoss.convert import convert

        key = (arch, seed, outtype, shards)
        if key not in self._gguf:
            out = self.root / f"{arch}-s{seed}-sh{shards}-{outtype}.gguf"
            self._gguf[key] = convert(self.hf(arch, seed, shards), out, outtype=outtype, progress=False)
        return self._gguf[key]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_transcribe_hf(tiny_models) -> Path:
    return tiny_models.hf("moss_transcribe")


@pytest.fixture(scope="session")
def tiny_transcribe_gguf_f32(tiny_models) -> Path:
    return tiny_models.gguf("moss_transcribe", outtype="f32")


@pytest.fixture(scope="session")
def tiny_transcribe_gguf_f16(tiny_models) -> Path:
    return tiny_models.gguf("moss_transcribe", outtype="f16")


@pytest.fixture(scope="session")
def tiny_audio_hf(tiny_models) -> Path:
    return tiny_models.hf("moss_audio")


@pytest.fixture(scope="session")
def tiny_audio_gguf_f32(tiny_models) -> Path:
    return tiny_models.gguf("moss_audio", outtype="f32")


@pytest.fixture(scope="session")
def tiny_audio_gguf_f16(tiny_models) -> Path:
    return tiny_models.gguf("moss_audio", outtype="f16")


@pytest.fixture(scope="session")
def tiny_transcribe_hf_seed1(tiny_models) -> Path:
    return tiny_models.hf("moss_transcribe", seed=1)


@pytest.fixture(scope="session")
def tiny_transcribe_gguf_f32_seed1(tiny_models) -> Path:
    return tiny_models.gguf("moss_transcribe", seed=1, outtype="f32")


@pytest.fixture(scope="session")
def tiny_audio_hf_seed1(tiny_models) -> Path:
    return tiny_models.hf("moss_audio", seed=1)


@pytest.fixture(scope="session")
def tiny_audio_gguf_f32_seed1(tiny_models) -> Path:
    return tiny_models.gguf("moss_audio", seed=1, outtype="f32")
