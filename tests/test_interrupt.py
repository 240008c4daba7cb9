"""Interruption and limits: Ctrl-C stops a long generation promptly and leaves the model (and the session)
usable; prompts longer than the context, max_new_tokens and a wall-clock timeout are honoured.

The tiny random models almost never emit an end token, so a generation with a large max_new_tokens runs
until something stops it: exactly what these tests need.
"""
from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import crispmoss
from crispmoss import InputError

ROOT = Path(__file__).resolve().parents[1]
# The package under test (the dev tree, or a staged/installed one), for child processes.
PKG_PARENT = str(Path(crispmoss.__file__).absolute().parent.parent)
sys.path.insert(0, str(ROOT / "cpp" / "fuzz"))
import gguf_bytes as gb  # noqa: E402
from shared_paths import JFK


LONG = 100000  # more tokens than the context holds: only an interruption, the timeout or the context ends it
# Under a preloaded sanitizer runtime (scripts/sanitize.sh) every decode step is 5-15x slower.
SLOW = 5.0 if "san" in os.environ.get("LD_PRELOAD", "") else 1.0


def _speech(seconds: float) -> np.ndarray:
    if JFK.exists():
        x, _ = sf.read(str(JFK), dtype="float32")
        return np.ascontiguousarray(x[: int(seconds * 16000)])
    t = np.arange(int(seconds * 16000)) / 16000.0
    return (0.3 * np.sin(2 * np.pi * (150 + 400 * t) * t)).astype(np.float32)


@pytest.fixture(autouse=True)
def _sigint_reaches_python():
    """Ctrl-C must reach Python even where the suite itself was started with SIGINT ignored: a background job of a
    non-interactive shell (`cmd &` in a script, `nohup ... &`) inherits SIG_IGN for SIGINT, Python then installs no
    handler, and the child processes below inherit the same. The tests install Python's own handler (and their
    children, started meanwhile, get the default action and install theirs)."""
    old = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if old is not None:
        signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="module")
def model(tiny_transcribe_gguf_f16):
    return crispmoss.Model(tiny_transcribe_gguf_f16, 2)


@pytest.fixture(scope="module")
def audio_model(tiny_audio_gguf_f16):
    return crispmoss.Model(tiny_audio_gguf_f16, 2)


