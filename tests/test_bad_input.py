"""The bad-input matrix: every command line command, fed every bad input that applies to it.

The rule (the reliability issue): every command, for every bad input, ends either in a correct
result (exit 0 and an output that loads and is right) or in ONE line on stderr naming the file and
the cause, with exit code 2. A Python traceback is always a failure, and no partial output or
temporary file (``.tmp-*``) is ever left behind.

Inputs (rows) x commands (columns); a cell is run in-process through ``spiketrum.app.cli.main`` (a
handful more through a real subprocess, to prove the exit code and that no traceback leaks).
The matrix prints as a table, for reports::

    .venv/bin/python tests/test_bad_input.py --table [--lines]

(``--lines`` adds the stderr line of every cell.) The one-hour clip is another test's (streaming);
here the longest clip is five minutes, for ``encode`` and ``info`` only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script (--table)
    sys.path.insert(0, str(REPO))

COMMANDS = ("encode", "decode", "info", "plot", "train", "evaluate", "robustness", "predict")
FOLDER_COMMANDS = ("train", "evaluate", "robustness")
RATE = 200  # spikes/s of every encode cell: the spike count is checked exactly
TRAIN = ["--epochs", "1", "--hidden", "16", "--augment", "none", "--rate", str(RATE), "--batch-size", "8", "-q"]
ROBUST = ["--seeds", "1", "--deletion", "0.5", "--jitter-ms", "none", "--insertion", "none", "--noise-snr", "none",
          "--recon-clips", "1", "-q"]
BASE_CLIPS = {"0": ("0_jackson_0", "0_jackson_1", "0_jackson_2"), "1": ("1_jackson_0", "1_jackson_2", "1_jackson_6")}


def _data_root():
    env = os.environ.get("SPIKETRUM_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


class Skip(Exception):
    """This cell cannot be run here (the reason is the message)."""


# =================================================================================================
# Inputs. Each maker writes its input under ``d`` and returns its path.
# =================================================================================================
@dataclasses.dataclass
class Input:
    name: str
    kind: str  # audio, spikes, model, output
    make: object
    expect: str = "error"  # ok or error
    commands: tuple = ()
    probe_fails: bool = False  # audio whose header does not read: a folder dataset leaves it out on listing it
    note: str = ""


INPUTS = {}


def _input(kind, expect="error", commands=None, **kw):
    def deco(fn):
        name = fn.__name__.lstrip("_")
        default = {"audio": ("encode", "info", "plot", "train", "evaluate", "robustness", "predict"),
                   "spikes": ("decode", "info", "plot"), "model": ("evaluate", "robustness", "predict")}
        INPUTS[name] = Input(name, kind, fn, expect, tuple(commands or default[kind]), **kw)
        return fn
    return deco


def _tone(sr, seconds=0.3, channels=1, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(sr).standard_normal(t.size)
    return np.stack([x * (0.5 + 0.1 * c) for c in range(channels)], 1) if channels > 1 else x


def _wav_bytes(x, sr, subtype="PCM_16", fmt="WAV"):
    b = io.BytesIO()
    sf.write(b, x, sr, subtype=subtype, format=fmt)
    return b.getvalue()


def _write(path, data):
    path.write_bytes(data)
    return path


# -- audio: refused ------------------------------------------------------------------------------
@_input("audio", probe_fails=True)
def _empty_file(d):
    return _write(d / "empty_file.wav", b"")


@_input("audio", probe_fails=True)
def _zero_frames(d):
    return _write(d / "zero_frames.wav", _wav_bytes(np.zeros(0), 8000))


@_input("audio", probe_fails=True)
def _wav_header_truncated(d):
    return _write(d / "wav_header_truncated.wav", _wav_bytes(_tone(8000), 8000)[:20])


@_input("audio", probe_fails=True)
def _wav_header_corrupt(d):
    b = bytearray(_wav_bytes(_tone(8000), 8000))
    b[20:22] = b"\x77\x77"  # unknown format tag
    return _write(d / "wav_header_corrupt.wav", bytes(b))


@_input("audio", probe_fails=True)
def _flac_header_truncated(d):
    return _write(d / "flac_header_truncated.flac", _wav_bytes(_tone(8000), 8000, fmt="FLAC")[:30])


@_input("audio", probe_fails=True)
def _flac_header_corrupt(d):
    return _write(d / "flac_header_corrupt.flac", b"fLaC" + bytes(np.random.default_rng(1).integers(0, 256, 300, np.uint8)))


@_input("audio", note="header reads; the stream breaks off")
def _flac_data_truncated(d):
    b = _wav_bytes(_tone(8000, 1.0), 8000, fmt="FLAC")
    return _write(d / "flac_data_truncated.flac", b[: int(0.6 * len(b))])


@_input("audio", probe_fails=True)
def _text_as_wav(d):
    return _write(d / "text_as_wav.wav", b"this is not audio at all\n" * 20)


@_input("audio", commands=("encode", "info", "plot", "predict"))
def _directory_as_wav(d):
    (d / "directory_as_wav.wav").mkdir()
    return d / "directory_as_wav.wav"


@_input("audio")
def _nan_samples(d):
    x = _tone(8000).astype(np.float32)
    x[100] = np.nan
    sf.write(d / "nan_samples.wav", x, 8000, subtype="FLOAT")
    return d / "nan_samples.wav"


@_input("audio")
def _inf_samples(d):
    x = _tone(8000).astype(np.float32)
    x[100] = -np.inf
    sf.write(d / "inf_samples.wav", x, 8000, subtype="FLOAT")
    return d / "inf_samples.wav"


@_input("audio", probe_fails=True, note="chmod 000: skipped as root, where it does not stop reading")
def _unreadable(d):
    sf.write(d / "unreadable.wav", _tone(8000), 8000)
    os.chmod(d / "unreadable.wav", 0)
    return d / "unreadable.wav"


# -- audio: accepted -----------------------------------------------------------------------------
@_input("audio", "ok", note="the header's length is cut short; the samples there are read")
def _wav_data_truncated(d):
    b = _wav_bytes(_tone(8000, 1.0), 8000)
    return _write(d / "wav_data_truncated.wav", b[: len(b) // 2])


@_input("audio", "ok")
def _silent(d):
    sf.write(d / "silent.wav", np.zeros(2400), 8000)
    return d / "silent.wav"


@_input("audio", "ok", note="float samples at +-1 and up to +-4")
def _clipping(d):
    x = np.clip(4 * _tone(8000), -4, 4)
    x[:50] = 1.0
    x[50:100] = -1.0
    sf.write(d / "clipping.wav", x.astype(np.float32), 8000, subtype="FLOAT")
    return d / "clipping.wav"


def _format_input(name, subtype, sr=8000, channels=1, seconds=0.3, fmt="WAV"):
    ext = ".flac" if fmt == "FLAC" else ".wav"

    def make(d):
        sf.write(d / f"{name}{ext}", _tone(sr, seconds, channels), sr, subtype=subtype, format=fmt)
        return d / f"{name}{ext}"
    make.__name__ = name
    _input("audio", "ok")(make)


_format_input("pcm_u8", "PCM_U8")
_format_input("pcm_16", "PCM_16")
_format_input("pcm_24", "PCM_24")
_format_input("float_32", "FLOAT")
_format_input("flac_16", "PCM_16", fmt="FLAC")
_format_input("channels_6", "PCM_16", channels=6)
for _sr in (8000, 11025, 22050, 44100, 48000, 96000):
    _format_input(f"sr_{_sr}", "PCM_16", sr=_sr)
_format_input("clip_0.01s", "PCM_16", seconds=0.01)


@_input("audio", "ok", commands=("encode", "info"),
        note="five minutes; info reads its spike file (--source would add 16 s of envelope SNR); the one-hour clip is "
             "the streaming test's")
def _five_minutes(d):
    x = 0.1 * np.random.default_rng(5).standard_normal(300 * 8000)
    sf.write(d / "five_minutes.wav", x.astype(np.float32), 8000, subtype="PCM_16")
    return d / "five_minutes.wav"


# -- spike files -----------------------------------------------------------------------------------
def _valid_spikes(d, name="valid", method="spiketrum"):
    from spiketrum import make_config
    from spiketrum.io import load_audio

    x, sr = load_audio(_data_root() / "fsdd" / "recordings" / "3_jackson_0.wav")
    cfg = make_config(method, sr, rate=500, kernels=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg.encode(x, sr).save(d / f"{name}.npz")
    return d / f"{name}.npz"


def _tamper(d, name, edit):
    """A copy of the valid spike file with ``edit(header, arrays)`` applied (it may return raw header bytes)."""
    src = _valid_spikes(d, f"_src_{name}")
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    os.unlink(src)
    header = json.loads(bytes(arrays.pop("header")).decode())
    raw = edit(header, arrays)
    raw = raw if isinstance(raw, bytes) else json.dumps(header).encode()
    with open(d / f"{name}.npz", "wb") as f:
        np.savez(f, header=np.frombuffer(raw, np.uint8), **arrays)
    return d / f"{name}.npz"


def _spike_input(name, edit, expect="error", note=""):
    def make(d):
        return _tamper(d, name, edit)
    make.__name__ = name
    _input("spikes", expect, note=note)(make)


@_input("spikes", "ok")
def _valid_spike_file(d):
    return _valid_spikes(d, "valid_spike_file")


@_input("spikes", "ok", note="a baseline (delta) encoding")
def _valid_delta_spikes(d):
    return _valid_spikes(d, "valid_delta_spikes", method="delta")


@_input("spikes")
def _missing_spike_file(d):
    return d / "missing_spike_file.npz"


@_input("spikes")
def _empty_npz(d):
    return _write(d / "empty_npz.npz", b"")


@_input("spikes")
def _non_zip_bytes(d):
    return _write(d / "non_zip_bytes.npz", b"\x93NUMPY this is not a zip archive" * 8)


@_input("spikes")
def _truncated_zip(d):
    b = _valid_spikes(d, "_src_trunc").read_bytes()
    os.unlink(d / "_src_trunc.npz")
    return _write(d / "truncated_zip.npz", b[: len(b) // 2])


@_input("spikes", note="a zip of other arrays")
def _foreign_npz(d):
    np.savez(d / "foreign_npz.npz", a=np.arange(3))
    return d / "foreign_npz.npz"


@_input("spikes", note="an object array: refused, never unpickled (allow_pickle=False)")
def _object_array_npz(d):
    path = _valid_spikes(d, "object_array_npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["amplitude"] = np.array([{"a": 1}] * arrays["samples"].size, dtype=object)
    np.savez(path, **arrays)
    return path


@_input("spikes", note="an array member declares a shape of 2**40 elements")
def _huge_array_shape(d):
    path = _valid_spikes(d, "huge_array_shape")
    b = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(b, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "amplitude.npy":
                hlen = int.from_bytes(data[8:10], "little")
                head = data[10:10 + hlen].decode()
                shape = head[head.index("'shape': (") + len("'shape': ("):]
                shape = shape[: shape.index(")")]
                new = head.replace(f"'shape': ({shape})", f"'shape': ({2 ** 40},)")
                new = new.rstrip().ljust(hlen - 1) + "\n"
                data = data[:10] + new.encode() + data[10 + hlen:]
            zout.writestr(item, data)
    return _write(path, b.getvalue())


def _set(key, value):
    def edit(h, a):
        h[key] = value
    return edit


def _set_config(key, value):
    def edit(h, a):
        h["config"][key] = value
    return edit


def _set_array(key, fn):
    def edit(h, a):
        a[key] = fn(a[key])
    return edit


def _set_meta(meta):
    def edit(h, a):
        h["meta"] = meta
    return edit


_spike_input("future_version", _set("version", 99))
_spike_input("version_not_a_number", _set("version", "2"))
_spike_input("wrong_format_tag", _set("format", "something-else"))
_spike_input("header_not_json", lambda h, a: b"{not json")
_spike_input("header_json_list", lambda h, a: b"[1, 2, 3]")
_spike_input("header_not_utf8", lambda h, a: b"\xff\xfe\x00")
_spike_input("missing_array", lambda h, a: a.pop("amplitude") is None)
_spike_input("config_missing", lambda h, a: h.pop("config") is None)
_spike_input("config_bad_sr", _set_config("sr", 0))
_spike_input("config_not_a_dict", _set("config", [1, 2]))
_spike_input("n_samples_zero", _set("n_samples", 0))
_spike_input("n_samples_negative", _set("n_samples", -5))
_spike_input("n_samples_huge", _set("n_samples", 10**13))
_spike_input("n_samples_not_a_number", _set("n_samples", "many"))
_spike_input("samples_out_of_range", _set_array("samples", lambda s: s + 10**9))
_spike_input("samples_negative", _set_array("samples", lambda s: s - 10**9))
_spike_input("samples_fractional", _set_array("samples", lambda s: s + 0.5))
_spike_input("samples_as_text", _set_array("samples", lambda s: s.astype(str)))
_spike_input("arrays_differ_in_length", _set_array("kernel", lambda k: k[:-1]))
_spike_input("arrays_2d", _set_array("samples", lambda s: np.stack([s, s])))
_spike_input("kernel_out_of_range", _set_array("kernel", lambda k: k + 100))
_spike_input("level_out_of_range", _set_array("level", lambda k: k + 50))
_spike_input("polarity_out_of_range", _set_array("polarity", lambda p: p + 7))
_spike_input("amplitude_nan", _set_array("amplitude", lambda x: np.where(np.arange(x.size) == 3, np.nan, x)))
_spike_input("codebook_nan", _set_array("level_amplitudes", lambda x: np.full_like(x, np.nan)))
_spike_input("codebook_wrong_shape", _set_array("level_amplitudes", lambda x: x[:, :1]))
_spike_input("meta_not_a_dict", _set_meta("oops"))
_spike_input("meta_energy_not_a_number", _set_meta({"signal_energy": "x", "residual_energy": 1.0}))
_spike_input("meta_energy_half", _set_meta({"signal_energy": 1.0}))


# -- models (run folders) ----------------------------------------------------------------------------
def _model_dir(d, name):
    (d / name).mkdir()
    return d / name


def _model_input(name, build, expect="error", note="", commands=None):
    def make(d, run):
        out = _model_dir(d, name)
        build(out, run)
        return out
    make.__name__ = name
    _input("model", expect, note=note, commands=commands)(make)


def _edit_model(edit):
    def build(out, run):
        import torch

        state = torch.load(run / "model.pt", weights_only=True)
        edit(state)
        torch.save(state, out / "model.pt")
    return build


def _other_architecture(state):
    from spiketrum import config_from_json
    from spiketrum.app.kws import build_model

    n_in = config_from_json(state["encoder"]).n_channels
    state["state_dict"] = build_model("srnn", n_in, len(state["classes"]), hidden=(32, 8), dt=10.0).state_dict()


def _conv_weights(state):
    from spiketrum import config_from_json
    from spiketrum.app.kws import build_model

    enc = config_from_json(state["encoder"])
    state["state_dict"] = build_model("conv", enc.n_channels, len(state["classes"]), in_maps=enc.levels, dt=10.0).state_dict()


_model_input("valid_run", lambda out, run: shutil.copy(run / "model.pt", out / "model.pt"), "ok")
_model_input("foreign_classes", _edit_model(lambda s: s.update(classes=["yes", "no"])),
             note="a sound model of the classes yes, no: the data has none of them",
             commands=("evaluate", "robustness"))
_model_input("no_model_pt", lambda out, run: None)
_model_input("model_pt_empty", lambda out, run: (out / "model.pt").write_bytes(b""))
_model_input("model_pt_text", lambda out, run: (out / "model.pt").write_text("not a model\n" * 10))
_model_input("model_pt_truncated", lambda out, run: (out / "model.pt").write_bytes((run / "model.pt").read_bytes()[:3000]))
_model_input("model_pt_is_dir", lambda out, run: (out / "model.pt").mkdir())
def _torch_file(obj):
    def build(out, run):
        import torch

        torch.save(obj() if callable(obj) else obj, out / "model.pt")
    return build


_model_input("not_spiketrum_model", _torch_file(lambda: {"weight": __import__("torch").zeros(3)}),
             note="a torch file, not a spiketrum model")
_model_input("plain_tensor", _torch_file(lambda: __import__("torch").zeros(3)))
_model_input("future_model_version", _edit_model(lambda s: s.update(version=99)))
_model_input("other_architecture", _edit_model(_other_architecture), note="weights of a 2-layer SRNN (32, 8)")
_model_input("conv_weights", _edit_model(_conv_weights), note="weights of a ConvSNN in an SRNN model file")
_model_input("other_class_count", _edit_model(lambda s: s.update(classes=["a", "b", "c", "d", "e"])),
             note="5 class names, weights for 2")
_model_input("unknown_model_name", _edit_model(lambda s: s.update(model_name="transformer")))
_model_input("bad_model_kwargs", _edit_model(lambda s: s.update(model_kwargs={"bogus": 1})))
_model_input("bad_encoder_json", _edit_model(lambda s: s.update(encoder="{not json")))
_model_input("missing_dt", _edit_model(lambda s: s.pop("dt_ms")))
_model_input("bad_dt", _edit_model(lambda s: s.update(dt_ms=-1.0)))
_model_input("classes_not_a_list", _edit_model(lambda s: s.update(classes=7)))


# -- output paths -------------------------------------------------------------------------------------
@_input("output", "error", commands=("encode", "decode", "plot", "train", "robustness"),
        note="train and robustness create their output folders")
def _output_in_missing_dir(d):
    return d / "missing" / "deeper"


@_input("output", "error", commands=("encode", "decode", "plot", "train", "robustness"),
        note="as root: a read-only tmpfs mount")
def _output_in_readonly_dir(d):
    ro = d / "readonly"
    ro.mkdir()
    os.chmod(ro, 0o555)
    if os.access(ro, os.W_OK):  # root: permissions do not stop writes; a read-only mount does
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True)
        if r.returncode != 0 or os.access(ro, os.W_OK):
            raise Skip("running as root and cannot mount a read-only folder: write permissions are not enforced")
        _MOUNTS.append(ro)
    return ro


@_input("output", "error", commands=("decode", "plot"))
def _output_is_a_directory(d):
    (d / "a_directory").mkdir()
    return d / "a_directory"


_MOUNTS = []

#: Cells whose outcome differs from the input's default expectation.
EXPECT = {
    ("output_in_missing_dir", "train"): "ok",
    ("output_in_missing_dir", "robustness"): "ok",
}
#: Cells known to fail in code this matrix's author may not change (see the report): cell -> reason.
XFAIL = {}


def expectation(inp, command):
    if (inp.name, command) in EXPECT:
        return EXPECT[(inp.name, command)]
    if inp.kind == "audio" and command in FOLDER_COMMANDS and inp.expect == "error":
        # a folder dataset leaves out files it cannot read, with a warning naming each: those whose header
        # does not read when it is listed, the others (NaN samples, a stream that breaks off) when encoded
        return "skipped"
    return inp.expect


def cells():
    return [(name, cmd) for name, inp in INPUTS.items() for cmd in COMMANDS if cmd in inp.commands]


# =================================================================================================
# The world every cell runs in: inputs, a tiny folder dataset, one trained tiny run, a cache.
# =================================================================================================
class World:
    def __init__(self, root):
        self.root = Path(root)
        self.inputs = self.root / "inputs"
        self.cache = self.root / "cache"
        for p in (self.inputs, self.cache, self.root / "cells", self.root / "data"):
            p.mkdir(parents=True, exist_ok=True)
        rec = _data_root() / "fsdd" / "recordings"
        if not rec.is_dir():
            raise Skip(f"real audio not found at {_data_root()}; set SPIKETRUM_DATA")
        self.base = self.root / "base"
        for label, names in BASE_CLIPS.items():
            (self.base / label).mkdir(parents=True)
            for n in names:
                os.symlink(rec / f"{n}.wav", self.base / label / f"{n}.wav")
        self.clip = self.base / "0" / "0_jackson_0.wav"
        self._made, self._matching, self._folders = {}, {}, {}
        self.run_dir = self.root / "trained" / "missing" / "deeper" / "run"  # also the cell (output_in_missing_dir, train)
        self.train_outcome = invoke(["train", "--dataset", "folder", "--data", self.base, "-o", self.run_dir,
                                     "--cache", self.cache, *TRAIN])
        if self.train_outcome.code != 0:
            raise RuntimeError(f"training the tiny run failed: {self.train_outcome}")
        self.spikes = self.path(INPUTS["valid_spike_file"])

    def path(self, inp):
        """The input's path, made once."""
        if inp.name not in self._made:
            d = self.inputs / inp.kind
            d.mkdir(exist_ok=True)
            self._made[inp.name] = inp.make(d, self.run_dir) if inp.kind == "model" else inp.make(d)
        return self._made[inp.name]

    def matching_spikes(self, inp, audio):
        """A spike file encoded from ``audio`` itself (for --source), at the file's rate."""
        if inp.name not in self._matching:
            from spiketrum import SpiketrumConfig
            from spiketrum.io import load_audio

            x, sr = load_audio(audio)
            d = self.inputs / "matching"
            d.mkdir(exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                SpiketrumConfig(sr=sr, rate=100, kernels=8).encode(x, sr).save(d / f"{inp.name}.npz")
            self._matching[inp.name] = d / f"{inp.name}.npz"
        return self._matching[inp.name]

    def folder_with(self, inp):
        """The base folder dataset plus the input made in class 1: returns (data folder, the file's path in it)."""
        if inp.name not in self._folders:
            data = self.root / "data" / inp.name
            for label, names in BASE_CLIPS.items():
                (data / label).mkdir(parents=True)
                for n in names:
                    os.symlink(os.readlink(self.base / label / f"{n}.wav"), data / label / f"{n}.wav")
            self._folders[inp.name] = (data, inp.make(data / "1"))
        return self._folders[inp.name]

    def close(self):
        while _MOUNTS:
            subprocess.run(["umount", str(_MOUNTS.pop())], capture_output=True)


# =================================================================================================
# Running a cell
# =================================================================================================
@dataclasses.dataclass
class Outcome:
    code: object  # the exit code, or "traceback" when an exception escaped main()
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def lines(self):
        return [line for line in self.stderr.splitlines() if line.strip()]


def invoke(argv):
    """``spiketrum.app.cli.main(argv)`` in this process: (exit code, stdout, stderr), warnings shown as the CLI shows them."""
    from spiketrum.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.resetwarnings()  # the interpreter's defaults, not pytest's
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - a traceback is what the rule forbids; record it
            code = "traceback"
            err.write(traceback.format_exc())
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - start)


