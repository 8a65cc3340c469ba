"""Quality and cost of a spike code."""
from __future__ import annotations

import numpy as np

from .io import as_audio
from .registry import envelope_cochleagram


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


def decode_envelope(st, hop_ms=10.0):
    """Cochleagram-like envelope ``[channels, 1 + n_samples // hop]`` (linear) decoded from any spike train.

    Each encoder config decodes its own (:meth:`~spiketrum.registry.EncoderConfig.decode_envelope`):
    envelope codes (delta, lif, poisson) from their spikes directly, waveform codes (spiketrum, bsa)
    as the cochleagram of their decoded audio.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> decode_envelope(encode(x, 16000, rate=2000, method="lif")).shape
    (40, 51)
    """
    hop = int(round(hop_ms * st.sr / 1000))
    if hop < 1:
        raise ValueError(f"hop_ms={hop_ms} is shorter than one sample at sr={st.sr}")
    return st.config.decode_envelope(st, hop_ms)


def envelope_snr_db(st, x, hop_ms=10.0):
    """SNR (dB) of :func:`decode_envelope` against the linear cochleagram of ``x`` on the same frames.

    Works for every train, spiketrum's included, so waveform and envelope codes compare on one scale.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> bool(envelope_snr_db(encode(x, 16000, rate=4000, method="delta"), x) > 5)
    True
    """
    x = as_audio(x)
    if x.size != st.n_samples:
        raise ValueError(f"x has {x.size} samples but the spike train encodes {st.n_samples}")
    reference = envelope_cochleagram(x, st.sr, *st.config.envelope_bank(), hop_ms)
    return snr_db(reference, decode_envelope(st, hop_ms))


def report(st, x=None):
    """Dictionary of the metrics above; SNRs need the source audio ``x``.

    ``envelope_snr_db`` compares cochleagrams (:func:`envelope_snr_db`), the one measure every
    encoder, waveform code or envelope code, can be held to.
    """
    out = {"spikes": len(st), "duration_s": st.duration, "spikes_per_second": spikes_per_second(st),
           "n_channels": st.n_channels, "bits_per_spike": bits_per_spike(st), "sparsity": sparsity(st)}
    if x is not None:
        xe, xq = st.config.decode(st, exact=True), st.config.decode(st)
        out.update(snr_exact_db=snr_db(x, xe), snr_levels_db=snr_db(x, xq), segsnr_exact_db=segmental_snr_db(x, xe, st.sr),
                   envelope_snr_db=envelope_snr_db(st, x))
    return out
