"""Scheduling for ``crispmoss serve``: loaded models, worker slots with a bounded queue, request jobs, and the
LRU of chat sessions. Nothing here imports FastAPI.

Each admitted request is a :class:`Job` whose work function runs in one of ``max_batch`` worker threads and
calls the public ``Model`` / ``Session`` API; requests running at the same time are sequences of the library's
shared engine (threads that call one Model concurrently are batched by it). A job talks to the event loop
that serves its HTTP request only through :meth:`Job.emit` (thread-safe) and is stopped through
:meth:`Job.cancel` or its deadline: a queued job leaves the queue at once, a running one when the library next
calls its piece callback (which then returns False), so a cancelled request gives up its slot and KV cache
within a decode step. (The library calls the callback for pieces with text only; the deadline is also passed
as the library's own ``timeout``.)
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import queue
import secrets
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import AudioError, CrispMossError, InputError, ModelError
from .config import ServerConfig

log = logging.getLogger("crispmoss.server")


# --------------------------------------------------------------------------------------------------------------
# Errors in OpenAI's shape
# --------------------------------------------------------------------------------------------------------------

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error", 429: "rate_limit_error", 499: "invalid_request_error",
          500: "server_error", 503: "server_error", 504: "timeout_error"}


class ApiError(Exception):
    """An error answer: HTTP ``status`` and OpenAI's body ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, param: Optional[str] = None, code: Optional[str] = None,
                 type: Optional[str] = None, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(self.status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}

    def body(self) -> Dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ClientGone(Exception):
    """The client disconnected; its request was cancelled."""


def api_error(exc: BaseException, *, param: Optional[str] = None) -> ApiError:
    """The answer for an exception raised while serving a request: library errors about the request's input
    are 400s, anything else a 500 (logged with its traceback by the caller)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AudioError):
        return ApiError(400, f"invalid audio: {exc}", param=param or "file", code="invalid_audio")
    if isinstance(exc, (InputError, ModelError)):
        return ApiError(400, str(exc), param=param, code="invalid_value")
    if isinstance(exc, CrispMossError):
        return ApiError(400, str(exc), param=param)
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log", code="internal_error")


def timeout_error(timeout: float) -> ApiError:
    return ApiError(504, f"the request took longer than the server's --timeout of {timeout:g} s",
                    code="timeout")


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ServedModel:
    """A loaded model and the id clients use for it."""

    id: str
    model: Any  # crispmoss.Model
    path: str
    created: int

    @property
    def arch(self) -> str:
        return self.model.arch

    @property
    def accepts_instructions(self) -> bool:
        return bool(self.model.accepts_instructions)

    def card(self) -> Dict[str, Any]:
        """The model's entry in ``GET /v1/models``: OpenAI's fields, plus crispmoss's own ``arch`` (the GGUF
        architecture), ``name`` (the product name its registry entry declares, e.g. for display),
        ``accepts_instructions``, ``speakers`` (its transcripts carry speaker labels: ``response_format``
        ``diarized_json``) and ``hotwords`` (it takes the ``hotwords`` form field)."""
        spec = self.model.spec
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "crispmoss",
                "arch": self.arch, "name": spec["name"], "accepts_instructions": self.accepts_instructions,
                "speakers": spec.get("timed_output") == "diarized", "hotwords": bool(spec.get("hotwords"))}


def _published_id(key: str, type_: str) -> str:
    from ..hub import DEFAULT_TYPE

    return key if type_ == DEFAULT_TYPE else f"{key}:{type_}"


def model_id(spec: str, path: str) -> str:
    """The id a model is listed under: its published name where it has one (a key of ``crispmoss.hub.MODELS``,
    with ``:<type>`` only when the type is not the default q4_k), else the file's stem."""
    from ..hub import MODELS, parse_name

    if not os.path.exists(spec):
        try:
            parsed = parse_name(spec)
        except ModelError:
            parsed = None
        if parsed is not None:
            return _published_id(*parsed)
    name = os.path.basename(path)
    for key, pm in MODELS.items():
        for t in pm.types:
            if name == pm.filename(t):
                return _published_id(key, t)
    return Path(path).stem


def load_models(cfg: ServerConfig) -> List[ServedModel]:
    """Loads every ``cfg.models`` entry once (mmapped); raises ModelError for a bad one or a repeated id."""
    from ..model import Model

    out: List[ServedModel] = []
    seen: Dict[str, str] = {}
    extra: Dict[str, Any] = {}
    if cfg.max_batch is not None and "batch_size" in inspect.signature(Model).parameters:
        extra["batch_size"] = cfg.max_batch  # the engine decodes as many sequences together as requests run
    for spec in cfg.models:
        m = Model(spec, cfg.threads, backend=cfg.backend, device=cfg.device, n_gpu_layers=cfg.gpu_layers,
                  head_type=cfg.head_type, **extra)
        mid = model_id(spec, m.path)
        if mid in seen:
            raise ModelError(f"two models would both be served as {mid!r} ({seen[mid]} and {spec}); "
                             f"give each model once")
        seen[mid] = spec
        try:
            created = int(os.stat(m.path).st_mtime)
        except OSError:
            created = int(time.time())
        out.append(ServedModel(mid, m, m.path, created))
    return out


