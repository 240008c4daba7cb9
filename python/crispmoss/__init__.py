"""crispmoss: OpenMOSS speech-language models (MOSS-Transcribe, MOSS-Audio) from GGUF files on ggml."""
from __future__ import annotations

from .errors import AudioError, CrispMossError, GenerationInterrupted, InputError, ModelError
from .audio import SAMPLE_RATE, load_audio, log_mel

__version__ = "0.1.0"

__all__ = ["AudioError", "CrispMossError", "GenerationInterrupted", "InputError", "ModelError", "SAMPLE_RATE", "load_audio", "log_mel"]
