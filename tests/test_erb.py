import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cochlea import erb_bandwidth, erb_rate_to_hz, erb_space, hz_to_erb_rate, vtlp_warp


def test_bandwidth_is_glasberg_moore_with_slaney_constants():
    f = np.array([0.0, 100.0, 1000.0, 4000.0])
    np.testing.assert_allclose(erb_bandwidth(f), 24.7 + f / 9.26449, rtol=1e-15)


def test_erb_rate_is_integral_of_inverse_bandwidth():
    # d(erb_rate)/df == 1 / ERB(f): the defining property of the ERB-number scale
    f = np.linspace(20, 20000, 50)
    h = 1e-3
    deriv = (hz_to_erb_rate(f + h) - hz_to_erb_rate(f - h)) / (2 * h)
    np.testing.assert_allclose(deriv, 1 / erb_bandwidth(f), rtol=1e-7)
    assert hz_to_erb_rate(0.0) == 0.0


@given(st.floats(0, 1e5))
def test_erb_rate_roundtrip(f):
    assert erb_rate_to_hz(hz_to_erb_rate(f)) == pytest.approx(f, rel=1e-12, abs=1e-9)


@given(st.floats(1, 5000), st.floats(1.01, 20), st.integers(2, 200))
def test_erb_space_endpoints_ascending_uniform(fmin, ratio, n):
    fmax = fmin * ratio
    cf = erb_space(fmin, fmax, n)
    assert cf.shape == (n,) and cf[0] == fmin and cf[-1] == fmax
    assert np.all(np.diff(cf) > 0)
    steps = np.diff(hz_to_erb_rate(cf))
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-9)


def test_erb_space_matches_slaney_erbspace():
    # Slaney's ERBSpace (as in the gammatone package) is the same scale, descending and without fmax.
    from gammatone.filters import erb_space as slaney_erb_space

    ours = erb_space(100.0, 8000.0, 33)
    theirs = slaney_erb_space(100.0, 8000.0, 32)[::-1]
    np.testing.assert_allclose(ours[:-1], theirs, rtol=1e-12)


@pytest.mark.parametrize(
    "args",
    [(0, 100, 4), (100, 50, 4), (100, 100, 4), (-1, 100, 4), (50, np.nan, 4), (50, np.inf, 4), (50, 100, 0), (50, 100, 2.5), (50, 100, True)],
)
def test_erb_space_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        erb_space(*args)


def test_negative_and_nan_frequencies_rejected():
    for bad in (-1.0, np.nan):
        with pytest.raises(ValueError):
            erb_bandwidth(bad)
        with pytest.raises(ValueError):
            hz_to_erb_rate(bad)


@given(st.floats(0.5, 2.0), st.floats(100.0, 20000.0))
def test_vtlp_warp_scales_below_its_knee_and_keeps_the_top(factor, top):
    f = np.linspace(0.0, top, 2001)
    g = vtlp_warp(f, factor, top)
    knee = 0.8 * top * min(1.0, 1.0 / factor)
    below = f <= knee
    np.testing.assert_allclose(g[below], factor * f[below], rtol=1e-12)
    assert g[0] == 0.0 and g[-1] == pytest.approx(top, rel=1e-12)
    assert np.all(np.diff(g) > 0)  # monotonic, so kernels keep their order
    assert np.max(np.abs(np.diff(g))) <= max(factor, 1.0) * (f[1] - f[0]) * 5  # no jump at the knee
    np.testing.assert_array_equal(vtlp_warp(f, 1.0, top), f)


@pytest.mark.parametrize("args", [(100.0, 0.4, 4000.0), (100.0, np.nan, 4000.0), (5000.0, 1.1, 4000.0), (100.0, 1.1, -1.0)])
def test_vtlp_warp_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        vtlp_warp(*args)
