"""The run-time CPU level of our kernels (cpp/cpu/level.h): CRISPMOSS_CPU=avx2|avx512|amx, read once at first use,
forces a level; a level the CPU lacks or an unknown value gives a one-line notice and the default, never an error.
With an F32 file and an f32 KV cache every level gives the same greedy tokens (F32 weights are never rounded; GELU
and the F16 matrix kernel give the same bits at every level, test_gemv.py). An e2e subset runs under
CRISPMOSS_CPU=avx2 in a subprocess. Each level runs in a subprocess of its own (the level is fixed per process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import crispmoss
from crispmoss import _core

ORDER = ("none", "avx2", "avx512", "amx")
BEST = _core.cpu_best_level()
TESTS = Path(__file__).resolve().parent


def has(level: str) -> bool:
    return ORDER.index(level) <= ORDER.index(BEST)


def run_py(code: str, *args: str, level: "str | None" = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(crispmoss.__file__)))
    env.pop("CRISPMOSS_GEMV", None)
    env.pop("CRISPMOSS_CPU", None)
    if level is not None:
        env["CRISPMOSS_CPU"] = level
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


_LEVEL = "from crispmoss import _core; print(_core.cpu_level(), _core.gemv_available())"


def notices(err: str) -> list:
    return [line for line in err.splitlines() if "CRISPMOSS_CPU" in line]


def test_env_forces_a_level():
    out = run_py(_LEVEL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [BEST, str(BEST != "none")] and not notices(out.stderr)
    for level in ORDER[1:]:
        out = run_py(_LEVEL, level=level)
        assert out.returncode == 0, out.stderr
        if has(level):
            assert out.stdout.split()[0] == level and not notices(out.stderr), (level, out.stderr)
        else:  # a level the CPU lacks: the best it has, one line saying so
            assert out.stdout.split()[0] == BEST, level
            assert len(notices(out.stderr)) == 1 and "lacks" in out.stderr, out.stderr
    out = run_py(_LEVEL, level="ggml")  # our kernels off, as CRISPMOSS_GEMV=ggml
    assert out.stdout.split() == ["none", "False"] and not notices(out.stderr)


def test_unknown_value_is_a_notice_not_an_error():
    out = run_py(_LEVEL, level="avx9000")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == BEST
    (line,) = notices(out.stderr)
    assert "unknown CRISPMOSS_CPU=avx9000" in line
    assert crispmoss.system_info()["cpu_kernels"] == _core.cpu_level()


_GREEDY = r"""
import json, sys, numpy as np, crispmoss
from crispmoss import _core
res = {"level": _core.cpu_level()}
for path in sys.argv[1:]:
    m = crispmoss.Model(path, n_threads=2, kv_type="f32")
    audio = (0.1 * np.sin(np.arange(32000) * 0.05) + 0.01 * np.random.default_rng(0).standard_normal(32000))
    t = m.transcribe(audio.astype(np.float32), max_new_tokens=24)
    b = _core.DecoderBench(path, 2, "f32", "")
    ids = [int(i) for i in np.random.default_rng(1).integers(0, b.n_vocab, 12)]
    tokens, margins, _ = b.greedy(ids, 24)
    res[path] = {"transcribe": list(t.tokens), "greedy": list(tokens), "margin": min(margins)}
print(json.dumps(res))
"""


@pytest.mark.skipif(BEST == "none", reason="CPU without AVX2/FMA/F16C: only ggml's kernels")
def test_f32_file_same_greedy_tokens_at_every_level(tiny_transcribe_gguf_f32, tiny_audio_gguf_f32):
    """Transcription (encoder, adapter, prefill, decode) and a 12-token prompt + 24 greedy steps (multi-row and
    one-row matrix-vector products), both models, F32 file, f32 KV cache: the same tokens at every level."""
    paths = [str(tiny_transcribe_gguf_f32), str(tiny_audio_gguf_f32)]
    runs = {}
    for level in [lv for lv in ORDER[1:] if has(lv)]:
        out = run_py(_GREEDY, *paths, level=level)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[level] = json.loads(out.stdout.strip().splitlines()[-1])
        assert runs[level]["level"] == level
    first, *rest = list(runs)
    for level in rest:
        for p in paths:
            assert runs[level][p]["transcribe"] == runs[first][p]["transcribe"], (level, p)
            assert runs[level][p]["greedy"] == runs[first][p]["greedy"], (level, p, runs[first][p]["margin"])


# The e2e subset that runs again under CRISPMOSS_CPU=avx2: stages and greedy tokens against the PyTorch reference
# (F32 and F16 files, 3 s), and batched sequences bit-identical to their single-stream runs at this level.
E2E_SUBSET = [
    "test_transcribe_e2e.py::test_stages_and_greedy_tokens",
    "test_batch.py::test_transcribe_many_equals_alone",
]


@pytest.mark.skipif(not has("avx2"), reason="CPU without AVX2/FMA/F16C")
def test_e2e_subset_at_avx2():
    env = dict(os.environ, CRISPMOSS_CPU="avx2", PYTHONPATH=os.path.dirname(os.path.dirname(crispmoss.__file__)))
    env.pop("CRISPMOSS_GEMV", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "3.0 or f16-f32 or f32-f32",
                          *[str(TESTS / t) for t in E2E_SUBSET]], capture_output=True, text=True, env=env,
                         timeout=600, cwd=str(TESTS.parent))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout.splitlines()[-1], out.stdout[-2000:]
