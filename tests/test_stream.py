"""Streaming: the causal encoder and the keyword detector give in pieces what they give in one go."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spiketrum import SpiketrumConfig, load_audio

FIELDS = ("samples", "kernel", "level", "polarity", "amplitude")


def push_in_pieces(cfg, x, cuts):
    s = cfg.stream()
    edges = [0, *sorted(set(int(c) for c in cuts if 0 < c < x.size)), x.size]
    parts = [s.push(x[a:b]) for a, b in zip(edges[:-1], edges[1:])] + [s.close()]
    return {f: np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS}, parts


@pytest.fixture(scope="module")
def speech(data_root):
    x, sr = load_audio(data_root / "fsdd" / "recordings" / "7_theo_3.wav")
    return np.concatenate([x, np.zeros(800), x[::-1]]).astype(np.float64), sr


RULES = [dict(rate=1000.0), dict(rate=600.0, frame_ms=10.0), dict(snr_db=6.0), dict(rate=800.0, mode="exact")]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()))
@given(cuts=st.lists(st.integers(1, 9000), max_size=12))
def test_stream_equals_whole_file_spike_for_spike(speech, rule, cuts):
    x, sr = speech
    cfg = SpiketrumConfig(sr=sr, levels=1, chunk_s=0.05, **rule)
    whole = cfg.encode(x, sr)
    got, parts = push_in_pieces(cfg, x, cuts)
    for f in FIELDS:
        np.testing.assert_array_equal(got[f], getattr(whole, f), err_msg=f)
    assert parts[-1].n_samples == x.size
    # every spike was known once its chunk and the look-ahead had arrived
    for p in parts[:-1]:
        assert p.samples.size == 0 or p.samples.max() < p.n_samples


def test_stream_latency_is_a_chunk_plus_the_longest_kernel(speech):
    x, sr = speech
    s = SpiketrumConfig(sr=sr, rate=1000, levels=1, chunk_s=0.1).stream()
    assert s.push(x[: 800 + s.lookahead - 1]).n_samples == 0  # one sample short of the first chunk's look-ahead
    assert s.push(x[800 + s.lookahead - 1 : 800 + s.lookahead]).n_samples == 800
    assert s.latency_s == pytest.approx((800 + s.lookahead) / sr)


def test_a_rate_rule_is_exact_in_every_chunk_of_a_long_file(rng):
    cfg = SpiketrumConfig(sr=8000, rate=333.0, levels=1, chunk_s=0.1)
    x = rng.standard_normal(8000 * 3 + 123)
    st_ = cfg.encode(x, 8000)
    edges = np.arange(0, x.size + 800, 800).clip(max=x.size)
    counts = np.histogram(st_.samples, edges)[0]
    np.testing.assert_array_equal(counts, np.diff(np.round(333.0 / 8000 * edges).astype(int)))


@pytest.mark.parametrize("opts, words", [(dict(rate=100, levels=3), "levels=1"), (dict(n_spikes=100, levels=1), "n_spikes")])
def test_stream_refuses_what_needs_the_whole_file(opts, words):
    with pytest.raises(ValueError, match=words):
        SpiketrumConfig(sr=8000, **opts).stream()


def test_stream_refuses_nan_and_pushes_after_close():
    s = SpiketrumConfig(sr=8000, rate=100, levels=1).stream()
    with pytest.raises(ValueError, match="NaN"):
        s.push(np.array([0.0, np.nan]))
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.push(np.zeros(10))


# -- the detection objective --------------------------------------------------------------------------

def reference_detection_loss(u, y, lengths, hard_negative=0.0):
    """Step by step: -max log p_k over the keyword's window, minus the mean log p_0 of every other valid step,
    minus ``hard_negative`` x the lowest log p_0 before the window (anywhere in a class-0 clip)."""
    import torch

    total = 0.0
    for b in range(u.shape[1]):
        k, a, e = (int(v) for v in y[b])
        logp = torch.log_softmax(u[: int(lengths[b]), b], -1)
        inside = [t for t in range(int(lengths[b])) if k > 0 and a <= t < e]
        rest = [t for t in range(int(lengths[b])) if t not in inside]
        before = [t for t in range(int(lengths[b])) if k == 0 or t < a]
        term = -max(logp[t, k] for t in inside) if inside else 0.0
        hard = -min(logp[t, 0] for t in before) if before else 0.0
        total = total + term + (-sum(logp[t, 0] for t in rest) / max(len(rest), 1)) + hard_negative * hard
    return total / u.shape[1]


@given(seed=st.integers(0, 10**6), hard_negative=st.sampled_from([0.0, 1.0, 0.3]))
def test_detection_loss_equals_a_step_by_step_reference(seed, hard_negative):
    import torch

    from snn.trainer import Detection, TrainConfig

    g = torch.Generator().manual_seed(seed)
    T, B, C = 12, 4, 3
    u = torch.randn(T, B, C, generator=g, dtype=torch.float64, requires_grad=True)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    y = torch.stack([torch.randint(0, C, (B,), generator=g), torch.randint(0, 4, (B,), generator=g),
                     torch.randint(4, T + 2, (B,), generator=g)], 1)
    got = Detection(hard_negative=hard_negative).loss(u, y, lengths, TrainConfig())
    want = reference_detection_loss(u, y, lengths, hard_negative)
    assert torch.allclose(got, torch.as_tensor(want, dtype=got.dtype))
    got.backward()
    pad = torch.arange(T)[:, None] >= lengths[None, :]
    assert torch.all(u.grad[pad] == 0)  # padding steps never pull on the model


def test_detection_gradcheck():
    import torch

    from snn.trainer import Detection, TrainConfig

    u = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    y, lengths = torch.tensor([[2, 2, 4], [0, 0, 0]]), torch.tensor([6, 5])
    for hard in (0.0, 1.0):
        assert torch.autograd.gradcheck(lambda v: Detection(hard_negative=hard).loss(v, y, lengths, TrainConfig()), (u,))


# -- the streaming detector ----------------------------------------------------------------------------

def untrained_detector(keywords=("yes", "no"), **settings):
    import torch

    from spiketrum import make_config
    from spiketrum.app import detect
    from spiketrum.app.kws import Run, build_model

    torch.manual_seed(0)
    enc = make_config("spiketrum", detect.DETECT_SR, **detect.DETECT_ENCODER)
    net = build_model("srnn", enc.n_channels, len(keywords) + 1, hidden=(32,), dt=10.0).eval()
    return Run(net, "srnn", {"hidden": (32,), "dt": 10.0}, enc, 10.0, [detect.NO_KEYWORD, *keywords], 0,
               {"thresholds": {k: 0.0 for k in keywords}, "smooth_ms": 50.0, "refractory_ms": 200.0, **settings})


def detect_in_pieces(run, x, sr, cuts):
    from spiketrum.app.detect import Detector

    det = Detector(run, sr)
    edges = [0, *sorted(set(int(c) for c in cuts if 0 < c < x.size)), x.size]
    events = [e for a, b in zip(edges[:-1], edges[1:]) for e in det.push(x[a:b])]
    return events + det.close()


@pytest.fixture(scope="module")
def stream_audio(data_root):
    parts = [load_audio(data_root / "fsdd" / "recordings" / f"{d}_nicolas_7.wav")[0] for d in range(6)]
    return np.concatenate([np.concatenate([p, np.zeros(1200, np.float32)]) for p in parts]), 8000


@given(cuts=st.lists(st.integers(1, 40000), max_size=10))
def test_detector_in_pieces_equals_whole(stream_audio, cuts):
    x, sr = stream_audio
    run = untrained_detector()
    whole = detect_in_pieces(run, x, sr, [])
    got = detect_in_pieces(run, x, sr, cuts)
    assert len(whole) > 5  # threshold 0: every peak is an event
    assert [(e.keyword, e.time) for e in got] == [(e.keyword, e.time) for e in whole]
    np.testing.assert_allclose([e.score for e in got], [e.score for e in whole], atol=1e-6)


def test_detector_events_respect_threshold_refractory_and_latency(stream_audio):
    from spiketrum.app.detect import Detector

    x, sr = stream_audio
    run = untrained_detector()
    det = Detector(run, sr)
    det.trace = []
    events = [e for i in range(0, x.size, 800) for e in det.push(x[i:i + 800])] + det.close()
    trace = np.asarray(det.trace)
    assert trace.shape == (int(np.ceil(x.size / 80)), 2)
    for j, kw in enumerate(det.keywords):
        mine = [e for e in events if e.keyword == kw]
        assert np.all(np.diff([e.step for e in mine]) >= 20)  # refractory 200 ms of 10 ms steps
        for e in mine:  # a peak of the smoothed trace, fired once the step after it was known
            v = trace[:, j]
            assert v[e.step] == e.score and (e.step == 0 or v[e.step - 1] < e.score)
            assert e.step + 1 == len(v) or v[e.step + 1] <= e.score
            assert e.time >= min((e.step + 2) * 0.01 + det._encoder.lookahead / sr, x.size / sr) - 1e-9
    assert max(e.time for e in events) <= x.size / sr + 1e-9
    high = Detector(run, sr, thresholds=1.0)
    assert [e for i in range(0, x.size, 4000) for e in high.push(x[i:i + 4000])] + high.close() == []


def test_detect_reads_a_long_file_in_bounded_pieces(tmp_path, monkeypatch):
    """A long input is read a second at a time and leaves the detector's buffers as small as a minute's."""
    import soundfile as sf

    from spiketrum import io as sio
    from spiketrum.app import detect

    run = untrained_detector()
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        for _ in range(10):  # 10 minutes of quiet noise, written a minute at a time
            f.write(0.05 * rng.standard_normal(60 * 8000))
    reads, sizes = [], []
    real_read = sio.AudioStream.read
    monkeypatch.setattr(sio.AudioStream, "read", lambda self, a, b: reads.append(b - a) or real_read(self, a, b))
    real_feed = detect.Detector._feed

    def feed(self, st, final):
        out = real_feed(self, st, final)
        sizes.append(self._pending[0].size + self._probs.size + self._encoder._buf.size)
        return out
    monkeypatch.setattr(detect.Detector, "_feed", feed)
    monkeypatch.setattr(detect.Run, "load", classmethod(lambda cls, d: run))
    events = list(detect.detect_inputs("unused", [str(path)], thresholds=1.0))
    assert events == []
    assert max(reads) == 8000 and len(reads) == 10 * 60
    assert max(sizes) == max(sizes[: len(sizes) // 10])  # buffers do not grow with the length heard
