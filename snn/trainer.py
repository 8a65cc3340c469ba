"""One training loop for every model and training option: options plug in as callbacks.

The loop: AdamW with a per-step cosine schedule (linear warm-up), gradient clipping, early stopping
on validation accuracy, an atomic checkpoint after every epoch, and an exact ``resume``: data order,
dropout and every random state continue as if the run had never stopped.

A callback (pruning, distillation, augmentation, continual-learning plasticity ...) overrides any of
the hooks of :class:`Callback`; the loop itself never changes for an option.

Under ``torchrun`` (see :func:`distributed`) the same loop trains data-parallel: each process takes a
disjoint shard of every epoch's order and DistributedDataParallel averages the gradients.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import random
from contextlib import contextmanager, suppress
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved in every checkpoint and model file."""

    epochs: int = 80
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    patience: int = 30  # epochs without a better validation accuracy before stopping; 0 never stops early
    seed: int = 0
    ema: float = 0.0  # decay per optimiser step of a moving average of the weights, which validation scores and the run keeps; 0: off

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("lr", "weight_decay", "warmup_epochs", "grad_clip", "label_smoothing"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            raise ValueError(f"ema must be a decay in [0, 1), got {self.ema!r}")
        if not (isinstance(self.patience, int) and self.patience >= 0):
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")


class Callback:
    """Hooks a training option overrides; the defaults do nothing."""

    def on_train_begin(self, trainer):
        pass

    def on_batch(self, trainer, x, lengths, y):
        """May transform a training batch (augmentation); returns (x, lengths, y)."""
        return x, lengths, y

    def loss(self, trainer, logits, y, x, lengths, loss):
        """May change the training loss (distillation, regularisers); returns the loss."""
        return loss

    def on_after_backward(self, trainer):
        """Gradients are ready, before clipping and the optimiser step (gradient masks, regrowth scores)."""

    def on_step_end(self, trainer):
        """After the optimiser step (weight masks, local plasticity)."""

    def on_epoch_end(self, trainer, record):
        """``record`` holds this epoch's metrics; a callback may add its own."""

    def state_dict(self):
        """Saved in every checkpoint: tensors, numbers, strings, lists and dicts only (it is loaded
        with ``torch.load(weights_only=True)``)."""
        return {}

    def load_state_dict(self, state):
        pass


class Schedule(Callback):
    """Tells the model how far training is: calls ``model.schedule(progress)``, ``progress`` = optimiser steps
    taken / all steps of the run (``Trainer.total_steps``), at the start of training (a resumed run too) and
    after every optimiser step. For models with hyper-parameters annealed over training (the Gaussian width
    of :class:`snn.models.DelaySNN`'s delays); a function of the step count alone, which the checkpoint
    carries, so a resumed run continues the same schedule. It keeps no state of its own."""

    def on_train_begin(self, trainer):
        trainer.model.schedule(trainer.step / trainer.total_steps)

    def on_step_end(self, trainer):
        trainer.model.schedule(trainer.step / trainer.total_steps)


class Mixup(Callback):
    """Mixup (Zhang et al., ICLR 2018): every training batch ``x [T, B, C]`` is mixed with itself in a random
    order, ``lam * x + (1 - lam) * x[:, perm]`` with ``lam ~ Beta(alpha, alpha)`` per batch, and the loss is
    ``lam`` times the loss on the labels plus ``1 - lam`` times the loss on the shuffled labels. Spike counts
    become fractions, which the first synapses weigh as they weigh counts. For one label per clip: the
    detection objective's labels lie in time, and it is refused.

    Examples
    --------
    >>> import torch
    >>> x, lengths, y = torch.ones(4, 3, 2), torch.tensor([4, 2, 3]), torch.tensor([0, 1, 2])
    >>> mixed, longest, same = Mixup(0.4).on_batch(None, x * torch.arange(3.0)[:, None], lengths, y)
    >>> bool(torch.isclose(mixed.sum(), (x * torch.arange(3.0)[:, None]).sum())), bool(torch.equal(same, y))
    (True, True)
    """

    def __init__(self, alpha=0.2):
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"mixup alpha must be > 0, got {alpha!r}")
        self.alpha, self._shuffled = float(alpha), None

    def settings(self):
        """What this option was asked for, JSON-ready (saved with the run)."""
        return {"method": "mixup", "alpha": self.alpha}

    def on_train_begin(self, trainer):
        if trainer.objective.per_step:
            raise ValueError("mixup needs one label per clip; a detector's labels lie in time")

    def on_batch(self, trainer, x, lengths, y):
        lam = float(np.random.beta(self.alpha, self.alpha))  # the global generators: a checkpoint restores them
        perm = torch.randperm(x.shape[1]).to(x.device)
        self._shuffled = lam, y[perm]
        return lam * x + (1 - lam) * x[:, perm], torch.maximum(lengths, lengths[perm]), y

    def loss(self, trainer, logits, y, x, lengths, loss):
        lam, other = self._shuffled
        return lam * loss + (1 - lam) * trainer.objective.loss(logits, other, lengths, trainer.config)


