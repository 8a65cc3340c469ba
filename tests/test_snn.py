"""SNN core: fused neuron sequences against a naive autograd reference, gradchecks, layers, models."""
import doctest
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from snn import functional as F

RESETS = ("subtract", "zero")
SURROGATES = ("fast_sigmoid", "atan", "triangle")
KINDS = ("lif", "alif", "rlif", "ralif")


# -- naive reference: a python loop of torch ops, autograd through a surrogate spike -------------
def _sg(u, surrogate, k):
    """Surrogate derivatives written out from the spec, independently of snn.functional."""
    if surrogate == "fast_sigmoid":
        return 1.0 / (1.0 + k * u.abs()) ** 2
    if surrogate == "atan":
        return (k / 2) / (1.0 + (math.pi * k * u / 2) ** 2)
    return k * torch.relu(1.0 - k * u.abs())


class _RefSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, surrogate, k):
        ctx.save_for_backward(u)
        ctx.args = surrogate, k
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * _sg(u, *ctx.args), None, None


def reference(x, weight, beta, threshold, rho, alpha, adaptive, reset, surrogate, k, state=None,
              return_state=False):
    """Spikes and membrane [T, B, N] from ``state`` (v, a, s; zeros when None), and with
    ``return_state`` the final (v, a, s)."""
    v, a, s = (torch.zeros_like(x[0]),) * 3 if state is None else state
    spikes, membrane = [], []
    for t in range(x.shape[0]):
        theta = threshold + alpha * a if adaptive else threshold
        h = beta * v + x[t]
        if weight is not None:
            h = h + s @ weight.t()
        s = _RefSpike.apply(h - theta, surrogate, k)
        v = h * (1 - s) if reset == "zero" else h - theta * s
        if adaptive:
            a = rho * a + (1 - rho) * s
        spikes.append(s)
        membrane.append(h)
    out = torch.stack(spikes), torch.stack(membrane)
    return (*out, (v, a, s)) if return_state else out


SLOPES = {"fast_sigmoid": 25.0, "atan": 2.0, "triangle": 1.0}


def fused(kind, x, weight, beta, threshold, rho, alpha, reset, surrogate, k):
    common = dict(threshold=threshold, reset=reset, surrogate=surrogate, slope=k, return_membrane=True)
    adapt = dict(rho=rho, alpha=alpha)
    return {"lif": lambda: F.lif_sequence(x, beta, **common),
            "alif": lambda: F.alif_sequence(x, beta, **adapt, **common),
            "rlif": lambda: F.rlif_sequence(x, weight, beta, **common),
            "ralif": lambda: F.ralif_sequence(x, weight, beta, **adapt, **common)}[kind]()[:2]


def make_inputs(kind, T, B, N, seed, dtype=torch.float64, scale=0.8):
    """Input current and per-neuron parameters that make neurons fire, all requiring grad."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, lo=0.0, hi=1.0):
        return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=dtype)).requires_grad_()

    x = (scale * torch.randn(T, B, N, generator=g, dtype=dtype) + 0.3).requires_grad_()
    weight = ((0.3 * torch.randn(N, N, generator=g, dtype=dtype)).requires_grad_()
              if kind.startswith("r") else None)
    return x, weight, r(N, lo=0.5, hi=1.0), r(N, lo=0.6, hi=1.4), r(N, lo=0.8, hi=0.99), r(N, hi=2.0)


def _params(kind, x, weight, beta, threshold, rho, alpha):
    """The differentiable inputs of ``kind``, by name."""
    named = dict(x=x, beta=beta, threshold=threshold, weight=weight, rho=rho, alpha=alpha)
    return {k: v for k, v in named.items()
            if (k != "weight" or kind.startswith("r")) and (k not in ("rho", "alpha") or "alif" in kind)}


def check_against_reference(kind, reset, surrogate, T, B, N, seed, dtype=torch.float64, tol=1e-5):
    x, weight, beta, threshold, rho, alpha = make_inputs(kind, T, B, N, seed, dtype)
    k = SLOPES[surrogate] * (1.5 if seed % 2 else 1.0)  # default and non-default slopes
    s_ref, h_ref = reference(x, weight, beta, threshold, rho, alpha, "alif" in kind, reset, surrogate, k)
    s, h = fused(kind, x, weight, beta, threshold, rho, alpha, reset, surrogate, k)
    assert torch.equal(s, s_ref)
    # recurrent input: a sum over spiking neurons, in another order than the reference's matmul
    assert torch.equal(h, h_ref) if weight is None else torch.allclose(
        h, h_ref, rtol=0, atol=100 * torch.finfo(dtype).eps)
    # random output gradients on spikes and membrane exercise every backward path
    g = torch.Generator().manual_seed(seed + 1)
    gs, gh = (torch.randn(T, B, N, generator=g, dtype=dtype) for _ in range(2))
    params = _params(kind, x, weight, beta, threshold, rho, alpha)
    grads_ref = torch.autograd.grad((s_ref * gs).sum() + (h_ref * gh).sum(), list(params.values()),
                                    materialize_grads=True)
    grads = torch.autograd.grad((s * gs).sum() + (h * gh).sum(), list(params.values()),
                                    materialize_grads=True)
    for name, a, b in zip(params, grads, grads_ref):
        scale = max(1.0, b.abs().max().item())
        assert (a - b).abs().max().item() <= tol * scale, name
    return s


shapes = dict(T=st.integers(1, 12), B=st.integers(1, 3), N=st.integers(1, 70), seed=st.integers(0, 2**16))


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=12)
@given(**shapes)
def test_fused_matches_reference(kind, reset, surrogate, T, B, N, seed):
    check_against_reference(kind, reset, surrogate, T, B, N, seed)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=8)
@given(**shapes)
def test_torch_path_matches_reference(kind, T, B, N, seed):
    """The loop of torch ops that runs on CUDA, checked here on the CPU."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "_use_numba", lambda t: False)
        check_against_reference(kind, RESETS[seed % 2], SURROGATES[seed % 3], T, B, N, seed)


