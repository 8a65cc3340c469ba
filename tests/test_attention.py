"""SRNN-SCBAM: the spiking ConvLSTM against a step-by-step reference, the attention maps as gates, causality."""
import pytest
import torch

from snn import functional as F
from snn.layers import CBAM1d, SpikingConvLSTM1d
from snn.models import SCBAMSNN


def reference_cell(cell, x):
    """The SRNN-SCBAM equations written out one step at a time from the module's weights."""
    T, B, C, L = x.shape
    wx, bx, wh = cell.conv_x.weight, cell.conv_x.bias, cell.conv_h.weight
    m = cell.maps
    h = c = None
    out = []
    for t in range(T):
        z = torch.nn.functional.conv1d(x[t], wx, bx, stride=cell.conv_x.stride, padding=cell.conv_x.padding)
        if h is None:
            h = c = torch.zeros(B, m, z.shape[-1], dtype=x.dtype)
        z = z + torch.nn.functional.conv1d(h, wh, padding=1)
        i, f, o, g = z[:, :m], z[:, m:2 * m], z[:, 2 * m:3 * m], z[:, 3 * m:]
        f = torch.sigmoid(f)
        a = cell.cbam
        if a is not None and a.mlp is not None:
            mlp = a.mlp
            f = f * torch.sigmoid(mlp(f.mean(2)) + mlp(f.max(2).values))[:, :, None]
        if a is not None and a.conv is not None:
            pooled = torch.cat([f.mean(1, keepdim=True), f.max(1, keepdim=True).values], 1)
            f = f * torch.sigmoid(torch.nn.functional.conv1d(pooled, a.conv.weight, a.conv.bias, padding=a.conv.padding))
        c = f * c + torch.sigmoid(i) * torch.tanh(g)
        h = (torch.sigmoid(o) * torch.tanh(c) > cell.threshold).to(x.dtype)
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("attention", ["none", "channel", "spatial", "cbam"])
def test_convlstm_matches_the_step_by_step_reference(attention):
    torch.manual_seed(0)
    cell = SpikingConvLSTM1d(3, 8, attention=attention, reduction=2).double()
    cell.conv_x.weight.data *= 4  # a lively cell: many outputs near the threshold
    x = (torch.rand(12, 4, 3, 11, dtype=torch.float64) < 0.3).double()
    got, _ = cell(x)
    assert got.shape == (12, 4, 8, 6)
    assert 0 < got.mean() < 1  # the comparison is not between two silent outputs
    assert torch.equal(got, reference_cell(cell, x))


@pytest.mark.parametrize("mode", ["cbam", "channel", "spatial"])
def test_attention_maps_are_gates_per_channel_and_per_bin(mode):
    torch.manual_seed(1)
    a = CBAM1d(16, mode, reduction=4)
    f = torch.randn(5, 16, 9) * 10  # large inputs push a sigmoid to its ends
    mc, ms = a.gates(f)
    assert mc.shape == (5, 16, 1) and ms.shape == (5, 1, 9)
    for gate, used in ((mc, mode != "spatial"), (ms, mode != "channel")):
        assert gate.min() >= 0 and gate.max() <= 1
        if used:
            assert gate.std() > 0.05  # a real, input-dependent gate
        else:
            assert torch.equal(gate, torch.ones_like(gate))
    assert torch.allclose(a(f), f * mc * ms)


def test_cbam_gradients_match_finite_differences():
    torch.manual_seed(2)
    a = CBAM1d(6, "cbam", reduction=2, kernel_size=3).double()
    f = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(a, (f,))


def test_the_forget_gate_attention_is_what_the_cell_uses():
    """Closing the forget gate (attention maps of zero) must erase the cell's memory."""
    torch.manual_seed(3)
    cell = SpikingConvLSTM1d(2, 4, attention="cbam").double()
    x = (torch.rand(10, 3, 2, 8, dtype=torch.float64) < 0.4).double()
    s, (mc, ms), _ = cell(x, return_attention=True)
    assert mc.shape == (10, 3, 4, 1) and ms.shape == (10, 3, 1, 4)
    cell.cbam.gates = lambda f: (torch.zeros_like(f[:, :, :1]), torch.zeros_like(f[:, :1]))
    closed, _ = cell(x)
    x2 = x.clone()
    x2[:5] = 0  # with no memory, changing the past can only act through h_{t-1} (the one-step recurrence)
    cell.conv_h.weight.data.zero_()
    assert torch.equal(cell(x)[0][5:], cell(x2)[0][5:])
    assert not torch.equal(closed, s)


