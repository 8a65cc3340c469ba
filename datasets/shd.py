"""Spike datasets in the HDF5 layout of the Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC):
reading them as the trainer's items, their splits, their download, and writing a corpus in that layout.

The layout (Cramer et al. 2020, files at https://zenkelab.org/datasets/):

* ``spikes/times``: per clip, the spike times in seconds (variable-length float32);
* ``spikes/units``: per clip, the channel of every spike (variable-length uint16; SHD and SSC: 700 channels);
* ``labels``: class per clip (uint16), an index into ``extra/keys`` (class names);
* ``extra/speaker``: speaker id per clip (uint16), ``extra/meta_info``: per-speaker information.

A corpus written here (:func:`write_spike_corpus`) adds ``extra/duration`` (seconds per clip, float64, so the
binned clip has the length the audio path gives it), ``extra/meta_info/name`` (speaker names by id) and
root attributes naming its channels and the encoder its spikes came from. h5py is optional for spiketrum
as a whole and needed here (``pip install h5py``); it is imported only when a file is read or written.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from spiketrum.io import InputError, atomic_output
from spiketrum.registry import SpikeInputConfig
from spiketrum.spiketrain import bin_spikes

from ._download import fetch
from .base import existing_dir

#: Where the Zenke lab publishes SHD and SSC, with ``md5sums.txt`` beside the files.
ZENKE_URL = "https://zenkelab.org/datasets/"
#: The parts of each published corpus, as the files name them (``<corpus>_<part>.h5.gz``).
CORPUS_PARTS = {"shd": ("train", "test"), "ssc": ("train", "valid", "test")}
#: Channels of SHD's and SSC's cochlea model (files written here say their own in an attribute).
SHD_CHANNELS = 700
FORMAT = "spiketrum-spike-corpus"
FORMAT_VERSION = 1
#: Share of SHD's training clips held out for validation, as whole speakers (see :func:`validation_speakers`).
VAL_SHARE = 0.1
_FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading or writing spike datasets (SHD, SSC) needs h5py: pip install h5py") from None
    return h5py


# -- writing ------------------------------------------------------------------------------------------------
def write_spike_corpus(path, trains, labels, speakers, classes, *, all_speakers=None, corpus=None, config=None):
    """Write spike trains with their labels and speakers as one SHD-layout HDF5 file, atomically.

    The file is written to a temporary name beside ``path`` and renamed into place, so a reader never sees
    half a corpus.

    Parameters
    ----------
    path : str or os.PathLike
    trains : sequence of spiketrum.SpikeTrain
        One per clip, all from one encoder config (its channels are the file's units).
    labels : sequence of int
        Index into ``classes`` of every clip.
    speakers : sequence of str or int
        Speaker of every clip: names (stored as ids into ``all_speakers``, the names in
        ``extra/meta_info/name``) or integer ids (stored as they are).
    classes : sequence of str
        Class names, written to ``extra/keys``.
    all_speakers : sequence of str, optional
        Speaker names in id order; default the sorted names in ``speakers``. Give the whole corpus's list
        when writing its parts to separate files, so that an id means one speaker in all of them.
    corpus : str, optional
        The corpus's name, kept in the file (default the file name's part before the last ``_``).
    config : spiketrum.EncoderConfig, optional
        The encoder config of the trains; needed only when there are none (an empty part, e.g. a small
        corpus's validation part), so that the file still says its channels.

    Returns
    -------
    pathlib.Path
    """
    h5py = _h5py()
    path = Path(path)
    trains, labels, speakers, classes = list(trains), [int(y) for y in labels], list(speakers), [str(c) for c in classes]
    if not trains and config is None:
        raise ValueError(f"{path}: no spike trains to write, and no config to say the channels of an empty file")
    if not len(trains) == len(labels) == len(speakers):
        raise ValueError(f"{path}: {len(trains)} spike trains, {len(labels)} labels and {len(speakers)} speakers differ in number")
    if any(not 0 <= y < len(classes) for y in labels):
        raise ValueError(f"{path}: labels must index the {len(classes)} classes")
    config = config if config is not None else trains[0].config
    if any(st.config != config for st in trains):
        raise ValueError(f"{path}: the spike trains come from different encoder configs; write one config per corpus")
    if config.n_channels > 2**16:
        raise ValueError(f"{path}: {config.n_channels} channels do not fit SHD's uint16 units")
    names = None
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in speakers):
        ids = np.asarray(speakers, np.int64)
    else:
        names = [str(s) for s in (all_speakers if all_speakers is not None else sorted({str(s) for s in speakers}))]
        index = {n: i for i, n in enumerate(names)}
        missing = sorted({str(s) for s in speakers} - set(index))
        if missing:
            raise ValueError(f"{path}: speakers {', '.join(missing)} are not in all_speakers")
        ids = np.asarray([index[str(s)] for s in speakers], np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 2**16):
        raise ValueError(f"{path}: speaker ids must fit uint16")
    corpus = corpus or path.name.split(".")[0].rsplit("_", 1)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".part") as tmp:  # not .h5: a killed write must not pass for a corpus
        with h5py.File(tmp, "w") as f:
            times = f.create_dataset("spikes/times", (len(trains),), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (len(trains),), dtype=h5py.vlen_dtype(np.uint16))
            for i, st in enumerate(trains):
                times[i] = st.times.astype(np.float32)
                units[i] = st.channels.astype(np.uint16)
            f.create_dataset("labels", data=np.asarray(labels, np.uint16))
            f.create_dataset("extra/speaker", data=ids.astype(np.uint16))
            f.create_dataset("extra/keys", data=np.array([c.encode() for c in classes], dtype=h5py.string_dtype()))
            f.create_dataset("extra/duration", data=np.asarray([st.duration for st in trains], np.float64))
            f.create_group("extra/meta_info")
            if names is not None:
                f.create_dataset("extra/meta_info/name", data=np.array([n.encode() for n in names], dtype=h5py.string_dtype()))
            f.attrs["format"] = FORMAT
            f.attrs["version"] = FORMAT_VERSION
            f.attrs["n_channels"] = config.n_channels
            f.attrs["encoder"] = config.to_json()
            f.attrs["corpus"] = corpus
    return path


# -- reading ------------------------------------------------------------------------------------------------
def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


class SpikeFile(torch.utils.data.Dataset):
    """The clips of one SHD-layout HDF5 file, binned as the trainer's items.

    Item ``i`` is ``(spikes, label)``: spike counts per ``dt_ms`` bin and channel, a float32 tensor
    ``[T, n_channels]``, exactly as :class:`~datasets.SpikeDataset` gives the encodings of audio: binned by
    :func:`spiketrum.spiketrain.bin_spikes` with float32's precision (a spike stored as float32 just below
    a bin edge it lies on is counted in the bin that starts there). ``T`` covers the clip's
    ``extra/duration`` when the file has it (files written by :func:`write_spike_corpus`), else it ends with
    the bin of the last spike (SHD, SSC).

    The labels, speakers and layout are read and checked when the file is opened; a clip's spikes when it is
    first read (then kept in memory if ``in_memory``).

    Parameters
    ----------
    path : str or os.PathLike
        An ``.h5`` file.
    dt_ms : float
        Time bin in milliseconds.
    indices : sequence of int, optional
        The clips of the file to take, in this order (default all).
    in_memory : bool
        Keep every clip's spikes once read (SHD: some hundred MB; pass False for SSC on a small machine).
    transform : callable, optional
        Applied to every item's dense tensor.

    Attributes
    ----------
    classes : list of str
        From ``extra/keys`` (``"0"``, ``"1"``, ... when the file has none).
    labels : list of int
    speakers : list of str
        Speaker of every item: its name (``extra/meta_info/name``) or its id.
    input_config : spiketrum.registry.SpikeInputConfig
        The channel layout (700 places for SHD and SSC; a written corpus: its encoder's) and the source.
    skipped : list
        Always empty (a bad clip is an error naming the file, never skipped).

    Raises
    ------
    FileNotFoundError
        No such file.
    spiketrum.io.InputError
        Not an HDF5 file, truncated, or not in the SHD layout; the message names the file and the problem.
    """

    def __init__(self, path, dt_ms, *, indices=None, in_memory=True, transform=None):
        if dt_ms is None or not dt_ms > 0:
            raise ValueError(f"dt_ms must be > 0 milliseconds, got {dt_ms!r}")
        self.path, self.dt_ms, self.transform = Path(path), float(dt_ms), transform
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such spike dataset file")
        self._h5 = None
        self._memory = {} if in_memory else None
        self.skipped = []
        with self._guard("cannot read it"):
            f = self._file()
            for name in ("spikes/times", "spikes/units", "labels"):
                if name not in f:
                    raise InputError(self.path, f"not in the SHD layout (no {name})")
            n = f["labels"].shape[0] if f["labels"].ndim == 1 else -1
            if n < 0 or f["spikes/times"].shape != (n,) or f["spikes/units"].shape != (n,):
                raise InputError(self.path, "not in the SHD layout (labels, spikes/times and spikes/units differ in length)")
            labels = np.asarray(f["labels"][...])
            if labels.dtype.kind not in "iu":
                raise InputError(self.path, f"labels are {labels.dtype}, not integers")
            if "extra/keys" in f:
                self.classes = [_text(k) for k in np.asarray(f["extra/keys"][...]).reshape(-1)]
            else:
                self.classes = [str(k) for k in range(int(labels.max(initial=-1)) + 1)]
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise InputError(self.path, f"labels outside the {len(self.classes)} classes of extra/keys")
            speaker = np.asarray(f["extra/speaker"][...]).reshape(-1) if "extra/speaker" in f else np.zeros(n, np.int64)
            if speaker.shape != (n,):
                raise InputError(self.path, "extra/speaker does not give one speaker per clip")
            names = [_text(v) for v in f["extra/meta_info/name"][...]] if "extra/meta_info/name" in f else None
            if names is not None and speaker.size and int(speaker.max()) >= len(names):
                raise InputError(self.path, "extra/speaker holds ids past extra/meta_info/name")
            durations = np.asarray(f["extra/duration"][...], np.float64) if "extra/duration" in f else None
            if durations is not None and (durations.shape != (n,) or not np.all(np.isfinite(durations) & (durations > 0))):
                raise InputError(self.path, "extra/duration is not one positive duration per clip")
            n_channels = int(f.attrs.get("n_channels", SHD_CHANNELS))
            source = _text(f.attrs.get("encoder", ""))
            corpus = _text(f.attrs.get("corpus", self.path.name.split(".")[0].rsplit("_", 1)[0]))
        self._all_labels = labels.astype(np.int64)
        self._all_speakers = [names[s] if names is not None else str(int(s)) for s in speaker]
        self._durations = durations
        self.n_clips = n
        self.input_config = _input_config(self.path, n_channels, source, corpus)
        self.indices = np.arange(n) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise ValueError(f"{self.path}: indices outside its {n} clips")
        self.labels = [int(self._all_labels[i]) for i in self.indices]
        self.speakers = [self._all_speakers[i] for i in self.indices]
        self.files = [f"{self.path}#{i}" for i in self.indices]  # where each item comes from, for messages

    # h5py handles neither pickle nor fork: each process opens the file itself
    def __getstate__(self):
        return {**self.__dict__, "_h5": None}

    def _file(self):
        if self._h5 is None:
            h5py = _h5py()
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as exc:
                raise InputError(self.path, f"not a readable HDF5 file ({_first_line(exc)})") from None
        return self._h5

    def close(self):
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def _guard(self, what):
        return _Guard(self.path, what)

    @property
    def n_channels(self):
        return self.input_config.n_channels

    def __len__(self):
        return self.indices.size

    def subset(self, positions):
        """A :class:`SpikeFile` of this one's items at ``positions`` (sharing the spikes read so far)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__getstate__())
        out.indices = self.indices[np.asarray(positions, np.int64).reshape(-1)]
        out.labels = [int(self._all_labels[i]) for i in out.indices]
        out.speakers = [self._all_speakers[i] for i in out.indices]
        out.files = [f"{self.path}#{i}" for i in out.indices]
        return out

    def spikes(self, i):
        """``(times, units)`` of item ``i``: float32 seconds and channel ids as stored, checked."""
        k = int(self.indices[i])
        if self._memory is not None and k in self._memory:
            return self._memory[k]
        with self._guard(f"cannot read clip {k}"):
            f = self._file()
            times, units = np.asarray(f["spikes/times"][k]), np.asarray(f["spikes/units"][k])
        if times.shape != units.shape or times.ndim != 1:
            raise InputError(self.path, f"clip {k}: spikes/times and spikes/units differ in length")
        if times.dtype.kind != "f" or units.dtype.kind not in "iu":
            raise InputError(self.path, f"clip {k}: times are {times.dtype} and units {units.dtype} (need floats and integers)")
        if times.size and not (np.all(np.isfinite(times)) and times.min() >= 0):
            raise InputError(self.path, f"clip {k}: spike times are negative, NaN or inf")
        if units.size and (units.min() < 0 or units.max() >= self.n_channels):
            raise InputError(self.path, f"clip {k}: units outside its {self.n_channels} channels")
        if self._memory is not None:
            self._memory[k] = (times, units)
        return times, units

    def check(self):
        """Read (and keep, if ``in_memory``) every clip's spikes now, so a bad clip fails before any training."""
        for i in range(len(self)):
            self.spikes(i)
        return self

    def dense(self, i):
        """Item ``i``'s spike counts per bin, float32 ``[T, n_channels]`` (NumPy)."""
        times, units = self.spikes(i)
        k = int(self.indices[i])
        duration = None if self._durations is None else float(self._durations[k])
        eps = _FLOAT32_EPS if times.dtype.itemsize <= 4 else float(np.finfo(times.dtype).eps)
        return bin_spikes(times, units, self.n_channels, self.dt_ms, duration, eps)

    def __getitem__(self, i):
        item = torch.from_numpy(self.dense(i))
        return (self.transform(item) if self.transform is not None else item), self.labels[i]

    def __repr__(self):
        return f"SpikeFile({self.path}, {len(self)} clips, {len(self.classes)} classes, {self.n_channels} channels)"


class _Guard:
    """Turns h5py's errors on a damaged file (OSError, KeyError, ...) into one InputError naming it."""

    def __init__(self, path, what):
        self.path, self.what = path, what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (InputError, ImportError)):
            return False
        if isinstance(exc, (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)):
            raise InputError(self.path, f"{self.what} (a damaged or truncated HDF5 file? {_first_line(exc)})") from None
        return False


