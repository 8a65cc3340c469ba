import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from spiketrum import __version__


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spiketrum.app", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"spiketrum {__version__}"
    r = run("--help")
    assert r.returncode == 0 and "cochleagram" in r.stdout


def test_cochleagram_png_from_real_audio(fsdd_wav, tmp_path):
    out = tmp_path / "c.png"
    r = run("cochleagram", fsdd_wav, "-o", out, "--channels", 32)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temp files left


def _bad_inputs(tmp):
    sr = 16000
    files = {}
    files["empty.wav"] = b""
    files["text.wav"] = b"this is not audio at all" * 10
    files["truncated.wav"] = b"RIFF\x24\x00\x00\x00WAVEfmt "
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    sf.write(tmp / "nan.wav", np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), sr, subtype="FLOAT")
    sf.write(tmp / "zero_frames.wav", np.zeros(0, dtype=np.float32), sr)
    return ["empty.wav", "text.wav", "truncated.wav", "nan.wav", "zero_frames.wav", "missing.wav"]


def test_bad_audio_gives_one_line_error_and_exit_2(tmp_path):
    for name in _bad_inputs(tmp_path):
        out = tmp_path / f"{name}.png"
        r = run("cochleagram", tmp_path / name, "-o", out)
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in r.stderr, (name, r.stderr)
        assert not out.exists()


@pytest.mark.parametrize("subtype,channels,sr", [("PCM_U8", 1, 8000), ("PCM_24", 2, 44100), ("FLOAT", 6, 96000), ("PCM_16", 1, 11025)])
def test_odd_formats_work(tmp_path, subtype, channels, sr):
    t = np.arange(int(0.3 * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t)[:, None].repeat(channels, 1)
    sf.write(tmp_path / "a.wav", x, sr, subtype=subtype)
    r = run("cochleagram", tmp_path / "a.wav", "-o", tmp_path / "a.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.png").exists()


def test_silent_and_tiny_audio_work(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000), 16000)
    sf.write(tmp_path / "tiny.wav", np.ones(160) * 0.1, 16000)  # 0.01 s
    for name in ("silent.wav", "tiny.wav"):
        r = run("cochleagram", tmp_path / name, "-o", tmp_path / f"{name}.png")
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "args",
    [["--channels", "0"], ["--channels", "x"], ["--fmin", "-1"], ["--hop-ms", "nan"], ["--fmax", "9000"], ["--fmin", "5000", "--fmax", "100"]],
)
def test_bad_cli_values_exit_2(fsdd_wav, tmp_path, args):
    r = run("cochleagram", fsdd_wav, "-o", tmp_path / "a.png", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "a.png").exists()


def test_unwritable_output_exit_2(fsdd_wav, tmp_path):
    r = run("cochleagram", fsdd_wav, "-o", tmp_path / "missing" / "a.png")
    assert r.returncode == 2 and "does not exist" in r.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        r = run("cochleagram", fsdd_wav, "-o", ro / "a.png")
        assert r.returncode == 2 and "not writable" in r.stderr
    finally:
        os.chmod(ro, 0o755)


