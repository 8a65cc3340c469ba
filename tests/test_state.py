"""State across calls: a sequence run in chunks equals one pass, gradients flow through the state; time in ms."""
import math

import pytest
import torch
from test_snn import RESETS, _params, make_inputs, reference

import snn
from snn import functional as F
from snn.models import ANN, SCBAMSNN

KINDS = ("lif", "alif", "rlif", "ralif", "li")
CHUNKS = (1, 7, 100)


@pytest.fixture(params=["numba", "torch"])
def path(request, monkeypatch):
    """The CPU kernels, or the loop of torch ops that runs on CUDA."""
    if request.param == "torch":
        monkeypatch.setattr(F, "_use_numba", lambda t: False)
    return request.param


def call(kind, x, weight, beta, threshold, rho, alpha, reset, state, surrogate="atan", slope=None):
    """One call: (spikes, membrane, state); spikes None for the leaky integrator."""
    if kind == "li":
        return (None, *F.li_sequence(x, beta, state))
    common = dict(threshold=threshold, reset=reset, surrogate=surrogate, slope=slope, return_membrane=True,
                  state=state)
    adapt = dict(rho=rho, alpha=alpha)
    return {"lif": lambda: F.lif_sequence(x, beta, **common),
            "alif": lambda: F.alif_sequence(x, beta, **adapt, **common),
            "rlif": lambda: F.rlif_sequence(x, weight, beta, **common),
            "ralif": lambda: F.ralif_sequence(x, weight, beta, **adapt, **common)}[kind]()


def chunked(kind, inputs, reset, chunk, state=None, **kw):
    x, *params = inputs
    spikes, membrane = [], []
    for t in range(0, x.shape[0], chunk):
        s, h, state = call(kind, x[t:t + chunk], *params, reset, state, **kw)
        spikes.append(s)
        membrane.append(h)
    return None if kind == "li" else torch.cat(spikes), torch.cat(membrane), state


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", KINDS)
def test_chunks_equal_one_pass(kind, reset, path):
    if kind == "li" and reset == "zero":
        pytest.skip("the leaky integrator has no reset")
    inputs = [t if t is None else t.detach()
              for t in make_inputs("lif" if kind == "li" else kind, 230, 3, 40, 11, torch.float32)]
    s, h, state = call(kind, *inputs, reset, None)
    assert kind == "li" or 0.02 < s.mean().item() < 0.6
    for chunk in CHUNKS:
        s2, h2, state2 = chunked(kind, inputs, reset, chunk)
        assert kind == "li" or torch.equal(s2, s)
        assert (h2 - h).abs().max().item() <= 1e-6
        for a, b in zip(flat(state2), flat(state)):
            assert (a - b).abs().max().item() <= 1e-6