def _first_line(exc):
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _input_config(path, n_channels, source, corpus):
    """The :class:`SpikeInputConfig` of a file: a written corpus keeps its encoder's place layout (so a
    convolutional model takes the features of a place together, as on audio); SHD and SSC have 700 places."""
    if source:
        from spiketrum.registry import config_from_json

        try:
            enc = config_from_json(source)
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(path, f"its encoder attribute is not an encoder config ({_first_line(exc)})") from None
        if enc.n_channels != n_channels:
            raise InputError(path, f"its encoder has {enc.n_channels} channels, its n_channels attribute says {n_channels}")
        return SpikeInputConfig(int(enc.kernels), int(enc.levels), bool(enc.polarity_channels), corpus, source)
    if n_channels < 1:
        raise InputError(path, f"n_channels attribute {n_channels} is not positive")
    return SpikeInputConfig(n_channels, 1, False, corpus, "")


# -- corpora and splits -------------------------------------------------------------------------------------
def corpus_file(root, corpus, part):
    """The ``.h5`` of one part of a corpus in ``root``: ``<corpus>_<part>.h5``, or ``<corpus>_<part>.h5.gz``
    decompressed beside it (once, atomically). None when neither is there."""
    root = Path(root)
    h5, gz = root / f"{corpus}_{part}.h5", root / f"{corpus}_{part}.h5.gz"
    if h5.is_file():
        return h5
    if gz.is_file():
        return gunzip(gz, h5)
    return None


