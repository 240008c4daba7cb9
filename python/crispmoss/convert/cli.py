"""The ``crispmoss convert`` subcommand: add_cli() registers it on an argparse subparsers object, run_cli()
executes parsed arguments. The top-level CLI (crispmoss.cli) wires both in."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CrispMossError

__all__ = ["add_cli", "run_cli", "main"]


def add_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert",
        help="convert a Hugging Face MOSS checkpoint directory to GGUF",
        description="Convert a Hugging Face MOSS-Transcribe / MOSS-Audio checkpoint directory (config.json, "
        "safetensors, tokenizer files) to a single GGUF file.",
    )
    p.add_argument("hf_dir", metavar="HF_DIR", help="checkpoint directory")
    p.add_argument("-o", "--output", "--out", dest="output", metavar="OUT.gguf",
                   help="output file (default: ./<HF_DIR name>-<outtype>.gguf)")
    p.add_argument("--outtype", choices=("f16", "f32"), default="f16",
                   help="type of tensors with two or more dimensions (1-D tensors are always f32); default f16")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    from .core import convert

    out = args.output or f"{Path(args.hf_dir).resolve().name}-{args.outtype}.gguf"
    try:
        convert(args.hf_dir, out, outtype=args.outtype, progress=not args.quiet)
    except CrispMossError as e:
        print(f"crispmoss convert: error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point (``python -m crispmoss.convert``)."""
    parser = argparse.ArgumentParser(prog="python -m crispmoss.convert")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "convert":
        argv = ["convert"] + argv
    args = parser.parse_args(argv)
    return args.func(args)