def spiketrum_exe():
    exe = Path(sys.executable).with_name("spiketrum")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "spiketrum.app"]


def invoke_subprocess(argv, **kw):
    start = time.perf_counter()
    r = subprocess.run([*spiketrum_exe(), *map(str, argv)], capture_output=True, text=True, cwd=REPO, timeout=300, **kw)
    return Outcome(r.returncode, r.stdout, r.stderr, time.perf_counter() - start)


@dataclasses.dataclass
class Cell:
    argv: list
    blame: str  # the path the error line must name
    out_dir: Path  # nothing may be left here on error, nor any temp file on success
    check: object  # check(outcome) -> None, asserting a correct output (exit 0 cells)
    warn_about: str = None  # a "skipped" cell's warning must name this file
    premade: tuple = ()  # folders the cell's input made under out_dir (not leftovers)


def build_cell(world, name, command):
    inp = INPUTS[name]
    out = world.root / "cells" / f"{name}.{command}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if inp.kind == "audio":
        return _audio_cell(world, inp, command, out)
    if inp.kind == "spikes":
        return _spike_cell(world, inp, command, out)
    if inp.kind == "model":
        return _model_cell(world, inp, command, out)
    return _output_cell(world, inp, command, out)


def _fail(message):
    raise AssertionError(message)


