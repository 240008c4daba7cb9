"""crispmoss.ray and ``transcribe-corpus --ray`` on a real local Ray cluster: one head (``ray start --head
--num-cpus=2``, node address 127.0.0.1) started once for this module and stopped at its end. Twelve files (long
ones in several passes, a corrupt one, a silent one) give twelve rows whose texts equal Model.transcribe in process;
a job killed half way and resumed writes every input exactly once. Skipped where Ray is not installed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import crispmoss  # noqa: E402
import crispmoss.ray as cray  # noqa: E402
from crispmoss import _core  # noqa: E402
from corpus_util import (CLI_OPTIONS, CORRUPT, OPTIONS, check_rows, make_corpus, read_rows,  # noqa: E402
                         reference)
from surface_util import transcribe_gguf  # noqa: F401,E402

# Batched = alone holds bit for bit only on our CPU kernels (tests/test_batch.py); elsewhere passes run one by one.
BATCH = 4 if _core.gemv_available() else 1


# Token authentication off, explicitly: a head started while ~/.ray/auth_token exists would otherwise turn it on,
# and Ray's drivers (this process included) do not send the token unless told to before Ray is imported.
AUTH = {"RAY_AUTH_MODE": "disabled"}


def _env(address: str = "") -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", **AUTH)
    # Ray's workers import crispmoss as this process does (the source tree of a developer build, or the install)
    src = str(Path(crispmoss.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if address:
        env["RAY_ADDRESS"] = address
    return env


@pytest.fixture(scope="module")
def cluster():
    """The head's address. Started with --block in a process group of its own, so teardown stops this cluster's
    processes (and only them: ``ray stop`` would end every Ray cluster on the machine) by signalling that group."""
    temp = tempfile.mkdtemp(prefix="cmray-")
    log = open(Path(temp) / "head.log", "w+")
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             "--num-cpus=2", "--node-ip-address=127.0.0.1", "--port=0", "--include-dashboard=false",
                             f"--temp-dir={temp}", "--disable-usage-stats"], stdout=log, stderr=subprocess.STDOUT,
                            env=_env(), start_new_session=True)
    current = Path(temp) / "ray_current_cluster"
    deadline = time.monotonic() + 90
    while not current.exists() or not current.read_text().strip():
        if head.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail("ray start --head failed:\n" + log.read()[-3000:])
        time.sleep(0.2)
    address = current.read_text().strip()
    try:
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        # what `ray stop` does, for this cluster's processes only: SIGTERM to each, SIGKILL to those left
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait(10)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, transcribe_gguf):
    root = tmp_path_factory.mktemp("ray_corpus") / "audio"
    files = make_corpus(root)
    return root, files, reference(transcribe_gguf, files)


@pytest.fixture(scope="module")
def driver(cluster):
    """This process joined to the cluster, for the Python API; Ray's SIGTERM handler is taken back out after."""
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(address=cluster, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)


def test_transcriber_called_directly(corpus, transcribe_gguf):
    """The callable alone (what each actor runs): a named column of paths, bytes and an empty cell."""
    root, files, ref = corpus
    t = cray.Transcriber(transcribe_gguf, threads=1, column="audio", engine_batch_size=BATCH, **OPTIONS)
    jfk = next(f for f in files if f.endswith("jfk.wav"))
    table = t({"audio": [jfk, Path(jfk).read_bytes(), None], "id": [7, 8, 9]})
    rows = table.to_pylist()
    assert table.column_names[:8] == list(cray.schema().names) and "audio" not in table.column_names
    assert [r["id"] for r in rows] == [7, 8, 9] and [r["path"] for r in rows] == [jfk, None, None]
    assert rows[0]["text"] == rows[1]["text"] == ref[jfk] and rows[0]["error"] is rows[1]["error"] is None
    assert "no audio in column 'audio'" in rows[2]["error"]
    # calls from two threads at once (as Ray's threaded actors make them) share the one engine run
    from concurrent.futures import ThreadPoolExecutor

    some = files[:6]
    with ThreadPoolExecutor(2) as pool:
        tables = list(pool.map(t, [{"audio": some[:3]}, {"audio": some[3:]}]))
    rows = tables[0].to_pylist() + tables[1].to_pylist()
    assert [r["path"] for r in rows] == some
    assert [r["text"] if r["error"] is None else CORRUPT for r in rows] == [ref.get(f, CORRUPT) for f in some]
    t.close()
    with pytest.raises(crispmoss.InputError, match="max_new_tokens"):
        cray.Transcriber(transcribe_gguf, threads=1, max_new_tokens=-1)


