"""Quality and cost of a spike code."""
from __future__ import annotations

import numpy as np


def snr_db(x, y):
    """Signal-to-noise ratio of reconstruction ``y`` against reference ``x``, in dB."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    noise = np.sum((x - y) ** 2)
    signal = np.sum(x**2)
    if signal == 0:
        return float("nan")
    return float("inf") if noise == 0 else float(10 * np.log10(signal / noise))


def segmental_snr_db(x, y, sr, frame_ms=20.0, clamp=(-10.0, 35.0)):
    """Mean per-frame SNR over frames with signal energy, each clamped to ``clamp`` dB (speech-coding convention)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = max(1, int(sr * frame_ms / 1000))
    k = x.size // n
    if k == 0:
        return snr_db(x, y)
    xs, es = x[: k * n].reshape(k, n), (x - y)[: k * n].reshape(k, n)
    sig, err = (xs**2).sum(1), (es**2).sum(1)
    keep = sig > 0
    if not keep.any():
        return float("nan")
    seg = 10 * np.log10(sig[keep] / np.maximum(err[keep], 1e-300))
    return float(np.clip(seg, *clamp).mean())


def spikes_per_second(st):
    return len(st) / st.duration


def bits_per_spike(st):
    """Bits to address one spike: its channel plus its time stamp at sample resolution."""
    return float(np.log2(st.n_channels) + np.log2(max(st.n_samples, 2)))


def sparsity(st):
    """Fraction of (sample, channel) slots that hold no spike."""
    return 1.0 - len(st) / (st.n_samples * st.n_channels)


def report(st, x=None):
    """Dictionary of the metrics above; SNRs need the source audio ``x``.

    ``envelope_snr_db`` compares cochleagrams (see :func:`spiketrum.baselines.envelope_snr_db`), the
    one measure every encoder, waveform code or envelope code, can be held to.
    """
    from .baselines import envelope_snr_db
    from .encoder import decode

    out = {"spikes": len(st), "duration_s": st.duration, "spikes_per_second": spikes_per_second(st),
           "n_channels": st.n_channels, "bits_per_spike": bits_per_spike(st), "sparsity": sparsity(st)}
    if x is not None:
        xe, xq = decode(st, exact=True), decode(st)
        out.update(snr_exact_db=snr_db(x, xe), snr_levels_db=snr_db(x, xq), segsnr_exact_db=segmental_snr_db(x, xe, st.sr),
                   envelope_snr_db=envelope_snr_db(st, x))
    return out
