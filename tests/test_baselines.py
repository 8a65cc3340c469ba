import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from cochlea import cochleagram
from spiketrum import (ENCODERS, BaselineConfig, BSAConfig, DeltaConfig, InputError, SpikeTrain, decode, encode, load_audio,
                       make_config)
from spiketrum.baselines import METHODS
from spiketrum.metrics import decode_envelope, envelope_snr_db, snr_db


@pytest.fixture(scope="module")
def speech(fsdd_wav):
    x, sr = load_audio(fsdd_wav)
    return x.astype(np.float64), sr


def _tones(sr=8000, seconds=1.0):
    """Band-limited test signal: an amplitude-modulated 300 Hz tone plus a 700 Hz tone."""
    t = np.arange(int(sr * seconds)) / sr
    return np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.5 * np.sin(2 * np.pi * 700 * t + 1)


def _cochleagram(x, cfg, hop_ms=10.0):
    return cochleagram(x, cfg.sr, center_freqs=cfg.center_freqs(), frame_ms=cfg.frame_ms, hop_ms=hop_ms, db=False).astype(np.float64)


# -- config -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(method="lif", sr=8000), "exactly one of rate and n_spikes"),
    (dict(method="lif", sr=8000, rate=100, n_spikes=5), "exactly one of rate and n_spikes"),
    (dict(method="lif", sr=8000, rate=0), "rate must be"),
    (dict(method="lif", sr=8000, rate=-5.0), "rate must be"),
    (dict(method="lif", sr=8000, rate=float("nan")), "rate must be"),
    (dict(method="lif", sr=8000, n_spikes=-1), "n_spikes must be"),
    (dict(method="lif", sr=8000, n_spikes=2.5), "n_spikes must be"),
    (dict(method="lif", sr=0, rate=100), "sr must be"),
    (dict(method="lif", sr=8000.0, rate=100), "sr must be"),
    (dict(method="delta", sr=8000, rate=100, kernels=0), "kernels must be"),
    (dict(method="delta", sr=8000, rate=100, fmax=4000.0), "fmax"),
    (dict(method="delta", sr=8000, rate=100, fmin=5000.0), "fmin"),
    (dict(method="poisson", sr=8000, rate=100, seed=-1), "seed must be"),
    (dict(method="lif", sr=8000, rate=100, tau_ms=0.0), "tau_ms must be"),
    (dict(method="lif", sr=8000, rate=100, refractory_ms=-1.0), "refractory_ms must be"),
    (dict(method="bsa", sr=8000, rate=100, bsa_cycles=0.0), "bsa_cycles must be"),
    (dict(method="bsa", sr=8000, rate=100, bsa_threshold=-0.1), "bsa_threshold must be"),
    (dict(method="delta", sr=8000, rate=100, frame_ms=0.01), "frame_ms"),
])
def test_config_rejects_bad_values_with_one_line_message(kwargs, match):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=match) as info:
        ENCODERS[kwargs.pop("method")](**kwargs)
    assert "\n" not in str(info.value)


def test_baselines_are_chosen_by_class_not_by_name():
    assert METHODS == ("delta", "lif", "bsa", "poisson")
    assert all(issubclass(ENCODERS[m], BaselineConfig) for m in METHODS)
    with pytest.raises(TypeError, match="abstract"):
        BaselineConfig(8000, rate=100)
    with pytest.raises(ValueError, match="unknown encoder 'spikes'"):
        make_config("spikes", 8000, rate=100)
    with pytest.raises(ValueError, match="the delta encoder has no option seed"):
        make_config("delta", 8000, rate=100, seed=3)


@pytest.mark.parametrize("method", METHODS)
def test_config_properties_and_json_round_trip(method):
    cfg = make_config(method, 16000, rate=250.5, kernels=24, fmin=80.0)
    back = BaselineConfig.from_json(cfg.to_json())
    assert back == cfg and back.to_json() == cfg.to_json() and type(back) is ENCODERS[method]
    assert json.loads(cfg.to_json())["encoder"] == method
    assert (cfg.kernels, cfg.levels, cfg.resolved_fmax) == (24, 1, 7200.0)
    assert cfg.polarity_channels == (method in ("delta", "bsa"))
    assert cfg.n_channels == 24 * (2 if cfg.polarity_channels else 1)
    assert np.array_equal(cfg.center_freqs()[[0, -1]], [80.0, 7200.0])
    assert cfg.target(16000 * 2) == 501  # round(250.5 * 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rate = 1.0


# -- exact counts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=8)
@given(target=hst.integers(1, 2500))
def test_every_method_hits_the_requested_spike_count_exactly(speech, method, target):
    x, sr = speech
    st = encode(x, sr, n_spikes=target, method=method)
    assert len(st) == target
    assert st.samples.min() >= 0 and st.samples.max() < x.size
    assert np.all(np.diff(st.samples) >= 0)
    assert np.all(st.channels < st.n_channels) and st.level_amplitudes.shape == (40, 1)
    np.testing.assert_array_equal(np.abs(st.amplitude), st.level_amplitudes[st.kernel, 0])
    np.testing.assert_array_equal(st.amplitude > 0, st.polarity == 1)


