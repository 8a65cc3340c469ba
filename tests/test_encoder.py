import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st
from mp_oracle import slow_mp

from spiketrum import ENCODERS, InputError, SpikeTrain, SpiketrumConfig, config_from_json, decode, encode, metrics
from spiketrum.encoder import cross_correlations, dictionary


def _speechlike(rng, n, sr):
    t = np.arange(n) / sr
    return np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.3 * rng.standard_normal(n)


@pytest.mark.parametrize("floor", [None, -40.0])
def test_cross_correlation_table_against_direct_sums(floor):
    phi, lengths = dictionary(8000, 6, 100.0, 3000.0, -40.0)
    h, start, lo, length = cross_correlations(8000, 6, 100.0, 3000.0, -40.0, floor)
    eps = 0.0 if floor is None else 10 ** (floor / 20)
    for k in range(6):
        for m in range(6):
            for d in range(-(lengths[m] - 1), lengths[k]):  # every lag where the atoms overlap
                direct = sum(phi[k, t] * phi[m, t - d] for t in range(max(0, d), lengths[k]) if t - d < lengths[m])
                j = d - lo[k, m]
                if 0 <= j < length[k, m]:
                    assert h[start[k, m] + j] == pytest.approx(direct, abs=1e-12)
                else:  # only negligible terms may be left out, and none at all by the exact table
                    assert abs(direct) <= eps + 1e-12
    assert np.all(length[np.arange(6), np.arange(6)] > 0)
    np.testing.assert_allclose(h[start[np.arange(6), np.arange(6)] - lo[np.arange(6), np.arange(6)]], 1.0, rtol=1e-12)


