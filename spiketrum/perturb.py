"""Perturbations of a SpikeTrain: seeded spike loss, jitter and insertion for robustness tests, and the
stretches, shifts and masks that augment training data; and two of the audio before it is encoded, speed
and spectral tilt, that vary a voice and a microphone.

Each function returns a new SpikeTrain with the same config (and length, unless it says otherwise) and leaves its input
untouched. It works for spiketrum and baseline trains alike. The operation and its arguments are
appended to ``meta["perturb"]``, so a saved perturbed train says how it was made.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .io import resample
from .spiketrain import SpikeTrain

_FIELDS = ("samples", "kernel", "level", "polarity", "amplitude")


def _check(name, value, lo, hi=np.inf):
    if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and lo <= value <= hi and np.isfinite(value)):
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")


def _rebuild(st, fields, op, n_samples=None):
    """A new train from replacement spike arrays (SpikeTrain re-sorts them by time)."""
    meta = dict(st.meta)
    meta["perturb"] = list(meta.get("perturb", [])) + [op]
    return SpikeTrain(**fields, level_amplitudes=st.level_amplitudes.copy(), config=st.config,
                      n_samples=st.n_samples if n_samples is None else n_samples, meta=meta)


def _subset(st, keep, op):
    return _rebuild(st, {k: getattr(st, k)[keep] for k in _FIELDS}, op)


def delete(st, p, seed=0):
    """Drop each spike independently with probability ``p``.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=1000, method="poisson")
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
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=500, method="lif")
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
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(16000), 16000, n_spikes=100, method="delta")
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
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=2000, method="poisson")
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


def stretch(st, factor):
    """Play the spikes ``factor`` times slower (> 1) or faster (< 1): times and length scale, channels stay.

    A tempo change without a pitch change, since every spike keeps its kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=200, method="lif")
    >>> slow = stretch(st, 1.5)
    >>> slow.n_samples, len(slow) == len(st)
    (12000, True)
    """
    _check("factor", factor, 1e-3, 1e3)
    n = max(1, int(round(st.n_samples * factor)))
    fields = {k: getattr(st, k) for k in _FIELDS}
    fields["samples"] = np.minimum(np.floor(st.samples * factor).astype(np.int64), n - 1)
    return _rebuild(st, fields, {"op": "stretch", "factor": float(factor)}, n)


def crop(st, start, stop):
    """The spikes of samples ``start`` .. ``stop - 1``, as a train of ``stop - start`` samples starting at 0.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=200, method="lif")
    >>> part = crop(st, 1000, 3000)
    >>> part.n_samples, len(part) == int(np.sum((st.samples >= 1000) & (st.samples < 3000)))
    (2000, True)
    """
    if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer)) and 0 <= start < stop <= st.n_samples):
        raise ValueError(f"need integers 0 <= start < stop <= {st.n_samples}, got start={start!r}, stop={stop!r}")
    keep = (st.samples >= start) & (st.samples < stop)
    fields = {k: getattr(st, k)[keep] for k in _FIELDS}
    fields["samples"] = fields["samples"] - start
    return _rebuild(st, fields, {"op": "crop", "start": int(start), "stop": int(stop)}, int(stop - start))


def shift_kernels(st, k):
    """Move every spike ``k`` kernels up (k > 0) or down: a shift along the cochlea's place axis.

    Spikes shifted past the first or last kernel are dropped. Amplitudes keep their values; the
    representative amplitudes stay those of each kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=500, method="poisson")
    >>> up = shift_kernels(st, 1)
    >>> bool(np.all(up.kernel >= 1)), len(up) == int(np.sum(st.kernel < st.config.kernels - 1))
    (True, True)
    """
    if isinstance(k, bool) or int(k) != k:
        raise ValueError(f"k must be an integer, got {k!r}")
    moved = st.kernel.astype(np.int64) + int(k)
    keep = (moved >= 0) & (moved < st.config.kernels)
    fields = {f: getattr(st, f)[keep] for f in _FIELDS}
    fields["kernel"] = moved[keep]
    return _rebuild(st, fields, {"op": "shift_kernels", "k": int(k)})


