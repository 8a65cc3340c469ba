"""Sparse and pruned SNNs as Trainer callbacks.

:class:`SCA` (spiking channel activity pruning, Li et al., ICML 2024) removes whole output channels
of the spiking convolutions during training: the channels of least importance (by default the
activity-times-gradient score |sum dL/dz * z| of their input current z; the paper's mean |membrane
potential| is an option), tracked by an exponential moving average, are pruned and the channels whose
drive the loss most wants to change (mean |dL/d current|) regrown, while the kept fraction follows a
cubic schedule down to its target. :func:`compact` then removes the pruned channels physically.

:class:`ESL` (evolutionary structure learning, Shen et al., AAAI 2023) trains a sparse network from
scratch at a fixed connection density: an Erdős–Rényi-kernel (ERK) random topology, then every
``every`` steps the smallest-magnitude connections of each layer are pruned and as many regrown, at
random (SET) or where the dense gradient is largest (RigL). Regrown weights start at zero with a
fresh optimiser state, and each layer keeps its exact number of connections throughout.
"""
from __future__ import annotations

import math

import torch

from .layers import SpikingConv1d
from .models import ConvSNN
from .trainer import Callback


def sparse_parameters(model):
    """``{name: weight}`` of the layers a sparse model thins out: every weight matrix or kernel, except the
    readout's (the few output synapses decide the class and are cheap)."""
    return {name: p for name, p in model.named_parameters()
            if p.dim() >= 2 and name.endswith("weight") and not name.startswith("readout.")}


