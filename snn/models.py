"""Spiking classifiers for spike-coded audio, and per-layer activity (spike rates, SynOps, energy per inference).

The models take a dense spike tensor ``x`` [T, B, C] (counts per time bin and channel, e.g.
``SpikeTrain.to_dense``) and optional ``lengths`` [B] (valid time bins per sample; the rest is
padding) and return logits [B, n_classes]. Every layer is causal and the readout only looks at
valid steps, so padding never changes the logits.

``model.steps(x, state)`` runs the same network step by step for streaming: the readout per step
[T, B, n_classes] and the state after the last step (one entry per layer), which the next call
continues from. The logits are the readout's reduction (mean, max or sum) over the valid steps.
"""
import contextlib
import math

import torch
from torch import nn

from .layers import (ALIF, LI, LIF, RALIF, RLIF, SE_TAU_U, SE_TAU_W, TAU_ADAPT, TAU_MEM, TAU_OUT, DelayedLinear,
                     SEAdLIF, SpikingConv1d, SpikingConvLSTM1d, conv_fan_out)


def step_mask(steps, lengths, device=None):
    """[T, B] bool: True on the valid time steps of each sample (those below its length)."""
    return torch.arange(steps, device=device)[:, None] < torch.as_tensor(lengths, device=device)[None, :]


def valid_mean(x, mask):
    """Mean of ``x`` [T, B, ...] over each sample's valid steps (``mask`` [T, B]; None: all steps): [B, ...]."""
    if mask is None:
        return x.mean(0)
    m = mask.reshape(*mask.shape, *(1,) * (x.dim() - 2)).to(x.dtype)
    return (x * m).sum(0) / m.sum(0).clamp(min=1)


#: Energy per operation in pJ, 45 nm CMOS (Horowitz, "Computing's energy problem (and what we can do about it)",
#: ISSCC 2014): an accumulate (AC, a 32-bit float add: a synaptic operation driven by a spike) and a
#: multiply-accumulate (MAC, a 32-bit float multiply 3.7 pJ + add 0.9 pJ: arithmetic on non-spiking values).
PJ_PER_AC, PJ_PER_MAC = 0.9, 4.6
ENERGY_CONVENTION = ("Horowitz, ISSCC 2014, 45 nm: 0.9 pJ per accumulate (a SynOp, driven by a spike), "
                     "4.6 pJ per multiply-accumulate (non-spiking values); 32-bit float")


def energy(synops=0.0, macs=0.0, state_updates=0.0):
    """Energy of one inference from its operation counts, by the :data:`ENERGY_CONVENTION` (Horowitz 2014).

    Parameters
    ----------
    synops : float
        Accumulates driven by spikes (SynOps), at :data:`PJ_PER_AC` each.
    macs : float
        Multiply-accumulates on non-spiking values (dense layers, attention on float gates, an ANN's
        weighted sums), at :data:`PJ_PER_MAC` each.
    state_updates : float
        Neuron-state updates (the decay multiplies of membranes, adaptations, readout integrators and
        cell states, per unit and valid step), at :data:`PJ_PER_MAC` each; kept out of the headline.

    Returns
    -------
    dict
        The counts; ``uj`` = synops x 0.9 pJ + macs x 4.6 pJ in µJ (the headline, as SNN papers count),
        ``state_uj`` the state updates' energy and ``uj_with_state`` their sum; the constants and
        ``convention``.

    Examples
    --------
    >>> e = energy(synops=1e6, macs=1e3, state_updates=2e4)
    >>> round(e["uj"], 4), round(e["state_uj"], 4), round(e["uj_with_state"], 4)
    (0.9046, 0.092, 0.9966)
    """
    uj = (synops * PJ_PER_AC + macs * PJ_PER_MAC) * 1e-6
    state = state_updates * PJ_PER_MAC * 1e-6
    return {"synops": float(synops), "macs": float(macs), "state_updates": float(state_updates), "uj": uj,
            "state_uj": state, "uj_with_state": uj + state, "pj_per_ac": PJ_PER_AC, "pj_per_mac": PJ_PER_MAC,
            "convention": ENERGY_CONVENTION}


def state_updates(neurons):
    """Multiply-accumulates per neuron and step of a layer of spiking neurons' own state: 1 for LIF (the membrane
    decay ``beta * v + x``), 3 for adaptive ones (also ``rho * a + (1 - rho) s`` and ``threshold + alpha * a``).
    The threshold comparison and the reset are not counted; the bias is added in the membrane update."""
    return getattr(neurons, "STATE_UPDATES", None) or (3 if neurons.adaptive else 1)


