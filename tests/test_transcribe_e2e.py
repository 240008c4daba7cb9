"""MOSS-Transcribe end to end against the PyTorch reference, stage by stage (tiny random checkpoints)."""
from __future__ import annotations

import pytest

from crispmoss.convert import convert
from crispmoss.testing import make_checkpoint
from reference.moss_transcribe_ref import TranscribeReference
from stagecheck import assert_cosines, compare, run_ours, speech

STAGES = ["mel", "enc.layer0", "enc.out", "adapter", "llm.layer0", "logits"]


@pytest.fixture(scope="module", params=[0, 1], ids=lambda s: f"seed{s}")
def checkpoint(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"transcribe_seed{request.param}")
    hf = make_checkpoint("moss_transcribe", d / "hf", seed=request.param, sizes="tiny")
    ggufs = {t: str(convert(hf, d / f"model-{t}.gguf", outtype=t, progress=False)) for t in ("f32", "f16")}
    return hf, ggufs, TranscribeReference(str(hf))


@pytest.mark.parametrize("seconds", [3.0, 25.0])
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_stages_and_greedy_tokens(checkpoint, seconds, outtype, record_property):
    hf, ggufs, ref = checkpoint
    audio = speech(seconds)
    r = ref.run(audio, max_new_tokens=32)
    ours = run_ours(ggufs[outtype], audio, 32)
    rep = compare(ours, r, STAGES)
    record_property("stagecheck", rep.summary())
    print(rep.summary())
    # F16 weights round every matmul input; the stage bound is the same, the token rule is the same.
    assert_cosines(rep)
    assert rep.compared_steps >= 1 or rep.diverged_at == 0


def test_window_layout_25s(checkpoint):
    """25 s = 25 chunks of 100 frames = 4 attention windows (3 full + 1 partial)."""
    hf, ggufs, ref = checkpoint
    ours = run_ours(ggufs["f32"], speech(25.0), 1)
    assert ours["enc.out"].shape[0] == 25 * 13
    assert len(ours["prompt_ids"]) == 25 * 13 + 10


@pytest.mark.parametrize("seconds", [0.5, 1.0, 7.33])
def test_short_and_odd_lengths(checkpoint, seconds):
    """Clips shorter than one chunk (padded to their own length) and with a partial last chunk."""
    hf, ggufs, ref = checkpoint
    audio = speech(seconds)
    rep = compare(run_ours(ggufs["f32"], audio, 8), ref.run(audio, max_new_tokens=8), STAGES)
    assert_cosines(rep)
