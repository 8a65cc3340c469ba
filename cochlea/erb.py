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


def vtlp_warp(f, factor, f_top, knee=0.8):
    """Vocal-tract-length perturbation: the piecewise-linear frequency warp of Jaitly & Hinton (2013).

    Below the knee ``k = knee * f_top * min(1, 1 / factor)`` every frequency scales by ``factor``, as a
    shorter (> 1) or longer (< 1) vocal tract moves the formants; from the knee the map is the straight
    line to ``(f_top, f_top)``, so the top of the band stays put and the map stays monotonic.

    Parameters
    ----------
    f : array_like
        Frequencies in Hz, ``0 <= f <= f_top``.
    factor : float
        Warp factor in ``[0.5, 2]``; 1 leaves ``f`` unchanged.
    f_top : float
        The frequency that stays fixed, in Hz.
    knee : float
        Where the linear scaling ends, as a fraction of ``f_top`` (for ``factor <= 1``).

    Examples
    --------
    >>> vtlp_warp([100.0, 1000.0, 3600.0], 1.1, 3600.0).round(1)
    array([ 110., 1100., 3600.])
    """
    f = _as_freqs(f)
    if not (np.isfinite(factor) and 0.5 <= factor <= 2.0):
        raise ValueError(f"warp factor must be in [0.5, 2], got {factor!r}")
    if not (np.isfinite(f_top) and f_top > 0 and 0 < knee < 1):
        raise ValueError(f"need f_top > 0 and 0 < knee < 1, got f_top={f_top!r}, knee={knee!r}")
    if np.any(f > f_top * (1 + 1e-12)):
        raise ValueError(f"frequencies must be <= f_top = {f_top:g} Hz")
    k = knee * f_top * min(1.0, 1.0 / factor)
    above = factor * k + (f_top - factor * k) * (f - k) / (f_top - k)
    return np.where(f <= k, factor * f, above)
