import hashlib
import math
import re
import shutil
import tarfile
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

import spiketrum.encoder
import spiketrum.spiketrain
from datasets import (FSDD, KEYWORDS, SILENCE, UNKNOWN, AudioFolder, NoiseFolder, SpeechCommands, SpikeDataset, collate_spikes,
                      download_speech_commands)
from datasets import fsdd as fsdd_module
from spiketrum import SpiketrumConfig, load_audio
from spiketrum import PoissonConfig

ENTRY = re.compile(r"[0-9a-f]{64}\.npz")


@pytest.fixture(scope="module")
def sc_root(data_root):
    return data_root / "speech_commands_sample"


@pytest.fixture(scope="module")
def noise_root(data_root):
    return data_root / "speech_commands_noise"


@pytest.fixture(scope="module")
def cfg():
    return SpiketrumConfig(sr=8000, rate=200, kernels=16, levels=2)


@pytest.fixture(scope="module")
def few(data_root):
    """Three FSDD test clips of different lengths."""
    return FSDD(data_root, "test").subset([0, 100, 200])


@pytest.fixture
def encoder_calls(monkeypatch):
    """Lengths of the signals given to spiketrum's encoder during the test."""
    calls, real = [], SpiketrumConfig._encode
    monkeypatch.setattr(SpiketrumConfig, "_encode", lambda self, x: calls.append(len(x)) or real(self, x))
    return calls


def _fsdd_parts(ds):
    return [tuple(p.stem.split("_")) for p in ds.files]  # (digit, speaker, take)


def _rel(ds):
    return {f"{p.parent.name}/{p.name}" for p, w in zip(ds.files, ds.words) if w != SILENCE}


