"""Machine description and disturbance accounting for the benchmarks.

- ``machine_info()``: CPU model, flags that matter to ggml, cores, memory, and memory bandwidth measured with
  ``membw.c`` (compiled on first use with the system C compiler; a numpy fallback if there is none) for 1 and 2
  threads.
- ``CpuMeter``: CPU time other processes used while a measurement ran (/proc/stat busy time minus this
  process's own utime+stime), so runs disturbed by other work on a shared machine can be flagged and repeated.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                     "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "sse4_2", "neon", "asimd")


# ----------------------------------------------------------------------------------------------------------------
# CPU accounting
# ----------------------------------------------------------------------------------------------------------------

def _system_busy_ticks() -> int:
    with open("/proc/stat") as f:
        parts = f.readline().split()
    # user nice system idle iowait irq softirq steal guest guest_nice; guests are already inside user/nice
    v = [int(x) for x in parts[1:9]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def _own_ticks(pid: Optional[int] = None) -> int:
    """utime + stime of a process (all its threads) plus its reaped children."""
    with open(f"/proc/{pid or 'self'}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    # fields[11..14] = utime stime cutime cstime (stat fields 14..17)
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])


class CpuMeter:
    """``with CpuMeter() as m: ...`` then m.wall_s, m.own_cpu_s, m.other_cpu_s, m.other_cores (other processes'
    CPU time per wall second, i.e. how many cores they kept busy on average)."""

    def __init__(self, pids: Optional[List[int]] = None) -> None:
        self.pids = pids  # processes counted as "ours" besides this one

    def _own(self) -> int:
        total = _own_ticks()
        for p in self.pids or []:
            try:
                total += _own_ticks(p)
            except OSError:
                pass
        return total

    def __enter__(self) -> "CpuMeter":
        self._t0 = time.perf_counter()
        self._b0 = _system_busy_ticks()
        self._o0 = self._own()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.own_cpu_s = (self._own() - self._o0) / CLK_TCK
        busy = (_system_busy_ticks() - self._b0) / CLK_TCK
        self.other_cpu_s = max(0.0, busy - self.own_cpu_s)
        self.other_cores = self.other_cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def other_load(seconds: float = 0.5) -> float:
    """Cores kept busy by other processes over the next `seconds`."""
    with CpuMeter() as m:
        time.sleep(seconds)
    return m.other_cores


def wait_for_quiet(threshold: float, max_wait_s: float, log=None) -> float:
    """Waits (up to max_wait_s) until other processes use less than `threshold` cores for two consecutive half
    seconds; returns the last observed load."""
    t0 = time.monotonic()
    quiet = 0
    load = other_load()
    while True:
        quiet = quiet + 1 if load < threshold else 0
        if quiet >= 2 or time.monotonic() - t0 > max_wait_s:
            return load
        if log and quiet == 0 and int(time.monotonic() - t0) % 15 == 0:
            log(f"waiting for a quiet machine (others use {load:.2f} cores)")
        load = other_load()


# ----------------------------------------------------------------------------------------------------------------
# Machine description
# ----------------------------------------------------------------------------------------------------------------

def _cpuinfo() -> Dict[str, object]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "model name" and model in ("unknown", "", "x86_64"):
                    model = v.strip()
                elif k in ("flags", "Features") and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu_model": model, "flags": sorted(f for f in FLAGS_OF_INTEREST if f in flags),
            "logical_cores": os.cpu_count(), "affinity_cores": len(os.sched_getaffinity(0)),
            "mem_total_gb": round(mem / 1e9, 2), "kernel": platform.release(), "python": platform.python_version()}


def _membw_binary() -> Optional[Path]:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    out = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crispmoss" / "membw"
    src = HERE / "membw.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([cc, "-O3", "-march=native", "-pthread", "-o", str(out), str(src)], capture_output=True)
        if r.returncode != 0:
            return None
    return out


def _numpy_bandwidth(threads: int) -> Dict[str, float]:
    import numpy as np

    n = (256 << 20) // 8
    arrays = [np.arange(n, dtype=np.uint64) for _ in range(threads)]
    outs = [np.empty_like(a) for a in arrays]
    best = {"read_gbps": 0.0, "copy_gbps": 0.0}
    for mode in ("read_gbps", "copy_gbps"):
        for _ in range(3):
            def work(i: int) -> None:
                if mode == "read_gbps":
                    arrays[i].sum()
                else:
                    np.copyto(outs[i], arrays[i])
            ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
            t0 = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            dt = time.perf_counter() - t0
            gb = threads * n * 8 * (1 if mode == "read_gbps" else 2) / 1e9
            best[mode] = max(best[mode], gb / dt)
    return best


def bandwidth(threads: int) -> Dict[str, object]:
    """Best-of-5 read and copy bandwidth in GB/s with `threads` threads, plus other processes' load meanwhile."""
    exe = _membw_binary()
    with CpuMeter() as m:
        if exe:
            r = subprocess.run([str(exe), str(threads)], capture_output=True, text=True, check=True)
            read, copy = (float(x) for x in r.stdout.split()[:2])
            res: Dict[str, object] = {"read_gbps": round(read, 2), "copy_gbps": round(copy, 2), "tool": "membw.c"}
        else:
            res = {k: round(v, 2) for k, v in _numpy_bandwidth(threads).items()}
            res["tool"] = "numpy"
    res["other_cores"] = round(m.other_cores, 2)
    return res


def machine_info(threads=(1, 2)) -> Dict[str, object]:
    info = _cpuinfo()
    info["bandwidth"] = {str(t): bandwidth(t) for t in threads}
    info["load_avg"] = os.getloadavg()
    return info


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=2))
