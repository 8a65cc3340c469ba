"""NIR export and import (snn.nir, spiketrum export / import-nir) and the round trip through Norse's NIR import."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snn.models import ANN, SCBAMSNN, SRNN, ConvSNN
from snn.nir import NotExportable, fold_gain, from_nir, graph_metadata, to_nir
from test_app_reliability import TRAIN, cli, one_line_error

nir = pytest.importorskip("nir")
DT = 10.0


def _spikes(steps, batch, channels, seed=0, p=0.2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, channels, generator=g) < p).float()


def _perturb(model, seed=0):
    """Spread the neurons' decays and thresholds (learnt per neuron in training) so each differs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("beta"):
                p.copy_(0.5 + 0.49 * torch.rand(p.shape, generator=g))
            elif name.endswith("weight"):
                p.mul_(3.0)  # enough drive that every layer spikes
    for m in model.modules():
        if hasattr(m, "threshold") and isinstance(getattr(m, "threshold"), torch.Tensor):
            m.threshold.copy_(0.5 + torch.rand(m.threshold.shape, generator=g))
    return model.eval()


MODELS = {
    "srnn": lambda: SRNN(24, 5, hidden=(32, 16), adaptive=False, reset="zero", dt=DT),
    "srnn-max": lambda: SRNN(24, 5, hidden=(16,), adaptive=False, reset="zero", readout="max", dt=DT),
    "srnn-count": lambda: SRNN(24, 5, hidden=(16,), adaptive=False, reset="zero", readout="count", dt=DT),
    "conv": lambda: ConvSNN(24, 5, in_maps=2, channels=(4, 6), hidden=16, reset="zero", dt=DT),
    "conv-nohidden": lambda: ConvSNN(24, 5, in_maps=3, channels=(4,), kernel_size=3, stride=1, hidden=None,
                                     reset="zero", dt=DT),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_graph_rebuilds_the_model_exactly(name, tmp_path):
    torch.manual_seed(0)
    model = _perturb(MODELS[name]())
    path = tmp_path / "m.nir"
    nir.write(path, to_nir(model))
    back, kwargs = from_nir(nir.read(str(path)), DT, readout=model.readout.readout)
    assert type(back) is type(model) and back.dt == DT
    x = _spikes(60, 3, 24)
    ref = model(x, per_step=True)
    assert torch.equal(back(x, per_step=True), ref)  # float64 in the file: bit-identical after float32 rounding
    rebuilt = type(model)(24, 5, **kwargs)  # the keywords build the same model: what a run folder saves
    rebuilt.load_state_dict(back.state_dict())
    assert torch.equal(rebuilt.eval()(x, per_step=True), ref)


def test_time_constants_convert_exactly_at_forward_euler():
    model = _perturb(MODELS["srnn"]())
    graph = to_nir(model)
    lif, beta = graph.nodes["lif0"], model.neurons[0].beta.detach().double().numpy()
    dt = DT / 1000
    np.testing.assert_allclose(1 - dt / lif.tau, beta, rtol=0, atol=1e-15)  # beta = 1 - dt / tau
    np.testing.assert_allclose(lif.r * dt / lif.tau, 1.0, rtol=1e-15)  # input gain 1, as v = beta v + x
    assert np.array_equal(lif.v_reset, np.zeros(32)) and np.array_equal(lif.v_leak, np.zeros(32))
    np.testing.assert_array_equal(lif.v_threshold, model.neurons[0].threshold.double().numpy())
    np.testing.assert_array_equal(graph.nodes["recurrent0"].weight, model.neurons[0].weight.detach().double().numpy())
    assert ("lif0", "recurrent0") in graph.edges and ("recurrent0", "lif0") in graph.edges
    meta = graph_metadata(graph)
    assert meta["dt_ms"] == DT and meta["readout"] == "mean" and meta["int8"] is False


def test_int8_graph_is_integer_and_exact_when_the_weights_are_on_the_grid():
    model = _perturb(MODELS["conv"]())
    graph = to_nir(model, int8=True)
    for node in graph.nodes.values():
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv1d)):
            assert np.array_equal(node.weight, np.round(node.weight)) and np.abs(node.weight).max() == 127
    # put every weight and bias on its layer's grid: quantisation is then lossless, and the int8 graph's
    # membranes are the float ones divided by the layer's scale, thresholds too: the same spikes
    scales = graph_metadata(graph)["scales"]
    layers = [model.convs[0].conv, model.convs[1].conv, model.hidden[0], model.readout.linear]
    with torch.no_grad():
        for layer, s in zip(layers, scales):
            layer.weight.copy_(torch.round(layer.weight.double() / s).float() * s)
            layer.bias.copy_(torch.round(layer.bias.double() / s).float() * s)
    graph = to_nir(model, int8=True)
    back, _ = from_nir(graph, DT)
    x = _spikes(60, 4, 24, seed=1)
    torch.testing.assert_close(back(x, per_step=True) * scales[-1], model(x, per_step=True), rtol=1e-4, atol=1e-4)
    assert torch.equal(back(x).argmax(1), model(x).argmax(1))


@pytest.mark.parametrize("model, layer", [
    (lambda: SRNN(8, 3, dt=DT), "hidden0: adaptive-threshold"),
    (lambda: SRNN(8, 3, adaptive=False, dt=DT), "hidden0: the subtract reset"),
    (lambda: ConvSNN(12, 3, in_maps=2, dt=DT), "conv0: the subtract reset"),
    (lambda: ConvSNN(12, 3, in_maps=2, adaptive=True, reset="zero", dt=DT), "conv0: adaptive"),
    (lambda: SCBAMSNN(12, 3, in_maps=2, dt=DT), "ConvLSTM cells and CBAM attention"),
    (lambda: ANN(8, 3, dt=DT), "GRU"),
])
def test_what_nir_cannot_express_is_refused_by_name(model, layer):
    with pytest.raises(NotExportable, match=layer):
        to_nir(model())


