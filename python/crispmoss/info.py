"""`crispmoss info`: what a GGUF file holds, read through the validating C++ loader."""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Dict

from . import _core


def describe(path: "os.PathLike[str] | str") -> Dict[str, Any]:
    """Architecture, hyper-parameters, tensor count, bytes per tensor type and total size of a GGUF."""
    from .convert.tables import ARCH_SPECS

    raw = _core.inspect(os.fspath(path))
    arch = raw["architecture"]
    # a converter table's key prefix can differ from its architecture (MOSS-Transcribe-Diarize's published files)
    prefix = ARCH_SPECS[arch].prefix if arch in ARCH_SPECS else arch
    hparams = {k[len(prefix) + 1:]: v for k, v in raw["metadata"].items() if k.startswith(prefix + ".")}
    by_type: Dict[str, Dict[str, int]] = defaultdict(lambda: {"tensors": 0, "bytes": 0})
    for _name, type_name, _ne, nbytes in raw["tensors"]:
        by_type[type_name]["tensors"] += 1
        by_type[type_name]["bytes"] += nbytes
    general = {k: v for k, v in raw["metadata"].items() if k.startswith("general.")}
    return {
        "path": raw["path"],
        "architecture": arch,
        "general": general,
        "hparams": hparams,
        "n_tensors": len(raw["tensors"]),
        "bytes_per_type": dict(sorted(by_type.items())),
        "tensor_bytes": sum(v["bytes"] for v in by_type.values()),
        "file_size": raw["file_size"],
    }


def format_size(n: float) -> str:
    """Bytes in binary units, e.g. "2.63 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def format_info(info: Dict[str, Any]) -> str:
    lines = [f"file:          {info['path']}", f"architecture:  {info['architecture']}"]
    if "general.name" in info["general"]:
        lines.append(f"name:          {info['general']['general.name']}")
    lines.append("hyper-parameters:")
    for k, v in info["hparams"].items():
        lines.append(f"  {k:<40} {v}")
    lines.append(f"tensors:       {info['n_tensors']}")
    for t, v in info["bytes_per_type"].items():
        lines.append(f"  {t:<6} {v['tensors']:>5} tensors  {format_size(v['bytes']):>12}")
    lines.append(f"total size:    {format_size(info['file_size'])} ({info['file_size']} bytes)")
    return "\n".join(lines) + "\n"