@pytest.mark.parametrize("numba_path", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_inference_path_equals_autograd_path(kind, numba_path, monkeypatch):
    """Under no_grad the neurons skip the autograd node; spikes and membrane must not change."""
    if not numba_path:
        monkeypatch.setattr(F, "_use_numba", lambda t: False)
    inputs = make_inputs(kind, 30, 2, 50, 3)
    s, h = fused(kind, *inputs, "zero", "atan", 2.0)
    assert s.grad_fn is not None and s.sum() > 0
    with torch.no_grad():
        s0, h0 = fused(kind, *inputs, "zero", "atan", 2.0)
    assert s0.grad_fn is None and torch.equal(s0, s) and torch.equal(h0, h)
    u, _ = F.li_sequence(inputs[0], inputs[2])
    with torch.no_grad():
        u0, _ = F.li_sequence(inputs[0], inputs[2])
    assert u.grad_fn is not None and u0.grad_fn is None and torch.equal(u0, u)


@pytest.mark.parametrize("kind", KINDS)
def test_broadcast_and_missing_output_gradients(kind):
    """loss = spikes.sum() hands backward a broadcast (stride 0) gradient; a loss on the membrane
    alone hands it none for the spikes. Both must give the reference's gradients."""
    inputs = make_inputs(kind, 20, 3, 40, 1)
    params = list(_params(kind, *inputs).values())
    s_ref, h_ref = reference(*inputs, "alif" in kind, "subtract", "atan", 2.0)
    s, h = fused(kind, *inputs, "subtract", "atan", 2.0)
    for loss, loss_ref in ((s.sum(), s_ref.sum()), (h.sum(), h_ref.sum())):
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        grads_ref = torch.autograd.grad(loss_ref, params, retain_graph=True, materialize_grads=True)
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(grads, grads_ref))


@pytest.mark.parametrize("kind", ["lif", "alif"])
def test_float32_spikes_identical(kind):
    """In float32 the kernels repeat the reference's roundings: spikes and membrane are bit-equal."""
    s = check_against_reference(kind, "subtract", "atan", 200, 4, 100, 7, torch.float32, tol=1e-4)
    assert 0.02 < s.mean().item() < 0.5


def test_recurrent_float32_close():
    s = check_against_reference("ralif", "zero", "fast_sigmoid", 60, 3, 80, 3, torch.float32, tol=1e-4)
    assert s.sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(kind):
    x, weight, beta, threshold, rho, alpha = make_inputs(kind, 30, 4, 50, 0)
    args = (x, weight, beta, threshold, rho, alpha, "subtract", "atan", 2.0)
    s_cpu, h_cpu = fused(kind, *args)
    cuda = [None if t is None else t.detach().cuda().requires_grad_() for t in args[:6]]
    s_gpu, h_gpu = fused(kind, *cuda, *args[6:])
    assert s_gpu.is_cuda and torch.equal(s_gpu.cpu(), s_cpu)
    assert torch.allclose(h_gpu.cpu(), h_cpu)


