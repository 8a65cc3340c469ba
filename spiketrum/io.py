"""Audio input and atomic file output with one-line, path-naming errors."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets

import numpy as np

#: Longest audio accepted in one piece (samples per channel); longer files must be streamed.
MAX_SAMPLES = 2**31 // 4


class InputError(ValueError):
    """Bad user input: the message names the file and the problem, in one line."""

    def __init__(self, path, problem):
        self.path, self.problem = str(path), str(problem)
        super().__init__(f"{self.path}: {self.problem}")


class OutputError(OSError):
    """An output that could not be written: the message names it and the problem, in one line.

    An ``OSError`` (with the cause's ``errno``), so callers that handle failed writes keep working.
    """

    def __init__(self, path, problem, errno=None):
        super().__init__(errno, str(problem))
        self.path, self.problem = str(path), str(problem)

    def __str__(self):
        return f"{self.path}: {self.problem}"

    @classmethod
    def from_os_error(cls, path, exc, doing="cannot write"):
        """``exc`` (any OSError) as one line naming ``path``, not a temporary file or a raw ``[Errno N]``."""
        return cls(path, f"{doing} ({exc.strerror or exc})", exc.errno)


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
    """``sr`` as an int: a positive integer, or a float equal to one (8000.0); anything else is a ``ValueError``.

    Examples
    --------
    >>> check_sample_rate(8000.0)
    8000
    >>> check_sample_rate(8000.5)
    Traceback (most recent call last):
    ValueError: sample rate must be an integer number of Hz, got 8000.5
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)) or not (sr > 0 and np.isfinite(sr)):
        raise ValueError(f"sample rate must be a positive integer in Hz, got {sr!r}")
    if int(sr) != sr:  # int() would quietly truncate the rate
        raise ValueError(f"sample rate must be an integer number of Hz, got {sr!r}")
    return int(sr)


def as_audio(x):
    """``x`` as 1-D float64 samples, checked: real, non-empty, finite.

    Integer arrays are scaled to [-1, 1) as soundfile reads integer audio: signed by 2**(bits-1)
    (int16 / 32768), unsigned offset by half their range first (uint8: (x - 128) / 128). Float
    arrays are taken as they are.

    Examples
    --------
    >>> as_audio(np.array([-32768, 0, 16384], np.int16))
    array([-1. ,  0. ,  0.5])
    >>> as_audio(np.array([0, 128, 192], np.uint8))
    array([-1. ,  0. ,  0.5])
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.ndim != 1:
        raise ValueError(f"x must be a 1-D real array of samples, got dtype {x.dtype} and shape {x.shape}")
    if x.size == 0:
        raise ValueError("x is empty")
    full_scale = 2.0 ** (8 * x.dtype.itemsize - 1)
    if x.dtype.kind == "i":
        x = x.astype(np.float64) / full_scale
    elif x.dtype.kind == "u":
        x = (x.astype(np.float64) - full_scale) / full_scale
    else:
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


def audio_format(path):
    """``(format, subtype)`` to write the audio file ``path`` in, from its extension, before any work.

    WAV is written as 32-bit float; every other format soundfile writes (FLAC, OGG, MP3, AIFF, ...)
    in its default subtype. An extension that names no writable audio format is an :class:`InputError`.

    Examples
    --------
    >>> audio_format("a.flac")
    ('FLAC', 'PCM_16')
    >>> audio_format("a.xyz")
    Traceback (most recent call last):
    spiketrum.io.InputError: a.xyz: .xyz is not an audio format spiketrum writes (use .wav, .flac, .ogg, ...)
    """
    import soundfile as sf

    ext = os.path.splitext(os.fspath(path))[1].lower()
    fmt = {".aif": "AIFF"}.get(ext, ext[1:].upper())
    subtype = "FLOAT" if fmt == "WAV" else sf.default_subtype(fmt) if fmt in sf.available_formats() else None
    if subtype is None:
        raise InputError(path, f"{ext or 'no extension'}{' is' if ext else ':'} not an audio format spiketrum writes "
                         "(use .wav, .flac, .ogg, ...)")
    return fmt, subtype


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


def _create_beside(path, suffix):
    """Create an empty, new temporary file beside ``path`` and return its name.

    ``os.open`` with mode 0666 lets the umask decide the final mode, exactly as ``open(path, "w")``
    would; ``tempfile.mkstemp`` would make every output 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(100):
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", folder)


@contextlib.contextmanager
def atomic_output(path, suffix=""):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any error the temporary file is removed, so a half-written output never appears. The
    output gets the mode a plain ``open(path, "w")`` would give it (0666 less the umask). A failed
    write (no such folder, disk full, file size limit) is an :class:`OutputError` naming ``path``.
    """
    path = check_output_path(path)
    try:
        tmp = _create_beside(path, suffix or os.path.splitext(path)[1])
    except OSError as exc:
        raise OutputError.from_os_error(path, exc, f"cannot create a file in {os.path.dirname(os.path.abspath(path))}") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError) and exc.errno is not None \
                and exc.filename in (None, tmp):
            raise OutputError.from_os_error(path, exc) from None
        raise
