"""Continual learning: task specs, the task-unit input, the local rules (only W_c changes; Oja and GHA
against their known fixed points), EWC, XdG gates, the metrics, and the command end to end."""
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from snn.continual import (EWC, ContextGating, ContextSNN, TaskSet, continual_metrics, gha, oja, parse_tasks,
                           selectivity, stdp, xdg_gates)

DIGITS = [str(d) for d in range(10)]


def test_task_specs():
    pairs = parse_tasks("pairs", DIGITS)
    assert [t.classes for t in pairs] == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7"), ("8", "9")]
    assert all(t.labels == (0, 1) for t in pairs)
    parity, magnitude = parse_tasks("rules", DIGITS)
    assert parity.labels == (0, 1) * 5 and magnitude.labels == (0,) * 5 + (1,) * 5
    groups = parse_tasks("0,1,2/7,0", DIGITS)
    assert groups[0].labels == (0, 1, 2) and groups[1].classes == ("7", "0")
    for bad in ("0,1/x,2", "0,1", "0,0/1,2", "0/1"):
        with pytest.raises(ValueError):
            parse_tasks(bad, DIGITS)
    with pytest.raises(ValueError, match="digit"):
        parse_tasks("rules", ["yes", "no"])


def test_task_set_relabels_and_appends_the_context():
    items = [torch.full((4 + i, 3), float(i)) for i in range(5)]

    class Base:
        classes, labels = DIGITS, [0, 7, 1, 7, 3]

        def __getitem__(self, i):
            return items[i], self.labels[i]

    task = parse_tasks("1,2/7,0", DIGITS)[1]
    ts = TaskSet(Base(), task, index=1, n_tasks=3)
    assert ts.items == [0, 1, 3] and ts.labels == [1, 0, 0]
    x, y = ts[1]
    assert x.shape == (5, 6) and y == 0
    assert torch.equal(x[:, :3], items[1]) and torch.equal(x[:, 3:], torch.tensor([[0.0, 1.0, 0.0]]).expand(5, 3))


def _model_after_a_forward(seed=0, **kw):
    torch.manual_seed(seed)
    model = ContextSNN(10, 3, 2, hidden=16, dt=10.0, **kw)
    with torch.no_grad():
        model.input.weight.mul_(4)  # lively neurons
    x = (torch.rand(30, 6, 13) < 0.4).float()
    x[..., 10:] = 0
    x[..., 11] = 1  # task 1
    model(x, torch.full((6,), 30))
    return model


@pytest.mark.parametrize("rule", ["oja", "gha", "stdp"])
def test_the_local_step_changes_only_the_task_unit_weights(rule):
    model = _model_after_a_forward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ContextGating(rule, lr=0.5).on_step_end(SimpleNamespace(model=model))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"context.weight"}


def test_silent_neurons_keep_their_task_unit_weights():
    """What protects earlier tasks: a neuron that does not fire under this task is not rewired by it."""
    model = _model_after_a_forward()
    with torch.no_grad():  # silence some neurons for sure, and rerun
        model.input.bias[:4] = -100
    x = (torch.rand(30, 6, 13) < 0.4).float()
    x[..., 10:] = 0
    x[..., 11] = 1
    model(x)
    silent = model.last[0].sum((0, 1)) == 0
    assert silent[:4].all() and not silent.all()
    w = model.context.weight.detach().clone()
    ContextGating("oja", lr=0.5).on_step_end(SimpleNamespace(model=model))
    assert torch.equal(model.context.weight[silent], w[silent])
    assert not torch.equal(model.context.weight[~silent], w[~silent])


