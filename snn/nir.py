"""NIR graphs of the spiking models: export to, and import from, the Neuromorphic Intermediate Representation.

NIR (``pip install nir``; this module is written against nir 1.0.8) describes a network in continuous time.
A model here steps at ``dt`` ms: a neuron decays its membrane by ``beta`` per step and adds its input
current, ``v_t = beta v_{t-1} + x_t``. That is NIR's leaky integrator, ``tau dv/dt = (v_leak - v) + r I``,
integrated by forward Euler at ``dt`` (the scheme snnTorch, Norse and the chips use) with

    tau = dt / (1 - beta)      r = tau / dt      v_leak = 0,

so every parameter converts exactly and back (``beta = 1 - dt / tau``, input gain ``r dt / tau = 1``). A neuron
whose learnt decay is 1 (no leak) gets ``tau = 2**30 dt``, whose decay rounds to exactly 1 in float32.

What exports (:func:`to_nir`): :class:`~snn.models.SRNN` and :class:`~snn.models.ConvSNN` built with
non-adaptive neurons and ``reset="zero"``:

- ``Linear -> RLIF`` becomes ``Affine -> LIF`` with the recurrent weights as a ``Linear`` in a cycle
  ``LIF -> Linear -> LIF`` (its spikes arrive one step later, as here);
- ``SpikingConv1d`` becomes ``Conv1d -> LIF`` (per-map parameters repeated over positions), then ``Flatten``;
- the readout becomes ``Affine -> LI`` (``LIF`` for ``readout="count"``). NIR graphs run step by step and
  have no reduction over time: the graph's output is the readout per step, and the model's logits are its
  mean (``"mean"``), maximum (``"max"``) or sum (``"count"``) over the clip, as the graph's metadata says.

What does not, with the reason :func:`to_nir` gives: adaptive thresholds (ALIF: NIR's neurons have a fixed
threshold), ``reset="subtract"`` (NIR neurons reset to ``v_reset``), the SRNN-SCBAM model (ConvLSTM cells and
CBAM attention have no NIR primitive) and the ANN (GRUs).

Input layout: an SRNN's input is the spike vector ``[C]``; a ConvSNN's is ``[in_maps, kernels]`` (channel
``c = kernel * in_maps + map`` of the spike tensor), the layout its first ``Conv1d`` reads.
"""
from __future__ import annotations

import json
import math

import numpy as np
import torch

from .models import ConvSNN, SRNN

#: 1 - decay of a neuron without leak in the graph (see :func:`_neuron_params`).
NO_LEAK = 2.0 ** -30

#: Key of the graph metadata entry holding spiketrum's own description (a JSON string).
METADATA_KEY = "spiketrum"


class NotExportable(ValueError):
    """A model, or one of its layers, that NIR cannot express exactly; the message names the layer."""


def _nir():
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export and import need the nir package: pip install nir") from None
    return nir


def _numpy(t):
    return t.detach().cpu().to(torch.float64).numpy()


def _neuron_params(neurons, name, dt_s, repeat=1):
    """(tau, r, threshold) float64 arrays of a layer of LIF/RLIF/LI neurons, each repeated ``repeat`` times per
    neuron (the positions of a conv map)."""
    beta = _numpy(neurons.beta.clamp(0.0, 1.0))  # a learnt decay is clamped to [0, 1] in the forward pass too
    # a neuron without leak (training drove its decay to 1) gets the finite tau = 2**30 dt: its decay
    # 1 - 2**-30 rounds to exactly 1 in float32, and its input gain stays 1
    tau = dt_s / np.maximum(1.0 - beta, NO_LEAK)
    threshold = _numpy(neurons.threshold) if hasattr(neurons, "threshold") else None
    rep = (lambda a: np.repeat(a, repeat)) if repeat > 1 else (lambda a: a)
    return rep(tau), rep(tau / dt_s), None if threshold is None else rep(threshold)


def _check_neurons(neurons, name):
    if neurons.adaptive:
        raise NotExportable(f"{name}: adaptive-threshold neurons (ALIF) have no NIR primitive; train with --neuron lif")
    if neurons.reset != "zero":
        raise NotExportable(f"{name}: the subtract reset has no NIR primitive (NIR neurons reset to v_reset); "
                            "train with --reset zero")


