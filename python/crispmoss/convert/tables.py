"""Per-architecture conversion tables (data, not code): GGUF hyper-parameter keys with their config.json
sources, and the HF → GGUF tensor-name map with the expected PyTorch shape of every tensor.

Shapes are written with symbolic dimensions resolved from the hyper-parameters, so a checkpoint whose tensors
disagree with its own config.json is rejected at conversion time instead of at load time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["ArchSpec", "HParam", "TensorRule", "ARCH_SPECS", "MODEL_TYPES", "MOSS_TRANSCRIBE_DIARIZE"]

Src = Union[None, str, Tuple[str, ...]]  # config path(s) tried in order; None: the default is a fixed constant
Dim = Union[int, str]


@dataclass(frozen=True)
class HParam:
    key: str  # GGUF key without the "<arch>." prefix
    type: str  # "u32" | "f32" | "bool" | "u32[]" (one key per element: key.0, key.1, ...) | "len" (u32 length)
    src: Src  # config.json paths; "processor_config.<key>" reads processor_config.json
    default: object  # a callable default(values of the keys before it, config) computes the value


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
    key_prefix: Optional[str] = None  # prefix of the hyper-parameter keys; None: the arch name
    # Quantizer rule (documentation of the C++ table in cpp/quantize.cpp, which must agree): tensors under these
    # prefixes / with these names keep their converter type; only the other 2-D non-norm weights are quantized.
    quant_keep_prefixes: Tuple[str, ...] = ()
    quant_keep_names: Tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return self.key_prefix or self.arch


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
    quant_keep_prefixes=("enc.", "adapter."),
    quant_keep_names=("llm.embed.weight",),
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
    quant_keep_prefixes=("enc.", "adapter.", "deepstack."),
)


def _renamed(rows: Sequence[Tuple[str, Optional[str], Tuple[Dim, ...]]],
             names: Dict[str, str]) -> List[Tuple[str, Optional[str], Tuple[Dim, ...]]]:
    """Layer rows with their GGUF names (without the ".weight"/".bias" suffix) renamed through ``names``."""
    out = []
    for hf, gg, shape in rows:
        stem, _, kind = (gg or "").rpartition(".")
        out.append((hf, f"{names.get(stem, stem)}.{kind}" if gg else gg, shape))
    return out


# the llama.cpp-style names of the published MOSS-Transcribe-Diarize files, from our names for the same rows
_LLAMA_STYLE_ENC = {"attn.q": "attn_q", "attn.k": "attn_k", "attn.v": "attn_v", "attn.o": "attn_out",
                    "ffn.fc1": "ffn_up", "ffn.fc2": "ffn_down"}
_LLAMA_STYLE_LM = {"attn.q": "attn_q", "attn.k": "attn_k", "attn.v": "attn_v", "attn.o": "attn_o",
                   "attn.q_norm": "q_norm", "attn.k_norm": "k_norm", "ffn.gate": "ffn_gate", "ffn.up": "ffn_up",
                   "ffn.down": "ffn_down"}


def _tc(key: str, *alts: str) -> Tuple[str, ...]:
    return (f"text_config.{key}",) + tuple(f"text_config.{a}" for a in alts)


def _ac(key: str, *alts: str) -> Tuple[str, ...]:
    return (f"audio_config.{key}",) + tuple(f"audio_config.{a}" for a in alts)


# MOSS-Transcribe-Diarize in the schema of the published GGUFs (cstr/MOSS-Transcribe-Diarize-GGUF, written by
# CrispASR's models/convert-moss-transcribe-diarize-to-gguf.py @ 72d3c389), so those files and ours load alike:
# keys "moss_diarize.*", llama.cpp-style tensor names, tied head (no output.weight), mel filters and window baked in.
# Differences on purpose: the RoPE base is read from transformers 5's text_config.rope_parameters (CrispASR's
# converter only knows rope_theta and writes its 1e6 fallback), all merges.txt lines are kept (CrispASR drops the
# 96 real merges starting with '#'), and processor_config.json's enable_time_marker=false is written as a
# time_marker_every_seconds of 0 (the processor's "interval <= 0: no markers" rule).
MOSS_TRANSCRIBE_DIARIZE = ArchSpec(
    arch="moss_transcribe_diarize",
    name="MOSS-Transcribe-Diarize-0.9B",
    key_prefix="moss_diarize",
    hparams=(
        HParam("enc.n_layers", "u32", _ac("encoder_layers", "num_hidden_layers"), 24),
        HParam("enc.d_model", "u32", _ac("d_model", "hidden_size"), 1024),
        HParam("enc.n_heads", "u32", _ac("encoder_attention_heads", "num_attention_heads"), 16),
        HParam("enc.n_mels", "u32", _ac("num_mel_bins"), 80),
        HParam("enc.ffn_dim", "u32", _ac("encoder_ffn_dim", "intermediate_size"), 4096),
        HParam("enc.max_pos", "u32", _ac("max_source_positions"), 1500),
        HParam("adaptor.in_dim", "u32", "adaptor_input_dim",
               lambda values, cfg: int(values["enc.d_model"]) * int(cfg.get("audio_merge_size") or 4)),
        HParam("adaptor.out_dim", "u32", _tc("hidden_size"), 1024),
        HParam("llm.n_layers", "u32", _tc("num_hidden_layers"), 28),
        HParam("llm.dim", "u32", _tc("hidden_size"), 1024),
        HParam("llm.n_heads", "u32", _tc("num_attention_heads"), 16),
        HParam("llm.n_kv_heads", "u32", _tc("num_key_value_heads"), 8),
        HParam("llm.head_dim", "u32", _tc("head_dim"), 128),
        HParam("llm.ff_dim", "u32", _tc("intermediate_size"), 3072),
        HParam("llm.vocab_size", "u32", _tc("vocab_size"), 151936),
        HParam("llm.tied_embeddings", "bool", ("tie_word_embeddings",) + _tc("tie_word_embeddings"), True),
        HParam("llm.rope_theta", "f32", _tc("rope_parameters.rope_theta", "rope_theta"), 1000000.0),
        HParam("llm.rms_eps", "f32", _tc("rms_norm_eps"), 1e-6),
        HParam("audio_token_id", "u32", "audio_token_id", 151671),
        # the released processor_config.json says 5 (the processor class's own default, 2, is not what runs)
        HParam("time_marker_every_seconds", "u32", "processor_config.time_marker_every_seconds", 5),
        HParam("audio_tokens_per_second", "f32", "processor_config.audio_tokens_per_second", 12.5),
        HParam("audio_merge_size", "u32", "audio_merge_size", 4),
    ),
    dims={
        "n_mels": "enc.n_mels",
        "enc_layers": "enc.n_layers",
        "enc_d": "enc.d_model",
        "enc_heads": "enc.n_heads",
        "enc_ffn": "enc.ffn_dim",
        "enc_pos": "enc.max_pos",
        "adaptor_in": "adaptor.in_dim",
        "merge": "audio_merge_size",
        "lm_d": "llm.dim",
        "lm_layers": "llm.n_layers",
        "lm_heads": "llm.n_heads",
        "lm_kv": "llm.n_kv_heads",
        "head_dim": "llm.head_dim",
        "lm_ffn": "llm.ff_dim",
        "vocab": "llm.vocab_size",
        "q_dim": lambda h: int(h["llm.n_heads"]) * int(h["llm.head_dim"]),
        "kv_dim": lambda h: int(h["llm.n_kv_heads"]) * int(h["llm.head_dim"]),
    },
    tensors=tuple(
        _plain("model.whisper_encoder.", "enc.", [
            ("conv1.weight", "conv1.weight", ("enc_d", "n_mels", 3)),
            ("conv1.bias", "conv1.bias", ("enc_d",)),
            ("conv2.weight", "conv2.weight", ("enc_d", "enc_d", 3)),
            ("conv2.bias", "conv2.bias", ("enc_d",)),
            ("embed_positions.weight", "pos_embed.weight", ("enc_pos", "enc_d")),
        ])
        + _layers("model.whisper_encoder.layers.{N}.", "enc.blk.{N}.", "enc_layers",
                  _renamed(_ENC_LAYER_HEAD + _ENC_LAYER_TAIL, _LLAMA_STYLE_ENC))  # Whisper: no k bias
        + _plain("model.whisper_encoder.", "enc.", [
            ("layer_norm.weight", "ln_post.weight", ("enc_d",)),
            ("layer_norm.bias", "ln_post.bias", ("enc_d",)),
        ])
        # nn.Sequential(Linear, SiLU, Linear, LayerNorm): index 1 has no parameters
        + _plain("model.vq_adaptor.layers.", "adaptor.", [
            ("0.weight", "fc1.weight", ("lm_d", "adaptor_in")),
            ("0.bias", "fc1.bias", ("lm_d",)),
            ("2.weight", "fc2.weight", ("lm_d", "lm_d")),
            ("2.bias", "fc2.bias", ("lm_d",)),
            ("3.weight", "norm.weight", ("lm_d",)),
            ("3.bias", "norm.bias", ("lm_d",)),
        ])
        + _plain("model.language_model.", "", [("embed_tokens.weight", "token_embd.weight", ("vocab", "lm_d"))])
        + _layers("model.language_model.layers.{N}.", "blk.{N}.", "lm_layers", _renamed(_LM_LAYER, _LLAMA_STYLE_LM))
        + _plain("model.language_model.", "", [("norm.weight", "output_norm.weight", ("lm_d",))])
        # tied head: token_embd.weight is also the output projection; a stored lm_head is dropped
        + [TensorRule("lm_head.weight", None, ("vocab", "lm_d"))]
        + _DROP_ANY
    ),
    # CrispASR's crispasr-quantize keeps enc.*, adaptor.* and the tied token_embd.weight at F16 for this
    # architecture; the 7 decoder matrices per layer are quantized (their rows, 1024/2048/3072, are 256-multiples)
    quant_keep_prefixes=("enc.", "adaptor."),
    quant_keep_names=("token_embd.weight",),
)

ARCH_SPECS: Dict[str, ArchSpec] = {s.arch: s for s in (MOSS_TRANSCRIBE, MOSS_AUDIO, MOSS_TRANSCRIBE_DIARIZE)}

# config.json model_type → architecture
MODEL_TYPES: Dict[str, str] = {"moss": "moss_transcribe", "moss_audio": "moss_audio",
                               "moss_transcribe_diarize": "moss_transcribe_diarize"}
