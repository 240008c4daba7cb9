"""Test-only reference of MOSS-Transcribe-Diarize's official transcript parser.

Written from reading OpenMOSS/MOSS-Transcribe-Diarize @ 0e3d1403fd8f1f1c674e883ece96b9f630794ebe,
``moss_transcribe_diarize/transcript_parser.py`` (``TranscriptStreamParser`` / ``parse_transcript``, with the
default ``strip_text=True, skip_empty=True``). It mirrors that class's structure state by state (one method per
state, the same buffers and resets) so that it stands in for the official code, which is not available to CI.
It is deliberately kept apart from ``crispmoss.results.parse_diarized`` (a different, single-function scanner),
so the tests compare two implementations. Segments come back as (start, end, speaker, text) tuples.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

RefSegment = Tuple[float, float, str, str]


def _ts(chars: List[str]) -> Optional[float]:
    if not chars:
        return None
    dots = digits = 0
    for c in chars:
        if "0" <= c <= "9":
            digits += 1
        elif c == ".":
            dots += 1
            if dots > 1:
                return None
        else:
            return None
    return float("".join(chars)) if digits else None


def _spk(chars: List[str]) -> Optional[str]:
    if len(chars) < 2 or chars[0] != "S":
        return None
    if any(not ("0" <= c <= "9") for c in chars[1:]):
        return None
    return "".join(chars)


def _is_ts(c: str) -> bool:
    return ("0" <= c <= "9") or c == "."


def _is_spk(c: str) -> bool:
    return c == "S" or ("0" <= c <= "9")


class RefParser:
    SEEK, START, SPK_OPEN, SPK, TEXT, END, AFTER = range(7)

    def __init__(self) -> None:
        self.out: List[RefSegment] = []
        self.reset()

    def reset(self) -> None:
        self.state = self.SEEK
        self.token: List[str] = []
        self.text: List[str] = []
        self.pending: List[str] = []
        self.start: Optional[float] = None
        self.end: Optional[float] = None
        self.end_token = ""
        self.speaker: Optional[str] = None

    def feed(self, chunk: str) -> None:
        for c in chunk:
            getattr(self, "_s%d" % self.state)(c)

    def close(self) -> List[RefSegment]:
        if self.state == self.AFTER:
            self._emit()
        self.reset()
        return self.out

    def _s0(self, c: str) -> None:  # seek "["
        if c == "[":
            self.token.clear()
            self.state = self.START

    def _bracket(self, c: str, parse, allowed, limit: int, accept) -> None:
        """START and SPEAKER: collect allowed chars up to the limit; at "]" parse (invalid: reset) and accept;
        anything else resets, and a "[" then opens a new start timestamp."""
        if c == "]":
            v = parse(self.token)
            if v is None:
                self.reset()
                return
            accept(v)
            self.token.clear()
            return
        if allowed(c):
            self.token.append(c)
            if len(self.token) <= limit:
                return
        self.reset()
        if c == "[":
            self.state = self.START

    def _s1(self, c: str) -> None:  # start timestamp
        self._bracket(c, _ts, _is_ts, 32, self._accept_start)

    def _accept_start(self, v: float) -> None:
        self.start = v
        self.state = self.SPK_OPEN

    def _s2(self, c: str) -> None:  # whitespace, then "[" of the speaker
        if c == "[":
            self.token.clear()
            self.state = self.SPK
        elif not c.isspace():
            self.reset()

    def _s3(self, c: str) -> None:  # speaker label
        self._bracket(c, _spk, _is_spk, 16, self._accept_speaker)

    def _accept_speaker(self, v: str) -> None:
        self.speaker = v
        self.text.clear()
        self.state = self.TEXT

    def _s4(self, c: str) -> None:  # text
        if c == "[":
            self.token.clear()
            self.state = self.END
        else:
            self.text.append(c)

    def _s5(self, c: str) -> None:  # end candidate
        if c == "]":
            v = _ts(self.token)
            if v is not None and self.start is not None and v >= self.start:
                self.end = v
                self.end_token = "".join(self.token)
                self.pending.clear()
                self.state = self.AFTER
            else:
                self.text.append("[")
                self.text.extend(self.token)
                self.text.append("]")
                self.state = self.TEXT
            self.token.clear()
            return
        if _is_ts(c):
            self.token.append(c)
            if len(self.token) <= 32:
                return
        self.text.append("[")
        self.text.extend(self.token)
        self.text.append(c)
        self.token.clear()
        self.state = self.TEXT

    def _s6(self, c: str) -> None:  # after a candidate end
        if c == "[":
            self._emit()
            self.token.clear()
            self.state = self.START
            return
        if c.isspace():
            self.pending.append(c)
            return
        self.text.append("[")
        self.text.append(self.end_token)
        self.text.append("]")
        self.text.extend(self.pending)
        self.text.append(c)
        self.pending.clear()
        self.end = None
        self.end_token = ""
        self.state = self.TEXT

    def _emit(self) -> None:
        if self.start is None or self.end is None or self.speaker is None:
            self.reset()
            return
        t = "".join(self.text).strip()
        if t:
            self.out.append((self.start, self.end, self.speaker, t))
        self.token.clear()
        self.text.clear()
        self.pending.clear()
        self.start = self.end = None
        self.end_token = ""
        self.speaker = None
        self.state = self.SEEK


def parse_transcript_ref(text: str, chunks: Optional[List[str]] = None) -> List[RefSegment]:
    """The official ``parse_transcript(text)``; with ``chunks`` fed piecewise (streaming), same result."""
    p = RefParser()
    for piece in (chunks if chunks is not None else [text]):
        p.feed(piece)
    return p.close()
