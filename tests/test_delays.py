"""Learnt synaptic delays (snn.layers.DelayedLinear, snn.models.DelaySNN) against a step-by-step reference."""
import json
import math

import pytest
import torch

from snn.layers import DelayedLinear
from snn.models import DelaySNN
from snn.nir import NotExportable, check_exportable
from snn.trainer import Callback, Schedule, TrainConfig, Trainer


def reference(x, weight, delays, sigma, bias=None, taps=None):
    """The layer's output step by step: for every output step t, neuron j and synapse i, ``w_ji`` times the
    input of channel i interpolated at ``t - d_ji`` (a Gaussian of width ``sigma`` bins over the taps, or the
    nearest bin when ``sigma`` is 0); ``delays`` in bins [n_out, n_in]. Slow and plain, for the tests."""
    T, B, n_in = x.shape
    n_out = weight.shape[0]
    out = []
    for t in range(T):
        rows = []
        for j in range(n_out):
            acc = x.new_zeros(B) if bias is None else bias[j].expand(B)
            for i in range(n_in):
                d = delays[j, i]
                if sigma > 0:
                    g = [torch.exp(-((k - d) ** 2) / (2 * sigma ** 2)) for k in range(taps)]
                    total = sum(g)
                    g = [v / total for v in g]
                else:
                    g = [float(k == int(torch.round(d.detach()))) for k in range(taps)]
                shifted = sum(g[k] * x[t - k, :, i] for k in range(taps) if t - k >= 0)
                acc = acc + weight[j, i] * shifted
            rows.append(acc)
        out.append(torch.stack(rows, -1))
    return torch.stack(out)


