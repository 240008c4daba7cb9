"""Hugging Face → GGUF conversion for MOSS-Transcribe-preview-2B and MOSS-Audio-4B-Instruct checkpoints.

    from crispmoss.convert import convert
    convert("MOSS-Transcribe-preview-2B/", "MOSS-Transcribe-preview-2B-f16.gguf", outtype="f16")

The output follows the schema of the CrispASR-published GGUFs (metadata keys, tensor names and types).
"""
from __future__ import annotations

from .core import convert, detect_arch, gguf_hparams, plan_tensors, read_config
from .tables import ARCH_SPECS, MODEL_TYPES

__all__ = ["convert", "detect_arch", "read_config", "gguf_hparams", "plan_tensors", "ARCH_SPECS", "MODEL_TYPES"]
