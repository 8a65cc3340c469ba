"""Google Speech Commands: the folder-per-word corpus, its official splits, and the 12-class KWS task."""
from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ._download import fetch
from .base import AudioDataset, existing_dir

SPEECH_COMMANDS_URL = "https://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
NOISE_FOLDER = "_background_noise_"
SPLITS = ("train", "val", "test")
# Silence for each split is cut from its own stretch of every noise file, so no noise is shared across splits.
_SILENCE_SPAN = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


def download_speech_commands(root, sha256, url=SPEECH_COMMANDS_URL):
    """Download and unpack Speech Commands into ``root`` after checking the archive's SHA-256.

    The check is mandatory and its value is yours to supply: this package ships no digest for the
    archive, because none has been verified here. Compute it once on a trusted copy
    (``sha256sum speech_commands_v0.02.tar.gz``) and pass it on every machine.

    Parameters
    ----------
    root : str or os.PathLike
        Destination; must not exist yet or be empty. Nothing appears there unless the check passes.
    sha256 : str
        Expected hex SHA-256 of the ``.tar.gz`` archive.
    url : str
        Archive location (v0.02 by default; any URL urllib opens, ``file://`` included).

    Returns
    -------
    pathlib.Path
        ``root``.

    Raises
    ------
    ValueError
        No ``sha256`` given.
    FileExistsError
        ``root`` holds files already.
    OSError
        Checksum mismatch or a failed download.
    """
    if not sha256:
        raise ValueError("downloading Speech Commands needs sha256=<hex digest of the archive>: the check is mandatory")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: not empty; download Speech Commands into a new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        archive = Path(tmp) / "speech_commands.tar.gz"
        got = fetch(url, archive)
        if got != sha256.strip().lower():
            raise OSError(f"{url}: checksum mismatch (got {got}, expected {sha256})")
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "data", filter="data")
        os.replace(Path(tmp) / "data", root)  # one rename: a crash leaves no half-unpacked corpus
    return root


class SpeechCommands(AudioDataset):
    """Google Speech Commands (v0.01 or v0.02 layout): one-second clips in one folder per word.

    ``validation_list.txt`` and ``testing_list.txt`` name the val and test clips; every other clip
    is training. Tasks:

    * ``"kws12"``: the ten :data:`KEYWORDS`, then ``"_unknown_"`` (every other word) and ``"_silence_"``
      (one-second slices of background noise), labels 0-11 in that order;
    * ``"all"``: one class per word folder, sorted, no silence.

    Silence slices are drawn reproducibly (``seed``) from the noise folder, cycling over its files;
    train, val and test take them from disjoint stretches of every file (80 / 10 / 10 %).

    Parameters
    ----------
    root : str or os.PathLike
        Corpus folder (word folders and the two lists).
    split : {"train", "val", "test"}
    task : {"kws12", "all"}
    download : bool
        If ``root`` is missing, fetch v0.02 into it (see :func:`download_speech_commands`; needs ``sha256``).
    sha256 : str, optional
        Expected SHA-256 of the archive, for ``download``.
    noise_root : str or os.PathLike, optional
        Background-noise folder for silence; default ``root/_background_noise_``.
    n_silence : int, optional
        Silence clips in this split (kws12); default the mean clip count of the ten keywords in it.
    seed : int
        Seeds the silence slices.
    transform : callable, optional
        Applied to the audio of every item.

    Attributes
    ----------
    words : list of str
        The word of every item (``"_silence_"`` for silence).

    Raises
    ------
    FileNotFoundError
        ``root``, one of its lists, or (when silence is wanted) the noise folder is missing.
    ValueError
        Unknown split or task, a noise file too short for a one-second slice, bad ``n_silence``.
    """

    def __init__(self, root, split="train", task="kws12", download=False, sha256=None, noise_root=None, n_silence=None,
                 seed=0, transform=None):
        if split not in SPLITS:
            raise ValueError(f"unknown Speech Commands split {split!r}; choose one of {', '.join(SPLITS)}")
        if task not in ("kws12", "all"):
            raise ValueError(f"unknown task {task!r}; choose kws12 or all")
        if download and root is not None and not Path(root, "testing_list.txt").is_file():
            download_speech_commands(root, sha256)
        root = existing_dir(root, "Speech Commands corpus")
        listed = {}
        for part, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{root / name}: Speech Commands split list not found")
            listed[part] = set((root / name).read_text().split())
        words = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name[0] not in "._")
        classes = list(KEYWORDS) + [UNKNOWN, SILENCE] if task == "kws12" else words
        files, labels, self.words = [], [], []
        for word in words:
            for p in sorted(root.joinpath(word).glob("*.wav")):
                rel = f"{word}/{p.name}"  # the lists' form
                if split == next((part for part in listed if rel in listed[part]), "train"):
                    files.append(p)
                    labels.append(classes.index(word) if word in classes else classes.index(UNKNOWN))
                    self.words.append(word)
        segments = [None] * len(files)
        if task == "kws12":
            if n_silence is None:
                n_silence = round(sum(labels.count(k) for k in range(len(KEYWORDS))) / len(KEYWORDS))
            if not (isinstance(n_silence, (int, np.integer)) and n_silence >= 0):
                raise ValueError(f"n_silence must be a non-negative integer, got {n_silence!r}")
            noise_root = root / NOISE_FOLDER if noise_root is None else noise_root
            for path, seg in _silence(noise_root, n_silence, split, seed) if n_silence else ():
                files.append(path)
                segments.append(seg)
                labels.append(classes.index(SILENCE))
                self.words.append(SILENCE)
        # a clip's speaker is the hash before "_nohash_" in its name; silence is cut from a noise clip
        groups = [f"noise:{p.stem}" if seg is not None else p.name.split("_nohash_")[0] for p, seg in zip(files, segments)]
        super().__init__(files, labels, classes, segments, transform, groups)


def _silence(noise_root, n, split, seed):
    """``n`` reproducible ``(file, (start, stop))`` one-second slices from ``split``'s stretch of the noise files."""
    import soundfile as sf

    noise_root = Path(noise_root)
    if not noise_root.is_dir():
        raise FileNotFoundError(f"{noise_root}: no background-noise folder for _silence_; pass noise_root=<folder of noise "
                                "clips>, or n_silence=0")
    files = sorted(noise_root.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"{noise_root}: no .wav background-noise files for _silence_")
    a, b = _SILENCE_SPAN[split]
    spans = []
    for path in files:
        info = sf.info(os.fspath(path))
        lo, hi = int(a * info.frames), int(b * info.frames) - info.samplerate
        if hi < lo:
            raise ValueError(f"{path}: too short to cut a one-second {split} silence slice")
        spans.append((lo, hi, info.samplerate))
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    out = []
    for j in range(n):
        lo, hi, sr = spans[j % len(files)]
        start = int(rng.integers(lo, hi + 1))
        out.append((files[j % len(files)], (start, start + sr)))
    return out
