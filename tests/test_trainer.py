import pytest
import torch

from snn.trainer import Callback, TrainConfig, Trainer


class Toy(torch.nn.Module):
    """Mean over the valid time bins, dropout, linear: small, random (dropout) and order-sensitive (AdamW)."""

    def __init__(self, c=6, k=3):
        super().__init__()
        self.drop = torch.nn.Dropout(0.3)
        self.fc = torch.nn.Linear(c, k)

    def forward(self, x, lengths):
        mask = (torch.arange(x.shape[0])[:, None] < lengths[None]).to(x.dtype)
        return self.fc(self.drop((x * mask[..., None]).sum(0) / lengths[:, None]))


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    lengths = torch.randint(5, 12, (n,), generator=g)
    x = [torch.rand(int(L), 6, generator=g) + torch.nn.functional.one_hot(yy, 6)[None] * 0.5 for yy, L in zip(y, lengths)]
    return list(zip(x, y.tolist()))


def collate(batch):
    T = max(x.shape[0] for x, _ in batch)
    out = torch.zeros(T, len(batch), 6)
    for i, (x, _) in enumerate(batch):
        out[: x.shape[0], i] = x
    return out, torch.tensor([x.shape[0] for x, _ in batch]), torch.tensor([y for _, y in batch])


class Counter(Callback):
    def __init__(self, kill_at=None):
        self.calls = {"batch": 0, "loss": 0, "backward": 0, "step": 0, "epoch": 0}
        self.kill_at = kill_at

    def on_batch(self, trainer, x, lengths, y):
        self.calls["batch"] += 1
        return x, lengths, y

    def loss(self, trainer, logits, y, x, lengths, loss):
        self.calls["loss"] += 1
        return loss + 0.0 * logits.sum()

    def on_after_backward(self, trainer):
        self.calls["backward"] += 1

    def on_step_end(self, trainer):
        self.calls["step"] += 1

    def on_epoch_end(self, trainer, record):
        self.calls["epoch"] += 1
        record["counted"] = self.calls["step"]
        if self.calls["epoch"] == self.kill_at:  # dies before this epoch's checkpoint
            raise KeyboardInterrupt

    def state_dict(self):
        return dict(self.calls)

    def load_state_dict(self, state):
        self.calls = dict(state)


def _trainer(run_dir, kill_at=None, options=(), **kw):
    torch.manual_seed(123)  # model init; the trainer seeds everything else from the config
    cfg = TrainConfig(**{**dict(epochs=4, batch_size=8, lr=5e-2, patience=0, seed=3), **kw})
    return Trainer(Toy(), _data(), _data(20, seed=1), collate, cfg, callbacks=[*options, Counter(kill_at)],
                   run_dir=run_dir, device="cpu", progress=False)


@pytest.mark.parametrize("mixup", [False, True])
def test_resume_after_a_kill_continues_exactly(tmp_path, mixup):
    from snn.trainer import Mixup

    options = lambda: [Mixup(0.4)] if mixup else []  # noqa: E731 - a fresh option per trainer
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = _trainer(tmp_path / "a", options=options())
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "b", kill_at=3, options=options()).fit()
    resumed = _trainer(tmp_path / "b", options=options())
    resumed.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert resumed.epoch == 2
    resumed.fit()
    assert resumed.history == full.history
    for p, q in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(p, q)
    assert resumed.callbacks[-1].calls == full.callbacks[-1].calls == {"batch": 32, "loss": 32, "backward": 32, "step": 32, "epoch": 4}
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint.pt"]  # no temporary files left


def test_resume_refuses_other_settings(tmp_path):
    _trainer(tmp_path, epochs=1).fit()
    other = Trainer(Toy(), _data(), None, collate, TrainConfig(epochs=1, batch_size=8, lr=1e-3, patience=0, seed=3),
                    device="cpu", progress=False)
    with pytest.raises(ValueError, match="lr"):
        other.load_checkpoint(tmp_path / "checkpoint.pt")


def test_learns_and_keeps_the_best_validation_model(tmp_path):
    t = _trainer(tmp_path, epochs=15)
    history = t.fit()
    best = max(h["val_accuracy"] for h in history)
    assert best > 0.8 and t.evaluate(t.val_set)["accuracy"] == best
    ev = t.evaluate(t.val_set, n_classes=3)
    assert ev["confusion"].sum() == 20 and ev["confusion"].trace() == round(ev["accuracy"] * 20)


def test_early_stopping_counts_stale_epochs(tmp_path):
    t = _trainer(tmp_path, epochs=50, patience=2, lr=1e-12)  # nothing improves after the first epoch
    t.fit()
    assert len(t.history) == 3