class Registry:
    """Models by id; a request's ``model`` may also be any spelling of a published name or a file stem."""

    def __init__(self, models: List[ServedModel]) -> None:
        self.models = list(models)
        self._by_name: Dict[str, ServedModel] = {}
        for sm in self.models:
            self._by_name.setdefault(sm.id, sm)
        for sm in self.models:
            self._by_name.setdefault(Path(sm.path).stem, sm)
            self._by_name.setdefault(os.path.basename(sm.path), sm)

    def get(self, name: Any) -> ServedModel:
        from ..hub import parse_name

        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "you must give a model (see GET /v1/models)", param="model", code="missing_model")
        sm = self._by_name.get(name) or self._by_name.get(name.strip())
        if sm is None:
            try:
                parsed = parse_name(name)
            except ModelError:
                parsed = None
            if parsed is not None:
                sm = self._by_name.get(_published_id(*parsed))
        if sm is None:
            served = ", ".join(m.id for m in self.models)
            raise ApiError(404, f"the model {name!r} does not exist on this server (served: {served})",
                           param="model", code="model_not_found")
        return sm


# --------------------------------------------------------------------------------------------------------------
# Jobs and worker slots
# --------------------------------------------------------------------------------------------------------------


class Job:
    """One request's work in a worker thread, and its line back to the event loop.

    Events on :attr:`events` (read on the loop): ``("started", info)`` once the input was accepted (audio
    decoded / checked), ``("delta", text)`` per decoded piece when streaming, then ``("done", result)`` or
    ``("error", exception)`` after the worker slot was freed.
    """

    def __init__(self, work: Callable[["Job"], Any], *, loop: asyncio.AbstractEventLoop, request_id: str,
                 timeout: Optional[float], stream: bool = False, arrival: Optional[float] = None) -> None:
        self.work = work
        self.loop = loop
        self.id = request_id
        self.stream = stream
        self.events: "asyncio.Queue[Tuple[str, Any]]" = asyncio.Queue()
        self._cancel = threading.Event()
        self.t_arrival = time.monotonic() if arrival is None else arrival
        self.timeout = timeout
        self.deadline = self.t_arrival + timeout if timeout else None
        self.t_start: Optional[float] = None
        self.t_end: Optional[float] = None
        self.finished = threading.Event()
        self.cleanup: List[Callable[[], None]] = []  # run by the worker after the work
        self.transcript: Any = None  # the library's result, also when the request was cancelled or timed out
        self._lock = threading.Lock()
        self._on_finish: List[Callable[["Job"], None]] = []
        self.state = "new"  # "queued", "running", "dropped" (cancelled while queued), "done"
        self.cancel_error: Optional[ApiError] = None
        self._scheduler: Optional["Scheduler"] = None

    # --- from any thread ----------------------------------------------------------------------------------
    def emit(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass

    def cancel(self, error: Optional[ApiError] = None) -> None:
        """Stops the job: a queued one leaves the queue now, a running one at its next decoded piece. ``error``
        is what its client gets (None: the client is gone)."""
        if error is not None and not self._cancel.is_set():
            self.cancel_error = error
        self._cancel.set()
        if self._scheduler is not None:
            self._scheduler._drop(self)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def stopped(self) -> bool:
        return self._cancel.is_set() or self.expired()

    def remaining(self) -> Optional[float]:
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), 1e-3)

    # --- in the worker ------------------------------------------------------------------------------------
    def on_piece(self, piece: str) -> bool:
        """The library's piece callback: forwards text when streaming; False (stop) once cancelled or late."""
        if self.stopped():
            return False
        if self.stream and piece:
            self.emit("delta", piece)
        return True

    def generate_kwargs(self) -> Dict[str, Any]:
        """``callback`` and ``timeout`` for a library call made by this job."""
        kw: Dict[str, Any] = {"callback": self.on_piece}
        left = self.remaining()
        if left is not None:
            kw["timeout"] = left
        return kw

    def when_finished(self, fn: Callable[["Job"], None]) -> None:
        """Calls ``fn(job)`` once no worker runs the job any more: now if so, else from the worker thread when
        it ends (a queued job that is cancelled is finished at that moment)."""
        with self._lock:
            if not self.finished.is_set():
                self._on_finish.append(fn)
                return
        fn(self)

    def _finish(self) -> None:
        with self._lock:
            self.finished.set()
            fns, self._on_finish = self._on_finish, []
        for fn in fns:
            try:
                fn(self)
            except Exception:  # noqa: BLE001
                log.debug("finish callback of %s failed", self.id, exc_info=True)

    def check_result(self, result: Any) -> Any:
        """Keeps ``result`` in :attr:`transcript`; raises for one cut short by cancellation or the deadline."""
        self.transcript = result
        if self.cancelled:
            raise self.cancel_error or ClientGone()
        reason = getattr(result, "stop_reason", "stop")
        if reason == "timeout" or (reason == "interrupted" and self.expired()):
            raise timeout_error(self.timeout or 0.0)
        return result

    def run_cleanup(self) -> None:
        while self.cleanup:
            fn = self.cleanup.pop()
            try:
                fn()
            except Exception:  # noqa: BLE001 - cleanup must not take a worker down
                log.debug("cleanup of %s failed", self.id, exc_info=True)


