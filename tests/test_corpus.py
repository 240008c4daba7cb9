"""``crispmoss transcribe-corpus`` without Ray (crispmoss/corpus.py): a folder, a list or a table of paths into one
JSONL file on the local batching engine; --resume (torn last line cut), --overwrite, and one-line CLI errors for an
existing OUT and bad INPUTs. The same command on a Ray cluster: tests/test_ray.py."""
from __future__ import annotations

import os
import sys

import pytest

from crispmoss import _core
from crispmoss.cli import main
from corpus_util import CLI_OPTIONS, CORRUPT, check_rows, make_corpus, read_rows, reference
from surface_util import transcribe_gguf  # noqa: F401

# Batched = alone holds bit for bit only on our CPU kernels (tests/test_batch.py); elsewhere passes run one by one.
BATCH = ["--batch", "4" if _core.gemv_available() else "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, transcribe_gguf):
    root = tmp_path_factory.mktemp("corpus") / "audio"
    files = make_corpus(root)
    return root, files, reference(transcribe_gguf, files)


def _run(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def _error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("crispmoss transcribe-corpus: error:"), err
    for n in needles:
        assert n in lines[0], lines[0]


def test_folder_resume_overwrite(corpus, transcribe_gguf, tmp_path, capsys):
    root, files, ref = corpus
    out = tmp_path / "out.jsonl"
    args = ["transcribe-corpus", str(root), "--out", str(out), "-m", transcribe_gguf, "-t", "1", *BATCH,
            *CLI_OPTIONS]
    rc, err = _run(capsys, *args)
    assert rc == 0, err
    assert "12 rows written" in err and "(1 with errors)" in err
    rows = read_rows(out)
    check_rows(rows, files, ref)

    # an existing OUT needs --resume or --overwrite
    rc, err = _run(capsys, *args)
    assert rc == 1
    _error_line(err, "exists", "--resume", "--overwrite")

    # a finished job resumed writes nothing
    before = out.read_bytes()
    rc, err = _run(capsys, *args, "--resume", "-q")
    assert rc == 0 and err == "" and out.read_bytes() == before

    # a killed job: a prefix of complete rows and a torn last line; resuming writes each missing input once
    lines = before.decode().splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + lines[5][:40], encoding="utf-8")
    rc, err = _run(capsys, *args, "--resume")
    assert rc == 0, err
    assert "5 of 12 inputs already" in err and "7 rows written" in err
    resumed = read_rows(out)
    assert resumed[:5] == rows[:5]
    check_rows(resumed, files, ref)

    # --overwrite starts anew
    rc, _ = _run(capsys, *args, "--overwrite", "-q")
    assert rc == 0 and len(read_rows(out)) == 12


def test_list_and_csv_inputs(corpus, transcribe_gguf, tmp_path, capsys):
    root, files, ref = corpus
    pick = [f for f in files if "speech" in f or f.endswith(CORRUPT)]
    listing = tmp_path / "lists" / "paths.txt"
    listing.parent.mkdir()
    # relative paths are taken from the list's folder; comments, blank lines and repeats are skipped
    rel = [os.path.relpath(f, listing.parent) for f in pick]
    listing.write_text("# corpus\n\n" + "\n".join(rel + rel[:1]) + "\n", encoding="utf-8")
    out = tmp_path / "a.jsonl"
    rc, err = _run(capsys, "transcribe-corpus", str(listing), "--out", str(out), "-m", transcribe_gguf, "-t", "1",
                   *BATCH, *CLI_OPTIONS, "-q")
    assert rc == 0, err
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(pick)
    assert all(r["text"] == ref[r["path"]] for r in rows if r["error"] is None)

    table = tmp_path / "t.csv"
    table.write_text("id,audio\n" + "".join(f"{k},{f}\n" for k, f in enumerate(pick[:2])), encoding="utf-8")
    out = tmp_path / "b.jsonl"
    rc, err = _run(capsys, "transcribe-corpus", str(table), "--column", "audio", "--out", str(out), "-m",
                   transcribe_gguf, "-t", "1", *CLI_OPTIONS, "-q")
    assert rc == 0, err
    assert sorted(r["path"] for r in read_rows(out)) == sorted(pick[:2])

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"audio": pick[2:], "n": list(range(len(pick) - 2))}), tmp_path / "t.parquet")
    out = tmp_path / "c.jsonl"
    rc, err = _run(capsys, "transcribe-corpus", str(tmp_path / "t.parquet"), "--column", "audio", "--out", str(out),
                   "-m", transcribe_gguf, "-t", "1", *CLI_OPTIONS, "-q")
    assert rc == 0, err
    assert sorted(r["path"] for r in read_rows(out)) == sorted(pick[2:])


