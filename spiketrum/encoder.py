"""The spiketrum encoder: event-based matching pursuit over ERB-spaced gammatone kernels."""
from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import ClassVar

import numpy as np
import scipy.fft
import scipy.signal

from cochlea import erb_space, gammatone_kernels, vtlp_warp

from . import _kernels
from .io import AudioStream, InputError
from .registry import EncoderConfig, register
from .spiketrain import MAX_LEVELS, SpikeTrain


# The fast mode recomputes its correlation map from the residual once the map has drifted by this
# fraction of a chosen atom's true amplitude ...
FAST_DRIFT_TOLERANCE = 0.2
# ... over this many seconds either side of the atom where the drift showed.
FAST_RESYNC_S = 0.5
# Most spikes a chunk of n samples can hold: SPIKES_PER_SAMPLE * n + SPIKES_PER_CHUNK (a bound on the
# pursuit's work; far beyond any useful rate, where atoms would only re-fit their own residue).
SPIKES_PER_SAMPLE, SPIKES_PER_CHUNK = 50, 1000


@register("spiketrum")
@dataclasses.dataclass(frozen=True)
class SpiketrumConfig(EncoderConfig):
    """The spiketrum encoder: matching pursuit over ERB-spaced gammatone kernels; saved with every spike file.

    Exactly one stopping rule is set: ``n_spikes``; ``rate`` (spikes/s, round(rate x duration)
    spikes in total, or per frame with ``frame_ms``); or ``snr_db`` (residual SNR target).

    Parameters
    ----------
    sr : int
        Sample rate in Hz the encoder runs at (:meth:`encode` resamples other audio to it).
    rate, n_spikes, snr_db, frame_ms :
        The stopping rule: ``n_spikes`` spikes; ``rate`` spikes/s, i.e. round(rate x duration)
        spikes; ``frame_ms`` with ``rate``: every frame holds exactly its share (cumulatively rounded,
        so the total is round(rate x duration) too); or ``snr_db``: stop at that residual SNR.
    kernels : int
        Number of ERB-spaced gammatone kernels M (40 in the published hardware).
    levels : int
        Intensity levels L per kernel (3 in the published hardware).
    fmin, fmax : float
        Centre frequencies of the lowest and highest kernel (fmax default: min(8 kHz, 0.45 sr)).
    floor_db : float
        Kernel truncation floor of the envelope.
    polarity_channels : bool
        ``True``: M x L x 2 channels (polarity by place); ``False``: M x L, polarity as an attribute.
    gains : tuple of float, optional
        Per-kernel feedback gains weighting the selection (default all 1).
    mode : {"fast", "exact"}
        ``"exact"`` is plain matching pursuit, spike for spike. ``"fast"`` keeps the correlation map in
        float32 and skips kernel cross-correlation terms below ``xcorr_floor_db`` (relative to the
        autocorrelation peak); amplitudes still come from the exact residual.
    chunk_s : float
        Onsets are pursued in chunks of this many seconds, which bounds memory on long files.
    warp : float
        Vocal-tract-length warp of the kernels, in [0.5, 2]: their centre frequencies move by
        :func:`cochlea.vtlp_warp` with ``fmax`` fixed, while each keeps its channel. A voice encoded with
        warp > 1 looks like one with formants 1/warp as high (training augmentation; 1 for none).

    Examples
    --------
    >>> import numpy as np
    >>> cfg = SpiketrumConfig(sr=16000, rate=1000)
    >>> st = cfg.encode(np.random.default_rng(0).standard_normal(8000), 16000)
    >>> len(st), st.n_channels, cfg.for_training().n_channels
    (500, 240, 120)
    """

    codes_waveform: ClassVar[bool] = True

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
    mode: str = "fast"
    xcorr_floor_db: float = -60.0
    chunk_s: float = 20.0
    warp: float = 1.0

    def __post_init__(self):
        def bad(msg):
            raise ValueError(msg)

        if isinstance(self.sr, bool) or not (isinstance(self.sr, (int, np.integer)) and self.sr > 0):
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
        if not (isinstance(self.levels, (int, np.integer)) and 1 <= self.levels <= MAX_LEVELS):
            bad(f"levels must be an integer from 1 to {MAX_LEVELS}, got {self.levels!r}")
        fmax = self.resolved_fmax
        if not (0 < self.fmin < fmax < self.sr / 2):
            bad(f"need 0 < fmin < fmax < sr/2 = {self.sr / 2:g} Hz, got fmin={self.fmin:g}, fmax={fmax:g}")
        if self.gains is not None:
            g = np.asarray(self.gains, dtype=float)
            if g.shape != (self.kernels,) or not np.all(np.isfinite(g)) or np.any(g < 0):
                bad(f"gains must be {self.kernels} finite values >= 0")
        if self.mode not in ("fast", "exact"):
            bad(f"mode must be 'fast' or 'exact', got {self.mode!r}")
        if not (np.isfinite(self.xcorr_floor_db) and self.xcorr_floor_db < 0):
            bad(f"xcorr_floor_db must be a negative level in dB, got {self.xcorr_floor_db!r}")
        if not (np.isfinite(self.chunk_s) and self.chunk_s > 0):
            bad(f"chunk_s must be > 0 seconds, got {self.chunk_s!r}")
        if not (np.isfinite(self.warp) and 0.5 <= self.warp <= 2.0):
            bad(f"warp must be in [0.5, 2], got {self.warp!r}")
        if self.gains is not None and not isinstance(self.gains, tuple):
            object.__setattr__(self, "gains", tuple(float(g) for g in self.gains))  # hashable, and equal after JSON

    def center_freqs(self):
        return kernel_freqs(self.kernels, self.fmin, self.resolved_fmax, self.warp)

    def _tables(self):
        """The dictionary ``(phi, lengths)`` and the cross-correlation table this config pursues with."""
        fast = self.mode == "fast"
        key = (self.sr, self.kernels, self.fmin, self.resolved_fmax, self.floor_db)
        table = cross_correlations(*key, self.xcorr_floor_db if fast else None, "float32" if fast else "float64",
                                   warp=self.warp)
        return dictionary(*key, warp=self.warp), table

    def with_emphasis(self, db_per_octave, ref_hz=1000.0):
        """This config with its selection gains tilted by ``db_per_octave`` per octave of kernel centre frequency,
        0 dB at ``ref_hz``: a pre-emphasis of the spike budget.

        Matching pursuit spends its spikes on the strongest atoms, so the vowels' low harmonics take most of them
        and quiet consonants few; a positive tilt moves spikes up the kernels, as a pre-emphasis filter does in a
        speech front end, while each spike still carries its exact amplitude. The gains multiply any already
        set, and follow each kernel's unwarped centre frequency (a channel keeps its gain under ``warp``).

        Examples
        --------
        >>> cfg = SpiketrumConfig(sr=8000, rate=1000).with_emphasis(6.0)
        >>> f = cfg.center_freqs()
        >>> round(float(20 * np.log10(cfg.gains[-1] / cfg.gains[0]) / np.log2(f[-1] / f[0])), 6)  # dB per octave
        6.0
        >>> SpiketrumConfig(sr=8000, rate=1000).with_emphasis(0.0).gains is None
        True
        """
        if not np.isfinite(db_per_octave) or not (np.isfinite(ref_hz) and ref_hz > 0):
            raise ValueError(f"emphasis needs a finite tilt in dB per octave and a reference > 0 Hz, got "
                             f"{db_per_octave!r} and {ref_hz!r}")
        if db_per_octave == 0:
            return self
        f = kernel_freqs(self.kernels, self.fmin, self.resolved_fmax, 1.0)
        g = 10 ** (db_per_octave / 20 * np.log2(f / ref_hz))
        return dataclasses.replace(self, gains=tuple(g * (1.0 if self.gains is None else np.asarray(self.gains))))

    def for_training(self):
        """Both polarities on one channel (kernel x level): polarity is the atom's phase, which time bins
        of milliseconds cannot use, and merging halves the input."""
        return dataclasses.replace(self, polarity_channels=False)

    def _encode(self, x):
        return _pursue(lambda a, b: x[a:b], x.size, self)

    def encode_file(self, path):
        """Encode an audio file; at the encoder's rate it is streamed, in bounded memory.

        The spikes equal those of ``self.encode(*load_audio(path))`` exactly: both pursue the same
        ``chunk_s`` chunks with the residual carried across, but a file at ``sr`` is read one chunk
        (plus one kernel length) at a time, so memory grows only with the spikes. A file at another
        rate is loaded whole and resampled.

        Raises
        ------
        InputError
            A bad or truncated file.
        """
        with AudioStream(path) as f:
            if f.sr != self.sr:
                return super().encode_file(path)

            def read(a, b):
                seg = f.read(a, b)
                if seg.size != min(b, f.frames) - a:
                    raise InputError(f.path, "file is shorter than its header says (truncated?)")
                return seg.astype(np.float64)

            return _pursue(read, f.frames, self)

    def stream(self):
        """An :class:`EncoderStream`: this encoder, causal, over audio pushed a piece at a time."""
        return EncoderStream(self)

    def operations(self, seconds=None, spikes=None):
        """The encoder's own arithmetic per second of audio, as this implementation runs it (an estimate).

        Counted, per chunk of onsets (a clip of ``seconds`` is one chunk up to ``chunk_s``):

        - the correlation map by overlap-save FFTs (:func:`_correlation_map`): a real FFT of n points taken
          as 2.5 n log2 n flops, the input blocks' and the kernels' forward FFTs, 6 flops per complex
          product, one inverse FFT per kernel and block;
        - per spike, the multiply-accumulates of the pursuit: the fast mode's amplitude from the residual
          (the kernel's length), the residual update (the same) and the correlation update of every kernel
          (the cross-correlation terms kept, :func:`cross_correlations`);
        - per spike, the comparisons of the argmax: the superblock maxima of every kernel and the scan inside
          one superblock, and the block maxima recomputed where the update touched.

        Not counted: the fast mode's resyncs (the map recomputed around an atom that drifted), the level
        quantisation, resampling, and the tables built once per config.

        Parameters
        ----------
        seconds : float, optional
            Length of the audio encoded at once (default ``chunk_s``: long audio); short clips pay more map
            per second (a block is never shorter than the clip needs).
        spikes : SpikeTrain, optional
            Spikes of this encoder: their kernels weight the per-spike costs, and their count over their length
            gives the rate; else every kernel alike at ``rate`` spikes/s.

        Returns
        -------
        dict
            Per second of audio: ``fft_flops``, ``pursuit_macs``, ``compares``, ``spikes``, and ``ops`` = flops
            + 2 x MACs + compares; ``per_spike_macs`` (the mean).

        Examples
        --------
        >>> ops = SpiketrumConfig(sr=8000, rate=1000).operations()
        >>> ops["spikes"], ops["ops"] > ops["fft_flops"] > 0
        (1000.0, True)
        """
        from . import _kernels

        (phi, lengths), table = self._tables()
        fast, hlen = self.mode == "fast", table[3]
        if spikes is not None:
            seconds = spikes.n_samples / self.sr if seconds is None else seconds
            share = np.bincount(spikes.kernel, minlength=self.kernels) / max(len(spikes), 1)
            rate = len(spikes) / (spikes.n_samples / self.sr)
        else:
            if self.rate is None:
                raise ValueError("the spike rate is not fixed by this config (snr_db or n_spikes): pass spikes")
            share, rate = np.full(self.kernels, 1 / self.kernels), float(self.rate)
        T = max(1, int(round(min(self.chunk_s if seconds is None else seconds, self.chunk_s) * self.sr)))
        M, lmax = phi.shape
        nb = min(max(8192, scipy.fft.next_fast_len(4 * lmax, real=True)), scipy.fft.next_fast_len(T + lmax - 1, real=True))
        blocks = -(-T // (nb - lmax + 1))
        fft = 2.5 * nb * np.log2(nb)
        fft_flops = (blocks + M + M * blocks) * fft + M * blocks * (nb // 2 + 1) * 6
        macs = hlen.sum(1) + lengths * (2 if fast else 1)
        B, S = _kernels.B, _kernels.S
        superblocks = -(-T // (B * S))
        touched = ((-(-hlen // B) + 1) * B + S) * (hlen > 0)  # block maxima recomputed over the range updated
        compares = M * superblocks + S + 2 * B + touched.sum(1)
        per_second = T / self.sr
        fft_flops = float(fft_flops) / per_second
        return {"fft_flops": fft_flops, "pursuit_macs": rate * float(share @ macs),
                "compares": rate * float(share @ compares), "spikes": rate,
                "ops": fft_flops + rate * float(share @ (2 * macs + compares)), "per_spike_macs": float(share @ macs)}

    def decode(self, spike_train, exact=False):
        """Sum the atoms back into audio of the encoded length.

        ``exact=True`` uses each spike's exact amplitude (the "code set"); otherwise the per-(kernel,
        level) representative amplitude that spikes alone carry.
        """
        st = spike_train
        phi, lengths = dictionary(self.sr, self.kernels, self.fmin, self.resolved_fmax, self.floor_db, warp=self.warp)
        sign = np.where(st.polarity > 0, 1.0, -1.0)
        amp = st.amplitude if exact else sign * st.level_amplitudes[st.kernel, st.level]
        y = np.zeros(st.n_samples + phi.shape[1])
        for m in np.unique(st.kernel):
            sel = st.kernel == m
            impulses = np.zeros(st.n_samples)
            np.add.at(impulses, st.samples[sel], amp[sel])
            y[: st.n_samples + lengths[m] - 1] += scipy.signal.oaconvolve(impulses, phi[m, : lengths[m]])
        return y[: st.n_samples]


def kernel_freqs(kernels, fmin, fmax, warp=1.0):
    """Centre frequencies of the kernels: ERB-spaced from ``fmin`` to ``fmax``, then warped (:func:`cochlea.vtlp_warp`)."""
    cf = erb_space(fmin, fmax, kernels)
    return cf if warp == 1.0 else vtlp_warp(cf, warp, fmax)


# Large enough for a training set's warp factors (a 0.01 grid) to be designed once each.
@functools.lru_cache(maxsize=64)
def dictionary(sr, kernels, fmin, fmax, floor_db, warp=1.0):
    """Unit-norm gammatone kernels ``phi [M, Lmax]`` (zero-padded) and their lengths."""
    phi, lengths = gammatone_kernels(sr, kernel_freqs(kernels, fmin, fmax, warp), floor_db=floor_db)
    phi.setflags(write=False)
    lengths.setflags(write=False)
    return phi, lengths


@functools.lru_cache(maxsize=64)
def cross_correlations(sr, kernels, fmin, fmax, floor_db, xcorr_floor_db=None, dtype="float64", warp=1.0):
    """Flattened kernel cross-correlation table driving the local correlation updates (see _kernels).

    For spike kernel k and updated kernel m, ``h[start[k, m] : start[k, m] + length[k, m]]`` holds
    ``sum_t phi_m[t - d] phi_k[t]`` for lags ``d = lo[k, m], lo[k, m] + 1, ...``. ``xcorr_floor_db``
    None keeps every nonzero term (exact pursuit); a level such as -60 trims each lag range to the
    terms above that level relative to the unit autocorrelation peak, and drops pairs entirely below it.
    """
    phi, lengths = dictionary(sr, kernels, fmin, fmax, floor_db, warp=warp)
    lmax = phi.shape[1]
    nfft = scipy.fft.next_fast_len(2 * lmax - 1, real=True)
    F = scipy.fft.rfft(phi, nfft)
    eps = 0.0 if xcorr_floor_db is None else 10 ** (xcorr_floor_db / 20)
    start, lo, length = (np.zeros((kernels, kernels), np.int64) for _ in range(3))
    pieces, pos = [], 0
    for k in range(kernels):
        full = scipy.fft.irfft(F[k] * F.conj(), nfft)  # [m, d mod nfft]: sum_t phi_k[t] phi_m[t - d]
        for m in range(kernels):
            d0, d1 = -(lengths[m] - 1), lengths[k] - 1  # where the atoms overlap at all
            seg = full[m, np.arange(d0, d1 + 1) % nfft]
            keep = np.flatnonzero(np.abs(seg) > eps)
            if keep.size == 0:
                continue
            seg = seg[keep[0] : keep[-1] + 1]
            start[k, m], lo[k, m], length[k, m] = pos, d0 + keep[0], seg.size
            pieces.append(seg)
            pos += seg.size
    h = np.concatenate(pieces).astype(dtype)
    for a in (h, start, lo, length):
        a.setflags(write=False)
    return h, start, lo, length


def _correlation_map(r, phi, T, dtype=np.float64, block=8192):
    """``C[m, tau] = sum_t r[tau + t] phi_m[t]`` for tau in [0, T); r must hold T + Lmax - 1 samples.

    Overlap-save with one FFT of the input blocks shared by all kernels.
    """
    M, lmax = phi.shape
    # one block for a short map (a stream's chunk), else blocks of `block` samples
    nb = min(max(block, scipy.fft.next_fast_len(4 * lmax, real=True)), scipy.fft.next_fast_len(T + lmax - 1, real=True))
    hop = nb - lmax + 1
    nblk = -(-T // hop)
    seg = np.zeros(nblk * hop + lmax - 1, dtype)
    seg[: min(r.size, seg.size)] = r[: seg.size]
    X = scipy.fft.rfft(np.lib.stride_tricks.sliding_window_view(seg, nb)[::hop], axis=-1)
    P = scipy.fft.rfft(phi.astype(dtype), nb).conj()
    C = np.empty((M, T), dtype)
    for m in range(M):
        C[m] = scipy.fft.irfft(X * P[m], nb, axis=-1)[:, :hop].reshape(-1)[:T]
    return C


def _chunk_len(cfg):
    """(samples per chunk of onsets, samples per frame); a chunk holds whole frames."""
    if cfg.frame_ms is not None:
        frame = max(1, int(round(cfg.frame_ms * cfg.sr / 1000)))
        return frame * max(1, int(cfg.chunk_s * cfg.sr) // frame), frame
    chunk = max(1, int(cfg.chunk_s * cfg.sr))
    return chunk, chunk


def _budgets(cfg, a, b, frame, n=None):
    """Spikes the onsets of chunk ``[a, b)`` take, one entry per frame.

    Counts are cumulatively rounded from the start, ``round(rate x edge)`` at every frame or chunk edge,
    so every frame and the total are exact, and a chunk's budget does not depend on what follows it
    (a stream knows no ``n``). Only ``n_spikes`` needs the length ``n``.
    """
    sr = cfg.sr
    if cfg.snr_db is not None:
        return np.array([np.iinfo(np.int64).max // 4])
    edges = np.unique(np.minimum(np.arange(a, b + frame, frame), b)) if cfg.frame_ms is not None else np.array([a, b])
    total = cfg.rate / sr if cfg.n_spikes is None else int(cfg.n_spikes) / n
    return np.diff(np.round(total * edges).astype(np.int64))


def _chunks(cfg, n):
    """Plan of the pursuit: (start, stop, per-frame budgets, frame length) for each chunk of onsets.

    A count rule on a file longer than ``chunk_s`` becomes a per-chunk budget in proportion to the
    chunk's length (:func:`_budgets`): memory stays bounded, at the price of pursuit not moving spikes
    between chunks.
    """
    chunk, frame = _chunk_len(cfg)
    edges = np.unique(np.minimum(np.arange(0, n + chunk, chunk), n))
    return [(int(a), int(b), _budgets(cfg, int(a), int(b), frame, n), frame) for a, b in zip(edges[:-1], edges[1:])]


def _warn_no_spikes(cfg, n, energy):
    """Say why an encoding has no spikes: silence, or a stopping rule met before the first spike."""
    if energy == 0.0:
        warnings.warn("silent input: encoded to zero spikes", stacklevel=4)
    elif cfg.snr_db is not None:
        warnings.warn(f"no spikes: the audio already meets the residual SNR target snr_db={cfg.snr_db:g} dB "
                      "(a target of 0 dB or less needs none)", stacklevel=4)
    elif cfg.rate is not None:
        warnings.warn(f"no spikes: a rate of {cfg.rate:g} spikes/s over {n / cfg.sr:.3g} s rounds to 0 spikes"
                      + (f" in every {cfg.frame_ms:g} ms frame" if cfg.frame_ms is not None else ""), stacklevel=4)


def quantize_levels(kernel, amplitude, n_kernels, levels, iterations=30):
    """Intensity-to-place: |amplitude| into ``levels`` levels per kernel, chosen for this train.

    Per kernel, a Lloyd-Max quantiser of |amplitude| (least squared error, so the best spike-only
    reconstruction SNR) started from equal-count quantiles. Returns (level per spike, codebook
    [n_kernels, levels]) with the codebook holding each (kernel, level)'s representative |amplitude|,
    ascending in level; levels no spike uses hold 0.
    """
    a = np.abs(np.asarray(amplitude, np.float64))
    kernel = np.asarray(kernel, np.int64)
    book = np.zeros((n_kernels, levels))
    if a.size == 0:
        return np.zeros(0, np.int16), book
    order = np.lexsort((a, kernel))
    starts = np.concatenate([[0], np.cumsum(np.bincount(kernel, minlength=n_kernels))])
    q = _kernels.lloyd_max(a[order], starts, levels, iterations)
    level = (a[:, None] > ((q[:, 1:] + q[:, :-1]) / 2)[kernel]).sum(1)
    used = np.bincount(kernel * levels + level, minlength=q.size).reshape(q.shape) > 0
    book[used] = q[used]
    return level.astype(np.int16), book


class _Pursuit:
    """Matching pursuit one chunk of onsets at a time, carrying what atoms spill into the next chunk."""

    def __init__(self, cfg):
        self.cfg = cfg
        (self.phi, self.lengths), self.table = cfg._tables()
        self.fast = cfg.mode == "fast"
        self.dtype, self.itype = (np.float32, np.int32) if self.fast else (np.float64, np.int64)
        self.mask = self.itype(np.iinfo(self.itype).max)  # all bits but the sign: |x| as an integer
        self.w = np.ones(cfg.kernels) if cfg.gains is None else np.asarray(cfg.gains, dtype=np.float64)
        self.lookahead = self.phi.shape[1] - 1  # samples after a chunk its atoms reach into
        self.target = 10 ** (-cfg.snr_db / 10) if cfg.snr_db is not None else None
        self.spill = np.zeros(self.lookahead)  # what earlier chunks' atoms took from the samples after their chunk
        self.energy = 0.0

    def chunk(self, a, b, budgets, frame, seg):
        """Spikes ``(kernel, onset, amplitude)`` with onsets in ``[a, b)``; ``seg`` holds samples ``[a, b +
        lookahead)``, cut short only at the end of the audio."""
        cfg, phi, lmax = self.cfg, self.phi, self.lookahead + 1
        r = np.zeros(b - a + lmax - 1)
        r[: seg.size] = seg
        r[: lmax - 1] -= self.spill
        self.energy += float(seg[: b - a] @ seg[: b - a])
        region = float(r @ r)
        min_energy = self.target * float(seg @ seg) if self.target is not None else -1.0
        cap = int(min(budgets.sum(), SPIKES_PER_SAMPLE * (b - a) + SPIKES_PER_CHUNK))
        C = _correlation_map(r, phi, b - a, self.dtype)
        tol, last, out = FAST_DRIFT_TOLERANCE, -1, []
        resync = int(FAST_RESYNC_S * cfg.sr)
        while True:  # more than one pass only when the fast mode resyncs its correlation map
            k, tau, amp, res, at = _kernels.matching_pursuit(C, C.view(self.itype), self.mask, r, phi, self.lengths,
                                                             *self.table, self.w, budgets, frame, min_energy, region,
                                                             self.fast, tol, cap)
            out.append((k, tau + a, amp))
            cap -= k.size
            region = res[-1] if res.size else region
            if at < 0:
                break
            # a freshly recomputed spot that still disagrees is float32 noise, not drift: take it
            tol, last = (np.inf if k.size == 0 and at == last else FAST_DRIFT_TOLERANCE), at
            lo, hi = max(0, at - resync), min(b - a, at + resync)
            C[:, lo:hi] = _correlation_map(r[lo:], phi, hi - lo, self.dtype)
        tail = seg[b - a :]
        self.spill = np.zeros(lmax - 1)
        self.spill[: tail.size] = tail - r[b - a : b - a + tail.size]
        return tuple(np.concatenate(z) for z in zip(*out))


def _check_capacity(cfg, plan, n):
    """A count rule must not stop short of its count: refuse one the signal cannot hold."""
    if cfg.snr_db is not None:
        return
    if any(budgets.sum() > SPIKES_PER_SAMPLE * (b - a) + SPIKES_PER_CHUNK for a, b, budgets, _ in plan):
        asked = sum(int(budgets.sum()) for _, _, budgets, _ in plan)
        limit = sum(SPIKES_PER_SAMPLE * (b - a) + SPIKES_PER_CHUNK for a, b, _, _ in plan)
        raise ValueError(f"{asked} spikes asked of {n / cfg.sr:.3g} s of audio, more than it can hold (at most "
                         f"{limit} here, {SPIKES_PER_SAMPLE} per sample); lower the rate or spike count")


def _spike_train(cfg, k, tau, amp, n, energy):
    """The SpikeTrain of pursued spikes, levels quantised over the whole train."""
    res = energy - np.cumsum(amp * amp)  # unit-norm atoms: each spike removes exactly s^2
    level, book = quantize_levels(k, amp, cfg.kernels, cfg.levels)
    meta = {"signal_energy": float(energy), "residual_energy": float(res[-1]) if res.size else float(energy)}
    st = SpikeTrain(tau, k, level, (amp > 0).astype(np.int8), amp, book, cfg, n, meta)
    st.residual_energy = res
    return st


def _pursue(read, n, cfg):
    """Chunked matching pursuit of ``n`` samples, ``read(a, b)`` giving float64 samples ``[a, min(b, n))``."""
    plan = _chunks(cfg, n)
    _check_capacity(cfg, plan, n)
    p = _Pursuit(cfg)
    out = [p.chunk(a, b, budgets, frame, read(a, b + p.lookahead)) for a, b, budgets, frame in plan]
    k, tau, amp = (np.concatenate(z) for z in zip(*out))
    if k.size == 0:
        _warn_no_spikes(cfg, n, p.energy)
    return _spike_train(cfg, k, tau, amp, n, p.energy)


class EncoderStream:
    """Causal spiketrum encoding of an open-ended stream: push audio, get back the spikes decided so far.

    The pursuit of a whole file (:meth:`SpiketrumConfig.encode`) works on ``chunk_s`` chunks of
    onsets, each seeing its own samples and the :attr:`lookahead` after them (the longest kernel). A
    stream runs the same chunks as soon as their samples and look-ahead have arrived, so the spikes
    of any pushes equal those of encoding the concatenated audio in one call, spike for spike. A spike
    is known at most :attr:`latency_s` after the sample where its atom starts. Get one with
    :meth:`SpiketrumConfig.stream`.

    Examples
    --------
    >>> import numpy as np
    >>> cfg = SpiketrumConfig(sr=8000, rate=1000, levels=1, chunk_s=0.1)
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> s = cfg.stream()
    >>> parts = [s.push(x[:3000]), s.push(x[3000:]), s.close()]
    >>> whole = cfg.encode(x, 8000)
    >>> bool(np.array_equal(np.concatenate([p.samples for p in parts]), whole.samples))
    True
    """

    def __init__(self, cfg):
        if cfg.n_spikes is not None:
            raise ValueError("a stream has no length to spread n_spikes over: use rate or snr_db")
        if cfg.levels != 1:
            raise ValueError(f"a stream needs levels=1 (got {cfg.levels}): level codebooks are chosen over a "
                             "whole spike train")
        self.config = cfg
        self._pursuit = _Pursuit(cfg)
        self._chunk, self._frame = _chunk_len(cfg)
        self.lookahead = self._pursuit.lookahead
        self._buf = np.zeros(0)  # samples from self.decided on
        self.decided = 0  # onsets before this sample are final
        self.closed = False

    @property
    def latency_s(self):
        """Longest wait, in seconds, from an atom's first sample to its spike: a chunk plus the look-ahead."""
        return (self._chunk + self.lookahead) / self.config.sr

    def _run(self, end):
        """Pursue every chunk whose look-ahead the buffer holds (all of them when ``end``)."""
        out, n = [], self._buf.size
        while (n >= self._chunk + self.lookahead) or (end and n > 0):
            a, b = self.decided, self.decided + min(self._chunk, n)
            budgets = _budgets(self.config, a, b, self._frame)
            _check_capacity(self.config, [(a, b, budgets, None)], b - a)
            out.append(self._pursuit.chunk(a, b, budgets, self._frame, self._buf[: b - a + self.lookahead]))
            self._buf, self.decided, n = self._buf[b - a :], b, n - (b - a)
        k, tau, amp = (np.concatenate(z) for z in zip(*out)) if out else (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
        return _spike_train(self.config, k, tau, amp, self.decided, self._pursuit.energy)

    def push(self, x):
        """Spikes of the chunks that ``x`` (audio at the config's rate) completes; onsets count from the
        stream's first sample, and the train's ``n_samples`` is :attr:`decided`."""
        if self.closed:
            raise ValueError("the stream is closed")
        x = np.asarray(x, np.float64).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise ValueError("audio contains NaN or inf samples")
        self._buf = np.concatenate([self._buf, x])
        return self._run(end=False)

    def close(self):
        """Spikes of the rest: the last chunks, pursued without more look-ahead than there is."""
        if self.closed:
            raise ValueError("the stream is closed")
        self.closed = True
        return self._run(end=True)