def _expected_count(path, rate=RATE):
    from spiketrum.io import load_audio

    x, sr = load_audio(path)
    return 0 if not np.any(x) else int(round(rate * x.size / sr)), x.size, sr


def _check_spike_file(npz, audio, rate=RATE):
    from spiketrum.spiketrain import SpikeTrain

    st = SpikeTrain.load(npz)
    count, n, sr = _expected_count(audio, rate)
    assert (len(st), st.n_samples, st.sr) == (count, n, sr), (len(st), st.n_samples, st.sr, count, n, sr)


def _check_png(png):
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _check_run(run_dir):
    from spiketrum.app.kws import Run

    run = Run.load(run_dir)
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert run.classes == ["0", "1"] and m["n_test"] >= 1 and 0 <= m["test_accuracy"] <= 1
    _check_png(Path(run_dir) / "confusion.png")


def _readable_clips(data):
    from datasets.base import _audio_files, _probe

    return sum(_probe(p) is None for p in _audio_files(Path(data), (".wav", ".flac"), True))


def _check_evaluate(o, data, fail_late=0):
    """Every clip of ``data`` scored (``--split all``) but those left out: ``fail_late`` pass the header probe
    and fail when encoded."""
    r = json.loads(o.stdout)
    assert r["n"] == _readable_clips(data) - fail_late and 0 <= r["accuracy"] <= 1, r