def _densities(masks):
    out = {name: float(m.float().mean()) for name, m in masks.items()}
    out["total"] = sum(int(m.sum()) for m in masks.values()) / max(1, sum(m.numel() for m in masks.values()))
    return out


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
    if not shapes:
        raise ValueError("this model has no weight layers to make sparse")
    if density == 1:
        return [1.0] * len(shapes)
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        over = {i for i in range(len(sizes)) if i not in dense and eps * raw[i] > 1 + 1e-12}
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
    regrow : {"gradient", "random"}
        Where new connections grow: where the magnitude of the dense gradient is largest (RigL; the default,
        and how a distillation loss steers the topology), or uniformly among absent ones (SET).
    seed : int
        Seeds the initial topology and random regrowth.
    """

    def __init__(self, density, every=None, drop=0.3, end=0.75, regrow="gradient", seed=0):
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
        total = trainer.total_steps
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
            if self.regrow == "gradient" and name in self._grads:  # (a layer without a gradient regrows at random)
                grown = off[torch.topk(self._grads[name].view(-1)[off], n).indices]
            else:
                grown = off[torch.randperm(off.numel(), generator=g)[:n].to(off.device)]
            mask[pruned] = False
            mask[grown] = True
            changed = torch.cat([pruned, grown])  # their weights are zero (absent ones are kept at zero)
            with torch.no_grad():
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
        return _densities(self.masks)

    def settings(self):
        """What this option was asked for, JSON-ready (saved with the run)."""
        return {"method": "esl" if self.drop > 0 else "static", "density": self.density, "every": self.every,
                "drop": self.drop, "end": self.end, "regrow": self.regrow, "seed": self.seed}

    def state_dict(self):
        return {"masks": {k: v.cpu() for k, v in self.masks.items()}}

    def load_state_dict(self, state):
        self.masks = dict(state["masks"])


class SCA(Callback):
    """Structured channel pruning with regrowth for the :class:`~snn.SpikingConv1d` layers of a model.

    Every ``every`` steps each layer keeps ``round(k(t) * channels)`` output channels (at least
    ``min_channels``), ``k(t) = keep + (1 - keep) * (1 - t / t_end)^3``; a cosine-decaying fraction of
    them is swapped: the lowest-importance kept channels go, and the absent channels with the largest
    mean |dL/d input current| come back, from zero weights with a fresh optimiser state. After
    ``end`` of training the structure is frozen, and only models of the final structure count as best.

    Parameters
    ----------
    keep : float
        Final fraction of channels kept per layer, in (0, 1].
    importance : {"taylor", "membrane", "rate", "random"}
        Score of a channel: |sum dL/dz * z| over its input current z (first-order Taylor: the loss change
        if the channel went), mean |membrane potential| (the paper's), firing rate, or random (the
        random-pruning baseline). On FSDD the membrane score lost to random channels (see the README): a
        strongly hyperpolarised, silent channel has a large |membrane| too.
    schedule : {"cubic", "oneshot"}
        Gradual, or all at once at ``oneshot_at`` of training with no regrowth (the one-shot baseline).
    swap : float
        Fraction of the kept channels swapped at the first update (cosine-decayed to 0 at ``end``).
    every : int, optional
        Steps between structure updates (default: one epoch).
    end, oneshot_at : float
        Fractions of training.
    ema : float
        Decay of the importance averages.
    min_channels : int
    seed : int
    """

    def __init__(self, keep, importance="taylor", schedule="cubic", swap=0.3, every=None, end=0.75, oneshot_at=0.5,
                 ema=0.9, min_channels=2, seed=0):
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep!r}")
        if importance not in ("membrane", "rate", "taylor", "random"):
            raise ValueError(f"unknown importance {importance!r}: use membrane, rate, taylor or random")
        if schedule not in ("cubic", "oneshot"):
            raise ValueError(f"unknown schedule {schedule!r}: use cubic or oneshot")
        self.keep, self.importance, self.schedule, self.swap, self.every = keep, importance, schedule, swap, every
        self.end, self.oneshot_at, self.ema, self.min_channels, self.seed = end, oneshot_at, ema, min_channels, seed
        self.masks, self.frozen = {}, False
        self._score, self._grow, self._hooks = {}, {}, []

    def settings(self):
        return {"method": "sca", "keep": self.keep, "importance": self.importance, "schedule": self.schedule,
                "swap": self.swap, "every": self.every, "end": self.end, "seed": self.seed}

    # -- measuring -------------------------------------------------------------------------------------
    def _track(self, name, key, value):
        store = self._score if key == "score" else self._grow
        old = store.get(name)
        store[name] = value if old is None else self.ema * old + (1 - self.ema) * value

    def _attach(self, model):
        def on_conv(name):
            def hook(module, inputs, z):  # z: the input current [T*B, maps, L]
                if module.training and z.requires_grad:
                    # the closure holds a detached view, never z itself: z -> hook -> z would be a reference
                    # cycle that keeps every step's activations alive until the garbage collector runs
                    current = z.detach() if self.importance == "taylor" else None

                    def grad(g):
                        self._track(name, "grow", g.detach().abs().mean((0, 2)))
                        if current is not None:
                            self._track(name, "score", (g.detach() * current).sum((0, 2)).abs())
                    z.register_hook(grad)
            return hook

        def on_neurons(name):
            def hook(module, args, kwargs, output):
                if not module.training or self.importance not in ("membrane", "rate"):
                    return
                spikes = output[0]
                T, B = spikes.shape[:2]
                if self.importance == "rate":
                    value = spikes.detach().reshape(T, B, module.n, -1).mean((0, 1, 3))
                else:
                    with torch.no_grad():  # .forward: a call would run this hook again
                        _, h, _ = module.forward(args[0].detach(), *args[1:], return_membrane=True, **kwargs)
                    value = h.abs().reshape(T, B, module.n, -1).mean((0, 1, 3))
                self._track(name, "score", value)
            return hook

        for name, layer in self._layers(model).items():
            self._hooks.append(layer.conv.register_forward_hook(on_conv(name)))
            self._hooks.append(layer.neurons.register_forward_hook(on_neurons(name), with_kwargs=True))

    @staticmethod
    def _layers(model):
        return {name: m for name, m in model.named_modules() if isinstance(m, SpikingConv1d)}

    # -- structure -------------------------------------------------------------------------------------
    def kept_fraction(self, trainer):
        """The schedule's fraction of channels kept at the current step."""
        total = trainer.total_steps
        if self.schedule == "oneshot":
            return self.keep if trainer.step >= self.oneshot_at * total else 1.0
        frac = min(1.0, trainer.step / max(1.0, self.end * total))
        return self.keep + (1 - self.keep) * (1 - frac) ** 3

    def _update(self, trainer):
        total = trainer.total_steps
        t_end = self.end * total
        zeta = 0.0 if self.schedule == "oneshot" or trainer.step >= t_end else \
            self.swap / 2 * (1 + math.cos(math.pi * trainer.step / max(t_end, 1)))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + trainer.step)
        for name, layer in self._layers(trainer.model).items():
            mask = self.masks[name]
            n = mask.numel()
            target = min(n, max(self.min_channels, round(self.kept_fraction(trainer) * n)))
            score = torch.rand(n, generator=g) if self.importance == "random" else self._score.get(name)
            if score is None:
                continue
            score, grow = _mean_over_processes(score.to(mask.device)), self._grow.get(name)
            grow = None if grow is None else _mean_over_processes(grow.to(mask.device))
            on, off = torch.nonzero(mask).view(-1), torch.nonzero(~mask).view(-1)
            n_swap = min(int(zeta * target), off.numel()) if grow is not None else 0
            n_drop = max(0, on.numel() - target + n_swap)
            if n_drop == 0:
                continue
            dropped = on[torch.topk(score[on], min(n_drop, on.numel()), largest=False).indices]
            grown = off[torch.topk(grow[off], n_swap).indices] if n_swap else off[:0]
            mask[dropped] = False
            mask[grown] = True
            for p in (layer.conv.weight, layer.conv.bias):  # absent channels are kept at zero: regrown ones start there
                for v in trainer.optimizer.state.get(p, {}).values():
                    if torch.is_tensor(v) and v.shape == p.shape:
                        v[torch.cat([dropped, grown])] = 0.0

    def _apply(self, model, grads=False):
        for name, layer in self._layers(model).items():
            keep = self.masks[name]
            for p in (layer.conv.weight, layer.conv.bias):
                t = p.grad if grads else p.data
                if t is not None:
                    t[~keep] = 0.0

    # -- hooks -----------------------------------------------------------------------------------------
    def check_model(self, model):
        """Before any data is prepared: ValueError unless ``model`` has spiking convolutions to prune."""
        if not self._layers(model):
            raise ValueError(f"SCA prunes convolution channels; the {type(model).__name__} model has no spiking "
                             "convolutions (use a ConvSNN)")

    def on_train_begin(self, trainer):
        self.check_model(trainer.model)
        layers = self._layers(trainer.model)
        device = next(trainer.model.parameters()).device
        self.masks = {name: self.masks.get(name, torch.ones(layer.conv.out_channels, dtype=torch.bool)).to(device)
                      for name, layer in layers.items()}
        if not self._hooks:
            self._attach(trainer.model)
        self._apply(trainer.model)

    def on_after_backward(self, trainer):
        self._apply(trainer.model, grads=True)

    def on_step_end(self, trainer):
        every = self.every or trainer.steps_per_epoch
        if not self.frozen and trainer.step % every == 0:
            self._update(trainer)
        self._apply(trainer.model)

    def on_epoch_end(self, trainer, record):
        total = trainer.total_steps
        done = trainer.step >= (self.oneshot_at if self.schedule == "oneshot" else self.end) * total
        settling = not self.frozen
        if done and not self.frozen:  # from here the structure is final
            self._update(trainer)
            self._apply(trainer.model)
            self.frozen = True
        record["channels_kept"] = {name: int(m.sum()) for name, m in self.masks.items()}
        if settling:  # only models of the final structure may be kept as the best, and pruning never stops a run
            trainer.best_accuracy, trainer.best_state, trainer.stale = -1.0, None, 0

    def layer_densities(self):
        """``{layer: fraction of its output channels kept}``, and ``"total"`` over all of them."""
        return _densities(self.masks)

    def state_dict(self):
        return {"masks": {k: v.cpu() for k, v in self.masks.items()}, "frozen": self.frozen,
                "score": {k: v.cpu() for k, v in self._score.items()}, "grow": {k: v.cpu() for k, v in self._grow.items()}}

    def load_state_dict(self, state):
        self.masks, self.frozen = dict(state["masks"]), bool(state["frozen"])
        self._score, self._grow = dict(state["score"]), dict(state["grow"])