class Activity:
    """Spike, synaptic-operation and arithmetic counts gathered over forward passes (see :func:`record_activity`).

    SynOps of a layer = its spikes x the synapses each spike drives (its fan-out: the next layer's
    neurons, plus the recurrent ones, counting only the synapses present); the input layer's spikes are
    the data. Each is an accumulate (AC). Arithmetic on non-spiking values is counted apart:
    ``macs``, the multiply-accumulates of weighted sums over real values (an ANN's layers, attention on
    float gates), and ``state_updates``, the per-unit multiplies that carry a neuron's or cell's state from
    one step to the next (membrane, adaptation and readout decays; a gated cell's elementwise products).
    Only valid time steps (below ``lengths``) count.
    """

    def __init__(self):
        self.samples = 0
        self.steps = 0  # valid time steps summed over samples
        self.layers = {}

    def _batch(self, batch, steps):
        self.samples += batch
        self.steps += steps

    def _layer(self, name, units):
        return self.layers.setdefault(name, {"neurons": units, "spiking": False, "spikes": 0.0, "synops": 0.0,
                                             "neuron_steps": 0, "macs": 0.0, "state_updates": 0.0})

    def _add(self, name, spikes, mask, fan_out, steps, state=0):
        s = spikes.detach().reshape(spikes.shape[0], spikes.shape[1], -1)
        if mask is not None:
            s = s * mask[:, :, None].to(s.dtype)
        counts = s.sum((0, 1))
        fan = torch.as_tensor(fan_out, dtype=counts.dtype, device=counts.device)
        layer = self._layer(name, s.shape[-1])
        layer["spiking"] = True
        layer["spikes"] += float(counts.sum())
        layer["synops"] += float((counts * fan).sum())
        layer["neuron_steps"] += s.shape[-1] * steps
        layer["state_updates"] += float(state) * s.shape[-1] * steps

    def _ops(self, name, units, steps, macs=0, state=0):
        """``macs`` multiply-accumulates per valid step and ``state`` updates per unit and valid step of a layer."""
        layer = self._layer(name, units)
        layer["macs"] += float(macs) * steps
        layer["state_updates"] += float(state) * units * steps

    def summary(self):
        """Per-sample averages, JSON-ready.

        Returns
        -------
        dict
            ``samples``, ``steps_per_sample``; ``layers``: name -> ``neurons``, ``macs_per_sample``,
            ``state_updates_per_sample`` and, for spiking layers, ``rate`` (spikes per neuron and time step),
            ``spikes_per_sample``, ``synops_per_sample``; totals ``spikes_per_sample`` (network layers,
            without the input), ``synops_per_sample`` (all layers, input included), ``macs_per_sample`` and
            ``state_updates_per_sample``.
        """
        n = max(self.samples, 1)
        layers = {}
        for name, d in self.layers.items():
            layer = {"neurons": d["neurons"]}
            if d["spiking"]:
                layer.update(rate=d["spikes"] / max(d["neuron_steps"], 1), spikes_per_sample=d["spikes"] / n,
                             synops_per_sample=d["synops"] / n)
            layer.update(macs_per_sample=d["macs"] / n, state_updates_per_sample=d["state_updates"] / n)
            layers[name] = layer
        return {"samples": self.samples, "steps_per_sample": self.steps / n, "layers": layers,
                "spikes_per_sample": sum(d.get("spikes_per_sample", 0.0) for k, d in layers.items() if k != "input"),
                "synops_per_sample": sum(d.get("synops_per_sample", 0.0) for d in layers.values()),
                "macs_per_sample": sum(d["macs_per_sample"] for d in layers.values()),
                "state_updates_per_sample": sum(d["state_updates_per_sample"] for d in layers.values())}

    def energy(self):
        """:func:`energy` per sample (clip) of the counts so far, with ``samples`` (the clips averaged over)."""
        s = self.summary()
        return {"samples": s["samples"], **energy(s["synops_per_sample"], s["macs_per_sample"],
                                                  s["state_updates_per_sample"])}


@contextlib.contextmanager
def record_activity(model):
    """Gather spike counts, SynOps and MACs of every SNN (and :class:`ANN`) inside ``model`` during the block.

    Examples
    --------
    >>> model = SRNN(8, 3, hidden=(16,), dt=10.0)
    >>> with record_activity(model) as act:
    ...     _ = model(torch.zeros(20, 2, 8))
    >>> act.summary()["samples"]
    2
    """
    act = Activity()
    models = [m for m in model.modules() if isinstance(m, _Recorded)]
    for m in models:
        m._activity = act
    try:
        yield act
    finally:
        for m in models:
            m._activity = None


def check_dt(model, dt):
    """ValueError if spikes binned at ``dt`` ms (None: not said) meet ``model``, built for ``model.dt`` ms bins:
    its time constants would be off by the ratio."""
    if dt is not None and not math.isclose(float(dt), model.dt):
        raise ValueError(f"the spikes are binned at {dt:g} ms, this model was built for {model.dt:g} ms bins")


class _Recorded(nn.Module):
    """A model whose operations :func:`record_activity` counts."""

    _activity = None

    def _begin(self, x, lengths):
        """Validate the input; return the valid-step mask [T, B] (None when no step is padding)."""
        if x.dim() != 3:
            raise ValueError(f"x must have shape [T, B, C], got {tuple(x.shape)}")
        mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
            if lengths.shape != (x.shape[1],):
                raise ValueError(f"lengths must have shape [{x.shape[1]}], got {tuple(lengths.shape)}")
            if min(lengths.tolist(), default=x.shape[0]) < x.shape[0]:  # without padding (e.g. one clip) there is nothing to mask
                mask = step_mask(x.shape[0], lengths, x.device)
        if self._activity is not None:
            self._steps = int(mask.sum()) if mask is not None else x.shape[0] * x.shape[1]
            self._activity._batch(x.shape[1], self._steps)
        return mask

    def _log(self, name, spikes, mask, fan_out, state=0):
        """Record a layer's spikes and ``state`` updates per neuron and step; ``fan_out`` (synapses per neuron, or
        a callable giving them) is only evaluated while recording."""
        if self._activity is not None:
            self._activity._add(name, spikes, mask, fan_out() if callable(fan_out) else fan_out, self._steps, state)

    def _ops(self, name, units, macs=0, state=0):
        """Record a layer's MACs per step (or a callable giving them) and ``state`` updates per unit and step."""
        if self._activity is not None:
            self._activity._ops(name, units, self._steps, macs() if callable(macs) else macs, state)