def mask_kernels(st, lo, hi):
    """Delete every spike of kernels ``lo`` .. ``hi - 1``: a band of the cochlea falls silent.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=500, method="poisson")
    >>> bool(np.any((mask_kernels(st, 3, 6).kernel >= 3) & (mask_kernels(st, 3, 6).kernel < 6)))
    False
    """
    if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer)) and 0 <= lo <= hi):
        raise ValueError(f"need integers 0 <= lo <= hi, got lo={lo!r}, hi={hi!r}")
    return _subset(st, (st.kernel < lo) | (st.kernel >= hi), {"op": "mask_kernels", "lo": int(lo), "hi": int(hi)})


def delay(st, ms):
    """Prepend ``ms`` milliseconds of silence: every spike moves later and the train grows by as much.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, n_spikes=100, method="lif")
    >>> later = delay(st, 100)
    >>> later.n_samples - st.n_samples, int(later.samples[0] - st.samples[0])
    (1600, 1600)
    """
    _check("ms", ms, 0)
    n = int(round(ms * st.sr / 1000))
    fields = {k: getattr(st, k) for k in _FIELDS}
    fields["samples"] = st.samples + n
    return _rebuild(st, fields, {"op": "delay", "ms": float(ms)}, st.n_samples + n)


def speed(x, sr, factor):
    """Play audio ``x`` (sampled at ``sr`` Hz) ``factor`` times faster: every frequency, the pitch and the
    formants scale by ``factor`` and the length by ``1 / factor`` (Ko et al., Interspeech 2015).

    The factor is rounded to a multiple of 1/100, so that the polyphase resampler's ratio stays small.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 500 * np.arange(8000) / 8000)
    >>> y = speed(x, 8000, 1.1)
    >>> len(y), round(np.argmax(np.abs(np.fft.rfft(y))) * 8000 / len(y))
    (7273, 550)
    """
    _check("factor", factor, 0.5, 2.0)
    steps = int(round(factor * 100))
    return x if steps == 100 else resample(x, sr * steps, sr * 100)


def tilt(x, sr, db_per_octave, pivot_hz=1000.0):
    """Tilt the spectrum of ``x`` by ``db_per_octave`` about ``pivot_hz``, zero phase: a microphone or a voice
    that is brighter (> 0) or duller (< 0). Below 100 Hz the gain stays at its 100 Hz value.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(8000) / 8000
    >>> y = tilt(np.sin(2 * np.pi * 2000 * t), 8000, 6.0)
    >>> round(float(20 * np.log10(np.abs(y).max())), 1)
    6.0
    """
    _check("db_per_octave", db_per_octave, -24, 24)
    if db_per_octave == 0 or len(x) == 0:
        return x
    f = np.fft.rfftfreq(len(x), 1 / sr)
    gain = 10 ** (db_per_octave * np.log2(np.maximum(f, 100.0) / pivot_hz) / 20)
    return np.fft.irfft(np.fft.rfft(x) * gain, len(x)).astype(x.dtype, copy=False)


class _Spec:
    """``parse`` and ``spec`` of a frozen dataclass of strengths written ``"key:value,..."``."""

    UNITS = {}
    KIND = ""

    @classmethod
    def parse(cls, spec):
        """An instance from ``"key:value,..."`` (units ms and dB optional); ``"none"`` or ``""`` for none.

        Examples
        --------
        >>> Augment.parse("deletion:0.2,jitter:1ms,noise:10dB")
        Augment(deletion=0.2, jitter=1.0, insertion=0.0, stretch=0.0, shift=0, mask=0, delay=0.0, noise=10.0, speed=0.0, tilt=0.0, warp=0.0, copies=1)
        """
        spec = spec.strip()
        if spec.lower() in ("", "none"):
            return cls()
        names = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for item in spec.split(","):
            key, sep, value = item.strip().partition(":")
            if not sep or key not in names:
                raise ValueError(f"bad {cls.KIND} item {item.strip()!r}: use key:value with keys {', '.join(names)}")
            unit = cls.UNITS.get(key, "")
            text = value.strip()
            if unit and text.lower().endswith(unit.lower()):
                text = text[: -len(unit)]
            try:
                values[key] = int(text) if type(names[key].default) is int else float(text)
            except ValueError:
                raise ValueError(f"bad {cls.KIND} value {item.strip()!r}: expected a number{' in ' + unit if unit else ''}") from None
        return cls(**values)

    def spec(self):
        """The :meth:`parse` string of this instance (``"none"`` when it does nothing)."""
        def number(v):  # shortest text that parses back to the same value
            return str(int(v)) if float(v).is_integer() else repr(float(v))

        items = [f"{f.name}:{number(getattr(self, f.name))}{self.UNITS.get(f.name, '')}" for f in dataclasses.fields(self)
                 if getattr(self, f.name) != f.default]
        return ",".join(items) or "none"


