"""Published GGUF files by name (the keys of :data:`MODELS`, e.g. with ``:f16``), fetched from the Hugging Face Hub.

A name is ``<model>[:<type>]``; the type defaults to ``q4_k``. Files land in the Hugging Face cache
(``HF_HUB_CACHE`` / ``HF_HOME``), so a second use is offline. ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read at
call time, not at import time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from .errors import ModelError

DEFAULT_TYPE = "q4_k"


@dataclass(frozen=True)
class PublishedModel:
    """One model's GGUF repository on the Hub and the quantisations published there."""

    repo_id: str
    file_pattern: str  # with "{type}"
    types: Tuple[str, ...]
    arch: str
    aliases: Tuple[str, ...] = ()  # longer spellings people will type (the architecture name is one too)

    def filename(self, type_: str) -> str:
        return self.file_pattern.format(type=type_)


# The one table of published names.
MODELS: Dict[str, PublishedModel] = {
    "moss-transcribe": PublishedModel("cstr/MOSS-Transcribe-preview-2B-GGUF", "moss-transcribe-preview-2b-{type}.gguf",
                                      ("f16", "q8_0", "q4_k"), "moss_transcribe",
                                      ("moss-transcribe-preview-2b", "moss-transcribe-preview")),
    "moss-audio": PublishedModel("cstr/MOSS-Audio-4B-Instruct-GGUF", "moss-audio-4b-instruct-{type}.gguf",
                                 ("f16", "q4_k"), "moss_audio", ("moss-audio-4b-instruct", "moss-audio-4b")),
    # MOSS-Transcribe-Diarize 0.9B: q4_k (the default) quantizes only the decoder's matrices; the encoder, adaptor
    # and tied embedding stay F16 (~1.2 GB), q8_0 the same with Q8_0, f16 everything (~1.8 GB)
    "moss-diarize": PublishedModel("cstr/MOSS-Transcribe-Diarize-GGUF", "moss-transcribe-diarize-0.9b-{type}.gguf",
                                   ("f16", "q8_0", "q4_k"), "moss_transcribe_diarize",
                                   ("moss-transcribe-diarize", "moss-transcribe-diarize-0.9b")),
}

ALIASES = {alias: key for key, m in MODELS.items() for alias in (*m.aliases, m.arch)}


def example_names() -> str:
    """The published names for help texts: "a, b, ..." with one typed example."""
    names = list(MODELS)
    typed = next(f"{k}:{t}" for k, m in reversed(MODELS.items()) for t in m.types if t != DEFAULT_TYPE)
    return ", ".join(names + [typed])


def available() -> List[str]:
    """Every ``name:type`` that :func:`resolve` can fetch."""
    return [f"{name}:{t}" for name, m in MODELS.items() for t in m.types]


def parse_name(name: str) -> Optional[Tuple[str, str]]:
    """``(model, type)`` when ``name`` is a published model name, else None (it is then treated as a path)."""
    base, _, type_ = name.strip().partition(":")
    key = base.lower()
    key = ALIASES.get(key, key)
    if key not in MODELS:
        return None
    t = (type_ or DEFAULT_TYPE).lower().replace("-", "_")
    if t not in MODELS[key].types:
        raise ModelError(f"{base} is published as {', '.join(MODELS[key].types)}, not {type_!r}")
    return key, t


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def download(name: str, *, cache_dir: Optional[str] = None, progress: bool = True) -> str:
    """Fetches the GGUF for ``name`` (``<published name>[:<type>]``) into the Hugging Face cache; returns its path.

    Raises ModelError for an unknown name or type, when the Hub cannot be reached and the file is not cached,
    and when ``HF_HUB_OFFLINE`` is set and the file is not cached.
    """
    parsed = parse_name(name)
    if parsed is None:
        raise ModelError(f"unknown model name {name!r}; published: {', '.join(available())}")
    key, type_ = parsed
    spec = MODELS[key]
    filename = spec.filename(type_)
    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
    endpoint = os.environ.get("HF_ENDPOINT") or None
    cache = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars, are_progress_bars_disabled
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ModelError(f"fetching {name} needs huggingface_hub (pip install huggingface_hub): {e}") from e
    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        return str(hf_hub_download(spec.repo_id, filename, cache_dir=cache, endpoint=endpoint,
                                   local_files_only=offline))
    except Exception as e:  # every hub failure becomes one clear ModelError
        where = endpoint or "https://huggingface.co"
        if offline:
            raise ModelError(f"{key}:{type_} ({spec.repo_id}/{filename}) is not in the Hugging Face cache and "
                             f"HF_HUB_OFFLINE is set; download it once online or pass a local .gguf path") from e
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot fetch {key}:{type_} ({spec.repo_id}/{filename}) from {where}: {reason}; "
                         f"check the network or pass a local .gguf path") from e
    finally:
        if not progress and not was_disabled:
            enable_progress_bars()


def resolve(model: Union[str, "os.PathLike[str]"], *, cache_dir: Optional[str] = None, progress: bool = True) -> str:
    """A local GGUF path for ``model``: an existing path as it is, a published name fetched (or found cached)."""
    path = os.fspath(model)
    if os.path.exists(path):
        if os.path.isdir(path):
            raise ModelError(f"{path} is a directory; pass a .gguf file (convert a Hugging Face folder with "
                             f"`crispmoss convert`)")
        return path
    looks_like_path = os.sep in path or (os.altsep and os.altsep in path) or path.lower().endswith(".gguf")
    if not looks_like_path and parse_name(path) is not None:
        return download(path, cache_dir=cache_dir, progress=progress)
    raise ModelError(f"{path}: no such file (published model names: {', '.join(MODELS)}, "
                     f"optionally with :type, e.g. {example_names().split(', ')[-1]})")


__all__ = ["DEFAULT_TYPE", "MODELS", "PublishedModel", "available", "download", "parse_name", "resolve"]