# -- gradcheck: with a triangle surrogate narrower than the distance of every membrane to its
# threshold, the surrogate term vanishes and the hand-written backward must equal the exact
# derivative of the (locally smooth) membrane through decay, reset, adaptation and recurrence.
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_smooth_paths(kind, reset):
    for seed in range(100):
        inputs = make_inputs(kind, 6, 2, 5, seed)
        x, weight, beta, threshold, rho, alpha = inputs
        s, h = fused(kind, *inputs, reset, "triangle", 1e4)
        # the threshold a spike was compared with: recompute the adaptation from the spikes
        a, margin = torch.zeros_like(x[0]), []
        for t in range(6):
            theta = threshold + alpha * a if "alif" in kind else threshold
            margin.append((h[t] - theta).abs().min().item())
            a = rho * a + (1 - rho) * s[t]
        if min(margin) > 1e-3 and 0 < s.mean() < 0.7:
            break
    else:
        pytest.fail("no input with a clear margin to the threshold")
    params = _params(kind, *inputs)

    def f(*values):
        named = dict(zip(("x", "weight", "beta", "threshold", "rho", "alpha"), inputs))
        named.update(zip(params, values))
        return fused(kind, *named.values(), reset, "triangle", 1e4)

    assert torch.autograd.gradcheck(f, tuple(params.values()), eps=1e-6, atol=1e-6)


def test_gradcheck_leaky_integrator():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 2, 3, dtype=torch.float64, generator=g).requires_grad_()
    beta = torch.rand(3, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(F.li_sequence, (x, beta))


def test_leaky_integrator_values():
    x = torch.tensor([1.0, 0.0, 2.0]).reshape(3, 1, 1)
    assert F.li_sequence(x, 0.5)[0].flatten().tolist() == [1.0, 0.5, 2.25]


def test_leaky_integrator_torch_path(monkeypatch):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 2, 4, dtype=torch.float64, generator=g).requires_grad_()
    beta = torch.rand(4, dtype=torch.float64, generator=g).requires_grad_()
    u, _ = F.li_sequence(x, beta)
    gu = torch.randn_like(u)
    grads = torch.autograd.grad((u * gu).sum(), (x, beta))
    monkeypatch.setattr(F, "_use_numba", lambda t: False)
    u2, _ = F.li_sequence(x, beta)
    grads2 = torch.autograd.grad((u2 * gu).sum(), (x, beta))
    assert torch.allclose(u, u2)
    assert all(torch.allclose(a, b) for a, b in zip(grads, grads2))


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_surrogate_formulas(surrogate):
    u = torch.linspace(-3, 3, 60001, dtype=torch.float64, requires_grad=True)
    k = SLOPES[surrogate]
    F.spike(u, surrogate).sum().backward()
    assert torch.allclose(u.grad, _sg(u.detach(), surrogate, k))
    assert F.spike(u, surrogate).tolist() == (u > 0).double().tolist()
    peak = {"fast_sigmoid": 1.0, "atan": k / 2, "triangle": k}[surrogate]
    assert F.surrogate_grad(torch.zeros(1), surrogate).item() == pytest.approx(peak)
    if surrogate != "fast_sigmoid":  # atan and triangle are densities: area 1 (atan's tails ~1e-1 here)
        area = torch.trapezoid(u.grad, u.detach()).item()
        assert area == pytest.approx(1.0, abs=0.1 if surrogate == "atan" else 1e-6)
    u.grad = None
    F.spike(u, surrogate, slope=2 * k).sum().backward()
    assert torch.allclose(u.grad, _sg(u.detach(), surrogate, 2 * k))


