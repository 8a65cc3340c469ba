"""Continual keyword learning: a sequence of tasks on one network, and context gating (CG-SNN) against
fine-tuning, joint training, EWC and XdG.

A task maps some of a corpus's classes to the labels of one shared readout: ``pairs`` makes FSDD digits
{0,1}, {2,3}, ... five 2-way tasks; ``rules`` asks parity, then magnitude (< 5 or >= 5) of the same digits.
The network gets a task-context input ("task units"): the input tensor carries one extra channel per task,
1 on the current task's channel. :class:`ContextSNN` turns it into a gate on each hidden neuron through its
own weights, which the local plasticity rules of :class:`ContextGating` (Oja, Sanger's GHA or STDP) train
between the global backprop steps (after Shen et al. 2024 and Flesch et al. 2022).

Every method is the one :class:`~snn.trainer.Trainer` run task after task; the methods are callbacks
(:class:`EWC`, :class:`ContextGating`) or a setting of the model (XdG's fixed random gates).
"""
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from .layers import ALIF, TAU_ADAPT, TAU_MEM, TAU_OUT
from .models import _Readout, _SpikingModel, valid_mean
from .trainer import Callback, Trainer, seed_everything

METHODS = ("cg", "finetune", "joint", "ewc", "xdg")
RULES = ("oja", "gha", "stdp")
# default local learning rates: GHA's decay sums over neurons and STDP's update over time steps, so both need
# smaller steps than Oja (FSDD 5 tasks, seeds 0-2: at 0.5 they reach 80 % and 71 %; at these, 87 % and 88.5 %)
RULE_LR = {"oja": 0.5, "gha": 0.02, "stdp": 0.005}


@dataclasses.dataclass(frozen=True)
class Task:
    """One task: the corpus classes it uses and the shared-readout label of each."""

    name: str
    classes: tuple
    labels: tuple


def parse_tasks(spec, classes):
    """Tasks from a spec: ``pairs`` (consecutive class pairs), ``rules`` (parity then magnitude, digit classes
    only) or explicit groups ``"0,1/2,3/4,5"`` (label = position in the group).

    Examples
    --------
    >>> [t.classes for t in parse_tasks("pairs", [str(d) for d in range(6)])]
    [('0', '1'), ('2', '3'), ('4', '5')]
    >>> parse_tasks("rules", [str(d) for d in range(10)])[1].labels
    (0, 0, 0, 0, 0, 1, 1, 1, 1, 1)
    """
    classes = [str(c) for c in classes]
    if spec == "pairs":
        if len(classes) < 4:
            raise ValueError(f"the task spec 'pairs' needs at least 4 classes, the data has {len(classes)}")
        groups = [classes[i:i + 2] for i in range(0, len(classes) - 1, 2)]
    elif spec == "rules":
        if sorted(classes) != [str(d) for d in range(10)]:
            raise ValueError("the task spec 'rules' needs the ten digit classes 0-9 (FSDD)")
        return [Task("parity", tuple(classes), tuple(int(c) % 2 for c in classes)),
                Task("magnitude", tuple(classes), tuple(int(int(c) >= 5) for c in classes))]
    else:
        groups = [[c.strip() for c in g.split(",") if c.strip()] for g in spec.split("/")]
        unknown = sorted({c for g in groups for c in g} - set(classes))
        if unknown:
            raise ValueError(f"task spec {spec!r}: unknown classes {', '.join(unknown)} (the data has {', '.join(classes)})")
        if len(groups) < 2 or any(len(g) < 2 or len(set(g)) != len(g) for g in groups):
            raise ValueError(f"task spec {spec!r}: give at least two groups of two or more distinct classes, "
                             "e.g. 0,1/2,3")
    return [Task("/".join(g), tuple(g), tuple(range(len(g)))) for g in groups]


