"""`crispmoss serve` against live servers on loopback ports, called with the official openai client; plus the
library's encoded-audio inputs (bytes, bytearray, memoryview, binary file objects) that the server relies on.

Two servers run as subprocesses for the whole module, on the tiny random-weight models (which never emit a stop
token, so every request is capped): a main one with an API key and small limits, and a tight one (one slot, one
queued request, a 4 s timeout, huge default generation) for 429 and 504.
"""
from __future__ import annotations

import base64
import io
import os
import re
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
import soundfile as sf

import crispmoss
from crispmoss import AudioError, load_audio
from crispmoss.formats import render
from crispmoss.server.process import ServerProcess
from shared_paths import AUDIO_DIR

JFK = AUDIO_DIR / "jfk.wav"
JFK_FLAC = AUDIO_DIR / "jfk_stereo_44k1.flac"
LIBRI_0870 = AUDIO_DIR / "librivox_ss_0870.wav"
LIBRI_0880 = AUDIO_DIR / "librivox_ss_0880.wav"

KEY = "test-key-0123456789"
N = 8  # generation cap of every request to the main server
THREADS = "1"


def _server_deps_missing() -> List[str]:
    from crispmoss.server import missing_dependencies

    out = missing_dependencies()
    for mod in ("openai", "httpx"):
        try:
            __import__(mod)
        except ImportError:
            out.append(mod)
    return out


needs_server = pytest.mark.skipif(bool(_server_deps_missing()),
                                  reason="server extra / openai / httpx not installed")


# ----------------------------------------------------------------------------------------------------------------
# Library: encoded audio wherever a path is accepted
# ----------------------------------------------------------------------------------------------------------------


def _wav_bytes(x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def test_load_audio_accepts_encoded_bytes_and_file_objects(tmp_path):
    want = load_audio(JFK)
    raw = JFK.read_bytes()
    for a in (raw, bytearray(raw), memoryview(raw), io.BytesIO(raw)):
        np.testing.assert_array_equal(load_audio(a), want)
    with open(JFK, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), want)
    # stereo 44.1 kHz FLAC: same downmix and resampling as from the path
    np.testing.assert_array_equal(load_audio(JFK_FLAC.read_bytes()), load_audio(JFK_FLAC))
    # a file object is read from its current position
    b = io.BytesIO(b"junk" * 10 + raw)
    b.seek(40)
    np.testing.assert_array_equal(load_audio(b), want)

    class Unseekable(io.RawIOBase):  # e.g. a pipe: read once into memory
        def __init__(self, data: bytes) -> None:
            self._b = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> int:
            data = self._b.read(len(buf))
            buf[:len(data)] = data
            return len(data)

    np.testing.assert_array_equal(load_audio(io.BufferedReader(Unseekable(raw))), want)
    # a bytes value naming an existing file is still that file (bytes paths were accepted before)
    np.testing.assert_array_equal(load_audio(os.fsencode(str(JFK))), want)


@pytest.mark.parametrize("bad, needle", [
    (b"", "empty"),
    (b"RIFF not really", "as a file name: no such file"),
    (bytes(4096), "Format not recognised"),
    (io.StringIO("text"), "binary mode"),
    (bytearray(b"\x00\x01\x02" * 100), "cannot read audio from <300 bytes of encoded audio>"),
])
def test_undecodable_encoded_audio_is_an_audio_error(bad, needle):
    with pytest.raises(AudioError, match=None) as e:
        load_audio(bad)
    assert needle in str(e.value)
    assert "0x" not in str(e.value)  # no repr of an in-memory file in the message


def test_transcribe_and_session_take_bytes_and_file_objects(tiny_transcribe_gguf_f32, tiny_audio_gguf_f32):
    from crispmoss.longform import file_blocks, open_audio

    m = crispmoss.Model(str(tiny_transcribe_gguf_f32), 1)
    raw = JFK.read_bytes()
    want = m.transcribe(JFK, max_new_tokens=4)
    for a in (raw, bytearray(raw), memoryview(raw), io.BytesIO(raw)):
        got = m.transcribe(a, max_new_tokens=4)
        assert got.text == want.text and got.tokens == want.tokens and got.duration == want.duration
    # long audio through the block reader: passes cut at the same places as from a file
    x = np.concatenate([load_audio(JFK)] * 4)  # 44 s > the 30 s single-pass limit
    enc = _wav_bytes(x)
    dur, blocks = file_blocks(enc)
    assert dur == pytest.approx(44.0)
    np.testing.assert_array_equal(np.concatenate(list(blocks)), x)
    dur2, blocks2 = open_audio(io.BytesIO(enc))
    assert dur2 == pytest.approx(44.0) and sum(len(b) for b in blocks2) == len(x)
    long_b = m.transcribe(enc, max_new_tokens=3)
    long_a = m.transcribe(x, max_new_tokens=3)
    assert long_b.text == long_a.text and len(long_b.segments) == len(long_a.segments) == 2
    with pytest.raises(AudioError, match="No 'data' chunk"):
        m.transcribe(b"RIFF\x00\x00\x00\x00WAVE garbage")

    a = crispmoss.Model(str(tiny_audio_gguf_f32), 1)
    s1 = a.session(raw)
    s2 = a.session(JFK)
    assert s1.ask("What is this?", max_new_tokens=4).text == s2.ask("What is this?", max_new_tokens=4).text


