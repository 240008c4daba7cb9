"""The ``crispmoss`` command line: transcribe, ask, info, convert, quantize."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable, List, Optional

from .errors import CrispMossError
from .formats import FORMATS, render

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au", ".m4a", ".w64", ".caf"}


def _expand_inputs(items: Iterable[str]) -> List[Path]:
    files: List[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
        else:
            files.append(p)
    return files


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="GGUF model file")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation limit (default: 512 / 1024)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", "-v", action="store_true", help="print a timing report to stderr")


def _gen_kwargs(args: argparse.Namespace) -> dict:
    return dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                top_p=args.top_p, seed=args.seed)


def _timing_report(name: str, t, wall: float) -> str:
    tm = t.timings
    dec = tm.get("decode_ms", 0.0)
    n = tm.get("n_generated", 0)
    tps = n / (dec / 1000.0) if dec > 0 else 0.0
    return (f"{name}: {t.duration:.2f} s audio in {wall:.2f} s (x{t.duration / wall if wall else 0:.2f} real time) | "
            f"mel {tm.get('mel_ms', 0):.0f} ms, encoder {tm.get('encode_ms', 0):.0f} ms, "
            f"prefill {tm.get('prefill_ms', 0):.0f} ms ({tm.get('n_prompt', 0)} tok), "
            f"decode {dec:.0f} ms ({n} tok, {tps:.1f} tok/s)")


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .model import Model

    files = _expand_inputs(args.audio)
    if not files:
        raise CrispMossError("no audio files found")
    model = Model(args.model, args.threads)
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    to_stdout = out_dir is None
    total_audio, t_all = 0.0, time.perf_counter()
    for i, f in enumerate(files, 1):
        t0 = time.perf_counter()
        kw = _gen_kwargs(args)
        if args.timestamps:
            kw["timestamps"] = True
        result = model.transcribe(str(f), **kw)
        wall = time.perf_counter() - t0
        total_audio += result.duration
        text = render(result, args.format)
        if to_stdout:
            if len(files) > 1 and args.format == "txt":
                sys.stdout.write(f"{f}: ")
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            (out_dir / (f.stem + "." + args.format)).write_text(text, encoding="utf-8")
        if len(files) > 1 or args.verbose:
            speed = total_audio / (time.perf_counter() - t_all)
            sys.stderr.write(f"[{i}/{len(files)}] {f.name}: {wall:.1f} s, overall {speed:.2f} audio-s/s\n")
        if args.verbose:
            sys.stderr.write(_timing_report(f.name, result, wall) + "\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from .model import Model

    model = Model(args.model, args.threads)
    t0 = time.perf_counter()
    session = model.session(args.audio)
    pieces = session.generate(args.prompt, stream=True, **_gen_kwargs(args))
    started = False
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.verbose:
        sys.stderr.write(f"{args.audio}: {time.perf_counter() - t0:.2f} s\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .info import describe, format_info

    info = describe(args.model)
    sys.stdout.write(json.dumps(info, indent=2) + "\n" if args.json else format_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="crispmoss", description="OpenMOSS speech-language models on ggml")
    ap.add_argument("--version", action="version", version=f"crispmoss {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("audio", nargs="+", help="audio files or folders")
    _add_generation_args(p)
    p.add_argument("--format", "-f", choices=sorted(FORMATS), default="txt")
    p.add_argument("--output-dir", "-o", default=None, help="write one file per input here (default: stdout)")
    p.add_argument("--timestamps", action="store_true", help="timed segments (MOSS-Audio)")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("ask", help="ask a question about an audio file (MOSS-Audio)")
    p.add_argument("audio")
    p.add_argument("prompt")
    _add_generation_args(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("info", help="describe a GGUF model file")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    from .convert.cli import add_cli as add_convert
    from .quantize import add_cli as add_quantize

    add_convert(sub)
    add_quantize(sub)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CrispMossError as e:
        sys.stderr.write(f"crispmoss {args.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\ncrispmoss: interrupted\n")
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
