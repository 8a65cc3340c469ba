"""Baseline spike encoders (send-on-delta, LIF, BSA, Poisson) that return the same SpikeTrain as spiketrum.

Every baseline works on the same cochlea as the rest of the package: ``channels`` ERB-spaced
gammatone channels from ``fmin`` to ``fmax``. Place coding follows SpikeTrain: the kernel index is
the cochlear channel, there is one level, and ON/OFF codes (delta, bsa) put polarity by place.

What each method spikes on (see :func:`encoded_signal`):

* ``delta``: the cochlear envelope, i.e. the hair-cell output (half-wave rectify, ^0.3, 1 kHz
  low-pass, :func:`cochlea.hair_cell`) averaged over a centred ``frame_ms`` window. At every frame
  centre this envelope *is* the cochleagram frame, and the 25 ms average removes the phase-locked
  ripple that would otherwise cost spikes in the low channels.
* ``lif`` and ``poisson``: the hair-cell output itself (the neuron integrates it; the Poisson rate is
  proportional to it, so spike counts are unbiased estimates of the cochleagram).
* ``bsa``: the band waveforms. The bands are zero-phase gammatone bands (power response of the
  4th-order gammatone, 1.019 ERB wide) normalised to sum to one at every frequency, so the bands
  add back to the input exactly and a code of the bands is a code of the waveform.

Exact spike counts: delta, lif and bsa each have one quantum (delta: the step; lif: the firing
threshold; bsa: the filter scale; a spike's |amplitude|) whose spike count falls as it rises. It
is calibrated by a bracketing search in log scale (bisection steps placed by interpolation, see
:func:`_calibrate`) until the count equals the target. Where it cannot, because the count steps
over the target (an ON/OFF pair appearing together) or the bracket has shrunk to 1e-7, the side
with the larger count is taken and the surplus spikes that come last in time are dropped (ties by
channel), which keeps every code exact up to the time of the cut. Poisson draws exactly the target.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numba
import numpy as np
import scipy.fft
import scipy.signal

from cochlea import GammatoneFilterbank, cochleagram, erb_bandwidth, erb_space, hair_cell
from cochlea.filterbank import GAMMATONE_B
from cochlea.haircell import frame_means

from .encoder import _as_audio
from .metrics import snr_db
from .spiketrain import SpikeTrain

METHODS = ("delta", "lif", "bsa", "poisson")
_EXPONENT = 0.3  # hair-cell compression, the cochleagram's default
# Cycle mean of max(cos, 0) ** 0.3: the hair-cell envelope of a unit sinusoid (inverts it in decoding).
_HC_MEAN = math.gamma((_EXPONENT + 1) / 2) / (2 * math.sqrt(math.pi) * math.gamma(_EXPONENT / 2 + 1))


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Everything that determines a baseline encoding; saved with every spike file.

    Exactly one of ``n_spikes`` and ``rate`` (spikes/s: round(rate x duration) spikes) is set.
    ``frame_ms`` is the envelope window (delta's envelope and the frames of
    :func:`decode_envelope`); ``tau_ms`` and ``refractory_ms`` shape the LIF neuron;
    ``bsa_cycles`` is the BSA filter length in periods of the channel's centre frequency and
    ``bsa_threshold`` the fraction of a spike's filter mass by which it must lower the L1 error;
    ``seed`` seeds the Poisson draw.
    """

    method: str
    sr: int
    rate: float | None = None
    n_spikes: int | None = None
    channels: int = 40
    fmin: float = 50.0
    fmax: float | None = None
    seed: int = 0
    frame_ms: float = 25.0
    tau_ms: float = 10.0
    refractory_ms: float = 1.0
    bsa_cycles: float = 0.25
    bsa_threshold: float = 0.5

    def __post_init__(self):
        def bad(msg):
            raise ValueError(msg)

        def number(name, zero_ok=False):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and (v >= 0 if zero_ok else v > 0)):
                bad(f"{name} must be a finite number {'>=' if zero_ok else '>'} 0, got {v!r}")

        if self.method not in METHODS:
            bad(f"unknown baseline method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (_is_int(self.sr) and self.sr > 0):
            bad(f"sr must be a positive integer, got {self.sr!r}")
        if (self.rate is None) == (self.n_spikes is None):
            bad("choose exactly one of rate and n_spikes")
        if self.n_spikes is not None and not (_is_int(self.n_spikes) and self.n_spikes >= 0):
            bad(f"n_spikes must be a non-negative integer, got {self.n_spikes!r}")
        if self.rate is not None:
            number("rate")
        if not (_is_int(self.channels) and self.channels >= 1):
            bad(f"channels must be a positive integer, got {self.channels!r}")
        number("fmin")
        fmax = self.resolved_fmax
        if not (np.isfinite(fmax) and self.fmin < fmax < self.sr / 2):
            bad(f"need 0 < fmin < fmax < sr/2 = {self.sr / 2:g} Hz, got fmin={self.fmin:g}, fmax={fmax:g}")
        if not (_is_int(self.seed) and self.seed >= 0):
            bad(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("frame_ms", "tau_ms", "bsa_cycles"):
            number(name)
        for name in ("refractory_ms", "bsa_threshold"):
            number(name, zero_ok=True)
        if round(self.frame_ms * self.sr / 1000) < 1:
            bad(f"frame_ms={self.frame_ms} is shorter than one sample at sr={self.sr}")

    # SpikeTrain reads these: one place per cochlear channel, one level, polarity by place for ON/OFF codes.
    @property
    def kernels(self):
        return self.channels

    @property
    def levels(self):
        return 1

    @property
    def polarity_channels(self):
        return self.method in ("delta", "bsa")

    @property
    def n_channels(self):
        return self.channels * (2 if self.polarity_channels else 1)

    @property
    def resolved_fmax(self):
        return float(self.fmax) if self.fmax is not None else min(8000.0, 0.45 * self.sr)

    def center_freqs(self):
        return erb_space(self.fmin, self.resolved_fmax, self.channels)

    def target(self, n_samples):
        """Spike count for a signal of ``n_samples`` samples."""
        return int(self.n_spikes) if self.n_spikes is not None else int(round(self.rate * n_samples / self.sr))

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s):
        d = json.loads(s)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# -- front end ------------------------------------------------------------------------------------
def _gammatone_power(f, cfs):
    """|G_c(f)|^2 of the 4th-order gammatone near its centre frequency, shape [channels, len(f)]."""
    u = (np.asarray(f)[None, :] - cfs[:, None]) / (GAMMATONE_B * erb_bandwidth(cfs))[:, None]
    return (1.0 / (1.0 + u * u)) ** 4


def _bands(x, cfg):
    """Zero-phase gammatone bands that sum to x (partition of unity in the frequency domain)."""
    n = x.size
    nfft = scipy.fft.next_fast_len(n + cfg.sr // 10)  # 100 ms of padding: the widest band response dies out well within it
    w = _gammatone_power(scipy.fft.rfftfreq(nfft, 1 / cfg.sr), cfg.center_freqs())
    w /= w.sum(axis=0)
    return scipy.fft.irfft(w * scipy.fft.rfft(x, nfft), nfft, axis=1)[:, :n]


def _frame_len(cfg):
    return int(round(cfg.frame_ms * cfg.sr / 1000))


def _moving_average(a, win):
    """``frame_means(a, 1, win)`` of the cochleagram (centred, zero-padded window) at every sample, by slicing.

    Zero padding leaves the cumulative sums bit-identical, so the value at a frame centre is bit-identical
    to that cochleagram frame.
    """
    left = win // 2
    cs = np.zeros(a.shape[:-1] + (a.shape[-1] + win + 1,))
    np.cumsum(a, axis=-1, out=cs[..., left + 1 : left + 1 + a.shape[-1]])
    cs[..., left + 1 + a.shape[-1] :] = cs[..., left + a.shape[-1], None]
    return (cs[..., win:-1] - cs[..., :-win - 1]) / win


def encoded_signal(x, cfg):
    """The per-channel signal a baseline spikes on, shape ``[channels, n_samples]``, float64.

    ``delta``: hair-cell output averaged over a centred ``frame_ms`` window (the cochlear
    envelope); ``lif``: hair-cell output; ``poisson``: hair-cell output clipped at 0 (a rate);
    ``bsa``: zero-phase gammatone band waveforms that sum to ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> bands = encoded_signal(x, BaselineConfig("bsa", 8000, n_spikes=10, channels=16))
    >>> bands.shape, bool(np.allclose(bands.sum(axis=0), x))
    ((16, 4000), True)
    """
    x = _as_audio(x)
    if cfg.method == "bsa":
        return _bands(x, cfg)
    hc = hair_cell(GammatoneFilterbank(cfg.sr, cfg.center_freqs()).filter(x), cfg.sr, exponent=_EXPONENT)
    if cfg.method == "delta":
        return _moving_average(hc, _frame_len(cfg))
    # The low-pass rings slightly below zero after sharp onsets; a rate cannot be negative.
    return np.maximum(hc, 0.0, dtype=np.float64) if cfg.method == "poisson" else hc.astype(np.float64)


def _bsa_filters(cfg):
    """Peak-normalised Hann filters, ``bsa_cycles`` periods of each centre frequency long (>= 1 sample)."""
    lengths = np.maximum(1, np.round(cfg.bsa_cycles * cfg.sr / cfg.center_freqs())).astype(np.int64)
    filters = np.zeros((cfg.channels, lengths.max()))
    for c, n in enumerate(lengths):
        w = np.sin(np.pi * np.arange(1, n + 1) / (n + 1)) ** 2  # Hann without its zero end points
        filters[c, :n] = w / w.max()
    return filters, lengths


# -- spiking kernels: identical arithmetic whether counting or recording, so counts always agree ---
@numba.njit(cache=True)
def _delta_kernel(env, delta, record, out_s, out_c, out_p):
    """Send-on-delta with the reference on the lattice q * delta: after each sample |env - q delta| < delta."""
    count = 0
    for c in range(env.shape[0]):
        q = 0.0  # the reference starts at the resting envelope, 0
        up, down = delta, -delta
        for t in range(env.shape[1]):
            e = env[c, t]
            if e >= up:  # the common case, no crossing, costs two comparisons
                new = max(q + 1.0, math.floor(e / delta))
            elif e <= down:
                new = min(q - 1.0, math.ceil(e / delta))
            else:
                continue
            k = int(abs(new - q))
            if record:
                for j in range(count, count + k):
                    out_s[j], out_c[j], out_p[j] = t, c, new > q
            count += k
            q = new
            up, down = (q + 1.0) * delta, (q - 1.0) * delta
    return count


@numba.njit(cache=True)
def _lif_kernel(drive, theta, record, out_s, out_c, out_p, decay, refractory):
    """Leaky integrate-and-fire per channel, subtractive reset; the membrane is clamped while refractory."""
    count = 0
    for c in range(drive.shape[0]):
        v = 0.0
        wait = 0
        for t in range(drive.shape[1]):
            if wait > 0:
                wait -= 1
                continue
            v = v * decay + drive[c, t]
            if v >= theta:
                v -= theta  # subtractive reset keeps the excess charge, so the count tracks the integral
                wait = refractory
                if record:
                    out_s[count], out_c[count], out_p[count] = t, c, 1
                count += 1
    return count


@numba.njit(cache=True)
def _bsa_kernel(bands, scale, record, out_s, out_c, out_p, filters, lengths, n, threshold):
    """Ben's Spiker Algorithm with ON/OFF: at each sample, fire +h (or -h) and subtract it from the
    band if that lowers the L1 error over the filter window by more than ``threshold * sum(h)``.

    ``bands`` is zero-padded past ``n`` by at least the longest filter. The error drop of firing
    +h is sum_k clip(2 s_k - h_k, -h_k, h_k) <= 2 sum_k max(s_k, 0) - sum_k h_k, so a sliding sum of
    the positive (negative) part skips the samples where an ON (OFF) spike cannot fire.
    """
    count = 0
    buf = np.empty(bands.shape[1])
    for c in range(bands.shape[0]):
        L = lengths[c]
        h = filters[c, :L] * scale
        need = threshold * h.sum()
        half = 0.5 * (h.sum() + need) * (1.0 - 1e-9)  # margin for rounding drift of the sliding sums
        buf[:] = bands[c]
        pos = 0.0
        neg = 0.0
        for k in range(L):
            pos += max(buf[k], 0.0)
            neg += max(-buf[k], 0.0)
        for t in range(n):
            if pos > half or neg > half:
                gain_on = 0.0
                gain_off = 0.0
                for k in range(L):
                    s = buf[t + k]
                    gain_on += min(h[k], max(-h[k], 2.0 * s - h[k]))
                    gain_off += min(h[k], max(-h[k], -2.0 * s - h[k]))
                sign = 1.0 if gain_on > need else (-1.0 if gain_off > need else 0.0)  # never both: they sum to <= 0
                if sign != 0.0:
                    if record:
                        out_s[count], out_c[count], out_p[count] = t, c, sign > 0.0
                    count += 1
                    pos = 0.0
                    neg = 0.0
                    for k in range(L):
                        buf[t + k] -= sign * h[k]
                        pos += max(buf[t + k], 0.0)
                        neg += max(-buf[t + k], 0.0)
            pos += max(buf[t + L], 0.0) - max(buf[t], 0.0)
            neg += max(-buf[t + L], 0.0) - max(-buf[t], 0.0)
    return count


def _calibrate(count, target, guess, method):
    """A threshold whose count is the target or just above it; counts fall as the threshold rises.

    Bracketing search in log(threshold) on f = log(count + 1) - log(target + 1), which is close to
    linear: until both signs of f are seen it extrapolates along slope -1 (count ~ 1 / threshold, at
    most 16x per step); then it interpolates between the bracket ends (regula falsi, with the
    Illinois halving when one end stays put, kept inside the middle 90% of the bracket).
    """
    lo, f_lo, hi, f_hi, c_hi = 0.0, None, math.inf, None, 0
    theta, side, stalled = guess, 0, 0
    while True:
        c = count(theta)
        f = math.log(c + 1) - math.log(target + 1)
        if c >= target:
            lo, f_lo, c_lo = theta, f, c
            if side == 1 and f_hi is not None:
                f_hi /= 2
            side = 1
        else:
            stalled = stalled + 1 if f_lo is None and 0 < c <= c_hi else 0
            hi, f_hi, c_hi = theta, f, c
            if side == -1 and f_lo is not None:
                f_lo /= 2
            side = -1
        if f_lo is not None and f_hi is not None:
            # Stop on a hit, where the count steps from target + 1 to target - 1 (an ON/OFF pair appearing
            # together), or on a bracket so narrow that the count is unlikely to change inside it.
            if c_lo == target or c_lo == target + 1 == c_hi + 2 or hi < lo * (1 + 1e-7):
                return lo, c_lo
            theta = lo * (hi / lo) ** min(0.95, max(0.05, f_lo / (f_lo - f_hi)))
        elif f_lo is None:
            if stalled == 4 or theta == 0.0:  # the count has saturated (refractory period, one spike per sample)
                raise ValueError(f"{method} cannot produce {target} spikes from this signal (at most about {c}); lower the rate")
            theta = hi * max(1 / 16, min(1 / 2, math.exp(f)))
        else:
            theta = lo * min(16.0, max(2.0, math.exp(f)))


def _threshold_code(kernel, signal, target, guess, method, *args):
    """Calibrate the kernel's threshold to ``target`` spikes; returns (threshold, samples, channel, polarity)."""
    none = (np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int8))
    theta, n = _calibrate(lambda th: kernel(signal, th, False, *none, *args), target, guess, method)
    out = (np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.int8))
    kernel(signal, theta, True, *out, *args)
    keep = np.lexsort((out[1], out[0]))[:target]  # a surplus from a jump in the count: drop the last spikes in time
    return (theta,) + tuple(a[keep] for a in out)


