"""Sparse and pruned SNNs as Trainer callbacks.

:class:`ESL` (evolutionary structure learning, Shen et al., AAAI 2023) trains a sparse network from
scratch at a fixed connection density: an Erdős–Rényi-kernel (ERK) random topology, then every
``every`` steps the smallest-magnitude connections of each layer are pruned and as many regrown, at
random (SET) or where the dense gradient is largest (RigL). Regrown weights start at zero with a
fresh optimiser state, and each layer keeps its exact number of connections throughout.
"""
from __future__ import annotations

import math

import torch

from .trainer import Callback


def sparse_parameters(model):
    """``{name: weight}`` of the layers a sparse model thins out: every weight matrix or kernel, except the
    readout's (the few output synapses decide the class and are cheap)."""
    return {name: p for name, p in model.named_parameters()
            if p.dim() >= 2 and name.endswith("weight") and not name.startswith("readout.")}


def erk_densities(shapes, density):
    """Per-layer densities with the ERK rule: layer ``l`` gets ``eps * sum(shape) / prod(shape)``, ``eps``
    chosen so that the total number of connections is ``density`` of all; layers that would exceed 1 are
    dense and the rest share what is left.

    Examples
    --------
    >>> [round(d, 3) for d in erk_densities([(256, 120), (256, 256)], 0.1)]
    [0.133, 0.085]
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        over = {i for i in range(len(sizes)) if i not in dense and eps * raw[i] > 1}
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense |= over


class ESL(Callback):
    """Sparse training at a fixed density by periodic magnitude pruning and regrowth.

    Parameters
    ----------
    density : float
        Fraction of connections kept over all :func:`sparse_parameters`, in (0, 1].
    every : int, optional
        Steps between structure updates (default: one epoch).
    drop : float
        Fraction of each layer's connections swapped at the first update; it decays to 0 along a
        cosine until ``end``, after which the structure is frozen.
    end : float
        Fraction of training after which the topology no longer changes.
    regrow : {"random", "gradient"}
        Where new connections grow: uniformly among absent ones (SET), or where the magnitude of the
        dense gradient is largest (RigL), which is how a distillation loss steers the topology.
    seed : int
        Seeds the initial topology and random regrowth.
    """

    def __init__(self, density, every=None, drop=0.3, end=0.75, regrow="random", seed=0):
        if regrow not in ("random", "gradient"):
            raise ValueError(f"regrow must be 'random' or 'gradient', got {regrow!r}")
        if not 0 <= drop < 1 or not 0 <= end <= 1:
            raise ValueError("need 0 <= drop < 1 and 0 <= end <= 1")
        if every is not None and not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be a positive number of steps, got {every!r}")
        erk_densities([(2, 2)], density)  # validates density
        self.density, self.every, self.drop, self.end, self.regrow, self.seed = density, every, drop, end, regrow, seed
        self.masks, self._grads = {}, {}

    # -- topology ------------------------------------------------------------------------------------
    def _init_masks(self, params):
        g = torch.Generator().manual_seed(self.seed)
        for (name, p), d in zip(params.items(), erk_densities([tuple(p.shape) for p in params.values()], self.density)):
            k = round(d * p.numel())
            mask = torch.zeros(p.numel(), dtype=torch.bool)
            mask[torch.randperm(p.numel(), generator=g)[:k]] = True
            self.masks[name] = mask.view_as(p).to(p.device)

    def _apply(self, params):
        with torch.no_grad():
            for name, p in params.items():
                p.mul_(self.masks[name])

    def drop_fraction(self, trainer):
        """The cosine-decayed fraction swapped at the current step (0 once the structure is frozen)."""
        total = trainer.config.epochs * trainer.steps_per_epoch
        t_end = self.end * total
        return 0.0 if trainer.step > t_end else self.drop / 2 * (1 + math.cos(math.pi * trainer.step / max(t_end, 1)))

    def _update(self, trainer, params):
        zeta = self.drop_fraction(trainer)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + trainer.step)
        for name, p in params.items():
            mask = self.masks[name].view(-1)
            active = int(mask.sum())
            n = min(int(zeta * active), mask.numel() - active)
            if n == 0:
                continue
            w = p.detach().view(-1)
            on = torch.nonzero(mask).view(-1)
            pruned = on[torch.topk(w[on].abs(), n, largest=False).indices]
            off = torch.nonzero(~mask).view(-1)  # candidates: absent before this update
            if self.regrow == "gradient":
                grown = off[torch.topk(self._grads[name].view(-1)[off], n).indices]
            else:
                grown = off[torch.randperm(off.numel(), generator=g)[:n].to(off.device)]
            mask[pruned] = False
            mask[grown] = True
            changed = torch.cat([pruned, grown])
            with torch.no_grad():
                w[changed] = 0.0  # pruned connections vanish, grown ones start from zero
                for v in trainer.optimizer.state.get(p, {}).values():
                    if torch.is_tensor(v) and v.shape == p.shape:  # moments: no memory of the old connection
                        v.view(-1)[changed] = 0.0

    def _due(self, trainer, step):
        """Whether the structure changes after optimiser step number ``step`` (counted from 1)."""
        return step % (self.every or trainer.steps_per_epoch) == 0 and self.drop_fraction(trainer) > 0

    # -- hooks ---------------------------------------------------------------------------------------
    def on_train_begin(self, trainer):
        params = sparse_parameters(trainer.model)
        if not self.masks:  # a resumed run brings its masks from the checkpoint
            self._init_masks(params)
        self.masks = {k: m.to(params[k].device) for k, m in self.masks.items()}
        self._apply(params)

    def on_after_backward(self, trainer):
        params = sparse_parameters(trainer.model)
        due = self._due(trainer, trainer.step + 1) and self.regrow == "gradient"  # the step about to be taken
        for name, p in params.items():
            if p.grad is not None:
                if due:
                    self._grads[name] = p.grad.detach().abs()  # the dense gradient, before masking
                p.grad.mul_(self.masks[name])

    def on_step_end(self, trainer):
        params = sparse_parameters(trainer.model)
        if self._due(trainer, trainer.step):
            self._update(trainer, params)
        self._grads = {}
        self._apply(params)  # weight decay and momentum must not revive absent connections

    def on_epoch_end(self, trainer, record):
        record["density"] = self.layer_densities()

    def layer_densities(self):
        """``{layer: fraction of its connections present}``, and ``"total"`` over all of them."""
        out = {name: float(m.float().mean()) for name, m in self.masks.items()}
        out["total"] = sum(int(m.sum()) for m in self.masks.values()) / max(1, sum(m.numel() for m in self.masks.values()))
        return out

    def settings(self):
        """What this option was asked for, JSON-ready (saved with the run)."""
        return {"method": "esl" if self.drop > 0 else "static", "density": self.density, "every": self.every,
                "drop": self.drop, "end": self.end, "regrow": self.regrow, "seed": self.seed}

    def state_dict(self):
        return {"masks": {k: v.cpu() for k, v in self.masks.items()}}

    def load_state_dict(self, state):
        self.masks = dict(state["masks"])
