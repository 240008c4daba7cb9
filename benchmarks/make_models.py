"""Full-size random-weight models for the benchmarks, made with our own tools.

For each architecture: a Hugging Face checkpoint with the exact published configuration
(``crispmoss.testing.make_checkpoint(sizes="full")``; MOSS-Transcribe-Diarize:
``make_diarize_checkpoint(sizes="full")``; bf16, deterministic from the seed), converted to F16 GGUF
(``crispmoss.convert``), re-quantized to Q8_0 and Q4_K (``crispmoss.quantize``); the safetensors are deleted
after conversion to save disk. Files that already exist are skipped, so a second run costs nothing.

    python benchmarks/make_models.py                       # every model, f16 q8_0 q4_k
    python benchmarks/make_models.py --arch moss_transcribe --types q4_k
    python benchmarks/make_models.py --arch moss_transcribe_diarize --types f16 q4_k   # benchmarks/bench_diarize.py
    CRISPMOSS_BENCH_DIR=/big/disk python benchmarks/make_models.py

Default folder: ~/.cache/crispmoss/bench (or $CRISPMOSS_BENCH_DIR, or --dir). Each file gets a ``.json``
sidecar with the seed and how long it took to make. One-time cost on the 2-core development machine: see
benchmarks/RESULTS.md (about 25 minutes for MOSS-Transcribe and MOSS-Audio and all three types; ~27 GB of disk at
the end, ~10 GB more while MOSS-Audio's safetensors exist; MOSS-Transcribe-Diarize adds ~4 GB for f16 + q4_k).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _tree import use_tree  # noqa: E402

use_tree()

ARCHS = ("moss_transcribe", "moss_audio", "moss_transcribe_diarize")
TYPES = ("f16", "q8_0", "q4_k")
# File names follow the published repositories' pattern.
STEMS = {"moss_transcribe": "moss-transcribe-preview-2b", "moss_audio": "moss-audio-4b-instruct",
         "moss_transcribe_diarize": "moss-transcribe-diarize-0.9b"}


def _write_checkpoint(arch: str, out: Path, seed: int) -> None:
    """The random full-size checkpoint of ``arch`` in its official layout (MOSS-Transcribe-Diarize: one shard, as
    published)."""
    from crispmoss.testing import make_checkpoint, make_diarize_checkpoint

    if arch == "moss_transcribe_diarize":
        make_diarize_checkpoint(out, seed=seed, sizes="full", shards=1)
    else:
        make_checkpoint(arch, out, seed=seed, sizes="full", shards=4)


def bench_dir(override: Optional[str] = None) -> Path:
    d = override or os.environ.get("CRISPMOSS_BENCH_DIR") or os.path.join("~", ".cache", "crispmoss", "bench")
    return Path(d).expanduser()


def model_path(arch: str, type_: str, seed: int = 0, directory: Optional[str] = None) -> Path:
    return bench_dir(directory) / f"{STEMS[arch]}-random{seed}-{type_}.gguf"


def _write_sidecar(path: Path, info: Dict[str, object]) -> None:
    side = path.with_suffix(".json")
    side.write_text(json.dumps(info, indent=2) + "\n")


def make(arch: str, types: List[str], seed: int = 0, directory: Optional[str] = None, threads: int = 0,
         log=print) -> Dict[str, Path]:
    """Makes the missing files of ``arch`` (F16 first: the quantized types are made from it)."""
    from crispmoss.convert import convert
    from crispmoss.quantize import quantize

    out: Dict[str, Path] = {}
    f16 = model_path(arch, "f16", seed, directory)
    f16.parent.mkdir(parents=True, exist_ok=True)
    if not f16.exists():
        hf = f16.parent / f"{STEMS[arch]}-random{seed}-hf"
        t0 = time.perf_counter()
        log(f"[make_models] {arch}: writing the random HF checkpoint (seed {seed}) to {hf}")
        _write_checkpoint(arch, hf, seed)
        t_ckpt = time.perf_counter() - t0
        log(f"[make_models] {arch}: checkpoint {t_ckpt:.0f} s; converting to F16")
        t1 = time.perf_counter()
        convert(hf, f16, "f16", progress=False)
        t_conv = time.perf_counter() - t1
        shutil.rmtree(hf)
        _write_sidecar(f16, {"arch": arch, "type": "f16", "seed": seed, "sizes": "full",
                             "checkpoint_s": round(t_ckpt, 1), "convert_s": round(t_conv, 1),
                             "bytes": f16.stat().st_size})
        log(f"[make_models] {arch}: F16 {f16.stat().st_size / 1e9:.2f} GB in {t_conv:.0f} s")
    out["f16"] = f16
    for t in types:
        if t == "f16":
            continue
        q = model_path(arch, t, seed, directory)
        if not q.exists():
            t0 = time.perf_counter()
            log(f"[make_models] {arch}: quantizing to {t}")
            quantize(f16, q, t, n_threads=threads, progress=False)
            dt = time.perf_counter() - t0
            _write_sidecar(q, {"arch": arch, "type": t, "seed": seed, "from": f16.name,
                               "quantize_s": round(dt, 1), "bytes": q.stat().st_size})
            log(f"[make_models] {arch}: {t} {q.stat().st_size / 1e9:.2f} GB in {dt:.0f} s")
        out[t] = q
    if "f16" not in types:
        out.pop("f16")
    return out


def hf_checkpoint(arch: str, seed: int = 0, directory: Optional[str] = None, log=print) -> Path:
    """The random HF checkpoint itself (for the PyTorch peer), regenerated from the seed if it is not kept.
    It stays in the folder afterwards (MOSS-Transcribe 4.8 GB, MOSS-Audio 9.7 GB)."""
    hf = bench_dir(directory) / f"{STEMS[arch]}-random{seed}-hf"
    done = hf / ".complete"
    if not done.exists():
        t0 = time.perf_counter()
        log(f"[make_models] {arch}: writing the random HF checkpoint (seed {seed}) to {hf}")
        _write_checkpoint(arch, hf, seed)
        done.write_text(f"{time.perf_counter() - t0:.1f} s\n")
    return hf


def ensure(archs=ARCHS, types=TYPES, seed: int = 0, directory: Optional[str] = None, threads: int = 0,
           log=print) -> Dict[str, Dict[str, Path]]:
    """All requested files, made where missing. F16 is kept (the quantized files are derived from it)."""
    return {a: make(a, list(types), seed, directory, threads, log) for a in archs}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=ARCHS, action="append", help="default: all")
    ap.add_argument("--types", nargs="+", choices=TYPES, default=list(TYPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="output folder (default $CRISPMOSS_BENCH_DIR or "
                                                   "~/.cache/crispmoss/bench)")
    ap.add_argument("--threads", type=int, default=0, help="quantizer threads (0 = all cores)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    paths = ensure(a.arch or ARCHS, a.types, a.seed, a.dir, a.threads)
    for arch, files in paths.items():
        for t, p in files.items():
            print(f"{arch:16s} {t:5s} {p.stat().st_size / 1e9:6.2f} GB  {p}")
    print(f"[make_models] done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