def _check_robustness(out, data, fail_late=0):
    r = json.loads((out / "robustness.json").read_text())
    assert r["n"] == _readable_clips(data) - fail_late and len(r["deletion"]) == 1, r
    _check_png(out / "robustness.png")


def _check_predict(o, files, classes=("0", "1")):
    rows = [line.split("\t") for line in o.stdout.strip().splitlines()]
    assert [r[0] for r in rows] == [str(f) for f in files], rows
    assert all(r[1] in classes and 0 < float(r[2]) <= 1 for r in rows), rows


def _audio_cell(world, inp, command, out):
    path = world.path(inp)
    if inp.name == "unreadable" and os.access(path, os.R_OK):
        raise Skip("running as root: chmod 000 does not stop root from reading")
    ok = expectation(inp, command) == "ok"
    if command == "encode":
        rate = 100 if inp.name == "five_minutes" else RATE
        return Cell(["encode", path, "-o", out / "x.npz", "--rate", rate, "-q"], str(path), out,
                    lambda o: _check_spike_file(out / "x.npz", path, rate))
    if command in ("info", "plot"):
        spikes = world.matching_spikes(inp, path) if ok else world.spikes
        if inp.name == "five_minutes":  # --source would add 16 s of envelope SNR; the long spike file is the point
            return Cell(["info", spikes, "--json"], str(spikes), out,
                        lambda o: json.loads(o.stdout)["duration_s"] == 300 or _fail("not 300 s"))
        if command == "info":
            def check_info(o):
                from spiketrum.spiketrain import SpikeTrain

                info = json.loads(o.stdout)
                assert info["spikes"] == len(SpikeTrain.load(spikes)) and "snr_exact_db" in info, info
            return Cell(["info", spikes, "--source", path, "--json"], str(path), out, check_info)
        return Cell(["plot", spikes, "-o", out / "p.png", "--source", path, "--dpi", 20], str(path), out,
                    lambda o: _check_png(out / "p.png"))
    if command == "predict":
        return Cell(["predict", world.run_dir, world.clip, path], str(path), out,
                    lambda o: _check_predict(o, [world.clip, path]))
    data, bad = world.folder_with(inp)
    if inp.name == "unreadable" and os.access(bad, os.R_OK):
        raise Skip("running as root: chmod 000 does not stop root from reading")
    warn = str(bad) if expectation(inp, command) == "skipped" else None
    late = int(warn is not None and not inp.probe_fails)
    if command == "train":
        return Cell(["train", "--dataset", "folder", "--data", data, "-o", out / "run", "--cache", world.cache, *TRAIN],
                    str(bad), out, lambda o: _check_run(out / "run"), warn)
    if command == "evaluate":
        return Cell(["evaluate", world.run_dir, "--dataset", "folder", "--data", data, "--split", "all", "--json",
                     "--cache", world.cache], str(bad), out, lambda o: _check_evaluate(o, data, late), warn)
    return Cell(["robustness", world.run_dir, "--dataset", "folder", "--data", data, "--split", "all", "-o", out / "rb",
                 "--cache", world.cache, *ROBUST], str(bad), out, lambda o: _check_robustness(out / "rb", data, late), warn)


