"""Sessions: encode once, reuse the KV prefix, stream text, clear errors (tiny random models: mechanics only)."""
from __future__ import annotations

import os

import pytest

import crispmoss
from crispmoss import InputError, ModelError
from crispmoss.model import transcription_instruction
from surface_util import JFK, audio_gguf, audio_model, jfk, transcribe_gguf, transcribe_model  # noqa: F401

N = 12  # new tokens per request: enough to exercise decoding, small enough to stay fast


def _lcp(a, b) -> int:
    return len(os.path.commonprefix([list(a), list(b)]))


def test_second_question_prefills_only_its_own_tokens(audio_model, jfk):
    s = audio_model.session(jfk)
    q1, q2 = "What is said in this clip?", "Who is speaking, and where?"
    r1 = s.ask(q1, max_new_tokens=N)
    r2 = s.ask(q2, max_new_tokens=N)
    p1, p2 = s.prompt_ids(q1), s.prompt_ids(q2)
    own = len(p2) - _lcp(p1, p2)
    assert r1.timings["n_prefilled"] == r1.timings["n_prompt"] == len(p1)
    assert r2.timings["n_prompt"] == len(p2)
    assert r2.timings["n_prefilled"] == own
    assert own < 20 < s.n_audio_tokens  # the question's tail only; the audio rows are reused
    # No second encoder pass: the encoder timing is the one recorded when the session was created.
    assert r2.timings["encode_ms"] == r1.timings["encode_ms"]
    # Reusing the cache gives the same tokens as a fresh session.
    fresh = audio_model.session(jfk).ask(q2, max_new_tokens=N)
    assert r2.tokens == fresh.tokens and r2.text == fresh.text


def test_repeat_transcription_reuses_everything(transcribe_model, jfk):
    s = transcribe_model.session(jfk)
    a = s.transcribe(max_new_tokens=N)
    b = s.transcribe(max_new_tokens=N)
    assert a.timings["n_prefilled"] == a.timings["n_prompt"]
    assert b.timings["n_prefilled"] == 0  # the same prompt reuses its cached positions and last logits
    assert a.tokens == b.tokens
    assert a.duration == pytest.approx(11.0)
    assert a.segments == [crispmoss.Segment(0.0, a.duration, a.text)]


def test_stream_and_callback_match_the_plain_result(audio_model, jfk):
    s = audio_model.session(jfk)
    plain = s.ask("Describe the audio.", max_new_tokens=N)
    pieces = list(s.generate("Describe the audio.", stream=True, max_new_tokens=N))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces).strip() == plain.text
    got = []
    via_cb = s.generate("Describe the audio.", callback=got.append, max_new_tokens=N)
    assert isinstance(via_cb, crispmoss.Transcript)
    assert got == pieces and via_cb.tokens == plain.tokens


def test_callback_can_stop_and_stream_can_be_closed(audio_model, jfk):
    s = audio_model.session(jfk)
    seen = []
    r = s.ask("Describe the audio.", max_new_tokens=N, callback=lambda p: seen.append(p) or len(seen) < 2)
    assert r.stop_reason == "interrupted" and len(seen) == 2
    it = s.generate("Describe the audio.", stream=True, max_new_tokens=N)
    first = next(it)
    it.close()  # stops the decode loop; the session stays usable
    assert isinstance(first, str)
    again = s.ask("Describe the audio.", max_new_tokens=N)
    assert again.stop_reason in ("stop", "length")


def test_callback_cannot_reenter_its_session(audio_model, jfk):
    s = audio_model.session(jfk)

    def reenter(_piece):
        s.ask("again?", max_new_tokens=1)

    with pytest.raises(InputError, match="already running"):
        s.ask("Describe the audio.", max_new_tokens=N, callback=reenter)
    assert s.ask("Describe the audio.", max_new_tokens=2).timings["n_generated"] <= 2


def test_stream_with_callback_is_rejected(audio_model, jfk):
    with pytest.raises(InputError):
        audio_model.session(jfk).generate("hi", stream=True, callback=print)


