"""Data-parallel training under torchrun: two CPU processes (gloo) against one.

The tests launch this file itself as the torchrun worker script (see ``worker`` at the bottom).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snn.trainer import TrainConfig, Trainer
from test_kws import Kill

ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args, cwd=ROOT):
    launched = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launched}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


class Net(torch.nn.Module):
    """Mean over the valid time bins, optional dropout, linear."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.drop = torch.nn.Dropout(dropout)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x, lengths):
        mask = (torch.arange(x.shape[0])[:, None] < lengths[None]).to(x.dtype)
        return self.fc(self.drop((x * mask[..., None]).sum(0) / lengths[:, None]))


class Logged(torch.utils.data.Dataset):
    """Random labelled sequences that remember which items were read."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 3, (n,), generator=g)
        lengths = torch.randint(5, 12, (n,), generator=g)
        self.items = [(torch.rand(int(L), 6, generator=g) + torch.nn.functional.one_hot(c, 6)[None] * 0.5, int(c))
                      for c, L in zip(y, lengths)]
        self.seen = []

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.items[i]


def collate(batch):
    out = torch.zeros(max(x.shape[0] for x, _ in batch), len(batch), 6)
    for i, (x, _) in enumerate(batch):
        out[: x.shape[0], i] = x
    return out, torch.tensor([x.shape[0] for x, _ in batch]), torch.tensor([y for _, y in batch])


class SameOrder(Trainer):
    """One process that shuffles as the distributed sampler does: its batches are the ranks' batches together."""

    def loader(self, dataset, shuffle, epoch=0):
        if not shuffle:
            return super().loader(dataset, shuffle, epoch)
        sampler = torch.utils.data.DistributedSampler(dataset, 1, 0, seed=self.config.seed * 100003)
        sampler.set_epoch(epoch)
        return torch.utils.data.DataLoader(dataset, batch_size=self.config.batch_size, sampler=sampler,
                                           collate_fn=self.collate)


def _trainer(run_dir=None, dropout=0.0, kill_at=None, epochs=2, cls=Trainer):
    torch.manual_seed(123)
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=5e-2, patience=0, seed=3)
    return cls(Net(dropout), Logged(24), Logged(10, seed=1), collate, cfg, callbacks=[Kill(kill_at)], run_dir=run_dir,
                   device="cpu", progress=False)


def test_two_processes_split_the_data_agree_and_match_one_process(tmp_path):
    r = torchrun(__file__, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["world"] == 2
    # Every epoch, the two ranks read disjoint halves of the training set.
    for epoch in range(2):
        a, b = (set(seen[12 * epoch: 12 * epoch + 12]) for seen in res["seen"])
        assert len(a) == len(b) == 12 and not a & b and a | b == set(range(24)), (epoch, res["seen"])
    assert all(len(seen) == 24 for seen in res["seen"])
    assert res["weights_agree"] and res["resumed_weights_agree"]
    assert res["resume_exact"]  # each rank's dropout continues from its own saved random state
    # Without dropout, a step on 2 x 4 clips is a step on the same 8 clips in one process.
    one = _trainer(cls=SameOrder)
    one.fit()
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)
    for h1, h2 in zip(one.history, res["history"]):
        assert h1["val_accuracy"] == h2["val_accuracy"] and h1["train_accuracy"] == h2["train_accuracy"]
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-5)
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["checkpoint.pt"]  # rank 0 alone wrote it


def test_spiketrum_train_under_torchrun(tiny_folder, tmp_path):
    from spiketrum.app.kws import Run

    out = tmp_path / "run"
    common = ["--dataset", "folder", "--data", tiny_folder, "-o", out, "--hidden", 16, "--rate", 500,
              "--batch-size", 8, "-q"]
    r = torchrun("-m", "spiketrum.app", "train", *common, "--epochs", 1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("test accuracy") == 1  # rank 0 alone reports
    written = {p.name for p in out.iterdir()}
    assert {"model.pt", "metrics.json", "settings.json", "confusion.png", "checkpoint.pt"} <= written
    m = json.loads((out / "metrics.json").read_text())
    assert m["processes"] == 2 and m["n_test"] > 0 and sum(map(sum, m["confusion"])) == m["n_test"]
    assert Run.load(out).classes == ["0", "1", "7"]
    # Resume under torchrun: nothing is left to train, so it loads the checkpoint and tests again.
    r = torchrun("-m", "spiketrum.app", "train", *common, "--epochs", 1, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((out / "metrics.json").read_text())
    assert again["history"] == m["history"] and again["confusion"] == m["confusion"]


def worker(out):
    """Run by each of torchrun's processes: train, gather what every rank saw and holds, rank 0 writes it down."""
    import torch.distributed as dist

    from snn.trainer import distributed

    def gather(obj):
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, obj)
        return parts

    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    out = Path(out)
    with distributed() as rank:
        for name in ("full", "killed", "whole"):
            (out / name).mkdir(exist_ok=True)
        full = _trainer(out / "full")
        full.fit()
        weights = gather(flat(full.model))
        # Exact resume with dropout: kill at epoch 2 of 3, resume, compare with an uninterrupted run.
        whole = _trainer(out / "whole", dropout=0.3, epochs=3)
        whole.fit()
        try:
            _trainer(out / "killed", dropout=0.3, kill_at=2, epochs=3).fit()
        except KeyboardInterrupt:
            pass
        resumed = _trainer(out / "killed", dropout=0.3, epochs=3)
        resumed.load_checkpoint(out / "killed" / "checkpoint.pt")
        resumed.fit()
        exact = bool(torch.equal(flat(resumed.model), flat(whole.model)) and resumed.history == whole.history)
        result = {"world": dist.get_world_size(), "seen": gather(full.train_set.seen), "history": full.history,
                  "weights_agree": all(torch.equal(weights[0], w) for w in weights),
                  "resumed_weights_agree": len({tuple(w.tolist()) for w in gather(flat(resumed.model))}) == 1,
                  "resume_exact": all(gather(exact))}
        if rank == 0:
            torch.save(full.model.state_dict(), out / "ddp.pt")
            (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    worker(sys.argv[1])
