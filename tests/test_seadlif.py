"""SE-adLIF (symplectic-Euler adaptive LIF, Baronig et al. 2025): fused kernels against a step-by-step
reference, gradients, the torch path, state across calls, the layer and the model."""
import doctest
import math

import pytest
import torch
from test_snn import _RefSpike

import snn
from snn import functional as F
from snn import layers as L
from snn import models as M

RESETS = ("zero", "subtract")
SURROGATES = ("fast_sigmoid", "atan", "triangle")
SLOPES = {"fast_sigmoid": 25.0, "atan": 2.0, "triangle": 1.0}


@pytest.fixture(params=["numba", "torch"])
def path(request, monkeypatch):
    """The CPU kernels, or the loop of torch ops that runs on CUDA."""
    if request.param == "torch":
        monkeypatch.setattr(F, "_use_numba", lambda t: False)
    return request.param


# -- step-by-step reference, written from the paper's equations, autograd through a surrogate spike ------------
def reference(x, weight, alpha, beta, a, b, threshold, reset, surrogate="atan", k=2.0, state=None):
    """Spikes, pre-reset membrane [T, B, N] and the final (u, w, s) from ``state`` (zeros when None)."""
    u, w, s = (torch.zeros_like(x[0]),) * 3 if state is None else state
    spikes, membrane = [], []
    for t in range(x.shape[0]):
        current = x[t] if weight is None else x[t] + s @ weight.t()
        h = alpha * u + (1 - alpha) * (current - w)
        s = _RefSpike.apply(h - threshold, surrogate, k)
        z = s.detach()  # the reset is outside the gradient, as in the paper
        u = h * (1 - z) if reset == "zero" else h - threshold * z
        w = beta * w + (1 - beta) * (a * u + b * s)  # symplectic Euler: the new u
        spikes.append(s)
        membrane.append(h)
    return torch.stack(spikes), torch.stack(membrane), (u, w, s)