def test_transcribe_model_refuses_instructions(transcribe_model, jfk):
    s = transcribe_model.session(jfk)
    with pytest.raises(ModelError, match="no instruction"):
        s.ask("What is said?")
    with pytest.raises(ModelError):
        transcribe_model.ask(jfk, "What is said?")
    with pytest.raises(ModelError):
        s.generate("What is said?")
    with pytest.raises(InputError, match="timestamps"):
        s.transcribe(timestamps=True)


def test_language_hints(transcribe_model, audio_model, jfk):
    # MOSS-Transcribe takes no hint: its languages (en, zh) are a no-op, anything else is a clear error.
    assert transcription_instruction("moss_transcribe", "en", False) == ""
    assert transcription_instruction("moss_transcribe", "Mandarin", False) == ""
    with pytest.raises(InputError, match="only English and Chinese"):
        transcribe_model.session(jfk).transcribe(language="de")
    # MOSS-Audio: official instructions for English and Chinese, a hint in their style otherwise.
    assert transcription_instruction("moss_audio", "English", False) == ""
    assert transcription_instruction("moss_audio", "zh", False) == "请转录这段音频。"
    assert transcription_instruction("moss_audio", "de", False) == "Please transcribe this audio in German."
    assert transcription_instruction("moss_audio", "swahili", True) == \
        "Please transcribe this audio in Swahili with timestamps."
    with pytest.raises(InputError):
        transcription_instruction("moss_audio", "de; rm -rf", False)
    s = audio_model.session(jfk)
    hinted = s.transcribe(language="de", max_new_tokens=4)
    asked = s.ask("Please transcribe this audio in German.", max_new_tokens=4)
    assert hinted.tokens == asked.tokens
    assert s.transcribe(language="en", max_new_tokens=4).tokens == s.transcribe(max_new_tokens=4).tokens


def test_prompt_longer_than_the_context(audio_model, jfk):
    s = audio_model.session(jfk)
    with pytest.raises(InputError, match="context"):
        s.ask("a " * (audio_model.n_ctx + 10), max_new_tokens=1)
    assert s.ask("ok?", max_new_tokens=1).timings["n_generated"] <= 1  # still usable


def test_bad_requests(audio_model, jfk):
    s = audio_model.session(jfk)
    with pytest.raises(InputError):
        s.ask("   ")
    with pytest.raises(TypeError):
        s.ask("hi", max_tokens=3)
    with pytest.raises(InputError):
        s.ask("hi", max_new_tokens=-1)
    with pytest.raises(InputError):
        s.ask("hi", timeout=0)
    with pytest.raises(crispmoss.AudioError):
        audio_model.session([])
    with pytest.raises(ModelError, match="no such file"):
        crispmoss.Model("/nonexistent/model.gguf")
    with pytest.raises(InputError):
        crispmoss.Model(audio_model.path, -2)
    r = s.ask("hi", max_new_tokens=0)
    assert r.tokens == [] and r.text == "" and r.stop_reason == "length"


def test_timeout_stops_generation(audio_model, jfk):
    r = audio_model.session(jfk).ask("Describe the audio.", max_new_tokens=200, timeout=1e-6)
    assert r.stop_reason == "timeout" and len(r.tokens) == 1


def test_model_surface(transcribe_model, audio_model, audio_gguf):
    assert transcribe_model.arch == "moss_transcribe" and audio_model.arch == "moss_audio"
    assert transcribe_model.default_max_new_tokens == 512 and audio_model.default_max_new_tokens == 1024
    assert transcribe_model.max_pass_seconds == 30.0 and audio_model.max_pass_seconds == 120.0
    assert audio_model.n_ctx == 40960
    with crispmoss.Model(audio_gguf, 1) as m:
        assert "moss_audio" in repr(m)
        assert m.detokenize(m.tokenize("hello world")) == "hello world"