@given(st.integers(0, 10_000))
def test_oja_keeps_the_weight_norms_bounded(seed):
    """With inputs |x| <= X and activities y in (ymin, 1], no row ever grows past max(|w0|, X / ymin)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
    X, ymin = 2.0, 0.05
    bound = max(float(w.norm(dim=1).max()), X / ymin)
    for _ in range(300):
        x = torch.randn(16, 5, generator=g, dtype=torch.float64)
        x = X * x / x.norm(dim=1, keepdim=True) * torch.rand(16, 1, generator=g, dtype=torch.float64)
        y = ymin + (1 - ymin) * torch.rand(16, 8, generator=g, dtype=torch.float64)
        w = oja(w, x, y, lr=0.5)
        assert float(w.norm(dim=1).max()) <= bound * (1 + 1e-12)


def test_linear_oja_finds_the_unit_principal_direction_and_gha_the_principal_subspace():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0]
    scales = torch.tensor([3.0, 2.0, 1.0, 0.3, 0.2, 0.1], dtype=torch.float64)
    w1 = torch.randn(1, 6, generator=g, dtype=torch.float64) * 0.1
    w3 = torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.1
    for _ in range(3000):
        x = (torch.randn(32, 6, generator=g, dtype=torch.float64) * scales) @ basis.T
        w1 = oja(w1, x, x @ w1.T, lr=0.01)
        w3 = gha(w3, x, x @ w3.T, lr=0.01)
    assert abs(float(w1.norm()) - 1) < 0.02
    assert abs(float(w1 @ basis[:, 0])) > 0.99
    assert torch.allclose(w3 @ w3.T, torch.eye(3, dtype=torch.float64), atol=0.05)
    assert torch.allclose((w3 @ basis[:, :3]).abs(), torch.eye(3, dtype=torch.float64), atol=0.08)


def test_stdp_potentiates_pre_before_post_and_depresses_post_before_pre():
    w = torch.zeros(1, 1)
    pre, post = torch.zeros(6, 1, 1), torch.zeros(6, 1, 1)
    pre[1], post[2] = 1, 1
    assert stdp(w, pre, post, lr=0.1) > 0
    assert stdp(w, post, pre, lr=0.1) < 0
    assert stdp(torch.full((1, 1), 0.99), pre, post, lr=10.0) == 1.0  # clipped


def test_ewc_penalty_is_zero_at_the_anchor_and_pulls_back_to_it():
    torch.manual_seed(0)
    model = ContextSNN(6, 2, 2, hidden=8, dt=10.0)
    x = (torch.rand(20, 8, 8) < 0.5).float()
    x[..., 6:] = 0
    x[..., 6] = 1
    y = torch.randint(0, 2, (8,))
    data = [(x[:, i], int(y[i])) for i in range(8)]

    def collate(batch):
        xs, ys = zip(*batch)
        return torch.stack(xs, 1), torch.full((len(xs),), 20), torch.tensor(ys)

    ewc = EWC(lam=10.0)
    ewc.consolidate(model, data, collate, "cpu", batches=2)
    assert all((f >= 0).all() for f in ewc.fisher) and sum(float(f.sum()) for f in ewc.fisher) > 0
    trainer = SimpleNamespace(model=model)
    base = torch.tensor(1.0)
    assert float(ewc.loss(trainer, None, None, None, None, base).detach()) == 1.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    assert float(ewc.loss(trainer, None, None, None, None, base).detach()) > 1.0


def test_xdg_gates_silence_exactly_their_neurons():
    gates = xdg_gates(4, 50, 0.8, seed=1)
    assert (gates.sum(1) == 10).all()
    assert not torch.equal(gates[0], gates[1])
    torch.manual_seed(0)
    model = ContextSNN(6, 4, 2, hidden=50, dt=10.0)
    model.gates.copy_(gates)
    with torch.no_grad():
        model.input.bias.fill_(2.0)  # every open neuron fires
    x = torch.zeros(15, 4, 10)
    x[0:, torch.arange(4), 6 + torch.arange(4)] = 1  # sample b on task b
    model(x)
    fired = model.last[0].sum(0) > 0
    assert torch.equal(fired, gates.bool())


def test_single_spike_neurons_pass_on_at_most_one_spike():
    model = _model_after_a_forward(spikes="single")
    counts = model.last[0].sum(0)
    assert counts.max() == 1 and counts.sum() > 0
    multi = _model_after_a_forward(spikes="multi")
    assert multi.last[0].sum(0).max() > 1


def test_metrics_on_a_known_matrix_and_rates():
    m = continual_metrics([[0.9, 0.5, 0.5], [0.7, 0.8, 0.5], [0.6, 0.7, 1.0]])
    assert m["average_accuracy"] == pytest.approx(0.7667, abs=1e-4)
    assert m["backward_transfer"] == pytest.approx(((0.6 - 0.9) + (0.7 - 0.8)) / 2)
    rates = torch.tensor([[0.5, 0.2, 0.0, 0.0], [0.0, 0.3, 0.0, 0.005]])
    s = selectivity(rates, eps=0.01)
    assert s["selective_fraction"] == 0.25 and s["silent_fraction"] == 0.5
    assert s["selectivity_index"] == pytest.approx(np.mean([1.0, (0.3 - 0.2) / 0.5]))


def test_continual_command_end_to_end(tiny_folder, tmp_path):
    out = tmp_path / "cl"
    cmd = [sys.executable, "-m", "spiketrum.app", "continual", "--dataset", "folder", "--data", str(tiny_folder),
           "-o", str(out), "--tasks", "0,1/7,0", "--methods", "cg", "finetune", "--epochs", "2", "--hidden", "16", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "continual.json").read_text())
    for m in ("cg", "finetune"):
        res = summary["results"][m]
        assert np.asarray(res["matrix"]).shape == (2, 2)
        assert 0 <= res["average_accuracy"] <= 1 and len(res["task_rates"]) == 2
    assert (out / "continual.png").stat().st_size > 0
    mtime = (out / "cg.json").stat().st_mtime_ns
    r = subprocess.run(cmd, capture_output=True, text=True)  # finished methods are kept, not redone
    assert r.returncode == 0 and (out / "cg.json").stat().st_mtime_ns == mtime
    bad = subprocess.run(cmd[:-8] + ["--tasks", "0,1/9,3"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "9" in bad.stderr
