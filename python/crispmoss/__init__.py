"""crispmoss: OpenMOSS speech-language models (MOSS-Transcribe, MOSS-Audio) from GGUF files on ggml."""
from __future__ import annotations

from .errors import AudioError, CrispMossError, InputError, ModelError
from .backends import system_info
from .quantize import quantize
from .audio import SAMPLE_RATE, load_audio, log_mel
from .model import Model, Session
from .results import Segment, Transcript

__version__ = "0.1.0"

__all__ = ["Model", "Session", "Segment", "Transcript", "AudioError", "CrispMossError", "InputError", "ModelError", "SAMPLE_RATE", "load_audio", "log_mel", "quantize", "system_info"]
