"""Audio of any length: one pass up to a per-model limit, beyond it passes cut at quiet moments.

Rule (documented in the README, "Long audio"):

* Up to the model's single-pass limit (30 s MOSS-Transcribe, 120 s MOSS-Audio, 240 s MOSS-Transcribe-Diarize;
  ``max_pass_seconds`` overrides, ``math.inf`` never splits) the whole clip goes through the model in one pass,
  exactly as the official code does. A pass longer than the model's limit gets a proportionally larger default
  ``max_new_tokens`` (``Model.pass_max_new_tokens``) and is refused before its encoder runs when its KV cache
  would not fit in the available memory.
* Longer audio is read from the file in blocks (never whole) and cut into passes of at most the limit. Each cut
  lies in the last ``SEARCH_SECONDS`` before the limit, at the centre of the 100 ms frame with the lowest RMS
  there (the latest of equally quiet frames), and leaves at least ``MIN_TAIL_SECONDS`` for the final pass.
  Passes do not overlap: every sample belongs to exactly one pass, so there is nothing to de-duplicate.
* Merge: pass texts are joined with one space (none between two CJK characters); the transcript has one segment
  per pass in absolute seconds (or, with timestamps, the model's timed lines shifted by the pass start; for
  MOSS-Transcribe-Diarize its speaker segments, shifted the same way). Passes that are digital silence (peak below
  -80 dBFS) are not sent to the model and give an empty segment. ``Transcript.passes`` gives the passes' bounds;
  a diarized transcript of several passes carries a notice in ``Transcript.notices``: speaker labels restart in
  every pass (the model labels speakers within what it hears in one pass).

The passes of a recording are decoded together by the model's engine, up to ``batch_size`` at once
(:mod:`crispmoss.batch`); the cuts are the ones above whatever the batch size, so the text equals passes run one
after another. At most ``batch_size`` passes' audio, mel, encoder output and KV cache exist at a time, so memory
is bounded by the limit and the batch size, not by the length of the recording.

This module holds the pure parts (cuts, merging); it imports nothing from the model. Files are streamed by
:func:`crispmoss.audio.file_blocks`, beside :func:`crispmoss.load_audio` and with the same downmix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, List, Optional

import numpy as np

from .audio import SAMPLE_RATE, file_blocks, open_audio  # noqa: F401 (file streaming lives in audio; re-exported)
from .errors import InputError
from .results import Segment, Transcript, join_texts

SEARCH_SECONDS = 6.0      # where a cut may go: this many seconds before the limit
FRAME_SECONDS = 0.1       # RMS frame for choosing the cut
MIN_TAIL_SECONDS = 1.0    # the last pass is at least this long when the audio allows
MIN_PASS_SECONDS = 1.0    # smallest accepted limit
SILENCE_PEAK = 1e-4       # -80 dBFS


@dataclass
class Piece:
    """A run of samples of the input: ``start`` is its first sample's index at 16 kHz."""

    start: int
    samples: np.ndarray
    index: int
    last: bool

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return (self.start + len(self.samples)) / SAMPLE_RATE


def quietest_cut(x: np.ndarray, lo: int, hi: int, frame: int) -> int:
    """The centre of the lowest-RMS ``frame``-sample frame laid from ``lo`` inside [lo, hi) of ``x``."""
    n = (hi - lo) // frame
    if n <= 0:
        return hi
    seg = np.asarray(x[lo:lo + n * frame], dtype=np.float64).reshape(n, frame)
    rms = np.sqrt(np.mean(seg * seg, axis=1))
    k = n - 1 - int(np.argmin(rms[::-1]))  # the latest of equally quiet frames keeps passes long
    return lo + k * frame + frame // 2