def check_exportable(model):
    """Raise :class:`NotExportable` naming the first part of ``model`` NIR cannot express exactly."""
    if type(model).__name__ == "DelaySNN":  # nir.Delay is per channel: per-synapse delays are not mapped (yet)
        raise NotExportable("DelaySNN: its per-synapse delays have no NIR mapping here; srnn and conv models export")
    if not isinstance(model, (SRNN, ConvSNN)):
        layer = {"SCBAMSNN": "its spiking ConvLSTM cells and CBAM attention", "ANN": "its GRU layers",
                 "SEAdLIFSNN": "its SE-adLIF neurons"}.get(
            type(model).__name__, "its layers")
        raise NotExportable(f"{type(model).__name__}: {layer} have no NIR primitive; srnn and conv models export")
    layers = ([(f"hidden{i}", n) for i, n in enumerate(model.neurons)] if isinstance(model, SRNN) else
              [(f"conv{i}", c.neurons) for i, c in enumerate(model.convs)]
              + ([("hidden", model.hidden[1])] if model.hidden is not None else []))
    if model.readout.readout == "count":
        layers.append(("readout", model.readout.integrator))
    for name, neurons in layers:
        _check_neurons(neurons, name)


def _quantize(weights, biases, int8):
    """The weights and biases driving one layer of neurons, and the factor ``s`` its threshold is divided by.

    With ``int8`` every weight into the layer (feed-forward and recurrent: they add into one membrane) is
    ``round(w / s)`` with one scale ``s = max |w| / 127``, and the bias ``round(b / s)``; a neuron's membrane
    is then the float one divided by ``s``, so its threshold is too. Without, the floats and ``s = 1``.
    """
    if not int8:
        return weights, biases, 1.0
    peak = max(float(np.abs(w).max()) for w in weights)
    s = peak / 127.0 if peak > 0 else 1.0
    return [np.round(w / s) for w in weights], [None if b is None else np.round(b / s) for b in biases], s


