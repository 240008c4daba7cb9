"""Where the benchmarks find crispmoss and the shared clips.

The package: the source tree's copy where a developer build put the extension into it (scripts/dev_build.sh),
otherwise the installed one (``pip install .``), so every benchmark runs after a plain install;
CRISPMOSS_TEST_INSTALLED=1 forces the installed one, as for the tests. The clips: ``../shared/audio`` beside the
checkout (CI's layout), else /work/shared/audio, or $CRISPMOSS_AUDIO_DIR.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_tree() -> None:
    tree = ROOT / "python"
    if (not os.environ.get("CRISPMOSS_TEST_INSTALLED") and any((tree / "crispmoss").glob("_core*"))
            and str(tree) not in sys.path):
        sys.path.insert(0, str(tree))


def audio_dir() -> Path:
    env = os.environ.get("CRISPMOSS_AUDIO_DIR")
    if env:
        return Path(env)
    for d in (ROOT.parent / "shared" / "audio", Path("/work/shared/audio")):
        if d.is_dir():
            return d
    return ROOT.parent / "shared" / "audio"
