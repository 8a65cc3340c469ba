"""Inner-hair-cell stage and cochleagram: rectify, compress, low-pass, then frame."""
from __future__ import annotations

import numpy as np
import scipy.signal

from .erb import erb_space
from .filterbank import GammatoneFilterbank, _as_signal


def hair_cell(bm, sr, *, compression="power", exponent=0.3, log_floor=1e-5, cutoff=1000.0, order=2):
    """Inner hair cell: half-wave rectification, compression, then a Butterworth low-pass.

    Parameters
    ----------
    bm : np.ndarray, shape (..., n_samples)
        Basilar-membrane motion, e.g. the output of :meth:`GammatoneFilterbank.filter`.
    sr : float
        Sample rate in Hz.
    compression : {"power", "log", "none"}
        ``"power"``: ``r ** exponent`` (Stevens-like, 0.3 by default); ``"log"``: ``log1p(r / log_floor)``;
        ``"none"``: rectification only.
    exponent : float
        Exponent of the power law, in (0, 1].
    log_floor : float
        Level at which the log law turns from linear to logarithmic.
    cutoff : float or None
        Low-pass cutoff in Hz (loss of phase locking, ~1 kHz in mammals); ``None`` skips it.
    order : int
        Butterworth order of the low-pass.

    Returns
    -------
    np.ndarray
        Same shape and dtype as ``bm``.

    Examples
    --------
    >>> import numpy as np
    >>> ihc = hair_cell(np.sin(np.linspace(0, 100, 1600)), 16000, cutoff=None)
    >>> bool(ihc.min() == 0.0), ihc.shape
    (True, (1600,))
    """
    bm = np.asarray(bm)
    if bm.dtype.kind != "f" or bm.ndim < 1 or bm.shape[-1] == 0:
        raise ValueError(f"bm must be a non-empty float array, got dtype {bm.dtype} and shape {bm.shape}")
    if not np.all(np.isfinite(bm)):
        raise ValueError("bm contains NaN or inf")
    r = np.maximum(bm, 0)
    if compression == "power":
        if not 0 < exponent <= 1:
            raise ValueError(f"exponent must be in (0, 1], got {exponent!r}")
        r = r**exponent
    elif compression == "log":
        if not log_floor > 0:
            raise ValueError(f"log_floor must be > 0, got {log_floor!r}")
        r = np.log1p(r / log_floor)
    elif compression != "none":
        raise ValueError(f"compression must be 'power', 'log' or 'none', got {compression!r}")
    if cutoff is None:
        return r.astype(bm.dtype, copy=False)
    if not 0 < cutoff < sr / 2:
        raise ValueError(f"cutoff must be in (0, sr/2 = {sr / 2:g}) Hz, got {cutoff!r}")
    sos = scipy.signal.butter(int(order), cutoff, fs=sr, output="sos")
    return scipy.signal.sosfilt(sos, r, axis=-1).astype(bm.dtype, copy=False)


def frame_means(a, hop_length, win_length):
    """Mean of ``a[..., t]`` over centred windows: frame ``k`` covers ``k*hop +- win/2``, zero-padded.

    Returns shape ``(..., 1 + n_samples // hop_length)``. Computed from a cumulative sum, so the cost
    does not grow with the window.
    """
    n = a.shape[-1]
    cs = np.zeros(a.shape[:-1] + (n + 1,), dtype=np.float64)
    np.cumsum(a, axis=-1, out=cs[..., 1:])
    centres = np.arange(1 + n // hop_length) * hop_length
    lo = np.clip(centres - win_length // 2, 0, n)
    hi = np.clip(centres - win_length // 2 + win_length, 0, n)
    return (cs[..., hi] - cs[..., lo]) / win_length


def cochleagram(
    x,
    sr,
    *,
    n_channels=64,
    fmin=50.0,
    fmax=None,
    center_freqs=None,
    frame_ms=25.0,
    hop_ms=10.0,
    db=True,
    dtype=np.float32,
    **hair_cell_kw,
):
    """Cochleagram: gammatone filterbank, hair cell, then mean hair-cell output per frame.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,) or (batch, n_samples)
        Audio.
    sr : float
        Sample rate in Hz.
    n_channels, fmin, fmax : int, float, float
        ERB-spaced channels from ``fmin`` to ``fmax`` (default ``0.45 * sr``); ignored if
        ``center_freqs`` is given.
    center_freqs : array_like, optional
        Explicit centre frequencies in Hz.
    frame_ms, hop_ms : float
        Frame length and hop in milliseconds. Frames are centred: frame ``k`` is centred at ``k * hop``.
    db : bool
        Return ``10 log10`` of the frame energy (floored at -120 dB) instead of linear values.
    dtype : numpy dtype
        Filterbank precision.
    **hair_cell_kw
        Passed to :func:`hair_cell` (``compression``, ``exponent``, ``cutoff``, ...).

    Returns
    -------
    np.ndarray, shape (n_channels, n_frames) or (batch, n_channels, n_frames)
        ``n_frames = 1 + n_samples // hop``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    >>> C = cochleagram(x, 16000, n_channels=32)
    >>> C.shape
    (32, 101)
    """
    x = _as_signal(x)
    if center_freqs is None:
        fmax = 0.45 * sr if fmax is None else fmax
        center_freqs = erb_space(fmin, fmax, n_channels)
    hop, win = int(round(hop_ms * sr / 1000)), int(round(frame_ms * sr / 1000))
    if hop < 1 or win < 1:
        raise ValueError(f"frame_ms={frame_ms} and hop_ms={hop_ms} must each span at least one sample at sr={sr}")
    bm = GammatoneFilterbank(sr, center_freqs, dtype=dtype).filter(x)
    energy = frame_means(hair_cell(bm, sr, **hair_cell_kw), hop, win)
    if db:
        energy = 10 * np.log10(np.maximum(energy, 1e-12))
    return energy.astype(np.float32 if dtype == np.float32 else np.float64)


def plot_cochleagram(C, sr, center_freqs, *, hop_ms=10.0, ax=None, title=None, cmap="magma"):
    """Show a cochleagram as an image: time in seconds across, centre frequency (ERB-spaced) up.

    Returns the matplotlib ``AxesImage``.
    """
    import matplotlib.pyplot as plt

    C = np.asarray(C)
    cf = np.asarray(center_freqs)
    if C.ndim != 2 or C.shape[0] != cf.size:
        raise ValueError(f"C must be [n_channels={cf.size}, n_frames], got shape {C.shape}")
    if ax is None:
        ax = plt.figure(figsize=(8, 4)).gca()
    duration = C.shape[1] * hop_ms / 1000
    img = ax.imshow(C, origin="lower", aspect="auto", cmap=cmap, extent=(0, duration, -0.5, cf.size - 0.5))
    ticks = np.linspace(0, cf.size - 1, min(cf.size, 6)).round().astype(int)
    ax.set_yticks(ticks, [f"{cf[i]:.0f}" for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("centre frequency (Hz)")
    if title:
        ax.set_title(title)
    # not sound level: cochleagram(db=True) is 10 log10 of the compressed hair-cell output
    ax.figure.colorbar(img, ax=ax, label="10 log10 hair-cell output" if np.nanmin(C) < 0 else "hair-cell output")
    return img