def gunzip(src, dst):
    """Decompress ``src`` (gzip) into ``dst`` atomically; a bad archive is an InputError naming it."""
    try:
        with atomic_output(dst, suffix=".part") as tmp, gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(src, f"not a whole gzip file ({_first_line(exc)})") from None
    return Path(dst)


def find_corpus(root):
    """The name of the one corpus in ``root`` (``<name>_train.h5`` or ``.h5.gz`` beside ``<name>_test...``)."""
    root = existing_dir(root, "spike dataset")
    names = sorted({p.name[:-len(suffix)] for suffix in ("_train.h5", "_train.h5.gz") for p in root.glob(f"*{suffix}")})
    names = [n for n in names if any((root / f"{n}_test{s}").is_file() for s in (".h5", ".h5.gz"))]
    if len(names) != 1:
        raise FileNotFoundError(f"{root}: " + ("no spike dataset (<name>_train.h5 and <name>_test.h5)" if not names else
                                               f"holds several spike datasets ({', '.join(names)}); give a folder with one"))
    return names[0]


def validation_speakers(speakers, share=VAL_SHARE):
    """The training speakers held out for validation when a corpus has no validation file (SHD).

    The rule, deterministic and documented: the one speaker whose clips are closest to ``share`` of the
    training clips (ties: the first in sorted order). Whole speakers, never test clips, as SHD's protocol asks.
    """
    counts = {}
    for s in speakers:
        counts[s] = counts.get(s, 0) + 1
    if len(counts) < 2:
        raise ValueError("holding a validation speaker out of training needs at least two training speakers")
    target = share * len(speakers)
    return [min(sorted(counts), key=lambda s: abs(counts[s] - target))]


