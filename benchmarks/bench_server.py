"""Load test of `crispmoss serve`: C concurrent clients x R requests of real speech clips over loopback, against the
same requests run one at a time in-process with Model.transcribe.

For every C (default 1, 4, 16) it reports p50/p95 request latency, aggregate audio-seconds per second and the
speedup over one-at-a-time in-process transcription, and checks that every answer equals the in-process text of
its clip (greedy decoding, so the texts must not depend on C). Generation is capped (--max-new-tokens, default
64) so every request does a bounded amount of work, whatever the model writes.

    python benchmarks/bench_server.py -m moss-transcribe                  # published Q4_K
    python benchmarks/bench_server.py -m ~/.cache/crispmoss/bench/moss-transcribe-preview-2b-random0-q4_k.gguf
    python benchmarks/bench_server.py --random tiny --clients 1 4 --requests 2   # quick check

The server runs as a subprocess bound to 127.0.0.1 (nothing else is contacted); clients use the official openai
package (pip install "crispmoss[server]" openai). Clips: ../shared/audio beside the checkout, else
/work/shared/audio. Writes a table to stdout and JSON to benchmarks/results/server-<time>.json; CPU time used by
other processes during each measurement is recorded (``other_cores``) so disturbed runs can be told apart.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# The in-tree package where a developer build put the extension there (scripts/dev_build.sh), else the installed
# one; CRISPMOSS_TEST_INSTALLED=1 forces the installed one, as for the tests.
if not os.environ.get("CRISPMOSS_TEST_INSTALLED") and any((ROOT / "python" / "crispmoss").glob("_core*")):
    sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(HERE))

CLIP_NAMES = ["jfk.wav", "librivox_ss_0870.wav", "librivox_ss_0880.wav", "jfk_stereo_44k1.flac"]


def audio_dir() -> Path:
    for d in (ROOT.parent / "shared" / "audio", Path("/work/shared/audio")):
        if all((d / n).is_file() for n in CLIP_NAMES):
            return d
    raise SystemExit("bench_server: the shared speech clips were not found in ../shared/audio or /work/shared/audio")


def random_model(arch: str, sizes: str, out_dir: Path) -> str:
    """A random-weight GGUF of ``arch`` at ``sizes`` (tiny: seconds; real_layer: real widths, few layers), made
    once with our own tools (F16; real_layer also quantized to Q4_K like the published files)."""
    from crispmoss.convert import convert
    from crispmoss.quantize import quantize
    from crispmoss.testing import make_checkpoint

    out_dir.mkdir(parents=True, exist_ok=True)
    f16 = out_dir / f"bench-server-{arch}-{sizes}-f16.gguf"
    if not f16.exists():
        hf = make_checkpoint(arch, out_dir / f"bench-server-{arch}-{sizes}-hf", seed=0, sizes=sizes, shards=1)
        tmp = f16.with_suffix(".part")
        convert(hf, tmp, "f16", progress=False)
        os.replace(tmp, f16)
    if sizes == "tiny":
        return str(f16)
    q4 = out_dir / f"bench-server-{arch}-{sizes}-q4_k.gguf"
    if not q4.exists():
        tmp = q4.with_suffix(".part")
        quantize(str(f16), str(tmp), "q4_k", progress=False)
        os.replace(tmp, q4)
    return str(q4)


def percentile(xs: List[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _meter(pids: Optional[List[int]] = None) -> Any:
    try:
        from machine import CpuMeter

        return CpuMeter(pids)
    except Exception:  # noqa: BLE001 - only the disturbance figure is lost
        class _Null:
            other_cores = float("nan")

            def __enter__(self) -> "_Null":
                return self

            def __exit__(self, *exc: Any) -> None:
                pass

        return _Null()


# ----------------------------------------------------------------------------------------------------------------
# In-process, one at a time
# ----------------------------------------------------------------------------------------------------------------


def in_process(model_path: str, clips: List[Path], rounds: int, threads: Optional[int],
               max_new_tokens: int) -> Dict[str, Any]:
    import crispmoss

    model = crispmoss.Model(model_path, threads)
    for c in clips + clips:  # warm-up: compute buffers, page faults of the weights
        model.transcribe(c, max_new_tokens=max_new_tokens)
    lat: List[float] = []
    per_clip: Dict[str, List[float]] = {}
    audio_s = 0.0
    texts: Dict[str, str] = {}
    with _meter() as m:
        t0 = time.perf_counter()
        for _ in range(rounds):
            for c in clips:
                t1 = time.perf_counter()
                t = model.transcribe(c, max_new_tokens=max_new_tokens)
                lat.append(time.perf_counter() - t1)
                per_clip.setdefault(c.name, []).append(lat[-1])
                audio_s += t.duration
                if texts.setdefault(c.name, t.text) != t.text:
                    raise SystemExit(f"bench_server: in-process text of {c.name} changed between runs")
        wall = time.perf_counter() - t0
    arch = model.arch
    del model  # its engine must not share the machine with the server's
    import gc

    gc.collect()
    return {"requests": len(lat), "audio_s": round(audio_s, 3), "wall_s": round(wall, 3),
            "audio_s_per_s": round(audio_s / wall, 3), "p50_s": round(percentile(lat, 0.5), 4),
            "p95_s": round(percentile(lat, 0.95), 4), "mean_s": round(statistics.mean(lat), 4),
            "other_cores": round(getattr(m, "other_cores", float("nan")), 2), "texts": texts,
            "clip_mean_s": {n: round(statistics.mean(v), 4) for n, v in per_clip.items()}, "arch": arch}


# ----------------------------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------------------------


class Server:
    """The server under test: a crispmoss.server.process.ServerProcess with this run's options."""

    def __init__(self, model_path: str, max_batch: int, threads: Optional[int], max_new_tokens: int,
                 log_path: Path) -> None:
        from crispmoss.server.process import ServerProcess

        args = ["-m", model_path, "--max-batch", str(max_batch), "--max-queue", str(max_batch),
                "--max-new-tokens", str(max_new_tokens), "--timeout", "3600", "--no-ui"]
        if threads:
            args += ["--threads", str(threads)]
        try:  # a full-size model may take a while to map
            self.process = ServerProcess(args, log_path, startup_timeout=600)
        except RuntimeError as e:
            raise SystemExit(f"bench_server: {e}") from None
        self.url = self.process.url
        import httpx

        self.model_id = httpx.get(self.url + "/v1/models").json()["data"][0]["id"]

    def stop(self) -> None:
        self.process.stop(30)