def _layer(n_in=4, n_out=3, max_delay_ms=50.0, dt=10.0, sigma_ms=None, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return DelayedLinear(n_in, n_out, dt=dt, max_delay_ms=max_delay_ms, sigma_ms=sigma_ms).to(dtype)


def _spikes(T, B, n, p=0.3, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < p).to(dtype)


DELAYS = {"integer": torch.tensor([[0.0, 10.0, 30.0, 50.0], [20.0, 40.0, 0.0, 10.0], [50.0, 50.0, 20.0, 30.0]]),
          "fractional": torch.tensor([[3.0, 17.5, 26.0, 44.0], [8.0, 31.2, 0.4, 12.9], [49.1, 22.0, 36.6, 5.5]])}


# -- (a) the layer equals the step-by-step reference --------------------------------------------
@pytest.mark.parametrize("delays", list(DELAYS))
@pytest.mark.parametrize("sigma_ms", [25.0, 7.0, 2.3, 0.0])
def test_layer_equals_step_by_step_reference(delays, sigma_ms):
    layer = _layer(sigma_ms=sigma_ms)
    layer.set_delays_ms(DELAYS[delays].double())
    assert torch.allclose(layer.delays_ms, DELAYS[delays].double(), atol=1e-9)
    x = _spikes(14, 2, 4)
    y, _ = layer(x)
    ref = reference(x, layer.weight, layer.delay_bins(), float(layer.sigma), layer.bias, layer.taps)
    assert y.shape == (14, 2, 3)
    assert (y - ref).abs().max().item() < 1e-12


def test_sigma_zero_rounds_each_delay_to_the_nearest_bin():
    layer = _layer(sigma_ms=0.0)
    layer.set_delays_ms(DELAYS["fractional"].double())
    rounded = _layer(sigma_ms=0.0)
    rounded.load_state_dict(layer.state_dict())
    rounded.set_delays_ms((DELAYS["fractional"].double() / 10).round() * 10)
    x = _spikes(14, 2, 4)
    assert torch.equal(layer(x)[0], rounded(x)[0])
    # a narrow Gaussian tends to the same rounding
    layer.set_sigma(0.2)  # 0.02 bins
    assert (layer(x)[0] - rounded(x)[0]).abs().max().item() < 1e-12
    # round_delays: whole bins and sigma 0, for inference
    wide = _layer(sigma_ms=20.0)
    wide.set_delays_ms(DELAYS["fractional"].double())
    wide.round_delays()
    assert float(wide.sigma) == 0.0
    assert torch.allclose(wide.delays_ms, (DELAYS["fractional"].double() / 10).round() * 10, atol=1e-9)
    assert torch.equal(wide.kernel(), rounded.kernel())


# -- (b) gradients ------------------------------------------------------------------------------
@pytest.mark.parametrize("delays", list(DELAYS))
@pytest.mark.parametrize("sigma_ms", [25.0, 4.0])
def test_gradients_match_autograd_through_the_reference(delays, sigma_ms):
    layer = _layer(sigma_ms=sigma_ms)
    layer.set_delays_ms(DELAYS[delays].double())
    x = _spikes(12, 2, 4).requires_grad_()
    g = torch.Generator().manual_seed(5)
    probe = torch.randn(12, 2, 3, generator=g, dtype=torch.float64)
    params = [x, layer.weight, layer.position, layer.bias]
    got = torch.autograd.grad((layer(x)[0] * probe).sum(), params)
    ref = reference(x, layer.weight, layer.delay_bins(), float(layer.sigma), layer.bias, layer.taps)
    want = torch.autograd.grad((ref * probe).sum(), params)
    for a, b in zip(got, want):
        assert (a - b).abs().max().item() < 1e-10
    assert got[2].abs().max() > 0  # the delays do learn


def test_gradcheck():
    layer = _layer(n_in=3, n_out=2, max_delay_ms=40.0, sigma_ms=8.0)
    layer.set_delays_ms(torch.tensor([[3.0, 17.5, 26.0], [8.0, 31.2, 12.9]], dtype=torch.float64))
    x = torch.rand(9, 2, 3, dtype=torch.float64)
    frames = torch.rand(layer.taps - 1, 2, 3, dtype=torch.float64)

    def f(x, frames, weight, position, bias):
        return torch.func.functional_call(layer, {"weight": weight, "position": position, "bias": bias}, (x, frames))

    args = (x, frames, layer.weight.detach(), layer.position.detach(), layer.bias.detach())
    assert torch.autograd.gradcheck(f, tuple(a.clone().requires_grad_() for a in args), eps=1e-6, atol=1e-6)


# -- (c) a spike arrives exactly its delay later ------------------------------------------------
@pytest.mark.parametrize("dt", [1.0, 10.0])
def test_a_spike_arrives_its_delay_later(dt):
    T, n_in, n_out = 40, 3, 4
    layer = DelayedLinear(n_in, n_out, dt=dt, max_delay_ms=25 * dt, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 1 + n_in * n_out).reshape(n_out, n_in))
    bins = torch.tensor([[0, 5, 25], [1, 13, 7], [25, 24, 0], [9, 9, 2]])
    layer.set_delays_ms(bins * dt)
    layer.set_sigma(0.0)
    for i in range(n_in):
        for t in (0, 3, 14):
            x = torch.zeros(T, 1, n_in)
            x[t, 0, i] = 1.0
            y, _ = layer(x)
            for j in range(n_out):
                want = torch.zeros(T)
                if t + bins[j, i] < T:
                    want[t + bins[j, i]] = layer.weight[j, i]
                assert torch.equal(y[:, 0, j].detach(), want)
    # with sigma > 0 the smoothed spike still peaks there
    layer.set_sigma(3 * dt)
    x = torch.zeros(T, 1, n_in)
    x[2, 0, 1] = 1.0
    y, _ = layer(x)
    assert y[:, 0, :].argmax(0).tolist() == [2 + int(b) for b in bins[:, 1]]


# -- (d) chunked == whole -----------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_layer_in_chunks_equals_one_pass(chunk):
    layer = _layer(sigma_ms=6.0)
    x = _spikes(40, 3, 4).requires_grad_()
    y, state = layer(x)
    out, st = [], None
    for t in range(0, 40, chunk):
        v, st = layer(x[t:t + chunk], st)
        out.append(v)
    assert (torch.cat(out) - y).abs().max().item() < 1e-12
    assert torch.equal(st, state) and torch.equal(state, x[-(layer.taps - 1):])
    probe = torch.randn_like(y)
    one = torch.autograd.grad((y * probe).sum(), [x, layer.weight, layer.position])
    two = torch.autograd.grad((torch.cat(out) * probe).sum(), [x, layer.weight, layer.position])
    for a, b in zip(one, two):
        assert (a - b).abs().max().item() < 1e-10


def test_layer_without_delays_is_linear():
    layer = DelayedLinear(5, 3, dt=10.0, max_delay_ms=0.0)
    x = torch.rand(6, 2, 5)
    y, state = layer(x)
    assert layer.taps == 1 and state.shape == (0, 2, 5)
    assert torch.allclose(y, x @ layer.weight.T + layer.bias, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 100])