def to_nir(model, *, int8=False, metadata=None):
    """The NIR graph of a trained ``model`` (see the module docstring for what exports and how).

    Parameters
    ----------
    model : SRNN or ConvSNN
        With non-adaptive neurons and ``reset="zero"``; anything else raises :class:`NotExportable`.
    int8 : bool
        Quantise the weights to integers in [-127, 127], per layer, with biases rounded on the same scale and
        thresholds divided by it (as chips need); the graph's arrays then hold integer values.
    metadata : dict, optional
        JSON-ready facts stored in the graph's metadata beside the model's own (``dt_ms``, readout, input
        layout), e.g. the class names and the encoder.

    Returns
    -------
    nir.NIRGraph

    Examples
    --------
    >>> model = SRNN(8, 3, hidden=(16,), adaptive=False, reset="zero", dt=10.0)
    >>> graph = to_nir(model)
    >>> sorted(graph.nodes)
    ['input', 'lif0', 'linear0', 'output', 'readout', 'readout_li', 'recurrent0']
    >>> to_nir(SRNN(8, 3, dt=10.0))
    Traceback (most recent call last):
    snn.nir.NotExportable: hidden0: adaptive-threshold neurons (ALIF) have no NIR primitive; train with --neuron lif
    """
    nir = _nir()
    check_exportable(model)
    dt_s = model.dt / 1000.0
    nodes, edges = {}, []
    scales = []

    def chain(name, node):
        edges.append((chain.last, name))
        nodes[name] = node
        chain.last = name

    def lif(neurons, name, weights, biases, shape, repeat=1):
        """The weights into a layer of LIF neurons (quantised with it) and the LIF node; returns them."""
        weights, biases, s = _quantize(weights, biases, int8)
        tau, r, threshold = _neuron_params(neurons, name, dt_s, repeat)
        scales.append(s)
        node = nir.LIF(tau=tau.reshape(shape), r=r.reshape(shape), v_leak=np.zeros(shape),
                       v_threshold=(threshold / s).reshape(shape), v_reset=np.zeros(shape))
        return weights, biases, node

    if isinstance(model, SRNN):
        chain.last = "input"
        nodes["input"] = nir.Input(input_type={"input": np.array([model.linears[0].in_features])})
        for i, (linear, neurons) in enumerate(zip(model.linears, model.neurons)):
            (w, w_rec), (b, _), node = lif(neurons, f"hidden{i}", [_numpy(linear.weight), _numpy(neurons.weight)],
                                          [_numpy(linear.bias), None], (neurons.n,))
            chain(f"linear{i}", nir.Affine(weight=w, bias=b))
            chain(f"lif{i}", node)
            nodes[f"recurrent{i}"] = nir.Linear(weight=w_rec)
            edges += [(f"lif{i}", f"recurrent{i}"), (f"recurrent{i}", f"lif{i}")]
        layout = "spike vector [C]"
    else:
        kernels = model._lengths[0]
        chain.last = "input"
        nodes["input"] = nir.Input(input_type={"input": np.array([model.in_maps, kernels])})
        for i, conv in enumerate(model.convs):
            c, length = conv.conv, model._lengths[i]
            out_len = model._lengths[i + 1]
            (w,), (b,), node = lif(conv.neurons, f"conv{i}", [_numpy(c.weight)], [_numpy(c.bias)],
                                   (c.out_channels, out_len), repeat=out_len)
            chain(f"conv{i}", nir.Conv1d(input_shape=length, weight=w, stride=c.stride[0], padding=c.padding[0],
                                         dilation=c.dilation[0], groups=c.groups, bias=b))
            chain(f"lif_conv{i}", node)
        last = model.convs[-1].conv.out_channels
        chain("flatten", nir.Flatten(input_type={"input": np.array([last, model._lengths[-1]])}, start_dim=0,
                                     end_dim=-1))
        if model.hidden is not None:
            linear, neurons = model.hidden
            (w,), (b,), node = lif(neurons, "hidden", [_numpy(linear.weight)], [_numpy(linear.bias)], (neurons.n,))
            chain("linear_hidden", nir.Affine(weight=w, bias=b))
            chain("lif_hidden", node)
        layout = "maps x kernels [in_maps, kernels]; channel c = kernel * in_maps + map"
    readout = model.readout
    n_classes = readout.linear.out_features
    if readout.readout == "count":
        (w,), (b,), node = lif(readout.integrator, "readout", [_numpy(readout.linear.weight)],
                               [_numpy(readout.linear.bias)], (n_classes,))
    else:
        (w,), (b,), s = _quantize([_numpy(readout.linear.weight)], [_numpy(readout.linear.bias)], int8)
        tau, r, _ = _neuron_params(readout.integrator, "readout", dt_s)
        node = nir.LI(tau=tau, r=r, v_leak=np.zeros(n_classes))
        scales.append(s)
    chain("readout", nir.Affine(weight=w, bias=b))
    chain("readout_li" if readout.readout != "count" else "readout_lif", node)
    nodes["output"] = nir.Output(output_type={"output": np.array([n_classes])})
    edges.append((chain.last, "output"))
    info = {"format": "spiketrum-nir", "version": 1, "model": type(model).__name__, "dt_ms": model.dt,
            "readout": readout.readout, "input_layout": layout, "integration": "forward Euler at dt_ms",
            "int8": bool(int8), "scales": scales, **(metadata or {})}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={METADATA_KEY: json.dumps(info)})


def graph_metadata(graph):
    """spiketrum's description stored in a graph's metadata (a dict; empty for a graph made elsewhere)."""
    raw = (graph.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return {}
    if isinstance(raw, np.ndarray):
        raw = raw.item()
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def fold_gain(graph):
    """The same network with every LIF/LI neuron's input gain moved into the weights driving it: ``r = 1`` and
    each output row of the Affine, Linear or Conv1d feeding the neuron scaled by its ``r``.

    For simulators that read NIR's ``r`` as 1 (Norse 1.1.0 ignores it, with a warning). The dynamics are the
    same: ``tau dv/dt = -v + r (W s + b) = -v + (r W) s + r b``.
    """
    nir = _nir()
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if not isinstance(node, (nir.LIF, nir.LI)):
            continue
        r = np.asarray(node.r, dtype=np.float64)
        for src in [a for a, b in graph.edges if b == name]:
            w = nodes[src]
            if isinstance(w, nir.Conv1d):
                rows = r.reshape(r.shape[0], -1)[:, 0]  # one gain per map (constant over positions)
                nodes[src] = nir.Conv1d(input_shape=w.input_shape, weight=w.weight * rows[:, None, None],
                                        stride=w.stride, padding=w.padding, dilation=w.dilation, groups=w.groups,
                                        bias=w.bias * rows)
            elif isinstance(w, nir.Affine):
                nodes[src] = nir.Affine(weight=w.weight * r[:, None], bias=w.bias * r)
            elif isinstance(w, nir.Linear):
                nodes[src] = nir.Linear(weight=w.weight * r[:, None])
            else:
                raise _unsupported(src, w, f"drives {name!r} directly; its gain r cannot be folded into weights")
        keep = {k: getattr(node, k) for k in ("tau", "v_leak", "v_threshold", "v_reset") if hasattr(node, k)}
        nodes[name] = type(node)(r=np.ones_like(r), **keep)
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata or {}))


