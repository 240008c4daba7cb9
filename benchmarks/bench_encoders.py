"""Encoder speed (encoder + adapter, + DeepStack mergers) per CPU level of our kernels, against the PyTorch
reference in bfloat16 and against the AMX unit's measured peak, on the full-size random models
(benchmarks/make_models.py), 2 threads:

    python benchmarks/make_models.py --types f16        # once: the F16 files (the PyTorch peer's HF checkpoints
                                                        # are written on first use, 4.8 + 9.7 GB)
    python benchmarks/bench_encoders.py                 # both models, clips of 5 / 11 / 30 s
    python benchmarks/bench_encoders.py --arch moss_audio --clips 11 --levels amx
    python benchmarks/bench_encoders.py --levels avx2 --ggml-build build/avx2only --no-torch --rounds 3
    python benchmarks/bench_encoders.py --smoke         # tiny random model, seconds: the script runs

Per level, in a fresh process with CRISPMOSS_CPU set (the level is fixed per process): ``avx2``, ``avx512`` (the
FMA kernels of cpp/cpu/gemm.cpp), ``amx`` (the BF16 tiles, cpp/cpu/amx.cpp; ``amx-split``: the same with
CRISPMOSS_AMX=split, the exact 3-product split), ``ggml`` (our kernels off); with ``--ggml-build DIR`` also
``ggml-build``: ggml's kernels from the ``_core`` module built in DIR (bench_cpu_levels.py shows how to build it
for AVX2 only, #18's reference for our ``avx2`` level), and ``avx2-build``: our avx2 level in that module (with
ggml's remaining ops, attention and norms, compiled as that build did: what an AVX2-only machine runs). Ours is
the encode time a transcription reports (``Transcript.timings["encode_ms"]``, here read from the session after
set_audio), best of --reps. The PyTorch peer (benchmarks/peer_torch.py, transformers' modules, sdpa, torch.set_num_threads) runs the
same weights in bfloat16 (oneDNN on the AMX tiles where the CPU has them). At the amx level also: one profiled
encode of the longest clip (--profile-clip; a worker of its own with CRISPMOSS_PROFILE set before the model is made)
for the matrix products' share and FLOP/s, and the kernels alone: the tile unit's
peak (TDPBF16PS on resident tiles, ``_core.amx_peak``), our AMX product and our FMA F16 kernel against
torch.matmul in bfloat16 on an encoder shape.

Writes benchmarks/results/encoders-<time>.json and prints a table. Timings on a busy machine are noise: the other
processes' load during each measurement is recorded (``other_cores``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _harness  # noqa: E402
from _tree import other_build, package_with_core, use_tree  # noqa: E402

use_tree()

LEVELS = ("ggml", "avx2", "avx512", "amx", "amx-split")
DEFAULT_LEVELS = ("avx2", "avx512", "amx")
ORDER = ("none", "avx2", "avx512", "amx")
# Kernel shapes: weight rows x k x activation rows (the encoders' FFN of an 11 s clip, the issue's oneDNN shape).
KERNEL_SHAPES = [(5120, 1280, 143), (1280, 5120, 143), (5120, 1280, 1024)]


def _clip(seconds: float):
    from run import clip

    return clip(seconds)


def worker_ours(a: Dict[str, Any]) -> Dict[str, Any]:
    from crispmoss import _core

    from machine import CpuMeter

    model = _core.Model(a["path"])
    res: Dict[str, Any] = {"level": _core.cpu_level(), "amx_bytes": model.placement["amx_bytes"], "clips": {},
                           "core": os.path.realpath(_core.__file__)}  # which build ran
    s = _core.Session(model, n_threads=a["threads"], kv_type="f16")
    s.set_audio(_clip(2.0))  # warm-up: thread pool, first touch of the weights
    for sec in a["clips"]:
        audio = _clip(sec)
        runs = []
        for _ in range(a["reps"]):
            with CpuMeter() as m:
                s.set_audio(audio)
            runs.append((s.audio_timings()["encode_ms"], m.other_cores, m.own_cpu_s))
        best = min(runs)
        res["clips"][f"{sec:g}s"] = {"encode_ms": round(best[0], 1), "other_cores": round(best[1], 2),
                                     "cpu_ms": round(1000 * best[2]),  # the set_audio's (mel + encode) CPU time
                                     "all_ms": [round(r[0], 1) for r in runs]}
    if a.get("profile") and res["level"] == "amx":
        res["kernels"] = kernels(a["threads"])
    return res


def worker_profile(a: Dict[str, Any]) -> Dict[str, Any]:
    """One encode of the profile clip with CRISPMOSS_PROFILE (set in this worker's environment by the parent: it is
    read when the model's Compute is made, before any session): time and FLOP of the matrix products (our AMX and
    FMA products, ggml's) against the rest."""
    from crispmoss import _core

    if not _core.profile_enabled():
        raise RuntimeError("CRISPMOSS_PROFILE is not set in the profile worker")
    model = _core.Model(a["path"])
    audio = _clip(a["profile_clip"])
    _core.Session(model, n_threads=a["threads"], kv_type="f16").set_audio(audio)  # warm-up
    _core.profile_reset()
    # A fresh session: one that already holds this clip keeps its encoder output and runs nothing.
    _core.Session(model, n_threads=a["threads"], kv_type="f16").set_audio(audio)
    snap = _core.profile_snapshot()
    prod = {k: v for k, v in snap.items() if v[2] > 0}
    total = sum(v[0] for v in snap.values())
    prod_ms, prod_flop = sum(v[0] for v in prod.values()), sum(v[2] for v in prod.values())
    top = sorted(((k, v[0]) for k, v in snap.items()), key=lambda kv: -kv[1])[:8]
    return {"clip_s": a["profile_clip"], "total_ms": round(total, 1), "products_ms": round(prod_ms, 1),
            "products_gflop": round(prod_flop / 1e9, 2), "products_gflops": round(prod_flop / prod_ms / 1e6, 1) if prod_ms > 0 else None,
            "top": [[k, round(ms, 1)] for k, ms in top]}


def kernels(threads: int) -> Dict[str, Any]:
    """The tile unit's peak and the products alone, ours against torch.matmul in bfloat16."""
    import torch

    from crispmoss import _core

    torch.set_num_threads(threads)
    out: Dict[str, Any] = {"amx_peak_gflops": round(max(_core.amx_peak(threads, 400000) for _ in range(3)), 1)}
    for rows, k, n in KERNEL_SHAPES:
        flop = 2.0 * rows * k * n
        w = torch.randn(rows, k, dtype=torch.bfloat16)
        x = torch.randn(n, k, dtype=torch.bfloat16)
        torch.matmul(x, w.t())
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            torch.matmul(x, w.t())
            t.append(time.perf_counter() - t0)
        out[f"{rows}x{k}x{n}"] = {
            "amx_gflops": round(flop / _core.amx_bench(rows, k, n, threads, 5, False) / 1e6, 1),
            "amx_split_gflops": round(flop / _core.amx_bench(rows, k, n, threads, 3, True) / 1e6, 1),
            "fma_f16_gflops": round(flop / _core.gemm_bench(rows, k, n, threads, 3, "avx512") / 1e6, 1),
            "torch_bf16_gflops": round(flop / min(t) / 1e9, 1)}
    return out


def worker_torch(a: Dict[str, Any]) -> Dict[str, Any]:
    import torch

    from machine import CpuMeter
    from peer_torch import TorchModel

    torch.set_num_threads(a["threads"])
    m = TorchModel(a["arch"], Path(a["hf_dir"]), "bfloat16", with_lm=False)
    m.encode(m.mel(_clip(2.0)))
    res: Dict[str, Any] = {"torch_version": torch.__version__, "dtype": "bfloat16", "clips": {}}
    for sec in a["clips"]:
        mel = m.mel(_clip(sec))
        runs = []
        for _ in range(a["reps"]):
            with CpuMeter() as c:
                t0 = time.perf_counter()
                m.encode(mel)
                ms = 1000 * (time.perf_counter() - t0)
            runs.append((ms, c.other_cores))
        best = min(runs)
        res["clips"][f"{sec:g}s"] = {"encode_ms": round(best[0], 1), "other_cores": round(best[1], 2),
                                     "all_ms": [round(r[0], 1) for r in runs]}
    return res


def run_worker(kind: str, args: Dict[str, Any], env_extra: Dict[str, str], timeout: float = 3600) -> Dict[str, Any]:
    env = dict(os.environ, **env_extra)
    env.pop("CRISPMOSS_GEMV", None)
    r = _harness.run_worker(__file__, [kind], args, timeout=timeout, env=env)
    return {"ok": True, **r["result"]} if r["ok"] else {"ok": False, "error": r["error"]}


def merge_round(prev: Optional[Dict[str, Any]], e: Dict[str, Any]) -> Dict[str, Any]:
    """A level's result over rounds: per clip the best round (its encode_ms, other_cores, cpu_ms), every round's
    best in ``rounds_ms``; a failed round fails the level."""
    if prev is None or not e.get("ok"):
        if e.get("ok"):
            for c in e["clips"].values():
                c["rounds_ms"] = [c["encode_ms"]]
        return e
    if not prev.get("ok"):
        return prev
    for name, c in e["clips"].items():
        p = prev["clips"][name]
        rounds = p["rounds_ms"] + [c["encode_ms"]]
        if c["encode_ms"] < p["encode_ms"]:
            prev["clips"][name] = p = dict(c)
        p["rounds_ms"] = rounds
    return prev


def level_env(level: str) -> Dict[str, str]:
    if level == "amx-split":
        return {"CRISPMOSS_CPU": "amx", "CRISPMOSS_AMX": "split"}
    return {"CRISPMOSS_CPU": level, "CRISPMOSS_AMX": "bf16"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--arch", nargs="+", default=["moss_transcribe", "moss_audio"],
                    choices=("moss_transcribe", "moss_audio"))
    ap.add_argument("--clips", nargs="+", type=float, default=[5.0, 11.0, 30.0], help="clip lengths, seconds")
    ap.add_argument("--levels", nargs="+", default=list(DEFAULT_LEVELS), choices=LEVELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="encodes per clip (the best is taken)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every level's worker this many times, the levels alternating (best of all rounds): "
                         "on a host whose speed drifts over minutes, every level then meets the same phases")
    ap.add_argument("--profile-clip", type=float, help="the amx level's profiled clip, seconds (default: the longest)")
    ap.add_argument("--ggml-build", metavar="DIR",
                    help="also ggml's kernels from the _core module built in DIR (e.g. -DCRISPMOSS_NATIVE=OFF)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    ap.add_argument("--smoke", action="store_true", help="tiny random model, no peer: checks the script")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/encoders-<time>.json)")
    args = ap.parse_args()
    if args.worker:
        kind, path = args.worker
        a = json.loads(Path(path).read_text())
        workers = {"ours": worker_ours, "profile": worker_profile, "torch": worker_torch}
        print(json.dumps(workers[kind](a)))
        return 0

    from crispmoss import _core

    best = _core.cpu_best_level()
    levels = [lv for lv in args.levels
              if lv == "ggml" or ORDER.index(lv.split("-")[0]) <= ORDER.index(best)]
    if "amx" in levels and not _core.amx_usable():
        levels = [lv for lv in levels if not lv.startswith("amx")]
    tmp = tempfile.TemporaryDirectory()
    if args.ggml_build:
        levels += ["ggml-build"] + (["avx2-build"] if "avx2" in levels else [])
        other = package_with_core(args.ggml_build, Path(tmp.name))
    report: Dict[str, Any] = {"time": _dt.datetime.now().isoformat(timespec="seconds"), "best_level": best,
                              "amx_usable": _core.amx_usable(), "threads": args.threads, "models": {},
                              "ggml_build": args.ggml_build}
    clips: List[float] = [2.0] if args.smoke else args.clips
    for arch in (["moss_transcribe"] if args.smoke else args.arch):
        if args.smoke:
            from crispmoss.convert import convert
            from crispmoss.testing import make_tiny_checkpoint

            hf = make_tiny_checkpoint(arch, Path(tmp.name) / "hf")
            path = str(convert(hf, Path(tmp.name) / "tiny-f16.gguf", outtype="f16", progress=False))
        else:
            from make_models import model_path

            path = str(model_path(arch, "f16"))
            if not Path(path).is_file():
                raise SystemExit(f"{path} is missing: python benchmarks/make_models.py --types f16")
        entry: Dict[str, Any] = {"path": path, "levels": {}}
        for rnd in range(max(1, args.rounds)):
            for lv in levels:
                a = {"path": path, "threads": args.threads, "clips": clips, "reps": 1 if args.smoke else args.reps,
                     "profile": lv == "amx" and not args.smoke and rnd == 0,
                     "profile_clip": args.profile_clip or max(clips)}
                env = level_env(lv)
                if lv.endswith("-build"):
                    env = other_build(dict(os.environ, CRISPMOSS_CPU=lv.split("-")[0]), other)
                e = run_worker("ours", a, env)
                if a["profile"] and e["ok"] and e["level"] == "amx":  # a process of its own: profiling slows every op
                    p = run_worker("profile", a, {**level_env(lv), "CRISPMOSS_PROFILE": "1"})
                    e["profile"] = {k: v for k, v in p.items() if k != "ok"} if p["ok"] else {"error": p["error"]}
                entry["levels"][lv] = merge_round(entry["levels"].get(lv), e)
        if not (args.no_torch or args.smoke):
            from make_models import hf_checkpoint

            hf_dir = hf_checkpoint(arch, log=lambda m: print(m, file=sys.stderr))
            entry["torch"] = run_worker("torch", {"arch": arch, "hf_dir": str(hf_dir), "threads": args.threads,
                                                  "clips": clips, "reps": args.reps}, {})
        report["models"][arch] = entry
    tmp.cleanup()
    print_table(report)
    if args.out or not args.smoke:
        print(f"\nwritten: {_harness.write_report(report, 'encoders', args.out)}")
    ok = [e["ok"] for m in report["models"].values() for e in list(m["levels"].values()) + [m.get("torch", {"ok": 1})]]
    return 0 if all(ok) else 1


def print_table(report: Dict[str, Any]) -> None:
    print(f"CPU: best level {report['best_level']} (AMX tiles usable: {report['amx_usable']}); "
          f"{report['threads']} threads; encode ms (best of the runs), [other processes' cores busy]")
    for arch, m in report["models"].items():
        cols = {f"ours {lv}": e for lv, e in m["levels"].items()}
        if "torch" in m:
            cols["torch bf16"] = m["torch"]
        clips = next((list(e["clips"]) for e in cols.values() if e.get("ok")), [])
        print(f"\n{arch}: {Path(m['path']).name}")
        print("  " + f"{'':>16}" + "".join(f"{c:>22}" for c in clips))
        for name, e in cols.items():
            if not e.get("ok"):
                err = e.get("error", "").strip().splitlines()
                print(f"  {name:>16}  failed: {err[-1] if err else '?'}")
                continue
            print("  " + f"{name:>16}" + "".join(
                f"{e['clips'][c]['encode_ms']:>14.0f} [{e['clips'][c]['other_cores']:4.1f}]" for c in clips))
        for ref_name, ref in (("torch bf16", m.get("torch")), ("ggml-build", m["levels"].get("ggml-build"))):
            if ref and ref.get("ok"):
                for lv, e in m["levels"].items():
                    if e.get("ok") and lv != "ggml-build":
                        r = [ref["clips"][c]["encode_ms"] / e["clips"][c]["encode_ms"] for c in clips]
                        print(f"  {ref_name} / ours {lv}: " + "  ".join(f"{c} {x:.2f}x" for c, x in zip(clips, r)))
        amx = m["levels"].get("amx", {})
        if amx.get("ok") and "error" in amx.get("profile", {}):
            print(f"  amx profile failed: {amx['profile']['error'].strip().splitlines()[-1]}")
        elif amx.get("ok") and "profile" in amx:
            p, k = amx["profile"], amx["kernels"]
            print(f"  amx, {p['clip_s']:g} s profiled: {p['total_ms']:.0f} ms, of which matrix products "
                  f"{p['products_ms']:.0f} ms ({p['products_gflop']} GFLOP at {p['products_gflops']} GFLOP/s; "
                  f"the tile unit's measured peak {k['amx_peak_gflops']} GFLOP/s would take "
                  f"{p['products_gflop'] / k['amx_peak_gflops'] * 1000:.0f} ms); AMX copies "
                  f"{amx['amx_bytes'] / 1e9:.2f} GB")
            print("  top: " + ", ".join(f"{name} {ms:.0f}" for name, ms in p["top"]))
            for shape, g in k.items():
                if isinstance(g, dict):
                    print(f"  kernel {shape}: ours AMX {g['amx_gflops']}, split {g['amx_split_gflops']}, FMA F16 "
                          f"{g['fma_f16_gflops']}, torch bf16 {g['torch_bf16_gflops']} GFLOP/s")


if __name__ == "__main__":
    sys.exit(main())