# -- FSDD -----------------------------------------------------------------------------------------
def test_fsdd_official_split(data_root):
    train, val, test = (FSDD(data_root, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (2400, 300, 300)
    sets = [set(d.files) for d in (train, val, test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert len(sets[0] | sets[1] | sets[2]) == 3000
    assert all(int(t) < 5 for _, _, t in _fsdd_parts(test))
    assert all(int(t) >= 5 for d in (train, val) for _, _, t in _fsdd_parts(d))
    groups = Counter((s, d) for d, s, _ in _fsdd_parts(val))
    assert len(groups) == 60 and set(groups.values()) == {5}  # 10% of the 45 training takes of every speaker x digit
    assert train.classes == [str(d) for d in range(10)]
    assert [train.classes[y] for y in train.labels] == [d for d, _, _ in _fsdd_parts(train)]
    assert train.speakers == [s for _, s, _ in _fsdd_parts(train)]


def test_fsdd_val_is_seeded(data_root):
    val = FSDD(data_root, "val")
    assert FSDD(data_root, "val").files == val.files
    assert FSDD(data_root, "val", seed=1).files != val.files
    assert set(Counter((s, d) for d, s, _ in _fsdd_parts(FSDD(data_root, "val", val_fraction=0.2))).values()) == {9}
    assert len(FSDD(data_root, "train", val_fraction=0.0)) == 2700


def test_fsdd_leave_one_speaker_out(data_root):
    speakers = FSDD(data_root, "test").all_speakers
    assert speakers == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    for spk in speakers:
        test, train, val = (FSDD(data_root, f"loso:{spk}{s}") for s in ("", ":train", ":val"))
        assert len(test) == 500 and set(test.speakers) == {spk} and test.groups == test.speakers
        # validation is one whole held-out training speaker, never takes of the training speakers
        nxt = speakers[(speakers.index(spk) + 1) % len(speakers)]
        assert len(val) == 500 and set(val.speakers) == {nxt}
        assert len(train) == 2000 and set(train.speakers) == set(speakers) - {spk, nxt}
    assert FSDD(data_root, "loso:theo:test").files == FSDD(data_root, "loso:theo").files


def test_fsdd_items_and_errors(data_root, tmp_path):
    ds = FSDD(data_root, "test", transform=lambda x: x[:100])
    x, y = ds[7]
    assert x.dtype == np.float32 and x.shape == (100,) and y == int(ds.files[7].name[0])
    assert ds.load(7)[1] == 8000
    for split in ("dev", "loso:nobody", "loso:theo:dev", "loso"):
        with pytest.raises(ValueError, match="nobody" if "nobody" in split else "split"):
            FSDD(data_root, split)
    with pytest.raises(ValueError, match="val_fraction"):
        FSDD(data_root, val_fraction=1.0)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "fsdd" / "recordings"))):
        FSDD(tmp_path)


def _tar(path, files, arcdir):
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for f in files:
            tar.add(f, f"{arcdir}/{f.name}")
    return path.as_uri()


def test_fsdd_download_verifies_recordings(data_root, tmp_path, monkeypatch):
    recordings = sorted((data_root / "fsdd" / "recordings").glob("*.wav"))
    monkeypatch.setattr(fsdd_module, "FSDD_URL", _tar(tmp_path / "few.tar.gz", recordings[:3], "fsdd-x/recordings"))
    with pytest.raises(OSError, match="checksum mismatch"):
        FSDD(tmp_path / "bad", download=True)
    assert not (tmp_path / "bad" / "fsdd").exists()
    monkeypatch.setattr(fsdd_module, "FSDD_URL", _tar(tmp_path / "all.tar.gz", recordings, "fsdd-x/recordings"))
    assert len(FSDD(tmp_path / "good", "test", download=True)) == 300


# -- Speech Commands --------------------------------------------------------------------------------
def test_speech_commands_kws12_labels(sc_root, noise_root):
    splits = [SpeechCommands(sc_root, s, noise_root=noise_root) for s in ("train", "val", "test")]
    assert splits[0].classes == list(KEYWORDS) + [UNKNOWN, SILENCE] and len(KEYWORDS) == 10
    unknown_words = set()
    for ds in splits:
        for w, y, seg in zip(ds.words, ds.labels, ds.segments):
            if w in KEYWORDS:
                assert ds.classes[y] == w and seg is None
            elif w == SILENCE:
                assert y == 11 and seg is not None
            else:
                assert y == 10 and seg is None
                unknown_words.add(w)
    assert len(unknown_words) == 20


def test_speech_commands_split_lists(sc_root):
    every = {f"{p.parent.name}/{p.name}" for p in sc_root.glob("*/*.wav")}
    val_list = set((sc_root / "validation_list.txt").read_text().split())
    test_list = set((sc_root / "testing_list.txt").read_text().split())
    train, val, test = (_rel(SpeechCommands(sc_root, s, n_silence=0)) for s in ("train", "val", "test"))
    assert val == every & val_list and test == every & test_list and len(val) == 44 and len(test) == 51
    assert train == every - val_list - test_list and len(train) == 205
    all_words = SpeechCommands(sc_root, "test", task="all")
    assert len(all_words.classes) == 30 and SILENCE not in all_words.words
    assert [all_words.classes[y] for y in all_words.labels] == all_words.words


def test_speech_commands_silence(sc_root, noise_root):
    a = SpeechCommands(sc_root, "val", noise_root=noise_root)
    b = SpeechCommands(sc_root, "val", noise_root=noise_root)
    keyword_counts = Counter(w for w in a.words if w in KEYWORDS)
    n = round(sum(keyword_counts.values()) / 10)
    sil = [i for i, w in enumerate(a.words) if w == SILENCE]
    assert len(sil) == n == 2
    assert (a.files, a.segments) == (b.files, b.segments)
    for i in sil:
        x, sr = a.load(i)
        assert sr == 16000 and x.shape == (16000,) and np.any(x) and np.array_equal(x, b.load(i)[0])
        start, stop = a.segments[i]
        frames = sf.info(a.files[i]).frames
        assert 0.8 * frames <= start and stop <= 0.9 * frames  # val's stretch: train and test never see it
    assert SpeechCommands(sc_root, "val", noise_root=noise_root, seed=1).segments[-n:] != a.segments[-n:]
    assert SpeechCommands(sc_root, "train", noise_root=noise_root, n_silence=7).words.count(SILENCE) == 7


def test_speech_commands_errors(sc_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none"))):
        SpeechCommands(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="n_silence=0"):
        SpeechCommands(sc_root, "val")  # the sample keeps its noise in a separate folder
    with pytest.raises(ValueError, match="split"):
        SpeechCommands(sc_root, "validation")
    with pytest.raises(ValueError, match="sha256"):
        SpeechCommands(tmp_path / "new", download=True)
    assert not (tmp_path / "new").exists()


def test_speech_commands_download(sc_root, tmp_path):
    tree = tmp_path / "tree"
    for rel in ("yes/439c84f4_nohash_1.wav", "bed/62581901_nohash_0.wav"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sc_root / rel, tree / rel)
    (tree / "validation_list.txt").write_text("bed/62581901_nohash_0.wav\n")
    (tree / "testing_list.txt").write_text("")
    archive = tmp_path / "sc.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, ".")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(OSError, match="checksum mismatch"):
        download_speech_commands(tmp_path / "bad", "0" * 64, url=archive.as_uri())
    assert not (tmp_path / "bad").exists()
    root = download_speech_commands(tmp_path / "sc", digest, url=archive.as_uri())
    assert _rel(SpeechCommands(root, "train", n_silence=0)) == {"yes/439c84f4_nohash_1.wav"}
    assert _rel(SpeechCommands(root, "val", n_silence=0)) == {"bed/62581901_nohash_0.wav"}


# -- AudioFolder and NoiseFolder ------------------------------------------------------------------
def test_audio_folder(data_root, tmp_path):
    rec = data_root / "fsdd" / "recordings"
    for cls, names in {"one": ["1_theo_0.wav", "1_theo_1.wav"], "two": ["2_theo_0.wav"]}.items():
        (tmp_path / cls).mkdir()
        for name in names:
            shutil.copy(rec / name, tmp_path / cls / name)
    (tmp_path / "two" / "broken.wav").write_bytes(b"RIFF but not audio")
    (tmp_path / "_noise").mkdir()
    with pytest.warns(UserWarning, match="broken.wav: .*skipped this unreadable"):  # a line per file
        ds = AudioFolder(tmp_path)
    assert ds.classes == ["one", "two"] and ds.labels == [0, 0, 1] and len(ds) == 3
    assert [p.name for p, _ in ds.skipped] == ["broken.wav"]
    x, y = ds[2]
    assert y == 1 and np.array_equal(x, load_audio(rec / "2_theo_0.wav")[0])
    with pytest.warns(UserWarning, match="broken.wav: Format not recognised"):
        assert AudioFolder(tmp_path, classes=["two", "one"]).labels == [0, 1, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "empty"))):
        AudioFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        AudioFolder(tmp_path, classes=["one", "missing"])


