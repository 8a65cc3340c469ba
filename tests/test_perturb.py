import dataclasses
from collections import Counter

import numpy as np
import pytest

from spiketrum import PoissonConfig, SpikeTrain, encode, load_audio
from spiketrum.metrics import decode_envelope
from spiketrum.perturb import delete, drop_channels, insert, jitter

ARRAYS = ("samples", "kernel", "level", "polarity", "amplitude", "level_amplitudes")


@pytest.fixture(scope="module")
def speech(fsdd_wav):
    x, sr = load_audio(fsdd_wav)
    return x.astype(np.float64), sr


@pytest.fixture(scope="module", params=["spiketrum", "delta", "poisson"])
def train(request, speech):
    """A spiketrum train (3 levels, polarity by place), an ON/OFF baseline and a polarity-free baseline."""
    x, sr = speech
    if request.param == "spiketrum":
        return encode(x, sr, rate=6000)
    return encode(x, sr, rate=20000, method=request.param)


def _rows(st):
    return Counter(zip(st.samples.tolist(), st.channels.tolist(), st.amplitude.tolist()))


def _snapshot(st):
    return {k: getattr(st, k).copy() for k in ARRAYS}


def _untouched(st, snap):
    return all(np.array_equal(getattr(st, k), v) for k, v in snap.items())


def test_delete_extremes_and_binomial_count(train):
    snap = _snapshot(train)
    assert delete(train, 0.0) == train
    gone = delete(train, 1.0)
    assert len(gone) == 0 and gone.config == train.config and gone.n_samples == train.n_samples
    n, p = len(train), 0.3
    kept = delete(train, p, seed=5)
    assert abs(len(kept) - n * (1 - p)) <= 5 * np.sqrt(n * p * (1 - p))
    assert not _rows(kept) - _rows(train)  # only original spikes, unchanged
    assert _untouched(train, snap)


def test_same_seed_same_result_different_seed_different(train):
    for op, arg in ((delete, 0.2), (jitter, 1.0), (insert, 5.0), (drop_channels, 0.25)):
        assert op(train, arg, seed=1) == op(train, arg, seed=1), op.__name__
        assert op(train, arg, seed=1) != op(train, arg, seed=2), op.__name__


def test_jitter_zero_is_identity_and_shifts_have_the_requested_spread():
    sr, n, k = 8000, 400_000, 20_000
    cfg = PoissonConfig(sr, n_spikes=k)
    rng = np.random.default_rng(0)
    samples = np.sort(rng.integers(100_000, 300_000, k))  # far from the ends: no clipping
    st = SpikeTrain(samples, rng.integers(0, 40, k), np.zeros(k), np.ones(k), np.arange(k) + 1.0, np.ones((40, 1)), cfg, n)
    assert jitter(st, 0.0) == st
    moved = jitter(st, 2.0, seed=3)
    order = np.argsort(moved.amplitude)  # amplitudes are unique spike labels
    shift = moved.samples[order] - st.samples
    assert np.array_equal(moved.kernel[order], st.kernel)
    assert abs(shift.mean()) < 5 * 16 / np.sqrt(k)
    assert shift.std() == pytest.approx(2.0 * sr / 1000, rel=0.05)
    assert np.all(np.diff(moved.samples) >= 0)


def test_jitter_clips_to_the_signal(train):
    moved = jitter(train, 50.0, seed=0)
    assert len(moved) == len(train)
    assert moved.samples.min() >= 0 and moved.samples.max() <= train.n_samples - 1
    assert np.any(moved.samples == 0) and np.any(moved.samples == train.n_samples - 1)
    assert Counter(moved.channels.tolist()) == Counter(train.channels.tolist())


def test_insert_count_and_valid_decoded_channels(train):
    empty = delete(train, 1.0)
    rate = 40.0
    noisy = insert(empty, rate, seed=7)
    lam = rate * train.n_channels * train.duration
    assert abs(len(noisy) - lam) <= 5 * np.sqrt(lam)
    cfg = train.config
    assert noisy.kernel.max() < cfg.kernels and noisy.level.max() < cfg.levels
    assert np.all((noisy.channels >= 0) & (noisy.channels < train.n_channels))
    # Re-deriving the channel from (kernel, level, polarity) gives back a uniform spread over all channels.
    assert set(noisy.channels.tolist()) == set(range(train.n_channels))
    sign = np.where(noisy.polarity == 1, 1.0, -1.0)
    np.testing.assert_array_equal(noisy.amplitude, sign * train.level_amplitudes[noisy.kernel, noisy.level])
    assert set(noisy.polarity.tolist()) == {0, 1}  # drawn at random where polarity is not by place
    both = insert(train, rate, seed=7)
    assert len(both) == len(train) + len(noisy)
    assert not _rows(train) - _rows(both)  # the originals are all still there
    assert insert(train, 0.0) == train


