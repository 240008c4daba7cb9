"""Decoder prefill on the AMX tiles (cpu/amx_dequant.h) against the path without them, A/B in one process.

Each model is loaded twice in this process, once with CRISPMOSS_AMX=off (the LM's prefill products through
ggml's kernels, the encoder through the avx512 ones) and once as configured (default: the tiles), and the two
transcribe one clip in turn, `--reps` times each, with a fixed number of greedy tokens. Prints prefill_ms and
encode_ms (best and median of each), whether the greedy tokens agree, and with `--profile` the per-op profile
of one prefill each (CRISPMOSS_PROFILE). The machine's load average is printed before and after: compare only
numbers of a quiet run.

    python benchmarks/bench_prefill.py MODEL.gguf [MODEL.gguf ...] [--threads 2] [--reps 3] [--tokens 32]
    python benchmarks/bench_prefill.py MODEL.gguf --profile
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _tree import audio_dir, use_tree  # noqa: E402

use_tree()


def _load(path: str, threads: int, amx: str):
    from crispmoss import Model
    old = os.environ.get("CRISPMOSS_AMX")
    os.environ["CRISPMOSS_AMX"] = amx  # read at load (AudioLM::pack_for_amx)
    try:
        return Model(path, n_threads=threads)
    finally:
        if old is None:
            del os.environ["CRISPMOSS_AMX"]
        else:
            os.environ["CRISPMOSS_AMX"] = old


def _profile_rows(snap, top: int = 12):
    rows = sorted(snap.items(), key=lambda kv: -kv[1][0])[:top]
    return [(k, round(ms, 1), round(flop / ms / 1e6, 1) if ms > 0 and flop else None) for k, (ms, _, flop) in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--audio", default=str(audio_dir() / "jfk.wav"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--profile", action="store_true", help="per-op profile of one prefill per mode")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if a.profile:
        os.environ["CRISPMOSS_PROFILE"] = "1"
    from crispmoss import _core
    print(f"load average before: {os.getloadavg()}", flush=True)
    out = {"load_before": os.getloadavg(), "models": {}}
    for path in a.models:
        tiles = os.environ.get("CRISPMOSS_AMX", "bf16")
        modes = {"off": _load(path, a.threads, "off"), "tiles": _load(path, a.threads, tiles)}
        res = {m: {"prefill_ms": [], "encode_ms": []} for m in modes}
        toks = {}
        for rep in range(a.reps + 1):  # the first round warms the page cache and is not counted
            for m, model in modes.items():
                if a.profile:
                    _core.profile_reset()
                t = model.transcribe(a.audio, max_new_tokens=a.tokens)
                if a.profile and rep == 1:
                    res[m]["profile"] = _profile_rows(_core.profile_snapshot())
                toks[m] = list(t.tokens)
                if rep:
                    res[m]["prefill_ms"].append(t.timings["prefill_ms"])
                    res[m]["encode_ms"].append(t.timings["encode_ms"])
                res[m]["n_prompt"] = t.timings.get("n_prompt")
        for m in modes:
            for key in ("prefill_ms", "encode_ms"):
                v = res[m][key]
                res[m][key] = {"best": round(min(v), 1), "median": round(statistics.median(v), 1), "all": v}
        same = sum(x == y for x, y in zip(toks["off"], toks["tiles"]))
        first_diff = next((i for i, (x, y) in enumerate(zip(toks["off"], toks["tiles"])) if x != y), None)
        res["tokens_equal"] = f"{same}/{max(len(toks['off']), len(toks['tiles']))}"
        res["first_differing_token"] = first_diff
        res["speedup_prefill_best"] = round(res["off"]["prefill_ms"]["best"] / res["tiles"]["prefill_ms"]["best"], 2)
        out["models"][Path(path).name] = res
        print(f"{Path(path).name}: n_prompt {res['tiles']['n_prompt']}  prefill_ms off {res['off']['prefill_ms']} "
              f"tiles {res['tiles']['prefill_ms']}  ({res['speedup_prefill_best']}x)  encode_ms off "
              f"{res['off']['encode_ms']['best']} tiles {res['tiles']['encode_ms']['best']}  greedy tokens equal "
              f"{res['tokens_equal']} (first difference at {first_diff})", flush=True)
        if a.profile:
            for m in modes:
                print(f"  profile {m}:")
                for row in res[m]["profile"]:
                    print(f"    {row}")
        del modes
    out["load_after"] = os.getloadavg()
    print(f"load average after: {out['load_after']}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