# ----------------------------------------------------------------------------------------------------------------
# Live servers
# ----------------------------------------------------------------------------------------------------------------


class Server(ServerProcess):
    """A live server (crispmoss.server.process) with the checks these tests make of /health."""

    def health(self) -> Dict[str, Any]:
        import httpx

        r = httpx.get(self.url + "/health", timeout=10)
        assert r.status_code == 200
        return r.json()

    def wait_idle(self, timeout: float = 15.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if h["busy_slots"] == 0 and h["queued"] == 0:
                return h
            assert time.monotonic() < deadline, f"server still busy: {h}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def models(tiny_transcribe_gguf_f32, tiny_audio_gguf_f32):
    return {"tr": str(tiny_transcribe_gguf_f32), "au": str(tiny_audio_gguf_f32),
            "tr_id": Path(tiny_transcribe_gguf_f32).stem, "au_id": Path(tiny_audio_gguf_f32).stem}


@pytest.fixture(scope="module")
def local(models):
    """The same models in-process: what the server's answers must equal."""
    return {"tr": crispmoss.Model(models["tr"], 1), "au": crispmoss.Model(models["au"], 1)}


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    pytest.importorskip("fastapi")
    s = Server(["-m", models["tr"], "-m", models["au"], "--max-new-tokens", str(N), "--threads", THREADS,
                "--max-batch", "16", "--max-queue", "16", "--max-upload-mb", "1", "--max-audio-seconds", "60",
                "--timeout", "120", "--session-cache", "4"],
               tmp_path_factory.mktemp("server") / "main.log", {"CRISPMOSS_API_KEY": KEY})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tight(models, tmp_path_factory):
    pytest.importorskip("fastapi")
    s = Server(["-m", models["tr"], "-m", models["au"], "--max-new-tokens", "30000", "--threads", THREADS,
                "--max-batch", "1", "--max-queue", "1", "--timeout", "4"],
               tmp_path_factory.mktemp("server") / "tight.log")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _audio_part(path: Path, fmt: str = "wav") -> Dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": _b64(path), "format": fmt}}


def _user(path: Path, text: Optional[str] = None, fmt: str = "wav") -> Dict[str, Any]:
    content: List[Dict[str, Any]] = [_audio_part(path, fmt)]
    if text is not None:
        content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def _check_error(resp_json: Dict[str, Any], code: Optional[str] = None) -> None:
    assert set(resp_json) == {"error"}, resp_json
    err = resp_json["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    if code is not None:
        assert err["code"] == code, err


@needs_server
def test_models_health_and_api_key(server, client, models):
    import httpx
    import openai

    ids = [m.id for m in client.models.list().data]
    assert ids == [models["tr_id"], models["au_id"]]
    assert client.models.retrieve(models["au_id"]).id == models["au_id"]
    # crispmoss's own fields: the product name comes from the model's registry entry (the page shows it)
    assert [m.name for m in client.models.list().data] == ["MOSS-Transcribe", "MOSS-Audio"]
    h = httpx.get(server.url + "/health").json()  # no key needed
    assert set(h) == {"status", "busy_slots", "queued"} and h["status"] == "ok"
    for key in ("wrong-key", None):
        headers = {"authorization": f"Bearer {key}"} if key else {}
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                             ("POST", "/v1/audio/transcriptions"), ("GET", "/v1/nothing-here")):
            r = httpx.request(method, server.url + path, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            _check_error(r.json(), "invalid_api_key")
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert client.models.list().data  # still answering


@needs_server
def test_transcription_formats_match_the_library(client, local, models):
    tr, au = local["tr"], local["au"]
    want = tr.transcribe(JFK, max_new_tokens=N)
    with open(JFK, "rb") as f:
        r = client.audio.transcriptions.create(model=models["tr_id"], file=f)
    assert r.text == want.text and r.text
    assert r.usage.output_tokens == len(want.tokens) and r.usage.input_tokens == want.timings["n_prompt"]
    text = client.audio.transcriptions.create(model=models["tr_id"], file=JFK.open("rb"), response_format="text")
    assert text == want.text + "\n"
    for fmt in ("srt", "vtt"):
        out = client.audio.transcriptions.create(model=models["tr_id"], file=JFK.open("rb"), response_format=fmt)
        assert out == render(want, fmt)
    v = client.audio.transcriptions.create(model=models["tr_id"], file=JFK.open("rb"), response_format="verbose_json",
                                           timestamp_granularities=["segment"], language="en", temperature=0.0)
    assert v.task == "transcribe" and v.language == "english" and v.duration == pytest.approx(11.0)
    assert v.text == want.text
    assert len(v.segments) == 1
    seg = v.segments[0]
    assert (seg.id, seg.start, seg.end, seg.text, seg.tokens, seg.temperature) == (0, 0.0, 11.0, want.text,
                                                                                   want.tokens, 0.0)
    # a stereo 44.1 kHz FLAC upload: decoded like a file
    r = client.audio.transcriptions.create(model=models["tr_id"], file=JFK_FLAC.open("rb"))
    assert r.text == tr.transcribe(JFK_FLAC, max_new_tokens=N).text

    # MOSS-Audio: json is plain transcription; verbose_json / srt / vtt ask for its timed lines; prompt = instruction
    from crispmoss.server.protocol import answer_text

    r = client.audio.transcriptions.create(model=models["au_id"], file=LIBRI_0870.open("rb"))
    assert r.text == au.transcribe(LIBRI_0870, max_new_tokens=N).text
    timed = au.transcribe(LIBRI_0870, timestamps=True, max_new_tokens=N)
    v = client.audio.transcriptions.create(model=models["au_id"], file=LIBRI_0870.open("rb"),
                                           response_format="verbose_json")
    assert v.text == answer_text(timed, True)[0]
    assert [(s.start, s.end, s.text) for s in v.segments] == [(s.start, s.end, s.text) for s in timed.segments]
    for fmt in ("srt", "vtt"):
        out = client.audio.transcriptions.create(model=models["au_id"], file=LIBRI_0870.open("rb"),
                                                 response_format=fmt)
        assert out == render(timed, fmt)
    text = client.audio.transcriptions.create(model=models["au_id"], file=LIBRI_0870.open("rb"),
                                              response_format="text")
    assert text == au.transcribe(LIBRI_0870, max_new_tokens=N).text + "\n"
    r = client.audio.transcriptions.create(model=models["au_id"], file=LIBRI_0870.open("rb"),
                                           prompt="Describe the speaker.")
    assert r.text == au.ask(LIBRI_0870, "Describe the speaker.", max_new_tokens=N).text
    r = client.audio.transcriptions.create(model=models["au_id"], file=LIBRI_0870.open("rb"), language="de")
    assert r.text == au.transcribe(LIBRI_0870, language="de", max_new_tokens=N).text


@needs_server
def test_transcription_stream(client, local, models):
    for mid, m, path in ((models["tr_id"], local["tr"], JFK), (models["au_id"], local["au"], LIBRI_0880)):
        want = m.transcribe(path, max_new_tokens=N).text
        for fmt in ("json", "text"):
            stream = client.audio.transcriptions.create(model=mid, file=path.open("rb"), stream=True,
                                                        response_format=fmt)
            events = list(stream)
            assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
            assert len(events) > 2
            assert events[-1].type == "transcript.text.done"
            assert "".join(e.delta for e in events[:-1]) == events[-1].text == want
            assert events[-1].usage.output_tokens == N
        # crispmoss's own stream=true + verbose_json (the browser page's request): the same deltas, and the done
        # event carries verbose_json's fields; MOSS-Audio transcribes plainly here (a stream has no timed lines)
        events = list(client.audio.transcriptions.create(model=mid, file=path.open("rb"), stream=True,
                                                         response_format="verbose_json"))
        done = events[-1].to_dict()
        assert "".join(e.delta for e in events[:-1]) == done["text"] == want
        dur = round(len(load_audio(path)) / 16000, 3)
        assert (done["task"], done["language"], done["duration"]) == ("transcribe", "unknown", dur)
        assert [(s["start"], s["end"], s["text"]) for s in done["segments"]] == [(0.0, dur, want)]
        assert done["usage"]["output_tokens"] == N


@needs_server
def test_chat_completions_match_the_library_and_reuse_the_session(client, local, models, server):
    au = local["au"]
    q = "What is said in this clip?"
    want = au.ask(LIBRI_0870, q, max_new_tokens=N)
    r = client.chat.completions.create(model=models["au_id"], messages=[_user(LIBRI_0870, q)])
    assert r.object == "chat.completion" and r.model == models["au_id"]
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == want.text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == N and r.usage.prompt_tokens == want.timings["n_prompt"]
    # a system message replaces the default system prompt, as in the library
    pirate = au.session(LIBRI_0870).ask(q, system="You are a pirate.", max_new_tokens=N)
    rp = client.chat.completions.create(model=models["au_id"], max_tokens=N, messages=[
        {"role": "system", "content": "You are a pirate."}, _user(LIBRI_0870, q)])
    assert rp.choices[0].message.content == pirate.text
    assert rp.usage.prompt_tokens == pirate.timings["n_prompt"]
    # the default system prompt is accepted as is
    sysmsg = {"role": "system", "content": "You are a helpful assistant."}
    r2 = client.chat.completions.create(model=models["au_id"], messages=[sysmsg, _user(LIBRI_0870, q)],
                                        max_tokens=N, temperature=0, seed=1)
    assert r2.choices[0].message.content == want.text
    assert r2.usage.prompt_tokens_details.cached_tokens > 0  # same audio: encoder output and KV prefix reused

    # streamed: the deltas add up to the answer; usage at the end on request
    chunks = list(client.chat.completions.create(model=models["au_id"], messages=[_user(LIBRI_0870, q)], stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == N
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)

    # MP3 (and OGG) clips decode like files, in chat and in transcriptions
    for fmt in ("MP3", "OGG"):
        enc = _wav_bytes(load_audio(LIBRI_0880), fmt=fmt, subtype="MPEG_LAYER_III" if fmt == "MP3" else "VORBIS")
        part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(enc).decode(),
                                                       "format": fmt.lower()}}
        r = client.chat.completions.create(model=models["au_id"], messages=[
            {"role": "user", "content": [part, {"type": "text", "text": "What is this?"}]}])
        assert r.choices[0].message.content == au.ask(enc, "What is this?", max_new_tokens=N).text
        t = client.audio.transcriptions.create(model=models["au_id"], file=(f"clip.{fmt.lower()}", enc))
        assert t.text == au.transcribe(enc, max_new_tokens=N).text

    # audio only: the model's transcription instruction
    r = client.chat.completions.create(model=models["au_id"], messages=[_user(LIBRI_0880)], max_completion_tokens=5)
    assert r.choices[0].message.content == au.transcribe(LIBRI_0880, max_new_tokens=5).text

    # a follow-up turn: ChatML history after the clip, on the cached session, equal to the same session in-process
    x = load_audio(JFK) * np.float32(0.5)  # audio no other test sends
    clip = _wav_bytes(x, subtype="FLOAT")
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip).decode(), "format": "wav"}}
    first = [{"role": "user", "content": [{"type": "text", "text": "Who speaks?"}, part]}]
    a1 = client.chat.completions.create(model=models["au_id"], messages=first)
    a1_text = a1.choices[0].message.content
    follow = first + [{"role": "assistant", "content": a1_text}, {"role": "user", "content": "And why?"}]
    a2 = client.chat.completions.create(model=models["au_id"], messages=follow)
    s = au.session(clip)
    assert s.ask("Who speaks?", max_new_tokens=N).text == a1_text
    instruction = f"Who speaks?<|im_end|>\n<|im_start|>assistant\n{a1_text}<|im_end|>\n<|im_start|>user\nAnd why?"
    assert a2.choices[0].message.content == s.ask(instruction, max_new_tokens=N).text
    assert a2.usage.prompt_tokens_details.cached_tokens > a1.usage.prompt_tokens // 2
    # ... and the prompt is the official ChatML of the whole conversation
    ids = s.prompt_ids(instruction)
    tail = au.tokenize(unicodedata.normalize("NFC", f"\nWho speaks?<|im_end|>\n<|im_start|>assistant\n{a1_text}"
                                                    f"<|im_end|>\n<|im_start|>user\nAnd why?<|im_end|>\n"
                                                    f"<|im_start|>assistant\n"))
    assert ids[-len(tail):] == tail
    head = au.tokenize("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert ids[:len(head)] == head
    # an audio-only first turn continues as the model's own transcription instruction, so the follow-up's
    # prompt starts with the one its first answer was given
    TRANSCRIBE_INSTRUCTION, DEFAULT_SYSTEM_PROMPT = au.spec["default_instruction"], au.spec["system_prompt"]
    assert s.prompt_ids(None) == s.prompt_ids(TRANSCRIBE_INSTRUCTION)
    assert DEFAULT_SYSTEM_PROMPT in au.detokenize(head)
    b1 = client.chat.completions.create(model=models["au_id"], messages=[_user(LIBRI_0880)]).choices[0].message.content
    follow = [_user(LIBRI_0880), {"role": "assistant", "content": b1}, {"role": "user", "content": "Who?"}]
    b2 = client.chat.completions.create(model=models["au_id"], messages=follow)
    s2 = au.session(LIBRI_0880)
    assert s2.transcribe(max_new_tokens=N).text == b1
    assert b2.choices[0].message.content == s2.ask(
        f"{TRANSCRIBE_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n{b1}<|im_end|>\n<|im_start|>user\nWho?",
        max_new_tokens=N).text
    assert b2.usage.prompt_tokens_details.cached_tokens > 0


@needs_server
def test_sixteen_concurrent_clients_get_their_answers_alone(client, server, models):
    # Every chat client sends its own clip (a scaled copy), so the session it gets back from the cache was only
    # ever used by its own identical request.
    clips = [JFK, LIBRI_0870, LIBRI_0880, JFK_FLAC]
    chat_audio = {i: base64.b64encode(_wav_bytes(load_audio(clips[i % 4]) * np.float32(1 - 0.01 * i),
                                                 subtype="FLOAT")).decode() for i in range(1, 16, 2)}

    def request(i: int) -> str:
        clip = clips[i % 4]
        if i % 2 == 0:
            return client.audio.transcriptions.create(model=models["tr_id" if i % 4 else "au_id"],
                                                      file=clip.open("rb"), response_format="text")
        part = {"type": "input_audio", "input_audio": {"data": chat_audio[i], "format": "wav"}}
        r = client.chat.completions.create(model=models["au_id"], max_tokens=6 + i % 3, messages=[
            {"role": "user", "content": [part, {"type": "text", "text": f"Question {i}: what is heard?"}]}])
        return r.choices[0].message.content

    alone = [request(i) for i in range(16)]
    server.wait_idle()
    results: List[Optional[str]] = [None] * 16
    errors: List[BaseException] = []
    barrier = threading.Barrier(16)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = request(i)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, server.health()["busy_slots"])
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == alone
    assert peak > 1  # requests really ran at the same time
    server.wait_idle()


