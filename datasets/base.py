"""Labelled audio datasets: the common item model, any folder-per-class tree, and background noise."""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch.utils.data

from spiketrum.io import InputError, load_audio, resample

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")

#: Where each corpus lives under a data root, and how its folder is recognised (see :func:`locate`).
CORPORA = {
    "fsdd": (("fsdd",), lambda p: (p / "recordings").is_dir()),
    "speech-commands": (("speech_commands", "speech_commands_sample"), lambda p: (p / "testing_list.txt").is_file()),
    "noise": (("_background_noise_", "speech_commands_noise"), lambda p: False),
}


def data_root():
    """The default data root: ``$SPIKETRUM_DATA``, else ``../shared/data`` from the current directory if it
    exists, else None."""
    env = os.environ.get("SPIKETRUM_DATA")
    if env:
        return Path(env)
    shared = Path("..", "shared", "data").resolve()
    return shared if shared.is_dir() else None


def locate(corpus, data=None):
    """The folder of ``corpus`` (a key of :data:`CORPORA`) for a data path, or None; the one rule every
    command and library function uses to find a corpus.

    ``data`` (default :func:`data_root`) may be the data root or the corpus folder itself. Looked at in
    order: ``data`` itself when it is named like the corpus or looks like it (FSDD: holds ``recordings``);
    then each of the corpus's folder names inside ``data``; then beside it (``data/../<name>``).
    """
    names, looks_like = CORPORA[corpus]
    data = Path(data) if data is not None else data_root()
    if data is None:
        return None
    if data.is_dir() and (data.name in names or looks_like(data)):
        return data
    for base in (data, data.parent):
        for name in names:
            if (base / name).is_dir():
                return base / name
    return None


#: The splits a dataset accepts, as (pattern, words for the error): ``train`` for how a corpus is divided into
#: train/val/test, ``score`` for the part a trained model is evaluated on.
SPLITS = {
    ("fsdd", "train"): (r"official|loso:[^:]+", "official or loso:<speaker>"),
    ("fsdd", "score"): (r"train|val|test|loso:[^:]+(:(train|val|test))?",
                        "train, val, test or loso:<speaker>[:train|val|test]"),
    ("speech-commands", "train"): (r"official", "official"),
    ("speech-commands", "score"): (r"train|val|test", "train, val or test"),
    ("folder", "train"): (r"official", "official (10 % validation and 10 % test, chosen by a hash of each file name)"),
    ("folder", "score"): (r"train|val|test|all", "train, val, test (the parts training used) or all (every file)"),
    **{(name, "train"): (r"official", "official (the corpus's own files; SHD: validation speakers held out of training)")
       for name in ("shd", "ssc", "spikes")},
    **{(name, "score"): (r"train|val|test", "train, val or test") for name in ("shd", "ssc", "spikes")},
}


def check_split(dataset, split, purpose="score"):
    """ValueError unless ``split`` names a split of ``dataset`` for ``purpose`` (``"train"``: how the corpus
    is divided; ``"score"``: the part a model is evaluated on). Returns ``split``."""
    if (dataset, purpose) not in SPLITS:
        raise ValueError(f"unknown dataset {dataset!r} or purpose {purpose!r}")
    pattern, words = SPLITS[dataset, purpose]
    if not isinstance(split, str) or not re.fullmatch(pattern, split):
        raise ValueError(f"unknown {dataset} split {split!r}: use {words}")
    return split


def group_pattern(group_by):
    """``group_by`` compiled: a regex whose first capture group, searched in a file name, is the file's group
    (its speaker, e.g. ``^([0-9a-f]{8})_nohash`` for Speech Commands, ``^\\d_([a-z]+)_`` for FSDD)."""
    try:
        pattern = re.compile(group_by)
    except (re.error, TypeError) as exc:
        raise ValueError(f"group_by {group_by!r} is not a regular expression ({exc})") from None
    if pattern.groups < 1:
        raise ValueError(f"group_by {group_by!r} has no capture group (the group is its first one)")
    return pattern


def file_groups(files, group_by):
    r"""The group of every file: the first capture group of ``group_by`` searched in its name.

    Raises ValueError naming the first file whose name does not match: a file without a group could land on
    both sides of a split with its speaker's other files.

    Examples
    --------
    >>> file_groups(["0_george_1.wav", "3_jackson_12.wav"], r"^\d_([a-z]+)_")
    ['george', 'jackson']
    """
    pattern = group_pattern(group_by)
    groups = []
    for f in files:
        m = pattern.search(Path(f).name)
        if m is None or m.group(1) is None:
            raise ValueError(f"{f}: the file name does not match the group pattern {group_by!r}")
        groups.append(m.group(1))
    return groups


