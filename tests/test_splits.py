"""Speaker-independent splits: groups from file names, split lists, and the guarantee that no group (speaker)
is on two sides of a split."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from datasets import AudioFolder
from datasets.base import check_disjoint_groups, file_groups, hash_split


@given(st.lists(st.tuples(st.sampled_from("abcdefghij"), st.integers(0, 99)), min_size=1, max_size=200, unique=True),
       st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_a_group_never_lands_on_two_sides(items, seed):
    files = [f"{g}_nohash_{k}.wav" for g, k in items]
    groups = file_groups(files, r"^([a-z])_nohash")
    parts = hash_split(files, seed, groups=groups)
    assert sorted(i for idx in parts.values() for i in idx) == list(range(len(files)))  # a partition
    sides = {}
    for part, idx in parts.items():
        for i in idx:
            assert sides.setdefault(groups[i], part) == part, (groups[i], part, sides[groups[i]])
    # a file's side depends on its group alone: other files coming or going never move it
    assert hash_split(files[:1], seed, groups=groups[:1])["test"].size == int(sides[groups[0]] == "test")


def test_file_groups_refuses_names_without_a_group():
    assert file_groups(["0_george_1.wav"], r"^\d_([a-z]+)_") == ["george"]
    with pytest.raises(ValueError, match="x.wav: the file name does not match"):
        file_groups(["0_george_1.wav", "x.wav"], r"^\d_([a-z]+)_")
    with pytest.raises(ValueError, match="no capture group"):
        file_groups(["a.wav"], r"^\d_")
    with pytest.raises(ValueError, match="not a regular expression"):
        file_groups(["a.wav"], "(")


@pytest.fixture
def speakers_folder(tmp_path, fsdd_wav):
    """Two classes; files named like Speech Commands' (speaker hash, take), links to one FSDD clip."""
    root = tmp_path / "sc"
    for word in ("yes", "no"):
        (root / word).mkdir(parents=True)
        for spk in ("0a7c2a8d", "1b2c3d4e", "2c3d4e5f", "3d4e5f60", "4e5f6071"):
            for take in range(2):
                os.symlink(fsdd_wav, root / word / f"{spk}_nohash_{take}.wav")
    return root


