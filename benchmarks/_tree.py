"""Where the benchmarks find crispmoss and the shared clips.

The package: the source tree's copy where a developer build put the extension into it (scripts/dev_build.sh),
otherwise the installed one (``pip install .``), so every benchmark runs after a plain install;
CRISPMOSS_TEST_INSTALLED=1 forces the installed one, as for the tests (and ``other_build`` points a worker process
at the ``_core`` module of another build folder, e.g. ggml built for AVX2 only). The clips: ``../shared/audio`` beside the
checkout (CI's layout), else /work/shared/audio, or $CRISPMOSS_AUDIO_DIR.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Mapping

ROOT = Path(__file__).resolve().parents[1]


def use_tree() -> None:
    tree = ROOT / "python"
    if (not os.environ.get("CRISPMOSS_TEST_INSTALLED") and any((tree / "crispmoss").glob("_core*"))
            and str(tree) not in sys.path):
        sys.path.insert(0, str(tree))


def package_with_core(build_dir: str, tmp: Path) -> str:
    """A folder holding a crispmoss package that is this tree's Python files with the _core module built in
    build_dir (symbolic links, made under tmp): PYTHONPATH for a worker process that runs that build."""
    cores = sorted(Path(build_dir).glob("_core*.so")) + sorted(Path(build_dir).glob("_core*.pyd"))
    if not cores:
        raise SystemExit(f"no _core module in {build_dir}: cmake --build {build_dir} --target _core")
    src = ROOT / "python" / "crispmoss"
    pkg = Path(tmp) / "other-build" / "crispmoss"
    pkg.mkdir(parents=True)
    for p in src.iterdir():
        if not p.name.startswith(("_core", ".")) and p.name != "__pycache__":
            (pkg / p.name).symlink_to(p.resolve())
    (pkg / cores[0].name).symlink_to(cores[0].resolve())
    return str(pkg.parent)


def other_build(env: Mapping[str, str], package: str) -> Dict[str, str]:
    """``env`` for a worker process that imports crispmoss from ``package`` (package_with_core's folder): that
    folder first on PYTHONPATH, and this tree's copy not put ahead of it by use_tree()."""
    return dict(env, PYTHONPATH=package + os.pathsep + env.get("PYTHONPATH", ""), CRISPMOSS_TEST_INSTALLED="1")


def audio_dir() -> Path:
    env = os.environ.get("CRISPMOSS_AUDIO_DIR")
    if env:
        return Path(env)
    for d in (ROOT.parent / "shared" / "audio", Path("/work/shared/audio")):
        if d.is_dir():
            return d
    return ROOT.parent / "shared" / "audio"