def _spike_cell(world, inp, command, out):
    path = world.path(inp)

    def loaded():
        from spiketrum.spiketrain import SpikeTrain

        return SpikeTrain.load(path)
    if command == "decode":
        def check_decode(o):
            st = loaded()
            y, sr = sf.read(out / "y.wav")
            assert (y.size, sr) == (st.n_samples, st.sr) and np.all(np.isfinite(y)) and np.abs(y).max() > 0
        return Cell(["decode", path, "-o", out / "y.wav"], str(path), out, check_decode)
    if command == "info":
        def check_info(o):
            info = json.loads(o.stdout)
            assert info["spikes"] == len(loaded()) and info["duration_s"] > 0, info
        return Cell(["info", path, "--json"], str(path), out, check_info)
    return Cell(["plot", path, "-o", out / "p.png", "--reconstruction", "--dpi", 20], str(path), out,
                lambda o: _check_png(out / "p.png"))


def _model_cell(world, inp, command, out):
    run = world.path(inp)
    blame = str(world.base) if inp.name == "foreign_classes" else str(run)  # the data has none of the model's classes
    if command == "evaluate":
        return Cell(["evaluate", run, "--dataset", "folder", "--data", world.base, "--split", "all", "--json",
                     "--cache", world.cache], blame, out, lambda o: _check_evaluate(o, world.base))
    if command == "robustness":
        return Cell(["robustness", run, "--dataset", "folder", "--data", world.base, "--split", "all", "-o", out / "rb",
                     "--cache", world.cache, *ROBUST], blame, out, lambda o: _check_robustness(out / "rb", world.base))
    return Cell(["predict", run, world.clip], str(run), out, lambda o: _check_predict(o, [world.clip]))


