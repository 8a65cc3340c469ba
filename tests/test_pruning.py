"""Sparse training options: ESL keeps its density exactly, regrows from zero, and never revives a pruned weight."""
import math

import pytest
import torch

from snn.models import SRNN
from snn.pruning import ESL, erk_densities, sparse_parameters
from snn.trainer import Callback, TrainConfig, Trainer


def toy_data(n=48, T=12, C=10, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = (torch.rand(n, T, C, generator=g) < 0.1 + 0.3 * (torch.arange(C) % classes == y[:, None, None])).float()
    return list(zip(x, y.tolist()))


def collate(batch):
    x, y = zip(*batch)
    return torch.stack(x, 1), torch.full((len(x),), x[0].shape[0]), torch.tensor(y)


class Watch(Callback):
    """Records, after every step, the number of connections and whether absent weights are zero."""

    def __init__(self, esl):
        self.esl, self.counts, self.zero_outside, self.masks = esl, [], [], []

    def on_step_end(self, trainer):
        params = sparse_parameters(trainer.model)
        self.counts.append({k: int(m.sum()) for k, m in self.esl.masks.items()})
        self.zero_outside.append(all(bool((p[~self.esl.masks[k]] == 0).all()) for k, p in params.items()))
        self.masks.append({k: m.clone() for k, m in self.esl.masks.items()})


@pytest.mark.parametrize("regrow", ["random", "gradient"])
def test_density_is_exact_after_every_update_and_absent_weights_stay_zero(regrow):
    torch.manual_seed(0)
    model = SRNN(10, 3, hidden=(32,), dt=10.0)
    esl = ESL(0.2, every=2, drop=0.4, end=0.9, regrow=regrow)
    watch = Watch(esl)
    Trainer(model, toy_data(), None, collate, TrainConfig(epochs=4, batch_size=8, lr=1e-2), [esl, watch],
            progress=False).fit()
    params = sparse_parameters(model)
    shapes = [tuple(p.shape) for p in params.values()]
    want = {k: round(d * p.numel()) for (k, p), d in zip(params.items(), erk_densities(shapes, 0.2))}
    assert all(c == want for c in watch.counts)  # every step, every layer: the same number of connections
    assert math.isclose(sum(want.values()) / sum(p.numel() for p in params.values()), 0.2, abs_tol=1e-3)
    assert all(watch.zero_outside)
    changed = sum(int((a[k] != b[k]).sum()) for a, b in zip(watch.masks, watch.masks[1:]) for k in a)
    assert changed > 0  # the topology did evolve
    assert "readout.linear.weight" not in params and float(model.readout.linear.weight.ne(0).float().mean()) == 1.0


def test_regrown_connections_start_at_zero_with_fresh_optimiser_state():
    torch.manual_seed(0)
    model = SRNN(10, 3, hidden=(16,), dt=10.0)
    esl = ESL(0.3, every=3, drop=0.5, regrow="gradient")
    trainer = Trainer(model, toy_data(), None, collate, TrainConfig(epochs=1, batch_size=8), [esl], progress=False)
    esl.on_train_begin(trainer)
    before = {k: m.clone() for k, m in esl.masks.items()}
    params = sparse_parameters(model)
    x, lengths, y = collate(toy_data()[:8])
    torch.nn.functional.cross_entropy(model(x, lengths), y).backward()
    trainer.step = 2  # the step about to be taken, the third, is an update
    esl.on_after_backward(trainer)
    grads = {k: v.clone() for k, v in esl._grads.items()}
    trainer.optimizer.step()
    moments = {k: trainer.optimizer.state[p]["exp_avg"].clone() for k, p in params.items()}
    trainer.step = 3
    esl.on_step_end(trainer)
    had_moments = []
    for k, p in params.items():
        grown, pruned = esl.masks[k] & ~before[k], before[k] & ~esl.masks[k]
        assert grown.any() and bool((p[grown] == 0).all()) and bool((p[pruned] == 0).all())
        state = trainer.optimizer.state[p]
        had_moments.append(bool((moments[k][pruned] != 0).any()))
        assert bool((state["exp_avg"][pruned] == 0).all()) and bool((state["exp_avg_sq"][pruned] == 0).all())  # reset
        # gradient regrowth takes the largest dense-gradient positions among those absent before
        absent = ~before[k]
        assert grads[k][grown].min() >= grads[k][absent & ~esl.masks[k]].max()
    assert any(had_moments)  # pruned connections did have moments before the reset


def test_static_mask_never_changes_and_erk_is_exact():
    d = erk_densities([(256, 120), (256, 256), (4, 4)], 0.5)
    assert d[2] == 1.0 and all(0 < v <= 1 for v in d)  # the small layer saturates, the rest share what is left
    sizes = [256 * 120, 256 * 256, 16]
    assert math.isclose(sum(a * b for a, b in zip(d, sizes)), 0.5 * sum(sizes))
    torch.manual_seed(0)
    model = SRNN(10, 3, hidden=(16,), dt=10.0)
    esl = ESL(0.1, drop=0.0)
    watch = Watch(esl)
    Trainer(model, toy_data(), None, collate, TrainConfig(epochs=2, batch_size=8), [esl, watch], progress=False).fit()
    assert all(all(torch.equal(m[k], watch.masks[0][k]) for k in m) for m in watch.masks)
    with pytest.raises(ValueError):
        ESL(0.0)
    with pytest.raises(ValueError):
        ESL(0.5, regrow="magic")


def test_synops_count_only_the_connections_present():
    from snn.models import record_activity

    torch.manual_seed(0)
    model = SRNN(10, 3, hidden=(16,), dt=10.0)
    x = (torch.rand(20, 4, 10) < 0.3).float()
    with record_activity(model) as dense:
        model(x)
    with torch.no_grad():
        model.linears[0].weight[:, ::2] = 0  # input channels 0, 2, 4, ... drive nothing
    with record_activity(model) as sparse:
        model(x)
    want = float(x[:, :, 1::2].sum()) * 16 / 4
    assert math.isclose(sparse.summary()["layers"]["input"]["synops_per_sample"], want, rel_tol=1e-6)
    assert math.isclose(dense.summary()["layers"]["input"]["synops_per_sample"], float(x.sum()) * 16 / 4, rel_tol=1e-6)


def test_train_with_esl_through_the_cli_records_density(tiny_folder, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [sys.executable, "-m", "spiketrum.app", "train", "--dataset", "folder", "--data", str(tiny_folder), "-o", str(out),
            "--epochs", "2", "--hidden", "24", "--rate", "500", "--batch-size", "8", "--augment", "none", "-q",
            "--prune", "esl", "--density", "0.2", "--regrow", "gradient", "--prune-every", "3"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert math.isclose(m["density"]["total"], 0.2, abs_tol=2e-3) and m["options"][0]["regrow"] == "gradient"
    assert all(math.isclose(h["density"]["total"], m["density"]["total"]) for h in m["history"])
    assert m["parameters_nonzero"] < 0.5 * m["parameters"] and m["cpu_latency_ms"] > 0
    state = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert float(state["linears.0.weight"].ne(0).float().mean()) < 0.35
    bad = subprocess.run(args[:-8] + ["--density", "0.2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--prune" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def conv_data(n=48, T=10, kernels=12, maps=2, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    place = (torch.arange(kernels) * classes // kernels == y[:, None]).float()  # [n, kernels]
    p = 0.05 + 0.4 * place[:, None, :, None].expand(n, T, kernels, maps).reshape(n, T, -1)
    return list(zip((torch.rand(n, T, kernels * maps, generator=g) < p).float(), y.tolist()))


def conv_model():
    from snn.models import ConvSNN

    torch.manual_seed(0)
    return ConvSNN(24, 3, in_maps=2, channels=(8, 12), kernel_size=3, stride=1, hidden=16, dt=10.0)


@pytest.mark.parametrize("importance", ["membrane", "rate", "taylor", "random"])
def test_sca_follows_its_schedule_and_pruned_channels_are_silent(importance):
    from snn.pruning import SCA

    model = conv_model()
    sca = SCA(0.25, importance=importance, every=3, end=0.6)
    kept = []

    class Watch(Callback):
        def on_step_end(self, trainer):
            kept.append({k: int(m.sum()) for k, m in sca.masks.items()})

    Trainer(model, conv_data(), None, collate, TrainConfig(epochs=5, batch_size=8, lr=5e-3), [sca, Watch()],
            progress=False).fit()
    assert sca.frozen and {k: int(m.sum()) for k, m in sca.masks.items()} == {"convs.0": 2, "convs.1": 3}
    totals = [sum(k.values()) for k in kept]
    assert totals[0] >= totals[len(totals) // 2] >= totals[-1] == 5  # shrinks along the schedule
    # a pruned channel's current and spikes are exactly zero on any input
    x = (torch.rand(10, 2, 24) < 0.5).float()
    layer = model.convs[0]
    z = layer.conv(x.reshape(20, 2, 12))
    assert bool((z[:, ~sca.masks["convs.0"]] == 0).all())
    spikes, _ = layer(x.reshape(10, 2, 12, 2).transpose(2, 3))
    assert bool((spikes[:, :, ~sca.masks["convs.0"]] == 0).all())


def test_compact_model_computes_the_same_with_fewer_channels():
    from snn.pruning import SCA, compact

    model = conv_model()
    sca = SCA(0.5, every=2, end=0.5)
    Trainer(model, conv_data(), None, collate, TrainConfig(epochs=3, batch_size=8), [sca], progress=False).fit()
    kwargs = dict(in_maps=2, channels=(8, 12), kernel_size=3, stride=1, hidden=16, dt=10.0)
    small, small_kwargs = compact(model.eval(), kwargs)
    assert small_kwargs["channels"] == (4, 6)
    assert sum(p.numel() for p in small.parameters()) < 0.7 * sum(p.numel() for p in model.parameters())
    x = (torch.rand(30, 4, 24) < 0.3).float()
    lengths = torch.tensor([30, 25, 20, 9])
    with torch.no_grad():
        assert torch.allclose(small(x, lengths), model(x, lengths), atol=1e-5)


def test_sca_swaps_reset_the_optimiser_state_and_refuse_models_without_convolutions():
    from snn.pruning import SCA

    model = conv_model()
    sca = SCA(0.5, swap=0.5, every=1, end=0.9)
    checked = []

    class Watch(Callback):
        def __init__(self):
            self.before = None

        def on_step_end(self, trainer):
            now = {k: (m.clone(), trainer.optimizer.state[dict(model.named_modules())[k].conv.weight]["exp_avg"].clone())
                   for k, m in sca.masks.items()}
            for k, (mask, moment) in now.items():
                if self.before is None:
                    continue
                old_mask, old_moment = self.before[k]
                dropped, grown = old_mask & ~mask, mask & ~old_mask
                if dropped.any() and grown.any():
                    w = dict(model.named_modules())[k].conv.weight
                    checked.append((bool(old_moment[dropped].ne(0).any()), bool((moment[dropped] == 0).all())
                                    and bool((moment[grown] == 0).all()) and bool((w[grown] == 0).all())))
            self.before = now

    Trainer(model, conv_data(), None, collate, TrainConfig(epochs=3, batch_size=8), [sca, Watch()], progress=False).fit()
    had, reset = zip(*checked)
    assert any(had) and all(reset)  # dropped channels that had moments lose them; grown ones start from zero
    with pytest.raises(ValueError, match="convolutions"):
        Trainer(SRNN(10, 3, hidden=(8,), dt=10.0), toy_data(), None, collate, TrainConfig(epochs=1), [SCA(0.5)], progress=False).fit()


def test_sca_run_exports_a_compact_model_with_equal_outputs(tiny_folder, tmp_path):
    import json
    import subprocess
    import sys

    from spiketrum.app.kws import Run

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "spiketrum.app"]
    r = subprocess.run([*cmd, "train", "--dataset", "folder", "--data", str(tiny_folder), "-o", str(out), "--model", "conv",
                        "--epochs", "3", "--rate", "500", "--batch-size", "8", "--augment", "none", "-q",
                        "--prune", "sca", "--keep", "0.25", "--prune-every", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["density"] == {"convs.0": 0.25, "convs.1": 0.25, "total": 0.25}
    r = subprocess.run([*cmd, "prune-export", str(out), "-o", str(tmp_path / "small")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "small" / "export.json").read_text())
    assert report["kept_channels"] == [8, 16] and report["max_abs_logit_difference"] < 1e-4
    assert all(report[k] > 0 for k in ("cpu_latency_ms", "cpu_latency_ms_compact", "cpu_ms_per_clip_batch32",
                                       "cpu_ms_per_clip_batch32_compact"))
    small, big = Run.load(tmp_path / "small"), Run.load(out)
    x = torch.rand(40, 2, big.encoder.n_channels).lt(0.1).float()
    with torch.no_grad():
        assert torch.allclose(small.model(x), big.model(x), atol=1e-5)
    bad = subprocess.run([*cmd, "train", "--dataset", "folder", "--data", str(tiny_folder), "-o", str(tmp_path / "x"),
                          "--prune", "sca", "--density", "0.2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--keep" in bad.stderr
    bad = subprocess.run([*cmd, "train", "--dataset", "folder", "--data", str(tiny_folder), "-o", str(tmp_path / "x"),
                          "--prune", "sca", "--keep", "0.2", "--swap", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--swap" in bad.stderr and not (tmp_path / "x").exists()


def test_sca_without_swaps_only_prunes():
    """swap=0 is the prune-only ablation: a channel once pruned never comes back."""
    from snn.pruning import SCA

    sca = SCA(0.25, swap=0.0, every=1, end=0.8)
    history = []

    class Watch(Callback):
        def on_step_end(self, trainer):
            history.append({k: m.clone() for k, m in sca.masks.items()})

    Trainer(conv_model(), conv_data(), None, collate, TrainConfig(epochs=4, batch_size=8), [sca, Watch()],
            progress=False).fit()
    assert sum(int(m.sum()) for m in history[-1].values()) == 5
    for before, after in zip(history, history[1:]):
        assert all(bool((after[k] <= before[k]).all()) for k in before)


@pytest.mark.parametrize("importance", ["membrane", "taylor"])
def test_sca_keeps_no_activation_alive(importance):
    """Its hooks must not tie a step's activations into a reference cycle (which leaked gigabytes per epoch)."""
    import gc
    import weakref

    from snn.pruning import SCA

    model = conv_model()
    refs = []
    model.convs[0].conv.register_forward_hook(lambda module, inputs, z: refs.append(weakref.ref(z)))
    gc.disable()  # freed by reference counting alone, as they must be
    try:
        Trainer(model, conv_data(), None, collate, TrainConfig(epochs=1, batch_size=8), [SCA(0.5, importance=importance)],
                progress=False).fit()
        assert len(refs) > 5 and all(r() is None for r in refs)
    finally:
        gc.enable()
