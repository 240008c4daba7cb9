"""Decode speed at each CPU level of our kernels (cpp/cpu/level.h), on the full-size random models
(benchmarks/make_models.py), 2 threads:

    python benchmarks/make_models.py --types q4_k                   # once
    python benchmarks/bench_cpu_levels.py                           # MOSS-Transcribe Q4_K
    python benchmarks/bench_cpu_levels.py --arch moss_audio --types q4_k q8_0 f16
    python benchmarks/bench_cpu_levels.py --smoke                   # tiny random model, seconds: the script runs
    python benchmarks/bench_cpu_levels.py --attn-ab                 # + each level with ggml's attention
    # against ggml built for AVX2 only (#18's reference at the AVX2 level), a second build of the module:
    cmake -S . -B build/avx2only -G Ninja -DCRISPMOSS_NATIVE=OFF -DCRISPMOSS_PYTHON=ON -DCMAKE_BUILD_TYPE=Release \
          -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')"
    cmake --build build/avx2only --target _core
    python benchmarks/bench_cpu_levels.py --levels ggml avx2 --ggml-build build/avx2only

Per level, in a fresh process with CRISPMOSS_CPU set (the level is fixed per process):
- ``ggml``: CRISPMOSS_CPU=ggml, our kernels off: ggml's own, as this build compiled them (a default build:
  -march=native, so on an AVX-512 machine this is NOT ggml's AVX2 code; for that, build the portable variant
  set, CRISPMOSS_PORTABLE=ON, and load its haswell library — README "CPU kernels");
- ``avx2``, ``avx512``, ``amx``: our kernels at that level (amx runs the avx512 matrix-vector kernels).
- ``ggml-build``: with ``--ggml-build DIR``, ggml's own kernels (CRISPMOSS_CPU=ggml) from the ``_core`` module
  built in DIR, loaded in its worker process instead of this tree's: with ``-DCRISPMOSS_NATIVE=OFF`` that is
  ggml built for AVX2 + FMA + F16C only, the reference #18 sets for our AVX2 level; ``avx2-build``: our avx2
  level in that module (ggml's remaining ops compiled as that build did: what an AVX2-only machine runs);
- ``<level>/ggml-attn`` (``--attn-ab``): that level with ggml's per-sequence flash attention instead of our
  decode-attention op (CRISPMOSS_ATTN=ggml), the op's A/B in the same run.
Per level of ours also our decode-attention kernel alone at position 1000 (``_core.attention_bench``: the model's
heads, an F16 cache per layer, caches for 4 steps visited in turn so they come from memory, KV heads split over
``--threads`` threads as the graph op splits them): ms per decode step (all layers) of the slowest thread's CPU
time and the GB/s of cache that gives — robust on a shared machine, where the wall-clock steps are not.
Levels the CPU lacks are skipped. Measured: single-token decode (DecoderBench.decode, as run.py) at context
positions 50 / 160 / 1000, median step → tok/s; and our matrix-vector kernel alone (_core.gemv_bench, one
activation row, a weight matrix larger than the caches) on 1 and on `--threads` threads → GB/s of weights
streamed. Against: the bandwidth limit, bytes a decode step reads ÷ the measured read bandwidth
(benchmarks/machine.py).

Writes benchmarks/results/cpu-levels-<time>.json and prints a table. Timings on a busy machine are noise: the
machine's other load during each run is recorded (``other_cores``).
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
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _harness  # noqa: E402
from _tree import other_build, package_with_core, use_tree  # noqa: E402

use_tree()

LEVELS = ("ggml", "avx2", "avx512", "amx")
ORDER = ("none", "avx2", "avx512", "amx")
POSITIONS = (50, 160, 1000)
# Matrix-vector shapes for the bandwidth number: larger than any L3 this runs on (75-134 MB).
GEMV_SHAPES = {"q4_k": (16384, 8192), "q8_0": (16384, 8192), "f16": (8192, 8192)}


def worker(a: Dict[str, Any]) -> Dict[str, Any]:
    from crispmoss import _core

    from machine import CpuMeter

    res: Dict[str, Any] = {"level": _core.cpu_level(), "decode": {}, "gemv": {},
                           "core": os.path.realpath(_core.__file__)}  # which build ran
    b = _core.DecoderBench(a["path"], a["threads"], "f16", "")
    b.decode(8, 2)  # warm-up: pages, thread pool
    for pos in a["positions"]:
        with CpuMeter() as m:
            st = sorted(b.decode(pos, a["steps"]))
        med = st[len(st) // 2]
        res["decode"][str(pos)] = {"step_ms_median": round(med, 3), "tok_per_s": round(1000 / med, 2),
                                   "cpu_ms_per_step": round(1000 * m.own_cpu_s / len(st), 1),
                                   "other_cores": round(m.other_cores, 2)}
    if res["level"] != "none" and a.get("attn_shape"):
        n_layer, n_head, n_kv_head, d = a["attn_shape"]
        reps = 4  # steps' worth of caches visited in turn (more than the last-level cache holds)
        with CpuMeter() as m:
            cpu_ms, wall_ms, nbytes = _core.attention_bench("f16", 1000, n_head, n_kv_head, d, n_layer * reps, 3,
                                                            res["level"], min(a["threads"], n_kv_head))
        res["attention_1000"] = {"cpu_ms_per_step": round(cpu_ms / reps, 3), "wall_ms_per_step": round(wall_ms / reps, 3),
                                 "mb_per_step": round(nbytes / reps / 1e6, 1), "gb_per_s": round(nbytes / cpu_ms / 1e6, 2),
                                 "other_cores": round(m.other_cores, 2)}
    if res["level"] != "none":
        for qtype in a["gemv_types"]:
            rows, cols = a["gemv_shapes"][qtype]
            for nth in sorted({1, a["threads"]}):
                with CpuMeter() as m:
                    ms, nbytes = _core.gemv_bench(qtype, rows, cols, 1, nth, a["gemv_reps"], res["level"])
                res["gemv"][f"{qtype}/{nth}t"] = {"ms": round(ms, 3), "gb_per_s": round(nbytes / ms / 1e6, 2),
                                                  "mb": round(nbytes / 1e6, 1), "other_cores": round(m.other_cores, 2)}
    return res


def run_worker(level: str, args: Dict[str, Any], timeout: float = 1800, attn: str = "",
               package: "str | None" = None) -> Dict[str, Any]:
    env = dict(os.environ, CRISPMOSS_CPU=level)
    env.pop("CRISPMOSS_GEMV", None)
    env.pop("CRISPMOSS_ATTN", None)
    if attn:
        env["CRISPMOSS_ATTN"] = attn
    if package:  # another build's module
        env = other_build(env, package)
    r = _harness.run_worker(__file__, [], args, timeout=timeout, env=env)
    return {"ok": True, **r["result"]} if r["ok"] else {"ok": False, "error": r["error"]}


def attention_shape(path: str) -> List[int]:
    """(layers, query heads, KV heads, head size) of a model file's decoder."""
    import gguf

    r = gguf.GGUFReader(path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    get = lambda k: int(r.fields[f"{arch}.llm.{k}"].parts[-1][0])  # noqa: E731
    return [get("num_layers"), get("num_heads"), get("num_kv_heads"), get("head_dim")]


def smoke_model(tmp: Path) -> str:
    from crispmoss.convert import convert
    from crispmoss.testing import make_tiny_checkpoint

    hf = make_tiny_checkpoint("moss_transcribe", tmp / "hf")
    return str(convert(hf, tmp / "tiny-f16.gguf", outtype="f16", progress=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--arch", default="moss_transcribe", choices=("moss_transcribe", "moss_audio"))
    ap.add_argument("--types", nargs="+", default=["q4_k"], choices=("q4_k", "q8_0", "f16"))
    ap.add_argument("--model", help="a GGUF file instead of the make_models.py one (one type)")
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=16, help="decode steps per position (median taken)")
    ap.add_argument("--attn-ab", action="store_true",
                    help="each level of ours also with ggml's flash attention (CRISPMOSS_ATTN=ggml)")
    ap.add_argument("--ggml-build", metavar="DIR",
                    help="also ggml's kernels from the _core module built in DIR (e.g. -DCRISPMOSS_NATIVE=OFF)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny random model, small matrices: checks the script (no JSON unless --out)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/cpu-levels-<time>.json)")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0

    from crispmoss import _core

    from bench_batch import decoder_bytes
    from machine import bandwidth

    best = _core.cpu_best_level()
    levels = [lv for lv in args.levels if lv == "ggml" or ORDER.index(lv) <= ORDER.index(best)]
    skipped = [lv for lv in args.levels if lv not in levels]
    tmp = tempfile.TemporaryDirectory()
    other = package_with_core(args.ggml_build, Path(tmp.name)) if args.ggml_build else None
    if args.smoke:
        models = {"f16": smoke_model(Path(tmp.name))}
        shapes = {t: (256, 2048) for t in GEMV_SHAPES}
        positions, steps, reps = (50, 160), 3, 2
    else:
        from make_models import model_path

        if args.model:
            models = {"file": args.model}
        else:
            models = {t: str(model_path(args.arch, t)) for t in args.types}
        for p in models.values():
            if not Path(p).is_file():
                raise SystemExit(f"{p} is missing: python benchmarks/make_models.py --types {' '.join(args.types)}")
        shapes, positions, steps, reps = GEMV_SHAPES, POSITIONS, args.steps, 5
    bw = bandwidth(args.threads)
    report: Dict[str, Any] = {"time": _dt.datetime.now().isoformat(timespec="seconds"), "best_level": best,
                              "skipped_levels": skipped, "threads": args.threads, "bandwidth": bw, "models": {},
                              "ggml_build": args.ggml_build}
    for t, path in models.items():
        nbytes = decoder_bytes(path)
        entry: Dict[str, Any] = {"path": path, "decoder_bytes": nbytes,
                                 "limit_tok_per_s": round(bw["read_gbps"] * 1e9 / nbytes, 2), "levels": {}}
        runs = [(lv, lv, "", None) for lv in levels]
        if args.ggml_build:
            runs.insert(1 if "ggml" in levels else 0, ("ggml-build", "ggml", "", other))
            if "avx2" in levels:
                runs.append(("avx2-build", "avx2", "", other))
        if args.attn_ab:
            runs += [(f"{lv}/ggml-attn", lv, "ggml", None) for lv in levels if lv != "ggml"]
        for name, lv, attn, package in runs:
            # the kernel-alone numbers once per level (they do not depend on the model)
            a = {"path": path, "threads": args.threads, "positions": list(positions), "steps": steps,
                 "gemv_types": list(shapes) if t == next(iter(models)) and not (attn or package) else [],
                 "gemv_shapes": shapes, "gemv_reps": reps,
                 "attn_shape": attention_shape(path) if not attn and lv != "ggml" else None}
            t0 = time.time()
            entry["levels"][name] = run_worker(lv, a, attn=attn, package=package)
            entry["levels"][name]["wall_s"] = round(time.time() - t0, 1)
        report["models"][t] = entry
    tmp.cleanup()
    print_table(report)
    # a smoke run's numbers mean nothing: written only where --out asks
    if args.out or not args.smoke:
        print(f"\nwritten: {_harness.write_report(report, 'cpu-levels', args.out)}")
    return 0 if all(e["ok"] for m in report["models"].values() for e in m["levels"].values()) else 1


def print_table(report: Dict[str, Any]) -> None:
    print(f"CPU: best level {report['best_level']}; {report['threads']} threads; read bandwidth "
          f"{report['bandwidth']['read_gbps']} GB/s" + (f"; skipped (CPU lacks): {', '.join(report['skipped_levels'])}"
                                                         if report["skipped_levels"] else ""))
    for t, m in report["models"].items():
        print(f"\n{t}: {Path(m['path']).name}, {m['decoder_bytes'] / 1e9:.2f} GB a step, "
              f"bandwidth limit {m['limit_tok_per_s']} tok/s")
        pos = list(next((e["decode"] for e in m["levels"].values() if e["ok"]), {}))
        head = [f"tok/s @{p}" for p in pos] + ([f"@{pos[-1]}/@{pos[0]}"] if len(pos) > 1 else [])
        print("  " + f"{'level':>18}  " + "  ".join(f"{h:>12}" for h in head))
        for lv, e in m["levels"].items():
            if not e["ok"]:
                print(f"  {lv:>18}  failed: {e['error'].strip().splitlines()[-1] if e['error'].strip() else '?'}")
                continue
            tps = [d["tok_per_s"] for d in e["decode"].values()]
            cells = [f"{x:>12}" for x in tps] + ([f"{tps[-1] / tps[0]:>12.3f}"] if len(tps) > 1 else [])
            print("  " + f"{lv:>18}  " + "  ".join(cells))
        for lv, e in m["levels"].items():
            at = e.get("attention_1000")
            if at:
                print(f"  {lv:>8} decode attention alone @1000, F16 cache ({at['mb_per_step']} MB a step): "
                      f"{at['cpu_ms_per_step']} ms a step (slowest thread's CPU time), {at['gb_per_s']} GB/s")
        gem: List[str] = []
        for lv, e in m["levels"].items():
            for k, g in (e.get("gemv") or {}).items():
                gem.append(f"  {lv:>8} {k:>10}: {g['gb_per_s']:>6} GB/s ({g['mb']} MB, {g['ms']} ms)")
        if gem:
            print("matrix-vector kernel alone, one activation row:")
            print("\n".join(gem))


if __name__ == "__main__":
    sys.exit(main())
