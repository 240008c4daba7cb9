"""Several sessions of one Model from several Python threads at once give the sequential results."""
from __future__ import annotations

import threading

import crispmoss
from surface_util import LIBRI_0870, audio_gguf, audio_model, jfk, speechlike  # noqa: F401

N = 10


def _work(model, audio):
    s = model.session(audio)
    return [s.ask("Describe the audio.", max_new_tokens=N).tokens,
            s.transcribe(max_new_tokens=N).tokens,
            s.ask("Who speaks?", max_new_tokens=N, temperature=1.0, seed=5).tokens]


def _in_threads(fns):
    results, errors = [None] * len(fns), []

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def test_two_threads_two_sessions_match_sequential(audio_model, jfk):
    clips = [jfk, crispmoss.load_audio(LIBRI_0870)]
    sequential = [_work(audio_model, c) for c in clips]
    parallel = _in_threads([lambda c=c: _work(audio_model, c) for c in clips])
    assert parallel == sequential
    assert sequential[0] != sequential[1]  # different audio, different answers: the comparison means something


def test_long_form_in_parallel(audio_model):
    clips = [speechlike(22.0, seed=1), speechlike(22.0, seed=2)]
    kw = dict(max_new_tokens=4, max_pass_seconds=8.0)
    sequential = [audio_model.transcribe(c, **kw) for c in clips]
    parallel = _in_threads([lambda c=c: audio_model.transcribe(c, **kw) for c in clips])
    assert [p.tokens for p in parallel] == [s.tokens for s in sequential]
    assert [p.segments for p in parallel] == [s.segments for s in sequential]


def test_one_session_shared_by_two_threads_serialises(audio_model, jfk):
    s = audio_model.session(jfk)
    want = s.ask("Describe the audio.", max_new_tokens=N).tokens
    got = _in_threads([lambda: s.ask("Describe the audio.", max_new_tokens=N).tokens] * 2)
    assert got == [want, want]