class Classification:
    """What the Trainer minimises by default: one label per clip, cross-entropy on the model's logits.

    An objective tells the loop how to run the model (``per_step``: the readout of every step
    [T, B, C] rather than logits [B, C]), its loss, its prediction per item, and the item labels
    that prediction is scored against.
    """

    per_step = False

    def loss(self, out, y, lengths, config):
        return F.cross_entropy(out, y, label_smoothing=config.label_smoothing)

    def predict(self, out, lengths):
        return out.argmax(1)

    def labels(self, y):
        return y


class Detection(Classification):
    """Keyword spotting in time: a max-pooling loss (Sun et al., Interspeech 2016) on the per-step readout.

    Class 0 is "no keyword". Labels ``y`` are ``[B, 3]``: ``(class, start, stop)`` in steps. For a clip
    of keyword ``k > 0`` the step in ``[start, stop)`` where ``k`` has its highest log-probability is
    pulled towards ``k`` (the model picks its own moment), and every other valid step towards 0. A
    clip of class 0 pulls every valid step towards 0. Each clip's two terms weigh 1 each, however
    long the clip. With ``hard_negative`` > 0 a third term, of that weight, pulls the one step where 0 is
    least probable towards 0, among the steps before the keyword's window (every valid step of a class-0
    clip): a false alarm is one step over threshold, which an average over steps barely sees.

    A clip is predicted as the keyword with the highest per-step probability over its valid steps
    when that probability exceeds ``threshold``, else 0.

    Examples
    --------
    >>> u = torch.zeros(5, 1, 3)
    >>> u[2, 0, 1] = 4.0  # keyword 1 stands out at step 2
    >>> y = torch.tensor([[1, 1, 4]])
    >>> Detection().predict(u, torch.tensor([5])).tolist(), Detection().labels(y).tolist()
    ([1], [1])
    """

    per_step = True

    def __init__(self, threshold=0.5, hard_negative=0.0):
        self.threshold, self.hard_negative = threshold, hard_negative

    def loss(self, u, y, lengths, config):
        T, B, _ = u.shape
        logp = F.log_softmax(u, -1)
        t = torch.arange(T, device=u.device)[:, None]
        valid = t < lengths[None, :]
        window = valid & (t >= y[None, :, 1]) & (t < y[None, :, 2]) & (y[None, :, 0] > 0)
        rest = (valid & ~window).to(u.dtype)
        own = logp.gather(2, y[None, :, 0, None].expand(T, B, 1))[..., 0]
        best = own.masked_fill(~window, -math.inf).amax(0)
        keyword = -torch.where(window.any(0), best, torch.zeros_like(best))
        silence = -(logp[..., 0] * rest).sum(0) / rest.sum(0).clamp(min=1)
        if self.hard_negative:
            before = valid & ((t < y[None, :, 1]) | (y[None, :, 0] == 0))
            worst = logp[..., 0].masked_fill(~before, math.inf).amin(0)
            silence = silence - self.hard_negative * torch.where(before.any(0), worst, torch.zeros_like(worst))
        return (keyword + silence).mean()

    def predict(self, u, lengths):
        p = torch.softmax(u, -1)[..., 1:]
        valid = torch.arange(u.shape[0], device=u.device)[:, None] < lengths[None, :]
        peak, k = (p * valid[..., None]).amax(0).max(1)
        return torch.where(peak > self.threshold, k + 1, torch.zeros_like(k))

    def labels(self, y):
        return y[:, 0]


