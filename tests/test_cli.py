"""The command line: batch transcription, formats, progress, timing report, one-line errors and exit codes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import crispmoss

from crispmoss.cli import main
from surface_util import JFK, JFK_FLAC, LIBRI_0880, audio_gguf, transcribe_gguf  # noqa: F401

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

REPO = Path(__file__).resolve().parents[1]
FAST = ["-t", "1", "--max-new-tokens", "3"]


def _one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "error:" in lines[0]
    for n in needles:
        assert n in lines[0], lines[0]


def test_python_dash_m_one_file_to_stdout(transcribe_gguf):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(crispmoss.__file__)))
    out = subprocess.run([sys.executable, "-m", "crispmoss", "transcribe", str(JFK), "-m", transcribe_gguf, *FAST,
                          "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["duration"] == pytest.approx(11.0) and len(d["segments"]) == 1
    v = subprocess.run([sys.executable, "-m", "crispmoss", "--version"], capture_output=True, text=True, env=env)
    assert v.returncode == 0 and v.stdout.startswith("crispmoss ")


def test_batch_files_and_folder_to_output_dir(transcribe_gguf, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(LIBRI_0880, folder / "sub" / "short.wav")
    shutil.copy(JFK_FLAC, folder / "jfk.flac")
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    rc = main(["transcribe", str(JFK), str(folder), "-m", transcribe_gguf, *FAST, "--format", "srt",
               "--output-dir", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.out == ""
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.srt"))
    assert written == ["jfk-1.srt", "jfk.srt", "sub/short.srt"]  # same stem twice: the second gets a suffix
    for p in out.rglob("*.srt"):
        cues = list(srt.parse(p.read_text(encoding="utf-8")))
        assert len(cues) <= 1
    # Progress: one line per file with the overall audio-seconds per second.
    progress = [ln for ln in cap.err.splitlines() if ln.startswith("[")]
    assert len(progress) == 3 and all("audio-s/s" in ln for ln in progress)
    assert progress[-1].startswith("[3/3]")


def test_vtt_and_verbose_timing_report(transcribe_gguf, tmp_path, capsys):
    rc = main(["transcribe", str(JFK), "-m", transcribe_gguf, *FAST, "-f", "vtt", "-v"])
    cap = capsys.readouterr()
    assert rc == 0
    assert cap.out.startswith("WEBVTT")
    webvtt.from_string(cap.out)
    report = [ln for ln in cap.err.splitlines() if "encoder" in ln]
    assert len(report) == 1
    for word in ("mel", "encoder", "prefill", "decode", "tok/s", "real time"):
        assert word in report[0]


def test_long_file_passes_and_several_files_to_stdout(transcribe_gguf, tmp_path, capsys):
    rc = main(["transcribe", str(JFK), str(LIBRI_0880), "-m", transcribe_gguf, *FAST, "--max-pass-seconds", "4",
               "--format", "json", "-q"])
    cap = capsys.readouterr()
    assert rc == 0 and cap.err == ""
    rows = [json.loads(ln) for ln in cap.out.splitlines()]
    assert [r["file"] for r in rows] == [str(JFK), str(LIBRI_0880)]
    assert rows[0]["timings"]["n_passes"] >= 3
    assert rows[0]["segments"][-1]["end"] == pytest.approx(11.0)


def test_head_type_copy(transcribe_gguf, capsys):
    """--head-type reaches the loader: f16 (the stored type) runs; q8_0 needs rows of whole 32-value blocks,
    which the tiny model's rows are not, and says so in one line (real widths: test_real_widths.py)."""
    rc = main(["transcribe", str(JFK), "-m", transcribe_gguf, *FAST, "--head-type", "f16"])
    assert rc == 0, capsys.readouterr().err
    rc = main(["transcribe", str(JFK), "-m", transcribe_gguf, *FAST, "--head-type", "q8_0"])
    assert rc == 1
    _one_line_error(capsys.readouterr().err, "head_type q8_0", "multiple of 32")


def test_ask_and_sampling_flags(audio_gguf, capsys):
    rc = main(["ask", str(JFK), "What is said?", "-m", audio_gguf, *FAST, "--sampling", "official", "--seed", "3",
               "-v"])
    cap = capsys.readouterr()
    assert rc == 0 and cap.out.endswith("\n") and "decode" in cap.err
    rc = main(["transcribe", str(JFK), "-m", audio_gguf, *FAST, "--language", "de", "--temperature", "0.5",
               "--top-k", "5", "--top-p", "0.9", "--min-p", "0.05", "--repetition-penalty", "1.1", "--seed", "1"])
    assert rc == 0


@pytest.mark.parametrize("argv, code, needles", [
    (["transcribe", str(JFK), "-m", "{t}", "--format", "docx"], 2, ["invalid choice", "docx"]),
    (["transcribe", str(JFK), "-m", "{t}", "--temperature", "-1"], 1, ["temperature"]),
    (["transcribe", str(JFK), "-m", "{t}", "--temperature", "warm"], 2, ["temperature"]),
    (["transcribe", str(JFK), "-m", "/nope/model.gguf"], 1, ["no such file"]),
    (["transcribe", str(JFK), "-m", "{t}", "--language", "fr"], 1, ["only English and Chinese"]),
    (["transcribe", str(JFK), "-m", "{t}", "--max-pass-seconds", "0.1"], 1, ["max_pass_seconds"]),
    (["transcribe", str(JFK), str(JFK), "-m", "{t}", "-f", "srt"], 1, ["--output-dir"]),
    (["transcribe", "/nope/missing-dir/", "-m", "{t}"], 1, ["not found"]),
    (["ask", str(JFK), "What is said?", "-m", "{t}"], 1, ["no instruction"]),
    (["transcribe", str(JFK)], 2, ["--model"]),
    (["frobnicate"], 2, ["invalid choice"]),
    (["transcribe", str(JFK), "-m", "{t}", "--head-type", "q3_k"], 2, ["invalid choice", "q3_k"]),
])
def test_errors_are_one_line(transcribe_gguf, capsys, argv, code, needles):
    argv = [a.replace("{t}", transcribe_gguf) for a in argv] + FAST
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == code
    _one_line_error(capsys.readouterr().err, *needles)


def test_one_bad_file_does_not_stop_the_batch(transcribe_gguf, tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    out = tmp_path / "out"
    rc = main(["transcribe", str(bad), str(JFK), "-m", transcribe_gguf, *FAST, "-o", str(out), "-q"])
    cap = capsys.readouterr()
    assert rc == 1
    assert (out / "jfk.txt").exists() and not (out / "broken.txt").exists()
    assert "broken.wav" in cap.err and "error:" in cap.err
