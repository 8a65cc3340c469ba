"""Keyword spotting end to end: datasets -> cached spike encodings -> SNN -> a self-contained run folder.

A run folder holds ``model.pt`` (weights, model and encoder configs, class names: everything
``evaluate`` and ``predict`` need), ``metrics.json``, ``confusion.png`` and ``checkpoint.pt`` (resume).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from spiketrum.encoder import config_from_json
from spiketrum.perturb import DEFAULT_AUGMENT, Augment

from .trainer import TrainConfig, Trainer, atomic_save, rank_and_world, rank_zero_first, seed_everything, write_json

MODEL_FORMAT = "spiketrum-model"
MODEL_VERSION = 2  # 2: model_kwargs hold dt and time constants in ms (1: time constants in bins, no dt)
SAMPLE_RATES = {"fsdd": 8000, "speech-commands": 16000}


def encoder_config(method, sr, rate):
    """The encoder a run uses: spiketrum or a baseline, at ``rate`` spikes/s.

    Spiketrum spikes of both polarities share a channel (kernel x level): polarity is the atom's
    phase, which time bins of milliseconds cannot use, and merging halves the input.
    """
    if method == "spiketrum":
        from spiketrum import SpiketrumConfig

        return SpiketrumConfig(sr=sr, rate=rate, polarity_channels=False)
    from spiketrum.baselines import BaselineConfig

    return BaselineConfig(method, sr, rate=rate)


def _holdout(files, fraction, salt):
    """Deterministic per-file split: the same file always lands on the same side, whatever else is there."""
    h = [int(hashlib.sha256(f"{salt}:{Path(f).name}".encode()).hexdigest()[:8], 16) / 2**32 for f in files]
    return np.array(h) < fraction


def default_noise_dir(data):
    """The background-noise folder found with a dataset: ``_background_noise_`` inside it (Speech
    Commands' own layout), or a ``speech_commands_noise`` folder inside or beside it; else None."""
    data = Path(data)
    for cand in (data / "_background_noise_", data / "speech_commands_noise", data.parent / "speech_commands_noise"):
        if cand.is_dir():
            return cand
    return None


def audio_splits(dataset, data, split="official", noise_dir=None, seed=0):
    """(train, val, test) audio datasets for a named corpus.

    ``fsdd``: split ``official`` (takes 0-4 test) or ``loso:<speaker>``. ``speech-commands``: the
    corpus's own validation/testing lists, 12-class task, silence cut from ``noise_dir`` (default: a
    ``speech_commands_noise`` folder beside ``data`` or ``data/_background_noise_``). ``folder``:
    one folder per class, 10 % validation and 10 % test chosen by a hash of each file name.
    """
    from datasets import FSDD, AudioFolder, SpeechCommands

    if dataset == "fsdd":
        root = Path(data)
        if (root / "recordings").is_dir() and not (root / "fsdd").is_dir():
            root = root.parent  # accept the fsdd folder itself
        if split == "official":
            return tuple(FSDD(root, split=s, seed=seed) for s in ("train", "val", "test"))
        if split.startswith("loso:"):
            return tuple(FSDD(root, split=f"{split}:{s}", seed=seed) for s in ("train", "val", "test"))
        raise ValueError(f"unknown FSDD split {split!r}: use 'official' or 'loso:<speaker>'")
    if dataset == "speech-commands":
        noise_dir = noise_dir or default_noise_dir(data)
        return tuple(SpeechCommands(data, split=s, noise_root=noise_dir, seed=seed) for s in ("train", "val", "test"))
    if dataset == "folder":
        full = AudioFolder(data)
        test = _holdout(full.files, 0.1, f"test{seed}")
        val = ~test & _holdout(full.files, 0.1 / 0.9, f"val{seed}")
        return full.subset(np.flatnonzero(~test & ~val)), full.subset(np.flatnonzero(val)), full.subset(np.flatnonzero(test))
    raise ValueError(f"unknown dataset {dataset!r}: use fsdd, speech-commands or folder")


class AugmentedSpikes(torch.utils.data.Dataset):
    """Training items ``(dense spikes [T, C], label)`` from a clean :class:`~datasets.SpikeDataset`,
    transformed by an :class:`Augment` each time they are read. Half the reads take the item from
    one of the ``noisy`` datasets (noisy encodings of the same clips) instead, drawn uniformly.

    The per-read generator is seeded from numpy's global state, which the Trainer's checkpoints
    carry: a resumed run draws the same augmentations as an uninterrupted one.
    """

    def __init__(self, clean, augment, dt, noisy=()):
        self.clean, self.augment, self.dt, self.noisy = clean, augment, dt, list(noisy)
        self.classes, self.labels = clean.classes, clean.labels

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, i):
        rng = np.random.default_rng(np.random.randint(2**31))
        source = self.clean
        if self.noisy and rng.random() < 0.5:
            source = self.noisy[int(rng.integers(len(self.noisy))) if len(self.noisy) > 1 else 0]
        return self.augment(source.spikes(i), rng).to_dense(self.dt, torch=True), self.labels[i]


