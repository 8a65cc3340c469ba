"""Keyword detection end to end: a detector trained on a synthetic keyword, streamed through the detect command."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

SR = 8000


def beep(rng):
    """The keyword: a rising two-tone call (500 then 1500 Hz, 0.2 s each), at a random level."""
    t = np.arange(int(0.2 * SR)) / SR
    call = np.concatenate([np.sin(2 * np.pi * 500 * t), np.sin(2 * np.pi * 1500 * t)]) * np.hanning(2 * t.size)
    return call * rng.uniform(0.2, 0.5)


def in_silence(x, rng, before, after):
    return np.concatenate([0.002 * rng.standard_normal(int(before * SR)), x, 0.002 * rng.standard_normal(int(after * SR))])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_root):
    """``kw/beep`` (60 clips of the call in light noise), ``kw/digit`` (FSDD digits: a non-keyword class) and a
    background folder of FSDD digits by other speakers."""
    root = tmp_path_factory.mktemp("detect")
    rng = np.random.default_rng(0)
    (root / "kw" / "beep").mkdir(parents=True)
    (root / "kw" / "digit").mkdir()
    (root / "bg").mkdir()
    for i in range(60):
        sf.write(root / "kw" / "beep" / f"{i}.wav", in_silence(beep(rng), rng, rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8)), SR)
    rec = data_root / "fsdd" / "recordings"
    for i, f in enumerate(sorted(rec.glob("*_jackson_*.wav"))[:40]):
        (root / "kw" / "digit" / f.name).symlink_to(f)
    for f in sorted(rec.glob("*_[tn]*_1[0-9].wav")):  # theo and nicolas, takes 10-19
        (root / "bg" / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def detector_run(corpus, tmp_path_factory):
    from spiketrum.app import detect

    out = tmp_path_factory.mktemp("runs") / "det"
    m = _train(corpus, out, out.parent / "cache")
    assert m["keywords"] == ["beep"] and m["classes"] == [detect.NO_KEYWORD, "beep"] and len(m["members"]) == 2
    return out, m


def _train(corpus, out, cache, **changes):
    """A small, quick detector of ``corpus``'s beep (``changes``: other :func:`detect.train` options). Without partial
    reads: the call's halves are two plain tones, which a network of 64 neurons does not learn to tell from the whole
    call in 8 epochs (the partial reads have their own test)."""
    from snn.trainer import TrainConfig
    from spiketrum.app import detect

    options = dict(keywords=["beep"], hidden=(64,), config=TrainConfig(epochs=8, patience=0, lr=5e-3), members=2,
                   partial=False, calibration_hours=0.02)
    return detect.train(corpus / "kw", out, background=[corpus / "bg"], **{**options, **changes}, cache_dir=cache,
                        progress=False)


def _same_detectors(a, b):
    """Whether the runs ``a`` and ``b`` hold the same weights, bit for bit."""
    import torch

    from spiketrum.app.kws import Run

    x, y = Run.load(a / "model.pt").model.state_dict(), Run.load(b / "model.pt").model.state_dict()
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def background_stream(corpus, seconds=20.0):
    parts, n = [], 0
    for f in sorted((corpus / "bg").glob("*.wav")):
        x, _ = sf.read(f, dtype="float32")
        parts += [x, np.zeros(int(0.3 * SR), np.float32)]
        n += x.size + int(0.3 * SR)
        if n > seconds * SR:
            break
    return np.concatenate(parts)


def test_detector_fires_on_an_inserted_keyword_and_not_on_background(detector_run, corpus):
    from spiketrum.app.detect import Detector
    from spiketrum.app.kws import Run

    run = Run.load(detector_run[0])
    x = background_stream(corpus)
    rng = np.random.default_rng(7)
    det = Detector(run)
    events_bg = det.push(x) + det.close()
    assert events_bg == []
    y = x.copy()
    at = [4.0, 11.0, 16.5]
    for t in at:
        call = beep(rng)
        y[int(t * SR): int(t * SR) + call.size] += call
    det = Detector(run)
    events = det.push(y) + det.close()
    assert [e.keyword for e in events] == ["beep"] * 3
    for e, t in zip(events, at):
        assert t <= e.time <= t + 0.4 + 1.0  # between the call's start and 1 s after its end


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "spiketrum.app", *map(str, args)], input=stdin, capture_output=True)


def test_detect_json_lines_contract_and_stdin(detector_run, corpus, tmp_path):
    rng = np.random.default_rng(3)
    y = background_stream(corpus, 8.0)
    call = beep(rng)
    y[3 * SR: 3 * SR + call.size] += call
    pcm = (np.clip(y, -1, 1 - 2**-15) * 32768).astype("<i2")
    wav = tmp_path / "stream.wav"
    sf.write(wav, pcm, SR, subtype="PCM_16")
    r = run_cli("detect", detector_run[0], wav, "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(lines) == 1
    assert set(lines[0]) == {"file", "keyword", "time", "score"}
    assert lines[0]["file"] == str(wav) and lines[0]["keyword"] == "beep"
    assert 3.0 <= lines[0]["time"] <= 4.4 and 0 < lines[0]["score"] <= 1
    piped = run_cli("detect", detector_run[0], "-", "--json", "--sr", SR, stdin=pcm.tobytes())
    assert piped.returncode == 0, piped.stderr
    got = [json.loads(line) for line in piped.stdout.decode().splitlines()]
    assert [(g["keyword"], g["time"], g["score"]) for g in got] == [(g["keyword"], g["time"], g["score"]) for g in lines]
    # threshold 0 lists every candidate peak, the run's threshold among them
    every = run_cli("detect", detector_run[0], wav, "--json", "--threshold", "0")
    assert len(every.stdout.decode().splitlines()) > 1


def test_detect_bad_inputs_one_line_each_and_good_results_kept(detector_run, corpus, tmp_path):
    good = tmp_path / "good.wav"
    y = background_stream(corpus, 6.0)
    y[2 * SR: 2 * SR + 3200] += beep(np.random.default_rng(5))
    sf.write(good, y, SR, subtype="PCM_16")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    r = run_cli("detect", detector_run[0], corrupt, good, empty, nan, tmp_path / "missing.wav")
    assert r.returncode == 2
    err = r.stderr.decode().splitlines()
    assert len(err) == 4 and "Traceback" not in r.stderr.decode()
    for name, line in zip(["corrupt", "empty", "nan", "missing"], err):
        assert f"{name}.wav: " in line
    assert [line.split("\t")[:2] for line in r.stdout.decode().splitlines()] == [[str(good), "beep"]]
    cut = run_cli("detect", detector_run[0], "-", stdin=(y[: 3 * SR] * 3000).astype("<i2").tobytes() + b"\x01")
    assert cut.returncode == 2 and cut.stderr.decode().count("\n") == 1 and "cut off" in cut.stderr.decode()
    assert "beep" in cut.stdout.decode()  # what was heard before the cut is kept
    bad = run_cli("detect", detector_run[0], good, "--threshold", "nope=0.5")
    assert bad.returncode == 2 and "nope" in bad.stderr.decode() and bad.stderr.decode().count("\n") == 1


@pytest.mark.parametrize("pad_s", [0.0, 0.5, 1.5])
def test_word_bounds_find_the_word_in_noise_whatever_digital_silence_pads_it(pad_s):
    """A 0.5 s call 31 dB above 1 s of noise each side is found to within a frame, however many exact zeros
    (a crowd-sourced clip's padding) follow: zeros are not the noise floor."""
    from spiketrum.app.detect import word_bounds

    rng = np.random.default_rng(3)
    t = np.arange(int(0.5 * SR)) / SR
    word = np.sin(2 * np.pi * 440 * t) * 0.5
    noise = lambda n: 0.01 * rng.standard_normal(n)  # noqa: E731
    x = np.concatenate([noise(SR), word + noise(word.size), noise(SR), np.zeros(int(pad_s * SR))])
    a, b = word_bounds(x, SR)
    assert abs(a - 1.0) <= 0.01 and abs(b - 1.5) <= 0.01


def test_a_clip_classifier_is_not_a_detector(tmp_path):
    from spiketrum.app.detect import Detector
    from test_stream import untrained_detector

    run = untrained_detector()
    run.detector = None
    with pytest.raises(ValueError, match="not a detector"):
        Detector(run)


def test_calibrated_threshold_meets_its_false_alarm_target(detector_run, corpus):
    """On the validation streams it was set on, the threshold gives at most target x hours false alarms, and a
    detector firing at it (events, not the calibration's trace arithmetic) has the reported miss rate."""
    from datasets import Background
    from spiketrum.app.detect import Detector, build_streams, calibrate, keyword_parts, score_detections, stream_material
    from spiketrum.app.kws import Run

    run = Run.load(detector_run[0])
    _, val, _ = keyword_parts(corpus / "kw", ["beep"])
    clips, pieces = stream_material(val, Background([corpus / "bg"], "calibrate"), SR, [])

    def streams():
        return build_streams(clips, pieces, None, SR, 0.03, 2, 10.0, np.random.default_rng(1))

    cal = calibrate(run, streams(), 100.0)  # a target the short streams can measure
    assert 0 < cal["false_alarms"]["beep"] <= 100.0 * cal["hours"] + 1e-6
    assert cal == calibrate(run, streams(), 100.0)  # deterministic
    files, fired = [], []
    for y, keywords in streams():
        det = Detector(run, thresholds=cal["thresholds"])  # pushed as calibrate does: a threshold may lie within
        events = [e for a in range(0, y.size, SR) for e in det.push(y[a : a + SR])] + det.close()  # 1e-14 of a peak
        fired.append([e.time for e in events])
        files.append({"keywords": keywords})
    fa, hits, _ = score_detections({"files": files}, "beep", fired)
    assert fa == cal["false_alarms"]["beep"]
    assert 1 - len(hits) / sum(len(f["keywords"]) for f in files) == pytest.approx(cal["miss_rate"]["beep"])


class _Trains:
    """The part of a SpikeDataset that DetectionItems reads: ``spikes(i)``, ``dt_ms``, ``config`` and a length."""

    def __init__(self, trains, dt_ms=10.0):
        self.trains, self.dt_ms, self.config = trains, dt_ms, trains[0].config

    def spikes(self, i):
        return self.trains[i]

    def __getitem__(self, i):
        return self.trains[i].to_dense(self.dt_ms, torch=True), 0

    def __len__(self):
        return len(self.trains)


def _train_of(cfg, steps, word=None):
    """A train of ``steps`` 10 ms steps with a spike on every kernel at every step of ``word`` (a, b), or everywhere."""
    from spiketrum import SpikeTrain

    a, b = word or (0, steps)
    hop = cfg.sr // 100
    samples = np.repeat(np.arange(a, b) * hop, cfg.kernels)
    n = samples.size
    return SpikeTrain(samples, np.tile(np.arange(cfg.kernels), b - a), np.zeros(n), np.ones(n), np.ones(n),
                      np.ones((cfg.kernels, 1)), cfg, steps * hop)


def test_partial_keyword_reads_hold_only_part_of_the_word():
    """A partial read, of the word's start or of its end, is labelled no keyword and holds 30-70 % of the word's
    steps, never all of it; the keyword's own read holds the whole word; a background window is as long as asked."""
    from spiketrum.app import detect
    from spiketrum import make_config

    cfg = make_config("spiketrum", SR, **detect.DETECT_ENCODER)
    tail = int(detect.TAIL_MS / 10)
    clips = _Trains([_train_of(cfg, 200, (40, 100))])
    items = detect.DetectionItems(clips, [], [(1, (40, 100 + tail))], _Trains([_train_of(cfg, 1000)]), window=200,
                                  clean=1.0, partial=True)
    assert len(items) == 3
    np.random.seed(0)
    ends = set()
    for _ in range(40):
        x, label = items[2]
        rows = np.flatnonzero(x.sum(1).numpy())
        assert label == (0, 0, 0) and 0.3 * 60 - 1 <= rows.size <= 0.7 * 60 + 1
        ends.add("start" if rows[0] > 0 else "end")  # a suffix read starts inside the word, at row 0
        x, (k, start, stop) = items[0]
        assert k == 1 and np.flatnonzero(x.sum(1).numpy()).size == 60
        assert items[1][0].shape == (200, cfg.kernels)
    assert ends == {"start", "end"}


def test_a_network_cut_short_goes_on_from_its_last_epoch(detector_run, corpus, tmp_path, monkeypatch):
    """A run killed in the middle of member 1 keeps member 0 and resumes member 1 from its checkpoint: the
    detector ends with the weights of the run that was never cut."""
    import shutil

    from snn.trainer import Trainer

    out, _ = detector_run
    run = tmp_path / "det"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("model.pt", "member-1"))
    save = Trainer.save_checkpoint

    def killed_after_epoch_3(self, path):
        save(self, path)
        if self.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", killed_after_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _train(corpus, run, out.parent / "cache")
    assert not (run / "member-1" / "member.pt").exists() and not (run / "model.pt").exists()
    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    epochs = []
    fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self: (epochs.append(self.epoch), fit(self))[1])
    _train(corpus, run, out.parent / "cache")
    assert epochs == [3]  # member 0 kept, member 1 went on after its third epoch
    assert _same_detectors(out, run)


