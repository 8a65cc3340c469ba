"""Free Spoken Digit Dataset (FSDD): location, download and checksum."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

FSDD_VERSION = "1.0.10"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v{FSDD_VERSION}.tar.gz"
FSDD_N_RECORDINGS = 3000
#: Digest of the 3000 recordings of v1.0.10 (see :func:`recordings_digest`): it verifies the content
#: whatever the archive's compression.
FSDD_RECORDINGS_SHA256 = "a2e8a660492f28d9eed6270b290d26cbc5c81d6077ce87d3c0ad5adf4d4ee696"


def data_root():
    """``$SPIKETRUM_DATA``, else ``../shared/data`` beside the current directory if it exists, else None."""
    env = os.environ.get("SPIKETRUM_DATA")
    if env:
        return Path(env)
    shared = Path("..", "shared", "data").resolve()
    return shared if shared.is_dir() else None


def recordings_digest(recordings):
    """SHA-256 over the sorted ``(name, sha256(bytes))`` of every ``.wav`` in ``recordings``."""
    h = hashlib.sha256()
    for p in sorted(Path(recordings).glob("*.wav")):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def fsdd_recordings(root=None, download=False):
    """Folder of FSDD ``{digit}_{speaker}_{take}.wav`` files.

    Looks in ``root/fsdd/recordings`` (``root`` defaults to :func:`data_root`). With ``download=True``
    a missing copy is fetched from GitHub into ``root`` (default ``~/.cache/spiketrum``) and its
    content checked against :data:`FSDD_RECORDINGS_SHA256` before it is moved into place.
    """
    root = Path(root) if root is not None else (data_root() or Path.home() / ".cache" / "spiketrum")
    rec = root / "fsdd" / "recordings"
    if rec.is_dir() and any(rec.glob("*.wav")):
        return rec
    if not download:
        raise FileNotFoundError(f"{rec}: FSDD not found; set SPIKETRUM_DATA or pass download=True")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "fsdd.tar.gz"
        print(f"downloading {FSDD_URL}")
        with urllib.request.urlopen(FSDD_URL, timeout=60) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
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