@pytest.mark.parametrize("method", METHODS)
def test_rate_gives_round_rate_times_duration_spikes(speech, method):
    x, sr = speech
    for rate in (333.0, 1500.0):
        st = encode(x, sr, rate=rate, method=method)
        assert len(st) == round(rate * x.size / sr)
        assert st.config == ENCODERS[method](sr, rate=rate)


@pytest.mark.parametrize("method", METHODS)
def test_silent_input_gives_zero_spikes_with_a_warning(method):
    with pytest.warns(UserWarning, match="silent"):
        st = encode(np.zeros(4000), 8000, rate=1000, method=method)
    assert len(st) == 0 and st.n_samples == 4000
    assert decode(st).shape == (4000,) and not np.any(decode(st))
    assert decode_envelope(st).shape == (40, 51)


@pytest.mark.parametrize("bad, match", [(np.zeros((2, 100)), "1-D"), (np.array([]), "empty"),
                                        (np.array([0.0, np.nan, 1.0]), "NaN"), (np.array(["a", "b"]), "1-D")])
def test_bad_audio_is_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        encode(bad, 8000, rate=100, method="delta")


def test_unreachable_count_is_an_error_not_a_short_train(speech):
    x, sr = speech
    # A 10 ms refractory period allows at most 100 spikes/s in each of 4 channels.
    with pytest.raises(ValueError, match="cannot produce"):
        encode(x, sr, n_spikes=1000, kernels=4, refractory_ms=10.0, method="lif")


def test_zero_spikes_requested_gives_an_empty_train(speech):
    x, sr = speech
    st = encode(x, sr, n_spikes=0, method="delta")
    assert len(st) == 0 and st.n_samples == x.size


# -- per-method properties --------------------------------------------------------------------------
@pytest.mark.parametrize("target", [50, 400, 3000])
def test_delta_staircase_stays_within_delta_of_the_envelope(speech, target):
    x, sr = speech
    st = encode(x, sr, n_spikes=target, method="delta")
    delta = st.level_amplitudes[0, 0]
    np.testing.assert_array_equal(st.amplitude, np.where(st.polarity == 1, delta, -delta))
    env = st.config.encoded_signal(x)
    stair = np.zeros_like(env)
    np.add.at(stair, (st.kernel, st.samples), st.amplitude)
    stair = np.cumsum(stair, axis=1)
    # Exact up to the last spike (a surplus, if any, was cut after it).
    before = np.arange(x.size) < st.samples[-1]
    err = np.abs(stair - env)[:, before]
    assert err.max() < delta * (1 + 1e-9)
    # The staircase sampled at frame centres is decode_envelope, within delta of the cochleagram.
    frames = decode_envelope(st)
    ref = _cochleagram(x, st.config)
    centres = np.arange(ref.shape[1]) * 80
    ok = centres < st.samples[-1]
    assert np.abs(frames - ref)[:, ok].max() < delta * (1 + 1e-5) + 1e-6 * ref.max()


def test_delta_envelope_is_the_smoothed_hair_cell_output_at_frame_centres(speech):
    x, sr = speech
    cfg = DeltaConfig(sr, n_spikes=10)
    env = cfg.encoded_signal(x)
    ref = _cochleagram(x, cfg)
    centres = np.arange(ref.shape[1]) * 80
    ok = centres < x.size
    np.testing.assert_allclose(env[:, centres[ok]], ref[:, ok], rtol=1e-6, atol=1e-7 * ref.max())


def test_bsa_bands_sum_to_the_signal_and_decode_improves_with_spikes():
    x = _tones()
    cfg = BSAConfig(8000, n_spikes=1)
    np.testing.assert_allclose(cfg.encoded_signal(x).sum(axis=0), x, atol=1e-9)
    snrs = [snr_db(x, decode(encode(x, 8000, rate=r, method="bsa"))) for r in (1000, 4000)]
    assert snrs[0] > 0
    assert snrs[1] > snrs[0] + 2


def test_bsa_decode_is_spikes_convolved_with_the_filters(speech):
    x, sr = speech
    st = encode(x, sr, rate=2000, method="bsa")
    assert set(np.unique(st.polarity)) == {0, 1}  # ON and OFF spikes for the signed band waveforms
    one = SpikeTrain(st.samples[:1], st.kernel[:1], st.level[:1], st.polarity[:1], st.amplitude[:1], st.level_amplitudes,
                     st.config, st.n_samples)
    y = decode(one)  # a single spike is one Hann bump of the spike's amplitude
    nz = np.flatnonzero(np.abs(y) > 1e-9)  # FFT convolution leaves ~1e-17 elsewhere
    assert nz[0] == st.samples[0]
    assert np.max(np.abs(y)) == pytest.approx(abs(st.amplitude[0]))
    np.testing.assert_allclose(y[nz], y[nz][::-1])  # symmetric
    assert snr_db(x, decode(st)) > 0


