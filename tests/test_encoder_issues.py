"""Regression tests for the encoder-side issues: each failed before its fix."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from spiketrum import SpikeTrain, encode
from spiketrum.io import atomic_output


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spiketrum.app", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(r):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture
def tone(tmp_path):
    sr = 8000
    t = np.arange(int(0.5 * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(tmp_path / "x.wav", x, sr)
    return tmp_path / "x.wav"


# -- --levels above 128 -------------------------------------------------------------------------
def test_levels_above_127_save_and_load(tmp_path):
    x = np.random.default_rng(0).standard_normal(8000)
    st = encode(x, 8000, rate=8000, kernels=2, levels=200)
    assert st.level.max() >= 128 and st.level.min() >= 0
    st.save(tmp_path / "L.npz")
    assert SpikeTrain.load(tmp_path / "L.npz") == st


def test_cli_levels_129_then_info(tone, tmp_path):
    out = tmp_path / "L.npz"
    assert cli("encode", tone, "-o", out, "--levels", 129, "--kernels", 2, "--rate", 8000).returncode == 0
    r = cli("info", out)
    assert r.returncode == 0, r.stderr


# -- colliding stems in corpus.collect ----------------------------------------------------------
def test_same_stem_different_extension_gets_distinct_outputs(tone, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    x, sr = sf.read(tone)
    sf.write(src / "a.wav", x, sr)
    sf.write(src / "a.flac", x[::-1], sr)
    sf.write(src / "b.wav", x, sr)
    out = tmp_path / "out"
    r = cli("encode", src, "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert "encoded 3," in r.stdout and "of 3 files" in r.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz")) == ["src/a.flac.npz", "src/a.wav.npz", "src/b.npz"]
    assert len([line for line in r.stderr.splitlines() if "keep the audio extension" in line]) == 1  # said once
    again = cli("encode", src, "-o", out, "-q")
    assert "encoded 0, skipped 3" in again.stdout, again.stdout
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(e["output"] for e in manifest) == ["src/a.flac.npz", "src/a.wav.npz", "src/b.npz"]


# -- decode writes the format its extension names ---------------------------------------------
@pytest.mark.parametrize("ext,fmt", [("flac", "FLAC"), ("ogg", "OGG"), ("wav", "WAV")])
def test_decode_writes_the_format_of_its_extension(tone, tmp_path, ext, fmt):
    npz = tmp_path / "x.npz"
    assert cli("encode", tone, "-o", npz).returncode == 0
    r = cli("decode", npz, "-o", tmp_path / f"a.{ext}")
    assert r.returncode == 0, r.stderr
    assert sf.info(tmp_path / f"a.{ext}").format == fmt


def test_decode_to_unknown_extension_is_an_error(tone, tmp_path):
    npz = tmp_path / "x.npz"
    assert cli("encode", tone, "-o", npz).returncode == 0
    line = one_line_error(cli("decode", npz, "-o", tmp_path / "a.xyz"))
    assert "a.xyz" in line and ".xyz" in line
    assert not (tmp_path / "a.xyz").exists()


# -- atomic outputs take the umask's mode --------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_output_mode_follows_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_output(tmp_path / "f.txt") as tmp:
            with open(tmp, "w") as f:
                f.write("x")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        st = encode(np.random.default_rng(0).standard_normal(800), 8000, n_spikes=5, kernels=4)
        st.save(tmp_path / "s.npz")
    finally:
        os.umask(old)
    expect = 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode) == expect
    assert stat.S_IMODE(os.stat(tmp_path / "f.txt").st_mode) == expect
    assert stat.S_IMODE(os.stat(tmp_path / "s.npz").st_mode) == expect


# -- "silent" only for silent input; a count the encoder cannot hold ---------------------------
@pytest.mark.parametrize("options,reason", [(("--snr", -10), "snr"), (("--rate", 0.5), "0 spikes")])
def test_zero_spikes_from_sound_is_not_called_silent(tone, tmp_path, options, reason):
    r = cli("encode", tone, "-o", tmp_path / "z.npz", *options)
    assert r.returncode == 0, r.stderr
    assert "silent" not in r.stderr and reason in r.stderr.lower(), r.stderr


def test_silent_input_is_called_silent(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(4000), 8000)
    r = cli("encode", tmp_path / "s.wav", "-o", tmp_path / "s.npz")
    assert r.returncode == 0 and "silent" in r.stderr, r.stderr


def test_rate_above_capacity_is_refused(tone, tmp_path):
    line = one_line_error(cli("encode", tone, "-o", tmp_path / "r.npz", "--rate", 1e9))
    assert "at most" in line and not (tmp_path / "r.npz").exists()
    with pytest.raises(ValueError, match="at most"):
        encode(np.random.default_rng(0).standard_normal(800), 8000, rate=1e9)


# -- sample rates and integer audio ---------------------------------------------------------------
def test_non_integer_sample_rate_is_an_error():
    x = np.random.default_rng(0).standard_normal(800)
    with pytest.raises(ValueError, match="integer"):
        encode(x, 8000.5, n_spikes=10)
    assert encode(x, 8000.0, n_spikes=10) == encode(x, 8000, n_spikes=10)


@pytest.mark.parametrize("dtype,scale", [(np.int16, lambda x: x / 32768), (np.int32, lambda x: x / 2**31),
                                         (np.uint8, lambda x: (x - 128.0) / 128)])
def test_integer_audio_is_scaled_like_soundfile(dtype, scale, tmp_path):
    info = np.iinfo(dtype)
    x = np.random.default_rng(0).integers(info.min, info.max, 800, endpoint=True).astype(dtype)
    as_float = scale(x.astype(np.float64))
    assert encode(x, 8000, n_spikes=20, kernels=8) == encode(as_float, 8000, n_spikes=20, kernels=8)
    for method in ("delta", "poisson"):
        assert encode(x, 8000, n_spikes=20, kernels=8, method=method) == encode(as_float, 8000, n_spikes=20, kernels=8,
                                                                                method=method)


# -- write errors name the output ---------------------------------------------------------------
def test_write_errors_name_the_output_in_one_line(tone, tmp_path):
    npz = tmp_path / "x.npz"
    assert cli("encode", tone, "-o", npz).returncode == 0
    (tmp_path / "afile").write_text("")
    for args, named in [(("encode", tone, "-o", "/proc/x.npz"), "/proc/x.npz"),
                        (("decode", npz, "-o", "/proc/a.wav"), "/proc/a.wav"),
                        (("encode", tone.parent, "-o", tmp_path / "afile"), "afile")]:
        line = one_line_error(cli(*args))
        assert named in line and ".tmp-" not in line and "[Errno" not in line, line
