"""scripts/device_check.sh, the prepared GPU check (issue #23), tested where no GPU is: its quick local mode
(carried size, probe, a tiny model made without the extension, the result writer) and the helpers' logic
(results merging, build-time stamps, carry accounting, the CUDA-vs-CPU verdicts)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_check.sh"
sys.path.insert(0, str(ROOT / "scripts"))

import device_check  # noqa: E402
import device_gpu  # noqa: E402

STAGES = ("carry", "probe", "build", "gpu_checks", "pytest", "models_q", "bench", "llama", "sweep")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quick_local_run_writes_its_results(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), DC_PYTHON=sys.executable)
    r = subprocess.run(["bash", str(SCRIPT), "--local", "--quick"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads((out / "device_check.json").read_text())
    assert data["mode"] == "local" and data["quick"] is True and data["issue"] == 23
    assert data["order"] == ["carry", "probe", "models_tiny"]
    assert all(data["stages"][s]["status"] == "ok" for s in data["order"])
    # every stage of the device run has a written budget, and the run a deadline
    assert all(isinstance(data["budgets_s"][s], int) and data["budgets_s"][s] > 0 for s in STAGES)
    assert data["deadline_s"] > 0
    carry = data["stages"]["carry"]["result"]
    assert carry["ok"] and carry["total_bytes"] < 64 * 2**20 and carry["limit_mib"] == 64
    assert carry["tree"]["files"] > 50
    probe = data["stages"]["probe"]["result"]
    assert probe["python_h"] in (True, False) and "packages" in probe
    made = data["stages"]["models_tiny"]["result"]["files"]
    for arch in ("moss_transcribe", "moss_audio"):
        assert Path(made[f"{arch}/f16"]["path"]).is_file()
    # the log and the summary (the call's last lines) say the same
    assert "carried:" in r.stdout and "models_tiny" in r.stdout
    assert "stage carry: ok" in (out / "log.txt").read_text()


def test_the_documented_call_fits_the_run_tool():
    head = SCRIPT.read_text().split("set -uo pipefail")[0]
    assert 'command:   bash scripts/device_check.sh' in head
    assert 'carry:     ["ggml/vendor", ".device"]' in head
    assert "timeout_s: 590" in head
    assert os.access(SCRIPT, os.X_OK)
    assert "/.device/" in (ROOT / ".gitignore").read_text().split()


def test_record_merges_stage_results(tmp_path):
    j = tmp_path / "r.json"
    device_check.main(["init", "--json", str(j), "--mode", "device", "--deadline", "540",
                       "--budgets", "build=300,bench=100"])
    data_file = tmp_path / "stage.json"
    data_file.write_text(json.dumps({"rows": [1, 2]}))
    device_check.main(["record", "--json", str(j), "--stage", "build", "--status", "timeout", "--seconds", "300.4",
                       "--budget", "300", "--note", "rc=124"])
    device_check.main(["record", "--json", str(j), "--stage", "bench", "--status", "ok", "--seconds", "80",
                       "--budget", "100", "--data", str(data_file)])
    device_check.main(["record", "--json", str(j), "--stage", "llama", "--status", "ok", "--seconds", "1",
                       "--data", str(tmp_path / "missing.json")])
    d = json.loads(j.read_text())
    assert d["order"] == ["build", "bench", "llama"]
    assert d["budgets_s"] == {"build": 300, "bench": 100}
    assert d["stages"]["build"] == {"status": "timeout", "seconds": 300.4, "budget_s": 300, "note": "rc=124"}
    assert d["stages"]["bench"]["result"] == {"rows": [1, 2]}
    assert "result_error" in d["stages"]["llama"]
    assert any("build" in line and "timeout" in line for line in device_check.summary_lines(d))


def test_stamp_keeps_build_times_of_unchanged_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a, b = src / "a.cpp", src / "b.cpp"
    a.write_text("int a;")
    b.write_text("int b;")
    man = tmp_path / "stamp.json"
    t_a, t_b = a.stat().st_mtime_ns, b.stat().st_mtime_ns
    assert device_check.stamp(man, [src]) == {"restored": 0, "touched": 0, "added": 2}
    assert (a.stat().st_mtime_ns, b.stat().st_mtime_ns) == (t_a, t_b)  # first seen: untouched
    # the tree is copied anew: every file gets a new time, one of them new content
    for p in (a, b):
        os.utime(p, ns=(t_a + 10**10, t_a + 10**10))
    b.write_text("int b2;")
    r = device_check.stamp(man, [src])
    assert r == {"restored": 1, "touched": 1, "added": 0}
    assert a.stat().st_mtime_ns == t_a
    assert b.stat().st_mtime_ns > t_b


def test_carry_report_counts_carried_paths_and_the_limit(tmp_path):
    (tmp_path / "kept.txt").write_bytes(b"x" * 1000)
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"y" * (2 * 2**20))
    rep = device_check.carry_report(tmp_path, ["big", "absent"], limit_mib=64)
    assert rep["paths"]["big"]["bytes"] == 2 * 2**20 and rep["missing"] == ["absent"]
    assert rep["total_bytes"] >= 2 * 2**20 + 1000 and rep["ok"]
    assert not device_check.carry_report(tmp_path, ["big"], limit_mib=1)["ok"]


def test_verdicts_on_logits_and_greedy_tokens():
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(1000) * 3
    ref[7] = ref.max() + 1.0  # a clear winner
    toks = [7, 1, 2, 3]
    same = device_gpu.compare(ref, ref + 1e-4, toks, toks, 2e-3, exact_tokens=True)
    assert same["status"] == "pass" and same["tokens_equal"]
    # a wrong kernel: large error, another argmax
    bad = ref.copy()
    bad[3] = bad.max() + 5
    assert device_gpu.compare(ref, bad, toks, [3, 1, 2, 3], 2e-3, exact_tokens=True)["status"] == "fail"
    assert device_gpu.compare(ref, ref * np.nan, toks, toks, 5e-2, exact_tokens=False)["status"] == "fail"
    # F32: any later divergence fails; quantized types: a warning (later steps' logits are not exposed)
    late = [7, 1, 9, 9]
    assert device_gpu.compare(ref, ref, toks, late, 2e-3, exact_tokens=True)["status"] == "fail"
    w = device_gpu.compare(ref, ref + 1e-3, toks, late, 5e-2, exact_tokens=False)
    assert w["status"] == "warn" and w["first_divergence"] == 2
    # a near-tie at the first step resolved the other way is no failure
    tie = ref.copy()
    tie[8] = tie[7] - 1e-3
    flip = tie.copy()
    flip[8] += 3e-3
    r = device_gpu.compare(tie, flip, [7, 0], [8, 0], 5e-2, exact_tokens=False)
    assert r["argmax_near_tie"] and r["first_divergence"] == 0 and r["status"] == "pass"
    # beyond the tolerance but within 4x: a warning
    assert device_gpu.compare(ref, ref + 0.02 * np.abs(ref).max(), toks, toks, 1e-2,
                              exact_tokens=False)["status"] == "warn"
