"""Gammatone filterbank: design (second-order sections, FIR kernels) kept apart from apply (filtering)."""
from __future__ import annotations

import numpy as np

from . import _kernels
from .erb import erb_bandwidth

#: Bandwidth of the 4th-order gammatone relative to the ERB (Patterson / Slaney).
GAMMATONE_B = 1.019


def _check_freqs(sr, center_freqs):
    if isinstance(sr, bool) or not np.isscalar(sr) or not np.isfinite(sr) or sr <= 0:
        raise ValueError(f"sample rate must be a positive finite number, got {sr!r}")
    cf = np.atleast_1d(np.asarray(center_freqs, dtype=np.float64))
    if cf.ndim != 1 or cf.size == 0:
        raise ValueError(f"center_freqs must be a non-empty 1-D array, got shape {cf.shape}")
    if not np.all(np.isfinite(cf)):
        raise ValueError("center_freqs contains NaN or inf")
    if np.any(cf <= 0):
        raise ValueError(f"center frequencies must be > 0 Hz, got min {cf.min()} Hz")
    if np.any(cf >= sr / 2):
        raise ValueError(
            f"center frequency {cf.max():g} Hz is at or above the Nyquist frequency {sr / 2:g} Hz (sr={sr:g})"
        )
    return float(sr), cf


def gammatone_sos(sr, center_freqs):
    """Design Slaney's 4th-order gammatone filters as 4 cascaded biquads per channel.

    Each channel is the pole/zero design of Slaney's ``MakeERBFilters`` (Apple TR #35) with
    bandwidth ``1.019 * ERB(cf)``: four sections that share one conjugate pole pair and differ in
    their zero. The overall gain is normalised to 1 at the centre frequency and spread evenly over
    the four sections, which keeps intermediate signals in range in float32.

    Parameters
    ----------
    sr : float
        Sample rate in Hz.
    center_freqs : array_like, shape (n_channels,)
        Centre frequencies in Hz, each in ``(0, sr / 2)``.

    Returns
    -------
    sos : np.ndarray, shape (n_channels, 4, 6), float64
        Rows ``[b0, b1, b2, 1, a1, a2]`` as used by :func:`scipy.signal.sosfilt`.

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> sos = gammatone_sos(16000, [1000.0])
    >>> w, h = scipy.signal.sosfreqz(sos[0], worN=[1000.0], fs=16000)
    >>> round(float(abs(h[0])), 12)
    1.0
    """
    sr, cf = _check_freqs(sr, center_freqs)
    T = 1.0 / sr
    B = GAMMATONE_B * 2 * np.pi * erb_bandwidth(cf)
    arg = 2 * np.pi * cf * T
    decay = np.exp(-B * T)  # pole radius: < 1 for every cf > 0, so every section is stable
    cos, sin = np.cos(arg), np.sin(arg)
    sos = np.zeros((cf.size, 4, 6))
    for k, root in enumerate((np.sqrt(3 + 2**1.5), -np.sqrt(3 + 2**1.5), np.sqrt(3 - 2**1.5), -np.sqrt(3 - 2**1.5))):
        sos[:, k, 0] = T
        sos[:, k, 1] = -T * decay * (cos + root * sin)
        sos[:, k, 3] = 1.0
        sos[:, k, 4] = -2 * decay * cos
        sos[:, k, 5] = decay**2
    # |H(e^{j arg})| of the whole cascade, then 1/4 of its log per section.
    zinv = np.exp(-1j * arg)[:, None]
    h = np.polyval(sos[:, :, 2::-1].transpose(2, 0, 1), zinv) / np.polyval(sos[:, :, :2:-1].transpose(2, 0, 1), zinv)
    gain = np.prod(np.abs(h), axis=1)
    sos[:, :, :3] /= gain[:, None, None] ** 0.25
    return sos


def _as_signal(x, name="x"):
    try:
        x = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} is not a numeric array: {exc}") from None
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D [n_samples] or 2-D [batch, n_samples], got shape {x.shape}")
    if x.shape[-1] == 0 or x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf samples")
    return x


