"""Corpus transcription on Ray Data (``pip install "crispmoss[ray]"``).

:class:`Transcriber` is a stateful callable for :meth:`ray.data.Dataset.map_batches`: each Ray actor loads the model
once (a path every node can read, or a published name fetched into each node's Hugging Face cache) with its own
thread count, and transcribes the rows of each batch together on that model's batching engine
(:meth:`crispmoss.Model.transcribe_iter`). :func:`transcribe_dataset` wires it up with an actor pool sized from the
cluster. Each input row becomes one output row (:func:`crispmoss.corpus.result_row`: ``path``, ``text``,
``segments`` as JSON, ``duration``, ``tokens``, ``stop_reason``, ``error``, ``timings``); an input that cannot be
read or decoded gets ``error`` set instead of failing the job.

Example::

    import ray, crispmoss.ray
    ds = ray.data.read_binary_files("s3://bucket/audio/", include_paths=True)   # columns: bytes, path
    out = crispmoss.ray.transcribe_dataset(ds, model="moss-transcribe", max_new_tokens=256)
    out.write_parquet("s3://bucket/transcripts/")

Each actor takes up to three batches at once, and all of them feed one long-lived run of its model's batching engine
(:class:`crispmoss.batch.Feed`), as one ``crispmoss transcribe DIR --batch N`` feeds a folder: the engine's batch
stays full across batch boundaries (while a batch finishes its last, longest inputs and while Ray hands over the
next one), and at most the engine's batch of passes holds audio, encoder output and a KV cache at a time (not one
such batch per concurrent call).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import ray

from .batch import Feed
from .corpus import ROW_KEYS, TIMING_KEYS, result_row
from .errors import InputError
from .model import MAX_BATCH_ROWS

# Rows handed to an actor at a time when neither batch_size nor engine_batch_size says (the engine's default batch).
DEFAULT_ROWS = MAX_BATCH_ROWS
# Batches one actor takes at the same time, all fed to its one engine run (see the module text): the one finishing,
# the one filling the engine behind it, and the next one already there when the first returns.
CALLS_PER_ACTOR = 3


def schema() -> Any:
    """The Arrow schema of the rows :class:`Transcriber` returns (before any passed-through columns)."""
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("text", pa.string()), ("segments", pa.string()), ("duration", pa.float64()),
        ("tokens", pa.list_(pa.int64())), ("stop_reason", pa.string()), ("error", pa.string()),
        ("timings", pa.struct([(k, pa.float64()) for k in TIMING_KEYS])),
    ])


def connect(address: str = "auto") -> None:
    """Joins a Ray cluster unless this process already has: ``"auto"`` joins the one RAY_ADDRESS names (an error
    if it cannot be reached) or a head running on this machine, else starts a local one; anything else is a
    cluster address (``host:port``, ``ray://host:port``). Raises ConnectionError when the cluster cannot be joined."""
    if ray.is_initialized():
        return
    kw: Dict[str, Any] = dict(logging_level=logging.WARNING, configure_logging=True)
    try:
        if address != "auto" or os.environ.get("RAY_ADDRESS"):
            _reachable(os.environ["RAY_ADDRESS"] if address == "auto" else address)
            ray.init(address=None if address == "auto" else address, **kw)
            return
        try:
            ray.init(address="auto", **kw)
        except ConnectionError as e:
            if "Could not find any running Ray instance" not in str(e):
                raise
            ray.init(include_dashboard=False, **kw)  # none running: a local one, gone when this process ends
    except ConnectionError as e:
        raise ConnectionError(f"{e}{_auth_hint()}") from None


def _reachable(address: str, timeout: float = 10.0) -> None:
    """Raises ConnectionError at once when nothing listens at a ``host:port`` address (Ray itself retries for
    minutes); other forms (``ray://``, ``auto``) are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"no Ray cluster answers at {address}: {e.strerror or e}") from None


def _auth_hint() -> str:
    # A head started while a token exists (~/.ray/auth_token, as a local ray.init() leaves it) requires it, but a
    # driver sends it only with RAY_AUTH_MODE=token set before Ray starts in it (Ray 2.60).
    has_token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                 or os.path.exists(os.path.join(os.path.expanduser("~"), ".ray", "auth_token")))
    if has_token and os.environ.get("RAY_AUTH_MODE") is None:
        return " (if the cluster uses token authentication, set RAY_AUTH_MODE=token)"
    return ""


def plan_actors(actors: Optional[int] = None, threads: Optional[int] = None) -> Tuple[int, int]:
    """(actors, threads per actor) for the cluster this process is connected to (connecting as
    :func:`connect` does first). Threads default to the CPUs of the smallest node with CPUs, at most the free
    CPUs (or the free CPUs / ``actors``); actors default to the free CPUs / threads (at least 1). Each actor
    reserves ``threads`` CPUs. Raises InputError when no node has ``threads`` CPUs (the actors could never
    start)."""
    connect()
    nodes = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    nodes = [c for c in nodes if c >= 1]
    if not nodes:
        raise InputError("the Ray cluster has no node with CPUs")
    free = int(ray.available_resources().get("CPU", 0)) or sum(nodes)
    if threads is None:
        share = free if actors is None else max(1, free // actors)
        threads = max(1, min(min(nodes), share))
    if threads > max(nodes):
        raise InputError(f"{threads} threads per actor: no node of the Ray cluster has that many CPUs "
                         f"(largest: {max(nodes)})")
    if actors is None:
        actors = max(1, free // threads)
    return int(actors), int(threads)


def _columns(batch: Any) -> Dict[str, List[Any]]:
    if hasattr(batch, "to_pydict"):  # pyarrow.Table
        return batch.to_pydict()
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # pandas.DataFrame
        return {str(c): batch[c].tolist() for c in batch.columns}
    return {str(k): list(v) for k, v in dict(batch).items()}  # dict of numpy arrays / lists


def _audio(value: Any) -> Any:
    """The model input of one cell: a path (str) or encoded bytes; raises InputError for anything else."""
    import numpy as np

    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return value.tobytes()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise InputError(f"an audio cell must hold a path or encoded bytes, got {type(value).__name__}")


class Transcriber:
    """A callable class for ``Dataset.map_batches``: loads ``model`` once (a path every node can read, or a
    published name such as ``"moss-transcribe"``) with ``threads`` compute threads (default: all cores) and
    ``engine_batch_size`` passes decoded together (default: the model's), then maps each batch of rows to rows of
    :func:`crispmoss.corpus.result_row`.

    The audio is in ``column``: default ``"bytes"`` when the batch has that column (encoded files, as
    ``ray.data.read_binary_files`` gives them), else ``"path"`` (paths every node can read). A row's ``path`` is the
    cell's path, or for encoded bytes the value of a ``path`` column (None without one). The other input columns
    are passed through. ``model_kwargs`` go to :class:`crispmoss.Model` (backend, head_type, ...); ``options`` to
    :meth:`crispmoss.Model.transcribe_many` (max_new_tokens, language, timestamps, max_pass_seconds, sampling, ...)
    and are checked here, so a bad one fails the actor's start rather than every row.

    Calls may come from several threads at once (a threaded actor): the rows of all of them go into one run of the
    model's engine, started by the first call; :meth:`close` ends it.
    """

    def __init__(self, model: str, *, threads: Optional[int] = None, column: Optional[str] = None,
                 engine_batch_size: Optional[int] = None, model_kwargs: Optional[Dict[str, Any]] = None,
                 **options: Any) -> None:
        from .model import Model

        self.model = Model(model, threads, progress=False, batch_size=engine_batch_size, **(model_kwargs or {}))
        self.column = column
        self.options = options
        list(self.model.transcribe_iter([], **options))  # validates the options
        # One run of the engine for every call (see the module text): started by the first call, fed by each.
        self._lock = threading.Lock()
        self._feed: Any = None
        self._waiting: Dict[int, Any] = {}  # feed index -> the callback of the call that put that input
        self._failed: Optional[BaseException] = None

    def _drain(self, feed: Any) -> None:
        """The engine run's consumer (a thread): hands each result to the call that put its input."""
        try:
            for i, result in self.model.transcribe_iter(feed, **self.options):
                with self._lock:
                    call = self._waiting.pop(i)
                call(i, result)
        except BaseException as e:  # not an input's error (those come as results): every waiting call fails
            with self._lock:
                self._failed = e
                calls, self._waiting = list(self._waiting.items()), {}
            for i, call in calls:
                call(i, e)

    def _run(self, audios: List[Any]) -> List[Tuple[Any, float]]:
        """The results of ``audios`` (Transcripts or exceptions) from the shared engine run, each with the
        ``time.perf_counter()`` it came at."""
        results: List[Any] = [None] * len(audios)
        left = [len(audios)]
        done = threading.Event()
        first = 0

        def call(i: int, result: Any) -> None:
            results[i - first] = (result, time.perf_counter())
            left[0] -= 1
            if left[0] == 0:
                done.set()

        with self._lock:
            if self._failed is not None:
                raise RuntimeError(f"the actor's engine run failed: {self._failed}") from self._failed
            if self._feed is None:
                self._feed = Feed()
                threading.Thread(target=self._drain, args=(self._feed,), daemon=True,
                                 name="crispmoss-ray-feed").start()
            first = self._feed.put(audios)
            for k in range(len(audios)):
                self._waiting[first + k] = call
        done.wait()
        for r, _ in results:
            if isinstance(r, BaseException) and r is self._failed:
                raise RuntimeError(f"the actor's engine run failed: {r}") from r
        return results

    def close(self) -> None:
        """Ends the engine run once the calls in progress are done (a later call starts a new one)."""
        with self._lock:
            feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()

    def _column(self, cols: Dict[str, List[Any]]) -> str:
        if self.column is not None:
            if self.column not in cols:
                raise InputError(f"the batch has no column {self.column!r} (columns: {', '.join(cols)})")
            return self.column
        for name in ("bytes", "path"):
            if name in cols:
                return name
        raise InputError(f"the batch has neither a 'path' nor a 'bytes' column (columns: {', '.join(cols)}); "
                         "name the audio column with column=")

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        cols = _columns(batch)
        col = self._column(cols)
        values = cols[col]
        beside = cols.get("path") if col != "path" else None
        names: List[Optional[str]] = []
        rows: List[Optional[Dict[str, Any]]] = [None] * len(values)
        audios, where = [], []
        for i, v in enumerate(values):
            if isinstance(v, (str, os.PathLike)):
                names.append(os.fspath(v))
            else:
                names.append(None if beside is None or beside[i] is None else str(beside[i]))
            try:
                if v is None:
                    raise InputError(f"no audio in column {col!r}")
                audios.append(_audio(v))
                where.append(i)
            except InputError as e:
                rows[i] = result_row(names[i], e)
        t0 = time.perf_counter()
        if audios:
            for j, (result, at) in enumerate(self._run(audios)):
                i = where[j]
                rows[i] = result_row(names[i], result, at - t0)
        table = pa.Table.from_pylist(rows, schema=schema())
        for name, vals in cols.items():
            if name in ROW_KEYS or name == col:
                continue
            try:
                table = table.append_column(name, pa.array(vals))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                pass  # a column Arrow cannot hold as it came: dropped
        return table


def transcribe_dataset(ds: Any, model: str, *, concurrency: Union[int, Tuple[int, int], None] = None,
                       num_cpus_per_actor: Optional[int] = None, batch_size: Optional[int] = None,
                       column: Optional[str] = None, engine_batch_size: Optional[int] = None,
                       model_kwargs: Optional[Dict[str, Any]] = None, **options: Any) -> Any:
    """``ds`` transcribed by a pool of :class:`Transcriber` actors: a lazy Dataset of result rows (plus the input
    columns passed through), in the order they finish.

    ``concurrency``: actors (an int, or ``(min, max)`` for an autoscaling pool); ``num_cpus_per_actor``: the CPUs
    each reserves and its compute threads. Both default from the cluster (:func:`plan_actors`: one actor per node
    with all of its free CPUs). ``batch_size``: rows handed to an actor at a time (default: ``engine_batch_size``,
    else 32); each actor takes up to three such batches at once, all in one run of its model's engine (see the
    module text). ``column``, ``engine_batch_size``, ``model_kwargs`` and ``options`` (max_new_tokens, language,
    ...): see :class:`Transcriber`.
    """
    from ray.data import ActorPoolStrategy

    fixed = concurrency if isinstance(concurrency, int) or concurrency is None else None
    actors, threads = plan_actors(fixed, num_cpus_per_actor)
    if isinstance(concurrency, tuple):
        lo, hi = concurrency
        pool = ActorPoolStrategy(min_size=lo, max_size=hi, max_concurrent_calls_per_actor=CALLS_PER_ACTOR,
                                 enable_true_multi_threading=True)
    else:
        pool = ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=CALLS_PER_ACTOR,
                                 enable_true_multi_threading=True)
    kwargs = dict(model=model, threads=threads, column=column, engine_batch_size=engine_batch_size,
                  model_kwargs=model_kwargs, **options)
    return ds.map_batches(Transcriber, fn_constructor_kwargs=kwargs, compute=pool, num_cpus=threads,
                          batch_size=batch_size or engine_batch_size or DEFAULT_ROWS, batch_format="pyarrow")


__all__ = ["Transcriber", "connect", "plan_actors", "schema", "transcribe_dataset"]