@dataclasses.dataclass(frozen=True)
class Augment(_Spec):
    """Random transforms of every training clip's spikes, drawn afresh each time the clip is used.

    Each field is the largest strength; every use draws one uniformly between none and it. Field
    names are the keys of :meth:`parse` specs (``"deletion:0.2,jitter:1ms,noise:10dB"``).

    Attributes
    ----------
    deletion : float
        Probability of deleting each spike (:func:`spiketrum.delete`).
    jitter : float
        Sigma of Gaussian spike-time jitter, ms.
    insertion : float
        Spurious spikes per second per channel.
    stretch : float
        Tempo change: time scales by ``exp(u)``, ``u`` uniform in ``[-stretch, stretch]``.
    shift : int
        Shift along the place axis by up to this many kernels, up or down (speaker and vocal-tract
        variation).
    mask : int
        Silence a band of up to this many adjacent kernels.
    delay : float
        Leading silence, ms.
    noise : float or None
        With probability 1/2 the clip is replaced by an encoding of it with real background noise
        (from the first 80 % of each noise clip) mixed at an SNR drawn uniformly from
        ``[noise, noise + 20]`` dB. The noisy encodings are cached like the clean ones.
    speed : float
        Audio speed perturbation (:func:`speed`), factor uniform in ``[1 - speed, 1 + speed]``: pitch and
        formants move together, as between a child, a woman and a man.
    tilt : float
        Spectral tilt (:func:`tilt`) in dB per octave, uniform in ``[-tilt, tilt]``: the microphone and the
        voice's brightness.
    warp : float
        Vocal-tract-length perturbation in the encoder: each perturbed copy is encoded with its kernels
        warped (:attr:`~spiketrum.SpiketrumConfig.warp`) by a factor uniform in ``[1 - warp, 1 + warp]``,
        rounded to 0.01. Unlike ``shift``, it is continuous and leaves the pitch and the band's edges alone.
    copies : int
        Perturbed encodings per clip (noise, speed, tilt and warp act on the audio or the encoder, so they
        are encoded and cached), each with its own draw; every perturbed use draws one, so the model does not
        learn one fixed noise per clip.
    """

    deletion: float = 0.0
    jitter: float = 0.0
    insertion: float = 0.0
    stretch: float = 0.0
    shift: int = 0
    mask: int = 0
    delay: float = 0.0
    noise: float | None = None
    speed: float = 0.0
    tilt: float = 0.0
    warp: float = 0.0
    copies: int = 1

    UNITS = {"jitter": "ms", "delay": "ms", "noise": "dB", "tilt": "dB"}
    KIND = "augment"

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "noise":
                if v is not None and not np.isfinite(v):
                    raise ValueError(f"augment noise must be a finite SNR in dB, got {v!r}")
            elif f.name == "copies":
                if not (isinstance(v, (int, np.integer)) and v >= 1):
                    raise ValueError(f"augment copies must be a positive integer, got {v!r}")
            elif not (np.isfinite(v) and v >= 0) or (f.name in ("deletion", "speed", "warp") and v > (1 if f.name == "deletion" else 0.5)):
                raise ValueError(f"augment {f.name} must be {'in [0, 1]' if f.name == 'deletion' else 'in [0, 0.5]' if f.name in ('speed', 'warp') else 'a finite number >= 0'}, got {v!r}")

    @property
    def encoded(self):
        """Whether any transform acts on the audio or the encoder (noise, speed, tilt, warp), so that it needs
        perturbed encodings."""
        return self.noise is not None or self.speed > 0 or self.tilt > 0 or self.warp > 0

    def audio(self, x, sr, rng):
        """Speed and tilt drawn from ``rng`` applied to audio ``x`` at ``sr`` Hz (noise is mixed by the dataset)."""
        if self.speed:
            x = speed(x, sr, 1.0 + rng.uniform(-self.speed, self.speed))
        if self.tilt:
            x = tilt(x, sr, rng.uniform(-self.tilt, self.tilt))
        return x

    def __call__(self, st, rng):
        """A transformed copy of SpikeTrain ``st``; ``rng`` (a numpy Generator) makes every draw."""
        seed = lambda: int(rng.integers(2**63))  # noqa: E731
        if self.stretch:
            st = stretch(st, float(np.exp(rng.uniform(-self.stretch, self.stretch))))
        if self.shift:
            st = shift_kernels(st, int(rng.integers(-self.shift, self.shift + 1)))
        if self.mask:
            width = int(rng.integers(0, self.mask + 1))
            lo = int(rng.integers(0, max(1, st.config.kernels - width + 1)))
            st = mask_kernels(st, lo, lo + width)
        if self.deletion:
            st = delete(st, rng.uniform(0, self.deletion), seed())
        if self.jitter:
            st = jitter(st, rng.uniform(0, self.jitter), seed())
        if self.insertion:
            st = insert(st, rng.uniform(0, self.insertion), seed())
        if self.delay:
            st = delay(st, rng.uniform(0, self.delay))
        return st