def test_a_nested_recurrent_subgraph_imports():
    """snnTorch writes a recurrent layer as a subgraph (input -> LIF <-> Linear -> output); it inlines."""
    model = _perturb(MODELS["srnn-count"]())
    flat = to_nir(model)
    n = flat.nodes
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([16])}), "lif": n["lif0"],
                              "w_rec": n["recurrent0"], "output": nir.Output(output_type={"output": np.array([16])})},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nested = nir.NIRGraph(nodes={"input": n["input"], "fc1": n["linear0"], "rnn": sub, "fc2": n["readout"],
                                 "out_lif": n["readout_lif"], "output": n["output"]},
                          edges=[("input", "fc1"), ("fc1", "rnn"), ("rnn", "fc2"), ("fc2", "out_lif"),
                                 ("out_lif", "output")])
    back, _ = from_nir(nested, DT)
    x = _spikes(50, 2, 24)
    assert torch.equal(back(x, per_step=True), model(x, per_step=True))


def test_fold_gain_keeps_the_dynamics():
    model = _perturb(MODELS["conv"]())
    graph = to_nir(model)
    folded = fold_gain(graph)
    assert all(np.array_equal(node.r, np.ones_like(node.r)) for node in folded.nodes.values() if hasattr(node, "r"))
    back, _ = from_nir(folded, DT)  # from_nir now folds r dt / tau = 1 - beta back out of the weights
    x = _spikes(40, 2, 24)
    torch.testing.assert_close(back(x, per_step=True), model(x, per_step=True), rtol=1e-5, atol=1e-5)


# -- the peer: Norse's NIR import --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["srnn", "conv", "srnn-count"])
def test_norse_runs_the_exported_graph(name, tmp_path):
    pytest.importorskip("norse")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from nir_roundtrip import compare, norse_module

    model = _perturb(MODELS[name]())
    nir.write(tmp_path / "m.nir", to_nir(model))
    module = norse_module(nir.read(str(tmp_path / "m.nir")), DT)
    total = differ = 0
    for seed in range(4):
        x = _spikes(60, 1, 24, seed=seed)[:, 0]
        spikes, ours, theirs = compare(model, module, x)
        for a, b in spikes.values():
            assert a.sum() > 0  # the layers do spike
            total, differ = total + a.numel(), differ + int((a != b).sum())
        torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    assert differ / total < 1e-3, (differ, total)  # float32 rounding may flip a spike at the threshold


# -- the commands ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lif_run(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("nir") / "run"
    r = cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", out, *TRAIN, "--neuron", "lif",
            "--reset", "zero")
    assert r[0] == 0, r
    return out


def test_export_import_evaluate_gives_the_same_accuracy(lif_run, tiny_folder, tmp_path):
    graph = tmp_path / "model.nir"
    code, out, _ = cli("export", lif_run, "-o", graph)
    assert code == 0 and "readout equal to 0.0e+00" in out, out
    code, _, _ = cli("import-nir", graph, "-o", tmp_path / "back")
    assert code == 0
    scores = []
    for run in (lif_run, tmp_path / "back"):
        code, out, _ = cli("evaluate", run, "--dataset", "folder", "--data", tiny_folder, "--json",
                           "--cache", lif_run.parent / "cache")
        assert code == 0, out
        scores.append(out)
    assert scores[0] == scores[1]
    code, out, _ = cli("export", lif_run, "-o", tmp_path / "q.nir", "--int8")
    assert code == 0 and "int8 weights" in out
    assert one_line_error(cli("export", lif_run, "-o", graph), graph, "--force")


def test_bad_exports_and_imports_fail_in_one_line(lif_run, tmp_path, tiny_folder):
    default = tmp_path / "default"
    assert cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", default, *TRAIN)[0] == 0
    assert "adaptive-threshold" in one_line_error(cli("export", default, "-o", tmp_path / "x.nir"), default)
    assert not (tmp_path / "x.nir").exists()
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5 at all")
    one_line_error(cli("import-nir", bad, "-o", tmp_path / "r"), bad, "not a NIR graph")
    plain = tmp_path / "plain.nir"
    g = to_nir(MODELS["srnn"]())
    nir.write(plain, nir.NIRGraph(nodes=g.nodes, edges=g.edges))  # a graph made elsewhere: no metadata
    one_line_error(cli("import-nir", plain, "-o", tmp_path / "r"), plain, "--dt-ms")
    one_line_error(cli("import-nir", plain, "-o", tmp_path / "r", "--like", lif_run), plain, "input channels")
    assert cli("train", "--dataset", "folder", "--data", tiny_folder, "-o", tmp_path / "s", *TRAIN,
               "--model", "srnn-scbam", "--neuron", "lif")[0] == 2


def test_a_neuron_without_leak_exports_as_a_float32_integrator():
    model = _perturb(MODELS["srnn"]())
    with torch.no_grad():
        model.neurons[0].beta[:5] = 1.0  # training can drive a decay to the clamp
        model.neurons[0].beta[5] = 1.2
    graph = to_nir(model)
    assert np.isfinite(graph.nodes["lif0"].tau).all()
    back, _ = from_nir(graph, DT)
    assert torch.equal(back.neurons[0].beta[:6], torch.ones(6))
    x = _spikes(60, 3, 24)
    assert torch.equal(back(x, per_step=True), model(x, per_step=True))
