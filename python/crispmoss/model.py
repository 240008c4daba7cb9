"""Model and Session: the Python face of the C++ core.

``Model`` is one GGUF file, loaded once and shared by any number of sessions (also from several threads).
``Session`` is one clip: its encoder output and a KV cache that later requests reuse, so a second question
on the same audio costs only the tokens of that question.
"""
from __future__ import annotations

import math
import numbers
import os
import queue
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .audio import SAMPLE_RATE, AudioInput, load_audio
from .loopfix import collapse_loops
from .errors import InputError, ModelError
from .results import Segment, StreamJoiner, Transcript, diarized_segments, parse_timed_lines

PieceCallback = Callable[[str], Optional[bool]]

# Sampling presets. "official" is what the MOSS-Audio scripts (hf_inference.py, infer.py, app.py) use;
# their serving guide uses greedy decoding for transcription, which is our default.
SAMPLING_PRESETS: Dict[str, Dict[str, float]] = {
    "greedy": {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0},
    "official": {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0},
}
OFFICIAL_SAMPLING = {k: SAMPLING_PRESETS["official"][k] for k in ("temperature", "top_p", "top_k")}

# Prompt positions per prefill graph: a long prompt is prefilled in pieces between the decode steps of the
# sequences already running, so it never stalls them for more than one piece. Part of a sequence's arithmetic
# (results are bit-identical for any batch, but not across different piece sizes), so it is fixed.
PREFILL_CHUNK = 128
# Where the decoder's prefill runs on the AMX tiles (Model.placement["amx_prefill_weights"] > 0), each piece
# dequantizes every LM weight once (cpu/amx_dequant.h): pieces of 256 halve that cost per prompt position (an 11 s
# clip's ~153-position prompt is one piece), and one such piece still takes less time than a 128-position piece
# on the avx512 kernels, so running sequences are stalled no longer than before (benchmarks/RESULTS.md).
PREFILL_CHUNK_AMX = 256
# Most sequences one decode step takes through our matrix-vector kernels in one graph (cpu/gemv.h:
# kMaxDecodeRows): a 10-minute MOSS-Transcribe recording's 23 passes share every step.
MAX_BATCH_ROWS = 32

_GEN_KEYS = ("max_new_tokens", "sampling", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed",
             "timeout", "callback", "collapse_loops")


# --------------------------------------------------------------------------------------------------------------
# Generation options
# --------------------------------------------------------------------------------------------------------------


def _normalize(prompt: Optional[str]) -> str:
    """Prompt text as the official (Hugging Face) Qwen tokenizer sees it: NFC-normalised."""
    return unicodedata.normalize("NFC", prompt) if prompt else ""


