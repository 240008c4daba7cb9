"""Model and Session: the Python face of the C++ core."""
from __future__ import annotations

import os
from typing import Callable, Iterator, List, Optional, Union

import numpy as np

from . import _core
from .audio import AudioInput, load_audio
from .errors import InputError, ModelError
from .results import Segment, Transcript, parse_timed_lines

PieceCallback = Callable[[str], Optional[bool]]

# Default generation lengths of the official inference code.
DEFAULT_MAX_NEW_TOKENS = {"moss_transcribe": 512, "moss_audio": 1024}

# Sampling settings of the official MOSS-Audio inference scripts (hf_inference.py, infer.py, app.py).
OFFICIAL_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 50}


def _check_sampling(temperature: float, top_k: int, top_p: float, min_p: float, repetition_penalty: float,
                    max_new_tokens: int) -> None:
    if not temperature >= 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise InputError(f"top_k must be >= 0, got {top_k}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {top_p}")
    if not 0 <= min_p < 1:
        raise InputError(f"min_p must be in [0, 1), got {min_p}")
    if not repetition_penalty > 0:
        raise InputError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


class Model:
    """A MOSS-Transcribe or MOSS-Audio GGUF file, mmapped once and shared by all its sessions.

    ``path`` is a GGUF file. ``n_threads`` defaults to the number of cores. ``kv_type`` ("f16" or "f32") is
    the KV-cache precision; ``mel_bf16`` rounds the log-mel to bfloat16 as the official processors do.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], n_threads: Optional[int] = None, *,
                 kv_type: str = "f16", mel_bf16: bool = True) -> None:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelError(f"{path}: no such file")
        self._core = _core.Model(path)
        self.path = path
        self.n_threads = int(n_threads) if n_threads else 0
        if self.n_threads < 0:
            raise InputError(f"n_threads must be positive, got {n_threads}")
        self.kv_type = kv_type
        self.mel_bf16 = mel_bf16

    @property
    def arch(self) -> str:
        """"moss_transcribe" or "moss_audio"."""
        return self._core.arch

    @property
    def accepts_instructions(self) -> bool:
        return self._core.accepts_instructions

    def __repr__(self) -> str:
        return f"crispmoss.Model({self.path!r}, arch={self.arch!r})"

    # --- tokenizer ----------------------------------------------------------------------------------
    def tokenize(self, text: Union[str, bytes], special: bool = True) -> List[int]:
        """Token ids of ``text``; with ``special`` the added tokens (e.g. ``<|im_start|>``) are recognised."""
        return self._core.tokenize(text, special)

    def detokenize(self, ids: List[int]) -> str:
        """Text of ``ids``; invalid UTF-8 is replaced with U+FFFD."""
        return self._core.detokenize(list(ids))

    def detokenize_bytes(self, ids: List[int]) -> bytes:
        """Exact bytes of ``ids``."""
        return self._core.detokenize_bytes(list(ids))

    # --- audio --------------------------------------------------------------------------------------
    def session(self, audio: AudioInput, sample_rate: Optional[float] = None) -> "Session":
        """Encodes ``audio`` once; the session answers any number of requests on it."""
        return Session(self, audio, sample_rate=sample_rate)

    def prompt_ids(self, audio: AudioInput, prompt: Optional[str] = None, *, sample_rate: Optional[float] = None,
                   timestamps: bool = False) -> List[int]:
        """The token ids of the prompt the model will see for ``audio`` (audio rows as placeholder ids)."""
        return self.session(audio, sample_rate).prompt_ids(prompt, timestamps=timestamps)

    def transcribe(self, audio: AudioInput, *, sample_rate: Optional[float] = None, timestamps: bool = False,
                   **generate_kwargs) -> Transcript:
        """Transcribes ``audio`` (a path or an array) with the model's official transcription prompt."""
        return self.session(audio, sample_rate).transcribe(timestamps=timestamps, **generate_kwargs)

    def ask(self, audio: AudioInput, prompt: str, *, sample_rate: Optional[float] = None,
            **generate_kwargs) -> Transcript:
        """Answers a free-form question about ``audio`` (MOSS-Audio only)."""
        return self.session(audio, sample_rate).ask(prompt, **generate_kwargs)


