"""The FastAPI application of ``crispmoss serve`` and the uvicorn runner.

Routes: ``POST /v1/audio/transcriptions``, ``POST /v1/chat/completions``, ``GET /v1/models[/{id}]``,
``GET /health``. Bodies are read by hand (multipart streamed into a spooled temporary file with a byte limit,
JSON with a byte limit) so that every failure becomes an OpenAI-shaped error with the right status, and the
request's work runs as a :class:`~crispmoss.server.engine.Job` in a worker slot while the coroutine waits for
its events, watching for the client's disconnect and the request's deadline.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import __version__
from ..audio import SAMPLE_RATE, load_audio, read_error
from ..errors import AudioError
from .config import ServerConfig
from .engine import (ApiError, ClientGone, Job, Registry, Scheduler, ServedModel, SessionCache, api_error,
                     audio_key, load_models, log, new_id, timeout_error)
from .protocol import (ChatRequest, DeltaText, TranscriptionRequest, answer_text, chat_body,
                       chat_chunk, chat_usage,
                       finish_reason, now, parse_chat, parse_transcription, token_usage, transcription_body,
                       verbose_fields)

_MiB = 1024 * 1024


# --------------------------------------------------------------------------------------------------------------
# State and request records
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Record:
    """What the request's log line says."""

    id: str
    route: str
    t0: float
    model: str = "-"
    status: Optional[int] = None
    audio_s: Optional[float] = None
    n_prompt: Optional[int] = None
    n_out: Optional[int] = None
    cached: Optional[int] = None
    stop: Optional[str] = None
    queued_s: Optional[float] = None
    deferred: bool = False  # a streamed answer logs when its stream ends
    note: str = ""

    def add_result(self, t: Any) -> None:
        self.audio_s = float(getattr(t, "duration", 0.0) or 0.0)
        tm = getattr(t, "timings", {}) or {}
        self.n_prompt = int(tm.get("n_prompt", 0))
        self.n_out = len(getattr(t, "tokens", []) or [])
        self.cached = max(0, self.n_prompt - int(tm.get("n_prefilled", self.n_prompt)))
        self.stop = getattr(t, "stop_reason", None)

    def add_job(self, job: Job) -> None:
        if job.t_start is not None:
            self.queued_s = job.t_start - job.t_arrival

    def line(self) -> str:
        parts = [self.id, self.route, str(self.status if self.status is not None else 499), f"model={self.model}"]
        if self.audio_s is not None:
            parts.append(f"audio={self.audio_s:.2f}s")
        if self.n_prompt is not None:
            parts.append(f"tokens={self.n_prompt}+{self.n_out}")
            parts.append(f"cached={self.cached}")
        if self.stop:
            parts.append(f"stop={self.stop}")
        if self.queued_s is not None:
            parts.append(f"queued={self.queued_s:.3f}s")
        parts.append(f"latency={time.monotonic() - self.t0:.3f}s")
        if self.note:
            parts.append(self.note)
        return " ".join(parts)


class ServerState:
    """The loaded models, the worker slots and the chat-session cache of one server."""

    def __init__(self, cfg: ServerConfig, models: List[ServedModel]) -> None:
        if not models:
            raise ValueError("the server needs at least one model")
        self.cfg = cfg
        self.registry = Registry(models)
        self.max_batch = cfg.max_batch or max(int(getattr(m.model, "batch_size", 8) or 8) for m in models)
        self.scheduler = Scheduler(self.max_batch, cfg.max_queue)
        self.sessions = SessionCache(cfg.session_cache)

    def record(self, request: Request, route: Optional[str] = None) -> Record:
        rid = request.headers.get("x-request-id")
        if not rid or len(rid) > 64 or not rid.isascii() or not rid.replace("-", "").replace("_", "").isalnum():
            rid = new_id("req_")
        return Record(rid, route or f"{request.method} {request.url.path}", time.monotonic())

    def log(self, rec: Record) -> None:
        if self.cfg.log_requests:
            log.info(rec.line())

    def log_when_done(self, rec: Record, job: Optional[Job]) -> None:
        """Logs ``rec`` once ``job`` (if any) has left its worker slot, with what the library returned (so a
        cancelled request's line says how far it got and when its slot was free again)."""
        if job is None:
            self.log(rec)
            return

        def done(j: Job) -> None:
            if j.transcript is not None and rec.n_prompt is None:
                rec.add_result(j.transcript)
            rec.add_job(j)
            self.log(rec)

        job.when_finished(done)

    def close(self) -> None:
        self.scheduler.shutdown()
        self.sessions.clear()