@pytest.mark.parametrize("gains", [None, [1.0, 0.5, 2.0, 1.0, 0.0, 1.5, 1.0, 0.8]])
def test_fast_encoder_equals_slow_oracle_spike_for_spike(rng, gains):
    sr, n = 8000, 2400
    x = rng.standard_normal(n)
    st = encode(x, sr, n_spikes=120, kernels=8, fmin=100.0, fmax=3000.0, floor_db=-40.0, gains=gains, mode="exact")
    phi, lengths = dictionary(sr, 8, 100.0, 3000.0, -40.0)
    ref, energies, _ = slow_mp(x, phi, lengths, 120, gains)
    emitted = sorted(zip(st.samples.tolist(), st.kernel.tolist(), st.amplitude.tolist()))
    expect = sorted((tau, m, s) for m, tau, s in ref)
    assert [(t, m) for t, m, _ in emitted] == [(t, m) for t, m, _ in expect]
    np.testing.assert_allclose([a for *_, a in emitted], [a for *_, a in expect], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(st.residual_energy, energies, rtol=1e-9)


def test_residual_energy_never_increases(rng):
    x = _speechlike(rng, 8000, 16000)
    st = encode(x, 16000, n_spikes=400)
    e = np.concatenate([[x @ x], st.residual_energy])
    assert np.all(np.diff(e) <= 1e-12 * e[0])
    # the decoded residual is no larger than what pursuit tracked (tails past the end are cut off)
    assert np.sum((x - decode(st, exact=True)) ** 2) <= e[-1] * (1 + 1e-9)


def test_recovers_fifty_known_atoms():
    sr, kernels = 16000, 40
    phi, lengths = dictionary(sr, kernels, 100.0, 7000.0, -60.0)
    rng = np.random.default_rng(7)
    gap = phi.shape[1] + 50
    truth = []
    x = np.zeros(50 * gap + gap)
    for i in range(50):
        m, tau = int(rng.integers(kernels)), i * gap + int(rng.integers(40))
        a = float(rng.choice([-1, 1]) * rng.uniform(0.2, 3.0))
        x[tau : tau + lengths[m]] += a * phi[m, : lengths[m]]
        truth.append((tau, m, a))
    st = encode(x, sr, n_spikes=50, kernels=kernels, fmin=100.0, fmax=7000.0)
    got = list(zip(st.samples.tolist(), st.kernel.tolist(), st.amplitude.tolist()))
    assert [(t, m) for t, m, _ in got] == [(t, m) for t, m, _ in truth]
    assert max(abs(a - b) for (*_, a), (*_, b) in zip(got, truth)) < 1e-6


@given(k=st.integers(0, 300), rate=st.floats(10, 3000), seconds=st.floats(0.05, 0.6))
def test_spike_count_is_exact(k, rate, seconds):
    sr = 8000
    x = np.random.default_rng(k).standard_normal(int(seconds * sr))
    assert len(encode(x, sr, n_spikes=k, kernels=10)) == k
    assert len(encode(x, sr, rate=rate, kernels=10)) == round(rate * x.size / sr)


@given(frame_ms=st.floats(2, 60), rate=st.floats(50, 3000))
def test_every_frame_holds_exactly_its_budget(frame_ms, rate):
    sr = 8000
    x = np.random.default_rng(1).standard_normal(3000)
    st_ = encode(x, sr, rate=rate, frame_ms=frame_ms, kernels=10)
    frame = max(1, int(round(frame_ms * sr / 1000)))
    edges = np.unique(np.minimum(np.arange(0, x.size + frame, frame), x.size))
    budget = np.diff(np.round(rate * edges / sr).astype(int))
    counts = np.histogram(st_.samples, bins=edges)[0]
    np.testing.assert_array_equal(counts, budget)
    assert len(st_) == round(rate * x.size / sr)


def test_snr_target_stops_as_soon_as_reached(rng):
    x = _speechlike(rng, 4000, 8000)
    st = encode(x, 8000, snr_db=15.0, kernels=20)
    e0 = x @ x
    assert 10 * np.log10(e0 / st.residual_energy[-1]) >= 15.0
    assert 10 * np.log10(e0 / st.residual_energy[-2]) < 15.0


def test_real_speech_snr_rises_with_rate(fsdd_wav):
    x, sr = sf.read(fsdd_wav)
    snrs = [metrics.snr_db(x, decode(encode(x, sr, rate=r), exact=True)) for r in (250, 500, 1000, 2000, 4000)]
    assert all(b > a for a, b in zip(snrs, snrs[1:])), snrs
    assert snrs[2] > 15  # 1000 spikes/s on 8 kHz speech


def test_emphasis_tilts_the_selection_gains_by_octaves_and_moves_spikes_up_the_kernels(fsdd_wav):
    base = SpiketrumConfig(sr=8000, rate=1000, gains=tuple(np.linspace(0.5, 1.5, 40)))
    f = base.center_freqs()
    for db in (-3.0, 3.0, 6.0):
        g = np.asarray(base.with_emphasis(db).gains) / np.asarray(base.gains)
        octaves = np.log2(f[:, None] / f[None, :])  # every pair of kernels
        np.testing.assert_allclose(20 * np.log10(g[:, None] / g[None, :]), db * octaves, atol=1e-9)
        np.testing.assert_allclose(g[np.argmin(abs(f - 1000))], 10 ** (db / 20 * np.log2(f[np.argmin(abs(f - 1000))] / 1000)))
    warped = dataclasses.replace(base, warp=1.1)
    assert warped.with_emphasis(3.0).gains == base.with_emphasis(3.0).gains  # a channel keeps its gain under warp
    assert base.with_emphasis(0.0) is base
    with pytest.raises(ValueError, match="emphasis"):
        base.with_emphasis(np.nan)
    x, sr = sf.read(fsdd_wav)
    high = []
    for db in (0.0, 3.0, 6.0):
        st = SpiketrumConfig(sr=sr, rate=1000).with_emphasis(db).encode(x, sr)
        assert len(st) == round(1000 * x.size / sr)  # the rate stays exact
        high.append(np.mean(np.asarray(f)[st.kernel] > 1000))
    assert high[0] < high[1] < high[2], high


def test_silence_gives_zero_spikes_and_a_warning():
    with pytest.warns(UserWarning, match="silent"):
        st = encode(np.zeros(4000), 8000, rate=1000)
    assert len(st) == 0
    np.testing.assert_array_equal(decode(st), np.zeros(4000))


@pytest.mark.parametrize(
    "kw",
    [dict(rate=0), dict(rate=-5), dict(rate=np.nan), dict(n_spikes=-1), dict(n_spikes=2.5), dict(rate=100, n_spikes=4),
     dict(), dict(frame_ms=10), dict(rate=100, snr_db=10), dict(rate=100, kernels=0), dict(rate=100, levels=0),
     dict(rate=100, fmax=5000), dict(rate=100, fmin=0), dict(rate=100, gains=[1, 2]), dict(rate=100, warp=0.4),
     dict(rate=100, warp=np.nan)],
)
def test_bad_configuration_raises(kw):
    with pytest.raises(ValueError):
        encode(np.ones(800), 8000, **kw)


@pytest.mark.parametrize("x", [np.array([]), np.array([1.0, np.nan]), np.ones((2, 100)), np.array(["a"])])
def test_bad_audio_raises(x):
    with pytest.raises(ValueError):
        encode(x, 8000, rate=100)


def test_channels_place_code(rng):
    x = rng.standard_normal(4000)
    st = encode(x, 8000, n_spikes=200, kernels=12, levels=3)
    assert st.channels.max() < st.n_channels == 12 * 3 * 2
    np.testing.assert_array_equal(st.channels, (st.kernel * 3 + st.level) * 2 + st.polarity)
    np.testing.assert_array_equal(st.polarity == 1, st.amplitude > 0)
    folded = encode(x, 8000, n_spikes=200, kernels=12, levels=3, polarity_channels=False)
    assert folded.n_channels == 36 and folded.channels.max() < 36
    assert np.all(np.diff(st.times) >= 0)


@pytest.mark.parametrize("factor", [0.9, 1.12])
def test_warping_the_kernels_and_the_tone_together_keeps_its_place(factor):
    # A tone at a kernel's warped centre frequency, encoded with that warp, lands on the same kernel as the
    # unwarped tone with the unwarped encoder: warping the encoder is warping the voice.
    cfg = SpiketrumConfig(sr=8000, n_spikes=200)
    warped = dataclasses.replace(cfg, warp=factor)
    k = 20
    assert warped.center_freqs()[k] == pytest.approx(factor * cfg.center_freqs()[k], rel=1e-12)
    t = np.arange(4000) / 8000
    place = [np.bincount(c.encode(np.sin(2 * np.pi * c.center_freqs()[k] * t), 8000).kernel).argmax() for c in (cfg, warped)]
    assert place == [k, k]
    moved = np.bincount(warped.encode(np.sin(2 * np.pi * cfg.center_freqs()[k] * t), 8000).kernel).argmax()
    assert moved != k  # the unwarped tone moves: down the kernels for factor > 1
    assert (moved < k) == (factor > 1)
    assert SpiketrumConfig.from_json(warped.to_json()) == warped


def test_dense_and_events(rng):
    st = encode(rng.standard_normal(8000), 16000, rate=2000)
    dense = st.to_dense(1.0)
    assert dense.shape == (500, st.n_channels) and dense.sum() == len(st)
    ev = st.to_events()
    assert ev.dtype.names == ("t", "x", "p") and np.all(np.diff(ev["t"]) >= 0)
    assert st.to_dense(1.0, torch=True).sum().item() == len(st)
    assert np.array_equal(st.to_dense(4), st.to_dense(4.0)) and st.to_dense(4).shape == (125, st.n_channels)
    with pytest.raises(ValueError, match="dt_ms"):
        st.to_dense(0)


def test_save_load_roundtrip_is_bit_exact(rng, tmp_path):
    st = encode(rng.standard_normal(4000), 8000, rate=1500, gains=[1.0] * 40)
    st.save(tmp_path / "a.npz")
    back = SpikeTrain.load(tmp_path / "a.npz")
    assert back == st and back.config == st.config
    assert back.residual_energy is None and back.meta == st.meta
    np.testing.assert_array_equal(decode(back), decode(st))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_load_rejects_future_tampered_and_foreign_files(rng, tmp_path):
    st = encode(rng.standard_normal(2000), 8000, n_spikes=50)
    st.save(tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as z:
        arrays = dict(z)
    header = json.loads(bytes(arrays["header"]).decode())
    header["version"] = 99
    np.savez(tmp_path / "future.npz", **{**arrays, "header": np.frombuffer(json.dumps(header).encode(), np.uint8)})
    with pytest.raises(InputError, match="newer"):
        SpikeTrain.load(tmp_path / "future.npz")
    np.savez(tmp_path / "tampered.npz", **{**arrays, "kernel": arrays["kernel"] + 100})
    with pytest.raises(InputError, match="out of range"):
        SpikeTrain.load(tmp_path / "tampered.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError, match="junk.npz"):
        SpikeTrain.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(InputError, match="not a spiketrum"):
        SpikeTrain.load(tmp_path / "other.npz")


def test_config_json_roundtrip():
    cfg = SpiketrumConfig(sr=16000, rate=500.0, frame_ms=10.0, gains=tuple([1.0] * 40))
    assert SpiketrumConfig.from_json(cfg.to_json()) == cfg == config_from_json(cfg.to_json())
    assert json.loads(cfg.to_json())["encoder"] == "spiketrum"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rate = 3


def test_training_layout_merges_polarity(rng):
    cfg = SpiketrumConfig(sr=8000, n_spikes=100, kernels=8, levels=2)
    merged = cfg.for_training()
    assert merged.n_channels == cfg.n_channels // 2 == 16 and not merged.polarity_channels
    st = merged.encode(rng.standard_normal(2000), 8000)
    np.testing.assert_array_equal(st.channels, st.kernel * 2 + st.level)


def test_version_1_spike_file_loads_converted(rng, tmp_path):
    """A spike file written by spiketrum 0.1 (format 1, a "method" key in its config) still loads."""
    st = encode(rng.standard_normal(2000), 8000, n_spikes=40, kernels=8)
    st.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as z:
        arrays = dict(z)
    header = json.loads(bytes(arrays["header"]).decode())
    config = {k: v for k, v in header["config"].items() if k not in ("encoder", "config_version")}
    header.update(version=1, config={**config, "method": "spiketrum"})
    np.savez(tmp_path / "old.npz", **{**arrays, "header": np.frombuffer(json.dumps(header).encode(), np.uint8)})
    assert SpikeTrain.load(tmp_path / "old.npz") == st


def _residual_energy(x, st_):
    """||x - sum of atoms||^2 over the atoms' whole extent, tails past the end of x included."""
    cfg = st_.config
    phi, lengths = dictionary(cfg.sr, cfg.kernels, cfg.fmin, cfg.resolved_fmax, cfg.floor_db)
    r = np.concatenate([x, np.zeros(phi.shape[1])])
    for k, t, a in zip(st_.kernel, st_.samples, st_.amplitude):
        r[t : t + lengths[k]] -= a * phi[k, : lengths[k]]
    return r @ r


def _clips(data_root, n=3):
    fsdd = sorted((data_root / "fsdd" / "recordings").glob("*.wav"))[::600][:n]
    sc = sorted((data_root / "speech_commands_sample").glob("*/*.wav"))[::60][:n]
    return [sf.read(f) for f in fsdd + sc]


def test_fast_mode_keeps_the_snr_of_exact_pursuit_on_real_speech(data_root):
    deltas = []
    for x, sr in _clips(data_root):
        for rate in (500, 2000):
            fast, exact = encode(x, sr, rate=rate), encode(x, sr, rate=rate, mode="exact")
            assert len(fast) == len(exact) == round(rate * x.size / sr)
            deltas.append(metrics.snr_db(x, decode(fast, exact=True)) - metrics.snr_db(x, decode(exact, exact=True)))
    assert np.mean(deltas) > -0.1 and min(deltas) > -0.6, deltas


def test_fast_mode_resyncs_a_drifting_map_and_stays_consistent(fsdd_wav, monkeypatch):
    from spiketrum import encoder

    x, sr = sf.read(fsdd_wav)
    calls = []
    real = encoder._correlation_map
    monkeypatch.setattr(encoder, "_correlation_map", lambda *a, **k: calls.append(1) or real(*a, **k))
    coarse = encode(x, sr, rate=3000, xcorr_floor_db=-25.0)  # a table this coarse drifts within a few spikes
    assert len(calls) > 1 and len(coarse) == round(3000 * x.size / sr)
    # amplitudes come from the true residual, so the tracked residual energy is the decoded one
    np.testing.assert_allclose(_residual_energy(x, coarse), coarse.residual_energy[-1], rtol=1e-6)
    exact = encode(x, sr, rate=3000, mode="exact")
    assert metrics.snr_db(x, decode(coarse, exact=True)) > metrics.snr_db(x, decode(exact, exact=True)) - 1.0


def test_chunked_framed_pursuit_equals_whole_file(rng):
    sr = 8000
    x = _speechlike(rng, 3 * sr, sr)
    for mode in ("exact", "fast"):
        whole = encode(x, sr, rate=800, frame_ms=25, mode=mode)
        chunked = encode(x, sr, rate=800, frame_ms=25, mode=mode, chunk_s=0.4)  # 8 chunks; no frame straddles two
        edges = np.arange(0, x.size + 200, 200)
        np.testing.assert_array_equal(np.histogram(chunked.samples, edges)[0], np.histogram(whole.samples, edges)[0])
        if mode == "exact":  # the chunk's map, recomputed from the residual, is the one pursuit would have tracked
            np.testing.assert_array_equal(chunked.samples, whole.samples)
            np.testing.assert_array_equal(chunked.kernel, whole.kernel)
            np.testing.assert_allclose(chunked.amplitude, whole.amplitude, rtol=1e-6, atol=1e-9)
        else:  # a chunk boundary resyncs the fast map, so the paths may part, not the quality
            snr = [metrics.snr_db(x, decode(t, exact=True)) for t in (whole, chunked)]
            assert abs(snr[0] - snr[1]) < 0.2, snr


def test_chunked_count_rule_spreads_the_budget_exactly(rng):
    sr, chunk_s = 8000, 0.25
    x = _speechlike(rng, 9000, sr)
    st_ = encode(x, sr, n_spikes=333, chunk_s=chunk_s)
    edges = np.minimum(np.arange(0, x.size + 2000, 2000), x.size)
    edges = np.unique(edges)
    np.testing.assert_array_equal(np.histogram(st_.samples, bins=edges)[0], np.diff(np.round(333 * edges / x.size)))
    assert len(st_) == 333
    # pursuit continues across chunk boundaries on the true residual: the decoded error is what it tracked
    np.testing.assert_allclose(_residual_energy(x, st_), st_.residual_energy[-1], rtol=1e-6)


def test_levels_are_a_least_squares_quantiser_per_kernel(rng):
    from spiketrum.encoder import quantize_levels

    kernel = rng.integers(0, 5, 2000)
    amp = rng.choice([-1, 1], 2000) * rng.lognormal(0, 1, 2000)
    level, book = quantize_levels(kernel, amp, 6, 3)
    assert np.all(book[5] == 0)  # a kernel without spikes
    for m in range(5):
        sel = kernel == m
        a, lv = np.abs(amp[sel]), level[sel]
        order = np.argsort(a)
        assert np.all(np.diff(lv[order]) >= 0)  # larger amplitudes never get a lower level
        for j in range(3):  # centroid condition: each representative is the mean of its members
            assert book[m, j] == pytest.approx(a[lv == j].mean(), rel=1e-12)
        mid = (book[m, 1:] + book[m, :-1]) / 2  # nearest-neighbour condition
        np.testing.assert_array_equal(lv, np.searchsorted(mid, a))


def test_encode_dispatches_to_baselines_at_the_same_count(rng):
    x = _speechlike(rng, 4000, 8000)
    for method in ("delta", "lif", "bsa", "poisson"):
        st_ = encode(x, 8000, rate=600, method=method, kernels=16)
        assert len(st_) == 300 and st_.config.name == method and st_.config.kernels == 16
        assert type(st_.config) is ENCODERS[method] and decode(st_).shape == x.shape
    with pytest.raises(ValueError, match="spiketrum encoder has no option tau_ms"):
        encode(x, 8000, rate=600, tau_ms=5.0)
    with pytest.raises(ValueError, match="unknown encoder 'spikes'"):
        encode(x, 8000, rate=600, method="spikes")


def test_shd_export_holds_every_spike(rng, tmp_path):
    h5py = pytest.importorskip("h5py")
    st_ = encode(_speechlike(rng, 4000, 8000), 8000, rate=800)
    st_.to_shd_h5(tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5") as f:
        times, units = f["spikes/times"][:], f["spikes/units"][:]
        assert SpiketrumConfig.from_json(f.attrs["config"]) == st_.config
    np.testing.assert_array_equal(units, st_.channels)
    np.testing.assert_allclose(times, st_.times, rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]
