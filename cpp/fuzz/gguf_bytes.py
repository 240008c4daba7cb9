"""A GGUF file as editable parts, written byte by byte: lets tests and the fuzz seed script build files that
gguf-py's writer refuses to produce (bad versions, lying counts, misplaced offsets, unknown types...)."""
from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np

# GGUF value types (gguf.h)
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
           U64: "<Q", I64: "<q", F64: "<d"}

# ggml types used here
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 8, 30


@dataclass
class KV:
    key: Union[str, bytes]
    type: int
    value: object
    elem_type: Optional[int] = None  # for arrays
    count: Optional[int] = None  # override of the written array length


@dataclass
class Tensor:
    name: Union[str, bytes]
    ne: List[int]  # ggml order, fastest first
    type: int
    data: bytes
    offset: Optional[int] = None  # None: packed in table order
    n_dims: Optional[int] = None  # override of the written dimension count


@dataclass
class GGUF:
    kv: List[KV] = field(default_factory=list)
    tensors: List[Tensor] = field(default_factory=list)
    magic: bytes = b"GGUF"
    version: int = 3
    alignment: int = 32
    n_tensors: Optional[int] = None  # overrides of the header counts
    n_kv: Optional[int] = None

    def copy(self) -> "GGUF":
        return copy.deepcopy(self)

    # --- editing helpers ---------------------------------------------------------------------------
    def find_kv(self, key: str) -> KV:
        for kv in self.kv:
            if kv.key == key:
                return kv
        raise KeyError(key)

    def set_kv(self, key: str, type_: int, value, elem_type: Optional[int] = None) -> None:
        for kv in self.kv:
            if kv.key == key:
                kv.type, kv.value, kv.elem_type = type_, value, elem_type
                return
        self.kv.append(KV(key, type_, value, elem_type))

    def drop_kv(self, key: str) -> None:
        self.kv = [kv for kv in self.kv if kv.key != key]

    def find_tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def drop_tensor(self, name: str) -> None:
        self.tensors = [t for t in self.tensors if t.name != name]

    # --- serialisation -----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        out = bytearray()
        out += self.magic
        out += struct.pack("<I", self.version)
        out += struct.pack("<q", len(self.tensors) if self.n_tensors is None else self.n_tensors)
        out += struct.pack("<q", len(self.kv) if self.n_kv is None else self.n_kv)
        for kv in self.kv:
            _put_str(out, kv.key)
            out += struct.pack("<I", kv.type)
            if kv.type == ARRAY:
                vals = list(kv.value)
                out += struct.pack("<I", kv.elem_type)
                out += struct.pack("<Q", len(vals) if kv.count is None else kv.count)
                for v in vals:
                    _put_value(out, kv.elem_type, v)
            else:
                _put_value(out, kv.type, kv.value)
        offsets = []
        pos = 0
        for t in self.tensors:
            offsets.append(pos if t.offset is None else t.offset)
            pos += _pad(len(t.data), self.alignment)
        for t, off in zip(self.tensors, offsets):
            _put_str(out, t.name)
            out += struct.pack("<I", len(t.ne) if t.n_dims is None else t.n_dims)
            for n in t.ne:
                out += struct.pack("<q", n)
            out += struct.pack("<i", t.type)
            out += struct.pack("<Q", off)
        out += b"\0" * (_pad(len(out), self.alignment) - len(out))
        for t in self.tensors:
            out += t.data
            out += b"\0" * (_pad(len(t.data), self.alignment) - len(t.data))
        return bytes(out)

    def write(self, path) -> str:
        with open(path, "wb") as f:
            f.write(self.to_bytes())
        return str(path)


def _pad(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _put_str(out: bytearray, s: Union[str, bytes]) -> None:
    b = s.encode("utf-8") if isinstance(s, str) else s
    out += struct.pack("<Q", len(b))
    out += b


def _put_value(out: bytearray, type_: int, v) -> None:
    if type_ == STRING:
        _put_str(out, v)
    elif type_ in _SCALAR:
        out += struct.pack(_SCALAR[type_], v)
    elif isinstance(v, bytes):  # an unknown type: raw value bytes as given
        out += v
    else:
        out += struct.pack("<I", v)


def read(path) -> GGUF:
    """Parses a well-formed GGUF file into editable parts (strings stay bytes)."""
    with open(path, "rb") as f:
        return parse(f.read())


def parse(buf: bytes) -> GGUF:
    mv = memoryview(buf)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def take_str() -> bytes:
        nonlocal pos
        n = take("<Q")
        s = bytes(mv[pos:pos + n])
        pos += n
        return s

    def take_value(t: int):
        return take_str() if t == STRING else take(_SCALAR[t])

    g = GGUF()
    g.magic = bytes(mv[0:4])
    pos = 4
    g.version = take("<I")
    n_tensors, n_kv = take("<q"), take("<q")
    for _ in range(n_kv):
        key = take_str().decode("utf-8")
        t = take("<I")
        if t == ARRAY:
            et, n = take("<I"), take("<Q")
            if et == STRING:
                vals = [take_str() for _ in range(n)]
            else:
                fmt = _SCALAR[et]
                size = struct.calcsize(fmt)
                vals = list(struct.unpack_from("<%d%s" % (n, fmt[1]), buf, pos))
                pos += n * size
            g.kv.append(KV(key, ARRAY, vals, et))
        else:
            g.kv.append(KV(key, t, take_value(t)))
        if key == "general.alignment":
            g.alignment = g.kv[-1].value
    infos = []
    for _ in range(n_tensors):
        name = take_str().decode("utf-8")
        nd = take("<I")
        ne = [take("<q") for _ in range(nd)]
        infos.append((name, ne, take("<i"), take("<Q")))
    data0 = _pad(pos, g.alignment)
    for i, (name, ne, t, off) in enumerate(infos):
        end = infos[i + 1][3] if i + 1 < len(infos) else len(buf) - data0
        size = _nbytes(ne, t)
        assert size <= end - off, name
        g.tensors.append(Tensor(name, ne, t, bytes(mv[data0 + off:data0 + off + size])))
    return g


def _nbytes(ne: List[int], t: int) -> int:
    import gguf  # gguf-py: block and type sizes of every ggml type

    blck, tsize = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t)]
    n = 1
    for x in ne:
        n *= x
    return n // blck * tsize