def test_poisson_is_reproducible_by_seed_and_follows_the_cochleagram(speech):
    x, sr = speech
    a = encode(x, sr, n_spikes=20000, seed=3, method="poisson")
    assert a == encode(x, sr, n_spikes=20000, seed=3, method="poisson")
    b = encode(x, sr, n_spikes=20000, seed=4, method="poisson")
    assert not (np.array_equal(a.samples, b.samples) and np.array_equal(a.kernel, b.kernel))  # configs differ anyway
    ref = _cochleagram(x, a.config)
    counts = np.bincount(a.kernel, minlength=40)
    assert np.corrcoef(counts, ref.sum(axis=1))[0, 1] > 0.95
    per_frame = np.bincount(np.minimum(np.round(a.samples / 80).astype(int), ref.shape[1] - 1), minlength=ref.shape[1])
    assert np.corrcoef(per_frame, ref.sum(axis=0))[0, 1] > 0.9
    assert np.all(a.amplitude == pytest.approx(a.config.encoded_signal(x).sum() / 20000))


def test_poisson_never_fires_where_the_rate_is_zero():
    x = np.zeros(8000)
    x[4000:4400] = np.sin(2 * np.pi * 1000 * np.arange(400) / 8000)
    st = encode(x, 8000, n_spikes=500, method="poisson")
    rate = st.config.encoded_signal(x)
    assert np.all(rate[st.kernel, st.samples] > 0)
    assert st.samples.min() >= 4000


def test_lif_fires_more_in_louder_channels_and_respects_the_refractory_period(speech):
    x, sr = speech
    st = encode(x, sr, rate=4000, refractory_ms=2.0, method="lif")
    for c in np.unique(st.kernel):
        assert np.diff(st.samples[st.kernel == c]).min() > 16  # 2 ms at 8 kHz, no spike while refractory
    counts = np.bincount(st.kernel, minlength=40)
    assert np.corrcoef(counts, st.config.encoded_signal(x).sum(axis=1))[0, 1] > 0.8
    assert np.all(st.polarity == 1) and st.n_channels == 40


@pytest.mark.parametrize("method", METHODS)
def test_envelope_reconstruction_improves_with_spikes(speech, method):
    x, sr = speech
    lo, hi = (envelope_snr_db(encode(x, sr, rate=r, method=method), x) for r in (500, 4000))
    assert hi > lo + 2 and hi > 3


@pytest.mark.parametrize("method", ["delta", "lif", "poisson"])
def test_envelope_codes_decode_to_audio_at_the_right_frequency(method):
    sr = 8000
    x = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)
    y = decode(encode(x, sr, rate=2000, method=method))
    assert y.shape == x.shape
    peak = np.fft.rfftfreq(sr, 1 / sr)[np.argmax(np.abs(np.fft.rfft(y)))]
    assert abs(peak - 1000) < 50
    if method != "poisson":  # the Poisson envelope is too noisy for the inverted compression to keep the level
        assert 0.5 < y.std() / x.std() < 2


def test_envelope_snr_compares_spiketrum_on_the_same_cochleagram(speech):
    x, sr = speech
    st = encode(x, sr, rate=2000)
    cfg = DeltaConfig(sr, n_spikes=0)  # the default 40 channels and 25 ms frames
    expect = snr_db(_cochleagram(x, cfg), _cochleagram(decode(st, exact=True), cfg))
    assert envelope_snr_db(st, x) == pytest.approx(expect, rel=1e-6)
    assert decode_envelope(st).shape == (40, 1 + x.size // 80)
    assert envelope_snr_db(encode(x, sr, rate=4000), x) > envelope_snr_db(st, x)
    with pytest.raises(ValueError, match="samples"):
        envelope_snr_db(st, x[:-1])


# -- files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_is_bit_exact(speech, tmp_path, method):
    x, sr = speech
    cfg = make_config(method, sr, rate=800, kernels=20, **{"lif": {"tau_ms": 7.5}, "poisson": {"seed": 2}}.get(method, {}))
    st = cfg.encode(x, sr)
    st.save(tmp_path / "s.npz")
    back = SpikeTrain.load(tmp_path / "s.npz")
    assert back == st
    assert type(back.config) is type(cfg) and back.config == st.config and back.meta == st.meta
    for k in ("samples", "kernel", "level", "polarity", "amplitude", "level_amplitudes"):
        assert getattr(back, k).dtype == getattr(st, k).dtype
    np.testing.assert_array_equal(back.channels, st.channels)
    np.testing.assert_array_equal(decode_envelope(back), decode_envelope(st))


def test_load_rejects_a_baseline_file_with_a_bad_config(speech, tmp_path):
    x, sr = speech
    encode(x, sr, n_spikes=100, method="delta").save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as z:
        arrays = dict(z)
    header = json.loads(bytes(arrays["header"]).decode())
    for config, match in [(dict(header["config"], encoder="bogus"), "unknown encoder 'bogus'"),
                          (dict(header["config"], kernels=3), "codebook shape"),
                          ([1, 2], "corrupt")]:
        arrays["header"] = np.frombuffer(json.dumps(dict(header, config=config)).encode(), np.uint8)
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(InputError, match=match):
            SpikeTrain.load(tmp_path / "bad.npz")
