"""Spike encodings of an audio dataset, each computed once and cached on disk, and their batching."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from spiketrum.io import InputError, resample
from spiketrum.spiketrain import FORMAT_VERSION, SpikeTrain


#: Part of every cache key: bump it when encodings change without their config JSON changing, so that
#: stale entries are never reused. 2: configs name their encoder (spiketrum 0.2 spike files); 3: a rate
#: rule's chunk budgets are rounded from the start of the file (files longer than ``chunk_s`` changed).
CACHE_VERSION = 3


class SpikeDataset(torch.utils.data.Dataset):
    """An audio dataset encoded to spikes; every encoding is computed once and cached on disk.

    Item ``i`` is ``(spikes, label)``: spike counts per ``dt_ms`` bin and channel (float32 tensor
    ``[T, n_channels]``), or the :class:`~spiketrum.SpikeTrain` itself when ``dt_ms`` is None.

    The entry of an item is ``cache_dir/<config digest>/<key>.npz``, the key a SHA-256 of the cache
    version (:data:`CACHE_VERSION` and the spike-file format), the config's JSON (which carries its own
    version) and the item's content: its file's bytes, or the encoder's input samples for items
    cut from a file (silence) and noisy items. A changed config, file or version never reuses a stale entry;
    moved or duplicated files share one. Entries are written to a temporary file and renamed into place
    (:meth:`SpikeTrain.save`), so parallel processes and crashes leave a whole entry or none; an entry
    that no longer loads (truncated, corrupt) is encoded again with a warning.

    Parameters
    ----------
    base : AudioDataset
        Source clips: anything with ``load(i) -> (x, sr)``, ``fingerprint(i) -> bytes``, ``classes``,
        ``files``, ``labels`` and a length.
    encoder_config : spiketrum.EncoderConfig
        The encoder (:func:`spiketrum.make_config`); items are ``encoder_config.encode(x, sr)``, audio
        resampled to its ``sr``.
    cache_dir : str or os.PathLike
    dt_ms : float or None
        Time bin of the dense items in milliseconds (required: no default); None gives SpikeTrains.
    jobs : int
        Worker processes for :meth:`prepare` (spawned: safe beside torch and numba threads).
    noise : NoiseFolder, optional
        Mixed into every clip after resampling; its ``sr`` must be the config's.
    snr_db : float or (float, float), optional
        SNR of the mix, or a range it is drawn from uniformly per item. Needed with ``noise``.
    seed : int
        Seeds the noise and ``perturb``. Each item's draws come from a generator seeded with ``seed`` and the
        item's content, so they are the same whatever the item's position or process.
    perturb : callable, optional
        ``perturb(x, sr, rng) -> x`` changes every clip's audio before the noise is mixed in (e.g.
        :meth:`spiketrum.perturb.Augment.audio`: speed and spectral tilt); it must pickle for ``jobs`` > 1.
    warp : float
        Each item is encoded with the kernels warped by its own factor, uniform in ``[1 - warp, 1 + warp]``
        and rounded to 0.01 (vocal-tract-length perturbation: :attr:`spiketrum.SpiketrumConfig.warp`). The
        item's SpikeTrain records its factor in its config.
    transform : callable, optional
        Applied to every item's spikes (the SpikeTrain when ``dt_ms`` is None, else the dense tensor).
    in_memory : bool
        Keep every SpikeTrain in memory once fetched, so later epochs read neither the audio (for its
        cache key) nor the cache entry again.

    Attributes
    ----------
    classes, files, labels
        Those of ``base``.
    cache_dir : pathlib.Path
        This config's folder of entries.
    skipped : list of (pathlib.Path, str)
        Items :meth:`prepare` left out because their audio could not be read or encoded, and why.
    """

    def __init__(self, base, encoder_config, cache_dir, *, dt_ms, jobs=1, noise=None, snr_db=None, seed=0, transform=None,
                 in_memory=True, perturb=None, warp=0.0):
        if dt_ms is not None and not dt_ms > 0:
            raise ValueError(f"dt_ms must be > 0 milliseconds or None, got {dt_ms!r}")
        if not (isinstance(jobs, int) and jobs >= 1):
            raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
        if noise is not None and snr_db is None:
            raise ValueError("noise needs snr_db")
        if not (np.isfinite(warp) and 0 <= warp <= 0.5):
            raise ValueError(f"warp must be in [0, 0.5], got {warp!r}")
        if warp and not hasattr(encoder_config, "warp"):
            raise ValueError(f"warp needs an encoder whose kernels warp (spiketrum), not {encoder_config.name}")
        if noise is not None and noise.sr != encoder_config.sr:
            raise ValueError(f"noise is at {noise.sr} Hz, the encoder at {encoder_config.sr} Hz: load it with "
                             f"NoiseFolder(root, sr={encoder_config.sr})")
        self.base, self.config, self.dt_ms, self.jobs = base, encoder_config, dt_ms, jobs
        self.noise, self.snr_db, self.seed, self.transform, self.perturb = noise, snr_db, seed, transform, perturb
        self.warp = float(warp)
        self.config_json = encoder_config.to_json()
        self._key = f"cache-v{CACHE_VERSION}-format-v{FORMAT_VERSION}|{self.config_json}".encode()
        self.cache_dir = Path(cache_dir) / hashlib.sha256(self._key).hexdigest()[:16]
        self.classes, self.files, self.labels = base.classes, base.files, base.labels
        self._memory = {} if in_memory else None
        self.skipped = []

    def __len__(self):
        return len(self.base)

    @property
    def _drawn(self):
        """Whether items are drawn from a generator (noise, perturb, warp): their key is then the encoder's input."""
        return self.noise is not None or self.perturb is not None or self.warp > 0

    def _input(self, i, fingerprint):
        """``(x, config)``: the encoder's input for item ``i`` (audio at the config's rate, perturbed and noise
        mixed in if asked) and the config that encodes it (warped if asked)."""
        x, sr = self.base.load(i)
        if sr != self.config.sr:
            x = resample(x, sr, self.config.sr)
        config = self.config
        if self._drawn:
            rng = np.random.default_rng([self.seed, *np.frombuffer(fingerprint[:16], np.uint32).tolist()])
            if self.perturb is not None:
                x = self.perturb(x, self.config.sr, rng)
            if self.noise is not None:
                snr = rng.uniform(*self.snr_db) if np.ndim(self.snr_db) else self.snr_db
                x = self.noise.mix(x, snr, rng)
            if self.warp:  # drawn last, so that the audio draws stay those of an unwarped dataset
                factor = round(float(rng.uniform(1 - self.warp, 1 + self.warp)), 2)
                config = dataclasses.replace(config, warp=factor)
        return x, config

    def audio(self, i):
        """The encoder's input for item ``i``: its audio at the config's rate, perturbed and noisy if asked."""
        return self._input(i, self.base.fingerprint(i) if self._drawn else None)[0]

    def entry(self, i):
        """Cache path of item ``i``, and ``(input, config)`` when the key needed them (drawn items), else None."""
        content, drawn = self.base.fingerprint(i), None
        if self._drawn:
            drawn = x, config = self._input(i, content)
            content = hashlib.sha256(b"%d:" % self.config.sr + x.tobytes()).digest()
            if config is not self.config:
                content += config.to_json().encode()
        return self.cache_dir / f"{hashlib.sha256(self._key + b'|' + content).hexdigest()}.npz", drawn

    def _fetch(self, i):
        """``(SpikeTrain, whether it was encoded now)`` for item ``i``."""
        if self._memory is not None and i in self._memory:
            return self._memory[i], False
        st, fresh = self._fetch_stored(i)
        if self._memory is not None:
            self._memory[i] = st
        return st, fresh

    def _fetch_stored(self, i):
        path, drawn = self.entry(i)
        config = self.config if drawn is None else drawn[1]
        if path.is_file():
            try:
                st = SpikeTrain.load(path)
                if st.config.to_json() == config.to_json():
                    return st, False
            except InputError as exc:
                warnings.warn(f"re-encoding a damaged cache entry: {exc}", stacklevel=3)
        st = config.encode((self._input(i, None) if drawn is None else drawn)[0], config.sr)
        path.parent.mkdir(parents=True, exist_ok=True)
        st.save(path)
        return st, True

    def spikes(self, i):
        """The :class:`~spiketrum.SpikeTrain` of item ``i``, from the cache or encoded (and cached) now."""
        return self._fetch(i)[0]

    def __getitem__(self, i):
        st = self.spikes(i)
        item = st if self.dt_ms is None else st.to_dense(self.dt_ms, torch=True)
        return (self.transform(item) if self.transform is not None else item), self.labels[i]

    def __repr__(self):
        return f"SpikeDataset({len(self)} clips, {self.config.name} at {self.config.sr} Hz, cache {self.cache_dir})"

    def prepare(self, progress=True):
        """Encode every item missing from the cache, in ``jobs`` processes, with a progress bar.

        An item whose audio cannot be read or encoded (a corrupt file that fails partway, NaN or inf
        samples: any ValueError, :class:`~spiketrum.io.InputError` included) is dropped from the
        dataset with one warning naming its file, and listed in :attr:`skipped`; the other items keep
        their order. If every item fails, the first failure is raised.

        Returns
        -------
        int
            How many items were encoded (0 when the whole corpus was cached).
        """
        from tqdm.auto import tqdm

        encoded, failed = 0, []
        with tqdm(total=len(self), desc=f"encoding into {self.cache_dir}", unit="clip", disable=not progress) as bar:
            for i, fresh, error in self._fetch_all():
                if error is None:
                    encoded += fresh
                else:
                    failed.append((i, error))
                bar.update()
        if failed:
            if len(failed) == len(self):
                raise ValueError(failed[0][1])
            self._drop(failed)
        return encoded

    def _drop(self, failed):
        """Leave out the items ``failed`` (``(index, message)``) and warn once per file."""
        bad = {i for i, _ in failed}
        for i, message in failed:
            path = str(self.base.files[i])
            problem = message[len(path) + 2:] if message.startswith(f"{path}: ") else message
            self.skipped.append((self.base.files[i], problem))
            warnings.warn(f"{path}: skipped, cannot encode it ({problem})", stacklevel=3)
        keep = [i for i in range(len(self)) if i not in bad]
        if self._memory is not None:
            self._memory = {new: self._memory[old] for new, old in enumerate(keep) if old in self._memory}
        self.base = self.base.subset(keep)
        self.classes, self.files, self.labels = self.base.classes, self.base.files, self.base.labels

    def _fetch_all(self):
        """``(index, encoded now, None)`` or ``(index, False, error message)`` for every item, in order."""
        if self.jobs == 1:
            for i in range(len(self)):
                yield _fetch_or_fail(self, i)
            return
        # Workers only encode: transforms (often lambdas) need not pickle.
        worker = copy.copy(self)
        worker.transform, worker._memory = None, None
        if getattr(self.base, "transform", None) is not None:
            worker.base = copy.copy(self.base)
            worker.base.transform = None
        chunk = max(1, min(16, len(self) // (4 * self.jobs)))
        with ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                 initargs=(worker,)) as pool:
            yield from pool.map(_fetch_in_worker, range(len(self)), chunksize=chunk)


def _fetch_or_fail(dataset, i):
    try:
        return i, dataset._fetch(i)[1], None
    except ValueError as exc:  # InputError names the file; other ValueErrors (a silent clip to mix noise into) do not
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        path = str(dataset.base.files[i])
        return i, False, message if message.startswith(path) else f"{path}: {message}"


_WORKER = None


def _start_worker(dataset):
    global _WORKER
    _WORKER = dataset


def _fetch_in_worker(i):
    return _fetch_or_fail(_WORKER, i)


def collate_spikes(batch, dt_ms=None):
    """Stack ``(spikes, label)`` items into one time-major batch, zero-padded to the longest.

    Use as ``DataLoader(..., collate_fn=collate_spikes)``, or with ``functools.partial`` setting
    ``dt_ms`` for SpikeTrain items.

    Parameters
    ----------
    batch : sequence of (SpikeTrain or array-like [T, C], int)
        SpikeTrains are binned at ``dt_ms``; dense items (as :class:`SpikeDataset` gives) are used as
        they are, already binned.
    dt_ms : float, optional
        Time bin in milliseconds; required when the batch holds SpikeTrains.

    Returns
    -------
    x : torch.Tensor, float32, [T_max, B, C]
        Spike counts per bin; zero past each item's length.
    lengths : torch.Tensor, int64, [B]
        Bins per item.
    labels : torch.Tensor, int64, [B]
    """
    spikes, labels = zip(*batch)
    if dt_ms is None and any(isinstance(s, SpikeTrain) for s in spikes):
        raise ValueError("collate_spikes needs dt_ms to bin SpikeTrain items")
    dense = [s.to_dense(dt_ms, torch=True) if isinstance(s, SpikeTrain) else torch.as_tensor(s, dtype=torch.float32) for s in spikes]
    channels = {d.shape[1] for d in dense}
    if len(channels) > 1:
        raise ValueError(f"items have different channel counts {sorted(channels)}: encode them with one config")
    lengths = torch.tensor([d.shape[0] for d in dense], dtype=torch.int64)
    return torch.nn.utils.rnn.pad_sequence(dense), lengths, torch.as_tensor(labels, dtype=torch.int64)
