"""SpikeTrain: the one spike container every encoder returns, with its versioned file format."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .io import InputError, atomic_output
from .registry import config_from_json

FORMAT = "spiketrum-spikes"
#: 1: spiketrum 0.1 (config JSON with a "method" key; still read, converted). 2: configs name their
#: ``"encoder"`` (see :mod:`spiketrum.registry`).
FORMAT_VERSION = 2
_ARRAYS = ("samples", "kernel", "level", "polarity", "amplitude", "level_amplitudes")
#: Most intensity levels a place can have: the level index is stored as int16 (int8, before format 2,
#: wrapped negative above 127).
MAX_LEVELS = 2**15 - 1
#: More samples than any recording has (over four months at 96 kHz): a header claiming more is corrupt.
MAX_N_SAMPLES = 2**40


def _check_dt(dt_ms):
    if isinstance(dt_ms, bool) or not (isinstance(dt_ms, (int, float, np.number)) and dt_ms > 0 and np.isfinite(dt_ms)):
        raise ValueError(f"dt_ms must be a positive number of milliseconds, got {dt_ms!r}")
    return dt_ms / 1000


def bin_index(times, dt_ms, eps=np.finfo(np.float64).eps):
    """The time bin of each spike: ``floor(t / dt)``, a spike on a bin edge in the bin that starts there.

    A time meant to lie exactly on an edge ``k dt`` (a sample index that is a multiple of the bin) may be
    stored, or divided, to just below it: 0.003 s / 0.001 s is 2.9999999999999996 in float64, and a float32
    time can be off by half a unit in its last place. Quotients within ``4 eps`` (relative) below an integer
    are therefore taken as that integer. ``eps`` is the relative precision the times were stored with:
    float64's for sample-exact times, float32's (``np.finfo(np.float32).eps``) for SHD files. Two distinct
    sample times are at least one sample apart, far more than that tolerance for any clip shorter than an
    hour at audio rates and millisecond bins, so the tolerance moves only spikes that lie on an edge.

    Parameters
    ----------
    times : array-like of float
        Seconds.
    dt_ms : float
        Bin width in milliseconds.
    eps : float
        Relative precision of ``times``.

    Returns
    -------
    np.ndarray, int64

    Examples
    --------
    >>> bin_index([0.003], 1.0).tolist(), bin_index([0.0029], 1.0).tolist()
    ([3], [2])
    >>> bin_index(np.float32([0.03]), 10.0, np.finfo(np.float32).eps).tolist()  # float32(0.03) < 0.03
    [3]
    """
    q = np.asarray(times, np.float64) / _check_dt(dt_ms)
    return np.floor(q + 4 * eps * np.maximum(np.abs(q), 1.0)).astype(np.int64)


def n_bins(duration, dt_ms):
    """Bins of ``dt_ms`` that cover ``duration`` seconds: ``ceil(duration / dt)``, at least 1."""
    return max(1, int(np.ceil(duration / _check_dt(dt_ms) - 1e-9)))


def bin_spikes(times, channels, n_channels, dt_ms, duration=None, eps=np.finfo(np.float64).eps):
    """Spike counts per time bin and channel: float32 ``[n_bins, n_channels]``, the one binning rule of
    :meth:`SpikeTrain.to_dense` and of spike datasets read from files.

    Parameters
    ----------
    times : array-like of float
        Seconds.
    channels : array-like of int
        Channel of every spike, in ``[0, n_channels)``.
    n_channels : int
    dt_ms : float
        Bin width in milliseconds.
    duration : float, optional
        Seconds the bins cover (:func:`n_bins`); spikes past its last bin count in the last. None: up to
        the bin of the last spike (one bin when there are none).
    eps : float
        Relative precision of ``times`` (see :func:`bin_index`).
    """
    idx = bin_index(times, dt_ms, eps)
    T = n_bins(duration, dt_ms) if duration is not None else int(idx.max(initial=0)) + 1
    dense = np.zeros((T, n_channels), np.float32)
    np.add.at(dense, (np.clip(idx, 0, T - 1), np.asarray(channels, np.int64)), 1.0)
    return dense


class SpikeTrain:
    """Spikes as parallel arrays, sorted by time (ties in emission order).

    Attributes
    ----------
    times : np.ndarray, float64, seconds (atom onsets), ascending
    samples : np.ndarray, int64, onset sample index
    channels : np.ndarray, int32, output channel (kernel x level x polarity by place)
    kernel, level : np.ndarray, int16 (levels up to :data:`MAX_LEVELS`)
    polarity : np.ndarray, int8, 1 for positive amplitude, 0 for negative
    amplitude : np.ndarray, float64, exact matching-pursuit coefficient (the "code set")
    level_amplitudes : np.ndarray [kernels, levels], representative |amplitude| per place
    sr, n_samples, duration, n_channels, config
    """

    def __init__(self, samples, kernel, level, polarity, amplitude, level_amplitudes, config, n_samples, meta=None):
        order = np.argsort(samples, kind="stable")
        self.samples = np.asarray(samples, np.int64)[order]
        self.kernel = np.asarray(kernel, np.int16)[order]
        self.level = np.asarray(level, np.int16)[order]
        self.polarity = np.asarray(polarity, np.int8)[order]
        self.amplitude = np.asarray(amplitude, np.float64)[order]
        self.level_amplitudes = np.asarray(level_amplitudes, np.float64)
        self.config = config
        self.n_samples = int(n_samples)
        self.meta = dict(meta or {})
        self.residual_energy = None  # per-spike, in emission order; only known right after encoding

    # -- derived --------------------------------------------------------------------------------
    @property
    def sr(self):
        return self.config.sr

    @property
    def duration(self):
        return self.n_samples / self.sr

    @property
    def times(self):
        return self.samples / self.sr

    @property
    def n_channels(self):
        return self.config.n_channels

    @property
    def channels(self):
        place = self.kernel.astype(np.int32) * self.config.levels + self.level
        return (place * 2 + self.polarity if self.config.polarity_channels else place).astype(np.int32)

    def __len__(self):
        return self.samples.size

    def __repr__(self):
        return (f"SpikeTrain({len(self)} spikes, {self.duration:.3f} s, {len(self) / max(self.duration, 1e-12):.1f} spikes/s, "
                f"{self.n_channels} channels, sr={self.sr})")

    # -- conversions ----------------------------------------------------------------------------
    def to_dense(self, dt_ms, torch=False):
        """Spike counts per time bin and channel, shape ``[ceil(duration / dt), n_channels]`` (:func:`bin_spikes`:
        a spike on a bin edge is counted in the bin that starts there).

        Parameters
        ----------
        dt_ms : float
            Time bin in milliseconds (no default: every caller says which bin it trains on).
        torch : bool
            Return a ``torch.Tensor`` (imports torch) instead of a NumPy array.

        Examples
        --------
        >>> import numpy as np
        >>> from spiketrum import encode
        >>> st = encode(np.random.default_rng(0).standard_normal(8000), 16000, rate=1000)
        >>> st.to_dense(10.0).shape  # 0.5 s in 10 ms bins
        (50, 240)
        """
        dense = bin_spikes(self.times, self.channels, self.n_channels, dt_ms, self.duration)
        if torch:
            import torch as _torch

            return _torch.from_numpy(dense)
        return dense

    def to_events(self):
        """tonic-style structured array: ``t`` (µs, int64), ``x`` (channel), ``p`` (polarity)."""
        ev = np.zeros(len(self), dtype=[("t", "<i8"), ("x", "<i4"), ("p", "<i1")])
        ev["t"] = np.round(self.samples * 1e6 / self.sr).astype(np.int64)
        ev["x"] = self.channels
        ev["p"] = self.polarity
        return ev

    def to_shd_h5(self, path):
        """Write SHD-style HDF5 (``spikes/times`` in s, ``spikes/units``); needs h5py."""
        try:
            import h5py
        except ImportError:
            raise ImportError("to_shd_h5 needs h5py: pip install h5py") from None
        with atomic_output(path, suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("spikes/times", data=self.times.astype(np.float32))
                f.create_dataset("spikes/units", data=self.channels.astype(np.uint16))
                f.attrs["config"] = self.config.to_json()

    # -- files ----------------------------------------------------------------------------------
    def save(self, path):
        """Write ``.npz`` (arrays + versioned JSON header) atomically."""
        header = {"format": FORMAT, "version": FORMAT_VERSION, "config": json.loads(self.config.to_json()),
                  "n_samples": self.n_samples, "meta": self.meta}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8), **{k: getattr(self, k) for k in _ARRAYS}}
        with atomic_output(path, suffix=".part") as tmp:  # not .npz: a killed write must not pass for spikes
            # np.savez stamps each member with the time; a fixed stamp makes equal trains equal files
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                for name, a in arrays.items():
                    with z.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`; every problem is an :class:`InputError` naming the file."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InputError(path, "no such spike file")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                arrays = {k: z[k] for k in _ARRAYS}
        except MemoryError:  # an array header declaring an absurd shape
            raise InputError(path, "corrupt spike file (an array is too large to load)") from None
        except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy raise many kinds on damaged bytes
            raise InputError(path, f"not a spiketrum spike file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise InputError(path, "not a spiketrum spike file (wrong format tag)")
        version = header.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise InputError(path, f"corrupt spike file (format version {version!r} is not an integer)")
        if version > FORMAT_VERSION:
            raise InputError(path, f"spike file format version {version} is newer than this spiketrum reads ({FORMAT_VERSION}); upgrade spiketrum")
        try:
            cfg = config_from_json(json.dumps(header["config"]))
            n = header["n_samples"]
            if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_N_SAMPLES:
                raise ValueError(f"n_samples must be an integer in [1, 2**40], got {n!r}")
            sizes = {arrays[k].shape for k in _ARRAYS[:5]}
            if len(sizes) != 1 or len(next(iter(sizes))) != 1:
                raise ValueError("spike arrays differ in length")
            for k in _ARRAYS:
                if arrays[k].dtype.kind not in ("iu" if k in _ARRAYS[:4] else "iuf"):
                    raise ValueError(f"{k} has dtype {arrays[k].dtype}")
            if arrays["level_amplitudes"].shape != (cfg.kernels, cfg.levels):
                raise ValueError("codebook shape does not match the config")
            s, k, lv, pol = arrays["samples"], arrays["kernel"], arrays["level"], arrays["polarity"]
            if s.size and (s.min() < 0 or s.max() >= n or k.min() < 0 or k.max() >= cfg.kernels or lv.min() < 0
                           or lv.max() >= cfg.levels or pol.min() < 0 or pol.max() > 1):
                raise ValueError("spike indices out of range")
            if not (np.all(np.isfinite(arrays["amplitude"])) and np.all(np.isfinite(arrays["level_amplitudes"]))):
                raise ValueError("amplitudes contain NaN or inf")
            meta = header.get("meta") or {}
            if not isinstance(meta, dict):
                raise ValueError("meta is not a JSON object")
            energies = [meta[e] for e in ("signal_energy", "residual_energy") if e in meta]
            if energies and (len(energies) != 2 or not all(isinstance(e, (int, float)) and not isinstance(e, bool)
                                                           and np.isfinite(e) and e >= 0 for e in energies)):
                raise ValueError("meta energies must be two finite numbers >= 0")
        except KeyError as exc:
            raise InputError(path, f"corrupt spike file (no {exc} in its header)") from None
        except (AttributeError, TypeError, ValueError) as exc:
            raise InputError(path, f"corrupt spike file ({exc})") from None
        return cls(config=cfg, n_samples=n, meta=meta, **arrays)

    def __eq__(self, other):
        if not isinstance(other, SpikeTrain):
            return NotImplemented
        return (self.config == other.config and self.n_samples == other.n_samples
                and all(np.array_equal(getattr(self, k), getattr(other, k)) for k in _ARRAYS))