class _SpikingModel(_Recorded):
    """A model on spike input (the SNNs)."""


def _fan_out(weight):
    """Synapses each presynaptic neuron drives: the nonzero entries of its column of ``weight`` [post, pre]
    (all of them in a dense layer; fewer in a sparse one, whose SynOps shrink with it)."""
    return weight.detach().ne(0).sum(0)


class _Readout(nn.Module):
    """Linear -> leaky integrator reduced over valid steps (mean or max), or -> LIF spike count."""

    def __init__(self, n_in, n_classes, readout, dt, tau, neuron):
        super().__init__()
        if readout not in ("mean", "max", "count"):
            raise ValueError(f"readout must be 'mean', 'max' or 'count', got {readout!r}")
        self.readout = readout
        self.linear = nn.Linear(n_in, n_classes)
        self.integrator = (LIF(n_classes, dt=dt, tau_mem=tau, learn_beta=True, **neuron) if readout == "count"
                           else LI(n_classes, dt=dt, tau_mem=tau, learn_beta=True))

    def steps(self, s, state):
        """Per step [T, B, n_classes]: the integrator's membrane (the output spikes for "count"), and its
        state after the last step."""
        return self.integrator(self.linear(s), state)

    def reduce(self, u, mask):
        """Logits [B, n_classes] from the per-step readout ``u`` over the valid steps (``mask`` [T, B] or None)."""
        if self.readout == "max":
            return (u if mask is None else u.masked_fill(~mask[:, :, None], -math.inf)).amax(0)
        if mask is not None:
            u = u * mask[:, :, None].to(u.dtype)
        total = u.sum(0)
        if self.readout == "count":
            return total
        if mask is None:
            return total / u.shape[0]
        return total / mask.sum(0).clamp(min=1)[:, None].to(u.dtype)


class _StepModel(_SpikingModel):
    """A spiking model whose logits reduce its per-step readout; subclasses define ``_run`` and ``_layers``
    (the number of entries of its state)."""

    def steps(self, x, state=None, *, dt=None):
        """Run the network over ``x`` [T, B, n_in] from ``state`` (None: the resting state, zeros); ``dt``, when
        given, is the spikes' bin in ms, which must be the model's.

        Returns
        -------
        scores : torch.Tensor
            The readout per step [T, B, n_classes]: the integrator's membrane (for ``readout="count"`` the
            output spikes); ``forward``'s logits are its mean, max or sum over the valid steps.
        state : tuple
            The state after the last step, one entry per layer (the readout's last); pass it to the next
            call to continue the sequence.
        """
        check_dt(self, dt)
        self._begin(x, None)
        if state is not None and len(state) != self._layers:
            raise ValueError(f"state must have {self._layers} entries (one per layer), got {len(state)}")
        return self._run(x, (None,) * self._layers if state is None else state, None)

    def forward(self, x, lengths=None, *, dt=None, per_step=False):
        """Logits [B, n_classes] for spikes ``x`` [T, B, n_in], optional ``lengths`` [B] and the spikes' bin ``dt``
        in ms (checked against the model's when given); with ``per_step`` the readout of every step
        [T, B, n_classes] instead (padding steps included), as :meth:`steps` gives it."""
        check_dt(self, dt)
        mask = self._begin(x, lengths)
        u, _ = self._run(x, (None,) * self._layers, mask)
        return u if per_step else self.readout.reduce(u, mask)


class _Dense(nn.Sequential):
    """Linear -> spiking neurons, passing the neurons' state (kept a Sequential for its parameter names)."""

    def forward(self, x, state=None):
        return self[1](self[0](x), state)


class _RecurrentStack(_StepModel):
    """Stacked Linear -> recurrent spiking layers (``self.linears``, ``self.neurons``) and a readout."""

    def __init__(self, n_in, n_classes, hidden, make_neurons, *, gain=1.0, dropout, readout, tau_out, neuron, dt):
        """``make_neurons(n)`` builds a layer of ``n`` neurons; the weights into them start ``gain`` times
        nn.Linear's."""
        super().__init__()
        self.dt = dt
        sizes = (n_in, *hidden)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        if gain != 1.0:
            with torch.no_grad():
                for linear in self.linears:
                    linear.weight.mul_(gain)
        self.neurons = nn.ModuleList(make_neurons(n) for n in hidden)
        self.dropout = nn.Dropout(dropout)
        self.readout = _Readout(sizes[-1], n_classes, readout, dt, tau_out, neuron)
        self._layers = len(hidden) + 1

    def _run(self, x, state, mask):
        self._log("input", x, mask, lambda: _fan_out(self.linears[0].weight))
        s, out = x, []
        for i, (linear, neurons) in enumerate(zip(self.linears, self.neurons)):
            s, st = neurons(linear(s), state[i])
            out.append(st)
            nxt = self.linears[i + 1] if i + 1 < len(self.linears) else self.readout.linear
            self._log(f"hidden{i}", s, mask, lambda: _fan_out(nxt.weight) + _fan_out(neurons.weight),  # + recurrent
                      state_updates(neurons))
            s = self.dropout(s)
        u, st = self.readout.steps(s, state[-1])
        self._ops("readout", u.shape[-1], state=1)
        return u, (*out, st)


