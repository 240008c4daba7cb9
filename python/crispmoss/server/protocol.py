"""OpenAI's request and response shapes for ``crispmoss serve``: validation of transcription forms and chat
messages, and the JSON / text bodies of the answers. Nothing here imports FastAPI.

Parameters a request omits take the library's defaults (greedy decoding, the model's own ``max_new_tokens`` or
the server's ``--max-new-tokens``), not OpenAI's.
"""
from __future__ import annotations

import base64
import binascii
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InputError
from ..results import Segment, Transcript, join_texts
from .engine import ApiError, ServedModel

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
# stream=true with verbose_json is crispmoss's own: the same deltas, and the done event also carries verbose_json's
# task, language, duration and segments (the browser page shows them without transcribing twice)
STREAM_FORMATS = ("json", "text", "verbose_json")
TIMESTAMP_FORMATS = ("verbose_json", "srt", "vtt")  # MOSS-Audio writes its own timed lines for these


# --------------------------------------------------------------------------------------------------------------
# Parameter parsing
# --------------------------------------------------------------------------------------------------------------


def _bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("false", "0", "no", "off", ""):
        return False
    raise ApiError(400, f"{name} must be true or false, got {v!r}", param=name, code="invalid_value")


def _float(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(v, bool):
        raise ApiError(400, f"{name} must be a number, got {v!r}", param=name, code="invalid_value")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be a number, got {v!r}", param=name, code="invalid_value") from None
    if not math.isfinite(f) or f > hi or f < lo or (lo_open and f == lo):
        rng = f"({lo:g}, {hi:g}]" if lo_open else f"[{lo:g}, {hi:g}]"
        raise ApiError(400, f"{name} must be in {rng}, got {v!r}", param=name, code="invalid_value")
    return f


def _int(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool):
        raise ApiError(400, f"{name} must be an integer, got {v!r}", param=name, code="invalid_value")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            pass
    if not isinstance(v, int):
        raise ApiError(400, f"{name} must be an integer, got {v!r}", param=name, code="invalid_value")
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be in [{lo}, {hi}], got {v}", param=name, code="invalid_value")
    return v


def unsupported(what: str, param: Optional[str]) -> ApiError:
    return ApiError(400, f"not supported yet: {what}", param=param, code="unsupported_value")


def _check_text(served: ServedModel, text: str, param: str) -> None:
    """Client text must not contain special-token markup (it would be read as chat structure)."""
    if "<|" in text and served.model.tokenize(text, True) != served.model.tokenize(text, False):
        raise ApiError(400, "the text contains special-token markup such as <|im_start|>; remove it",
                       param=param, code="invalid_value")


def generation_kwargs(served: ServedModel, default_max_new_tokens: Optional[int], *,
                      max_new_tokens: Optional[int] = None, **sampling: Any) -> Dict[str, Any]:
    """Library generation options for a request, validated by the model (ApiError 400 when out of range)."""
    kw: Dict[str, Any] = {k: v for k, v in sampling.items() if v is not None}
    mnt = max_new_tokens if max_new_tokens is not None else default_max_new_tokens
    if mnt is not None:
        kw["max_new_tokens"] = mnt
    try:
        served.model.options(**kw)
    except InputError as e:
        raise ApiError(400, str(e), code="invalid_value") from None
    return kw


# --------------------------------------------------------------------------------------------------------------
# Transcriptions
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TranscriptionRequest:
    served: ServedModel
    response_format: str = "json"
    language: Optional[str] = None
    prompt: Optional[str] = None
    temperature: Optional[float] = None
    stream: bool = False
    timestamps: bool = False  # MOSS-Audio's timed lines (verbose_json / srt / vtt without a prompt)
    hotwords: Optional[List[str]] = None  # crispmoss's extension (MOSS-Transcribe-Diarize)
    gen: Dict[str, Any] = field(default_factory=dict)

    @property
    def diarized(self) -> bool:
        """Whether the model writes speaker-attributed segments (MOSS-Transcribe-Diarize)."""
        return is_diarized(self.served)


def is_diarized(served: ServedModel) -> bool:
    return served.model.spec.get("timed_output") == "diarized"


def parse_hotwords(fields: Dict[str, List[str]], served: ServedModel) -> Optional[List[str]]:
    """The ``hotwords`` form field (crispmoss's extension): words separated by commas, or the field repeated (also
    as ``hotwords[]``); None when absent or blank. 400 for a model that takes none."""
    values = list(fields.get("hotwords", [])) + list(fields.get("hotwords[]", []))
    words = [w.strip() for v in values for w in v.replace("\uff0c", ",").split(",")]
    words = [w for w in words if w]
    if not words:
        return None
    if not served.model.spec.get("hotwords"):
        raise ApiError(400, f"{served.id} ({served.model.spec['name']}) takes no hotwords; leave hotwords out, or "
                            f"use MOSS-Transcribe-Diarize", param="hotwords", code="invalid_value")
    _check_text(served, ", ".join(words), "hotwords")
    return words


def _one(fields: Dict[str, List[str]], name: str) -> Optional[str]:
    vals = fields.get(name)
    if not vals:
        return None
    if len(vals) > 1:
        raise ApiError(400, f"{name} is given {len(vals)} times", param=name, code="invalid_value")
    return vals[0]


def parse_transcription(fields: Dict[str, List[str]], served: ServedModel,
                        default_max_new_tokens: Optional[int]) -> TranscriptionRequest:
    """Validates the form fields of ``POST /v1/audio/transcriptions`` (the file is checked elsewhere)."""
    from ..model import language_name, transcription_instruction

    fmt = (_one(fields, "response_format") or "json").strip()
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {fmt!r}",
                       param="response_format", code="invalid_value")
    req = TranscriptionRequest(served, response_format=fmt)
    if fmt == "diarized_json" and not req.diarized:
        raise ApiError(400, f"response_format diarized_json needs a model that writes speakers "
                            f"(MOSS-Transcribe-Diarize); {served.id} ({served.model.spec['name']}) does not",
                       param="response_format", code="invalid_value")
    req.stream = _bool("stream", _one(fields, "stream") or "false")
    if req.stream and fmt not in STREAM_FORMATS:
        raise ApiError(400, f"stream=true gives response_format json, text or verbose_json, not {fmt}",
                       param="stream", code="invalid_value")

    grans = list(fields.get("timestamp_granularities[]", [])) + list(fields.get("timestamp_granularities", []))
    for g in grans:
        if g == "word":
            raise unsupported("timestamp_granularities word (the models write no word timings; use segment)",
                              "timestamp_granularities")
        if g != "segment":
            raise ApiError(400, f"timestamp_granularities must be segment or word, got {g!r}",
                           param="timestamp_granularities", code="invalid_value")
    if grans and fmt != "verbose_json":
        raise ApiError(400, "timestamp_granularities needs response_format verbose_json",
                       param="timestamp_granularities", code="invalid_value")
    for inc in list(fields.get("include[]", [])) + list(fields.get("include", [])):
        raise unsupported(f"include {inc!r}", "include")

    prompt = _one(fields, "prompt")
    if prompt is not None and prompt.strip():
        if not served.accepts_instructions:
            extra = " (for names and terms, send hotwords)" if served.model.spec.get("hotwords") else ""
            raise ApiError(400, f"{served.id} is a {served.model.spec['name']} model, which takes no prompt "
                                f"(instruction); leave prompt out{extra}, or use a MOSS-Audio model", param="prompt",
                           code="invalid_value")
        _check_text(served, prompt, "prompt")
        req.prompt = prompt
    req.hotwords = parse_hotwords(fields, served)
    language = _one(fields, "language")
    if language is not None and language.strip():
        req.language = language.strip()
    # A stream's deltas are the model's own text, so a streamed answer is never MOSS-Audio's timed lines (their
    # text is the lines joined without their times).
    req.timestamps = (served.accepts_instructions and req.prompt is None and fmt in TIMESTAMP_FORMATS
                      and not req.stream)
    if req.language is not None:
        try:
            language_name(req.language)
            transcription_instruction(served.arch, req.language, req.timestamps)
        except InputError as e:
            raise ApiError(400, str(e), param="language", code="invalid_value") from None

    temperature = _one(fields, "temperature")
    if temperature is not None and temperature.strip():
        req.temperature = _float("temperature", temperature, 0.0, 2.0)
    seed = _one(fields, "seed")
    seed_v = _int("seed", seed, 0, 2 ** 63 - 1) if seed is not None and seed.strip() else None
    req.gen = generation_kwargs(served, default_max_new_tokens, temperature=req.temperature, seed=seed_v)
    return req


