"""Sanity checks of the PyTorch references themselves (tests/reference/), on tiny random checkpoints."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

torch = pytest.importorskip("torch")

from reference import log_mel, prompts  # noqa: E402
from reference.moss_audio_ref import AudioReference, sinusoids  # noqa: E402
from reference.moss_transcribe_ref import TranscribeReference  # noqa: E402
from shared_paths import JFK as JFK_PATH

SR = 16000
JFK = str(JFK_PATH)


# ---- tiny checkpoints ----------------------------------------------------------------------------
# Written by crispmoss.testing.make_tiny_checkpoint when it exists; until then by the fallback below,
# which follows /work/shared/spec/hf-checkpoints.md (same keys, same tensor names, bf16, tiny sizes).

def _lang_config(hidden, layers, heads, kv, head_dim, inter, tied):
    return {
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "dtype": "bfloat16", "head_dim": head_dim,
        "hidden_act": "silu", "hidden_size": hidden, "initializer_range": 0.02,
        "intermediate_size": inter, "layer_types": ["full_attention"] * layers,
        "max_position_embeddings": 40960, "max_window_layers": layers, "model_type": "qwen3",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv,
        "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": None,
        "tie_word_embeddings": tied, "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
    }


def _lm_tensors(prefix, c, g):
    h, hd, nh, kv, ff = c["hidden_size"], c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"]
    t = {f"{prefix}embed_tokens.weight": g((151936, h), 1.0), f"{prefix}norm.weight": g((h,), 0.1, 1.0)}
    for i in range(c["num_hidden_layers"]):
        p = f"{prefix}layers.{i}."
        t.update({
            p + "input_layernorm.weight": g((h,), 0.1, 1.0), p + "post_attention_layernorm.weight": g((h,), 0.1, 1.0),
            p + "self_attn.q_proj.weight": g((nh * hd, h)), p + "self_attn.k_proj.weight": g((kv * hd, h)),
            p + "self_attn.v_proj.weight": g((kv * hd, h)), p + "self_attn.o_proj.weight": g((h, nh * hd)),
            p + "self_attn.q_norm.weight": g((hd,), 0.1, 1.0), p + "self_attn.k_norm.weight": g((hd,), 0.1, 1.0),
            p + "mlp.gate_proj.weight": g((ff, h)), p + "mlp.up_proj.weight": g((ff, h)), p + "mlp.down_proj.weight": g((h, ff)),
        })
    return t


def _gen(seed):
    gen = torch.Generator().manual_seed(seed)

    def g(shape, std=None, mean=0.0):
        fan_in = shape[-1] if len(shape) > 1 else 1
        s = std if std is not None else 1.0 / np.sqrt(fan_in * (9 if len(shape) == 4 else 1))
        return (torch.randn(shape, generator=gen) * s + mean).to(torch.bfloat16)

    return g


def _write(out_dir, config, tensors, shards):
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    names = sorted(tensors)
    if shards == 1:
        save_file({k: tensors[k].contiguous() for k in names}, os.path.join(out_dir, "model.safetensors"))
        return
    wmap = {}
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        save_file({k: tensors[k].contiguous() for k in part}, os.path.join(out_dir, fn))
        wmap.update({k: fn for k in part})
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wmap}, f)


def _local_transcribe_checkpoint(out_dir, seed, shards=2):
    g = _gen(seed)
    lang = _lang_config(48, 2, 4, 2, 16, 96, True)
    audio = {"activation_dropout": 0.0, "activation_function": "gelu", "attention_dropout": 0.0, "conv_chunksize": 500,
             "d_model": 64, "downsample_hidden_size": 32, "dropout": 0.0, "encoder_attention_heads": 4,
             "encoder_ffn_dim": 128, "encoder_layers": 2, "initializer_range": 0.02, "max_source_positions": 1500,
             "model_type": "qwen3_omni_moe_audio_encoder", "n_window": 50, "n_window_infer": 800,
             "num_hidden_layers": 2, "num_mel_bins": 128, "output_dim": 96, "scale_embedding": False}
    config = dict(lang, adapter_hidden_size=128, architectures=["MossForCausalLM"], audio_config=audio,
                  language_config=lang, ignore_index=-100, model_type="moss", transformers_version="4.57.1")
    d, ch, ff = 64, 32, 128
    a = "model.audio_model."
    t = {a + "conv2d1.weight": g((ch, 1, 3, 3)), a + "conv2d1.bias": g((ch,), 0.1),
         a + "conv2d2.weight": g((ch, ch, 3, 3)), a + "conv2d2.bias": g((ch,), 0.1),
         a + "conv2d3.weight": g((ch, ch, 3, 3)), a + "conv2d3.bias": g((ch,), 0.1),
         a + "conv_out.weight": g((d, ch * 16)), a + "ln_post.weight": g((d,), 0.1, 1.0), a + "ln_post.bias": g((d,), 0.1),
         a + "proj1.weight": g((d, d)), a + "proj1.bias": g((d,), 0.1), a + "proj2.weight": g((96, d)), a + "proj2.bias": g((96,), 0.1),
         "model.audio_adapter.gate_proj.weight": g((128, 96)), "model.audio_adapter.up_proj.weight": g((128, 96)),
         "model.audio_adapter.down_proj.weight": g((48, 128))}
    for i in range(2):
        p = f"{a}layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[p + f"self_attn.{n}.weight"] = g((d, d))
            t[p + f"self_attn.{n}.bias"] = g((d,), 0.1)
        for n in ("self_attn_layer_norm", "final_layer_norm"):
            t[p + n + ".weight"] = g((d,), 0.1, 1.0)
            t[p + n + ".bias"] = g((d,), 0.1)
        t.update({p + "fc1.weight": g((ff, d)), p + "fc1.bias": g((ff,), 0.1),
                  p + "fc2.weight": g((d, ff)), p + "fc2.bias": g((d,), 0.1)})
    t.update(_lm_tensors("model.language_model.", lang, g))
    _write(out_dir, config, t, shards)


def _local_audio_checkpoint(out_dir, seed, shards=1):
    g = _gen(seed)
    lang = _lang_config(16, 4, 4, 2, 8, 48, False)
    audio = {"_attn_implementation": "eager", "activation_dropout": 0.0, "activation_function": "gelu",
             "attention_dropout": 0.1, "d_model": 32, "deepstack_encoder_layer_indexes": [2, 4, 6],
             "downsample_hidden_size": 8, "downsample_rate": 8, "dropout": 0.1, "encoder_attention_heads": 4,
             "encoder_attention_window_size": 100, "encoder_ffn_dim": 64, "encoder_layers": 8,
             "layer_norm_eps": 1e-5, "max_source_positions": 1500, "num_mel_bins": 128, "output_dim": 32,
             "pretrained_path": ""}
    config = {"adapter_hidden_size": 64, "architectures": ["MossAudioModel"], "audio_config": audio,
              "auto_map": {"AutoConfig": "configuration_moss_audio.MossAudioConfig",
                           "AutoProcessor": "processing_moss_audio.MossAudioProcessor"},
              "bos_token_id": 151643, "deepstack_num_inject_layers": 3, "dtype": "bfloat16", "eos_token_id": 151645,
              "ignore_index": -100, "language_config": lang, "model_type": "moss_audio", "num_hidden_layers": 4,
              "tie_word_embeddings": False, "transformers_version": "4.57.1", "vocab_size": 151936}
    d, ch, ff = 32, 8, 64
    a = "audio_encoder."
    t = {a + "conv1.weight": g((ch, 1, 3, 3)), a + "conv1.bias": g((ch,), 0.1),
         a + "conv2.weight": g((ch, ch, 3, 3)), a + "conv2.bias": g((ch,), 0.1),
         a + "conv3.weight": g((ch, ch, 3, 3)), a + "conv3.bias": g((ch,), 0.1),
         a + "stem_proj.weight": g((d, ch * 16)), a + "stem_proj.bias": g((d,), 0.1),
         a + "layer_norm.weight": g((d,), 0.1, 1.0), a + "layer_norm.bias": g((d,), 0.1),
         "lm_head.weight": g((151936, 16))}
    for m in ["audio_adapter."] + [f"deepstack_audio_merger_list.{k}." for k in range(3)]:
        t.update({m + "gate_proj.weight": g((64, d)), m + "up_proj.weight": g((64, d)), m + "down_proj.weight": g((16, 64))})
    for i in range(8):
        p = f"{a}layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[p + f"self_attn.{n}.weight"] = g((d, d))
            if n != "k_proj":
                t[p + f"self_attn.{n}.bias"] = g((d,), 0.1)
        for n in ("self_attn_layer_norm", "final_layer_norm"):
            t[p + n + ".weight"] = g((d,), 0.1, 1.0)
            t[p + n + ".bias"] = g((d,), 0.1)
        t.update({p + "fc1.weight": g((ff, d)), p + "fc1.bias": g((ff,), 0.1),
                  p + "fc2.weight": g((d, ff)), p + "fc2.bias": g((d,), 0.1)})
    t.update(_lm_tensors("language_model.", lang, g))
    _write(out_dir, config, t, shards)


def _make(arch, out_dir, seed, local):
    try:
        from crispmoss.testing import make_tiny_checkpoint  # type: ignore
    except ImportError:
        make_tiny_checkpoint = None
    if make_tiny_checkpoint is not None:
        make_tiny_checkpoint(arch, str(out_dir), seed)
    else:
        local(str(out_dir), seed)
    return str(out_dir)


@pytest.fixture(scope="module")
def tref(tmp_path_factory):
    return TranscribeReference(_make("moss_transcribe", tmp_path_factory.mktemp("mt"), 1, _local_transcribe_checkpoint))


@pytest.fixture(scope="module")
def aref(tmp_path_factory):
    return AudioReference(_make("moss_audio", tmp_path_factory.mktemp("ma"), 2, _local_audio_checkpoint))


def _signal(seconds, seed=0):
    n = int(round(seconds * SR))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.5 * t / max(seconds, 1e-3))) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


# ---- prompts -------------------------------------------------------------------------------------

def test_qwen_tokenizer_known_ids():
    assert prompts.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert prompts.encode("<|im_end|>\n<|im_start|>assistant\n") == [151645, 198, 151644, 77091, 198]
    assert prompts.encode("You are a helpful assistant.") == [2610, 525, 264, 10950, 17847, 13]
    assert prompts.encode("<|audio_bos|><|AUDIO|><|audio_eos|>") == [151669, 151654, 151670]
    assert [prompts.encode(str(d)) for d in range(10)] == [[15 + d] for d in range(10)]
    assert prompts.encode("10") == [16, 15]  # Qwen splits digits one by one
    text = "Hello  world, 2024!\n\nÜber 你好"
    assert prompts.decode(prompts.encode(text)) == text
    # the fixed MOSS-Transcribe framing is what the tokenizer gives for the same text
    assert prompts.TRANSCRIBE_PREFIX == prompts.encode("<|im_start|>user\n<|audio_start|>")
    assert prompts.TRANSCRIBE_SUFFIX == prompts.encode("<|audio_end|><|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("seconds,n_tok", [(1.0, 13), (2.0, 26), (7.3, 95), (11.0, 143), (29.9, 389)])
def test_transcribe_token_counts(seconds, n_tok):
    n = int(round(seconds * SR))
    assert prompts.transcribe_audio_tokens(prompts.mel_frames(n)) == n_tok
    ids = prompts.transcribe_prompt_ids(n)
    assert len(ids) == n_tok + 10 and ids.count(0) == n_tok


def test_transcribe_floor_division_edge():
    # T_mel a multiple of 100: no extra token for the empty tail chunk
    assert prompts.transcribe_audio_tokens(100) == 13
    assert prompts.transcribe_audio_tokens(1000) == 130
    assert prompts.transcribe_audio_tokens(1001) == 131
    assert prompts.transcribe_audio_tokens(99) == 13


def _span_layout(span):
    """Run-length view of a span: ints for runs of <|AUDIO|>, strings for marker digits."""
    out, run, digits = [], 0, ""
    for t in span:
        if t == prompts.AUDIO_PAD:
            if digits:
                out.append(digits)
                digits = ""
            run += 1
        else:
            if run:
                out.append(run)
                run = 0
            digits += str(t - 15)
    if digits:
        out.append(digits)
    if run:
        out.append(run)
    return out


@pytest.mark.parametrize("seconds,n_audio,layout", [
    (1.0, 13, [13]),
    (2.0, 25, [25, "2"]),
    (7.3, 92, [25, "2", 25, "4", 25, "6", 17]),
    (11.0, 138, [25, "2", 25, "4", 25, "6", 25, "8", 25, "10", 13]),
    (29.9, 374, sum(([25, str(s)] for s in range(2, 29, 2)), []) + [24]),
])
def test_audio_time_markers(seconds, n_audio, layout):
    n = int(round(seconds * SR))
    assert prompts.audio_tokens(n) == n_audio
    ids = prompts.audio_prompt_ids(n)
    s, e = ids.index(prompts.AUDIO_BOS), ids.index(prompts.AUDIO_EOS)
    span = ids[s + 1:e]
    assert span.count(prompts.AUDIO_PAD) == n_audio
    assert _span_layout(span) == layout
    assert prompts.audio_span_ids(n_audio, enable_time_marker=False) == [prompts.AUDIO_PAD] * n_audio


def test_audio_prompt_framing():
    ids = prompts.audio_prompt_ids(SR, "Please transcribe this audio.", enable_time_marker=False)
    head = prompts.encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    tail = prompts.encode("\nPlease transcribe this audio.<|im_end|>\n<|im_start|>assistant\n")
    assert ids == head + [151669] + [151654] * 13 + [151670] + tail
    assert tail[0] == 198 and tail[-3:] == [151644, 77091, 198]
    # a prompt that already holds a span is used as-is
    custom = "<|audio_bos|><|AUDIO|><|audio_eos|>Hi"
    assert prompts.audio_prompt_ids(SR, custom, False) == [151669] + [151654] * 13 + [151670] + prompts.encode("Hi")
    assert prompts.TIME_AWARE_INSTRUCTION.startswith("Analyze the audio")


# ---- mel ----------------------------------------------------------------------------------------

def test_mel_shape_and_bf16():
    x = _signal(1.234)
    fed, exact = log_mel(x, 128, bf16=True)
    assert fed.shape == exact.shape == (128, len(x) // 160)
    assert fed.dtype == np.float32
    rounded = torch.from_numpy(exact).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(fed, rounded)
    assert np.abs(fed - exact).max() > 0  # the rounding really happens
    fed32, _ = log_mel(x, 128, bf16=False)
    np.testing.assert_array_equal(fed32, exact)
    assert np.isfinite(exact).all()
    assert exact.min() >= exact.max() - 2.0 - 1e-6  # the max-8 clamp after (x+4)/4 scaling


def test_sinusoids_match_qwen_omni_table():
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import SinusoidsPositionEmbedding

    ref = SinusoidsPositionEmbedding(50, 64).positional_embedding
    torch.testing.assert_close(sinusoids(50, 64), ref, rtol=0, atol=1e-6)


# ---- MOSS-Transcribe reference -----------------------------------------------------------------

def test_transcribe_stages(tref):
    x = _signal(3.0)
    r = tref.run(x, max_new_tokens=8)
    T = len(x) // 160
    n_tok = prompts.transcribe_audio_tokens(T)
    assert r["mel"].shape == (128, T)
    assert r["enc.stem"].shape == (n_tok, 64)
    assert r["enc.layer0"].shape == (n_tok, 64)
    assert r["enc.out"].shape == (n_tok, 96)
    assert r["adapter"].shape == (n_tok, 48)
    assert r["prompt_ids"] == prompts.transcribe_prompt_ids(len(x))
    L = len(r["prompt_ids"])
    assert r["llm.embeds"].shape == (L, 48) and r["llm.layer1"].shape == (L, 48)
    np.testing.assert_array_equal(r["llm.embeds"][4:4 + n_tok], r["adapter"])
    assert r["logits"].shape == (151936,)
    assert 1 <= len(r["tokens"]) <= 8 and len(r["margins"]) == len(r["tokens"])
    assert int(np.argmax(r["logits"])) == r["tokens"][0]
    assert np.all(r["margins"] >= 0)
    for k, v in r.items():
        if isinstance(v, np.ndarray):
            assert np.isfinite(v).all(), k
    # ~0.2 s on an idle core; the bound leaves room for a loaded 2-core machine


@pytest.mark.parametrize("seconds", [1.0, 2.0, 7.3, 10.0, 29.9])
def test_transcribe_encoder_length_matches_formula(tref, seconds):
    x = _signal(seconds)
    out = tref.encode(tref.mel(x), capture_layers=False)
    assert out["enc.out"].shape[0] == prompts.transcribe_audio_tokens(len(x) // 160)


def test_transcribe_jfk_143(tref):
    sf = pytest.importorskip("soundfile")
    x, sr = sf.read(JFK, dtype="float32")
    assert sr == SR and len(x) == 176000
    out = tref.encode(tref.mel(x), capture_layers=False)
    assert out["enc.out"].shape[0] == 143
    assert len(tref.prompt_ids(len(x))) == 153


def test_transcribe_attention_windows(tref):
    """Window = 104 post-CNN tokens (800 mel frames): changing frames of window 2 leaves window 1 alone."""
    mel = tref.mel(_signal(10.0))  # 1000 frames -> 130 tokens, windows [0,104) and [104,130)
    base = tref.encode(mel)["enc.out"]
    assert base.shape[0] == 130
    pert = mel.copy()
    pert[:, 850:950] += np.random.default_rng(3).standard_normal((128, 100)).astype(np.float32)
    out = tref.encode(pert)["enc.out"]
    np.testing.assert_allclose(out[:104], base[:104], rtol=0, atol=1e-6)
    assert np.abs(out[104:] - base[104:]).max() > 1e-3
    # inside window 1 the attention is global: a change in chunk 0 reaches chunk 7 (token 91..103)
    pert = mel.copy()
    pert[:, 0:50] += 1.0
    out = tref.encode(pert)["enc.out"]
    assert np.abs(out[91:104] - base[91:104]).max() > 1e-4
    np.testing.assert_allclose(out[104:], base[104:], rtol=0, atol=1e-6)


def test_transcribe_conv_chunks_restart(tref):
    """The conv stem sees 100-frame chunks: a change in chunk 1 leaves the stem output of chunk 0 alone."""
    mel = tref.mel(_signal(3.0))
    base = tref.encode(mel)["enc.stem"]
    pert = mel.copy()
    pert[:, 100:110] += 1.0
    out = tref.encode(pert)["enc.stem"]
    np.testing.assert_array_equal(out[:13], base[:13])
    assert np.abs(out[13:26] - base[13:26]).max() > 1e-4


def test_transcribe_cache_equals_recompute(tref):
    x = _signal(2.0, seed=5)
    a = tref.run(x, max_new_tokens=6, use_cache=True)
    b = tref.run(x, max_new_tokens=6, use_cache=False)
    assert a["tokens"] == b["tokens"]
    np.testing.assert_allclose(a["margins"], b["margins"], rtol=1e-4, atol=1e-4)


# ---- MOSS-Audio reference ----------------------------------------------------------------------

def test_audio_stages(aref):
    x = _signal(3.0)
    r = aref.run(x, max_new_tokens=8)
    T = len(x) // 160
    n = prompts.audio_tokens(len(x))
    assert n == 38
    assert r["mel"].shape == (128, T)
    for k in ["enc.stem", "enc.layer0", "enc.tap.0", "enc.tap.1", "enc.tap.2", "enc.out"]:
        assert r[k].shape == (n, 32), k
    for k in ["adapter", "deepstack.0", "deepstack.1", "deepstack.2"]:
        assert r[k].shape == (n, 16), k
    for k, layer in enumerate([2, 4, 6]):
        np.testing.assert_array_equal(r[f"enc.tap.{k}"], r[f"enc.layer{layer}"])
    ids = r["prompt_ids"]
    assert ids == prompts.audio_prompt_ids(len(x))
    L = len(ids)
    for k in ["llm.embeds", "llm.layer0", "llm.layer1", "llm.layer2", "llm.out"]:
        assert r[k].shape == (L, 16), k
    pos = [i for i, t in enumerate(ids) if t == prompts.AUDIO_PAD]
    np.testing.assert_array_equal(r["llm.embeds"][pos], r["adapter"])
    assert r["logits"].shape == (151936,)
    assert int(np.argmax(r["logits"])) == r["tokens"][0]
    assert len(r["margins"]) == len(r["tokens"]) and np.all(r["margins"] >= 0)
    for k, v in r.items():
        if isinstance(v, np.ndarray):
            assert np.isfinite(v).all(), k
    # ~0.2 s on an idle core; the bound leaves room for a loaded 2-core machine


@pytest.mark.parametrize("seconds", [1.0, 2.0, 7.3, 11.0, 29.9])
def test_audio_encoder_length_matches_prompt(aref, seconds):
    x = _signal(seconds)
    out = aref.encode(log_mel(x)[0])
    assert out["enc.out"].shape[0] == prompts.audio_tokens(len(x))
    ids = aref.prompt_ids(len(x))
    assert ids.count(prompts.AUDIO_PAD) == out["enc.out"].shape[0]


def test_audio_encoder_attention_is_global(aref):
    mel = log_mel(_signal(10.0))[0]
    base = aref.encode(mel)["enc.out"]
    pert = mel.copy()
    pert[:, 900:1000] += 1.0
    out = aref.encode(pert)["enc.out"]
    assert np.abs(out[:10] - base[:10]).max() > 1e-4  # no windowing in MOSS-Audio


def test_audio_deepstack_only_touches_audio_positions(aref):
    x = _signal(3.0, seed=7)
    on = aref.run(x, max_new_tokens=1)
    off = aref.run(x, max_new_tokens=1, deepstack=False)
    ids = on["prompt_ids"]
    audio = np.array([t == prompts.AUDIO_PAD for t in ids])
    # layer 0: exactly +D0 at audio rows, nothing elsewhere
    np.testing.assert_array_equal(on["llm.layer0"][~audio], off["llm.layer0"][~audio])
    np.testing.assert_allclose(on["llm.layer0"][audio] - off["llm.layer0"][audio], on["deepstack.0"],
                               rtol=1e-5, atol=1e-5)
    first = int(np.argmax(audio))
    for i in range(len(aref.lm.layers)):  # causal: nothing before the first audio token moves
        np.testing.assert_array_equal(on[f"llm.layer{i}"][:first], off[f"llm.layer{i}"][:first])
    assert np.abs(on["logits"] - off["logits"]).max() > 1e-5


def test_audio_cache_equals_recompute(aref):
    x = _signal(2.5, seed=9)
    a = aref.run(x, max_new_tokens=6, use_cache=True)
    b = aref.run(x, max_new_tokens=6, use_cache=False)
    assert a["tokens"] == b["tokens"]
    np.testing.assert_allclose(a["margins"], b["margins"], rtol=1e-4, atol=1e-4)


def test_audio_token_count_mismatch_is_an_error(aref):
    x = _signal(1.0)
    bad = prompts.audio_prompt_ids(len(x) + 1600)
    with pytest.raises(ValueError, match="mismatch"):
        aref.run(x, prompt_ids=bad, max_new_tokens=1)
