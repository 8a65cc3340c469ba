"""The spiketrum encoder: event-based matching pursuit over ERB-spaced gammatone kernels."""
from __future__ import annotations

import dataclasses
import functools
import json
import warnings

import numpy as np
import scipy.signal

from cochlea import erb_space, gammatone_kernels

from . import _kernels
from .spiketrain import SpikeTrain


@dataclasses.dataclass(frozen=True)
class SpiketrumConfig:
    """Everything that determines an encoding; saved with every spike file.

    Exactly one stopping rule is set: ``n_spikes``; ``rate`` (spikes/s, round(rate x duration)
    spikes in total, or per frame with ``frame_ms``); or ``snr_db`` (residual SNR target).
    """

    sr: int
    rate: float | None = None
    n_spikes: int | None = None
    snr_db: float | None = None
    frame_ms: float | None = None
    kernels: int = 40
    levels: int = 3
    fmin: float = 50.0
    fmax: float | None = None
    floor_db: float = -60.0
    polarity_channels: bool = True
    gains: tuple | None = None
    method: str = "spiketrum"

    def __post_init__(self):
        def bad(msg):
            raise ValueError(msg)

        if not (isinstance(self.sr, (int, np.integer)) and self.sr > 0):
            bad(f"sr must be a positive integer, got {self.sr!r}")
        rules = [self.n_spikes is not None, self.rate is not None and self.frame_ms is None, self.snr_db is not None, self.frame_ms is not None]
        if sum(rules) != 1:
            bad("choose exactly one stopping rule: n_spikes, rate, snr_db, or frame_ms together with rate")
        if self.frame_ms is not None and self.rate is None:
            bad("frame_ms needs rate (spikes per second in every frame)")
        if self.n_spikes is not None and (isinstance(self.n_spikes, bool) or int(self.n_spikes) != self.n_spikes or self.n_spikes < 0):
            bad(f"n_spikes must be a non-negative integer, got {self.n_spikes!r}")
        if self.rate is not None and not (np.isfinite(self.rate) and self.rate > 0):
            bad(f"rate must be > 0 spikes/s, got {self.rate!r}")
        if self.snr_db is not None and not np.isfinite(self.snr_db):
            bad(f"snr_db must be finite, got {self.snr_db!r}")
        if self.frame_ms is not None and not (np.isfinite(self.frame_ms) and self.frame_ms > 0):
            bad(f"frame_ms must be > 0, got {self.frame_ms!r}")
        if not (isinstance(self.kernels, (int, np.integer)) and self.kernels >= 1):
            bad(f"kernels must be a positive integer, got {self.kernels!r}")
        if not (isinstance(self.levels, (int, np.integer)) and self.levels >= 1):
            bad(f"levels must be a positive integer, got {self.levels!r}")
        fmax = self.resolved_fmax
        if not (0 < self.fmin < fmax < self.sr / 2):
            bad(f"need 0 < fmin < fmax < sr/2 = {self.sr / 2:g} Hz, got fmin={self.fmin:g}, fmax={fmax:g}")
        if self.gains is not None:
            g = np.asarray(self.gains, dtype=float)
            if g.shape != (self.kernels,) or not np.all(np.isfinite(g)) or np.any(g < 0):
                bad(f"gains must be {self.kernels} finite values >= 0")
        if self.method != "spiketrum":
            bad(f"unknown method {self.method!r}")

    @property
    def resolved_fmax(self):
        return float(self.fmax) if self.fmax is not None else min(8000.0, 0.45 * self.sr)

    @property
    def n_channels(self):
        return self.kernels * self.levels * (2 if self.polarity_channels else 1)

    def center_freqs(self):
        return erb_space(self.fmin, self.resolved_fmax, self.kernels)

    def to_json(self):
        d = dataclasses.asdict(self)
        d["gains"] = None if self.gains is None else list(self.gains)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, s):
        d = json.loads(s)
        if d.get("gains") is not None:
            d["gains"] = tuple(d["gains"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@functools.lru_cache(maxsize=8)
def dictionary(sr, kernels, fmin, fmax, floor_db):
    """Gammatone kernels, their lengths and the cross-correlation table G (see _kernels)."""
    phi, lengths = gammatone_kernels(sr, erb_space(fmin, fmax, kernels), floor_db=floor_db)
    lmax = phi.shape[1]
    nfft = scipy.fft.next_fast_len(2 * lmax - 1)
    F = np.fft.rfft(phi, nfft)
    full = np.fft.irfft(F[:, None, :] * F[None, :, :].conj(), nfft)  # index d mod nfft: sum_t phi_m[t] phi_k[t-d]
    G = np.concatenate([full[..., nfft - (lmax - 1) :], full[..., :lmax]], axis=-1)
    for a in (phi, lengths, G):
        a.setflags(write=False)
    return phi, lengths, G


def _correlation_map(x, phi, lengths):
    """C[m, tau] = sum_t x[tau + t] phi_m[t] for tau in [0, len(x)), zero past the end of x."""
    n = x.size
    C = np.empty((phi.shape[0], n))
    for m in range(phi.shape[0]):
        k = phi[m, : lengths[m]]
        C[m] = scipy.signal.oaconvolve(x, k[::-1], mode="full")[k.size - 1 : k.size - 1 + n]
    return C


def _budgets(cfg, n, sr):
    """Spikes per frame and frame length in samples for the configured stopping rule."""
    duration = n / sr
    if cfg.frame_ms is not None:
        frame = max(1, int(round(cfg.frame_ms * sr / 1000)))
        edges = np.minimum(np.arange(0, n + frame, frame), n)
        edges = np.unique(edges)
        cum = np.round(cfg.rate * edges / sr).astype(np.int64)  # cumulative rounding: the total is exact too
        return np.diff(cum), frame
    if cfg.n_spikes is not None:
        total = int(cfg.n_spikes)
    elif cfg.rate is not None:
        total = int(round(cfg.rate * duration))
    else:
        total = np.iinfo(np.int64).max // 2
    return np.array([total], dtype=np.int64), n


def quantize_levels(kernel, amplitude, n_kernels, levels):
    """Intensity-to-place: |amplitude| in ``levels`` log-uniform bins over this train's range.

    Returns (level per spike, codebook[n_kernels, levels]) where the codebook holds the mean
    |amplitude| of each (kernel, level), the least-squares representative for spike-only decoding.
    """
    a = np.abs(amplitude)
    book = np.zeros((n_kernels, levels))
    if a.size == 0:
        return np.zeros(0, np.int8), book
    lo, hi = np.log(a.min()), np.log(a.max())
    if levels == 1 or hi <= lo:
        level = np.zeros(a.size, np.int64)
    else:
        level = np.clip(((np.log(a) - lo) / (hi - lo) * levels).astype(np.int64), 0, levels - 1)
    np.add.at(book, (kernel, level), a)
    count = np.zeros_like(book)
    np.add.at(count, (kernel, level), 1)
    book = np.divide(book, count, out=np.zeros_like(book), where=count > 0)
    return level.astype(np.int8), book


def _as_audio(x):
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.ndim != 1:
        raise ValueError(f"x must be a 1-D real array of samples, got dtype {x.dtype} and shape {x.shape}")
    if x.size == 0:
        raise ValueError("x is empty")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf samples")
    return x


def encode(x, sr, *, rate=None, n_spikes=None, snr_db=None, frame_ms=None, kernels=40, levels=3, fmin=50.0, fmax=None,
           gains=None, floor_db=-60.0, polarity_channels=True):
    """Encode audio into a spiketrum spike train by matching pursuit: one spike per iteration.

    Each iteration picks the gammatone kernel and onset with the largest (gain-weighted)
    correlation with the residual, emits one spike and subtracts the atom. The spike's place
    (output channel) codes the kernel, the intensity level of its amplitude, and its polarity.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,)
        Mono audio.
    sr : int
        Sample rate in Hz.
    rate, n_spikes, snr_db, frame_ms :
        Exactly one stopping rule: ``n_spikes`` spikes; ``rate`` spikes/s, i.e. round(rate x duration)
        spikes; ``frame_ms`` with ``rate``: every frame holds exactly its share (cumulatively rounded,
        so the total is round(rate x duration) too); or ``snr_db``: stop at that residual SNR.
    kernels : int
        Number of ERB-spaced gammatone kernels M (40 in the published hardware).
    levels : int
        Intensity levels L per kernel (3 in the published hardware).
    fmin, fmax : float
        Centre frequencies of the lowest and highest kernel (fmax default: min(8 kHz, 0.45 sr)).
    gains : sequence of float, optional
        Per-kernel feedback gains weighting the selection (default all 1).
    floor_db : float
        Kernel truncation floor of the envelope.
    polarity_channels : bool
        ``True``: M x L x 2 channels (polarity by place); ``False``: M x L, polarity as an attribute.

    Returns
    -------
    SpikeTrain

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> st = encode(x, 16000, rate=1000)
    >>> len(st), st.n_channels
    (500, 240)
    """
    cfg = SpiketrumConfig(sr=int(sr), rate=rate, n_spikes=n_spikes, snr_db=snr_db, frame_ms=frame_ms, kernels=kernels,
                          levels=levels, fmin=fmin, fmax=fmax, floor_db=floor_db, polarity_channels=polarity_channels,
                          gains=None if gains is None else tuple(float(g) for g in gains))
    return encode_with(x, cfg)


def encode_with(x, cfg):
    """Encode with a ready :class:`SpiketrumConfig`."""
    x = _as_audio(x)
    phi, lengths, G = dictionary(cfg.sr, cfg.kernels, cfg.fmin, cfg.resolved_fmax, cfg.floor_db)
    budgets, frame = _budgets(cfg, x.size, cfg.sr)
    energy = float(x @ x)
    if energy == 0.0:
        warnings.warn("silent input: encoded to zero spikes", stacklevel=2)
    min_energy = energy * 10 ** (-cfg.snr_db / 10) if cfg.snr_db is not None else -1.0
    w = np.ones(cfg.kernels) if cfg.gains is None else np.asarray(cfg.gains, dtype=np.float64)
    C = _correlation_map(x, phi, lengths)
    max_spikes = int(min(budgets.sum(), 50 * x.size + 1000))
    k, tau, amp, res = _kernels.matching_pursuit(C, G, lengths, w, budgets, frame, min_energy, energy, max_spikes)
    return SpikeTrain.from_atoms(k, tau, amp, cfg, n_samples=x.size, residual_energy=res, signal_energy=energy)


def decode(spike_train, exact=False):
    """Sum the atoms back into audio of the encoded length.

    ``exact=True`` uses each spike's exact amplitude (the "code set"); otherwise the per-(kernel,
    level) representative amplitude that spikes alone carry.
    """
    st = spike_train
    cfg = st.config
    phi, lengths, _ = dictionary(cfg.sr, cfg.kernels, cfg.fmin, cfg.resolved_fmax, cfg.floor_db)
    sign = np.where(st.polarity > 0, 1.0, -1.0)
    amp = st.amplitude if exact else sign * st.level_amplitudes[st.kernel, st.level]
    y = np.zeros(st.n_samples + phi.shape[1])
    for m in np.unique(st.kernel):
        sel = st.kernel == m
        impulses = np.zeros(st.n_samples)
        np.add.at(impulses, st.samples[sel], amp[sel])
        y[: st.n_samples + lengths[m] - 1] += scipy.signal.oaconvolve(impulses, phi[m, : lengths[m]])
    return y[: st.n_samples]
