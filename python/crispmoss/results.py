"""Result types shared by both models."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List


@dataclass
class Segment:
    """A span of the audio, in seconds from its start, with its text."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """What a transcription or a question returns.

    ``text`` is the decoded answer (special tokens skipped, surrounding whitespace stripped), ``tokens`` the
    generated ids (stop token excluded), ``segments`` the timed spans (one spanning the audio unless the model
    wrote timestamps), ``duration`` the audio length in seconds, ``timings`` milliseconds per stage and token
    counts, ``stop_reason`` one of "stop", "length", "interrupted", "timeout".
    """

    text: str
    tokens: List[int] = field(default_factory=list)
    segments: List[Segment] = field(default_factory=list)
    duration: float = 0.0
    timings: Dict[str, float] = field(default_factory=dict)
    stop_reason: str = "stop"

    def __str__(self) -> str:
        return self.text


_TIMED_LINE = re.compile(r"^\s*\[?\s*(\d+(?:\.\d+)?)\s*(?:s|sec)?\s*[-–~]\s*(\d+(?:\.\d+)?)\s*(?:s|sec)?\s*\]?\s*:?\s*(.*)$")


def parse_timed_lines(text: str, offset: float = 0.0) -> List[Segment]:
    """Parses the ``start_sec - end_sec: text`` lines MOSS-Audio writes when asked for timestamps.

    Lines that do not carry a time range are appended to the previous segment's text.
    """
    segments: List[Segment] = []
    for line in text.splitlines():
        m = _TIMED_LINE.match(line)
        if m:
            start, end = float(m.group(1)), float(m.group(2))
            if end < start:
                start, end = end, start
            segments.append(Segment(offset + start, offset + end, m.group(3).strip()))
        elif line.strip() and segments:
            segments[-1].text = (segments[-1].text + " " + line.strip()).strip()
    return segments
