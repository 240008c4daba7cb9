"""Result types shared by both models: :class:`Transcript` and :class:`Segment`."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional


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


def is_cjk(ch: str) -> bool:
    """Whether ``ch`` belongs to a script written without spaces between words (CJK radicals, punctuation, kana
    and ideographs incl. the supplementary planes, Hangul syllables, compatibility ideographs, fullwidth forms).
    The one definition: joining passes (:func:`join_texts`) and :mod:`crispmoss.loopfix` both use it."""
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF
            or 0x20000 <= o <= 0x2FA1F)


def join_texts(texts: Any) -> str:
    """Joins pass texts: one space between passes, none between two CJK characters; empty texts skipped."""
    out = ""
    for t in texts:
        t = t.strip()
        if not t:
            continue
        if out:
            out += "" if (is_cjk(out[-1]) and is_cjk(t[0])) else " "
        out += t
    return out


class StreamJoiner:
    """Hands a callback the streamed pieces of one or more passes so that their concatenation equals the final
    ``Transcript.text`` (:func:`join_texts` of the stripped pass texts): leading whitespace of a pass is dropped,
    trailing whitespace waits for more text of the same pass, and passes are joined as join_texts joins them.
    Call :meth:`begin_pass` before each pass's pieces (the first pass begins on construction)."""

    def __init__(self, callback: Callable[[str], Optional[bool]]) -> None:
        self.callback = callback
        self.last_char = ""
        self.pending = ""
        self.in_pass = False

    def begin_pass(self) -> None:
        self.pending = ""
        self.in_pass = False

    def __call__(self, piece: str) -> Optional[bool]:
        if not self.in_pass:
            piece = piece.lstrip()
            if not piece:
                return True
            self.in_pass = True
            if self.last_char:
                piece = ("" if (is_cjk(self.last_char) and is_cjk(piece[0])) else " ") + piece
        text = self.pending + piece
        body = text.rstrip()
        self.pending = text[len(body):]
        if not body:
            return True
        self.last_char = body[-1]
        return self.callback(body)


__all__ = ["Segment", "StreamJoiner", "Transcript", "is_cjk", "join_texts", "parse_timed_lines"]
