"""Output formats parsed back with standard parsers: srt (PyPI `srt`), WebVTT (`webvtt-py`), json."""
from __future__ import annotations

import html
import json

import pytest

from crispmoss import InputError, Segment, Transcript
from crispmoss.formats import FORMATS, cue_text, render
from surface_util import speechlike, transcribe_gguf, transcribe_model  # noqa: F401

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

NASTY = Transcript(
    text="whatever",
    segments=[
        Segment(0.0, 1.2345, "Hello, world."),
        Segment(1.2345, 3.0, "two\n\nparagraphs\r\nand a --> arrow"),
        Segment(3.0, 3.0, "   "),                       # empty: no cue
        Segment(3.5, 3.25, "end before start"),          # clamped
        Segment(3661.001, 3662.5, "a < b & c > d  \u00e9\u4f60\u597d 🎤"),
        Segment(4000.0, 4001.0, "1\n00:00:01,000 --> 00:00:02,000"),  # looks like a cue header
    ],
    duration=4001.0,
)


def _expected():
    out = []
    for s in NASTY.segments:
        text = cue_text(s.text)
        if text:
            out.append((round(s.start, 3), round(max(s.start, s.end), 3), text))
    return out


def _vtt_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _srt_cues(text: str):
    return [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in srt.parse(text)]


def _vtt_cues(text: str):
    return [(_vtt_seconds(c.start), _vtt_seconds(c.end), html.unescape(c.text)) for c in webvtt.from_string(text)]


def _close(a, b):
    assert len(a) == len(b)
    for (s1, e1, t1), (s2, e2, t2) in zip(a, b):
        assert s1 == pytest.approx(s2, abs=1e-3) and e1 == pytest.approx(e2, abs=1e-3)
        assert t1 == t2


def test_srt_round_trip():
    _close(_srt_cues(render(NASTY, "srt")), _expected())


def test_vtt_round_trip():
    text = render(NASTY, "vtt")
    assert text.startswith("WEBVTT\n")
    _close(_vtt_cues(text), _expected())


def test_cue_text_is_safe():
    t = cue_text("a\n\n\nb -->c\r\rd\u2028e")
    assert t == "a\nb ->c\nd\ne" and "\n\n" not in t


def test_json_and_txt():
    d = json.loads(render(NASTY, "json"))
    assert d["text"] == "whatever" and d["duration"] == 4001.0
    assert [Segment(**s) for s in d["segments"]] == NASTY.segments
    assert set(d) == {"text", "tokens", "segments", "duration", "timings", "stop_reason", "seed"}
    assert render(NASTY, "txt") == "whatever\n"
    assert sorted(FORMATS) == ["json", "srt", "txt", "vtt"]


def test_unknown_format():
    with pytest.raises(InputError, match="unknown output format"):
        render(NASTY, "docx")


def test_model_output_round_trips(transcribe_model):
    """Gibberish from a random model (any characters at all) still gives parseable subtitles."""
    r = transcribe_model.transcribe(speechlike(32.0, seed=9), max_new_tokens=16, max_pass_seconds=12.0)
    assert r.timings["n_passes"] >= 3
    exp = [(s.start, max(s.start, s.end), cue_text(s.text)) for s in r.segments if cue_text(s.text)]
    _close(_srt_cues(render(r, "srt")), exp)
    _close(_vtt_cues(render(r, "vtt")), exp)
    assert json.loads(render(r, "json"))["tokens"] == r.tokens