class GammatoneFilterbank:
    """A bank of 4th-order gammatone filters, applied by a numba kernel vectorised across channels.

    Parameters
    ----------
    sr : float
        Sample rate in Hz (any rate; 8-96 kHz is tested).
    center_freqs : array_like, shape (n_channels,)
        Centre frequencies in Hz, e.g. from :func:`cochlea.erb_space`. Each must lie in ``(0, sr/2)``.
    dtype : {np.float32, np.float64}
        Precision of coefficients, state and output.

    Attributes
    ----------
    sos : np.ndarray, shape (n_channels, 4, 6)
        The float64 design (see :func:`gammatone_sos`).

    Examples
    --------
    >>> import numpy as np
    >>> from cochlea import erb_space
    >>> fb = GammatoneFilterbank(16000, erb_space(50, 7000, 32))
    >>> x = np.random.default_rng(0).standard_normal(16000)
    >>> fb.filter(x).shape
    (32, 16000)

    Streaming: carry the state from chunk to chunk and the output equals the whole-signal output.

    >>> zi = fb.initial_state()
    >>> y1, zi = fb.filter(x[:5000], zi)
    >>> y2, zi = fb.filter(x[5000:], zi)
    >>> bool(np.array_equal(np.concatenate([y1, y2], axis=1), fb.filter(x)))
    True
    """

    def __init__(self, sr, center_freqs, dtype=np.float32):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.sos = gammatone_sos(sr, center_freqs)
        self.sr = float(sr)
        self.center_freqs = np.asarray(center_freqs, dtype=np.float64).copy()
        self.center_freqs.setflags(write=False)
        self.dtype = dtype
        # Kernel layout (see _kernels._gammatone_block): rows b0, b1 x 4 sections, d1, d2, channels
        # contiguous for SIMD. The sections share b0 and the poles and have b2 = 0 by construction.
        # d1 = a1 + 2 and d2 = 1 - a2 are computed directly: as differences they would cancel.
        log_r = -GAMMATONE_B * 2 * np.pi * erb_bandwidth(self.center_freqs) / self.sr  # log pole radius
        d1 = -2 * np.expm1(log_r) + 4 * np.exp(log_r) * np.sin(np.pi * self.center_freqs / self.sr) ** 2
        d2 = -np.expm1(2 * log_r)
        coef = np.vstack([self.sos[:, 0, 0], self.sos[:, :, 1].T, d1, d2])
        self._coef = np.ascontiguousarray(coef, dtype=dtype)

    @property
    def n_channels(self):
        return self.center_freqs.size

    def __repr__(self):
        cf = self.center_freqs
        return (
            f"GammatoneFilterbank(sr={self.sr:g}, n_channels={self.n_channels}, "
            f"cf={cf.min():.1f}..{cf.max():.1f} Hz, dtype={self.dtype.name})"
        )

    def initial_state(self, batch=None):
        """Zero filter state: shape ``(n_channels, 4, 2)``, or ``(batch, n_channels, 4, 2)``."""
        shape = (self.n_channels, 4, 2) if batch is None else (int(batch), self.n_channels, 4, 2)
        return np.zeros(shape, dtype=self.dtype)

    def filter(self, x, zi=None, out=None):
        """Filter a signal through every channel.

        Parameters
        ----------
        x : np.ndarray, shape (n_samples,) or (batch, n_samples)
            Finite real samples. They are converted to the filterbank's dtype.
        zi : np.ndarray, optional
            State from :meth:`initial_state` or from a previous call. Without it the filters start
            at rest and only the output is returned.
        out : np.ndarray, optional
            C-contiguous array of the output's shape and dtype to write into. Reusing one buffer
            across calls skips the page faults of a fresh allocation, which cost as much as the
            filtering itself for long signals.

        Returns
        -------
        y : np.ndarray, shape (n_channels, n_samples) or (batch, n_channels, n_samples)
        zf : np.ndarray
            Final state, same shape as ``zi``; returned only when ``zi`` is given.
        """
        x = _as_signal(x)
        batched = x.ndim == 2
        xb = np.ascontiguousarray(x if batched else x[None], dtype=self.dtype)
        n_batch = xb.shape[0]
        if zi is None:
            z = np.zeros((n_batch, 8, self.n_channels), dtype=self.dtype)
        else:
            zi = np.asarray(zi)
            expect = (n_batch, self.n_channels, 4, 2) if batched else (self.n_channels, 4, 2)
            if zi.shape != expect:
                raise ValueError(f"zi must have shape {expect}, got {zi.shape}")
            if not np.all(np.isfinite(zi)):
                raise ValueError("zi contains NaN or inf")
            z = np.ascontiguousarray((zi if batched else zi[None]).reshape(n_batch, self.n_channels, 8).transpose(0, 2, 1), dtype=self.dtype)
        shape = (n_batch, self.n_channels, xb.shape[1])
        if out is None:
            y = np.empty(shape, dtype=self.dtype)
        else:
            expect = shape if batched else shape[1:]
            if out.shape != expect or out.dtype != self.dtype or not out.flags.c_contiguous:
                raise ValueError(f"out must be a C-contiguous {self.dtype} array of shape {expect}")
            y = out.reshape(shape)
        _kernels.gammatone_cascade(xb, self._coef, z, y)
        if not batched:
            y = y[0]
        if zi is None:
            return y
        zf = np.ascontiguousarray(z.transpose(0, 2, 1)).reshape(n_batch, self.n_channels, 4, 2)
        return y, zf if batched else zf[0]

    def impulse_response(self, n_samples):
        """Response of every channel to a unit impulse, shape ``(n_channels, n_samples)``."""
        x = np.zeros(int(n_samples))
        x[0] = 1.0
        return self.filter(x)