@pytest.mark.parametrize("attention", ["cbam", "temporal", "none"])
def test_padding_never_changes_the_logits(attention):
    torch.manual_seed(4)
    model = SCBAMSNN(24, 3, in_maps=6, maps=(8,), attention=attention, dt=10.0).eval()
    x = (torch.rand(15, 2, 24) < 0.3).float()
    lengths = torch.tensor([15, 9])
    padded = torch.cat([x, torch.ones(5, 2, 24)])  # junk after the end must not matter
    x_short = x.clone()
    x_short[9:, 1] = 1.0
    a = model(x, lengths)
    assert torch.allclose(a, model(padded, lengths), atol=1e-6)
    assert torch.allclose(a[1], model(x_short, lengths)[1], atol=1e-6)


def test_attention_costs_at_most_five_percent_more_parameters():
    n = {a: sum(p.numel() for p in SCBAMSNN(120, 10, attention=a, dt=10.0).parameters()) for a in SpikingConvLSTM1d.ATTENTION}
    assert all(n["none"] < n[a] <= 1.05 * n["none"] for a in SpikingConvLSTM1d.ATTENTION if a != "none")


def test_surrogate_gradient_reaches_every_parameter():
    torch.manual_seed(5)
    model = SCBAMSNN(24, 3, in_maps=6, maps=(8,), attention="cbam", dt=10.0)
    x = (torch.rand(20, 4, 24) < 0.3).float()
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_spike_function_is_the_heaviside_of_the_reference():
    u = torch.tensor([-0.1, 0.0, 0.1])
    assert torch.equal(F.spike(u), torch.tensor([0.0, 0.0, 1.0]))


def test_train_and_predict_an_scbam_model_through_the_cli(tiny_folder, tmp_path):
    import json
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "spiketrum.app", *map(str, args)], capture_output=True, text=True)

    out = tmp_path / "scbam"
    r = run("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, "--model", "srnn-scbam", "--attention",
            "channel", "--hidden", 6, "--epochs", 1, "--rate", 500, "--batch-size", 8, "--augment", "none", "-q")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "srnn-scbam" and m["parameters"] > 0 and "cell0" in m["activity"]["layers"]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model_kwargs"]["attention"] == "channel" and settings["model_kwargs"]["maps"] == [6]
    r = run("predict", out, sorted((tiny_folder / "7").iterdir())[0])
    assert r.returncode == 0 and r.stdout.split("\t")[1] in ("0", "1", "7")
    bad = run("train", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "x", "--attention", "cbam")
    assert bad.returncode == 2 and "--model srnn-scbam" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_synops_count_the_input_recurrent_and_readout_synapses():
    from snn import record_activity
    from snn.layers import conv_fan_out

    torch.manual_seed(6)
    model = SCBAMSNN(24, 3, in_maps=6, maps=(8,), attention="cbam", dt=10.0).eval()
    model.cells[0].conv_x.weight.data *= 4
    x = (torch.rand(15, 2, 24) < 0.3).float()
    with record_activity(model) as act:
        model(x)
    layers = act.summary()["layers"]
    cell = model.cells[0]
    fan_in = conv_fan_out(cell.conv_x, 4).reshape(6, 4)
    counts = x.reshape(15, 2, 4, 6).sum((0, 1)).T
    assert layers["input"]["synops_per_sample"] == pytest.approx(float((counts * fan_in).sum()) / 2)
    s, _ = cell(x.reshape(15, 2, 4, 6).transpose(2, 3))
    fan = conv_fan_out(cell.conv_h, 2) + 3  # recurrent taps + the 3 readout neurons
    assert layers["cell0"]["spikes_per_sample"] > 0
    assert layers["cell0"]["synops_per_sample"] == pytest.approx(float((s.sum((0, 1)).reshape(-1) * fan).sum()) / 2)