class SRNN(_RecurrentStack):
    """Adaptive recurrent SNN: stacked Linear -> R(A)LIF layers and a leaky-integrator readout.

    The strong baseline for spike-coded audio (after Yin et al. 2021 / Bellec et al. 2018):
    adaptive thresholds give the long memory that speech needs at 1 ms bins.

    Parameters
    ----------
    n_in : int
        Input channels C (e.g. 240 = 40 kernels x 3 levels x 2 polarities).
    n_classes : int
        Number of classes.
    hidden : tuple of int
        Neurons per recurrent layer.
    adaptive : bool
        RALIF (adaptive threshold) instead of RLIF neurons.
    tau_mem, tau_adapt, tau_out : float
        Time constants in ms of the membrane, the adaptation and the readout integrator (initial
        values when learnt).
    alpha : float
        Threshold increase per unit of adaptation (adaptive only).
    threshold : float
        (Baseline) firing threshold.
    learn_beta : bool
        Learn the membrane and adaptation decays per neuron.
    reset, surrogate, slope
        See :class:`snn.LIF`.
    dropout : float
        Dropout on the spikes between layers (training only).
    readout : {"mean", "max", "count"}
        Logits from the readout integrator's membrane (mean or max over valid steps), or the
        spike count of LIF output neurons.
    dt : float
        Time bin of the input in ms (required); recorded as ``model.dt``.

    Examples
    --------
    >>> model = SRNN(240, 10, dt=10.0)
    >>> x = torch.zeros(100, 4, 240)
    >>> model(x, lengths=torch.tensor([100, 80, 60, 40])).shape
    torch.Size([4, 10])
    >>> scores, state = model.steps(x[:60])  # streaming: the first 60 steps, then the rest
    >>> more, state = model.steps(x[60:], state)
    >>> torch.allclose(torch.cat([scores, more]).mean(0), model(x))
    True
    """

    def __init__(self, n_in, n_classes, hidden=(256,), adaptive=True, tau_mem=TAU_MEM, tau_adapt=TAU_ADAPT,
                 tau_out=TAU_OUT, alpha=1.8, threshold=1.0, learn_beta=True, reset="subtract",
                 surrogate="atan", slope=None, dropout=0.0, readout="mean", *, dt):
        neuron = dict(threshold=threshold, reset=reset, surrogate=surrogate, slope=slope)

        def make_neurons(n):
            if adaptive:
                return RALIF(n, dt=dt, tau_mem=tau_mem, tau_adapt=tau_adapt, alpha=alpha, learn_beta=learn_beta, **neuron)
            return RLIF(n, dt=dt, tau_mem=tau_mem, learn_beta=learn_beta, **neuron)

        super().__init__(n_in, n_classes, hidden, make_neurons, dropout=dropout, readout=readout, tau_out=tau_out,
                         neuron=neuron, dt=dt)


class Ensemble(nn.Module):
    """SRNNs trained apart whose class probabilities are averaged: a false alarm that one member makes alone is
    outvoted by the others, while a keyword all of them hear stays.

    Outputs are log mean probabilities (per step, or of each member's clip logits), so that their softmax is
    the members' average probability. Members are trained one by one (e.g. with different seeds) and their
    weights loaded into ``members``; the ensemble itself is for inference.

    Parameters
    ----------
    n_in, n_classes : int
    members : int
        Number of SRNNs.
    dt : float
        Time bin of the input in ms (required); ``model.dt``.
    **kwargs
        Options of every member (:class:`SRNN`).

    Examples
    --------
    >>> ens = Ensemble(40, 3, members=2, hidden=(16,), dt=10.0)
    >>> x = torch.rand(20, 1, 40).round()
    >>> scores, state = ens.steps(x)
    >>> mean = torch.stack([torch.softmax(m.steps(x)[0], -1) for m in ens.members]).mean(0)
    >>> torch.allclose(torch.softmax(scores, -1), mean)
    True
    """

    def __init__(self, n_in, n_classes, members=3, *, dt, **kwargs):
        super().__init__()
        if not (isinstance(members, int) and members >= 1):
            raise ValueError(f"members must be a positive integer, got {members!r}")
        self.dt = dt
        self.members = nn.ModuleList(SRNN(n_in, n_classes, dt=dt, **kwargs) for _ in range(members))

    @staticmethod
    def _mean(outputs):
        return torch.logsumexp(torch.stack([torch.log_softmax(u, -1) for u in outputs]), 0) - math.log(len(outputs))

    def steps(self, x, state=None, *, dt=None):
        """Log mean probabilities per step [T, B, n_classes] and the members' states (a tuple of theirs), from
        ``state`` (None: at rest), as :meth:`SRNN.steps`."""
        outs = [m.steps(x, s, dt=dt) for m, s in zip(self.members, state or (None,) * len(self.members))]
        return self._mean([u for u, _ in outs]), tuple(s for _, s in outs)

    def forward(self, x, lengths=None, *, dt=None, per_step=False):
        return self._mean([m(x, lengths, dt=dt, per_step=per_step) for m in self.members])


