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