def random_state(kind, B, N, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    v = (0.8 * torch.rand(B, N, generator=g, dtype=dtype)).requires_grad_()
    if kind == "li":
        return v
    a = torch.rand(B, N, generator=g, dtype=dtype).requires_grad_()
    s = (torch.rand(B, N, generator=g, dtype=dtype) < 0.4).to(dtype).requires_grad_()
    return F.NeuronState(v, a, s)


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", KINDS)
def test_state_gradients_match_reference_and_chain(kind, reset, path):
    """From a given state, with losses on spikes, membrane and every part of the final state: the gradients of
    the inputs, parameters and initial state equal the step-by-step reference's, and two chained calls give
    those of one call."""
    T, B, N = 13, 3, 20
    inputs = make_inputs("lif" if kind == "li" else kind, T, B, N, 5)
    state = random_state(kind, B, N, 3)

    def loss(s, h, final):
        parts = [h, *flat(final)] + ([] if s is None else [s])
        weights = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype)
                   for i, p in enumerate(parts)]
        return sum((p * w).sum() for p, w in zip(parts, weights))

    x, weight, beta, threshold, rho, alpha = inputs
    if kind == "li":
        u, v = [], state
        for t in range(T):
            v = beta * v + x[t]
            u.append(v)
        ref = (None, torch.stack(u), v)
        wrt = [x, beta, state]
    else:
        s_ref, h_ref, final = reference(*inputs, "alif" in kind, reset, "atan", 2.0, state=state, return_state=True)
        ref = (s_ref, h_ref, F.NeuronState(*final))
        wrt = [*_params(kind, *inputs).values(), *state]
    one = call(kind, *inputs, reset, state)
    assert kind == "li" or torch.equal(one[0], ref[0])
    grads_ref = torch.autograd.grad(loss(*ref), wrt, materialize_grads=True)
    grads = torch.autograd.grad(loss(*one), wrt, materialize_grads=True)
    two = chunked(kind, inputs, reset, 6, state)
    grads_two = torch.autograd.grad(loss(*two), wrt, materialize_grads=True)
    for a, b, c in zip(grads, grads_ref, grads_two):
        scale = max(1.0, b.abs().max().item())
        assert (a - b).abs().max().item() <= 1e-9 * scale
        assert (c - a).abs().max().item() <= 1e-9 * scale


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_through_two_chained_calls(kind):
    """Exact derivatives (a surrogate narrower than every membrane's distance to its threshold, as in
    test_snn.test_gradcheck_smooth_paths) through the state handed from one call to the next."""
    T, B, N, T1 = 8, 2, 5, 3
    for seed in range(200):
        inputs = make_inputs("lif" if kind == "li" else kind, T, B, N, seed)
        state = random_state(kind, B, N, seed)
        if kind == "li":
            break
        _, h, _ = reference(*inputs, "alif" in kind, "subtract", "atan", 2.0, state=state, return_state=True)
        x, weight, beta, threshold, rho, alpha = inputs
        a, margin, s = state.a, [], state.s
        for t in range(T):
            theta = threshold + alpha * a if "alif" in kind else threshold
            margin.append((h[t] - theta).abs().min().item())
            s = (h[t] > theta).double()
            a = rho * a + (1 - rho) * s
        if min(margin) > 1e-3:
            break
    else:
        pytest.fail("no input with a clear margin to the threshold")
    names = ("x", "weight", "beta", "threshold", "rho", "alpha")
    params = {"x": inputs[0], "beta": inputs[2]} if kind == "li" else _params(kind, *inputs)
    # not s: spikes are 0/1 (the kernels add the weights of the spiking neurons), so a finite difference
    # of s means nothing; its gradient is checked against the reference in the test above
    given = [state] if kind == "li" else [state.v, state.a]

    def f(*values):
        named = dict(zip(names, inputs))
        named.update(zip(params, values))
        init = values[len(params):]
        init = init[0] if kind == "li" else F.NeuronState(*init, state.s.detach())
        s1, h1, mid = call(kind, named["x"][:T1], *list(named.values())[1:], "subtract", init, "triangle", 1e4)
        s2, h2, last = call(kind, named["x"][T1:], *list(named.values())[1:], "subtract", mid, "triangle", 1e4)
        return (torch.cat([h1, h2]), *flat(last))

    assert torch.autograd.gradcheck(f, (*params.values(), *given), eps=1e-6, atol=1e-6)


def _models():
    return {"srnn": lambda: snn.SRNN(48, 5, hidden=(32, 24), threshold=0.5, dt=10.0),
            "srnn-lif-count": lambda: snn.SRNN(48, 5, hidden=(16,), adaptive=False, readout="count", threshold=0.5,
                                               dt=10.0),
            "conv": lambda: snn.ConvSNN(48, 5, channels=(4, 8), hidden=16, threshold=0.5, dt=10.0),
            "conv-alif": lambda: snn.ConvSNN(48, 5, in_maps=4, channels=(4,), hidden=None, adaptive=True,
                                             threshold=0.5, dt=10.0),
            "scbam": lambda: SCBAMSNN(48, 5, maps=(8,), dt=10.0),
            "scbam-temporal": lambda: SCBAMSNN(48, 5, maps=(8,), attention="temporal", dt=10.0),
            "seadlif": lambda: snn.SEAdLIFSNN(48, 5, hidden=(32, 24), dt=10.0),
            "delay": lambda: snn.DelaySNN(48, 5, hidden=(16,), max_delay_ms=50.0, dt=10.0)}


