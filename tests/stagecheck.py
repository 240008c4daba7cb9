"""Stage-by-stage comparison of our runtime against the PyTorch reference.

Both sides run the same checkpoint (the HF directory for the reference, its GGUF conversion for us) on the
same audio; every named stage is compared by per-row cosine, and greedy tokens are compared up to the
reference's first near-tie (top-2 logit margin below NEAR_TIE), where rounding may legitimately flip the
choice: the two sequences are compared while they agree, and may part only at such a step. Near-ties
are counted and reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

import crispmoss
from crispmoss import _core

MIN_COSINE = 0.999
NEAR_TIE = 0.05
STOP_IDS = (151643, 151645)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    # Rows that are zero on both sides (e.g. silence) agree.
    both_zero = (np.linalg.norm(a, axis=-1) == 0) & (np.linalg.norm(b, axis=-1) == 0)
    return np.where(both_zero, 1.0, num / np.maximum(den, 1e-30))


@dataclass
class StageReport:
    cosines: Dict[str, float] = field(default_factory=dict)
    ours_tokens: List[int] = field(default_factory=list)
    ref_tokens: List[int] = field(default_factory=list)
    compared_steps: int = 0
    first_near_tie: Optional[int] = None
    near_ties: int = 0
    diverged_at: Optional[int] = None

    def summary(self) -> str:
        cos = ", ".join(f"{k} {v:.6f}" for k, v in self.cosines.items())
        return (f"min row cosine: {cos}; tokens equal for {self.compared_steps} steps "
                f"(first near-tie at {self.first_near_tie}, {self.near_ties} near-ties in all, "
                f"diverged at {self.diverged_at})")


def run_ours(gguf: str, audio: np.ndarray, max_new_tokens: int, *, instruction: str = "",
             kv_type: str = "f32") -> Dict[str, object]:
    model = _core.Model(gguf)
    session = _core.Session(model, n_threads=0, kv_type=kv_type)
    session.enable_dumps(True)
    session.set_audio(np.ascontiguousarray(audio, dtype=np.float32))
    out = session.generate(instruction=instruction, max_new_tokens=max_new_tokens)
    dumps = dict(session.dumps())
    dumps["tokens"] = list(out["tokens"])
    dumps["prompt_ids"] = list(session.prompt_ids(instruction=instruction))
    return dumps


def compare(ours: Dict[str, object], ref: Dict[str, object], stages: Sequence[str]) -> StageReport:
    rep = StageReport()
    for name in stages:
        a, b = np.asarray(ours[name]), np.asarray(ref[name])
        assert a.shape == b.shape, f"{name}: shape {a.shape} vs reference {b.shape}"
        rep.cosines[name] = float(row_cosines(a, b).min())
    assert list(ours["prompt_ids"]) == list(ref["prompt_ids"]), "prompt ids differ from the reference"
    rep.ours_tokens = list(ours["tokens"])
    rep.ref_tokens = [int(t) for t in ref["tokens"]]  # the reference keeps its stop token, we do not
    margins = list(ref["margins"])
    rep.near_ties = sum(1 for m in margins if m < NEAR_TIE)
    # Compare every step while the two sequences agree; they may part only at a reference near-tie.
    for i, (m, t) in enumerate(zip(margins, rep.ref_tokens)):
        if m < NEAR_TIE and rep.first_near_tie is None:
            rep.first_near_tie = i
        mine = rep.ours_tokens[i] if i < len(rep.ours_tokens) else None
        if t in STOP_IDS:
            if mine is not None and m >= NEAR_TIE:
                raise AssertionError(f"the reference stopped at step {i}, ours went on with {mine}")
            rep.compared_steps = i + 1
            break
        if mine != t:
            assert m < NEAR_TIE, f"greedy token {i}: ours {mine} vs reference {t} (margin {m:.3f}, not a near-tie)"
            rep.diverged_at = i
            break
        rep.compared_steps = i + 1
    return rep


def assert_cosines(rep: StageReport, min_cos: float = MIN_COSINE) -> None:
    bad = {k: v for k, v in rep.cosines.items() if v < min_cos}
    assert not bad, f"stages below cosine {min_cos}: {bad}"


def speech(seconds: float) -> np.ndarray:
    """Real speech (jfk.wav) cut or looped to the wanted length."""
    base = crispmoss.load_audio(_jfk_path())
    n = int(round(seconds * 16000))
    reps = int(np.ceil(n / len(base)))
    return np.tile(base, reps)[:n].astype(np.float32)


def _jfk_path() -> str:
    from pathlib import Path

    for root in (Path(__file__).resolve().parents[2] / "shared", Path(__file__).resolve().parents[1] / "../shared"):
        p = root / "audio" / "jfk.wav"
        if p.exists():
            return str(p)
    raise FileNotFoundError("shared/audio/jfk.wav not found beside the repository")