class TaskSet(torch.utils.data.Dataset):
    """The items of ``base`` (dense spikes [T, C], class index) that belong to ``task``, relabelled, with the
    ``n_tasks`` context channels appended (1 on channel C + ``index`` at every step)."""

    def __init__(self, base, task, index, n_tasks):
        names = [str(c) for c in base.classes]
        label_of = {names.index(c): lab for c, lab in zip(task.classes, task.labels)}
        self.base, self.index, self.n_tasks = base, index, n_tasks
        self.items = [i for i, y in enumerate(base.labels) if y in label_of]
        self.labels = [label_of[base.labels[i]] for i in self.items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        x, _ = self.base[self.items[i]]
        x = torch.as_tensor(x, dtype=torch.float32)
        ctx = torch.zeros(x.shape[0], self.n_tasks)
        ctx[:, self.index] = 1.0
        return torch.cat([x, ctx], 1), self.labels[i]


class ContextSNN(_SpikingModel):
    """An adaptive SNN with task units: the task context gates the input current of one ALIF layer, read out
    by a leaky integrator.

    The last ``n_tasks`` input channels are the task one-hot. The task units' activity is the centred,
    scaled context ``c~ = scale (c - 1/K)`` (Flesch et al. 2022); through their weights ``W_c``
    (``self.context.weight``, hidden x tasks) they set a gate ``g = sigmoid(W_c c~ + gate_bias)`` on each hidden neuron's
    input current: ``I = g * (W x + b)``. A neuron whose gate is near 0 on a task is silent there and, with the
    compact triangle surrogate, gets exactly zero gradient, so learning that task leaves it alone. Backprop
    trains ``W_c`` with everything else; :class:`ContextGating` adds the local rule.

    Parameters
    ----------
    n_in : int
        Spike channels, without the task channels.
    n_tasks, n_classes : int
    hidden : int
    spikes : {"multi", "single"}
        ``single``: each hidden neuron passes on only its first spike of a sample (a time-to-first-spike code).
    context_scale : float
        s in ``c~``.
    context_init : float
        Standard deviation of the initial ``W_c``.
    gate_bias : float
        Added inside the gate's sigmoid: below 0, each task starts with a minority of its gates open.
    tau_mem, tau_adapt, tau_out, dt : float
        As in :class:`~snn.models.SRNN` (ms; ``dt`` required).
    surrogate, slope
        See :func:`snn.functional.spike`. The default triangle of slope 2 is zero below half the threshold.

    Notes
    -----
    ``gates`` [n_tasks, hidden] (all ones by default) multiplies the context gate: XdG sets a fixed random
    80 % of it to 0 per task.
    """

    def __init__(self, n_in, n_tasks, n_classes, hidden=128, spikes="multi", context_scale=2.0, context_init=0.01,
                 gate_bias=0.0, tau_mem=TAU_MEM, tau_adapt=TAU_ADAPT, tau_out=TAU_OUT, surrogate="triangle", slope=2.0,
                 *, dt):
        super().__init__()
        if spikes not in ("multi", "single"):
            raise ValueError(f"spikes must be 'multi' or 'single', got {spikes!r}")
        self.n_in, self.n_tasks, self.spikes, self.context_scale = n_in, n_tasks, spikes, context_scale
        self.gate_bias, self.dt = gate_bias, dt
        self.input = nn.Linear(n_in, hidden)
        self.context = nn.Linear(n_tasks, hidden, bias=False)
        nn.init.normal_(self.context.weight, std=context_init)
        # Feed-forward neurons: a recurrent input could wake a gated neuron and leak gradient into it.
        self.neurons = ALIF(hidden, dt=dt, tau_mem=tau_mem, tau_adapt=tau_adapt, learn_beta=True,
                            surrogate=surrogate, slope=slope)
        self.readout = _Readout(hidden, n_classes, "mean", dt, tau_out, {})
        self.register_buffer("gates", torch.ones(n_tasks, hidden))
        self.last = None  # (hidden spikes [T, B, H], context c~ [B, K], valid-step mask [T, B]) of the last forward

    def task_of(self, x):
        """Task index per sample [B], from the context channels of ``x`` [T, B, n_in + n_tasks]."""
        return x[0, :, self.n_in:].argmax(1)

    def gate(self, task):
        """The gate of every hidden neuron for tasks ``task`` [B]: [B, H] in [0, 1]."""
        c = self.context_scale * (nn.functional.one_hot(task, self.n_tasks).to(self.gates.dtype) - 1.0 / self.n_tasks)
        return self.gates[task] * torch.sigmoid(self.context(c) + self.gate_bias), c

    def forward(self, x, lengths=None):
        mask = self._begin(x, lengths)
        if x.shape[-1] != self.n_in + self.n_tasks:
            raise ValueError(f"x has {x.shape[-1]} channels; this model takes {self.n_in} + {self.n_tasks} task channels")
        g, c = self.gate(self.task_of(x))
        s, _ = self.neurons(g[None] * self.input(x[..., :self.n_in]))
        if self.spikes == "single":  # pass on only each neuron's first spike
            s = s * (torch.cumsum(s.detach(), 0) - s.detach() == 0).to(s.dtype)
        self.last = (s.detach(), c.detach(), mask)
        self._log("hidden0", s, mask, self.readout.linear.out_features)
        return self.readout.reduce(self.readout.steps(s, None)[0], mask)


def oja(w, pre, post, lr):
    """Oja's rule, batch-averaged: ``dW = lr <y (x - y W)>`` for ``w`` [post, pre], ``pre`` x [B, pre] and
    ``post`` y [B, post]. Each row's norm is drawn to the scale set by its inputs, so it stays bounded."""
    return w + lr * (post.T @ pre - (post ** 2).sum(0)[:, None] * w) / pre.shape[0]


def gha(w, pre, post, lr):
    """Sanger's generalised Hebbian algorithm: ``dW = lr <y x^T - LT(y y^T) W>``; neuron j learns from what
    neurons 1..j-1 leave unexplained, so neurons take different context directions (more than 2 tasks)."""
    yy = torch.tril(post.T @ post)
    return w + lr * (post.T @ pre - yy @ w) / pre.shape[0]


def stdp(w, pre_spikes, post_spikes, lr, tau=2.0, a_plus=1.0, a_minus=1.05):
    """Pair-based STDP with exponential traces (``tau`` in steps), batch-averaged: potentiation when a post
    spike follows pre activity, depression when pre follows post. ``pre_spikes`` [T, B, pre] and
    ``post_spikes`` [T, B, post]; depression slightly stronger, and the update is clipped to |w| <= 1."""
    decay = math.exp(-1.0 / tau)
    xb = torch.zeros_like(pre_spikes[0])
    yb = torch.zeros_like(post_spikes[0])
    dw = torch.zeros_like(w)
    for t in range(pre_spikes.shape[0]):
        xb = decay * xb + pre_spikes[t]
        dw += a_plus * post_spikes[t].T @ xb - a_minus * yb.T @ pre_spikes[t]
        yb = decay * yb + post_spikes[t]
    return (w + lr * dw / pre_spikes.shape[1]).clamp(-1.0, 1.0)


class ContextGating(Callback):
    """CG-SNN's local step: after every global (backprop) step, update the task-unit -> hidden weights only.

    Parameters
    ----------
    rule : {"oja", "gha", "stdp"}
        Oja on the hidden neurons' rates (the task units' activity is the centred context); Sanger's GHA;
        or pair-based STDP between the task units' spikes (one per step of the current task) and the hidden
        spikes.
    lr : float, optional
        Local learning rate; None: the rule's default in :data:`RULE_LR`.
    """

    def __init__(self, rule="oja", lr=None):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        lr = RULE_LR[rule] if lr is None else lr
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.rule, self.lr = rule, lr

    def settings(self):
        return {"method": "cg", "rule": self.rule, "lr": self.lr}

    @torch.no_grad()
    def on_step_end(self, trainer):
        model = trainer.model
        spikes, c, mask = model.last
        w = model.context.weight
        if self.rule == "stdp":
            m = mask[:, :, None].to(spikes.dtype) if mask is not None else torch.ones_like(spikes[..., :1])
            pre = (c > 0).to(spikes.dtype)[None] * m  # the current task's unit spikes at every valid step
            w.copy_(stdp(w, pre, spikes * m, self.lr))
        else:
            r = valid_mean(spikes, mask)
            y = r / r.max().clamp(min=1e-9)  # rates relative to the busiest neuron: the step size is scale-free
            w.copy_((oja if self.rule == "oja" else gha)(w, c, y, self.lr))


class EWC(Callback):
    """Elastic weight consolidation (Kirkpatrick et al. 2017): ``loss + lambda/2 sum_i F_i (theta_i - theta*_i)^2``
    over the tasks learnt before, with F the diagonal empirical Fisher (summed over tasks: online EWC)."""

    def __init__(self, lam=1000.0):
        self.lam = lam
        self.fisher, self.anchor = None, None

    def settings(self):
        return {"method": "ewc", "lambda": self.lam}

    def loss(self, trainer, logits, y, x, lengths, loss):
        if self.fisher is None:
            return loss
        penalty = sum((f * (p - a) ** 2).sum() for p, f, a in zip(trainer.model.parameters(), self.fisher, self.anchor))
        return loss + 0.5 * self.lam * penalty

    def consolidate(self, model, dataset, collate, device, batches=32):
        """After a task: add its Fisher (squared log-likelihood gradients over ``batches`` batches of 8)."""
        model.eval()
        fisher = [torch.zeros_like(p) for p in model.parameters()]
        loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, collate_fn=collate,
                                             generator=torch.Generator().manual_seed(0))
        n = 0
        for b, (x, lengths, y) in enumerate(loader):
            if b == batches:
                break
            model.zero_grad()
            nn.functional.cross_entropy(model(x.to(device), lengths.to(device)), y.to(device)).backward()
            for f, p in zip(fisher, model.parameters()):
                if p.grad is not None:
                    f += p.grad.detach() ** 2
            n += 1
        model.zero_grad()
        fisher = [f / max(n, 1) for f in fisher]
        self.fisher = fisher if self.fisher is None else [a + f for a, f in zip(self.fisher, fisher)]
        self.anchor = [p.detach().clone() for p in model.parameters()]


