"""Result types shared by both models: :class:`Transcript` and :class:`Segment`."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class Segment:
    """A span of the audio with its text; ``start`` and ``end`` are seconds from the start of the input."""

    start: float
    end: float
    text: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Transcript:
    """What a transcription or a question returns.

    ``text`` is the decoded answer (special tokens skipped, surrounding whitespace stripped), ``tokens`` the
    generated ids (stop tokens excluded; for long audio the ids of all passes in order), ``segments`` the timed
    spans in absolute seconds (one per pass, or the model's own timed lines when it wrote timestamps),
    ``duration`` the audio length in seconds, ``timings`` milliseconds per stage and token counts (summed over
    passes), ``stop_reason`` one of "stop", "length", "interrupted", "timeout", and ``seed`` the sampler seed
    used (None for greedy decoding).
    """

    text: str
    tokens: List[int] = field(default_factory=list)
    segments: List[Segment] = field(default_factory=list)
    duration: float = 0.0
    timings: Dict[str, float] = field(default_factory=dict)
    stop_reason: str = "stop"
    seed: Optional[int] = None

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


_TIMED_LINE = re.compile(
    r"^\s*\[?\s*(\d+(?:\.\d+)?)\s*(?:s|sec)?\s*[-–~]\s*(\d+(?:\.\d+)?)\s*(?:s|sec)?\s*\]?\s*:?\s*(.*)$")


def parse_timed_lines(text: str, offset: float = 0.0) -> List[Segment]:
    """Parses the ``start_sec - end_sec: text`` lines MOSS-Audio writes when asked for timestamps.

    ``offset`` (seconds) is added to every time, so a later pass of a long recording lands at its absolute
    position. Lines that do not carry a time range are appended to the previous segment's text.
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


__all__ = ["Segment", "Transcript", "parse_timed_lines"]