def test_saves_one_sequence_tensor():
    """Backward keeps one [T, B, N] tensor (plus the parameters): no spikes, state or adaptation
    traces."""
    x = torch.randn(50, 4, 32, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    weight = torch.zeros(32, 32)
    for seq in (lambda: F.lif_sequence(x), lambda: F.alif_sequence(x, return_membrane=True),
                lambda: F.rlif_sequence(x, weight)):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            seq()
        assert sum(saved) <= x.numel() * 4 + weight.numel() * 4 + 8 * 32 * 4


def test_learnable_beta_gradient_and_clamp():
    torch.manual_seed(0)
    x = torch.randn(40, 3, 6, dtype=torch.float64) + 0.4
    layer = snn.ALIF(6, dt=1.0, tau_mem=-1.0 / math.log(0.8), learn_beta=True, learn_threshold=True).double()
    assert {n for n, _ in layer.named_parameters()} == {"beta", "threshold", "rho", "alpha"}
    g = torch.randn(40, 3, 6, dtype=torch.float64)
    (layer(x)[0] * g).sum().backward()
    beta = layer.beta.detach().requires_grad_()
    s_ref, _ = reference(x, None, beta, layer.threshold, layer.rho, layer.alpha, True, "subtract", "atan", 2.0)
    (grad_ref,) = torch.autograd.grad((s_ref * g).sum(), beta)
    assert layer.beta.grad.abs().sum() > 0
    assert torch.allclose(layer.beta.grad, grad_ref, atol=1e-10)
    with torch.no_grad():
        layer.beta.fill_(1.5)
    assert torch.equal(layer(x)[0], snn.ALIF(6, dt=1.0, tau_mem=math.inf, learn_threshold=True).double()(x)[0])
    fixed = snn.LIF(6, dt=1.0)
    assert not list(fixed.parameters()) and fixed.beta.shape == (6,)


def test_recurrent_weight_is_used():
    torch.manual_seed(1)
    layer = snn.RLIF(8, dt=1.0)
    x = torch.randn(30, 2, 8) + 0.5
    s, _ = layer(x)
    s.sum().backward()
    assert layer.weight.grad.abs().sum() > 0
    with torch.no_grad():
        layer.weight.zero_()
    assert torch.equal(layer(x)[0], snn.LIF(8, dt=1.0)(x)[0])


def test_input_validation():
    x = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="reset"):
        F.lif_sequence(x, reset="hard")
    with pytest.raises(ValueError, match="surrogate"):
        F.lif_sequence(x, surrogate="sigmoid")
    with pytest.raises(ValueError, match="shape"):
        F.lif_sequence(x[0])
    with pytest.raises(ValueError, match="beta"):
        F.lif_sequence(x, beta=torch.ones(3))
    with pytest.raises(ValueError, match="recurrent weight"):
        F.rlif_sequence(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="readout"):
        snn.SRNN(4, 2, readout="last", dt=10.0)


def test_empty_sequence():
    for seq in (F.lif_sequence, F.li_sequence):
        assert seq(torch.zeros(0, 2, 3))[0].shape == (0, 2, 3)


# -- layers and models ---------------------------------------------------------------------------
def test_conv_layer_shapes_and_fan_out():
    layer = snn.SpikingConv1d(6, 8, kernel_size=5, stride=2, dt=1.0)
    x = (torch.rand(10, 3, 6, 40) < 0.3).float()
    s, _ = layer(x)
    assert s.shape == (10, 3, 8, layer.output_length(40)) == (10, 3, 8, 20)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    # fan-out: for each input map and position, the (output map, window) pairs with a nonzero tap on it
    fan = layer.fan_out(40)
    assert fan.shape == (6 * 40,)
    brute = torch.zeros(6, 40)
    for o in range(20):
        lo = o * 2 - 2
        brute[:, max(lo, 0):lo + 5] += 8
    assert torch.equal(fan, brute.reshape(-1))
    odd = snn.SpikingConv1d(2, 3, kernel_size=4, stride=3, padding=0, dt=1.0)
    assert odd(torch.zeros(2, 1, 2, 11))[0].shape == (2, 1, 3, odd.output_length(11)) == (2, 1, 3, 3)
    assert odd.fan_out(11)[:11].tolist() == [3.0, 3, 3, 6, 3, 3, 6, 3, 3, 3, 0]  # windows [0,4) [3,7) [6,10)
    with torch.no_grad():  # prune output map 0 and one tap of input map 1 in map 2: only present synapses count
        odd.conv.weight[0] = 0
        odd.conv.weight[2, 1, 0] = 0
    pruned = odd.fan_out(11).reshape(2, 11)
    assert pruned[0].tolist() == [2.0, 2, 2, 4, 2, 2, 4, 2, 2, 2, 0]
    assert pruned[1].tolist() == [1.0, 2, 2, 3, 2, 2, 3, 2, 2, 2, 0]  # tap 0 sits on positions 0, 3, 6
    adaptive = snn.SpikingConv1d(2, 3, kernel_size=3, adaptive=True, dt=1.0)
    assert isinstance(adaptive.neurons, snn.ALIF)


def test_conv_layer_shares_parameters_per_map():
    """One neuron per (map, position), parameters per map: same as LIF with repeated betas."""
    torch.manual_seed(2)
    layer = snn.SpikingConv1d(1, 2, kernel_size=3, dt=1.0, tau_mem=-1.0 / torch.tensor([0.2, 0.95]).log())
    with torch.no_grad():
        layer.conv.weight.uniform_(0.0, 1.0)
    x = 2 * torch.rand(20, 2, 1, 7)
    y = layer.conv(x.reshape(40, 1, 7)).reshape(20, 2, 14)
    beta = layer.neurons.beta
    assert torch.allclose(beta, torch.tensor([0.2, 0.95]))
    expected, _ = F.lif_sequence(y, beta.repeat_interleave(7))
    s = layer(x)[0].reshape(20, 2, 14)
    assert torch.equal(s, expected)
    assert not torch.equal(s, F.lif_sequence(y, beta.repeat(7))[0])