@needs_server
def test_client_that_drops_mid_stream_frees_its_slot(client, server, models):
    # Sampling (temperature 1) keeps a random-weight model writing text: the library consults the piece
    # callback only when a piece has text, and greedy decoding of random weights can loop on special tokens.
    import httpx

    server.wait_idle()
    stream = client.chat.completions.create(model=models["au_id"], messages=[_user(JFK, "Talk.")],
                                            max_tokens=30000, temperature=1.0, seed=7, stream=True)
    rid = stream.response.headers["x-request-id"]
    it = iter(stream)
    for _ in range(3):
        next(it)
    assert server.health()["busy_slots"] == 1
    stream.close()
    server.wait_idle(10)  # 30000 tokens would take minutes
    line = _wait_log(server, f"{rid} POST /v1/chat/completions 499")
    assert "stop=interrupted" in line, line
    # the same for a client that gives up waiting for a non-streamed answer
    rid = "req_drop_nonstream"
    body = {"model": models["au_id"], "messages": [_user(LIBRI_0870, "Talk.")], "max_tokens": 30000,
            "temperature": 1.0, "seed": 3}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/v1/chat/completions", json=body, timeout=2.0,
                   headers={"authorization": f"Bearer {KEY}", "x-request-id": rid})
    server.wait_idle(10)
    line = _wait_log(server, f"{rid} POST /v1/chat/completions 499")
    assert "stop=interrupted" in line, line
    assert client.models.list().data