@dataclasses.dataclass(frozen=True)
class _Tilted:
    """A fixed :func:`tilt`, in the ``perturb(x, sr, rng)`` form a spike dataset takes (it pickles for workers)."""

    db_per_octave: float

    def __call__(self, x, sr, rng):
        return tilt(x, sr, self.db_per_octave)


@dataclasses.dataclass(frozen=True)
class InferenceAugment(_Spec):
    """Test-time augmentation: views of a clip whose class probabilities a classifier averages.

    The views are the clip itself, its encodings with the kernels warped by ``1 ± k·STEP`` up to ``warp``
    (:attr:`~spiketrum.SpiketrumConfig.warp`; only for an encoder whose kernels warp) and its audio tilted
    by ``±tilt`` dB per octave (:func:`tilt`). An unseen voice is then heard as if its vocal tract were a
    little shorter or longer and its microphone brighter or duller, which is what the training
    augmentation taught the model, and the model's doubts average out. ``parse`` specs as for
    :class:`Augment`: ``"warp:0.15,tilt:4dB"``, or ``"none"`` for the clip alone.

    Examples
    --------
    >>> from spiketrum import SpiketrumConfig
    >>> views = InferenceAugment(warp=0.1, tilt=4).views(SpiketrumConfig(sr=8000, rate=1000))
    >>> [(v.warp, getattr(p, "db_per_octave", 0.0)) for v, p in views]
    [(1.0, 0.0), (0.9, 0.0), (0.95, 0.0), (1.05, 0.0), (1.1, 0.0), (1.0, -4.0), (1.0, 4.0)]
    """

    warp: float = 0.0
    tilt: float = 0.0

    UNITS = {"tilt": "dB"}
    KIND = "tta"
    STEP = 0.05  # warp grid: about a third of a kernel's spacing in the formant range

    def __post_init__(self):
        _check("tta warp", self.warp, 0, 0.5)
        _check("tta tilt", self.tilt, 0, 24)

    def views(self, config):
        """``[(config, perturb), ...]``: the encoder config and audio change (None: none) of each view, the
        unchanged clip first."""
        if self.warp and not hasattr(config, "warp"):
            raise ValueError(f"tta warp needs an encoder whose kernels warp (spiketrum), not {config.name}")
        n = int(round(self.warp / self.STEP + 1e-9))
        factors = [round(1 + k * self.STEP, 2) for k in range(-n, n + 1) if k]
        return ([(config, None)] + [(dataclasses.replace(config, warp=f), None) for f in factors]
                + [(config, _Tilted(float(db))) for db in ((-self.tilt, self.tilt) if self.tilt else ())])


DEFAULT_AUGMENT = "stretch:0.1,shift:1,mask:5,delay:100ms,deletion:0.2,noise:5dB,tilt:4dB,copies:4"
#: The test-time views a clip classifier averages (chosen on the validation speakers of FSDD leave-one-speaker-out).
DEFAULT_TTA = "warp:0.1,tilt:8dB"