def encode_baseline_with(x, cfg):
    """Encode with a ready :class:`BaselineConfig`; see :func:`encode_baseline`."""
    x = _as_audio(x)
    n, target = x.size, cfg.target(x.size)
    sig = encoded_signal(x, cfg)
    if cfg.method == "delta":
        scale = (np.abs(sig[:, 0]).sum() + np.abs(np.diff(sig, axis=1)).sum()) / max(target, 1)  # total variation / count
    elif cfg.method == "bsa":
        filters, lengths = _bsa_filters(cfg)
        scale = (np.abs(sig).sum(axis=1) / filters.sum(axis=1)).sum() / max(target, 1)  # L1 mass / mass of one spike
    else:
        scale = sig.sum() / max(target, 1)  # charge (or rate mass) per spike
    empty = SpikeTrain([], [], [], [], [], np.zeros((cfg.channels, 1)), cfg, n)
    if not scale > 0:
        warnings.warn("silent input: encoded to zero spikes", stacklevel=2)
        return empty
    if target == 0:
        return empty
    if cfg.method == "poisson":
        # Conditioned on its total, a Poisson process is multinomial: draw target i.i.d. (channel, time)
        # bins with probability proportional to the rate, by inverse-CDF sampling.
        cdf = np.cumsum(sig.ravel())
        u = np.random.default_rng(cfg.seed).random(target) * cdf[-1]
        channel, samples = np.divmod(np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1), n)
        polarity = np.ones(target, np.int8)
    elif cfg.method == "delta":
        scale, samples, channel, polarity = _threshold_code(_delta_kernel, sig, target, scale, "delta")
    elif cfg.method == "lif":
        decay = math.exp(-1000.0 / (cfg.tau_ms * cfg.sr))
        refractory = int(round(cfg.refractory_ms * cfg.sr / 1000))
        scale, samples, channel, polarity = _threshold_code(_lif_kernel, sig, target, scale, "lif", decay, refractory)
    else:
        padded = np.zeros((cfg.channels, n + filters.shape[1]))
        padded[:, :n] = sig
        scale, samples, channel, polarity = _threshold_code(_bsa_kernel, padded, target, scale, "bsa", filters, lengths, n,
                                                           float(cfg.bsa_threshold))
    amplitude = np.where(polarity > 0, scale, -scale)
    return SpikeTrain(samples, channel, np.zeros(target, np.int8), polarity, amplitude, np.full((cfg.channels, 1), scale), cfg, n)


