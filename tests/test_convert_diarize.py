"""MOSS-Transcribe-Diarize: official HF layout -> GGUF in the schema of the published files
(cstr/MOSS-Transcribe-Diarize-GGUF; shared/spec/moss-transcribe-diarize.md section 10, CrispASR's converter @ 72d3c389).

The schema below is written from the spec, apart from the converter's table, and every tensor's name, ne, type and
values and every key are checked against it. The C++ runtime does not load this architecture yet
(``crispmoss.Model`` rejects it); ``crispmoss info`` describes it.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from crispmoss import ModelError
from crispmoss.convert import convert
from crispmoss.convert.tables import ARCH_SPECS
from crispmoss.info import describe
from crispmoss.testing import make_diarize_checkpoint, qwen_vocab_and_merges, read_bf16_safetensors, read_gguf

F32, F16 = 0, 1
P = "moss_diarize."

# spec 10.1: key -> type
SPEC_KEYS = {
    "general.architecture": "str", "general.name": "str",
    **{P + k: "u32" for k in ("enc.n_layers", "enc.d_model", "enc.n_heads", "enc.n_mels", "enc.ffn_dim", "enc.max_pos",
                              "adaptor.in_dim", "adaptor.out_dim", "llm.n_layers", "llm.dim", "llm.n_heads",
                              "llm.n_kv_heads", "llm.head_dim", "llm.ff_dim", "llm.vocab_size", "audio_token_id",
                              "time_marker_every_seconds", "audio_merge_size")},
    P + "llm.tied_embeddings": "bool", P + "llm.rope_theta": "f32", P + "llm.rms_eps": "f32",
    P + "audio_tokens_per_second": "f32",
    "tokenizer.ggml.model": "str", "tokenizer.ggml.tokens": "arr[str]", "tokenizer.ggml.merges": "arr[str]",
}


def schema(d):
    enc, lm = "model.whisper_encoder.", "model.language_model."
    D, H, M, q, kv, hd = d["D"], d["H"], d["M"], d["q"], d["kv"], d["hd"]
    t = {"audio.mel_filters": (None, (M, 201)), "audio.mel_window": (None, (400,)),
         "enc.conv1.weight": (enc + "conv1.weight", (3, M, D)), "enc.conv1.bias": (enc + "conv1.bias", (D,)),
         "enc.conv2.weight": (enc + "conv2.weight", (3, D, D)), "enc.conv2.bias": (enc + "conv2.bias", (D,)),
         "enc.pos_embed.weight": (enc + "embed_positions.weight", (D, 1500))}
    for n in range(d["E"]):
        b, h = f"enc.blk.{n}.", f"{enc}layers.{n}."
        t.update({b + "attn_norm.weight": (h + "self_attn_layer_norm.weight", (D,)),
                  b + "attn_norm.bias": (h + "self_attn_layer_norm.bias", (D,)),
                  b + "attn_k.weight": (h + "self_attn.k_proj.weight", (D, D)),
                  b + "ffn_norm.weight": (h + "final_layer_norm.weight", (D,)),
                  b + "ffn_norm.bias": (h + "final_layer_norm.bias", (D,)),
                  b + "ffn_up.weight": (h + "fc1.weight", (D, d["EF"])), b + "ffn_up.bias": (h + "fc1.bias", (d["EF"],)),
                  b + "ffn_down.weight": (h + "fc2.weight", (d["EF"], D)), b + "ffn_down.bias": (h + "fc2.bias", (D,))})
        for g, hf in (("attn_q", "q_proj"), ("attn_v", "v_proj"), ("attn_out", "out_proj")):
            t[b + g + ".weight"] = (h + f"self_attn.{hf}.weight", (D, D))
            t[b + g + ".bias"] = (h + f"self_attn.{hf}.bias", (D,))
    t.update({"enc.ln_post.weight": (enc + "layer_norm.weight", (D,)),
              "enc.ln_post.bias": (enc + "layer_norm.bias", (D,)),
              "adaptor.fc1.weight": ("model.vq_adaptor.layers.0.weight", (4 * D, H)),
              "adaptor.fc1.bias": ("model.vq_adaptor.layers.0.bias", (H,)),
              "adaptor.fc2.weight": ("model.vq_adaptor.layers.2.weight", (H, H)),
              "adaptor.fc2.bias": ("model.vq_adaptor.layers.2.bias", (H,)),
              "adaptor.norm.weight": ("model.vq_adaptor.layers.3.weight", (H,)),
              "adaptor.norm.bias": ("model.vq_adaptor.layers.3.bias", (H,)),
              "token_embd.weight": (lm + "embed_tokens.weight", (H, 151936)),
              "output_norm.weight": (lm + "norm.weight", (H,))})
    for n in range(d["L"]):
        b, h = f"blk.{n}.", f"{lm}layers.{n}."
        t.update({b + "attn_norm.weight": (h + "input_layernorm.weight", (H,)),
                  b + "ffn_norm.weight": (h + "post_attention_layernorm.weight", (H,)),
                  b + "attn_q.weight": (h + "self_attn.q_proj.weight", (H, q)),
                  b + "attn_k.weight": (h + "self_attn.k_proj.weight", (H, kv)),
                  b + "attn_v.weight": (h + "self_attn.v_proj.weight", (H, kv)),
                  b + "attn_o.weight": (h + "self_attn.o_proj.weight", (q, H)),
                  b + "q_norm.weight": (h + "self_attn.q_norm.weight", (hd,)),
                  b + "k_norm.weight": (h + "self_attn.k_norm.weight", (hd,)),
                  b + "ffn_gate.weight": (h + "mlp.gate_proj.weight", (H, d["F"])),
                  b + "ffn_up.weight": (h + "mlp.up_proj.weight", (H, d["F"])),
                  b + "ffn_down.weight": (h + "mlp.down_proj.weight", (d["F"], H))})
    assert len(t) == 2 + 7 + d["E"] * 15 + 6 + 2 + d["L"] * 11
    return t


TINY = dict(E=2, L=2, M=80, D=64, H=48, F=96, EF=128, q=64, kv=32, hd=16)
FULL = dict(E=24, L=28, M=80, D=1024, H=1024, F=3072, EF=4096, q=2048, kv=1024, hd=128)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return make_diarize_checkpoint(tmp_path_factory.mktemp("dz") / "hf", seed=1)


@pytest.fixture(scope="module")
def gguf_f16(hf):
    return convert(hf, hf.parent / "dz-f16.gguf", outtype="f16", progress=False)


def test_f16_file_matches_published_schema(hf, gguf_f16):
    g = read_gguf(gguf_f16)
    assert g.kv_types == SPEC_KEYS  # exactly the published keys, nothing else
    cfg = json.loads((hf / "config.json").read_text())
    tc, ac = cfg["text_config"], cfg["audio_config"]
    want = {"general.architecture": "moss_transcribe_diarize", "general.name": "MOSS-Transcribe-Diarize-0.9B",
            P + "enc.n_layers": ac["encoder_layers"], P + "enc.d_model": ac["d_model"],
            P + "enc.n_heads": ac["encoder_attention_heads"], P + "enc.n_mels": 80,
            P + "enc.ffn_dim": ac["encoder_ffn_dim"], P + "enc.max_pos": 1500,
            P + "adaptor.in_dim": cfg["adaptor_input_dim"], P + "adaptor.out_dim": tc["hidden_size"],
            P + "llm.n_layers": tc["num_hidden_layers"], P + "llm.dim": tc["hidden_size"],
            P + "llm.n_heads": tc["num_attention_heads"], P + "llm.n_kv_heads": tc["num_key_value_heads"],
            P + "llm.head_dim": tc["head_dim"], P + "llm.ff_dim": tc["intermediate_size"],
            P + "llm.vocab_size": 151936, P + "llm.tied_embeddings": True, P + "llm.rope_theta": 1e6,
            P + "audio_token_id": 151671, P + "time_marker_every_seconds": 5, P + "audio_tokens_per_second": 12.5,
            P + "audio_merge_size": 4, "tokenizer.ggml.model": "gpt2"}
    for k, v in want.items():
        assert g.kv[k] == pytest.approx(v) if isinstance(v, float) else g.kv[k] == v, k
    assert g.kv[P + "llm.rms_eps"] == pytest.approx(1e-6)
    tokens = g.kv["tokenizer.ggml.tokens"]
    assert len(tokens) == 151936 and tokens[151669:151672] == ["<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
    assert tokens[151672] == "[PAD151672]" and tokens[15] == "0"
    assert g.kv["tokenizer.ggml.merges"] == list(qwen_vocab_and_merges()[1])  # '#' merges kept

    sch = schema(TINY)
    assert list(g.tensors)[:2] == ["audio.mel_filters", "audio.mel_window"]
    assert set(g.tensors) == set(sch) and "output.weight" not in g.tensors
    ref = read_bf16_safetensors(hf)
    for name, t in g.tensors.items():
        src, ne = sch[name]
        assert t.ne == ne, name
        # converter rule: weights with >= 2 dims F16, the rest and the baked audio.* tables F32
        assert t.ggml_type == (F16 if len(ne) >= 2 and src is not None else F32), name
        if src is not None:
            assert np.array_equal(np.asarray(t.data, dtype=np.float32), ref[src].astype(np.float16).astype(np.float32)), name
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400)
    assert np.allclose(g.tensors["audio.mel_filters"].data, fe.mel_filters, atol=1e-7)
    i = np.arange(400)
    assert np.allclose(g.tensors["audio.mel_window"].data, 0.5 - 0.5 * np.cos(2 * np.pi * i / 400), atol=1e-7)


def test_f32_values_exact_and_info(hf, gguf_f16):
    g = read_gguf(convert(hf, hf.parent / "dz-f32.gguf", outtype="f32", progress=False))
    ref = read_bf16_safetensors(hf)
    for name, (src, ne) in schema(TINY).items():
        assert g.tensors[name].ggml_type == F32
        if src is not None:
            assert np.array_equal(g.tensors[name].data, ref[src]), name
    info = describe(gguf_f16)
    assert info["architecture"] == "moss_transcribe_diarize" and info["n_tensors"] == len(schema(TINY))
    assert info["hparams"]["llm.n_layers"] == 2 and info["hparams"]["time_marker_every_seconds"] == 5


def test_runtime_loads_it(gguf_f16):
    import crispmoss

    with crispmoss.Model(gguf_f16, n_threads=1) as m:
        assert m.arch == "moss_transcribe_diarize"
        assert m.spec["name"] == "MOSS-Transcribe-Diarize" and m.spec["timed_output"] == "diarized"
        assert m.spec["hotwords"] is True


def _variant(hf, tmp_path, edit_cfg=None, edit_proc=None, drop=None):
    d = tmp_path / "v"
    shutil.copytree(hf, d)
    if edit_cfg:
        cfg = json.loads((d / "config.json").read_text())
        edit_cfg(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
    if edit_proc is not None:
        if edit_proc == "delete":
            (d / "processor_config.json").unlink()
        else:
            proc = json.loads((d / "processor_config.json").read_text())
            proc.update(edit_proc)
            (d / "processor_config.json").write_text(json.dumps(proc))
    return d


@pytest.mark.parametrize("proc, every", [("delete", 5), ({"time_marker_every_seconds": 2}, 2),
                                         ({"enable_time_marker": False}, 0)])
def test_time_marker_key(hf, tmp_path, proc, every):
    d = _variant(hf, tmp_path, edit_proc=proc)
    g = read_gguf(convert(d, tmp_path / "o.gguf", progress=False), load_data=False)
    assert g.kv[P + "time_marker_every_seconds"] == every


def test_rope_and_derived_keys(hf, tmp_path):
    def edit(cfg):
        cfg["text_config"]["rope_parameters"]["rope_theta"] = 5e5
        del cfg["adaptor_input_dim"]  # derived: d_model x audio_merge_size

    g = read_gguf(convert(_variant(hf, tmp_path, edit), tmp_path / "o.gguf", progress=False), load_data=False)
    assert g.kv[P + "llm.rope_theta"] == 5e5 and g.kv[P + "adaptor.in_dim"] == 256


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.update(adaptor_input_dim=128), "adaptor_input_dim"),
    (lambda c: c["audio_config"].update(max_source_positions=750), "max_source_positions"),
    (lambda c: c["text_config"].update(hidden_size=64), "shape disagrees"),
    (lambda c: c["audio_config"].update(encoder_layers=3), "missing"),
])
def test_bad_checkpoints(hf, tmp_path, edit, match):
    with pytest.raises(ModelError, match=match):
        convert(_variant(hf, tmp_path, edit), tmp_path / "o.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()


def test_quantizer_keep_rule_at_full_size():
    """The keep-F16 rule (enc.*, adaptor.*, token_embd.weight) leaves the 7 decoder matrices x 28 layers."""
    spec = ARCH_SPECS["moss_transcribe_diarize"]
    quantized = [n for n, (_, ne) in schema(FULL).items()
                 if len(ne) == 2 and n.endswith(".weight") and "norm" not in n and not n.startswith("audio.")
                 and not n.startswith(spec.quant_keep_prefixes) and n not in spec.quant_keep_names]
    assert len(quantized) == 196 and all(n.startswith("blk.") for n in quantized)
    assert all(schema(FULL)[n][1][0] % 256 == 0 for n in quantized)  # Q4_K/Q8_0 rows: 256-multiples
