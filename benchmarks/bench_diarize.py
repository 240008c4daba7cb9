"""MOSS-Transcribe-Diarize at full size (random weights): ours against crispasr's ``moss-diarize`` backend on the
same GGUF file, in the same run.

    python benchmarks/make_models.py --arch moss_transcribe_diarize --types q4_k     # once (~1 min, ~2.9 GB)
    pip install crispasr==0.8.45                                                      # the peer
    python benchmarks/bench_diarize.py                      # Q4_K, 2 threads, 5/11/30/60 s clips, ours + crispasr
    python benchmarks/bench_diarize.py --long               # + the single-pass limit: decode speed and KV memory
                                                            #   at long-pass positions (ours)

Per clip (real speech from the shared clips, 5 / 11 / 30 / 60 s; one pass over the whole clip, as the official
code and crispasr do) both transcribe with greedy decoding and a fixed budget of ``--tokens-per-second`` tokens per
second of audio (the random weights never stop on their own; 5 tok/s is about what the real model writes for
speech with its timestamps and labels): encoder (mel + encoder + adaptor), prefill, decode speed, the whole call's
wall time and real-time factor (audio seconds per wall second), and the worker's peak RSS. crispasr's stages come
from the timestamps of its own log lines (verbosity 2), as in benchmarks/run.py. Each side runs in a fresh worker
process per clip (so peak RSS is per clip), warmed up on one second of audio first.

``--long`` adds what the single-pass limit is chosen from (our decoder alone, ``_core.DecoderBench``): decode
step time at context positions up to ``--long-positions`` (the KV cache grows with the pass: audio rows, time
markers and the generated text), the KV bytes per position and the memory one pass holds
(``Model.slot_bytes``) for passes of 30 s to 90 min.

Each measurement records the CPU time other processes used meanwhile; a run where they kept more than
--max-other cores busy is repeated (up to --tries) and flagged "disturbed" if no clean run was had. Prints a
table and writes benchmarks/results/diarize-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import run_worker, write_report  # noqa: E402
from run import (Measurer, _peak_rss_mb, _stamped_stderr, _warm_file, clip, log)  # noqa: E402

ARCH = "moss_transcribe_diarize"
CLIPS = (5.0, 11.0, 30.0, 60.0)
LONG_POSITIONS = (200, 1000, 4000, 8000, 16000, 32000)
LONG_SECONDS = (30, 60, 300, 600, 1800, 5400)
TARGET_RTF_VS_CRISPASR = 2.0  # issue #20: our real-time factor at least twice crispasr's


def _tokens(seconds: float, per_second: float) -> int:
    return max(2, int(math.ceil(seconds * per_second)))


# ----------------------------------------------------------------------------------------------------------------
# Workers (each in a fresh process)
# ----------------------------------------------------------------------------------------------------------------

def worker_ours(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    import crispmoss

    model = crispmoss.Model(a["path"], a["threads"])
    audio = clip(a["seconds"])
    model.transcribe(audio[:16000], max_new_tokens=2, max_pass_seconds=math.inf)  # warm-up: threads, weight pages

    def run() -> Dict[str, Any]:
        t0 = time.perf_counter()
        t = model.transcribe(audio, max_new_tokens=a["tokens"], max_pass_seconds=math.inf)
        wall = time.perf_counter() - t0
        tm = dict(t.timings)
        n = int(tm.get("n_generated", len(t.tokens)))
        return {"s": wall, "n_prompt": int(tm.get("n_prompt", 0)), "n_generated": n,
                "encoder_s": (tm.get("mel_ms", 0.0) + tm.get("encode_ms", 0.0)) / 1000,
                "prefill_s": tm.get("prefill_ms", 0.0) / 1000, "decode_s": tm.get("decode_ms", 0.0) / 1000,
                "decode_tps": n / (tm["decode_ms"] / 1000) if tm.get("decode_ms") else None,
                "n_passes": int(tm.get("n_passes", 1)), "stop_reason": t.stop_reason}

    res = measure(f"ours {a['seconds']:g} s, {a['tokens']} tokens", run)
    res["speed"] = a["seconds"] / res["s"]
    res["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return res


def _crispasr_stages(lines: List[Any], t_call: float, t_end: float) -> Dict[str, Any]:
    """Stage times of one crispasr call from its timestamped log lines (moss-diarize backend, verbosity 2): the
    encoder ends at the last encoder/adaptor line before the first decode step; a step line per generated token;
    'N tokens: …' ends the generation."""
    enc_end = None
    steps: List[float] = []
    out: Dict[str, Any] = {}
    for t, line, _ in lines:
        if t < t_call:
            continue
        if re.search(r"(encoder|adaptor) (done: )?\d+ frames", line) and not steps:
            enc_end = t
        elif re.search(r"step \d+ argmax", line):
            steps.append(t)
        m = re.search(r"(\d+) prompt tokens", line)
        if m:
            out["n_prompt"] = int(m.group(1))
        m = re.search(r"(\d+) tokens: ", line)
        if m:
            out["n_generated"] = int(m.group(1))
            out["gen_end"] = t
    if enc_end is not None:
        out["encoder_s"] = enc_end - t_call
        if steps:
            out["prefill_s"] = steps[0] - enc_end  # prompt assembly + LM prefill + first argmax
    n = out.get("n_generated") or len(steps)
    if steps and n > 1:
        end = out.pop("gen_end", steps[-1])
        out["decode_s"] = end - steps[0]
        out["decode_tps"] = (n - 1) / out["decode_s"] if out["decode_s"] > 0 else None
    out.pop("gen_end", None)
    out["n_generated"] = n
    return out


def worker_crispasr(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    lines = _stamped_stderr()
    import crispasr

    _warm_file(a["path"])
    s = crispasr.Session(a["path"], n_threads=a["threads"], backend="moss-diarize", verbosity=2)
    audio = clip(a["seconds"])
    s.set_max_new_tokens(2)
    s.transcribe(audio[:16000], sample_rate=16000)  # warm-up

    def run() -> Dict[str, Any]:
        s.set_max_new_tokens(a["tokens"])
        t_call = time.perf_counter()
        segs = s.transcribe(audio, sample_rate=16000)
        t_end = time.perf_counter()
        time.sleep(0.05)  # let the reader thread catch the last lines
        ev = _crispasr_stages(list(lines), t_call, t_end)
        ev["s"] = t_end - t_call
        ev["text"] = " ".join(g.text for g in segs)[:80]
        return ev

    res = measure(f"crispasr {a['seconds']:g} s, {a['tokens']} tokens", run)
    res["speed"] = a["seconds"] / res["s"]
    res["version"] = getattr(crispasr, "__version__", "?")
    res["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    s.close()
    return res


def worker_long(a: Dict[str, Any], measure: Measurer) -> Dict[str, Any]:
    """Decode step time at long-pass positions and the memory of a pass, for the single-pass limit."""
    import crispmoss
    from crispmoss import _core

    model = crispmoss.Model(a["path"], a["threads"], batch_size=1)
    kv = int(model._core.kv_bytes_per_position("f16"))
    sr = int(model._core.mel["sample_rate"])
    passes = {}
    for sec in a["long_seconds"]:
        n_audio = int(model._core.n_audio_tokens_for(int(sec * sr)))
        budget = model.pass_max_new_tokens(float(sec))  # the default max_new_tokens of such a pass
        passes[str(sec)] = {"n_audio": n_audio, "max_new_tokens": budget,
                            "slot_bytes": model.slot_bytes(float(sec), max_new_tokens=budget),
                            "slot_bytes_5tok_s": model.slot_bytes(float(sec), max_new_tokens=_tokens(sec, 5.0))}
    default_limit = model.max_pass_seconds
    model.close()
    del model
    b = _core.DecoderBench(a["path"], a["threads"])
    b.decode_batch(1, 8, 2)  # warm-up
    decode = {}
    for pos in a["positions"]:
        def fn(pos: int = pos) -> Dict[str, Any]:
            st = sorted(b.decode_batch(1, pos, a["steps"]))  # the engine's decode step, one sequence
            return {"s": sum(st) / 1000, "step_ms_median": st[len(st) // 2], "tok_per_s": 1000 * len(st) / sum(st)}

        decode[str(pos)] = measure(f"ours decode@{pos}", fn)
    return {"kv_bytes_per_position": kv, "passes": passes, "decode": decode, "default_max_pass_seconds": default_limit,
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


WORKERS = {"ours": worker_ours, "crispasr": worker_crispasr, "long": worker_long}


def worker_main(kind: str, arg_path: str) -> int:
    with open(arg_path) as f:
        a = json.load(f)
    measure = Measurer(a["max_other"], a["tries"], a["quiet_wait"], int(a["threads"]))
    out = WORKERS[kind](a, measure)
    sys.stdout.write("\n" + json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Orchestrator
# ----------------------------------------------------------------------------------------------------------------

def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def table(report: Dict[str, Any]) -> str:
    """The markdown table of benchmarks/RESULTS.md: per clip, ours vs crispasr and the ratio (crispasr / ours for
    times, ours / crispasr for speeds)."""
    L = ["| clip | tokens | encoder s: ours / crispasr | prefill s: ours / crispasr | decode tok/s: ours / crispasr "
         "| wall s: ours / crispasr | RTF (x real time): ours / crispasr | RTF ratio | peak RSS MB: ours / crispasr "
         "| disturbed |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in report["clips"].items():
        o = c.get("ours", {}).get("result") or {}
        r = c.get("crispasr", {}).get("result") or {}
        dist = ", ".join(w for w in ("ours", "crispasr") if (c.get(w, {}).get("result") or {}).get("disturbed"))
        err = "; ".join(f"{w}: error" for w in ("ours", "crispasr") if c.get(w) and not c[w].get("ok"))
        L.append(f"| {name} | {c['tokens']} | {_f(o.get('encoder_s'))} / {_f(r.get('encoder_s'))} | "
                 f"{_f(o.get('prefill_s'))} / {_f(r.get('prefill_s'))} | "
                 f"{_f(o.get('decode_tps'), '{:.1f}')} / {_f(r.get('decode_tps'), '{:.1f}')} | "
                 f"{_f(o.get('s'))} / {_f(r.get('s'))} | {_f(o.get('speed'))} / {_f(r.get('speed'))} | "
                 f"**{_f(c.get('rtf_vs_crispasr'))}** | {_f(o.get('peak_rss_mb'), '{:.0f}')} / "
                 f"{_f(r.get('peak_rss_mb'), '{:.0f}')} | {dist or 'no'}{'; ' + err if err else ''} |")
    lg = report.get("long")
    if lg and lg.get("ok"):
        res = lg["result"]
        L += ["", f"Single pass (ours; KV cache {res['kv_bytes_per_position'] / 1024:.0f} KiB per position, f16):", "",
              "| context position | decode tok/s | step ms |", "|---|---|---|"]
        for pos, d in res["decode"].items():
            L.append(f"| {pos} | {_f(d.get('tok_per_s'), '{:.1f}')} | {_f(d.get('step_ms_median'), '{:.1f}')} |")
        L += ["", "| pass length | audio tokens | default max_new_tokens | memory of one pass (that budget) | "
                  "with 5 tok/s of output |", "|---|---|---|---|---|"]
        for sec, p in res["passes"].items():
            L.append(f"| {int(sec) // 60} min {int(sec) % 60} s | {p['n_audio']} | {p.get('max_new_tokens', '—')} | "
                     f"{p['slot_bytes'] / 2**20:.0f} MiB | {p['slot_bytes_5tok_s'] / 2**20:.0f} MiB |")
    return "\n".join(L)


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker_main(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--type", default="q4_k", choices=("f16", "q8_0", "q4_k"), help="GGUF type (default q4_k)")
    ap.add_argument("--model", default=None, help="a GGUF file instead of make_models.py's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=float, nargs="+", default=list(CLIPS), help="clip lengths in seconds")
    ap.add_argument("--tokens-per-second", type=float, default=5.0,
                    help="generated tokens per second of audio (fixed budget; default 5)")
    ap.add_argument("--no-crispasr", action="store_true", help="ours only")
    ap.add_argument("--long", action="store_true", help="also decode speed and memory at long-pass positions")
    ap.add_argument("--long-positions", type=int, nargs="+", default=list(LONG_POSITIONS))
    ap.add_argument("--long-steps", type=int, default=8, help="decode steps per position")
    ap.add_argument("--max-other", type=float, default=0.15,
                    help="a measurement is disturbed when other processes kept more cores than this busy")
    ap.add_argument("--tries", type=int, default=2, help="attempts per measurement (default 2)")
    ap.add_argument("--quiet-wait", type=float, default=10.0,
                    help="seconds to wait for a quiet machine before each attempt (default 10)")
    ap.add_argument("--dir", default=None, help="model folder (default $CRISPMOSS_BENCH_DIR or ~/.cache/crispmoss/bench)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/diarize-<time>.json)")
    a = ap.parse_args(argv)

    if a.model:
        path = str(Path(a.model).expanduser())
    else:
        from make_models import model_path

        p = model_path(ARCH, a.type, directory=a.dir)
        if not p.exists():
            log(f"missing {p}: run python benchmarks/make_models.py --arch {ARCH} --types {a.type} first")
            return 2
        path = str(p)
    common = {"path": path, "threads": a.threads, "max_other": a.max_other, "tries": a.tries,
              "quiet_wait": a.quiet_wait}
    from machine import machine_info

    report: Dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "command": " ".join(["bench_diarize.py"] + list(argv if argv is not None else sys.argv[1:])),
                              "model": path, "gguf_bytes": os.path.getsize(path), "threads": a.threads,
                              "tokens_per_second": a.tokens_per_second, "machine": machine_info(threads=()),
                              "target_rtf_vs_crispasr": TARGET_RTF_VS_CRISPASR, "clips": {}}
    script = str(Path(__file__).resolve())
    for sec in sorted(a.clips):
        name = f"{sec:g}s"
        n = _tokens(sec, a.tokens_per_second)
        c: Dict[str, Any] = {"seconds": sec, "tokens": n}
        report["clips"][name] = c
        for who in ("ours",) + (() if a.no_crispasr else ("crispasr",)):
            log(f"== {name}, {n} tokens: {who}")
            c[who] = run_worker(script, [who], dict(common, seconds=sec, tokens=n), timeout=a.timeout)
            if not c[who]["ok"]:
                log(f"{who} failed: {c[who]['error'][-600:]}")
        o, r = (c.get(w, {}).get("result") or {} for w in ("ours", "crispasr"))
        c["rtf_vs_crispasr"] = _ratio(o.get("speed"), r.get("speed"))
    if a.long:
        log("== single pass: decode at long positions, memory per pass")
        report["long"] = run_worker(script, ["long"], dict(common, positions=a.long_positions, steps=a.long_steps,
                                                            long_seconds=list(LONG_SECONDS)), timeout=a.timeout)
        if not report["long"]["ok"]:
            log(f"long failed: {report['long']['error'][-600:]}")
    out = write_report(report, "diarize", Path(a.out) if a.out else None)
    print(table(report))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