def spike_splits(corpus, root, dt_ms, in_memory=True):
    """``(train, val, test)`` :class:`SpikeFile` parts of a spike corpus in ``root``, by the field's protocol.

    ``corpus`` is ``"shd"``, ``"ssc"``, or None for the one corpus in ``root`` (:func:`find_corpus`). A
    corpus with a ``<corpus>_valid`` file (SSC, and files :func:`write_spike_corpus` wrote for every part)
    uses it; otherwise (SHD) validation is the training speaker(s) :func:`validation_speakers` names, taken
    out of the training file, and the test file stays whole. With ``in_memory`` every clip is read and
    checked here. Each part's ``val_speakers`` says which, and its
    ``training_file_speakers`` who is in the training file (speakers of the test file not among them are
    "unseen": SHD's test file has 2 such speakers of 12).
    """
    root = existing_dir(root, "spike dataset")
    corpus = corpus or find_corpus(root)
    paths = {}
    for part in ("train", "valid", "test"):
        paths[part] = corpus_file(root, corpus, part)
    for part in ("train", "test"):
        if paths[part] is None:
            raise FileNotFoundError(f"{root / f'{corpus}_{part}.h5'}: not found (nor .h5.gz)"
                                    + (f"; download it with datasets.download_spike_corpus({corpus!r}, ...)"
                                       if corpus in CORPUS_PARTS else ""))
    if corpus == "ssc" and paths["valid"] is None:
        raise FileNotFoundError(f"{root / 'ssc_valid.h5'}: not found (nor .h5.gz): SSC's protocol has its own validation file")
    train = SpikeFile(paths["train"], dt_ms, in_memory=in_memory)
    test = SpikeFile(paths["test"], dt_ms, in_memory=in_memory)
    in_training_file = sorted(set(train.speakers))
    if paths["valid"] is not None:
        val, held = SpikeFile(paths["valid"], dt_ms, in_memory=in_memory), []
    else:
        held = validation_speakers(train.speakers)
        is_val = np.isin(np.asarray(train.speakers, dtype=object), held)
        train, val = train.subset(np.flatnonzero(~is_val)), train.subset(np.flatnonzero(is_val))
    for part in (train, val, test):
        if in_memory:  # read and check every clip now: a damaged clip fails before a run folder is made
            part.check()
        if part.input_config != train.input_config:
            raise InputError(part.path, f"its channels or source differ from {train.path}'s: one corpus, one input")
        if part.classes != train.classes:
            raise InputError(part.path, f"its classes (extra/keys) differ from {train.path}'s")
        part.val_speakers, part.training_file_speakers = list(held), in_training_file
    return train, val, test


