"""The Whisper front-end constants baked into the GGUF: Slaney mel filterbank and periodic Hann window."""
from __future__ import annotations

import numpy as np

__all__ = ["slaney_mel_filters", "periodic_hann"]

# Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = 27.0 / np.log(6.4)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    lin = f / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) * _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * _F_SP
    log = _MIN_LOG_HZ * np.exp((m - _MIN_LOG_MEL) / _LOGSTEP)
    return np.where(m >= _MIN_LOG_MEL, log, lin)


def slaney_mel_filters(
    n_freqs: int = 201, n_mels: int = 128, f_min: float = 0.0, f_max: float = 8000.0, sample_rate: int = 16000
) -> np.ndarray:
    """Triangular filters on the Slaney mel scale with area normalisation, shape [n_freqs, n_mels] (float64).

    Filter m rises from edge m to edge m+1 and falls to edge m+2, with n_mels+2 edges spaced evenly in mel
    between f_min and f_max, and is scaled by 2 / (width in Hz) so every filter has the same area.
    """
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    bins_hz = np.linspace(0.0, sample_rate // 2, n_freqs)
    lo, mid, hi = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    f = bins_hz[:, None]
    rising = (f - lo[None, :]) / (mid - lo)[None, :]
    falling = (hi[None, :] - f) / (hi - mid)[None, :]
    tri = np.maximum(0.0, np.minimum(rising, falling))
    return tri * (2.0 / (hi - lo))[None, :]


def periodic_hann(n: int = 400) -> np.ndarray:
    """w[i] = 0.5 - 0.5 cos(2 pi i / n), i = 0..n-1 (the DFT-even window torch.hann_window uses by default)."""
    i = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * i / n)