@dataclass(frozen=True)
class Sampling:
    """A resolved sampler configuration (see :func:`resolve_sampling`)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: Optional[int] = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputError(f"{name} must be a number, got {v!r}")
    f = float(v)
    if math.isnan(f):
        raise InputError(f"{name} must be a number, got NaN")
    return f


def _integer(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise InputError(f"{name} must be an integer, got {v!r}")
    return int(v)


def _batch_size(v: Any) -> int:
    n = _integer("batch_size", v)
    if not 1 <= n <= 1024:
        raise InputError(f"batch_size must be in 1..1024, got {n}")
    return n


def available_memory() -> int:
    """Bytes of memory available for new allocations (MemAvailable on Linux; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def resolve_sampling(sampling: Optional[str] = None, *, temperature: Optional[float] = None,
                     top_k: Optional[int] = None, top_p: Optional[float] = None, min_p: Optional[float] = None,
                     repetition_penalty: Optional[float] = None, seed: Optional[int] = None) -> Sampling:
    """Sampler settings from a preset (``"greedy"``, the default, or ``"official"``: temperature 1.0, top-k 50,
    top-p 1.0 as in the MOSS-Audio scripts) with explicit values overriding it.

    With temperature > 0 and no ``seed`` a random seed is drawn; it is reported in ``Transcript.seed`` so the
    output can be reproduced. Raises InputError for an unknown preset or an out-of-range value.
    """
    name = "greedy" if sampling is None else str(sampling).lower()
    if name not in SAMPLING_PRESETS:
        raise InputError(f"unknown sampling preset {sampling!r} (choose from {', '.join(SAMPLING_PRESETS)})")
    p = dict(SAMPLING_PRESETS[name])
    for key, v in (("temperature", temperature), ("top_p", top_p), ("min_p", min_p),
                   ("repetition_penalty", repetition_penalty)):
        if v is not None:
            p[key] = _number(key, v)
    k = int(p["top_k"]) if top_k is None else _integer("top_k", top_k)
    t, tp, mp, rp = p["temperature"], p["top_p"], p["min_p"], p["repetition_penalty"]
    # Beyond what the core's float / int hold; the ranges are checked in C++.
    if not math.isfinite(t) or abs(t) > 1e30:
        raise InputError(f"temperature must be >= 0, got {t}")
    if abs(k) >= 2 ** 31:
        raise InputError(f"top_k must be >= 0 (0 = off), got {k}")
    _core.check_generate(temperature=t, top_k=k, top_p=tp, min_p=mp, repetition_penalty=rp)
    if seed is not None:
        seed = _integer("seed", seed)
        if not 0 <= seed < 2 ** 64:
            raise InputError(f"seed must be in [0, 2**64), got {seed}")
    elif t > 0:
        seed = secrets.randbits(63)
    return Sampling(t, k, tp, mp, rp, seed if t > 0 else None)


@dataclass(frozen=True)
class GenerateOptions:
    """Everything a request needs besides the prompt; built by :meth:`Model.options`."""

    max_new_tokens: int
    sampling: Sampling
    timeout: Optional[float] = None
    callback: Optional[PieceCallback] = None
    collapse_loops: bool = False  # CrispASR-style repetition clean-up of the text (tokens stay raw)
    # max_new_tokens was left to the model's default: a pass longer than the model's single-pass limit
    # (max_pass_seconds raised, e.g. math.inf) gets proportionally more (Model.pass_max_new_tokens)
    scale_max_new_tokens: bool = False


def _resolve(model: "Model", given: Dict[str, Any]) -> GenerateOptions:
    """The options of a request method called with the keyword parameters in ``given`` (its ``locals()``): its
    ``options`` if it got one, else :meth:`Model.options` of its generation keywords; both at once is InputError."""
    options = given["options"]
    kwargs = {k: given[k] for k in _GEN_KEYS}
    if options is None:
        return model.options(**kwargs)
    if not isinstance(options, GenerateOptions):
        raise InputError(f"options must be a GenerateOptions (from Model.options), got {type(options).__name__}")
    if any(v is not None and v is not False for v in kwargs.values()):
        raise InputError("pass either options= or generation keyword arguments, not both")
    return options


# --------------------------------------------------------------------------------------------------------------
# Transcription instructions
# --------------------------------------------------------------------------------------------------------------

def language_name(language: str) -> str:
    """The English name of ``language`` (an ISO 639 code such as "de" or a name such as "german"); InputError if
    it is not a plausible language name. The table lives in the C++ core (cpp/models/registry.cpp)."""
    return _core.language_name(language)


def transcription_instruction(arch: str, language: Optional[str], timestamps: bool) -> str:
    """The instruction a transcription request to a model of architecture ``arch`` sends ("" = the model's official
    default), as the model declares it in C++ (``ModelSpec::transcription_instruction``).

    A model that takes instructions gets its official instruction for no hint or English, its official Chinese one
    for Chinese, and "Please transcribe this audio in <Language>." otherwise; a transcription-only model accepts
    the languages it covers as a no-op hint and raises InputError for others, and for ``timestamps``.
    """
    return _core.transcription_instruction(arch, language, bool(timestamps))


def _hotwords(model: "Model", hotwords: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    """``hotwords`` checked: None, or a list/tuple of non-empty strings for a model that takes them (``spec``
    "hotwords": MOSS-Transcribe-Diarize); InputError otherwise (a bare string too: the CLI splits "a, b")."""
    if hotwords is None:
        return None
    if isinstance(hotwords, str):
        raise InputError("hotwords must be a list of strings, not one string (split \"a, b\" into [\"a\", \"b\"])")
    if not isinstance(hotwords, (list, tuple)):
        raise InputError(f"hotwords must be a list of strings, got {type(hotwords).__name__}")
    for w in hotwords:
        if not isinstance(w, str):
            raise InputError(f"each hotword must be a str, got {type(w).__name__}")
        if not w.strip():
            raise InputError("a hotword is empty")
    if hotwords and not model.spec.get("hotwords"):
        takes = [m["name"] for m in _core.models() if m.get("hotwords")]
        raise InputError(f"{model.spec['name']} does not take hotwords; use a {' or '.join(takes)} model for hotwords")
    return tuple(_normalize(w) for w in hotwords) or None


# --------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------

class Model:
    """A MOSS-Transcribe or MOSS-Audio GGUF model, mmapped once and shared by all its sessions.

    ``model`` is a path to a .gguf file or a published name (a key of ``crispmoss.hub.MODELS``) with an
    optional ``:<type>`` (default q4_k; ``crispmoss.hub.available()`` lists them), fetched once into the
    Hugging Face cache. ``n_threads`` defaults to all cores. ``kv_type`` ("f16" or "f32") is the KV-cache
    precision; ``mel_bf16`` rounds the log-mel to bfloat16 as the official processors do.

    ``backend`` is "auto" (the first GPU a compiled-in GPU backend finds, else the CPU with a one-time
    notice), "cpu", "cuda" or "metal"; ``device`` picks among that backend's GPUs. ``n_gpu_layers`` LM layers
    (the last ones) keep their weights and KV cache on the GPU, copied there once at load; -1 (default)
    offloads everything, encoder included. The rest stays mmapped on the host and runs on the CPU.
    A backend this build lacks raises ModelError naming it (see ``crispmoss.system_info()``).

    ``batch_size`` caps how many sequences the model's engine decodes together (requests of all threads using this
    Model, the passes of long audio, :meth:`transcribe_many`); more wait for a free slot. Default: 32 (the rows one
    decode step takes through our kernels in one graph, reading every weight once), lowered so that that many
    passes of the model's single-pass length fit in half of the memory available now (see :meth:`slot_bytes`).
    A larger ``batch_size`` works (steps of more than 32 sequences run as several graphs) but reads the weights
    again for each further 32.

    ``head_type`` ("q8_0", ...; default: as stored) computes the output head from a copy of that type made at
    load. For MOSS-Transcribe, whose head is the tied F16 embedding, "q8_0" reads about half the head's bytes
    per generated token (decode ~20 % faster on CPU); the F16 table then serves only embedding lookups and its
    pages are released, so peak memory drops rather than grows (see benchmarks/RESULTS.md). Off by default: the
    logits move slightly (cosine ~0.99999), so near-ties can resolve differently than the official model.

    Raises ModelError for a missing, unreadable or unsupported model file.
    """

    def __init__(self, model: Union[str, "os.PathLike[str]"], n_threads: Optional[int] = None, *,
                 kv_type: str = "f16", mel_bf16: bool = True, cache_dir: Optional[str] = None,
                 progress: bool = True, backend: str = "auto", device: int = 0, n_gpu_layers: int = -1,
                 head_type: Optional[str] = None, batch_size: Optional[int] = None) -> None:
        from .backends import check_backend, notice_once
        from .hub import resolve

        backend = check_backend(backend)
        device = _integer("device", device)
        n_gpu_layers = _integer("n_gpu_layers", n_gpu_layers)
        if device < 0:
            raise InputError(f"device must be >= 0, got {device}")
        if n_gpu_layers < -1:
            raise InputError(f"n_gpu_layers must be >= -1 (-1 = all), got {n_gpu_layers}")

        if n_threads is not None:
            n_threads = _integer("n_threads", n_threads)
            if n_threads < 0:
                raise InputError(f"n_threads must be >= 0 (0 = all cores), got {n_threads}")
        if kv_type not in ("f16", "f32"):
            raise InputError(f"kv_type must be 'f16' or 'f32', got {kv_type!r}")
        self.name = os.fspath(model)
        self.path = resolve(model, cache_dir=cache_dir, progress=progress)
        self._core = _core.Model(self.path, backend=backend, device=device, n_gpu_layers=n_gpu_layers,
                                 head_type=head_type or "")
        self.spec: Dict[str, Any] = dict(self._core.spec)
        self.placement: Dict[str, Any] = dict(self._core.placement)
        notice_once(self.placement.pop("notice"))
        self.n_threads = int(n_threads or 0)
        self.kv_type = kv_type
        self.mel_bf16 = bool(mel_bf16)
        self.batch_size = self.default_batch_size() if batch_size is None else _batch_size(batch_size)
        # The engine: one worker thread that runs encoders, prefill chunks and batched decode steps for every
        # session of this Model.
        self.prefill_chunk = PREFILL_CHUNK_AMX if self.placement.get("amx_prefill_weights") else PREFILL_CHUNK
        self._core.engine(self.n_threads, max_batch=self.batch_size, prefill_chunk=self.prefill_chunk)

    # --- properties -----------------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """Where the model runs: "cpu", or the GPU backend holding (part of) it, e.g. "cuda"."""
        return self.placement["backend"]

    @property
    def arch(self) -> str:
        """The GGUF architecture (one of ``[s["arch"] for s in crispmoss._core.models()]``)."""
        return self._core.arch

    @property
    def accepts_instructions(self) -> bool:
        """Whether the model answers free-form prompts (MOSS-Audio) or only transcribes (MOSS-Transcribe)."""
        return self._core.accepts_instructions

    @property
    def n_ctx(self) -> int:
        """The decoder's context length in tokens (prompt + answer)."""
        return self._core.n_ctx_train

    @property
    def default_max_new_tokens(self) -> int:
        """The official inference code's default, as the model declares it (512 MOSS-Transcribe, 1024 MOSS-Audio,
        2048 MOSS-Transcribe-Diarize)."""
        return int(self.spec["max_new_tokens"])

    @property
    def max_pass_seconds(self) -> float:
        """Audio longer than this is transcribed in several passes (see crispmoss.longform); the model declares it
        (30 s MOSS-Transcribe, 120 s MOSS-Audio, 240 s MOSS-Transcribe-Diarize)."""
        return float(self.spec["pass_seconds"])

    def slot_bytes(self, pass_seconds: Optional[float] = None, max_new_tokens: Optional[int] = None) -> int:
        """Memory one decoding sequence holds while it runs: its KV cache for the prompt of a ``pass_seconds`` clip
        (default: the single-pass limit) plus ``max_new_tokens`` (default: the model's), allocated in steps of
        256 positions, plus the clip's samples, mel and encoder output. Compute buffers are the engine's, shared
        by all sequences, and not counted."""
        seconds = self.max_pass_seconds if pass_seconds is None else float(pass_seconds)
        new = self.default_max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        mel = self._core.mel
        samples = int(seconds * mel["sample_rate"])
        frames = samples // mel["hop"]
        window = int(mel.get("window_samples") or 0)
        if window:  # windowed front end (MOSS-Transcribe-Diarize): every window is padded to its full length
            frames = -(-samples // window) * (window // mel["hop"])
        n_audio = self._core.n_audio_tokens_for(samples)
        # the prompt around the audio: template, instruction, MOSS-Audio's time markers (one per 2 s, few tokens)
        positions = n_audio + 64 + int(seconds / 2) * 3 + new
        positions = (positions + 255) // 256 * 256
        kv = positions * self._core.kv_bytes_per_position(self.kv_type)
        audio = samples * 4 + frames * mel["n_mel"] * 4
        encoded = n_audio * self._core.n_embd * 4 * 4  # rows + up to three DeepStack copies
        return int(kv + audio + encoded)

    def default_batch_size(self) -> int:
        """32 (``MAX_BATCH_ROWS``), or fewer when 32 full-length passes (:meth:`slot_bytes`) would not fit in half
        the available memory; at least 1."""
        return max(1, min(MAX_BATCH_ROWS, (available_memory() // 2) // max(1, self.slot_bytes())))

    def engine_stats(self) -> Dict[str, int]:
        """The engine's state: ``active`` sequences (prefilling or decoding), ``waiting`` for a slot, encoder
        ``jobs`` waiting, decode ``steps`` run, the tokens decoded in them (``step_rows``) and the most sequences
        one step held (``max_step_rows``; a step is one graph, at most 32 sequences)."""
        return dict(self._core.engine_stats(self.n_threads))

    def __repr__(self) -> str:
        return f"crispmoss.Model({self.name!r}, arch={self.arch!r})"

    def close(self) -> None:
        """Releases the model: its engine stops and its weights are freed once no session uses them. Any later
        use raises ModelError. Closing twice is harmless."""
        self._core.close()

    @property
    def closed(self) -> bool:
        return bool(self._core.closed)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- options --------------------------------------------------------------------------------------------
    def options(self, *, max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
                temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                min_p: Optional[float] = None, repetition_penalty: Optional[float] = None,
                seed: Optional[int] = None, timeout: Optional[float] = None,
                callback: Optional[PieceCallback] = None, collapse_loops: bool = False) -> GenerateOptions:
        """Validated generation options; every request method takes these as keyword parameters (or the result of
        this method as ``options=``: e.g. one random seed reused by several requests).

        ``max_new_tokens``: most tokens to generate (default :attr:`default_max_new_tokens`; 0 = prefill only).
        ``sampling``: a preset name (see :func:`resolve_sampling`; default greedy), refined by ``temperature``
        (0 = greedy), ``top_k`` (0 = off), ``top_p``, ``min_p``, ``repetition_penalty`` (1 = off) and ``seed``
        (default: a random one when sampling). ``timeout``: seconds before the request stops with
        ``stop_reason`` "timeout". ``callback(piece)`` receives the text as it is decoded (return False to stop).

        ``collapse_loops`` cuts back-to-back repeats of a word n-gram beyond three copies out of the text
        (off by default: the official code returns the raw greedy output; see :mod:`crispmoss.loopfix`)."""
        scale = max_new_tokens is None
        if max_new_tokens is None:
            max_new_tokens = self.default_max_new_tokens
        max_new_tokens = _integer("max_new_tokens", max_new_tokens)
        if not -2 ** 31 <= max_new_tokens < 2 ** 31:
            raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        _core.check_generate(max_new_tokens=max_new_tokens)
        if timeout is not None:
            timeout = _number("timeout", timeout)
            if timeout <= 0:
                raise InputError(f"timeout must be > 0 seconds, got {timeout}")
        if callback is not None and not callable(callback):
            raise InputError(f"callback must be callable, got {type(callback).__name__}")
        s = resolve_sampling(sampling, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                             repetition_penalty=repetition_penalty, seed=seed)
        return GenerateOptions(max_new_tokens, s, timeout, callback, bool(collapse_loops), scale_max_new_tokens=scale)

    # --- tokenizer ------------------------------------------------------------------------------------------
    def tokenize(self, text: Union[str, bytes], special: bool = True) -> List[int]:
        """Token ids of ``text``; with ``special`` the added tokens (e.g. ``<|im_start|>``) are recognised."""
        return self._core.tokenize(text, special)

    def detokenize(self, ids: List[int]) -> str:
        """Text of ``ids``; invalid UTF-8 is replaced with U+FFFD."""
        return self._core.detokenize(list(ids))

    def detokenize_bytes(self, ids: List[int]) -> bytes:
        """Exact bytes of ``ids``."""
        return self._core.detokenize_bytes(list(ids))

    # --- requests -------------------------------------------------------------------------------------------
    def session(self, audio: AudioInput, sample_rate: Optional[float] = None) -> "Session":
        """Encodes ``audio`` once; the session answers any number of requests on it (one pass, whole clip)."""
        return Session(self, audio, sample_rate=sample_rate)

    def prompt_ids(self, audio: AudioInput, prompt: Optional[str] = None, *, sample_rate: Optional[float] = None,
                   timestamps: bool = False, hotwords: Optional[Sequence[str]] = None) -> List[int]:
        """The token ids of the prompt the model will see for ``audio`` (audio rows as placeholder ids); counts the
        audio rows from the clip's length, without running the encoder."""
        _check_prompt(self, prompt)
        hw = _hotwords(self, hotwords)
        samples = load_audio(audio, sample_rate)
        return list(self._core.prompt_ids(len(samples), instruction=_normalize(prompt), timestamps=timestamps,
                                          hotwords=hw))

    def transcribe(self, audio: AudioInput, *, sample_rate: Optional[float] = None, timestamps: bool = False,
                   language: Optional[str] = None, hotwords: Optional[Sequence[str]] = None,
                   max_pass_seconds: Optional[float] = None,
                   batch_size: Optional[int] = None, max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
                   temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                   min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
                   timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
                   options: Optional[GenerateOptions] = None) -> Transcript:
        """Transcribes ``audio`` (a path or an array) of any length.

        Up to :attr:`max_pass_seconds` (30 s MOSS-Transcribe, 120 s MOSS-Audio, 240 s MOSS-Transcribe-Diarize) the
        clip goes through the model in one pass with the official prompt; longer audio is read in blocks and cut at the quietest 100 ms frame of
        the last seconds before the limit, and up to ``batch_size`` passes (default: :attr:`batch_size`) are
        decoded together; the texts are joined in order (the same text as passes run one after another) and
        memory is bounded by the batch, not the length. ``segments`` has one segment per pass (or the model's timed
        lines with ``timestamps``, MOSS-Audio only) in absolute seconds. ``language`` is a hint (MOSS-Audio; see
        :func:`transcription_instruction`). A ``callback`` receives the joined text piece by piece, in order; the
        pieces concatenated equal ``text``.

        MOSS-Transcribe-Diarize always writes timed, speaker-labelled segments (``timestamps`` changes nothing):
        ``segments`` are those of :func:`crispmoss.results.diarized_segments` (``speaker`` "S01", ...; an unparsed
        remainder is a last segment with ``speaker=None``) and ``text`` is the raw generated text. Its
        ``hotwords`` (a list of names and terms, e.g. ``["张三", "CrispMoss"]``) are added to the official
        instruction; other models raise InputError for them. Speaker labels restart with every pass.

        Generation options (the same keyword parameters on every request method; see :meth:`options` for what each
        means and its default): ``max_new_tokens``, ``sampling``, ``temperature``, ``top_k``, ``top_p``,
        ``min_p``, ``repetition_penalty``, ``seed``, ``timeout``, ``callback``, ``collapse_loops``; or
        ``options``, a :class:`GenerateOptions` from :meth:`options` (e.g. one seed reused by several requests)
        instead of them. An unknown keyword is a TypeError; a bad value an InputError.
        """
        from .longform import merge

        return merge(list(self._passes(audio, sample_rate, batch_size, _resolve(self, locals()),
                                       timestamps=timestamps, language=language, hotwords=hotwords,
                                       max_pass_seconds=max_pass_seconds)))

    def segments(self, audio: AudioInput, *, timestamps: bool = False, language: Optional[str] = None,
                 hotwords: Optional[Sequence[str]] = None, max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
                 temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
                 timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
                 options: Optional[GenerateOptions] = None,
                 sample_rate: Optional[float] = None, max_pass_seconds: Optional[float] = None,
                 batch_size: Optional[int] = None) -> Iterator[Segment]:
        """Like :meth:`transcribe` (the same parameters), but yields the segments of each pass, in order, as soon as
        it is decoded."""
        for p in self._passes(audio, sample_rate, batch_size, _resolve(self, locals()), timestamps=timestamps,
                              language=language, hotwords=hotwords, max_pass_seconds=max_pass_seconds):
            yield from p.transcript.segments

    def transcribe_many(self, inputs: Iterable[AudioInput], *, batch_size: Optional[int] = None,
                        progress: bool = False, on_error: str = "raise", sample_rate: Optional[float] = None,
                        timestamps: bool = False, language: Optional[str] = None,
                        hotwords: Optional[Sequence[str]] = None,
                        max_pass_seconds: Optional[float] = None, max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
                        temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                        min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
                        timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
                        options: Optional[GenerateOptions] = None,
                        ) -> List[Union[Transcript, BaseException]]:
        """Transcribes many inputs (paths, encoded bytes, file objects or arrays), decoding up to ``batch_size``
        passes of them together (default :attr:`batch_size`); returns one Transcript per input, in input order,
        each equal to what :meth:`transcribe` gives for it alone. Long inputs are split into passes as there.

        ``on_error="raise"`` raises the first failing input's error (its message names the input) after stopping
        the rest; ``on_error="return"`` puts the exception in that input's place and finishes the others.
        ``progress=True`` prints a line per finished input and the overall audio seconds per second to stderr.
        ``timeout`` counts per input from its first pass; a streaming ``callback`` is not accepted (use
        :meth:`transcribe` per input for streaming); the other generation options are those of :meth:`transcribe`.
        Raises InputError before any work when ``batch_size`` passes
        of the single-pass length (:meth:`slot_bytes`) would not fit in the available memory.
        """
        import sys

        if on_error not in ("raise", "return"):
            raise InputError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        inputs = list(inputs)
        results: List[Any] = [None] * len(inputs)
        t0, audio_s, n_done = _now(), 0.0, 0
        events = self.transcribe_iter(inputs, batch_size=batch_size, sample_rate=sample_rate, timestamps=timestamps,
                                      language=language, hotwords=hotwords, max_pass_seconds=max_pass_seconds,
                                      options=_resolve(self, locals()))
        try:
            for i, result in events:
                n_done += 1
                if isinstance(result, BaseException) and on_error == "raise":
                    raise result
                results[i] = result
                if not isinstance(result, BaseException):
                    audio_s += result.duration
                if progress:
                    status = f"error: {result}" if isinstance(result, BaseException) else f"{result.duration:.1f} s audio"
                    print(f"[{n_done}/{len(inputs)}] {_input_name(inputs[i])}: {status} "
                          f"({audio_s / max(1e-9, _now() - t0):.2f} audio-s/s overall)", file=sys.stderr, flush=True)
        finally:
            events.close()
        return results

    def transcribe_iter(self, inputs: Iterable[AudioInput], *, batch_size: Optional[int] = None,
                        on_pass: Optional[Callable[[int, Any], None]] = None, sample_rate: Optional[float] = None,
                        max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
                        temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                        min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
                        timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
                        options: Optional[GenerateOptions] = None,
                        timestamps: bool = False, language: Optional[str] = None,
                        hotwords: Optional[Sequence[str]] = None,
                        max_pass_seconds: Optional[float] = None) -> Iterator[Any]:
        """What :meth:`transcribe_many` runs on: yields ``(index, Transcript)`` for each input as soon as it is
        finished (in the order they finish), or ``(index, exception)`` for one that failed (the exception names the
        input); the others go on. ``on_pass(index, PassResult)`` is called for every pass of every input, in pass
        order per input. Closing the iterator early stops what runs. Generation options: see :meth:`transcribe`.

        ``inputs`` may be a :class:`crispmoss.batch.Feed`: inputs put into it while this runs join the batch, and
        the iterator ends once the feed is closed and its inputs are done (each is forgotten once yielded)."""
        from .batch import Feed
        from .longform import merge

        opts = _resolve(self, locals())
        if opts.callback is not None:
            raise InputError("transcribe_many takes no callback (stream with transcribe() per input)")
        feed = inputs if isinstance(inputs, Feed) else None
        inputs = inputs if feed is not None else list(inputs)
        bs = self.batch_size if batch_size is None else _batch_size(batch_size)
        runner = self._runner(bs, opts, sample_rate=sample_rate, timestamps=timestamps, language=language,
                              hotwords=hotwords, max_pass_seconds=max_pass_seconds,
                              check_memory=batch_size is not None)
        passes: Dict[int, List[Any]] = {}
        events = runner.run(inputs)
        try:
            for i, event in events:
                if event is not None and not isinstance(event, BaseException):
                    passes.setdefault(i, []).append(event)
                    if on_pass is not None:
                        on_pass(i, event)
                    continue
                if event is None:
                    yield i, merge(passes.pop(i, []))
                else:
                    passes.pop(i, None)
                    yield i, _naming(event, inputs[i])
                if feed is not None:
                    feed.forget(i)
        finally:
            events.close()

    # --- passes -----------------------------------------------------------------------------------------------
    def _runner(self, batch_size: int, opts: GenerateOptions, *, sample_rate: Optional[float], timestamps: bool,
                language: Optional[str], max_pass_seconds: Optional[float], hotwords: Optional[Sequence[str]] = None,
                check_memory: bool = False) -> Any:
        """The pass runner of a request; ``opts`` (resolved once: one seed for every pass)."""
        from .batch import PassRunner
        from .longform import check_limit

        limit = check_limit(max_pass_seconds, self.max_pass_seconds)
        transcription_instruction(self.arch, language, timestamps)  # validated before reading any audio
        hw = _hotwords(self, hotwords)
        if check_memory:
            need = batch_size * self.slot_bytes(min(limit, 3600.0), opts.max_new_tokens)
            have = available_memory()
            if need > have:
                raise InputError(f"batch_size={batch_size} needs about {need / 2**30:.1f} GiB for its passes "
                                 f"({self.slot_bytes(min(limit, 3600.0), opts.max_new_tokens) / 2**20:.0f} MiB each)"
                                 f" but {have / 2**30:.1f} GiB is available; use a smaller batch_size")

        def run_pass(samples: np.ndarray, callback: Any, timeout: Optional[float], stop: Any) -> Transcript:
            o = replace(opts, callback=callback, timeout=timeout)
            if len(samples) > self.max_pass_seconds * SAMPLE_RATE:  # a pass beyond the model's limit
                o = self._long_pass_options(len(samples) / SAMPLE_RATE, o)
            return Session(self, samples).transcribe(timestamps=timestamps, language=language, hotwords=hw,
                                                     should_stop=stop, options=o)

        return PassRunner(run_pass, limit, batch_size=batch_size, timeout=opts.timeout, callback=opts.callback,
                          seed=opts.sampling.seed, sample_rate=sample_rate)

    def pass_max_new_tokens(self, seconds: float) -> int:
        """The default generation budget of a ``seconds`` pass: :attr:`default_max_new_tokens` up to the
        single-pass limit, proportionally more beyond it (``max_pass_seconds=math.inf`` on long audio; the official
        MOSS-Transcribe-Diarize code asks for a larger ``max_new_tokens`` for long audio by hand)."""
        return max(self.default_max_new_tokens,
                   int(math.ceil(self.default_max_new_tokens * float(seconds) / self.max_pass_seconds)))

    def _long_pass_options(self, seconds: float, o: GenerateOptions) -> GenerateOptions:
        """``o`` for a pass longer than the single-pass limit: the scaled default budget, and InputError before the
        encoder runs when its KV cache would not fit in the available memory."""
        if o.scale_max_new_tokens:
            o = replace(o, max_new_tokens=self.pass_max_new_tokens(seconds))
        need, have = self.slot_bytes(seconds, o.max_new_tokens), available_memory()
        if need > have:
            raise InputError(f"a single pass over {seconds / 60:.1f} min of audio needs about {need / 2**30:.1f} GiB "
                             f"(KV cache for its prompt and {o.max_new_tokens} new tokens) but {have / 2**30:.1f} GiB "
                             f"is available; use a smaller max_pass_seconds (default {self.max_pass_seconds:g})")
        return o

    def _passes(self, audio: AudioInput, sample_rate: Optional[float], batch_size: Optional[int],
                opts: GenerateOptions, **kwargs: Any) -> Iterator[Any]:
        from .batch import passes_of

        bs = self.batch_size if batch_size is None else _batch_size(batch_size)
        return passes_of(self._runner(bs, opts, sample_rate=sample_rate, **kwargs), audio)

    def ask(self, audio: AudioInput, prompt: str, *, sample_rate: Optional[float] = None,
            system: Optional[str] = None, max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
            temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
            min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
            timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
            options: Optional[GenerateOptions] = None) -> Transcript:
        """Answers a free-form question about ``audio`` (MOSS-Audio only; the whole clip in one pass); ``system``
        replaces the default system prompt. Generation options: see :meth:`transcribe`."""
        if not self.accepts_instructions:
            raise ModelError(f"{self.spec['name']} takes no instruction: use transcribe(), or a MOSS-Audio model for "
                             "ask()")
        opts = _resolve(self, locals())
        return self.session(audio, sample_rate).ask(prompt, system=system, options=opts)


# How a model's answer with timestamps is read (ModelSpec::timed_output); "text" has no parser.
_TIMED_PARSERS: Dict[str, Callable[[str], List[Segment]]] = {"timed_lines": parse_timed_lines}


def _check_prompt(model: Model, prompt: Optional[str]) -> None:
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"the prompt must be a string, got {type(prompt).__name__}")
    if prompt and not model.accepts_instructions:
        raise ModelError(f"{model.spec['name']} takes no instruction: use transcribe(), or a MOSS-Audio model for "
                         "ask()")


def _now() -> float:
    return time.monotonic()


def _input_name(audio: Any) -> str:
    if isinstance(audio, (str, os.PathLike)):
        return os.fspath(audio)
    if isinstance(audio, np.ndarray):
        return f"array{list(audio.shape)}"
    return getattr(audio, "name", None) or type(audio).__name__


def _naming(exc: BaseException, audio: Any) -> BaseException:
    """The same kind of error with the input named in its message (crispmoss errors), else ``exc`` itself."""
    name = _input_name(audio)
    if isinstance(exc, (InputError, ModelError)) or type(exc).__module__.startswith("crispmoss"):
        if name in str(exc):
            return exc
        try:
            return type(exc)(f"{name}: {exc}")
        except Exception:  # an exception type with another constructor
            return exc
    return exc


# --------------------------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------------------------

class Session:
    """One clip's encoder output and KV cache. Requests reuse both: a second question costs only its tokens.

    One request runs at a time per session (a second thread waits); several sessions of one Model run in
    parallel threads, each on its own compute buffers, with the GIL released.
    """

    def __init__(self, model: Model, audio: AudioInput, *, sample_rate: Optional[float] = None) -> None:
        self.model = model
        self._core = _core.Session(model._core, n_threads=model.n_threads, kv_type=model.kv_type,
                                   mel_bf16=model.mel_bf16)
        self._lock = threading.Lock()
        self._owner: Optional[int] = None
        self.duration = 0.0
        self._set_samples(load_audio(audio, sample_rate))

    def _set_samples(self, samples: np.ndarray) -> None:
        """Encodes new audio on this session's buffers (the cached prompt is dropped); InputError (from the core)
        when its audio rows alone would fill the model's context."""
        with self._busy():
            self._core.set_audio(np.ascontiguousarray(samples, dtype=np.float32))
        self.duration = float(len(samples)) / SAMPLE_RATE

    @property
    def n_audio_tokens(self) -> int:
        """How many audio positions the clip occupies in the prompt."""
        return self._core.n_audio

    def prompt_ids(self, prompt: Optional[str] = None, *, timestamps: bool = False,
                   system: Optional[str] = None, hotwords: Optional[Sequence[str]] = None) -> List[int]:
        """The prompt's token ids (audio rows appear as the placeholder id)."""
        self._check_prompt(prompt)
        return list(self._core.prompt_ids(instruction=_normalize(prompt), timestamps=timestamps,
                                          system=self._system(system), hotwords=_hotwords(self.model, hotwords)))

    def transcribe(self, *, timestamps: bool = False, language: Optional[str] = None,
                   hotwords: Optional[Sequence[str]] = None, should_stop: Optional[Callable[[], bool]] = None, max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
                   temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                   min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
                   timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
                   options: Optional[GenerateOptions] = None) -> Transcript:
        """Transcription of the whole clip with the official instruction (time-aware one with ``timestamps``,
        MOSS-Audio only). ``language``: see :func:`transcription_instruction`; ``hotwords``: see
        :meth:`Model.transcribe`.

        Generation options: see :meth:`Model.transcribe` (the keyword parameters, or ``options`` already resolved
        by :meth:`Model.options`). ``should_stop`` is asked at every decode step and while the request waits: True
        interrupts it (``stop_reason`` "interrupted")."""
        transcription_instruction(self.model.arch, language, timestamps)  # validated before the options
        hw = _hotwords(self.model, hotwords)
        opts = _resolve(self.model, locals())
        return self._run(None, timestamps, opts, stop=should_stop, language=language, hotwords=hw)

    def ask(self, prompt: str, *, system: Optional[str] = None, max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
            temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
            min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
            timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
            options: Optional[GenerateOptions] = None) -> Transcript:
        """Answers ``prompt`` about the session's audio (MOSS-Audio). ``system`` replaces the default system
        prompt. Generation options: see :meth:`Model.transcribe`."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the question is empty")
        self._check_prompt(prompt)
        return self._run(prompt, False, _resolve(self.model, locals()), system=self._system(system))

    def generate(self, prompt: Optional[str] = None, *, stream: bool = False, system: Optional[str] = None,
                 max_new_tokens: Optional[int] = None, sampling: Optional[str] = None,
                 temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 min_p: Optional[float] = None, repetition_penalty: Optional[float] = None, seed: Optional[int] = None,
                 timeout: Optional[float] = None, callback: Optional[PieceCallback] = None, collapse_loops: bool = False,
                 options: Optional[GenerateOptions] = None) -> Union[Transcript, Iterator[str]]:
        """Runs ``prompt`` (None: transcription) with an optional ``system`` prompt (MOSS-Audio).

        ``stream=True`` returns an iterator of text pieces (whole UTF-8 characters) as they are decoded; closing
        it early stops generation. Otherwise returns a Transcript; a ``callback`` receives each piece (return
        False to stop). The pieces concatenated equal the returned text. Generation options: see
        :meth:`Model.transcribe`.
        """
        self._check_prompt(prompt)
        opts = _resolve(self.model, locals())
        sys_text = self._system(system)
        if stream:
            if opts.callback is not None:
                raise InputError("pass either stream=True or a callback, not both")
            return self._stream(prompt, opts, sys_text)
        return self._run(prompt, False, opts, system=sys_text)

    # --- internals ------------------------------------------------------------------------------------------
    def _system(self, system: Optional[str]) -> str:
        if system is None:
            return ""
        if not isinstance(system, str):
            raise InputError(f"the system prompt must be a string, got {type(system).__name__}")
        if not self.model.accepts_instructions:
            raise ModelError(f"{self.model.spec['name']} takes no system prompt")
        if not system.strip():
            raise InputError("the system prompt is empty (leave it out for the default)")
        return _normalize(system)

    def _check_prompt(self, prompt: Optional[str]) -> None:
        _check_prompt(self.model, prompt)

    class _Busy:
        def __init__(self, s: "Session") -> None:
            self.s = s

        def __enter__(self) -> None:
            me = threading.get_ident()
            if self.s._owner == me:
                raise InputError("this session is already running a request in this thread (a callback cannot "
                                 "start another request on its own session)")
            self.s._lock.acquire()
            self.s._owner = me

        def __exit__(self, *exc: Any) -> None:
            self.s._owner = None
            self.s._lock.release()

    def _busy(self) -> "Session._Busy":
        return Session._Busy(self)

    def _run(self, prompt: Optional[str], timestamps: bool, opts: GenerateOptions,
             stop: Optional[Callable[[], bool]] = None, system: str = "", language: Optional[str] = None,
             hotwords: Optional[Tuple[str, ...]] = None) -> Transcript:
        """One request. The callback's pieces are those whose concatenation is the returned text (leading and
        trailing whitespace held back, as ``text`` is stripped). ``stop`` is asked at every decode step (and while
        waiting): True interrupts the request."""
        s = opts.sampling
        callback = StreamJoiner(opts.callback) if opts.callback is not None else None
        with self._busy():
            r = self._core.generate(instruction=_normalize(prompt), timestamps=timestamps, language=language or "",
                                    system=system, hotwords=hotwords, max_new_tokens=opts.max_new_tokens, temperature=s.temperature,
                                    top_k=s.top_k, top_p=s.top_p, min_p=s.min_p,
                                    repetition_penalty=s.repetition_penalty, seed=s.seed or 0,
                                    timeout=opts.timeout or 0.0, on_piece=callback, should_stop=stop)
        text = r["text"].decode("utf-8", errors="replace").strip()
        if opts.collapse_loops:
            text = collapse_loops(text)
        timed = self.model.spec["timed_output"]
        if timed == "diarized":  # always timed and speaker-labelled; the unparsed rest is a last speaker-less segment
            segments = diarized_segments(text, self.duration)
        else:
            parse = _TIMED_PARSERS.get(timed) if timestamps else None
            segments = parse(text) if parse is not None else []
        if not segments:
            segments = [Segment(0.0, self.duration, text)]
        return Transcript(text=text, tokens=list(r["tokens"]), segments=segments, duration=self.duration,
                          timings=dict(r["timings"]), stop_reason=r["stop_reason"], seed=s.seed)

    def _stream(self, prompt: Optional[str], opts: GenerateOptions, system: str = "") -> Iterator[str]:
        # The decode loop runs in a worker thread; its pieces are handed out here as they arrive. Closing the
        # iterator sets `stop`, which the next decode step turns into an interruption.
        q: "queue.Queue[object]" = queue.Queue()
        done = object()
        stop = threading.Event()
        errors: List[BaseException] = []

        def on_piece(piece: str) -> bool:
            if stop.is_set():
                return False
            q.put(piece)
            return True

        def work() -> None:
            try:
                self._run(prompt, False, replace(opts, callback=on_piece), stop=stop.is_set, system=system)
            except BaseException as exc:  # handed to the consumer
                errors.append(exc)
            finally:
                q.put(done)

        def pieces() -> Iterator[str]:
            t = threading.Thread(target=work, name="crispmoss-stream", daemon=True)
            t.start()
            try:
                while True:
                    item = q.get()
                    if item is done:
                        break
                    yield item  # type: ignore[misc]
            finally:
                stop.set()
                t.join()
            if errors:
                raise errors[0]

        return pieces()


__all__ = ["GenerateOptions", "Model", "OFFICIAL_SAMPLING", "SAMPLING_PRESETS",
           "Sampling", "Session", "language_name", "resolve_sampling", "transcription_instruction"]