def gammatone_kernels(sr, center_freqs, *, order=4, bandwidth=GAMMATONE_B, floor_db=-60.0, dtype=np.float64):
    """Sample the analytic gammatone ``t**(n-1) exp(-2 pi b t) cos(2 pi f t)`` as unit-norm FIR kernels.

    ``b = bandwidth * ERB(f)``. Each kernel starts at ``t = 0`` and is truncated after the last sample
    whose envelope is within ``floor_db`` of the envelope peak.

    Parameters
    ----------
    sr : float
        Sample rate in Hz.
    center_freqs : array_like, shape (n_kernels,)
        Centre frequencies in Hz, each in ``(0, sr/2)``.
    order : int
        Gammatone order ``n`` (4 matches the IIR filterbank).
    bandwidth : float
        Bandwidth in ERBs.
    floor_db : float
        Truncation floor of the envelope relative to its peak, in dB (< 0).
    dtype : numpy dtype
        Output dtype.

    Returns
    -------
    kernels : np.ndarray, shape (n_kernels, max_length)
        Kernel ``m`` occupies ``kernels[m, :lengths[m]]`` with unit L2 norm; the rest is zero.
    lengths : np.ndarray of int64, shape (n_kernels,)

    Examples
    --------
    >>> import numpy as np
    >>> k, n = gammatone_kernels(16000, [100.0, 1000.0])
    >>> n.tolist()
    [1033, 277]
    >>> np.linalg.norm(k, axis=1).round(12).tolist()
    [1.0, 1.0]
    """
    sr, cf = _check_freqs(sr, center_freqs)
    if isinstance(order, bool) or int(order) != order or order < 1:
        raise ValueError(f"order must be a positive integer, got {order!r}")
    if not np.isfinite(floor_db) or floor_db >= 0:
        raise ValueError(f"floor_db must be a finite negative number of dB, got {floor_db!r}")
    if not np.isfinite(bandwidth) or bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")
    order = int(order)
    rate = 2 * np.pi * bandwidth * erb_bandwidth(cf)  # envelope decay rate, 1/s
    if order == 1:
        lengths = np.ceil(-np.log(10 ** (floor_db / 20)) / rate * sr).astype(np.int64) + 1
    else:
        # The envelope t^(n-1) exp(-rate t) peaks at (n-1)/rate; find where it falls to the floor past
        # the peak by Newton's method on log(env/peak) - floor = 0 in u = rate * t.
        p = order - 1
        target = floor_db / 20 * np.log(10)
        u = np.full(cf.shape, p + 10.0 * p)
        for _ in range(50):
            g = p * np.log(u / p) - (u - p) - target
            u = np.maximum(u - g / (p / u - 1), p * 1.0000001)
        lengths = np.floor(u / rate * sr).astype(np.int64) + 1
    kernels = np.zeros((cf.size, int(lengths.max())), dtype=np.float64)
    for m in range(cf.size):
        t = np.arange(lengths[m]) / sr
        k = t ** (order - 1) * np.exp(-rate[m] * t) * np.cos(2 * np.pi * cf[m] * t)
        kernels[m, : lengths[m]] = k / np.linalg.norm(k)
    return kernels.astype(dtype, copy=False), lengths