def _mean_over_processes(t):
    """``t`` averaged over the processes of a torchrun job (itself outside one): every process then makes the same
    structural choice, as DistributedDataParallel needs."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def kept_channels(model):
    """``{conv layer name: indices of its output channels that are present}``: a pruned channel has all-zero
    weights and bias, so a trained file carries its structure."""
    return {name: torch.nonzero(layer.conv.weight.detach().abs().sum((1, 2)) + layer.conv.bias.detach().abs() > 0).view(-1)
            for name, layer in SCA._layers(model).items()}


def compact(model, kwargs):
    """A :class:`~snn.ConvSNN` without its pruned channels, computing exactly what ``model`` computes.

    Parameters
    ----------
    model : ConvSNN
    kwargs : dict
        The keyword arguments ``model`` was built with (a run's ``model_kwargs``).

    Returns
    -------
    (ConvSNN, dict)
        The compact model and its keyword arguments (``channels`` now the kept counts).
    """
    keep = list(kept_channels(model).values())
    if any(k.numel() == 0 for k in keep):
        raise ValueError("a convolution has no channels left; nothing to export")
    n_in, n_classes = model.convs[0].conv.in_channels * model._lengths[0], model.readout.linear.out_features
    kwargs = {**kwargs, "channels": tuple(int(k.numel()) for k in keep)}
    small = ConvSNN(n_in, n_classes, **kwargs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prev = None
    for i, k in enumerate(keep):
        pre = f"convs.{i}."
        w = state[pre + "conv.weight"][k]
        state[pre + "conv.weight"] = w if prev is None else w[:, prev]
        state[pre + "conv.bias"] = state[pre + "conv.bias"][k]
        for name in list(state):
            if name.startswith(pre + "neurons.") and state[name].dim() == 1:
                state[name] = state[name][k]  # per-map neuron parameters
        prev = k
    # the layer after the convolutions reads maps x positions, map-major
    length = model._lengths[-1]
    cols = (prev[:, None] * length + torch.arange(length, device=prev.device)[None, :]).reshape(-1)
    nxt = "hidden.0.weight" if model.hidden is not None else "readout.linear.weight"
    state[nxt] = state[nxt][:, cols]
    small.load_state_dict(state)
    return small.to(next(model.parameters()).device).eval(), kwargs
