import numpy as np
import pytest

from cochlea import cochleagram, erb_space, hair_cell
from cochlea.haircell import frame_means


def test_hair_cell_rectifies_and_compresses(rng):
    x = rng.standard_normal((3, 1000))
    np.testing.assert_array_equal(hair_cell(x, 16000, compression="none", cutoff=None), np.maximum(x, 0))
    np.testing.assert_allclose(hair_cell(x, 16000, exponent=0.5, cutoff=None), np.sqrt(np.maximum(x, 0)))
    np.testing.assert_allclose(hair_cell(x, 16000, compression="log", log_floor=0.1, cutoff=None), np.log1p(np.maximum(x, 0) / 0.1))


def test_hair_cell_lowpass_removes_fine_structure():
    sr = 16000
    t = np.arange(sr) / sr
    low, high = hair_cell(np.sin(2 * np.pi * 200 * t), sr), hair_cell(np.sin(2 * np.pi * 6000 * t), sr)
    # phase locking survives at 200 Hz, not at 6 kHz: only the DC of the rectified tone remains
    ripple = lambda y: np.ptp(y[sr // 2 :]) / y[sr // 2 :].mean()
    assert ripple(low) > 1.0 and ripple(high) < ripple(low) / 10


@pytest.mark.parametrize("kw", [dict(compression="cube"), dict(exponent=0.0), dict(cutoff=9000.0), dict(compression="log", log_floor=0)])
def test_hair_cell_bad_arguments(kw):
    with pytest.raises(ValueError):
        hair_cell(np.ones(10), 16000, **kw)


def test_frame_means_against_slow_reference(rng):
    a = rng.standard_normal((2, 997))
    hop, win = 37, 101
    got = frame_means(a, hop, win)
    ref = np.zeros((2, 1 + 997 // hop))
    pad = np.pad(a, ((0, 0), (win, win)))
    for k in range(ref.shape[1]):
        s = k * hop - win // 2 + win
        ref[:, k] = pad[:, s : s + win].sum(axis=1) / win
    np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("f0", [300.0, 1000.0, 3000.0])
def test_cochleagram_of_a_tone_peaks_at_its_channel(f0):
    sr = 16000
    x = np.sin(2 * np.pi * f0 * np.arange(sr) / sr)
    cf = erb_space(50, 7000, 48)
    C = cochleagram(x, sr, center_freqs=cf)
    assert C.shape == (48, 101)
    assert abs(np.log(cf[C[:, 10:-10].mean(axis=1).argmax()] / f0)) < 0.05


def test_cochleagram_real_speech(fsdd_wav):
    import soundfile as sf

    x, sr = sf.read(fsdd_wav)
    C = cochleagram(x, sr, n_channels=32)
    assert C.shape == (32, 1 + len(x) // int(sr * 0.01))
    assert np.all(np.isfinite(C))
    # speech energy sits below 1 kHz at 8 kHz sampling; the top channels are quieter
    assert C[:10].mean() > C[-5:].mean()


def test_cochleagram_batch():
    x = np.random.default_rng(0).standard_normal((2, 1600))
    C = cochleagram(x, 16000, n_channels=8)
    np.testing.assert_allclose(C[1], cochleagram(x[1], 16000, n_channels=8), rtol=1e-6)
