"""Session benchmark: a second question on a session costs only its own tokens (no second encoder pass).

For each model, three questions about one clip are answered twice: on one Session (the audio is encoded once,
later requests reuse the cached prompt prefix) and with a fresh session per question (encode + full prefill
every time). Prints a table and writes benchmarks/results/session.json.

    python benchmarks/bench_session.py                      # random models, real layer widths
    python benchmarks/bench_session.py --sizes tiny         # quick
    python benchmarks/bench_session.py --model moss-audio:q4_k --model path/to/transcribe.gguf

Random-weight models answer gibberish; the costs (encoder, prefill per token, decode per token) are those of the
architecture at the given widths, which is what this benchmark is about.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _tree import audio_dir, use_tree  # noqa: E402

use_tree()

RESULTS = ROOT / "benchmarks" / "results" / "session.json"
AUDIO = audio_dir() / "jfk.wav"
QUESTIONS = ["What is said in this clip?", "Who is speaking, and what is the mood?",
             "Summarise the audio in one sentence."]
Row = Dict[str, object]


def _random_model(arch: str, sizes: str, workdir: Path) -> str:
    from crispmoss.convert import convert
    from crispmoss.testing import make_checkpoint

    hf = make_checkpoint(arch, workdir / f"{arch}-{sizes}-hf", seed=0, sizes=sizes, shards=1)
    out = workdir / f"{arch}-{sizes}-f16.gguf"
    convert(hf, out, "f16", progress=False)
    return str(out)


def _row(model, mode: str, request: str, t, wall: float, encoded_here: bool) -> Row:
    tm = t.timings
    return {"model": model.arch, "mode": mode, "request": request, "n_prompt": int(tm["n_prompt"]),
            "n_prefilled": int(tm["n_prefilled"]), "encoder_ms": round(tm["encode_ms"], 1) if encoded_here else 0.0,
            "prefill_ms": round(tm["prefill_ms"], 1), "decode_ms": round(tm["decode_ms"], 1),
            "n_generated": int(tm["n_generated"]), "wall_ms": round(wall * 1000, 1)}


def bench(model_path: str, threads: int, max_new_tokens: int) -> List[Row]:
    import crispmoss

    model = crispmoss.Model(model_path, threads)
    audio = crispmoss.load_audio(AUDIO)
    asks = QUESTIONS if model.accepts_instructions else [None] * len(QUESTIONS)
    label = (lambda i, q: f"Q{i + 1}") if model.accepts_instructions else (lambda i, q: f"transcribe #{i + 1}")

    def run(session, q):
        if q is None:
            return session.transcribe(max_new_tokens=max_new_tokens)
        return session.ask(q, max_new_tokens=max_new_tokens)

    model.session(audio[:16000]).transcribe(max_new_tokens=1)  # warm-up: thread pools, page faults of the weights
    rows: List[Row] = []
    t0 = time.perf_counter()
    session = model.session(audio)
    for i, q in enumerate(asks):
        t = run(session, q)
        rows.append(_row(model, "one session", label(i, q), t, time.perf_counter() - t0, i == 0))
        t0 = time.perf_counter()
    for i, q in enumerate(asks):
        t0 = time.perf_counter()
        t = run(model.session(audio), q)
        rows.append(_row(model, "fresh session", label(i, q), t, time.perf_counter() - t0, True))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None,
                    help="GGUF path or published name (repeatable); default: random models of --sizes")
    ap.add_argument("--sizes", default="real_layer", choices=["tiny", "real_layer"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_session_") as tmp:
        models = args.model or [_random_model(a, args.sizes, Path(tmp)) for a in ("moss_transcribe", "moss_audio")]
        rows: List[Row] = []
        for m in models:
            rows += bench(m, args.threads, args.max_new_tokens)

    cols = ["model", "mode", "request", "n_prompt", "n_prefilled", "encoder_ms", "prefill_ms", "decode_ms",
            "n_generated", "wall_ms"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.rjust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in cols))

    summary = {}
    for arch in sorted({str(r["model"]) for r in rows}):
        one = [r for r in rows if r["model"] == arch and r["mode"] == "one session"]
        fresh = [r for r in rows if r["model"] == arch and r["mode"] == "fresh session"]
        later_one = sum(float(r["wall_ms"]) for r in one[1:]) / max(1, len(one) - 1)
        later_fresh = sum(float(r["wall_ms"]) for r in fresh[1:]) / max(1, len(fresh) - 1)
        summary[arch] = {
            "later_request_prefilled_tokens": [r["n_prefilled"] for r in one[1:]],
            "later_request_prompt_tokens": [r["n_prompt"] for r in one[1:]],
            "later_request_wall_ms_one_session": round(later_one, 1),
            "later_request_wall_ms_fresh_session": round(later_fresh, 1),
            "speedup": round(later_fresh / later_one, 2) if later_one > 0 else None,
        }
        print(f"{arch}: later requests on one session prefill {summary[arch]['later_request_prefilled_tokens']} of "
              f"{summary[arch]['later_request_prompt_tokens']} prompt tokens, no encoder pass; "
              f"{later_one:.0f} ms vs {later_fresh:.0f} ms with a fresh session (x{summary[arch]['speedup']})")

    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "benchmark": "session",
            "models": args.model or f"random MOSS-Transcribe and MOSS-Audio, sizes={args.sizes}, f16",
            "audio": str(AUDIO), "max_new_tokens": args.max_new_tokens, "threads": args.threads or os.cpu_count(),
            "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "rows": rows, "summary": summary,
        }
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
