"""Minimal streaming safetensors reader (no torch): sharded (index) or single-file checkpoints.

Tensors are read one at a time and in chunks straight from disk, so converting a checkpoint needs memory for a
chunk, not for the model. bf16 becomes float32 exactly (bf16 is the upper half of an IEEE float32).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np

from ..errors import ModelError

__all__ = ["SafetensorsCheckpoint", "TensorEntry"]

# dtype name → (numpy storage dtype, item size)
_DTYPES = {
    "BF16": (np.dtype("<u2"), 2),
    "F16": (np.dtype("<f2"), 2),
    "F32": (np.dtype("<f4"), 4),
}

_MAX_HEADER = 100 * 1024 * 1024
CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class TensorEntry:
    name: str
    file: Path
    dtype: str
    shape: Tuple[int, ...]
    offset: int  # absolute byte offset of the data in `file`
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _read_header(path: Path) -> Dict[str, TensorEntry]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ModelError(f"{path}: too short to be a safetensors file")
            (n,) = struct.unpack("<Q", raw)
            if n == 0 or n > _MAX_HEADER or 8 + n > size:
                raise ModelError(f"{path}: invalid safetensors header length {n}")
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: safetensors header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise ModelError(f"{path}: safetensors header is not a JSON object")
    base = 8 + n
    out: Dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = info["dtype"]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: malformed header entry for tensor {name!r}") from e
        if dtype not in _DTYPES:
            raise ModelError(f"{path}: tensor {name!r} has dtype {dtype}; supported: {', '.join(_DTYPES)}")
        numel = 1
        for s in shape:
            if s < 0:
                raise ModelError(f"{path}: tensor {name!r} has a negative dimension {shape}")
            numel *= s
        nbytes = numel * _DTYPES[dtype][1]
        if end - begin != nbytes or begin < 0 or base + end > size:
            raise ModelError(
                f"{path}: tensor {name!r} ({dtype} {list(shape)}) has data range [{begin}, {end}) that does not "
                f"match its size {nbytes} or lies outside the file"
            )
        out[name] = TensorEntry(name, path, dtype, shape, base + begin, nbytes)
    return out


class SafetensorsCheckpoint:
    """The tensors of a Hugging Face checkpoint directory, by name, read lazily."""

    def __init__(self, hf_dir: "os.PathLike[str] | str"):
        self.dir = Path(hf_dir)
        index = self.dir / "model.safetensors.index.json"
        single = self.dir / "model.safetensors"
        self.entries: Dict[str, TensorEntry] = {}
        if index.is_file():
            try:
                with open(index, "r", encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ModelError(f"{index}: cannot read the weight_map ({e})") from e
            files = sorted(set(weight_map.values()))
            headers: Dict[str, Dict[str, TensorEntry]] = {}
            for fname in files:
                p = self.dir / fname
                if not p.is_file():
                    raise ModelError(f"{index} names shard {fname!r}, which is missing from {self.dir}")
                headers[fname] = _read_header(p)
            for name, fname in weight_map.items():
                if name not in headers[fname]:
                    raise ModelError(f"{index} puts tensor {name!r} in {fname!r}, but that shard lacks it")
                self.entries[name] = headers[fname][name]
        elif single.is_file():
            self.entries = _read_header(single)
        else:
            found = sorted(p.name for p in self.dir.glob("*.safetensors"))
            if len(found) == 1:
                self.entries = _read_header(self.dir / found[0])
            else:
                raise ModelError(
                    f"{self.dir}: no model.safetensors.index.json or model.safetensors"
                    + (f" (found {found})" if found else "")
                )

    def names(self) -> List[str]:
        return list(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def entry(self, name: str) -> TensorEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelError(f"{self.dir}: tensor {name!r} not found") from None

    def iter_f32(self, name: str, chunk: int = CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
        """Flattened float32 values of one tensor, `chunk` elements at a time."""
        e = self.entry(name)
        store, item = _DTYPES[e.dtype]
        total = e.numel
        try:
            with open(e.file, "rb") as f:
                f.seek(e.offset)
                done = 0
                while done < total:
                    n = min(chunk, total - done)
                    raw = np.fromfile(f, dtype=store, count=n)
                    if raw.size != n:
                        raise ModelError(f"{e.file}: tensor {name!r} is truncated")
                    if e.dtype == "BF16":
                        yield (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)
                    else:
                        yield raw.astype(np.float32)
                    done += n
        except OSError as err:
            raise ModelError(f"cannot read tensor {name!r} from {e.file}: {err}") from err

    def read_f32(self, name: str) -> np.ndarray:
        """One whole tensor as float32 in its PyTorch shape."""
        e = self.entry(name)
        parts = list(self.iter_f32(name))
        flat = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return flat.reshape(e.shape)
