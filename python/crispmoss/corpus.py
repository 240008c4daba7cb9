"""Corpus transcription: ``crispmoss transcribe-corpus INPUT --out OUT.jsonl -m MODEL [--ray auto|ADDRESS]``.

INPUT names the audio files: a folder (searched recursively for audio extensions), a text file with one path a line
(blank lines and ``#`` comments skipped), or a parquet / CSV file whose ``--column`` holds the paths. Relative paths
in a list or table are taken from the list's folder; every path is made absolute, so that Ray workers (whose working
folder is not ours) find the same files.

OUT is one JSON-lines file with one row per input (:func:`result_row`), appended and flushed as results finish, so
a killed job leaves a valid prefix. ``--resume`` skips the inputs whose ``path`` OUT already has (error rows count
as done) after cutting away a torn last line; ``--overwrite`` starts OUT anew; an existing OUT without either is an
error. Without ``--ray`` the files run here, through one Model's batching engine (:meth:`Model.transcribe_iter`);
with ``--ray`` they run as a Ray Data job on a cluster (:mod:`crispmoss.ray`), which is imported only then.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from .errors import InputError, ModelError

# Per-input timings of a row: those of Transcript.timings (summed over passes), and wall_ms: from the start of the
# job (locally) or of the Ray batch that ran the input until it was done.
TIMING_KEYS = ("mel_ms", "encode_ms", "prefill_ms", "decode_ms", "n_prompt", "n_prefilled", "n_generated",
               "n_passes", "wall_ms")
ROW_KEYS = ("path", "text", "segments", "duration", "tokens", "stop_reason", "error", "timings")


# --------------------------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------------------------


def result_row(path: Optional[str], result: Any, wall_s: float = 0.0) -> Dict[str, Any]:
    """One output row for an input: ``path``; ``text``; ``segments`` as a JSON string (a list of
    ``{"start", "end", "text"}``); ``duration`` (seconds); ``tokens`` (the generated ids); ``stop_reason``;
    ``error`` (None, or ``"ErrorType: message"`` when ``result`` is an exception: then the text is empty); and
    ``timings`` (:data:`TIMING_KEYS`, all floats, the same keys in every row)."""
    if isinstance(result, BaseException):
        return {"path": path, "text": "", "segments": "[]", "duration": 0.0, "tokens": [], "stop_reason": "error",
                "error": f"{type(result).__name__}: {result}",
                "timings": {k: (wall_s * 1000.0 if k == "wall_ms" else 0.0) for k in TIMING_KEYS}}
    segs = [{"start": s.start, "end": s.end, "text": s.text} for s in result.segments]
    timings = {k: float(result.timings.get(k, 0.0)) for k in TIMING_KEYS}
    timings["wall_ms"] = wall_s * 1000.0
    return {"path": path, "text": result.text, "segments": json.dumps(segs, ensure_ascii=False),
            "duration": float(result.duration), "tokens": [int(t) for t in result.tokens],
            "stop_reason": result.stop_reason, "error": None, "timings": timings}


# --------------------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------------------


def _table_column(path: Path, column: str) -> List[Any]:
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(f"reading {path} needs pyarrow: pip install pyarrow (or \"crispmoss[ray]\")") from None
        try:
            names = list(pq.read_schema(path).names)
        except Exception as e:  # not a parquet file, or one pyarrow cannot read
            raise InputError(f"cannot read {path} as parquet: {e}") from None
        if column not in names:
            raise InputError(f"{path} has no column {column!r} (columns: {', '.join(names) or 'none'})")
        return pq.read_table(path, columns=[column]).column(column).to_pylist()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            names = ", ".join(reader.fieldnames or [])
            raise InputError(f"{path} has no column {column!r} (columns: {names or 'none'})")
        return [row[column] for row in reader]


def list_inputs(source: str, column: Optional[str] = None) -> List[str]:
    """The absolute audio paths INPUT names (see the module text), duplicates dropped, in order. Raises
    InputError for a missing INPUT, a table without ``column`` (or ``column`` for a folder or list), and an INPUT
    that names no file."""
    from .cli import AUDIO_SUFFIXES

    p = Path(source)
    if not p.exists():
        raise InputError(f"input not found: {source}")
    table = p.is_file() and p.suffix.lower() in (".parquet", ".csv")
    if p.is_dir():
        if column:
            raise InputError("--column applies to a parquet or CSV INPUT, not to a folder")
        items = sorted(str(q) for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
        if not items:
            raise InputError(f"no audio files found in {source} (extensions: {', '.join(sorted(AUDIO_SUFFIXES))})")
    elif table:
        if not column:
            raise InputError(f"{source} is a table: name the column of audio paths with --column NAME")
        values = _table_column(p, column)
        items = [str(v).strip() for v in values if v is not None and str(v).strip()]
        if not items:
            raise InputError(f"column {column!r} of {source} holds no paths")
    else:
        if column:
            raise InputError("--column applies to a parquet or CSV INPUT")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{source} is neither a folder, a text file of paths, nor a parquet/CSV table") from None
        items = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if not items:
            raise InputError(f"{source} lists no paths")
    base = Path.cwd() if p.is_dir() else p.parent  # folder entries carry the folder already
    out: List[str] = []
    seen: Set[str] = set()
    for item in items:
        full = os.path.abspath(os.path.join(base, os.path.expanduser(item)))
        if full not in seen:
            seen.add(full)
            out.append(full)
    return out


# --------------------------------------------------------------------------------------------------------------
# the output file
# --------------------------------------------------------------------------------------------------------------


def read_done(out: Path) -> Tuple[Set[str], int]:
    """The paths the rows of ``out`` hold, and the byte length of its complete lines: a torn last line (no
    newline at its end) is left out. Raises InputError for a complete line that is not a row of this command."""
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    done: Set[str] = set()
    for n, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise InputError(f"{out}: line {n} is not a transcribe-corpus row; not resuming into it")
        done.add(row["path"])
    return done, end


class JsonlWriter:
    """Appends rows to OUT, one JSON line each, flushed one by one (see the module text). The constructor checks OUT
    and reads the rows already there (``done``) without touching it; the first row written cuts a torn last line
    (with ``resume``) or empties OUT (otherwise) and opens it for appending, so a job that fails before its first
    row leaves OUT as it was."""

    def __init__(self, out: Path, *, resume: bool, overwrite: bool) -> None:
        self.path = out
        self.resume = resume
        self.done: Set[str] = set()
        self.end = 0
        if out.is_dir():
            raise InputError(f"--out {out} is a folder; give a .jsonl file")
        if out.exists() and not (resume or overwrite):
            raise InputError(f"{out} exists: --resume to continue it, --overwrite to start it anew")
        if out.exists() and resume:
            self.done, self.end = read_done(out)
        self.f: Any = None
        self.written = 0
        self.errors = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume and self.path.exists() and self.end < self.path.stat().st_size:
            with open(self.path, "r+b") as f:  # the torn last line of a killed job
                f.truncate(self.end)
        self.f = open(self.path, "a" if self.resume else "w", encoding="utf-8")

    def write(self, row: Dict[str, Any]) -> None:
        if self.f is None:
            self._open()
        self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.f.flush()
        self.written += 1
        self.errors += row.get("error") is not None

    def close(self) -> None:
        if self.f is not None:
            self.f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.t0 = time.perf_counter()
        self.n = 0
        self.audio = 0.0

    def row(self, row: Dict[str, Any]) -> None:
        self.n += 1
        self.audio += row["duration"]
        if self.quiet:
            return
        what = f"error: {row['error']}" if row["error"] else f"{row['duration']:.1f} s audio"
        wall = time.perf_counter() - self.t0
        sys.stderr.write(f"[{self.n}/{self.total}] {os.path.basename(row['path'])}: {what} "
                         f"({self.audio / max(wall, 1e-9):.2f} audio-s/s)\n")
        sys.stderr.flush()


def transcribe_local(paths: List[str], writer: JsonlWriter, model: Any, *, quiet: bool = False,
                     verbose: bool = False, **options: Any) -> None:
    """Transcribes ``paths`` here, on ``model``'s (a :class:`crispmoss.Model`) batching engine, writing each row as
    it finishes (with ``verbose`` also its timing report on stderr); ``options`` go to
    :meth:`crispmoss.Model.transcribe_iter`."""
    from .cli import timing_report

    progress = _Progress(len(paths), quiet)
    t0 = time.perf_counter()
    events = model.transcribe_iter(paths, **options)
    try:
        for i, result in events:
            row = result_row(paths[i], result, time.perf_counter() - t0)
            writer.write(row)
            progress.row(row)
            if verbose and row["error"] is None:
                sys.stderr.write(timing_report(os.path.basename(paths[i]), result, time.perf_counter() - t0) + "\n")
    finally:
        events.close()


def _ray_error(exc: BaseException) -> str:
    """A one-line message for an exception raised through Ray, whose text carries the remote traceback: the last
    crispmoss error in it, else its last line."""
    text = str(exc)
    found = re.findall(r"crispmoss\.errors\.(\w+): ([^\n]*)", text)
    if found:
        return f"{found[-1][0]}: {found[-1][1]}"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _ray_modules() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError("--ray needs Ray: pip install \"crispmoss[ray]\"") from None
    from . import ray as cray

    return ray, cray


def check_remote(model: str, options: Dict[str, Any]) -> None:
    """What can be checked here of a job that runs elsewhere, so that a typo fails at once and in one line rather
    than in every Ray actor: the model (a file here, or a published name) and the generation options."""
    from .hub import example_names, parse_name
    from .longform import check_limit
    from .model import resolve_sampling

    if not os.path.exists(model) and parse_name(model) is None:
        raise ModelError(f"{model}: no such file (published model names: {example_names()})")
    resolve_sampling(**{k: options.get(k) for k in ("sampling", "temperature", "top_k", "top_p", "min_p",
                                                     "repetition_penalty", "seed")})
    n = options.get("max_new_tokens")
    if n is not None and n < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {n}")
    check_limit(options.get("max_pass_seconds"), math.inf)  # validation only: each model applies its own default


def start_ray(address: str, actors: Optional[int], threads_per_actor: Optional[int], quiet: bool) -> Tuple[int, int]:
    """Joins (or starts) the cluster (:func:`crispmoss.ray.connect`); returns (actors, threads per actor)."""
    ray, cray = _ray_modules()
    t0 = time.perf_counter()
    cray.connect(address)
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    actors, threads = cray.plan_actors(actors, threads_per_actor)
    if not quiet:
        sys.stderr.write(f"crispmoss transcribe-corpus: Ray cluster ready in {time.perf_counter() - t0:.1f} s: "
                         f"{actors} actor(s) x {threads} thread(s)\n")
    return actors, threads


def transcribe_ray(paths: List[str], writer: JsonlWriter, model: str, *, actors: int, threads: int,
                   batch: Optional[int], model_kwargs: Dict[str, Any], **options: Any) -> None:
    """Transcribes ``paths`` as a Ray Data job on the cluster :func:`start_ray` joined (see
    :mod:`crispmoss.ray`), writing rows as the actors return them."""
    ray, cray = _ray_modules()
    try:
        ds = ray.data.from_items([{"path": p} for p in paths])
        out = cray.transcribe_dataset(ds, model=model, concurrency=actors, num_cpus_per_actor=threads,
                                      batch_size=batch, column="path", engine_batch_size=batch,
                                      model_kwargs=model_kwargs, **options)
        for table in out.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in table.to_pylist():
                writer.write({k: row[k] for k in ROW_KEYS})
    except (ray.exceptions.RayError, ray.data.exceptions.UserCodeException) as e:
        raise InputError(f"the Ray job failed: {_ray_error(e)}") from None


# --------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------


def add_cli(subparsers: Any) -> Any:
    """Register ``transcribe-corpus`` on the ``crispmoss`` subparsers."""
    from .cli import _add_generation_args, _add_model_args

    p = subparsers.add_parser(
        "transcribe-corpus", help="transcribe a whole corpus into one JSONL file (locally or on a Ray cluster)",
        description="Transcribe every audio file INPUT names (a folder, searched recursively; a text file of paths; "
                    "a parquet/CSV table with --column) into OUT, one JSON line per input, written as results "
                    "finish. Without --ray the files run here on the batching engine; with --ray they run as a Ray "
                    "Data job (needs pip install \"crispmoss[ray]\").")
    p.add_argument("input", metavar="INPUT", help="folder, text file of paths, or parquet/CSV table (with --column)")
    p.add_argument("--out", required=True, metavar="OUT.jsonl", help="the JSON-lines output")
    _add_model_args(p)
    p.add_argument("--column", default=None, metavar="NAME", help="the column of audio paths of a parquet/CSV INPUT")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="decode up to N passes together per model (default 16, fewer when memory is short); with "
                        "--ray also the rows handed to an actor at a time (default 16)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="skip the inputs OUT already has a row for")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run on a Ray cluster: auto joins the one RAY_ADDRESS or a running local head names, else "
                        "starts one here; or a cluster address (host:port, ray://host:port)")
    p.add_argument("--actors", type=int, default=None, metavar="N",
                   help="model replicas (Ray actors; default: the cluster's free CPUs / --threads-per-actor)")
    p.add_argument("--threads-per-actor", type=int, default=None, metavar="N",
                   help="compute threads (and Ray CPUs) of each actor (default: the CPUs of the smallest node, "
                        "at most the free CPUs)")
    # the pass options exactly as `crispmoss transcribe` defines them
    transcribe = subparsers.choices["transcribe"]
    for dest in ("language", "timestamps", "max_pass_seconds"):
        p._add_action(copy.copy(next(a for a in transcribe._actions if a.dest == dest)))
    _add_generation_args(p)
    p.set_defaults(func=cmd_transcribe_corpus)
    return p


def _positive(name: str, v: Optional[int]) -> None:
    if v is not None and v < 1:
        raise InputError(f"{name} must be >= 1, got {v}")


def cmd_transcribe_corpus(args: argparse.Namespace) -> int:
    from .cli import _gen_kwargs

    if args.ray is None and (args.actors is not None or args.threads_per_actor is not None):
        raise InputError("--actors and --threads-per-actor apply with --ray (locally: --threads, --batch)")
    for name in ("actors", "threads_per_actor", "batch"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    paths = list_inputs(args.input, args.column)
    model = os.path.abspath(args.model) if os.path.exists(args.model) else args.model  # what other nodes see
    model_kwargs = dict(backend=args.backend, device=args.device, n_gpu_layers=args.gpu_layers,
                        head_type=args.head_type)
    options = dict(_gen_kwargs(args), timestamps=args.timestamps, language=args.language,
                   max_pass_seconds=args.max_pass_seconds)
    options = {k: v for k, v in options.items() if v is not None}
    writer = JsonlWriter(Path(args.out), resume=args.resume, overwrite=args.overwrite)
    todo = [p for p in paths if p not in writer.done]
    if not args.quiet and writer.done:
        sys.stderr.write(f"crispmoss transcribe-corpus: {len(paths) - len(todo)} of {len(paths)} inputs already in "
                         f"{args.out}\n")
    # the model is loaded (or the cluster joined) and the options checked before OUT is touched
    if todo and args.ray is not None:
        check_remote(model, options)
        actors, threads = start_ray(args.ray, args.actors, args.threads_per_actor, args.quiet)
    elif todo:
        from .model import Model

        local = Model(model, args.threads, progress=not args.quiet, batch_size=args.batch, **model_kwargs)
        options["batch_size"] = args.batch
        list(local.transcribe_iter([], **options))
    with writer:
        if todo and args.ray is None:
            transcribe_local(todo, writer, local, quiet=args.quiet, verbose=args.verbose, **options)
        elif todo:
            transcribe_ray(todo, writer, model, actors=actors, threads=threads, batch=args.batch,
                           model_kwargs=model_kwargs, **options)
        if not args.quiet:
            sys.stderr.write(f"crispmoss transcribe-corpus: {writer.written} rows written to {args.out} "
                             f"({writer.errors} with errors)\n")
    return 0


__all__ = ["JsonlWriter", "ROW_KEYS", "TIMING_KEYS", "add_cli", "list_inputs", "read_done", "result_row",
           "start_ray", "transcribe_local", "transcribe_ray"]