@pytest.mark.filterwarnings("ignore:.*skipped")
def test_audio_folder_class_of_unreadable_files_errors(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="'bad'"):
        AudioFolder(tmp_path)


def test_noise_mix_exact_snr_and_reproducible(fsdd_wav, noise_root, tmp_path):
    noise = NoiseFolder(noise_root, 16000)
    assert len(noise.files) == 6 and all(n.dtype == np.float32 for n in noise.noise)
    x = load_audio(fsdd_wav, 16000)[0].astype(np.float64)
    for snr in (-5.0, 0.0, 7.5, 30.0):
        y = noise.mix(x, snr, np.random.default_rng(3))
        added = y - x
        assert abs(10 * np.log10((x @ x) / (added @ added)) - snr) < 1e-6
    a, b, c = (noise.mix(x, 10.0, np.random.default_rng(s)) for s in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert noise.mix(x.astype(np.float32), 10.0, np.random.default_rng(5)).dtype == np.float32
    # A clip shorter than x is repeated, still at the exact SNR.
    short = tmp_path / "short"
    short.mkdir()
    sf.write(short / "n.wav", noise.noise[5][:4000], 16000)
    y = NoiseFolder(short, 16000).mix(x, 3.0, np.random.default_rng(0))
    assert abs(10 * np.log10((x @ x) / ((y - x) @ (y - x))) - 3.0) < 1e-6
    with pytest.raises(ValueError, match="all zeros"):
        noise.mix(np.zeros(100), 0.0, np.random.default_rng(0))
    assert abs(NoiseFolder(noise_root, 8000).noise[0].size - noise.noise[0].size / 2) <= 1
    with pytest.raises(FileNotFoundError, match="nowhere"):
        NoiseFolder(tmp_path / "nowhere", 16000)


# -- SpikeDataset ---------------------------------------------------------------------------------
def test_cache_second_pass_encodes_nothing(few, cfg, tmp_path, encoder_calls):
    first = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0)
    assert first.prepare(progress=False) == 3 and len(encoder_calls) == 3
    second = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0)
    assert second.prepare(progress=False) == 0
    trains = [second.spikes(i) for i in range(3)]
    assert len(encoder_calls) == 3
    for i, st in enumerate(trains):
        assert st == first.spikes(i) and len(st) == round(200 * st.duration)
    assert SpikeDataset(few, replace(cfg, rate=300), tmp_path, dt_ms=1.0).prepare(progress=False) == 3  # new config, new entries
    assert len(encoder_calls) == 6


