"""Round trip through a peer: export runs to NIR, load the graphs with Norse's NIR import, and run both on
the same test clips.

    python benchmarks/nir_roundtrip.py RUN [RUN ...] --dataset fsdd --data ../shared/data [-o nir_roundtrip.json]

For each run and for its float and int8 graphs: the spike disagreement rate of every spiking layer (the
fraction of neuron x step entries whose spike differs from spiketrum's, over the clips' steps), the largest
readout difference, and the accuracy of spiketrum's model, of the graph rebuilt by spiketrum
(``import-nir``) and of Norse's module.

Peers (benchmark and test dependencies only, installed --no-deps by the Makefile): nir 1.0.8, nirtorch 2.6,
norse 1.1.0. Norse's ``from_nir`` maps Affine, Linear, LIF (ignoring ``r``, with a warning), but neither
``LI`` nor ``Conv1d``; :func:`norse_module` therefore builds the module with nirtorch's interpreter from
Norse's own node converter, adds ``LI -> norse LIBoxCell`` and ``Conv1d -> torch Conv1d``, and hands
Norse the graph with the gains folded into the weights (:func:`snn.nir.fold_gain`).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snn.models import SRNN  # noqa: E402
from snn.nir import fold_gain, from_nir, graph_metadata, to_nir  # noqa: E402

PEERS = {"nir": "1.0.8", "nirtorch": "2.6", "norse": "1.1.0"}


def norse_module(graph, dt_ms):
    """A Norse/torch module running ``graph`` one step per call: ``out, state = module(x_t, state)``."""
    import nir
    import nirtorch
    import norse.torch.module.leaky_integrator_box as li_box
    from nirtorch.nir_interpreter import _default_map_conv1d, _default_map_flatten
    from norse.torch.utils import import_nir as norse_nir

    dt = dt_ms / 1000.0
    convert = partial(norse_nir._import_norse_module, ignore_warnings=True, dt=dt)

    def li(node):
        return li_box.LIBoxCell(li_box.LIBoxParameters(tau_mem_inv=1 / norse_nir._to_tensor(node.tau),
                                                       v_leak=norse_nir._to_tensor(node.v_leak)), dt=dt)

    node_map = {nir.Input: lambda n: torch.nn.Identity(), nir.Output: lambda n: torch.nn.Identity(),
                nir.Affine: convert, nir.Linear: convert, nir.LIF: convert, nir.LI: li,
                nir.Conv1d: lambda n: _default_map_conv1d(n).float(), nir.Flatten: _default_map_flatten}
    return nirtorch.nir_to_torch(fold_gain(graph), node_map)


def spiking_layers(model):
    """(graph node name, spiketrum neuron module) of every spiking layer of an exportable model."""
    if isinstance(model, SRNN):
        layers = [(f"lif{i}", n) for i, n in enumerate(model.neurons)]
    else:
        layers = [(f"lif_conv{i}", c.neurons) for i, c in enumerate(model.convs)]
        if model.hidden is not None:
            layers.append(("lif_hidden", model.hidden[1]))
    if model.readout.readout == "count":
        layers.append(("readout_lif", model.readout.integrator))
    return layers


@torch.no_grad()
def compare(model, module, x):
    """Spikes and readout of spiketrum's ``model`` and the peer's ``module`` on one clip ``x`` [T, C].

    Returns ``(spikes, ours_readout, theirs_readout)``: ``spikes`` maps each spiking layer to ``(ours,
    theirs)`` [T, N] tensors; the readouts are [T, n_classes].
    """
    layers = spiking_layers(model)
    ours, theirs, hooks = {}, {}, []
    for name, neurons in layers:
        hooks.append(neurons.register_forward_hook(
            lambda m, i, o, name=name: ours.__setitem__(name, o[0].reshape(o[0].shape[0], -1))))
        peer = getattr(module, name)
        hooks.append(peer.register_forward_hook(
            lambda m, i, o, name=name: theirs.setdefault(name, []).append(o[0].reshape(-1))))
    try:
        readout = model(x[:, None], per_step=True)[:, 0]
        conv = not isinstance(model, SRNN)
        state, outs = None, []
        for t in range(x.shape[0]):
            xt = x[t:t + 1]
            if conv:  # [1, in_maps, kernels]: the graph's input layout
                xt = xt.reshape(1, -1, model.in_maps).transpose(1, 2)
            y, state = module(xt, state)
            outs.append(y.reshape(-1))
    finally:
        for h in hooks:
            h.remove()
    spikes = {name: (ours[name], torch.stack(theirs[name])) for name, _ in layers}
    return spikes, readout, torch.stack(outs)


def test_clips(run_dir, dataset, data, cache):
    from spiketrum.app import kws

    run = kws.Run.load(run_dir)
    audio, _ = kws.split_audio(run, dataset, data, "test", seed=kws.training_seed(run, run_dir))
    (spikes,) = kws.spike_sets([audio], run.encoder, Path(cache), run.dt_ms, progress=False)
    return run, [(spikes[i][0], spikes[i][1]) for i in range(len(spikes))]


def measure(run, clips, graph, scale):
    """Disagreement and accuracies for one graph of ``run``'s model on ``clips``."""
    module = norse_module(graph, run.dt_ms)
    rebuilt, _ = from_nir(graph, run.dt_ms, readout=run.model.readout.readout)
    reduce = run.model.readout.reduce
    differ, entries, n_spikes, worst = {}, {}, {}, 0.0
    right = {"spiketrum": 0, "rebuilt": 0, "norse": 0}
    for x, label in clips:
        spikes, ours, theirs = compare(rebuilt, module, x)
        native = run.model(x[:, None], per_step=True)[:, 0]
        worst = max(worst, float((theirs - ours).abs().max()))
        for name, (a, b) in spikes.items():
            differ[name] = differ.get(name, 0) + int((a != b).sum())
            entries[name] = entries.get(name, 0) + a.numel()
            n_spikes[name] = n_spikes.get(name, 0) + int(a.sum())
        for key, u in (("spiketrum", native), ("rebuilt", ours * scale), ("norse", theirs * scale)):
            right[key] += int(reduce(u[:, None], None).argmax(1).item() == int(label))
    n = len(clips)
    return {"clips": n, "accuracy": {k: v / n for k, v in right.items()},
            "spike_disagreement": {k: differ[k] / max(entries[k], 1) for k in differ},
            "spikes_per_clip": {k: n_spikes[k] / n for k in n_spikes},
            "max_abs_readout_difference_norse_vs_rebuilt": worst}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--dataset", default="fsdd")
    p.add_argument("--data", required=True)
    p.add_argument("--cache", default=None, help="encoding cache (default: cache/ beside each run)")
    p.add_argument("-o", "--output", default="nir_roundtrip.json")
    args = p.parse_args(argv)
    import importlib.metadata as md

    warnings.filterwarnings("ignore")
    versions = {k: md.version(k) for k in PEERS}
    results = {"peers": versions, "runs": {}}
    for run_dir in args.runs:
        run, clips = test_clips(run_dir, args.dataset, args.data, args.cache or Path(run_dir).parent / "cache")
        entry = {"model": run.model_name, "model_kwargs": {k: str(v) for k, v in run.model_kwargs.items()}}
        for int8 in (False, True):
            graph = to_nir(run.model, int8=int8)
            with tempfile.TemporaryDirectory() as tmp:  # through the file format, as a user would
                import nir

                nir.write(f"{tmp}/model.nir", graph)
                graph = nir.read(f"{tmp}/model.nir")
            scale = graph_metadata(graph)["scales"][-1]
            entry["int8" if int8 else "float"] = r = measure(run, clips, graph, scale)
            print(f"{run_dir} {'int8' if int8 else 'float'}: accuracy {r['accuracy']}, spike disagreement "
                  f"{r['spike_disagreement']}, readout diff {r['max_abs_readout_difference_norse_vs_rebuilt']:.2e}",
                  flush=True)
        results["runs"][str(run_dir)] = entry
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