def xdg_gates(n_tasks, hidden, fraction=0.8, seed=0):
    """XdG (Masse et al. 2018): per task, a fixed random ``fraction`` of the hidden units gated off: [tasks, hidden]."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the gated fraction must be in [0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    gates = torch.ones(n_tasks, hidden)
    k = int(round(fraction * hidden))
    for t in range(n_tasks):
        gates[t, torch.randperm(hidden, generator=g)[:k]] = 0.0
    return gates


@torch.no_grad()
def task_rates(model, sets, collate, device):
    """Mean rate of every hidden neuron on each task's items: [tasks, H]."""
    model.eval()
    out = []
    for ds in sets:
        total, n = 0.0, 0
        for x, lengths, _ in torch.utils.data.DataLoader(ds, batch_size=64, collate_fn=collate):
            model(x.to(device), lengths.to(device))
            r = valid_mean(model.last[0], model.last[2])
            total = total + r.sum(0)
            n += r.shape[0]
        out.append(total / max(n, 1))
    return torch.stack(out).cpu()


def selectivity(rates, eps=0.01):
    """Task selectivity of hidden neurons from their per-task rates [tasks, H]: the fraction active (mean rate
    > ``eps`` spikes per step) on exactly one task, the fraction silent on all, and the mean selectivity index
    (r_max - mean of the others) / (r_max + mean of the others)."""
    active = rates > eps
    top = rates.max(0).values
    others = (rates.sum(0) - top) / max(rates.shape[0] - 1, 1)
    index = ((top - others) / (top + others).clamp(min=1e-9))[top > eps]
    return {"selective_fraction": float((active.sum(0) == 1).float().mean()),
            "silent_fraction": float((~active).all(0).float().mean()),
            "selectivity_index": float(index.mean()) if index.numel() else 0.0}


