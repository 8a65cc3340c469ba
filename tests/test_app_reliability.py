"""Application-side reliability: the bugs a new user hit, one test (or more) each.

Every error path: one line on stderr naming the file and the problem, exit code 2, nothing half made.
Commands run in-process through ``spiketrum.app.cli.main`` (fast); a traceback escapes as an exception.
"""
import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spiketrum.app import kws
from spiketrum.app.cli import main

TRAIN = ["--epochs", "1", "--hidden", "16", "--augment", "none", "--rate", "300", "--batch-size", "8", "-q"]


def cli(*argv):
    """(exit code, stdout, stderr lines) of one command, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), [line for line in err.getvalue().splitlines() if line.strip()]


def one_line_error(result, *names):
    code, _, lines = result
    assert code == 2 and len(lines) == 1, (code, lines)
    assert "Traceback" not in lines[0] and all(str(n) in lines[0] for n in names), (lines, names)
    return lines[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture(scope="module")
def trained(tiny_folder, tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("rel") / "run"
    r = cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--cache", cache, *TRAIN)
    assert r[0] == 0, r
    return out


def _wav_bytes(seconds=0.2, sr=8000):
    b = io.BytesIO()
    sf.write(b, np.sin(np.arange(int(seconds * sr)) / 3.0) * 0.3, sr, format="WAV")
    return b.getvalue()


def _link_folder(root, src, per_class=None):
    """A folder-per-class copy of ``src`` made of symlinks (``per_class`` files of each class)."""
    for d in sorted(p for p in Path(src).iterdir() if p.is_dir()):
        (root / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir())[:per_class]:
            os.symlink(f.resolve(), root / d.name / f.name)
    return root


# -- 1. the folder dataset's split, and --split validated everywhere ---------------------------------------
def test_folder_evaluate_and_robustness_score_only_the_test_part(trained, tiny_folder, cache, tmp_path):
    m = json.loads((trained / "metrics.json").read_text())
    code, out, _ = cli("evaluate", trained, "--dataset", "folder", "--data", tiny_folder, "--json", "--cache", cache)
    assert code == 0 and json.loads(out)["n"] == m["n_test"] < 84
    assert json.loads(out)["accuracy"] == pytest.approx(m["test_accuracy"])
    code, out, _ = cli("evaluate", trained, "--dataset", "folder", "--data", tiny_folder, "--json", "--cache", cache,
                       "--split", "all")
    assert code == 0 and json.loads(out)["n"] == 84
    code, _, _ = cli("robustness", trained, "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "rb",
                     "--cache", cache, "--seeds", 1, "--deletion", "0.5", "--jitter-ms", "none", "--insertion", "none",
                     "--noise-snr", "none", "--recon-clips", 1, "-q")
    r = json.loads((tmp_path / "rb" / "robustness.json").read_text())
    assert code == 0 and r["split"] == "test" and r["n"] == m["n_test"]


@pytest.mark.parametrize("command", ["train", "evaluate", "robustness", "continual"])
def test_a_garbage_split_is_refused_before_anything_is_made(trained, tiny_folder, tmp_path, command):
    out = tmp_path / "out"
    argv = {"train": ["train", "--dataset", "folder", "--data", tiny_folder, "-o", out, *TRAIN],
            "evaluate": ["evaluate", trained, "--dataset", "folder", "--data", tiny_folder],
            "robustness": ["robustness", trained, "--dataset", "folder", "--data", tiny_folder, "-o", out, "-q"],
            "continual": ["continual", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--tasks", "0,1/7,0",
                          "-q"]}[command]
    line = one_line_error(cli(*argv, "--split", "bogus"), "bogus")
    assert "split" in line
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_library_split_checks():
    from datasets.base import check_split

    for dataset, purpose, split in (("folder", "train", "official"), ("folder", "score", "test"), ("folder", "score", "all"),
                                    ("fsdd", "train", "loso:theo"), ("fsdd", "score", "loso:theo:val"),
                                    ("speech-commands", "score", "val")):
        check_split(dataset, split, purpose)
    for dataset, purpose, split in (("folder", "score", "loso:theo"), ("speech-commands", "train", "loso:x"),
                                    ("fsdd", "score", "all"), ("fsdd", "train", "test"), ("folder", "train", "bogus")):
        with pytest.raises(ValueError, match="split") as e:
            check_split(dataset, split, purpose)
        assert "--" not in str(e.value)


# -- 2. WAV bytes where a model or checkpoint should be -------------------------------------------------------
def test_wav_bytes_as_model_or_checkpoint_give_one_line_naming_the_file(tiny_folder, tmp_path, cache):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pt").write_bytes(_wav_bytes())
    clip = tiny_folder / "0" / "0_theo_0.wav"
    data = ["--dataset", "folder", "--data", tiny_folder]
    for argv in (["predict", bad, clip], ["evaluate", bad, *data], ["prune-export", bad, "-o", tmp_path / "small"],
                 ["robustness", bad, *data, "-o", tmp_path / "rb", "-q"]):
        one_line_error(cli(*argv), bad / "model.pt")
    assert not (tmp_path / "small").exists() and not (tmp_path / "rb").exists()
    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / "checkpoint.pt").write_bytes(_wav_bytes())
    one_line_error(cli("train", *data, "-o", resume, "--cache", tmp_path / "c2", "--resume", *TRAIN),
                   resume / "checkpoint.pt")
    assert not (tmp_path / "c2").exists()  # refused before encoding anything


# -- 3. option checks before anything is created or encoded, in the library ----------------------------------
def test_sca_on_the_srnn_model_is_refused_before_encoding(tiny_folder, tmp_path):
    from snn.pruning import SCA

    out, cache = tmp_path / "run", tmp_path / "cache"
    line = one_line_error(cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--cache", cache,
                              "--prune", "sca", "--keep", "0.5", *TRAIN))
    assert "SCA" in line
    assert not out.exists() and not cache.exists()
    with pytest.raises(ValueError, match="SCA") as e:  # the library itself, in library words
        kws.train("folder", tiny_folder, out, model="srnn", options=[SCA(0.5)], cache_dir=cache, progress=False)
    assert "--" not in str(e.value) and not out.exists() and not cache.exists()


def test_model_options_the_model_does_not_take_are_refused_in_the_library(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="attention") as e:
        kws.train("folder", tiny_folder, tmp_path / "run", model="srnn", model_kwargs={"attention": "cbam"},
                  cache_dir=tmp_path / "cache", progress=False)
    assert "--" not in str(e.value) and not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_continual_xdg_fraction_1_is_refused_before_anything_is_made(tiny_folder, tmp_path):
    from spiketrum.app.continual import continual

    out = tmp_path / "cl"
    line = one_line_error(cli("continual", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--tasks", "0,1/7,0",
                              "--methods", "xdg", "--xdg-fraction", "1", "-q"))
    assert "fraction" in line and not out.exists()
    with pytest.raises(ValueError, match="fraction") as e:
        continual("folder", tiny_folder, out, tasks="0,1/7,0", methods=["xdg"], xdg_fraction=1.0, progress=False)
    assert "--" not in str(e.value) and not out.exists()


def test_library_messages_name_no_command_line_flags(tiny_folder):
    from snn.continual import parse_tasks
    from snn.models import SRNN
    from snn.pruning import SCA

    with pytest.raises(ValueError) as e:
        SCA(0.5).check_model(SRNN(10, 3, hidden=(8,), dt=10.0))
    assert "--" not in str(e.value) and "convolution" in str(e.value)
    for spec, classes in (("pairs", ["a", "b"]), ("rules", ["a", "b"]), ("0,1/9,3", ["0", "1", "3"])):
        with pytest.raises(ValueError) as e:
            parse_tasks(spec, classes)
        assert "--" not in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        kws.train("folder", tiny_folder, "/nonexistent/never", augment="noise:10dB", progress=False)
    assert "--" not in str(e.value)
    from spiketrum.perturb import Augment

    for spec in ("bogus:1", "stretch:x"):
        with pytest.raises(ValueError) as e:
            Augment.parse(spec)
        assert "--" not in str(e.value) and "augment" in str(e.value)


def test_conv_takes_one_hidden_size(tiny_folder, tmp_path):
    from snn.models import ConvSNN

    code, _, lines = cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "r", "--model", "conv",
                         "--hidden", "16", "8")
    assert code == 2 and lines == ["spiketrum train: error: --model conv has one hidden layer: give one --hidden size"]
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="one hidden layer"):
        ConvSNN(12, 3, in_maps=3, hidden=(16,), dt=10.0)


# -- 4. nothing existing is overwritten without --force ------------------------------------------------------
def test_prune_export_never_writes_into_its_source_run(trained, tmp_path):
    before = (trained / "model.pt").read_bytes()
    one_line_error(cli("prune-export", trained, "-o", trained), trained)
    assert (trained / "model.pt").read_bytes() == before
    with pytest.raises(ValueError, match="source"):
        kws.prune_export(trained, trained / ".." / trained.name, force=True)


def test_train_onto_a_finished_run_needs_force(trained, tiny_folder, tmp_path, cache):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "model.pt").read_bytes()
    line = one_line_error(cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", run, "--cache", cache,
                              "--model", "ann", *TRAIN), run)
    assert "--force" in line and (run / "model.pt").read_bytes() == before
    code, _, lines = cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", run, "--cache", cache,
                         "--model", "ann", "--force", *TRAIN)
    assert code == 0, lines
    assert kws.Run.load(run).model_name == "ann"
    with pytest.raises(FileExistsError) as e:
        kws.train("folder", tiny_folder, run, cache_dir=cache, progress=False)
    assert "--" not in str(e.value)


def test_robustness_onto_finished_results_needs_force(trained, tiny_folder, tmp_path, cache):
    out = tmp_path / "rb"
    args = ["robustness", trained, "--dataset", "folder", "--data", tiny_folder, "-o", out, "--cache", cache,
            "--deletion", "0.5", "--jitter-ms", "none", "--insertion", "none", "--noise-snr", "none", "--recon-clips", 1, "-q"]
    assert cli(*args, "--seeds", 1)[0] == 0
    before = (out / "robustness.json").read_bytes()
    one_line_error(cli(*args, "--seeds", 2), out)
    assert (out / "robustness.json").read_bytes() == before
    assert cli(*args, "--seeds", 2, "--force")[0] == 0
    assert json.loads((out / "robustness.json").read_text())["config"]["seeds"] == 2


# -- 5. corrupt resume files: ignored and recomputed, with a warning naming the file -------------------------
@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"deletion:0.3:0": "x"}', '{"deletion:0.3:0": [1]}'])
def test_a_corrupt_robustness_partial_is_recomputed_with_a_warning(trained, tiny_folder, tmp_path, content):
    from spiketrum.app import robustness as rb

    partial = tmp_path / "robustness.partial-0.json"
    partial.write_text(content)
    cfg = rb.RobustnessConfig("folder", levels=(("deletion", (0.3,)),), seeds=1, recon_clips=1)
    with pytest.warns(UserWarning, match=str(partial)):
        r = rb.robustness(trained, tiny_folder, cfg, partial=partial, progress=False)
    assert 0 <= r["deletion"][0]["accuracy"] <= 1
    assert json.loads(partial.read_text()).keys() == {"deletion:0.3:0"}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_corrupt_continual_method_file_is_recomputed_with_a_warning(tiny_folder, tmp_path, content):
    out = tmp_path / "cl"
    args = ["continual", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--tasks", "0,1/7,0", "--methods",
            "finetune", "--epochs", 1, "--hidden", 8, "--rate", 300, "--cache", tmp_path / "cache", "-q"]
    assert cli(*args)[0] == 0
    (out / "finetune.json").write_text(content)
    code, _, lines = cli(*args)
    assert code == 0 and any(str(out / "finetune.json") in line and "warning" in line for line in lines), lines
    assert "matrix" in json.loads((out / "finetune.json").read_text())


# -- 6. unreadable files in a corpus are skipped and listed ----------------------------------------------------
def test_unreadable_files_are_skipped_and_listed_in_training_and_evaluate(data_root, tiny_folder, tmp_path, cache):
    corrupt = data_root / "wakeword" / "alexa" / "126.flac"
    if not corrupt.is_file():
        pytest.skip("no corrupt wakeword file here")
    data = _link_folder(tmp_path / "data", tiny_folder)
    os.symlink(corrupt, data / "0" / "126.flac")  # the header reads; the stream loses sync
    x = np.sin(np.arange(2400) / 5.0).astype(np.float32)
    x[100] = np.nan
    sf.write(data / "1" / "nan.wav", x, 8000, subtype="FLOAT")
    out = tmp_path / "run"
    code, _, lines = cli("train", "--dataset", "folder", "--data", data, "-o", out, "--cache", cache, "--split", "official",
                         *TRAIN)
    assert code == 0, lines
    for f in (data / "0" / "126.flac", data / "1" / "nan.wav"):
        assert any(str(f) in line and "skipped" in line for line in lines), lines
    m = json.loads((out / "metrics.json").read_text())
    assert sorted(Path(s["file"]).name for s in m["skipped_files"]) == ["126.flac", "nan.wav"]
    code, stdout, lines = cli("evaluate", out, "--dataset", "folder", "--data", data, "--split", "all", "--json",
                              "--cache", cache)
    assert code == 0 and json.loads(stdout)["n"] == 84, lines
    assert sorted(Path(s["file"]).name for s in json.loads(stdout)["skipped_files"]) == ["126.flac", "nan.wav"]
    assert any(str(data / "0" / "126.flac") in line for line in lines)


def test_spike_dataset_prepare_drops_failing_items(tiny_folder, tmp_path):
    from datasets import AudioFolder, SpikeDataset
    from spiketrum import make_config

    data = _link_folder(tmp_path / "data", tiny_folder, per_class=2)
    x = np.ones(800, np.float32)
    x[3] = np.inf
    sf.write(data / "7" / "inf.wav", x, 8000, subtype="FLOAT")
    audio = AudioFolder(data)
    ds = SpikeDataset(audio, make_config("delta", 8000, rate=300), tmp_path / "cache", dt_ms=10)
    with pytest.warns(UserWarning, match="inf.wav"):
        ds.prepare(progress=False)
    assert len(ds) == 6 and [Path(f).name for f, _ in ds.skipped] == ["inf.wav"]
    assert ds.labels == [0, 0, 1, 1, 2, 2] and all(ds[i][1] == ds.labels[i] for i in range(len(ds)))


# -- 7. the corpus rate, and models on audio at another rate ------------------------------------------------------
def _at_rate(src, dst, sr):
    from spiketrum.io import load_audio

    x, _ = load_audio(src, sr)
    sf.write(dst, x, sr)


def test_one_odd_rate_clip_does_not_move_the_corpus_rate(tiny_folder, tmp_path):
    data = _link_folder(tmp_path / "data", tiny_folder, per_class=6)
    _at_rate(tiny_folder / "1" / "1_theo_13.wav", data / "1" / "odd_96k.wav", 96000)
    audio = kws.audio_splits("folder", data)
    with pytest.warns(UserWarning, match="96000"):
        assert kws.corpus_rate(audio) == 8000


def test_models_run_on_audio_at_another_rate(trained, tiny_folder, tmp_path, cache):
    data16 = tmp_path / "d16"
    for c in ("0", "1", "7"):
        (data16 / c).mkdir(parents=True)
        for f in sorted((tiny_folder / c).iterdir())[:4]:
            _at_rate(f, data16 / c / f.name, 16000)
    # 8 kHz model on 16 kHz audio
    files = sorted(data16.glob("*/*.wav"))
    code, out, lines = cli("predict", trained, *files[:2])
    assert code == 0 and len(out.splitlines()) == 2, lines
    code, out, lines = cli("evaluate", trained, "--dataset", "folder", "--data", data16, "--split", "all", "--json",
                           "--cache", cache)
    assert code == 0 and json.loads(out)["n"] == 12, lines
    # a 16 kHz model on 8 kHz audio
    run16 = tmp_path / "run16"
    code, _, lines = cli("train", "--dataset", "folder", "--data", data16, "-o", run16, "--cache", cache, *TRAIN)
    assert code == 0, lines
    assert kws.Run.load(run16).encoder.sr == 16000
    code, out, lines = cli("predict", run16, tiny_folder / "0" / "0_theo_0.wav")
    assert code == 0 and len(out.splitlines()) == 1, lines
    code, out, lines = cli("evaluate", run16, "--dataset", "folder", "--data", tiny_folder, "--split", "all", "--json",
                           "--cache", cache)
    assert code == 0 and json.loads(out)["n"] == 84, lines


# -- 8. predict: every good result, one line per bad file, exit 2 at the end -----------------------------------------
def test_predict_prints_the_good_results_and_one_line_per_bad_file(trained, tiny_folder, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    a, b = tiny_folder / "0" / "0_theo_0.wav", tiny_folder / "7" / "7_theo_1.wav"
    code, out, lines = cli("predict", trained, a, bad, b)
    assert code == 2 and [r.split("\t")[0] for r in out.strip().splitlines()] == [str(a), str(b)]
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in lines[0]
    results = list(kws.iter_predict(trained, [a, bad]))
    assert results[0].error is None and results[1].error and str(bad) in results[1].error


# -- library logic out of the CLI -----------------------------------------------------------------------------------
def test_prune_export_is_a_library_function(trained, tmp_path):
    with pytest.raises(ValueError, match="conv") as e:
        kws.prune_export(trained, tmp_path / "small")
    assert "--" not in str(e.value) and not (tmp_path / "small").exists()


def test_one_rule_finds_every_corpus(data_root, tmp_path, monkeypatch):
    from datasets import locate

    fsdd = data_root / "fsdd"
    assert locate("fsdd", data_root) == locate("fsdd", fsdd) == fsdd
    noise = data_root / "speech_commands_noise"
    if noise.is_dir():
        assert kws.default_noise_dir(data_root) == kws.default_noise_dir(fsdd) == noise  # inside or beside
        assert kws.default_noise_dir(noise) == noise  # the folder itself
    assert kws.default_noise_dir(tmp_path) is None
    monkeypatch.setenv("SPIKETRUM_DATA", str(data_root))
    assert locate("fsdd") == fsdd
    a = kws.audio_splits("fsdd", fsdd)[2]
    b = kws.audio_splits("fsdd", data_root)[2]
    assert a.files == b.files


def test_noise_levels_fall_back_in_one_place(tmp_path, data_root):
    from spiketrum.app import robustness as rb

    with pytest.warns(UserWarning, match="noise"):
        levels = rb.default_levels(tmp_path)
    assert "noise" not in dict(levels)
    assert dict(rb.default_levels(tmp_path, noise=(10.0,)))["noise"] == (10.0,)  # asked for: robustness() says if it cannot
    if (data_root / "speech_commands_noise").is_dir():
        assert "noise" in dict(rb.default_levels(data_root))


def test_train_steps_keep_the_train_signature(tiny_folder, tmp_path):
    import inspect

    params = inspect.signature(kws.train).parameters
    for name in ("dataset", "data", "out", "split", "model", "encoder", "rate", "dt_ms", "augment", "config", "model_kwargs",
                 "cache_dir", "jobs", "resume", "noise_dir", "options", "callbacks", "progress", "device", "force"):
        assert name in params
    for step in ("prepare_data", "build", "fit", "report"):
        assert callable(getattr(kws, step))
