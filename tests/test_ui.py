"""The browser page of `crispmoss serve` (GET /), driven in headless Chromium through Selenium against live servers
on loopback ports with the tiny random-weight models.

The system's Chromium and chromedriver are used (Debian: apt-get install chromium chromium-driver; nothing is
downloaded); where either or the selenium package is missing the browser tests skip. CRISPMOSS_CHROMIUM and
CRISPMOSS_CHROMEDRIVER name other binaries. Screenshots of the page (empty, streaming, finished, error, phone width)
are written to tests/artifacts/ui/ (ignored by git; CRISPMOSS_UI_ARTIFACTS names another folder).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

import crispmoss
from crispmoss.formats import render
from crispmoss.server.process import ServerProcess
from shared_paths import AUDIO_DIR

JFK = AUDIO_DIR / "jfk.wav"
N = 8  # generation cap of every request (the tiny models never stop on their own)
KEY = "ui-test-key-0123"
ARTIFACTS = Path(os.environ.get("CRISPMOSS_UI_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts" / "ui")


def _server_missing() -> List[str]:
    from crispmoss.server import missing_dependencies

    out = missing_dependencies()
    try:
        import httpx  # noqa: F401
    except ImportError:
        out.append("httpx")
    return out


def _browser_missing() -> Optional[str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install \"crispmoss[test]\")"
    if not _chromium() or not _chromedriver():
        return "no chromium / chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
    return None


def _chromium() -> Optional[str]:
    if os.environ.get("CRISPMOSS_CHROMIUM"):
        return shutil.which(os.environ["CRISPMOSS_CHROMIUM"])
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromedriver() -> Optional[str]:
    if os.environ.get("CRISPMOSS_CHROMEDRIVER"):
        return shutil.which(os.environ["CRISPMOSS_CHROMEDRIVER"])
    return shutil.which("chromedriver")


needs_server = pytest.mark.skipif(bool(_server_missing()), reason="server extra / httpx not installed")
needs_browser = pytest.mark.skipif(bool(_server_missing()) or _browser_missing() is not None,
                                   reason=f"no headless browser: {_browser_missing()}")


# ----------------------------------------------------------------------------------------------------------------
# The route itself (no browser needed)
# ----------------------------------------------------------------------------------------------------------------


def test_page_files_are_in_the_package():
    import crispmoss.server

    ui = Path(crispmoss.server.__file__).resolve().parent / "ui"
    for name in ("index.html", "app.css", "app.js"):
        assert (ui / name).is_file() and (ui / name).stat().st_size > 500, name


@needs_server
def test_page_route_assets_and_no_ui(tiny_transcribe_gguf_f32):
    from fastapi.testclient import TestClient

    from crispmoss.cli import build_parser
    from crispmoss.server.app import UI_DIR, create_app
    from crispmoss.server.config import ServerConfig, from_args

    assert from_args(build_parser().parse_args(["serve", "-m", "x", "--no-ui"])).ui is False
    assert from_args(build_parser().parse_args(["serve", "-m", "x"])).ui is True
    path = str(tiny_transcribe_gguf_f32)
    with TestClient(create_app(ServerConfig(models=[path], threads=1, log_requests=False))) as c:
        r = c.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.content == (UI_DIR / "index.html").read_bytes()
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'self': no inline code
        assert "'unsafe-inline'" not in r.headers["content-security-policy"]
        for asset, ctype in (("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")):
            a = c.get(asset)
            assert a.status_code == 200 and a.headers["content-type"].startswith(ctype), asset
            assert f'"{asset[1:]}"' in r.text  # the page loads it by a relative URL
        assert c.head("/").status_code == 200
        assert c.get("/ui/other.js").status_code == 404
        assert "<script>" not in r.text and " on" + "click=" not in r.text
    with TestClient(create_app(ServerConfig(models=[path], threads=1, log_requests=False, ui=False))) as c:
        for p in ("/", "/ui/app.js"):
            r = c.get(p)
            assert r.status_code == 404 and set(r.json()) == {"error"}, p
        assert "--no-ui" in c.get("/").json()["error"]["message"]
        assert c.get("/v1/models").status_code == 200


# ----------------------------------------------------------------------------------------------------------------
# The page in a browser
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tiny_transcribe_gguf_f32, tiny_audio_gguf_f32) -> Dict[str, str]:
    return {"tr": str(tiny_transcribe_gguf_f32), "au": str(tiny_audio_gguf_f32),
            "tr_id": Path(tiny_transcribe_gguf_f32).stem, "au_id": Path(tiny_audio_gguf_f32).stem}


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    with ServerProcess(["-m", models["tr"], "-m", models["au"], "--max-new-tokens", str(N), "--threads", "1",
                        "--max-upload-mb", "2"], tmp_path_factory.mktemp("ui") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def keyed(models, tmp_path_factory):
    with ServerProcess(["-m", models["tr"], "--max-new-tokens", str(N), "--threads", "1", "--api-key", KEY],
                       tmp_path_factory.mktemp("ui") / "keyed.log") as s:
        yield s


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _chromium()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
              "--window-size=1100,1300", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
              "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    try:
        d = webdriver.Chrome(service=Service(_chromedriver()), options=opts)
    except WebDriverException as e:  # e.g. a chromedriver that does not match the browser
        pytest.skip(f"headless chromium did not start: {str(e).splitlines()[0]}")
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    d.set_script_timeout(30)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def local(models):
    return {"tr": crispmoss.Model(models["tr"], 1), "au": crispmoss.Model(models["au"], 1)}


def _wait(d: Any, cond: Callable[[Any], Any], what: str, timeout: float = 30.0) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(d, timeout, poll_frequency=0.05).until(cond)
    except TimeoutException:
        state = d.execute_script("return [document.body.dataset.state, document.getElementById('error').textContent,"
                                 " document.getElementById('status').textContent]")
        raise AssertionError(f"timed out waiting for {what}; page state, error, status: {state}") from None


def _state(d: Any) -> str:
    return d.execute_script("return document.body.dataset.state")


def _wait_state(d: Any, *states: str, timeout: float = 30.0) -> str:
    return _wait(d, lambda x: _state(x) in states and _state(x), f"state {states}", timeout)


def _text(d: Any, css: str) -> str:
    return d.execute_script("return document.querySelector(arguments[0]).textContent", css)


def _shot(d: Any, name: str) -> None:
    """The whole page (not only the window) as ARTIFACTS/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    m = d.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = m.get("cssContentSize") or m["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    png = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(png["data"]))


def _open(d: Any, url: str) -> None:
    d.execute_script("try { sessionStorage.clear(); } catch (e) {}")
    d.get(url + "/")
    _wait(d, lambda x: _state(x) in ("idle", "key", "error"), "the model list")


def _choose(d: Any, path: Path) -> None:
    from selenium.webdriver.common.by import By

    d.find_element(By.ID, "file").send_keys(str(path))
    _wait(d, lambda x: path.name in _text(x, "#chosen"), "the chosen file")


def _download(d: Any, folder: Path, fmt: str, name: str) -> str:
    from selenium.webdriver.common.by import By

    target = folder / f"{name}.{fmt}"
    if target.exists():
        target.unlink()
    d.find_element(By.CSS_SELECTOR, f"button.dl[data-format={fmt}]").click()
    _wait(d, lambda x: target.exists() and target.stat().st_size > 0, f"the {fmt} download", 10)
    return target.read_text(encoding="utf-8")


# Holds a transcription stream after its first delta until window.__release() is called, so that the page can be
# seen (and photographed) mid-stream however fast the tiny model is. The page itself is not changed: only
# window.fetch is wrapped, re-cutting the server's bytes into one chunk per event.
HOLD_STREAM = """
let release;
const gate = new Promise((r) => { release = r; });
window.__release = () => release();
const orig = window.fetch;
window.fetch = async (url, opts) => {
  const resp = await orig(url, opts);
  if (!String(url).includes("audio/transcriptions") || !resp.ok) return resp;
  const reader = resp.body.getReader(), dec = new TextDecoder(), enc = new TextEncoder();
  let buf = "", sent = false;
  const body = new ReadableStream({ async pull(ctrl) {
    for (;;) {
      const i = buf.indexOf("\\n\\n");
      if (i >= 0) {
        const ev = buf.slice(0, i + 2); buf = buf.slice(i + 2);
        if (sent) await gate;
        if (ev.includes("transcript.text.delta")) sent = true;
        ctrl.enqueue(enc.encode(ev)); return;
      }
      const { value, done } = await reader.read();
      if (done) { if (buf) ctrl.enqueue(enc.encode(buf)); buf = ""; ctrl.close(); return; }
      buf += dec.decode(value, { stream: true });
    }
  } });
  return new Response(body, { status: resp.status, headers: resp.headers });
};
"""


def _api(server: ServerProcess, path: Path, key: Optional[str] = None, **fields: str) -> Any:
    import httpx

    headers = {"authorization": f"Bearer {key}"} if key else {}
    with open(path, "rb") as f:
        return httpx.post(server.url + "/v1/audio/transcriptions", files={"file": (path.name, f)}, data=fields,
                          headers=headers, timeout=60)


@needs_browser
def test_transcribe_stream_segments_and_downloads(browser, server, models, local, downloads):
    from selenium.webdriver.common.by import By

    d = browser
    want = local["tr"].transcribe(JFK, max_new_tokens=N)
    assert want.text
    _open(d, server.url)
    assert _state(d) == "idle"
    options = d.execute_script("return [...document.querySelectorAll('#model option')].map(o => o.value)")
    assert options == [models["tr_id"], models["au_id"]]
    labels = d.execute_script("return [...document.querySelectorAll('#model option')].map(o => o.text)")
    assert labels == [models["tr_id"] + " (MOSS-Transcribe)", models["au_id"] + " (MOSS-Audio)"]
    _shot(d, "empty")

    d.execute_script(HOLD_STREAM)
    _choose(d, JFK)
    d.find_element(By.ID, "transcribe").click()
    _wait_state(d, "streaming")
    partial = _text(d, "#transcript")
    assert partial and want.text.startswith(partial) and partial != want.text
    assert d.find_element(By.ID, "stop").is_enabled() and not d.find_element(By.ID, "transcribe").is_enabled()
    _shot(d, "streaming")
    d.execute_script("window.__release()")
    _wait_state(d, "done")
    _shot(d, "finished")
    assert _text(d, "#transcript") == want.text
    assert not d.find_element(By.ID, "error").is_displayed()

    # the segments table is the API's verbose_json segments
    v = _api(server, JFK, model=models["tr_id"], response_format="verbose_json").json()
    rows = d.execute_script("""return [...document.querySelectorAll('#segments tbody tr')].map(r =>
        [Number(r.dataset.start), Number(r.dataset.end), r.querySelector('td.text').textContent,
         r.querySelector('td.start button').textContent])""")
    assert [r[:3] for r in rows] == [[s["start"], s["end"], s["text"]] for s in v["segments"]]
    assert rows == [[0.0, 11.0, want.text, "▶ 0:00.0"]]
    assert not d.find_element(By.CSS_SELECTOR, "#segments th.speaker").is_displayed()  # no speakers here
    # click-to-play: the span's start, playing, then paused by the page at its end (or by us)
    d.find_element(By.CSS_SELECTOR, "#segments tbody tr button").click()
    _wait(d, lambda x: x.execute_script("const p = document.getElementById('player'); "
                                        "return !p.paused && p.currentTime >= 0;"), "the audio to play", 10)
    d.execute_script("document.getElementById('player').pause()")

    # downloads equal what the API writes for the same request
    srt = _download(d, downloads, "srt", "jfk")
    assert srt == _api(server, JFK, model=models["tr_id"], response_format="srt").text == render(want, "srt")
    vtt = _download(d, downloads, "vtt", "jfk")
    assert vtt == _api(server, JFK, model=models["tr_id"], response_format="vtt").text
    txt = _download(d, downloads, "txt", "jfk")
    assert txt == _api(server, JFK, model=models["tr_id"], response_format="text").text
    j = json.loads(_download(d, downloads, "json", "jfk"))
    assert {k: j[k] for k in ("task", "language", "duration", "text", "segments")} == \
        {k: v[k] for k in ("task", "language", "duration", "text", "segments")}
    assert j["usage"]["output_tokens"] == len(want.tokens)


@needs_browser
def test_undecodable_drop_shows_the_api_error(browser, server, models, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    api = _api(server, bad, model=models["tr_id"])
    assert api.status_code == 400
    message = api.json()["error"]["message"]
    _open(d, server.url)
    # dropped onto the page (a synthetic drop event carrying the file), not picked
    d.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'broken.wav', {type: 'audio/wav'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true,
                                                                           cancelable: true}));
    """, base64.b64encode(bad.read_bytes()).decode())
    _wait(d, lambda x: "broken.wav" in _text(x, "#chosen"), "the dropped file")
    d.find_element(By.ID, "transcribe").click()
    _wait_state(d, "error")
    err = d.find_element(By.ID, "error")
    assert err.is_displayed() and err.get_attribute("role") == "alert"
    assert message in err.text and err.text.startswith("The server could not use this request")
    _shot(d, "error")
    assert d.find_element(By.ID, "transcribe").is_enabled()  # the page is usable again


@needs_browser
def test_question_box_for_moss_audio(browser, server, models, local):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    _open(d, server.url)
    _choose(d, JFK)
    assert not d.find_element(By.ID, "ask").is_displayed()  # MOSS-Transcribe takes no questions
    Select(d.find_element(By.ID, "model")).select_by_value(models["au_id"])
    assert d.find_element(By.ID, "ask").is_displayed()
    q = "What is the speaker talking about?"
    d.find_element(By.ID, "question").send_keys(q)
    d.find_element(By.ID, "ask-send").click()
    _wait(d, lambda x: _state(x) in ("done", "error") and not x.find_element(By.ID, "ask-send").get_attribute(
        "disabled"), "the answer")
    assert _state(d) == "done", _text(d, "#error")
    answers = d.execute_script("return [...document.querySelectorAll('#chat li')].map(l => [l.className, "
                               "l.textContent])")
    assert answers == [["q", q], ["a", local["au"].ask(JFK, q, max_new_tokens=N).text]]


@needs_browser
def test_microphone_recording_is_sent_as_wav(browser, server):
    from selenium.webdriver.common.by import By

    d = browser  # Chromium's fake capture device: a beep, granted without asking
    _open(d, server.url)
    rec = d.find_element(By.ID, "record")
    rec.click()
    _wait(d, lambda x: rec.get_attribute("aria-pressed") == "true", "recording to start", 10)
    time.sleep(1.0)
    rec.click()
    _wait(d, lambda x: "recording-" in _text(x, "#chosen") and ".wav" in _text(x, "#chosen"), "the recording", 10)
    d.find_element(By.ID, "transcribe").click()
    _wait_state(d, "done", "error")
    assert _state(d) == "done", _text(d, "#error")  # the server decoded the page's WAV


@needs_browser
def test_api_key_kept_in_session_storage(browser, keyed, local):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    _open(d, keyed.url)
    assert _state(d) == "key"
    assert "needs an API key" in d.find_element(By.ID, "error").text
    assert d.switch_to.active_element.get_attribute("id") == "api-key"
    d.find_element(By.ID, "api-key").send_keys("wrong" + Keys.ENTER)
    _wait_state(d, "key")
    _wait(d, lambda x: "did not accept" in _text(x, "#error"), "the refusal")
    key = d.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(KEY + Keys.ENTER)
    _wait_state(d, "idle")
    assert d.execute_script("return [sessionStorage.getItem('crispmoss.apiKey'), localStorage.length]") == [KEY, 0]
    _choose(d, JFK)
    d.find_element(By.ID, "transcribe").click()
    _wait_state(d, "done", "error")
    assert _text(d, "#transcript") == local["tr"].transcribe(JFK, max_new_tokens=N).text
    d.refresh()  # the key survives a reload of the tab
    _wait_state(d, "idle")


@needs_browser
def test_keyboard_order_labels_and_phone_width(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    _open(d, server.url)
    unlabelled = d.execute_script("""return [...document.querySelectorAll('input, select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
    assert unlabelled == []
    order: List[str] = []
    d.find_element(By.TAG_NAME, "h1").click()
    for _ in range(12):
        ActionChains(d).send_keys(Keys.TAB).perform()
        order.append(d.switch_to.active_element.get_attribute("id") or d.switch_to.active_element.tag_name)
    want = ["model", "api-key", "key-save", "file", "record", "language"]
    assert [i for i in dict.fromkeys(order) if i in want] == want, order  # focus order = reading order
    d.set_window_size(390, 844)
    try:
        _choose(d, JFK)
        assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        _shot(d, "phone")
    finally:
        d.set_window_size(1100, 1300)


# Replaces the segments (and text) of the transcription's done event by diarized ones given as arguments[0]
# (no tiny model writes speakers), so that the page's speaker column and its speaker-aware downloads can be seen;
# everything else passes through unchanged.
ADD_SPEAKERS = """
const diarized = arguments[0];
const orig = window.fetch;
window.fetch = async (url, opts) => {
  const resp = await orig(url, opts);
  if (!String(url).includes("audio/transcriptions") || !resp.ok) return resp;
  const lines = (await resp.text()).split("\\n").map((l) => {
    if (!l.startsWith("data: ")) return l;
    const ev = JSON.parse(l.slice(6));
    if (ev.segments) { ev.segments = diarized.segments; ev.text = diarized.text; }
    return "data: " + JSON.stringify(ev);
  });
  return new Response(lines.join("\\n"), { status: resp.status, headers: resp.headers });
};
"""


# What MOSS-Transcribe-Diarize writes, parsed: several speakers, text needing escapes, a remainder without speaker.
DIARIZED_TEXT = "[0.48][S01]Welcome <everyone> & all[1.66][2.00][S02]  Thanks,\n  glad  to be here[4.10][4.50][S01]cut off"


@needs_browser
def test_speaker_column_and_downloads_with_speakers(browser, server, downloads):
    from selenium.webdriver.common.by import By

    from crispmoss.formats import render
    from crispmoss.results import Transcript, diarized_segments

    t = Transcript(text=DIARIZED_TEXT, segments=diarized_segments(DIARIZED_TEXT, 11.0), duration=11.0)
    assert t.speakers == ["S01", "S02"] and t.segments[-1].speaker is None
    d = browser
    _open(d, server.url)
    d.execute_script(ADD_SPEAKERS, {"text": t.text, "segments": [
        {"start": s.start, "end": s.end, "text": s.text, "speaker": s.speaker} for s in t.segments]})
    _choose(d, JFK)
    d.find_element(By.ID, "transcribe").click()
    _wait_state(d, "done", "error")
    assert d.find_element(By.CSS_SELECTOR, "#segments th.speaker").is_displayed()
    cells = d.execute_script("return [...document.querySelectorAll('#segments tbody td.speaker')]"
                             ".map(c => c.textContent)")
    assert cells == ["S01", "S02", ""]
    # the transcript shows one "[S01] text" line per segment, as the txt download
    assert d.find_element(By.ID, "transcript").text == render(t, "txt").rstrip("\n")
    assert not d.find_element(By.ID, "hotwords").is_displayed()  # the tiny models take no hotwords
    # the page's own subtitle and text writers give what crispmoss.formats gives for the same segments
    for fmt in ("srt", "vtt", "txt"):
        assert _download(d, downloads, fmt, "jfk") == render(t, fmt), fmt
