"""Audio input and atomic file output with one-line, path-naming errors."""
from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

#: Longest audio accepted in one piece (samples per channel); longer files must be streamed.
MAX_SAMPLES = 2**31 // 4


class InputError(ValueError):
    """Bad user input: the message names the file and the problem, in one line."""

    def __init__(self, path, problem):
        self.path, self.problem = str(path), str(problem)
        super().__init__(f"{self.path}: {self.problem}")


def load_audio(path, sr=None, *, allow_silent=True):
    """Read an audio file as mono float32.

    Any format libsndfile reads (WAV 8/16/24/32-bit and float, FLAC, OGG, ...) and any sample rate.
    Multichannel audio is averaged to mono. ``sr`` resamples (polyphase, exact rational ratio).

    Parameters
    ----------
    path : str or os.PathLike
    sr : int, optional
        Target sample rate in Hz; ``None`` keeps the file's rate.
    allow_silent : bool
        If False, an all-zero signal is an error.

    Returns
    -------
    x : np.ndarray, float32, shape (n_samples,)
    sr : int

    Raises
    ------
    InputError
        Missing, unreadable, empty, corrupt or non-audio files, NaN/inf samples, absurd sizes.
    """
    with AudioStream(path) as f:
        if f.frames > MAX_SAMPLES:
            raise InputError(f.path, f"{f.frames / f.sr / 3600:.1f} h of audio is too long to load at once; "
                             "stream it (spiketrum.encoder.encode_file)")
        x, file_sr, path = f.read(0, f.frames), f.sr, f.path
        if x.size != f.frames:
            raise InputError(path, f"file is shorter than its header says ({x.size} of {f.frames} samples; truncated?)")
    if not allow_silent and not np.any(x):
        raise InputError(path, "audio is all silence")
    if sr is not None and int(sr) != file_sr:
        x = resample(x, file_sr, int(sr))
        file_sr = int(sr)
    return np.ascontiguousarray(x, dtype=np.float32), file_sr


class AudioStream:
    """An audio file open for reading in pieces, so that long files never sit in memory whole.

    Validates like :func:`load_audio` on opening; :meth:`read` gives mono float32 samples and
    checks each piece for NaN/inf. Use as a context manager.

    Attributes
    ----------
    path : str
    sr : int
    frames : int
        Samples per channel.
    """

    def __init__(self, path):
        import soundfile as sf

        self.path = path = os.fspath(path)
        if not os.path.exists(path):
            raise InputError(path, "no such file")
        if os.path.isdir(path):
            raise InputError(path, "is a directory, not an audio file")
        if not os.access(path, os.R_OK):
            raise InputError(path, "permission denied")
        if os.path.getsize(path) == 0:
            raise InputError(path, "empty file (0 bytes)")
        try:
            self._file = sf.SoundFile(path)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            msg = str(exc).split("\n")[0].replace(f"Error opening {path!r}: ", "")
            raise InputError(path, f"not a readable audio file ({msg})") from None
        self.sr, self.frames = int(self._file.samplerate), int(self._file.frames)
        if self.frames <= 0:
            self.close()
            raise InputError(path, "audio has no samples")

    def read(self, start, stop):
        """Mono float32 samples ``[start, stop)``, cut at the end of the file."""
        import soundfile as sf

        try:
            self._file.seek(min(max(0, int(start)), self.frames))
            x = self._file.read(max(0, min(int(stop), self.frames) - int(start)), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise InputError(self.path, f"not a readable audio file ({str(exc).splitlines()[0]})") from None
        except MemoryError:
            raise InputError(self.path, "not enough memory to load this file") from None
        if not np.all(np.isfinite(x)):
            raise InputError(self.path, "audio contains NaN or inf samples")
        return np.ascontiguousarray(x.mean(axis=1) if x.shape[1] > 1 else x[:, 0], dtype=np.float32)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_sample_rate(sr):
    """``sr`` as an int: a positive integer, or a float equal to one (8000.0)."""
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)) or not sr > 0:
        raise ValueError(f"sample rate must be a positive integer in Hz, got {sr!r}")
    return int(sr)


def as_audio(x):
    """``x`` as 1-D float64 samples, checked: real, non-empty, finite."""
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.ndim != 1:
        raise ValueError(f"x must be a 1-D real array of samples, got dtype {x.dtype} and shape {x.shape}")
    if x.size == 0:
        raise ValueError("x is empty")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf samples")
    return x


def resample(x, sr_in, sr_out):
    """Polyphase resampling by the exact rational ratio ``sr_out / sr_in``."""
    from math import gcd

    import scipy.signal

    g = gcd(int(sr_in), int(sr_out))
    return scipy.signal.resample_poly(x, int(sr_out) // g, int(sr_in) // g).astype(np.float32)


def check_output_path(path):
    """Fail early, before any work, if ``path`` cannot be written."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(path, f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(path, f"output directory {parent} is not writable")
    if os.path.isdir(path):
        raise InputError(path, "output path is a directory")
    return path


@contextlib.contextmanager
def atomic_output(path, suffix=""):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any error the temporary file is removed, so a half-written output never appears.
    """
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # a failed write (disk full, file size limit) names the output it could not write
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
        raise
