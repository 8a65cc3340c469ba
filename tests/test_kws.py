import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spiketrum.app import kws
from snn.trainer import Callback, TrainConfig
from spiketrum.perturb import InferenceAugment, tilt


def run(*args):
    return subprocess.run([sys.executable, "-m", "spiketrum.app", *map(str, args)], capture_output=True, text=True)


FAST = ["--epochs", 3, "--hidden", 24, "--dt-ms", 10, "--rate", 500, "--batch-size", 8, "-q"]


class Kill(Callback):
    def __init__(self, at=None):
        self.at = at

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == self.at:  # dies before this epoch's checkpoint
            raise KeyboardInterrupt


def _train(folder, out, config=TrainConfig(epochs=3, batch_size=8, patience=0), **kw):
    return kws.train("folder", folder, out, model_kwargs={"hidden": (24,)}, rate=500, dt_ms=10, config=config,
                     cache_dir=out.parent / "cache", progress=False, **kw)


def test_train_evaluate_predict_through_the_cli(tiny_folder, tmp_path):
    out = tmp_path / "run"
    r = run("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, *FAST)
    assert r.returncode == 0, r.stderr
    assert {"model.pt", "metrics.json", "confusion.png", "checkpoint.pt"} <= {p.name for p in out.iterdir()}
    m = json.loads((out / "metrics.json").read_text())
    assert m["classes"] == ["0", "1", "7"] and 0 <= m["test_accuracy"] <= 1
    assert np.array(m["confusion"]).sum() == m["n_test"] > 0
    assert m["activity"]["layers"] and m["parameters"] > 0
    r = run("evaluate", out, "--dataset", "folder", "--data", tiny_folder, "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["n"] == m["n_test"] and ev["accuracy"] == pytest.approx(m["test_accuracy"])  # the test part training held out
    # energy per clip on the same clips: SynOps as in activity, state updates from the valid steps (SRNN 24 + readout 3)
    e = m["energy"]
    assert e["samples"] == m["n_test"] and e["synops"] > 0
    assert e["synops"] == pytest.approx(m["activity"]["synops_per_sample"])
    assert e["state_updates"] == pytest.approx(m["activity"]["steps_per_sample"] * (3 * 24 + 3))
    assert e["uj"] == pytest.approx(e["synops"] * 0.9e-6) and e["macs"] == 0
    assert ev["energy"]["synops"] == pytest.approx(e["synops"], rel=1e-6)
    assert ev["energy"]["state_updates"] == pytest.approx(e["state_updates"])
    r = run("evaluate", out, "--dataset", "folder", "--data", tiny_folder, "--json", "--split", "all")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["n"] == 84 and 0 <= ev["accuracy"] <= 1
    files = sorted((tiny_folder / "7").iterdir())[:2]
    r = run("predict", out, *files)
    assert r.returncode == 0, r.stderr
    lines = [line.split("\t") for line in r.stdout.strip().splitlines()]
    assert [line[0] for line in lines] == [str(f) for f in files]
    assert all(line[1] in ("0", "1", "7") and 0 < float(line[2]) <= 1 for line in lines)


def test_resume_after_a_kill_gives_the_uninterrupted_metrics(tiny_folder, tmp_path):
    full = _train(tiny_folder, tmp_path / "a" / "run", callbacks=[Kill()])
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_folder, tmp_path / "b" / "run", callbacks=[Kill(at=2)])
    resumed = _train(tiny_folder, tmp_path / "b" / "run", callbacks=[Kill()], resume=True)
    for key in ("test_accuracy", "history", "confusion", "best_val_accuracy"):
        assert json.dumps(resumed[key], default=str) == json.dumps(full[key], default=str), key
    a = torch.load(tmp_path / "a" / "run" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "run" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_skips_unknown_class_folders(tiny_folder, tmp_path):
    out = tmp_path / "run"
    _train(tiny_folder, out)
    other = tmp_path / "other"
    (other / "7").mkdir(parents=True)
    (other / "9").mkdir()
    for f in sorted((tiny_folder / "7").iterdir())[:3]:
        os.symlink(f.resolve(), other / "7" / f.name)
    for f in sorted((tiny_folder / "0").iterdir())[:2]:
        os.symlink(f.resolve(), other / "9" / f.name)
    r = run("evaluate", out, "--dataset", "folder", "--data", other, "--json", "--cache", tmp_path / "cache", "--split", "all")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 3 and "'9'" in r.stderr


def test_bad_training_input_gives_one_line_and_exit_2(tiny_folder, tmp_path):
    cases = [
        ("train", "--dataset", "fsdd", "--data", tmp_path / "nowhere", "-o", tmp_path / "r1", *FAST),
        ("train", "--dataset", "folder", "--data", tmp_path / "empty", "-o", tmp_path / "r2", *FAST),
        ("train", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "r3", "--resume", *FAST),
        ("train", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "r4", "--mixup", "0", *FAST),
        ("train", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "r5", "--emphasis", "nan", *FAST),
        ("train", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "r6", "--emphasis", "3", "--encoder",
         "delta", *FAST),
        ("evaluate", tmp_path / "nomodel", "--dataset", "folder", "--data", tiny_folder),
        ("predict", tmp_path / "nomodel", tiny_folder / "0" / "0_theo_0.wav"),
    ]
    (tmp_path / "empty" / "a").mkdir(parents=True)
    for args in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def test_emphasis_tilts_the_encoder_a_run_trains_on_and_saves(tiny_folder, tmp_path):
    plain = kws.plan_training("folder", tiny_folder, tmp_path / "a", rate=500)
    plan = kws.plan_training("folder", tiny_folder, tmp_path / "b", rate=500, emphasis=3.0)
    assert plain.encoder.gains is None and plan.encoder == plain.encoder.with_emphasis(3.0)
    assert plan.settings["encoder"]["gains"] == list(plan.encoder.gains)
    assert not (tmp_path / "b").exists()  # a plan writes nothing


def test_resume_with_other_settings_is_refused(tiny_folder, tmp_path):
    out = tmp_path / "run"
    assert run("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, *FAST).returncode == 0
    r = run("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--resume", *FAST[:-1], "--lr", 0.01, "-q")
    assert r.returncode == 2 and "lr" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for extra, name in ((["--augment", "none"], "augment"), (["--encoder", "delta"], "encoder"), (["--emphasis", 3], "encoder"),
                        (["--hidden", 16], "model_kwargs")):
        r = run("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--resume", *FAST, *extra)
        assert r.returncode == 2 and name in r.stderr and len(r.stderr.strip().splitlines()) == 1, (extra, r.stderr)


class _Payload:
    """Unpickling this runs a shell command: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_payload_in_a_model_or_checkpoint_never_runs(tiny_folder, tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"format": kws.MODEL_FORMAT, "version": 1, "x": _Payload(marker)}, bad / "model.pt")
    torch.save({"config": {}, "x": _Payload(marker)}, bad / "checkpoint.pt")
    for args in (("evaluate", bad, "--dataset", "folder", "--data", tiny_folder),
                 ("predict", bad, tiny_folder / "0" / "0_theo_0.wav"),
                 ("train", "--dataset", "folder", "--data", tiny_folder, "-o", bad, "--resume", *FAST)):
        r = run(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
    from snn.trainer import Trainer

    trainer = Trainer(torch.nn.Linear(2, 2), [], None, None, TrainConfig(), progress=False, device="cpu")
    with pytest.raises(ValueError, match="checkpoint"):
        trainer.load_checkpoint(bad / "checkpoint.pt")
    assert not marker.exists()


def test_noise_augmentation_uses_real_noise_or_says_it_cannot(tiny_folder, tmp_path, data_root):
    noise = data_root / "speech_commands_noise"
    if not noise.is_dir():
        pytest.skip("no background noise in the data folder")
    cfg = TrainConfig(epochs=1, batch_size=8, patience=0)
    common = dict(model_kwargs={"hidden": (16,)}, rate=500, dt_ms=10, config=cfg, progress=False)
    m = kws.train("folder", tiny_folder, tmp_path / "a" / "run", augment="noise:10dB", noise_dir=noise, tta="none", **common)
    assert m["augment"] == "noise:10dB"
    entries = sum(len(list(d.glob("*.npz"))) for d in (tmp_path / "a" / "cache").iterdir())
    assert entries == 84 + 68  # every clip clean, and every training clip once more with noise
    with pytest.warns(UserWarning, match="without the default noise"):
        m = kws.train("folder", tiny_folder, tmp_path / "b" / "run", **common)
    assert "noise" not in m["augment"] and "deletion" in m["augment"]
    with pytest.raises(FileNotFoundError, match="noise"):
        kws.train("folder", tiny_folder, tmp_path / "c" / "run", augment="noise:10dB", **common)


def test_warped_copies_and_mixup_reach_training(tiny_folder, tmp_path):
    from snn.trainer import Mixup
    from spiketrum import SpikeTrain

    cfg = TrainConfig(epochs=1, batch_size=8, patience=0)
    m = kws.train("folder", tiny_folder, tmp_path / "run", augment="warp:0.1,copies:2", options=[Mixup(0.2)], tta="none",
                  model_kwargs={"hidden": (16,)}, rate=500, dt_ms=10, config=cfg, progress=False)
    assert m["augment"] == "warp:0.1,copies:2" and m["options"] == [{"method": "mixup", "alpha": 0.2}]
    warps = [SpikeTrain.load(f).config.warp for d in (tmp_path / "cache").iterdir() for f in d.glob("*.npz")]
    # every clip clean, and every training clip twice, each with its own warp (two equal draws share an entry)
    assert 84 + 68 < len(warps) <= 84 + 2 * 68 and all(0.9 <= w <= 1.1 for w in warps)
    assert len(warps) - warps.count(1.0) > 100


def test_sigkill_mid_training_then_resume_gives_the_uninterrupted_model(tiny_folder, tmp_path):
    import signal
    import time

    args = ["--dataset", "folder", "--data", tiny_folder, "--epochs", 20, "--hidden", 24, "--rate", 500, "--batch-size", 2,
            "--patience", 0, "--augment", "deletion:0.2", "-q"]
    full = tmp_path / "full" / "run"
    assert run("train", "-o", full, *args).returncode == 0
    out = tmp_path / "killed" / "run"
    p = subprocess.Popen([sys.executable, "-m", "spiketrum.app", "train", "-o", str(out), *map(str, args)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, deadline = out / "checkpoint.pt", time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.005)
    time.sleep(0.05)  # into the next epoch
    p.send_signal(signal.SIGKILL)
    p.wait()
    state = torch.load(checkpoint, weights_only=True)
    assert 1 <= state["epoch"] < 20 and not (out / "model.pt").exists(), "the kill should land mid-run"
    r = run("train", "-o", out, *args, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, out))
    assert a["history"] == b["history"] and a["confusion"] == b["confusion"]
    wa, wb = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (full, out))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not [f for f in out.iterdir() if ".tmp" in f.name]


def test_predict_gives_the_logits_of_the_evaluated_spikes(tiny_folder, tmp_path):
    """predict encodes and bins a file exactly as training and evaluate do: the same confidence, to float precision."""
    from datasets import SpikeDataset, collate_spikes

    out = tmp_path / "run"
    _train(tiny_folder, out, augment="none", tta="none")
    run = kws.Run.load(out)
    assert run.tta == InferenceAugment()
    audio, _ = kws.split_audio(run, "folder", tiny_folder, "all")
    spikes = SpikeDataset(audio.subset(range(4)), run.encoder, tmp_path / "c2", dt_ms=run.dt_ms)
    spikes.prepare(progress=False)
    for i, p in enumerate(kws.iter_predict(out, spikes.files)):
        x, lengths, _ = collate_spikes([spikes[i]], dt_ms=run.dt_ms)
        with torch.no_grad():
            probs = torch.softmax(run.model(x, lengths), 1)[0]
        assert p.keyword == run.classes[int(probs.argmax())] and p.confidence == pytest.approx(float(probs.max()), abs=1e-6)


def test_test_time_views_average_the_views_encoded_by_hand(tiny_folder, tmp_path):
    """With test-time views, training's test accuracy, evaluate and predict all average the class probabilities
    of the clip, its kernels warped by 0.95 and 1.05 and its audio tilted by -3 and +3 dB per octave, here
    encoded one by one."""
    import dataclasses

    from spiketrum import load_audio

    out = tmp_path / "run"
    m = _train(tiny_folder, out, augment="none", tta="warp:0.05,tilt:3dB")
    trained = kws.Run.load(out)
    assert trained.tta == InferenceAugment(warp=0.05, tilt=3.0) and m["tta"] == "warp:0.05,tilt:3dB"
    audio, _ = kws.split_audio(trained, "folder", tiny_folder, "test")
    probs = []
    for f in audio.files:
        x, sr = load_audio(f)
        assert sr == trained.encoder.sr
        trains = [trained.encoder.encode(x, sr)]
        trains += [dataclasses.replace(trained.encoder, warp=w).encode(x, sr) for w in (0.95, 1.05)]
        trains += [trained.encoder.encode(tilt(x, sr, db), sr) for db in (-3.0, 3.0)]
        dense = torch.stack([t.to_dense(trained.dt_ms, torch=True) for t in trains], 1)
        with torch.no_grad():
            probs.append(torch.softmax(trained.model(dense, torch.full((5,), dense.shape[0])), 1))
    probs, labels = torch.stack(probs), torch.tensor(audio.labels)  # [clips, views, classes]
    assert not torch.allclose(probs[:, 0], probs[:, 1:].mean(1), atol=1e-3)  # the views do differ
    averaged = float((probs.mean(1).argmax(1) == labels).float().mean())
    single = float((probs[:, 0].argmax(1) == labels).float().mean())
    assert m["test_accuracy"] == pytest.approx(averaged) and m["test_accuracy_single_view"] == pytest.approx(single)
    ev = kws.evaluate(out, "folder", tiny_folder, progress=False)
    assert (ev["accuracy"], ev["single_view_accuracy"], ev["tta"]) == (pytest.approx(averaged), pytest.approx(single),
                                                                       "warp:0.05,tilt:3dB")
    assert kws.evaluate(out, "folder", tiny_folder, progress=False, tta="none")["accuracy"] == pytest.approx(single)
    for p, pr in zip(kws.iter_predict(out, audio.files[:4]), probs):
        mean = pr.mean(0)
        assert p.keyword == trained.classes[int(mean.argmax())] and p.confidence == pytest.approx(float(mean.max()), abs=1e-5)
    r = run("evaluate", out, "--dataset", "folder", "--data", tiny_folder, "--tta", "warp:0.9")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "warp" in r.stderr


def test_an_ensemble_averages_its_members_probabilities_and_refuses_what_cannot_be_averaged(tiny_folder, tmp_path):
    from datasets import SpikeDataset

    a, b = tmp_path / "a", tmp_path / "b"
    _train(tiny_folder, a, augment="none", tta="tilt:3dB")
    _train(tiny_folder, b, augment="none", tta="tilt:3dB", config=TrainConfig(epochs=2, batch_size=8, lr=0.01, patience=0))
    out = tmp_path / "ens"
    assert kws.ensemble([a, b], out)["members"] == [str(a), str(b)]
    ens, members = kws.Run.load(out), [kws.Run.load(d) for d in (a, b)]
    assert ens.tta == InferenceAugment(tilt=3.0) and ens.split_seed == 0
    audio, _ = kws.split_audio(members[0], "folder", tiny_folder, "test")
    spikes = SpikeDataset(audio, ens.encoder, tmp_path / "cache", dt_ms=ens.dt_ms)
    spikes.prepare(progress=False)
    sets = kws.view_sets(spikes, ens.tta.views(ens.encoder))
    got = kws.view_probabilities(ens.model, sets, 3, ens.dt_ms)
    each = [kws.view_probabilities(r.model, sets, 3, r.dt_ms) for r in members]
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # two different networks
    torch.testing.assert_close(got, (each[0] + each[1]) / 2, atol=1e-6, rtol=1e-5)
    ev = kws.evaluate(out, "folder", tiny_folder, progress=False)
    averaged = got.mean(0).argmax(1).numpy() == np.asarray(spikes.labels)
    assert ev["accuracy"] == pytest.approx(averaged.mean()) and ev["n"] == len(spikes)
    # a member with other views, another split seed, or a folder that is a member: refused in one line
    c = tmp_path / "c"
    _train(tiny_folder, c, augment="none", tta="none")
    with pytest.raises(ValueError, match="test-time views"):
        kws.ensemble([a, c], tmp_path / "x")
    d = tmp_path / "d"
    _train(tiny_folder, d, augment="none", tta="tilt:3dB", config=TrainConfig(epochs=1, batch_size=8, seed=1, patience=0))
    with pytest.raises(ValueError, match="split seed"):
        kws.ensemble([a, d], tmp_path / "x")
    with pytest.raises(ValueError, match="two or more"):
        kws.ensemble([a], tmp_path / "x")
    with pytest.raises(ValueError, match="one of the joined"):
        kws.ensemble([a, b], a)
    r = run("ensemble", a, b, "-o", out)  # a finished ensemble is kept without --force
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--force" in r.stderr
