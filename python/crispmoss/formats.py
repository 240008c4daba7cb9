"""Transcript output formats: txt, json, srt, vtt."""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Callable, Dict

from .errors import InputError
from .results import Transcript


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_txt(t: Transcript) -> str:
    return t.text + "\n"


def to_json(t: Transcript) -> str:
    return json.dumps(asdict(t), ensure_ascii=False, indent=2) + "\n"


def to_srt(t: Transcript) -> str:
    blocks = []
    for i, s in enumerate(t.segments, 1):
        text = s.text.strip() or "..."
        blocks.append(f"{i}\n{_clock(s.start, ',')} --> {_clock(max(s.end, s.start), ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(t: Transcript) -> str:
    out = ["WEBVTT", ""]
    for s in t.segments:
        text = (s.text.strip() or "...").replace("-->", "->")
        out += [f"{_clock(s.start, '.')} --> {_clock(max(s.end, s.start), '.')}", text, ""]
    return "\n".join(out)


FORMATS: Dict[str, Callable[[Transcript], str]] = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt}


def render(t: Transcript, fmt: str) -> str:
    try:
        return FORMATS[fmt](t)
    except KeyError:
        raise InputError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})") from None