def continual_metrics(matrix):
    """Average accuracy after the last task and backward transfer from the accuracy matrix R
    (R[i, j]: accuracy on task j after training task i)."""
    r = np.asarray(matrix, float)
    n = r.shape[0]
    return {"average_accuracy": float(r[-1].mean()),
            "backward_transfer": float(np.mean([r[-1, j] - r[j, j] for j in range(n - 1)])) if n > 1 else 0.0}


def check_options(methods=METHODS, *, hidden=128, spikes="multi", rule="oja", hebb_lr=None, context_scale=4.0,
                  context_init=1.0, gate_bias=-3.0, ewc_lambda=1000.0, xdg_fraction=0.8):
    """ValueError for any option :func:`run_method` would refuse, before any data is prepared."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method {unknown[0] if unknown else None!r}: use {', '.join(METHODS)}")
    if not (isinstance(hidden, int) and hidden >= 1):
        raise ValueError(f"hidden must be a positive number of neurons, got {hidden!r}")
    if spikes not in ("multi", "single"):
        raise ValueError(f"spikes must be 'multi' or 'single', got {spikes!r}")
    if "cg" in methods:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if hebb_lr is not None and not hebb_lr > 0:
            raise ValueError(f"the local learning rate must be > 0, got {hebb_lr}")
        if not (context_scale > 0 and context_init > 0 and np.isfinite(gate_bias)):
            raise ValueError("need context_scale > 0, context_init > 0 and a finite gate_bias")
    if "ewc" in methods and not ewc_lambda > 0:
        raise ValueError(f"the EWC penalty weight must be > 0, got {ewc_lambda}")
    if "xdg" in methods and not 0 <= xdg_fraction < 1:
        raise ValueError(f"the XdG gated fraction must be in [0, 1): gating every hidden unit leaves none to learn "
                         f"with, got {xdg_fraction}")


def run_method(method, tasks, sets, n_in, collate, config, *, dt, hidden=128, spikes="multi", rule="oja", hebb_lr=None,
               context_scale=4.0, context_init=1.0, gate_bias=-3.0, ewc_lambda=1000.0, xdg_fraction=0.8, device=None,
               progress=None):
    """Train one method over the task sequence; returns its result dict (accuracy matrix, metrics, selectivity).

    ``sets`` is ``(train, val, test)``, each a list with one :class:`TaskSet` per task, binned at ``dt`` ms
    (as :func:`continual`'s). ``progress`` is called
    with a message after each task. ``context_scale``, ``context_init`` and ``gate_bias`` set CG's task-unit
    pathway (see :class:`ContextSNN`): strong random gates, most of them closed, so that each task starts on a
    minority of the neurons and the local rule can claim them. The other methods get the neutral pathway
    (every gate near 1/2, learnt by backprop alone).
    """
    check_options((method,), hidden=hidden, spikes=spikes, rule=rule, hebb_lr=hebb_lr, context_scale=context_scale,
                  context_init=context_init, gate_bias=gate_bias, ewc_lambda=ewc_lambda, xdg_fraction=xdg_fraction)
    train, val, test = sets
    n_tasks, n_classes = len(tasks), max(max(t.labels) for t in tasks) + 1
    seed_everything(config.seed)
    pathway = dict(context_scale=context_scale, context_init=context_init, gate_bias=gate_bias) if method == "cg" else {}
    model = ContextSNN(n_in, n_tasks, n_classes, hidden=hidden, spikes=spikes, dt=dt, **pathway)
    callbacks, settings = [], {"method": method, "hidden": hidden, "spikes": spikes, **pathway}
    if method == "cg":
        callbacks.append(ContextGating(rule, hebb_lr))
        settings.update(callbacks[-1].settings())
    elif method == "ewc":
        callbacks.append(EWC(ewc_lambda))
        settings.update(callbacks[-1].settings())
    elif method == "xdg":
        model.gates.copy_(xdg_gates(n_tasks, hidden, xdg_fraction, config.seed))
        settings["gated_fraction"] = xdg_fraction
    stages = ([(list(range(n_tasks)), torch.utils.data.ConcatDataset(train), torch.utils.data.ConcatDataset(val))]
              if method == "joint" else [([k], train[k], val[k]) for k in range(n_tasks)])
    matrix = []
    trainer = None
    for k, (seen, tr, va) in enumerate(stages):
        trainer = Trainer(model, tr, va, collate, config, callbacks, device=device, progress=False)
        trainer.fit()
        row = [trainer.evaluate(ds, n_classes)["accuracy"] for ds in test]
        matrix.append(row)
        if method == "ewc":
            callbacks[0].consolidate(model, tr, collate, trainer.device)
        if progress:
            progress(f"{method}: after {'all tasks' if method == 'joint' else tasks[seen[0]].name}: "
                     f"{' '.join(f'{100 * a:.1f}' for a in row)}")
    if method == "joint":  # one row: the same accuracies after every "task"
        matrix = matrix * n_tasks
    rates = task_rates(model, test, collate, trainer.device)
    return {"settings": settings, "matrix": matrix, **continual_metrics(matrix), **selectivity(rates),
            "task_rates": rates.tolist()}