def encode_baseline(x, sr, method, *, rate=None, n_spikes=None, channels=40, fmin=50.0, fmax=None, **params):
    """Encode audio with a baseline spike code, calibrated to an exact spike count.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,)
        Mono audio.
    sr : int
        Sample rate in Hz.
    method : {"delta", "lif", "bsa", "poisson"}
        ``delta``: send-on-delta ON/OFF spikes on the cochlear envelope (amplitude +-delta).
        ``lif``: a leaky integrate-and-fire neuron per channel driven by the hair-cell output
        (amplitude: the threshold). ``bsa``: Ben's Spiker Algorithm with ON/OFF spikes on each
        gammatone band waveform (amplitude: +-filter scale). ``poisson``: Poisson spikes at a rate
        proportional to the hair-cell output (amplitude: the envelope quantum per spike).
    rate, n_spikes :
        Exactly one: ``n_spikes`` spikes, or ``rate`` spikes/s, i.e. round(rate x duration) spikes.
    channels : int
        ERB-spaced cochlear channels.
    fmin, fmax : float
        Lowest and highest centre frequency (fmax default: min(8 kHz, 0.45 sr)).
    **params
        Other :class:`BaselineConfig` fields: ``seed``, ``frame_ms``, ``tau_ms``,
        ``refractory_ms``, ``bsa_cycles``, ``bsa_threshold``.

    Returns
    -------
    SpikeTrain
        Exactly the target number of spikes (zero, with a warning, for silent input). Every
        spike's |amplitude|, and every entry of ``level_amplitudes``, is the calibrated quantum.

    Raises
    ------
    ValueError
        Bad configuration or audio, or a count the method cannot reach (lif: refractory period;
        bsa: one spike per sample and channel).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> [len(encode_baseline(x, 16000, m, rate=1000)) for m in METHODS]
    [500, 500, 500, 500]
    >>> encode_baseline(x, 16000, "delta", n_spikes=300).n_channels
    80
    """
    cfg = BaselineConfig(method, int(sr), rate=rate, n_spikes=n_spikes, channels=channels, fmin=fmin, fmax=fmax, **params)
    return encode_baseline_with(x, cfg)


