"""Corpus throughput on one node: ``crispmoss transcribe-corpus --ray`` (Ray Data actors x threads) against the
plain batch CLI (``crispmoss transcribe FOLDER --batch N``) on the same folder, full-size MOSS-Transcribe Q4_K,
a fixed ``max_new_tokens`` (random weights never stop).

    python benchmarks/make_models.py --types q4_k          # once
    python benchmarks/bench_ray.py                         # >= 20 minutes of clips, all cores
    python benchmarks/bench_ray.py --model tiny.gguf --minutes 0.5 --max-new-tokens 4   # smoke test

The folder: the shared speech clips laid end to end with short pauses and cut into clips of 6 to 45 s (the longest
take two passes) until ``--minutes`` of audio, written once into a cache folder. Each run is a fresh process:

1. ``batch``: ``crispmoss transcribe FOLDER -m MODEL --batch N -f json -q`` (one Model, all cores);
2. ``local``: ``crispmoss transcribe-corpus FOLDER --out X.jsonl`` without Ray (the same engine, JSONL output);
3. ``ray AxT``: ``crispmoss transcribe-corpus FOLDER --ray auto --actors A --threads-per-actor T`` on a Ray head
   started for it (``ray start --head --num-cpus=<cores> --block``), for each ``--configs`` entry.

Ray start-up is excluded from the Ray throughput and reported separately: the head's boot (``ray start`` until the
cluster answers) and the command's joining of it (its "Ray cluster ready in X s" line). The wall time of every
command includes its model load (the Ray actors' too). Target: Ray at most 10 % slower than the batch CLI.

Each run also reports the node's CPU time while it ran (user + system of every process, seconds, from /proc/stat
on Linux: ``node_cpu_s``): for a Ray run that includes the head's daemons, Ray Data's helper actors and our actors,
which run outside the command's process tree. On a quiet machine that is the run's whole cost; on a busy one it also
counts the other work (wall times drift there too).
Writes benchmarks/results/ray-<time>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _harness  # noqa: E402
from _tree import audio_dir, use_tree  # noqa: E402

use_tree()

LENGTHS = (6.0, 14.0, 22.0, 29.0, 11.0, 45.0, 18.0, 26.0)  # seconds, cycled


def make_folder(minutes: float, root: Path) -> Path:
    """The benchmark folder (see the module text), made once per length."""
    import numpy as np
    import soundfile as sf

    import crispmoss

    folder = root / f"corpus-{minutes:g}min"
    if (folder / "DONE").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    src = sorted(p for p in audio_dir().iterdir() if p.suffix in (".wav", ".flac"))
    if not src:
        raise SystemExit(f"no clips in {audio_dir()}")
    clips = [crispmoss.load_audio(p) for p in src]
    rng = np.random.default_rng(0)
    parts, n = [], 0
    target = int(minutes * 60 * 16000) + 16000 * 60
    while n < target:
        c = clips[len(parts) % len(clips)]
        pause = np.zeros(int(16000 * (0.2 + 0.5 * rng.random())), dtype=np.float32)
        parts += [c, pause]
        n += len(c) + len(pause)
    stream = np.concatenate(parts)
    pos, k, total = 0, 0, 0.0
    while total < minutes * 60:
        length = int(LENGTHS[k % len(LENGTHS)] * 16000)
        sf.write(folder / f"clip{k:04d}.wav", stream[pos:pos + length], 16000, subtype="PCM_16")
        pos, total, k = pos + length, total + length / 16000, k + 1
    (folder / "DONE").write_text(f"{k} clips, {total:.1f} s\n")
    return folder


def _env() -> Dict[str, str]:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    import crispmoss

    src = str(Path(crispmoss.__file__).resolve().parents[1])  # Ray's workers import the same crispmoss
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _node_cpu() -> Optional[float]:
    """Busy CPU seconds of the whole node so far (/proc/stat: user, nice, system, irq, softirq, steal); None
    without /proc."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _run(cmd: List[str], env: Dict[str, str], timeout: float) -> Dict[str, Any]:
    t0, c0, n0 = time.perf_counter(), _children_cpu(), _node_cpu()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    wall, cpu, n1 = time.perf_counter() - t0, _children_cpu() - c0, _node_cpu()
    if p.returncode != 0:
        return {"ok": False, "cmd": cmd, "error": p.stderr[-3000:], "wall_s": wall}
    r = {"ok": True, "cmd": cmd, "wall_s": wall, "cpu_s": cpu, "stdout": p.stdout, "stderr": p.stderr}
    if n0 is not None and n1 is not None:
        r["node_cpu_s"] = n1 - n0
    return r