def language_label(language: Optional[str]) -> str:
    """``language`` of a verbose_json answer: the request's hint as an English name in lower case
    ("german"), "unknown" without one (the models do not report the language they heard)."""
    from ..model import language_name

    if not language:
        return "unknown"
    try:
        return language_name(language).lower()
    except InputError:
        return "unknown"


def answer_text(t: Transcript, timestamps: bool) -> Tuple[str, List[Segment]]:
    """The text and segments of an answer: with MOSS-Audio's timed lines or MOSS-Transcribe-Diarize's speaker
    segments the text is their texts joined (without the times and labels), otherwise the transcript's text."""
    segs = list(t.segments)
    if (timestamps or t.speakers) and segs and not (len(segs) == 1 and segs[0].text == t.text):
        return _join(s.text for s in segs), segs
    return t.text, segs


def _join(texts: Any) -> str:
    """Segment texts joined as the library joins pass texts: one space, none between two CJK characters."""
    return join_texts(texts)


def _compression_ratio(text: str) -> float:
    b = text.encode("utf-8")
    return round(len(b) / len(zlib.compress(b)), 4) if b else 0.0


def token_usage(t: Transcript) -> Dict[str, Any]:
    n_in = int(t.timings.get("n_prompt", 0))
    n_out = len(t.tokens)
    return {"type": "tokens", "input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}


def transcription_body(req: TranscriptionRequest, t: Transcript) -> Tuple[Any, str]:
    """The answer of a finished transcription: (body, media type); JSON bodies are dicts."""
    from ..formats import diarized_dict, render

    text, segs = answer_text(t, req.timestamps)
    fmt = req.response_format
    if fmt == "json":
        return {"text": text, "usage": token_usage(t)}, "application/json"
    if fmt == "text":
        return text + "\n", "text/plain; charset=utf-8"
    if fmt in ("srt", "vtt"):
        return render(t, fmt), ("text/vtt; charset=utf-8" if fmt == "vtt" else "text/plain; charset=utf-8")
    if fmt == "diarized_json":
        return dict(diarized_dict(t), usage=token_usage(t)), "application/json"
    body = dict(verbose_fields(req, t, segs), text=text,
                usage={"type": "duration", "seconds": round(t.duration, 3)})
    return body, "application/json"


def verbose_fields(req: TranscriptionRequest, t: Transcript, segs: List[Segment]) -> Dict[str, Any]:
    """verbose_json's task, language, duration and segments (a segment's ``speaker`` where it has one)."""
    temperature = float(req.gen.get("temperature", 0.0))
    single = len(segs) == 1
    out_segs = []
    for i, s in enumerate(segs):
        if single and s.text == t.text:
            toks = list(t.tokens)
        else:
            toks = req.served.model.tokenize(s.text, False) if s.text else []
        seg = {"id": i, "seek": int(round(s.start * 100)), "start": round(float(s.start), 3),
               "end": round(float(s.end), 3), "text": s.text, "tokens": toks, "temperature": temperature,
               "avg_logprob": None, "compression_ratio": _compression_ratio(s.text), "no_speech_prob": None}
        speaker = getattr(s, "speaker", None)
        if speaker is not None:
            seg["speaker"] = speaker
        out_segs.append(seg)
    return {"task": "transcribe", "language": language_label(req.language), "duration": round(t.duration, 3),
            "segments": out_segs}


# --------------------------------------------------------------------------------------------------------------
# Chat completions
# --------------------------------------------------------------------------------------------------------------

@dataclass
class ChatRequest:
    served: ServedModel
    audio: bytes
    audio_format: Optional[str]
    instruction: Optional[str]  # None: the model's transcription default
    gen: Dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    system: Optional[str] = None  # leading system messages; None: the model's default system prompt


def _decode_audio_part(part: Dict[str, Any], where: str, max_bytes: int) -> Tuple[bytes, Optional[str]]:
    ia = part.get("input_audio")
    if not isinstance(ia, dict):
        raise ApiError(400, f"{where}.input_audio must be an object with data and format", param=where,
                       code="invalid_value")
    data = ia.get("data")
    fmt = ia.get("format")
    if not isinstance(data, str) or not data:
        raise ApiError(400, f"{where}.input_audio.data must be a base64 string", param=f"{where}.input_audio.data",
                       code="invalid_value")
    if fmt is not None and not isinstance(fmt, str):
        raise ApiError(400, f"{where}.input_audio.format must be a string such as wav, mp3 or flac",
                       param=f"{where}.input_audio.format", code="invalid_value")
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    if (len(data) // 4) * 3 > max_bytes + 3:
        raise ApiError(413, f"the audio is larger than the server's limit of {max_bytes / 2 ** 20:g} MiB",
                       param=f"{where}.input_audio.data", code="file_too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}.input_audio.data is not valid base64", param=f"{where}.input_audio.data",
                       code="invalid_value") from None
    if len(raw) > max_bytes:
        raise ApiError(413, f"the audio is larger than the server's limit of {max_bytes / 2 ** 20:g} MiB",
                       param=f"{where}.input_audio.data", code="file_too_large")
    return raw, fmt


def parse_chat(body: Any, served: ServedModel, default_max_new_tokens: Optional[int],
               max_bytes: int) -> ChatRequest:
    """Validates a ``POST /v1/chat/completions`` body and turns its messages into one MOSS-Audio prompt.

    The clip must be in the first user message (its only ``input_audio`` part; the audio goes before that
    message's text, as in the official prompt). Later messages become ChatML turns after it. Leading system
    messages replace the default system prompt. Turns before the audio or a second clip are not supported yet
    (400).
    """
    if not served.accepts_instructions:
        raise ApiError(400, f"{served.id} is a MOSS-Transcribe model: it takes no instructions, so it does not "
                            f"chat; use POST /v1/audio/transcriptions, or a MOSS-Audio model", param="model",
                       code="model_not_supported")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages", code="invalid_value")

    # (role, text, has_audio) per message
    turns: List[Tuple[str, str, bool]] = []
    audio: Optional[Tuple[bytes, Optional[str]]] = None
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ApiError(400, f"{where} must be an object", param=where, code="invalid_value")
        role = m.get("role")
        if role in ("tool", "function"):
            raise unsupported(f"{role} messages (the model has no tools)", f"{where}.role")
        if role not in ("system", "developer", "user", "assistant"):
            raise ApiError(400, f"{where}.role must be system, developer, user or assistant, got {role!r}",
                           param=f"{where}.role", code="invalid_value")
        if m.get("tool_calls") or m.get("function_call"):
            raise unsupported("tool calls", f"{where}.tool_calls")
        if m.get("audio") is not None:
            raise unsupported("audio output in assistant messages", f"{where}.audio")
        content = m.get("content")
        texts: List[str] = []
        has_audio = False
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                pw = f"{where}.content[{j}]"
                if not isinstance(part, dict):
                    raise ApiError(400, f"{pw} must be an object", param=pw, code="invalid_value")
                ptype = part.get("type")
                if ptype == "text":
                    t = part.get("text")
                    if not isinstance(t, str):
                        raise ApiError(400, f"{pw}.text must be a string", param=f"{pw}.text", code="invalid_value")
                    texts.append(t)
                elif ptype == "input_audio":
                    if role != "user":
                        raise ApiError(400, f"{pw}: audio is accepted only in user messages", param=pw,
                                       code="invalid_value")
                    if audio is not None:
                        raise unsupported("more than one audio clip in a conversation", pw)
                    audio = _decode_audio_part(part, pw, max_bytes)
                    has_audio = True
                elif ptype in ("image_url", "file", "input_image", "refusal"):
                    raise unsupported(f"{ptype} content parts (MOSS-Audio takes audio and text)", f"{pw}.type")
                else:
                    raise ApiError(400, f"{pw}.type must be text or input_audio, got {ptype!r}",
                                   param=f"{pw}.type", code="invalid_value")
        elif content is None:
            pass
        else:
            raise ApiError(400, f"{where}.content must be a string or a list of parts", param=f"{where}.content",
                           code="invalid_value")
        text = "\n".join(t for t in texts if t)
        if text:
            _check_text(served, text, f"{where}.content")
        turns.append(("system" if role == "developer" else role, text, has_audio))

    # Leading system (or developer) messages replace the default system prompt.
    system_parts: List[str] = []
    while turns and turns[0][0] == "system":
        system_parts.append(turns.pop(0)[1])
    system = "\n".join(t for t in system_parts if t.strip()) or None
    if audio is None:
        raise ApiError(400, "the conversation has no audio: put an input_audio part into the first user message",
                       param="messages", code="missing_audio")
    if not turns or turns[0][0] != "user" or not turns[0][2]:
        raise unsupported("messages before the user message that holds the audio (the clip must be in the "
                          "first user message)", "messages")
    if any(role == "system" for role, _, _ in turns):
        raise unsupported("system messages after the first user message", "messages")
    if turns[-1][0] != "user":
        raise ApiError(400, "the last message must be a user message", param="messages", code="invalid_value")

    first = turns[0][1].strip()
    if len(turns) == 1:
        instruction: Optional[str] = first or None
    else:
        if not turns[-1][1].strip():
            raise ApiError(400, f"messages[{len(messages) - 1}] has no text", param="messages",
                           code="invalid_value")
        # Earlier turns as ChatML, exactly as the model's chat template writes them; the model's prompt builder
        # closes the last one and opens the assistant's turn. An audio-only first turn is the model's default
        # instruction (its ModelSpec), so the prompt matches the one the first answer was given.
        parts = [first or served.model.spec["default_instruction"]]
        for role, text, _ in turns[1:]:
            parts.append(f"<|im_end|>\n<|im_start|>{role}\n{text}")
        instruction = "".join(parts)

    stream = _bool("stream", body.get("stream", False)) if body.get("stream") is not None else False
    so = body.get("stream_options")
    include_usage = False
    if so is not None:
        if not isinstance(so, dict):
            raise ApiError(400, "stream_options must be an object", param="stream_options", code="invalid_value")
        include_usage = _bool("stream_options.include_usage", so.get("include_usage", False))

    n = body.get("n")
    if n is not None and _int("n", n, 1, 2 ** 31) != 1:
        raise unsupported("n > 1 (one answer per request)", "n")
    if body.get("tools") or body.get("functions"):
        raise unsupported("tools (the model has no tool calling)", "tools" if body.get("tools") else "functions")
    for key in ("tool_choice", "function_call"):
        if body.get(key) not in (None, "none", "auto"):
            raise unsupported("tool calls", key)
    if body.get("stop") not in (None, [], ""):
        raise unsupported("stop sequences", "stop")
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "logit_bias")
    for key, what in (("audio", "audio output"), ("prediction", "predicted outputs"),
                      ("web_search_options", "web search")):
        if body.get(key) is not None:
            raise unsupported(what, key)
    if body.get("logprobs") or body.get("top_logprobs"):
        raise unsupported("logprobs", "logprobs")
    for key in ("frequency_penalty", "presence_penalty"):
        if body.get(key) not in (None, 0, 0.0):
            raise unsupported(f"{key} (crispmoss takes repetition_penalty)", key)
    rf = body.get("response_format")
    if rf is not None and not (isinstance(rf, dict) and rf.get("type") == "text"):
        raise unsupported("response_format other than text", "response_format")
    mods = body.get("modalities")
    if mods is not None and mods != ["text"]:
        raise unsupported("output modalities other than text", "modalities")

    mx = body.get("max_completion_tokens")
    mx_name = "max_completion_tokens"
    if mx is None:
        mx, mx_name = body.get("max_tokens"), "max_tokens"
    max_new = _int(mx_name, mx, 1, served.model.n_ctx) if mx is not None else None
    temperature = _float("temperature", body["temperature"], 0.0, 2.0) if body.get("temperature") is not None \
        else None
    top_p = _float("top_p", body["top_p"], 0.0, 1.0, lo_open=True) if body.get("top_p") is not None else None
    seed = _int("seed", body["seed"], -(2 ** 63), 2 ** 64 - 1) if body.get("seed") is not None else None
    if seed is not None and seed < 0:
        seed += 2 ** 64  # OpenAI accepts signed 64-bit seeds; the sampler takes them as unsigned
    top_k = _int("top_k", body["top_k"], 0, 1 << 30) if body.get("top_k") is not None else None
    min_p = _float("min_p", body["min_p"], 0.0, 1.0) if body.get("min_p") is not None else None
    rp = _float("repetition_penalty", body["repetition_penalty"], 0.0, 10.0, lo_open=True) \
        if body.get("repetition_penalty") is not None else None
    gen = generation_kwargs(served, default_max_new_tokens, max_new_tokens=max_new, temperature=temperature,
                            top_p=top_p, seed=seed, top_k=top_k, min_p=min_p, repetition_penalty=rp)
    return ChatRequest(served, audio[0], audio[1], instruction, gen, stream, include_usage, system)


def finish_reason(t: Transcript) -> str:
    return "length" if t.stop_reason == "length" else "stop"


def chat_usage(t: Transcript) -> Dict[str, Any]:
    n_prompt = int(t.timings.get("n_prompt", 0))
    cached = max(0, n_prompt - int(t.timings.get("n_prefilled", n_prompt)))
    n_out = len(t.tokens)
    return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": None},
            "completion_tokens_details": {"reasoning_tokens": 0}}