def _output_cell(world, inp, command, out):
    where = inp.make(out)  # made afresh for every cell, under its own folder
    premade = tuple(p for p in (where,) if p.exists())
    target = (lambda name: where) if where.name == "a_directory" else (lambda name: where / name)
    if command == "encode":
        return Cell(["encode", world.clip, "-o", target("x.npz"), "--rate", RATE, "-q"], str(where), out,
                    lambda o: _check_spike_file(where / "x.npz", world.clip), premade=premade)
    if command == "decode":
        return Cell(["decode", world.spikes, "-o", target("y.wav")], str(where), out, lambda o: None, premade=premade)
    if command == "plot":
        return Cell(["plot", world.spikes, "-o", target("p.png"), "--dpi", 20], str(where), out, lambda o: None,
                    premade=premade)
    if command == "train":
        if inp.name == "output_in_missing_dir":  # the world's tiny run was trained into a missing folder
            return Cell(None, str(where), out, lambda o: _check_run(world.run_dir))
        return Cell(["train", "--dataset", "folder", "--data", world.base, "-o", where / "run", "--cache", world.cache,
                     *TRAIN], str(where), out, lambda o: _check_run(where / "run"), premade=premade)
    return Cell(["robustness", world.run_dir, "--dataset", "folder", "--data", world.base, "--split", "all",
                 "-o", where / "rb", "--cache", world.cache, *ROBUST], str(where), out, lambda o: _check_robustness(where / "rb", world.base),
                premade=premade)


