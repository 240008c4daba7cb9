#!/usr/bin/env python3
"""GPU checks and benchmark rows for scripts/device_check.sh. Run with the built package first on PYTHONPATH.

    device_gpu.py info    --out J
    device_gpu.py checks  --out J --dir D --gpu cuda [--threads N]        tiny models: CUDA against the CPU
    device_gpu.py bench   --out J --models-dir D --arch A [--arch B] --type q4_k --gpu cuda [--threads N]
    device_gpu.py sweep   --out J --models-dir D --arch A [--arch B] --types f16 q8_0 --gpu cuda
    device_gpu.py worker  '<json spec>'                                  one model on one backend (own process)
    device_gpu.py llama-gguf SRC DST                                     our decoder in llama.cpp's Qwen3 schema

Every command writes its JSON after each finished item, so a stage stopped by its time budget keeps what it did.
With ``--gpu cpu`` (scripts/device_check.sh --local) the same code runs with the CPU in the GPU's place (offload
through host copies, as tests/test_backends.py does), which proves the checks and the writer, not the GPU.

Verdicts: a check is "pass", "warn" (within 4x its tolerance, or greedy tokens that part after the first step,
where only the first step's logits can be compared), "fail", "error" (it raised) or "skip".
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("moss_transcribe", "moss_audio")
# First-step logits, max |gpu - cpu| / max(1, max |cpu|). F16/quantized weights: the GPU rounds activations
# differently (F16 or Q8_1 products on the GPU, F32 or Q8_K on the CPU), so these are orientation values that
# the first lent run will calibrate; "warn" up to 4x, "fail" beyond (or on NaN, or on a clear argmax change).
TOL = {"f32": 2e-3, "f16": 1e-2, "q8_0": 3e-2, "q4_k": 5e-2}
GREEDY_STEPS = 16
STEMS = {"moss_transcribe": "moss-transcribe-preview-2b", "moss_audio": "moss-audio-4b-instruct"}


def _now() -> float:
    return time.perf_counter()


def save(path: Optional[str], data: Dict[str, Any]) -> None:
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, p)


def _jsonable(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


# ------------------------------------------------------------------------------------------------------------
# audio
# ------------------------------------------------------------------------------------------------------------

def _audio_dir() -> Optional[Path]:
    env = os.environ.get("DC_AUDIO_DIR")
    cands = ([Path(env)] if env else []) + [ROOT / ".device" / "shared" / "audio", ROOT.parent / "shared" / "audio",
                                            Path("/work/shared/audio")]
    for c in cands:
        if (c / "jfk.wav").is_file():
            return c
    return None


_SPEECH: Dict[str, Any] = {}


def clip(seconds: float, seed: int = 0):
    """`seconds` of the shared speech clips laid end to end (synthetic voiced sound where they are absent)."""
    import numpy as np

    n = int(round(seconds * 16000))
    d = _audio_dir()
    if d is not None:
        try:
            if "speech" not in _SPEECH:
                from crispmoss import load_audio

                _SPEECH["speech"] = np.concatenate([load_audio(d / f) for f in
                                                    ("jfk.wav", "librivox_ss_0870.wav", "librivox_ss_0880.wav")
                                                    if (d / f).is_file()])
            s = _SPEECH["speech"]
            reps = -(-n // len(s))
            return np.ascontiguousarray(np.tile(s, reps)[:n], dtype=np.float32)
        except Exception:  # no soundfile: fall through to the synthetic clip
            pass
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(n)
    return x.astype(np.float32)


def instruction(arch: str) -> str:
    return "" if arch == "moss_transcribe" else "Describe the sound."


# ------------------------------------------------------------------------------------------------------------
# info
# ------------------------------------------------------------------------------------------------------------

def gpu_devices(backend: str = "cuda") -> List[Dict[str, Any]]:
    from crispmoss import _core

    return [d for d in _core.system_info()["devices"] if d.get("backend") == backend]


def cmd_info(a: argparse.Namespace) -> int:
    import crispmoss

    info = crispmoss.system_info()
    out = {"crispmoss": str(Path(crispmoss.__file__).parent), "system_info": info,
           "cuda_compiled": "cuda" in info.get("backends", []),
           "cuda_devices": [d for d in info.get("devices", []) if d.get("backend") == "cuda"],
           "engine": hasattr(crispmoss._core.Model, "engine_stats"),
           "transcribe_many": hasattr(crispmoss.Model, "transcribe_many")}
    save(a.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "system_info"}, default=str))
    if a.require_gpu and not out["cuda_devices"]:
        print("info: the extension has no CUDA device", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------------------
# comparison primitives
# ------------------------------------------------------------------------------------------------------------

def first_logits(core_model, audio, instr: str, threads: int):
    """Logits after the prompt (f32 KV cache), as tests/test_backends.py reads them."""
    import numpy as np
    from crispmoss import _core

    s = _core.Session(core_model, threads, "f32", True)
    s.enable_dumps(True)
    s.set_audio(audio)
    s.generate(instr, max_new_tokens=1)
    return np.asarray(s.dumps()["logits"], dtype=np.float64)


def greedy(core_model, audio, instr: str, threads: int, steps: int = GREEDY_STEPS) -> List[int]:
    from crispmoss import _core

    s = _core.Session(core_model, threads, "f16", True)
    s.set_audio(audio)
    return list(s.generate(instr, max_new_tokens=steps)["tokens"])


def compare(ref, got, ref_tokens: List[int], got_tokens: List[int], tol: float, exact_tokens: bool) -> Dict[str, Any]:
    """The verdict on one model/backend pair from first-step logits and greedy tokens."""
    import numpy as np

    d: Dict[str, Any] = {}
    finite = bool(np.isfinite(got).all())
    diff = float(np.abs(got - ref).max()) if finite else float("inf")
    scale = max(1.0, float(np.abs(ref).max()))
    d["max_abs_err"] = diff
    d["rel_err"] = diff / scale
    d["tol"] = tol
    a_ref, a_got = int(ref.argmax()), int(got.argmax())
    d["argmax_equal"] = a_ref == a_got
    top2 = np.sort(ref)[-2:]
    d["cpu_top2_gap"] = float(top2[1] - top2[0])
    # a near-tie: the CPU's own gap between the two candidates is within twice the observed error
    tie_gap = float(ref[a_ref] - ref[a_got]) if a_ref != a_got else 0.0
    d["argmax_near_tie"] = a_ref == a_got or tie_gap <= 2.0 * diff
    n = min(len(ref_tokens), len(got_tokens))
    div = next((i for i in range(n) if ref_tokens[i] != got_tokens[i]), None)
    if div is None and len(ref_tokens) != len(got_tokens):
        div = n
    d["tokens_equal"] = div is None
    d["first_divergence"] = div
    d["n_tokens"] = [len(ref_tokens), len(got_tokens)]
    d["tokens_cpu"] = list(ref_tokens)
    d["tokens_gpu"] = list(got_tokens)
    if not finite or d["rel_err"] > 4 * tol or not d["argmax_near_tie"]:
        status = "fail"
    elif div == 0 and not d["argmax_near_tie"]:
        status = "fail"
    elif div is not None and exact_tokens and div > 0:
        status = "fail"  # f32 weights and f32 logits: the decode steps must agree too
    elif d["rel_err"] > tol or (div is not None and div > 0):
        status = "warn"  # later steps cannot be inspected: no per-step logits are exposed
    else:
        status = "pass"
    d["status"] = status
    return d


class Checks:
    def __init__(self, out: Optional[str], meta: Dict[str, Any]):
        self.out = out
        self.data: Dict[str, Any] = dict(meta, checks=[], counts={})
        save(out, self.data)

    def run(self, name: str, fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        t0 = _now()
        try:
            details = fn() or {}
            status = details.pop("status", "pass")
        except Exception as exc:  # recorded; the next check runs
            details = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-1500:]}
            status = "error"
        rec = {"name": name, "status": status, "seconds": round(_now() - t0, 2), "details": details}
        self.data["checks"].append(rec)
        c = self.data["counts"]
        c[status] = c.get(status, 0) + 1
        save(self.out, self.data)
        brief = {k: details.get(k) for k in ("rel_err", "first_divergence", "tokens_equal", "error") if k in details}
        print(f"[checks] {status:5s} {name} ({rec['seconds']} s) {json.dumps(brief, default=str)}", flush=True)
        return rec


# ------------------------------------------------------------------------------------------------------------
# tiny-model checks
# ------------------------------------------------------------------------------------------------------------

def tiny_models(d: Path) -> Dict[Tuple[str, str], str]:
    from crispmoss.convert import convert
    from crispmoss.quantize import quantize
    from crispmoss.testing import make_tiny_checkpoint

    d.mkdir(parents=True, exist_ok=True)
    out: Dict[Tuple[str, str], str] = {}
    for arch in ARCHS:
        hf = d / f"{arch}-tiny-hf"
        if not (hf / "config.json").exists():
            make_tiny_checkpoint(arch, hf)
        for t in ("f32", "f16"):
            p = d / f"{arch}-tiny-{t}.gguf"
            if not p.exists():
                convert(hf, p, outtype=t, progress=False)
            out[(arch, t)] = str(p)
        # tiny widths are not multiples of 256: q4_k leaves them F16 and makes the eligible ones Q8_0, so the
        # Q4_K kernels are checked on the full-size models (bench/sweep)
        p = d / f"{arch}-tiny-q8_0.gguf"
        if not p.exists():
            quantize(out[(arch, "f16")], p, "q8_0", progress=False)
        out[(arch, "q8_0")] = str(p)
    return out


def load_pair(path: str, gpu: str, n_gpu: int):
    from crispmoss import _core

    ref = _core.Model(path, "cpu")
    if gpu == "cpu":  # --local: the offload path through host copies, as tests/test_backends.py runs it
        m = _core.Model(path, "cpu", 0, n_gpu, _test_host_copy=n_gpu != 0)
    else:
        m = _core.Model(path, gpu, 0, n_gpu)
    return ref, m


def cmd_checks(a: argparse.Namespace) -> int:
    import crispmoss

    threads = a.threads
    meta = {"gpu": a.gpu, "threads": threads, "greedy_steps": GREEDY_STEPS, "tolerances": TOL,
            "devices": gpu_devices(a.gpu) if a.gpu != "cpu" else [],
            "audio": "shared speech" if _audio_dir() else "synthetic"}
    ck = Checks(a.out, meta)
    models = tiny_models(Path(a.dir))
    audio = clip(2.0)

    def system() -> Dict[str, Any]:
        info = crispmoss.system_info()
        devs = [d for d in info["devices"] if d.get("backend") == a.gpu]
        ok = a.gpu == "cpu" or (a.gpu in info["backends"] and bool(devs))
        return {"status": "pass" if ok else "fail", "backends": info["backends"], "devices": devs}

    ck.run("system_info lists the device", system)

    for arch in ARCHS:
        for t in ("f32", "f16", "q8_0"):
            for n_gpu in (-1, 0, 1):
                def one(arch=arch, t=t, n_gpu=n_gpu) -> Dict[str, Any]:
                    ref_m, m = load_pair(models[(arch, t)], a.gpu, n_gpu)
                    pl = dict(m.placement)
                    instr = instruction(arch)
                    d = compare(first_logits(ref_m, audio, instr, threads), first_logits(m, audio, instr, threads),
                                greedy(ref_m, audio, instr, threads), greedy(m, audio, instr, threads),
                                TOL[t], exact_tokens=t == "f32")
                    d["placement"] = pl
                    if a.gpu != "cpu" and pl.get("backend") == "cpu":
                        d["status"] = "fail"
                        d["why"] = "the model did not go to the GPU"
                    elif n_gpu != 0 and not pl.get("device_bytes"):
                        d["status"] = "fail"
                        d["why"] = "no weights on the device"
                    return d

                ck.run(f"{arch} {t} n_gpu_layers={n_gpu}: logits and greedy tokens vs CPU", one)

    # product surface on the GPU (explicit backend, so nothing silently runs on the CPU)
    def model(arch: str, t: str = "f16"):
        return crispmoss.Model(models[(arch, t)], threads, backend=a.gpu)

    n = 12
    am = model("moss_audio")
    tm = model("moss_transcribe")

    def prefix_reuse() -> Dict[str, Any]:
        s = am.session(audio)
        r1 = s.ask("What is said in this clip?", max_new_tokens=n)
        r2 = s.ask("Who is speaking, and where?", max_new_tokens=n)
        fresh = am.session(audio).ask("Who is speaking, and where?", max_new_tokens=n)
        t_again = tm.session(audio)
        x1 = t_again.transcribe(max_new_tokens=n)
        x2 = t_again.transcribe(max_new_tokens=n)
        ok = (r2.tokens == fresh.tokens and r2.timings["n_prefilled"] < r2.timings["n_prompt"]
              and x1.tokens == x2.tokens and x2.timings["n_prefilled"] <= 1)
        return {"status": "pass" if ok else "fail", "second_prefilled": r2.timings["n_prefilled"],
                "second_prompt": r2.timings["n_prompt"], "repeat_prefilled": x2.timings["n_prefilled"],
                "first_tokens": r1.tokens[:4]}

    ck.run("session: a second question prefills only its own tokens, same tokens as a fresh session", prefix_reuse)

    def streaming() -> Dict[str, Any]:
        s = am.session(audio)
        plain = s.ask("Describe the audio.", max_new_tokens=n)
        pieces = list(s.generate("Describe the audio.", stream=True, max_new_tokens=n))
        got: List[str] = []
        via_cb = s.generate("Describe the audio.", callback=got.append, max_new_tokens=n)
        ok = "".join(pieces).strip() == plain.text and got == pieces and via_cb.tokens == plain.tokens
        return {"status": "pass" if ok else "fail", "pieces": len(pieces)}

    ck.run("streaming: stream and callback pieces equal the plain result", streaming)

    def interruption() -> Dict[str, Any]:
        s = tm.session(audio)
        seen: List[str] = []
        r = s.transcribe(max_new_tokens=64, callback=lambda p: seen.append(p) or len(seen) < 2)
        stopped = r.stop_reason == "interrupted" and len(seen) == 2

        def boom(_p: str) -> bool:
            raise KeyboardInterrupt

        raised = False
        try:
            s.transcribe(max_new_tokens=64, callback=boom)
        except KeyboardInterrupt:
            raised = True
        again = s.transcribe(max_new_tokens=n)
        fresh = tm.session(audio).transcribe(max_new_tokens=n)
        timeout = tm.session(audio).transcribe(max_new_tokens=4000, timeout=0.05)
        ok = stopped and raised and again.tokens == fresh.tokens
        return {"status": "pass" if ok else "fail", "callback_false_stops": stopped, "interrupt_raised": raised,
                "reuse_after_interrupt_exact": again.tokens == fresh.tokens,
                "timeout_stop_reason": timeout.stop_reason, "timeout_tokens": len(timeout.tokens)}

    ck.run("interruption: callback False, KeyboardInterrupt in a callback, session exact afterwards", interruption)

    def parallel() -> Dict[str, Any]:
        clips = [clip(1.5, seed=i) * (1.0 - 0.1 * i) for i in range(4)]
        asks = ["What is said?", "Describe the sound.", "Who speaks?", "Where is this?"]
        seq = [am.session(c).ask(q, max_new_tokens=n).tokens for c, q in zip(clips, asks)]
        got: List[Any] = [None] * 4

        def work(i: int) -> None:
            got[i] = am.session(clips[i]).ask(asks[i], max_new_tokens=n).tokens

        ths = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(120)
        d: Dict[str, Any] = {"equal": [g == s for g, s in zip(got, seq)]}
        if hasattr(am._core, "engine_stats"):
            st = dict(am._core.engine_stats(threads))
            d["engine_stats"] = st
            d["rows_per_step"] = round(st["step_rows"] / st["steps"], 2) if st.get("steps") else None
        # batched decode steps on a GPU may round differently from single rows: unequal tokens are a warning
        d["status"] = "pass" if all(d["equal"]) else "warn"
        return d

    ck.run("threads: four sessions in parallel threads (batched by the engine) match sequential", parallel)

    if hasattr(crispmoss.Model, "transcribe_many"):
        def many() -> Dict[str, Any]:
            clips = [clip(1.0 + 0.5 * i, seed=i) for i in range(4)]
            alone = [tm.transcribe(c, max_new_tokens=n).tokens for c in clips]
            res = tm.transcribe_many(clips, batch_size=4, max_new_tokens=n)
            eq = [getattr(r, "tokens", None) == x for r, x in zip(res, alone)]
            return {"status": "pass" if all(eq) else "warn", "equal": eq}

        ck.run("batching: transcribe_many(batch_size=4) equals transcribe per input", many)
    else:
        ck.run("batching: transcribe_many", lambda: {"status": "skip", "why": "not in this build's Python API"})
    return 0


# ------------------------------------------------------------------------------------------------------------
# full-size models: one worker process per (model, backend)
# ------------------------------------------------------------------------------------------------------------

class GpuMemPoll:
    """Polls the CUDA device's free memory (cudaMemGetInfo via system_info) in a thread: the process's peak."""

    def __init__(self, backend: str, period: float = 0.05):
        self.backend = backend
        self.period = period
        self.min_free: Optional[int] = None
        self.total: Optional[int] = None
        self._stop = threading.Event()
        self._th: Optional[threading.Thread] = None

    def sample(self) -> Optional[int]:
        devs = gpu_devices(self.backend) if self.backend != "cpu" else []
        if not devs:
            return None
        free = int(devs[0]["memory_free"])
        self.total = int(devs[0]["memory_total"])
        self.min_free = free if self.min_free is None else min(self.min_free, free)
        return free

    def __enter__(self) -> "GpuMemPoll":
        def loop() -> None:
            while not self._stop.wait(self.period):
                try:
                    self.sample()
                except Exception:
                    return

        if self.backend != "cpu":
            self._th = threading.Thread(target=loop, daemon=True)
            self._th.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._th:
            self._th.join(2)


def worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    import numpy as np

    import crispmoss

    path, backend, threads = spec["path"], spec["backend"], int(spec["threads"])
    arch = spec.get("arch")
    res: Dict[str, Any] = {"path": path, "backend": backend, "threads": threads, "bytes": os.path.getsize(path)}
    poll = GpuMemPoll(backend)
    free0 = poll.sample()
    res["gpu_free_before_load_mib"] = None if free0 is None else round(free0 / 2**20)
    with open(path, "rb", buffering=0) as f:  # page cache: the timed load reads no disk
        while f.read(64 << 20):
            pass
    with poll:
        t0 = _now()
        m = crispmoss.Model(path, threads, backend=backend, n_gpu_layers=int(spec.get("n_gpu", -1)))
        res["load_s"] = round(_now() - t0, 3)
        res["placement"] = dict(m.placement)
        arch = arch or m.arch
        instr = instruction(arch)
        free1 = poll.sample()
        if free0 is not None and free1 is not None:
            res["gpu_mem_after_load_mib"] = round((free0 - free1) / 2**20)
        # correctness material: first-step logits and greedy tokens on a 5 s clip
        c5 = clip(5.0)
        lg = first_logits(m._core, c5, instr, threads)
        if spec.get("logits_out"):
            np.save(spec["logits_out"], lg.astype(np.float32))
        res["greedy_tokens"] = greedy(m._core, c5, instr, threads)
        if not spec.get("correctness_only"):
            m.session(clip(1.0)).transcribe(max_new_tokens=2)  # warm-up: kernels, buffers, thread pool
            c11 = clip(11.0)
            runs = []
            for _ in range(int(spec.get("reps", 3))):
                s = m.session(c11)
                t = s.transcribe(max_new_tokens=1)
                tm = dict(t.timings)
                runs.append({"mel_s": tm["mel_ms"] / 1000, "encoder_s": (tm["mel_ms"] + tm["encode_ms"]) / 1000,
                             "prefill_s": tm["prefill_ms"] / 1000, "n_prompt": tm["n_prompt"],
                             "ttft_s": (tm["mel_ms"] + tm["encode_ms"] + tm["prefill_ms"]) / 1000})
            runs.sort(key=lambda r: r["ttft_s"])
            res["clip11"] = runs[len(runs) // 2]
            res["clip11_runs"] = runs
            s = m.session(c11)
            s.transcribe(max_new_tokens=1)
            t = s.transcribe(max_new_tokens=int(spec.get("decode_tokens", 64)))  # prompt reused: decode only
            tm = dict(t.timings)
            ng = int(tm["n_generated"])
            res["decode"] = {"n_generated": ng, "decode_ms": tm["decode_ms"], "stop_reason": t.stop_reason,
                             "tok_per_s": (ng - 1) / (tm["decode_ms"] / 1000) if ng > 1 and tm["decode_ms"] > 0
                             else None, "from_position": tm["n_prompt"]}
            c30 = clip(30.0)
            t0 = _now()
            t = m.transcribe(c30, max_new_tokens=int(spec.get("rtf_tokens", 100)), max_pass_seconds=float("inf"))
            wall = _now() - t0
            res["rtf30"] = {"s": round(wall, 3), "rtf": wall / 30.0, "n_generated": int(t.timings["n_generated"]),
                            "stop_reason": t.stop_reason, "timings": dict(t.timings)}
    if poll.min_free is not None and free0 is not None:
        res["gpu_mem_peak_mib"] = round((free0 - poll.min_free) / 2**20)
        res["gpu_total_mib"] = round(poll.total / 2**20) if poll.total else None
    return res


def run_worker(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    t0 = _now()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "worker", json.dumps(spec)],
                           stdout=subprocess.PIPE, stderr=None, text=True, env=env, timeout=max(5.0, timeout))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("@@RESULT "):
            out = json.loads(line[len("@@RESULT "):])
            out["worker_s"] = round(_now() - t0, 1)
            return out
    return {"ok": False, "error": f"worker exited with code {p.returncode} and no result"}


def cmd_worker(a: argparse.Namespace) -> int:
    spec = json.loads(a.spec)
    try:
        out = {"ok": True, "result": worker(spec)}
    except Exception as exc:
        traceback.print_exc()
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write("@@RESULT " + json.dumps(out, default=_jsonable) + "\n")
    sys.stdout.flush()
    return 0


def model_path(d: str, arch: str, t: str) -> Optional[str]:
    for p in (Path(d) / f"{STEMS[arch]}-random0-{t}.gguf", Path(d) / f"{arch}-tiny-{t}.gguf",
              Path(d) / f"{arch}-real_layer-{t}.gguf"):
        if p.is_file():
            return str(p)
    return None


def _row(arch: str, t: str, backend: str, r: Dict[str, Any]) -> Dict[str, Any]:
    c = r.get("clip11", {})
    dec = r.get("decode", {})
    return {"model": f"{arch}/{t}", "backend": backend, "threads": r.get("threads"), "load_s": r.get("load_s"),
            "encoder_s": c.get("encoder_s"), "prefill_s": c.get("prefill_s"), "n_prompt": c.get("n_prompt"),
            "prefill_tps": c["n_prompt"] / c["prefill_s"] if c.get("prefill_s") else None,
            "ttft_s": c.get("ttft_s"), "decode_tps": dec.get("tok_per_s"), "decode_tokens": dec.get("n_generated"),
            "rtf": (r.get("rtf30") or {}).get("rtf"), "gpu_mem_mib": r.get("gpu_mem_peak_mib"),
            "gpu_mem_after_load_mib": r.get("gpu_mem_after_load_mib"), "bytes": r.get("bytes")}


def _correctness(arch: str, t: str, work: Path, res: Dict[str, Dict[str, Any]], gpu: str) -> Dict[str, Any]:
    import numpy as np

    ref_p, got_p = work / f"logits-{arch}-{t}-cpu.npy", work / f"logits-{arch}-{t}-{gpu}.npy"
    if not (ref_p.exists() and got_p.exists() and res.get("cpu", {}).get("ok") and res.get(gpu, {}).get("ok")):
        return {"model": f"{arch}/{t}", "status": "skip", "why": "a worker failed"}
    d = compare(np.load(ref_p).astype(np.float64), np.load(got_p).astype(np.float64),
                res["cpu"]["result"]["greedy_tokens"], res[gpu]["result"]["greedy_tokens"], TOL.get(t, 5e-2),
                exact_tokens=False)
    d["model"] = f"{arch}/{t}"
    return d


def cmd_bench(a: argparse.Namespace) -> int:
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    deadline = _now() + a.time_limit
    backends = [a.gpu, "cpu"] if a.gpu != "cpu" else ["cpu"]
    out: Dict[str, Any] = {"type": a.type, "threads": a.threads, "backends": backends, "rows": [],
                           "correctness": [], "runs": {}, "audio": "shared speech" if _audio_dir() else "synthetic",
                           "settings": {"rtf_tokens": a.rtf_tokens, "decode_tokens": a.decode_tokens, "reps": a.reps,
                                        "cpu": "the same extension (CRISPMOSS_NATIVE=ON, built on this machine), "
                                               "backend='cpu', --threads threads",
                                        "clip11": "median of reps by TTFT; decode: a second request on the same "
                                                  "session (prompt reused), tokens after the prompt",
                                        "gpu_mem": "device memory the model took: free memory before the "
                                                   "load (CUDA already initialised) minus the least free seen "
                                                   "during the run (50 ms polls)"}}
    save(a.out, out)
    for arch in a.arch:
        path = model_path(a.models_dir, arch, a.type)
        if not path:
            out["runs"][arch] = {"error": f"no {a.type} model in {a.models_dir}"}
            save(a.out, out)
            continue
        res: Dict[str, Dict[str, Any]] = {}
        for b in backends:
            left = deadline - _now()
            if left < 10:
                res[b] = {"ok": False, "error": "no time left in the stage"}
                continue
            spec = {"path": path, "backend": b, "threads": a.threads, "arch": arch, "reps": a.reps,
                    "rtf_tokens": a.rtf_tokens, "decode_tokens": a.decode_tokens,
                    "logits_out": str(work / f"logits-{arch}-{a.type}-{b}.npy")}
            print(f"[bench] {arch} {a.type} on {b} ({left:.0f} s left)", flush=True)
            res[b] = run_worker(spec, left)
            if res[b].get("ok"):
                out["rows"].append(_row(arch, a.type, b, res[b]["result"]))
            out["runs"][f"{arch}/{b}"] = res[b]
            save(a.out, out)
        if a.gpu != "cpu":
            out["correctness"].append(_correctness(arch, a.type, work, res, a.gpu))
            g = res.get(a.gpu, {}).get("result")
            c = res.get("cpu", {}).get("result")
            if g and c:
                gr, cr = _row(arch, a.type, a.gpu, g), _row(arch, a.type, "cpu", c)
                out.setdefault("speedup_vs_cpu", {})[arch] = {
                    k: (cr[k] / gr[k] if k != "decode_tps" else gr[k] / cr[k])
                    for k in ("encoder_s", "prefill_s", "ttft_s", "rtf", "decode_tps")
                    if gr.get(k) and cr.get(k)}
        save(a.out, out)
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    """Correctness only (first logits, greedy tokens), full-size models of more types, GPU against the CPU."""
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    deadline = _now() + a.time_limit
    out: Dict[str, Any] = {"types": a.types, "results": []}
    save(a.out, out)
    for t in a.types:
        for arch in a.arch:
            path = model_path(a.models_dir, arch, t)
            if not path:
                out["results"].append({"model": f"{arch}/{t}", "status": "skip", "why": "no model file"})
                save(a.out, out)
                continue
            res: Dict[str, Dict[str, Any]] = {}
            for b in (a.gpu, "cpu"):
                left = deadline - _now()
                if left < 10:
                    res[b] = {"ok": False, "error": "no time left"}
                    continue
                res[b] = run_worker({"path": path, "backend": b, "threads": a.threads, "arch": arch,
                                     "correctness_only": True,
                                     "logits_out": str(work / f"logits-{arch}-{t}-{b}.npy")}, left)
            r = _correctness(arch, t, work, res, a.gpu)
            for b in res:
                if res[b].get("ok"):
                    r[f"load_s_{b}"] = res[b]["result"].get("load_s")
                    r[f"gpu_mem_mib_{b}"] = res[b]["result"].get("gpu_mem_peak_mib")
                else:
                    r[f"error_{b}"] = res[b].get("error")
            out["results"].append(r)
            save(a.out, out)
            print(f"[sweep] {arch} {t}: {r.get('status')} rel {r.get('rel_err')}", flush=True)
    save(a.out, out)
    return 0


def cmd_llama_gguf(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peer_llama

    dst = Path(a.dst)
    if not dst.exists():
        peer_llama.write_qwen3_gguf(a.src, dst)
    print(f"llama-gguf: {dst} ({dst.stat().st_size / 1e9:.2f} GB)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info")
    p.add_argument("--out")
    p.add_argument("--require-gpu", action="store_true")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("checks")
    p.add_argument("--out")
    p.add_argument("--dir", required=True)
    p.add_argument("--gpu", default="cuda")
    p.add_argument("--threads", type=int, default=4)
    p.set_defaults(fn=cmd_checks)
    for name, fn in (("bench", cmd_bench), ("sweep", cmd_sweep)):
        p = sub.add_parser(name)
        p.add_argument("--out")
        p.add_argument("--work", required=True)
        p.add_argument("--models-dir", required=True)
        p.add_argument("--arch", action="append", required=True)
        p.add_argument("--gpu", default="cuda")
        p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
        p.add_argument("--time-limit", type=float, default=600)
        if name == "bench":
            p.add_argument("--type", default="q4_k")
            p.add_argument("--rtf-tokens", type=int, default=100)
            p.add_argument("--decode-tokens", type=int, default=64)
            p.add_argument("--reps", type=int, default=3)
        else:
            p.add_argument("--types", nargs="+", default=["f16", "q8_0"])
        p.set_defaults(fn=fn)
    p = sub.add_parser("worker")
    p.add_argument("spec")
    p.set_defaults(fn=cmd_worker)
    p = sub.add_parser("llama-gguf")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(fn=cmd_llama_gguf)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
