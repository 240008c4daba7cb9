"""Hugging Face MOSS checkpoint → GGUF, streaming one tensor (chunk) at a time."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Pattern, Tuple

import numpy as np

from ..errors import ModelError
from .gguf_writer import BOOL, F32, GGML_F16, GGML_F32, STR, STR_ARRAY, U32, GGUFStreamWriter
from .hf_tokenizer import read_tokenizer
from .mel import periodic_hann, slaney_mel_filters
from .safetensors_io import SafetensorsCheckpoint
from .tables import ARCH_SPECS, MODEL_TYPES, ArchSpec, HParam, TensorRule

__all__ = ["convert", "detect_arch", "read_config", "gguf_hparams", "plan_tensors", "PlannedTensor"]

_MISSING = object()


def _read_json_object(path: Path) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: not a JSON object")
    return obj


def read_config(hf_dir: Path) -> dict:
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{hf_dir}: no config.json (is this a Hugging Face checkpoint directory?)")
    return _read_json_object(path)


def detect_arch(cfg: dict) -> str:
    mt = cfg.get("model_type")
    if mt not in MODEL_TYPES:
        known = ", ".join(f"{k!r} ({v})" for k, v in MODEL_TYPES.items())
        raise ModelError(f"config.json model_type {mt!r} is not a supported MOSS model; supported: {known}")
    return MODEL_TYPES[mt]


def _lookup(cfg: dict, path: str):
    node = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _source_value(cfg: dict, hp: HParam):
    if hp.src is None:
        return hp.default
    for path in (hp.src,) if isinstance(hp.src, str) else hp.src:
        v = _lookup(cfg, path)
        if v is not _MISSING and v is not None:
            return v
    return hp.default


def _as_u32(key: str, v) -> int:
    if isinstance(v, (list, tuple)) and v:  # e.g. eos_token_id: [151645, ...]; the first is the primary one
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or not 0 <= int(v) < 2**32:
        raise ModelError(f"config value for {key} must be a non-negative integer, got {v!r}")
    return int(v)


def gguf_hparams(spec: ArchSpec, cfg: dict) -> List[Tuple[str, str, object]]:
    """(key without arch prefix, GGUF type, value) in the spec's order."""
    out: List[Tuple[str, str, object]] = []
    values: Dict[str, object] = {}
    for hp in spec.hparams:
        v = _source_value(cfg, hp)
        if callable(v):
            v = v(values, cfg)
        if hp.type == "u32":
            if v is None:  # "same as the number of taps" style defaults
                v = values.get("deepstack.num_taps")
            out.append((hp.key, U32, _as_u32(hp.key, v)))
        elif hp.type == "f32":
            try:
                out.append((hp.key, F32, float(v)))
            except (TypeError, ValueError):
                raise ModelError(f"config value for {hp.key} must be a number, got {v!r}") from None
        elif hp.type == "bool":
            out.append((hp.key, BOOL, bool(v)))
        elif hp.type == "len":
            if not isinstance(v, (list, tuple)):
                raise ModelError(f"config value for {hp.key} must be a list, got {v!r}")
            out.append((hp.key, U32, len(v)))
        elif hp.type == "u32[]":
            if not isinstance(v, (list, tuple)):
                raise ModelError(f"config value for {hp.key} must be a list, got {v!r}")
            out.extend((f"{hp.key}.{i}", U32, _as_u32(f"{hp.key}.{i}", x)) for i, x in enumerate(v))
        else:  # pragma: no cover - table error
            raise AssertionError(hp.type)
        values[out[-1][0]] = out[-1][2]
    return out


def _dims(spec: ArchSpec, hp: Dict[str, object]) -> Dict[str, int]:
    return {k: (int(src(hp)) if callable(src) else int(hp[src])) for k, src in spec.dims.items()}