def leftovers(folder, premade=()):
    """Files (any) and empty folders under ``folder``, but for the ``premade`` folders."""
    found, keep = [], {Path(folder), *map(Path, premade)}
    for dirpath, dirnames, filenames in os.walk(folder):
        found += [os.path.join(dirpath, f) for f in filenames]
        if not dirnames and not filenames and Path(dirpath) not in keep:
            found.append(dirpath + "/")
    return found


def temp_files(*folders):
    return sorted({str(p) for f in folders if Path(f).exists() for p in Path(f).rglob("*.tmp-*")})


def judge(world, name, command, subprocess_mode=False):
    """Run one cell; returns (outcome label, detail). Raises Skip."""
    inp = INPUTS[name]
    cell = build_cell(world, name, command)
    expect = expectation(inp, command)
    if cell.argv is None:
        o = world.train_outcome
    else:
        o = invoke_subprocess(cell.argv) if subprocess_mode else invoke(cell.argv)
    problems = []
    if "Traceback" in o.stderr or "Traceback" in o.stdout or o.code == "traceback":
        problems.append("traceback")
    tmp = temp_files(cell.out_dir, world.cache, world.inputs)
    if tmp:
        problems.append(f"temp files left: {tmp}")
    if o.code == 0:
        label = "ok"
        try:
            cell.check(o)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"exit 0 but the output is wrong: {type(exc).__name__}: {exc}")
        if expect == "skipped":
            if any(cell.warn_about in line and "skipped" in line for line in o.lines):
                label = "skipped"
            else:
                problems.append(f"exit 0 without a warning naming {cell.warn_about}")
    elif o.code == 2:
        label = "error"
        if len(o.lines) != 1:
            problems.append(f"{len(o.lines)} stderr lines")
        elif cell.blame not in o.lines[0]:
            problems.append(f"the error line does not name {cell.blame}")
        else:
            cause = o.lines[0].replace(f"spiketrum {command}: error: ", "").replace(cell.blame, "")
            if sum(c.isalpha() for c in cause) < 6:
                problems.append("the error line gives no cause")
        left = leftovers(cell.out_dir, cell.premade)
        if left:
            problems.append(f"partial output left: {left}")
    else:
        label = f"exit {o.code}"
        problems.append(f"exit code {o.code}")
    if label != expect:
        problems.append(f"expected {expect}, got {label}")
    detail = o.lines[-1] if o.lines else ""
    if problems:
        return "FAIL", "; ".join(problems) + f"\n--- exit {o.code}\n--- stdout:\n{o.stdout[-2000:]}\n--- stderr:\n{o.stderr[-4000:]}"
    return label, detail


# =================================================================================================
# pytest
# =================================================================================================
try:
    import pytest
except ImportError:  # --table needs no pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def world(tmp_path_factory):
        try:
            w = World(tmp_path_factory.mktemp("bad_input"))
        except Skip as exc:
            pytest.skip(str(exc))
        yield w
        w.close()

    def _params():
        out = []
        for name, command in cells():
            marks = [pytest.mark.xfail(reason=XFAIL[(name, command)], strict=True)] if (name, command) in XFAIL else []
            out.append(pytest.param(name, command, id=f"{name}-{command}", marks=marks))
        return out

    @pytest.mark.parametrize("name,command", _params())
    def test_matrix(world, name, command):
        try:
            label, detail = judge(world, name, command)
        except Skip as exc:
            pytest.skip(str(exc))
        assert label != "FAIL", detail

    SUBPROCESS_CELLS = [("nan_samples", "encode"), ("channels_6", "encode"), ("future_version", "decode"),
                        ("header_json_list", "info"), ("other_architecture", "predict")]

    @pytest.mark.parametrize("name,command", SUBPROCESS_CELLS, ids=[f"{n}-{c}" for n, c in SUBPROCESS_CELLS])
    def test_matrix_cell_in_a_real_process(world, name, command):
        """The real console script: the true exit code, and no traceback printed by anything."""
        label, detail = judge(world, name, command, subprocess_mode=True)
        assert label == expectation(INPUTS[name], command), detail

    def test_the_matrix_covers_every_command_and_input_kind():
        covered = {c for _, c in cells()}
        assert covered == set(COMMANDS)
        kinds = {INPUTS[n].kind for n, _ in cells()}
        assert kinds == {"audio", "spikes", "model", "output"}


