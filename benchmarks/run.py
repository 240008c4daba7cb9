"""Benchmarks at full size: both models, every quant type, 1 and 2 threads, against the peers, in one run.

    python benchmarks/run.py --quick      # MOSS-Transcribe Q4_K, 2 threads, all peers: < 10 min
    python benchmarks/run.py              # everything (an hour or more on 2 cores)
    python benchmarks/run.py --models moss_transcribe --types q4_k q8_0 --threads 2 --peers llama

On a machine shared with builds and test runs add ``--nice -10`` (root): each worker runs in a session of its own
whose autogroup gets that priority, so other work cannot preempt the measured threads as often (it still runs,
and what it used is still recorded and flagged).

Models: random weights with the exact published configurations (benchmarks/make_models.py; made on first use,
a one-time cost not counted here). Every measurement runs in a fresh worker process (so peak RSS is per
configuration and a crashing peer takes only its worker down). Per model, type and thread count:

- ours: load time (warm page cache), mel, encoder and prefill for 5 s / 11 s / 30 s clips (and 120 s, the
  single-pass limit, for MOSS-Audio), time to first token, real-time factor of a full 30 s transcription with a
  fixed number of generated tokens, peak RSS; the decoder alone: prefill of N text tokens and single-token
  decode at context positions ~50, ~160 and ~1000 (cpp/bindings/bind_bench.cpp).
- crispasr (PyPI) on the same GGUF files: load, encoder, prefill, decode (from the timestamps of its own log
  lines), real-time factor, peak RSS.
- llama.cpp (llama-cpp-python) on the same decoder tensors in its Qwen3 schema: prefill of the same prompt
  length, decode at the same positions.
- PyTorch (tests/reference modules): encoder, prefill, decode; float32 where it fits in memory, else bfloat16.
- the bandwidth limit: bytes read per decoded token ÷ measured read bandwidth.

Each measurement records the CPU time other processes used meanwhile (/proc/stat minus this process); a run
where they kept more than --max-other cores busy is repeated (up to --tries) and flagged "disturbed" if no
clean run was had. Prints tables and writes benchmarks/results/run-<time>[-quick].json.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _tree import audio_dir, use_tree  # noqa: E402

use_tree()

from machine import CpuMeter, machine_info, wait_for_quiet  # noqa: E402

AUDIO_DIR = audio_dir()
SPEECH = ["jfk.wav", "librivox_ss_0870.wav", "librivox_ss_0880.wav"]
RESULTS = HERE / "results"
STOP_ID = 151645

# Orientation figures and targets from the issue (2 threads, full-size MOSS-Transcribe, 11 s, Q4_K).
TARGETS = {
    "encoder_vs_crispasr": 4.0,      # crispasr encoder time / ours
    "prefill_vs_llama": 1.0,         # our prefill tok/s / llama.cpp's, same prompt length
    "ttft_vs_crispasr": 3.0,         # crispasr time to first token / ours
    "decode_vs_llama": 1.0,          # tok/s ratio
    "decode_vs_crispasr": 1.3,
    "decode_vs_limit": 0.70,         # fraction of the bandwidth limit
    "rss_over_gguf_mb": {"moss_transcribe": 300, "moss_audio": 400},
    "load_s": 0.5,                   # Q4_K, warm page cache
}
ORIENTATION = {"crispasr_encoder_s": 11.3, "crispasr_prefill_s": 4.9, "crispasr_decode_tps": 8.0,
               "llama_prefill_153_s": 2.4, "llama_decode_tps": 9.4, "read_gbps_2t": 21.5,
               "bytes_per_token_gb": 1.42, "limit_tps": 15.0}


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# ----------------------------------------------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------------------------------------------

def clip(seconds: float):
    """`seconds` of real speech: jfk.wav (11 s) when asked for 11 s, else the speech files cycled and cut."""
    import numpy as np
    from crispmoss import load_audio

    pieces = [load_audio(AUDIO_DIR / f) for f in SPEECH]
    n = int(round(seconds * 16000))
    out, i = [], 0
    while sum(len(p) for p in out) < n:
        out.append(pieces[i % len(pieces)])
        i += 1
    return np.ascontiguousarray(np.concatenate(out)[:n], dtype=np.float32)


def clip_names(arch: str, quick: bool) -> List[str]:
    if quick:
        return ["5s", "11s"]
    return ["5s", "11s", "30s"] + (["120s"] if arch == "moss_audio" else [])


def clip_seconds(name: str) -> float:
    return float(name.rstrip("s"))


# ----------------------------------------------------------------------------------------------------------------
# Measurement with disturbance accounting (runs in the workers)
# ----------------------------------------------------------------------------------------------------------------

class Measurer:
    """``measure(label, fn, threads=None)``: runs fn until it had a run that other processes did not disturb
    (at most `tries` times), waiting for a quiet machine before each try. Others may use the cores the measured
    code leaves idle: the threshold is max_other plus the cores beyond `threads` (default: the worker's)."""

    def __init__(self, max_other: float, tries: int, quiet_wait: float, threads: int) -> None:
        self.max_other = max_other
        self.tries = tries
        self.quiet_wait = quiet_wait
        self.threads = threads

    def __call__(self, label: str, fn: Callable[[], Any], threads: Optional[int] = None) -> Dict[str, Any]:
        attempts: List[Dict[str, Any]] = []
        min_clean = 1
        n_cpu = len(os.sched_getaffinity(0))
        limit = self.max_other + max(0, n_cpu - (threads or self.threads))
        for i in range(max(1, self.tries)):
            before = wait_for_quiet(limit, self.quiet_wait)
            c0 = time.process_time()
            with CpuMeter() as m:
                r = fn()
            cpu = time.process_time() - c0
            extra = dict(r) if isinstance(r, dict) else {}
            # cpu_s: this process's CPU time for the part that counts (all threads); on a machine shared with
            # other work it is the better estimate of single-thread cost than the wall time
            a = {"s": extra.pop("s", m.wall_s), "cpu_s": extra.pop("cpu_s", cpu), "wall_s": m.wall_s,
                 "other_cores": round(m.other_cores, 3),
                 "other_cpu_s": round(m.other_cpu_s, 2), "other_cores_before": round(before, 2),
                 "disturbed": m.other_cores > limit, **extra}
            attempts.append(a)
            log(f"  {label}: {a['s']:.3f} s (others {a['other_cores']:.2f} cores{', DISTURBED' if a['disturbed'] else ''})")
            if i == 0 and a["s"] < 2.0:
                min_clean = 3  # cheap: take the best of three clean runs
            if sum(not x["disturbed"] for x in attempts) >= min_clean:
                break
        clean = [a for a in attempts if not a["disturbed"]]
        best = min(clean, key=lambda a: a["s"]) if clean else min(attempts, key=lambda a: a["other_cores"])
        out = dict(best)
        out["attempts"] = len(attempts)
        return out


def _peak_rss_mb() -> float:
    """VmHWM: the peak of this process's own address space (ru_maxrss can carry the parent's from before exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _warm_file(path: str) -> float:
    """Reads the file once so the timed load finds it in the page cache (read(), so RSS is not charged)."""
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------------------------

def worker_ours_pipeline(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    import crispmoss

    res: Dict[str, Any] = {"gguf_bytes": os.path.getsize(a["path"])}
    clips = {name: clip(clip_seconds(name)) for name in a["clips"] + ["30s"]}
    res["baseline_rss_mb"] = round(_rss_mb(), 1)
    res["warm_read_s"] = round(_warm_file(a["path"]), 2)
    crispmoss.Model(a["path"], a["threads"])  # first open: anything the loader touches comes into the cache
    holder: Dict[str, Any] = {}

    def load():
        holder["m"] = None
        holder["m"] = crispmoss.Model(a["path"], a["threads"])

    res["load"] = measure("ours load", load, threads=1)
    model = holder["m"]
    # warm-up: thread pool, first touch of every weight page (encoder and decoder)
    model.session(clips["5s"][:16000]).transcribe(max_new_tokens=2)

    def rtf():
        t = model.transcribe(clips["30s"], max_new_tokens=a["rtf_tokens"], max_pass_seconds=float("inf"))
        tm = dict(t.timings)
        n = int(tm["n_generated"])
        return {"rtf": None, "n_generated": n, "stop_reason": t.stop_reason, "timings": tm,
                "stop_token_hit": t.stop_reason == "stop",
                "decode_tps": (n - 1) / (tm["decode_ms"] / 1000) if n > 1 and tm["decode_ms"] > 0 else None}

    r = measure(f"ours RTF 30 s, {a['rtf_tokens']} tokens", rtf)
    r["rtf"] = r["s"] / 30.0
    res["rtf"] = r
    res["peak_rss_mb_30s"] = round(_peak_rss_mb(), 1)
    res["clips"] = {}
    for name in a["clips"]:
        audio = clips[name]

        def run(audio=audio):
            c0 = time.process_time()
            s = model.session(audio)
            c1 = time.process_time()
            t = s.transcribe(max_new_tokens=1)
            c2 = time.process_time()
            tm = dict(t.timings)
            return {"timings": tm, "ttft_s": (tm["mel_ms"] + tm["encode_ms"] + tm["prefill_ms"]) / 1000,
                    "encoder_cpu_s": c1 - c0, "prefill_cpu_s": c2 - c1,
                    "encoder_s": (tm["mel_ms"] + tm["encode_ms"]) / 1000, "prefill_s": tm["prefill_ms"] / 1000,
                    "mel_s": tm["mel_ms"] / 1000, "n_prompt": tm["n_prompt"], "n_audio": s.n_audio_tokens}

        res["clips"][name] = measure(f"ours encoder+prefill {name}", run)
    res["peak_rss_mb_all"] = round(_peak_rss_mb(), 1)
    return res


def worker_ours_decoder(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    import numpy as np
    from crispmoss import _core

    b = _core.DecoderBench(a["path"], a["threads"])
    ids = np.random.default_rng(0).integers(1000, 150000, size=4096).tolist()
    b.decode(8, 2)  # warm-up
    res: Dict[str, Any] = {"prefill": {}, "decode": {}}
    for n in a["prefill_tokens"]:
        r = measure(f"ours decoder prefill {n}", lambda n=n: b.prefill(ids[:n], 0) and None)
        r["tok_per_s"] = n / r["s"]
        r["tok_per_s_cpu"] = n / r["cpu_s"] if r["cpu_s"] > 0 else None
        res["prefill"][str(n)] = r
    for pos in a["decode_at"]:
        def fn(pos=pos):
            st = sorted(b.decode(pos, a["decode_steps"]))
            return {"s": sum(st) / 1000, "steps": len(st), "step_ms_median": st[len(st) // 2],
                    "tok_per_s": 1000 * len(st) / sum(st)}

        r = measure(f"ours decode@{pos}", fn)
        r["tok_per_s_cpu"] = r["steps"] / r["cpu_s"] if r["cpu_s"] > 0 else None
        res["decode"][str(pos)] = r
    if a.get("head_q8"):
        # What the optional Q8_0 copy of an F16 output head (Model(head_type="q8_0")) does to decode.
        del b
        b = _core.DecoderBench(a["path"], a["threads"], "f16", "q8_0")
        b.decode(8, 2)
        res["decode_head_q8_0"] = {}
        for pos in a["decode_at"]:
            def fn(pos=pos):
                st = sorted(b.decode(pos, a["decode_steps"]))
                return {"s": sum(st) / 1000, "steps": len(st), "step_ms_median": st[len(st) // 2],
                        "tok_per_s": 1000 * len(st) / sum(st)}

            res["decode_head_q8_0"][str(pos)] = measure(f"ours decode@{pos}, head_type=q8_0", fn)
    return res


def worker_ours_profile(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    import crispmoss
    from crispmoss import _core

    if not _core.profile_enabled():
        raise RuntimeError("CRISPMOSS_PROFILE is not set in the profile worker")
    model = crispmoss.Model(a["path"], a["threads"])
    audio = clip(11.0)
    model.session(audio[:16000]).transcribe(max_new_tokens=2)  # warm-up
    out: Dict[str, Any] = {}
    _core.profile_reset()
    t0 = time.perf_counter()
    s = model.session(audio)
    enc_wall = time.perf_counter() - t0
    out["encoder"] = {"wall_s": enc_wall, "ops": _core.profile_snapshot()}
    _core.profile_reset()
    t = s.transcribe(max_new_tokens=1)
    out["prefill"] = {"wall_s": t.timings["prefill_ms"] / 1000, "n_prompt": t.timings["n_prompt"],
                      "ops": _core.profile_snapshot()}
    del s, model
    b = _core.DecoderBench(a["path"], a["threads"])
    b.decode(160, 2)
    _core.profile_reset()
    steps = b.decode(160, 8)
    ops = {k: (v[0] / 8, v[1] / 8, v[2] / 8) for k, v in _core.profile_snapshot().items()}
    out["decode_step"] = {"wall_s": sum(steps) / 8 / 1000, "position": 160, "ops": ops}
    return out


def _stamped_stderr():
    """Redirects fd 2 into a pipe read by a thread that timestamps each line (crispasr logs through C stdio)."""
    import threading

    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)
    os.close(w)
    lines: List[Any] = []

    def reader():
        with os.fdopen(r, "r", errors="replace") as f:
            for line in f:
                lines.append((time.perf_counter(), line.rstrip("\n"), time.process_time()))
                os.write(saved, (line if len(line) < 300 else line[:300] + "\n").encode())

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    return lines


def _crispasr_events(lines, t_call: float, t_end: float, cpu_call: float) -> Dict[str, Any]:
    import re

    ev: Dict[str, Any] = {}
    steps = []
    cpu_at: Dict[float, float] = {}
    for t, line, cpu in lines:
        if t < t_call:
            continue
        cpu_at[t] = cpu
        if re.search(r"encoder (done: )?\d+ frames", line) and "enc_end" not in ev:
            ev["enc_end"] = t
        elif re.search(r"step (\d+) argmax", line):
            steps.append(t)
        m = re.search(r"(\d+) tokens: ", line)
        if m:
            ev["n_tokens"] = int(m.group(1))
            ev["gen_end"] = t
        m = re.search(r"(\d+) prompt tokens", line)
        if m:
            ev["n_prompt"] = int(m.group(1))
            ev["prompt_line"] = t
        m = re.search(r"moss_audio_bench: ([\w+]+)\s+([\d.]+) ms", line)
        if m:
            ev.setdefault("bench_ms", {})[m.group(1)] = float(m.group(2))
        m = re.search(r"prompt: (\d+) audio \+ (\d+) text", line)
        if m:
            ev["n_prompt"] = int(m.group(1)) + int(m.group(2))
            ev["prompt_line"] = t
    out: Dict[str, Any] = {"n_prompt": ev.get("n_prompt"), "n_generated": ev.get("n_tokens")}
    if "bench_ms" in ev:
        out["own_timings_ms"] = ev["bench_ms"]
    if "enc_end" in ev:
        out["encoder_s"] = ev["enc_end"] - t_call  # mel + encoder (+ adapter)
        out["encoder_cpu_s"] = cpu_at[ev["enc_end"]] - cpu_call
    if steps:
        out["ttft_s"] = steps[0] - t_call
        if "enc_end" in ev:
            out["prefill_s"] = steps[0] - ev["enc_end"]  # adapter/prompt assembly + LM prefill + first argmax
            out["prefill_cpu_s"] = cpu_at[steps[0]] - cpu_at[ev["enc_end"]]
    n = ev.get("n_tokens")
    if steps and n and n > 1 and "gen_end" in ev:
        out["decode_tps"] = (n - 1) / (ev["gen_end"] - steps[0])
        cpu = cpu_at[ev["gen_end"]] - cpu_at[steps[0]]
        out["decode_tps_cpu"] = (n - 1) / cpu if cpu > 0 else None
    out["total_s"] = t_end - t_call
    return out


def worker_crispasr(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    lines = _stamped_stderr()
    import crispasr

    res: Dict[str, Any] = {"version": getattr(crispasr, "__version__", "?"), "gguf_bytes": os.path.getsize(a["path"])}
    clips = {name: clip(clip_seconds(name)) for name in a["clips"] + ["30s"]}
    res["baseline_rss_mb"] = round(_rss_mb(), 1)
    _warm_file(a["path"])
    crispasr.Session(a["path"], n_threads=a["threads"], verbosity=1).close()
    holder: Dict[str, Any] = {}

    def load():
        holder["s"] = crispasr.Session(a["path"], n_threads=a["threads"], verbosity=1)

    res["load"] = measure("crispasr load", load, threads=1)
    s = holder["s"]
    if a.get("run_rtf", True):
        s.set_max_new_tokens(2)
        s.transcribe(clips["5s"][:16000], sample_rate=16000)  # warm-up
    # else (MOSS-Audio): crispasr writes 512 tokens whatever max_new_tokens says, so a warm-up call would cost
    # minutes; the file was read into the page cache above and the one measured call runs once.

    def run(audio, n_tokens):
        def fn():
            s.set_max_new_tokens(n_tokens)
            cpu_call = time.process_time()
            t_call = time.perf_counter()
            segs = s.transcribe(audio, sample_rate=16000)
            t_end = time.perf_counter()
            time.sleep(0.05)  # let the reader thread catch the last lines
            ev = _crispasr_events(list(lines), t_call, t_end, cpu_call)
            ev["text"] = " ".join(g.text for g in segs)[:80]
            return ev
        return fn

    res["clips"] = {}
    if a.get("run_rtf", True):
        r = measure(f"crispasr RTF 30 s, {a['rtf_tokens']} tokens", run(clips["30s"], a["rtf_tokens"]))
        r["rtf"] = r["s"] / 30.0
        res["rtf"] = r
        res["peak_rss_mb_30s"] = round(_peak_rss_mb(), 1)
    for name in a["clips"]:
        res["clips"][name] = measure(f"crispasr {name}, {a['clip_tokens']} tokens", run(clips[name], a["clip_tokens"]))
    if not a.get("run_rtf", True):
        # crispasr's MOSS-Audio path always writes 512 tokens and pads every clip up to 30 s to 30 s: the 30 s
        # real-time factor is projected from the 11 s run (same encoder and prompt length) instead of run.
        c = res["clips"].get("11s") or {}
        if c.get("ttft_s") and c.get("decode_tps"):
            s30 = c["ttft_s"] + (a["rtf_tokens"] - 1) / c["decode_tps"]
            res["rtf"] = {"s": s30, "rtf": s30 / 30.0, "projected": True}
        res["peak_rss_mb_30s"] = round(_peak_rss_mb(), 1)
    res["peak_rss_mb_all"] = round(_peak_rss_mb(), 1)
    s.close()
    return res


def worker_llama(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    import peer_llama

    res = peer_llama.bench(a["llama_path"], a["threads"], a["prefill_tokens"], a["decode_at"], a["decode_steps"],
                           measure, a.get("variant", "repack"))
    res["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    res["gguf_bytes"] = os.path.getsize(a["llama_path"])
    return res


def worker_torch(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    import peer_torch

    clips = {name: clip(clip_seconds(name)) for name in a["clips"]}
    res = peer_torch.bench(a["arch"], a["hf_dir"], a["dtype"], a["threads"], clips, a["decode_at"],
                           a["decode_steps"], measure)
    res["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return res


def worker_machine(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    if a.get("bandwidth_only"):
        from machine import bandwidth

        return {"bandwidth": {str(t): bandwidth(t) for t in (1, 2)}}
    return machine_info()


WORKERS = {"machine": worker_machine, "ours_pipeline": worker_ours_pipeline, "ours_decoder": worker_ours_decoder,
           "ours_profile": worker_ours_profile, "crispasr": worker_crispasr, "llama": worker_llama,
           "torch": worker_torch}


def _raise_priority(nice: int) -> None:
    """The worker runs in a session of its own (see run_worker); the kernel's autogroup scheduling shares the
    CPU between sessions first, so the session's autogroup gets the nice value too."""
    try:
        os.nice(nice - os.nice(0))
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError as exc:
        log(f"cannot raise the worker's priority ({exc}); measuring at normal priority")


def worker_main(spec: str) -> int:
    a = json.loads(spec)
    if a.get("nice"):
        _raise_priority(int(a["nice"]))
    measure = Measurer(a["max_other"], a["tries"], a["quiet_wait"], int(a.get("threads") or 1))
    try:
        out = {"ok": True, "result": WORKERS[a["kind"]](a, measure)}
    except Exception as exc:  # reported to the orchestrator, which carries on
        import traceback

        traceback.print_exc()
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write("@@RESULT " + json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Orchestrator
# ----------------------------------------------------------------------------------------------------------------

def run_worker(kind: str, args: Dict[str, Any], common: Dict[str, Any], timeout: float,
               env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    spec = dict(common, kind=kind, **args)
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), str(HERE)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e.update(env or {})
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                           stdout=subprocess.PIPE, stderr=None, text=True, env=e, timeout=timeout,
                           start_new_session=bool(spec.get("nice")))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("@@RESULT "):
            out = json.loads(line[len("@@RESULT "):])
            out["worker_s"] = round(time.perf_counter() - t0, 1)
            return out
    return {"ok": False, "error": f"worker exited with code {p.returncode} and no result"}


def bytes_per_token(path: str) -> Dict[str, Any]:
    """Weight bytes a decode step must read (decoder layers, final norm, head), and KV bytes per position."""
    import gguf

    r = gguf.GGUFReader(path)
    names = {t.name: t for t in r.tensors}
    w = sum(int(t.n_bytes) for n, t in names.items() if n.startswith("llm.blk.") or n == "llm.final_norm.weight")
    head = names.get("llm.lm_head.weight") or names["llm.embed.weight"]
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    f = lambda k: int(r.fields[f"{arch}.llm.{k}"].parts[-1][0])  # noqa: E731
    kv_per_pos = 2 * f("num_layers") * f("num_kv_heads") * f("head_dim") * 2  # K and V, f16
    return {"weights": w + int(head.n_bytes), "head": int(head.n_bytes), "head_type": head.tensor_type.name,
            "kv_per_position": kv_per_pos}


def _g(d: Any, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="MOSS-Transcribe Q4_K, 2 threads, short clips: < 10 min")
    ap.add_argument("--models", nargs="+", choices=("moss_transcribe", "moss_audio"))
    ap.add_argument("--types", nargs="+", choices=("f16", "q8_0", "q4_k"))
    ap.add_argument("--threads", nargs="+", type=int)
    ap.add_argument("--peers", nargs="*", choices=("crispasr", "llama", "torch"),
                    help="default: all three (torch only where its checkpoint exists or can be made)")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-op profile")
    ap.add_argument("--rtf-tokens", type=int, default=None, help="tokens generated in the 30 s RTF run (default 100, "
                                                                  "quick 40)")
    ap.add_argument("--decode-steps", type=int, default=None)
    ap.add_argument("--max-other", type=float, default=0.15,
                    help="a measurement is disturbed when other processes kept more cores than this busy")
    ap.add_argument("--tries", type=int, default=None, help="attempts per measurement (default 3, quick 1)")
    ap.add_argument("--quiet-wait", type=float, default=None, help="seconds to wait for a quiet machine before each "
                                                                    "attempt (default 30, quick 3)")
    ap.add_argument("--nice", type=int, default=0,
                    help="scheduling priority of the measuring workers (e.g. -10 on a machine shared with builds: "
                         "other work still runs but cannot preempt the measured threads as often; needs root)")
    ap.add_argument("--dir", default=None, help="model folder (default $CRISPMOSS_BENCH_DIR or ~/.cache/crispmoss/bench)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-hf", action="store_true", help="keep MOSS-Audio's HF checkpoint after the PyTorch runs "
                                                            "(9.7 GB; MOSS-Transcribe's 4.8 GB is always kept)")
    ap.add_argument("--keep-llama-gguf", action="store_true", help="keep the llama.cpp GGUFs of types other than q4_k")
    ap.add_argument("--torch-dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/run-<time>.json)")
    a = ap.parse_args(argv)
    if a.worker:
        return worker_main(a.worker)

    import make_models

    quick = a.quick
    models = a.models or (["moss_transcribe"] if quick else ["moss_transcribe", "moss_audio"])
    types_ = a.types or (["q4_k"] if quick else ["q4_k", "q8_0", "f16"])
    threads = a.threads or ([2] if quick else [1, 2])
    peers = a.peers if a.peers is not None else ["crispasr", "llama", "torch"]
    rtf_tokens = a.rtf_tokens or (40 if quick else 100)
    decode_steps = a.decode_steps or (12 if quick else 24)
    decode_at = [50, 160, 1000]
    common = {"nice": a.nice, "max_other": a.max_other, "tries": a.tries or (1 if quick else 3),
              "quiet_wait": a.quiet_wait if a.quiet_wait is not None else (3.0 if quick else 30.0)}
    t_start = time.perf_counter()
    started = _dt.datetime.now()

    log("making / finding the models")
    paths = make_models.ensure(models, types_, a.seed, a.dir, log=log)
    log("machine info and memory bandwidth")
    mi = run_worker("machine", {"threads": 2}, common, 600)
    info = mi["result"] if mi.get("ok") else machine_info()
    report: Dict[str, Any] = {"date": started.isoformat(timespec="seconds"), "quick": quick,
                              "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if argv is None else
                              " ".join(["run.py"] + list(argv)),
                              "machine": info, "settings": {"models": models, "types": types_, "threads": threads,
                                                            "peers": peers, "rtf_tokens": rtf_tokens,
                                                            "decode_steps": decode_steps, "decode_at": decode_at,
                                                            **common},
                              "orientation": ORIENTATION, "targets": TARGETS, "runs": {}}
    try:
        import crispmoss

        report["crispmoss"] = {"version": getattr(crispmoss, "__version__", "?"),
                               "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                                     capture_output=True, text=True).stdout.strip()}
    except Exception:
        pass

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(a.out) if a.out else RESULTS / f"run-{started.strftime('%Y%m%d-%H%M%S')}{'-quick' if quick else ''}.json"

    def save() -> None:  # after every configuration, so an interrupted run keeps what it measured
        tmp = out.with_name(out.name + ".part")
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
        os.replace(tmp, out)

    for arch in models:
        clips = clip_names(arch, quick)
        for qt in types_:
            path = str(paths[arch][qt])
            key = f"{arch}/{qt}"
            entry: Dict[str, Any] = {"path": path, "gguf_bytes": os.path.getsize(path),
                                     "bytes_per_token": bytes_per_token(path), "threads": {}}
            report["runs"][key] = entry
            # the prompt length llama.cpp prefills: our 11 s prompt for this model
            for nt in threads:
                th: Dict[str, Any] = {}
                entry["threads"][str(nt)] = th
                base = {"path": path, "threads": nt}
                log(f"== {key}, {nt} thread(s): ours")
                th["ours"] = run_worker("ours_pipeline", dict(base, clips=clips, rtf_tokens=rtf_tokens), common, 3600)
                n_prompt_11 = _g(th["ours"], "result", "clips", "11s", "n_prompt") or 153
                prefill_tokens = sorted({int(n_prompt_11)} | ({512} if not quick else set()))
                th["ours_decoder"] = run_worker("ours_decoder", dict(base, prefill_tokens=prefill_tokens,
                                                                      decode_at=decode_at, decode_steps=decode_steps,
                                                                      head_q8=entry["bytes_per_token"]["head_type"] == "F16"),
                                                common, 1800)
                if "crispasr" in peers:
                    log(f"== {key}, {nt} thread(s): crispasr")
                    cr_clips = [c for c in clips if clip_seconds(c) <= 30] if arch == "moss_transcribe" else ["11s"]
                    th["crispasr"] = run_worker("crispasr", dict(base, clips=cr_clips, rtf_tokens=rtf_tokens,
                                                                 clip_tokens=decode_steps + 1,
                                                                 run_rtf=arch == "moss_transcribe"),
                                                dict(common, tries=1) if arch == "moss_audio" else common, 3600,
                                                env={"CRISPASR_MOSS_AUDIO_BENCH": "1"})
                if "llama" in peers:
                    log(f"== {key}, {nt} thread(s): llama.cpp")
                    lp = Path(path).with_name(Path(path).stem + "-llamacpp-qwen3.gguf")
                    try:
                        import peer_llama

                        if not peer_llama.llama_available():
                            raise RuntimeError("llama-cpp-python is not installed")
                        if not lp.exists():
                            log(f"writing {lp.name}")
                            peer_llama.write_qwen3_gguf(path, lp)
                        for variant in (["repack"] if quick else ["repack", "plain"]):
                            th["llama" if variant == "repack" else "llama_plain"] = run_worker(
                                "llama", dict(base, llama_path=str(lp), prefill_tokens=prefill_tokens,
                                              decode_at=decode_at, decode_steps=decode_steps, variant=variant),
                                common, 1800)
                    except Exception as exc:
                        th["llama"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            lp = Path(path).with_name(Path(path).stem + "-llamacpp-qwen3.gguf")
            if lp.exists() and not a.keep_llama_gguf and qt != "q4_k":
                lp.unlink()  # disk: rewritten from our GGUF in a minute when needed again
            save()
            if not a.no_profile and qt == "q4_k":
                entry["profile"] = {}
                for nt in threads:
                    log(f"== {key}: per-op profile ({nt} thread(s))")
                    entry["profile"][str(nt)] = run_worker("ours_profile", {"path": path, "threads": nt}, common, 1800,
                                                           env={"CRISPMOSS_PROFILE": "1"})
        if "torch" in peers:
            entry_t: Dict[str, Any] = {}
            report["runs"][f"{arch}/torch"] = entry_t
            try:
                hf = make_models.hf_checkpoint(arch, a.seed, a.dir, log=log)
                for nt in threads:
                    log(f"== {arch}, {nt} thread(s): PyTorch reference")
                    entry_t[str(nt)] = run_worker("torch", {"arch": arch, "hf_dir": str(hf), "dtype": a.torch_dtype,
                                                            "threads": nt, "clips": ["11s"] if quick else
                                                            [c for c in clips if clip_seconds(c) <= 30],
                                                            "decode_at": decode_at if not quick else [50, 160],
                                                            "decode_steps": min(decode_steps, 8)}, common, 3600)
            except Exception as exc:
                entry_t["error"] = f"{type(exc).__name__}: {exc}"
            if arch == "moss_audio" and not a.keep_hf:
                import shutil

                shutil.rmtree(make_models.bench_dir(a.dir) / f"{make_models.STEMS[arch]}-random{a.seed}-hf",
                              ignore_errors=True)  # 9.7 GB; remade from the seed when needed

    # Bandwidth again at the end; the better of the two counts (a disturbed probe reads low, which would make
    # the limit look easier to reach).
    info["bandwidth_start"] = info["bandwidth"]
    be = run_worker("machine", {"threads": 2, "bandwidth_only": True}, common, 600)
    info["bandwidth_end"] = be["result"]["bandwidth"] if be.get("ok") else info["bandwidth"]
    info["bandwidth"] = {t: max(info["bandwidth_start"][t], info["bandwidth_end"][t], key=lambda b: b["read_gbps"])
                         for t in info["bandwidth_start"]}
    report["duration_s"] = round(time.perf_counter() - t_start, 1)
    summarize(report)
    save()
    print(render(report))
    log(f"wrote {out} ({report['duration_s']:.0f} s)")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Summary: ratios from the same run, targets, tables
# ----------------------------------------------------------------------------------------------------------------

def summarize(report: Dict[str, Any]) -> None:
    bw = report["machine"]["bandwidth"]
    for key, entry in report["runs"].items():
        if key.endswith("/torch"):
            continue
        arch = key.split("/")[0]
        bpt = entry["bytes_per_token"]
        for nt, th in entry["threads"].items():
            read = _g(bw, nt, "read_gbps") or _g(bw, "2", "read_gbps")
            ours = _g(th, "ours", "result") or {}
            dec = _g(th, "ours_decoder", "result") or {}
            cr = _g(th, "crispasr", "result") or {}
            ll = _g(th, "llama", "result") or {}
            s: Dict[str, Any] = {}
            limits = {}
            for pos in report["settings"]["decode_at"]:
                b = bpt["weights"] + bpt["kv_per_position"] * pos
                limits[str(pos)] = read * 1e9 / b if read else None
            s["bytes_per_token_gb@50"] = (bpt["weights"] + 50 * bpt["kv_per_position"]) / 1e9
            s["limit_tps"] = limits
            d = {p: _g(dec, "decode", p, "tok_per_s") for p in limits}
            s["decode_tps"] = d
            s["decode_tps_head_q8_0"] = {p: _g(dec, "decode_head_q8_0", p, "tok_per_s") for p in limits}
            s["decode_vs_limit"] = {p: (d[p] / limits[p]) if d[p] and limits[p] else None for p in limits}
            ld = {p: _g(ll, "decode", p, "tok_per_s") for p in limits}
            s["llama_decode_tps"] = ld
            s["decode_vs_llama"] = {p: (d[p] / ld[p]) if d[p] and ld[p] else None for p in limits}
            c11 = _g(cr, "clips", "11s") or {}
            o11 = _g(ours, "clips", "11s") or {}
            cr_dec = c11.get("decode_tps")
            s["crispasr_decode_tps"] = cr_dec
            s["decode_vs_crispasr"] = (d.get("160") / cr_dec) if d.get("160") and cr_dec else None
            s["encoder_vs_crispasr"] = {c: (_g(cr, "clips", c, "encoder_s") / _g(ours, "clips", c, "encoder_s"))
                                        if _g(cr, "clips", c, "encoder_s") and _g(ours, "clips", c, "encoder_s")
                                        else None for c in (ours.get("clips") or {})}
            s["ttft_vs_crispasr"] = (c11["ttft_s"] / o11["ttft_s"]) if c11.get("ttft_s") and o11.get("ttft_s") else None
            n11 = str(o11.get("n_prompt") or "")
            our_pf = _g(dec, "prefill", n11, "tok_per_s")
            ll_pf = _g(ll, "prefill", n11, "tok_per_s")
            s["prefill_tokens"] = n11
            s["prefill_vs_llama"] = (our_pf / ll_pf) if our_pf and ll_pf else None
            s["rtf_vs_crispasr"] = (_g(cr, "rtf", "s") / _g(ours, "rtf", "s")) if _g(cr, "rtf", "s") and _g(ours, "rtf", "s") else None
            peak = ours.get("peak_rss_mb_30s")
            s["rss_over_gguf_mb"] = (peak - entry["gguf_bytes"] / 2 ** 20) if peak else None
            s["rss_over_gguf_mb_minus_python"] = (peak - entry["gguf_bytes"] / 2 ** 20 - ours.get("baseline_rss_mb", 0)) if peak else None
            s["load_s"] = _g(ours, "load", "s")
            # The same comparisons from CPU time (this process, all threads) instead of wall time: with one thread
            # they estimate the undisturbed cost when other work shares the machine.
            def ratio(x, y):
                return (x / y) if x and y else None

            oc, cc = _g(ours, "clips", "11s") or {}, _g(cr, "clips", "11s") or {}
            o_ttft = (oc.get("encoder_cpu_s") or 0) + (oc.get("prefill_cpu_s") or 0)
            c_ttft = (cc.get("encoder_cpu_s") or 0) + (cc.get("prefill_cpu_s") or 0)
            dcpu = {p: _g(dec, "decode", p, "tok_per_s_cpu") for p in limits}
            s["cpu_time"] = {
                "encoder_s": oc.get("encoder_cpu_s"), "crispasr_encoder_s": cc.get("encoder_cpu_s"),
                "encoder_vs_crispasr": ratio(cc.get("encoder_cpu_s"), oc.get("encoder_cpu_s")),
                "ttft_s": o_ttft or None, "crispasr_ttft_s": c_ttft or None, "ttft_vs_crispasr": ratio(c_ttft, o_ttft),
                "prefill_tps": _g(dec, "prefill", n11, "tok_per_s_cpu"), "llama_prefill_tps": _g(ll, "prefill", n11, "tok_per_s_cpu"),
                "prefill_vs_llama": ratio(_g(dec, "prefill", n11, "tok_per_s_cpu"), _g(ll, "prefill", n11, "tok_per_s_cpu")),
                "decode_tps": dcpu, "llama_decode_tps": {p: _g(ll, "decode", p, "tok_per_s_cpu") for p in limits},
                "decode_vs_llama": {p: ratio(dcpu[p], _g(ll, "decode", p, "tok_per_s_cpu")) for p in limits},
                "crispasr_decode_tps": cc.get("decode_tps_cpu"),
                "decode_vs_crispasr": ratio(dcpu.get("160"), cc.get("decode_tps_cpu")),
                "decode_vs_limit": {p: ratio(dcpu[p], limits[p]) for p in limits},
            }
            disturbed = []
            lp_ = _g(th, "llama_plain", "result") or {}
            s["llama_plain"] = {"prefill_tps": _g(lp_, "prefill", n11, "tok_per_s"),
                                "decode_tps": {p: _g(lp_, "decode", p, "tok_per_s") for p in limits}}
            for who in ("ours", "ours_decoder", "crispasr", "llama", "llama_plain"):
                _collect_disturbed(_g(th, who, "result"), who, disturbed)
            s["disturbed"] = disturbed
            th["summary"] = s
            th["targets"] = _targets(arch, key.split("/")[1], s)


def _collect_disturbed(d: Any, path: str, out: List[str]) -> None:
    if isinstance(d, dict):
        if d.get("disturbed") is True:
            out.append(path)
        for k, v in d.items():
            if isinstance(v, dict):
                _collect_disturbed(v, f"{path}.{k}", out)


def _targets(arch: str, qt: str, s: Dict[str, Any]) -> Dict[str, Any]:
    t = TARGETS

    def chk(v, goal, higher=True):
        if v is None:
            return {"value": None, "target": goal, "met": None}
        return {"value": round(v, 3), "target": goal, "met": (v >= goal) if higher else (v <= goal)}

    return {
        "encoder_vs_crispasr (11 s)": chk(_g(s, "encoder_vs_crispasr", "11s"), t["encoder_vs_crispasr"]),
        "prefill_vs_llama": chk(s.get("prefill_vs_llama"), t["prefill_vs_llama"]),
        "ttft_vs_crispasr (11 s)": chk(s.get("ttft_vs_crispasr"), t["ttft_vs_crispasr"]),
        "decode_vs_llama (@160)": chk(_g(s, "decode_vs_llama", "160"), t["decode_vs_llama"]),
        "decode_vs_crispasr (@160)": chk(s.get("decode_vs_crispasr"), t["decode_vs_crispasr"]),
        "decode_vs_limit (@50)": chk(_g(s, "decode_vs_limit", "50"), t["decode_vs_limit"]),
        "rss_over_gguf_mb": chk(s.get("rss_over_gguf_mb"), t["rss_over_gguf_mb"][arch], higher=False),
        "load_s": chk(s.get("load_s"), t["load_s"], higher=False) if qt == "q4_k" else None,
    }


def _f(v, fmt="{:.2f}", none="–"):
    if v is None:
        return none
    try:
        return fmt.format(v)
    except (TypeError, ValueError):
        return str(v)


def render(report: Dict[str, Any]) -> str:
    """Markdown tables: per model/type/threads the main numbers, the peers, the ratios and the targets."""
    m = report["machine"]
    bw = m["bandwidth"]
    L: List[str] = []
    L.append(f"date {report['date']}, {m['cpu_model']}, {m['logical_cores']} cores, {m['mem_total_gb']} GB, "
             f"read bandwidth {_f(_g(bw, '1', 'read_gbps'))} GB/s (1 thread) / {_f(_g(bw, '2', 'read_gbps'))} GB/s "
             f"(2 threads); flags {' '.join(m['flags'])}")
    L.append("")
    L.append("| model / type / threads | load s | mel ms (11 s) | encoder s 5/11/30/120 s | prefill s 5/11/30/120 s "
             "| TTFT 11 s | decode tok/s @50/@160/@1000 | RTF 30 s | peak RSS − GGUF MB |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    rows_peer: List[str] = []
    rows_ratio: List[str] = []
    for key, entry in report["runs"].items():
        if key.endswith("/torch"):
            continue
        for nt, th in entry["threads"].items():
            o = _g(th, "ours", "result") or {}
            d = _g(th, "ours_decoder", "result") or {}
            s = th.get("summary", {})
            cl = o.get("clips", {})
            names = ["5s", "11s", "30s", "120s"]
            enc = "/".join(_f(_g(cl, c, "encoder_s")) for c in names if c in cl)
            pre = "/".join(_f(_g(cl, c, "prefill_s")) for c in names if c in cl)
            dec = "/".join(_f(_g(d, "decode", p, "tok_per_s"), "{:.1f}") for p in ("50", "160", "1000"))
            if d.get("decode_head_q8_0"):
                dec += " (Q8_0 head copy: " + "/".join(
                    _f(_g(d, "decode_head_q8_0", p, "tok_per_s"), "{:.1f}") for p in ("50", "160", "1000")) + ")"
            err = "" if _g(th, "ours", "ok") else f" (error: {_g(th, 'ours', 'error')})"
            L.append(f"| {key} / {nt}{err} | {_f(_g(o, 'load', 's'), '{:.3f}')} | {_f(_g(cl, '11s', 'mel_s') * 1000 if _g(cl, '11s', 'mel_s') is not None else None, '{:.0f}')} "
                     f"| {enc} | {pre} | {_f(_g(cl, '11s', 'ttft_s'))} | {dec} | {_f(_g(o, 'rtf', 'rtf'), '{:.3f}')} "
                     f"| {_f(s.get('rss_over_gguf_mb'), '{:.0f}')} |")
            cr = _g(th, "crispasr", "result") or {}
            ll = _g(th, "llama", "result") or {}
            crc = cr.get("clips", {})
            cr_txt = ("error: " + str(_g(th, "crispasr", "error"))) if th.get("crispasr") and not _g(th, "crispasr", "ok") else ""
            ll_txt = ("error: " + str(_g(th, "llama", "error"))) if th.get("llama") and not _g(th, "llama", "ok") else ""
            rows_peer.append(
                f"| {key} / {nt} | {_f(_g(cr, 'load', 's'), '{:.3f}')} | "
                f"{'/'.join(_f(_g(crc, c, 'encoder_s')) for c in names if c in crc)} | "
                f"{'/'.join(_f(_g(crc, c, 'prefill_s')) for c in names if c in crc)} | {_f(_g(crc, '11s', 'ttft_s'))} | "
                f"{_f(_g(crc, '11s', 'decode_tps'), '{:.1f}')} | {_f(_g(cr, 'rtf', 'rtf'), '{:.3f}')} | "
                f"{_f((cr.get('peak_rss_mb_30s') or 0) - entry['gguf_bytes'] / 2 ** 20 if cr.get('peak_rss_mb_30s') else None, '{:.0f}')} | "
                f"{_f(_g(ll, 'load', 's'), '{:.3f}')} | {_f(_g(ll, 'prefill', s.get('prefill_tokens') or '', 's'))} ({s.get('prefill_tokens') or '–'} tok) | "
                f"{'/'.join(_f(_g(ll, 'decode', p, 'tok_per_s'), '{:.1f}') for p in ('50', '160', '1000'))} | "
                f"{_f(_g(s, 'llama_plain', 'prefill_tps'), '{:.0f}')} / {_f(_g(s, 'llama_plain', 'decode_tps', '160'), '{:.1f}')} | "
                f"{'/'.join(_f(_g(s, 'limit_tps', p), '{:.1f}') for p in ('50', '160', '1000'))} | {cr_txt} {ll_txt} |")
            rows_ratio.append(
                f"| {key} / {nt} | {_f(_g(s, 'encoder_vs_crispasr', '11s'))} | {_f(s.get('ttft_vs_crispasr'))} | "
                f"{_f(s.get('prefill_vs_llama'))} | {_f(_g(s, 'decode_vs_llama', '160'))} | {_f(s.get('decode_vs_crispasr'))} | "
                f"{_f(_g(s, 'decode_vs_limit', '50'), '{:.0%}')} | {_f(s.get('rtf_vs_crispasr'))} | "
                f"{', '.join(s.get('disturbed') or []) or 'none'} |")
    L.append("")
    L.append("Peers, same run (crispasr: from the timestamps of its log lines; llama.cpp: the same decoder tensors; "
             "limit = read bandwidth ÷ bytes per token)")
    L.append("")
    L.append("| model / type / threads | crispasr load s | crispasr encoder s | crispasr prefill s | crispasr TTFT 11 s "
             "| crispasr decode tok/s (11 s) | crispasr RTF 30 s | crispasr RSS − GGUF MB | llama load s | llama prefill s "
             "| llama decode tok/s @50/@160/@1000 | llama plain-mmap prefill tok/s / decode @160 | limit tok/s @50/@160/@1000 "
             "| errors |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    L.extend(rows_peer)
    L.append("")
    L.append("Ratios (ours ÷ peer as speed-ups: >1 means we are faster)")
    L.append("")
    L.append("| model / type / threads | encoder vs crispasr (11 s) | TTFT vs crispasr | prefill vs llama.cpp | "
             "decode vs llama.cpp @160 | decode vs crispasr | decode / limit @50 | RTF vs crispasr | disturbed |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    L.extend(rows_ratio)
    cpu_rows = []
    for key, entry in report["runs"].items():
        if key.endswith("/torch"):
            continue
        for nt, th in entry["threads"].items():
            c = _g(th, "summary", "cpu_time")
            if not c or nt != "1":
                continue
            cpu_rows.append(
                f"| {key} / {nt} | {_f(c['encoder_s'])} / {_f(c['crispasr_encoder_s'])} = {_f(c['encoder_vs_crispasr'])} | "
                f"{_f(c['ttft_s'])} / {_f(c['crispasr_ttft_s'])} = {_f(c['ttft_vs_crispasr'])} | "
                f"{_f(c['prefill_tps'], '{:.0f}')} / {_f(c['llama_prefill_tps'], '{:.0f}')} = {_f(c['prefill_vs_llama'])} | "
                f"{_f(_g(c, 'decode_tps', '160'), '{:.1f}')} / {_f(_g(c, 'llama_decode_tps', '160'), '{:.1f}')} = "
                f"{_f(_g(c, 'decode_vs_llama', '160'))} | {_f(c['crispasr_decode_tps'], '{:.1f}')} → "
                f"{_f(c['decode_vs_crispasr'])} | {_f(_g(c, 'decode_vs_limit', '50'), '{:.0%}')} |")
    if cpu_rows:
        L.append("")
        L.append("1 thread, from CPU time instead of wall time (ours / peer = ratio; robust to other work on the machine)")
        L.append("")
        L.append("| model / type / threads | encoder s 11 s: ours / crispasr | TTFT s 11 s: ours / crispasr | prefill tok/s: "
                 "ours / llama.cpp | decode tok/s @160: ours / llama.cpp | crispasr decode tok/s → ratio | decode / limit @50 |")
        L.append("|---|---|---|---|---|---|---|")
        L.extend(cpu_rows)
    torch_rows = []
    for key, entry in report["runs"].items():
        if not key.endswith("/torch"):
            continue
        for nt, r in entry.items():
            if not isinstance(r, dict):
                continue
            res = r.get("result") or {}
            if not r.get("ok"):
                torch_rows.append(f"| {key} / {nt} | error: {r.get('error')} |||||")
                continue
            cl = res.get("clips", {})
            torch_rows.append(
                f"| {key} / {nt} ({res.get('dtype')}) | {_f(_g(res, 'load', 's'))} | "
                f"{'/'.join(_f(_g(cl, c, 'encoder', 's')) for c in cl)} | "
                f"{'/'.join(_f(_g(cl, c, 'prefill', 's')) for c in cl)} | "
                f"{'/'.join(_f(_g(res, 'decode', p, 'tok_per_s'), '{:.2f}') for p in (res.get('decode') or {}))} | "
                f"{_f(res.get('peak_rss_mb'), '{:.0f}')} |")
        if "error" in entry:
            torch_rows.append(f"| {key} | error: {entry['error']} |||||")
    if torch_rows:
        L.append("")
        L.append("PyTorch reference (transformers on the CPU; clips " + "/".join(
            ["11 s"] if report["quick"] else ["5 s", "11 s", "30 s"]) + ", decode at the positions listed)")
        L.append("")
        L.append("| model / threads (dtype) | load s | encoder s | prefill s | decode tok/s | peak RSS MB |")
        L.append("|---|---|---|---|---|---|")
        L.extend(torch_rows)
    # targets
    L.append("")
    L.append("Targets (MOSS-Transcribe, Q4_K, 2 threads, 11 s)")
    L.append("")
    for key, entry in report["runs"].items():
        if key.endswith("/torch"):
            continue
        for nt, th in entry["threads"].items():
            if not key.startswith("moss_transcribe/q4_k") or nt != "2":
                continue
            for name, t in (th.get("targets") or {}).items():
                if t is None:
                    continue
                met = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
                L.append(f"- {name}: {_f(t['value'], '{:.3g}')} (target {t['target']}) – {met}")
    # profile
    for key, entry in report["runs"].items():
        for pnt, pr in (entry.get("profile") or {}).items():
            prof = _g(pr, "result")
            if not prof:
                continue
            L.append("")
            L.append(f"Per-op profile, {key} ({pnt} thread(s); node-by-node timing adds a little overhead per op)")
            for stage in ("encoder", "prefill", "decode_step"):
                p = prof.get(stage) or {}
                ops = p.get("ops") or {}
                total = sum(v[0] for v in ops.values()) or 1.0
                top = sorted(ops.items(), key=lambda kv: -kv[1][0])[:8]
                L.append(f"- {stage} ({_f(p.get('wall_s'), '{:.3f}')} s wall, {total / 1000:.3f} s in ops): " + "; ".join(
                    f"{k} {v[0]:.0f} ms ({v[0] / total:.0%}"
                    + (f", {v[2] / v[0] / 1e6:.0f} GFLOP/s" if v[2] else "") + ")" for k, v in top))
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