def test_drop_channels_removes_exactly_the_chosen_channels(train):
    before = np.bincount(train.channels, minlength=train.n_channels)
    chosen = [0, 3, train.n_channels - 1]
    out = drop_channels(train, channels=chosen)
    after = np.bincount(out.channels, minlength=train.n_channels)
    assert np.all(after[chosen] == 0)
    keep = np.setdiff1d(np.arange(train.n_channels), chosen)
    np.testing.assert_array_equal(after[keep], before[keep])
    assert out.meta["perturb"][-1]["channels"] == sorted(chosen)

    out = drop_channels(train, 0.25, seed=4)
    dropped = out.meta["perturb"][-1]["channels"]
    assert len(dropped) == round(0.25 * train.n_channels)
    after = np.bincount(out.channels, minlength=train.n_channels)
    assert np.all(after[dropped] == 0)
    keep = np.setdiff1d(np.arange(train.n_channels), dropped)
    np.testing.assert_array_equal(after[keep], before[keep])
    assert drop_channels(train, 0.0) == train and len(drop_channels(train, 1.0)) == 0


@pytest.mark.parametrize("call, match", [
    (lambda st: delete(st, -0.1), "p must be"),
    (lambda st: delete(st, 1.5), "p must be"),
    (lambda st: delete(st, float("nan")), "p must be"),
    (lambda st: jitter(st, -1.0), "sigma_ms must be"),
    (lambda st: insert(st, -2.0), "rate must be"),
    (lambda st: insert(st, float("inf")), "rate must be"),
    (lambda st: drop_channels(st, 2.0), "p must be"),
    (lambda st: drop_channels(st), "exactly one"),
    (lambda st: drop_channels(st, 0.5, channels=[1]), "exactly one"),
    (lambda st: drop_channels(st, channels=[st.n_channels]), "channels must be"),
    (lambda st: drop_channels(st, channels=[-1]), "channels must be"),
    (lambda st: drop_channels(st, channels=[0.5]), "channels must be"),
])
def test_bad_arguments_raise(train, call, match):
    with pytest.raises(ValueError, match=match):
        call(train)


def test_perturbed_trains_save_load_and_decode(speech, tmp_path):
    x, sr = speech
    st = encode(x, sr, rate=3000, method="bsa")
    out = insert(jitter(delete(st, 0.1, seed=1), 0.5, seed=2), 20.0, seed=3)
    assert [op["op"] for op in out.meta["perturb"]] == ["delete", "jitter", "insert"]
    assert "perturb" not in st.meta
    out.save(tmp_path / "p.npz")
    back = SpikeTrain.load(tmp_path / "p.npz")
    assert back == out and back.meta == out.meta
    assert decode_envelope(back).shape == decode_envelope(st).shape


def test_stretch_scales_times_and_length_and_keeps_every_spike(train):
    from spiketrum.perturb import stretch

    snap = _snapshot(train)
    for factor in (0.8, 1.0, 1.25):
        out = stretch(train, factor)
        assert out.n_samples == round(train.n_samples * factor) and len(out) == len(train)
        assert np.all(np.abs(out.samples - np.sort(train.samples) * factor) < 1 + 1e-9)
        assert Counter(out.channels.tolist()) == Counter(train.channels.tolist())
    assert _rows(stretch(train, 1.0)) == _rows(train) and _untouched(train, snap)


def test_shift_kernels_moves_places_and_drops_those_pushed_off(train):
    from spiketrum.perturb import shift_kernels

    K = train.config.kernels
    for k in (-2, 0, 3):
        out = shift_kernels(train, k)
        kept = (train.kernel + k >= 0) & (train.kernel + k < K)
        assert len(out) == int(kept.sum())
        assert Counter(zip(out.samples.tolist(), out.kernel.tolist(), out.level.tolist())) == \
            Counter(zip(train.samples[kept].tolist(), (train.kernel[kept] + k).tolist(), train.level[kept].tolist()))
    assert shift_kernels(train, 0) == train


def test_mask_kernels_and_delay(train):
    from spiketrum.perturb import delay, mask_kernels

    out = mask_kernels(train, 5, 9)
    assert len(out) == int(np.sum((train.kernel < 5) | (train.kernel >= 9))) and not np.any((out.kernel >= 5) & (out.kernel < 9))
    later = delay(train, 50)
    n = round(0.05 * train.sr)
    assert later.n_samples == train.n_samples + n and np.array_equal(later.samples, train.samples + n)
    assert mask_kernels(train, 0, 0) == train and delay(train, 0.0) == train