def classification_result(predictions, labels, n_classes=None):
    """``{"accuracy", "n", "confusion" (true x predicted), "predictions"}`` of integer class ``predictions``
    against ``labels``; ``n_classes`` defaults to the largest class seen + 1."""
    p, t = np.asarray(predictions, np.int64), np.asarray(labels, np.int64)
    k = n_classes or int(max(p.max(initial=0), t.max(initial=0)) + 1)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (t, p), 1)
    return {"accuracy": float((p == t).mean()) if t.size else float("nan"), "n": int(t.size), "confusion": confusion,
            "predictions": p}


def default_device():
    if torch.cuda.is_available() and rank_and_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))  # one GPU per process
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# -- distributed (torchrun) ------------------------------------------------------------------------
def rank_and_world():
    """(rank, world size) of this process: (0, 1) outside a process group."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


@contextmanager
def distributed():
    """Join the process group when launched by ``torchrun`` (RANK and WORLD_SIZE set) and leave it at the
    end; yields this process's rank. Outside torchrun, or inside a group already joined, it does nothing.

    gloo on the CPU, nccl on CUDA with one GPU per process (LOCAL_RANK). A process that fails ends the
    others through torchrun; a hung one, through the timeout, which is long because the other processes
    wait at a barrier while rank 0 encodes the corpus.
    """
    if dist.is_initialized() or not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        yield rank_and_world()[0]
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    # After an error the process leaves at once (the yield raises): cleaning up could wait on peers that
    # are inside a collective, and torchrun stops them when this process exits.
    yield dist.get_rank()
    # Leave together. gloo's barrier would hold on to earlier collectives' tensors, and its worker thread
    # (which DDP keeps alive) could then free them while Python exits, which aborts the process.
    dist.monitored_barrier() if dist.get_backend() == "gloo" else dist.barrier()
    dist.destroy_process_group()


@contextmanager
def rank_zero_first():
    """Rank 0 runs the block before the other processes do: it fills a cache that they then only read."""
    rank, world = rank_and_world()
    if world > 1 and rank != 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()


def _rng_state():
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # Plain lists and tensors only, so checkpoints load with torch.load(weights_only=True).
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    # .cpu(): a checkpoint loaded with map_location=cuda has its random states on the GPU too.
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _atomic_write(path, write):
    """``write(tmp)`` to a temporary file beside ``path``, then rename: never half a file, and no temporary file
    left by a failed write. Those of writers killed mid-write (``kill -9``) are removed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    for stale in glob.glob(f"{glob.escape(str(path))}.tmp-*"):
        if not _alive(stale.rpartition("-")[2]):
            with suppress(FileNotFoundError):
                os.remove(stale)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path):
    """``torch.save`` atomically (see :func:`_atomic_write`)."""
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _alive(pid):
    """Whether the process ``pid`` (a string) runs; a name that is no pid counts as alive (never removed)."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Trainer:
    """Train ``model`` (``model(x, lengths) -> logits``) on batches ``(x [T, B, C], lengths, y)``.

    Parameters
    ----------
    model : torch.nn.Module
    train_set, val_set : torch.utils.data.Dataset
        Items for ``collate``; ``val_set`` may be None (then the last epoch's model is kept).
    collate : callable
        Turns a list of items into ``(x, lengths, y)``.
    config : TrainConfig
    callbacks : sequence of Callback
    run_dir : path, optional
        Where ``checkpoint.pt`` is written after every epoch (and read by ``resume``).
    device : torch.device, optional
        CUDA when present, else the CPU.
    progress : bool
        Show a tqdm bar with loss and accuracy.
    objective : Classification or Detection, optional
        The loss and the per-item prediction (default :class:`Classification`); a per-step objective
        runs ``model(x, lengths, per_step=True)``, and callbacks' ``loss`` hook then gets that output.

    Inside a process group (:func:`distributed`) every process runs the same loop: ``batch_size`` is
    the global batch, split evenly between the processes (``batch_size // world_size`` each), so an
    epoch has as many optimiser steps as on one process. Metrics and validation cover all processes'
    items and agree on every rank; only rank 0 writes the checkpoint and shows progress.
    """

    def __init__(self, model, train_set, val_set, collate, config=TrainConfig(), callbacks=(), run_dir=None,
                 device=None, progress=True, objective=None):
        self.config = config
        self.objective = objective or Classification()
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.train_set, self.val_set, self.collate = train_set, val_set, collate
        self.callbacks = list(callbacks)
        self.run_dir = run_dir
        self.rank, self.world_size = rank_and_world()
        self.progress = progress and self.rank == 0
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = max(1, math.ceil(len(train_set) / config.batch_size))
        self.ddp = None  # the training forward pass; self.model stays the plain module for callbacks and checkpoints
        if self.world_size > 1:
            if config.batch_size < self.world_size:
                raise ValueError(f"batch_size {config.batch_size} is smaller than the {self.world_size} processes")
            self.rank_batch = config.batch_size // self.world_size
            # DistributedSampler pads every shard to ceil(n / world_size) items: all ranks take the same steps.
            self.steps_per_epoch = max(1, math.ceil(math.ceil(len(train_set) / self.world_size) / self.rank_batch))
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model)  # batches are moved to the device by us
        self.total_steps = total = config.epochs * self.steps_per_epoch  # what schedules (lr, pruning) span
        warm = config.warmup_epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1.0, total - warm))))
        self.epoch, self.step = 0, 0
        self.best_accuracy, self.best_state, self.stale = -1.0, None, 0
        self.history = []
        self.ema = None  # the moving average of the weights (config.ema), a state dict

    # -- data --------------------------------------------------------------------------------------
    def loader(self, dataset, shuffle, epoch=0):
        """Batches of ``dataset``; a shuffled order depends only on (seed, epoch), which makes resume exact."""
        g = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        if shuffle and self.world_size > 1:
            # The same (seed, epoch) permutation on every rank; rank r takes its items r, r + world_size, ...
            sampler = torch.utils.data.DistributedSampler(dataset, self.world_size, self.rank,
                                                          seed=self.config.seed * 100003)
            sampler.set_epoch(epoch)
            return torch.utils.data.DataLoader(dataset, batch_size=self.rank_batch, sampler=sampler,
                                               collate_fn=self.collate)
        return torch.utils.data.DataLoader(dataset, batch_size=self.config.batch_size, shuffle=shuffle, generator=g,
                                           collate_fn=self.collate)

    def _forward(self, net, x, lengths):
        return net(x, lengths, per_step=True) if self.objective.per_step else net(x, lengths)

    def _to_device(self, x, lengths, y):
        return x.to(self.device, non_blocking=True), lengths.to(self.device), y.to(self.device)

    # -- training ----------------------------------------------------------------------------------
    def fit(self):
        """Train until ``epochs`` or early stopping; returns the history (one dict per epoch)."""
        from tqdm import tqdm

        cfg = self.config
        if self.epoch == 0 and not self.history:
            seed_everything(cfg.seed + 1000003 * self.rank)  # other dropout and augmentation draws on each rank
        for cb in self.callbacks:
            cb.on_train_begin(self)
        while self.epoch < cfg.epochs and not (cfg.patience and self.stale >= cfg.patience):
            self.model.train()
            total, correct, loss_sum = 0, 0, 0.0
            bar = tqdm(self.loader(self.train_set, True, self.epoch), total=self.steps_per_epoch, leave=False,
                       desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not self.progress)
            for x, lengths, y in bar:
                x, lengths, y = self._to_device(x, lengths, y)
                for cb in self.callbacks:
                    x, lengths, y = cb.on_batch(self, x, lengths, y)
                out = self._forward(self.ddp or self.model, x, lengths)  # DDP all-reduces the gradients in backward()
                loss = self.objective.loss(out, y, lengths, cfg)
                for cb in self.callbacks:
                    loss = cb.loss(self, out, y, x, lengths, loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for cb in self.callbacks:
                    cb.on_after_backward(self)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                for cb in self.callbacks:
                    cb.on_step_end(self)
                if cfg.ema:
                    self._average_weights()
                labels = self.objective.labels(y)
                n = labels.numel()
                total += n
                correct += int((self.objective.predict(out.detach(), lengths) == labels).sum())
                loss_sum += float(loss.detach()) * n
                bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
            if self.world_size > 1:  # the epoch's metrics over every rank's items
                sums = torch.tensor([total, correct, loss_sum], dtype=torch.float64, device=self.device)
                dist.all_reduce(sums)
                total, correct, loss_sum = int(sums[0]), int(sums[1]), float(sums[2])
            record = {"epoch": self.epoch + 1, "train_loss": loss_sum / max(total, 1), "train_accuracy": correct / max(total, 1),
                      "lr": self.scheduler.get_last_lr()[0]}
            if self.val_set is not None:
                with self._averaged():
                    record["val_accuracy"] = self.evaluate(self.val_set)["accuracy"]
                    if record["val_accuracy"] > self.best_accuracy:
                        self.best_accuracy, self.stale = record["val_accuracy"], 0
                        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    else:
                        self.stale += 1
            elif self.ema is not None and self.epoch + 1 == cfg.epochs:
                self.best_state = self.ema  # no validation: the run keeps the average
            for cb in self.callbacks:
                cb.on_epoch_end(self, record)
            self.history.append(record)
            self.epoch += 1
            if self.progress:
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if self.run_dir is not None:
                self.save_checkpoint(os.path.join(self.run_dir, "checkpoint.pt"))
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history

    @torch.no_grad()
    def _average_weights(self):
        """Step the moving average of the weights; the decay ramps up over the first steps ((1 + t) / (10 + t)),
        so that the average does not remember the random initialisation. Integer buffers are copied."""
        decay = min(self.config.ema, (1 + self.step) / (10 + self.step))
        if self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        for k, v in self.model.state_dict().items():
            if v.is_floating_point():
                self.ema[k].lerp_(v.detach(), 1 - decay)
            else:
                self.ema[k].copy_(v)

    @contextmanager
    def _averaged(self):
        """The model holds the averaged weights inside the block (when there are any), its own after it."""
        if self.ema is None:
            yield
            return
        own = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.model.load_state_dict(own)

    @torch.no_grad()
    def evaluate(self, dataset, n_classes=None):
        """Accuracy, the confusion matrix (true x predicted) and the predictions on ``dataset``.

        In a process group each rank scores every world_size-th item and all get the whole result.
        """
        self.model.eval()
        rank, world = self.rank, self.world_size
        part = dataset if world == 1 else torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
        preds, labels = [], []
        for x, lengths, y in self.loader(part, False):
            x, lengths, y = self._to_device(x, lengths, y)
            preds.append(self.objective.predict(self._forward(self.model, x, lengths), lengths).cpu())
            labels.append(self.objective.labels(y).cpu())
        # A rank's part may be empty when there are fewer items than processes.
        p, t = (torch.cat(preds).numpy(), torch.cat(labels).numpy()) if preds else (np.zeros(0, np.int64),) * 2
        if world > 1:  # interleave the ranks' parts back into the dataset's order
            parts = [None] * world
            dist.all_gather_object(parts, (p, t))
            p, t = np.zeros(len(dataset), np.int64), np.zeros(len(dataset), np.int64)
            for r, (pr, tr) in enumerate(parts):
                p[r::world], t[r::world] = pr, tr
        return classification_result(p, t, n_classes)

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self):
        return {"config": dataclasses.asdict(self.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                "step": self.step, "best_accuracy": self.best_accuracy, "best_state": self.best_state, "stale": self.stale,
                "history": self.history, "rng": _rng_state(), "callbacks": [cb.state_dict() for cb in self.callbacks],
                "world_size": self.world_size, "ema": self.ema}

    def save_checkpoint(self, path):
        """Written by rank 0; in a process group every rank must call it (it gathers their random states)."""
        state = self.state_dict()
        if self.world_size > 1:  # each rank's own dropout and augmentation draws continue on resume
            state["rng_ranks"] = [None] * self.world_size
            dist.all_gather_object(state["rng_ranks"], state["rng"])
        if self.rank == 0:
            atomic_save(state, path)

    def load_checkpoint(self, path):
        """Continue from ``path``: the run goes on exactly as if it had not stopped."""
        state = read_checkpoint(path, self.device)
        check_resumable(state, self.config, path)
        if state.get("world_size", 1) != self.world_size:  # other batches per process and another schedule
            raise ValueError(f"{path}: checkpoint was trained on {state.get('world_size', 1)} processes, this run has "
                             f"{self.world_size}; resume with as many")
        if len(state["callbacks"]) != len(self.callbacks):
            raise ValueError(f"{path}: checkpoint has {len(state['callbacks'])} training options, this run {len(self.callbacks)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.stale = state["epoch"], state["step"], state["stale"]
        self.best_accuracy, self.best_state, self.history = state["best_accuracy"], state["best_state"], state["history"]
        self.ema = state.get("ema")
        for cb, s in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(s)
        ranks = state.get("rng_ranks", [])  # from a run with as many processes: this rank's own states
        _set_rng_state(ranks[self.rank] if len(ranks) == self.world_size else state["rng"])


CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "epoch", "step", "stale", "best_accuracy", "best_state",
                   "history", "callbacks")


def read_checkpoint(path, device="cpu"):
    """The state a :class:`Trainer` checkpoint at ``path`` holds; ValueError naming ``path`` when it is no
    checkpoint (unreadable, foreign or truncated bytes, another kind of file). Pickled code is never run."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways on foreign bytes (IndexError on a WAV)
        if isinstance(exc, OSError) and not isinstance(exc, EOFError) and exc.errno is not None:
            raise ValueError(f"{path}: cannot read checkpoint ({exc.strerror})") from None
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({detail[:200]})") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else None
    if missing is None or missing:
        raise ValueError(f"{path}: not a training checkpoint ({'no ' + ', '.join(missing) if missing else 'not a dict'})")
    if not isinstance(state["config"], dict) or not isinstance(state["callbacks"], list):
        raise ValueError(f"{path}: not a training checkpoint (malformed config or options)")
    return state


def check_resumable(state, config, path):
    """ValueError naming ``path`` unless checkpoint ``state`` was trained with this :class:`TrainConfig`."""
    saved, now = {**dataclasses.asdict(TrainConfig()), **state["config"]}, dataclasses.asdict(config)  # newer fields: defaults
    if saved != now:
        diff = sorted(k for k in saved if saved[k] != now.get(k))
        raise ValueError(f"{path}: checkpoint was trained with other settings ({', '.join(diff)}); cannot resume")


def write_json(obj, path):
    """JSON written atomically, as :func:`atomic_save` (numpy scalars and arrays become numbers and lists)."""
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    def dump(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=default)

    _atomic_write(path, dump)
