"""The ``crispmoss`` command line: transcribe, ask, serve, info, download, convert, quantize, transcribe-corpus
(crispmoss/corpus.py).

Exit codes: 0 success, 1 a failure while running (bad model, unreadable audio, out-of-range value), 2 a usage
error caught while parsing the command line, 130 interrupted. Errors are one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence, TextIO, Tuple

from .errors import AudioError, CrispMossError, InputError
from .formats import DIARIZED_FORMATS, FORMATS, diarized_dict, render
from .backends import add_placement_args
from .hub import example_names

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".au", ".m4a", ".w64", ".caf"}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``crispmoss transcribe: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _expand_inputs(items: Sequence[str]) -> List[Tuple[Path, Path]]:
    """(file, name relative to its argument) for every file and every audio file under a folder."""
    files: List[Tuple[Path, Path]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
            files += [(q, q.relative_to(p)) for q in found]
        else:
            files.append((p, Path(p.name)))
    return files


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True,
                   help=f"GGUF file or published name ({example_names()}; the type defaults to q4_k), fetched "
                        "into the Hugging Face cache")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all cores)")
    add_placement_args(p)


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="generation limit per pass (default: the model's: 512 MOSS-Transcribe, 1024 MOSS-Audio, "
                        "MOSS-Transcribe-Diarize: see README)")
    p.add_argument("--sampling", choices=["greedy", "official"], default=None,
                   help="preset: greedy (default) or official (temperature 1.0, top-k 50, top-p 1.0 as in the "
                        "MOSS-Audio scripts); the options below override it")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="sampler seed (default: random when sampling)")
    p.add_argument("--verbose", "-v", action="store_true", help="timing report (mel/encoder/prefill/decode) on stderr")


def _gen_kwargs(args: argparse.Namespace) -> dict:
    return dict(max_new_tokens=args.max_new_tokens, sampling=args.sampling, temperature=args.temperature,
                top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                seed=args.seed)


def _load_model(args: argparse.Namespace) -> Any:
    from .model import Model

    return Model(args.model, args.threads, progress=not getattr(args, "quiet", False), backend=args.backend,
                 device=args.device, n_gpu_layers=args.gpu_layers, head_type=args.head_type,
                 batch_size=getattr(args, "batch", None))


def timing_report(name: str, t: Any, wall: float) -> str:
    """One line: audio length, wall time, real-time factor, per-stage milliseconds and decode speed."""
    tm = t.timings
    dec = tm.get("decode_ms", 0.0)
    n = int(tm.get("n_generated", 0))
    tps = n / (dec / 1000.0) if dec > 0 else 0.0
    passes = int(tm.get("n_passes", 1))
    return (f"{name}: {t.duration:.2f} s audio in {wall:.2f} s ({t.duration / wall if wall else 0:.2f}x real time"
            f"{f', {passes} passes' if passes > 1 else ''}) | mel {tm.get('mel_ms', 0):.0f} ms, "
            f"encoder {tm.get('encode_ms', 0):.0f} ms, prefill {tm.get('prefill_ms', 0):.0f} ms "
            f"({int(tm.get('n_prefilled', tm.get('n_prompt', 0)))} tok), decode {dec:.0f} ms ({n} tok, {tps:.1f} tok/s)")


class _Progress:
    """Per-file and overall progress on stderr: a line updated in place on a terminal, plain lines otherwise."""

    def __init__(self, n_files: int, stream: TextIO, quiet: bool, verbose: bool) -> None:
        self.n = n_files
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.quiet = quiet
        self.verbose = verbose
        self.t0 = time.perf_counter()
        self.audio_done = 0.0

    def _speed(self, extra: float = 0.0) -> float:
        wall = time.perf_counter() - self.t0
        return (self.audio_done + extra) / wall if wall > 0 else 0.0

    def pass_done(self, i: int, name: str, done_s: float, total_s: float) -> None:
        if self.quiet or not (self.tty or self.verbose):
            return
        of = f"/{total_s:.1f}" if total_s > 0 else ""
        line = f"[{i}/{self.n}] {name}: {done_s:.1f}{of} s, overall {self._speed(done_s):.2f} audio-s/s"
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def file_done(self, i: int, name: str, duration: float, wall: float) -> None:
        self.audio_done += duration
        if self.quiet or (self.n == 1 and not self.verbose and not self.tty):
            return
        line = (f"[{i}/{self.n}] {name}: {duration:.1f} s audio in {wall:.1f} s, "
                f"overall {self._speed():.2f} audio-s/s")
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()


def parse_hotwords(value: Optional[str]) -> Optional[List[str]]:
    """``--hotwords "a, b"``: the comma-separated words, stripped, empty ones dropped (also full-width commas,
    as Chinese text writes them); None when the option is not given. InputError when it holds no word."""
    if value is None:
        return None
    words = [w.strip() for w in value.replace("\uff0c", ",").split(",")]
    words = [w for w in words if w]
    if not words:
        raise InputError(f"--hotwords {value!r} holds no word (give them separated by commas: \"Alice, ACME\")")
    return words


def _check_model_options(model: Any, fmt: str, hotwords: Optional[List[str]]) -> None:
    """What the loaded model cannot do, before any audio is read: hotwords and speaker formats need a model that
    takes hotwords / writes speakers (MOSS-Transcribe-Diarize)."""
    name = model.spec.get("name", model.arch)
    if hotwords is not None and not model.spec.get("hotwords"):
        raise InputError(f"--hotwords: {name} takes no hotwords (MOSS-Transcribe-Diarize does)")
    if fmt in DIARIZED_FORMATS and model.spec.get("timed_output") != "diarized":
        raise InputError(f"--format {fmt}: {name} writes no speakers (MOSS-Transcribe-Diarize does); use "
                         f"{', '.join(sorted(FORMATS))}")


# File name endings where the format's name is not one (diarized_json is JSON).
_SUFFIXES = {"diarized_json": ".diarized.json"}


def _output_path(out_dir: Path, rel: Path, fmt: str, used: set) -> Path:
    base = out_dir / rel.with_suffix(_SUFFIXES.get(fmt, "." + fmt))
    path, k = base, 1
    while path in used:
        path = base.with_name(f"{base.stem}-{k}{base.suffix}")
        k += 1
    used.add(path)
    return path


def cmd_transcribe(args: argparse.Namespace) -> int:
    files = _expand_inputs(args.audio)
    if not files:
        raise InputError("no audio files found in " + ", ".join(args.audio))
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is None and len(files) > 1 and args.format in ("srt", "vtt"):
        raise InputError(f"{len(files)} inputs in {args.format} format need --output-dir (one file per input)")
    hotwords = parse_hotwords(args.hotwords)
    model = _load_model(args)
    _check_model_options(model, args.format, hotwords)
    kw_hot = {"hotwords": hotwords} if hotwords is not None else {}  # only the diarizing model takes them
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    kw = _gen_kwargs(args)
    progress = _Progress(len(files), sys.stderr, args.quiet, args.verbose)
    failed, finished, used = 0, 0, set()  # type: ignore[var-annotated]
    started: Dict[int, float] = {}
    pending: Dict[int, Any] = {}  # finished results waiting for earlier inputs (stdout keeps input order)
    next_out = 0

    def on_pass(i: int, p: Any) -> None:
        if not (p.index == 0 and p.last):
            progress.pass_done(i + 1, files[i][0].name, p.end, p.total_duration)

    def emit(i: int, result: Any) -> None:
        nonlocal failed, finished
        f, rel = files[i]
        finished += 1
        if isinstance(result, AudioError):
            # One unreadable file does not stop a batch.
            failed += 1
            sys.stderr.write(("\r\033[K" if progress.tty else "") + f"crispmoss transcribe: error: {result}\n")
            return
        if isinstance(result, BaseException):
            raise result
        wall = time.perf_counter() - started.get(i, progress.t0)
        text = render(result, args.format)
        if out_dir is not None:
            path = _output_path(out_dir, rel, args.format, used)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        elif len(files) == 1:
            sys.stdout.write(text)
        elif args.format in ("json", "diarized_json"):  # several inputs: one JSON object per line
            d = result.to_dict() if args.format == "json" else diarized_dict(result)
            d["file"] = str(f)
            sys.stdout.write(json.dumps(d, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(f"{f}: {text}")
        sys.stdout.flush()
        progress.file_done(finished, f.name, result.duration, wall)  # [files finished so far / all]
        if not args.quiet:
            for note in result.notices:
                sys.stderr.write(f"crispmoss transcribe: note: {f.name}: {note}\n")
        if args.verbose:
            sys.stderr.write(timing_report(f.name, result, wall) + "\n")

    for i in range(len(files)):
        started[i] = time.perf_counter()
    events = model.transcribe_iter([str(f) for f, _ in files], batch_size=args.batch, on_pass=on_pass,
                                   timestamps=args.timestamps, language=args.language,
                                   max_pass_seconds=args.max_pass_seconds, **kw_hot, **kw)
    try:
        for i, result in events:
            if out_dir is not None:  # files are written as they finish
                emit(i, result)
                continue
            pending[i] = result
            while next_out in pending:
                emit(next_out, pending.pop(next_out))
                next_out += 1
    finally:
        events.close()
    return 1 if failed else 0


def cmd_ask(args: argparse.Namespace) -> int:
    model = _load_model(args)
    t0 = time.perf_counter()
    session = model.session(args.audio)
    started = [False]

    def write(piece: str) -> bool:
        if not started[0]:
            piece = piece.lstrip()
            started[0] = bool(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
        return True

    result = session.ask(args.prompt, callback=write, **_gen_kwargs(args))
    sys.stdout.write("\n")
    if args.verbose:
        sys.stderr.write(timing_report(str(args.audio), result, time.perf_counter() - t0) + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .hub import resolve
    from .info import describe, format_info

    if args.backends:
        from .backends import format_system_info, system_info

        si = system_info()
        sys.stdout.write(json.dumps(si, indent=2) + "\n" if args.json else format_system_info(si))
        if args.model is None:
            return 0
    elif args.model is None:
        raise InputError("give a GGUF file or published name, or --backends")
    info = describe(resolve(args.model))
    sys.stdout.write(json.dumps(info, indent=2) + "\n" if args.json else format_info(info))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .hub import available, download

    if args.list or not args.names:
        sys.stdout.write("\n".join(available()) + "\n")
        return 0
    for name in args.names:
        sys.stdout.write(download(name, progress=not args.quiet) + "\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import missing_dependencies

    missing = missing_dependencies()
    if missing:
        py = "" if sys.version_info >= (3, 11) else " (on Python 3.11 or newer)"
        sys.stderr.write(f"crispmoss serve: error: the server needs {', '.join(missing)}, which "
                         f"{'is' if len(missing) == 1 else 'are'} not installed: pip install \"crispmoss[server]\"{py}\n")
        return 2
    from .server.app import serve
    from .server.config import from_args

    return serve(from_args(args))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = _Parser(prog="crispmoss", description="OpenMOSS speech-language models (MOSS-Transcribe, MOSS-Audio) "
                                               "on ggml")
    ap.add_argument("--version", action="version", version=f"crispmoss {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("transcribe", help="transcribe audio files (any length)",
                       description="Transcribe audio files or folders; one output per input.")
    p.add_argument("audio", nargs="+", help="audio files or folders")
    _add_model_args(p)
    p.add_argument("--format", "-f", choices=sorted(FORMATS) + sorted(DIARIZED_FORMATS), default="txt",
                   help="output format (default txt); diarized_json (OpenAI's speaker-attributed shape) needs "
                        "MOSS-Transcribe-Diarize, whose speakers txt/srt/vtt/json show too")
    p.add_argument("--output-dir", "-o", default=None,
                   help="write one file per input here (default: stdout; several inputs: txt lines or JSON lines)")
    p.add_argument("--language", "-l", default=None,
                   help="language hint for MOSS-Audio (code or name: de, German); MOSS-Transcribe takes none "
                        "(en/zh accepted as a no-op)")
    p.add_argument("--timestamps", action="store_true", help="timed segments written by the model (MOSS-Audio; "
                                                                 "MOSS-Transcribe-Diarize always writes them)")
    p.add_argument("--hotwords", default=None, metavar="'A, B'",
                   help="names and terms the audio contains, separated by commas (MOSS-Transcribe-Diarize)")
    p.add_argument("--max-pass-seconds", type=float, default=None,
                   help="longest audio transcribed in one pass (default: the model's, 30 MOSS-Transcribe, 120 "
                        "MOSS-Audio, MOSS-Transcribe-Diarize: see README; inf = never split)")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="decode up to N passes (of several files, or of one long file) together (default: 32, "
                        "fewer when memory is short; see README 'Many sequences at once')")
    _add_generation_args(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("ask", help="ask a question about an audio file (MOSS-Audio)")
    p.add_argument("audio")
    p.add_argument("prompt")
    _add_model_args(p)
    _add_generation_args(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("info", help="describe a GGUF model file, or the compute backends (--backends)")
    p.add_argument("model", nargs="?", default=None, help="GGUF file or published name")
    p.add_argument("--backends", action="store_true",
                   help="list the compiled backends, their devices and memory, and the CPU features")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="fetch published GGUF files into the Hugging Face cache")
    p.add_argument("names", nargs="*", help=f"e.g. {example_names()}")
    p.add_argument("--list", action="store_true", help="list the published names")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (needs the extra crispmoss[server])",
                       description="Serve models over an OpenAI-compatible HTTP API: POST /v1/audio/transcriptions, "
                                   "POST /v1/chat/completions (MOSS-Audio), GET /v1/models, GET /health, and a page to "
                                   "try them in a browser on GET / (unless --no-ui). "
                                   "Needs pip install \"crispmoss[server]\".")
    from .server.config import add_arguments as add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    from .convert.cli import add_cli as add_convert
    from .quantize import add_cli as add_quantize

    add_convert(sub)
    add_quantize(sub)
    from .corpus import add_cli as add_corpus

    add_corpus(sub)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``crispmoss`` and ``python -m crispmoss``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CrispMossError as e:
        sys.stderr.write(f"crispmoss {args.command}: error: {e}\n")
        return 1
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        sys.stderr.write(f"crispmoss {args.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\ncrispmoss: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
