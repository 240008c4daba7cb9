"""A small corpus for the transcribe-corpus tests (tests/test_corpus.py, tests/test_ray.py): twelve files in a
folder tree: speech of 0.5 to 19 s (the longest ones take several passes at OPTIONS' 8-second pass limit), a
stereo 44.1 kHz FLAC, a silent clip and a corrupt file; and what Model.transcribe gives for each, in process."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf

import crispmoss
from surface_util import JFK, JFK_FLAC, LIBRI_0870, LIBRI_0880, SR, speechlike

OPTIONS = {"max_new_tokens": 6, "max_pass_seconds": 8.0}
CLI_OPTIONS = ["--max-new-tokens", "6", "--max-pass-seconds", "8"]
CORRUPT = "corrupt.wav"


def make_corpus(root: Path) -> List[str]:
    """Writes the twelve files under ``root``; returns their absolute paths, sorted."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
    jfk, l70, l80 = (crispmoss.load_audio(p) for p in (JFK, LIBRI_0870, LIBRI_0880))
    sf.write(root / "jfk.wav", jfk, SR)
    (root / "jfk_stereo.flac").write_bytes(JFK_FLAC.read_bytes())
    sf.write(root / "l0870.wav", l70, SR)
    sf.write(root / "nested" / "l0880.ogg", l80, SR)
    sf.write(root / "long1.wav", np.concatenate([jfk, l70]), SR)                 # 18 s: 3 passes
    sf.write(root / "nested" / "long2.flac", np.concatenate([l80, jfk]), SR)    # 3 passes
    sf.write(root / "silent.wav", np.zeros(3 * SR, dtype=np.float32), SR)
    (root / CORRUPT).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all")
    for k, s in enumerate((0.5, 2.5, 4.0, 19.0)):
        sf.write(root / "nested" / "deeper" / f"speech{k}.wav", speechlike(s, seed=10 + k), SR)
    (root / "notes.txt").write_text("not audio: not an input\n")
    files = sorted(str(p.resolve()) for p in root.rglob("*") if p.suffix != ".txt" and p.is_file())
    assert len(files) == 12
    return files


def reference(model_path: str, files: List[str]) -> Dict[str, str]:
    """Model.transcribe's text for each readable file (passes one after another)."""
    m = crispmoss.Model(model_path, 1, batch_size=1)
    return {f: m.transcribe(f, **OPTIONS).text for f in files if not f.endswith(CORRUPT)}


def read_rows(out: Path) -> List[dict]:
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def check_rows(rows: List[dict], files: List[str], ref: Dict[str, str], texts: bool = True) -> None:
    """One row per file, each with the fields of a corpus row; the corrupt file's row has an error, the others
    none (and, with ``texts``, the in-process text)."""
    assert sorted(r["path"] for r in rows) == sorted(files)
    for r in rows:
        assert set(r) >= {"path", "text", "segments", "duration", "tokens", "error", "timings"}
        if r["path"].endswith(CORRUPT):
            assert r["error"] and "AudioError" in r["error"] and r["text"] == "", r
            continue
        assert r["error"] is None, r
        segs = json.loads(r["segments"])
        assert segs and segs[-1]["end"] == r["duration"] > 0
        assert r["timings"]["n_passes"] == len(segs) and r["timings"]["n_generated"] == len(r["tokens"])
        if texts:
            assert r["text"] == ref[r["path"]], r["path"]
    assert max(r["timings"]["n_passes"] for r in rows) >= 3  # the long files took several passes