def split(blocks: Iterable[np.ndarray], limit_s: float, *, search_s: float = SEARCH_SECONDS,
          frame_s: float = FRAME_SECONDS, min_tail_s: float = MIN_TAIL_SECONDS) -> Iterator[Piece]:
    """Cuts a stream of 16 kHz blocks into pieces of at most ``limit_s`` seconds (see the module rule).

    Holds at most one piece plus one block in memory.
    """
    limit = int(round(limit_s * SAMPLE_RATE)) if math.isfinite(limit_s) else 2 ** 62
    search = int(round(min(search_s, limit_s / 2) * SAMPLE_RATE))
    tail = int(round(min(min_tail_s, search_s / 2, limit_s / 4) * SAMPLE_RATE))
    frame = max(1, int(round(frame_s * SAMPLE_RATE)))
    it = iter(blocks)
    buf = np.zeros(0, dtype=np.float32)
    pos, index, eof = 0, 0, False
    while True:
        parts = [buf]
        have = len(buf)
        while not eof and have < limit + tail:
            b = next(it, None)
            if b is None:
                eof = True
            elif len(b):
                parts.append(np.asarray(b, dtype=np.float32))
                have += len(b)
        if len(parts) > 1:
            buf = np.concatenate(parts)
        if len(buf) == 0:
            return
        if eof and len(buf) <= limit:
            yield Piece(pos, buf, index, True)
            return
        hi = min(limit, len(buf) - tail)
        lo = max(0, limit - search)
        cut = quietest_cut(buf, lo, max(hi, lo + frame), frame)
        yield Piece(pos, buf[:cut], index, False)
        buf = buf[cut:]
        pos += cut
        index += 1


def check_limit(max_pass_seconds: Optional[float], default: float) -> float:
    """The single-pass limit in seconds: ``max_pass_seconds`` validated, or ``default`` (the model's,
    ``Model.max_pass_seconds``)."""
    if max_pass_seconds is None:
        return default
    if isinstance(max_pass_seconds, bool) or not isinstance(max_pass_seconds, (int, float)):
        raise InputError(f"max_pass_seconds must be a number of seconds, got {max_pass_seconds!r}")
    v = float(max_pass_seconds)
    if not v >= MIN_PASS_SECONDS:
        raise InputError(f"max_pass_seconds must be >= {MIN_PASS_SECONDS:g} (math.inf: never split), got {v}")
    return v


@dataclass
class PassResult:
    """One pass: where it lies in the input (seconds) and its transcript (segments in absolute seconds)."""

    index: int
    start: float
    end: float
    transcript: Transcript
    skipped: bool = False
    total_duration: float = 0.0  # the input's duration from its header (0 if unknown)
    last: bool = False  # no pass follows


def shift_segments(t: Transcript, piece: Piece) -> Transcript:
    """``t`` (a pass's transcript) with its segments moved to absolute seconds of the input."""
    segs = [replace(s, start=round(s.start + piece.start_s, 3), end=round(s.end + piece.start_s, 3))
            for s in t.segments]  # replace() keeps every other field (the speaker label)
    return replace(t, segments=segs)


def merge(passes: List[PassResult]) -> Transcript:
    """One Transcript from the passes of one input (see the module rule)."""
    timings = {"mel_ms": 0.0, "encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "n_prompt": 0, "n_prefilled": 0,
               "n_generated": 0}
    tokens: List[int] = []
    segments: List[Segment] = []
    reasons = set()
    for p in passes:
        for k in timings:
            timings[k] += p.transcript.timings.get(k, 0)
        tokens += p.transcript.tokens
        segments += p.transcript.segments
        reasons.add(p.transcript.stop_reason)
    timings["n_passes"] = len(passes)
    reason = next((r for r in ("interrupted", "timeout", "length") if r in reasons), "stop")
    duration = passes[-1].end if passes else 0.0
    seed = passes[0].transcript.seed if passes else None
    t = Transcript(text=join_texts(p.transcript.text for p in passes), tokens=tokens, segments=segments,
                   duration=duration, timings=timings, stop_reason=reason, seed=seed)
    if len(passes) > 1:
        t.passes = [(round(p.start, 3), round(p.end, 3)) for p in passes]
        if t.speakers:
            t.notices.append(speaker_notice(t.passes))
    return t


def speaker_notice(passes: List[tuple]) -> str:
    """What a diarized transcript of several passes says about its speaker labels."""
    bounds = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in passes)
    return (f"speaker labels are per pass: the audio was transcribed in {len(passes)} passes ({bounds}) and the "
            f"labels restart in each, so the same label in two passes need not be the same speaker; "
            f"max_pass_seconds=math.inf (CLI: --max-pass-seconds inf) keeps one pass and one set of labels")


__all__ = ["PassResult", "Piece", "check_limit", "file_blocks",
           "join_texts", "merge", "open_audio", "quietest_cut", "shift_segments", "split"]
