"""The C++ loader reads back exactly what the checkpoint holds, and `crispmoss info` agrees with config.json.

The HF → GGUF names here are written from the spec's rename lists independently of the converter's table.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import crispmoss
from crispmoss.info import describe
from crispmoss.testing import read_bf16_safetensors

RENAMES = {
    "moss_transcribe": [
        (r"^model\.audio_model\.conv2d(\d)\.", r"enc.conv\1."),
        (r"^model\.audio_model\.layers\.(\d+)\.", r"enc.blk.\1."),
        (r"^model\.audio_model\.", "enc."),
        (r"^model\.audio_adapter\.(gate|up|down)_proj\.", r"adapter.\1."),
        (r"^model\.language_model\.embed_tokens\.", "llm.embed."),
        (r"^model\.language_model\.norm\.", "llm.final_norm."),
        (r"^model\.language_model\.layers\.(\d+)\.", r"llm.blk.\1."),
    ],
    "moss_audio": [
        (r"^audio_encoder\.layers\.(\d+)\.", r"enc.blk.\1."),
        (r"^audio_encoder\.layer_norm\.", "enc.norm."),
        (r"^audio_encoder\.", "enc."),
        (r"^audio_adapter\.(gate|up|down)_proj\.", r"adapter.\1."),
        (r"^deepstack_audio_merger_list\.(\d+)\.(gate|up|down)_proj\.", r"deepstack.\1.\2."),
        (r"^language_model\.embed_tokens\.", "llm.embed."),
        (r"^language_model\.norm\.", "llm.final_norm."),
        (r"^language_model\.layers\.(\d+)\.", r"llm.blk.\1."),
        (r"^lm_head\.", "llm.lm_head."),
    ],
}
PARTS = [("self_attn_layer_norm.", "attn_norm."), ("final_layer_norm.", "ffn_norm."),
         ("input_layernorm.", "attn_norm."), ("post_attention_layernorm.", "ffn_norm."),
         ("self_attn.out_proj.", "attn.o."), ("self_attn.q_norm.", "attn.q_norm."),
         ("self_attn.k_norm.", "attn.k_norm."), ("mlp.gate_proj.", "ffn.gate."), ("mlp.up_proj.", "ffn.up."),
         ("mlp.down_proj.", "ffn.down."), ("fc1.", "ffn.fc1."), ("fc2.", "ffn.fc2.")]


def gguf_name(arch: str, hf: str) -> str:
    for pat, rep in RENAMES[arch]:
        new = re.sub(pat, rep, hf)
        if new != hf:
            hf = new
            break
    for a, b in PARTS:
        hf = hf.replace(a, b)
    return re.sub(r"self_attn\.([qkvo])_proj\.", r"attn.\1.", hf)


@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_every_tensor_reads_back(tiny_models, arch, outtype):
    hf_dir = tiny_models.hf(arch)
    model = crispmoss.Model(tiny_models.gguf(arch, outtype=outtype))
    names = {t[0] for t in model._core.describe()["tensors"]}
    source = read_bf16_safetensors(hf_dir)
    for hf, want in source.items():
        name = gguf_name(arch, hf)
        assert name in names, f"{hf} → {name} missing from the GGUF"
        got = model._core.tensor_data(name)
        assert got.shape == want.shape, name
        if outtype == "f32" or want.ndim == 1:
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32), err_msg=name)
    # Only the two computed audio.* tensors come on top of the checkpoint's own.
    assert names - {gguf_name(arch, h) for h in source} == {"audio.mel_filters", "audio.mel_window"}


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
def test_info_agrees_with_config(tiny_models, arch):
    cfg = _flatten(json.loads((tiny_models.hf(arch) / "config.json").read_text()))
    info = describe(tiny_models.gguf(arch, outtype="f16"))
    hp = info["hparams"]
    assert info["architecture"] == arch
    lang = "language_config."
    assert hp["llm.hidden_size"] == cfg[lang + "hidden_size"]
    assert hp["llm.num_layers"] == cfg[lang + "num_hidden_layers"]
    assert hp["llm.num_heads"] == cfg[lang + "num_attention_heads"]
    assert hp["llm.num_kv_heads"] == cfg[lang + "num_key_value_heads"]
    assert hp["llm.head_dim"] == cfg[lang + "head_dim"]
    assert hp["llm.intermediate_size"] == cfg[lang + "intermediate_size"]
    assert hp["llm.vocab_size"] == cfg[lang + "vocab_size"] == 151936
    assert hp["llm.rope_theta"] == pytest.approx(cfg[lang + "rope_theta"])
    assert hp["llm.rms_norm_eps"] == pytest.approx(cfg[lang + "rms_norm_eps"])
    assert hp["enc.d_model"] == cfg["audio_config.d_model"]
    assert hp["enc.encoder_layers"] == cfg["audio_config.encoder_layers"]
    assert hp["enc.encoder_attention_heads"] == cfg["audio_config.encoder_attention_heads"]
    assert hp["enc.encoder_ffn_dim"] == cfg["audio_config.encoder_ffn_dim"]
    assert hp["enc.downsample_hidden_size"] == cfg["audio_config.downsample_hidden_size"]
    assert hp["adapter.hidden_size"] == cfg["adapter_hidden_size"]
    if arch == "moss_audio":
        taps = cfg["audio_config.deepstack_encoder_layer_indexes"]
        assert [hp[f"deepstack.tap.{i}"] for i in range(len(taps))] == taps
        assert hp["deepstack.num_inject_layers"] == cfg["deepstack_num_inject_layers"]
    else:
        assert hp["enc.output_dim"] == cfg["audio_config.output_dim"]
        assert hp["enc.n_window"] == cfg["audio_config.n_window"]
    n_tensors = len(read_bf16_safetensors(tiny_models.hf(arch))) + 2  # + audio.mel_filters, audio.mel_window
    assert info["n_tensors"] == n_tensors
    assert info["file_size"] == tiny_models.gguf(arch, outtype="f16").stat().st_size
