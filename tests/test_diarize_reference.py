"""MOSS-Transcribe-Diarize: the tiny checkpoint builder (crispmoss.testing) and the PyTorch reference
(tests/reference/diarize_ref.py), stage by stage, against the facts of shared/spec/moss-transcribe-diarize.md and
the official code (OpenMOSS/MOSS-Transcribe-Diarize @ 0e3d1403).

The reference was also run once against the official modeling/processing code itself (transformers 5.25,
trust_remote_code, not reachable from CI): equal prompt ids, mel, adaptor rows, last-position logits (max |diff|
1.5e-7) and greedy tokens for 5 s, 11 s, 40 s and 480 001-sample clips; see notes/diarize.md.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from crispmoss.results import parse_diarized
from crispmoss.testing import (diarize_checkpoint_config, diarize_checkpoint_tensors, diarize_special_tokens,
                               make_diarize_checkpoint, read_bf16_safetensors)
from reference import diarize_ref as R
from reference import prompts
from reference.diarize_parser_ref import parse_transcript_ref

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SR = 16000

# spec section 2.1: HF name pattern -> PyTorch shape at full size ({N}: encoder 0..23 / decoder 0..27)
SPEC_TENSORS = {
    "model.whisper_encoder.conv1.weight": (1024, 80, 3), "model.whisper_encoder.conv1.bias": (1024,),
    "model.whisper_encoder.conv2.weight": (1024, 1024, 3), "model.whisper_encoder.conv2.bias": (1024,),
    "model.whisper_encoder.embed_positions.weight": (1500, 1024),
    **{f"model.whisper_encoder.layers.{{N}}.self_attn_layer_norm.{p}": (1024,) for p in ("weight", "bias")},
    **{f"model.whisper_encoder.layers.{{N}}.self_attn.{m}_proj.weight": (1024, 1024) for m in ("q", "k", "v", "out")},
    **{f"model.whisper_encoder.layers.{{N}}.self_attn.{m}_proj.bias": (1024,) for m in ("q", "v", "out")},
    **{f"model.whisper_encoder.layers.{{N}}.final_layer_norm.{p}": (1024,) for p in ("weight", "bias")},
    "model.whisper_encoder.layers.{N}.fc1.weight": (4096, 1024), "model.whisper_encoder.layers.{N}.fc1.bias": (4096,),
    "model.whisper_encoder.layers.{N}.fc2.weight": (1024, 4096), "model.whisper_encoder.layers.{N}.fc2.bias": (1024,),
    "model.whisper_encoder.layer_norm.weight": (1024,), "model.whisper_encoder.layer_norm.bias": (1024,),
    "model.vq_adaptor.layers.0.weight": (1024, 4096), "model.vq_adaptor.layers.0.bias": (1024,),
    "model.vq_adaptor.layers.2.weight": (1024, 1024), "model.vq_adaptor.layers.2.bias": (1024,),
    "model.vq_adaptor.layers.3.weight": (1024,), "model.vq_adaptor.layers.3.bias": (1024,),
    "model.language_model.embed_tokens.weight": (151936, 1024),
    "model.language_model.layers.{N}.input_layernorm.weight": (1024,),
    "model.language_model.layers.{N}.post_attention_layernorm.weight": (1024,),
    "model.language_model.layers.{N}.self_attn.q_proj.weight": (2048, 1024),
    "model.language_model.layers.{N}.self_attn.k_proj.weight": (1024, 1024),
    "model.language_model.layers.{N}.self_attn.v_proj.weight": (1024, 1024),
    "model.language_model.layers.{N}.self_attn.o_proj.weight": (1024, 2048),
    "model.language_model.layers.{N}.self_attn.q_norm.weight": (128,),
    "model.language_model.layers.{N}.self_attn.k_norm.weight": (128,),
    "model.language_model.layers.{N}.mlp.gate_proj.weight": (3072, 1024),
    "model.language_model.layers.{N}.mlp.up_proj.weight": (3072, 1024),
    "model.language_model.layers.{N}.mlp.down_proj.weight": (1024, 3072),
    "model.language_model.norm.weight": (1024,),
}

# spec section 6.2 (from the transformers fixture run against the published checkpoint)
SPEC_PREFIX = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 151669]
SPEC_INSTRUCTION = [int(x) for x in (
    "14880 44063 111268 46670 61443 17714 108704 3837 73157 104383 58362 23031 71618 26606 20450 111420 33108 "
    "104283 17340 72640 9909 58 50 15 16 60 5373 58 50 15 17 60 5373 58 50 15 18 60 1940 7552 111749 3837 110644 "
    "17714 110019 105761 43815 90395 18493 37474 100072 111066 80565 20450 111420 3837 23031 104542 117932 75882 "
    "37474 105761 101121 1773").split()]
SPEC_SUFFIX = [151645, 198, 151644, 77091, 198]
P = R.AUDIO_PAD


@pytest.fixture(scope="module")
def tiny_diarize(tmp_path_factory):
    return make_diarize_checkpoint(tmp_path_factory.mktemp("diarize") / "hf", seed=0)


@pytest.fixture(scope="module")
def ref(tiny_diarize):
    return R.DiarizeReference(str(tiny_diarize))


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(t))) + 0.05 * rng.standard_normal(n)).astype(
        np.float32)


def test_full_size_layout_matches_spec():
    got = dict(diarize_checkpoint_tensors("full"))
    assert len(got) == 683 and "lm_head.weight" not in got
    want = {}
    for pat, shape in SPEC_TENSORS.items():
        n = 24 if "whisper_encoder.layers" in pat else 28 if "language_model.layers" in pat else 1
        for i in range(n):
            want[pat.replace("{N}", str(i))] = shape
    assert got == want
    cfg = diarize_checkpoint_config("full")
    assert cfg["model_type"] == "moss_transcribe_diarize" and cfg["audio_token_id"] == 151671
    assert cfg["adaptor_input_dim"] == 4096 and cfg["audio_merge_size"] == 4 and cfg["tie_word_embeddings"]
    assert cfg["audio_config"]["model_type"] == "whisper" and cfg["audio_config"]["num_mel_bins"] == 80
    assert cfg["text_config"]["rope_parameters"] == {"rope_theta": 1000000.0, "rope_type": "default"}
    assert "rope_theta" not in cfg["text_config"]  # transformers-5 form


def test_tiny_checkpoint_files(tiny_diarize):
    index = json.loads((tiny_diarize / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {"model-00000-of-00001.safetensors"}
    tensors = read_bf16_safetensors(tiny_diarize)
    assert {k: v.shape for k, v in tensors.items()} == dict(diarize_checkpoint_tensors("tiny"))
    assert all(np.isfinite(v).all() for v in tensors.values())
    proc = json.loads((tiny_diarize / "processor_config.json").read_text())
    assert proc["time_marker_every_seconds"] == 5 and proc["audio_tokens_per_second"] == 12.5
    pre = json.loads((tiny_diarize / "preprocessor_config.json").read_text())
    assert (pre["feature_size"], pre["n_samples"], pre["hop_length"], pre["n_fft"]) == (80, 480000, 160, 400)
    added = json.loads((tiny_diarize / "added_tokens.json").read_text())
    assert {added[t] for t in ("<|audio_start|>", "<|audio_end|>", "<|audio_pad|>")} == {151669, 151670, 151671}
    assert diarize_special_tokens()[151671] == "<|audio_pad|>"
    # same seed, same values; the sharded form holds the same tensors
    again = make_diarize_checkpoint(tiny_diarize.parent / "sharded", seed=0, shards=3)
    assert len(list(again.glob("model-*-of-00003.safetensors"))) == 3
    re_read = read_bf16_safetensors(again)
    assert all(np.array_equal(re_read[k], v) for k, v in tensors.items())


@pytest.mark.parametrize("n_samples, n_tokens, span", [
    (79360, [62], [P] * 62),                                                    # 4.96 s: no marker
    (80000, [63], [P] * 62 + [20] + [P]),                                       # 5 s
    (176000, [138], [P] * 62 + [20] + [P] * 62 + [16, 15] + [P] * 14),          # 11 s (jfk.wav)
    (480001, [375, 1], None),                                                   # one sample past a window
    (640000, [375, 125], None),                                                 # 40 s: two windows
])
def test_prompt_ids(n_samples, n_tokens, span):
    ids = R.prompt_ids(n_samples)
    assert R.window_token_counts(n_samples) == n_tokens
    n = sum(n_tokens)
    assert ids[:15] == SPEC_PREFIX
    assert ids[-(2 + 64 + 5):] == [151670, 198] + SPEC_INSTRUCTION + SPEC_SUFFIX
    got_span = ids[15:-(2 + 64 + 5)]
    assert got_span.count(P) == n and len(ids) == 86 + len(got_span)
    if span is not None:
        assert got_span == span
    # markers: the digits of 5, 10, 15, ... after every 62 placeholders, counted over the whole clip
    marks = re.findall(r"\d+", "".join(" " if t == P else str(t - prompts.DIGIT0) for t in got_span))
    assert marks == [str(s) for s in range(5, int(n / 12.5) + 1, 5)]
    if n_samples == 640000:
        assert len(ids) == 601 and marks[-1] == "40"


def test_hotwords_and_custom_prompt():
    base = R.prompt_ids(176000)
    hot = R.prompt_ids(176000, hotwords=["Alpha", "贝塔"])
    k = len(base) - 5
    assert hot[:k] == base[:k] and hot[-5:] == SPEC_SUFFIX
    assert hot[k:-5] == prompts.encode("热词提示：Alpha, 贝塔")  # tokenized with the instruction as one string
    assert prompts.encode("热词提示：") == [99259, 99689, 45139, 5122]
    assert R.prompt_ids(176000, prompt="   ") == base  # a blank prompt is the default one
    # the processor class's default interval (2 s) is not the released one (5 s): markers 2, 4 instead of 5
    two = R.prompt_ids(80000, every_s=2)[15:-(2 + 64 + 5)]
    assert two == [P] * 25 + [17] + [P] * 25 + [19] + [P] * 13


@pytest.mark.parametrize("seconds", [5.0, 11.0, 35.0])
def test_reference_stages(ref, seconds):
    audio = _clip(seconds, seed=int(seconds))
    out = ref.run(audio, max_new_tokens=12)
    counts = R.window_token_counts(audio.shape[0])
    w, n = len(counts), sum(counts)
    d, h = 64, 48
    mel = out["mel"]
    assert mel.shape == (w, 80, 3000) and np.isfinite(mel).all()
    # per-window log-mel: the padded tail of the last window sits at its own floor, (max - 8 + 4) / 4
    last = mel[-1]
    frames = (audio.shape[0] - (w - 1) * R.WINDOW) // 160
    assert np.allclose(last[:, frames + 2:], last.max() - 2.0, atol=1e-5)
    assert out["enc.windows"].shape == (w, 1500, d)
    kept = out["enc.kept"]
    assert kept.shape == (4 * n, d)
    assert np.array_equal(kept[:4 * counts[0]], out["enc.windows"][0, :4 * counts[0]])
    merged = out["merged"]
    assert merged.shape == (n, 4 * d)
    assert np.array_equal(merged[1], kept[4:8].reshape(-1))  # frame 4j first
    assert out["adaptor"].shape == (n, h)
    ids = out["prompt_ids"]
    emb = out["llm.embeds"]
    pads = np.array(ids) == P
    assert pads.sum() == n and np.array_equal(emb[pads], out["adaptor"])
    table = ref.lm.embed_tokens.weight.detach().numpy()
    assert np.array_equal(emb[~pads], table[np.array(ids)[~pads]])  # markers keep their text embeddings
    assert out["logits"].shape == (151936,) and np.isfinite(out["logits"]).all()
    assert 1 <= len(out["tokens"]) <= 12
    # the cached and the uncached decode agree
    assert ref.run(audio, max_new_tokens=6, use_cache=False)["tokens"] == out["tokens"][:6]
    # whatever the random model writes goes through both parsers alike, and never raises
    assert [(s.start, s.end, s.speaker, s.text) for s in parse_diarized(out["text"])] == \
        parse_transcript_ref(out["text"])


def test_windows_are_featurized_alone(ref):
    """The second window of a 35 s clip has the same mel as its 5 s of audio on their own (no STFT context from
    the first window, its own -8 clamp)."""
    audio = _clip(35.0, seed=3)
    both = ref.mel(audio)
    tail = ref.mel(audio[R.WINDOW:])
    assert np.array_equal(both[1], tail[0])


def test_generated_string_round_trip():
    """A well-formed output as token ids (digits single tokens; "][" one token, 1457, between a time and a label;
    "[S" one token, 42474, only where the bracket starts a pre-token), decoded with special tokens skipped and
    stripped as the official code does, parses to its segments."""
    text = "[0.48][S01] Welcome everyone[1.66][12.26][S02]欢迎大家[13.81]"
    ids = prompts.encode(text) + [prompts.IM_END]
    assert ids[:10] == [58, 15, 13, 19, 23, 1457, 50, 15, 16, 60]  # [ 0 . 4 8 ][ S 0 1 ]
    assert prompts.encode("[S01]")[0] == 42474
    decoded = prompts.decode([t for t in ids if t not in R.STOP_IDS]).strip()
    assert decoded == text
    segs = parse_diarized(decoded)
    assert [(s.start, s.end, s.speaker, s.text) for s in segs] == [
        (0.48, 1.66, "S01", "Welcome everyone"), (12.26, 13.81, "S02", "欢迎大家")]
