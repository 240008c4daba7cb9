"""Output formats of speaker-attributed transcripts (MOSS-Transcribe-Diarize segments), parsed back with
standard parsers; and the speaker label surviving the long-audio shift of segments."""
from __future__ import annotations

import html
import json

import numpy as np
import pytest

from crispmoss import InputError, Segment, Transcript
from crispmoss.formats import DIARIZED_FORMATS, FORMATS, diarized_dict, render
from crispmoss.longform import Piece, shift_segments
from crispmoss.results import diarized_segments

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

RAW = ("[0.48][S01]Welcome everyone[1.66][12.26][S02]The new <pipeline> & more\nis ready[13.81]"
       "[14.0][S01]你好[15.5][16][S03]cut off he")
DIA = Transcript(text=RAW, segments=diarized_segments(RAW, 20.0), duration=20.0)


def test_segments_and_speakers():
    assert [(s.speaker, s.text) for s in DIA.segments] == [
        ("S01", "Welcome everyone"), ("S02", "The new <pipeline> & more\nis ready"), ("S01", "你好"),
        (None, "[16][S03]cut off he")]
    assert DIA.speakers == ["S01", "S02"]


def test_txt():
    assert render(DIA, "txt") == ("[S01] Welcome everyone\n[S02] The new <pipeline> & more is ready\n"
                                  "[S01] 你好\n[16][S03]cut off he\n")


def test_srt_speaker_prefix():
    cues = list(srt.parse(render(DIA, "srt")))
    assert [c.content for c in cues] == ["[S01] Welcome everyone", "[S02] The new <pipeline> & more\nis ready",
                                         "[S01] 你好", "[16][S03]cut off he"]
    assert [c.start.total_seconds() for c in cues] == [0.48, 12.26, 14.0, 15.5]
    assert cues[-1].end.total_seconds() == 20.0


def test_vtt_voice_spans():
    text = render(DIA, "vtt")
    assert "<v S01>Welcome everyone" in text and "<v S02>The new &lt;pipeline&gt; &amp; more\nis ready" in text
    cues = list(webvtt.from_string(text))
    assert [c.voice for c in cues] == ["S01", "S02", "S01", None]
    # webvtt-py strips the voice tag; the escapes stay for html.unescape
    assert html.unescape(cues[1].text) == "The new <pipeline> & more\nis ready"


def test_json_keeps_speakers():
    d = json.loads(render(DIA, "json"))
    assert d["speakers"] == ["S01", "S02"]
    assert [Segment(**s) for s in d["segments"]] == DIA.segments
    assert "speaker" not in d["segments"][-1]


def test_diarized_json_openai_shape():
    d = json.loads(render(DIA, "diarized_json"))
    assert set(d) == {"task", "duration", "text", "segments"} and d["task"] == "transcribe"
    assert d["duration"] == 20.0
    assert d["text"] == "Welcome everyone The new <pipeline> & more\nis ready 你好 [16][S03]cut off he"
    assert [s["id"] for s in d["segments"]] == ["seg_0", "seg_1", "seg_2", "seg_3"]
    for s in d["segments"]:
        assert set(s) == {"type", "id", "start", "end", "text", "speaker"}
        assert s["type"] == "transcript.text.segment" and isinstance(s["speaker"], str)
    assert [s["speaker"] for s in d["segments"]] == ["S01", "S02", "S01", "unknown"]
    assert diarized_dict(DIA) == d


def test_plain_transcript_formats_unchanged():
    plain = Transcript(text="hello there", segments=[Segment(0.0, 2.0, "hello there")], duration=2.0)
    assert render(plain, "txt") == "hello there\n"
    assert "[" not in render(plain, "srt") and "<v" not in render(plain, "vtt")
    assert "speakers" not in json.loads(render(plain, "json"))
    d = json.loads(render(plain, "diarized_json"))
    assert d["text"] == "hello there" and d["segments"][0]["speaker"] == "unknown"
    assert sorted(FORMATS) == ["json", "srt", "txt", "vtt"] and list(DIARIZED_FORMATS) == ["diarized_json"]
    with pytest.raises(InputError, match="diarized_json"):
        render(plain, "docx")


def test_shift_keeps_speaker():
    piece = Piece(start=16000 * 30, samples=np.zeros(16000, np.float32), index=1, last=True)
    shifted = shift_segments(DIA, piece)
    assert [s.speaker for s in shifted.segments] == [s.speaker for s in DIA.segments]
    assert shifted.segments[0].start == pytest.approx(30.48) and shifted.segments[0].text == "Welcome everyone"
