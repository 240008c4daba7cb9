"""Exception classes. Every failure of crispmoss raises one of these (or a built-in for misuse of Python
types), with a message that names the file, tensor, key or argument at fault."""
from __future__ import annotations


class CrispMossError(Exception):
    """Base class of all crispmoss errors."""


class ModelError(CrispMossError, ValueError):
    """A model file is missing, malformed, of another architecture, or cannot serve the request."""


class AudioError(CrispMossError, ValueError):
    """Audio could not be read or is unusable (empty, non-finite samples, unreadable file)."""


class InputError(CrispMossError, ValueError):
    """An argument is out of range or a prompt does not fit the model's context."""


__all__ = ["CrispMossError", "ModelError", "AudioError", "InputError"]
