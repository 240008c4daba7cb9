// crispmoss serve: the page on GET /. A plain client of the server's OpenAI-style API (no framework, no build):
// GET v1/models, POST v1/audio/transcriptions (stream=true, response_format=verbose_json: text deltas, then
// the segments) and POST v1/chat/completions (stream=true) for models that take instructions (MOSS-Audio).
// URLs are relative, so the page also works behind a reverse proxy under a path prefix.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    model: $("model"), modelHint: $("model-hint"), key: $("api-key"), keySave: $("key-save"),
    form: $("audio-form"), drop: $("drop"), file: $("file"), record: $("record"), recordStatus: $("record-status"),
    chosen: $("chosen"), player: $("player"), language: $("language"), transcribe: $("transcribe"), stop: $("stop"),
    hotwords: $("hotwords"), hotwordsField: $("hotwords-field"),
    error: $("error"), status: $("status"), result: $("result"), transcript: $("transcript"), stats: $("stats"),
    segWrap: $("segments-wrap"), segTable: $("segments"), segBody: document.querySelector("#segments tbody"),
    ask: $("ask"), chat: $("chat"), askForm: $("ask-form"), question: $("question"), askSend: $("ask-send"),
    askReset: $("ask-reset"),
  };
  const KEY_STORE = "crispmoss.apiKey";  // sessionStorage only: gone when the tab closes

  let models = [];
  let audio = null;        // {blob, name, url}
  let audioB64 = null;     // the chosen audio as base64, made once for the chat
  let result = null;       // the finished transcription: {text, language, duration, segments, usage, model, task}
  let controller = null;   // AbortController of the request in flight (one at a time)
  let turns = [];          // finished chat turns [{q, a}] on the chosen audio
  let recorder = null;

  // ------------------------------------------------------------------------------------------------------------
  // Small helpers
  // ------------------------------------------------------------------------------------------------------------

  const setState = (s) => { document.body.dataset.state = s; };
  const setStatus = (msg) => { el.status.textContent = msg || ""; };
  function showError(msg) {
    el.error.textContent = msg || "";
    el.error.hidden = !msg;
  }
  function apiKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }
  function authHeaders(extra) {
    const h = Object.assign({}, extra || {});
    const k = apiKey();
    if (k) h.Authorization = "Bearer " + k;
    return h;
  }
  function selectedModel() { return models.find((m) => m.id === el.model.value) || null; }
  function sizeText(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }
  function clockText(s) {  // 75.25 -> "1:15.3" (table cells)
    const t = Math.max(0, s);
    const m = Math.floor(t / 60);
    const sec = (t - m * 60).toFixed(1).padStart(4, "0");
    return m + ":" + sec;
  }

  // An error of the API in words: what the status means, then the server's own message.
  class ApiFailure extends Error {}
  const STATUS_WORDS = {
    400: "The server could not use this request", 401: "The server needs a valid API key",
    404: "Not found on this server", 413: "The audio is larger than this server accepts",
    429: "The server is busy (its queue is full); try again in a moment",
    499: "The request was cancelled", 500: "The server failed", 503: "The server is shutting down",
    504: "The request took longer than the server's time limit",
  };
  function describe(status, err) {
    const msg = (err && err.message) || "no details given";
    const what = STATUS_WORDS[status] || (status ? "The server answered with status " + status : "The server reported an error");
    const code = err && err.code ? " [" + err.code + "]" : "";
    return what + ": " + msg + code;
  }
  async function failure(resp) {
    let body = null;
    try { body = await resp.json(); } catch (e) { /* not JSON: described by its status */ }
    const err = body && body.error ? body.error : { message: resp.statusText || "" };
    return new ApiFailure(describe(resp.status, err));
  }
  function errorText(e) {
    if (e instanceof ApiFailure) return e.message;
    if (e && e.name === "AbortError") return "";
    if (e instanceof TypeError) return "Cannot reach the server (" + e.message + "). Is crispmoss serve still running?";
    return "Something went wrong: " + (e && e.message ? e.message : String(e));
  }

  // The data payloads of a server-sent-event response ("data: ..." lines; events end with a blank line).
  async function* sseData(resp) {
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    const take = (block) => block.split("\n").filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
    for (;;) {
      const { value, done } = await reader.read();
      buf += done ? dec.decode() : dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const data = take(buf.slice(0, i));
        buf = buf.slice(i + 2);
        if (data) yield data;
      }
      if (done) {
        const data = take(buf);
        if (data) yield data;
        return;
      }
    }
  }
  function parseEvent(data) {
    let ev;
    try { ev = JSON.parse(data); } catch (e) {
      throw new ApiFailure("The server sent an event that is not JSON: " + data.slice(0, 200));
    }
    if (ev && ev.error) throw new ApiFailure(describe(0, ev.error));
    return ev;
  }

  // ------------------------------------------------------------------------------------------------------------
  // Subtitle formats, as crispmoss.formats writes them (the test compares them with the API's srt)
  // ------------------------------------------------------------------------------------------------------------

  const PY_SPACE = "[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
  const STRIP = new RegExp("^" + PY_SPACE + "+|" + PY_SPACE + "+$", "g");  // Python's str.strip()
  const NEWLINES = /\r\n?|[\u2028\u2029\x0b\x0c\x85]/g;
  function cueText(text) {
    const lines = text.replace(NEWLINES, "\n").split("\n").map((l) => l.replace(STRIP, ""));
    return lines.filter((l) => l).join("\n").split("-->").join("->");
  }
  function roundHalfEven(v) {
    const f = Math.floor(v);
    const d = v - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }
  function subClock(seconds, sep) {
    let ms = Math.max(0, roundHalfEven(seconds * 1000));
    const h = Math.floor(ms / 3600000); ms -= h * 3600000;
    const m = Math.floor(ms / 60000); ms -= m * 60000;
    const s = Math.floor(ms / 1000); ms -= s * 1000;
    const p = (n, w) => String(n).padStart(w, "0");
    return p(h, 2) + ":" + p(m, 2) + ":" + p(s, 2) + sep + p(ms, 3);
  }
  function hasSpeaker(s) { return s.speaker !== undefined && s.speaker !== null; }
  function cues(segments) {  // [start, end, text, speaker or null]
    const out = [];
    for (const s of segments) {
      const text = cueText(s.text || "");
      if (text) out.push([s.start, Math.max(s.end, s.start), text, hasSpeaker(s) ? String(s.speaker) : null]);
    }
    return out;
  }
  const speakerPrefix = (who) => (who === null ? "" : "[" + who + "] ");
  const vttEscape = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const WORDS = new RegExp(PY_SPACE + "+", "g");
  function toTxt(r) {  // with speakers: one "[S01] text" line per segment, as formats.to_txt
    if (!r.segments.some(hasSpeaker)) return r.text + "\n";
    const lines = r.segments.filter((s) => (s.text || "").replace(STRIP, ""))
      .map((s) => speakerPrefix(hasSpeaker(s) ? String(s.speaker) : null) +
        s.text.replace(STRIP, "").split(WORDS).join(" "));
    return lines.join("\n") + "\n";
  }
  const FORMATS = {
    txt: { mime: "text/plain", make: toTxt },
    srt: {
      mime: "application/x-subrip",
      make: (r) => cues(r.segments).map(([a, b, t, who], i) =>
        (i + 1) + "\n" + subClock(a, ",") + " --> " + subClock(b, ",") + "\n" + speakerPrefix(who) + t + "\n")
        .join("\n"),
    },
    vtt: {
      mime: "text/vtt",
      make: (r) => {
        const out = ["WEBVTT", ""];
        for (const [a, b, t, who] of cues(r.segments)) {
          // a voice span without its closing tag covers the whole cue, as formats.to_vtt writes it
          out.push(subClock(a, ".") + " --> " + subClock(b, "."),
            (who === null ? "" : "<v " + vttEscape(who) + ">") + vttEscape(t), "");
        }
        return out.join("\n");
      },
    },
    json: {  // the verbose_json answer (usage as the stream reports it: tokens)
      mime: "application/json",
      make: (r) => JSON.stringify({ task: r.task, language: r.language, duration: r.duration, text: r.text,
                                    segments: r.segments, usage: r.usage }, null, 2) + "\n",
    },
  };

  function download(fmt) {
    if (!result || !FORMATS[fmt]) return;
    const f = FORMATS[fmt];
    const blob = new Blob([f.make(result)], { type: f.mime + ";charset=utf-8" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = (result.name.replace(/\.[^./\\]*$/, "") || "transcript") + "." + fmt;
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Models and the API key
  // ------------------------------------------------------------------------------------------------------------

  async function loadModels() {
    setState("loading");
    el.model.disabled = true;
    let resp;
    try {
      resp = await fetch("v1/models", { headers: authHeaders(), cache: "no-store" });
    } catch (e) {
      showError(errorText(e));
      setState("error");
      return;
    }
    if (!resp.ok) {
      const f = await failure(resp);
      models = [];
      el.model.replaceChildren(new Option(resp.status === 401 ? "enter the API key first" : "no models", ""));
      if (resp.status === 401) {
        showError(apiKey() ? "The server did not accept this API key. Enter the key the server was started with "
          + "(--api-key or CRISPMOSS_API_KEY) and press Use key."
          : "This server needs an API key: enter it in the API key field and press Use key.");
        el.key.focus();
        setState("key");
      } else {
        showError(f.message);
        setState("error");
      }
      updateControls();
      return;
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { /* handled below */ }
    models = body && Array.isArray(body.data) ? body.data : [];
    const keep = el.model.value;
    el.model.replaceChildren(...models.map((m) => new Option(m.id + " (" + (m.name || m.arch) + ")", m.id)));
    if (models.some((m) => m.id === keep)) el.model.value = keep;
    el.model.disabled = models.length === 0;
    showError(models.length ? "" : "The server lists no models.");
    setState("idle");
    modelChanged();
  }

  function useKey() {
    const k = el.key.value.trim();
    try {
      if (k) sessionStorage.setItem(KEY_STORE, k); else sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage disabled: the key is not kept */ }
    loadModels();
  }

  function modelChanged() {
    const m = selectedModel();
    el.modelHint.textContent = !m ? "" : m.accepts_instructions
      ? "Takes instructions: transcribe, or ask questions about the audio below."
      : m.speakers ? "Transcription with speaker labels and timestamps; hotwords help with names and terms."
      : "Transcription only.";
    el.hotwordsField.hidden = !(m && m.hotwords);
    resetChat();
    updateControls();
  }

  // ------------------------------------------------------------------------------------------------------------
  // Choosing audio: file picker, drag and drop, microphone
  // ------------------------------------------------------------------------------------------------------------

  function setAudio(blob, name) {
    if (audio) URL.revokeObjectURL(audio.url);
    audio = { blob, name, url: URL.createObjectURL(blob) };
    audioB64 = null;
    el.player.src = audio.url;
    el.player.hidden = false;
    el.chosen.textContent = "Chosen: " + name + " (" + sizeText(blob.size) + ")";
    showError("");
    clearResult();
    resetChat();
    updateControls();
  }

  function fileChosen() {
    const f = el.file.files && el.file.files[0];
    if (f) setAudio(f, f.name);
  }

  function dropped(ev) {
    ev.preventDefault();
    el.drop.classList.remove("over");
    const files = ev.dataTransfer && ev.dataTransfer.files;
    if (!files || !files.length) return;
    try { el.file.files = files; } catch (e) { /* older browsers: the picker keeps its old value */ }
    setAudio(files[0], files[0].name);
  }

  function wavBytes(samples, rate) {  // 16-bit PCM mono WAV
    const buf = new ArrayBuffer(44 + samples.length * 2);
    const v = new DataView(buf);
    const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
    str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE");
    str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    str(36, "data"); v.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const x = Math.max(-1, Math.min(1, samples[i]));
      v.setInt16(44 + i * 2, x < 0 ? x * 0x8000 : x * 0x7fff, true);
    }
    return buf;
  }

  // MediaRecorder writes webm/ogg Opus, which the server's decoder may not read: the page decodes the recording
  // and sends it as 16 kHz mono WAV (the models' own rate).
  async function recordingToWav(blob) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();
    let decoded;
    try { decoded = await ctx.decodeAudioData(await blob.arrayBuffer()); } finally { ctx.close(); }
    const rate = 16000;
    const off = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * rate)), rate);
    const src = off.createBufferSource();
    src.buffer = decoded;
    src.connect(off.destination);
    src.start();
    const out = await off.startRendering();
    return wavBytes(out.getChannelData(0), rate);
  }

  async function toggleRecording() {
    if (recorder) { recorder.stop(); return; }
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia
        || typeof MediaRecorder === "undefined") {
      showError("This browser cannot record on this page: recording needs https or http://localhost / "
        + "127.0.0.1, and a browser with MediaRecorder. Choose a file instead.");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      showError("The microphone is not available: " + (e.message || e.name));
      return;
    }
    const chunks = [];
    const rec = new MediaRecorder(stream);
    const t0 = Date.now();
    const tick = setInterval(() => { el.recordStatus.textContent = "Recording… " + ((Date.now() - t0) / 1000).toFixed(0) + " s"; }, 500);
    rec.ondataavailable = (ev) => { if (ev.data && ev.data.size) chunks.push(ev.data); };
    rec.onstop = async () => {
      clearInterval(tick);
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      el.record.setAttribute("aria-pressed", "false");
      el.record.textContent = "Record from microphone";
      el.recordStatus.textContent = "";
      try {
        const wav = await recordingToWav(new Blob(chunks, { type: rec.mimeType }));
        const name = "recording-" + new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19) + ".wav";
        setAudio(new File([wav], name, { type: "audio/wav" }), name);
      } catch (e) {
        showError("The recording could not be read: " + (e.message || e.name));
      }
    };
    recorder = rec;
    rec.start(250);
    el.record.setAttribute("aria-pressed", "true");
    el.record.textContent = "Stop recording";
    el.recordStatus.textContent = "Recording…";
  }

  // ------------------------------------------------------------------------------------------------------------
  // Transcription
  // ------------------------------------------------------------------------------------------------------------

  function clearResult() {
    result = null;
    el.result.hidden = true;
    el.transcript.textContent = "";
    el.stats.textContent = "";
    el.segBody.replaceChildren();
    el.segWrap.hidden = true;
    stopSpan();
  }

  function updateControls() {
    const busy = controller !== null;
    const m = selectedModel();
    el.transcribe.disabled = busy || !audio || !m;
    el.stop.disabled = !busy;
    el.file.disabled = busy;
    el.record.disabled = busy;
    for (const b of document.querySelectorAll("button.dl")) b.disabled = busy || !result;
    el.ask.hidden = !(m && m.accepts_instructions && audio);
    el.askSend.disabled = busy || !audio;
    el.askReset.disabled = busy || turns.length === 0;
  }

  function begin() {
    controller = new AbortController();
    showError("");
    updateControls();
    return controller.signal;
  }
  function end() {
    controller = null;
    updateControls();
  }

  async function transcribe(ev) {
    ev.preventDefault();
    const m = selectedModel();
    if (!audio || !m || controller) return;
    clearResult();
    const signal = begin();
    const form = new FormData();
    form.append("file", audio.blob, audio.name);
    form.append("model", m.id);
    form.append("response_format", "verbose_json");
    form.append("stream", "true");
    const lang = el.language.value.trim();
    if (lang) form.append("language", lang);
    const hot = el.hotwordsField.hidden ? "" : el.hotwords.value.trim();
    if (hot) form.append("hotwords", hot);  // crispmoss's extension: "a, b"
    const name = audio.name;
    const t0 = performance.now();
    let phase = "Sending " + name + " to " + m.id;
    const tick = () => setStatus(phase + "… " + ((performance.now() - t0) / 1000).toFixed(0) + " s");
    const timer = setInterval(tick, 1000);
    tick();
    setState("waiting");
    el.result.hidden = false;
    let text = "";
    let done = null;
    try {
      const resp = await fetch("v1/audio/transcriptions", { method: "POST", body: form, headers: authHeaders(), signal });
      if (!resp.ok) throw await failure(resp);
      phase = "Transcribing";
      tick();
      for await (const data of sseData(resp)) {
        const e = parseEvent(data);
        if (e.type === "transcript.text.delta") {
          text += e.delta;
          el.transcript.textContent = text;
          setState("streaming");
        } else if (e.type === "transcript.text.done") {
          done = e;
        }
      }
      clearInterval(timer);
      if (!done) throw new ApiFailure("The answer ended before the transcript was finished (the server may have stopped).");
      result = { name, model: m.id, text: done.text, task: done.task || "transcribe", language: done.language,
                 duration: done.duration, segments: Array.isArray(done.segments) ? done.segments : [],
                 usage: done.usage || null };
      showResult((performance.now() - t0) / 1000);
      setState("done");
    } catch (e) {
      if (e && e.name === "AbortError") {
        setStatus("Stopped" + (text ? ": the text above is what had arrived." : "."));
        setState("idle");
      } else {
        showError(errorText(e));
        setStatus("");
        setState("error");
      }
      if (!text) el.result.hidden = true;
    } finally {
      clearInterval(timer);
      end();
    }
  }

  function showResult(seconds) {
    const r = result;
    // with speakers: one "[S01] text" line per segment, as the txt download (white-space: pre-wrap keeps them)
    el.transcript.textContent = r.segments.some(hasSpeaker) ? toTxt(r).replace(/\n$/, "") : r.text;
    const parts = [];
    if (typeof r.duration === "number") parts.push(r.duration.toFixed(1) + " s of audio");
    if (r.usage && typeof r.usage.output_tokens === "number") parts.push(r.usage.output_tokens + " tokens");
    parts.push("answered in " + seconds.toFixed(1) + " s by " + r.model);
    el.stats.textContent = parts.join(" · ");
    setStatus("Done" + (r.text ? "." : ": the model wrote no text."));
    const withSpeaker = r.segments.some((s) => s.speaker !== undefined && s.speaker !== null && s.speaker !== "");
    el.segTable.classList.toggle("has-speaker", withSpeaker);
    const rows = r.segments.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.start = String(s.start);
      tr.dataset.end = String(s.end);
      const td = (cls, content) => {
        const c = document.createElement("td");
        c.className = cls;
        if (typeof content === "string") c.textContent = content; else c.append(content);
        tr.append(c);
      };
      const play = document.createElement("button");
      play.type = "button";
      play.className = "play";
      play.textContent = "▶ " + clockText(s.start);
      play.setAttribute("aria-label", "Play " + clockText(s.start) + " to " + clockText(s.end));
      play.addEventListener("click", () => playSpan(s.start, s.end, tr));
      td("t start", play);
      td("t end", clockText(s.end));
      td("speaker", s.speaker === undefined || s.speaker === null ? "" : String(s.speaker));
      td("text", s.text);
      return tr;
    });
    el.segBody.replaceChildren(...rows);
    el.segWrap.hidden = rows.length === 0;
  }

  // Click-to-play: play [start, end) of the chosen audio, then pause.
  let spanEnd = null;
  let spanRow = null;
  function stopSpan() {
    spanEnd = null;
    if (spanRow) spanRow.classList.remove("playing");
    spanRow = null;
  }
  function watchSpan() {
    if (spanEnd === null) return;
    if (el.player.currentTime >= spanEnd || el.player.ended) {
      el.player.pause();
      stopSpan();
      return;
    }
    requestAnimationFrame(watchSpan);
  }
  function playSpan(start, end, row) {
    stopSpan();
    el.player.currentTime = start;
    spanEnd = end;
    spanRow = row;
    row.classList.add("playing");
    el.player.play().then(() => requestAnimationFrame(watchSpan), (e) => {
      stopSpan();
      showError("The browser cannot play this audio: " + (e.message || e.name));
    });
  }

  // ------------------------------------------------------------------------------------------------------------
  // Questions about the audio (models that take instructions)
  // ------------------------------------------------------------------------------------------------------------

  function blobBase64(blob) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ""));
      r.onerror = () => reject(r.error);
      r.readAsDataURL(blob);
    });
  }
  function audioFormat(a) {
    const ext = (a.name.match(/\.([a-z0-9]+)$/i) || [])[1];
    if (ext) return ext.toLowerCase();
    const sub = (a.blob.type.split("/")[1] || "").split(";")[0];
    return sub || "wav";
  }
  function resetChat() {
    turns = [];
    el.chat.replaceChildren();
    updateControls();
  }
  function chatItem(cls, text) {
    const li = document.createElement("li");
    li.className = cls;
    li.textContent = text;
    el.chat.append(li);
    return li;
  }

  async function ask(ev) {
    ev.preventDefault();
    const m = selectedModel();
    const q = el.question.value.trim();
    if (!q || !audio || !m || controller) return;
    const signal = begin();
    chatItem("q", q);
    const li = chatItem("a", "…");
    setState("asking");
    setStatus("Asking " + m.id + "…");
    let answer = "";
    try {
      if (audioB64 === null) audioB64 = await blobBase64(audio.blob);
      const messages = [];
      const all = turns.concat([{ q, a: null }]);
      all.forEach((t, i) => {
        messages.push(i === 0
          ? { role: "user", content: [{ type: "input_audio", input_audio: { data: audioB64, format: audioFormat(audio) } },
                                      { type: "text", text: t.q }] }
          : { role: "user", content: t.q });
        if (t.a !== null) messages.push({ role: "assistant", content: t.a });
      });
      const resp = await fetch("v1/chat/completions", {
        method: "POST", signal, headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ model: m.id, messages, stream: true }),
      });
      if (!resp.ok) throw await failure(resp);
      let finished = false;
      for await (const data of sseData(resp)) {
        if (data === "[DONE]") { finished = true; break; }
        const c = parseEvent(data);
        const d = c.choices && c.choices[0] && c.choices[0].delta;
        if (d && d.content) {
          answer += d.content;
          li.textContent = answer;
        }
      }
      if (!finished) throw new ApiFailure("The answer ended early (the server may have stopped).");
      li.textContent = answer || "(no answer)";
      turns.push({ q, a: answer });
      el.question.value = "";
      setStatus("Answered.");
      setState("done");
    } catch (e) {
      const msg = errorText(e) || "Stopped.";
      li.textContent = msg;
      li.classList.add("err");
      if (e && e.name !== "AbortError") showError(msg);
      setStatus("");
      setState(e && e.name === "AbortError" ? "idle" : "error");
    } finally {
      end();
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Wiring
  // ------------------------------------------------------------------------------------------------------------

  el.key.value = apiKey();
  el.keySave.addEventListener("click", useKey);
  el.key.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); useKey(); } });
  el.model.addEventListener("change", modelChanged);
  el.file.addEventListener("change", fileChosen);
  el.record.addEventListener("click", toggleRecording);
  el.form.addEventListener("submit", transcribe);
  el.stop.addEventListener("click", () => { if (controller) controller.abort(); });
  el.askForm.addEventListener("submit", ask);
  el.askReset.addEventListener("click", resetChat);
  el.question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); el.askForm.requestSubmit(); }
  });
  el.player.addEventListener("pause", () => { if (spanEnd !== null && el.player.currentTime < spanEnd) stopSpan(); });
  for (const b of document.querySelectorAll("button.dl")) b.addEventListener("click", () => download(b.dataset.format));
  // A file dropped anywhere on the page is taken (and the browser does not navigate away to it).
  window.addEventListener("dragover", (e) => { e.preventDefault(); el.drop.classList.add("over"); });
  window.addEventListener("dragleave", (e) => { if (!e.relatedTarget) el.drop.classList.remove("over"); });
  window.addEventListener("drop", dropped);
  loadModels();
})();
