"""Many passes at once: the scheduler behind :meth:`Model.transcribe` (long audio) and
:meth:`Model.transcribe_many` (many inputs).

Every input is cut into passes by :func:`crispmoss.longform.split` (one pass up to the model's single-pass limit).
Up to ``batch_size`` passes, of one input or of several, run at the same time, each in a worker thread on its own
Session; the model's engine decodes all of them together, one token of each per step. The cuts are those of the
sequential rule and a sequence's tokens do not depend on what shares its decode steps, so the texts equal those of
passes run one after another.

Memory stays bounded: a pass's audio is read from its file only when a worker is free to take it, and a finished
pass keeps only its text, so at most ``batch_size`` passes' audio, encoder output and KV cache exist at once.

Results come out per input in pass order. A streaming callback (one input) receives the pieces in pass order:
those of a later pass that finishes first wait until the earlier passes have been handed over. When a pass ends
``interrupted`` (the callback returned False) or ``timeout``, no later pass of that input starts and those
already running are stopped; their results are dropped, as if the passes had run one after another.

Inputs may also arrive while the runner runs (a :class:`Feed`): one runner, and so the engine's batch, then stays
full across many small requests, such as the batches a Ray actor is handed one after another.

This module holds no model code: it is handed a function that transcribes one pass.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .audio import SAMPLE_RATE, AudioInput
from .longform import SILENCE_PEAK, PassResult, Piece, open_audio, shift_segments, split
from .results import Segment, StreamJoiner, Transcript

# run_pass(samples, callback, timeout, stop) -> the pass's Transcript (segments relative to the pass start); stop()
# is asked at every decode step, True interrupts the pass
RunPass = Callable[[np.ndarray, Callable[[str], bool], Optional[float], Callable[[], bool]], Transcript]


@dataclass
class _Input:
    index: int
    audio: AudioInput
    total: float = 0.0                       # duration from the header (0 if unknown)
    pieces: Optional[Iterator[Piece]] = None
    fed_all: bool = False                    # no more passes will start
    n_fed: int = 0
    in_flight: int = 0
    results: Dict[int, PassResult] = field(default_factory=dict)
    next_out: int = 0                        # next pass index to hand out
    stop_after: Optional[int] = None         # the pass that ended interrupted / timed out
    error: Optional[BaseException] = None
    deadline: Optional[float] = None
    reported: bool = False


class _OrderedStream:
    """Forwards the pieces of concurrently running passes to one callback in pass order."""

    def __init__(self, callback: Callable[[str], Optional[bool]]) -> None:
        self.joiner = StreamJoiner(callback)
        self.lock = threading.Lock()
        self.current = 0
        self.buffers: Dict[int, List[str]] = {}
        self.finished: set = set()
        self.stopped = False

    def _emit(self, text: str) -> bool:
        if self.joiner(text) is False:
            self.stopped = True
        return not self.stopped

    def piece(self, index: int, text: str) -> bool:
        with self.lock:
            if self.stopped:
                return False
            if index != self.current:
                self.buffers.setdefault(index, []).append(text)
                return True
            return self._emit(text)

    def pass_done(self, index: int) -> None:
        with self.lock:
            self.finished.add(index)
            while self.current in self.finished and not self.stopped:
                self.current += 1
                self.joiner.begin_pass()
                for text in self.buffers.pop(self.current, []):
                    if not self._emit(text):
                        break


class Feed:
    """Inputs handed to a :meth:`PassRunner.run` while it runs. :meth:`put` adds inputs (numbered on from 0 across
    puts, the indices the runner reports them by); :meth:`close` says that no more come, and the runner ends once
    those it has are done. ``feed[i]`` is input ``i`` until :meth:`forget` drops it (once its result is taken)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._new: List[Tuple[int, AudioInput]] = []
        self._items: Dict[int, AudioInput] = {}
        self._n = 0
        self.closed = False

    def put(self, audios: Iterable[AudioInput]) -> int:
        """Adds inputs; returns the index of the first."""
        with self._cv:
            if self.closed:
                raise RuntimeError("the feed is closed")
            first = self._n
            for a in audios:
                self._items[self._n] = a
                self._new.append((self._n, a))
                self._n += 1
            self._cv.notify_all()
            return first

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def __getitem__(self, index: int) -> AudioInput:
        return self._items[index]

    def forget(self, index: int) -> None:
        self._items.pop(index, None)

    def take(self, wait: bool) -> Tuple[List[Tuple[int, AudioInput]], bool]:
        """The inputs put since the last take (with ``wait``, waiting up to a second for some or for the close), and
        whether the feed is closed (then none come after these)."""
        with self._cv:
            if wait and not self._new and not self.closed:
                self._cv.wait(1.0)
            new, self._new = self._new, []
            return new, self.closed