def build_model(name, n_in, n_classes, **kwargs):
    from .models import ANN, SCBAMSNN, SRNN, ConvSNN

    models = {"srnn": SRNN, "conv": ConvSNN, "srnn-scbam": SCBAMSNN, "ann": ANN}
    if name not in models:
        raise ValueError(f"unknown model {name!r}: use {', '.join(models)}")
    return models[name](n_in, n_classes, **kwargs)


@dataclasses.dataclass
class Run:
    """A trained model and everything needed to use it on new audio."""

    model: torch.nn.Module
    model_name: str
    model_kwargs: dict
    encoder: object
    dt: float
    classes: list

    def save(self, path, extra=None):
        atomic_save({"format": MODEL_FORMAT, "version": MODEL_VERSION, "model_name": self.model_name,
                     "model_kwargs": self.model_kwargs, "state_dict": self.model.state_dict(),
                     "encoder": self.encoder.to_json(), "dt": self.dt, "classes": list(self.classes), **(extra or {})}, path)

    @classmethod
    def load(cls, run_dir, device="cpu"):
        path = Path(run_dir) / "model.pt" if Path(run_dir).is_dir() else Path(run_dir)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trained model here (run `spiketrum train` first)")
        if path.stat().st_size == 0:
            raise ValueError(f"{path}: cannot load model (empty file)")
        try:
            state = torch.load(path, map_location=device, weights_only=True)  # never runs pickled code
            if state.get("format") != MODEL_FORMAT:
                raise ValueError("not a spiketrum model file")
            if state["version"] > MODEL_VERSION:
                raise ValueError(f"model format {state['version']} is newer than this spiketrum reads; upgrade")
            dt, classes = state["dt"], state["classes"]
            if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (np.isfinite(dt) and dt > 0):
                raise ValueError(f"time bin dt={dt!r} is not a positive number of seconds")
            if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
                raise ValueError("classes are not a list of names")
            encoder = config_from_json(state["encoder"])
            kwargs = state["model_kwargs"]
            if state["version"] < 2:  # time constants in bins of the run's dt: to ms
                kwargs = {k: v * 1000 * dt if k.startswith("tau_") else v for k, v in kwargs.items()}
                kwargs["dt"] = 1000 * dt
            if not math.isclose(kwargs["dt"], 1000 * dt):
                raise ValueError(f"the model's time bin dt={kwargs['dt']!r} ms is not the run's {1000 * dt!r} ms")
            model = build_model(state["model_name"], encoder.n_channels, len(classes), **kwargs)
            try:
                model.load_state_dict(state["state_dict"])
            except RuntimeError as exc:  # "Error(s) in loading state_dict for SRNN:", then what does not fit
                detail = [line.strip() for line in str(exc).splitlines() if line.strip()][1:2] or [str(exc)]
                raise ValueError(f"its weights do not fit the model it describes: {detail[0][:200]}") from None
        except KeyError as exc:
            raise ValueError(f"{path}: cannot load model (no {exc} entry)") from None
        except pickle.UnpicklingError:
            raise ValueError(f"{path}: cannot load model (not plain weights: a foreign or tampered file; "
                             "pickled code is never run)") from None
        except (OSError, RuntimeError, TypeError, AttributeError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: cannot load model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        return cls(model.to(device).eval(), state["model_name"], kwargs, encoder, dt, classes)


def spike_sets(splits, encoder, cache_dir, dt, jobs=1, progress=True):
    from datasets import SpikeDataset

    sets = [SpikeDataset(s, encoder, cache_dir, dt=dt, jobs=jobs) for s in splits]
    for s in sets:
        s.prepare(progress=progress)
    return sets


def collate_for(dt):
    from datasets import collate_spikes

    return lambda batch: collate_spikes(batch, dt=dt)


def plot_confusion(confusion, classes, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(classes), 0.8 + 0.45 * len(classes)), layout="constrained")
    ax.imshow(c / np.maximum(c.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(c)):
        ax.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=7, color="k" if i != j else "w")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def train(dataset, data, out, *, split="official", model="srnn", encoder="spiketrum", rate=1000.0, dt=1e-2,
          augment=None, config=TrainConfig(), model_kwargs=None, cache_dir=None, jobs=1, resume=False,
          noise_dir=None, options=(), callbacks=(), progress=True, device=None):
    """Train a keyword-spotting SNN and write the run folder ``out``; returns the metrics dict.

    ``options`` are training options (:mod:`snn.pruning`, :mod:`snn.distill`; e.g. ``[ESL(0.1)]``):
    callbacks whose ``settings()`` go into ``settings.json`` and ``metrics.json``, with the per-layer
    densities of a sparse option. ``callbacks`` are plain callbacks, not recorded.

    ``augment`` is a :class:`~spiketrum.perturb.Augment` or its spec string (``"none"`` for none).
    The default, :data:`~spiketrum.perturb.DEFAULT_AUGMENT`, mixes in background noise from
    ``noise_dir`` or the folder :func:`default_noise_dir` finds; without one it warns and trains
    without noise (the run's ``settings.json`` and ``metrics.json`` say which).

    Inside a process group (``with snn.trainer.distributed():`` under torchrun) every process calls this:
    rank 0 encodes the corpus first and the others then read its cache; training is data-parallel
    (see :class:`~snn.trainer.Trainer`), and only rank 0 writes files.
    """
    start = time.perf_counter()
    rank, world = rank_and_world()
    progress = progress and rank == 0
    default = augment is None
    augment = augment if isinstance(augment, Augment) else Augment.parse(DEFAULT_AUGMENT if default else augment)
    if augment.noise is not None:
        noise_dir = noise_dir or default_noise_dir(data)
        if noise_dir is None and not default:
            raise FileNotFoundError(f"{data}: --augment noise needs background noise; give --noise-dir")
        if noise_dir is None:  # warned about once the run is set up, so that errors stay one line
            augment = dataclasses.replace(augment, noise=None, copies=1)
    no_noise = default and augment.noise is None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = audio_splits(dataset, data, split, noise_dir, seed=config.seed)
    sr = SAMPLE_RATES.get(dataset) or _common_rate(splits[0])
    enc = encoder_config(encoder, sr, rate)
    for o in options:  # before any encoding: a teacher on other input fails at once
        if hasattr(o, "check"):
            o.check(enc, dt, splits[0].classes)
    cache_dir = Path(cache_dir) if cache_dir is not None else out.parent / "cache"
    with rank_zero_first():  # rank 0 encodes, then the other processes load its cache entries
        train_set, val_set, test_set = spike_sets(splits, enc, cache_dir, dt, jobs, progress)
        noisy = []
        if augment.noise is not None:
            from datasets import NoiseFolder, SpikeDataset

            noise = NoiseFolder(noise_dir, enc.sr, part="train")
            for copy in range(augment.copies):  # copy 0 keeps the seed of single-copy runs: their cache serves
                noisy.append(SpikeDataset(splits[0], enc, cache_dir, dt=None, jobs=jobs, seed=config.seed + 7919 * copy,
                                          noise=noise, snr_db=(augment.noise, augment.noise + 20.0)))
                noisy[-1].prepare(progress=progress)
    if augment != Augment():
        train_set = AugmentedSpikes(train_set, augment, dt, noisy)
    classes = list(splits[0].classes)
    model_kwargs = dict(model_kwargs or {})
    if not math.isclose(model_kwargs.setdefault("dt", 1000 * dt), 1000 * dt):  # the model's bin in ms is the data's
        raise ValueError(f"model_kwargs dt={model_kwargs['dt']!r} ms disagrees with dt={dt!r} s of the spike tensor")
    if model in ("conv", "srnn-scbam"):
        model_kwargs.setdefault("in_maps", enc.n_channels // enc.kernels)
    seed_everything(config.seed)  # the same seed gives the same initial weights
    net = build_model(model, enc.n_channels, len(classes), **model_kwargs)
    callbacks = [*options, *callbacks]
    trainer = Trainer(net, train_set, val_set if len(val_set) else None, collate_for(dt), config, callbacks,
                      run_dir=out, device=device, progress=progress)
    checkpoint = out / "checkpoint.pt"
    settings = {"dataset": dataset, "split": split, "model": model, "model_kwargs": model_kwargs,
                "encoder": json.loads(enc.to_json()), "dt": dt, "augment": augment.spec(),
                "options": [o.settings() for o in options] or None}
    if resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint}: nothing to resume")
        saved = json.loads((out / "settings.json").read_text()) if (out / "settings.json").is_file() else {}
        differ = sorted(k for k in settings if saved.get(k) != json.loads(json.dumps(settings[k])))
        if differ:
            raise ValueError(f"{checkpoint}: the run was started with other settings ({', '.join(differ)}); cannot resume")
        trainer.load_checkpoint(checkpoint)
    if rank == 0:
        write_json(settings, out / "settings.json")
    if no_noise and rank == 0:
        warnings.warn(f"{data}: no background-noise folder found, so training without the default noise "
                      "augmentation (give --noise-dir)", stacklevel=2)
    trainer.fit()
    result = trainer.evaluate(test_set, n_classes=len(classes))
    run = Run(trainer.model, model, model_kwargs, enc, dt, classes)
    if rank != 0:  # the run folder, its activity and latency are rank 0's
        return {"test_accuracy": result["accuracy"], "n_test": result["n"], "processes": world}
    metrics = {"test_accuracy": result["accuracy"], "n_test": result["n"], "classes": classes,
               "confusion": result["confusion"], "dataset": dataset, "split": split, "model": model, "encoder": encoder,
               "rate": rate, "dt": dt, "augment": augment.spec(), "epochs_run": len(trainer.history), "best_val_accuracy": trainer.best_accuracy,
               "parameters": sum(p.numel() for p in run.model.parameters()),
               "parameters_nonzero": sum(int(p.count_nonzero()) for p in run.model.parameters()),
               "history": trainer.history, "train_config": dataclasses.asdict(config),
               **activity(run.model, test_set, collate_for(dt), trainer.device),
               "cpu_latency_ms": cpu_latency(run.model, test_set, collate_for(dt))}
    if options:
        metrics["options"] = [o.settings() for o in options]
    for o in options:
        if hasattr(o, "layer_densities"):
            metrics["density"] = o.layer_densities()
    metrics["wall_seconds"] = time.perf_counter() - start  # this call's, encoding included (not summed over resumes)
    if world > 1:
        metrics["processes"] = world
    run.save(out / "model.pt", extra={"metrics": {k: metrics[k] for k in ("test_accuracy", "n_test")}})
    write_json(metrics, out / "metrics.json")
    plot_confusion(result["confusion"], classes, out / "confusion.png",
                   f"{dataset} {split}, {model} on {encoder} spikes: {100 * result['accuracy']:.1f} %")
    return metrics