def test_cache_writes_are_atomic(few, cfg, tmp_path, encoder_calls, monkeypatch):
    ds = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0)

    def crash(f, array, **kw):
        f.write(b"\x93NUMPY half an array")
        raise OSError("disk full")

    monkeypatch.setattr(spiketrum.spiketrain.np.lib.format, "write_array", crash)
    with pytest.raises(OSError, match="disk full"):
        ds.prepare(progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    assert ds.prepare(progress=False) == 3
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(ds.entry(i)[0].name for i in range(3))
    assert all(ENTRY.fullmatch(p.name) for p in tmp_path.rglob("*") if p.is_file())


def test_truncated_entry_is_reencoded(few, cfg, tmp_path, encoder_calls):
    ds = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0)
    ds.prepare(progress=False)
    good = ds.spikes(1)
    path = ds.entry(1)[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(UserWarning, match="damaged cache entry"):
        assert SpikeDataset(few, cfg, tmp_path, dt_ms=1.0).prepare(progress=False) == 1
    assert len(encoder_calls) == 4 and spiketrum.SpikeTrain.load(path) == good


def test_parallel_prepare_matches_serial(data_root, cfg, tmp_path):
    base = FSDD(data_root, "val").subset(range(0, 300, 75))
    serial = SpikeDataset(base, cfg, tmp_path / "serial", dt_ms=1.0)
    base.transform = lambda x: x  # transforms need not pickle
    parallel = SpikeDataset(base, cfg, tmp_path / "parallel", dt_ms=1.0, jobs=2, transform=lambda x: x)
    assert parallel.prepare(progress=False) == 4
    assert serial.prepare(progress=False) == 4
    assert all(parallel.spikes(i) == serial.spikes(i) for i in range(4))
    assert sorted(p.name for p in (tmp_path / "parallel").rglob("*") if p.is_file()) == sorted(
        p.name for p in (tmp_path / "serial").rglob("*") if p.is_file())


def test_resampling_and_baseline_configs(few, cfg, tmp_path, encoder_calls):
    x = few.load(0)[0]
    st = SpikeDataset(few, replace(cfg, sr=16000), tmp_path, dt_ms=1.0).spikes(0)
    assert st.sr == 16000 and st.n_samples == 2 * x.size and encoder_calls == [2 * x.size]
    poisson = PoissonConfig(8000, rate=200, kernels=16)
    ds = SpikeDataset(few, poisson, tmp_path, dt_ms=1.0)
    assert ds.prepare(progress=False) == 3 and len(encoder_calls) == 1  # spiketrum's encoder not used
    assert ds.spikes(0).config == poisson and SpikeDataset(few, poisson, tmp_path, dt_ms=1.0).prepare(progress=False) == 0


def test_noise_and_silence_items_are_cached_by_content(sc_root, noise_root, tmp_path, encoder_calls):
    cfg16 = SpiketrumConfig(sr=16000, rate=200, kernels=16, levels=2)
    sc = SpeechCommands(sc_root, "val", noise_root=noise_root)
    base = sc.subset([0, len(sc) - 1])  # a word and a silence slice
    assert sc.words[-1] == SILENCE
    assert SpikeDataset(base, cfg16, tmp_path, dt_ms=1.0).prepare(progress=False) == 2
    assert SpikeDataset(base, cfg16, tmp_path, dt_ms=1.0).prepare(progress=False) == 0
    noise = NoiseFolder(noise_root, 16000)
    noisy = SpikeDataset(base, cfg16, tmp_path, dt_ms=1.0, noise=noise, snr_db=(0.0, 20.0))
    assert {noisy.entry(i)[0] for i in range(2)}.isdisjoint(SpikeDataset(base, cfg16, tmp_path, dt_ms=1.0).entry(i)[0] for i in range(2))
    assert noisy.prepare(progress=False) == 2 and noisy.prepare(progress=False) == 0
    again = SpikeDataset(base, cfg16, tmp_path, dt_ms=1.0, noise=noise, snr_db=(0.0, 20.0))
    assert [again.entry(i)[0] for i in range(2)] == [noisy.entry(i)[0] for i in range(2)]
    other = SpikeDataset(base, cfg16, tmp_path, dt_ms=1.0, noise=noise, snr_db=(0.0, 20.0), seed=1)
    assert other.entry(0)[0] != noisy.entry(0)[0]
    assert len(encoder_calls) == 4
    with pytest.raises(ValueError, match="sr=8000"):
        SpikeDataset(base, replace(cfg16, sr=8000), tmp_path, dt_ms=1.0, noise=noise, snr_db=10.0)


def test_perturbed_items_are_drawn_per_item_and_cached_by_their_audio(few, cfg, tmp_path, encoder_calls):
    from spiketrum.perturb import Augment

    aug = Augment(speed=0.2, tilt=6.0)
    clean = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0)
    varied = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0, perturb=aug.audio)
    again = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0, perturb=aug.audio)
    other = SpikeDataset(few, cfg, tmp_path, dt_ms=1.0, perturb=aug.audio, seed=1)
    sizes = []
    for i in range(3):
        x, y = clean.audio(i), varied.audio(i)
        assert np.array_equal(y, again.audio(i)) and not np.array_equal(y, other.audio(i))
        assert 0.8 * x.size - 1 <= y.size <= x.size / 0.8 + 1
        sizes.append(y.size != x.size)
    assert any(sizes)  # a speed factor other than 1 changed the length
    assert {varied.entry(i)[0] for i in range(3)}.isdisjoint(clean.entry(i)[0] for i in range(3))
    assert varied.prepare(progress=False) == 3 and again.prepare(progress=False) == 0
    assert [varied.spikes(i).n_samples for i in range(3)] == [varied.audio(i).size for i in range(3)]


