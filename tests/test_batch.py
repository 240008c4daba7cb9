"""Many sequences at once (cpp/engine.*, crispmoss/batch.py): every sequence decoded in a batch gets exactly the
tokens it gets alone, whatever shares its decode steps, with either KV-cache type; sequences join (after their own
prefill) and leave (at their own max_new_tokens, or interrupted) between steps; long audio and transcribe_many
decode their passes together and give the text of sequential passes.

Bit-identity holds where our CPU kernels run the products (AVX-512 VNNI); elsewhere ggml's kernels serve and a
batch may differ from alone at near-ties, so the exactness tests skip there.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import crispmoss
from crispmoss import AudioError, InputError, _core
from surface_util import JFK, SR, speechlike

exact = pytest.mark.skipif(not _core.gemv_available(),
                           reason="batched = alone bit for bit needs our CPU kernels (AVX-512 VNNI)")

LENGTHS = (0.5, 3.0, 11.0, 19.5, 30.0)  # seconds: different prompt lengths join decoding at different steps


def clips():
    out = []
    for k, s in enumerate(LENGTHS):
        x = crispmoss.load_audio(JFK) if s == 11.0 else speechlike(s, seed=k)
        out.append(np.ascontiguousarray(x[: int(s * SR)]))
    return out


@pytest.fixture(scope="module")
def ggufs(tiny_models):
    return {(a, t): str(tiny_models.gguf(a, outtype=t)) for a in ("moss_transcribe", "moss_audio") for t in ("f16", "f32")}


def _alone(path, kv, items, **kw):
    m = crispmoss.Model(path, 1, kv_type=kv, batch_size=1)
    return [m.transcribe(x, **kw) for x in items]


@exact
@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
@pytest.mark.parametrize("wtype,kv", [("f16", "f16"), ("f16", "f32"), ("f32", "f32")])
def test_transcribe_many_equals_alone(ggufs, arch, wtype, kv):
    path = ggufs[(arch, wtype)]
    items = clips()
    alone = _alone(path, kv, items, max_new_tokens=12)
    m = crispmoss.Model(path, 1, kv_type=kv, batch_size=8)
    got = m.transcribe_many(items, max_new_tokens=12)
    st = m.engine_stats()
    assert st["step_rows"] > st["steps"], st  # several sequences shared decode steps
    for a, b in zip(alone, got):
        assert b.tokens == a.tokens and b.text == a.text and b.stop_reason == a.stop_reason


@exact
@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_more_than_16_sequences_in_one_step(ggufs, kv):
    """Decode steps of up to 32 sequences are one graph (every weight read once, cpu::gemv_rows) and each sequence
    still gets exactly its tokens alone."""
    path = ggufs[("moss_transcribe", "f16")]
    items = [speechlike(0.3 + 0.05 * k, seed=100 + k) for k in range(22)]
    alone = _alone(path, kv, items, max_new_tokens=28)
    m = crispmoss.Model(path, 1, kv_type=kv, batch_size=24)
    got = m.transcribe_many(items, max_new_tokens=28)
    st = m.engine_stats()
    assert 16 < st["max_step_rows"] <= 22, st
    assert [g.tokens for g in got] == [a.tokens for a in alone]


@exact
@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
def test_join_and_leave_mid_run(ggufs, arch):
    """Threads start at different moments with different lengths, budgets and sampling; one is interrupted.
    Each gets what it gets alone."""
    path = ggufs[(arch, "f16")]
    items = clips()
    budgets = [5, 17, 9, 24, 13]
    sampling = [{}, {"temperature": 0.9, "seed": 11}, {}, {"temperature": 0.7, "top_k": 20, "seed": 5}, {}]
    alone_m = crispmoss.Model(path, 1, batch_size=1)
    alone = [alone_m.session(x).transcribe(max_new_tokens=n, **s) for x, n, s in zip(items, budgets, sampling)]
    stop_at = 3  # the third clip's callback stops after 3 pieces
    alone_cut = alone_m.session(items[2]).transcribe(max_new_tokens=budgets[2],
                                                     callback=_stopper(stop_at))
    m = crispmoss.Model(path, 1, batch_size=8)
    out = [None] * len(items)

    def work(i):
        time.sleep(0.05 * i)  # join while others decode
        cb = _stopper(stop_at) if i == 2 else None
        out[i] = m.session(items[i]).transcribe(max_new_tokens=budgets[i], callback=cb, **sampling[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = m.engine_stats()
    assert st["step_rows"] > st["steps"] and st["active"] == 0 and st["waiting"] == 0, st
    for i, (a, b) in enumerate(zip(alone, out)):
        if i == 2:
            assert b.stop_reason == "interrupted" and b.tokens == alone_cut.tokens and b.text == alone_cut.text
        else:
            assert b.tokens == a.tokens and b.text == a.text, i
            assert b.seed == a.seed


def _stopper(n):
    seen = []

    def cb(piece):
        seen.append(piece)
        return len(seen) < n

    return cb


@exact
def test_concurrent_asks_equal_sequential(ggufs):
    path = ggufs[("moss_audio", "f16")]
    m = crispmoss.Model(path, 1)
    s = m.session(JFK)
    questions = ["Describe the audio.", "What language is spoken?", "Who is speaking?", "Summarise it.",
                 "How many speakers?", "What is the mood?"]
    seq = [m.session(JFK).ask(q, max_new_tokens=8 + k) for k, q in enumerate(questions)]
    out = [None] * len(questions)
    sessions = [m.session(JFK) for _ in questions]

    def work(k):
        out[k] = sessions[k].ask(questions[k], max_new_tokens=8 + k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [o.tokens for o in out] == [r.tokens for r in seq]
    # and a session's prefix reuse still works under the engine
    r2 = s.ask("Describe the audio.", max_new_tokens=8)
    r3 = s.ask("Describe the audio.", max_new_tokens=8)
    assert r3.tokens == r2.tokens == seq[0].tokens and r3.timings["n_prefilled"] == 0


@exact
def test_long_audio_passes_decoded_together(ggufs):
    path = ggufs[("moss_transcribe", "f16")]
    x = speechlike(95.0, seed=3)
    one = crispmoss.Model(path, 1, batch_size=1).transcribe(x, max_new_tokens=10, max_pass_seconds=20.0)
    m = crispmoss.Model(path, 1, batch_size=4)
    pieces = []
    many = m.transcribe(x, max_new_tokens=10, max_pass_seconds=20.0, callback=pieces.append)
    assert many.timings["n_passes"] == one.timings["n_passes"] >= 5
    assert many.tokens == one.tokens and many.text == one.text and many.segments == one.segments
    assert "".join(pieces) == many.text  # streamed in pass order, and the stream equals the text
    st = m.engine_stats()
    assert st["step_rows"] > st["steps"]
    segs = list(m.segments(x, max_new_tokens=10, max_pass_seconds=20.0))
    assert segs == one.segments


def test_stream_equals_text(ggufs):
    m = crispmoss.Model(ggufs[("moss_audio", "f16")], 1)
    s = m.session(JFK)
    pieces = list(s.generate("Describe the audio.", stream=True, max_new_tokens=12))
    r = s.ask("Describe the audio.", max_new_tokens=12)
    assert "".join(pieces) == r.text
    got = []
    r2 = m.transcribe(JFK, max_new_tokens=12, callback=got.append)
    assert "".join(got) == r2.text


def test_transcribe_many_errors(ggufs, tmp_path):
    m = crispmoss.Model(ggufs[("moss_transcribe", "f16")], 1, batch_size=3)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    items = [str(JFK), str(bad), speechlike(2.0)]
    res = m.transcribe_many(items, max_new_tokens=4, on_error="return")
    assert isinstance(res[1], AudioError) and "broken.wav" in str(res[1])
    assert res[0].tokens == m.transcribe(JFK, max_new_tokens=4).tokens
    assert isinstance(res[2], crispmoss.Transcript)
    with pytest.raises(AudioError, match="broken.wav"):
        m.transcribe_many(items, max_new_tokens=4)
    assert m.engine_stats()["active"] == 0  # nothing left running
    with pytest.raises(InputError, match="on_error"):
        m.transcribe_many(items, on_error="ignore")
    with pytest.raises(InputError, match="callback"):
        m.transcribe_many(items, callback=print)
    with pytest.raises(InputError, match="batch_size"):
        m.transcribe_many(items, batch_size=0)
    # a batch whose KV caches cannot fit is refused before any work
    with pytest.raises(InputError, match="GiB"):
        m.transcribe_many(items, batch_size=1024, max_new_tokens=10 ** 8)
    assert m.transcribe_many([]) == []


def test_feed_inputs_arrive_while_it_runs(ggufs, tmp_path):
    """A Feed: inputs put from other threads while the run goes on join it, keep their indices, and the run ends once
    the feed is closed and they are done; an unreadable input is that input's error."""
    from crispmoss.batch import Feed

    m = crispmoss.Model(ggufs[("moss_transcribe", "f16")], 1, batch_size=3)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    items = clips()[:4] + [str(bad)]
    want = m.transcribe_many(items, max_new_tokens=6, on_error="return")
    feed = Feed()
    got = {}

    def put_later():
        assert feed.put(items[:2]) == 0
        time.sleep(0.3)
        assert feed.put(items[2:]) == 2
        time.sleep(0.3)
        feed.close()

    threading.Thread(target=put_later).start()
    for i, r in m.transcribe_iter(feed, max_new_tokens=6):
        got[i] = r
    assert sorted(got) == list(range(5)) and isinstance(got[4], AudioError) and "broken.wav" in str(got[4])
    if _core.gemv_available():  # batched = alone (see `exact`)
        assert [got[i].tokens for i in range(4)] == [w.tokens for w in want[:4]]
    assert feed._items == {} and m.engine_stats()["active"] == 0  # each input forgotten once its result was out
    with pytest.raises(RuntimeError, match="closed"):
        feed.put(items)


def test_slot_bytes_and_default_batch(ggufs):
    m = crispmoss.Model(ggufs[("moss_transcribe", "f16")], 1)
    assert 1 <= m.batch_size <= crispmoss.model.MAX_BATCH_ROWS == 32
    per_pos = m._core.kv_bytes_per_position("f16")
    assert m.slot_bytes(30.0, 512) >= per_pos * (390 + 512)
    assert m.slot_bytes(30.0, 512) > m.slot_bytes(10.0, 512)
    with pytest.raises(InputError):
        crispmoss.Model(ggufs[("moss_transcribe", "f16")], 1, batch_size=0)