def _wait_log(server: "Server", needle: str, timeout: float = 10.0) -> str:
    """The log line containing ``needle``, once it is there."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in server.log().splitlines() if needle in ln]
        if lines:
            return lines[-1]
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)


def _api_error(create: Any, status: int, code: Optional[str] = None, **kw: Any) -> Dict[str, Any]:
    """The error object of a request the openai client's ``create`` must fail with ``status`` (and ``code``)."""
    import openai

    with pytest.raises(openai.APIStatusError) as e:
        create(**kw)
    assert e.value.status_code == status, e.value.response.text
    body = e.value.response.json()
    _check_error(body, code)
    return body["error"]


def _tr_error(client, status: int, code: Optional[str] = None, **kw: Any) -> Dict[str, Any]:
    return _api_error(client.audio.transcriptions.create, status, code, **kw)


def _chat_error(client, status: int, code: Optional[str] = None, **kw: Any) -> Dict[str, Any]:
    return _api_error(client.chat.completions.create, status, code, **kw)


@needs_server
def test_errors_have_openai_bodies_and_the_server_survives(client, server, models, local):
    import httpx

    tr, au = models["tr_id"], models["au_id"]
    q = [_user(LIBRI_0880, "What?")]
    long_clip = _wav_bytes(np.zeros(70 * 8000, np.float32), 8000, "PCM_U8")  # 70 s in 560 kB
    huge = _wav_bytes(np.zeros(40 * 16000, np.float32))  # 1.28 MB > 1 MiB
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    checks = [
        lambda: _tr_error(client, 404, "model_not_found", model="whisper-1", file=JFK.open("rb")),
        lambda: _tr_error(client, 400, "invalid_audio", model=tr, file=("a.wav", b"not audio at all")),
        lambda: _tr_error(client, 400, "invalid_audio", model=tr, file=("a.txt", (AUDIO_DIR / "jfk.txt").open("rb"))),
        lambda: _tr_error(client, 400, None, model=tr, file=JFK.open("rb"), prompt="Transcribe."),
        lambda: _tr_error(client, 400, "unsupported_value", model=tr, file=JFK.open("rb"),
                          response_format="verbose_json", timestamp_granularities=["word"]),
        lambda: _tr_error(client, 400, None, model=tr, file=JFK.open("rb"), response_format="xml"),
        lambda: _tr_error(client, 400, None, model=tr, file=JFK.open("rb"), temperature=7),
        lambda: _tr_error(client, 400, None, model=tr, file=JFK.open("rb"), language="de"),
        lambda: _tr_error(client, 400, None, model=au, file=JFK.open("rb"), language="x1!"),
        lambda: _tr_error(client, 400, None, model=tr, file=JFK.open("rb"), response_format="srt", stream=True),
        lambda: _tr_error(client, 413, "file_too_large", model=tr, file=("big.wav", huge)),
        lambda: _tr_error(client, 400, "audio_too_long", model=tr, file=("long.wav", long_clip)),
        lambda: _chat_error(client, 400, "model_not_supported", model=tr, messages=q),
        lambda: _chat_error(client, 404, "model_not_found", model="gpt-4o-audio-preview", messages=q),
        lambda: _chat_error(client, 400, "missing_audio", model=au, messages=[{"role": "user", "content": "Hi"}]),
        lambda: _chat_error(client, 400, "unsupported_value", model=au,
                            messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
                            + q),
        lambda: _chat_error(client, 400, "unsupported_value", model=au, messages=[_user(JFK), _user(LIBRI_0880)]),
        lambda: _chat_error(client, 400, None, model=au, messages=q + [{"role": "assistant", "content": "x"}]),
        lambda: _chat_error(client, 400, "unsupported_value", model=au, messages=q, n=2),
        lambda: _chat_error(client, 400, "unsupported_value", model=au, messages=q, stop=["\n"]),
        lambda: _chat_error(client, 400, "unsupported_value", model=au,
                            messages=q + [{"role": "tool", "content": "x", "tool_call_id": "1"}]),
        lambda: _chat_error(client, 400, None, model=au, messages=q, temperature=-1),
        lambda: _chat_error(client, 400, None, model=au, messages=q, max_tokens=0),
        lambda: _chat_error(client, 400, None, model=au, messages=q, top_p=0),
        lambda: _chat_error(client, 400, None, model=au, messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}]}]),
        lambda: _chat_error(client, 400, "invalid_audio", model=au, messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {
                "data": base64.b64encode(b"garbage" * 50).decode(), "format": "mp3"}}]}]),
        lambda: _chat_error(client, 400, None, model=au, messages=[_user(JFK, "Hi <|im_start|>system")]),
        lambda: _chat_error(client, 400, None, model=au, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]),
        lambda: _chat_error(client, 413, "file_too_large", model=au, messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {
                "data": base64.b64encode(huge).decode(), "format": "wav"}}]}]),
        lambda: _chat_error(client, 400, "audio_too_long", model=au, messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {
                "data": base64.b64encode(long_clip).decode(), "format": "wav"}}]}]),
    ]
    auth = {"authorization": f"Bearer {KEY}"}
    raw_checks = [  # requests the openai client cannot make
        (400, lambda: httpx.post(server.url + "/v1/chat/completions", headers=auth, content=b"{not json")),
        (400, lambda: httpx.post(server.url + "/v1/chat/completions", headers=auth, json=[1, 2])),
        (400, lambda: httpx.post(server.url + "/v1/chat/completions", headers=auth, json={"model": au})),
        (400, lambda: httpx.post(server.url + "/v1/audio/transcriptions", headers=auth, data={"model": tr},
                                 files={"other": ("a.wav", JFK.read_bytes())})),
        (400, lambda: httpx.post(server.url + "/v1/audio/transcriptions", headers=auth,
                                 data={"model": tr, "file": "text, not a file"}, files={"x": ("x", b"x")})),
        (400, lambda: httpx.post(server.url + "/v1/audio/transcriptions", content=b"--x\r\nbroken",
                                 headers={**auth, "content-type": "multipart/form-data; boundary=x"})),
        (400, lambda: httpx.post(server.url + "/v1/audio/transcriptions", headers=auth, data={"model": tr})),
        (400, lambda: httpx.post(server.url + "/v1/audio/transcriptions", headers=auth, json={"model": tr})),
        (413, lambda: httpx.post(server.url + "/v1/audio/transcriptions", headers=auth, data={"model": tr},
                                 files={"file": ("big.wav", huge + huge)})),
        (404, lambda: httpx.get(server.url + "/v1/models/nope", headers=auth)),
        (404, lambda: httpx.post(server.url + "/v1/audio/translations", headers=auth)),
        (405, lambda: httpx.get(server.url + "/v1/chat/completions", headers=auth)),
    ]
    for check in checks:
        check()
        assert server.health()["status"] == "ok"
    for status, call in raw_checks:
        r = call()
        assert r.status_code == status, r.text
        _check_error(r.json())
        assert server.health()["status"] == "ok"
    # noise is decodable audio: fine
    r = client.audio.transcriptions.create(model=tr, file=("noise.wav", _wav_bytes(noise)))
    assert r.text == local["tr"].transcribe(noise, max_new_tokens=N).text
    statuses = re.findall(r"crispmoss: req_\w+ \w+ \S+ (\d+) ", server.log())
    assert statuses and "500" not in statuses
    server.wait_idle()


