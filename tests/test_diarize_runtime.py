"""MOSS-Transcribe-Diarize runtime against the PyTorch reference (tests/reference/diarize_ref.py) on tiny random
checkpoints converted with our converter: prompt ids, per-stage cosines (mel, encoder, adaptor, first logits) and
greedy tokens up to the first near-tie on a 5 s, an 11 s and a 35 s (two-window) clip, for F32, F16 and Q8_0 files;
hotwords plumbing and bad input."""
from __future__ import annotations

import numpy as np
import pytest

import crispmoss
from crispmoss import InputError, _core
from crispmoss.convert import convert
from crispmoss.quantize import quantize
from crispmoss.results import diarized_segments
from crispmoss.testing import make_diarize_checkpoint
from reference.diarize_ref import DiarizeReference, prompt_ids, window_token_counts
from stagecheck import assert_cosines, compare, run_ours, speech

STAGES = ["mel", "enc.out", "adapter", "logits"]
N_NEW = 12
HOTWORDS = ["张三", "Crisp Moss", "MOSS-Transcribe"]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("diarize_rt")
    hf = make_diarize_checkpoint(d / "hf", seed=3)
    files = {t: str(convert(hf, d / f"m-{t}.gguf", outtype=t, progress=False)) for t in ("f32", "f16")}
    quantize(files["f16"], d / "m-q8_0.gguf", "q8_0", n_threads=2, progress=False)
    files["q8_0"] = str(d / "m-q8_0.gguf")
    return hf, files, DiarizeReference(str(hf))


def _ref_stages(ref: DiarizeReference, audio: np.ndarray) -> dict:
    r = ref.run(audio, max_new_tokens=N_NEW)
    r["mel"] = np.concatenate(list(r["mel"]), axis=1)  # [W, 80, 3000] → [80, W·3000], windows in order
    r["enc.out"] = r["enc.kept"]
    r["adapter"] = r["adaptor"]
    return r


@pytest.fixture(scope="module")
def reference_runs(model_files):
    _, _, ref = model_files
    return {s: _ref_stages(ref, speech(s)) for s in (5.0, 11.0, 35.0)}


@pytest.mark.parametrize("seconds", [5.0, 11.0, 35.0])
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_stages_and_greedy_tokens(model_files, reference_runs, seconds, outtype):
    _, files, _ = model_files
    ours = run_ours(files[outtype], speech(seconds), N_NEW)
    rep = compare(ours, reference_runs[seconds], STAGES)
    print(f"{outtype} {seconds} s: {rep.summary()}")
    assert_cosines(rep)
    assert rep.compared_steps >= 1


@pytest.mark.parametrize("n_samples", [160, 79360, 80000, 176000, 480000, 480001, 640000, 16000 * 125])
def test_prompt_ids(model_files, n_samples):
    _, files, _ = model_files
    m = _core.Model(files["f16"])
    assert m.n_audio_tokens_for(n_samples) == sum(window_token_counts(n_samples))
    assert list(m.prompt_ids(n_samples)) == prompt_ids(n_samples)
    assert list(m.prompt_ids(n_samples, hotwords=HOTWORDS)) == prompt_ids(n_samples, hotwords=HOTWORDS)
    # without time markers the span is only placeholders
    assert list(m.prompt_ids(n_samples, time_markers=False)) == prompt_ids(n_samples, every_s=0)


def test_marker_interval_zero(model_files, tmp_path):
    """time_marker_every_seconds = 0 in the file (enable_time_marker false): no markers."""
    import json
    import shutil

    hf, _, _ = model_files
    d = tmp_path / "hf0"
    shutil.copytree(hf, d)
    proc = json.loads((d / "processor_config.json").read_text())
    proc["time_marker_every_seconds"] = 0
    (d / "processor_config.json").write_text(json.dumps(proc))
    m = _core.Model(str(convert(d, tmp_path / "m0.gguf", outtype="f16", progress=False)))
    assert list(m.prompt_ids(176000)) == prompt_ids(176000, every_s=0)


def test_model_api_hotwords_and_segments(model_files):
    _, files, _ = model_files
    audio = speech(11.0)
    with crispmoss.Model(files["f16"], n_threads=2) as m:
        assert m.spec["timed_output"] == "diarized" and m.spec["hotwords"]
        ids = m.prompt_ids(audio, hotwords=HOTWORDS)
        assert ids == prompt_ids(len(audio), hotwords=HOTWORDS)
        t = m.transcribe(audio, hotwords=HOTWORDS, max_new_tokens=6)
        assert t.tokens and t.segments
        # the random model writes no "[t][Sxx]" grammar: the text is the one unparsed segment, speaker None
        assert t.segments == diarized_segments(t.text, t.duration) or t.segments[0].text == t.text
        assert all(s.speaker is None for s in t.segments)
        assert m.session(audio).transcribe(hotwords=("a",), max_new_tokens=2).tokens
        # passes: each pass's segments, shifted to absolute time (labels are per pass)
        long = m.transcribe(speech(35.0), max_pass_seconds=20, max_new_tokens=3)
        assert len(long.segments) >= 2 and long.segments[-1].end == long.duration
        assert all(a.end == b.start for a, b in zip(long.segments, long.segments[1:]))


def test_bad_input(model_files):
    _, files, _ = model_files
    with crispmoss.Model(files["f16"], n_threads=1) as m:
        for bad, match in [("张三, 李四", "list"), (["ok", 3], "str"), (["ok", " "], "empty"), ([""], "empty")]:
            with pytest.raises(InputError, match=match):
                m.transcribe(speech(2.0), hotwords=bad, max_new_tokens=2)
        with pytest.raises(InputError, match="hotword"):
            m.prompt_ids(speech(2.0), hotwords="a")
        with pytest.raises(crispmoss.AudioError):
            m.transcribe(np.zeros(0, dtype=np.float32))
        with pytest.raises(crispmoss.ModelError, match="no instruction"):
            m.ask(speech(2.0), "who speaks?")
        with pytest.raises(InputError, match="language hint"):
            m.transcribe(speech(2.0), language="de")


def test_other_models_take_no_hotwords(tiny_transcribe_gguf_f32):
    with crispmoss.Model(str(tiny_transcribe_gguf_f32), n_threads=1) as m:
        assert m.spec["hotwords"] is False
        with pytest.raises(InputError, match="MOSS-Transcribe does not take hotwords"):
            m.transcribe(speech(1.0), hotwords=["a"])
        assert m.transcribe(speech(1.0), hotwords=[], max_new_tokens=1).tokens  # empty list: no hotwords
    core = _core.Model(str(tiny_transcribe_gguf_f32))
    with pytest.raises(InputError, match="does not take hotwords"):
        core.prompt_ids(16000, hotwords=["a"])
