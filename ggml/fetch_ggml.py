#!/usr/bin/env python3
"""Extract the pinned ggml sources into ggml/vendor/ (git-ignored).

ggml is not tracked in git. It ships inside the llama-cpp-python sdist on PyPI; this script downloads
exactly the pinned file with pip, checks its sha256 and extracts only ggml/ and its MIT licence.
CMake runs it when ggml/vendor/ is missing. An sdist of crispmoss carries the extracted copy, so
building a wheel from the sdist needs no network.

    python ggml/fetch_ggml.py [--archive PATH] [--force]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
STAMP = VENDOR / "PIN.json"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(pin: dict, dest: Path) -> Path:
    # Inside a PEP 517 build (scikit-build-core, isolated) the interpreter's PYTHONPATH points at the build
    # environment, which has no pip: run pip with the interpreter's own environment instead. pip prepares the
    # sdist's metadata in an isolated environment of its own (binary wheels of its build backend only).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME", "PIP_NO_INDEX")}
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", pin["package"],
           f"{pin['package']}=={pin['version']}", "-d", str(dest)]
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"fetch_ggml: pip could not download {pin['package']}=={pin['version']}:\n{done.stderr[-2000:]}")
    path = dest / pin["file"]
    if not path.exists():
        raise SystemExit(f"fetch_ggml: pip did not produce {pin['file']}")
    return path


def extract(archive: Path, pin: dict) -> None:
    got = sha256(archive)
    if got != pin["sha256"]:
        raise SystemExit(f"fetch_ggml: sha256 mismatch for {archive}: {got} != {pin['sha256']}")
    tmp = Path(tempfile.mkdtemp(prefix="ggml-", dir=HERE))
    try:
        prefix = pin["ggml_dir"].rstrip("/") + "/"
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if (m.name.startswith(prefix) or m.name == pin["license"])
                       and (m.isfile() or m.isdir())]
            tar.extractall(tmp, members=members, filter="data")
        if VENDOR.exists():
            shutil.rmtree(VENDOR)
        shutil.move(str(tmp / pin["ggml_dir"]), str(VENDOR))
        shutil.copy(tmp / pin["license"], VENDOR / "LICENSE")
        STAMP.write_text(json.dumps(pin, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", type=Path, help="use this already-downloaded sdist instead of pip")
    ap.add_argument("--force", action="store_true", help="re-extract even if ggml/vendor is current")
    args = ap.parse_args()
    pin = json.loads((HERE / "pin.json").read_text())
    if not args.force and STAMP.exists() and json.loads(STAMP.read_text()) == pin:
        return
    if os.environ.get("CRISPMOSS_GGML_OFFLINE") and not args.archive:
        raise SystemExit("fetch_ggml: ggml/vendor is missing and CRISPMOSS_GGML_OFFLINE is set")
    if args.archive:
        extract(args.archive, pin)
    else:
        with tempfile.TemporaryDirectory() as d:
            extract(download(pin, Path(d)), pin)
    print(f"fetch_ggml: ggml {pin['ggml_version']} extracted to {VENDOR}")


if __name__ == "__main__":
    main()
