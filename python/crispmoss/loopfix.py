"""Optional clean-up of greedy-decoding loops ("the the the the ..."), off by default.

The official code returns the raw greedy text; CrispASR collapses immediately repeated word n-grams. This
module does the same kind of thing in its own way: any n-gram (n = 1..max_n words, or characters when most of
the text is CJK, which has no spaces) that repeats back to back more than ``max_repeats`` times is cut back to
``max_repeats`` copies. Clean text passes unchanged.
"""
from __future__ import annotations

from typing import List, Sequence

from .results import is_cjk

MAX_REPEATS = 3
MAX_N = 12


def _collapse(units: Sequence[str], max_n: int, max_repeats: int) -> List[str]:
    out: List[str] = list(units)
    changed = True
    while changed:
        changed = False
        for n in range(1, max_n + 1):
            i = 0
            while i + n * (max_repeats + 1) <= len(out):
                gram = out[i:i + n]
                reps = 1
                while out[i + reps * n:i + (reps + 1) * n] == gram:
                    reps += 1
                if reps > max_repeats:
                    del out[i + max_repeats * n:i + reps * n]
                    changed = True
                i += 1
    return out


def collapse_loops(text: str, max_repeats: int = MAX_REPEATS, max_n: int = MAX_N) -> str:
    """``text`` with back-to-back repeats of any n-gram beyond ``max_repeats`` copies removed."""
    if max_repeats < 1:
        raise ValueError("max_repeats must be >= 1")
    letters = [c for c in text if not c.isspace()]
    if letters and sum(map(is_cjk, letters)) * 2 > len(letters):
        return "".join(_collapse(list(text), max_n * 2, max_repeats))
    words = text.split(" ")
    return " ".join(_collapse(words, max_n, max_repeats))