def test_system_prompt_replaces_the_default(audio_model, transcribe_model, jfk):
    s = audio_model.session(jfk)
    default = s.prompt_ids("Describe the audio.")
    same = s.prompt_ids("Describe the audio.", system="You are a helpful assistant.")
    other = s.prompt_ids("Describe the audio.", system="You are a pirate.")
    assert same == default and other != default
    head = audio_model.tokenize("<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\n")
    assert other[: len(head)] == head and other[len(head):] == default[len(default) - len(other) + len(head):]
    r = s.ask("Describe the audio.", system="You are a pirate.", max_new_tokens=N)
    assert r.timings["n_prompt"] == len(other)
    with pytest.raises(InputError):
        s.ask("hi", system="  ")
    with pytest.raises(ModelError):
        transcribe_model.session(jfk).generate(None, system="You are a pirate.")


def test_bad_text_arguments_are_input_errors(audio_model, jfk):
    # A str that is not valid Unicode (a lone surrogate) reaches the core as a clear InputError, not pybind's
    # "incompatible function arguments" TypeError.
    s = audio_model.session(jfk)
    for call in (lambda: s.ask("\udcff", max_new_tokens=1), lambda: s.generate("a\udcffb", max_new_tokens=1),
                 lambda: s.ask("Hi", system="\udcff", max_new_tokens=1), lambda: audio_model.tokenize("\udcff"),
                 lambda: s.transcribe(language="\udcff", max_new_tokens=1)):
        with pytest.raises(InputError):
            call()
    assert s.ask("Hi", max_new_tokens=1).stop_reason in ("stop", "length")  # the session is still usable


def test_prompt_ids_count_audio_without_the_encoder(audio_model, transcribe_model, jfk):
    for m in (audio_model, transcribe_model):
        assert m.prompt_ids(jfk) == m.session(jfk).prompt_ids()


def test_close_releases_the_model(transcribe_gguf, jfk):
    with crispmoss.Model(transcribe_gguf, n_threads=1) as m:
        text = m.transcribe(jfk, max_new_tokens=2).text
        assert not m.closed
    assert m.closed
    for call in (lambda: m.transcribe(jfk, max_new_tokens=2), lambda: m.session(jfk), lambda: m.tokenize("hi"),
                 lambda: m.arch):
        with pytest.raises(ModelError, match="closed"):
            call()
    m.close()  # twice is harmless
    assert isinstance(text, str)


def test_generation_options_are_in_the_signatures(audio_model, jfk):
    import inspect

    from crispmoss.model import GenerateOptions, Model, Session

    keys = [p for p in inspect.signature(Model.options).parameters if p != "self"]
    for fn in (Model.transcribe, Model.segments, Model.transcribe_many, Model.transcribe_iter, Model.ask,
               Session.transcribe, Session.ask, Session.generate):
        params = inspect.signature(fn).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), fn.__qualname__
        for k in keys + ["options"]:
            assert params[k].kind is params[k].KEYWORD_ONLY, (fn.__qualname__, k)
            assert params[k].default == inspect.signature(Model.options).parameters.get(k, params["options"]).default
    with pytest.raises(TypeError, match="max_tokens"):
        audio_model.transcribe(jfk, max_tokens=3)
    # options= is the same request as its keywords; both at once is refused
    opts = audio_model.options(max_new_tokens=3, temperature=0.7, seed=11)
    assert isinstance(opts, GenerateOptions)
    s = audio_model.session(jfk)
    a = s.ask("what?", options=opts)
    assert a.tokens == s.ask("what?", max_new_tokens=3, temperature=0.7, seed=11).tokens
    assert audio_model.transcribe(jfk, options=opts).tokens == audio_model.transcribe(
        jfk, max_new_tokens=3, temperature=0.7, seed=11).tokens
    with pytest.raises(InputError, match="either options="):
        s.generate("what?", options=opts, top_k=2)
    with pytest.raises(InputError, match="GenerateOptions"):
        s.ask("what?", options={"max_new_tokens": 3})
