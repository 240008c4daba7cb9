"""Re-quantize a crispmoss GGUF (``crispmoss quantize IN.gguf OUT.gguf TYPE``).

Only the Qwen3 decoder's matrices are quantized; the audio encoder, the adapter (and MOSS-Audio's DeepStack
mergers) and, for MOSS-Transcribe, the tied token embedding keep their converter type. See cpp/quantize.h.

Note for importers: ``crispmoss.quantize`` is the function; import the CLI hooks with
``from crispmoss.quantize import add_cli, run_cli``.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Dict, Optional, TextIO, Union

from .info import format_size
from .errors import CrispMossError

PathLike = Union[str, "os.PathLike[str]"]
ProgressFn = Callable[[int, int, str], None]

__all__ = ["quantize", "quantize_plan", "QUANT_TYPES", "add_cli", "run_cli"]

QUANT_TYPES = ("f32", "f16", "q8_0", "q4_k", "q5_k", "q6_k")


def _core():
    from . import _core as core  # deferred so that importing crispmoss never needs the extension's symbols

    return core


class _TextProgress:
    """A dependency-free progress bar: redrawn in place on a terminal, a few plain lines otherwise."""

    def __init__(self, label: str, stream: Optional[TextIO] = None, width: int = 30):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self.last_decile = -1
        self.last_draw = 0.0

    def __call__(self, done: int, total: int, name: str) -> None:
        frac = done / total if total else 1.0
        if self.tty:
            now = time.monotonic()
            if done != total and now - self.last_draw < 0.1:
                return
            self.last_draw = now
            filled = int(round(frac * self.width))
            bar = "#" * filled + "." * (self.width - filled)
            shown = name if len(name) <= 40 else "…" + name[-39:]
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {shown:<40}")
            if done == total:
                self.stream.write("\n")
        else:
            decile = int(frac * 10)
            if decile == self.last_decile:
                return
            self.last_decile = decile
            self.stream.write(f"{self.label}: {done}/{total} tensors ({frac:.0%}, {time.monotonic() - self.t0:.1f} s)\n")
        self.stream.flush()


def quantize_plan(in_path: PathLike, type: str) -> Dict[str, Any]:
    """What :func:`quantize` would do, without writing: a dict with ``arch``, ``type`` and ``tensors`` (each
    with ``name``, ``src_type``, ``dst_type``, ``shape`` in ggml order, ``candidate`` and ``note``)."""
    return _core().quantize_plan(os.fspath(in_path), str(type))


def quantize(
    in_path: PathLike,
    out_path: PathLike,
    type: str,
    n_threads: Optional[int] = None,
    progress: Union[bool, ProgressFn] = True,
) -> Dict[str, Any]:
    """Re-quantize the crispmoss GGUF ``in_path`` into ``out_path``.

    ``type`` is one of ``f32, f16, q8_0, q4_k, q5_k, q6_k``. ``n_threads`` defaults to all cores.
    ``progress`` is True (text bar on stderr), False (silent) or a callable ``(done, total, name)``.
    Returns the report dict of :func:`quantize_plan` plus ``in_bytes``, ``out_bytes``, ``seconds`` and
    ``n_threads``. Raises :class:`crispmoss.ModelError` for unusable input files and
    :class:`crispmoss.InputError` for a bad ``type`` or output path. The output is written to
    ``out_path + ".part"`` and renamed at the end, so a failed run leaves nothing under ``out_path``.
    """
    if n_threads is None:
        n_threads = 0
    elif not isinstance(n_threads, int) or isinstance(n_threads, bool):
        raise TypeError("n_threads must be an int or None")
    elif n_threads < 0:
        from .errors import InputError

        raise InputError(f"n_threads must be >= 0 (0 or None = all cores), got {n_threads}")
    if progress is True:
        bar: Optional[ProgressFn] = _TextProgress(f"quantize {os.path.basename(os.fspath(out_path))}")
    elif progress is False or progress is None:
        bar = None
    elif callable(progress):
        bar = progress
    else:
        raise TypeError("progress must be a bool or a callable(done, total, name)")
    report = _core().quantize(os.fspath(in_path), os.fspath(out_path), str(type), n_threads, bar)
    if progress is True:
        for t in report["tensors"]:
            if t["note"]:
                sys.stderr.write(f"note: {t['name']}: {t['note']}\n")
    return report


def add_cli(subparsers: Any) -> Any:
    """Register ``quantize`` on an argparse subparsers object; the parser's ``func`` default is
    :func:`run_cli`."""
    p = subparsers.add_parser(
        "quantize",
        help="re-quantize a crispmoss GGUF (decoder matrices only)",
        description="Re-quantize a MOSS-Transcribe / MOSS-Audio GGUF. The audio encoder and adapter keep "
        "their type; the Qwen3 decoder's matrices get TYPE.",
    )
    p.add_argument("input", metavar="IN.gguf", help="source GGUF (F16/F32/BF16, as written by the converter)")
    p.add_argument("output", metavar="OUT.gguf", help="destination GGUF")
    p.add_argument("type", metavar="TYPE", type=str.lower, choices=QUANT_TYPES, help=", ".join(QUANT_TYPES))
    p.add_argument("--threads", "-t", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: Any) -> int:
    """Run ``crispmoss quantize`` for parsed ``args``; returns the process exit code."""
    try:
        rep = quantize(args.input, args.output, args.type, n_threads=args.threads, progress=not args.quiet)
    except CrispMossError as e:
        sys.stderr.write(f"crispmoss quantize: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\ncrispmoss quantize: interrupted (no output written)\n")
        return 130
    n_q = sum(1 for t in rep["tensors"] if t["dst_type"] != t["src_type"])
    if not args.quiet:
        sys.stderr.write(
            f"{args.output}: {rep['arch']} {rep['type']}, {n_q}/{len(rep['tensors'])} tensors converted, "
            f"{format_size(rep['in_bytes'])} -> {format_size(rep['out_bytes'])} in {rep['seconds']:.1f} s "
            f"({rep['n_threads']} threads)\n"
        )
    return 0


def _main(argv: Optional[list] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="crispmoss")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(_main())