def test_a_run_cut_short_keeps_its_finished_networks(detector_run, corpus, tmp_path):
    """Training again into a run whose model.pt is missing reuses every finished member (not rewritten, same
    weights); another recipe (more epochs) trains them anew."""
    import shutil

    from snn.trainer import TrainConfig

    out, _ = detector_run
    run = tmp_path / "det"
    shutil.copytree(out, run)
    (run / "model.pt").unlink()
    stamps = [p.stat().st_mtime_ns for p in sorted(run.glob("member-*/member.pt"))]
    assert len(stamps) == 2
    _train(corpus, run, out.parent / "cache")
    assert [p.stat().st_mtime_ns for p in sorted(run.glob("member-*/member.pt"))] == stamps
    assert _same_detectors(out, run)
    (run / "model.pt").unlink()
    _train(corpus, run, out.parent / "cache", config=TrainConfig(epochs=1, patience=0))
    assert all(p.stat().st_mtime_ns != t for p, t in zip(sorted(run.glob("member-*/member.pt")), stamps))


def test_mined_negatives_are_the_background_windows_the_network_finds_likeliest_keywords():
    """After an epoch the pool holds exactly the ``keep`` candidate windows with the highest keyword probability,
    each scored alone (batching changes nothing); DetectionItems then draws its background windows from the pool
    (share 1), the same windows again from the seeds; and the pool goes through a checkpoint's state."""
    import types

    import torch

    from snn.models import SRNN
    from spiketrum import SpikeTrain, make_config
    from spiketrum.app import detect

    cfg = make_config("spiketrum", SR, **detect.DETECT_ENCODER)
    rng, hop, trains = np.random.default_rng(1), cfg.sr // 100, []
    for n in (300, 500, 800):  # random spikes whose density varies along each train, so that windows differ
        t, k = np.nonzero(rng.random((n, cfg.kernels)) < np.linspace(0.01, 0.3, n)[:, None] * rng.random())
        ones = np.ones(t.size)
        trains.append(SpikeTrain(t * hop, k, np.zeros(t.size), ones, ones, np.ones((cfg.kernels, 1)), cfg, n * hop))
    background = _Trains(trains)
    clips = _Trains([_train_of(cfg, 100, (20, 60))])
    items = detect.DetectionItems(clips, [], [(1, (20, 90))], background, window=50, mined_share=1.0)
    torch.manual_seed(0)
    net = SRNN(cfg.kernels, 2, hidden=(16,), dt=10.0)
    miner = detect.MinedNegatives(items, candidates=40, keep=8, seed=3, batch=16)
    record = {}
    miner.on_epoch_end(types.SimpleNamespace(model=net, device="cpu", epoch=2), record)
    seeds = np.random.default_rng([3, 2]).integers(2**63 - 1, size=40)

    def score(seed):
        x = detect.background_window(background, 50, np.random.default_rng(int(seed)))[:, None]
        with torch.no_grad():
            return float(torch.softmax(net(x, torch.tensor([50]), per_step=True), -1)[..., 1:].max())

    alone = np.array([score(s) for s in seeds])
    assert sorted(items.mined) == sorted(int(s) for s in seeds[np.argsort(-alone)[:8]])
    assert record["mined_keyword_probability"] == pytest.approx(np.sort(alone)[-8:].mean(), rel=1e-5)
    pool = {detect.background_window(background, 50, np.random.default_rng(s)).numpy().tobytes() for s in items.mined}
    np.random.seed(0)
    for _ in range(10):
        x, label = items[1]
        assert label == (0, 0, 0) and x.numpy().tobytes() in pool
    state = miner.state_dict()
    fresh = detect.DetectionItems(clips, [], [(1, (20, 90))], background, window=50, mined_share=1.0)
    detect.MinedNegatives(fresh).load_state_dict(state)
    assert fresh.mined == items.mined
