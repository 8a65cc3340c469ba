"""Fuzzing the readers of untrusted files: ``SpikeTrain.load`` and ``spiketrum.io.load_audio``.

Random bytes, and random mutations of a valid file's bytes (bit flips, overwrites, insertions,
deletions, truncation): the only exception that may come out is the clean
:class:`~spiketrum.io.InputError` (a ValueError naming the path, in one line); anything that
loads must be sound; and nothing may hang.
"""
import contextlib
import io
import os
import signal

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from spiketrum import SpiketrumConfig
from spiketrum.io import InputError, load_audio
from spiketrum.spiketrain import SpikeTrain

EXAMPLES = int(os.environ.get("SPIKETRUM_FUZZ_EXAMPLES", 150))  # more for a long fuzzing session
MAGIC = [b"", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"FORM", b"PK\x03\x04", b"\x93NUMPY"]


@contextlib.contextmanager
def deadline(seconds=20):
    """Fail, rather than hang, if the body takes longer than ``seconds``."""
    def timeout(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")
    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _spike_bytes(tmp):
    cfg = SpiketrumConfig(sr=8000, rate=100, kernels=4, levels=2)
    rng = np.random.default_rng(0)
    n = 30
    train = SpikeTrain(rng.integers(0, 800, n), rng.integers(0, 4, n), rng.integers(0, 2, n), rng.integers(0, 2, n),
                       rng.standard_normal(n), np.abs(rng.standard_normal((4, 2))), cfg, 800,
                       meta={"signal_energy": 2.0, "residual_energy": 1.0})
    train.save(tmp / "valid.npz")
    return (tmp / "valid.npz").read_bytes()


def _audio_bytes(fmt, subtype):
    x = 0.3 * np.sin(np.arange(400) / 5.0)
    b = io.BytesIO()
    sf.write(b, x, 8000, format=fmt, subtype=subtype)
    return b.getvalue()


class _Originals(tuple):
    def __repr__(self):  # hypothesis prints the arguments of a failing example: keep the bytes out of it
        return "originals"


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    return _Originals((tmp, {"npz": _spike_bytes(tmp), "wav16": _audio_bytes("WAV", "PCM_16"),
                             "wavfloat": _audio_bytes("WAV", "FLOAT"), "flac": _audio_bytes("FLAC", "PCM_16")}))


@st.composite
def mutations(draw):
    """A list of edits, applied to whichever original the test draws."""
    return draw(st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                                   st.floats(0, 1, exclude_max=True), st.integers(0, 255),
                                   st.binary(min_size=1, max_size=16)), min_size=1, max_size=6))


def mutate(data, edits):
    data = bytearray(data)
    for op, where, value, chunk in edits:
        if not data:
            break
        i = int(where * len(data))
        if op == "flip":
            data[i] ^= 1 << (value % 8)
        elif op == "set":
            data[i] = value
        elif op == "insert":
            data[i:i] = chunk
        elif op == "delete":
            del data[i:i + 1 + value % 16]
        else:
            del data[i:]
    return bytes(data)


def _load_spikes(path):
    with deadline():
        try:
            train = SpikeTrain.load(path)
        except InputError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
            return
    # what loads is sound: indices in range, finite amplitudes, usable
    assert len(train.samples) == len(train.kernel) == len(train.amplitude)
    assert np.all((train.samples >= 0) & (train.samples < train.n_samples))
    assert np.all(np.isfinite(train.amplitude)) and np.all(np.isfinite(train.level_amplitudes))
    if train.n_samples <= 10**6:
        assert train.to_dense(10.0).sum() == len(train)


def _load_audio(path):
    with deadline():
        try:
            x, sr = load_audio(path)
        except InputError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
            return
    assert x.ndim == 1 and x.size > 0 and x.dtype == np.float32 and np.all(np.isfinite(x)) and sr > 0


@settings(max_examples=EXAMPLES)
@given(magic=st.sampled_from(MAGIC), data=st.binary(max_size=2048))
def test_random_bytes_as_a_spike_file(originals, magic, data):
    tmp, _ = originals
    (tmp / "random.npz").write_bytes(magic + data)
    _load_spikes(tmp / "random.npz")


@settings(max_examples=EXAMPLES)
@given(edits=mutations())
def test_a_mutated_spike_file(originals, edits):
    tmp, valid = originals
    (tmp / "mutated.npz").write_bytes(mutate(valid["npz"], edits))
    _load_spikes(tmp / "mutated.npz")


@settings(max_examples=EXAMPLES)
@given(magic=st.sampled_from(MAGIC), data=st.binary(max_size=2048), suffix=st.sampled_from([".wav", ".flac", ".ogg"]))
def test_random_bytes_as_audio(originals, magic, data, suffix):
    tmp, _ = originals
    (tmp / f"random{suffix}").write_bytes(magic + data)
    _load_audio(tmp / f"random{suffix}")


@settings(max_examples=EXAMPLES)
@given(kind=st.sampled_from(["wav16", "wavfloat", "flac"]), edits=mutations())
def test_mutated_audio(originals, kind, edits):
    tmp, valid = originals
    path = tmp / f"mutated{'.flac' if kind == 'flac' else '.wav'}"
    path.write_bytes(mutate(valid[kind], edits))
    _load_audio(path)


def test_the_originals_load(originals):
    tmp, valid = originals
    assert len(SpikeTrain.load(tmp / "valid.npz")) == 30
    for kind in ("wav16", "wavfloat", "flac"):
        (tmp / f"orig.{kind}").write_bytes(valid[kind])
        assert load_audio(tmp / f"orig.{kind}")[0].size == 400


class _Payload:
    """Unpickling this creates a marker file: what a malicious spike file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_object_array_in_a_spike_file_is_refused_and_never_unpickled(originals, tmp_path):
    tmp, _ = originals
    with np.load(tmp / "valid.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    marker = tmp_path / "pwned"
    for key in ("amplitude", "header"):
        bad = dict(arrays)
        bad[key] = np.array([_Payload(marker)] * 3, dtype=object)
        np.savez(tmp_path / f"{key}.npz", **bad)  # savez pickles object arrays
        with pytest.raises(InputError, match="allow_pickle"):
            SpikeTrain.load(tmp_path / f"{key}.npz")
    assert not marker.exists()