# -- import -------------------------------------------------------------------------------------------------
def _flatten_graph(graph, prefix=""):
    """(nodes, edges) of ``graph`` with nested graphs (e.g. snnTorch's recurrent subgraphs) inlined, their
    inner Input/Output nodes bridged."""
    nir = _nir()
    nodes, edges, inner = {}, [], {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten_graph(node, f"{prefix}{name}.")
            nodes.update(sub_nodes)
            edges += sub_edges
            inner[name] = ([f"{prefix}{name}.{k}" for k, v in node.nodes.items() if isinstance(v, nir.Input)],
                           [f"{prefix}{name}.{k}" for k, v in node.nodes.items() if isinstance(v, nir.Output)])
        else:
            nodes[prefix + name] = node
    for a, b in graph.edges:
        a_names = inner[a][1] if a in inner else [prefix + a]
        b_names = inner[b][0] if b in inner else [prefix + b]
        edges += [(x, y) for x in a_names for y in b_names]
    # bridge inlined Input/Output nodes: a -> sub.input -> c becomes a -> c
    for name in [n for n in nodes if "." in n[len(prefix):] and isinstance(nodes[n], (nir.Input, nir.Output))]:
        ins = [a for a, b in edges if b == name]
        outs = [b for a, b in edges if a == name]
        edges = [e for e in edges if name not in e] + [(a, b) for a in ins for b in outs]
        del nodes[name]
    return nodes, edges


def _unsupported(name, node, why="has no counterpart in spiketrum's models"):
    return ValueError(f"NIR node {name!r} ({type(node).__name__}) {why}")


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _put(param, value):
    with torch.no_grad():
        param.copy_(torch.as_tensor(np.asarray(value), dtype=param.dtype).reshape(param.shape))


def _fold(weight, bias, gain):
    """Weights [out, ...] and bias scaled per output by the input gain of the neurons they drive."""
    g = _f64(gain).reshape(-1)
    if np.allclose(g, 1.0, rtol=1e-12, atol=0.0):
        return weight, bias
    g = g.reshape(-1, *(1,) * (weight.ndim - 1))
    return weight * g, None if bias is None else bias * g.reshape(-1)


class _GraphReader:
    """A flattened graph, walked into its chain of layers, and the conversions :func:`from_nir` builds from."""

    def __init__(self, graph, dt_ms):
        nir = self.nir = _nir()
        self.dt_ms, self.dt_s = dt_ms, dt_ms / 1000.0
        self.nodes, edges = _flatten_graph(graph)
        succ = {n: [b for a, b in edges if a == n] for n in self.nodes}
        inputs = [n for n, v in self.nodes.items() if isinstance(v, nir.Input)]
        if len(inputs) != 1:
            raise ValueError(f"the graph has {len(inputs)} Input nodes; one is needed")
        # walk the forward chain; a LIF may have one extra successor, a weight node leading straight back to it
        chain, name, seen = [], inputs[0], set()
        while True:
            seen.add(name)
            nxt = [b for b in succ[name] if b not in seen]
            recurrent = None
            if isinstance(self.nodes[name], (nir.LIF, nir.CubaLIF, nir.IF)):
                back = [b for b in nxt if succ.get(b) == [name] and isinstance(self.nodes[b], (nir.Linear, nir.Affine))]
                if back:
                    recurrent = back[0]
                    nxt = [b for b in nxt if b != recurrent]
                    seen.add(recurrent)
            chain.append((name, recurrent))
            if isinstance(self.nodes[name], nir.Output):
                break
            if len(nxt) != 1:
                raise ValueError(f"NIR node {name!r} has {len(nxt)} successors; only chains (with recurrent cycles) import")
            name = nxt[0]
        self.body = chain[1:-1]  # (node name, its recurrent weight node or None), Input and Output left out
        kinds = [type(self.nodes[n]) for n, _ in self.body]
        if kinds[-2:] not in ([nir.Affine, nir.LI], [nir.Affine, nir.LIF]):
            raise ValueError("the graph must end in an Affine readout into LI (or LIF) neurons before its Output")
        self.conv = nir.Conv1d in kinds

    def node(self, i):
        return self.nodes[self.body[i][0]]

    def neuron(self, name, expect=None):
        """(decay per step, input gain, threshold or None) of a LIF (or LI) node, as float64 arrays."""
        nir, node = self.nir, self.nodes[name]
        expect = expect or nir.LIF
        if not isinstance(node, expect):
            raise _unsupported(name, node, f"is not a {expect.__name__}, which must follow a weight layer here")
        if isinstance(node, nir.LIF) and not np.allclose(node.v_reset, 0.0):
            raise _unsupported(name, node, "resets to a nonzero v_reset; spiketrum's neurons reset to 0")
        if not np.allclose(node.v_leak, 0.0):
            raise _unsupported(name, node, "has a nonzero v_leak")
        tau = _f64(node.tau)
        threshold = _f64(node.v_threshold) if isinstance(node, nir.LIF) else None
        return 1.0 - self.dt_s / tau, _f64(node.r) * self.dt_s / tau, threshold

    def per_map(self, a, name, maps):
        """One value per conv map from a [maps, positions] (or scalar, or [maps]) array, which must be constant
        along positions (spiketrum's conv neurons share their parameters over positions)."""
        a = _f64(a)
        a = a.reshape(maps, -1) if a.size % maps == 0 and a.size >= maps else np.broadcast_to(a, (maps, 1))
        if not np.allclose(a, a[:, :1]):
            raise _unsupported(name, self.nodes[name], "varies along conv positions; spiketrum shares it per map")
        return a[:, 0]

    def set_neurons(self, mod, beta, threshold, name):
        if (beta < 0).any() or (beta > 1).any():
            raise _unsupported(name, self.nodes[name], f"has tau < dt ({self.dt_ms:g} ms): forward Euler is unstable there")
        _put(mod.beta, beta)
        if threshold is not None:
            _put(mod.threshold, threshold)

    def dense(self, linear, neurons, lin, neu, expect=None):
        """Load an Affine (or Linear) node into ``linear`` and the LIF/LI node after it into ``neurons``, gains folded."""
        beta, gain, threshold = self.neuron(neu, expect)
        node = self.nodes[lin]
        w = _f64(node.weight)
        w, b = _fold(w, _f64(node.bias) if isinstance(node, self.nir.Affine) else np.zeros(w.shape[0]), gain)
        _put(linear.weight, w)
        _put(linear.bias, b)
        self.set_neurons(neurons, beta, threshold, neu)

    def readout(self, model):
        (lin, _), (neu, _) = self.body[-2:]
        self.dense(model.readout.linear, model.readout.integrator, lin, neu, type(self.nodes[neu]))

    def srnn(self, readout):
        nir, pairs = self.nir, self.body[:-2]  # (Affine -> LIF [+ recurrent]) * k, then the readout
        if len(pairs) % 2 or not pairs:
            raise ValueError("an SRNN graph is Affine -> LIF layers (each with an optional recurrent cycle), then the readout")
        for lin, _ in pairs[::2]:
            if not isinstance(self.nodes[lin], (nir.Affine, nir.Linear)):
                raise _unsupported(lin, self.nodes[lin], "is where an Affine or Linear layer is expected")
        hidden = tuple(self.nodes[lin].weight.shape[0] for lin, _ in pairs[::2])
        kwargs = dict(hidden=hidden, adaptive=False, reset="zero", readout=readout, dt=self.dt_ms)
        model = SRNN(self.nodes[pairs[0][0]].weight.shape[1], self.node(-2).weight.shape[0], **kwargs)
        for linear, neurons, (lin, _), (neu, rec) in zip(model.linears, model.neurons, pairs[::2], pairs[1::2]):
            self.dense(linear, neurons, lin, neu)
            if rec is not None:
                node = self.nodes[rec]
                if isinstance(node, nir.Affine) and not np.allclose(node.bias, 0.0):
                    raise _unsupported(rec, node, "has a bias on the recurrent weights; spiketrum's have none")
                _put(neurons.weight, _fold(_f64(node.weight), None, self.neuron(neu)[1])[0])
            else:
                _put(neurons.weight, np.zeros(tuple(neurons.weight.shape)))
        self.readout(model)
        return model.eval(), kwargs

    def conv_snn(self, readout):
        nir, body, convs, i = self.nir, self.body, [], 0
        while isinstance(self.node(i), nir.Conv1d):
            c, (neu, rec) = self.node(i), body[i + 1]
            if rec is not None:
                raise _unsupported(rec, self.nodes[rec], "is a recurrent cycle on a conv layer, which ConvSNN lacks")
            if c.groups != 1 or c.dilation != 1 or isinstance(c.padding, str):
                raise _unsupported(body[i][0], c, "uses groups, dilation or string padding")
            maps = c.weight.shape[0]
            beta, gain, threshold = self.neuron(neu)
            convs.append((c, *(self.per_map(a, neu, maps) for a in (beta, gain, threshold)), neu))
            i += 2
        if not isinstance(self.node(i), nir.Flatten):
            raise ValueError("a conv graph must flatten its maps after the last Conv1d -> LIF")
        rest = len(body) - i - 1  # after Flatten: [Affine -> LIF] and the readout
        if rest not in (2, 4):
            raise ValueError("a conv graph has at most one Affine -> LIF layer between its convolutions and the readout")
        first = convs[0][0]
        k, stride = first.weight.shape[2], int(np.asarray(first.stride).reshape(-1)[0])
        if any(c.weight.shape[2] != k or int(np.asarray(c.stride).reshape(-1)[0]) != stride or c.padding != k // 2
               for c, *_ in convs):
            raise ValueError("spiketrum's ConvSNN has one kernel size and stride for every conv, padded by kernel // 2")
        in_maps, kernels = first.weight.shape[1], int(np.asarray(first.input_shape).reshape(-1)[0])
        kwargs = dict(in_maps=in_maps, channels=tuple(c.weight.shape[0] for c, *_ in convs), kernel_size=k,
                      stride=stride, hidden=self.node(i + 1).weight.shape[0] if rest == 4 else None, adaptive=False,
                      reset="zero", readout=readout, dt=self.dt_ms)
        model = ConvSNN(in_maps * kernels, self.node(-2).weight.shape[0], **kwargs)
        for conv, (c, beta, gain, threshold, name) in zip(model.convs, convs):
            w, b = _fold(_f64(c.weight), _f64(c.bias), gain)
            _put(conv.conv.weight, w)
            _put(conv.conv.bias, b)
            self.set_neurons(conv.neurons, beta, threshold, name)
        if rest == 4:
            self.dense(model.hidden[0], model.hidden[1], body[i + 1][0], body[i + 2][0])
        self.readout(model)
        return model.eval(), kwargs


def from_nir(graph, dt_ms, *, readout="mean"):
    """A spiketrum model computing what ``graph`` computes when stepped at ``dt_ms`` (forward Euler).

    Reads the graphs :func:`to_nir` writes and chains of the same primitives made elsewhere: ``Input ->
    [Affine -> LIF (with an optional Linear/Affine cycle back into it)]... -> Affine -> LI|LIF -> Output``
    becomes an :class:`~snn.models.SRNN`; ``Input -> [Conv1d -> LIF]... -> Flatten -> [Affine -> LIF] -> Affine ->
    LI|LIF -> Output`` a :class:`~snn.models.ConvSNN`. A LIF's input gain ``r dt / tau`` is folded into the
    weights driving it, and an ``int8`` graph's integers are taken as they are (its thresholds carry the scale).

    Parameters
    ----------
    graph : nir.NIRGraph
    dt_ms : float
        The step the graph is simulated at (a graph carries no time step; spiketrum's record it in metadata).
    readout : {"mean", "max"}
        The reduction over time of an ``LI`` readout (a ``LIF`` readout counts its spikes).

    Returns
    -------
    model : SRNN or ConvSNN
        In eval mode; ``model.dt == dt_ms``.
    kwargs : dict
        The keywords (besides ``n_in`` and ``n_classes``) that build the same model.

    Examples
    --------
    >>> model = SRNN(8, 3, hidden=(16,), adaptive=False, reset="zero", dt=10.0)
    >>> same, kwargs = from_nir(to_nir(model), dt_ms=10.0)
    >>> x = (torch.rand(30, 2, 8) < 0.2).float()
    >>> torch.equal(same(x), model(x))
    True
    """
    if not (isinstance(dt_ms, (int, float)) and math.isfinite(dt_ms) and dt_ms > 0):
        raise ValueError(f"dt_ms must be a positive number of ms, got {dt_ms!r}")
    reader = _GraphReader(graph, float(dt_ms))
    kind = "count" if isinstance(reader.node(-1), reader.nir.LIF) else readout
    return reader.conv_snn(kind) if reader.conv else reader.srnn(kind)


__all__ = ["METADATA_KEY", "NotExportable", "check_exportable", "fold_gain", "from_nir", "graph_metadata", "to_nir"]