def error_response(e: ApiError, rid: Optional[str] = None) -> JSONResponse:
    headers = dict(e.headers)
    if rid:
        headers["x-request-id"] = rid
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


def _sse(obj: Any) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"


# --------------------------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------------------------


class _TooLarge(MultiPartException):
    pass


async def _limited(request: Request, limit: int, message: str) -> AsyncIterator[bytes]:
    """The request body in chunks; past ``limit`` bytes the rest is read and dropped (up to about twice the
    limit, so the client gets to read the 413 instead of a reset connection) and _TooLarge(message) is raised."""
    hard = limit + max(limit, 16 * _MiB)
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > hard:
        raise _TooLarge(message)
    total = 0
    over = False
    async for chunk in request.stream():
        total += len(chunk)
        if over or total > limit:
            over = True
            if total > hard:
                break
            continue
        yield chunk
    if over:
        raise _TooLarge(message)


def _too_large_message(what: str, limit: int) -> str:
    return f"the {what} is larger than the server's limit of {limit / _MiB:g} MiB (--max-upload-mb)"


class _Parser(MultiPartParser):
    spool_max_size = _MiB  # parts above 1 MiB go to a temporary file on disk as they arrive


async def read_multipart(request: Request, limit: int) -> Tuple[Dict[str, List[str]], Optional[UploadFile], List[Any]]:
    """(text fields, the ``file`` upload, every upload to close) of a multipart body."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(400, f"send the request as multipart/form-data with a file field, not "
                            f"{ctype or 'without a content type'}", code="invalid_content_type")
    msg = _too_large_message("file", limit)
    # The whole body may exceed the file's limit by the text fields around it (1 MiB at most).
    parser = _Parser(request.headers, _limited(request, limit + _MiB, msg), max_files=4, max_fields=64,
                     max_part_size=_MiB)
    try:
        form = await parser.parse()
    except _TooLarge:
        raise ApiError(413, msg, param="file", code="file_too_large") from None
    except MultiPartException as e:
        raise ApiError(400, f"malformed multipart/form-data body: {e.message}", code="invalid_body") from None
    fields: Dict[str, List[str]] = {}
    uploads: List[Any] = []
    upload: Optional[UploadFile] = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            uploads.append(value.file)
            if name == "file" and upload is None:
                upload = value
        else:
            fields.setdefault(name, []).append(value)
    try:
        if upload is None and "file" in fields:
            raise ApiError(400, "file must be a file upload (a multipart part with a filename), not a text field",
                           param="file", code="invalid_value")
        if upload is not None and (upload.size or 0) > limit:
            raise ApiError(413, msg, param="file", code="file_too_large")
    except ApiError:
        for f in uploads:
            f.close()
        raise
    return fields, upload, uploads


async def read_json(request: Request, limit: int) -> Any:
    ctype = request.headers.get("content-type", "application/json").lower()
    if "json" not in ctype:
        raise ApiError(400, f"send the request body as application/json, not {ctype}", code="invalid_content_type")
    chunks = []
    try:
        async for c in _limited(request, limit, _too_large_message("request body", limit)):
            chunks.append(c)
    except _TooLarge as e:
        raise ApiError(413, str(e), code="request_too_large") from None
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


# --------------------------------------------------------------------------------------------------------------
# Work done in worker slots
# --------------------------------------------------------------------------------------------------------------


def _encoded_duration(f: Any) -> float:
    """Seconds of an encoded file object from its header (0 when the header does not say); the position is
    kept. AudioError when libsndfile cannot open it."""
    import soundfile as sf

    pos = f.tell()
    try:
        info = sf.info(f)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot read the uploaded audio: {read_error(exc, f)}") from exc
    finally:
        f.seek(pos)
    if info.frames and info.frames > 0 and info.samplerate and info.samplerate > 0:
        return float(info.frames) / float(info.samplerate)
    return 0.0


def _too_long(seconds: float, limit: float, param: str) -> ApiError:
    return ApiError(400, f"the audio is {seconds:.1f} s long; this server takes at most {limit:g} s per request "
                         f"(--max-audio-seconds)", param=param, code="audio_too_long")


def transcription_work(state: ServerState, req: TranscriptionRequest, f: Any) -> Callable[[Job], Any]:
    def run(job: Job) -> Any:
        limit = state.cfg.max_audio_seconds
        audio: Any = f
        seconds = _encoded_duration(f)
        if seconds > limit:
            raise _too_long(seconds, limit, "file")
        if seconds <= 0:  # the header does not say: decode to find out
            audio = load_audio(f)
            seconds = len(audio) / SAMPLE_RATE
            if seconds > limit:
                raise _too_long(seconds, limit, "file")
        job.emit("started", seconds)
        kw = dict(req.gen, **job.generate_kwargs())
        m = req.served.model
        if req.prompt is not None:
            t = m.ask(audio, req.prompt, **kw)
        else:
            if req.hotwords is not None:
                kw["hotwords"] = req.hotwords
            t = m.transcribe(audio, timestamps=req.timestamps, language=req.language, **kw)
        return job.check_result(t)

    return run


def chat_work(state: ServerState, req: ChatRequest) -> Callable[[Job], Any]:
    def run(job: Job) -> Any:
        try:
            samples = load_audio(req.audio)
        except AudioError as e:
            raise ApiError(400, f"invalid audio: {e}", param="messages", code="invalid_audio") from None
        req.audio = b""  # the encoded bytes are no longer needed
        seconds = len(samples) / SAMPLE_RATE
        if seconds > state.cfg.max_audio_seconds:
            raise _too_long(seconds, state.cfg.max_audio_seconds, "messages")
        with state.sessions.session(req.served, audio_key(samples), samples) as s:
            job.emit("started", seconds)
            kw = dict(req.gen, **job.generate_kwargs())
            if req.instruction or req.system:
                t = s.ask(req.instruction or req.served.model.spec["default_instruction"], system=req.system, **kw)
            else:
                t = s.transcribe(**kw)
        return job.check_result(t)

    return run


# --------------------------------------------------------------------------------------------------------------
# Waiting for jobs
# --------------------------------------------------------------------------------------------------------------


async def _wait_disconnect(request: Request) -> None:
    """Returns when the client has gone (the body was read already, so receive() only reports that)."""
    while True:
        msg = await request.receive()
        if msg.get("type") == "http.disconnect":
            return


class Waiter:
    """A job's events as the request's coroutine sees them, with its deadline and the client's disconnect."""

    def __init__(self, state: ServerState, request: Request, job: Job) -> None:
        self.state = state
        self.job = job
        self.watcher: "asyncio.Future[None]" = asyncio.ensure_future(_wait_disconnect(request))

    async def next(self) -> Tuple[str, Any]:
        """The next event; raises ClientGone (client disconnected) or ApiError 504 (deadline), both after
        cancelling the job, and re-raises an error event's exception."""
        getter = asyncio.ensure_future(self.job.events.get())
        try:
            done, _ = await asyncio.wait({getter, self.watcher}, timeout=self.job.remaining(),
                                         return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            getter.cancel()
            raise
        if getter in done:
            kind, value = getter.result()
            if kind == "error":
                raise value
            return kind, value
        getter.cancel()
        self.job.cancel()
        if self.watcher in done:
            raise ClientGone()
        raise timeout_error(self.state.cfg.timeout)

    async def result(self) -> Any:
        while True:
            kind, value = await self.next()
            if kind == "done":
                return value

    async def started(self) -> float:
        while True:
            kind, value = await self.next()
            if kind == "started":
                return float(value)
            if kind == "done":  # cannot happen: a job announces its start first
                raise ApiError(500, "internal error: job finished before starting", code="internal_error")

    def close(self) -> None:
        self.watcher.cancel()
        if not self.job.finished.is_set():
            self.job.cancel()


def _fail(state: ServerState, rec: Record, exc: BaseException) -> ApiError:
    """The ApiError for ``exc``, recorded in ``rec``; unexpected exceptions are logged with their traceback."""
    e = api_error(exc)
    if e.status >= 500 and not isinstance(exc, ApiError):
        log.error("%s %s failed", rec.id, rec.route, exc_info=(type(exc), exc, exc.__traceback__))
    rec.status = e.status
    return e


# --------------------------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------------------------


class _ApiKey:
    """Pure ASGI middleware: every /v1/* request needs ``Authorization: Bearer KEY`` (not /health)."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.key = (state.cfg.api_key or "").encode()

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if self.key and scope.get("type") == "http" and (path == "/v1" or path.startswith("/v1/")):
            auth = b""
            for k, v in scope.get("headers", []):
                if k.lower() == b"authorization":
                    auth = v
                    break
            scheme, _, token = auth.strip().partition(b" ")
            if scheme.lower() != b"bearer" or not secrets.compare_digest(token.strip(), self.key):
                rec = Record(new_id("req_"), f"{scope.get('method', '')} {path}", time.monotonic(), status=401)
                self.state.log(rec)
                e = ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                             code="invalid_api_key", headers={"www-authenticate": "Bearer"})
                await error_response(e, rec.id)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The browser page (GET /): static files shipped in the package, served as they are (no template, no build step).
UI_DIR = Path(__file__).resolve().parent / "ui"
UI_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
            "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
            "/ui/app.js": ("app.js", "text/javascript; charset=utf-8")}
# The page runs only its own script and talks only to this server; audio plays from blob: URLs of chosen files.
UI_HEADERS = {"cache-control": "no-cache", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
              "content-security-policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
                                         "object-src 'none'; base-uri 'none'; form-action 'self'; "
                                         "frame-ancestors 'none'"}


def add_ui_routes(app: FastAPI) -> None:
    """GET / and its two assets; a missing file (a broken install) is logged and leaves the page off."""
    files: Dict[str, Tuple[bytes, str]] = {}
    for route, (name, media) in UI_FILES.items():
        try:
            files[route] = ((UI_DIR / name).read_bytes(), media)
        except OSError as e:
            log.error("the browser page is off: %s is missing from the installed package (%s)", name, e)
            return

    async def page(request: Request) -> Response:
        body, media = files[request.url.path]
        return Response(body, media_type=media, headers=UI_HEADERS)  # uvicorn sends no body to a HEAD

    for route in files:
        app.add_api_route(route, page, methods=["GET", "HEAD"], include_in_schema=False)


def create_app(cfg: ServerConfig, models: Optional[List[ServedModel]] = None) -> FastAPI:
    """The server's ASGI application; ``models`` are loaded from ``cfg.models`` when not given."""
    state = ServerState(cfg, models if models is not None else load_models(cfg))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="crispmoss", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.crispmoss = state

    def handled(rec: Record, e: ApiError) -> JSONResponse:
        rec.status = e.status
        state.log(rec)
        return error_response(e, rec.id)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return handled(state.record(request), exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and request.url.path == "/" and not cfg.ui:
            e = ApiError(404, "the browser page is turned off on this server (--no-ui); the API is under /v1/",
                         code="not_found")
        elif exc.status_code == 404:
            e = ApiError(404, f"no route {request.method} {request.url.path} on this server (see the README's "
                              f"Server section)", code="not_found")
        elif exc.status_code == 405:
            e = ApiError(405, f"method {request.method} is not allowed on {request.url.path}",
                         code="method_not_allowed")
        else:
            e = ApiError(exc.status_code, str(exc.detail))
        return handled(state.record(request), e)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return handled(state.record(request), ApiError(400, f"invalid request: {exc.errors()}"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        rec = state.record(request)
        return handled(rec, _fail(state, rec, exc))

    if cfg.ui:
        add_ui_routes(app)

    @app.get("/health")
    async def health() -> Dict[str, Any]:
        busy, queued = state.scheduler.stats()
        return {"status": "ok", "busy_slots": busy, "queued": queued}

    @app.get("/v1/models")
    async def list_models() -> Dict[str, Any]:
        return {"object": "list", "data": [m.card() for m in state.registry.models]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> Dict[str, Any]:
        return state.registry.get(model_id).card()

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        rec = state.record(request)
        uploads: List[Any] = []
        owned = False
        waiter: Optional[Waiter] = None
        job: Optional[Job] = None
        try:
            fields, upload, uploads = await read_multipart(request, cfg.max_upload_bytes)
            names = fields.get("model") or [None]
            served = state.registry.get(names[0])
            rec.model = served.id
            if upload is None:
                raise ApiError(400, "file is required: the audio file to transcribe", param="file",
                               code="missing_file")
            req = parse_transcription(fields, served, cfg.max_new_tokens)
            job = Job(transcription_work(state, req, upload.file), loop=asyncio.get_running_loop(),
                      request_id=rec.id, timeout=cfg.timeout, stream=req.stream, arrival=rec.t0)
            for f in uploads:
                job.cleanup.append(f.close)
            state.scheduler.submit(job)
            owned = True
            waiter = Waiter(state, request, job)
            if req.stream:
                rec.audio_s = await waiter.started()
                response = StreamingResponse(_transcription_events(state, rec, waiter, req),
                                             media_type="text/event-stream",
                                             headers={"cache-control": "no-cache", "x-request-id": rec.id})
                rec.deferred = True
                waiter = None  # the stream owns it now
                return response
            t = await waiter.result()
            rec.add_result(t)
            rec.add_job(job)
            body, media = transcription_body(req, t)
            rec.status = 200
            if isinstance(body, dict):
                return JSONResponse(body, headers={"x-request-id": rec.id})
            return Response(body, media_type=media, headers={"x-request-id": rec.id})
        except ClientGone:
            rec.status = 499
            return Response(status_code=499)
        except Exception as exc:  # noqa: BLE001 - every failure is an OpenAI error body
            return error_response(_fail(state, rec, exc), rec.id)
        finally:
            if waiter is not None:
                waiter.close()
            if not owned:
                for f in uploads:
                    f.close()
            if not rec.deferred:
                state.log_when_done(rec, job if owned else None)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        rec = state.record(request)
        waiter: Optional[Waiter] = None
        job: Optional[Job] = None
        submitted = False
        try:
            body = await read_json(request, cfg.max_upload_bytes * 4 // 3 + _MiB)
            served = state.registry.get(body.get("model"))
            rec.model = served.id
            req = parse_chat(body, served, cfg.max_new_tokens, cfg.max_upload_bytes)
            del body
            job = Job(chat_work(state, req), loop=asyncio.get_running_loop(), request_id=rec.id,
                      timeout=cfg.timeout, stream=req.stream, arrival=rec.t0)
            state.scheduler.submit(job)
            submitted = True
            waiter = Waiter(state, request, job)
            cid = "chatcmpl-" + rec.id.replace("req_", "")
            created = now()
            if req.stream:
                rec.audio_s = await waiter.started()
                response = StreamingResponse(_chat_events(state, rec, waiter, req, cid, created),
                                             media_type="text/event-stream",
                                             headers={"cache-control": "no-cache", "x-request-id": rec.id})
                rec.deferred = True
                waiter = None
                return response
            t = await waiter.result()
            rec.add_result(t)
            rec.add_job(job)
            rec.status = 200
            return JSONResponse(chat_body(cid, created, served.id, t), headers={"x-request-id": rec.id})
        except ClientGone:
            rec.status = 499
            return Response(status_code=499)
        except Exception as exc:  # noqa: BLE001
            return error_response(_fail(state, rec, exc), rec.id)
        finally:
            if waiter is not None:
                waiter.close()
            if not rec.deferred:
                state.log_when_done(rec, job if submitted else None)

    app.add_middleware(_ApiKey, state=state)
    return app


async def _relay(state: ServerState, rec: Record, waiter: Waiter, final_text: Callable[[Any], str],
                 delta_event: Callable[[str], Any], done_events: Callable[[Any], List[str]],
                 head: Sequence[str] = ()) -> AsyncIterator[str]:
    """The server-sent events of one streamed request (transcription or chat): ``head``, then each text piece as
    ``delta_event(piece)``; when the job is done, whatever the final text adds to the pieces streamed so far, then
    ``done_events(result)``. A failure becomes an error event; a client gone ends it quietly (499)."""
    deltas = DeltaText()
    try:
        for ev in head:
            yield ev
        while True:
            try:
                kind, value = await waiter.next()
            except ClientGone:
                rec.status = 499
                return
            except Exception as exc:  # noqa: BLE001 - the error goes into the stream
                yield _sse(_fail(state, rec, exc).body())
                return
            if kind == "delta":
                d = deltas.push(value)
                if d:
                    yield _sse(delta_event(d))
            elif kind == "done":
                rest, ok = deltas.finish(final_text(value))
                if not ok:
                    rec.note = "stream-text-mismatch"
                    log.warning("%s: streamed pieces disagree with the final text", rec.id)
                if rest:
                    yield _sse(delta_event(rest))
                rec.add_result(value)
                rec.add_job(waiter.job)
                rec.status = 200
                for ev in done_events(value):
                    yield ev
                return
    finally:
        waiter.close()
        state.log_when_done(rec, waiter.job)


def _transcription_events(state: ServerState, rec: Record, waiter: Waiter,
                          req: TranscriptionRequest) -> AsyncIterator[str]:
    def done_events(value: Any) -> List[str]:
        text, timed = answer_text(value, req.timestamps)
        done: Dict[str, Any] = {"type": "transcript.text.done", "text": text, "logprobs": None,
                                "usage": token_usage(value)}
        if req.response_format == "verbose_json":
            done.update(verbose_fields(req, value, timed))
        return [_sse(done)]

    # the deltas are the model's own text (MOSS-Transcribe-Diarize: with its [start][S01]…[end] markup); the done
    # event's text is answer_text's (the segment texts joined, for timed or speaker segments)
    return _relay(state, rec, waiter, lambda value: value.text,
                  lambda d: {"type": "transcript.text.delta", "delta": d, "logprobs": None}, done_events)


def _chat_events(state: ServerState, rec: Record, waiter: Waiter, req: ChatRequest, cid: str,
                 created: int) -> AsyncIterator[str]:
    mid = req.served.id
    wu = req.include_usage

    def done_events(value: Any) -> List[str]:
        out = [_sse(chat_chunk(cid, created, mid, {}, finish_reason(value), with_usage=wu))]
        if wu:
            out.append(_sse(chat_chunk(cid, created, mid, None, usage=chat_usage(value), with_usage=True)))
        return out + ["data: [DONE]\n\n"]

    head = [_sse(chat_chunk(cid, created, mid, {"role": "assistant", "content": "", "refusal": None},
                            with_usage=wu))]
    return _relay(state, rec, waiter, lambda value: value.text,
                  lambda d: chat_chunk(cid, created, mid, {"content": d}, with_usage=wu), done_events, head)


# --------------------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def setup_logging() -> None:
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s crispmoss: %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(cfg: ServerConfig) -> int:
    """Loads the models and serves them until interrupted; returns the exit code."""
    import uvicorn

    setup_logging()
    models = load_models(cfg)
    app = create_app(cfg, models)
    for m in models:
        log.info("serving %s (%s, %s) from %s", m.id, m.arch, m.model.backend, m.path)
    if not _is_loopback(cfg.host) and not cfg.api_key:
        log.warning("listening on %s without --api-key: anyone who can reach this address can use the server",
                    cfg.host)
    log.info("max batch %d, queue %d, upload %g MiB, audio %g s, timeout %g s, session cache %d",
             app.state.crispmoss.max_batch, cfg.max_queue, cfg.max_upload_mb, cfg.max_audio_seconds, cfg.timeout, cfg.session_cache)
    if cfg.ui:
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        log.info("a page to try it in a browser: http://%s:%d/ (--no-ui turns it off)", host, cfg.port)
    state: ServerState = app.state.crispmoss

    class Server(uvicorn.Server):
        async def shutdown(self, *args: Any, **kwargs: Any) -> None:
            state.close()  # requests in flight end now (503) instead of holding up the graceful shutdown
            await super().shutdown(*args, **kwargs)

    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info", access_log=False, lifespan="on",
                            server_header=False, timeout_graceful_shutdown=5)
    server = Server(config)
    server.run()
    return 0 if server.started else 1


__all__ = ["ServerState", "create_app", "serve", "setup_logging"]
