"""Spike datasets in the SHD layout: the corpus writer, the reader's binning (bin edges in float32), splits,
checked download from a local server, bad files, and every training option on such input."""
import functools
import gzip
import hashlib
import http.server
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

h5py = pytest.importorskip("h5py")

from datasets import FSDD, AudioDataset, SpikeDataset, SpikeFile, download_spike_corpus, spike_splits, write_spike_corpus  # noqa: E402
from datasets.base import data_root  # noqa: E402
from datasets.shd import corpus_file, validation_speakers  # noqa: E402
from spiketrum import InputError, SpikeTrain, make_config  # noqa: E402
from spiketrum.app import kws  # noqa: E402
from spiketrum.app.cli import main  # noqa: E402
from spiketrum.registry import NO_AUDIO_ENCODER, SpikeInputConfig, config_from_json  # noqa: E402
from spiketrum.spiketrain import bin_index  # noqa: E402

SR = 8000
CFG = make_config("spiketrum", SR, rate=1000, kernels=8, levels=2).for_training()  # 16 channels, 2 per place
CLASSES = ["a", "b", "c", "d"]


def _train_of(samples, channels, n_samples, cfg=CFG):
    """A SpikeTrain with spikes at ``samples`` on output ``channels`` (kernel x level, polarity merged)."""
    channels = np.asarray(channels)
    return SpikeTrain(samples, channels // cfg.levels, channels % cfg.levels, np.ones(len(channels)), np.ones(len(channels)),
                      np.ones((cfg.kernels, cfg.levels)), cfg, n_samples)


