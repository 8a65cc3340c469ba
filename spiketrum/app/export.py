"""A trained run as a NIR graph and back: ``spiketrum export`` and ``spiketrum import-nir``.

The graph (``snn.nir``) carries the network; its metadata carries what NIR has no place for and a run
needs: the time step, the class names, the encoder and the readout's reduction over time. A graph made
elsewhere takes them from a sidecar JSON file or a trained run (``like``) instead.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from snn.nir import from_nir, graph_metadata, to_nir
from snn.trainer import write_json
from spiketrum import config_from_json
from spiketrum.io import atomic_output
from spiketrum.perturb import InferenceAugment

from .errors import OutputExists
from .kws import Run, check_model_kwargs, random_spikes

MODEL_NAMES = {"SRNN": "srnn", "ConvSNN": "conv"}


def export(run_dir, out, *, int8=False, force=False):
    """Write the model of the run ``run_dir`` as the NIR graph ``out`` (e.g. ``model.nir``); returns a report.

    The graph is read back and rebuilt (:func:`snn.nir.from_nir`) and checked against the run's model on
    random spikes: ``max_abs_readout_difference`` (0 for a float graph: it is exact; for ``int8``, the
    quantisation's effect, the rebuilt readout times the readout layer's scale). Score an int8 graph's accuracy
    with ``import-nir`` and ``evaluate``. A model NIR cannot express fails with the layer named
    (:class:`snn.nir.NotExportable`, a ValueError).
    """
    import nir

    run = Run.load(run_dir)
    out = Path(out)
    if out.exists() and not force:
        raise OutputExists(out, "a file", "write elsewhere, or pass force=True to replace it")
    try:
        graph = to_nir(run.model, int8=int8, metadata={
            "classes": run.classes, "encoder": json.loads(run.encoder.to_json()), "model_name": run.model_name,
            "source": str(run_dir), "tta": run.tta.spec()})
    except ValueError as exc:
        raise ValueError(f"{run_dir}: {run.model_name} model does not export: {exc}") from None
    with atomic_output(out, suffix=".nir") as tmp:
        nir.write(tmp, graph)
    back, _ = from_nir(nir.read(str(out)), run.dt_ms, readout=run.model.readout.readout)
    x = random_spikes(run.encoder.n_channels, clips=32)
    with torch.no_grad():
        ref, got = run.model(x, per_step=True), back(x, per_step=True)
    scale = graph_metadata(graph)["scales"][-1]  # an int8 readout is the float one divided by its scale
    report = {"source": str(run_dir), "graph": str(out), "model": run.model_name, "dt_ms": run.dt_ms,
              "int8": bool(int8), "nodes": sorted(graph.nodes),
              "max_abs_readout_difference": float((got * scale - ref).abs().max()), "scales": graph_metadata(graph)["scales"]}
    return report


def _sidecar(path):
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the sidecar JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: the sidecar must be a JSON object with dt_ms, classes and encoder")
    return d


def import_graph(graph_path, out, *, dt_ms=None, classes=None, like=None, sidecar=None, readout=None, force=False):
    """Make a run folder ``out`` (``model.pt``, ``import.json``) from the NIR graph ``graph_path``, so that
    ``evaluate``, ``predict`` and ``robustness`` take it like any trained run.

    The time step, classes, encoder and readout come from, in order of precedence: the arguments
    (``dt_ms``, ``classes``, ``readout``), the run folder ``like`` (its encoder, dt and classes: e.g. the run
    whose spikes a model made elsewhere was trained on), the ``sidecar`` JSON (``dt_ms``, ``classes``,
    ``encoder``, ``readout``, ``tta``), and the graph's own metadata (graphs spiketrum exported). The test-time
    views (``tta``, :class:`~spiketrum.perturb.InferenceAugment`) come from the same places, or are none.
    """
    import nir

    graph_path, out = Path(graph_path), Path(out)
    if not graph_path.is_file():
        raise FileNotFoundError(f"{graph_path}: no such NIR file")
    if (out / "model.pt").exists() and not force:
        raise OutputExists(out, "a model (model.pt)")
    try:
        graph = nir.read(str(graph_path))
    except Exception as exc:  # noqa: BLE001 - h5py and nir fail on foreign bytes in many ways
        raise ValueError(f"{graph_path}: not a NIR graph ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    facts = graph_metadata(graph)
    if sidecar is not None:
        facts.update(_sidecar(sidecar))
    if like is not None:
        ref = Run.load(like)
        facts.update(dt_ms=ref.dt_ms, classes=ref.classes, encoder=json.loads(ref.encoder.to_json()),
                     tta=ref.tta.spec())
    facts.update({k: v for k, v in dict(dt_ms=dt_ms, classes=classes, readout=readout).items() if v is not None})
    missing = [k for k in ("dt_ms", "classes", "encoder") if k not in facts]
    if missing:
        raise ValueError(f"{graph_path}: the graph does not say its {', '.join(missing)}; give --dt-ms and --classes, "
                         "or --like RUN, or --sidecar JSON")
    dt = facts["dt_ms"]
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"{graph_path}: time step {dt!r} ms is not a positive number")
    encoder = config_from_json(json.dumps(facts["encoder"]))
    try:
        tta = InferenceAugment.parse(str(facts.get("tta", "none")))
        tta.views(encoder)
    except ValueError as exc:
        raise ValueError(f"{graph_path}: its test-time views: {exc}") from None
    try:
        model, kwargs = from_nir(graph, float(dt), readout=facts.get("readout", "mean"))
    except (ValueError, AssertionError, AttributeError, KeyError) as exc:
        raise ValueError(f"{graph_path}: {exc}") from None
    name = MODEL_NAMES[type(model).__name__]
    check_model_kwargs(name, kwargs)
    n_in = model.linears[0].in_features if name == "srnn" else model.in_maps * model._lengths[0]
    n_classes = model.readout.linear.out_features
    classes = list(facts["classes"])
    if n_in != encoder.n_channels:
        raise ValueError(f"{graph_path}: the graph takes {n_in} input channels, its encoder gives {encoder.n_channels}")
    if len(classes) != n_classes:
        raise ValueError(f"{graph_path}: the graph has {n_classes} outputs, {len(classes)} class names were given")
    out.mkdir(parents=True, exist_ok=True)
    Run(model, name, kwargs, encoder, float(dt), classes, tta=tta).save(out / "model.pt")
    report = {"graph": str(graph_path), "model": name, "model_kwargs": {k: list(v) if isinstance(v, tuple) else v
                                                                         for k, v in kwargs.items()},
              "dt_ms": float(dt), "classes": classes, "int8": bool(facts.get("int8", False)),
              "parameters": int(sum(p.numel() for p in model.parameters())),
              "integer_weights": bool(all(np.array_equal(p.detach().numpy(), np.round(p.detach().numpy()))
                                          for n, p in model.named_parameters() if n.endswith("weight")))}
    write_json(report, out / "import.json")
    return report