class Session:
    """One clip's encoder output and KV cache. Requests reuse both: a second question costs only its tokens.

    A session is used by one thread at a time; several sessions of one Model may run in parallel threads.
    """

    def __init__(self, model: Model, audio: AudioInput, *, sample_rate: Optional[float] = None) -> None:
        self.model = model
        samples = load_audio(audio, sample_rate)
        self._core = _core.Session(model._core, model.n_threads, model.kv_type, model.mel_bf16)
        self._core.set_audio(np.ascontiguousarray(samples, dtype=np.float32))
        self.duration = float(len(samples)) / 16000.0

    @property
    def n_audio_tokens(self) -> int:
        return self._core.n_audio

    def prompt_ids(self, prompt: Optional[str] = None, *, timestamps: bool = False) -> List[int]:
        self._check_prompt(prompt)
        return list(self._core.prompt_ids(prompt or "", timestamps))

    def transcribe(self, *, timestamps: bool = False, **kwargs) -> Transcript:
        """Transcription with the official instruction (time-aware one when ``timestamps``)."""
        if timestamps and not self.model.accepts_instructions:
            raise InputError("MOSS-Transcribe writes no timestamps; use a MOSS-Audio model for timestamps=True")
        return self._run(None, timestamps, **kwargs)

    def ask(self, prompt: str, **kwargs) -> Transcript:
        """Answers ``prompt`` about the session's audio."""
        if not prompt or not prompt.strip():
            raise InputError("the question is empty")
        return self._run(prompt, False, **kwargs)

    def generate(self, prompt: Optional[str] = None, *, stream: bool = False,
                 callback: Optional[PieceCallback] = None, **kwargs) -> Union[Transcript, Iterator[str]]:
        """Runs ``prompt`` (None: transcription). ``stream=True`` returns an iterator of text pieces;
        ``callback`` receives each piece as it is decoded (return False to stop)."""
        if stream:
            return self._stream(prompt, **kwargs)
        return self._run(prompt, False, callback=callback, **kwargs)

    def _stream(self, prompt: Optional[str], **kwargs) -> Iterator[str]:
        # The decode loop runs in this thread; pieces are handed out as the callback receives them.
        pieces: List[str] = []
        import threading
        import queue

        q: "queue.Queue[object]" = queue.Queue()
        done = object()
        errors: List[BaseException] = []

        def work() -> None:
            try:
                self._run(prompt, False, callback=lambda p: q.put(p) or True, **kwargs)
            except BaseException as exc:  # handed to the consumer
                errors.append(exc)
            finally:
                q.put(done)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        while True:
            item = q.get()
            if item is done:
                break
            pieces.append(item)  # type: ignore[arg-type]
            yield item  # type: ignore[misc]
        t.join()
        if errors:
            raise errors[0]

    def _check_prompt(self, prompt: Optional[str]) -> None:
        if prompt and not self.model.accepts_instructions:
            raise ModelError("MOSS-Transcribe takes no instruction: use transcribe(), or a MOSS-Audio model for ask()")

    def _run(self, prompt: Optional[str], timestamps: bool, *, max_new_tokens: Optional[int] = None,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
             repetition_penalty: float = 1.0, seed: int = 0, timeout: Optional[float] = None,
             callback: Optional[PieceCallback] = None, time_markers: bool = True) -> Transcript:
        self._check_prompt(prompt)
        if max_new_tokens is None:
            max_new_tokens = DEFAULT_MAX_NEW_TOKENS.get(self.model.arch, 512)
        _check_sampling(temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens)
        r = self._core.generate(prompt or "", timestamps, time_markers, int(max_new_tokens), float(temperature),
                                int(top_k), float(top_p), float(min_p), float(repetition_penalty), int(seed),
                                float(timeout or 0.0), callback)
        text = r["text"].decode("utf-8", errors="replace").strip()
        segments = parse_timed_lines(text) if timestamps else []
        if not segments:
            segments = [Segment(0.0, self.duration, text)]
        return Transcript(text=text, tokens=list(r["tokens"]), segments=segments, duration=self.duration,
                          timings=dict(r["timings"]), stop_reason=r["stop_reason"])
