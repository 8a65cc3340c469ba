"""Free Spoken Digit Dataset (FSDD): location, download, checksum and the dataset with its splits."""
from __future__ import annotations

import hashlib
import math
import os
import re
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ._download import fetch
from .base import AudioDataset, data_root, locate

FSDD_VERSION = "1.0.10"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v{FSDD_VERSION}.tar.gz"
FSDD_N_RECORDINGS = 3000
#: Digest of the 3000 recordings of v1.0.10 (see :func:`recordings_digest`): it verifies the content
#: whatever the archive's compression.
FSDD_RECORDINGS_SHA256 = "a2e8a660492f28d9eed6270b290d26cbc5c81d6077ce87d3c0ad5adf4d4ee696"


def recordings_digest(recordings):
    """SHA-256 over the sorted ``(name, sha256(bytes))`` of every ``.wav`` in ``recordings``."""
    h = hashlib.sha256()
    for p in sorted(Path(recordings).glob("*.wav")):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def fsdd_recordings(root=None, download=False):
    """Folder of FSDD ``{digit}_{speaker}_{take}.wav`` files.

    Looks in ``root/fsdd/recordings``, ``root`` found by :func:`~datasets.base.locate` (the data root, the
    ``fsdd`` folder itself, or :func:`data_root` when None). With ``download=True``
    a missing copy is fetched from GitHub into ``root`` (default ``~/.cache/spiketrum``) and its
    content checked against :data:`FSDD_RECORDINGS_SHA256` before it is moved into place.
    """
    found = locate("fsdd", root)
    if found is not None:
        root = found.parent
    root = Path(root) if root is not None else (data_root() or Path.home() / ".cache" / "spiketrum")
    rec = root / "fsdd" / "recordings"
    if rec.is_dir() and any(rec.glob("*.wav")):
        return rec
    if not download:
        raise FileNotFoundError(f"{rec}: FSDD not found; set SPIKETRUM_DATA or pass download=True")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "fsdd.tar.gz"
        fetch(FSDD_URL, archive)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and "/recordings/" in m.name and m.name.endswith(".wav")]
            for m in members:
                m.name = os.path.basename(m.name)
                tar.extract(m, Path(tmp) / "recordings", filter="data")
        got = recordings_digest(Path(tmp) / "recordings")
        if got != FSDD_RECORDINGS_SHA256:
            raise OSError(f"{FSDD_URL}: checksum mismatch (got {got}, expected {FSDD_RECORDINGS_SHA256})")
        rec.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / "recordings", rec)
    return rec


_NAME = re.compile(r"(\d)_([^_]+)_(\d+)\.wav")


def _carve_val(items, fraction, seed):
    """Indices into ``items`` held out for validation: per (speaker, digit), ``fraction`` of its takes.

    Groups are visited in sorted order with one seeded generator, so the choice is reproducible.
    """
    groups = {}
    for j, (_, digit, speaker, _) in enumerate(items):
        groups.setdefault((speaker, digit), []).append(j)
    rng = np.random.default_rng(seed)
    val = set()
    for key in sorted(groups):
        g = groups[key]
        val.update(g[k] for k in rng.choice(len(g), math.floor(fraction * len(g) + 0.5), replace=False))
    return val


class FSDD(AudioDataset):
    """Free Spoken Digit Dataset: ten classes ``"0"`` .. ``"9"``, six speakers, 50 takes of each digit.

    Splits (``split``):

    * ``"train"``, ``"val"``, ``"test"``: the official split puts takes 0-4 in test (300 clips) and takes
      5-49 in training (2700), from which ``val_fraction`` of every (speaker, digit) pair is held out
      for validation (2400 / 300 by default);
    * ``"loso:<speaker>"`` (or ``"loso:<speaker>:test"``): all 500 clips of the held-out speaker;
      ``"loso:<speaker>:val"``: all 500 clips of the next speaker in sorted order (cyclically), so that model
      choice never sees a voice it trained on either; ``"loso:<speaker>:train"``: the other 2000 clips.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Data root holding ``fsdd/recordings`` (see :func:`fsdd_recordings`; default :func:`data_root`).
    split : str
    download : bool
        Fetch and verify a missing copy (see :func:`fsdd_recordings`).
    val_fraction : float
        Share of every (speaker, digit) pair held out for validation in the official split, in [0, 1).
    seed : int
        Seeds which takes go to validation.
    transform : callable, optional
        Applied to the audio of every item.

    Attributes
    ----------
    speakers : list of str
        Speaker of every item (also its ``groups``).
    all_speakers : list of str
        Every speaker in the corpus, sorted.

    Raises
    ------
    FileNotFoundError
        No recordings under ``root`` (and ``download`` is False).
    ValueError
        Unknown split or speaker, bad ``val_fraction``, or a file not named ``{digit}_{speaker}_{take}.wav``.
    """

    def __init__(self, root=None, split="train", download=False, val_fraction=0.1, seed=0, transform=None):
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        items = []
        for p in sorted(fsdd_recordings(root, download).glob("*.wav")):
            m = _NAME.fullmatch(p.name)
            if not m:
                raise ValueError(f"{p}: not an FSDD file name ({{digit}}_{{speaker}}_{{take}}.wav)")
            items.append((p, int(m[1]), m[2], int(m[3])))
        self.all_speakers = sorted({it[2] for it in items})
        loso = re.fullmatch(r"loso:([^:]+)(?::(train|val|test))?", split)
        if split in ("train", "val", "test"):
            part, held_out = split, None
        elif loso:
            part, held_out = loso[2] or "test", loso[1]
            if held_out not in self.all_speakers:
                raise ValueError(f"unknown FSDD speaker {held_out!r}; choose one of {', '.join(self.all_speakers)}")
        else:
            raise ValueError(f"unknown FSDD split {split!r}: use train, val, test or loso:<speaker>[:train|:val|:test]")
        # Official: takes 0-4 are the test set. Leave-one-speaker-out: the held-out speaker is.
        is_test = (lambda it: it[3] < 5) if held_out is None else (lambda it: it[2] == held_out)
        if part == "test":
            chosen = [it for it in items if is_test(it)]
        elif held_out is not None:
            val_speaker = self.all_speakers[(self.all_speakers.index(held_out) + 1) % len(self.all_speakers)]
            chosen = [it for it in items if not is_test(it) and (it[2] == val_speaker) == (part == "val")]
        else:
            pool = [it for it in items if not is_test(it)]
            val = _carve_val(pool, val_fraction, seed)
            chosen = [it for j, it in enumerate(pool) if (j in val) == (part == "val")]
        self.speakers = [it[2] for it in chosen]
        super().__init__([it[0] for it in chosen], [it[1] for it in chosen], [str(d) for d in range(10)],
                         transform=transform, groups=self.speakers)