def test_augment_spec_round_trips_and_draws_are_seeded(train):
    from hypothesis import given, strategies as st_

    from spiketrum.perturb import DEFAULT_AUGMENT, Augment

    @given(st_.floats(0, 1), st_.floats(0, 20), st_.integers(0, 3), st_.one_of(st_.none(), st_.floats(-10, 30)),
           st_.floats(0, 0.5), st_.floats(0, 12), st_.floats(0, 0.5))
    def round_trip(p, jit, shift, noise, speed, tilt, warp):
        a = Augment(deletion=p, jitter=jit, shift=shift, noise=noise, speed=speed, tilt=tilt, warp=warp)
        assert Augment.parse(a.spec()) == a
        assert a.encoded == (noise is not None or speed > 0 or tilt > 0 or warp > 0)

    round_trip()
    assert Augment.parse("none") == Augment() and Augment().spec() == "none"
    aug = Augment.parse(DEFAULT_AUGMENT + ",jitter:1ms,insertion:2")
    a, b = (aug(train, np.random.default_rng(7)) for _ in range(2))
    assert a == b and a != aug(train, np.random.default_rng(8))
    assert Augment()(train, np.random.default_rng(0)) is train
    for bad in ("deletion:2", "jitter:-1ms", "shift:x", "volume:3", "deletion", "speed:0.6", "tilt:-1dB", "warp:0.7"):
        with pytest.raises(ValueError):
            Augment.parse(bad)


def test_test_time_views_are_the_clip_its_warps_and_its_tilts(speech):
    from hypothesis import given, strategies as st_

    from spiketrum import DeltaConfig, SpiketrumConfig
    from spiketrum.perturb import InferenceAugment, tilt

    @given(st_.floats(0, 0.5), st_.floats(0, 24))
    def round_trip(warp, db):
        a = InferenceAugment(warp=warp, tilt=db)
        assert InferenceAugment.parse(a.spec()) == a

    round_trip()
    config = SpiketrumConfig(sr=8000, rate=1000)
    views = InferenceAugment.parse("warp:0.15,tilt:4dB").views(config)
    assert views[0] == (config, None)  # the clip itself comes first
    warps = [v.warp for v, p in views if p is None]
    assert warps == [1.0, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15]
    assert all(dataclasses.replace(v, warp=1.0) == config for v, _ in views)  # nothing else changes
    x, sr = speech
    tilted = [p(x, sr, np.random.default_rng(k)) for k, (_, p) in enumerate(views) if p is not None]
    assert len(tilted) == 2 and all(v.warp == 1.0 for v, p in views if p is not None)
    np.testing.assert_array_equal(tilted[0], tilt(x, sr, -4.0))
    np.testing.assert_array_equal(tilted[1], tilt(x, sr, 4.0))
    assert InferenceAugment().views(config) == [(config, None)] and InferenceAugment.parse("none") == InferenceAugment()
    delta = DeltaConfig(sr=8000, rate=1000)
    assert len(InferenceAugment(tilt=2).views(delta)) == 3
    with pytest.raises(ValueError, match="warp"):
        InferenceAugment(warp=0.1).views(delta)  # a delta encoder has no kernels to warp
    for bad in ("warp:0.6", "tilt:-1dB", "warp:x", "speed:0.1", "warp"):
        with pytest.raises(ValueError, match="tta"):
            InferenceAugment.parse(bad)


def test_speed_scales_every_frequency_and_the_length():
    from hypothesis import given, settings, strategies as st_

    from spiketrum.perturb import speed

    @settings(max_examples=25, deadline=None)
    @given(st_.integers(80, 120), st_.integers(4, 30))
    def scaled(steps, bin_):
        sr, n = 8000, 8000
        f = bin_ * 100.0  # a whole number of cycles in 1 s
        y = speed(np.sin(2 * np.pi * f * np.arange(n) / sr), sr, steps / 100)
        assert abs(y.size - n * 100 / steps) <= 1
        peak = np.argmax(np.abs(np.fft.rfft(y, 8 * y.size))) * sr / (8 * y.size)
        assert abs(peak - f * steps / 100) <= sr / (8 * y.size) + 1e-9

    scaled()
    x = np.random.default_rng(0).standard_normal(100)
    assert speed(x, 8000, 1.0) is x


def test_tilt_gains_are_db_per_octave_about_the_pivot():
    from spiketrum.perturb import tilt

    sr, n = 8000, 8000
    t = np.arange(n) / sr
    for f, s in [(250.0, 3.0), (1000.0, -5.0), (2000.0, 6.0), (3000.0, -2.5), (50.0, 4.0)]:
        y = tilt(np.sin(2 * np.pi * f * t), sr, s)
        gain_db = 20 * np.log10(np.abs(np.fft.rfft(y)).max() / np.abs(np.fft.rfft(np.sin(2 * np.pi * f * t))).max())
        assert gain_db == pytest.approx(s * np.log2(max(f, 100.0) / 1000.0), abs=1e-6)
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert tilt(x, sr, 0.0) is x and tilt(x, sr, 3.0).dtype == np.float32
    # a tilt and its opposite undo each other
    np.testing.assert_allclose(tilt(tilt(x, sr, 4.0), sr, -4.0), x, atol=1e-5)