def test_unreachable_cluster_is_a_cli_error(corpus, transcribe_gguf, tmp_path, capsys):
    # first in this module, before this process joins the test cluster
    from crispmoss.cli import main

    assert not ray.is_initialized()
    root, _, _ = corpus
    rc = main(["transcribe-corpus", str(root), "--out", str(tmp_path / "o.jsonl"), "-m", transcribe_gguf,
               "--ray", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "no Ray cluster answers at 127.0.0.1:1" in err, err
    assert not (tmp_path / "o.jsonl").exists()


def test_actor_sizes(driver):
    # first on the cluster: its two CPUs are free
    with pytest.raises(crispmoss.InputError, match="no node"):
        cray.plan_actors(None, 64)
    assert cray.plan_actors() == (1, 2)          # the head's two CPUs: one actor, two threads
    assert cray.plan_actors(2, None) == (2, 1)


def test_transcribe_dataset(driver, corpus, transcribe_gguf):
    root, files, ref = corpus
    ds = ray.data.from_items([{"path": f, "id": k} for k, f in enumerate(files)])
    out = cray.transcribe_dataset(ds, model=transcribe_gguf, engine_batch_size=BATCH, batch_size=4, **OPTIONS)
    rows = out.take_all()
    for r in rows:
        r["tokens"] = list(r["tokens"])
    check_rows(rows, files, ref)
    assert sorted((r["id"], r["path"]) for r in rows) == list(enumerate(files))  # other columns pass through

    # encoded bytes (as ray.data.read_binary_files gives them), named by a path column; None is an error row
    some = [f for f in files if "speech" in f or f.endswith(CORRUPT)]
    items = [{"bytes": Path(f).read_bytes(), "path": f"mem://{Path(f).name}"} for f in some]
    items.append({"bytes": None, "path": "mem://none"})
    rows = cray.transcribe_dataset(ray.data.from_items(items), model=transcribe_gguf, concurrency=1,
                                   num_cpus_per_actor=1, **OPTIONS).take_all()
    by = {r["path"]: r for r in rows}
    assert set(by) == {i["path"] for i in items} and "bytes" not in rows[0]
    for f in some:
        r = by[f"mem://{Path(f).name}"]
        assert (r["error"] is not None) == f.endswith(CORRUPT)
        if r["error"] is None:
            assert r["text"] == ref[f]
    assert "no audio" in by["mem://none"]["error"]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_cli_killed_job_resumes(cluster, corpus, transcribe_gguf, tmp_path):
    root, files, ref = corpus
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "crispmoss", "transcribe-corpus", str(root), "--out", str(out), "-m",
           transcribe_gguf, "--ray", "auto", *CLI_OPTIONS]
    env = _env(cluster)
    # one actor of one thread, one row at a time: the job is killed once its first rows are in OUT
    first = subprocess.Popen(cmd + ["--actors", "1", "--threads-per-actor", "1", "--batch", "1", "-q"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 90
    while _lines(out) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    killed = read_rows(out)
    assert 2 <= len(killed) < len(files), first.stderr.read().decode()[-2000:]
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"path": "/torn/by/the/kil')  # a line cut short by a kill while it was written
    # resumed with the default actors and threads (from the cluster's 2 free CPUs)
    second = subprocess.run(cmd + ["--resume", "--batch", str(BATCH)], env=env, capture_output=True, text=True,
                            timeout=150)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(killed)} of 12 inputs already" in second.stderr
    assert "actor(s) x" in second.stderr  # the sizes planned from the CPUs free (the killed job's actor may linger)
    assert "MapBatches(Transcriber)" in second.stderr  # Ray's progress report
    rows = read_rows(out)
    assert rows[:len(killed)] == killed
    check_rows(rows, files, ref)
    # a finished job resumed writes nothing and exits 0
    before = out.read_bytes()
    third = subprocess.run(cmd + ["--resume", "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0 and out.read_bytes() == before, third.stderr[-2000:]