# -- decoding ---------------------------------------------------------------------------------------
def _impulses(st):
    """Spikes on a [channels, n_samples] grid, each worth its place's codebook amplitude, signed by
    polarity in ON/OFF codes. Decoding reads only spikes and codebook, so perturbed trains decode too."""
    c, n = st.config.kernels, st.n_samples
    sign = np.where(st.polarity > 0, 1.0, -1.0) if st.config.polarity_channels else np.ones(len(st))
    grid = np.bincount(st.kernel.astype(np.int64) * n + st.samples, sign, minlength=c * n).reshape(c, n)
    return grid * st.level_amplitudes[:, :1]


def _lif_drive(mass, st):
    """Invert the LIF's rate: the constant drive that fires at the observed rate (mass / threshold spikes
    per sample). The interval is T = 1 / rate - refractory and a drive I fires every T samples when
    I (1 - d^T) / (1 - d) = threshold, d the leak per sample; without this the leak biases weak channels low."""
    cfg, theta = st.config, st.level_amplitudes[:, :1]
    d = math.exp(-1000.0 / (cfg.tau_ms * cfg.sr))
    rate = np.divide(mass, theta, out=np.zeros_like(mass), where=theta > 0)
    interval = np.maximum(1.0 / np.maximum(rate, 1e-300) - round(cfg.refractory_ms * cfg.sr / 1000), 1.0)
    return np.where(rate > 0, theta * (1.0 - d) / (1.0 - d**interval), 0.0)