def hash_split(files, seed=0, val=0.1, test=0.1, groups=None):
    """Deterministic split of a folder dataset: ``{"train", "val", "test"}`` -> indices into ``files``.

    Each file's side is chosen by a hash of ``seed`` and its name alone, so the same file always lands on
    the same side whatever else is in the folder (and a file left out does not move the others). With
    ``groups`` (one key per file, e.g. its speaker) the hash is the group's: every file of a group lands on
    one side, and ``val`` and ``test`` are shares of the groups, not of the files.
    """
    keys = [Path(f).name for f in files] if groups is None else [f"group:{g}" for g in groups]
    if len(keys) != len(files):
        raise ValueError(f"groups has {len(keys)} entries for {len(files)} files")

    def below(fraction, salt):
        h = [int(hashlib.sha256(f"{salt}:{k}".encode()).hexdigest()[:8], 16) / 2**32 for k in keys]
        return np.array(h, dtype=float).reshape(-1) < fraction
    is_test = below(test, f"test{seed}")
    is_val = ~is_test & below(val / (1 - test), f"val{seed}")
    return {"train": np.flatnonzero(~is_test & ~is_val), "val": np.flatnonzero(is_val), "test": np.flatnonzero(is_test)}


def check_disjoint_groups(groups, parts):
    """ValueError naming a group found in two of ``parts`` (name -> indices into ``groups``)."""
    seen = {}
    for part, idx in parts.items():
        for g in {groups[i] for i in idx}:
            if g in seen:
                raise ValueError(f"group {g!r} is in both the {seen[g]} and the {part} split: a speaker would be "
                                 "scored on clips of a voice the model trained on")
            seen[g] = part


def existing_dir(root, what):
    """``root`` as a Path; FileNotFoundError naming it (and ``what`` it should hold) if it is no folder."""
    if root is None:
        raise FileNotFoundError(f"no folder given for the {what}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {what} not found" + (" (not a directory)" if root.exists() else ""))
    return root


def read_segment(path, start, stop):
    """Samples ``[start, stop)`` of an audio file as mono float32, reading only that part.

    Returns
    -------
    x : np.ndarray, float32, shape (stop - start,)
    sr : int

    Raises
    ------
    InputError
        Unreadable file, or a range outside the file.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(os.fspath(path)) as f:
            if not 0 <= start < stop <= f.frames:
                raise InputError(path, f"segment [{start}, {stop}) lies outside its {f.frames} samples")
            f.seek(start)
            x, sr = f.read(stop - start, dtype="float32", always_2d=True), int(f.samplerate)
    except InputError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InputError(path, f"not a readable audio file ({str(exc).splitlines()[0]})") from None
    return np.ascontiguousarray(x.mean(axis=1), np.float32), sr


def _probe(path):
    """Why ``path`` is not usable audio, or None if its header reads and it has samples."""
    import soundfile as sf

    try:
        frames = sf.info(os.fspath(path)).frames
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return msg.replace(f"Error opening {os.fspath(path)!r}: ", "")
    return None if frames > 0 else "no samples"


def _audio_files(folder, extensions, recursive):
    exts = {e.lower() for e in extensions}
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in exts and p.is_file())


class AudioDataset(torch.utils.data.Dataset):
    """Labelled audio clips; item ``i`` is ``(audio, label)``.

    The audio is mono float32 at the file's own rate (:meth:`load` also gives the rate).

    Parameters
    ----------
    files : sequence of str or os.PathLike
    labels : sequence of int
        Index into ``classes`` of every item.
    classes : sequence of str
    segments : sequence of (int, int) or None, optional
        Per item, the ``(start, stop)`` samples it takes from its file (items cut from a longer
        file, like Speech Commands' silence), or None for the whole file.
    transform : callable, optional
        Applied to the audio of every item.
    groups : sequence of str, optional
        Per item, its group (speaker) when known; None otherwise.
    """

    def __init__(self, files, labels, classes, segments=None, transform=None, groups=None):
        self.files = [Path(f) for f in files]
        self.groups = None if groups is None else [str(g) for g in groups]
        if self.groups is not None and len(self.groups) != len(self.files):
            raise ValueError("files and groups differ in length")
        self.labels = [int(y) for y in labels]
        self.classes = list(classes)
        self.segments = list(segments) if segments is not None else [None] * len(self.files)
        self.transform = transform
        if not len(self.files) == len(self.labels) == len(self.segments):
            raise ValueError("files, labels and segments differ in length")
        if any(not 0 <= y < len(self.classes) for y in self.labels):
            raise ValueError(f"labels must index the {len(self.classes)} classes")

    def __len__(self):
        return len(self.files)

    def load(self, i):
        """Audio of item ``i`` as ``(x, sr)``: mono float32 at the file's own rate."""
        seg = self.segments[i]
        return load_audio(self.files[i]) if seg is None else read_segment(self.files[i], *seg)

    def fingerprint(self, i):
        """SHA-256 digest of item ``i``'s content: its file's bytes, or the rate and samples of a segment."""
        if self.segments[i] is None:
            try:
                return hashlib.sha256(self.files[i].read_bytes()).digest()
            except OSError as exc:
                raise InputError(self.files[i], exc.strerror or type(exc).__name__) from None
        x, sr = self.load(i)
        return hashlib.sha256(b"%d:" % sr + x.tobytes()).digest()

    def subset(self, indices):
        """A plain :class:`AudioDataset` of the items at ``indices``, with the same classes and transform."""
        idx = [int(i) for i in indices]
        return AudioDataset([self.files[i] for i in idx], [self.labels[i] for i in idx], self.classes,
                            [self.segments[i] for i in idx], self.transform,
                            None if self.groups is None else [self.groups[i] for i in idx])

    def __getitem__(self, i):
        x, _ = self.load(i)
        return (self.transform(x) if self.transform is not None else x), self.labels[i]

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} clips, {len(self.classes)} classes)"


