"""Front-end benchmark: the C++ log-mel against transformers' WhisperFeatureExtractor numpy path, in the
same run. Each section is a function returning rows; main() prints one table and writes
benchmarks/results/frontend.json.

    python benchmarks/bench_frontend.py [--sections mel] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _tree import audio_dir, use_tree  # noqa: E402

use_tree()

RESULTS = ROOT / "benchmarks" / "results" / "frontend.json"
JFK = audio_dir() / "jfk.wav"

# A row: section, case, impl, seconds (best of repeats), baseline (impl the ratio is against),
# speedup (baseline seconds / seconds), note.
Row = Dict[str, object]


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def speech(seconds: float) -> np.ndarray:
    """Real speech (jfk.wav) tiled to the requested length, with a little noise so no two tiles match."""
    import crispmoss

    base = crispmoss.load_audio(JFK) if JFK.exists() else np.zeros(16000, np.float32)
    n = int(seconds * 16000)
    reps = -(-n // len(base))
    rng = np.random.default_rng(0)
    x = np.tile(base, reps)[:n] + 1e-3 * rng.standard_normal(n)
    return x.astype(np.float32)


def bench_mel(repeat: int) -> List[Row]:
    from transformers import WhisperFeatureExtractor

    from crispmoss import _core

    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400)
    rows: List[Row] = []
    for label, seconds in (("30 s", 30.0), ("10 min", 600.0)):
        wav = speech(seconds)
        ref_out = fe._np_extract_fbank_features(wav[None], device="cpu")[0]
        # The reference is slow; fewer repeats for the long clip keep the benchmark short.
        ref_repeat = repeat if seconds <= 60 else max(1, repeat // 2)
        t_ref = best_time(lambda: fe._np_extract_fbank_features(wav[None], device="cpu"), ref_repeat)
        rows.append({"section": "mel", "case": label, "impl": "transformers numpy", "seconds": t_ref,
                     "baseline": "transformers numpy", "speedup": 1.0,
                     "note": f"{ref_out.shape[1]} frames"})
        for threads in (1, 2):
            out = _core.log_mel(wav, threads)
            err = float(np.abs(out - ref_out).max())
            t = best_time(lambda: _core.log_mel(wav, threads), repeat)
            rows.append({"section": "mel", "case": label, "impl": f"crispmoss {threads} thread(s)", "seconds": t,
                         "baseline": "transformers numpy", "speedup": t_ref / t,
                         "note": f"max |diff| {err:.1e}"})
    return rows


def _tokenizer_tests():
    """tests/test_tokenizer.py as a module: its GGUF-layout vocabulary and deterministic corpus generator."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tokenizer_tests", ROOT / "tests" / "test_tokenizer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stdlib_source(limit_bytes: int = 4_000_000) -> str:
    """Real code and English comments: the Python standard library's top-level modules, about 4 MB."""
    import sysconfig

    out, total = [], 0
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        out.append(p.read_text(encoding="utf-8", errors="replace"))
        total += len(out[-1].encode())
        if total >= limit_bytes:
            break
    return "".join(out)