def _md5sums(url):
    """``{file name: md5}`` from a ``md5sums.txt`` (lines ``<md5>  <name>``)."""
    with tempfile.TemporaryDirectory() as tmp:
        fetch(url, Path(tmp) / "md5sums.txt", progress=False)
        text = (Path(tmp) / "md5sums.txt").read_text(errors="replace")
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def download_spike_corpus(corpus, root, base_url=ZENKE_URL, md5=None, progress=True):
    """Download SHD or SSC into ``root`` as ``<corpus>_<part>.h5``, each file checked before it appears.

    Every ``<corpus>_<part>.h5.gz`` is fetched into a temporary folder in ``root``, its MD5 compared with
    the expected one, decompressed, opened as an SHD-layout file, and only then renamed into place; parts
    already there are kept. The expected MD5s are those of ``md5sums.txt`` fetched from ``base_url`` at
    download time (the publisher's list), unless ``md5`` gives them: this package ships no MD5 of its own,
    because none has been verified here (this machine has never reached the server).

    Parameters
    ----------
    corpus : {"shd", "ssc"}
    root : str or os.PathLike
    base_url : str
        Folder URL holding the files and ``md5sums.txt`` (any URL urllib opens).
    md5 : dict, optional
        ``{"<corpus>_<part>.h5.gz": hex md5}``, checked instead of the fetched list.

    Returns
    -------
    dict
        ``{part: path}``.

    Raises
    ------
    OSError
        A failed download, a checksum mismatch, or no checksum listed for a file.
    """
    if corpus not in CORPUS_PARTS:
        raise ValueError(f"unknown spike corpus {corpus!r}: use {', '.join(CORPUS_PARTS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    out, sums = {}, md5
    for part in CORPUS_PARTS[corpus]:
        name = f"{corpus}_{part}.h5"
        if (root / name).is_file():
            out[part] = root / name
            continue
        if sums is None:
            sums = _md5sums(base_url + "md5sums.txt")
        expected = sums.get(name + ".gz")
        if not expected:
            raise OSError(f"{base_url}md5sums.txt: lists no checksum for {name}.gz; not downloading it unchecked")
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            gz = Path(tmp) / f"{name}.gz"
            got = fetch(base_url + name + ".gz", gz, algorithm="md5", progress=progress)
            if got != expected.lower():
                raise OSError(f"{base_url}{name}.gz: checksum mismatch (got md5 {got}, expected {expected})")
            h5 = gunzip(gz, Path(tmp) / name)
            SpikeFile(h5, 1.0, in_memory=False).close()  # opens in the SHD layout, or says why not
            os.replace(h5, root / name)
        out[part] = root / name
    return out


def corpus_metadata(path):
    """The root attributes of a written corpus file (format, version, n_channels, encoder, corpus) as a dict."""
    h5py = _h5py()
    with _Guard(Path(path), "cannot read it"), h5py.File(path, "r") as f:
        d = {k: (v.item() if hasattr(v, "item") else _text(v)) for k, v in f.attrs.items()}
    if "encoder" in d:
        d["encoder"] = json.loads(d["encoder"])
    return d