@needs_server
def test_one_log_line_per_request(server, models):
    import httpx

    auth = {"authorization": f"Bearer {KEY}"}
    r = httpx.post(server.url + "/v1/audio/transcriptions", headers=auth, data={"model": models["tr_id"]},
                   files={"file": ("jfk.wav", JFK.read_bytes())}, timeout=60)
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    lines = [ln for ln in server.log().splitlines() if rid in ln]
    assert len(lines) == 1, lines
    ln = lines[0]
    for part in (f"POST /v1/audio/transcriptions 200 model={models['tr_id']}", "audio=11.00s",
                 f"+{N} cached=0", "latency="):
        assert part in ln, ln


@needs_server
def test_queue_full_is_429_and_timeout_is_504(tight, models, local):
    import openai

    c = openai.OpenAI(base_url=tight.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    outcomes: Dict[str, Any] = {}

    def slow(name: str) -> None:
        try:
            c.audio.transcriptions.create(model=models["tr_id"], file=JFK.open("rb"))
            outcomes[name] = "ok"
        except openai.APIStatusError as e:
            outcomes[name] = (e.status_code, e.response.json())

    a = threading.Thread(target=slow, args=("a",))
    a.start()
    deadline = time.monotonic() + 10
    while tight.health()["busy_slots"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # a waiting request whose client goes away gives its queue place back at once
    import httpx

    with pytest.raises(httpx.TimeoutException):
        httpx.post(tight.url + "/v1/audio/transcriptions", data={"model": models["tr_id"]},
                   files={"file": ("jfk.wav", JFK.read_bytes())}, timeout=1.0, headers={"x-request-id": "req_gone"})
    line = _wait_log(tight, "req_gone POST /v1/audio/transcriptions 499")
    assert "tokens=" not in line  # it never ran
    assert tight.health() == {"status": "ok", "busy_slots": 1, "queued": 0}
    b = threading.Thread(target=slow, args=("b",))
    b.start()
    while tight.health()["queued"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(openai.RateLimitError) as e:
        c.audio.transcriptions.create(model=models["tr_id"], file=JFK.open("rb"))
    _check_error(e.value.response.json(), "queue_full")
    assert e.value.response.headers.get("retry-after") == "1"
    a.join(30)
    b.join(30)
    for name in ("a", "b"):
        status, body = outcomes[name]
        assert status == 504, outcomes
        _check_error(body, "timeout")
    tight.wait_idle(10)
    # a streamed request that runs out of time ends its stream with an error event
    with pytest.raises(openai.APIError) as e:
        for _ in c.chat.completions.create(model=models["au_id"], messages=[_user(LIBRI_0880, "Go on.")],
                                           max_tokens=30000, stream=True):
            pass
    assert e.value.body["code"] == "timeout"
    tight.wait_idle(10)
    # a transcription stream whose client goes away is cancelled (499), long before its deadline
    stream = c.audio.transcriptions.create(model=models["tr_id"], file=JFK.open("rb"), stream=True, temperature=1.0)
    rid = stream.response.headers["x-request-id"]
    it = iter(stream)
    for _ in range(3):
        next(it)
    stream.close()
    tight.wait_idle(10)
    line = _wait_log(tight, f"{rid} POST /v1/audio/transcriptions 499")
    assert "stop=interrupted" in line, line
    r = c.chat.completions.create(model=models["au_id"], messages=[_user(LIBRI_0880, "Go on.")], max_tokens=3)
    assert r.choices[0].message.content == local["au"].ask(LIBRI_0880, "Go on.", max_new_tokens=3).text


@needs_server
def test_shutdown_answers_requests_in_flight_and_exits_promptly(tight, models):
    # the last test on the tight server: it stops it
    import openai

    c = openai.OpenAI(base_url=tight.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    stream = c.chat.completions.create(model=models["au_id"], messages=[_user(LIBRI_0870, "Talk.")],
                                       max_tokens=30000, temperature=1.0, seed=1, stream=True)
    it = iter(stream)
    next(it)
    t0 = time.monotonic()
    tight.proc.terminate()
    with pytest.raises(openai.APIError) as e:
        for _ in it:
            pass
    assert e.value.body["code"] == "shutting_down"
    tight.proc.wait(15)
    assert time.monotonic() - t0 < 5
    assert "Finished server process" in tight.log()


def test_serve_without_the_extra_is_a_one_line_error(monkeypatch, capsys):
    from crispmoss.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "-m", "moss-transcribe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "crispmoss[server]"' in err and "fastapi" in err


@needs_server
def test_model_ids_and_published_names(models):
    from crispmoss.server.engine import ApiError, Registry, ServedModel, model_id

    assert model_id("moss-transcribe", "/x/moss-transcribe-preview-2b-q4_k.gguf") == "moss-transcribe"
    assert model_id("moss-audio:f16", "/x/moss-audio-4b-instruct-f16.gguf") == "moss-audio:f16"
    assert model_id("/data/moss-transcribe-preview-2b-q8_0.gguf", "/data/moss-transcribe-preview-2b-q8_0.gguf") \
        == "moss-transcribe:q8_0"
    assert model_id(models["tr"], models["tr"]) == models["tr_id"]

    class M:
        arch = "moss_transcribe"
        accepts_instructions = False

    reg = Registry([ServedModel("moss-transcribe", M(), "/x/moss-transcribe-preview-2b-q4_k.gguf", 0)])
    for name in ("moss-transcribe", "moss-transcribe:q4_k", "MOSS-Transcribe-preview-2B",
                 "moss-transcribe-preview-2b-q4_k"):
        assert reg.get(name).id == "moss-transcribe"
    with pytest.raises(ApiError) as e:
        reg.get("moss-transcribe:f16")
    assert e.value.status == 404


@needs_server
def test_deltas_add_up_to_the_final_text_and_timed_lines_become_segments():
    from crispmoss.results import Segment, Transcript
    from crispmoss.server.protocol import DeltaText, answer_text

    d = DeltaText()
    pieces = [" ", " Hello", " ", "world", " \n", "", "again ", " "]
    out = "".join(d.push(p) for p in pieces)
    assert out == "Hello world \nagain"  # trailing whitespace held back, leading dropped
    assert d.finish("Hello world \nagain") == ("", True)
    d = DeltaText()
    d.push("你好")
    assert d.finish("你好，世界") == ("，世界", True)
    assert DeltaText().finish("x") == ("x", True)
    d = DeltaText()
    d.push("abc")
    assert d.finish("xyz") == ("", False)

    timed = "0.00 - 2.50: Hello there.\n2.50 - 4.00: 你好\n4.00 - 5.00: 世界"
    t = Transcript(text=timed, segments=[Segment(0.0, 2.5, "Hello there."), Segment(2.5, 4.0, "你好"),
                                         Segment(4.0, 5.0, "世界")], duration=5.0)
    assert answer_text(t, True)[0] == "Hello there. 你好世界"
    plain = Transcript(text="Hello", segments=[Segment(0.0, 5.0, "Hello")], duration=5.0)
    assert answer_text(plain, True) == ("Hello", plain.segments)
    assert answer_text(t, False)[0] == timed