class ConvSNN(_StepModel):
    """Convolutional SNN: spiking Conv1d layers along the channel (frequency) axis, a spiking
    hidden layer and a leaky-integrator readout; time is integrated by the neurons.

    Parameters
    ----------
    n_in : int
        Input channels C, ordered kernel-major: channel ``c = kernel * in_maps + feature`` (as
        ``SpikeTrain.channels``: features = levels x polarities).
    n_classes : int
        Number of classes.
    in_maps : int
        Features per kernel (6 = 3 levels x 2 polarities); ``n_in`` must be a multiple.
    channels : tuple of int
        Output maps of each convolution.
    kernel_size, stride : int
        Of every convolution, along the kernel (frequency) axis.
    hidden : int or None
        Neurons of the fully connected LIF layer after the convolutions (None: none).
    adaptive : bool
        ALIF instead of LIF neurons in the convolutions and the hidden layer.
    tau_mem, tau_adapt, tau_out, alpha, threshold, learn_beta, reset, surrogate, slope, dropout, readout, dt
        As in :class:`SRNN`.

    Examples
    --------
    >>> model = ConvSNN(240, 10, dt=10.0)
    >>> model(torch.zeros(50, 2, 240)).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_in, n_classes, in_maps=6, channels=(32, 64), kernel_size=5, stride=2,
                 hidden=256, adaptive=False, tau_mem=TAU_MEM, tau_adapt=TAU_ADAPT, tau_out=TAU_OUT, alpha=1.8,
                 threshold=1.0, learn_beta=True, reset="subtract", surrogate="atan", slope=None,
                 dropout=0.0, readout="mean", *, dt):
        super().__init__()
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0):
            raise ValueError(f"hidden must be the size of the one hidden layer (an int, 0 or None: none), got {hidden!r}")
        if n_in % in_maps:
            raise ValueError(f"n_in={n_in} is not a multiple of in_maps={in_maps}")
        self.dt = dt
        neuron = dict(threshold=threshold, reset=reset, surrogate=surrogate, slope=slope)
        cell = dict(dt=dt, tau_mem=tau_mem, learn_beta=learn_beta, **neuron)
        if adaptive:
            cell.update(tau_adapt=tau_adapt, alpha=alpha)
        self.in_maps = in_maps
        self.convs = nn.ModuleList()
        maps, self._lengths = in_maps, [n_in // in_maps]
        for out_maps in channels:
            conv = SpikingConv1d(maps, out_maps, kernel_size, stride, adaptive=adaptive, **cell)
            self.convs.append(conv)
            maps = out_maps
            self._lengths.append(conv.output_length(self._lengths[-1]))
        flat = maps * self._lengths[-1]
        self.hidden = None
        if hidden:
            self.hidden = _Dense(nn.Linear(flat, hidden), (ALIF if adaptive else LIF)(hidden, **cell))
            flat = hidden
        self.dropout = nn.Dropout(dropout)
        self.readout = _Readout(flat, n_classes, readout, dt, tau_out, neuron)
        self._layers = len(self.convs) + (self.hidden is not None) + 1

    def _run(self, x, state, mask):
        T, B, C = x.shape
        s = x.reshape(T, B, C // self.in_maps, self.in_maps).transpose(2, 3)  # [T, B, maps, kernels]
        out = []
        for i, conv in enumerate(self.convs):
            self._log("input" if i == 0 else f"conv{i - 1}", s, mask, lambda: conv.fan_out(self._lengths[i]),
                      state_updates(self.convs[i - 1].neurons) if i else 0)
            s, st = conv(s, state[i])
            out.append(st)
            s = self.dropout(s)
        s = s.reshape(T, B, -1)
        name = f"conv{len(self.convs) - 1}"
        nxt = self.hidden[0] if self.hidden is not None else self.readout.linear
        self._log(name, s, mask, lambda: _fan_out(nxt.weight), state_updates(self.convs[-1].neurons))
        if self.hidden is not None:
            s, st = self.hidden(s, state[len(out)])
            out.append(st)
            s = self.dropout(s)
            self._log("hidden", s, mask, lambda: _fan_out(self.readout.linear.weight), state_updates(self.hidden[1]))
        u, st = self.readout.steps(s, state[-1])
        self._ops("readout", u.shape[-1], state=1)
        return u, (*out, st)


class SCBAMSNN(_StepModel):
    """Recurrent SNN of spiking ConvLSTMs along the frequency axis with spiking block attention on the
    forget gate (SRNN-SCBAM, Xu et al. 2023), and a leaky-integrator readout.

    Parameters
    ----------
    n_in, n_classes, in_maps
        As in :class:`ConvSNN` (channels ordered kernel-major, ``in_maps`` features per kernel).
    maps : tuple of int
        State maps of each ConvLSTM layer.
    kernel_size, stride : int
        Of each layer's input convolution along frequency.
    attention : {"cbam", "channel", "spatial", "temporal", "none"}
        See :class:`snn.layers.SpikingConvLSTM1d`; ``none`` is the same model without attention.
    reduction, attention_kernel : int
        Channel-MLP ratio and frequency-conv kernel of the attention.
    threshold, surrogate, slope, tau_out, dropout, readout, dt
        Output-spike threshold of the cells; the rest as in :class:`SRNN` (the cells have no time constant).

    Examples
    --------
    >>> model = SCBAMSNN(120, 10, dt=10.0)
    >>> model(torch.zeros(30, 2, 120), lengths=torch.tensor([30, 20])).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_in, n_classes, in_maps=6, maps=(32,), kernel_size=5, stride=2, attention="cbam",
                 reduction=4, attention_kernel=7, threshold=0.1, surrogate="atan", slope=None, tau_out=TAU_OUT,
                 dropout=0.0, readout="mean", *, dt):
        super().__init__()
        if n_in % in_maps:
            raise ValueError(f"n_in={n_in} is not a multiple of in_maps={in_maps}")
        self.dt = dt
        self.in_maps = in_maps
        self.cells = nn.ModuleList()
        channels, self._lengths = in_maps, [n_in // in_maps]
        for m in maps:
            self.cells.append(SpikingConvLSTM1d(channels, m, kernel_size, stride, attention, reduction,
                                                attention_kernel, threshold=threshold, surrogate=surrogate, slope=slope))
            channels = m
            self._lengths.append(self.cells[-1].output_length(self._lengths[-1]))
        length = self._lengths[-1]
        self.dropout = nn.Dropout(dropout)
        neuron = dict(threshold=1.0, reset="subtract", surrogate=surrogate, slope=slope)
        self.readout = _Readout(channels * length, n_classes, readout, dt, tau_out, neuron)
        self._layers = len(self.cells) + 1

    def forward(self, x, lengths=None, return_attention=False, *, dt=None, per_step=False):
        """Logits [B, n_classes] for spikes ``x`` [T, B, n_in] (``per_step``: as :meth:`_StepModel.forward`); with
        ``return_attention`` also each layer's forget-gate attention maps (see
        :meth:`snn.layers.SpikingConvLSTM1d.forward`)."""
        if not return_attention:
            return super().forward(x, lengths, dt=dt, per_step=per_step)
        check_dt(self, dt)
        mask = self._begin(x, lengths)
        maps = []
        u, _ = self._run(x, (None,) * self._layers, mask, maps)
        return (u if per_step else self.readout.reduce(u, mask)), maps

    def _run(self, x, state, mask, maps=None):
        """As :meth:`steps`; appends each layer's attention maps to ``maps`` when given."""
        T, B, C = x.shape
        s = x.reshape(T, B, C // self.in_maps, self.in_maps).transpose(2, 3)  # [T, B, maps, kernels]
        out = []
        for i, cell in enumerate(self.cells):
            # a cell's spikes drive the next layer's input convolution and, at the next step, its own recurrent one
            recurrent = (lambda: conv_fan_out(self.cells[i - 1].conv_h, self._lengths[i])) if i else (lambda: 0)
            self._log("input" if i == 0 else f"cell{i - 1}", s, mask,
                      lambda: conv_fan_out(cell.conv_x, self._lengths[i]) + recurrent(),
                      SpikingConvLSTM1d.STATE_UPDATES if i else 0)
            if maps is None:
                s, st = cell(s, state[i])
            else:
                s, m, st = cell(s, state[i], return_attention=True)
                maps.append(m)
            out.append(st)
            self._ops(f"cell{i}", cell.maps * self._lengths[i + 1], lambda: cell.attention_macs(self._lengths[i + 1]))
            s = self.dropout(s)
        last = self.cells[-1]
        self._log(f"cell{len(self.cells) - 1}", s, mask,
                  lambda: _fan_out(self.readout.linear.weight) + conv_fan_out(last.conv_h, self._lengths[-1]),
                  SpikingConvLSTM1d.STATE_UPDATES)
        u, st = self.readout.steps(s.reshape(T, B, -1), state[-1])
        self._ops("readout", u.shape[-1], state=1)
        return u, (*out, st)


class DelaySNN(_StepModel):
    """Feed-forward SNN with learnt synaptic delays (DCLS-Delays, Hammouamri et al., ICLR 2024): stacked
    :class:`snn.layers.DelayedLinear` -> LIF layers and a leaky-integrator readout, no recurrence.

    Every synapse has a weight and a delay in [0, ``max_delay_ms``], learnt together; the delay is a
    Gaussian-smoothed tap of a causal temporal convolution whose width ``sigma`` is annealed during training
    (:meth:`schedule`, driven by the :class:`snn.trainer.Schedule` callback): from ``sigma_ms`` exponentially
    down to ``sigma_end_ms`` over the first ``anneal`` fraction of the optimiser steps, then held (the
    official DCLS-Delays schedule: half the longest delay down to 0.23 bins over the first quarter of the
    epochs). :meth:`round_delays` then makes them exact whole-bin delays.

    Parameters
    ----------
    n_in, n_classes : int
        Input channels and classes.
    hidden : tuple of int
        Neurons per layer (DCLS-Delays on SHD: two of 256).
    max_delay_ms : float
        Longest synaptic delay in ms (``floor(max_delay_ms / dt) + 1`` kernel bins).
    sigma_ms, sigma_end_ms : float, optional
        Gaussian width at the start and the end of the annealing, in ms (defaults: ``max_delay_ms / 2`` and
        ``0.23 dt``).
    anneal : float
        Fraction of the training steps over which ``sigma`` shrinks, in [0, 1] (0: ``sigma_end_ms`` from the
        first step).
    tau_mem, tau_out, threshold, learn_beta, reset, surrogate, slope, dropout, readout, dt
        As in :class:`SRNN` (LIF neurons).

    Notes
    -----
    SynOps: a spike drives each of its synapses once, whatever their delays; the convolution that
    simulates them costs ``taps`` multiply-accumulates per synapse and step on this hardware, which is not
    counted (a delay is a buffer on neuromorphic hardware). The state of a layer is ``(frames, neurons)``: its
    last ``taps - 1`` input frames and its neurons' :class:`snn.functional.NeuronState`.

    Examples
    --------
    >>> model = DelaySNN(40, 5, hidden=(32,), max_delay_ms=100.0, dt=10.0)
    >>> x = (torch.rand(60, 2, 40) < 0.1).float()
    >>> model(x).shape
    torch.Size([2, 5])
    >>> model.schedule(1.0)  # the end of training: sigma at sigma_end_ms
    >>> round(float(model.layers[0].sigma), 2)  # in bins
    0.23
    >>> model = model.eval()
    >>> scores, state = model.steps(x[:25])  # streaming, as SRNN
    >>> more, state = model.steps(x[25:], state)
    >>> torch.allclose(torch.cat([scores, more]).mean(0), model(x), atol=1e-6)
    True
    """

    def __init__(self, n_in, n_classes, hidden=(256, 256), max_delay_ms=250.0, sigma_ms=None, sigma_end_ms=None,
                 anneal=0.25, tau_mem=TAU_MEM, tau_out=TAU_OUT, threshold=1.0, learn_beta=True, reset="subtract",
                 surrogate="atan", slope=None, dropout=0.0, readout="mean", *, dt):
        super().__init__()
        if not (isinstance(anneal, (int, float)) and 0 <= anneal <= 1):
            raise ValueError(f"anneal must be a fraction of training in [0, 1], got {anneal!r}")
        self.dt, self.anneal = dt, anneal
        self.sigma_ms = max_delay_ms / 2 if sigma_ms is None else sigma_ms
        self.sigma_end_ms = min(0.23 * dt, self.sigma_ms) if sigma_end_ms is None else sigma_end_ms
        if not 0 <= self.sigma_end_ms <= self.sigma_ms:
            raise ValueError(f"sigma_end_ms must be in [0, sigma_ms={self.sigma_ms}], got {self.sigma_end_ms!r}")
        neuron = dict(threshold=threshold, reset=reset, surrogate=surrogate, slope=slope)
        sizes = (n_in, *hidden)
        self.layers = nn.ModuleList(DelayedLinear(a, b, dt=dt, max_delay_ms=max_delay_ms, sigma_ms=self.sigma_ms)
                                    for a, b in zip(sizes, sizes[1:]))
        self.neurons = nn.ModuleList(LIF(n, dt=dt, tau_mem=tau_mem, learn_beta=learn_beta, **neuron) for n in hidden)
        self.dropout = nn.Dropout(dropout)
        self.readout = _Readout(sizes[-1], n_classes, readout, dt, tau_out, neuron)
        self._layers = len(hidden) + 1

    def sigma_at(self, progress):
        """The Gaussian width in ms at ``progress`` (optimiser steps taken / all steps, in [0, 1]): exponential
        from ``sigma_ms`` to ``sigma_end_ms`` until ``anneal``, then constant (a geometric mean of the two when
        the end is 0 would be 0 at once: then linear)."""
        f = 1.0 if self.anneal == 0 else min(max(progress, 0.0) / self.anneal, 1.0)
        a, b = self.sigma_ms, self.sigma_end_ms
        return a * (b / a) ** f if b > 0 else a * (1 - f)

    def schedule(self, progress):
        """Called by :class:`snn.trainer.Schedule` at the start of training and after every optimiser step:
        sets every layer's ``sigma`` for ``progress`` and brings the delays back into range. A function of
        ``progress`` alone, so a resumed run has the same ``sigma`` as one that never stopped."""
        sigma = self.sigma_at(progress)
        for layer in self.layers:
            layer.set_sigma(sigma)
            layer.clamp_()

    def round_delays(self):
        """Every delay to a whole bin and ``sigma`` to 0 (see :meth:`snn.layers.DelayedLinear.round_delays`)."""
        for layer in self.layers:
            layer.round_delays()

    def _run(self, x, state, mask):
        self._log("input", x, mask, lambda: _fan_out(self.layers[0].weight))
        s, out = x, []
        for i, (layer, neurons) in enumerate(zip(self.layers, self.neurons)):
            frames, neuron_state = state[i] if state[i] is not None else (None, None)
            current, frames = layer(s, frames)
            s, neuron_state = neurons(current, neuron_state)
            out.append((frames, neuron_state))
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else self.readout.linear
            self._log(f"hidden{i}", s, mask, lambda: _fan_out(nxt.weight), state_updates(neurons))
            s = self.dropout(s)
        u, st = self.readout.steps(s, state[-1])
        self._ops("readout", u.shape[-1], state=1)
        return u, (*out, st)


class ANN(_Recorded):
    """A non-spiking teacher on the same input as the SNNs: stacked GRUs over log-compressed spike counts and a
    linear readout averaged over valid steps (the time-mean, as the SNN readouts).

    Under :func:`record_activity` every weighted sum is a MAC per valid step (the GRUs' input and hidden
    matrices, the readout at every step, as computed); each GRU unit's elementwise products
    (``r * (W_hn h + b_hn)``, ``z * h``, ``(1 - z) * n``) are its 3 state updates. The input's log1p, the
    gates' sigmoids and tanh are not counted.

    Parameters
    ----------
    n_in, n_classes : int
    hidden : int or tuple of int
        GRU units per layer; each layer's output sequence is a stage a distillation can match.
    dt : float
        Time bin of the input in ms (required, as for the SNNs; the GRUs have no time constant); ``model.dt``.

    Examples
    --------
    >>> ANN(120, 10, dt=10.0)(torch.zeros(30, 2, 120), torch.tensor([30, 12])).shape
    torch.Size([2, 10])
    """

    def __init__(self, n_in, n_classes, hidden=(256,), *, dt):
        super().__init__()
        self.dt = dt
        sizes = (n_in, *((hidden,) if isinstance(hidden, int) else hidden))
        self.grus = nn.ModuleList(nn.GRU(a, b) for a, b in zip(sizes, sizes[1:]))
        self.readout = nn.Linear(sizes[-1], n_classes)

    def steps(self, x, state=None, *, dt=None):
        """Readout per step [T, B, n_classes] and the GRUs' last hidden states (each [1, B, units]), from
        ``state`` (zeros when None), as :meth:`SRNN.steps`."""
        check_dt(self, dt)
        self._begin(x, None)
        return self._run(x, state)

    def _run(self, x, state):
        h, out = torch.log1p(x), []
        for i, (gru, h0) in enumerate(zip(self.grus, state or (None,) * len(self.grus))):
            h, last = gru(h, h0)
            out.append(last)
            self._ops(f"gru{i}", gru.hidden_size,
                      lambda: int(gru.weight_ih_l0.count_nonzero()) + int(gru.weight_hh_l0.count_nonzero()), state=3)
        u = self.readout(h)
        self._ops("readout", u.shape[-1], lambda: int(self.readout.weight.count_nonzero()))
        return u, tuple(out)

    def forward(self, x, lengths=None, *, dt=None, per_step=False):
        check_dt(self, dt)
        self._begin(x, lengths)
        u = self._run(x, None)[0]
        return u if per_step else valid_mean(u, None if lengths is None else step_mask(x.shape[0], lengths, x.device))


class SEAdLIFSNN(_RecurrentStack):
    """Recurrent SNN of SE-adLIF neurons (adaptive LIF, symplectic-Euler discretisation; Baronig et al.,
    Nat. Commun. 16, 2025): stacked Linear -> recurrent :class:`snn.layers.SEAdLIF` layers and a
    leaky-integrator readout, as :class:`SRNN` with its neurons replaced.

    Parameters
    ----------
    n_in, n_classes : int
        Input channels and classes.
    hidden : tuple of int
        Neurons per recurrent layer.
    tau_u, tau_w : tuple of float
        Ranges in ms of the membrane and adaptation time constants (see :class:`snn.layers.SEAdLIF`).
    a, b : tuple of float
        Ranges of the sub-threshold and spike-triggered adaptation, scaled by ``q``.
    q, threshold, reset, surrogate, slope
        See :class:`snn.layers.SEAdLIF`.
    gain : float
        Scale of the initial weights into the hidden layers (nn.Linear's uniform +-1/sqrt(fan_in) times
        ``gain``). The SE-adLIF membrane takes its input times ``1 - alpha``, a unit gain for a steady input
        where the SRNN's LIF membrane has ``1 / (1 - beta)`` = 20; with the default 10, on random spike input
        at 5-20 % per bin, about 1-5 % of the hidden neurons fire per step at initialisation (with 1: none).
    tau_out : float
        Time constant in ms of the readout integrator (initial value; learnt).
    dropout, readout, dt
        As in :class:`SRNN`.

    Examples
    --------
    >>> model = SEAdLIFSNN(120, 10, hidden=(64,), dt=10.0)
    >>> x = (torch.rand(100, 4, 120) < 0.1).float()
    >>> model(x, lengths=torch.tensor([100, 80, 60, 40])).shape
    torch.Size([4, 10])
    >>> scores, state = model.steps(x[:60])  # streaming: the first 60 steps, then the rest
    >>> more, state = model.steps(x[60:], state)
    >>> torch.allclose(torch.cat([scores, more]).mean(0), model(x))
    True
    """

    def __init__(self, n_in, n_classes, hidden=(256,), tau_u=SE_TAU_U, tau_w=SE_TAU_W, a=(0.0, 1.0), b=(0.0, 2.0),
                 q=120.0, threshold=1.0, gain=10.0, tau_out=TAU_OUT, reset="zero", surrogate="atan", slope=None,
                 dropout=0.0, readout="mean", *, dt):
        neuron = dict(threshold=threshold, reset=reset, surrogate=surrogate, slope=slope)

        def make_neurons(n):
            return SEAdLIF(n, dt=dt, tau_u=tau_u, tau_w=tau_w, a=a, b=b, q=q, recurrent=True, **neuron)

        super().__init__(n_in, n_classes, hidden, make_neurons, gain=gain, dropout=dropout, readout=readout,
                         tau_out=tau_out, neuron=neuron, dt=dt)