def _texts_jsonl(path: Path) -> Dict[str, str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {os.path.basename(r["path"]): r["text"] for r in rows if r["error"] is None}


class Head:
    """A Ray head of its own (process group), stopped by signalling that group (not ``ray stop``, which would end
    every Ray cluster of the machine)."""

    def __init__(self, cpus: int, env: Dict[str, str]) -> None:
        self.temp = tempfile.mkdtemp(prefix="cmbench-ray-")
        self.log = open(Path(self.temp) / "head.log", "w+")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--num-cpus={cpus}",
             "--node-ip-address=127.0.0.1", "--port=0", "--include-dashboard=false", f"--temp-dir={self.temp}",
             "--disable-usage-stats"], stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        current = Path(self.temp) / "ray_current_cluster"
        while not current.exists() or not current.read_text().strip():
            if self.proc.poll() is not None or time.perf_counter() - t0 > 180:
                self.log.seek(0)
                raise SystemExit("ray start --head failed:\n" + self.log.read()[-3000:])
            time.sleep(0.1)
        self.address = current.read_text().strip()
        self.startup_s = time.perf_counter() - t0

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF (default: make_models.py's MOSS-Transcribe Q4_K)")
    ap.add_argument("--minutes", type=float, default=20.0, help="audio in the folder (default 20)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="tokens per pass (default 64)")
    ap.add_argument("--batch", type=int, default=16, help="passes decoded together per model (default 16)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="cores used (default: all)")
    ap.add_argument("--configs", default=None,
                    help="Ray actors x threads to run, e.g. 1x16,2x8 (default: 1 x cpus, and 2 x cpus/2 from 4 cpus)")
    ap.add_argument("--skip-local", action="store_true", help="leave out transcribe-corpus without Ray")
    ap.add_argument("--cache", default=None, help="folder for the clips (default ~/.cache/crispmoss/bench)")
    ap.add_argument("--timeout", type=float, default=7200)
    a = ap.parse_args()
    from make_models import bench_dir, model_path

    model = a.model or str(model_path("moss_transcribe", "q4_k"))
    if not os.path.exists(model):
        print(f"missing {model}: run benchmarks/make_models.py --types q4_k first", file=sys.stderr)
        return 2
    folder = make_folder(a.minutes, Path(a.cache) if a.cache else bench_dir(None))
    n_files = len(list(folder.glob("*.wav")))
    configs = a.configs.split(",") if a.configs else [f"1x{a.cpus}"] + ([f"2x{a.cpus // 2}"] if a.cpus >= 4 else [])
    env = _env()
    gen = ["--max-new-tokens", str(a.max_new_tokens), "--batch", str(a.batch)]
    cli = [sys.executable, "-m", "crispmoss"]
    work = Path(tempfile.mkdtemp(prefix="cmbench-ray-out-"))
    report: Dict[str, Any] = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "model": model, "folder": str(folder),
                              "files": n_files, "max_new_tokens": a.max_new_tokens, "batch": a.batch, "cpus": a.cpus,
                              "runs": {}}
    try:
        import soundfile as sf

        report["audio_s"] = audio_s = sum(sf.info(str(p)).duration for p in folder.glob("*.wav"))
        print(f"{n_files} clips, {audio_s / 60:.1f} min of audio; {a.cpus} cores", flush=True)

        print("[batch] crispmoss transcribe --batch", flush=True)
        r = _run(cli + ["transcribe", str(folder), "-m", model, "-t", str(a.cpus), "-f", "json", "-q"] + gen, env,
                 a.timeout)
        if r["ok"]:
            rows = [json.loads(line) for line in r.pop("stdout").splitlines() if line.strip()]
            r["texts"] = {os.path.basename(x["file"]): x["text"] for x in rows}
        report["runs"]["batch"] = r

        if not a.skip_local:
            print("[local] crispmoss transcribe-corpus (no Ray)", flush=True)
            out = work / "local.jsonl"
            r = _run(cli + ["transcribe-corpus", str(folder), "--out", str(out), "-m", model, "-t", str(a.cpus),
                            "-q"] + gen, env, a.timeout)
            if r["ok"]:
                r["texts"] = _texts_jsonl(out)
            report["runs"]["local"] = r

        head = Head(a.cpus, env)
        report["ray_head_startup_s"] = head.startup_s
        print(f"[ray] head up in {head.startup_s:.1f} s", flush=True)
        try:
            for c in configs:
                actors, threads = (int(x) for x in c.split("x"))
                print(f"[ray {c}] crispmoss transcribe-corpus --ray auto", flush=True)
                out = work / f"ray-{c}.jsonl"
                r = _run(cli + ["transcribe-corpus", str(folder), "--out", str(out), "-m", model, "--ray", "auto",
                                "--actors", str(actors), "--threads-per-actor", str(threads)] + gen,
                         dict(env, RAY_ADDRESS=head.address), a.timeout)
                if r["ok"]:
                    m = re.search(r"Ray cluster ready in ([\d.]+) s", r["stderr"])
                    r["connect_s"] = float(m.group(1)) if m else 0.0
                    r["texts"] = _texts_jsonl(out)
                report["runs"][f"ray {c}"] = r
        finally:
            head.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in report["runs"].values():
        r.pop("stderr", None)
    dest = _harness.write_report(report, "ray")
    print_table(report)
    print(f"\nwritten {dest}")
    return 0


def print_table(report: Dict[str, Any]) -> None:
    audio = report["audio_s"]
    base: Optional[Dict[str, Any]] = report["runs"].get("batch")
    print(f"\n{report['files']} clips, {audio / 60:.1f} min, {report['max_new_tokens']} tokens per pass, batch "
          f"{report['batch']}, {report['cpus']} cores; Ray head start-up {report.get('ray_head_startup_s', 0):.1f} s "
          f"(not counted below)")
    print(f"{'run':<12} {'wall s':>8} {'audio-s/s':>10} {'vs batch':>9} {'node CPU s':>11} {'same text':>10}")
    for name, r in report["runs"].items():
        if not r.get("ok"):
            print(f"{name:<12} failed: {r.get('error', '')[-300:]}")
            continue
        wall = r["wall_s"] - r.get("connect_s", 0.0)
        ratio = f"{wall / base['wall_s']:.3f}x" if base and base.get("ok") else "-"
        same = (r["texts"] == base["texts"]) if base and base.get("ok") else "-"
        extra = f"  (joining the cluster: {r['connect_s']:.1f} s, excluded)" if "connect_s" in r else ""
        cpu = f"{r['node_cpu_s']:.1f}" if "node_cpu_s" in r else "-"
        print(f"{name:<12} {wall:>8.1f} {audio / wall:>10.2f} {ratio:>9} {cpu:>11} {str(same):>10}{extra}")


if __name__ == "__main__":
    sys.exit(main())
