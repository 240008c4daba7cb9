"""Transcript output formats: txt, json, srt, vtt, and diarized_json for speaker-attributed transcripts.

Subtitle cues are the transcript's segments that carry text; cue text has blank lines removed (a blank line ends
a cue in both formats) and ``-->`` defused, and in WebVTT ``&``, ``<`` and ``>`` are escaped.

Speakers (segments with a ``speaker``, written by MOSS-Transcribe-Diarize): txt gives one ``[S01] text`` line per
segment instead of the raw model text; SRT, which has no voice markup, prefixes the cue text with ``[S01] ``
(the bracketed-name convention of subtitle tools); WebVTT opens the cue with a voice span ``<v S01>``; json adds
``speaker`` to those segments and a ``speakers`` list. ``diarized_json`` is shaped like OpenAI's response for
gpt-4o-transcribe-diarize: ``{"task": "transcribe", "duration", "text", "segments": [{"type":
"transcript.text.segment", "id": "seg_0", "start", "end", "text", "speaker"}]}`` with ``text`` the segment texts
joined (a segment without a speaker gets ``"unknown"``, since OpenAI's field is always a string). Transcripts without speakers render as before.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import InputError
from .results import Transcript, join_texts


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x0b\x0c\x85]")


def cue_text(text: str) -> str:
    """Segment text made safe for a subtitle cue: no blank or whitespace-only lines, no ``-->``."""
    lines = [ln.strip() for ln in _NEWLINES.sub("\n", text).split("\n")]
    return "\n".join(ln for ln in lines if ln).replace("-->", "->")


def _speaker_cues(t: Transcript) -> List[Tuple[float, float, str, Optional[str]]]:
    out = []
    for s in t.segments:
        text = cue_text(s.text)
        if text:
            out.append((s.start, max(s.end, s.start), text, s.speaker))
    return out


def cues(t: Transcript) -> List[Tuple[float, float, str]]:
    """(start, end, text) of every segment with text, end never before start."""
    return [(a, b, text) for a, b, text, _ in _speaker_cues(t)]


def _speaker_prefix(speaker: Optional[str]) -> str:
    return "" if speaker is None else f"[{speaker}] "


def to_txt(t: Transcript) -> str:
    if not t.speakers:
        return t.text + "\n"
    lines = [_speaker_prefix(s.speaker) + " ".join(s.text.split()) for s in t.segments if s.text.strip()]
    return "\n".join(lines) + "\n"


def to_json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), ensure_ascii=False, indent=2) + "\n"


def to_srt(t: Transcript) -> str:
    blocks = [f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{_speaker_prefix(who)}{text}\n"
              for i, (a, b, text, who) in enumerate(_speaker_cues(t), 1)]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(t: Transcript) -> str:
    out = ["WEBVTT", ""]
    for a, b, text, who in _speaker_cues(t):
        # a voice span without its closing tag covers the whole cue (WebVTT: "<v Name>text")
        voice = "" if who is None else f"<v {_vtt_escape(who)}>"
        out += [f"{_clock(a, '.')} --> {_clock(b, '.')}", voice + _vtt_escape(text), ""]
    return "\n".join(out)


def diarized_dict(t: Transcript) -> Dict[str, Any]:
    """The ``diarized_json`` body as a dict (a server adds its ``usage``)."""
    segments = [{"type": "transcript.text.segment", "id": f"seg_{i}", "start": round(float(s.start), 3),
                 "end": round(float(max(s.end, s.start)), 3), "text": s.text,
                 "speaker": s.speaker if s.speaker is not None else "unknown"}
                for i, s in enumerate(seg for seg in t.segments if seg.text.strip())]
    # OpenAI's "text" is the plain transcript: the segment texts, not the model's timed markup
    text = join_texts(s["text"] for s in segments) if t.speakers else t.text
    d = {"task": "transcribe", "duration": round(float(t.duration), 3), "text": text, "segments": segments}
    if t.notices:  # crispmoss's own key, only when there is something to say (speaker labels per pass)
        d["notices"] = list(t.notices)
    return d


def to_diarized_json(t: Transcript) -> str:
    return json.dumps(diarized_dict(t), ensure_ascii=False, indent=2) + "\n"


# Formats for every model, and those that only make sense for a diarizing model's output; render() takes both.
FORMATS: Dict[str, Callable[[Transcript], str]] = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt}
DIARIZED_FORMATS: Dict[str, Callable[[Transcript], str]] = {"diarized_json": to_diarized_json}


def render(t: Transcript, fmt: str) -> str:
    """``t`` in format ``fmt`` (one of :data:`FORMATS` or :data:`DIARIZED_FORMATS`); raises InputError for an
    unknown format."""
    try:
        f = FORMATS.get(fmt) or DIARIZED_FORMATS[fmt]
    except (KeyError, TypeError):
        names = ", ".join(list(FORMATS) + list(DIARIZED_FORMATS))
        raise InputError(f"unknown output format {fmt!r} (choose from {names})") from None
    return f(t)


__all__ = ["DIARIZED_FORMATS", "FORMATS", "cue_text", "cues", "diarized_dict", "render", "to_diarized_json",
           "to_json", "to_srt", "to_txt", "to_vtt"]