# =================================================================================================
# Disk full: a file-size limit, and (root) a full tmpfs
# =================================================================================================
def _disk_full_case(tmp_path, command, out_dir):
    """Write an earlier, small, complete output into ``out_dir``; returns (its path, its bytes, the command
    that writes a bigger one over it: about 80 kB of spikes, or 48 kB of float32 audio)."""
    src = tmp_path / "src.wav"
    sf.write(src, _tone(8000, 1.5), 8000)
    if command == "encode":
        out = out_dir / "a.npz"
        first = ["encode", src, "-o", out, "--rate", 50, "-q"]
        again = ["encode", src, "-o", out, "--rate", 4000, "-q"]
    else:
        sf.write(tmp_path / "short.wav", _tone(8000, 0.05), 8000)
        for name in ("src", "short"):
            assert invoke(["encode", tmp_path / f"{name}.wav", "-o", tmp_path / f"{name}.npz", "--rate", 100, "-q"]).code == 0
        out = out_dir / "a.wav"
        first = ["decode", tmp_path / "short.npz", "-o", out]
        again = ["decode", tmp_path / "src.npz", "-o", out]
    o = invoke(first)
    assert o.code == 0, o
    return out, out.read_bytes(), again


def _assert_failed_cleanly(o, out, before, cause, also=()):
    assert o.code == 2, o
    assert len(o.lines) == 1 and "Traceback" not in o.stderr, o.stderr
    assert cause in o.lines[0] and str(out) in o.lines[0], o.lines
    assert out.read_bytes() == before  # the earlier output, byte for byte
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, *also])  # and no temp file


if pytest is not None:
    @pytest.mark.parametrize("command", ["encode", "decode"])
    def test_file_size_limit_fails_in_one_line_and_keeps_the_earlier_output(tmp_path, command):
        import resource

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

        (tmp_path / "out").mkdir()
        out, before, again = _disk_full_case(tmp_path, command, tmp_path / "out")
        o = invoke_subprocess(again, preexec_fn=limit)
        _assert_failed_cleanly(o, out, before, "File too large")

    @pytest.mark.parametrize("command", ["encode", "decode"])
    def test_full_disk_fails_in_one_line_and_keeps_the_earlier_output(tmp_path, command):
        disk = tmp_path / "tmpfs"
        disk.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip() or r.returncode}")
        try:
            out, before, again = _disk_full_case(tmp_path, command, disk)
            with open(disk / "ballast", "wb", buffering=0) as f:  # fill the disk, then leave 12 kB free
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 4096)
                f.truncate(max(0, f.tell() - 12 * 1024))
            o = invoke_subprocess(again)
            _assert_failed_cleanly(o, out, before, "No space left on device", also=["ballast"])
        finally:
            subprocess.run(["umount", str(disk)], capture_output=True)


# =================================================================================================
# The table
# =================================================================================================
def table(show_lines=False):
    root = Path(tempfile.mkdtemp(prefix="bad-input-"))
    world = World(root)
    rows, lines, counts = [], [], {}
    start = time.perf_counter()
    try:
        for name, inp in INPUTS.items():
            row = [f"{inp.kind}: {name}"]
            for command in COMMANDS:
                if command not in inp.commands:
                    row.append("")
                    continue
                expect = expectation(inp, command)
                try:
                    label, detail = judge(world, name, command)
                except Skip as exc:
                    label, detail = "skip", str(exc)
                if (name, command) in XFAIL:
                    label = f"{label} (xfail)"
                counts[label] = counts.get(label, 0) + 1
                row.append(label if label in ("skip", "FAIL") or label == expect else f"{label} (expected {expect})")
                lines.append(f"{name} x {command}: {label}: {detail.splitlines()[0] if detail else ''}")
                if label == "FAIL":
                    lines.append(detail)
            rows.append(row)
    finally:
        world.close()
        shutil.rmtree(root, ignore_errors=True)
    head = ["input"] + list(COMMANDS)
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("ok: exit 0, output checked. error: exit 2, one stderr line naming the file and the cause, nothing left behind. "
          "skipped: exit 0, the folder dataset left the file out with one warning naming it. skip: not runnable here.")
    print(f"cells: {sum(counts.values())}, " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
          + f"; {time.perf_counter() - start:.0f} s")
    print()
    for name, inp in INPUTS.items():
        if inp.note:
            print(f"- {name}: {inp.note}")
    if show_lines:
        print()
        print("\n".join(lines))
    return 1 if counts.get("FAIL") else 0


if __name__ == "__main__":
    if "--table" not in sys.argv[1:]:
        sys.exit(f"usage: {sys.argv[0]} --table [--lines]   (or run it with pytest)")
    try:
        sys.exit(table(show_lines="--lines" in sys.argv[1:]))
    except Skip as exc:
        sys.exit(f"cannot build the matrix: {exc}")
