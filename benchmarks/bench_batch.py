"""Many sequences at once: aggregate decode speed of N sequences per step, and whole workloads batched vs
sequential, on the full-size random models (benchmarks/make_models.py), 2 threads.

    python benchmarks/make_models.py --types q4_k          # once
    python benchmarks/bench_batch.py                       # both models: decode sweep, llama.cpp, workloads
    python benchmarks/bench_batch.py --quick               # MOSS-Transcribe only, no 10-minute recording
    python benchmarks/bench_batch.py --quick --skip-workloads --attn-ab   # + ggml's attention, same run
    python benchmarks/bench_batch.py --quick --skip-workloads --head-ab   # + every row's exact head, same process

1. Decode sweep: N = 1, 2, 4, 8, 16, 32 sequences (llama.cpp: up to 16) at context position ~160, each in its own
   KV cache, one decode step (decoder_step, what the engine runs: greedy rows, so the head is screened where it
   can be) for all of them; median step time → aggregate tokens/s. Against:
   - llama.cpp (llama-cpp-python, same ggml release) on the same decoder tensors (peer_llama.write_qwen3_gguf),
     one llama_batch of N tokens with N sequence ids per step (prompt prefilled once, copied to every sequence);
   - the roofline: a step can't be faster than reading its weights at the measured read bandwidth, nor than N
     tokens' multiply-adds at the cores' peak FP32 FMA rate (2 x 16 lanes x 2 flops per cycle per core).
2. Workloads through the public API, each in its own process, with a fixed ``max_new_tokens`` (random weights
   never stop): a 10-minute recording (Model.transcribe, batch_size 1 vs default) and a folder of 16 clips
   (Model.transcribe_many, batch_size 1 vs default); wall time and the texts compared.

Writes benchmarks/results/batch-<time>.json and prints a table. Each measurement runs in a fresh process
(``--worker``); the machine's other load during it is recorded (benchmarks/machine.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _harness  # noqa: E402
from _tree import audio_dir, use_tree  # noqa: E402

use_tree()

NS = (1, 2, 4, 8, 16, 32)  # ours: up to kMaxDecodeRows sequences in one decode graph
NS_LLAMA = (1, 2, 4, 8, 16)  # llama.cpp's sweep as the issue set it (its N = 32 would need n_seq_max 32)
POS = 160
STEPS = 10
THREADS = 2


def _shared_audio() -> Path:
    d = audio_dir()
    if not d.is_dir():
        raise SystemExit(f"no shared audio folder at {d} (../shared/audio beside the checkout, or $CRISPMOSS_AUDIO_DIR)")
    return d


# --------------------------------------------------------------------------------------------------------------
# workers (each in its own process)

def w_ours_decode(a: Dict[str, Any]) -> Dict[str, Any]:
    from crispmoss import _core

    b = _core.DecoderBench(a["path"], THREADS, "f16", "")
    b.decode(POS, 2, 100)  # warm-up: pages, thread pool
    out = {}
    # the single-stream path before the engine (decoder_forward of one token), same process: the N = 1 A/B
    one = b.decode(POS, STEPS, 100)[1:]
    out["single_stream"] = {"step_ms": statistics.median(one), "tok_per_s": 1000.0 / statistics.median(one)}
    for n in a["ns"]:
        # the rows as the engine runs greedy sequences: the head screened where it can be (nn/head.h)
        ms = b.decode_batch(n, POS, STEPS, 100, "greedy")[1:]
        med = statistics.median(ms)
        out[str(n)] = {"step_ms": med, "tok_per_s": n * 1000.0 / med, "steps_ms": ms}
        if a.get("head_ab"):  # every row's full logits, right after (same process, same warm caches)
            ex = b.decode_batch(n, POS, STEPS, 100, "exact")[1:]
            out[str(n)]["exact_head"] = {"step_ms": statistics.median(ex), "steps_ms": ex}
    out["head_screened_rows"] = _core.head_screened_rows()
    return out


def w_llama_decode(a: Dict[str, Any]) -> Dict[str, Any]:
    import peer_llama

    peer_llama._set_variant("repack")  # llama.cpp's default CPU path (AMX refused: it crashes on this VM)
    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a["path"].encode(), mp)
    if not model:
        raise RuntimeError("llama.cpp could not load " + a["path"])
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    out: Dict[str, Any] = {"llama_cpp_version": getattr(L, "__version__", "?")}
    ids = [(1000 + 37 * i) % n_vocab for i in range(POS)]
    for n in a["ns"]:
        cp = L.llama_context_default_params()
        cp.n_ctx = POS + n * (STEPS + 4) + 64
        cp.n_batch = cp.n_ubatch = 512
        cp.n_seq_max = n
        cp.n_threads = cp.n_threads_batch = THREADS
        if hasattr(cp, "kv_unified"):
            cp.kv_unified = True  # one cache; the prompt's cells shared by every sequence (seq_cp)
        ctx = L.llama_init_from_model(model, cp)
        batch = L.llama_batch_init(max(POS, n), 0, n)
        batch.n_tokens = POS
        for i, t in enumerate(ids):
            batch.token[i] = t
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if i == POS - 1 else 0
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode (prefill) failed")
        mem = L.llama_get_memory(ctx)
        for s in range(1, n):
            L.llama_memory_seq_cp(mem, 0, s, -1, -1)
        steps: List[float] = []
        for k in range(STEPS):
            batch.n_tokens = n
            for s in range(n):
                batch.token[s] = ids[(k * 7 + s) % POS]
                batch.pos[s] = POS + k
                batch.n_seq_id[s] = 1
                batch.seq_id[s][0] = s
                batch.logits[s] = 1
            t0 = time.perf_counter()
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode (step) failed")
            L.llama_get_logits(ctx)
            steps.append(time.perf_counter() - t0)
        L.llama_batch_free(batch)
        L.llama_free(ctx)
        med = statistics.median(steps[1:]) * 1000
        out[str(n)] = {"step_ms": med, "tok_per_s": n * 1000.0 / med, "steps_ms": [s * 1000 for s in steps[1:]]}
    L.llama_model_free(model)
    return out


def w_workload(a: Dict[str, Any]) -> Dict[str, Any]:
    import crispmoss

    m = crispmoss.Model(a["path"], THREADS, batch_size=a["batch_size"])
    t0 = time.perf_counter()
    if a["kind"] == "recording":
        r = m.transcribe(a["inputs"][0], max_new_tokens=a["max_new_tokens"])
        res = [r]
    else:
        res = m.transcribe_many(a["inputs"], max_new_tokens=a["max_new_tokens"])
    wall = time.perf_counter() - t0
    peak = 0
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return {"wall_s": wall, "texts": [r.text for r in res], "tokens": [r.tokens for r in res],
            "audio_s": sum(r.duration for r in res), "n_passes": sum(int(r.timings.get("n_passes", 1)) for r in res),
            "batch_size": m.batch_size, "peak_rss": peak,
            "stats": m.engine_stats()}


WORKERS = {"ours_decode": w_ours_decode, "llama_decode": w_llama_decode, "workload": w_workload}


def run_worker(name: str, args: Dict[str, Any], timeout: float = 3600, env: "Dict[str, str] | None" = None
               ) -> Dict[str, Any]:
    return _harness.run_worker(__file__, [name], args, timeout=timeout, env=env)


# --------------------------------------------------------------------------------------------------------------
# roofline

def decoder_bytes(path: str) -> int:
    """Bytes a decode step reads once: every decoder weight matrix and the output head."""
    import gguf

    r = gguf.GGUFReader(path)
    names = {t.name: int(t.n_bytes) for t in r.tensors}
    total = sum(b for n, b in names.items() if n.startswith("llm.blk."))
    total += names.get("llm.lm_head.weight", names.get("llm.embed.weight", 0))
    return total


def decoder_params(path: str) -> int:
    import gguf

    r = gguf.GGUFReader(path)
    n = sum(int(t.n_elements) for t in r.tensors if t.name.startswith("llm.blk.") and len(t.shape) == 2)
    head = next((t for t in r.tensors if t.name == "llm.lm_head.weight"), None) or \
        next(t for t in r.tensors if t.name == "llm.embed.weight")
    return n + int(head.n_elements)


def cpu_ghz() -> float:
    mhz = []
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            mhz.append(float(line.split(":")[1]))
    return (max(mhz) if mhz else 2000.0) / 1000.0


# --------------------------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="MOSS-Transcribe only, no 10-minute recording")
    ap.add_argument("--skip-workloads", action="store_true")
    ap.add_argument("--skip-sweep", action="store_true", help="workloads only")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="tokens per pass in the workloads")
    ap.add_argument("--dir", default=None, help="folder of make_models.py's files")
    ap.add_argument("--head-ab", action="store_true",
                    help="also time each step with every row's full logits (the exact head) after the greedy rows' "
                         "screened head, same process: the head screening's A/B (CRISPMOSS_HEAD=exact for a whole run)")
    ap.add_argument("--attn-ab", action="store_true",
                    help="also run our decode sweep with ggml's per-sequence flash attention (CRISPMOSS_ATTN=ggml): "
                         "the decode-attention op's A/B in one run")
    a = ap.parse_args()
    from machine import bandwidth
    from make_models import model_path

    archs = ["moss_transcribe"] if a.quick else ["moss_transcribe", "moss_audio"]
    report: Dict[str, Any] = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": THREADS, "position": POS,
                              "steps": STEPS, "max_new_tokens": a.max_new_tokens, "models": {}}
    bw = bandwidth(THREADS)
    report["bandwidth"] = bw
    ghz = cpu_ghz()
    peak_flops = THREADS * 2 * 16 * 2 * ghz * 1e9
    report["peak_fp32_fma_gflops"] = peak_flops / 1e9
    for arch in ([] if a.skip_sweep else archs):
        path = str(model_path(arch, "q4_k", directory=a.dir))
        if not os.path.exists(path):
            print(f"missing {path}: run benchmarks/make_models.py --types q4_k first", file=sys.stderr)
            return 2
        entry: Dict[str, Any] = {"path": path}
        nbytes, params = decoder_bytes(path), decoder_params(path)
        entry["decoder_bytes"], entry["decoder_params"] = nbytes, params
        print(f"[{arch}] decode sweep (ours)", flush=True)
        entry["ours"] = run_worker("ours_decode", {"path": path, "ns": list(NS), "head_ab": a.head_ab})
        if a.attn_ab:
            print(f"[{arch}] decode sweep (ours, ggml's attention)", flush=True)
            entry["ours_ggml_attn"] = run_worker("ours_decode", {"path": path, "ns": list(NS)},
                                                 env=dict(os.environ, CRISPMOSS_ATTN="ggml"))
        import peer_llama

        if peer_llama.llama_available():
            qpath = str(Path(path).with_name(Path(path).stem + "-llama-qwen3.gguf"))
            if not os.path.exists(qpath):
                peer_llama.write_qwen3_gguf(path, qpath)
            print(f"[{arch}] decode sweep (llama.cpp)", flush=True)
            entry["llama"] = run_worker("llama_decode", {"path": qpath, "ns": list(NS_LLAMA)})
        else:
            entry["llama"] = {"ok": False, "error": "llama-cpp-python is not installed"}
        roof = {}
        for n in NS:
            t_mem = nbytes / (bw["read_gbps"] * 1e9)
            t_cmp = n * 2 * params / peak_flops
            roof[str(n)] = {"step_ms": 1000 * max(t_mem, t_cmp), "tok_per_s": n / max(t_mem, t_cmp),
                            "bandwidth_ms": 1000 * t_mem, "compute_ms": 1000 * t_cmp}
        entry["roofline"] = roof
        report["models"][arch] = entry

    if not a.skip_workloads:
        audio = _shared_audio()
        clips = sorted(str(p) for p in audio.glob("*.wav"))
        folder = [clips[i % len(clips)] for i in range(16)]
        path = str(model_path("moss_transcribe", "q4_k", directory=a.dir))
        work: Dict[str, Any] = {}
        print("[workload] folder of 16 clips", flush=True)
        for bs in (1, None):
            work[f"folder_bs{bs or 'default'}"] = run_worker("workload", {
                "path": path, "kind": "folder", "inputs": folder, "batch_size": bs,
                "max_new_tokens": a.max_new_tokens})
        if not a.quick:
            import numpy as np
            import soundfile as sf

            import crispmoss

            parts = [crispmoss.load_audio(c) for c in clips]
            x = np.concatenate([parts[i % len(parts)] for i in range(200)])[: 600 * 16000]
            rec = Path(tempfile.gettempdir()) / "crispmoss-bench-10min.wav"
            sf.write(rec, x, 16000, subtype="PCM_16")
            print("[workload] 10-minute recording", flush=True)
            for bs in (1, None):
                work[f"recording_bs{bs or 'default'}"] = run_worker("workload", {
                    "path": path, "kind": "recording", "inputs": [str(rec)], "batch_size": bs,
                    "max_new_tokens": a.max_new_tokens})
        report["workloads"] = work

    out = _harness.write_report(report, "batch")
    print_table(report)
    print(f"\nwritten {out}")
    return 0


def _tps(e: Dict[str, Any], n: int) -> float:
    try:
        return e["result"][str(n)]["tok_per_s"] if "result" in e else e[str(n)]["tok_per_s"]
    except (KeyError, TypeError):
        return float("nan")


def print_table(report: Dict[str, Any]) -> None:
    print(f"\nDecode, {report['threads']} threads, position ~{report['position']}, Q4_K; read bandwidth "
          f"{report['bandwidth']['read_gbps']:.1f} GB/s, peak FP32 FMA {report['peak_fp32_fma_gflops']:.0f} GFLOP/s")
    for arch, e in report["models"].items():
        print(f"\n{arch} ({e['decoder_bytes'] / 1e9:.2f} GB read per step)")
        print(f"{'N':>3} {'ours tok/s':>11} {'vs N=1':>7} {'llama tok/s':>12} {'ours/llama':>10} {'roofline':>9} "
              f"{'of roof':>8}")
        base = _tps(e["ours"], 1)
        try:
            single = e["ours"]["result"]["single_stream"]["tok_per_s"]
            print(f"single-stream path (decoder_forward): {single:.1f} tok/s; engine step N=1 / single: "
                  f"{base / single:.3f}")
        except (KeyError, TypeError):
            pass
        for n in NS:
            o, l, r = _tps(e["ours"], n), _tps(e["llama"], n), e["roofline"][str(n)]["tok_per_s"]
            print(f"{n:>3} {o:>11.1f} {o / base:>6.2f}x {l:>12.1f} {o / l:>9.2f}x {r:>9.1f} {o / r:>7.0%}")
        if any("exact_head" in (e["ours"].get("result") or {}).get(str(n), {}) for n in NS):
            print("step ms, greedy rows' screened head vs every row's exact head (same process):")
            for n in NS:
                r = e["ours"]["result"][str(n)]
                print(f"{n:>3} {r['step_ms']:>8.1f} vs {r['exact_head']['step_ms']:>8.1f} ms "
                      f"({r['exact_head']['step_ms'] / r['step_ms']:.2f}x)")
        if "ours_ggml_attn" in e:
            print("with ggml's per-sequence flash attention (CRISPMOSS_ATTN=ggml), same run:")
            for n in NS:
                o, g = _tps(e["ours"], n), _tps(e["ours_ggml_attn"], n)
                print(f"{n:>3} {g:>11.1f} tok/s; our decode-attention op {o / g:.2f}x")
    for k, w in report.get("workloads", {}).items():
        if not w.get("ok"):
            print(f"{k}: failed: {w.get('error', '')[-300:]}")
            continue
        r = w["result"]
        print(f"{k}: {r['audio_s']:.0f} s audio, {r['n_passes']} passes, batch {r['batch_size']}: "
              f"{r['wall_s']:.1f} s wall ({r['audio_s'] / r['wall_s']:.2f} audio-s/s), peak RSS "
              f"{r['peak_rss'] / 2**20:.0f} MiB")
    w = report.get("workloads", {})
    for kind in ("folder", "recording"):
        a, b = w.get(f"{kind}_bs1"), w.get(f"{kind}_bsdefault")
        if a and b and a.get("ok") and b.get("ok"):
            same = a["result"]["texts"] == b["result"]["texts"] and a["result"]["tokens"] == b["result"]["tokens"]
            print(f"{kind}: batched {a['result']['wall_s'] / b['result']['wall_s']:.2f}x faster than sequential; "
                  f"same text: {same}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        args = json.loads(Path(sys.argv[3]).read_text())
        print(json.dumps(WORKERS[sys.argv[2]](args)))
        sys.exit(0)
    sys.exit(main())