@pytest.mark.parametrize("name", list(_models()))
def test_model_steps_in_chunks_equal_one_pass(name):
    torch.manual_seed(0)
    model = _models()[name]().eval()
    x = (torch.rand(230, 3, 48) < 0.2).float()
    with torch.no_grad():
        u, state = model.steps(x)
        assert torch.allclose(model.readout.reduce(u, None), model(x))
        for chunk in CHUNKS:
            out, st = [], None
            for t in range(0, 230, chunk):
                v, st = model.steps(x[t:t + chunk], st)
                out.append(v)
            assert (torch.cat(out) - u).abs().max().item() <= 1e-6
            assert len(st) == len(state)
            # every layer's last spikes agree (a ConvLSTM's state starts with them)
            for a, b in zip(st[:-1], state[:-1]):
                assert torch.equal(*(s.s if isinstance(s, F.NeuronState) else s[0] for s in (a, b)))


def test_model_torch_path_in_chunks(monkeypatch):
    monkeypatch.setattr(F, "_use_numba", lambda t: False)
    test_model_steps_in_chunks_equal_one_pass("srnn")
    test_model_steps_in_chunks_equal_one_pass("conv")


def test_model_gradients_through_state():
    """Training on a sequence in two chained halves gives the gradients of one pass."""
    torch.manual_seed(1)
    model = snn.SRNN(12, 3, hidden=(16,), threshold=0.5, dt=10.0).double()
    x = (torch.rand(40, 2, 12) < 0.3).double()
    u, _ = model.steps(x)
    one = torch.autograd.grad(u.square().sum(), list(model.parameters()))
    u1, st = model.steps(x[:17])
    u2, _ = model.steps(x[17:], st)
    two = torch.autograd.grad(torch.cat([u1, u2]).square().sum(), list(model.parameters()))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(one, two))


def test_ann_steps():
    torch.manual_seed(2)
    model = ANN(12, 3, hidden=(8, 8), dt=10.0)
    x = (torch.rand(30, 2, 12) < 0.3).float()
    with torch.no_grad():
        u, _ = model.steps(x)
        u1, st = model.steps(x[:11])
        u2, _ = model.steps(x[11:], st)
    assert torch.allclose(torch.cat([u1, u2]), u, atol=1e-6) and torch.allclose(u.mean(0), model(x))


def test_bad_state_is_refused():
    x = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="state.v"):
        F.lif_sequence(x, state=F.NeuronState(*(torch.zeros(1, 4),) * 3))
    with pytest.raises(ValueError, match="entries"):
        snn.SRNN(4, 2, hidden=(8,), dt=10.0).steps(x, state=(None,))


# -- time in milliseconds -----------------------------------------------------------------------
def _decays(model):
    """(module, per-bin decay, time constant in ms) of every decay in ``model``, by the defaults it was built with."""
    from snn.layers import TAU_ADAPT, TAU_MEM, TAU_OUT

    out = []
    for m in model.modules():
        if isinstance(m, (snn.LIF, snn.ALIF)):
            readout = m is getattr(getattr(model, "readout", None), "integrator", None)
            out.append((m.beta, TAU_OUT if readout else TAU_MEM))
            if isinstance(m, snn.ALIF):
                out.append((m.rho, TAU_ADAPT))
        elif isinstance(m, snn.LI):
            out.append((m.beta, TAU_OUT))
    return out