@pytest.mark.parametrize("make,extra,needles", [
    (lambda d: d / "missing", [], ["input not found"]),
    (lambda d: d, [], ["no audio files found"]),
    (lambda d: d / "t.csv", [], ["--column"]),
    (lambda d: d / "t.csv", ["--column", "nope"], ["no column 'nope'", "audio"]),
    (lambda d: d / "list.txt", ["--column", "audio"], ["--column applies"]),
    (lambda d: d / "list.txt", ["--actors", "2"], ["--ray"]),
    (lambda d: d / "list.txt", ["--batch", "0"], ["--batch"]),
    (lambda d: d / "list.txt", ["--max-new-tokens", "-1"], ["max_new_tokens"]),  # checked before OUT is made
    # for a Ray job, checked before joining a cluster (Ray need not be installed to see these)
    (lambda d: d / "list.txt", ["--ray", "auto", "--top-p", "2"], ["top_p"]),
    (lambda d: d / "list.txt", ["--ray", "auto", "--max-pass-seconds", "0.01"], ["max_pass_seconds"]),
])
def test_bad_input_is_a_cli_error(transcribe_gguf, tmp_path, capsys, make, extra, needles):
    (tmp_path / "t.csv").write_text("audio\nx.wav\n")
    (tmp_path / "list.txt").write_text("x.wav\n")
    out = tmp_path / "out.jsonl"
    rc, err = _run(capsys, "transcribe-corpus", str(make(tmp_path)), "--out", str(out), "-m", transcribe_gguf,
                   *extra)
    assert rc == 1
    _error_line(err, *needles)
    assert not out.exists()


def test_ray_model_checked_here(tmp_path, capsys):
    (tmp_path / "list.txt").write_text("x.wav\n")
    rc, err = _run(capsys, "transcribe-corpus", str(tmp_path / "list.txt"), "--out", str(tmp_path / "o.jsonl"),
                   "-m", str(tmp_path / "nope.gguf"), "--ray", "auto")
    assert rc == 1
    _error_line(err, "nope.gguf: no such file")


def test_usage_errors(transcribe_gguf, tmp_path, capsys):
    rc, err = _run(capsys, "transcribe-corpus", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "-m",
                   transcribe_gguf, "--resume", "--overwrite")
    assert rc == 2 and "not allowed with" in err
    (tmp_path / "o.jsonl").write_text('{"path": "/a.wav"}\nnot json\n{"path": "/b.wav"}\n')
    (tmp_path / "a.wav").write_bytes(b"")
    rc, err = _run(capsys, "transcribe-corpus", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "-m",
                   transcribe_gguf, "--resume")
    assert rc == 1
    _error_line(err, "line 2", "not a transcribe-corpus row")


def test_ray_option_without_ray(corpus, transcribe_gguf, tmp_path, capsys, monkeypatch):
    root, _, _ = corpus
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "crispmoss.ray", raising=False)
    rc, err = _run(capsys, "transcribe-corpus", str(root), "--out", str(tmp_path / "o.jsonl"), "-m",
                   transcribe_gguf, "--ray", "auto")
    assert rc == 1
    _error_line(err, "pip install", "crispmoss[ray]")
    assert not (tmp_path / "o.jsonl").exists()
