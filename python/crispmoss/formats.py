"""Transcript output formats: txt, json, srt, vtt.

Subtitle cues are the transcript's segments that carry text; cue text has blank lines removed (a blank line ends
a cue in both formats) and ``-->`` defused, and in WebVTT ``&``, ``<`` and ``>`` are escaped.
"""
from __future__ import annotations

import json
import re
from typing import Callable, Dict, List, Tuple

from .errors import InputError
from .results import Transcript


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


def cues(t: Transcript) -> List[Tuple[float, float, str]]:
    """(start, end, text) of every segment with text, end never before start."""
    out = []
    for s in t.segments:
        text = cue_text(s.text)
        if text:
            out.append((s.start, max(s.end, s.start), text))
    return out


def to_txt(t: Transcript) -> str:
    return t.text + "\n"


def to_json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), ensure_ascii=False, indent=2) + "\n"


def to_srt(t: Transcript) -> str:
    blocks = [f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n" for i, (a, b, text) in enumerate(cues(t), 1)]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(t: Transcript) -> str:
    out = ["WEBVTT", ""]
    for a, b, text in cues(t):
        out += [f"{_clock(a, '.')} --> {_clock(b, '.')}", _vtt_escape(text), ""]
    return "\n".join(out)


FORMATS: Dict[str, Callable[[Transcript], str]] = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt}


def render(t: Transcript, fmt: str) -> str:
    """``t`` in format ``fmt`` (one of :data:`FORMATS`); raises InputError for an unknown format."""
    try:
        f = FORMATS[fmt]
    except (KeyError, TypeError):
        raise InputError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})") from None
    return f(t)


__all__ = ["FORMATS", "cue_text", "cues", "render", "to_json", "to_srt", "to_txt", "to_vtt"]