def test_model_steps_in_chunks_equal_one_pass(chunk):
    torch.manual_seed(0)
    model = DelaySNN(48, 5, hidden=(32, 24), max_delay_ms=120.0, threshold=0.5, dt=10.0).eval()
    model.schedule(0.1)
    x = (torch.rand(230, 3, 48) < 0.2).float()
    with torch.no_grad():
        u, state = model.steps(x)
        assert torch.allclose(model.readout.reduce(u, None), model(x))
        out, st = [], None
        for t in range(0, 230, chunk):
            v, st = model.steps(x[t:t + chunk], st)
            out.append(v)
    assert (torch.cat(out) - u).abs().max().item() <= 1e-5
    spikes = [s.s for _, s in state[:-1]]
    assert all(0 < float(s.mean()) < 1 for s in spikes[:1])  # the network is not silent
    for (f1, n1), (f2, n2) in zip(st[:-1], state[:-1]):
        assert torch.equal(f1, f2) and torch.equal(n1.s, n2.s)


def test_model_activity_counts_each_synapse_once():
    from snn.models import record_activity

    torch.manual_seed(0)
    model = DelaySNN(6, 2, hidden=(4,), max_delay_ms=50.0, dt=10.0)
    x = torch.zeros(10, 1, 6)
    x[0, 0, :] = 1.0
    with record_activity(model) as act:
        model(x)
    assert act.summary()["layers"]["input"]["synops_per_sample"] == 6 * 4  # not 6 taps times more