MODELS = [lambda **kw: snn.SRNN(48, 5, hidden=(32, 24), dt=10.0, **kw),
          lambda **kw: snn.SRNN(48, 5, hidden=(16,), adaptive=False, dt=10.0, **kw),
          lambda **kw: snn.ConvSNN(48, 5, channels=(4, 8), hidden=16, dt=10.0, **kw),
          lambda **kw: snn.ConvSNN(48, 5, in_maps=4, channels=(4,), hidden=None, adaptive=True, dt=10.0, **kw)]


@pytest.mark.parametrize("readout", ["mean", "max", "count"])
@pytest.mark.parametrize("make", MODELS)
def test_model_shapes_and_padding(make, readout):
    torch.manual_seed(3)
    model = make(readout=readout, threshold=0.5).eval()
    x = (torch.rand(60, 3, 48) < 0.2).float()
    lengths = torch.tensor([60, 41, 17])
    logits = model(x, lengths)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    garbage = x.clone()
    garbage[41:, 1] = 3.0
    garbage[17:, 2] = torch.rand(43, 48)
    assert torch.equal(model(garbage, lengths), logits)
    alone = model(x[:17, 2:3])  # the short sample on its own, unpadded
    assert torch.allclose(alone, logits[2:3], atol=1e-5)
    assert not torch.allclose(model(x), logits)  # without lengths the padding counts
    assert torch.equal(model(x, torch.full((3,), 60)), model(x))  # full lengths: nothing to mask
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_activity_counts():
    torch.manual_seed(4)
    model = snn.SRNN(48, 5, hidden=(32,), threshold=0.3, dt=10.0).eval()
    x = (torch.rand(50, 2, 48) < 0.2).float()
    lengths = torch.tensor([50, 30])
    with snn.record_activity(model) as act:
        model(x, lengths)
        model(x, lengths)
    summary = act.summary()
    assert summary["samples"] == 4 and summary["steps_per_sample"] == 40
    valid = torch.arange(50)[:, None] < lengths
    inp = summary["layers"]["input"]
    assert inp["spikes_per_sample"] == pytest.approx((x * valid[..., None]).sum().item() / 2)
    assert inp["synops_per_sample"] == pytest.approx(inp["spikes_per_sample"] * 32)
    hid = summary["layers"]["hidden0"]
    spikes = model.neurons[0](model.linears[0](x))[0] * valid[..., None]
    assert hid["spikes_per_sample"] == pytest.approx(spikes.sum().item() / 2)
    assert hid["synops_per_sample"] == pytest.approx(hid["spikes_per_sample"] * (5 + 32))
    assert hid["rate"] == pytest.approx(spikes.sum().item() / (32 * 80))
    assert summary["synops_per_sample"] == pytest.approx(inp["synops_per_sample"] + hid["synops_per_sample"])
    assert 0 < hid["rate"] < 1
    model(x)  # outside the block nothing is recorded
    assert act.summary() == summary


def test_activity_conv_synops():
    torch.manual_seed(5)
    model = snn.ConvSNN(48, 5, channels=(4,), hidden=16, threshold=0.3, dt=10.0).eval()
    x = (torch.rand(30, 2, 48) < 0.3).float()
    with snn.record_activity(model) as act:
        model(x)
    layers = act.summary()["layers"]
    assert list(layers) == ["input", "conv0", "hidden", "readout"]  # the readout: state updates only, no spikes
    fan = model.convs[0].fan_out(8).reshape(6, 8)  # 48 channels = 8 kernels x 6 maps
    counts = x.reshape(30, 2, 8, 6).sum((0, 1)).T  # [maps, kernels]
    assert layers["input"]["synops_per_sample"] == pytest.approx((counts * fan).sum().item() / 2)
    assert layers["conv0"]["synops_per_sample"] == pytest.approx(layers["conv0"]["spikes_per_sample"] * 16)
    with torch.no_grad():  # a sparse hidden layer: its absent synapses do not count
        model.hidden[0].weight[:8] = 0
    with snn.record_activity(model) as act:
        model(x)
    layers = act.summary()["layers"]
    assert layers["conv0"]["synops_per_sample"] == pytest.approx(layers["conv0"]["spikes_per_sample"] * 8)


def test_docstring_examples():
    for module in (F, snn.layers, snn.models):
        assert doctest.testmod(module).failed == 0