def load(server: Server, clips: List[Path], durations: Dict[str, float], clients: int,
         requests: int) -> Tuple[Dict[str, Any], List[Tuple[str, str, float]]]:
    """``clients`` threads, each sending ``requests`` transcriptions one after another (clips round-robin,
    offset per client)."""
    from openai import OpenAI

    data = {c.name: c.read_bytes() for c in clips}
    lat: List[float] = []
    answers: List[Tuple[str, str, float]] = []
    errors: List[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        oc = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=3600)
        try:
            barrier.wait()
            for r in range(requests):
                clip = clips[(k + r) % len(clips)]
                t0 = time.perf_counter()
                text = oc.audio.transcriptions.create(model=server.model_id, file=(clip.name, data[clip.name]),
                                                      response_format="text")
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    answers.append((clip.name, text[:-1] if text.endswith("\n") else text, dt))
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(e)
        finally:
            oc.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    with _meter([server.process.proc.pid]) as m:
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"bench_server: {len(errors)} requests failed at C={clients}: {errors[0]!r}")
    audio_s = sum(durations[n] for n, _, _ in answers)
    return ({"clients": clients, "requests": len(lat), "audio_s": round(audio_s, 3), "wall_s": round(wall, 3),
             "audio_s_per_s": round(audio_s / wall, 3), "p50_s": round(percentile(lat, 0.5), 4),
             "p95_s": round(percentile(lat, 0.95), 4), "mean_s": round(statistics.mean(lat), 4),
             "other_cores": round(getattr(m, "other_cores", float("nan")), 2)}, answers)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="See the module docstring for examples.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("-m", "--model", help="GGUF path or published name (moss-transcribe, ...)")
    src.add_argument("--random", choices=["tiny", "real_layer"],
                     help="a random-weight MOSS-Transcribe of these sizes instead (made once, cached)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels (default 1 4 16)")
    ap.add_argument("--requests", type=int, default=4, help="requests per client (default 4)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="passes over the clips for the in-process baseline (default 2)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="generation cap per request (default 64)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of the model (default: all cores)")
    ap.add_argument("--cache-dir", default=None,
                    help="where --random models go (default $CRISPMOSS_BENCH_DIR or ~/.cache/crispmoss/bench)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    if min(args.clients) < 1 or args.requests < 1 or args.rounds < 1 or args.max_new_tokens < 1:
        ap.error("--clients, --requests, --rounds and --max-new-tokens must be positive")
    try:
        import openai
        from crispmoss.server import missing_dependencies

        del openai  # imported here only to fail early when it is missing
    except ImportError as e:
        raise SystemExit(f"bench_server: {e}; pip install \"crispmoss[server]\" openai")
    if missing_dependencies():
        raise SystemExit(f"bench_server: missing {', '.join(missing_dependencies())}; pip install \"crispmoss[server]\"")

    import soundfile as sf

    adir = audio_dir()
    clips = [adir / n for n in CLIP_NAMES]
    durations = {c.name: float(sf.info(str(c)).duration) for c in clips}
    if args.random:
        cache = Path(args.cache_dir or os.environ.get("CRISPMOSS_BENCH_DIR") or
                     Path.home() / ".cache" / "crispmoss" / "bench")
        model_path = random_model("moss_transcribe", args.random, cache)
        model_label = f"random MOSS-Transcribe ({args.random}, {'f16' if args.random == 'tiny' else 'q4_k'})"
    else:
        from crispmoss.hub import resolve

        model_path = resolve(args.model)
        model_label = args.model
    print(f"model {model_label}: {model_path}", flush=True)
    print(f"clips {', '.join(f'{n} ({d:.1f} s)' for n, d in durations.items())}; max_new_tokens "
          f"{args.max_new_tokens}; threads {args.threads or os.cpu_count()}", flush=True)

    base = in_process(model_path, clips, args.rounds, args.threads, args.max_new_tokens)
    print(f"in-process, one at a time: {base['requests']} requests, p50 {base['p50_s']:.3f} s, p95 "
          f"{base['p95_s']:.3f} s, {base['audio_s_per_s']:.2f} audio-s/s (others used {base['other_cores']} cores)",
          flush=True)

    rows: List[Dict[str, Any]] = []
    mismatches: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_server_") as tmp:
        server = Server(model_path, max(args.clients), args.threads, args.max_new_tokens, Path(tmp) / "server.log")
        try:
            load(server, clips, durations, 1, 2 * len(clips))  # warm-up: two requests per clip, as in-process
            for c in args.clients:
                row, answers = load(server, clips, durations, c, args.requests)
                bad = [(n, t) for n, t, _ in answers if t != base["texts"][n]]
                row["texts_equal"] = not bad
                row["speedup"] = round(row["audio_s_per_s"] / base["audio_s_per_s"], 2)
                # latency relative to the same clip run alone in-process (1.0 = no overhead)
                row["latency_vs_in_process"] = round(statistics.mean(
                    dt / base["clip_mean_s"][n] for n, _, dt in answers), 3)
                rows.append(row)
                mismatches += [{"clients": c, "clip": n, "got": t, "want": base["texts"][n]} for n, t in bad]
                print(f"C={c:3d}: {row['requests']} requests in {row['wall_s']:.2f} s, p50 {row['p50_s']:.3f} s, "
                      f"p95 {row['p95_s']:.3f} s, {row['audio_s_per_s']:.2f} audio-s/s (x{row['speedup']}), "
                      f"texts {'equal' if not bad else f'DIFFER ({len(bad)})'} (others used {row['other_cores']} "
                      f"cores)", flush=True)
        finally:
            server.stop()
            server_log = (Path(tmp) / "server.log").read_text(errors="replace")

    print()
    print("| clients | requests | p50 latency (s) | p95 latency (s) | audio-s/s | vs one at a time | same texts |")
    print("|---|---|---|---|---|---|---|")
    print(f"| in-process, one at a time | {base['requests']} | {base['p50_s']:.3f} | {base['p95_s']:.3f} | "
          f"{base['audio_s_per_s']:.2f} | x1.00 | - |")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['audio_s_per_s']:.2f} | "
              f"x{r['speedup']:.2f} | {'yes' if r['texts_equal'] else 'NO'} |")
    c1 = next((r for r in rows if r["clients"] == 1), None)
    if c1:
        print(f"C=1 latency vs the same clips in-process, one at a time: {c1['latency_vs_in_process'] - 1:+.1%} "
              f"(target: within 10 %)")

    if not args.no_write:
        out = HERE / "results" / f"server-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            from machine import _cpuinfo

            machine = _cpuinfo()
        except Exception:  # noqa: BLE001
            machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
        base_out = {k: v for k, v in base.items() if k != "texts"}
        doc = {"benchmark": "server", "model": model_label, "model_path": model_path,
               "clips": {n: round(d, 3) for n, d in durations.items()}, "max_new_tokens": args.max_new_tokens,
               "threads": args.threads or os.cpu_count(), "requests_per_client": args.requests,
               "machine": machine, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "in_process": base_out, "server": rows, "texts": base["texts"], "mismatches": mismatches,
               "server_log_tail": server_log.splitlines()[-20:]}
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