def _validate(spec: ArchSpec, cfg: dict, hp: Dict[str, object], dims: Dict[str, int]) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ModelError(f"config.json ({spec.arch}): {msg}")

    for k in ("enc_layers", "enc_d", "enc_heads", "enc_ffn", "conv_ch", "n_mels", "enc_out", "adapter", "lm_d",
              "lm_layers", "lm_heads", "lm_kv", "head_dim", "lm_ffn", "vocab", "adaptor_in", "merge", "enc_pos"):
        if k in dims:
            need(dims[k] > 0, f"{k} must be positive, got {dims[k]}")
    need(dims["enc_d"] % dims["enc_heads"] == 0,
         f"encoder d_model {dims['enc_d']} is not divisible by its {dims['enc_heads']} heads")
    need(dims["lm_heads"] % dims["lm_kv"] == 0,
         f"{dims['lm_heads']} attention heads are not a multiple of {dims['lm_kv']} KV heads")
    need(dims["head_dim"] % 2 == 0, f"head_dim {dims['head_dim']} must be even for RoPE")
    for path in ("language_config.rope_scaling", "rope_scaling"):
        rs = _lookup(cfg, path)
        if isinstance(rs, dict) and rs.get("rope_type", rs.get("type", "default")) != "default":
            raise ModelError(f"config.json: RoPE scaling {rs!r} is not supported")
    for path in ("language_config.rope_parameters", "rope_parameters"):
        rp = _lookup(cfg, path)
        if isinstance(rp, dict) and rp.get("rope_type", "default") != "default":
            raise ModelError(f"config.json: RoPE type {rp.get('rope_type')!r} is not supported")
    if "enc_pos" in dims:  # a Whisper encoder over whole windows (MOSS-Transcribe-Diarize)
        # the runtime encodes whole 30 s windows: 3000 mel frames, 1500 positions after the stride-2 conv
        need(dims["enc_pos"] == 1500, f"max_source_positions must be 1500 (30 s windows), got {dims['enc_pos']}")
    if "merge" in dims:  # encoder frames merged before the adaptor
        need(dims["adaptor_in"] == dims["enc_d"] * dims["merge"],
             f"adaptor_input_dim {dims['adaptor_in']} != d_model {dims['enc_d']} x audio_merge_size {dims['merge']}")
    if "deepstack.num_inject_layers" in hp:  # a DeepStack model (MOSS-Audio)
        taps = [int(v) for k, v in hp.items() if k.startswith("deepstack.tap.")]
        need(len(taps) > 0, "deepstack_encoder_layer_indexes is empty")
        need(all(0 <= t < dims["enc_layers"] for t in taps),
             f"deepstack taps {taps} must lie in [0, {dims['enc_layers']}) (encoder_layers)")
        need(int(hp["deepstack.num_inject_layers"]) <= dims["lm_layers"],
             f"deepstack_num_inject_layers {hp['deepstack.num_inject_layers']} exceeds the {dims['lm_layers']} LM "
             "layers")
        need(dims["enc_out"] == dims["enc_d"],
             f"output_dim {dims['enc_out']} != d_model {dims['enc_d']} needs an encoder out_proj, which MOSS-Audio "
             "GGUFs do not carry")


@dataclass(frozen=True)
class PlannedTensor:
    hf: Optional[str]  # None for the computed audio.* tensors
    gguf: str
    shape: Tuple[int, ...]  # PyTorch order
    ggml_type: int


def _rule_regex(rule: TensorRule) -> Pattern[str]:
    pat = re.escape(rule.hf).replace(r"\{N\}", r"(\d+)").replace(r"\{P\}", r".+")
    return re.compile(pat + r"\Z")


