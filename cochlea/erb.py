"""Equivalent rectangular bandwidth (ERB) scale, Glasberg & Moore with Slaney's constants."""
from __future__ import annotations

import numpy as np

EAR_Q = 9.26449
MIN_BW = 24.7
ORDER = 1


def _as_freqs(f, name="f"):
    f = np.asarray(f, dtype=np.float64)
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} must be finite, got {f!r}")
    if np.any(f < 0):
        raise ValueError(f"{name} must be >= 0 Hz, got {f!r}")
    return f


def erb_bandwidth(f):
    """Equivalent rectangular bandwidth of the auditory filter centred at ``f``.

    Parameters
    ----------
    f : float or np.ndarray
        Centre frequency in Hz.

    Returns
    -------
    float or np.ndarray
        ``((f / EarQ)**order + minBW**order)**(1/order)`` in Hz, i.e. ``24.7 + f / 9.26449``.

    Examples
    --------
    >>> round(float(erb_bandwidth(1000.0)), 3)
    132.639
    """
    f = _as_freqs(f)
    return ((f / EAR_Q) ** ORDER + MIN_BW**ORDER) ** (1.0 / ORDER)


def hz_to_erb_rate(f):
    """ERB-number (Cam) of a frequency: ``EarQ * ln(1 + f / (EarQ * minBW))``.

    It is the integral of ``1 / erb_bandwidth``, so equal steps are equal numbers of ERBs.

    Examples
    --------
    >>> float(hz_to_erb_rate(0.0))
    0.0
    >>> round(float(hz_to_erb_rate(1000.0)), 3)
    15.572
    """
    f = _as_freqs(f)
    return EAR_Q * np.log1p(f / (EAR_Q * MIN_BW))


def erb_rate_to_hz(e):
    """Inverse of :func:`hz_to_erb_rate`.

    Examples
    --------
    >>> round(float(erb_rate_to_hz(hz_to_erb_rate(440.0))), 9)
    440.0
    """
    e = np.asarray(e, dtype=np.float64)
    if not np.all(np.isfinite(e)):
        raise ValueError(f"ERB rate must be finite, got {e!r}")
    return EAR_Q * MIN_BW * np.expm1(e / EAR_Q)


def erb_space(fmin, fmax, n):
    """``n`` centre frequencies uniformly spaced on the ERB-number scale.

    Parameters
    ----------
    fmin, fmax : float
        Lowest and highest centre frequency in Hz, ``0 < fmin < fmax``. Both are included.
    n : int
        Number of frequencies, ``n >= 1``; ``n == 1`` returns ``[fmin]``.

    Returns
    -------
    np.ndarray, shape (n,)
        Ascending float64 frequencies with ``out[0] == fmin`` and ``out[-1] == fmax``.

    Examples
    --------
    >>> erb_space(100.0, 8000.0, 4).round(1)
    array([ 100. ,  733. , 2584.5, 8000. ])
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    fmin, fmax = float(_as_freqs(fmin, "fmin")), float(_as_freqs(fmax, "fmax"))
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got fmin={fmin}, fmax={fmax}")
    if n == 1:
        return np.array([fmin])
    out = erb_rate_to_hz(np.linspace(hz_to_erb_rate(fmin), hz_to_erb_rate(fmax), int(n)))
    out[0], out[-1] = fmin, fmax  # exact endpoints despite the log/exp round trip
    return out
