"""Seeded perturbations of a SpikeTrain (deletion, jitter, insertion, channel dropout) for robustness tests.

Each function returns a new SpikeTrain with the same config and length and leaves its input
untouched. It works for spiketrum and baseline trains alike. The operation and its arguments are
appended to ``meta["perturb"]``, so a saved perturbed train says how it was made.
"""
from __future__ import annotations

import numpy as np

from .spiketrain import SpikeTrain

_FIELDS = ("samples", "kernel", "level", "polarity", "amplitude")


def _check(name, value, lo, hi=np.inf):
    if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and lo <= value <= hi and np.isfinite(value)):
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")


def _rebuild(st, fields, op):
    """A new train from replacement spike arrays (SpikeTrain re-sorts them by time)."""
    meta = dict(st.meta)
    meta["perturb"] = list(meta.get("perturb", [])) + [op]
    return SpikeTrain(**fields, level_amplitudes=st.level_amplitudes.copy(), config=st.config, n_samples=st.n_samples, meta=meta)


def _subset(st, keep, op):
    return _rebuild(st, {k: getattr(st, k)[keep] for k in _FIELDS}, op)


def delete(st, p, seed=0):
    """Drop each spike independently with probability ``p``.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum.baselines import encode_baseline
    >>> st = encode_baseline(np.random.default_rng(0).standard_normal(8000), 16000, "poisson", n_spikes=1000)
    >>> len(delete(st, 0.0)), len(delete(st, 1.0)), len(delete(st, 0.5, seed=1)) < 1000
    (1000, 0, True)
    """
    _check("p", p, 0, 1)
    return _subset(st, np.random.default_rng(seed).random(len(st)) >= p, {"op": "delete", "p": float(p), "seed": int(seed)})


def jitter(st, sigma_ms, seed=0):
    """Shift every spike by an independent N(0, sigma_ms) time, rounded to samples and clipped to the signal.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum.baselines import encode_baseline
    >>> st = encode_baseline(np.random.default_rng(0).standard_normal(8000), 16000, "lif", n_spikes=500)
    >>> jitter(st, 0.0) == st, len(jitter(st, 2.0)) == len(st)
    (True, True)
    """
    _check("sigma_ms", sigma_ms, 0)
    shift = np.round(np.random.default_rng(seed).normal(0.0, sigma_ms * st.sr / 1000, len(st))).astype(np.int64)
    fields = {k: getattr(st, k) for k in _FIELDS}
    fields["samples"] = np.clip(st.samples + shift, 0, st.n_samples - 1)
    return _rebuild(st, fields, {"op": "jitter", "sigma_ms": float(sigma_ms), "seed": int(seed)})


def insert(st, rate, seed=0):
    """Add spurious spikes: a Poisson number with mean ``rate`` x channels x duration, uniform in time and channel.

    Each new spike's output channel is split into (kernel, level, polarity) the way
    :attr:`SpikeTrain.channels` combines them (a random polarity where polarity is not by place), and
    its amplitude is the place's representative ``level_amplitudes[kernel, level]`` with the sign
    of the polarity.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum.baselines import encode_baseline
    >>> st = encode_baseline(np.random.default_rng(0).standard_normal(16000), 16000, "delta", n_spikes=100)
    >>> noisy = insert(st, 10.0)
    >>> len(noisy) > len(st), bool(np.all(noisy.channels < st.n_channels))
    (True, True)
    """
    _check("rate", rate, 0)
    rng = np.random.default_rng(seed)
    cfg = st.config
    n_new = rng.poisson(rate * st.n_channels * st.duration)
    samples = rng.integers(0, st.n_samples, n_new)
    channel = rng.integers(0, st.n_channels, n_new)
    if cfg.polarity_channels:
        place, polarity = np.divmod(channel, 2)
    else:
        place, polarity = channel, rng.integers(0, 2, n_new)
    kernel, level = np.divmod(place, cfg.levels)
    amplitude = np.where(polarity > 0, 1.0, -1.0) * st.level_amplitudes[kernel, level]
    new = dict(samples=samples, kernel=kernel, level=level, polarity=polarity, amplitude=amplitude)
    fields = {k: np.concatenate([getattr(st, k), new[k].astype(getattr(st, k).dtype)]) for k in _FIELDS}
    return _rebuild(st, fields, {"op": "insert", "rate": float(rate), "seed": int(seed)})


def drop_channels(st, p=None, seed=0, *, channels=None):
    """Silence output channels: a random ``round(p x n_channels)`` of them, or exactly ``channels``.

    The silenced channels are recorded in ``meta["perturb"][-1]["channels"]``.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum.baselines import encode_baseline
    >>> st = encode_baseline(np.random.default_rng(0).standard_normal(8000), 16000, "poisson", n_spikes=2000)
    >>> out = drop_channels(st, channels=[0, 5])
    >>> bool(np.isin(out.channels, [0, 5]).any()), len(drop_channels(st, 1.0))
    (False, 0)
    """
    if (p is None) == (channels is None):
        raise ValueError("give exactly one of p and channels")
    if channels is None:
        _check("p", p, 0, 1)
        dropped = np.random.default_rng(seed).choice(st.n_channels, int(round(p * st.n_channels)), replace=False)
    else:
        dropped = np.asarray(channels)
        if dropped.size == 0:
            dropped = dropped.astype(np.int64)  # np.asarray([]) is float
        if dropped.ndim != 1 or dropped.dtype.kind not in "iu" or np.any(dropped < 0) or np.any(dropped >= st.n_channels):
            raise ValueError(f"channels must be a list of integers in [0, {st.n_channels}), got {channels!r}")
    dropped = np.unique(dropped).astype(np.int64)
    op = {"op": "drop_channels", "p": None if p is None else float(p), "seed": int(seed), "channels": dropped.tolist()}
    return _subset(st, ~np.isin(st.channels, dropped), op)
