"""MOSS-Audio end to end against the PyTorch reference: every stage, DeepStack injection, prompts."""
from __future__ import annotations

import numpy as np
import pytest

from crispmoss import _core
from crispmoss.convert import convert
from crispmoss.testing import make_checkpoint
from reference import prompts
from reference.moss_audio_ref import AudioReference
from stagecheck import assert_cosines, compare, run_ours, speech

STAGES = ["mel", "enc.layer0", "enc.tap.0", "enc.tap.1", "enc.tap.2", "enc.out", "adapter", "deepstack.0",
          "deepstack.1", "deepstack.2", "llm.layer0", "llm.layer1", "llm.layer2", "logits"]


@pytest.fixture(scope="module", params=[0, 1], ids=lambda s: f"seed{s}")
def checkpoint(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"audio_seed{request.param}")
    hf = make_checkpoint("moss_audio", d / "hf", seed=request.param, sizes="tiny")
    ggufs = {t: str(convert(hf, d / f"model-{t}.gguf", outtype=t, progress=False)) for t in ("f32", "f16")}
    return hf, ggufs, AudioReference(str(hf))


@pytest.mark.parametrize("seconds", [3.0, 25.0])
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_stages_and_greedy_tokens(checkpoint, seconds, outtype):
    hf, ggufs, ref = checkpoint
    audio = speech(seconds)
    rep = compare(run_ours(ggufs[outtype], audio, 32), ref.run(audio, max_new_tokens=32), STAGES)
    print(rep.summary())
    assert_cosines(rep)


def test_custom_question(checkpoint):
    hf, ggufs, ref = checkpoint
    audio = speech(4.0)
    q = "What is the speaker's mood? Answer in 3 words, 日本語で。"
    rep = compare(run_ours(ggufs["f32"], audio, 16, instruction=q), ref.run(audio, instruction=q, max_new_tokens=16),
                  STAGES)
    assert_cosines(rep)


@pytest.mark.parametrize("seconds", [1.0, 2.0, 7.3, 29.9])
@pytest.mark.parametrize("question", [None, "Describe the sounds in this audio clip."])
def test_prompt_ids_match_the_official_format(checkpoint, seconds, question):
    hf, ggufs, ref = checkpoint
    audio = speech(seconds)
    session = _core.Session(_core.Model(ggufs["f16"]), n_threads=1)
    session.set_audio(audio)
    ours = list(session.prompt_ids(instruction=question or ""))
    assert ours == prompts.audio_prompt_ids(len(audio), question)
    # Without markers the span is only audio placeholders.
    plain = list(session.prompt_ids(instruction=question or "", time_markers=False))
    assert plain == prompts.audio_prompt_ids(len(audio), question, enable_time_marker=False)


def test_deepstack_touches_only_audio_positions(checkpoint):
    """The DeepStack residual changes layer outputs at <|AUDIO|> positions and nowhere before them."""
    hf, ggufs, ref = checkpoint
    audio = speech(3.0)
    ours = run_ours(ggufs["f32"], audio, 1)
    r = ref.run(audio, max_new_tokens=1, deepstack=False)
    ids = np.array(ours["prompt_ids"])
    first_audio = int(np.argmax(ids == 151654))
    diff = np.abs(ours["llm.layer0"] - r["llm.layer0"]).max(axis=1)
    assert diff[:first_audio].max() < 1e-4
    assert diff[ids == 151654].min() > 1e-3


def test_long_clip_stem_in_pieces(checkpoint):
    """A 50 s clip (629 encoder frames) runs the conv stem in overlapping pieces; the result must equal the
    reference's single pass over the whole clip."""
    hf, ggufs, ref = checkpoint
    audio = speech(50.3)
    rep = compare(run_ours(ggufs["f32"], audio, 4), ref.run(audio, max_new_tokens=4),
                  ["mel", "enc.layer0", "enc.out", "adapter", "logits"])
    assert_cosines(rep)


def test_prompt_text_is_nfc_normalised(tiny_audio_gguf_f16):
    """The official tokenizer NFC-normalises text: a decomposed 'é' gives the same prompt as the composed one."""
    import crispmoss

    m = crispmoss.Model(tiny_audio_gguf_f16)
    s = m.session(speech(1.0))
    assert s.prompt_ids("Caf\u0065\u0301 ?") == s.prompt_ids("Caf\u00e9 ?")