def test_encode_folder_mirrors_tree_resumes_and_reports_failures(data_root, tmp_path):
    import shutil

    src = tmp_path / "corpus"
    (src / "sub").mkdir(parents=True)
    rec = data_root / "fsdd" / "recordings"
    for name in ("3_jackson_0.wav", "4_theo_1.wav"):
        shutil.copy(rec / name, src / name)
    shutil.copy(rec / "7_nicolas_2.wav", src / "sub" / "7_nicolas_2.wav")
    (src / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    out = tmp_path / "spikes"
    r = run("encode", src, "-o", out, "--rate", 500)
    assert r.returncode == 2 and "broken.wav" in r.stderr and "Traceback" not in r.stderr
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz"))
    assert made == ["corpus/3_jackson_0.npz", "corpus/4_theo_1.npz", "corpus/sub/7_nicolas_2.npz"]
    stamp = (out / made[0]).stat().st_mtime_ns
    r = run("encode", src, "-o", out, "--rate", 500)
    assert "skipped 3 already done" in r.stdout and (out / made[0]).stat().st_mtime_ns == stamp
    r = run("encode", src, "-o", out, "--rate", 800)  # a new config re-encodes
    assert "encoded 3" in r.stdout


def test_decode_and_info_roundtrip(fsdd_wav, tmp_path):
    import json

    assert run("encode", fsdd_wav, "-o", tmp_path / "a.npz", "--rate", 2000).returncode == 0
    r = run("info", tmp_path / "a.npz", "--json", "--source", fsdd_wav)
    info = json.loads(r.stdout)
    assert info["spikes_per_second"] == pytest.approx(2000, rel=2e-3)
    assert info["snr_exact_db"] == pytest.approx(info["encoder_residual_snr_db"], abs=0.5)
    r = run("decode", tmp_path / "a.npz", "-o", tmp_path / "a.wav", "--exact")
    assert r.returncode == 0
    y, sr = sf.read(tmp_path / "a.wav")
    x, sr0 = sf.read(fsdd_wav)
    assert sr == sr0 and y.size == x.size


@pytest.mark.parametrize("cmd", ["decode", "info"])
def test_bad_spike_files_exit_2(tmp_path, cmd):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    extra = ["-o", str(tmp_path / "o.wav")] if cmd == "decode" else []
    for name in ("bad.npz", "missing.npz"):
        r = run(cmd, tmp_path / name, *extra)
        assert r.returncode == 2 and name in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.wav").exists()


def test_encode_silence_warns_and_writes_zero_spikes(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(8000), 16000)
    r = run("encode", tmp_path / "s.wav", "-o", tmp_path / "s.npz")
    assert r.returncode == 0 and "silent" in r.stderr
    from spiketrum import SpikeTrain

    assert len(SpikeTrain.load(tmp_path / "s.npz")) == 0


def test_plot_spikegram_with_source_and_reconstruction(fsdd_wav, tmp_path):
    npz, png = tmp_path / "a.npz", tmp_path / "a.png"
    assert run("encode", fsdd_wav, "-o", npz, "--rate", 500).returncode == 0
    r = run("plot", npz, "-o", png, "--source", fsdd_wav, "--reconstruction")
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "a.png"]
    # a source of another length is refused in one line, and nothing is written
    sf.write(tmp_path / "short.wav", np.zeros(100), 8000)
    r = run("plot", npz, "-o", tmp_path / "b.png", "--source", tmp_path / "short.wav")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "short.wav" in r.stderr
    assert not (tmp_path / "b.png").exists()
    r = run("plot", tmp_path / "short.wav", "-o", tmp_path / "c.png")
    assert r.returncode == 2 and "short.wav" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("method", ["delta", "bsa"])
def test_baseline_encoders_through_the_cli(fsdd_wav, tmp_path, method):
    npz = tmp_path / "a.npz"
    r = run("encode", fsdd_wav, "-o", npz, "--method", method, "--rate", 400, "--kernels", 16)
    assert r.returncode == 0, r.stderr
    r = run("info", npz, "--source", fsdd_wav, "--json")
    assert r.returncode == 0, r.stderr
    import json

    info = json.loads(r.stdout)
    assert info["config"]["encoder"] == method and info["n_channels"] == 32
    assert info["spikes"] == round(400 * info["duration_s"]) and np.isfinite(info["envelope_snr_db"])
    assert run("decode", npz, "-o", tmp_path / "a.wav").returncode == 0
    assert sf.info(tmp_path / "a.wav").frames == sf.info(fsdd_wav).frames
    r = run("encode", fsdd_wav, "-o", tmp_path / "b.npz", "--method", method, "--snr", 10)
    assert r.returncode == 2 and "has no option snr_db" in r.stderr and not (tmp_path / "b.npz").exists()