def _common_rate(dataset):
    import soundfile as sf

    rates = {sf.info(str(f)).samplerate for f in dataset.files[:50]}
    return max(rates)


@torch.no_grad()
def activity(model, dataset, collate, device, max_batches=8):
    """Spike rates per layer and synaptic operations per sample on (the start of) ``dataset``."""
    from .models import record_activity

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, collate_fn=collate)
    with record_activity(model) as act:
        for i, (x, lengths, _) in enumerate(loader):
            if i == max_batches:
                break
            model(x.to(device), lengths.to(device))
    return {"activity": act.summary()}


@torch.no_grad()
def cpu_latency(models, dataset, collate, clips=20, batch=1, repeats=5):
    """Median CPU time (ms) per clip of a forward pass over ``batch`` clips at a time, from the first
    ``clips`` of ``dataset``, each pass timed ``repeats`` times after a warm-up (batch 1: the latency).

    ``models`` may be one model (returns a float) or a list (returns a list), timed in turn on each
    batch so that drift in the machine's speed affects every model alike.
    """
    import copy

    single = isinstance(models, torch.nn.Module)
    models = [copy.deepcopy(m).cpu().eval() for m in ([models] if single else models)]
    items = [dataset[i] for i in range(min(clips, len(dataset)))]
    times = [[] for _ in models]
    for i in range(0, len(items) - batch + 1, batch):
        x, lengths, _ = collate(items[i:i + batch])
        for m, ts in zip(models, times):
            m(x, lengths)  # warm
            for _ in range(repeats):
                t = time.perf_counter()
                m(x, lengths)
                ts.append((time.perf_counter() - t) / batch)
    ms = [1000 * float(np.median(ts)) if ts else float("nan") for ts in times]
    return ms[0] if single else ms