def test_warped_items_record_their_own_factor_and_are_cached_apart(few, cfg, tmp_path):
    clean = SpikeDataset(few, cfg, tmp_path, dt_ms=None)
    warped = SpikeDataset(few, cfg, tmp_path, dt_ms=None, warp=0.15)
    assert warped.prepare(progress=False) == 3 and warped.prepare(progress=False) == 0
    factors = [warped.spikes(i).config.warp for i in range(3)]
    assert all(0.85 <= f <= 1.15 and round(f, 2) == f for f in factors) and len(set(factors)) > 1
    assert factors == [SpikeDataset(few, cfg, tmp_path, dt_ms=None, warp=0.15).spikes(i).config.warp for i in range(3)]
    for i, f in enumerate(factors):  # each item is exactly the clean audio under its warped encoder
        again = replace(cfg, warp=f).encode(clean.audio(i), cfg.sr)
        np.testing.assert_array_equal(warped.spikes(i).samples, again.samples)
        np.testing.assert_array_equal(warped.spikes(i).kernel, again.kernel)
    assert {warped.entry(i)[0] for i in range(3)}.isdisjoint(clean.entry(i)[0] for i in range(3))
    with pytest.raises(ValueError, match="warp"):
        SpikeDataset(few, cfg, tmp_path, dt_ms=None, warp=0.6)


# -- collate --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt_ms", [1, 4.0])
def test_collate_pads_and_keeps_every_spike(few, cfg, tmp_path, dt_ms):
    trains = SpikeDataset(few, cfg, tmp_path, dt_ms=None)
    batch = [trains[i] for i in range(3)]
    x, lengths, labels = collate_spikes(batch, dt_ms=dt_ms)
    expected = [math.ceil(st.n_samples / st.sr / (dt_ms / 1000) - 1e-9) for st, _ in batch]
    assert x.dtype == torch.float32 and lengths.dtype == torch.int64 and labels.dtype == torch.int64
    assert x.shape == (max(expected), 3, cfg.n_channels) and lengths.tolist() == expected
    assert labels.tolist() == [few.labels[i] for i in range(3)]
    for b, (st, _) in enumerate(batch):
        assert not x[lengths[b]:, b].any()
        assert x[:, b].sum().item() == len(st) > 0
        per_channel = np.bincount(st.channels, minlength=cfg.n_channels)
        assert np.array_equal(x[:, b].sum(0).numpy(), per_channel)
    if dt_ms == 1:  # dense items from the dataset collate to the same batch
        dense = SpikeDataset(few, cfg, tmp_path, dt_ms=dt_ms)
        assert all(torch.equal(a, b) for a, b in zip(collate_spikes([dense[i] for i in range(3)]), (x, lengths, labels)))