class PassRunner:
    """Runs the passes of ``inputs`` with up to ``batch_size`` at a time (see the module text).

    :meth:`run` yields ``(input index, event)``: a :class:`PassResult` per pass (in pass order per input), then
    ``None`` when the input is complete, or an exception when it failed (then nothing more for it).
    """

    def __init__(self, run_pass: RunPass, limit: float, *, batch_size: int, timeout: Optional[float] = None,
                 callback: Optional[Callable[[str], Optional[bool]]] = None, seed: Optional[int] = None,
                 sample_rate: Optional[float] = None) -> None:
        self.run_pass = run_pass
        self.limit = limit
        self.batch_size = max(1, int(batch_size))
        self.timeout = timeout
        self.stream = _OrderedStream(callback) if callback is not None else None
        self.seed = seed
        self.sample_rate = sample_rate
        self.cancel = threading.Event()  # stops every running pass (an error with on_error="raise", Ctrl-C)
        self.lock = threading.Lock()

    # --- one pass ---------------------------------------------------------------------------------------------
    def _stopped(self, inp: _Input, index: int) -> bool:
        return self.cancel.is_set() or (inp.stop_after is not None and index > inp.stop_after)

    def _task(self, inp: _Input, piece: Piece) -> Transcript:
        timeout = None
        if inp.deadline is not None:
            timeout = inp.deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            t = Transcript(text="", segments=[], duration=len(piece.samples) / SAMPLE_RATE, stop_reason="timeout",
                           seed=self.seed)
        else:
            def on_piece(text: str) -> bool:
                if self._stopped(inp, piece.index):
                    return False
                return self.stream.piece(piece.index, text) if self.stream is not None else True

            t = self.run_pass(piece.samples, on_piece, timeout, lambda: self._stopped(inp, piece.index))
        if t.stop_reason in ("interrupted", "timeout"):
            with self.lock:
                if inp.stop_after is None or piece.index < inp.stop_after:
                    inp.stop_after = piece.index
        return t

    def _skipped(self, piece: Piece) -> Transcript:
        d = len(piece.samples) / SAMPLE_RATE
        return Transcript(text="", segments=[Segment(0.0, d, "")], duration=d, timings={}, seed=self.seed)

    # --- bookkeeping ------------------------------------------------------------------------------------------
    def _record(self, inp: _Input, piece: Piece, t: Transcript, skipped: bool = False) -> None:
        if self.stream is not None:
            self.stream.pass_done(piece.index)
        if inp.stop_after is not None and piece.index > inp.stop_after:
            return  # stopped after an earlier pass: dropped
        inp.results[piece.index] = PassResult(piece.index, piece.start_s, piece.end_s, shift_segments(t, piece),
                                              skipped, inp.total, piece.last)

    def _ready(self, inputs: Sequence[_Input]) -> Iterator[Tuple[int, Any]]:
        for inp in inputs:
            if inp.reported:
                continue
            if inp.error is not None:
                if inp.in_flight == 0:
                    inp.reported = True
                    yield inp.index, inp.error
                continue
            end = inp.n_fed if inp.stop_after is None else min(inp.n_fed, inp.stop_after + 1)
            while inp.next_out < end and inp.next_out in inp.results:
                r = inp.results.pop(inp.next_out)
                inp.next_out += 1
                yield inp.index, r
            if inp.fed_all and inp.in_flight == 0 and inp.next_out >= end:
                inp.results.clear()  # passes after the one that stopped the input
                inp.reported = True
                yield inp.index, None

    def _next_piece(self, inputs: Sequence[_Input]) -> Optional[Tuple[_Input, Piece]]:
        for inp in inputs:
            if inp.fed_all:
                continue
            if inp.error is not None or inp.stop_after is not None or self.cancel.is_set():
                inp.fed_all = True
                continue
            try:
                if inp.pieces is None:
                    inp.total, blocks = open_audio(inp.audio, self.sample_rate)
                    inp.pieces = split(blocks, self.limit)
                piece = next(inp.pieces, None)
            except Exception as exc:  # unreadable or undecodable input: that input fails, the others go on
                inp.error = exc
                inp.fed_all = True
                continue
            if piece is None:
                inp.fed_all = True
                continue
            if inp.n_fed == 0 and self.timeout:
                inp.deadline = time.monotonic() + self.timeout
            inp.n_fed += 1
            if piece.last:
                inp.fed_all = True
            return inp, piece
        return None

    # --- the loop ---------------------------------------------------------------------------------------------
    def run(self, audios: Union[Sequence[AudioInput], Feed]) -> Iterator[Tuple[int, Any]]:
        feed = audios if isinstance(audios, Feed) else None
        inputs = [] if feed is not None else [_Input(i, a) for i, a in enumerate(audios)]
        ended = feed is None  # no more inputs will come
        futures: Dict[Future, Tuple[_Input, Piece]] = {}
        pool: Optional[ThreadPoolExecutor] = None
        try:
            while True:
                if not ended:
                    new, ended = feed.take(wait=not futures and all(inp.fed_all for inp in inputs))
                    inputs.extend(_Input(i, a) for i, a in new)
                while len(futures) < self.batch_size:
                    item = self._next_piece(inputs)
                    if item is None:
                        break
                    inp, piece = item
                    single = piece.index == 0 and piece.last
                    if not single and float(np.max(np.abs(piece.samples))) < SILENCE_PEAK:
                        self._record(inp, piece, self._skipped(piece), skipped=True)
                        continue
                    if single and len(inputs) == 1 and feed is None:
                        # One input in one pass: run it here, in the caller's thread, as a plain request.
                        inp.in_flight += 1
                        try:
                            t = self._task(inp, piece)
                        finally:
                            inp.in_flight -= 1
                        self._record(inp, piece, t)
                        continue
                    if pool is None:
                        pool = ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix="crispmoss-pass")
                    inp.in_flight += 1
                    futures[pool.submit(self._task, inp, piece)] = (inp, piece)
                yield from self._ready(inputs)
                if feed is not None:
                    inputs = [inp for inp in inputs if not inp.reported]
                if not futures:
                    if all(inp.fed_all for inp in inputs):
                        yield from self._ready(inputs)
                        if ended:
                            return
                    continue
                done, _ = wait(list(futures), timeout=0.1, return_when=FIRST_COMPLETED)
                for f in done:
                    inp, piece = futures.pop(f)
                    inp.in_flight -= 1
                    try:
                        t = f.result()
                    except Exception as exc:
                        if inp.error is None:
                            inp.error = exc
                        inp.fed_all = True
                        if self.stream is not None:
                            self.stream.pass_done(piece.index)
                        continue
                    if inp.error is None:
                        self._record(inp, piece, t)
                yield from self._ready(inputs)
        finally:
            # Leaving early (an error raised to the caller, Ctrl-C, the consumer stopped iterating): stop what runs
            # and wait for it, so no worker outlives the call.
            if futures:
                self.cancel.set()
            if pool is not None:
                pool.shutdown(wait=True)


def passes_of(runner: PassRunner, audio: AudioInput) -> Iterator[PassResult]:
    """The passes of one input in order; raises the input's error."""
    for _, event in runner.run([audio]):
        if isinstance(event, BaseException):
            raise event
        if event is not None:
            yield event


__all__ = ["Feed", "PassRunner", "passes_of"]
