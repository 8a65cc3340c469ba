import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from datasets import collate_spikes
from spiketrum.app import kws
from spiketrum.app import robustness as rb
from snn.trainer import TrainConfig


def cli(*args):
    return subprocess.run([sys.executable, "-m", "spiketrum.app", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("rob") / "run"
    kws.train("folder", tiny_folder, out, model_kwargs={"hidden": (24,)}, rate=500, dt_ms=10, augment="none",
              config=TrainConfig(epochs=3, batch_size=8, patience=0), progress=False)
    return out


def _config(**levels):
    return rb.RobustnessConfig(dataset="folder", levels=tuple(levels.items()), seeds=2, recon_clips=6)


def test_no_deletion_is_the_clean_run_and_full_deletion_leaves_no_input(trained, tiny_folder):
    r = rb.robustness(trained, tiny_folder, _config(deletion=(0.0, 0.5, 1.0)), progress=False)
    none, half, full = r["deletion"]
    # spike loss acts on one encoding of each clip: the clean score is the clip alone's, without test-time views
    assert none["accuracy"] == r["clean_accuracy"] == kws.evaluate(trained, "folder", tiny_folder, progress=False,
                                                                   tta="none")["accuracy"]
    assert none["accuracy_std"] == 0 and none["recon_snr_db"] == r["clean_recon_snr_db"]
    assert half["recon_snr_db"] < r["clean_recon_snr_db"] and half["envelope_snr_db"] < r["clean_envelope_snr_db"]
    # Every spike deleted: the model sees all-zero input of each clip's length, and nothing decodes (0 dB).
    run = kws.Run.load(trained)
    audio, _ = kws.split_audio(run, "folder", tiny_folder)
    spikes = kws.spike_sets([audio], run.encoder, trained.parent / "cache", run.dt_ms, progress=False)[0]
    x, lengths, y = collate_spikes([spikes[i] for i in range(len(spikes))], dt_ms=run.dt_ms)
    with torch.no_grad():
        silent = run.model(torch.zeros_like(x), lengths).argmax(1)
    assert full["accuracy"] == float((silent == y).double().mean())
    assert full["accuracy_std"] == 0 and full["recon_snr_db"] == full["envelope_snr_db"] == 0.0


def test_same_seeds_give_an_identical_json_and_no_partial_file_is_left(trained, tiny_folder, tmp_path):
    cfg = _config(deletion=(0.2,), jitter=(1.0,), insertion=(2.0,))
    for name in ("a", "b"):
        rb.measure([trained], tiny_folder, cfg, tmp_path / name, progress=False)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["robustness.json", "robustness.png"]
    a, b = ((tmp_path / n / "robustness.json").read_bytes() for n in ("a", "b"))
    assert a == b
    r = json.loads(a)
    assert set(r) >= {"clean_accuracy", "deletion", "jitter", "insertion"} and "noise" not in r
    assert set(r["jitter"][0]) >= {"level", "accuracy", "accuracy_std", "recon_snr_db"}
    other = rb.robustness(trained, tiny_folder, rb.RobustnessConfig("folder", levels=(("deletion", (0.2,)),), seeds=3,
                                                                    recon_clips=6), progress=False)
    assert other["deletion"][0] != r["deletion"][0]  # a third seed changes the mean


def test_finished_points_are_read_back_on_resume(trained, tiny_folder, tmp_path):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"deletion:0.3:0": [0.125, -7.0, 3.0]}))
    r = rb.robustness(trained, tiny_folder, rb.RobustnessConfig("folder", levels=(("deletion", (0.3,)),), seeds=1),
                      partial=partial, progress=False)
    assert (r["deletion"][0]["accuracy"], r["deletion"][0]["recon_snr_db"], r["deletion"][0]["envelope_snr_db"]) == (0.125, -7.0, 3.0)


def test_background_noise_lowers_the_reconstruction_snr(trained, tiny_folder, data_root):
    noise_dir = data_root / "speech_commands_noise"
    if not noise_dir.is_dir():
        pytest.skip("no background noise in the data folder")
    r = rb.robustness(trained, tiny_folder, _config(noise=(20.0, 0.0)), noise_dir=noise_dir, progress=False)
    high, low = r["noise"]
    assert low["recon_snr_db"] < high["recon_snr_db"] < r["clean_recon_snr_db"]
    assert all(0 <= row["accuracy"] <= 1 for row in r["noise"])


def test_the_command_writes_json_and_figure_and_compares_runs(trained, tiny_folder, tmp_path):
    other = tmp_path / "delta"
    kws.train("folder", tiny_folder, other, encoder="delta", model_kwargs={"hidden": (24,)}, rate=500, dt_ms=10,
              augment="none", config=TrainConfig(epochs=1, batch_size=8, patience=0), progress=False)
    out = tmp_path / "out"
    r = cli("robustness", trained, "--dataset", "folder", "--data", tiny_folder, "-o", out, "--deletion", "0,0.5",
            "--jitter-ms", "none", "--insertion", "none", "--noise-snr", "none", "--seeds", 1, "--recon-clips", 3,
            "--compare", other, "-q")
    assert r.returncode == 0, r.stderr
    result = json.loads((out / "robustness.json").read_text())
    assert [row["level"] for row in result["deletion"]] == [0.0, 0.5] and "jitter" not in result
    assert result["compare"][0]["encoder"]["encoder"] == "delta"
    assert (out / "robustness.png").stat().st_size > 10_000
    assert "delta" in r.stdout and "deletion" in r.stdout


@pytest.mark.parametrize("args", [["--deletion", "0,1.5"], ["--jitter-ms", "-1"], ["--noise-snr", "x"], ["--seeds", 0],
                                  ["--deletion", "none", "--jitter-ms", "none", "--insertion", "none", "--noise-snr", "none"]])
def test_bad_values_give_one_line_and_exit_2(trained, tiny_folder, tmp_path, args):
    r = cli("robustness", trained, "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "o", *args, "-q")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o" / "robustness.json").exists()


def test_a_missing_run_is_a_clean_error(tiny_folder, tmp_path):
    r = cli("robustness", tmp_path / "nothing", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "o", "-q")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_config_rejects_bad_levels():
    with pytest.raises(ValueError, match="deletion"):
        rb.RobustnessConfig("fsdd", levels=(("deletion", (1.2,)),))
    with pytest.raises(ValueError, match="unknown"):
        rb.RobustnessConfig("fsdd", levels=(("loss", (0.1,)),))
    with pytest.raises(ValueError):
        rb.RobustnessConfig("fsdd", seeds=0)
    assert np.isclose(rb.DEFAULT_LEVELS["deletion"][-1], 0.9)