class Snapshots(Callback):
    """Records the weights after every optimiser step (before the trainer's own average steps) and the
    average at every epoch's end."""

    def __init__(self):
        self.weights, self.averages = [], []

    def on_step_end(self, trainer):
        self.weights.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    def on_epoch_end(self, trainer, record):
        self.averages.append({k: v.clone() for k, v in trainer.ema.items()})


def test_weight_average_is_the_exact_moving_average_and_is_what_validation_scores(tmp_path):
    torch.manual_seed(123)
    snaps = Snapshots()
    cfg = TrainConfig(epochs=4, batch_size=8, lr=5e-2, patience=0, seed=3, ema=0.9)
    t = Trainer(Toy(), _data(), _data(20, seed=1), collate, cfg, callbacks=[snaps], device="cpu", progress=False)
    t.fit()
    ref = {k: v.clone() for k, v in snaps.weights[0].items()}
    for step, w in enumerate(snaps.weights[1:], start=2):
        decay = min(0.9, (1 + step) / (10 + step))
        ref = {k: ref[k] + (w[k] - ref[k]) * (1 - decay) for k in ref}
    for k in ref:
        torch.testing.assert_close(t.ema[k], ref[k], rtol=1e-6, atol=1e-7)
    assert not torch.equal(t.ema["fc.weight"], snaps.weights[-1]["fc.weight"])  # the average is not the last weights
    # validation scored the average, and the run keeps the average of its best epoch
    accs = [h["val_accuracy"] for h in t.history]
    best = accs.index(max(accs))
    assert all(torch.equal(t.model.state_dict()[k], v) for k, v in snaps.averages[best].items())
    for avg, acc in zip(snaps.averages, accs):
        t.model.load_state_dict(avg)
        assert t.evaluate(t.val_set)["accuracy"] == acc


def test_resume_with_a_weight_average_continues_exactly(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = _trainer(tmp_path / "a", ema=0.8)
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "b", kill_at=3, ema=0.8).fit()
    resumed = _trainer(tmp_path / "b", ema=0.8)
    resumed.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    resumed.fit()
    assert resumed.history == full.history
    for k in full.ema:
        assert torch.equal(resumed.ema[k], full.ema[k]) and torch.equal(resumed.model.state_dict()[k], full.model.state_dict()[k])


def test_without_validation_the_run_keeps_the_average(tmp_path):
    torch.manual_seed(123)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=5e-2, patience=0, seed=3, ema=0.9)
    t = Trainer(Toy(), _data(), None, collate, cfg, device="cpu", progress=False)
    t.fit()
    assert all(torch.equal(t.model.state_dict()[k], v) for k, v in t.ema.items())


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(lr=0.0), dict(batch_size=2.5), dict(patience=-1), dict(grad_clip=float("nan")),
                                dict(ema=1.0), dict(ema=-0.1)])
def test_bad_config(kw):
    with pytest.raises(ValueError):
        TrainConfig(**kw)


def test_atomic_save_removes_what_killed_writers_left(tmp_path):
    """A ``kill -9`` during a checkpoint write leaves ``checkpoint.pt.tmp-<pid>``: the next save removes it, but
    never a live process's file."""
    import subprocess

    from snn.trainer import atomic_save

    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / "checkpoint.pt"
    stale, live = tmp_path / f"checkpoint.pt.tmp-{dead.pid}", tmp_path / "checkpoint.pt.tmp-1"
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    atomic_save({"a": 1}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", live.name]


def test_mixup_mixes_each_clip_with_another_and_their_losses_alike():
    import numpy as np

    from snn.trainer import Classification, Detection, Mixup

    np.random.seed(0)
    torch.manual_seed(0)
    B = 16
    x = torch.arange(B, dtype=torch.float32)[None, :, None].expand(5, B, 2).clone()  # clip b holds b everywhere
    lengths, y = torch.randint(1, 6, (B,)), torch.arange(B)
    mix = Mixup(0.4)
    mixed, longer, same = mix.on_batch(None, x, lengths, y)
    lam, other = mix._shuffled
    assert 0 < lam < 1 and torch.equal(same, y) and sorted(other.tolist()) == list(range(B)) and not torch.equal(other, y)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * other.float()[None, :, None].expand(5, B, 2))
    assert torch.equal(longer, torch.maximum(lengths, lengths[other]))
    logits = torch.randn(B, B, requires_grad=True)
    trainer = type("T", (), {"objective": Classification(), "config": TrainConfig()})()
    loss = mix.loss(trainer, logits, y, mixed, longer, torch.nn.functional.cross_entropy(logits, y))
    expect = lam * torch.nn.functional.cross_entropy(logits, y) + (1 - lam) * torch.nn.functional.cross_entropy(logits, other)
    torch.testing.assert_close(loss, expect)
    with pytest.raises(ValueError, match="in time"):
        mix.on_train_begin(type("T", (), {"objective": Detection()})())

