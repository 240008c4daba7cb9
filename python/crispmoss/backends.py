"""Compute backends: what this build of crispmoss can run on, and the choice made for a model.

Portable wheels carry ggml's CPU backend for several instruction-set levels, and GPU wheels their GPU
backend, as shared libraries next to the extension; importing crispmoss loads them from there (ggml picks
the best CPU variant for the machine). Local builds link them statically and load nothing.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Dict, List

from . import _core

BACKENDS = ("auto", "cpu", "cuda", "metal")

_core.load_backends(os.path.dirname(os.path.abspath(_core.__file__)))

_noticed = False


def system_info() -> Dict[str, Any]:
    """Compiled (or loaded) backends, their devices with memory, and the CPU features ggml found.

    Keys: ``ggml_version``, ``backends`` (e.g. ``["cuda", "cpu"]``), ``dynamic_backends`` (portable build),
    ``devices`` (list of dicts: backend, name, description, type, memory_free, memory_total in bytes),
    ``cpu_features`` (name -> value, e.g. ``{"AVX2": "1", ...}``), ``cpu_kernels`` (the instruction-set level
    crispmoss's own CPU kernels run at: ``"none"`` (ggml's kernels only), ``"avx2"``, ``"avx512"`` or ``"amx"``;
    ``CRISPMOSS_CPU`` forces one) and ``cpu_kernels_best`` (the best level this CPU and OS support).
    """
    info = _core.system_info()
    info["cpu_kernels"] = _core.cpu_level()
    info["cpu_kernels_best"] = _core.cpu_best_level()
    return info


def check_backend(backend: str) -> str:
    from .errors import InputError

    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend.lower()


def notice_once(message: str) -> None:
    """The CPU-fallback notice of backend="auto", shown once per process."""
    global _noticed
    if message and not _noticed:
        _noticed = True
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= (1 << 30) else f"{n / (1 << 20):.0f} MiB"


def format_system_info(info: Dict[str, Any]) -> str:
    lines: List[str] = [f"ggml:        {info['ggml_version']}"
                        + ("  (backends loaded from shared libraries)" if info["dynamic_backends"] else "")]
    lines.append(f"backends:    {', '.join(info['backends']) or 'none'}")
    lines.append("devices:")
    for d in info["devices"]:
        mem = f"{_size(d['memory_free'])} free of {_size(d['memory_total'])}" if d["memory_total"] else ""
        lines.append(f"  {d['backend']:<6} {d['name']:<8} {d['type']:<5} {d['description']}  {mem}".rstrip())
    feats = [k for k, v in info["cpu_features"].items() if v not in ("0", "")]
    lines.append(f"cpu features: {' '.join(feats) or 'none'}")
    if "cpu_kernels" in info:
        lines.append(f"cpu kernels: {info['cpu_kernels']} (best on this CPU: {info['cpu_kernels_best']}; "
                     "CRISPMOSS_CPU=avx2|avx512|amx forces one)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(format_system_info(system_info()))


def add_placement_args(p: Any, device_type: Any = int) -> None:
    """The command-line options of where a Model runs (``crispmoss transcribe ...`` and ``crispmoss serve``):
    --backend, --device, --gpu-layers, --head-type (see :class:`crispmoss.Model`)."""
    p.add_argument("--backend", choices=list(BACKENDS), default="auto",
                   help="where to run (default auto: a GPU if this build has a GPU backend that finds one)")
    p.add_argument("--device", type=device_type, default=0, help="GPU index within the backend (default 0)")
    p.add_argument("--gpu-layers", type=int, default=-1, metavar="N",
                   help="LM layers to keep on the GPU (default -1: the whole model)")
    p.add_argument("--head-type", choices=["q8_0", "q4_k", "f16"], default=None,
                   help="compute the output head from a copy of this type made at load (MOSS-Transcribe's F16 "
                        "head: q8_0 decodes ~20%% faster on CPU for ~0.3 GB; default: as stored)")
