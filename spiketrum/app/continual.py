"""``spiketrum continual``: the task sequence on a dataset, every method in one run, and its figure.

The methods themselves (:class:`snn.continual.ContextGating`, EWC, XdG) live in :mod:`snn.continual`; this
module feeds them spike tensors from a dataset and writes ``continual.json`` and ``continual.png``.
"""
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from snn.continual import METHODS, TaskSet, check_options, parse_tasks, run_method
from snn.trainer import TrainConfig, write_json
from spiketrum.io import atomic_output

from .errors import OutputExists
from datasets.base import check_split

from .kws import SPIKE_DATASETS, audio_splits, collate_for, skipped_files, spike_parts, spike_sets, training_encoder


def plot(results, tasks, path):
    """Accuracy matrices of every method and a bar chart of average accuracy, backward transfer and selectivity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(3.0 * (len(methods) + 1), 3.2), layout="constrained")
    for ax, m in zip(axes, methods):
        r = np.asarray(results[m]["matrix"])
        ax.imshow(r, vmin=0, vmax=1, cmap="viridis")
        for i, j in np.ndindex(r.shape):
            ax.text(j, i, f"{100 * r[i, j]:.0f}", ha="center", va="center", fontsize=7, color="w" if r[i, j] < 0.6 else "k")
        ax.set_title(f"{m}: avg {100 * results[m]['average_accuracy']:.1f} %", fontsize=9)
        ax.set_xlabel("task evaluated")
        ax.set_ylabel("after training task")
        ax.set_xticks(range(len(tasks)), [t.name for t in tasks], rotation=90, fontsize=6)
        ax.set_yticks(range(r.shape[0]), [t.name for t in tasks][:r.shape[0]], fontsize=6)
    ax = axes[-1]
    x = np.arange(len(methods))
    for i, (key, label) in enumerate((("average_accuracy", "avg acc"), ("backward_transfer", "BWT"),
                                      ("selective_fraction", "selective"))):
        ax.bar(x + (i - 1) * 0.27, [results[m][key] for m in methods], 0.27, label=label)
    ax.set_xticks(x, methods, fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def _saved_result(path, settings):
    """A method's finished result kept in ``path`` if it was made with ``settings``, else None. A damaged
    file is ignored with a warning naming it (it only holds what can be recomputed), and the method runs again."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict) or not isinstance(saved.get("matrix"), list):
            raise ValueError("not a method's result")
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        warnings.warn(f"{path}: not a readable result ({str(exc).splitlines()[0][:120]}); ignoring it and running "
                      f"{path.stem} again", stacklevel=3)
        return None
    return saved if saved.get("run_settings") == json.loads(json.dumps(settings)) else None


def continual(dataset, data, out, *, tasks="pairs", methods=METHODS, split="official", encoder="spiketrum", rate=1000.0,
              dt_ms=10.0, config=TrainConfig(epochs=10, patience=0), cache_dir=None, jobs=1, progress=True, force=False,
              **options):
    """Run every method over the task sequence and write ``out/continual.json`` and ``out/continual.png``.

    Each method's result is also kept in ``out/<method>.json`` as soon as it is done; a rerun with the same
    settings skips finished methods (a damaged ``<method>.json`` is ignored with a warning and the method run
    again). A folder whose ``continual.json`` was made with other settings is not overwritten unless
    ``force``. Every option is checked before anything is created or encoded. ``options`` go to
    :func:`run_method`. Returns the results dict.
    """
    check_options(methods, **options)
    out = Path(out)
    spike_input = dataset in SPIKE_DATASETS
    if spike_input:  # SHD-layout files: binned spikes, their own input config, no encoder
        check_split(dataset, split, "train")
        splits = spike_parts(dataset, data, dt_ms)
        enc = splits[0].input_config
    else:
        splits = audio_splits(dataset, data, split, seed=config.seed)  # checks the split; encodes nothing
        enc = training_encoder(dataset, splits, encoder, rate)
    task_list = parse_tasks(tasks, splits[0].classes)
    settings = {"dataset": dataset, "split": split, "tasks": tasks, "task_list": [dataclasses.asdict(t) for t in task_list],
                "encoder": json.loads(enc.to_json()), "dt_ms": dt_ms, "train_config": dataclasses.asdict(config), **options}
    summary_path = out / "continual.json"
    if not force and summary_path.exists():
        try:
            same = json.loads(summary_path.read_text()).get("settings") == json.loads(json.dumps(settings))
        except (OSError, ValueError, AttributeError):
            same = False
        if not same:
            raise OutputExists(out, "finished results made with other settings (continual.json)")
    out.mkdir(parents=True, exist_ok=True)
    base = list(splits) if spike_input else spike_sets(splits, enc, Path(cache_dir) if cache_dir else out / "cache", dt_ms,
                                                       jobs, progress)
    sets = tuple([TaskSet(b, t, k, len(task_list)) for k, t in enumerate(task_list)] for b in base)
    write_json(settings, out / "settings.json")
    results = {}
    bar = tqdm(methods, desc="continual", disable=not progress)
    for m in bar:
        saved = _saved_result(out / f"{m}.json", settings)
        if saved is not None:
            results[m] = saved
            continue
        bar.set_postfix(method=m)
        r = run_method(m, task_list, sets, enc.n_channels, collate_for(dt_ms), config, dt=dt_ms, progress=bar.write if progress else None,
                       **options)
        r["run_settings"] = settings
        write_json(r, out / f"{m}.json")
        results[m] = json.loads(json.dumps(r))
    summary = {"settings": settings, "results": {m: {k: v for k, v in r.items() if k != "run_settings"}
                                                  for m, r in results.items()},
               "skipped_files": skipped_files(splits, base)}
    write_json(summary, summary_path)
    plot(results, task_list, out / "continual.png")
    return summary["results"]