def _clip(rng, label, n_samples):
    """Spikes whose channels depend on the class (learnable), many on bin edges of 1 and 10 ms."""
    n = int(rng.integers(30, 60))
    samples = rng.integers(0, n_samples // 8, n) * 8  # every one on a 1 ms edge at 8 kHz, a tenth on 10 ms edges
    channels = (4 * label + rng.integers(0, 4, n)) % CFG.n_channels
    return _train_of(samples, channels, n_samples)


def _corpus(rng, n, speakers, n_samples=(1200, 2400)):
    trains, labels, who = [], [], []
    for i in range(n):
        y = i % len(CLASSES)
        trains.append(_clip(rng, y, int(rng.integers(*n_samples))))
        labels.append(y)
        who.append(speakers[i % len(speakers)])
    return trains, labels, who


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    """An SHD-like corpus written by the corpus writer: training speakers 0-3, test speakers 2, 3 and 7 (7 unseen),
    no validation file (so validation speakers are held out of training, as for SHD)."""
    root = tmp_path_factory.mktemp("shd")
    rng = np.random.default_rng(0)
    write_spike_corpus(root / "shd_train.h5", *_corpus(rng, 48, [0, 1, 2, 3]), CLASSES)
    write_spike_corpus(root / "shd_test.h5", *_corpus(rng, 18, [2, 3, 7]), CLASSES)
    return root


def _raw_shd(path, rng, n=12, n_units=700):
    """A file as the Zenke lab publishes them: float32 times, uint16 units, no duration, no attributes."""
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            k = int(rng.integers(20, 80))
            t[i] = np.sort(rng.uniform(0, 0.5, k)).astype(np.float32)
            u[i] = rng.integers(0, n_units, k).astype(np.uint16)
        f.create_dataset("labels", data=(np.arange(n) % 2).astype(np.uint16))
        f.create_dataset("extra/speaker", data=(np.arange(n) % 3).astype(np.uint16))
        f.create_dataset("extra/keys", data=np.array([b"english-zero", b"english-one"], dtype=h5py.string_dtype()))
        f.create_group("extra/meta_info")


def cli(*args):
    return main([str(a) for a in args])


TINY = ["--epochs", 1, "--batch-size", 8, "--dt-ms", 10, "-q"]


# -- binning -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr, dt_ms", [(8000, 1.0), (8000, 10.0), (16000, 1.0), (16000, 4.0), (44100, 10.0)])
def test_spikes_on_bin_edges_bin_like_the_sample_index_says(tmp_path, sr, dt_ms):
    cfg = make_config("spiketrum", sr, rate=1000, kernels=4, levels=1).for_training()
    spb = sr * dt_ms / 1000  # samples per bin (441 at 44.1 kHz / 10 ms)
    n_bins = 3000  # 3 s at 1 ms, 30 s at 10 ms: float32 keeps ~0.2 us at 30 s
    samples = np.round(np.arange(n_bins) * spb).astype(np.int64)  # every bin edge, on a sample
    st = _train_of(samples, np.arange(n_bins) % cfg.n_channels, int(samples[-1]) + 1, cfg)
    truth = samples // int(spb)
    assert np.array_equal(np.flatnonzero(st.to_dense(dt_ms).sum(1)), truth)  # native: every edge in its own bin
    t32 = st.times.astype(np.float32)
    assert np.any(np.floor(t32.astype(np.float64) / (dt_ms / 1000)).astype(np.int64) != truth)  # float32 falls below edges
    write_spike_corpus(tmp_path / "e_train.h5", [st], [0], ["s"], ["x"])
    assert np.array_equal(SpikeFile(tmp_path / "e_train.h5", dt_ms).dense(0), st.to_dense(dt_ms))


def test_bin_tolerance_moves_only_times_on_an_edge():
    eps32 = np.finfo(np.float32).eps
    edge = np.float32(0.03)
    assert bin_index([edge], 10.0, eps32).tolist() == [3]
    assert bin_index([0.03 - 1 / 44100], 10.0, eps32).tolist() == [2]  # one sample early stays early
    assert bin_index([np.nextafter(np.float32(0.03), np.float32(0))], 10.0, eps32).tolist() == [3]
    assert bin_index([0.03 - 1e-5], 10.0).tolist() == [2]


def test_written_file_gives_the_native_items_exactly(tmp_path):
    """Fully synthetic: audio -> SpikeDataset (the native path) -> write_spike_corpus -> SpikeFile, item for item."""
    rng = np.random.default_rng(3)
    files = []
    for i in range(5):
        x = 0.3 * np.sin(2 * np.pi * (300 + 150 * i) * np.arange(int(SR * (0.21 + 0.05 * i))) / SR) + 0.01 * rng.standard_normal(
            int(SR * (0.21 + 0.05 * i)))
        files.append(tmp_path / f"{i % 2}_spk{i % 3}_{i}.wav")
        sf.write(files[-1], x.astype(np.float32), SR)
    audio = AudioDataset(files, [i % 2 for i in range(5)], ["0", "1"])
    enc = make_config("spiketrum", SR, rate=800, kernels=8, levels=3).for_training()
    for dt in (1.0, 10.0):
        native = SpikeDataset(audio, enc, tmp_path / "cache", dt_ms=dt)
        write_spike_corpus(tmp_path / "syn_train.h5", [native.spikes(i) for i in range(5)], audio.labels,
                           [kws.speaker_of(f) for f in files], audio.classes)
        got = SpikeFile(tmp_path / "syn_train.h5", dt)
        assert got.labels == audio.labels and got.speakers == ["spk0", "spk1", "spk2", "spk0", "spk1"]
        assert got.input_config == SpikeInputConfig(8, 3, False, "syn", enc.to_json())
        for i in range(5):
            a, b = native[i], got[i]
            assert a[1] == b[1] and a[0].dtype == b[0].dtype == torch.float32 and torch.equal(a[0], b[0])


def test_fsdd_clips_from_a_written_file_equal_the_native_items(tmp_path):
    root = data_root()
    if root is None or not (Path(root) / "fsdd" / "recordings").is_dir():
        pytest.skip("FSDD not found (set SPIKETRUM_DATA)")
    audio = FSDD(root, split="test").subset([0, 1, 57, 123, 299])
    enc = make_config("spiketrum", 8000, rate=1000).for_training()
    native = SpikeDataset(audio, enc, tmp_path / "cache", dt_ms=10.0)
    write_spike_corpus(tmp_path / "fsdd_test.h5", [native.spikes(i) for i in range(len(audio))], audio.labels,
                       [kws.speaker_of(f) for f in audio.files], audio.classes)
    for dt in (10.0, 1.0):
        native.dt_ms = dt
        got = SpikeFile(tmp_path / "fsdd_test.h5", dt)
        for i in range(len(audio)):
            assert torch.equal(native[i][0], got[i][0]) and native[i][1] == got[i][1]


# -- the layout, splits and bad files ------------------------------------------------------------------------
def test_published_layout_reads_with_700_channels_and_length_to_the_last_spike(tmp_path):
    rng = np.random.default_rng(1)
    _raw_shd(tmp_path / "shd_train.h5", rng)
    f = SpikeFile(tmp_path / "shd_train.h5", 10.0)
    assert f.classes == ["english-zero", "english-one"] and f.n_channels == 700
    assert f.input_config == SpikeInputConfig(700, 1, False, "shd", "")
    times, units = f.spikes(0)
    x = f.dense(0)
    assert x.shape == (int(times.max() // 0.01) + 1, 700) and x.sum() == times.size
    assert np.array_equal(np.flatnonzero(x.sum(0)), np.unique(units))


def test_shd_validation_is_whole_training_speakers_and_test_stays_whole(shd_dir):
    train, val, test = spike_splits("shd", shd_dir, 10.0)
    assert val.val_speakers == validation_speakers([str(s) for s in (0, 1, 2, 3) * 12])
    assert set(val.speakers) == set(val.val_speakers) and not set(val.speakers) & set(train.speakers)
    assert len(train) + len(val) == 48 and len(test) == 18
    assert test.training_file_speakers == ["0", "1", "2", "3"]
    assert validation_speakers(["1"] * 5 + ["2"] * 50 + ["3"] * 45) == ["1"]  # closest to 10 % of 100 clips


def test_writer_is_atomic_and_checks_its_input(tmp_path):
    rng = np.random.default_rng(2)
    trains, labels, who = _corpus(rng, 4, ["x"])
    path = write_spike_corpus(tmp_path / "c_train.h5", trains, labels, who, CLASSES)
    before = path.read_bytes()

    class Broken:
        config = CFG
        duration = 1.0

        @property
        def times(self):
            raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_spike_corpus(path, [trains[0], Broken()], [0, 0], ["x", "x"], CLASSES)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c_train.h5"]
    with pytest.raises(ValueError, match="labels must index"):
        write_spike_corpus(path, trains[:1], [9], ["x"], CLASSES)
    other = make_config("spiketrum", SR, rate=1000, kernels=4, levels=2).for_training()
    with pytest.raises(ValueError, match="different encoder configs"):
        write_spike_corpus(path, [trains[0], _train_of([0], [0], 100, other)], [0, 0], ["x", "x"], CLASSES)


@pytest.mark.parametrize("damage, problem", [
    ("garbage", "not a readable HDF5 file"),
    ("truncated", "HDF5"),
    ("no_units", "not in the SHD layout (no spikes/units)"),
    ("bad_unit", "units outside its 16 channels"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, shd_dir, damage, problem, capsys):
    d = tmp_path / damage
    d.mkdir()
    path = d / "shd_train.h5"
    (d / "shd_test.h5").write_bytes((shd_dir / "shd_test.h5").read_bytes())
    good = (shd_dir / "shd_train.h5").read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(good)
        with h5py.File(path, "a") as f:
            if damage == "no_units":
                del f["spikes/units"]
            else:
                f["spikes/units"][0] = np.array([3, 99], np.uint16)
                f["spikes/times"][0] = np.array([0.0, 0.01], np.float32)
    with pytest.raises(InputError, match=re.escape(problem)) as err:
        tr, va, te = spike_splits("shd", d, 10.0)
        [tr[i] for i in range(len(tr))] + [va[i] for i in range(len(va))]
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert cli("train", "--dataset", "shd", "--data", d, "-o", tmp_path / f"run-{damage}", *TINY) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_missing_files_and_bad_gzip(tmp_path, shd_dir, capsys):
    assert cli("train", "--dataset", "ssc", "--data", shd_dir, "-o", tmp_path / "r", *TINY) == 2
    assert "ssc_train.h5: not found" in capsys.readouterr().err
    (tmp_path / "shd_train.h5.gz").write_bytes(gzip.compress((shd_dir / "shd_train.h5").read_bytes())[:-300])
    with pytest.raises(InputError, match="shd_train.h5.gz: not a whole gzip file"):
        corpus_file(tmp_path, "shd", "train")
    assert not (tmp_path / "shd_train.h5").exists()


# -- download ------------------------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path, shd_dir):
    """A local HTTP server publishing shd_train.h5.gz, shd_test.h5.gz and md5sums.txt, as the Zenke lab does."""
    pub = tmp_path / "pub"
    pub.mkdir()
    lines = []
    for part in ("train", "test"):
        data = gzip.compress((shd_dir / f"shd_{part}.h5").read_bytes())
        (pub / f"shd_{part}.h5.gz").write_bytes(data)
        lines.append(f"{hashlib.md5(data).hexdigest()}  shd_{part}.h5.gz")
    (pub / "md5sums.txt").write_text("\n".join(lines) + "\n")
    handler = functools.partial(type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(pub))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", pub
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_md5_then_places_the_files(tmp_path, server, shd_dir):
    url, pub = server
    out = download_spike_corpus("shd", tmp_path / "got", base_url=url, progress=False)
    assert set(out) == {"train", "test"}
    for part in ("train", "test"):
        assert out[part].read_bytes() == (shd_dir / f"shd_{part}.h5").read_bytes()
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == ["shd_test.h5", "shd_train.h5"]


def test_download_refuses_a_wrong_checksum_and_leaves_nothing(tmp_path, server):
    url, pub = server
    (pub / "md5sums.txt").write_text("0" * 32 + "  shd_train.h5.gz\n" + "1" * 32 + "  shd_test.h5.gz\n")
    with pytest.raises(OSError, match="shd_train.h5.gz: checksum mismatch"):
        download_spike_corpus("shd", tmp_path / "got", base_url=url, progress=False)
    assert list((tmp_path / "got").iterdir()) == []
    with pytest.raises(OSError, match="lists no checksum"):
        download_spike_corpus("shd", tmp_path / "got", base_url=url, md5={}, progress=False)


# -- training on spike datasets ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srnn_run(shd_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "srnn"
    assert cli("train", "--dataset", "shd", "--data", shd_dir, "-o", out, "--hidden", 16, *TINY) == 0
    return out


def test_train_on_shd_reports_per_speaker_and_unseen_speaker_accuracy(srnn_run, shd_dir, tmp_path, capsys):
    m = json.loads((srnn_run / "metrics.json").read_text())
    assert m["dataset"] == "shd" and m["n_test"] == 18 and m["encoder"] == "spike-input" and m["augment"] == "none"
    assert set(m["per_speaker"]) == {"2", "3", "7"} and sum(r["n"] for r in m["per_speaker"].values()) == 18
    assert m["unseen_speakers"] == ["7"] and m["n_unseen"] == 6
    assert m["unseen_speaker_accuracy"] == m["per_speaker"]["7"]["accuracy"]
    assert m["test_accuracy"] == pytest.approx(sum(r["accuracy"] * r["n"] for r in m["per_speaker"].values()) / 18)
    assert m["validation_speakers"] and m["validation_speakers"][0] in {"0", "1", "2", "3"}
    run = kws.Run.load(srnn_run)
    assert run.encoder == config_from_json(run.encoder.to_json()) and not run.encoder.encodes_audio
    assert run.encoder.n_channels == 16
    r = kws.evaluate(srnn_run, "shd", shd_dir)
    assert r["accuracy"] == m["test_accuracy"] and r["per_speaker"] == m["per_speaker"]
    capsys.readouterr()
    assert cli("evaluate", srnn_run, "--dataset", "shd", "--data", shd_dir, "--json") == 0
    assert json.loads(capsys.readouterr().out)["unseen_speakers"] == ["7"]


def test_a_spike_input_run_refuses_audio_in_one_line(srnn_run, tmp_path, capsys):
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(800, np.float32) + 0.1, SR)
    with pytest.raises(ValueError, match=NO_AUDIO_ENCODER):
        SpikeInputConfig(16).encode(np.zeros(100), SR)
    for args in (("predict", srnn_run, wav), ("evaluate", srnn_run, "--dataset", "folder", "--data", tmp_path),
                 ("robustness", srnn_run, "--dataset", "folder", "--data", tmp_path, "-o", tmp_path / "rb")):
        assert cli(*args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and NO_AUDIO_ENCODER in err


def test_augmentation_is_refused_on_spike_datasets(shd_dir, tmp_path, capsys):
    assert cli("train", "--dataset", "shd", "--data", shd_dir, "-o", tmp_path / "r", "--augment", "deletion:0.1", *TINY) == 2
    assert "trains with augment 'none'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_conv_with_sca_on_700_unit_input_takes_one_feature_per_place(tmp_path):
    rng = np.random.default_rng(5)
    _raw_shd(tmp_path / "shd_train.h5", rng, n=16)
    _raw_shd(tmp_path / "shd_test.h5", rng, n=6)
    out = tmp_path / "conv"
    assert cli("train", "--dataset", "shd", "--data", tmp_path, "-o", out, "--model", "conv", "--hidden", 8,
               "--prune", "sca", "--keep", 0.5, *TINY, "--dt-ms", 50) == 0
    run = kws.Run.load(out)
    assert run.model_kwargs["in_maps"] == 1 and run.encoder.n_channels == 700
    m = json.loads((out / "metrics.json").read_text())
    assert m["options"][0]["method"] == "sca" and m["options"][0]["keep"] == 0.5


def test_written_corpus_keeps_its_encoders_place_layout_for_conv(shd_dir, tmp_path):
    out = tmp_path / "conv"
    assert cli("train", "--dataset", "shd", "--data", shd_dir, "-o", out, "--model", "conv", "--hidden", 8, *TINY,
               "--dt-ms", 50) == 0
    assert kws.Run.load(out).model_kwargs["in_maps"] == CFG.levels  # 2 features per place, as on audio


@pytest.mark.parametrize("flags", [
    ("--prune", "esl", "--density", 0.5, "--hidden", 16),
    ("--model", "srnn-scbam", "--hidden", 2, "--dt-ms", 50),  # few steps: its per-clip latency timing is slow
])
def test_training_options_work_on_spike_input(shd_dir, tmp_path, flags):
    out = tmp_path / "run"
    assert cli("train", "--dataset", "shd", "--data", shd_dir, "-o", out, *TINY, *flags) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_test"] == 18 and 0 <= m["test_accuracy"] <= 1 and m["unseen_speakers"] == ["7"]
    if "esl" in flags:
        assert 0.4 < m["parameters_nonzero"] / m["parameters"] < 0.75


def test_distillation_from_a_run_on_the_same_spikes(srnn_run, shd_dir, tmp_path, capsys):
    out = tmp_path / "kd"
    assert cli("train", "--dataset", "shd", "--data", shd_dir, "-o", out, "--hidden", 16, "--distill", "kd",
               "--teacher", srnn_run, *TINY) == 0
    assert json.loads((out / "metrics.json").read_text())["options"][0]["method"] == "kd"
    other = tmp_path / "other"  # a teacher on other spikes (700 channels) is refused before training
    rng = np.random.default_rng(6)
    other.mkdir()
    _raw_shd(other / "shd_train.h5", rng)
    _raw_shd(other / "shd_test.h5", rng, n=4)
    capsys.readouterr()
    assert cli("train", "--dataset", "shd", "--data", other, "-o", tmp_path / "kd2", "--hidden", 16, "--distill", "kd",
               "--teacher", srnn_run, *TINY) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_context_gating_on_spike_input(shd_dir, tmp_path):
    out = tmp_path / "cg"
    assert cli("continual", "--dataset", "shd", "--data", shd_dir, "-o", out, "--methods", "cg", "finetune",
               "--epochs", 1, "--hidden", 8, "--batch-size", 8, "-q") == 0
    r = json.loads((out / "continual.json").read_text())
    assert set(r["results"]) == {"cg", "finetune"} and len(r["results"]["cg"]["matrix"]) == 2  # tasks {a,b}, {c,d}


def test_to_shd_then_train_equals_the_native_path(tmp_path):
    """A folder corpus trained natively (augment none) and through its written SHD-layout files: the same model."""
    rng = np.random.default_rng(7)
    data = tmp_path / "words"
    for c, f0 in (("lo", 250), ("hi", 900)):
        (data / c).mkdir(parents=True)
        for k in range(10):
            n = int(SR * rng.uniform(0.15, 0.3))
            x = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.05 * rng.standard_normal()) * np.arange(n) / SR)
            sf.write(data / c / f"{c}{k}.wav", (x + 0.01 * rng.standard_normal(n)).astype(np.float32), SR)
    common = ["--rate", 500, "--epochs", 2, "--batch-size", 4, "--hidden", 12, "--dt-ms", 5, "-q"]
    assert cli("to-shd", "--dataset", "folder", "--data", data, "-o", tmp_path / "h5", "--rate", 500,
               "--cache", tmp_path / "cache", "-q") == 0
    assert cli("to-shd", "--dataset", "folder", "--data", data, "-o", tmp_path / "h5", "-q") == 2  # no silent overwrite
    assert cli("train", "--dataset", "folder", "--data", data, "-o", tmp_path / "native", "--augment", "none",
               "--cache", tmp_path / "cache", *common) == 0
    assert cli("train", "--dataset", "spikes", "--data", tmp_path / "h5", "-o", tmp_path / "file", *common) == 0
    a, b = kws.Run.load(tmp_path / "native"), kws.Run.load(tmp_path / "file")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("native", "file"))
    assert ma["test_accuracy"] == mb["test_accuracy"] and ma["n_test"] == mb["n_test"] and ma["history"] == mb["history"]
    assert os.path.exists(tmp_path / "h5" / "folder_valid.h5")