class AudioFolder(AudioDataset):
    """Any folder-per-class tree: every audio file under ``root/<class>/`` has that class.

    Every file's header is read once here; unreadable files are left out with one warning line each.

    Parameters
    ----------
    root : str or os.PathLike
    classes : sequence of str, optional
        Class folders in label order; default every sub-folder of ``root``, sorted, except hidden ones
        and those starting with ``_`` (reserved, like Speech Commands' ``_background_noise_``).
    extensions : sequence of str
        File suffixes taken as audio (case-insensitive); class folders are searched recursively.
    transform : callable, optional
        Applied to the audio of every item.
    group_by : str, optional
        A regex whose first capture group in a file's name is its group (speaker): see :func:`file_groups`.
        Splits then keep every group on one side.

    Attributes
    ----------
    skipped : list of (pathlib.Path, str)
        Files with an audio suffix that could not be read, and why.
    groups : list of str or None
        Every file's group, with ``group_by``.

    Raises
    ------
    FileNotFoundError
        ``root`` or one of ``classes`` is not a folder.
    ValueError
        No class folders, or a class folder without a readable audio file.
    """

    def __init__(self, root, classes=None, extensions=AUDIO_EXTENSIONS, transform=None, group_by=None):
        root = existing_dir(root, "audio folder")
        self.root = root
        if classes is None:
            classes = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name[0] not in "._")
        if not classes:
            raise ValueError(f"{root}: no class folders")
        files, labels, self.skipped = [], [], []
        for label, name in enumerate(classes):
            folder = existing_dir(root / name, f"class folder {name!r}")
            n = len(files)
            for p in _audio_files(folder, extensions, recursive=True):
                problem = _probe(p)
                if problem:
                    self.skipped.append((p, problem))
                else:
                    files.append(p)
                    labels.append(label)
            if len(files) == n:
                raise ValueError(f"{folder}: class folder {name!r} has no readable audio file ({', '.join(extensions)})")
        for p, problem in self.skipped:  # one line each: the user can find and fix every one
            warnings.warn(f"{p}: {problem}; skipped this unreadable audio file", stacklevel=2)
        super().__init__(files, labels, classes, transform=transform,
                         groups=None if group_by is None else file_groups(files, group_by))

    def split(self, part, seed=0):
        """The ``part`` (``train``, ``val``, ``test`` or ``all``) of this folder by :func:`hash_split` with
        ``seed``: 10 % validation and 10 % test (of the groups, when the folder has them), the split
        ``spiketrum train`` uses."""
        check_split("folder", part, "score")
        if part == "all":
            return self.subset(range(len(self)))
        return self.subset(hash_split(self.files, seed, groups=self.groups)[part])

    def split_by_lists(self, part, lists):
        """The ``part`` (``train``, ``val`` or ``test``) of this folder named by split lists.

        ``lists`` is ``(train, val, test)``: text files of paths relative to the folder, one per line (Speech
        Commands' ``validation_list.txt`` and ``testing_list.txt`` are such lists). A ``train`` of None means
        every file in neither of the others. Listed files that are not here are ignored (a sample of a
        corpus); a file in two lists, or a group (with ``group_by``) in two parts, is a ValueError.
        """
        if part not in ("train", "val", "test"):
            raise ValueError(f"unknown split list part {part!r}: use train, val or test")
        if len(lists) != 3:
            raise ValueError(f"give three split lists (train, val, test; train may be None), got {len(lists)}")
        index = {f.relative_to(self.root).as_posix(): i for i, f in enumerate(self.files)}
        parts, owner = {}, {}
        for name, path in zip(("train", "val", "test"), lists):
            if path is None:
                continue
            try:
                lines = Path(path).read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}: cannot read the {name} split list ({exc})") from None
            idx = []
            for line in (x.strip() for x in lines):
                if line in index:
                    if line in owner and owner[line] != name:
                        raise ValueError(f"{path}: {line} is also in the {owner[line]} list")
                    owner[line] = name
                    idx.append(index[line])
            parts[name] = idx
        if lists[0] is None:
            parts["train"] = [i for f, i in index.items() if f not in owner]
        if self.groups is not None:
            check_disjoint_groups(self.groups, parts)
        return self.subset(sorted(parts[part]))