def test_folder_split_by_group(speakers_folder):
    folder = AudioFolder(speakers_folder, group_by=r"^([0-9a-f]{8})_nohash")
    parts = {p: folder.split(p, seed=0) for p in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(folder) == 20
    owners = {}
    for name, part in parts.items():
        for g in part.groups:
            assert owners.setdefault(g, name) == name
    assert folder.split("all").groups == folder.groups


def test_split_lists(speakers_folder, tmp_path):
    folder = AudioFolder(speakers_folder, group_by=r"^([0-9a-f]{8})_nohash")
    val, test = tmp_path / "validation_list.txt", tmp_path / "testing_list.txt"
    val.write_text("yes/1b2c3d4e_nohash_0.wav\nno/1b2c3d4e_nohash_1.wav\nno/1b2c3d4e_nohash_0.wav\nyes/1b2c3d4e_nohash_1.wav\n"
                   "missing/ffffffff_nohash_0.wav\n")  # a listed file that is not in this sample: ignored
    test.write_text("".join(f"{w}/0a7c2a8d_nohash_{t}.wav\n" for w in ("yes", "no") for t in (0, 1)))
    parts = {p: folder.split_by_lists(p, (None, val, test)) for p in ("train", "val", "test")}
    assert [len(parts[p]) for p in ("train", "val", "test")] == [12, 4, 4]
    assert set(parts["test"].groups) == {"0a7c2a8d"} and "0a7c2a8d" not in parts["train"].groups
    # a speaker split across two lists is refused, naming it
    test.write_text("yes/0a7c2a8d_nohash_0.wav\nyes/1b2c3d4e_nohash_0.wav\n")
    val.write_text("no/1b2c3d4e_nohash_0.wav\n")
    with pytest.raises(ValueError, match="group '1b2c3d4e' is in both the val and the test split"):
        folder.split_by_lists("train", (None, val, test))
    val.write_text("yes/0a7c2a8d_nohash_0.wav\n")
    with pytest.raises(ValueError, match="also in the val list"):
        AudioFolder(speakers_folder).split_by_lists("test", (None, val, test))


def test_check_disjoint_groups():
    check_disjoint_groups(["a", "a", "b"], {"train": [0, 1], "test": [2]})
    with pytest.raises(ValueError, match="'a'"):
        check_disjoint_groups(["a", "a", "b"], {"train": [0], "test": [1, 2]})


# -- the commands: train / evaluate with speaker-independent splits ----------------------------------------
import json  # noqa: E402

from test_app_reliability import TRAIN, cli  # noqa: E402


@pytest.fixture(scope="module")
def voices(tmp_path_factory, data_root):
    """Three classes spoken by 30 'speakers' named like Speech Commands' files (links to FSDD clips)."""
    root = tmp_path_factory.mktemp("voices")
    rec = data_root / "fsdd" / "recordings"
    for digit in ("0", "1", "7"):
        (root / digit).mkdir()
        for k in range(30):
            speaker = ("jackson", "theo", "nicolas")[k % 3]
            os.symlink(rec / f"{digit}_{speaker}_{k}.wav", root / digit / f"{k:08x}_nohash_0.wav")
    return root


def test_train_by_group_keeps_speakers_apart_and_scores_each(voices, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli("train", "--dataset", "folder", "--data", voices, "-o", run, *TRAIN,
                         "--group-by", "^([0-9a-f]{8})_nohash")
    assert code == 0, err
    assert not any("may be in both" in line for line in err)
    m = json.loads((run / "metrics.json").read_text())
    assert m["split_kind"].startswith("group split")
    test_speakers = set(m["per_speaker"])
    assert test_speakers and sum(v["n"] for v in m["per_speaker"].values()) == m["n_test"]
    assert m["unseen_speakers"] == sorted(test_speakers) and m["unseen_speaker_accuracy"] == m["test_accuracy"]
    assert not test_speakers & set(m["validation_speakers"])
    code, out, _ = cli("evaluate", run, "--dataset", "folder", "--data", voices, "--json", "--cache", tmp_path / "cache")
    r = json.loads(out)
    assert r["per_speaker"] == m["per_speaker"] and r["accuracy"] == m["test_accuracy"]
    code, out, _ = cli("evaluate", run, "--dataset", "folder", "--data", voices, "--json", "--split", "train",
                       "--cache", tmp_path / "cache")
    r = json.loads(out)
    assert r["unseen_speakers"] == [] and not set(r["per_speaker"]) & test_speakers
    # scored whole as another corpus, --group-by names its speakers
    code, out, _ = cli("evaluate", run, "--dataset", "folder", "--data", voices, "--json", "--split", "all",
                       "--group-by", "^([0-9a-f]{8})_nohash", "--cache", tmp_path / "cache")
    r = json.loads(out)
    assert len(r["per_speaker"]) == 30 and sum(v["n"] for v in r["per_speaker"].values()) == r["n"] == 90
    code, out, _ = cli("evaluate", run, "--dataset", "folder", "--data", voices, "--json", "--split", "all",
                       "--group-by", "^([0-9a-f]{4})", "--cache", tmp_path / "cache")
    assert len(json.loads(out)["per_speaker"]) == 1  # every name starts 0000: one group
    code, _, err = cli("evaluate", run, "--dataset", "folder", "--data", voices, "--group-by", "^(.)")
    assert code == 2 and len(err) == 1 and "split all" in err[0]


def test_hash_split_says_speakers_may_leak(voices, tmp_path):
    code, _, err = cli("train", "--dataset", "folder", "--data", voices, "-o", tmp_path / "run", *TRAIN)
    assert code == 0 and any("one speaker's clips may be in both training and test" in line for line in err), err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "speakers may be on both sides" in m["split_kind"] and "per_speaker" not in m


def test_train_from_split_lists(voices, tmp_path):
    val, test = tmp_path / "val.txt", tmp_path / "test.txt"
    val.write_text("".join(f"{d}/{k:08x}_nohash_0.wav\n" for d in "017" for k in (0, 1)))
    test.write_text("".join(f"{d}/{k:08x}_nohash_0.wav\n" for d in "017" for k in (2, 3, 4)))
    code, _, err = cli("train", "--dataset", "folder", "--data", voices, "-o", tmp_path / "run", *TRAIN,
                       "--split-lists", "-", val, test, "--group-by", "^([0-9a-f]{8})_nohash")
    assert code == 0, err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["n_test"] == 9 and m["split_kind"].startswith("split lists") and sorted(m["per_speaker"]) == [
        f"{k:08x}" for k in (2, 3, 4)]
    val.write_text(f"0/{1:08x}_nohash_0.wav\n")
    test.write_text(f"7/{1:08x}_nohash_0.wav\n")  # a validation speaker in the test list: refused, naming it
    code, _, err = cli("train", "--dataset", "folder", "--data", voices, "-o", tmp_path / "run2", *TRAIN,
                       "--split-lists", "-", val, test, "--group-by", "^([0-9a-f]{8})_nohash")
    assert code == 2 and len(err) == 1 and "'00000001'" in err[0], err


@pytest.fixture
def small_fsdd(tmp_path, data_root):
    """An FSDD root with three speakers, two digits and three takes each (links)."""
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for speaker in ("jackson", "nicolas", "theo"):
        for digit in range(10):
            for take in range(3):
                name = f"{digit}_{speaker}_{take}.wav"
                os.symlink(data_root / "fsdd" / "recordings" / name, rec / name)
    return tmp_path


def test_loso_runs_every_fold_and_keeps_finished_ones(small_fsdd, tmp_path):
    run = tmp_path / "loso"
    code, out, err = cli("train", "--dataset", "fsdd", "--data", small_fsdd, "-o", run, "--split", "loso", *TRAIN)
    assert code == 0, err
    summary = json.loads((run / "loso.json").read_text())
    assert sorted(summary["folds"]) == ["jackson", "nicolas", "theo"]
    for speaker, fold in summary["folds"].items():
        m = json.loads((run / f"fold-{speaker}" / "metrics.json").read_text())
        assert set(m["per_speaker"]) == {speaker} and m["unseen_speakers"] == [speaker]
        assert fold["validation_speakers"] == m["validation_speakers"] and speaker not in m["validation_speakers"]
    assert summary["mean_accuracy"] == pytest.approx(sum(f["test_accuracy"] for f in summary["folds"].values()) / 3)
    assert cli("train", "--dataset", "fsdd", "--data", small_fsdd, "-o", run, "--split", "loso", *TRAIN)[0] == 2
    (run / "loso.json").unlink()
    stamp = (run / "fold-theo" / "model.pt").stat().st_mtime_ns
    assert cli("train", "--dataset", "fsdd", "--data", small_fsdd, "-o", run, "--split", "loso", *TRAIN)[0] == 0
    assert (run / "fold-theo" / "model.pt").stat().st_mtime_ns == stamp  # a finished fold is not trained again
    assert json.loads((run / "loso.json").read_text()) == summary


def test_class_map_scores_another_corpus_by_renamed_folders(tiny_folder, tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", run, *TRAIN)[0] == 0
    words = tmp_path / "words"
    for digit, word in (("0", "zero"), ("1", "one"), ("7", "seven")):
        (words / word).mkdir(parents=True)
        for f in (tiny_folder / digit).iterdir():
            os.symlink(f.resolve(), words / word / f.name)
    (words / "bird").mkdir()  # a word the model does not know: skipped, said
    os.symlink(next((tiny_folder / "0").iterdir()).resolve(), words / "bird" / "x.wav")
    cache = tmp_path / "cache"
    same = cli("evaluate", run, "--dataset", "folder", "--data", tiny_folder, "--split", "all", "--json", "--cache", cache)
    mapped = cli("evaluate", run, "--dataset", "folder", "--data", words, "--split", "all", "--json", "--cache", cache,
                 "--class-map", "zero=0,one=1,seven=7")
    assert mapped[0] == 0 and json.loads(mapped[1])["accuracy"] == json.loads(same[1])["accuracy"]
    assert json.loads(mapped[1])["n"] == json.loads(same[1])["n"]
    assert any("'bird'" in line for line in mapped[2])
    code, _, err = cli("evaluate", run, "--dataset", "folder", "--data", words, "--split", "all",
                       "--class-map", "zero=0,eight=8")
    assert code == 2 and len(err) == 1 and "eight" in err[0]
    code, _, err = cli("evaluate", run, "--dataset", "folder", "--data", words, "--class-map", "zero")
    assert code == 2 and len(err) == 1 and "FOLDER=CLASS" in err[0]


def test_speech_commands_items_carry_their_speaker_and_its_lists_keep_them_apart(data_root):
    from datasets import SpeechCommands

    root, noise = data_root / "speech_commands_sample", data_root / "speech_commands_noise"
    parts = {p: SpeechCommands(root, split=p, noise_root=noise) for p in ("train", "val", "test")}
    for part in parts.values():
        assert all(g == f.name.split("_nohash_")[0] for f, g, seg in zip(part.files, part.groups, part.segments)
                   if seg is None)
    speech = {p: {g for g in d.groups if not g.startswith("noise:")} for p, d in parts.items()}
    assert speech["test"] and not speech["test"] & (speech["train"] | speech["val"])


def test_loso_refit_trains_every_fold_again_on_five_speakers_for_the_chosen_epochs(small_fsdd, tmp_path):
    from spiketrum.app import kws

    train, val, test = kws.audio_splits("fsdd", small_fsdd, "loso:nicolas")
    plan = kws.plan_training("fsdd", small_fsdd, tmp_path / "plan", split="loso:nicolas", validation=False)
    assert plan.splits[0].files == train.files + val.files and plan.splits[0].labels == train.labels + val.labels
    assert len(plan.splits[1]) == 0 and plan.splits[2].files == test.files
    assert set(plan.splits[0].groups) == {"jackson", "theo"} and plan.settings["validation"] is False
    run = tmp_path / "loso"
    loso = ("train", "--dataset", "fsdd", "--data", small_fsdd, "-o", run, "--split", "loso", *TRAIN, "--epochs", "3")
    assert cli(*loso)[0] == 0
    before = json.loads((run / "loso.json").read_text())
    folds = {p: p.stat().st_mtime_ns for p in run.glob("fold-*/model.pt")}
    code, out, err = cli(*loso, "--refit")  # refits are added to a finished run: its folds are kept
    assert code == 0, err
    assert "refit on five speakers: mean" in out
    assert {p: p.stat().st_mtime_ns for p in run.glob("fold-*/model.pt")} == folds
    summary = json.loads((run / "loso.json").read_text())
    assert {k: {f: v for f, v in fold.items() if not f.startswith("refit_")} for k, fold in summary["folds"].items()} \
        == before["folds"]
    for speaker, fold in summary["folds"].items():
        m = json.loads((run / f"fold-{speaker}" / "metrics.json").read_text())
        r = json.loads((run / f"refit-{speaker}" / "metrics.json").read_text())
        val_acc = [h["val_accuracy"] for h in m["history"]]
        assert fold["refit_epochs"] == val_acc.index(max(val_acc)) + 1 == r["epochs_run"]
        assert r["validation_speakers"] == [] and r["unseen_speakers"] == [speaker] and "trained on too" in r["split_kind"]
        assert fold["refit_test_accuracy"] == r["test_accuracy"]
    assert summary["refit_mean_accuracy"] == pytest.approx(sum(f["refit_test_accuracy"] for f in summary["folds"].values()) / 3)
    (run / "loso.json").unlink()
    stamp = (run / "refit-theo" / "model.pt").stat().st_mtime_ns
    assert cli(*loso, "--refit")[0] == 0
    assert (run / "refit-theo" / "model.pt").stat().st_mtime_ns == stamp  # a finished refit is not trained again
    assert json.loads((run / "loso.json").read_text()) == summary
    code, _, err = cli(*loso, "--refit")  # a run with its refits is finished
    assert code == 2 and len(err) == 1 and "loso.json" in err[0]
    code, _, err = cli("train", "--dataset", "fsdd", "--data", small_fsdd, "-o", tmp_path / "one", "--refit", *TRAIN)
    assert code == 2 and len(err) == 1 and "--split loso" in err[0]


def test_extra_training_clips_join_the_training_part_only_under_their_class_names(small_fsdd, tmp_path, data_root):
    from spiketrum.app import kws

    extra = tmp_path / "voices"
    for digit in ("1", "7"):  # the folder's own label order (1, 7) is not the dataset's (0 ... 9)
        (extra / digit).mkdir(parents=True)
        for take in range(2):
            os.symlink(data_root / "fsdd" / "recordings" / f"{digit}_lucas_{take}.wav", extra / digit / f"{take}.wav")
    train, val, test = kws.audio_splits("fsdd", small_fsdd, "loso:nicolas")
    plan = kws.plan_training("fsdd", small_fsdd, tmp_path / "plan", split="loso:nicolas", extra_train=(extra,))
    added = plan.splits[0].files[len(train.files):]
    assert plan.splits[0].files[:len(train.files)] == train.files and sorted(added) == sorted(extra.rglob("*.wav"))
    assert [plan.classes[y] for y in plan.splits[0].labels[len(train.files):]] == [f.parent.name for f in added]
    assert plan.splits[1].files == val.files and plan.splits[2].files == test.files
    assert plan.settings["extra_train"] == [str(extra)]
    run = tmp_path / "run"
    (extra / "7" / "broken.wav").write_bytes(b"RIFF not audio")  # skipped and listed, as in any corpus
    code, _, err = cli("train", "--dataset", "fsdd", "--data", small_fsdd, "-o", run, "--split", "loso:nicolas", *TRAIN,
                       "--extra-train", extra)
    assert code == 0, err
    m = json.loads((run / "metrics.json").read_text())
    assert list(m["per_speaker"]) == ["nicolas"] and m["unseen_speakers"] == ["nicolas"]
    assert [f["file"] for f in m["skipped_files"]] == [str(extra / "7" / "broken.wav")]
    (extra / "7" / "broken.wav").unlink()
    (extra / "eleven").mkdir()
    os.symlink(data_root / "fsdd" / "recordings" / "1_lucas_3.wav", extra / "eleven" / "a.wav")
    code, _, err = cli("train", "--dataset", "fsdd", "--data", small_fsdd, "-o", tmp_path / "bad", *TRAIN,
                       "--extra-train", extra)
    assert code == 2 and len(err) == 1 and "'eleven'" in err[0] and str(extra) in err[0], err
    assert not (tmp_path / "bad").exists()