def split_audio(run, dataset, data, split="test", noise_dir=None):
    """The audio of one split, labelled with ``run``'s classes; returns ``(audio, unknown_classes)``.

    ``split`` is ``train``, ``val`` or ``test`` of the official split, or ``loso:<speaker>[:part]``
    (part defaults to test). A folder's classes the model does not know are skipped and listed.
    """
    if dataset == "folder":
        from datasets import AudioFolder

        full = AudioFolder(data)
        known = [c for c in full.classes if c in run.classes]
        unknown = sorted(set(full.classes) - set(known))
        if not known:
            raise ValueError(f"{data}: none of its class folders ({', '.join(full.classes)}) is a class of this model")
        keep = [i for i, lab in enumerate(full.labels) if full.classes[lab] in run.classes]
        audio = full.subset(keep)
        remap = {i: run.classes.index(c) for i, c in enumerate(full.classes) if c in run.classes}
        audio.labels = [remap[lab] for lab in audio.labels]
        audio.classes = list(run.classes)
        return audio, unknown
    corpus_split, part = ("official", split) if not split.startswith("loso:") else (":".join(split.split(":")[:2]), (split.split(":") + ["test"])[2])
    if part not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: use train, val, test or loso:<speaker>[:train|val|test]")
    audio = dict(zip(("train", "val", "test"), audio_splits(dataset, data, corpus_split, noise_dir)))[part]
    if list(audio.classes) != list(run.classes):
        raise ValueError(f"{data}: classes {audio.classes} differ from the model's {run.classes}")
    return audio, []