# --------------------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import crispmoss
    m = crispmoss.Model(sys.argv[1], 2)
    audio = (0.1 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    started = [False]
    def on_piece(p):
        if not started[0]:
            started[0] = True
            print("generating", flush=True)
    try:
        m.transcribe(audio, max_new_tokens=100000, callback=on_piece)
        print("finished without interruption", flush=True)
    except KeyboardInterrupt:
        print("interrupted %.6f" % time.monotonic(), flush=True)
    t = m.transcribe(audio, max_new_tokens=3)
    print("usable", len(t.tokens), t.stop_reason, flush=True)
    """
)


def test_sigint_subprocess(tiny_transcribe_gguf_f16):
    """A real SIGINT to a process inside a long transcription: KeyboardInterrupt within a second, then the
    same Model transcribes again."""
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_transcribe_gguf_f16)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline()
        assert line.strip() == "generating", line + p.stderr.read()
        time.sleep(0.3)  # well inside the decode loop
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    lines = out.strip().splitlines()
    assert p.returncode == 0, err[-3000:]
    assert lines[0].startswith("interrupted"), lines
    latency = float(lines[0].split()[1]) - sent
    assert latency < SLOW, f"KeyboardInterrupt came {latency:.2f} s after SIGINT"
    print(f"SIGINT -> KeyboardInterrupt in {latency * 1000:.0f} ms")
    assert lines[1].split()[:2] == ["usable", "3"], lines


def _interrupt_after_first_piece(run, via_kill: bool):
    """Runs `run(callback)` in the main thread; a helper thread raises SIGINT once the first piece arrived."""
    started = threading.Event()
    fired = []

    def on_piece(_p):
        started.set()

    def interrupter():
        if started.wait(60):
            time.sleep(0.1)
            fired.append(time.monotonic())
            if via_kill:
                os.kill(os.getpid(), signal.SIGINT)
            else:
                _thread.interrupt_main()

    th = threading.Thread(target=interrupter, daemon=True)
    th.start()
    with pytest.raises(KeyboardInterrupt):
        run(on_piece)
    caught = time.monotonic()
    th.join(5)
    assert fired, "generation never produced a piece"
    return caught - fired[0]


@pytest.mark.parametrize("via_kill", [False, True], ids=["interrupt_main", "os_kill"])
def test_sigint_in_process_model_stays_usable(model, via_kill):
    audio = _speech(2.0)
    latency = _interrupt_after_first_piece(
        lambda cb: model.transcribe(audio, max_new_tokens=LONG, callback=cb), via_kill)
    assert latency < SLOW
    print(f"interrupt -> KeyboardInterrupt in {latency * 1000:.0f} ms")
    t = model.transcribe(audio, max_new_tokens=4)
    assert len(t.tokens) == 4 and t.stop_reason == "length"


def test_sigint_session_reuse_is_exact(model):
    """After an interruption the session's cached prompt is consistent: the next request gives exactly the
    tokens a fresh session gives."""
    audio = _speech(2.0)
    s = model.session(audio)
    _interrupt_after_first_piece(lambda cb: s.transcribe(max_new_tokens=LONG, callback=cb), False)
    again = s.transcribe(max_new_tokens=12)
    fresh = model.session(audio).transcribe(max_new_tokens=12)
    assert again.tokens == fresh.tokens
    assert again.timings["n_prefilled"] < fresh.timings["n_prefilled"]  # the cache survived the interruption


def test_sigint_while_streaming(model):
    """Ctrl-C while consuming a stream: the iterator raises KeyboardInterrupt, its worker stops."""
    s = model.session(_speech(2.0))
    stream = s.generate(stream=True, max_new_tokens=LONG)
    first = next(stream)
    assert isinstance(first, str)
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in stream:
            pass
    assert time.monotonic() - t0 < 2.0 * SLOW
    stream.close()
    assert not any(t.name == "crispmoss-stream" and t.is_alive() for t in threading.enumerate())
    assert len(s.transcribe(max_new_tokens=3).tokens) == 3


def test_callback_exception_propagates(model):
    s = model.session(_speech(1.0))

    def boom(_p):
        raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here"):
        s.transcribe(max_new_tokens=LONG, callback=boom)
    assert len(s.transcribe(max_new_tokens=2).tokens) == 2


def test_callback_false_stops(model):
    seen = []
    t = model.session(_speech(1.0)).transcribe(max_new_tokens=LONG, callback=lambda p: seen.append(p) or len(seen) < 3)
    assert t.stop_reason == "interrupted"
    assert len(seen) == 3


# --------------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7])
def test_max_new_tokens(model, audio_model, n):
    for m in (model, audio_model):
        t = m.transcribe(_speech(1.0), max_new_tokens=n)
        assert len(t.tokens) <= n
        assert t.stop_reason == ("length" if len(t.tokens) == n else "stop")


def test_negative_max_new_tokens(model):
    with pytest.raises(InputError, match="max_new_tokens"):
        model.transcribe(_speech(1.0), max_new_tokens=-1)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_bad_timeout(model, bad):
    with pytest.raises(InputError, match="timeout"):
        model.transcribe(_speech(1.0), max_new_tokens=2, timeout=bad)


def test_timeout(model):
    s = model.session(_speech(2.0))
    t0 = time.monotonic()
    t = s.transcribe(max_new_tokens=LONG, timeout=0.5)
    elapsed = time.monotonic() - t0
    assert t.stop_reason == "timeout"
    assert 0 < len(t.tokens) < LONG
    assert elapsed < 0.5 + 2.0 * SLOW, elapsed  # one decode step past the deadline at most, plus the prefill


def test_timeout_longform(model):
    """The deadline covers a multi-pass transcription as a whole."""
    t0 = time.monotonic()
    t = model.transcribe(_speech(11.0), max_new_tokens=LONG, timeout=0.5, max_pass_seconds=5.0)
    assert t.stop_reason == "timeout"
    assert time.monotonic() - t0 < 0.5 + 4.0 * SLOW


@pytest.fixture(scope="module")
def short_context(tiny_transcribe_gguf_f16, tiny_audio_gguf_f16, tmp_path_factory):
    """The tiny models with a 64-token context."""
    d = tmp_path_factory.mktemp("short_ctx")
    out = {}
    for arch, src in (("moss_transcribe", tiny_transcribe_gguf_f16), ("moss_audio", tiny_audio_gguf_f16)):
        g = gb.read(src)
        g.set_kv(f"{arch}.llm.max_position_embeddings", gb.U32, 64)
        out[arch] = crispmoss.Model(g.write(d / f"{arch}.gguf"), 2)
    return out


def test_audio_longer_than_context(short_context):
    m = short_context["moss_transcribe"]
    assert m.n_ctx == 64
    with pytest.raises(InputError, match=r"audio tokens but the model's context is 64 tokens"):
        m.session(_speech(6.0))


def test_prompt_longer_than_context_in_core(short_context):
    """The C++ core checks too (a caller that bypasses the Python wrapper gets InputError, not a crash)."""
    m = short_context["moss_transcribe"]
    core = crispmoss._core.Session(m._core, n_threads=1)
    core.set_audio(_speech(4.5))  # 4.5 s = 59 audio rows + 10 prompt tokens > 64
    with pytest.raises(InputError, match=r"the prompt is \d+ tokens long but the model's context is 64"):
        core.generate(max_new_tokens=4)


def test_instruction_longer_than_context(short_context):
    m = short_context["moss_audio"]
    s = m.session(_speech(0.5))
    with pytest.raises(InputError, match=r"context is 64 tokens"):
        s.ask("describe " * 100, max_new_tokens=2)
    assert s.ask("describe", max_new_tokens=2).stop_reason in ("length", "stop")


def test_generation_stops_at_context_end(short_context):
    """max_new_tokens beyond the context: generation ends when the context is full, without an error."""
    m = short_context["moss_transcribe"]
    s = m.session(_speech(1.0))
    n_prompt = len(s.prompt_ids())
    t = s.transcribe(max_new_tokens=LONG)
    assert n_prompt + len(t.tokens) <= 64 + 1
    assert t.stop_reason in ("length", "stop")
