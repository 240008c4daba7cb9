"""Streaming GGUF v3 writer: metadata and tensor table first, then tensor data one tensor (chunk) at a time.

Every tensor's type and byte size is declared up front, so offsets are known before any data is written and
nothing has to be held in memory or patched afterwards.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, List, Sequence, Tuple, Union

import numpy as np

__all__ = ["GGUFStreamWriter", "KV", "U32", "F32", "BOOL", "STR", "STR_ARRAY", "GGML_F32", "GGML_F16"]

GGUF_MAGIC = 0x46554747  # "GGUF" little-endian
GGUF_VERSION = 3
ALIGNMENT = 32

# gguf value types
_T_UINT32, _T_FLOAT32, _T_BOOL, _T_STRING, _T_ARRAY = 4, 6, 7, 8, 9
# ggml tensor types
GGML_F32, GGML_F16 = 0, 1
_GGML_NP = {GGML_F32: np.dtype("<f4"), GGML_F16: np.dtype("<f2")}

U32, F32, BOOL, STR, STR_ARRAY = "u32", "f32", "bool", "str", "str[]"


@dataclass(frozen=True)
class KV:
    key: str
    type: str
    value: Union[int, float, bool, str, Sequence[str]]


def _pack_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pack_kv(kv: KV) -> bytes:
    head = _pack_str(kv.key)
    if kv.type == U32:
        v = int(kv.value)
        if not 0 <= v < 2**32:
            raise ValueError(f"GGUF key {kv.key}: {v} does not fit in u32")
        return head + struct.pack("<II", _T_UINT32, v)
    if kv.type == F32:
        return head + struct.pack("<If", _T_FLOAT32, float(kv.value))
    if kv.type == BOOL:
        return head + struct.pack("<IB", _T_BOOL, 1 if kv.value else 0)
    if kv.type == STR:
        return head + struct.pack("<I", _T_STRING) + _pack_str(str(kv.value))
    if kv.type == STR_ARRAY:
        items: Sequence[str] = kv.value  # type: ignore[assignment]
        parts = [head, struct.pack("<IIQ", _T_ARRAY, _T_STRING, len(items))]
        parts.extend(_pack_str(s) for s in items)
        return b"".join(parts)
    raise ValueError(f"unsupported GGUF value type {kv.type!r} for {kv.key}")


def _pad(n: int) -> int:
    return -n % ALIGNMENT


@dataclass
class _TensorInfo:
    name: str
    shape: Tuple[int, ...]  # PyTorch (row-major) order; written reversed as ggml ne
    ggml_type: int
    offset: int = 0

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * _GGML_NP[self.ggml_type].itemsize


class GGUFStreamWriter:
    """Usage: add KVs and tensor infos, call write_header(), then write_tensor() once per tensor, in order."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.kvs: List[KV] = []
        self.tensors: List[_TensorInfo] = []
        self._next = 0  # index of the next tensor whose data is expected
        self._header_done = False

    def add_kv(self, key: str, type_: str, value) -> None:
        if any(kv.key == key for kv in self.kvs):
            raise ValueError(f"duplicate GGUF key {key}")
        self.kvs.append(KV(key, type_, value))

    def add_tensor_info(self, name: str, shape: Sequence[int], ggml_type: int) -> None:
        if ggml_type not in _GGML_NP:
            raise ValueError(f"unsupported ggml type {ggml_type}")
        if any(t.name == name for t in self.tensors):
            raise ValueError(f"duplicate tensor name {name}")
        if len(name.encode("utf-8")) >= 64:
            raise ValueError(f"tensor name too long for ggml (max 63 bytes): {name}")
        self.tensors.append(_TensorInfo(name, tuple(int(s) for s in shape), ggml_type))

    def write_header(self) -> None:
        offset = 0
        for t in self.tensors:
            t.offset = offset
            offset += t.nbytes + _pad(t.nbytes)
        out = [struct.pack("<IIQQ", GGUF_MAGIC, GGUF_VERSION, len(self.tensors), len(self.kvs))]
        out.extend(_pack_kv(kv) for kv in self.kvs)
        for t in self.tensors:
            ne = tuple(reversed(t.shape)) or (1,)
            out.append(_pack_str(t.name))
            out.append(struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne))
            out.append(struct.pack("<IQ", t.ggml_type, t.offset))
        blob = b"".join(out)
        self.f.write(blob)
        self.f.write(b"\0" * _pad(len(blob)))
        self._header_done = True

    def write_tensor(self, name: str, chunks: Iterable[np.ndarray]) -> None:
        """Data of the next tensor: flattened float32 (or any float) chunks, converted to its declared type."""
        if not self._header_done:
            raise RuntimeError("write_header() must come before tensor data")
        if self._next >= len(self.tensors) or self.tensors[self._next].name != name:
            expected = self.tensors[self._next].name if self._next < len(self.tensors) else "<none>"
            raise RuntimeError(f"tensor data out of order: got {name}, expected {expected}")
        t = self.tensors[self._next]
        dt = _GGML_NP[t.ggml_type]
        written = 0
        for chunk in chunks:
            data = np.ascontiguousarray(chunk, dtype=dt)
            self.f.write(data.tobytes())
            written += data.nbytes
        if written != t.nbytes:
            raise RuntimeError(f"tensor {name}: wrote {written} bytes, declared {t.nbytes}")
        self.f.write(b"\0" * _pad(written))
        self._next += 1

    def finish(self) -> None:
        if self._next != len(self.tensors):
            raise RuntimeError(f"only {self._next} of {len(self.tensors)} tensors were written")
        self.f.flush()