def plan_tensors(spec: ArchSpec, dims: Dict[str, int], ckpt: SafetensorsCheckpoint,
                 outtype: str) -> List[PlannedTensor]:
    """Map every checkpoint tensor to its GGUF name and type, checking names, completeness and shapes."""
    wide = GGML_F32 if outtype == "f32" else GGML_F16
    expected: Dict[str, Tuple[str, Tuple[int, ...]]] = {}  # hf → (gguf, shape), in GGUF order
    kept = [r for r in spec.tensors if r.gguf is not None]
    i = 0
    while i < len(kept):
        # a run of rules repeating over the same layers is emitted layer by layer (blk.0.*, blk.1.*, ...)
        j = i + 1
        while j < len(kept) and kept[i].repeat and kept[j].repeat == kept[i].repeat \
                and kept[j].hf.split("{N}")[0] == kept[i].hf.split("{N}")[0]:
            j += 1
        layers = range(dims[kept[i].repeat]) if kept[i].repeat else [None]
        for n in layers:
            for rule in kept[i:j]:
                shape = tuple(d if isinstance(d, int) else dims[d] for d in rule.shape)
                hf = rule.hf if n is None else rule.hf.replace("{N}", str(n))
                gg = rule.gguf if n is None else rule.gguf.replace("{N}", str(n))  # type: ignore[union-attr]
                expected[hf] = (gg, shape)
        i = j

    compiled = [(_rule_regex(r), r) for r in spec.tensors]
    present = set(ckpt.names())
    unknown, out_of_range, bad_shape = [], [], []
    for name in sorted(present):
        rule = next((r for rx, r in compiled if rx.match(name)), None)
        if rule is None:
            unknown.append(name)
        elif rule.gguf is not None and name not in expected:
            out_of_range.append(name)
        elif rule.gguf is not None and ckpt.entry(name).shape != expected[name][1]:
            bad_shape.append(f"{name}: {list(ckpt.entry(name).shape)}, expected {list(expected[name][1])}")
    missing = [hf for hf in expected if hf not in present]

    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown tensor(s): {', '.join(unknown[:8])}" + (" ..." if len(unknown) > 8 else ""))
    if out_of_range:
        problems.append(f"{len(out_of_range)} tensor(s) for layers the config does not have: "
                        + ", ".join(out_of_range[:8]) + (" ..." if len(out_of_range) > 8 else ""))
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if bad_shape:
        problems.append(f"{len(bad_shape)} tensor(s) whose shape disagrees with config.json: "
                        + "; ".join(bad_shape[:6]) + (" ..." if len(bad_shape) > 6 else ""))
    if problems:
        raise ModelError(f"{ckpt.dir}: not a valid {spec.arch} checkpoint: " + " | ".join(problems))

    plan = [
        PlannedTensor(None, "audio.mel_filters", (201, dims["n_mels"]), GGML_F32),
        PlannedTensor(None, "audio.mel_window", (400,), GGML_F32),
    ]
    for hf, (gg, shape) in expected.items():
        plan.append(PlannedTensor(hf, gg, shape, wide if len(shape) >= 2 else GGML_F32))
    return plan


def _computed(name: str, n_mels: int) -> np.ndarray:
    if name == "audio.mel_filters":
        return slaney_mel_filters(201, n_mels, 0.0, 8000.0, 16000).astype(np.float32)
    return periodic_hann(400).astype(np.float32)


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.total = total
        self.tty = enabled and sys.stderr.isatty()
        self.t0 = time.time()
        self.last = -1

    def step(self, i: int, name: str, ggml_type: int, shape) -> None:
        if not self.enabled:
            return
        tname = "F16" if ggml_type == GGML_F16 else "F32"
        line = f"[{i + 1:4d}/{self.total}] {name:<40s} {tname} {list(reversed(shape))}"
        if self.tty:
            sys.stderr.write("\r" + line[:110].ljust(110))
            sys.stderr.flush()
        else:
            decile = (10 * (i + 1)) // self.total
            if decile != self.last:
                self.last = decile
                print(line, file=sys.stderr)

    def done(self, path: Path, size: int) -> None:
        if self.enabled:
            if self.tty:
                sys.stderr.write("\n")
            print(f"wrote {path} ({self.total} tensors, {size / 2**30:.2f} GiB) in {time.time() - self.t0:.1f} s",
                  file=sys.stderr)


