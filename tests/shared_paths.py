"""Where the project's shared folder (audio, specs) lies: beside the checkout, as CI places it."""
from pathlib import Path

_candidates = [Path(__file__).resolve().parents[1].parent / "shared", Path("/work/shared")]
SHARED = next((p for p in _candidates if (p / "audio").is_dir()), _candidates[0])
AUDIO_DIR = SHARED / "audio"
JFK = AUDIO_DIR / "jfk.wav"
