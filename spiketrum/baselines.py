"""Baseline spike encoders (send-on-delta, LIF, BSA, Poisson) that return the same SpikeTrain as spiketrum.

Each baseline is an encoder config (:class:`DeltaConfig`, :class:`LIFConfig`, :class:`BSAConfig`,
:class:`PoissonConfig`, all :class:`BaselineConfig`), registered under its name. Every baseline
works on the same cochlea as the rest of the package: ``kernels`` ERB-spaced gammatone channels
from ``fmin`` to ``fmax``. Place coding follows SpikeTrain: the kernel index is the cochlear
channel, there is one level, and ON/OFF codes (delta, bsa) put polarity by place.

What each baseline spikes on (see :meth:`BaselineConfig.encoded_signal`):

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
import math
import warnings
from typing import ClassVar

import numba
import numpy as np
import scipy.fft
import scipy.signal

from cochlea import GammatoneFilterbank, erb_bandwidth, hair_cell
from cochlea.filterbank import GAMMATONE_B
from cochlea.haircell import frame_means

from .registry import ENCODERS, ENVELOPE_EXPONENT, EncoderConfig, register
from .spiketrain import SpikeTrain

# Cycle mean of max(cos, 0) ** 0.3: the hair-cell envelope of a unit sinusoid (inverts it in decoding).
_HC_MEAN = math.gamma((ENVELOPE_EXPONENT + 1) / 2) / (2 * math.sqrt(math.pi) * math.gamma(ENVELOPE_EXPONENT / 2 + 1))


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class BaselineConfig(EncoderConfig):
    """What every baseline encoding shares; saved with every spike file. Use a subclass.

    Exactly one of ``n_spikes`` and ``rate`` (spikes/s: round(rate x duration) spikes) is set.
    ``kernels`` is the number of cochlear channels, ``frame_ms`` the envelope window (delta's
    envelope and the frames of :meth:`decode_envelope`).
    """

    sr: int
    rate: float | None = None
    n_spikes: int | None = None
    kernels: int = 40
    fmin: float = 50.0
    fmax: float | None = None
    frame_ms: float = 25.0

    # SpikeTrain reads these: one place per cochlear channel, one level; ON/OFF codes put polarity by place.
    levels: ClassVar[int] = 1
    polarity_channels: ClassVar[bool] = False

    def __post_init__(self):
        if type(self) is BaselineConfig:
            raise TypeError("BaselineConfig is abstract: use DeltaConfig, LIFConfig, BSAConfig or PoissonConfig")
        if not (_is_int(self.sr) and self.sr > 0):
            self._bad(f"sr must be a positive integer, got {self.sr!r}")
        if (self.rate is None) == (self.n_spikes is None):
            self._bad("choose exactly one of rate and n_spikes")
        if self.n_spikes is not None and not (_is_int(self.n_spikes) and self.n_spikes >= 0):
            self._bad(f"n_spikes must be a non-negative integer, got {self.n_spikes!r}")
        if self.rate is not None:
            self._number("rate")
        if not (_is_int(self.kernels) and self.kernels >= 1):
            self._bad(f"kernels must be a positive integer, got {self.kernels!r}")
        self._number("fmin")
        fmax = self.resolved_fmax
        if not (np.isfinite(fmax) and self.fmin < fmax < self.sr / 2):
            self._bad(f"need 0 < fmin < fmax < sr/2 = {self.sr / 2:g} Hz, got fmin={self.fmin:g}, fmax={fmax:g}")
        self._number("frame_ms")
        if round(self.frame_ms * self.sr / 1000) < 1:
            self._bad(f"frame_ms={self.frame_ms} is shorter than one sample at sr={self.sr}")

    def _bad(self, msg):
        raise ValueError(f"{self.name}: {msg}")

    def _number(self, name, zero_ok=False):
        v = getattr(self, name)
        if not (isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v)
                and (v >= 0 if zero_ok else v > 0)):
            self._bad(f"{name} must be a finite number {'>=' if zero_ok else '>'} 0, got {v!r}")

    def target(self, n_samples):
        """Spike count for a signal of ``n_samples`` samples."""
        return int(self.n_spikes) if self.n_spikes is not None else int(round(self.rate * n_samples / self.sr))

    def envelope_bank(self):
        return self.center_freqs(), self.frame_ms

    # -- encoding --------------------------------------------------------------------------------
    def encoded_signal(self, x):
        """The per-channel signal this baseline spikes on, shape ``[kernels, n_samples]``, float64.

        Examples
        --------
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal(4000)
        >>> bands = BSAConfig(8000, n_spikes=10, kernels=16).encoded_signal(x)
        >>> bands.shape, bool(np.allclose(bands.sum(axis=0), x))
        ((16, 4000), True)
        """
        raise NotImplementedError

    def _hair_cell(self, x):
        return hair_cell(GammatoneFilterbank(self.sr, self.center_freqs()).filter(x), self.sr, exponent=ENVELOPE_EXPONENT)

    def _quantum(self, sig, target):
        """First guess of the spike quantum: charge (or rate mass) per spike."""
        return sig.sum() / max(target, 1)

    def _spikes(self, sig, target, guess):
        """``(quantum, samples, channel, polarity)`` of exactly ``target`` spikes."""
        raise NotImplementedError

    def _encode(self, x):
        n, target = x.size, self.target(x.size)
        sig = self.encoded_signal(x)
        guess = self._quantum(sig, target)
        empty = SpikeTrain([], [], [], [], [], np.zeros((self.kernels, 1)), self, n)
        if not guess > 0:
            warnings.warn("silent input: encoded to zero spikes", stacklevel=3)
            return empty
        if target == 0:
            if self.rate is not None:  # zero spikes asked explicitly (n_spikes=0) need no explanation
                warnings.warn(f"no spikes: a rate of {self.rate:g} spikes/s over {n / self.sr:.3g} s rounds to 0 spikes",
                              stacklevel=3)
            return empty
        scale, samples, channel, polarity = self._spikes(sig, target, guess)
        amplitude = np.where(polarity > 0, scale, -scale)
        return SpikeTrain(samples, channel, np.zeros(target, np.int8), polarity, amplitude,
                          np.full((self.kernels, 1), scale), self, n)

    # -- decoding --------------------------------------------------------------------------------
    def _sample_envelope(self, st):
        """Per-sample envelope: the spike mass averaged over ``frame_ms``."""
        return _moving_average(_impulses(st), _frame_len(self))

    def decode(self, spike_train, exact=False):
        """Audio of length ``n_samples`` from the cochlear envelope the spikes carry (``exact`` is moot:
        every spike carries the quantum).

        The envelope is reconstructed per sample, the hair-cell compression is inverted to a band
        amplitude, and each channel modulates a cosine at its centre frequency (scaled for the overlap
        of neighbouring channels). Phase and fine structure are lost, so the audio SNR is expected to
        be poor (near or below 0 dB); compare envelope codes with
        :func:`spiketrum.metrics.envelope_snr_db` instead.
        """
        st, cfs = spike_train, self.center_freqs()
        # A tone at f excites every channel c with power |G_c(f)|^2; dividing each channel's amplitude by
        # sqrt(sum_k |G_k(cf_c)|^2) keeps the total power of the incoherent carriers that of the tone.
        overlap = np.sqrt(_gammatone_power(cfs, cfs).sum(axis=0))
        amp = (np.maximum(self._sample_envelope(st), 0.0) / _HC_MEAN) ** (1 / ENVELOPE_EXPONENT) / overlap[:, None]
        return np.einsum("ct,ct->t", amp, np.cos(2 * np.pi * cfs[:, None] * np.arange(st.n_samples) / self.sr))

    def decode_envelope(self, spike_train, hop_ms=10.0):
        """Spike mass per cochleagram frame (``frame_ms`` long, every ``hop_ms``)."""
        return frame_means(_impulses(spike_train), int(round(hop_ms * self.sr / 1000)), _frame_len(self))


@register("delta")
@dataclasses.dataclass(frozen=True)
class DeltaConfig(BaselineConfig):
    """Send-on-delta ON/OFF spikes on the cochlear envelope (amplitude +-delta, the calibrated step).

    Examples
    --------
    >>> import numpy as np
    >>> st = DeltaConfig(16000, n_spikes=300).encode(np.random.default_rng(0).standard_normal(8000), 16000)
    >>> len(st), st.n_channels
    (300, 80)
    """

    polarity_channels: ClassVar[bool] = True

    def encoded_signal(self, x):
        return _moving_average(self._hair_cell(x), _frame_len(self))

    def _quantum(self, sig, target):  # total variation per spike
        return (np.abs(sig[:, 0]).sum() + np.abs(np.diff(sig, axis=1)).sum()) / max(target, 1)

    def _spikes(self, sig, target, guess):
        return _threshold_code(_delta_kernel, sig, target, guess, self.name)

    def _sample_envelope(self, st):  # the staircase
        return np.cumsum(_impulses(st), axis=1)

    def decode_envelope(self, spike_train, hop_ms=10.0):
        """The staircase at each frame centre (there it is the frame mean of the hair-cell output)."""
        hop, n = int(round(hop_ms * self.sr / 1000)), spike_train.n_samples
        return self._sample_envelope(spike_train)[:, np.minimum(np.arange(1 + n // hop) * hop, n - 1)]


@register("lif")
@dataclasses.dataclass(frozen=True)
class LIFConfig(BaselineConfig):
    """A leaky integrate-and-fire neuron per channel driven by the hair-cell output (amplitude: the threshold).

    ``tau_ms`` is the membrane time constant, ``refractory_ms`` the dead time after each spike.
    """

    tau_ms: float = 10.0
    refractory_ms: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        self._number("tau_ms")
        self._number("refractory_ms", zero_ok=True)

    def encoded_signal(self, x):
        return self._hair_cell(x).astype(np.float64)

    def _spikes(self, sig, target, guess):
        decay = math.exp(-1000.0 / (self.tau_ms * self.sr))
        refractory = int(round(self.refractory_ms * self.sr / 1000))
        return _threshold_code(_lif_kernel, sig, target, guess, self.name, decay, refractory)

    def _drive(self, mass, theta):
        """Invert the LIF's rate: the constant drive that fires at the observed rate (mass / threshold spikes
        per sample). The interval is T = 1 / rate - refractory and a drive I fires every T samples when
        I (1 - d^T) / (1 - d) = threshold, d the leak per sample; without this the leak biases weak channels low."""
        d = math.exp(-1000.0 / (self.tau_ms * self.sr))
        rate = np.divide(mass, theta, out=np.zeros_like(mass), where=theta > 0)
        interval = np.maximum(1.0 / np.maximum(rate, 1e-300) - round(self.refractory_ms * self.sr / 1000), 1.0)
        return np.where(rate > 0, theta * (1.0 - d) / (1.0 - d**interval), 0.0)

    def _sample_envelope(self, st):
        return self._drive(super()._sample_envelope(st), st.level_amplitudes[:, :1])

    def decode_envelope(self, spike_train, hop_ms=10.0):
        """Spike mass per frame, each spike one threshold of integrated drive, corrected for the leak."""
        return self._drive(super().decode_envelope(spike_train, hop_ms), spike_train.level_amplitudes[:, :1])


@register("bsa")
@dataclasses.dataclass(frozen=True)
class BSAConfig(BaselineConfig):
    """Ben's Spiker Algorithm with ON/OFF spikes on each gammatone band waveform (amplitude: +-filter scale).

    ``bsa_cycles`` is the filter length in periods of the channel's centre frequency and
    ``bsa_threshold`` the fraction of a spike's filter mass by which it must lower the L1 error.
    BSA carries the waveform: :meth:`decode` convolves each band's spikes with its filter and sums the bands.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum.metrics import snr_db
    >>> x = np.sin(2 * np.pi * 300 * np.arange(4000) / 8000)
    >>> cfg = BSAConfig(8000, rate=4000)
    >>> y = cfg.decode(cfg.encode(x, 8000))
    >>> y.shape, bool(snr_db(x, y) > 5)
    ((4000,), True)
    """

    bsa_cycles: float = 0.25
    bsa_threshold: float = 0.5

    polarity_channels: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        self._number("bsa_cycles")
        self._number("bsa_threshold", zero_ok=True)

    def encoded_signal(self, x):
        """Zero-phase gammatone bands that sum to x (partition of unity in the frequency domain)."""
        n = x.size
        nfft = scipy.fft.next_fast_len(n + self.sr // 10)  # 100 ms of padding: the widest band response dies out well within it
        w = _gammatone_power(scipy.fft.rfftfreq(nfft, 1 / self.sr), self.center_freqs())
        w /= w.sum(axis=0)
        return scipy.fft.irfft(w * scipy.fft.rfft(x, nfft), nfft, axis=1)[:, :n]

    def filters(self):
        """Peak-normalised Hann filters, ``bsa_cycles`` periods of each centre frequency long (>= 1 sample),
        and their lengths."""
        lengths = np.maximum(1, np.round(self.bsa_cycles * self.sr / self.center_freqs())).astype(np.int64)
        filters = np.zeros((self.kernels, lengths.max()))
        for c, n in enumerate(lengths):
            w = np.sin(np.pi * np.arange(1, n + 1) / (n + 1)) ** 2  # Hann without its zero end points
            filters[c, :n] = w / w.max()
        return filters, lengths

    def _quantum(self, sig, target):  # L1 mass / mass of one spike
        filters, _ = self.filters()
        return (np.abs(sig).sum(axis=1) / filters.sum(axis=1)).sum() / max(target, 1)

    def _spikes(self, sig, target, guess):
        filters, lengths = self.filters()
        n = sig.shape[1]
        padded = np.zeros((self.kernels, n + filters.shape[1]))
        padded[:, :n] = sig
        return _threshold_code(_bsa_kernel, padded, target, guess, self.name, filters, lengths, n, float(self.bsa_threshold))

    def decode(self, spike_train, exact=False):
        filters, lengths = self.filters()
        imp, n = _impulses(spike_train), spike_train.n_samples
        y = np.zeros(n)
        for c in np.unique(spike_train.kernel):
            y += scipy.signal.oaconvolve(imp[c], filters[c, : lengths[c]])[:n]
        return y

    decode_envelope = EncoderConfig.decode_envelope  # a waveform code: the cochleagram of its audio


@register("poisson")
@dataclasses.dataclass(frozen=True)
class PoissonConfig(BaselineConfig):
    """Poisson spikes at a rate proportional to the hair-cell output (amplitude: the envelope quantum per
    spike); ``seed`` seeds the draw."""

    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not (_is_int(self.seed) and self.seed >= 0):
            self._bad(f"seed must be a non-negative integer, got {self.seed!r}")

    def encoded_signal(self, x):
        # The low-pass rings slightly below zero after sharp onsets; a rate cannot be negative.
        return np.maximum(self._hair_cell(x), 0.0, dtype=np.float64)

    def _spikes(self, sig, target, guess):
        # Conditioned on its total, a Poisson process is multinomial: draw target i.i.d. (channel, time)
        # bins with probability proportional to the rate, by inverse-CDF sampling.
        n = sig.shape[1]
        cdf = np.cumsum(sig.ravel())
        u = np.random.default_rng(self.seed).random(target) * cdf[-1]
        channel, samples = np.divmod(np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1), n)
        return guess, samples, channel, np.ones(target, np.int8)


#: The baselines' encoder names, in registration order.
METHODS = tuple(name for name, cls in ENCODERS.items() if issubclass(cls, BaselineConfig))


# -- front end ------------------------------------------------------------------------------------
def _gammatone_power(f, cfs):
    """|G_c(f)|^2 of the 4th-order gammatone near its centre frequency, shape [channels, len(f)]."""
    u = (np.asarray(f)[None, :] - cfs[:, None]) / (GAMMATONE_B * erb_bandwidth(cfs))[:, None]
    return (1.0 / (1.0 + u * u)) ** 4


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


def _impulses(st):
    """Spikes on a [channels, n_samples] grid, each worth its place's codebook amplitude, signed by
    polarity in ON/OFF codes. Decoding reads only spikes and codebook, so perturbed trains decode too."""
    c, n = st.config.kernels, st.n_samples
    sign = np.where(st.polarity > 0, 1.0, -1.0) if st.config.polarity_channels else np.ones(len(st))
    grid = np.bincount(st.kernel.astype(np.int64) * n + st.samples, sign, minlength=c * n).reshape(c, n)
    return grid * st.level_amplitudes[:, :1]


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