def _tensor_chunks(ckpt: SafetensorsCheckpoint, t: PlannedTensor, n_mels: int) -> Iterator[np.ndarray]:
    out_dtype = np.float16 if t.ggml_type == GGML_F16 else np.float32
    chunks = [_computed(t.gguf, n_mels).ravel()] if t.hf is None else ckpt.iter_f32(t.hf)
    for chunk in chunks:
        with np.errstate(over="ignore"):  # overflow is reported below, with the tensor's name
            data = chunk.astype(out_dtype)
        if not np.isfinite(data).all():
            hint = " (too large for F16: convert with outtype='f32')" if np.isfinite(chunk).all() else ""
            raise ModelError(f"tensor {t.hf or t.gguf} has non-finite values after conversion{hint}")
        yield data


def _with_processor_config(hf_dir: Path, cfg: dict) -> dict:
    """config.json plus processor_config.json (if present) under "processor_config", where the hyper-parameter
    tables look up the processor's values (MOSS-Transcribe-Diarize's time markers)."""
    path = hf_dir / "processor_config.json"
    if not path.is_file():
        return cfg
    proc = _read_json_object(path)
    if proc.get("enable_time_marker") is False:  # the processor's rule: an interval <= 0 means no markers
        proc["time_marker_every_seconds"] = 0
    return {**cfg, "processor_config": proc}


def convert(hf_dir, out_path, outtype: str = "f16", progress: bool = True) -> Path:
    """Convert a Hugging Face MOSS-Transcribe / MOSS-Audio / MOSS-Transcribe-Diarize checkpoint directory to one
    GGUF file.

    outtype "f16": tensors with two or more dimensions are stored as F16, the rest as F32 (the layout of the
    published GGUFs); "f32": everything F32. Memory stays around one tensor chunk; the file is written to a
    temporary name and renamed at the end, so a failed conversion leaves no partial output.
    Raises crispmoss.ModelError for anything wrong with the checkpoint.
    """
    if outtype not in ("f16", "f32"):
        raise ModelError(f"outtype must be 'f16' or 'f32', got {outtype!r}")
    hf_dir = Path(hf_dir)
    out_path = Path(out_path)
    if not hf_dir.is_dir():
        raise ModelError(f"{hf_dir} is not a directory")
    cfg = read_config(hf_dir)
    spec = ARCH_SPECS[detect_arch(cfg)]
    cfg = _with_processor_config(hf_dir, cfg)
    hparams = gguf_hparams(spec, cfg)
    hp = {k: v for k, _, v in hparams}
    dims = _dims(spec, hp)
    _validate(spec, cfg, hp, dims)
    ckpt = SafetensorsCheckpoint(hf_dir)
    plan = plan_tensors(spec, dims, ckpt, outtype)
    tokens, merges = read_tokenizer(hf_dir, dims["vocab"])

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".part{os.getpid()}")
    prog = _Progress(progress, len(plan))
    try:
        with open(tmp, "wb") as f:
            w = GGUFStreamWriter(f)
            w.add_kv("general.architecture", STR, spec.arch)
            w.add_kv("general.name", STR, spec.name)
            for key, type_, value in hparams:
                w.add_kv(f"{spec.prefix}.{key}", type_, value)
            w.add_kv("tokenizer.ggml.model", STR, "gpt2")
            w.add_kv("tokenizer.ggml.tokens", STR_ARRAY, tokens)
            w.add_kv("tokenizer.ggml.merges", STR_ARRAY, merges)
            for t in plan:
                w.add_tensor_info(t.gguf, t.shape, t.ggml_type)
            w.write_header()
            for i, t in enumerate(plan):
                prog.step(i, t.gguf, t.ggml_type, t.shape)
                w.write_tensor(t.gguf, _tensor_chunks(ckpt, t, dims["n_mels"]))
            w.finish()
        os.replace(tmp, out_path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    prog.done(out_path, out_path.stat().st_size)
    return out_path