def _sample_envelope(st):
    """Per-sample envelope of an envelope code: delta's staircase, or the spike mass averaged over frame_ms."""
    if st.config.method == "delta":
        return np.cumsum(_impulses(st), axis=1)
    mass = _moving_average(_impulses(st), _frame_len(st.config))
    return _lif_drive(mass, st) if st.config.method == "lif" else mass


def decode_baseline(st):
    """Audio of length ``st.n_samples`` from a baseline spike train.

    ``bsa`` carries the waveform: each band is its spikes convolved with the band's filter and the
    bands sum to the audio. ``delta``, ``lif`` and ``poisson`` carry only the cochlear envelope:
    it is reconstructed per sample, the hair-cell compression is inverted to a band amplitude, and
    each channel modulates a cosine at its centre frequency (scaled for the overlap of
    neighbouring channels). Phase and fine structure are lost, so their audio SNR is expected to
    be poor (near or below 0 dB); compare them with :func:`envelope_snr_db` instead.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum.metrics import snr_db
    >>> x = np.sin(2 * np.pi * 300 * np.arange(4000) / 8000)
    >>> st = encode_baseline(x, 8000, "bsa", rate=4000)
    >>> y = decode_baseline(st)
    >>> y.shape, bool(snr_db(x, y) > 5)
    ((4000,), True)
    """
    cfg, n = st.config, st.n_samples
    if not isinstance(cfg, BaselineConfig):
        raise ValueError("decode_baseline needs a baseline spike train; decode spiketrum trains with spiketrum.decode")
    cfs = cfg.center_freqs()
    if cfg.method == "bsa":
        filters, lengths = _bsa_filters(cfg)
        imp = _impulses(st)
        y = np.zeros(n)
        for c in np.unique(st.kernel):
            y += scipy.signal.oaconvolve(imp[c], filters[c, : lengths[c]])[:n]
        return y
    # A tone at f excites every channel c with power |G_c(f)|^2; dividing each channel's amplitude by
    # sqrt(sum_k |G_k(cf_c)|^2) keeps the total power of the incoherent carriers that of the tone.
    overlap = np.sqrt(_gammatone_power(cfs, cfs).sum(axis=0))
    amp = (np.maximum(_sample_envelope(st), 0.0) / _HC_MEAN) ** (1 / _EXPONENT) / overlap[:, None]
    return np.einsum("ct,ct->t", amp, np.cos(2 * np.pi * cfs[:, None] * np.arange(n) / cfg.sr))


