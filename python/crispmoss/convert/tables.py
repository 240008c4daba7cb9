"""Per-architecture conversion tables (data, not code): GGUF hyper-parameter keys with their config.json
sources, and the HF → GGUF tensor-name map with the expected PyTorch shape of every tensor.

Shapes are written with symbolic dimensions resolved from the hyper-parameters, so a checkpoint whose tensors
disagree with its own config.json is rejected at conversion time instead of at load time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["ArchSpec", "HParam", "TensorRule", "ARCH_SPECS", "MODEL_TYPES"]

Src = Union[None, str, Tuple[str, ...]]  # config path(s) tried in order; None: the default is a fixed constant
Dim = Union[int, str]


@dataclass(frozen=True)
class HParam:
    key: str  # GGUF key without the "<arch>." prefix
    type: str  # "u32" | "f32" | "bool" | "u32[]" (one key per element: key.0, key.1, ...) | "len" (u32 length)
    src: Src
    default: object


@dataclass(frozen=True)
class TensorRule:
    hf: str  # HF name, "{N}" = layer index
    gguf: Optional[str]  # GGUF name with the same "{N}"; None = drop the tensor
    shape: Tuple[Dim, ...]  # PyTorch shape, symbols resolved from ArchSpec.dims
    repeat: Optional[str] = None  # dims key giving the number of layers "{N}" ranges over


@dataclass(frozen=True)
class ArchSpec:
    arch: str
    name: str
    hparams: Tuple[HParam, ...]
    dims: Dict[str, Union[str, Callable[[Dict[str, object]], int]]]  # symbol → hparam key, or function of them
    tensors: Tuple[TensorRule, ...]


def _lm_keys(d: int, layers: int, heads: int, kv: int, ffn: int) -> List[HParam]:
    lc = "language_config."
    return [
        HParam("llm.hidden_size", "u32", (lc + "hidden_size", "hidden_size"), d),
        HParam("llm.num_layers", "u32", (lc + "num_hidden_layers", "num_hidden_layers"), layers),
        HParam("llm.num_heads", "u32", (lc + "num_attention_heads", "num_attention_heads"), heads),
        HParam("llm.num_kv_heads", "u32", (lc + "num_key_value_heads", "num_key_value_heads"), kv),
        HParam("llm.head_dim", "u32", (lc + "head_dim", "head_dim"), 128),
        HParam("llm.intermediate_size", "u32", (lc + "intermediate_size", "intermediate_size"), ffn),
        HParam("llm.vocab_size", "u32", (lc + "vocab_size", "vocab_size"), 151936),
        HParam("llm.max_position_embeddings", "u32",
               (lc + "max_position_embeddings", "max_position_embeddings"), 40960),
        # transformers 5 moved rope_theta into rope_parameters
        HParam("llm.rope_theta", "f32", (lc + "rope_theta", lc + "rope_parameters.rope_theta", "rope_theta",
                                         "rope_parameters.rope_theta"), 1000000.0),
        HParam("llm.rms_norm_eps", "f32", (lc + "rms_norm_eps", "rms_norm_eps"), 1e-6),
    ]


def _enc_key(key: str, default: object, type_: str = "u32", *alts: str) -> HParam:
    return HParam(f"enc.{key}", type_, (f"audio_config.{key}",) + tuple(f"audio_config.{a}" for a in alts), default)


_COMMON_DIMS: Dict[str, Union[str, Callable[[Dict[str, object]], int]]] = {
    "n_mels": "enc.num_mel_bins",
    "enc_layers": "enc.encoder_layers",
    "enc_d": "enc.d_model",
    "enc_heads": "enc.encoder_attention_heads",
    "enc_ffn": "enc.encoder_ffn_dim",
    "conv_ch": "enc.downsample_hidden_size",
    "enc_out": "enc.output_dim",
    "adapter": "adapter.hidden_size",
    "lm_d": "llm.hidden_size",
    "lm_layers": "llm.num_layers",
    "lm_heads": "llm.num_heads",
    "lm_kv": "llm.num_kv_heads",
    "head_dim": "llm.head_dim",
    "lm_ffn": "llm.intermediate_size",
    "vocab": "llm.vocab_size",
    # three stride-2 convs: ceil(ceil(ceil(n/2)/2)/2) frequency rows, times the channel count
    "enc_flat": lambda h: int(h["enc.downsample_hidden_size"])
    * (((((int(h["enc.num_mel_bins"]) + 1) // 2) + 1) // 2 + 1) // 2),
    "q_dim": lambda h: int(h["llm.num_heads"]) * int(h["llm.head_dim"]),
    "kv_dim": lambda h: int(h["llm.num_kv_heads"]) * int(h["llm.head_dim"]),
}


def _layers(hf_prefix: str, gguf_prefix: str, repeat: str,
            rows: Sequence[Tuple[str, Optional[str], Tuple[Dim, ...]]]) -> List[TensorRule]:
    return [TensorRule(hf_prefix + h, None if g is None else gguf_prefix + g, s, repeat) for h, g, s in rows]


def _plain(hf_prefix: str, gguf_prefix: str,
           rows: Sequence[Tuple[str, Optional[str], Tuple[Dim, ...]]]) -> List[TensorRule]:
    return [TensorRule(hf_prefix + h, None if g is None else gguf_prefix + g, s) for h, g, s in rows]


# Whisper-style encoder layer: (HF suffix, GGUF suffix, shape)
_ENC_LAYER_HEAD = [
    ("self_attn_layer_norm.weight", "attn_norm.weight", ("enc_d",)),
    ("self_attn_layer_norm.bias", "attn_norm.bias", ("enc_d",)),
    ("self_attn.q_proj.weight", "attn.q.weight", ("enc_d", "enc_d")),
    ("self_attn.q_proj.bias", "attn.q.bias", ("enc_d",)),
    ("self_attn.k_proj.weight", "attn.k.weight", ("enc_d", "enc_d")),
]
_ENC_K_BIAS = [("self_attn.k_proj.bias", "attn.k.bias", ("enc_d",))]
_ENC_LAYER_TAIL = [
    ("self_attn.v_proj.weight", "attn.v.weight", ("enc_d", "enc_d")),
    ("self_attn.v_proj.bias", "attn.v.bias", ("enc_d",)),
    ("self_attn.out_proj.weight", "attn.o.weight", ("enc_d", "enc_d")),
    ("self_attn.out_proj.bias", "attn.o.bias", ("enc_d",)),
    ("final_layer_norm.weight", "ffn_norm.weight", ("enc_d",)),
    ("final_layer_norm.bias", "ffn_norm.bias", ("enc_d",)),
    ("fc1.weight", "ffn.fc1.weight", ("enc_ffn", "enc_d")),
    ("fc1.bias", "ffn.fc1.bias", ("enc_ffn",)),
    ("fc2.weight", "ffn.fc2.weight", ("enc_d", "enc_ffn")),
    ("fc2.bias", "ffn.fc2.bias", ("enc_d",)),
]

_LM_LAYER = [
    ("input_layernorm.weight", "attn_norm.weight", ("lm_d",)),
    ("self_attn.q_proj.weight", "attn.q.weight", ("q_dim", "lm_d")),
    ("self_attn.k_proj.weight", "attn.k.weight", ("kv_dim", "lm_d")),
    ("self_attn.v_proj.weight", "attn.v.weight", ("kv_dim", "lm_d")),
    ("self_attn.o_proj.weight", "attn.o.weight", ("lm_d", "q_dim")),
    ("self_attn.q_norm.weight", "attn.q_norm.weight", ("head_dim",)),
    ("self_attn.k_norm.weight", "attn.k_norm.weight", ("head_dim",)),
    ("post_attention_layernorm.weight", "ffn_norm.weight", ("lm_d",)),
    ("mlp.gate_proj.weight", "ffn.gate.weight", ("lm_ffn", "lm_d")),
    ("mlp.up_proj.weight", "ffn.up.weight", ("lm_ffn", "lm_d")),
    ("mlp.down_proj.weight", "ffn.down.weight", ("lm_d", "lm_ffn")),
]


def _conv_stem(names: Sequence[str]) -> List[Tuple[str, str, Tuple[Dim, ...]]]:
    rows: List[Tuple[str, str, Tuple[Dim, ...]]] = []
    for i, hf in enumerate(names, 1):
        cin: Dim = 1 if i == 1 else "conv_ch"
        rows += [(f"{hf}.weight", f"conv{i}.weight", ("conv_ch", cin, 3, 3)), (f"{hf}.bias", f"conv{i}.bias", ("conv_ch",))]
    return rows


def _gated_mlp(d_in: str) -> List[Tuple[str, str, Tuple[Dim, ...]]]:
    return [
        ("gate_proj.weight", "gate.weight", ("adapter", d_in)),
        ("up_proj.weight", "up.weight", ("adapter", d_in)),
        ("down_proj.weight", "down.weight", ("lm_d", "adapter")),
    ]


# Checkpoint-independent buffers some exporters include; they carry no weights.
_DROP_ANY = [TensorRule("{P}.rotary_emb.inv_freq", None, ())]

MOSS_TRANSCRIBE = ArchSpec(
    arch="moss_transcribe",
    name="MOSS-Transcribe-preview-2B",
    hparams=(
        _enc_key("num_mel_bins", 128),
        _enc_key("encoder_layers", 32, "u32", "num_hidden_layers"),
        _enc_key("d_model", 1280),
        _enc_key("encoder_attention_heads", 20),
        _enc_key("encoder_ffn_dim", 5120),
        _enc_key("downsample_hidden_size", 480),
        _enc_key("max_source_positions", 1500),
        _enc_key("n_window", 50),
        _enc_key("n_window_infer", 800),
        _enc_key("output_dim", 2048),
        _enc_key("layer_norm_eps", 1e-5, "f32"),
        HParam("adapter.hidden_size", "u32", "adapter_hidden_size", 8192),
        *_lm_keys(2048, 28, 16, 8, 6144),
        HParam("llm.tied_embeddings", "bool", ("language_config.tie_word_embeddings", "tie_word_embeddings"), True),
        HParam("bos_token_id", "u32", ("bos_token_id", "language_config.bos_token_id"), 151643),
        HParam("eos_token_id", "u32", ("eos_token_id", "language_config.eos_token_id"), 151645),
        HParam("start_token_id", "u32", None, 151644),
        HParam("audio_start_id", "u32", None, 151669),
        HParam("audio_end_id", "u32", None, 151670),
    ),
    dims=dict(_COMMON_DIMS),
    tensors=tuple(
        _plain("model.audio_model.", "enc.", _conv_stem(["conv2d1", "conv2d2", "conv2d3"]))
        + _plain("model.audio_model.", "enc.", [("conv_out.weight", "conv_out.weight", ("enc_d", "enc_flat"))])
        + _layers("model.audio_model.layers.{N}.", "enc.blk.{N}.", "enc_layers",
                  _ENC_LAYER_HEAD + _ENC_K_BIAS + _ENC_LAYER_TAIL)
        + _plain("model.audio_model.", "enc.", [
            ("ln_post.weight", "ln_post.weight", ("enc_d",)),
            ("ln_post.bias", "ln_post.bias", ("enc_d",)),
            ("proj1.weight", "proj1.weight", ("enc_d", "enc_d")),
            ("proj1.bias", "proj1.bias", ("enc_d",)),
            ("proj2.weight", "proj2.weight", ("enc_out", "enc_d")),
            ("proj2.bias", "proj2.bias", ("enc_out",)),
        ])
        + _plain("model.audio_adapter.", "adapter.", _gated_mlp("enc_out"))
        + _plain("model.language_model.", "llm.", [("embed_tokens.weight", "embed.weight", ("vocab", "lm_d"))])
        + _layers("model.language_model.layers.{N}.", "llm.blk.{N}.", "lm_layers", _LM_LAYER)
        + _plain("model.language_model.", "llm.", [("norm.weight", "final_norm.weight", ("lm_d",))])
        # the output head is tied to llm.embed; the runtime uses the embedding when no head tensor exists
        + [TensorRule("lm_head.weight", None, ("vocab", "lm_d"))]
        + _DROP_ANY
    ),
)

MOSS_AUDIO = ArchSpec(
    arch="moss_audio",
    name="MOSS-Audio-4B-Instruct",
    hparams=(
        _enc_key("num_mel_bins", 128),
        _enc_key("encoder_layers", 32, "u32", "num_hidden_layers"),
        _enc_key("d_model", 1280),
        _enc_key("encoder_attention_heads", 20),
        _enc_key("encoder_ffn_dim", 5120),
        _enc_key("downsample_rate", 8),
        _enc_key("downsample_hidden_size", 480),
        _enc_key("max_source_positions", 1500),
        _enc_key("encoder_attention_window_size", 100),
        _enc_key("output_dim", 1280),
        _enc_key("layer_norm_eps", 1e-5, "f32"),
        HParam("deepstack.num_taps", "len", "audio_config.deepstack_encoder_layer_indexes", (8, 16, 24)),
        HParam("deepstack.tap", "u32[]", "audio_config.deepstack_encoder_layer_indexes", (8, 16, 24)),
        HParam("deepstack.num_inject_layers", "u32", "deepstack_num_inject_layers", None),  # None: = num_taps
        HParam("adapter.hidden_size", "u32", "adapter_hidden_size", 8192),
        *_lm_keys(2560, 36, 32, 8, 9728),
        HParam("bos_token_id", "u32", ("bos_token_id", "language_config.bos_token_id"), 151643),
        HParam("eos_token_id", "u32", ("eos_token_id", "language_config.eos_token_id"), 151645),
        HParam("audio_token_id", "u32", None, 151654),
        HParam("audio_start_id", "u32", None, 151669),
        HParam("audio_end_id", "u32", None, 151670),
    ),
    dims={
        **_COMMON_DIMS,
        # one merger per injected LM layer, at most one per tap
        "ds_layers": lambda h: min(int(h["deepstack.num_taps"]), int(h["deepstack.num_inject_layers"])),
    },
    tensors=tuple(
        _plain("audio_encoder.", "enc.", _conv_stem(["conv1", "conv2", "conv3"]))
        + _plain("audio_encoder.", "enc.", [
            ("stem_proj.weight", "stem_proj.weight", ("enc_d", "enc_flat")),
            ("stem_proj.bias", "stem_proj.bias", ("enc_d",)),
        ])
        + _layers("audio_encoder.layers.{N}.", "enc.blk.{N}.", "enc_layers", _ENC_LAYER_HEAD + _ENC_LAYER_TAIL)
        + _plain("audio_encoder.", "enc.", [
            ("layer_norm.weight", "norm.weight", ("enc_d",)),
            ("layer_norm.bias", "norm.bias", ("enc_d",)),
        ])
        + _plain("audio_adapter.", "adapter.", _gated_mlp("enc_out"))
        + _layers("deepstack_audio_merger_list.{N}.", "deepstack.{N}.", "ds_layers", _gated_mlp("enc_d"))
        + _plain("language_model.", "llm.", [("embed_tokens.weight", "embed.weight", ("vocab", "lm_d"))])
        + _layers("language_model.layers.{N}.", "llm.blk.{N}.", "lm_layers", _LM_LAYER)
        + _plain("language_model.", "llm.", [("norm.weight", "final_norm.weight", ("lm_d",))])
        + [TensorRule("lm_head.weight", "llm.lm_head.weight", ("vocab", "lm_d"))]
        + _DROP_ANY
    ),
)

ARCH_SPECS: Dict[str, ArchSpec] = {s.arch: s for s in (MOSS_TRANSCRIBE, MOSS_AUDIO)}

# config.json model_type → architecture
MODEL_TYPES: Dict[str, str] = {"moss": "moss_transcribe", "moss_audio": "moss_audio"}