class NoiseFolder:
    """Background-noise clips held in memory at one sample rate, for mixing into audio at a set SNR.

    Parameters
    ----------
    root : str or os.PathLike
        Folder whose audio files (not sub-folders) are the noise clips.
    sr : int
        Rate every clip is resampled to, and the rate of the audio given to :meth:`mix`.
    extensions : sequence of str
        File suffixes taken as audio.
    part : {None, "train", "test"}
        The whole of every clip, or only its first 80 % ("train") or its last 20 % ("test"): noise
        mixed in for training augmentation never reappears in a noise-robustness test.

    Attributes
    ----------
    files : list of pathlib.Path
    noise : list of np.ndarray, float32
    sr : int

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    ValueError
        No audio file in it; :class:`~spiketrum.io.InputError` (a ValueError) for a clip that is
        unreadable or all zeros.
    """

    TRAIN_FRACTION = 0.8

    def __init__(self, root, sr, extensions=AUDIO_EXTENSIONS, part=None):
        root = existing_dir(root, "noise folder")
        if part not in (None, "train", "test"):
            raise ValueError(f"part must be None, 'train' or 'test', got {part!r}")
        self.files = _audio_files(root, extensions, recursive=False)
        if not self.files:
            raise ValueError(f"{root}: no noise files ({', '.join(extensions)})")
        self.sr, self.part = int(sr), part
        self.noise = []
        for p in self.files:
            n = load_audio(p, self.sr, allow_silent=False)[0]
            cut = int(self.TRAIN_FRACTION * n.size)
            self.noise.append(n if part is None else n[:cut] if part == "train" else n[cut:])

    @classmethod
    def from_audio(cls, dataset, sr):
        """The items of an audio dataset (e.g. a :class:`Background` part) as noise to mix, resampled to ``sr``;
        silent items are left out."""
        self = cls.__new__(cls)
        self.sr, self.part, self.files, self.noise = int(sr), None, [], []
        for i in range(len(dataset)):
            x, rate = dataset.load(i)
            if np.any(x):
                self.files.append(dataset.files[i])
                self.noise.append(x if rate == sr else resample(x, rate, sr))
        if not self.noise:
            raise ValueError(f"{dataset!r}: no audio that is not silent")
        return self

    def __repr__(self):
        return (f"NoiseFolder({len(self.files)} clips, {sum(n.size for n in self.noise) / self.sr:.1f} s, sr={self.sr}"
                f"{'' if self.part is None else ', part=' + repr(self.part)})")

    def mix(self, x, snr_db, rng):
        """``x`` plus a random noise segment scaled to make the signal-to-noise ratio exactly ``snr_db``.

        A clip is drawn uniformly, then a start within it; a clip shorter than ``x`` is repeated.
        The SNR is by energy over the length of ``x``: ``10 log10(sum x^2 / sum (g n)^2)``.

        Parameters
        ----------
        x : np.ndarray, shape (n,)
            Audio at :attr:`sr`, not all zeros.
        snr_db : float
        rng : np.random.Generator
            The only source of randomness: the same seed gives the same mix.

        Returns
        -------
        np.ndarray, shape (n,)
            float64 when ``x`` is float64, else float32.
        """
        x = np.asarray(x)
        if x.ndim != 1 or x.size == 0 or x.dtype.kind not in "iuf":
            raise ValueError(f"x must be a non-empty 1-D real array, got dtype {x.dtype} and shape {x.shape}")
        x64 = x.astype(np.float64)
        signal = float(x64 @ x64)
        if signal == 0.0:
            raise ValueError("x is all zeros: no noise level gives a finite SNR")
        k = int(rng.integers(len(self.noise)))
        start = int(rng.integers(max(1, self.noise[k].size - x.size + 1)))
        seg = np.take(self.noise[k], start + np.arange(x.size), mode="wrap").astype(np.float64)
        noise = float(seg @ seg)
        if noise == 0.0:
            raise ValueError(f"{self.files[k]}: the noise segment at sample {start} is all zeros")
        y = x64 + np.sqrt(signal / (noise * 10.0 ** (snr_db / 10.0))) * seg
        return y if x.dtype == np.float64 else y.astype(np.float32)


