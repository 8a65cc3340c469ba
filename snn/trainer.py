"""One training loop for every model and training option: options plug in as callbacks.

The loop: AdamW with a per-step cosine schedule (linear warm-up), gradient clipping, early stopping
on validation accuracy, an atomic checkpoint after every epoch, and an exact ``resume``: data order,
dropout and every random state continue as if the run had never stopped.

A callback (pruning, distillation, augmentation, continual-learning plasticity ...) overrides any of
the hooks of :class:`Callback`; the loop itself never changes for an option.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import random

import numpy as np
import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved in every checkpoint and model file."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    patience: int = 12  # epochs without a better validation accuracy before stopping; 0 never stops early
    seed: int = 0

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


def default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_save(obj, path):
    """``torch.save`` to a temporary file beside ``path``, then rename: never half a checkpoint."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    """

    def __init__(self, model, train_set, val_set, collate, config=TrainConfig(), callbacks=(), run_dir=None,
                 device=None, progress=True):
        self.config = config
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.train_set, self.val_set, self.collate = train_set, val_set, collate
        self.callbacks = list(callbacks)
        self.run_dir = run_dir
        self.progress = progress
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = max(1, math.ceil(len(train_set) / config.batch_size))
        total, warm = config.epochs * self.steps_per_epoch, config.warmup_epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1.0, total - warm))))
        self.epoch, self.step = 0, 0
        self.best_accuracy, self.best_state, self.stale = -1.0, None, 0
        self.history = []

    # -- data --------------------------------------------------------------------------------------
    def loader(self, dataset, shuffle, epoch=0):
        """Batches of ``dataset``; a shuffled order depends only on (seed, epoch), which makes resume exact."""
        g = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        return torch.utils.data.DataLoader(dataset, batch_size=self.config.batch_size, shuffle=shuffle, generator=g,
                                           collate_fn=self.collate)

    def _to_device(self, x, lengths, y):
        return x.to(self.device, non_blocking=True), lengths.to(self.device), y.to(self.device)

    # -- training ----------------------------------------------------------------------------------
    def fit(self):
        """Train until ``epochs`` or early stopping; returns the history (one dict per epoch)."""
        from tqdm import tqdm

        cfg = self.config
        if self.epoch == 0 and not self.history:
            seed_everything(cfg.seed)
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
                logits = self.model(x, lengths)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                for cb in self.callbacks:
                    loss = cb.loss(self, logits, y, x, lengths, loss)
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
                n = y.numel()
                total += n
                correct += int((logits.argmax(1) == y).sum())
                loss_sum += float(loss.detach()) * n
                bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
            record = {"epoch": self.epoch + 1, "train_loss": loss_sum / max(total, 1), "train_accuracy": correct / max(total, 1),
                      "lr": self.scheduler.get_last_lr()[0]}
            if self.val_set is not None:
                record["val_accuracy"] = self.evaluate(self.val_set)["accuracy"]
                if record["val_accuracy"] > self.best_accuracy:
                    self.best_accuracy, self.stale = record["val_accuracy"], 0
                    self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    self.stale += 1
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
    def evaluate(self, dataset, n_classes=None):
        """Accuracy, the confusion matrix (true x predicted) and the predictions on ``dataset``."""
        self.model.eval()
        preds, labels = [], []
        for x, lengths, y in self.loader(dataset, False):
            x, lengths, y = self._to_device(x, lengths, y)
            preds.append(self.model(x, lengths).argmax(1).cpu())
            labels.append(y.cpu())
        p, t = torch.cat(preds).numpy(), torch.cat(labels).numpy()
        k = n_classes or int(max(p.max(initial=0), t.max(initial=0)) + 1)
        confusion = np.zeros((k, k), np.int64)
        np.add.at(confusion, (t, p), 1)
        return {"accuracy": float((p == t).mean()) if t.size else float("nan"), "n": int(t.size), "confusion": confusion,
                "predictions": p}

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self):
        return {"config": dataclasses.asdict(self.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                "step": self.step, "best_accuracy": self.best_accuracy, "best_state": self.best_state, "stale": self.stale,
                "history": self.history, "rng": _rng_state(), "callbacks": [cb.state_dict() for cb in self.callbacks]}

    def save_checkpoint(self, path):
        atomic_save(self.state_dict(), path)

    def load_checkpoint(self, path):
        """Continue from ``path``: the run goes on exactly as if it had not stopped."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)  # never runs pickled code
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise ValueError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        if state["config"] != dataclasses.asdict(self.config):
            diff = sorted(k for k in state["config"] if state["config"][k] != dataclasses.asdict(self.config).get(k))
            raise ValueError(f"{path}: checkpoint was trained with other settings ({', '.join(diff)}); cannot resume")
        if len(state["callbacks"]) != len(self.callbacks):
            raise ValueError(f"{path}: checkpoint has {len(state['callbacks'])} training options, this run {len(self.callbacks)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.stale = state["epoch"], state["step"], state["stale"]
        self.best_accuracy, self.best_state, self.history = state["best_accuracy"], state["best_state"], state["history"]
        for cb, s in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(s)
        _set_rng_state(state["rng"])


def write_json(obj, path):
    """JSON written atomically (numpy scalars and arrays become numbers and lists)."""
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=default)
    os.replace(tmp, path)