def bench_tokenizer(repeat: int) -> List[Row]:
    """Qwen BPE: crispmoss._core.Tokenizer vs tiktoken (same ranks, pattern and added tokens), one thread,
    one call per 16 KB document from Python. 'cold' is the first pass over a corpus with a fresh tokenizer
    (empty pre-token cache); the other encode rows are the best of `repeat` passes."""
    import tiktoken

    from crispmoss import _core, testing

    tests = _tokenizer_tests()
    tokens, merges, specials = tests.gguf_vocab()
    ranks = testing.qwen_ranks()
    special_map = {t: i for i, t in specials.items()}
    rows: List[Row] = []
    t_ref = best_time(lambda: tiktoken.Encoding(name="qwen", pat_str=tests.PAT, mergeable_ranks=ranks,
                                                special_tokens=special_map), repeat)
    t_ours = best_time(lambda: _core.Tokenizer(tokens, merges), repeat)
    rows.append({"section": "tokenizer", "case": "load vocab", "impl": "tiktoken", "seconds": t_ref,
                 "baseline": "tiktoken", "speedup": 1.0, "note": "Encoding(ranks dict)"})
    rows.append({"section": "tokenizer", "case": "load vocab", "impl": "crispmoss", "seconds": t_ours,
                 "baseline": "tiktoken", "speedup": t_ref / t_ours,
                 "note": f"{len(tokens)} tokens + {len(merges)} merges from lists"})
    ref = tiktoken.Encoding(name="qwen", pat_str=tests.PAT, mergeable_ranks=ranks, special_tokens=special_map)
    corpora = {
        "multiling": "\n".join(tests.make_corpus(n_lines=20_000, seed=99)),
        "py source": _stdlib_source(),
    }
    for case, text in corpora.items():
        docs = [text[i:i + 16_384] for i in range(0, len(text), 16_384)]
        mb = len(text.encode()) / 1e6

        def row(impl, seconds, base_seconds, what):
            return {"section": "tokenizer", "case": case, "impl": impl, "seconds": seconds,
                    "baseline": f"tiktoken {what}", "speedup": base_seconds / seconds,
                    "note": f"{what} {mb / seconds:.1f} MB/s ({mb:.1f} MB)"}

        ours = _core.Tokenizer(tokens, merges)
        t0 = time.perf_counter()
        ids = [ours.tokenize(d) for d in docs]
        ours_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids_ref = [ref.encode(d, allowed_special="all") for d in docs]
        ref_cold = time.perf_counter() - t0
        if ids != ids_ref:
            raise SystemExit(f"tokenizer benchmark: ids differ from tiktoken on {case}")
        ref_enc = best_time(lambda: [ref.encode(d, allowed_special="all") for d in docs], repeat)
        ours_enc = best_time(lambda: [ours.tokenize(d) for d in docs], repeat)
        ref_dec = best_time(lambda: [ref.decode_bytes(i) for i in ids], repeat)
        ours_dec = best_time(lambda: [ours.detokenize_bytes(i) for i in ids], repeat)
        rows += [
            row("tiktoken", ref_enc, ref_enc, "encode"),
            row("crispmoss", ours_enc, ref_enc, "encode"),
            row("crispmoss cold", ours_cold, ref_cold, "encode"),
            row("tiktoken", ref_dec, ref_dec, "decode"),
            row("crispmoss", ours_dec, ref_dec, "decode"),
        ]
    return rows


# Further sections append a function here: name -> fn(repeat) -> rows.
SECTIONS: Dict[str, Callable[[int], List[Row]]] = {
    "mel": bench_mel,
    "tokenizer": bench_tokenizer,
}


def print_table(rows: List[Row]) -> None:
    header = f"{'section':<10} {'case':<10} {'impl':<24} {'time':>10} {'speedup':>8}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        secs = float(r["seconds"])
        shown = f"{secs * 1e3:.2f} ms" if secs < 1 else f"{secs:.3f} s"
        print(f"{r['section']:<10} {r['case']:<10} {r['impl']:<24} {shown:>10} {float(r['speedup']):>7.1f}x  "
              f"{r.get('note', '')}")


def machine() -> Dict[str, object]:
    import numpy

    info: Dict[str, object] = {"platform": platform.platform(), "python": platform.python_version(),
                               "cpu_count": os.cpu_count(), "numpy": numpy.__version__}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rows: List[Row] = []
    for name in args.sections:
        rows.extend(SECTIONS[name](max(1, args.repeat)))
    print_table(rows)

    # Keep rows of sections not run this time, so sections can be refreshed one at a time.
    previous: List[Row] = []
    if args.out.exists():
        try:
            previous = [r for r in json.loads(args.out.read_text()).get("rows", [])
                        if r.get("section") not in args.sections]
        except (ValueError, AttributeError):
            previous = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "rows": previous + rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
