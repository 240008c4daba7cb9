"""Backends: system_info, backend selection and its errors, and the weight-offload path (run into host memory
here, since no GPU is needed for the copy, redirect and KV placement logic). Synthetic audio only, so the
installed-wheel checks can run this file anywhere."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import crispmoss
from crispmoss import InputError, ModelError, _core

N = 8


def _clip(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return _clip()


def _greedy(core_model, audio: np.ndarray, instruction: str = "") -> list:
    s = _core.Session(core_model, n_threads=1)
    s.set_audio(audio)
    return s.generate(instruction=instruction, max_new_tokens=N)["tokens"]


def test_system_info_lists_the_cpu():
    info = crispmoss.system_info()
    assert "cpu" in info["backends"]
    cpus = [d for d in info["devices"] if d["type"] == "cpu"]
    assert cpus and cpus[0]["backend"] == "cpu" and cpus[0]["memory_total"] > 0
    assert isinstance(info["cpu_features"], dict)
    assert isinstance(info["dynamic_backends"], bool)
    if sys.platform.startswith("linux") and info["cpu_features"]:
        import platform

        if platform.machine() in ("x86_64", "AMD64"):
            assert "SSE3" in info["cpu_features"] or "AVX2" in info["cpu_features"]


def test_cli_lists_backends():
    r = subprocess.run([sys.executable, "-m", "crispmoss", "info", "--backends"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "backends:" in r.stdout and "cpu" in r.stdout
    r = subprocess.run([sys.executable, "-m", "crispmoss", "info"], capture_output=True, text=True)
    assert r.returncode == 1 and "--backends" in r.stderr


@pytest.mark.parametrize("backend", ["cuda", "metal"])
def test_missing_gpu_backend_is_a_model_error(tiny_transcribe_gguf_f16, backend):
    if backend in crispmoss.system_info()["backends"] and any(
            d["backend"] == backend for d in crispmoss.system_info()["devices"]):
        pytest.skip(f"this build has a working {backend} device")
    with pytest.raises(ModelError, match=backend):
        crispmoss.Model(tiny_transcribe_gguf_f16, 1, backend=backend)


def test_bad_backend_arguments(tiny_transcribe_gguf_f16):
    p = tiny_transcribe_gguf_f16
    with pytest.raises(InputError, match="backend"):
        crispmoss.Model(p, backend="tpu")
    with pytest.raises(InputError, match="device"):
        crispmoss.Model(p, device=-1)
    with pytest.raises(InputError, match="n_gpu_layers"):
        crispmoss.Model(p, n_gpu_layers=-2)
    with pytest.raises(InputError):
        crispmoss.Model(p, n_gpu_layers=1.5)
    with pytest.raises(InputError, match="backend"):
        _core.Model(str(p), backend="tpu")


def test_auto_matches_cpu(tiny_transcribe_gguf_f16, clip):
    gpu = any(d["type"] in ("gpu", "igpu") for d in crispmoss.system_info()["devices"])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        auto = crispmoss.Model(tiny_transcribe_gguf_f16, 1)
    cpu = crispmoss.Model(tiny_transcribe_gguf_f16, 1, backend="cpu")
    assert cpu.backend == "cpu" and cpu.placement["device_bytes"] == 0
    if gpu:
        assert auto.backend != "cpu"
        return
    assert auto.backend == "cpu"
    # A CPU-only build is not a fallback: no notice. A GPU build without a GPU says so (once per process).
    gpu_backends = [b for b in crispmoss.system_info()["backends"] if b != "cpu"]
    pkg = os.path.dirname(crispmoss.__file__)
    gpu_libraries = [f for f in os.listdir(pkg) if "ggml-cuda" in f or "ggml-metal" in f]
    if not gpu_backends and not gpu_libraries:
        assert not [x for x in w if "running on the CPU" in str(x.message)]
    assert _greedy(auto._core, clip) == _greedy(cpu._core, clip)


@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
def test_offloaded_weights_give_the_same_tokens(tiny_models, clip, arch):
    """Weights copied out of the mapping (as for a GPU) must compute exactly what the mapped ones do."""
    path = str(tiny_models.gguf(arch, outtype="f16"))
    ask = "" if arch == "moss_transcribe" else "Describe the sound."
    base = _core.Model(path, backend="cpu")
    ref = _greedy(base, clip, ask)
    n_layer = None
    for n_gpu in (-1, 0, 1):
        m = _core._load_with_host_copy(path, n_gpu)
        pl = m.placement
        n_layer = pl["n_layer"]
        assert pl["backend"] == "cpu"
        assert pl["n_gpu_layers"] == (n_layer if n_gpu < 0 else min(n_gpu, n_layer))
        assert pl["full_offload"] == (n_gpu < 0)
        if n_gpu == 0:
            assert pl["device_bytes"] == 0
        else:
            assert pl["device_bytes"] > 0
        assert _greedy(m, clip, ask) == ref
    full = _core._load_with_host_copy(path, -1)
    part = _core._load_with_host_copy(path, 1)
    assert full.placement["device_bytes"] > part.placement["device_bytes"]
    # Reading weights back works wherever they live.
    for name in ("llm.blk.%d.attn.q.weight" % (n_layer - 1), "llm.final_norm.weight"):
        assert np.array_equal(full.tensor_data(name), base.tensor_data(name))


def test_more_gpu_layers_than_the_model_has(tiny_transcribe_gguf_f16):
    m = _core._load_with_host_copy(str(tiny_transcribe_gguf_f16), 1000)
    assert m.placement["n_gpu_layers"] == m.placement["n_layer"] and m.placement["full_offload"]


def test_cli_rejects_an_unavailable_backend(tiny_transcribe_gguf_f16, tmp_path):
    if any(d["backend"] == "cuda" for d in crispmoss.system_info()["devices"]):
        pytest.skip("a CUDA device is present")
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, _clip(1.0), 16000)
    r = subprocess.run([sys.executable, "-m", "crispmoss", "transcribe", "-m", str(tiny_transcribe_gguf_f16),
                        "--backend", "cuda", "-q", str(wav)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "cuda" in r.stderr and "Traceback" not in r.stderr


def _gpu_device() -> bool:
    return any(d["type"] in ("gpu", "igpu") for d in crispmoss.system_info()["devices"])


def _first_logits(core_model, audio: np.ndarray, instruction: str) -> np.ndarray:
    s = _core.Session(core_model, n_threads=1, kv_type="f32")
    s.enable_dumps(True)
    s.set_audio(audio)
    s.generate(instruction=instruction, max_new_tokens=1)
    return np.asarray(s.dumps()["logits"], dtype=np.float64)


@pytest.mark.skipif(not _gpu_device(), reason="needs a GPU device (CUDA or Metal build on a machine with one)")
@pytest.mark.parametrize("n_gpu", [-1, 0, 1])
@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
def test_gpu_matches_cpu(tiny_models, clip, arch, n_gpu):
    """Full, none and partial offload on a real GPU give the CPU's logits (f32 weights and KV: tight)."""
    path = str(tiny_models.gguf(arch, outtype="f32"))
    ask = "" if arch == "moss_transcribe" else "Describe the sound."
    ref = _first_logits(_core.Model(path, backend="cpu"), clip, ask)
    m = _core.Model(path, backend="auto", n_gpu_layers=n_gpu)
    assert m.placement["backend"] != "cpu"
    got = _first_logits(m, clip, ask)
    assert np.abs(got - ref).max() <= 2e-3 * max(1.0, np.abs(ref).max())
    assert int(got.argmax()) == int(ref.argmax())