class Scheduler:
    """``max_batch`` worker threads and a queue of at most ``max_queue`` admitted jobs waiting for one."""

    def __init__(self, max_batch: int, max_queue: int) -> None:
        self.max_batch = int(max_batch)
        self.max_queue = int(max_queue)
        self._q: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy = 0
        self._queued = 0
        self._closed = False
        self._live: "set[Job]" = set()
        self._threads = [threading.Thread(target=self._worker, name=f"crispmoss-serve-{i}", daemon=True)
                         for i in range(self.max_batch)]
        for t in self._threads:
            t.start()

    def stats(self) -> Tuple[int, int]:
        """(requests running, requests waiting)."""
        with self._lock:
            return self._busy, self._queued

    def submit(self, job: Job) -> None:
        """Admits ``job`` or raises ApiError 429 (all slots busy and the queue full) / 503 (shutting down)."""
        with self._lock:
            if self._closed:
                raise ApiError(503, "the server is shutting down", code="shutting_down")
            if self._busy + self._queued >= self.max_batch + self.max_queue:
                raise ApiError(429, f"the server is busy: {self._busy} requests running and {self._queued} "
                                    f"waiting (--max-batch {self.max_batch}, --max-queue {self.max_queue}); "
                                    f"retry later", code="queue_full", headers={"retry-after": "1"})
            self._queued += 1
            self._live.add(job)
            job.state = "queued"
            job._scheduler = self
        self._q.put(job)

    def _drop(self, job: Job) -> None:
        """A cancelled job still waiting gives its queue place back at once (the worker that meets it skips it)."""
        with self._lock:
            if job.state != "queued":
                return
            job.state = "dropped"
            self._queued -= 1
            self._live.discard(job)
        job.run_cleanup()
        job._finish()

    def _worker(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            with self._lock:
                dropped = job.state == "dropped"
                if not dropped:
                    job.state = "running"
                    self._queued -= 1
                    self._busy += 1
            if dropped:  # already finished by _drop
                continue
            kind: str
            value: Any
            try:
                if job.cancelled:
                    kind, value = "error", job.cancel_error or ClientGone()
                elif job.expired():
                    kind, value = "error", timeout_error(job.timeout or 0.0)
                else:
                    job.t_start = time.monotonic()
                    try:
                        kind, value = "done", job.work(job)
                    except BaseException as exc:  # handed to the request's coroutine
                        kind, value = "error", exc
            finally:
                job.run_cleanup()
                job.t_end = time.monotonic()
                with self._lock:
                    self._busy -= 1
                    self._live.discard(job)
                    job.state = "done"
            job.emit(kind, value)
            job._finish()

    def shutdown(self) -> None:
        """Refuses new jobs, stops every admitted one (its client gets a 503) and lets the workers end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live = list(self._live)
        for job in live:
            job.cancel(ApiError(503, "the server is shutting down; retry on another server or later",
                                code="shutting_down"))
            job.emit("error", job.cancel_error)
        for _ in self._threads:
            self._q.put(None)


# --------------------------------------------------------------------------------------------------------------
# Chat sessions: encoder output + KV prefix of recent clips
# --------------------------------------------------------------------------------------------------------------


def audio_key(samples: np.ndarray) -> str:
    """SHA-256 of the decoded audio (float32 mono 16 kHz samples)."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()


class SessionCache:
    """A bounded LRU of idle Sessions keyed by (model id, audio key).

    A request takes a session out while it runs (so no two requests share one: each runs as its own sequence)
    and puts it back afterwards; a request on the same audio while the cached session is busy gets a new one.
    At most ``capacity`` idle sessions are kept (0: none).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._idle: "OrderedDict[Tuple[str, str], Any]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    @contextmanager
    def session(self, served: ServedModel, key: str, samples: np.ndarray) -> Iterator[Any]:
        k = (served.id, key)
        with self._lock:
            s = self._idle.pop(k, None)
            if s is not None:
                self.hits += 1
            else:
                self.misses += 1
        if s is None:
            s = served.model.session(samples)
        ok = False
        try:
            yield s
            ok = True
        finally:
            if ok and self.capacity > 0:
                with self._lock:
                    self._idle.pop(k, None)
                    self._idle[k] = s
                    while len(self._idle) > self.capacity:
                        self._idle.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


__all__ = ["ApiError", "ClientGone", "Job", "Registry", "Scheduler", "ServedModel", "SessionCache", "api_error",
           "audio_key", "load_models", "log", "model_id", "new_id", "timeout_error"]
