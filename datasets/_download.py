"""Streaming download with a digest (SHA-256, or another hashlib algorithm) computed on the way."""
from __future__ import annotations

import hashlib
import urllib.request


def fetch(url, path, timeout=60, algorithm="sha256", progress=True):
    """Fetch ``url`` into ``path`` with a progress bar and return the digest (SHA-256) of the bytes written.

    Parameters
    ----------
    url : str
        Any URL urllib opens (``https://``, ``file://``).
    path : str or os.PathLike
        Destination file; overwritten.
    timeout : float
        Seconds to wait for the connection and for each read.
    algorithm : str
        The :mod:`hashlib` digest to compute (``"md5"`` where a publisher lists MD5 sums).
    progress : bool
        Show a progress bar.

    Returns
    -------
    str
        Hex digest of the downloaded bytes.
    """
    from tqdm.auto import tqdm

    h = hashlib.new(algorithm)
    with urllib.request.urlopen(url, timeout=timeout) as r, open(path, "wb") as f:
        size = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, desc=f"downloading {url.rsplit('/', 1)[-1]}",
                  disable=not progress) as bar:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
                bar.update(len(chunk))
    return h.hexdigest()