def evaluate(run_dir, dataset, data, split="test", noise_dir=None, cache_dir=None, progress=True):
    """Accuracy of a trained run on a dataset split; a folder's unknown classes are reported and skipped."""
    run = Run.load(run_dir)
    audio, unknown = split_audio(run, dataset, data, split, noise_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(run_dir).parent / "cache"
    (spikes,) = spike_sets([audio], run.encoder, cache_dir, run.dt, progress=progress)
    trainer = Trainer(run.model, spikes, None, collate_for(run.dt), TrainConfig(), progress=False)
    result = trainer.evaluate(spikes, n_classes=len(run.classes))
    return {"accuracy": result["accuracy"], "n": result["n"], "unknown_classes": unknown}


@torch.no_grad()
def predict(run_dir, files):
    """(file, keyword, confidence) for each audio file."""
    from datasets import make_encode_fn
    from spiketrum.io import load_audio

    run = Run.load(run_dir)
    encode = make_encode_fn(run.encoder)
    out = []
    for f in files:
        x, sr = load_audio(f, allow_silent=True)
        dense = encode(x, sr).to_dense(run.dt, torch=True)
        probs = torch.softmax(run.model(dense[:, None], torch.tensor([dense.shape[0]])), 1)[0]
        k = int(probs.argmax())
        out.append((str(f), run.classes[k], float(probs[k])))
    return out
