"""Settings of ``crispmoss serve`` and their command-line options (no FastAPI needed to build the parser)."""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from ..backends import add_placement_args
from ..hub import example_names

DEFAULT_PORT = 8000


@dataclass
class ServerConfig:
    """Everything the server needs besides the loaded models. Limits are per request unless said otherwise."""

    models: List[str] = field(default_factory=list)  # paths or published names (``-m``)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: Optional[str] = None  # every /v1/* route then needs "Authorization: Bearer KEY"
    max_batch: Optional[int] = None  # requests decoded at once (worker threads, sequences of the model's engine);
    # None: the models' own batch size (32, fewer where memory is short)
    max_queue: int = 64  # requests waiting beyond max_batch; more get 429
    max_upload_mb: float = 25.0  # encoded audio per request (OpenAI's limit); larger uploads get 413
    max_audio_seconds: float = 3600.0  # decoded audio length per request; longer gets 400
    timeout: float = 600.0  # seconds from arrival to the last byte of the answer; later gets 504
    session_cache: int = 4  # idle chat sessions (encoder output + KV prefix) kept for follow-ups, LRU
    threads: Optional[int] = None  # CPU threads per model (default: all cores)
    max_new_tokens: Optional[int] = None  # default generation cap (default: the model's own, 512 / 1024)
    backend: str = "auto"
    device: int = 0
    gpu_layers: int = -1
    head_type: Optional[str] = None
    log_requests: bool = True
    ui: bool = True  # GET / serves the browser page (crispmoss/server/ui/); --no-ui: 404

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def _arg_parser(cast: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that converts with ``cast`` and accepts what ``ok`` accepts, else says ``expected``."""
    def parse(s: str) -> Any:
        try:
            v = cast(s)
        except ValueError:
            v = None
        if v is None or not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}")
        return v
    return parse


_positive_int = _arg_parser(int, lambda v: v >= 1, "a positive integer")
_nonneg_int = _arg_parser(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _arg_parser(float, lambda v: v > 0 and math.isfinite(v), "a positive number")


def _port(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {s!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {s!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``crispmoss serve``."""
    d = ServerConfig()
    p.add_argument("-m", "--model", action="append", required=True, metavar="MODEL",
                   help=f"GGUF file or published name ({example_names()}, ...); repeat for several. "
                        "Listed under its published name, else the file stem")
    p.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}: this machine only)")
    p.add_argument("--port", type=_port, default=d.port, help=f"TCP port (default {d.port})")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every /v1/* route (default: $CRISPMOSS_API_KEY, "
                        "else no key)")
    p.add_argument("--max-batch", type=_positive_int, default=None, metavar="N",
                   help="requests decoded together, as sequences of the model's engine (default: the engine's "
                        "batch size, 32 or fewer when memory is short)")
    p.add_argument("--max-queue", type=_nonneg_int, default=d.max_queue, metavar="N",
                   help=f"requests waiting beyond --max-batch; more are refused with 429 (default {d.max_queue})")
    p.add_argument("--max-upload-mb", type=_positive_float, default=d.max_upload_mb, metavar="MB",
                   help=f"largest encoded audio per request, MiB (default {d.max_upload_mb:g}); larger: 413")
    p.add_argument("--max-audio-seconds", type=_positive_float, default=d.max_audio_seconds, metavar="S",
                   help=f"longest audio per request (default {d.max_audio_seconds:g}); longer: 400")
    p.add_argument("--timeout", type=_positive_float, default=d.timeout, metavar="S",
                   help=f"seconds per request from arrival to answer (default {d.timeout:g}); later: 504")
    p.add_argument("--session-cache", type=_nonneg_int, default=d.session_cache, metavar="N",
                   help=f"chat sessions (encoder output + KV prefix) kept for follow-up questions on the same "
                        f"audio, least recently used dropped first (default {d.session_cache}; 0 = none)")
    p.add_argument("-t", "--threads", type=_nonneg_int, default=None, metavar="N",
                   help="CPU threads per model (default: all cores)")
    p.add_argument("--max-new-tokens", type=_nonneg_int, default=None, metavar="N",
                   help="default generation cap of a request that sets none (default: the model's own, 512 "
                        "MOSS-Transcribe, 1024 MOSS-Audio)")
    add_placement_args(p, device_type=_nonneg_int)
    p.add_argument("--no-ui", action="store_true",
                   help="do not serve the browser page on / (the API only; / then answers 404)")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-request log lines")


def from_args(args: argparse.Namespace) -> ServerConfig:
    """A ServerConfig from parsed ``crispmoss serve`` options."""
    key = args.api_key if args.api_key is not None else (os.environ.get("CRISPMOSS_API_KEY") or None)
    return ServerConfig(models=list(args.model), host=args.host, port=args.port, api_key=key or None,
                        max_batch=args.max_batch, max_queue=args.max_queue, max_upload_mb=args.max_upload_mb,
                        max_audio_seconds=args.max_audio_seconds, timeout=args.timeout,
                        session_cache=args.session_cache, threads=args.threads, max_new_tokens=args.max_new_tokens,
                        backend=args.backend, device=args.device, gpu_layers=args.gpu_layers,
                        head_type=args.head_type, log_requests=not args.quiet, ui=not args.no_ui)


__all__ = ["DEFAULT_PORT", "ServerConfig", "add_arguments", "from_args"]
