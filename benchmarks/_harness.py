"""What the benchmark scripts share: a measurement in a fresh worker process, and the JSON report's file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def run_worker(script: str, worker_argv: Sequence[str], args: Dict[str, Any], *, timeout: float,
               env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Runs ``python SCRIPT --worker *WORKER_ARGV ARGS.json`` (``args`` written to a temporary file) with ``env``
    (default: this process's) and unbuffered output. Returns ``{"ok": True, "result": <the last stdout line as
    JSON>, "wall": s}``, or ``{"ok": False, "error": <stderr tail>, "wall": s}`` when the worker failed."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(args, f)
        arg_path = f.name
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    t0 = time.time()
    try:
        p = subprocess.run([sys.executable, script, "--worker", *worker_argv, arg_path], capture_output=True,
                           text=True, timeout=timeout, env=env)
    finally:
        os.unlink(arg_path)
    if p.returncode != 0:
        return {"ok": False, "error": p.stderr[-3000:], "wall": time.time() - t0}
    return {"ok": True, "result": json.loads(p.stdout.strip().splitlines()[-1]), "wall": time.time() - t0}


def write_report(report: Any, name: str, out: Optional[Path] = None) -> Path:
    """Writes ``report`` as JSON to ``out``, default ``benchmarks/results/<name>-<local time>.json``; returns the
    path."""
    out = Path(out) if out else RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return out