def _envelope_bank(st):
    """Centre frequencies and frame length of the envelope domain: the train's own, or the baseline defaults."""
    cfg = st.config if isinstance(st.config, BaselineConfig) else BaselineConfig("poisson", st.sr, n_spikes=0)
    return cfg.center_freqs(), cfg.frame_ms


def _cochleagram(x, sr, cfs, frame_ms, hop_ms):
    return cochleagram(x, sr, center_freqs=cfs, frame_ms=frame_ms, hop_ms=hop_ms, db=False, exponent=_EXPONENT).astype(np.float64)


def decode_envelope(st, hop_ms=10.0):
    """Cochleagram-like envelope ``[channels, 1 + n_samples // hop]`` (linear) from any spike train.

    Frames are those of :func:`cochlea.cochleagram` with the train's channels and ``frame_ms``
    (spiketrum trains: the baseline defaults, 40 channels and 25 ms). ``delta``: the staircase at
    each frame centre; ``lif``, ``poisson``: spike mass per frame (each LIF spike stands for one
    threshold of integrated drive, corrected for the leak); ``bsa`` and ``spiketrum``: the cochleagram
    of the decoded audio (``spiketrum.decode(st, exact=True)``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> decode_envelope(encode_baseline(x, 16000, "lif", rate=2000)).shape
    (40, 51)
    """
    cfs, frame_ms = _envelope_bank(st)
    hop, n = int(round(hop_ms * st.sr / 1000)), st.n_samples
    if hop < 1:
        raise ValueError(f"hop_ms={hop_ms} is shorter than one sample at sr={st.sr}")
    method = st.config.method
    if method == "spiketrum":
        from .encoder import decode

        return _cochleagram(decode(st, exact=True), st.sr, cfs, frame_ms, hop_ms)
    if method == "bsa":
        return _cochleagram(decode_baseline(st), st.sr, cfs, frame_ms, hop_ms)
    if method == "delta":  # the envelope at a frame centre is the frame mean of the hair-cell output
        return _sample_envelope(st)[:, np.minimum(np.arange(1 + n // hop) * hop, n - 1)]
    mass = frame_means(_impulses(st), hop, _frame_len(st.config))
    return _lif_drive(mass, st) if method == "lif" else mass


def envelope_snr_db(st, x, hop_ms=10.0):
    """SNR (dB) of :func:`decode_envelope` against the linear cochleagram of ``x`` on the same frames.

    Works for every train, spiketrum's included, so waveform and envelope codes compare on one scale.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> bool(envelope_snr_db(encode_baseline(x, 16000, "delta", rate=4000), x) > 5)
    True
    """
    x = _as_audio(x)
    if x.size != st.n_samples:
        raise ValueError(f"x has {x.size} samples but the spike train encodes {st.n_samples}")
    cfs, frame_ms = _envelope_bank(st)
    return snr_db(_cochleagram(x, st.sr, cfs, frame_ms, hop_ms), decode_envelope(st, hop_ms))