@pytest.mark.parametrize("make", [lambda dt: snn.SRNN(8, 3, hidden=(6,), dt=dt),
                                  lambda dt: snn.ConvSNN(12, 3, channels=(4,), hidden=5, adaptive=True, dt=dt),
                                  lambda dt: snn.SRNN(8, 3, hidden=(6,), adaptive=False, readout="count", dt=dt),
                                  lambda dt: SCBAMSNN(12, 3, maps=(4,), dt=dt)])
def test_time_constants_in_ms(make):
    fine, coarse = make(5.0), make(10.0)
    assert fine.dt == 5.0 and coarse.dt == 10.0
    pairs = list(zip(_decays(fine), _decays(coarse)))
    assert pairs
    for (b5, tau), (b10, _) in pairs:
        assert torch.equal(b5, torch.full_like(b5, math.exp(-5.0 / tau)))
        assert torch.equal(b10, torch.full_like(b10, math.exp(-10.0 / tau)))
        assert (b5.double() ** 2 - b10.double()).abs().max().item() <= 1e-7  # the same decay per ms


def test_default_time_constants_keep_the_trained_decays():
    """At 10 ms bins the defaults are the former 20, 200 and 20 bins, bit for bit."""
    model = snn.SRNN(8, 3, hidden=(6,), dt=10.0)
    old = {"beta": math.exp(-1 / 20), "rho": math.exp(-1 / 200)}
    neurons = model.neurons[0]
    assert torch.equal(neurons.beta, torch.full((6,), old["beta"]))
    assert torch.equal(neurons.rho, torch.full((6,), old["rho"]))
    assert torch.equal(model.readout.integrator.beta, torch.full((3,), old["beta"]))


def test_dt_is_required_and_checked():
    with pytest.raises(TypeError, match="dt"):
        snn.SRNN(8, 3)
    with pytest.raises(ValueError, match="dt"):
        snn.LIF(3, dt=0.0)
    with pytest.raises(ValueError, match="time constants"):
        snn.LIF(3, dt=1.0, tau_mem=-5.0)


def test_version_1_model_files_load_with_time_constants_in_ms(tmp_path):
    """Files saved before time was in ms hold time constants in bins and no dt: loading converts them."""
    from spiketrum import make_config
    from spiketrum.app import kws

    enc = make_config("spiketrum", 8000, rate=500).for_training()
    model = kws.build_model("srnn", enc.n_channels, 2, hidden=(8,), tau_mem=10.0, dt=20.0)
    torch.save({"format": kws.MODEL_FORMAT, "version": 1, "model_name": "srnn",
                "model_kwargs": {"hidden": (8,), "tau_mem": 0.5}, "state_dict": model.state_dict(),
                "encoder": enc.to_json(), "dt": 0.02, "classes": ["a", "b"]}, tmp_path / "model.pt")
    run = kws.Run.load(tmp_path)
    assert run.model_kwargs == {"hidden": (8,), "tau_mem": 10.0, "tau_adapt": 4000.0, "tau_out": 400.0, "dt": 20.0}
    assert run.model.dt == run.dt_ms == 20.0  # the defaults of version 1 were 200 and 20 bins
    run.save(tmp_path / "again.pt")
    assert kws.Run.load(tmp_path / "again.pt").model_kwargs == run.model_kwargs


@pytest.mark.parametrize("name", ["srnn", "conv", "srnn-scbam", "ann", "seadlif", "delay"])
def test_a_model_refuses_spikes_binned_at_another_dt(name):
    from spiketrum.app.kws import build_model

    model = build_model(name, 12, 3, dt=10.0, **({"in_maps": 3} if name in ("conv", "srnn-scbam") else {}))
    x = torch.zeros(5, 2, 12)
    assert model(x, dt=10.0).shape == (2, 3) and model.steps(x, dt=10)[0].shape == (5, 2, 3)
    for call in (lambda: model(x, dt=5.0), lambda: model.steps(x, dt=1.0)):
        with pytest.raises(ValueError, match="binned at .* ms, this model was built for 10 ms bins"):
            call()