class Background(AudioDataset):
    """Audio of anything but the keywords (speech, noise, music; any length), as items of class 0, cut into
    disjoint parts: ``train`` (70 %), ``calibrate`` (10 %: a detector's threshold) and ``test`` (20 %).

    A file of at least ``long_s`` seconds is cut by time (its first 70 % trains, and so on) into items of
    at most ``item_s`` seconds. Shorter files fall on one side whole, by a hash of their group: the first
    capture group of ``group_by`` (a regex searched in the file name; e.g. ``^\\d_([a-z]+)_`` puts each FSDD
    speaker on one side) or else the file name. Files whose header does not read are left out and
    listed in ``skipped``.

    Parameters
    ----------
    sources : sequence of str or os.PathLike
        Audio files, or folders searched recursively for them.
    part : {"train", "calibrate", "test"}
    group_by : str, optional
    long_s, item_s : float
    """

    PARTS = {"train": (0.0, 0.7), "calibrate": (0.7, 0.8), "test": (0.8, 1.0)}

    def __init__(self, sources, part, group_by=None, long_s=30.0, item_s=30.0, classes=("_none_",),
                 extensions=AUDIO_EXTENSIONS):
        import soundfile as sf

        if part not in self.PARTS:
            raise ValueError(f"part must be one of {', '.join(self.PARTS)}, got {part!r}")
        pattern = group_pattern(group_by) if group_by else None
        lo, hi = self.PARTS[part]
        files, segments, self.skipped = [], [], []
        for src in sources:
            src = Path(src)
            if not src.exists():
                raise FileNotFoundError(f"{src}: background audio not found")
            for f in (_audio_files(src, extensions, recursive=True) if src.is_dir() else [src]):
                try:
                    info = sf.info(os.fspath(f))
                except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
                    self.skipped.append((f, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                    continue
                if info.frames == 0:
                    self.skipped.append((f, "no samples"))
                elif info.frames >= long_s * info.samplerate:
                    a, b, step = int(lo * info.frames), int(hi * info.frames), int(item_s * info.samplerate)
                    for s in range(a, b, step):
                        files.append(f)
                        segments.append((s, min(s + step, b)))
                else:
                    m = pattern.search(f.name) if pattern is not None else None
                    key = m.group(1) if m else f.name
                    u = int(hashlib.sha256(f"background:{key}".encode()).hexdigest()[:8], 16) / 2**32
                    if lo <= u < hi:
                        files.append(f)
                        segments.append(None)
        if not files:
            raise ValueError(f"no readable background audio in the {part} part of {', '.join(map(str, sources))}")
        super().__init__(files, [0] * len(files), classes, segments)
        self.part = part

    def seconds(self):
        """Total duration of the part in seconds (read from the headers)."""
        import soundfile as sf

        total = 0.0
        for f, seg in zip(self.files, self.segments):
            info = sf.info(os.fspath(f))
            total += (seg[1] - seg[0]) / info.samplerate if seg else info.duration
        return total
