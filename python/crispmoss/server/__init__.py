"""``crispmoss serve``: an OpenAI-compatible speech server (optional extra: ``pip install "crispmoss[server]"``).

Endpoints: ``POST /v1/audio/transcriptions`` (multipart, both models), ``POST /v1/chat/completions`` (MOSS-Audio,
``input_audio`` parts), ``GET /v1/models``, ``GET /health``, and a page to try them in a browser on ``GET /``
(``ui/``; off with ``--no-ui``). Every request runs in a worker thread on the public ``Model`` / ``Session`` API,
so concurrent requests are decoded together by the library's engine, up to ``--max-batch`` at once with a bounded
queue behind them.

This package imports FastAPI only in :mod:`crispmoss.server.app`; :func:`missing_dependencies` says what is
absent, and ``create_app`` / ``serve`` are imported from there on first use.
"""
from __future__ import annotations

import importlib.util
from typing import Any, List

from .config import ServerConfig

# import name -> the distribution that provides it (the ``server`` extra of pyproject.toml)
REQUIRED = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def missing_dependencies() -> List[str]:
    """The distributions of the ``server`` extra that are not installed."""
    out = []
    for mod, dist in REQUIRED.items():
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(dist)
    return out


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve", "ServerState"):
        from . import app

        return getattr(app, name)
    raise AttributeError(name)


__all__ = ["REQUIRED", "ServerConfig", "create_app", "missing_dependencies", "serve"]