def make_inputs(T, B, N, seed, dtype=torch.float64, recurrent=True):
    """Input current, recurrent weight and per-neuron parameters that make neurons fire and adapt."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, lo=0.0, hi=1.0):
        return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=dtype)).requires_grad_()

    x = r(T, B, N, lo=-1.0, hi=4.0)
    weight = r(N, N, lo=-0.6, hi=0.6) if recurrent else None
    return dict(x=x, weight=weight, alpha=r(N, lo=0.6, hi=0.95), beta=r(N, lo=0.9, hi=0.99), a=r(N, lo=0.0, hi=4.0),
                b=r(N, lo=0.0, hi=15.0), threshold=r(N, lo=0.8, hi=1.2))


def fused(inputs, reset, surrogate="atan", k=None, state=None):
    return F.seadlif_sequence(**inputs, reset=reset, surrogate=surrogate, slope=k, return_membrane=True, state=state)


def detached(inputs):
    return {n: None if t is None else t.detach() for n, t in inputs.items()}


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("reset", RESETS)
def test_forward_matches_reference(recurrent, reset, path):
    inputs = make_inputs(60, 3, 37, 1, recurrent=recurrent)
    s, h, state = fused(detached(inputs), reset)
    s_ref, h_ref, (u, w, last) = reference(**detached(inputs), reset=reset)
    assert 0.05 < s.mean().item() < 0.6  # neurons fire, and not always
    assert torch.equal(s, s_ref)
    assert (h - h_ref).abs().max().item() <= 1e-9
    for got, want in zip(state, (u, w, last)):
        assert (got - want).abs().max().item() <= 1e-9


@pytest.mark.parametrize("recurrent", [False, True])
def test_float32_matches_reference(recurrent):
    inputs = detached(make_inputs(80, 2, 45, 2, torch.float32, recurrent))
    s, h, _ = fused(inputs, "zero")
    s_ref, h_ref, _ = reference(**inputs, reset="zero")
    if not recurrent:  # the same float operations in the same order: identical
        assert torch.equal(s, s_ref) and torch.equal(h, h_ref)
    else:  # the recurrent sum adds in another order than the matmul
        assert (s != s_ref).float().mean().item() <= 0.01
        first = int((s != s_ref).any(-1).any(-1).float().argmax()) if (s != s_ref).any() else len(s)
        assert (h[:first] - h_ref[:first]).abs().max().item() <= 1e-5


def _grads(out, inputs, state, seed):
    """Gradients of a random linear loss of spikes, membrane and final state w.r.t. inputs and initial state."""
    s, h, final = out
    parts = [s, h, *final]
    g = torch.Generator().manual_seed(seed)
    loss = sum((p * torch.randn(p.shape, generator=g, dtype=p.dtype)).sum() for p in parts)
    wrt = [t for t in inputs.values() if t is not None] + [t for t in (state or ()) if t.requires_grad]
    return torch.autograd.grad(loss, wrt, materialize_grads=True)


def random_state(B, N, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    u = (0.8 * torch.rand(B, N, generator=g, dtype=dtype)).requires_grad_()
    w = (0.5 * torch.rand(B, N, generator=g, dtype=dtype)).requires_grad_()
    s = (torch.rand(B, N, generator=g, dtype=dtype) < 0.4).to(dtype).requires_grad_()
    return F.NeuronState(u, w, s)


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("reset", RESETS)
def test_gradients_match_reference(recurrent, reset, surrogate, path):
    """Every gradient (input, recurrent weight, alpha, beta, a, b, threshold, initial u, w, s) equals autograd
    through the step-by-step reference."""
    inputs = make_inputs(17, 3, 11, 3, recurrent=recurrent)
    state = random_state(3, 11, 4)
    if not recurrent:
        state = F.NeuronState(state.v, state.a, state.s.detach())
    k = SLOPES[surrogate]
    ref = reference(**inputs, reset=reset, surrogate=surrogate, k=k, state=state)
    out = fused(inputs, reset, surrogate, k, state)
    assert torch.equal(out[0], ref[0])
    for got, want in zip(_grads(out, inputs, state, 5), _grads(ref, inputs, state, 5)):
        assert got.abs().max().item() > 0
        assert (got - want).abs().max().item() <= 1e-9 * max(1.0, want.abs().max().item())


def test_numba_path_equals_torch_path(monkeypatch):
    inputs = make_inputs(30, 4, 19, 6)
    state = random_state(4, 19, 7)
    numba_out = fused(inputs, "zero", state=state)
    numba_grads = _grads(numba_out, inputs, state, 8)
    monkeypatch.setattr(F, "_use_numba", lambda t: False)
    torch_out = fused(inputs, "zero", state=state)
    torch_grads = _grads(torch_out, inputs, state, 8)
    assert torch.equal(numba_out[0], torch_out[0])
    assert (numba_out[1] - torch_out[1]).abs().max().item() <= 1e-12
    for a, b in zip(numba_grads, torch_grads):
        assert (a - b).abs().max().item() <= 1e-10 * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("recurrent", [False, True])
def test_gradcheck(recurrent, path):
    """Exact derivatives where the spikes cannot flip: a surrogate narrower than every membrane's distance to
    its threshold (then the surrogate term vanishes and the rest is smooth)."""
    for seed in range(100):
        inputs = make_inputs(7, 2, 4, seed, recurrent=recurrent)
        _, h, _ = reference(**detached(inputs), reset="zero")
        if (h - inputs["threshold"].detach()).abs().min().item() > 1e-3:
            break
    else:
        pytest.fail("no input with a clear margin to the threshold")
    names = [n for n, t in inputs.items() if t is not None]
    state = random_state(2, 4, seed)

    def f(*values):
        named = dict(zip(names, values[:len(names)]))
        init = F.NeuronState(*values[len(names):], state.s.detach())
        s, h, last = F.seadlif_sequence(**named, reset="zero", surrogate="triangle", slope=1e4, return_membrane=True,
                                        state=init)
        return h, last.v, last.a

    assert torch.autograd.gradcheck(f, (*[inputs[n] for n in names], state.v, state.a), eps=1e-6, atol=1e-6)


def test_inference_path_equals_autograd_path():
    inputs = detached(make_inputs(25, 2, 9, 9))
    with torch.no_grad():
        s, h, st = fused(inputs, "zero")
    x = inputs["x"].clone().requires_grad_()
    s2, h2, st2 = fused({**inputs, "x": x}, "zero")
    assert torch.equal(s, s2) and torch.equal(h, h2.detach())
    assert all(torch.equal(a, b.detach()) for a, b in zip(st, st2))


@pytest.mark.parametrize("recurrent", [False, True])
def test_chunks_equal_one_pass(recurrent, path):
    inputs = detached(make_inputs(130, 3, 23, 10, torch.float32, recurrent))
    x = inputs.pop("x")
    s, h, state = F.seadlif_sequence(x, **inputs, return_membrane=True)
    for chunk in (1, 7, 130):
        parts, st = [], None
        for t in range(0, len(x), chunk):
            p, _, st = F.seadlif_sequence(x[t:t + chunk], **inputs, return_membrane=True, state=st)
            parts.append(p)
        assert torch.equal(torch.cat(parts), s)
        for a, b in zip(st, state):
            assert (a - b).abs().max().item() <= 1e-6


def test_gradients_through_two_chained_calls(path):
    inputs = make_inputs(20, 2, 8, 11)
    state = random_state(2, 8, 12)
    one = fused(inputs, "zero", state=state)
    x = inputs["x"]
    rest = {n: t for n, t in inputs.items() if n != "x"}
    s1, h1, mid = F.seadlif_sequence(x[:9], **rest, return_membrane=True, state=state)
    s2, h2, last = F.seadlif_sequence(x[9:], **rest, return_membrane=True, state=mid)
    two = (torch.cat([s1, s2]), torch.cat([h1, h2]), last)
    for a, b in zip(_grads(one, inputs, state, 13), _grads(two, inputs, state, 13)):
        assert (a - b).abs().max().item() <= 1e-10 * max(1.0, b.abs().max().item())


def test_input_validation():
    x = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="reset"):
        F.seadlif_sequence(x, reset="bogus")
    with pytest.raises(ValueError, match="recurrent weight"):
        F.seadlif_sequence(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="alpha"):
        F.seadlif_sequence(x, alpha=torch.ones(5))
    with pytest.raises(ValueError, match=r"\[T, B, N\]"):
        F.seadlif_sequence(torch.zeros(3, 4))


# -- layer and model -------------------------------------------------------------------------------------------
def test_layer_parameters_in_ranges_and_clamped():
    torch.manual_seed(0)
    layer = L.SEAdLIF(200, dt=10.0, tau_u=(20.0, 100.0), tau_w=(240.0, 1200.0), a=(0.0, 1.0), b=(0.0, 2.0), q=120.0)
    tau_u, tau_w = -10.0 / layer.alpha.double().log(), -10.0 / layer.beta.double().log()
    assert 20.0 - 1e-3 <= tau_u.min() and tau_u.max() <= 100.0 + 1e-3 and tau_u.std() > 10  # spread over the range
    assert 240.0 - 1e-2 <= tau_w.min() and tau_w.max() <= 1200.0 + 1e-2
    assert 0 <= layer.a.min() and layer.a.max() <= 1 and 0 <= layer.b.min() and layer.b.max() <= 2
    with torch.no_grad():  # pushed out of range by an optimiser: the forward clamps
        layer.alpha.fill_(0.999)
        layer.beta.fill_(0.1)
        layer.a.fill_(-3.0)
        layer.b.fill_(5.0)
    alpha, beta = layer.decays()
    assert torch.allclose(alpha, torch.full_like(alpha, math.exp(-10 / 100)))
    assert torch.allclose(beta, torch.full_like(beta, math.exp(-10 / 240)))
    a, b = layer.couplings()
    assert torch.equal(a, torch.zeros_like(a)) and torch.equal(b, torch.full_like(b, 240.0))
    assert layer.dt == 10.0 and set(dict(layer.named_parameters())) == {"alpha", "beta", "a", "b"}
    assert "weight" in dict(L.SEAdLIF(3, dt=10.0, recurrent=True).named_parameters())


def test_layer_gradients_reach_every_parameter():
    torch.manual_seed(1)
    layer = L.SEAdLIF(16, dt=10.0, recurrent=True)
    x = torch.rand(40, 3, 16) * 6
    s, _ = layer(x)
    assert s.sum() > 0
    s.sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("recurrent", [False, True])
def test_layer_chunks_equal_one_pass(recurrent, path):
    torch.manual_seed(2)
    layer = L.SEAdLIF(24, dt=10.0, recurrent=recurrent)
    x = torch.rand(150, 2, 24) * 8
    with torch.no_grad():
        s, h, state = layer(x, return_membrane=True)
        assert 0.01 < s.mean().item() < 0.6
        for chunk in (1, 11, 150):
            parts, st = [], None
            for t in range(0, 150, chunk):
                p, st = layer(x[t:t + chunk], st)
                parts.append(p)
            assert torch.equal(torch.cat(parts), s)
            assert all((a - b).abs().max().item() <= 1e-5 for a, b in zip(st, state))


def _model(**kw):
    return snn.SEAdLIFSNN(48, 5, hidden=(32, 24), dt=10.0, **kw)


def test_model_steps_in_chunks_equal_one_pass(path):
    torch.manual_seed(3)
    model = _model().eval()
    x = (torch.rand(230, 3, 48) < 0.3).float()
    with torch.no_grad():
        u, state = model.steps(x)
        assert torch.allclose(model.readout.reduce(u, None), model(x))
        for chunk in (1, 7, 230):
            out, st = [], None
            for t in range(0, 230, chunk):
                v, st = model.steps(x[t:t + chunk], st)
                out.append(v)
            assert (torch.cat(out) - u).abs().max().item() <= 1e-5
            assert len(st) == len(state) == 3
            assert all(torch.equal(a.s, b.s) for a, b in zip(st[:-1], state[:-1]))


def test_model_padding_does_not_change_logits():
    torch.manual_seed(4)
    model = _model().eval()
    x = (torch.rand(60, 2, 48) < 0.3).float()
    with torch.no_grad():
        both = model(x, lengths=torch.tensor([60, 35]))
        alone = model(x[:35, 1:])
    assert torch.allclose(both[1], alone[0], atol=1e-6)


def test_model_trains_on_a_separable_task():
    """Two balanced classes whose spikes come from different halves of the channels: a few Adam steps take the
    loss far below ln 2, the best a readout bias can do without the hidden spikes."""
    torch.manual_seed(5)
    model = snn.SEAdLIFSNN(20, 2, hidden=(32,), dt=10.0)
    labels = torch.arange(16) % 2
    rates = torch.where((torch.arange(20) < 10)[None, :] == (labels == 0)[:, None], 0.4, 0.02)
    x = (torch.rand(50, 16, 20) < rates).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        with M.record_activity(model) as act:
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert act.summary()["layers"]["hidden0"]["rate"] > 0.005  # the hidden layer is not silent
    assert loss.item() < 0.4 * math.log(2)
    assert torch.equal(logits.argmax(1), labels)


def test_model_activity_and_energy():
    torch.manual_seed(6)
    model = _model()
    x = (torch.rand(30, 2, 48) < 0.3).float()
    with M.record_activity(model) as act:
        model(x)
    summary = act.summary()
    layers = summary["layers"]
    assert set(layers) == {"input", "hidden0", "hidden1", "readout"}
    assert layers["input"]["synops_per_sample"] == x.sum().item() / 2 * 32
    assert layers["hidden0"]["state_updates_per_sample"] == L.SEAdLIF.STATE_UPDATES * 32 * 30
    assert act.energy()["uj"] > 0


def test_registered_as_a_kws_model_and_refused_by_nir():
    from snn.nir import NotExportable, check_exportable
    from spiketrum.app.kws import MODELS, build_model

    assert MODELS["seadlif"] is snn.SEAdLIFSNN
    model = build_model("seadlif", 12, 3, hidden=(8,), dt=10.0)
    assert model.dt == 10.0 and model(torch.zeros(5, 2, 12)).shape == (2, 3)
    with pytest.raises(NotExportable, match="SEAdLIFSNN: its SE-adLIF neurons have no NIR primitive"):
        check_exportable(model)


def test_cli_offers_the_model():
    from spiketrum.app.cli import build_parser

    args = build_parser().parse_args(["train", "--dataset", "fsdd", "--data", "d", "-o", "o", "--model", "seadlif"])
    assert args.model == "seadlif"


def test_docstring_examples():
    for obj, module in ((F.seadlif_sequence, F), (L.SEAdLIF, L), (M.SEAdLIFSNN, M)):
        finder = doctest.DocTestFinder()
        runner = doctest.DocTestRunner()
        for test in finder.find(obj, globs=vars(module)):
            runner.run(test)
        assert runner.failures == 0 and runner.tries > 0
