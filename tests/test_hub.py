"""Models by name: a local HTTP server on 127.0.0.1 stands in for the Hugging Face Hub (HF_ENDPOINT)."""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

import crispmoss
from crispmoss import ModelError, hub
from crispmoss.cli import main
from surface_util import JFK, transcribe_gguf  # noqa: F401

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serves files under /{repo}/resolve/{revision}/{file} the way the Hub's resolve endpoint does: HEAD and GET
    with X-Repo-Commit, ETag and Content-Length (and byte ranges), 404 with X-Error-Code otherwise."""

    def __init__(self, files):
        self.files = files  # url path -> bytes
        self.requests = []
        hub_ = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body: bool):
                path = self.path.split("?")[0]
                hub_.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                key = None
                if len(parts) >= 5 and parts[2] == "resolve":
                    key = "/".join(parts[:2] + parts[4:])
                data = hub_.files.get(key) if key else None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end, status = 0, len(data), 200
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start, end, status = int(a), (int(b) + 1 if b else len(data)), 206
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.end_headers()
                if body:
                    self.wfile.write(data[start:end])

            def do_HEAD(self):
                self._send(False)

            def do_GET(self):
                self._send(True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return tmp_path / "hf-cache"


def _files(gguf: str):
    data = Path(gguf).read_bytes()
    return {"cstr/MOSS-Transcribe-preview-2B-GGUF/moss-transcribe-preview-2b-f16.gguf": data,
            "cstr/MOSS-Transcribe-preview-2B-GGUF/moss-transcribe-preview-2b-q4_k.gguf": data}


def test_names():
    assert hub.parse_name("moss-transcribe") == ("moss-transcribe", "q4_k")
    assert hub.parse_name("MOSS-Audio:F16") == ("moss-audio", "f16")
    assert hub.parse_name("moss-transcribe-preview-2b:q8-0") == ("moss-transcribe", "q8_0")
    assert hub.parse_name("whisper") is None
    with pytest.raises(ModelError, match="published as f16, q4_k"):
        hub.parse_name("moss-audio:q8_0")
    assert "moss-audio:f16" in hub.available() and len(hub.available()) == 8
    assert hub.MODELS["moss-audio"].filename("q4_k") == "moss-audio-4b-instruct-q4_k.gguf"
    # MOSS-Transcribe-Diarize: the files CrispASR publishes (cstr/MOSS-Transcribe-Diarize-GGUF), q4_k by default
    assert hub.parse_name("moss-diarize") == ("moss-diarize", "q4_k")
    assert hub.parse_name("MOSS-Transcribe-Diarize:Q8_0") == ("moss-diarize", "q8_0")
    assert hub.parse_name("moss_transcribe_diarize:f16") == ("moss-diarize", "f16")
    d = hub.MODELS["moss-diarize"]
    assert (d.repo_id, d.filename("q4_k")) == ("cstr/MOSS-Transcribe-Diarize-GGUF",
                                               "moss-transcribe-diarize-0.9b-q4_k.gguf")
    assert {"moss-diarize:f16", "moss-diarize:q8_0", "moss-diarize:q4_k"} <= set(hub.available())


def test_download_by_name_then_offline(transcribe_gguf, hub_env, monkeypatch):
    with FakeHub(_files(transcribe_gguf)) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        m = crispmoss.Model("moss-transcribe:f16", 1, progress=False)
        default = hub.resolve("moss-transcribe", progress=False)
    assert m.arch == "moss_transcribe"
    assert Path(m.path).read_bytes() == Path(transcribe_gguf).read_bytes()
    assert str(hub_env) in m.path and COMMIT in m.path  # the Hugging Face cache layout: snapshots/<commit>/<file>
    assert default.endswith("moss-transcribe-preview-2b-q4_k.gguf")  # q4_k when no type is given
    resolve_paths = {p for _, p in fake.requests}
    assert "/cstr/MOSS-Transcribe-preview-2B-GGUF/resolve/main/moss-transcribe-preview-2b-f16.gguf" in resolve_paths
    assert {"HEAD", "GET"} <= {c for c, _ in fake.requests}
    # Offline: the cached file resolves with no server; an uncached one is a clear ModelError.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert hub.resolve("moss-transcribe:f16", progress=False) == m.path
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        crispmoss.Model("moss-transcribe:q8_0", progress=False)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_no_network_is_a_model_error(hub_env, monkeypatch):
    import types

    import huggingface_hub.utils._http as hf_http

    # huggingface_hub retries a refused connection with backoff (about 23 s); the waits are its business, not ours.
    monkeypatch.setattr(hf_http, "time", types.SimpleNamespace(sleep=lambda s: None))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(ModelError, match="cannot fetch moss-audio:q4_k"):
        crispmoss.Model("moss-audio", progress=False)


def test_missing_file_on_the_hub(transcribe_gguf, hub_env, monkeypatch):
    with FakeHub(_files(transcribe_gguf)) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        with pytest.raises(ModelError, match="moss-audio:f16"):
            hub.download("moss-audio:f16", progress=False)


def test_paths_still_work_and_bad_paths_are_clear(transcribe_gguf, tmp_path):
    assert hub.resolve(transcribe_gguf) == transcribe_gguf
    with pytest.raises(ModelError, match="no such file"):
        hub.resolve(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelError, match="no such file"):
        hub.resolve("not-a-model")
    with pytest.raises(ModelError, match="directory"):
        hub.resolve(str(tmp_path))


def test_cli_with_a_model_name(transcribe_gguf, hub_env, monkeypatch, capsys):
    with FakeHub(_files(transcribe_gguf)) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        rc = main(["transcribe", str(JFK), "-m", "moss-transcribe:f16", "-t", "1", "--max-new-tokens", "3",
                   "--format", "json", "-q"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert '"text"' in out.out
        assert main(["download", "moss-transcribe:f16", "-q"]) == 0
        assert capsys.readouterr().out.strip().endswith("moss-transcribe-preview-2b-f16.gguf")
    assert main(["download", "--list"]) == 0
    assert "moss-audio:q4_k" in capsys.readouterr().out