def chat_body(cid: str, created: int, model_id: str, t: Transcript) -> Dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": created, "model": model_id,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": t.text, "refusal": None},
                         "logprobs": None, "finish_reason": finish_reason(t)}],
            "usage": chat_usage(t)}


def chat_chunk(cid: str, created: int, model_id: str, delta: Optional[Dict[str, Any]],
               finish: Optional[str] = None, usage: Any = ..., with_usage: bool = False) -> Dict[str, Any]:
    out: Dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_id,
                           "system_fingerprint": None}
    out["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                "finish_reason": finish}]
    if with_usage:
        out["usage"] = None if usage is ... else usage
    return out


class DeltaText:
    """Turns decoded pieces into deltas whose concatenation is the stripped final text: leading whitespace of
    the answer is dropped and trailing whitespace is held until more text follows it."""

    def __init__(self) -> None:
        self.emitted = ""
        self._pending = ""

    def push(self, piece: str) -> str:
        if not self.emitted and not self._pending:
            piece = piece.lstrip()
            if not piece:
                return ""
        text = self._pending + piece
        body = text.rstrip()
        self._pending = text[len(body):]
        self.emitted += body
        return body

    def finish(self, final: str) -> Tuple[str, bool]:
        """The last delta that makes the deltas add up to ``final``, and whether they could (False when the
        pieces disagreed with the final text; the caller logs it)."""
        if final.startswith(self.emitted):
            rest = final[len(self.emitted):]
            self.emitted = final
            return rest, True
        return "", False


def now() -> int:
    return int(time.time())


__all__ = ["ChatRequest", "DeltaText", "RESPONSE_FORMATS", "TranscriptionRequest", "answer_text", "is_diarized", "chat_body", "chat_chunk", "chat_usage", "finish_reason",
           "generation_kwargs", "language_label", "now", "parse_chat", "parse_transcription", "token_usage",
           "transcription_body", "verbose_fields"]