# -- (e) it learns a task that needs the lag between two channels --------------------------------
def _lag_task(n, seed, T=30, dt=10.0):
    """Two groups of 4 channels fire once each; class 1 when the second group fires 80 ms after the first,
    class 0 when 80 ms before: the same spikes, told apart only by their order in time."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        y = int(torch.randint(0, 2, (), generator=g))
        t0 = int(torch.randint(8, 14, (), generator=g))
        x = torch.zeros(T, 8)
        x[t0, :4] = 1.0
        x[t0 + (8 if y else -8), 4:] = 1.0
        items.append((x, y))
    return items


def _collate(batch):
    return (torch.stack([x for x, _ in batch], 1), torch.full((len(batch),), batch[0][0].shape[0]),
            torch.tensor([y for _, y in batch]))


class SigmaLog(Callback):
    """Records sigma (bins) after every optimiser step; kills the run at the end of epoch ``kill_at``."""

    def __init__(self, kill_at=None):
        self.sigmas, self.kill_at, self.epochs = [], kill_at, 0

    def on_step_end(self, trainer):
        self.sigmas.append(float(trainer.model.layers[0].sigma))

    def on_epoch_end(self, trainer, record):
        self.epochs += 1
        if self.epochs == self.kill_at:
            raise KeyboardInterrupt


def _trainer(run_dir=None, kill_at=None, epochs=6, schedule=True):
    torch.manual_seed(7)
    model = DelaySNN(8, 2, hidden=(16,), max_delay_ms=100.0, threshold=0.3, dropout=0.1, anneal=0.5, dt=10.0)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=2e-2, warmup_epochs=0.0, patience=0, seed=1)
    callbacks = ([Schedule()] if schedule else []) + [SigmaLog(kill_at)]  # the log sees each step's new sigma
    return Trainer(model, _lag_task(64, 0), None, _collate, cfg, callbacks=callbacks, run_dir=run_dir, device="cpu",
                   progress=False)


def test_the_model_learns_a_lag_task_and_sigma_anneals():
    trainer = _trainer()
    start = [p.detach().clone() for p in trainer.model.layers[0].parameters()]
    history = trainer.fit()
    losses = [r["train_loss"] for r in history]
    assert losses[-1] < 0.8 * losses[0], losses
    weight, _, position = trainer.model.layers[0].parameters()
    assert not torch.equal(position, start[2])  # the delays were learnt
    sigmas = trainer.callbacks[-1].sigmas
    model = trainer.model
    assert sigmas[0] < model.sigma_ms / 10.0 and all(a >= b for a, b in zip(sigmas, sigmas[1:]))
    assert math.isclose(sigmas[-1], model.sigma_end_ms / 10.0, rel_tol=1e-6)  # held after half of training
    assert math.isclose(sigmas[len(sigmas) // 2], model.sigma_end_ms / 10.0, rel_tol=1e-6)


def test_sigma_is_left_alone_without_the_schedule():
    trainer = _trainer(epochs=1, schedule=False)
    trainer.fit()
    assert set(trainer.callbacks[-1].sigmas) == {trainer.model.sigma_ms / 10.0}


# -- (g) a resumed run anneals as one that never stopped ------------------------------------------
def test_resume_reproduces_sigma_and_weights(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = _trainer(tmp_path / "a", epochs=4)
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "b", kill_at=2, epochs=4).fit()
    resumed = _trainer(tmp_path / "b", epochs=4)
    resumed.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert resumed.epoch == 1
    resumed.model.layers[0].set_sigma(99.0)  # what the schedule sets at the start, not what the file held
    resumed.fit()
    steps = full.steps_per_epoch
    assert resumed.callbacks[-1].sigmas == full.callbacks[-1].sigmas[steps:]
    assert resumed.history == full.history
    for p, q in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(p, q)


# -- (f) NIR refuses it in one line ---------------------------------------------------------------
def test_nir_refuses_in_one_line():
    with pytest.raises(NotExportable, match="DelaySNN: its per-synapse delays") as err:
        check_exportable(DelaySNN(8, 2, hidden=(4,), dt=10.0))
    assert "\n" not in str(err.value)


# -- the application ---------------------------------------------------------------------------
def test_kws_builds_the_delay_model_with_delays_in_ms():
    from spiketrum.app.kws import build_model

    model = build_model("delay", 12, 3, hidden=(8,), max_delay_ms=60.0, dt=20.0)
    assert isinstance(model, DelaySNN) and model.dt == 20.0 and model.layers[0].taps == 4
    with pytest.raises(ValueError, match="no 'adaptive' option"):
        build_model("delay", 12, 3, adaptive=True, dt=10.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_delay_ms"):
        DelayedLinear(3, 2, dt=10.0, max_delay_ms=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        DelayedLinear(3, 2, dt=10.0).set_sigma(-1.0)
    with pytest.raises(ValueError, match="state must have shape"):
        DelayedLinear(3, 2, dt=10.0, max_delay_ms=30.0)(torch.zeros(4, 1, 3), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="anneal"):
        DelaySNN(3, 2, anneal=2.0, dt=10.0)


def test_kws_training_resumes_the_same_annealing(tiny_folder, tmp_path):
    """kws adds the schedule for the delay model in both runs: a killed and resumed run ends as one that never stopped."""
    from spiketrum.app import kws

    class Kill(Callback):
        def __init__(self, at=None):
            self.at = at

        def on_epoch_end(self, trainer, record):
            if record["epoch"] == self.at:
                raise KeyboardInterrupt

    def train(out, kill=None, **kw):
        cfg = TrainConfig(epochs=2, batch_size=8, patience=0)
        return kws.train("folder", tiny_folder, out, model="delay", rate=500, dt_ms=10, config=cfg, progress=False,
                         model_kwargs={"hidden": (16,), "max_delay_ms": 60.0}, cache_dir=tmp_path / "cache",
                         callbacks=[Kill(kill)], **kw)

    full = train(tmp_path / "a" / "run")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b" / "run", kill=2)  # dies before the second checkpoint: resumes from the first
    resumed = train(tmp_path / "b" / "run", resume=True)
    assert json.dumps(resumed["history"]) == json.dumps(full["history"])
    a = torch.load(tmp_path / "a" / "run" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "run" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    model = kws.Run.load(tmp_path / "a" / "run").model
    assert float(model.layers[0].sigma) == pytest.approx(model.sigma_end_ms / 10.0)  # annealed, and saved with it


def test_cli_model_delay_flags():
    from spiketrum.app.cli import build_parser, cmd_train

    args = build_parser().parse_args(["train", "--dataset", "folder", "--data", "x", "-o", "y", "--model", "delay",
                                      "--max-delay-ms", "120"])
    assert args.model == "delay" and args.max_delay_ms == 120.0
    wrong = build_parser().parse_args(["train", "--dataset", "folder", "--data", "x", "-o", "y", "--max-delay-ms", "50"])
    with pytest.raises(ValueError, match="--max-delay-ms needs --model delay"):
        cmd_train(wrong)
