"""MOSS-Transcribe-Diarize through the product surface: the CLI (--hotwords, --format diarized_json, --batch,
passes), the server (response_format=diarized_json, the hotwords form field, verbose_json speakers, 400s), the
answer bodies with speakers, long audio (speaker labels per pass: Transcript.passes / notices; the default
generation budget of a pass beyond the single-pass limit; the memory check before the encoder runs).

The tiny random model writes no ``[start][Sxx]`` grammar, so its transcripts carry the one unparsed segment
(speaker None); bodies and merges with speakers are checked on transcripts written here.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import crispmoss
from crispmoss import InputError
from crispmoss.cli import main, parse_hotwords
from crispmoss.formats import diarized_dict, render
from crispmoss.longform import PassResult, merge
from crispmoss.results import Segment, Transcript, diarized_segments
from surface_util import JFK, LIBRI_0880, diarize_gguf, transcribe_gguf  # noqa: F401

N = 3  # generation cap (the tiny models never stop on their own)
FAST = ["-t", "1", "--max-new-tokens", str(N)]
HOT = ["Alice", "ACME 2000"]
DIARIZED = "[0.48][S01]Welcome everyone[1.66][2.00][S02] Thanks, glad to be here[4.10][4.50][S01]cut off"


@pytest.fixture(scope="module")
def dmodel(diarize_gguf):
    with crispmoss.Model(diarize_gguf, 1) as m:
        yield m


def _one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err
    for n in needles:
        assert n in lines[0], lines[0]


def _spoken(text: str, duration: float = 11.0) -> Transcript:
    return Transcript(text=text, segments=diarized_segments(text, duration), duration=duration, tokens=[1, 2, 3],
                      timings={"n_prompt": 227})


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

def test_parse_hotwords():
    assert parse_hotwords(None) is None
    assert parse_hotwords(" Alice,  ACME 2000 ,,") == ["Alice", "ACME 2000"]
    assert parse_hotwords("张三，李四") == ["张三", "李四"]  # a full-width comma, as Chinese text writes it
    with pytest.raises(InputError, match="no word"):
        parse_hotwords(" , ")


def test_cli_diarized_json_with_hotwords_equals_the_library(dmodel, diarize_gguf, capsys):
    rc = main(["transcribe", str(JFK), "-m", diarize_gguf, *FAST, "--hotwords", " Alice, ACME 2000 ", "-f",
               "diarized_json", "-q"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    got = json.loads(cap.out)
    want = dmodel.transcribe(JFK, hotwords=HOT, max_new_tokens=N)
    assert got == json.loads(render(want, "diarized_json"))
    assert set(got) == {"task", "duration", "text", "segments"} and got["segments"][0]["id"] == "seg_0"
    # the hotwords reach the prompt: without them the model sees (and, here, writes) something else
    assert dmodel.transcribe(JFK, max_new_tokens=N).tokens != want.tokens or \
        dmodel.prompt_ids(JFK) != dmodel.prompt_ids(JFK, hotwords=HOT)


def test_cli_batch_of_files_one_json_object_per_line(dmodel, diarize_gguf, tmp_path, capsys):
    rc = main(["transcribe", str(JFK), str(LIBRI_0880), "-m", diarize_gguf, *FAST, "--batch", "2", "-f",
               "diarized_json", "-q"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rows = [json.loads(ln) for ln in cap.out.splitlines()]
    assert [r["file"] for r in rows] == [str(JFK), str(LIBRI_0880)]
    for row, f in zip(rows, (JFK, LIBRI_0880)):
        row.pop("file")
        assert row == diarized_dict(dmodel.transcribe(f, max_new_tokens=N))
    # to a folder: one <name>.diarized.json per input, the same objects
    rc = main(["transcribe", str(JFK), str(LIBRI_0880), "-m", diarize_gguf, *FAST, "-f", "diarized_json", "-o",
               str(tmp_path), "-q"])
    assert rc == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["jfk.diarized.json",
                                                                       "librivox_ss_0880.diarized.json"]
    assert json.loads((tmp_path / "jfk.diarized.json").read_text()) == rows[0]


@pytest.mark.parametrize("argv, needles", [
    (["-m", "{t}", "--hotwords", "Alice"], ["--hotwords", "MOSS-Transcribe takes no hotwords"]),
    (["-m", "{t}", "-f", "diarized_json"], ["diarized_json", "writes no speakers"]),
    (["-m", "{d}", "--hotwords", " , "], ["--hotwords", "no word"]),
])
def test_cli_errors_are_one_line(transcribe_gguf, diarize_gguf, capsys, argv, needles):
    argv = [a.replace("{t}", transcribe_gguf).replace("{d}", diarize_gguf) for a in argv]
    assert main(["transcribe", str(JFK), *argv, *FAST]) == 1
    _one_line_error(capsys.readouterr().err, *needles)


def test_cli_passes_and_timing_with_the_diarizing_model(diarize_gguf, capsys):
    rc = main(["transcribe", str(JFK), "-m", diarize_gguf, *FAST, "--max-pass-seconds", "4", "-f", "json", "-v"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    assert d["timings"]["n_passes"] == len(d["passes"]) >= 3 and d["passes"][-1][1] == pytest.approx(11.0)
    assert "real time" in cap.err


# ----------------------------------------------------------------------------------------------------------------
# Long audio: passes, the per-pass speaker notice, the budget of a long single pass, the memory check
# ----------------------------------------------------------------------------------------------------------------

def _pass(i: int, start: float, end: float, text: str) -> PassResult:
    t = _spoken(text, end - start)
    t.segments = [Segment(round(s.start + start, 3), round(s.end + start, 3), s.text, s.speaker) for s in t.segments]
    return PassResult(i, start, end, t, last=False)


def test_merge_says_speaker_labels_are_per_pass():
    one = merge([_pass(0, 0.0, 11.0, DIARIZED)])
    assert one.passes == [] and one.notices == [] and "notices" not in one.to_dict()
    assert "notices" not in diarized_dict(one) and "passes" not in one.to_dict()
    two = merge([_pass(0, 0.0, 5.0, DIARIZED), _pass(1, 5.0, 11.0, "[0.2][S01]again[3.0]")])
    assert two.passes == [(0.0, 5.0), (5.0, 11.0)]
    assert two.speakers == ["S01", "S02"] and two.segments[-1].start == pytest.approx(5.2)
    assert len(two.notices) == 1 and "per pass" in two.notices[0] and "0.0-5.0 s, 5.0-11.0 s" in two.notices[0]
    d = two.to_dict()
    assert d["passes"] == [[0.0, 5.0], [5.0, 11.0]] and d["notices"] == two.notices
    assert diarized_dict(two)["notices"] == two.notices
    # no speakers (other models, or text the parser could not read): passes, but nothing to say about labels
    plain = merge([_pass(0, 0.0, 5.0, "a"), _pass(1, 5.0, 11.0, "b")])
    assert plain.passes and plain.notices == []


def test_long_single_pass_budget_and_memory_check(diarize_gguf, monkeypatch):
    m = crispmoss.Model(diarize_gguf, 1)
    assert m.max_pass_seconds == 240.0 and m.default_max_new_tokens == 2048
    assert m.pass_max_new_tokens(11.0) == 2048 and m.pass_max_new_tokens(480.0) == 4096
    assert m.pass_max_new_tokens(5400.0) == 46080  # 90 min in one pass
    m.spec["pass_seconds"] = 4.0  # a small limit, so that JFK (11 s) in one pass is beyond it
    seen = []

    def spy(self, **kw):
        seen.append(kw["options"].max_new_tokens)
        return Transcript(text="", duration=self.duration)

    monkeypatch.setattr(crispmoss.model.Session, "transcribe", spy)
    m.transcribe(JFK, max_pass_seconds=math.inf)
    m.transcribe(JFK, max_pass_seconds=math.inf, max_new_tokens=7)  # an explicit budget is kept
    m.transcribe(JFK)  # passes within the limit: the default
    assert seen[:2] == [math.ceil(2048 * 11.0 / 4.0), 7] and set(seen[2:]) == {2048}
    # refused before the encoder runs when the pass's KV cache would not fit
    monkeypatch.setattr(crispmoss.model, "available_memory", lambda: 1 << 20)
    monkeypatch.setattr(crispmoss.model.Session, "__init__", lambda *a, **k: pytest.fail("encoder ran"))
    with pytest.raises(InputError, match="single pass over 0.2 min.*smaller max_pass_seconds"):
        m.transcribe(JFK, max_pass_seconds=math.inf)
    m.close()


# ----------------------------------------------------------------------------------------------------------------
# Server: answer bodies with speakers (no server), then a live one
# ----------------------------------------------------------------------------------------------------------------

class _Spec:
    def __init__(self, spec):
        self.spec = spec

    def tokenize(self, text, special):
        return [ord(c) for c in text]


def test_answer_bodies_with_speakers():
    pytest.importorskip("fastapi")
    from crispmoss.server.engine import ServedModel, model_id
    from crispmoss.server.protocol import TranscriptionRequest, transcription_body

    # the published name is the model's id on the server
    assert model_id("moss-diarize:q8_0", "/x/moss-transcribe-diarize-0.9b-q8_0.gguf") == "moss-diarize:q8_0"
    assert model_id("/x/moss-transcribe-diarize-0.9b-q4_k.gguf", "/x/moss-transcribe-diarize-0.9b-q4_k.gguf") \
        == "moss-diarize"

    served = ServedModel("moss-diarize", _Spec({"name": "MOSS-Transcribe-Diarize", "timed_output": "diarized",
                                                "hotwords": True}), "/x.gguf", 0)
    t = _spoken(DIARIZED)
    body = {}
    for fmt in ("json", "text", "verbose_json", "diarized_json", "srt", "vtt"):
        body[fmt], _ = transcription_body(TranscriptionRequest(served, response_format=fmt), t)
    # the words, not the model's markup (the unparsed remainder, a segment cut by the token limit, stays as it is)
    plain = "Welcome everyone Thanks, glad to be here [4.50][S01]cut off"
    assert body["json"]["text"] == plain and body["text"] == plain + "\n"
    assert [s.get("speaker") for s in body["verbose_json"]["segments"]] == ["S01", "S02", None]
    assert body["verbose_json"]["text"] == plain
    dj = body["diarized_json"]
    assert dj.pop("usage") == {"type": "tokens", "input_tokens": 227, "output_tokens": 3, "total_tokens": 230}
    assert dj == diarized_dict(t) and [s["speaker"] for s in dj["segments"]] == ["S01", "S02", "unknown"]
    assert "[S02] Thanks" in body["srt"] and "<v S02>Thanks" in body["vtt"]


def _needs_server():
    from crispmoss.server import missing_dependencies

    if missing_dependencies():
        pytest.skip("server extra not installed")
    return pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def server(diarize_gguf, transcribe_gguf, tmp_path_factory):
    _needs_server()
    from crispmoss.server.process import ServerProcess

    s = ServerProcess(["-m", diarize_gguf, "-m", transcribe_gguf, "--max-new-tokens", str(N), "--threads", "1",
                       "--max-batch", "4"], tmp_path_factory.mktemp("server") / "diarize.log")
    yield s
    s.stop()


def _post(server, model, fields, audio=JFK):
    import httpx

    files = {"file": (audio.name, audio.read_bytes(), "audio/wav")}
    data = {"model": model}
    for k, v in fields:  # a repeated field as a list
        data[k] = [*data[k], v] if isinstance(data.get(k), list) else ([data[k], v] if k in data else v)
    return httpx.post(server.url + "/v1/audio/transcriptions", data=data, files=files, timeout=120)


def test_server_diarized_json_hotwords_and_errors(server, dmodel, diarize_gguf, transcribe_gguf):
    import httpx
    from pathlib import Path

    d_id, t_id = Path(diarize_gguf).stem, Path(transcribe_gguf).stem
    cards = {c["id"]: c for c in httpx.get(server.url + "/v1/models").json()["data"]}
    assert cards[d_id]["name"] == "MOSS-Transcribe-Diarize" and cards[d_id]["speakers"] and cards[d_id]["hotwords"]
    assert not cards[t_id]["speakers"] and not cards[t_id]["hotwords"]

    want = dmodel.transcribe(JFK, hotwords=HOT, max_new_tokens=N)
    r = _post(server, d_id, [("response_format", "diarized_json"), ("hotwords", "Alice"), ("hotwords", "ACME 2000")])
    assert r.status_code == 200, r.text
    body = r.json()
    usage = body.pop("usage")
    assert body == diarized_dict(want) and usage["output_tokens"] == len(want.tokens) == N
    r = _post(server, d_id, [("response_format", "verbose_json"), ("hotwords", "Alice, ACME 2000")])
    assert r.status_code == 200 and r.json()["segments"][0]["text"] == want.segments[0].text

    for fields, model, param in ([("response_format", "diarized_json")], t_id, "response_format"),\
                                ([("hotwords", "Alice")], t_id, "hotwords"),\
                                ([("prompt", "names: Alice")], d_id, "prompt"),\
                                ([("response_format", "diarized_json"), ("stream", "true")], d_id, "stream"):
        r = _post(server, model, fields)
        assert r.status_code == 400, (fields, r.text)
        assert r.json()["error"]["param"] == param
    assert "hotwords" in _post(server, d_id, [("prompt", "names: Alice")]).json()["error"]["message"]


def test_server_stream_of_the_diarizing_model(server, dmodel, diarize_gguf):
    from pathlib import Path

    r = _post(server, Path(diarize_gguf).stem, [("response_format", "verbose_json"), ("stream", "true")])
    assert r.status_code == 200
    events = [json.loads(ln[6:]) for ln in r.text.splitlines() if ln.startswith("data: ")]
    want = dmodel.transcribe(JFK, max_new_tokens=N)
    deltas = "".join(e["delta"] for e in events if e["type"] == "transcript.text.delta")
    done = events[-1]
    assert deltas == want.text and done["type"] == "transcript.text.done" and done["text"] == want.text
    assert [s["text"] for s in done["segments"]] == [s.text for s in want.segments]
