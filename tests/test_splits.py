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
