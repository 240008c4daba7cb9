"""Result types shared by all models: :class:`Transcript` and :class:`Segment`, and the parsers that turn a
model's timed text into segments (MOSS-Audio's timed lines, MOSS-Transcribe-Diarize's ``[start][Sxx]text[end]``)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple


@dataclass
class Segment:
    """A span of the audio with its text; ``start`` and ``end`` are seconds from the start of the input.

    ``speaker`` is the speaker label exactly as a diarizing model wrote it (MOSS-Transcribe-Diarize: ``"S01"``,
    ``"S02"``, ...; labels are anonymous and consistent only within one pass), ``None`` for the other models and
    for text the diarized parser could not attribute.
    """

    start: float
    end: float
    text: str
    speaker: Optional[str] = None

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

    ``passes`` lists the ``(start, end)`` seconds of each pass when long audio was transcribed in several (empty
    for one pass), and ``notices`` says, in words, what a reader of the result should know about it: e.g. that a
    diarizing model's speaker labels restart in every pass (``S01`` of one pass need not be ``S01`` of the next).
    """

    text: str
    tokens: List[int] = field(default_factory=list)
    segments: List[Segment] = field(default_factory=list)
    duration: float = 0.0
    timings: Dict[str, float] = field(default_factory=dict)
    stop_reason: str = "stop"
    seed: Optional[int] = None
    passes: List[Tuple[float, float]] = field(default_factory=list)
    notices: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text

    @property
    def speakers(self) -> List[str]:
        """The speaker labels of the segments in order of first appearance (empty for non-diarizing models)."""
        seen: Dict[str, None] = {}
        for s in self.segments:
            if s.speaker is not None:
                seen.setdefault(s.speaker)
        return list(seen)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field. A segment's ``speaker`` appears only where it is set, a ``speakers``
        list (:attr:`speakers`) only for a diarized transcript, and ``passes`` / ``notices`` only when not empty,
        so the dicts of one-pass transcripts without speakers are unchanged."""
        d = asdict(self)
        for seg in d["segments"]:
            if seg.get("speaker") is None:
                seg.pop("speaker", None)
        for key in ("passes", "notices"):  # only where there is something to say, as for speakers
            if not d[key]:
                d.pop(key)
            elif key == "passes":
                d[key] = [list(p) for p in d[key]]
        speakers = self.speakers
        if speakers:
            d["speakers"] = speakers
        return d


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


# ---------------------------------------------------------------------------------------------------------------
# MOSS-Transcribe-Diarize output: "[0.48][S01]Welcome everyone[1.66][12.26][S02]The pipeline is ready[13.81]"
# ---------------------------------------------------------------------------------------------------------------
# A one-pass character scanner with the official parser's exact grammar (OpenMOSS/MOSS-Transcribe-Diarize
# moss_transcribe_diarize/transcript_parser.py, TranscriptStreamParser; tests/test_parse_diarized.py checks the
# two against each other), including its quirks: a "[number]" inside the text stays text unless a "[" follows
# it (after optional whitespace), a bracket that cannot be an end time goes back into the text, an unterminated
# last segment is dropped, and empty texts are skipped.

_TS_CHARS = frozenset("0123456789.")
_SPEAKER_CHARS = frozenset("S0123456789")
_MAX_TIMESTAMP_CHARS = 32
_MAX_SPEAKER_CHARS = 16
(_SEEK, _START, _SPEAKER_OPEN, _SPEAKER, _TEXT, _END, _AFTER_END) = range(7)


def _timestamp(tok: str) -> Optional[float]:
    # tok holds only digits and dots: valid with at most one dot and at least one digit ("1.", ".5" included)
    dots = tok.count(".")
    return float(tok) if dots <= 1 and len(tok) > dots else None


def _speaker_label(tok: str) -> Optional[str]:
    # tok holds only "S" and digits: valid as "S" followed by one or more digits
    return tok if len(tok) >= 2 and tok[0] == "S" and tok[1:].isdigit() else None


def _scan_diarized(text: str) -> Tuple[List[Segment], int]:
    """(segments, index just past the end timestamp of the last segment the scan completed)."""
    segments: List[Segment] = []
    done_upto = 0
    state = _SEEK
    tok = ""
    body: List[str] = []
    gap = ""  # whitespace seen after a candidate end timestamp
    start: Optional[float] = None
    speaker: Optional[str] = None
    end: Optional[float] = None
    end_tok = ""
    end_pos = 0

    def finish() -> None:
        nonlocal done_upto
        if start is not None and end is not None and speaker is not None:
            seg_text = "".join(body).strip()
            if seg_text:
                segments.append(Segment(start, end, seg_text, speaker))
            done_upto = end_pos

    for i, ch in enumerate(text):
        if state == _SEEK:
            if ch == "[":
                state, tok = _START, ""
        elif state == _START:
            if ch == "]":
                start = _timestamp(tok)
                state = _SPEAKER_OPEN if start is not None else _SEEK
                tok = ""
            elif ch in _TS_CHARS and len(tok) < _MAX_TIMESTAMP_CHARS:
                tok += ch
            else:  # not a timestamp (or too long): start over, at this "[" if it is one
                state, tok, start = (_START if ch == "[" else _SEEK), "", None
        elif state == _SPEAKER_OPEN:
            if ch == "[":
                state, tok = _SPEAKER, ""
            elif not ch.isspace():
                state, start = _SEEK, None
        elif state == _SPEAKER:
            if ch == "]":
                speaker = _speaker_label(tok)
                if speaker is None:
                    state, start = _SEEK, None
                else:
                    state, body = _TEXT, []
                tok = ""
            elif ch in _SPEAKER_CHARS and len(tok) < _MAX_SPEAKER_CHARS:
                tok += ch
            else:
                state, tok, start = (_START if ch == "[" else _SEEK), "", None
        elif state == _TEXT:
            if ch == "[":
                state, tok = _END, ""
            else:
                body.append(ch)
        elif state == _END:
            if ch == "]":
                t = _timestamp(tok)
                if t is not None and start is not None and t >= start:
                    state, end, end_tok, end_pos, gap = _AFTER_END, t, tok, i + 1, ""
                else:  # a bracketed number inside the text
                    body.append("[" + tok + "]")
                    state = _TEXT
                tok = ""
            elif ch in _TS_CHARS and len(tok) < _MAX_TIMESTAMP_CHARS:
                tok += ch
            else:
                # not an end time: the bracket and what followed it are text. (The official parser writes the
                # 33rd character of an over-long number twice; kept for equal output.)
                body.append("[" + tok + (ch + ch if ch in _TS_CHARS else ch))
                state, tok = _TEXT, ""
        else:  # _AFTER_END
            if ch == "[":
                finish()
                state, tok, body, start, speaker, end = _START, "", [], None, None, None
            elif ch.isspace():
                gap += ch
            else:  # the "end" was text after all
                body.append("[" + end_tok + "]" + gap + ch)
                state, gap, end, end_tok = _TEXT, "", None, ""
    if state == _AFTER_END:
        finish()
    return segments, done_upto


def parse_diarized(text: str) -> List[Segment]:
    """The ``[start][Sxx]text[end]`` segments of MOSS-Transcribe-Diarize output, exactly as the official parser
    (``transcript_parser.parse_transcript``) returns them: start/end in seconds as written, ``speaker`` the label
    as written, text stripped. Text before the first well-formed segment and an unterminated last segment are
    dropped, segments with empty text are skipped. Never raises for any ``str``."""
    return _scan_diarized(str(text))[0]


def diarized_segments(text: str, duration: Optional[float] = None) -> List[Segment]:
    """:func:`parse_diarized` plus whatever follows the last parsed segment (e.g. a segment cut off by the token
    limit) as a final segment with ``speaker=None``, from the last parsed end (or 0) to ``duration`` (or that
    start), raw text stripped. Text before the first parsed segment is dropped as the official parser drops it."""
    text = str(text)
    segments, upto = _scan_diarized(text)
    rest = text[upto:].strip()
    if rest:
        start = segments[-1].end if segments else 0.0
        end = start if duration is None else max(float(duration), start)
        segments.append(Segment(start, end, rest, None))
    return segments


__all__ = ["Segment", "StreamJoiner", "Transcript", "diarized_segments", "is_cjk", "join_texts", "parse_diarized",
           "parse_timed_lines"]
