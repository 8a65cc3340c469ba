"""Keyword spotting end to end: datasets -> cached spike encodings -> SNN -> a self-contained run folder.

A run folder holds ``model.pt`` (weights, model and encoder configs, class names: everything
``evaluate`` and ``predict`` need), ``metrics.json``, ``confusion.png`` and ``checkpoint.pt`` (resume).
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import inspect
import json
import math
import pickle
import re
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from datasets import FSDD, AudioDataset, AudioFolder, NoiseFolder, SpeechCommands, SpikeDataset, collate_spikes, spike_splits
from datasets.base import check_split, locate
from datasets.shd import write_spike_corpus
from snn.models import ANN, SCBAMSNN, SRNN, ConvSNN, DelaySNN, Ensemble, SEAdLIFSNN, record_activity
from snn.pruning import compact
from snn.trainer import (Schedule, TrainConfig, Trainer, atomic_save, check_resumable, classification_result, default_device,
                         rank_and_world, rank_zero_first, read_checkpoint, seed_everything, write_json)
from spiketrum import config_from_json, make_config
from spiketrum.registry import NO_AUDIO_ENCODER, audio_encoders
from spiketrum.io import atomic_output, load_audio, resample
from spiketrum.perturb import DEFAULT_AUGMENT, DEFAULT_TTA, Augment, InferenceAugment

from .errors import OutputExists

MODEL_FORMAT = "spiketrum-model"
MODEL_VERSION = 2  # 2: dt_ms, and model_kwargs hold dt and time constants in ms (1: dt in s, taus in bins)
V1_TAU_BINS = {"tau_mem": 20.0, "tau_adapt": 200.0, "tau_out": 20.0}  # model.pt version 1's defaults, in bins
SAMPLE_RATES = {"fsdd": 8000, "speech-commands": 16000}
#: Datasets of spikes rather than audio (SHD layout, :mod:`datasets.shd`): ``shd`` and ``ssc`` read the published
#: files, ``spikes`` the one corpus in a folder (e.g. written by :func:`write_shd`).
SPIKE_DATASETS = ("shd", "ssc", "spikes")


def spike_parts(dataset, data, dt_ms):
    """(train, val, test) :class:`~datasets.SpikeFile` parts of a spike dataset (:func:`datasets.spike_splits`)."""
    return spike_splits(None if dataset == "spikes" else dataset, data, dt_ms)


def require_audio_encoder(run, run_dir):
    """ValueError (one line naming the run) when ``run`` was trained on spike-dataset input: it cannot take audio."""
    if not getattr(run.encoder, "encodes_audio", True):
        path = Path(run_dir) / "model.pt" if Path(run_dir).is_dir() else Path(run_dir)
        raise ValueError(f"{path}: {NO_AUDIO_ENCODER}")


def dataset_speakers(dataset):
    """The speaker (group) of every item of a spike or audio dataset (a :class:`~datasets.SpikeDataset`'s
    audio), or None where they are not known."""
    speakers = getattr(dataset, "speakers", None)
    if speakers is None:
        speakers = getattr(getattr(dataset, "base", dataset), "groups", None)
    return speakers


def speaker_metrics(dataset, predictions, trained_speakers=None, validation_speakers=None):
    """Per-speaker accuracy of ``predictions`` on a dataset part, and the accuracy on its speakers that were not
    in training (SHD's test file: 2 of its 12 speakers; every test speaker of a speaker-independent split),
    beside the official figure.

    ``trained_speakers`` are the training part's speakers (default: a spike dataset's training file's).
    Returns ``{}`` for a dataset without speakers, else ``per_speaker`` (``{speaker: {"accuracy", "n"}}``),
    ``unseen_speakers``, ``unseen_speaker_accuracy`` (None when every speaker was in training),
    ``n_unseen``, ``seen_speaker_accuracy`` and ``validation_speakers``.
    """
    speakers = dataset_speakers(dataset)
    if speakers is None:
        return {}
    speakers = np.asarray(speakers, dtype=object)
    right = np.asarray(predictions) == np.asarray(dataset.labels)
    per = {str(s): {"accuracy": float(right[speakers == s].mean()), "n": int((speakers == s).sum())}
           for s in sorted(set(speakers.tolist()))}
    known = set(trained_speakers if trained_speakers is not None else getattr(dataset, "training_file_speakers", ()))
    unseen = sorted(s for s in per if s not in known)
    is_unseen = np.isin(speakers, unseen)
    return {"per_speaker": per, "unseen_speakers": unseen,
            "unseen_speaker_accuracy": float(right[is_unseen].mean()) if is_unseen.any() else None,
            "n_unseen": int(is_unseen.sum()),
            "seen_speaker_accuracy": float(right[~is_unseen].mean()) if (~is_unseen).any() else None,
            "validation_speakers": list(validation_speakers if validation_speakers is not None
                                        else getattr(dataset, "val_speakers", []))}


def default_noise_dir(data):
    """The background-noise folder found with a dataset by :func:`datasets.base.locate`'s one rule: ``data``
    itself when it is a noise folder, ``_background_noise_`` (Speech Commands' own layout) or
    ``speech_commands_noise`` inside it, or either beside it; else None."""
    return locate("noise", data)


def audio_splits(dataset, data, split="official", noise_dir=None, seed=0, group_by=None, split_lists=None):
    """(train, val, test) audio datasets for a named corpus.

    ``fsdd``: split ``official`` (takes 0-4 test) or ``loso:<speaker>``; ``data`` is the data root or the
    ``fsdd`` folder itself (:func:`datasets.base.locate`). ``speech-commands``: the corpus's own
    validation/testing lists, 12-class task, silence cut from ``noise_dir`` (default
    :func:`default_noise_dir`). ``folder``: one folder per class, 10 % validation and 10 % test chosen by a
    hash of each file name and ``seed`` (:func:`datasets.base.hash_split`), of each file's group with
    ``group_by`` (its speaker: a regex, see :func:`datasets.base.file_groups`), or named by ``split_lists``
    (train, val, test; train None: the rest; see :meth:`datasets.AudioFolder.split_by_lists`); files whose
    header does not read are left out, listed in each part's ``skipped``.
    """
    check_split(dataset, split, "train")
    if (group_by is not None or split_lists is not None) and dataset != "folder":
        raise ValueError(f"group_by and split_lists divide folder datasets; {dataset} has its own speaker-aware split")
    if dataset == "fsdd":
        parts = ("train", "val", "test") if split == "official" else (f"{split}:{s}" for s in ("train", "val", "test"))
        return tuple(FSDD(data, split=s, seed=seed) for s in parts)
    if dataset == "speech-commands":
        root, noise_dir = locate("speech-commands", data) or Path(data), noise_dir or default_noise_dir(data)
        return tuple(SpeechCommands(root, split=s, noise_root=noise_dir, seed=seed) for s in ("train", "val", "test"))
    full = AudioFolder(data, group_by=group_by)
    out = tuple(full.split_by_lists(s, split_lists) if split_lists is not None else full.split(s, seed)
                for s in ("train", "val", "test"))
    for part in out:
        part.skipped = list(full.skipped)
    return out


def joined(a, b):
    """The clips of audio datasets ``a`` then ``b`` (the same classes) as one :class:`~datasets.AudioDataset`."""
    both = AudioDataset([*a.files, *b.files], [*a.labels, *b.labels], a.classes, [*a.segments, *b.segments], a.transform,
                        None if a.groups is None or b.groups is None else [*a.groups, *b.groups])
    both.skipped = [*getattr(a, "skipped", []), *getattr(b, "skipped", [])]  # listed once each (skipped_files)
    return both


def extra_clips(folder, classes):
    """The clips of the class folders in ``folder`` labelled as ``classes`` (every folder must name one of them), for
    the training part only; their group (speaker) is the folder: they are never anyone's test speaker. Unreadable
    files are left out and listed in ``skipped``, as a corpus's are."""
    extra = AudioFolder(folder)
    unknown = sorted(set(extra.classes) - set(classes))
    if unknown:
        raise ValueError(f"{folder}: class folders {unknown} are not among the dataset's classes {list(classes)}")
    labels = [classes.index(extra.classes[y]) for y in extra.labels]
    clips = AudioDataset(extra.files, labels, classes, groups=[f"extra:{Path(folder).name}"] * len(extra.files))
    clips.skipped = list(extra.skipped)
    return clips


def training_encoder(dataset, splits, encoder, rate, emphasis=0.0):
    """The encoder config a run trains on: ``encoder`` at ``rate`` spikes/s and the corpus's sample rate, in the
    channel layout SNNs train on (``for_training``), with ``emphasis`` dB per octave on its selection gains
    (``with_emphasis``; spiketrum only)."""
    enc = make_config(encoder, SAMPLE_RATES.get(dataset) or corpus_rate(splits), rate=rate).for_training()
    if emphasis and not hasattr(enc, "with_emphasis"):
        raise ValueError(f"emphasis tilts the selection of spiketrum's kernels; the {encoder} encoder has none")
    return enc.with_emphasis(emphasis) if emphasis else enc


def corpus_rate(splits):
    """The sample rate a corpus is encoded at: the most common rate over all its files (ties: the higher).

    Files at other rates are resampled to it, said once in a warning. ``splits`` is one audio dataset or
    a sequence of them.
    """
    splits = [splits] if hasattr(splits, "files") else list(splits)
    rates = {}
    for f in dict.fromkeys(f for s in splits for f in s.files):
        try:
            rates[f] = sf.info(str(f)).samplerate
        except (RuntimeError, TypeError, ValueError, OSError):  # an unreadable file is reported when it is encoded
            continue
    if not rates:
        raise ValueError("no readable audio to take a sample rate from")
    counts = collections.Counter(rates.values())
    rate = max(counts, key=lambda r: (counts[r], r))
    odd = [(f, r) for f, r in rates.items() if r != rate]
    if odd:
        warnings.warn(f"{len(odd)} of {len(rates)} files are not at {rate} Hz, the corpus's most common rate (e.g. "
                      f"{odd[0][0]} at {odd[0][1]} Hz); they are resampled to {rate} Hz", stacklevel=2)
    return rate


class AugmentedSpikes(torch.utils.data.Dataset):
    """Training items ``(dense spikes [T, C], label)`` from a clean :class:`~datasets.SpikeDataset`,
    transformed by an :class:`Augment` each time they are read. Half the reads take the item from
    one of the ``noisy`` datasets (encodings of the same clips with noise, speed or tilt) instead, drawn uniformly.

    The per-read generator is seeded from numpy's global state, which the Trainer's checkpoints
    carry: a resumed run draws the same augmentations as an uninterrupted one.
    """

    def __init__(self, clean, augment, dt_ms, noisy=()):
        self.clean, self.augment, self.dt_ms, self.noisy = clean, augment, dt_ms, list(noisy)
        self.classes, self.labels = clean.classes, clean.labels

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, i):
        rng = np.random.default_rng(np.random.randint(2**31))
        source = self.clean
        if self.noisy and rng.random() < 0.5:
            source = self.noisy[int(rng.integers(len(self.noisy))) if len(self.noisy) > 1 else 0]
        return self.augment(source.spikes(i), rng).to_dense(self.dt_ms, torch=True), self.labels[i]


MODELS = {"srnn": SRNN, "conv": ConvSNN, "srnn-scbam": SCBAMSNN, "ann": ANN, "seadlif": SEAdLIFSNN, "delay": DelaySNN,
          "ensemble": Ensemble}


def build_model(name, n_in, n_classes, **kwargs):
    check_model_kwargs(name, kwargs)
    return MODELS[name](n_in, n_classes, **kwargs)


def check_model_kwargs(name, model_kwargs):
    """ValueError naming an option the model ``name`` does not take (e.g. attention on the srnn model)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: use {', '.join(MODELS)}")
    params = inspect.signature(MODELS[name]).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    takes = [k for k in params if k not in ("n_in", "n_classes")]
    for k in model_kwargs or {}:
        if k not in takes:
            owners = [m for m, cls in MODELS.items() if k in inspect.signature(cls).parameters]
            raise ValueError(f"the {name} model has no {k!r} option (it takes {', '.join(takes)})"
                             + (f"; {k!r} is an option of the {' and '.join(owners)} model" if owners else ""))


@dataclasses.dataclass
class Run:
    """A trained model and everything needed to use it on new audio."""

    model: torch.nn.Module
    model_name: str
    model_kwargs: dict
    encoder: object
    dt_ms: float
    classes: list
    split_seed: int | None = None  # the seed that chose a folder dataset's hash split (None: not recorded)
    detector: dict | None = None  # a keyword detector's streaming settings (see spiketrum.app.detect); None: clips
    split_rule: dict | None = None  # a folder dataset's speaker-aware split: {"group_by", "split_lists"} (None: hash)
    tta: InferenceAugment = InferenceAugment()  # the views a clip's class probabilities are averaged over

    def save(self, path, extra=None):
        atomic_save({"format": MODEL_FORMAT, "version": MODEL_VERSION, "model_name": self.model_name,
                     "model_kwargs": self.model_kwargs, "state_dict": self.model.state_dict(),
                     "encoder": self.encoder.to_json(), "dt_ms": self.dt_ms, "classes": list(self.classes),
                     **({} if self.split_seed is None else {"split_seed": self.split_seed}),
                     **({} if self.detector is None else {"detector": self.detector}),
                     **({} if self.split_rule is None else {"split_rule": self.split_rule}),
                     **({} if self.tta == InferenceAugment() else {"tta": self.tta.spec()}), **(extra or {})}, path)

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
            version, classes, kwargs = state["version"], state["classes"], state["model_kwargs"]
            dt = state["dt_ms"] if version >= 2 else state["dt"] * 1000  # version 1 kept seconds
            if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (np.isfinite(dt) and dt > 0):
                raise ValueError(f"time bin {dt!r} ms is not a positive number")
            if version < 2:  # version 1: time constants in bins of the run's dt (defaults too), and no dt: to ms
                takes = inspect.signature(MODELS[state["model_name"]]).parameters if state["model_name"] in MODELS else {}
                bins = {**{k: v for k, v in V1_TAU_BINS.items() if k in takes}, **kwargs}
                kwargs = {**{k: v * dt if k.startswith("tau_") else v for k, v in bins.items()}, "dt": dt}
            if not math.isclose(kwargs.get("dt", math.nan), dt):
                raise ValueError(f"its model is built for {kwargs.get('dt')!r} ms bins, its spikes are binned at {dt!r} ms")
            if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
                raise ValueError("classes are not a list of names")
            encoder = config_from_json(state["encoder"])
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
        except Exception as exc:  # noqa: BLE001 - foreign bytes fail torch.load in many ways (IndexError on a WAV)
            raise ValueError(f"{path}: cannot load model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        seed, detector, rule = state.get("split_seed"), state.get("detector"), state.get("split_rule")
        try:
            tta = InferenceAugment.parse(str(state.get("tta", "none")))
            tta.views(encoder)
        except ValueError as exc:
            raise ValueError(f"{path}: cannot load model (its test-time views: {exc})") from None
        if rule is not None and not (isinstance(rule, dict) and set(rule) <= {"group_by", "split_lists"}):
            raise ValueError(f"{path}: cannot load model (its split rule is not understood)")
        if detector is not None and not (isinstance(detector, dict) and {"thresholds", "smooth_ms", "refractory_ms"} <= set(detector)):
            raise ValueError(f"{path}: cannot load model (its detector settings are incomplete)")
        return cls(model.to(device).eval(), state["model_name"], kwargs, encoder, float(dt), classes,
                   seed if isinstance(seed, int) and not isinstance(seed, bool) else None, detector, rule, tta)


def input_key(encoder, dt_ms, classes):
    """What a model's input is: its encoder, time bin and classes (a teacher must share them with its student)."""
    return encoder.to_json(), float(dt_ms), list(classes)


def distiller(kind, run_dir, device="cpu", **kwargs):
    """A :class:`~snn.distill.KD` or :class:`~snn.distill.LaSNN` whose teacher is the model of a trained run."""
    run = Run.load(run_dir, device=device)
    return kind(run.model, source=run_dir, input_key=input_key(run.encoder, run.dt_ms, run.classes), **kwargs)


def spike_sets(splits, encoder, cache_dir, dt_ms, jobs=1, progress=True):
    sets = [SpikeDataset(s, encoder, cache_dir, dt_ms=dt_ms, jobs=jobs) for s in splits]
    for s in sets:
        s.prepare(progress=progress)
    return sets


def collate_for(dt_ms):
    return lambda batch: collate_spikes(batch, dt_ms=dt_ms)


def as_tta(tta):
    """An :class:`~spiketrum.perturb.InferenceAugment` from itself, its spec, or None (the clip alone)."""
    return tta if isinstance(tta, InferenceAugment) else InferenceAugment.parse(tta or "none")


def view_sets(spikes, views, progress=False):
    """The clips of ``spikes`` (a prepared :class:`~datasets.SpikeDataset`) in every one of ``views`` (``(config,
    perturb)`` pairs, :meth:`~spiketrum.perturb.InferenceAugment.views`), whose first is ``spikes`` itself; encoded
    and cached beside it. A view that cannot encode every clip the first one did is left out with a warning."""
    sets = [spikes]
    for config, perturb in views[1:]:
        view = SpikeDataset(spikes.base, config, spikes.cache_dir.parent, dt_ms=spikes.dt_ms, perturb=perturb)
        view.prepare(progress=progress)
        if len(view) == len(spikes):
            sets.append(view)
        else:
            warnings.warn(f"a test-time view ({config.to_json()}, {perturb}) lost clips; left out", stacklevel=2)
    return sets


@torch.no_grad()
def view_probabilities(model, sets, n_classes, dt_ms, device="cpu", batch_size=64):
    """Class probabilities ``[views, clips, classes]`` of a clip classifier on each of ``sets`` (the same clips)."""
    model.eval()
    views = []
    for s in sets:
        loader = torch.utils.data.DataLoader(s, batch_size=batch_size, collate_fn=collate_for(dt_ms))
        views.append(torch.cat([torch.zeros(0, n_classes)] + [torch.softmax(model(x.to(device), n.to(device)), 1).cpu()
                                                               for x, n, _ in loader]))
    return torch.stack(views)


def view_result(probs, labels, n_classes):
    """:meth:`~snn.trainer.Trainer.evaluate`'s result for clips seen in several views (``probs``, from
    :func:`view_probabilities`): each clip's class is the most probable after averaging its views'
    probabilities; ``single_view_accuracy`` is that of the first view alone."""
    labels = np.asarray(labels, np.int64)
    return {**classification_result(probs.mean(0).argmax(1).numpy(), labels, n_classes),
            "single_view_accuracy": classification_result(probs[0].argmax(1).numpy(), labels, n_classes)["accuracy"]}


def split_kind(dataset, split, val_speakers=None, rule=None):
    """How a training split divides the corpus, in words (a folder's hash split may put one speaker on both sides)."""
    if dataset in SPIKE_DATASETS:
        return ("official split, validation speakers " + ", ".join(val_speakers) + " held out of training"
                if val_speakers else "official split with its own validation file")
    if dataset == "folder":
        if rule and rule.get("split_lists"):
            return "split lists" + (f", speakers by {rule['group_by']!r} checked disjoint" if rule.get("group_by") else "")
        if rule and rule.get("group_by"):
            return f"group split: speakers by {rule['group_by']!r}, none on two sides"
        return "hash split of file names (speakers may be on both sides)"
    if split.startswith("loso:"):
        return (f"leave one speaker out ({split[5:]}; validation speaker {', '.join(val_speakers)})" if val_speakers
                else f"leave one speaker out ({split[5:]})")
    return "official split"


def split_rule(group_by=None, split_lists=None):
    """The record of a folder's speaker-aware split (None for the hash split of file names)."""
    if group_by is None and split_lists is None:
        return None
    return {"group_by": group_by,
            "split_lists": None if split_lists is None else [None if p is None else str(Path(p).resolve()) for p in split_lists]}


def plot_confusion(confusion, classes, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = np.asarray(confusion)
    side = max(4.5, 1.0 + 0.45 * len(classes))  # a small class set still leaves room for the title
    fig, ax = plt.subplots(figsize=(side, side), layout="constrained")
    title = textwrap.fill(title, width=int(side * 12))
    ax.imshow(c / np.maximum(c.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(c)):
        ax.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=7, color="k" if i != j else "w")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


@dataclasses.dataclass
class TrainPlan:
    """Everything a training run is, checked and decided before anything is written or encoded
    (:func:`plan_training`); the later steps (:func:`prepare_data`, :func:`build`, :func:`fit`,
    :func:`report`) only carry it out."""

    dataset: str
    data: Path
    out: Path
    split: str
    model: str
    model_kwargs: dict
    encoder_name: str
    encoder: object
    rate: float
    dt_ms: float
    augment: Augment
    no_noise: bool  # the default noise augmentation was dropped: no noise folder found
    noise_dir: object
    config: TrainConfig
    cache_dir: Path
    splits: tuple  # (train, val, test) audio
    classes: list
    options: list
    resume_state: object  # the checkpoint read back, when resuming
    settings: dict
    split_rule: dict | None = None  # a folder's speaker-aware split (see :func:`split_rule`)
    validation: bool = True  # False: the validation part joined training (see :func:`train`)
    tta: InferenceAugment = InferenceAugment()  # the test-time views the model averages (see :func:`train`)


def _noise_policy(augment, data, noise_dir):
    """``(augment, noise_dir, no_noise)``: the default augmentation drops its noise (said later) when no noise
    folder is found; noise asked for explicitly without one is an error."""
    default = augment is None
    augment = augment if isinstance(augment, Augment) else Augment.parse(DEFAULT_AUGMENT if default else augment)
    if augment.noise is not None:
        noise_dir = noise_dir or default_noise_dir(data)
        if noise_dir is None and not default:
            raise FileNotFoundError(f"{data}: noise augmentation needs a background-noise folder; none was found in or "
                                    "beside the data and none was given (noise_dir)")
        if noise_dir is None:
            augment = dataclasses.replace(augment, noise=None)
            augment = augment if augment.encoded else dataclasses.replace(augment, copies=1)
    return augment, noise_dir, default and augment.noise is None


def _spike_augment(augment):
    """A spike dataset trains without augmentation: its transforms act on an encoder's spike trains (and
    noise on audio), which a spike dataset does not have. An explicit other one is refused."""
    parsed = augment if isinstance(augment, Augment) else Augment.parse(augment or "none")
    if parsed != Augment():
        raise ValueError(f"augmentation ({parsed.spec()}) acts on audio and its encoder's spike trains; a spike dataset "
                         "trains with augment 'none'")
    return parsed


def _check_output(out, resume, force):
    """Refuse to replace a finished run (or start over on an unfinished one) unless ``force``."""
    if force or not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if (out / "model.pt").exists() and not resume:
        raise OutputExists(out, "a finished run (model.pt)", "train into another folder, or pass force=True to replace it")
    if (out / "checkpoint.pt").exists() and not resume:
        raise OutputExists(out, "an unfinished run (checkpoint.pt)",
                           "resume it (resume=True), or pass force=True to start over")


def plan_training(dataset, data, out, *, split="official", model="srnn", encoder="spiketrum", rate=1000.0, dt_ms=10.0,
                  augment=None, config=TrainConfig(), model_kwargs=None, cache_dir=None, resume=False, noise_dir=None,
                  options=(), force=False, group_by=None, split_lists=None, tta=None, validation=True, extra_train=(),
                  emphasis=0.0):
    """Step 1 of :func:`train`: check every argument and combination of options, read the corpus's file list,
    and decide the encoder and the settings; writes and encodes nothing. Returns a :class:`TrainPlan`."""
    out = Path(out)
    _check_output(out, resume, force)
    check_model_kwargs(model, model_kwargs)
    if encoder not in audio_encoders():
        raise ValueError(f"unknown encoder {encoder!r}: use {', '.join(audio_encoders())}")
    spike_input = dataset in SPIKE_DATASETS
    if spike_input:
        augment, noise_dir, no_noise = _spike_augment(augment), None, False
        if as_tta(tta) != InferenceAugment():
            raise ValueError(f"test-time views ({as_tta(tta).spec()}) act on audio and its encoder; a spike dataset has "
                             "neither (tta 'none')")
        if not validation:
            raise ValueError("training on the validation part joins audio parts; a spike dataset's parts are its files")
        if extra_train:
            raise ValueError("extra training clips are audio for the encoder; a spike dataset has none")
        if emphasis:
            raise ValueError("emphasis tilts an encoder's selection of kernels; a spike dataset has no encoder")
    else:
        augment, noise_dir, no_noise = _noise_policy(augment, data, noise_dir)
    checkpoint = out / "checkpoint.pt"
    resume_state = None
    if resume:  # read back before any encoding: a foreign or damaged checkpoint fails at once
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint}: nothing to resume")
        resume_state = read_checkpoint(checkpoint)
    if spike_input:  # the spikes come binned from files: no encoder, no rate
        check_split(dataset, split, "train")
        splits = spike_parts(dataset, data, dt_ms)
        enc, encoder, rate = splits[0].input_config, splits[0].input_config.name, None
    else:
        splits = audio_splits(dataset, data, split, noise_dir, seed=config.seed, group_by=group_by, split_lists=split_lists)
        if not validation:
            splits = (joined(splits[0], splits[1]), splits[1].subset([]), splits[2])
        for folder in extra_train:
            splits = (joined(splits[0], extra_clips(folder, splits[0].classes)), *splits[1:])
        enc = training_encoder(dataset, splits, encoder, rate, emphasis)
    if tta is None:  # the default's warps need kernels that warp: other encoders keep its tilts
        tta = as_tta(DEFAULT_TTA if not spike_input else None)
        tta = tta if hasattr(enc, "warp") else dataclasses.replace(tta, warp=0.0)
    tta = as_tta(tta)
    tta.views(enc)  # refuses warps of an encoder whose kernels do not warp
    classes = list(splits[0].classes)
    model_kwargs = dict(model_kwargs or {})
    if not math.isclose(model_kwargs.setdefault("dt", dt_ms), dt_ms):  # the model's bin is the spike tensor's
        raise ValueError(f"the model is asked for {model_kwargs['dt']!r} ms bins, the spikes are binned at {dt_ms!r} ms")
    if model in ("conv", "srnn-scbam"):  # features per place: levels x polarity (1 for SHD's 700 channels)
        model_kwargs.setdefault("in_maps", enc.n_channels // enc.kernels)
    net = build_model(model, enc.n_channels, len(classes), **model_kwargs)  # a throwaway: the options look at it
    for o in options:  # before any encoding: a teacher on other input, SCA on a model without convolutions
        if hasattr(o, "check"):
            o.check(enc.n_channels, len(classes), dt_ms, input_key(enc, dt_ms, classes))
        if hasattr(o, "check_model"):
            o.check_model(net)
    settings = {"dataset": dataset, "split": split, "model": model, "model_kwargs": model_kwargs,
                "encoder": json.loads(enc.to_json()), "dt_ms": dt_ms, "augment": augment.spec(),
                "options": [o.settings() for o in options] or None, **({} if validation else {"validation": False}),
                **({"extra_train": [str(f) for f in extra_train]} if extra_train else {}),
                **({} if split_rule(group_by, split_lists) is None else {"split_rule": split_rule(group_by, split_lists)})}
    if resume:
        saved = json.loads((out / "settings.json").read_text()) if (out / "settings.json").is_file() else {}
        differ = sorted(k for k in settings if saved.get(k) != json.loads(json.dumps(settings[k])))
        if differ:
            raise ValueError(f"{checkpoint}: the run was started with other settings ({', '.join(differ)}); cannot resume")
        check_resumable(resume_state, config, checkpoint)
    cache_dir = Path(cache_dir) if cache_dir is not None else out.parent / "cache"
    return TrainPlan(dataset, Path(data), out, split, model, model_kwargs, encoder, enc, rate, dt_ms, augment, no_noise,
                     noise_dir, config, cache_dir, splits, classes, list(options), resume_state, settings,
                     split_rule(group_by, split_lists), validation, tta)


def prepare_data(plan, jobs=1, progress=True):
    """Step 2: create the run folder and encode the corpus (cached); items that cannot be read or encoded are
    dropped and listed. Returns ``(train_set, val_set, test_set, skipped)``, ``skipped`` a list of
    ``{"file", "reason"}``; the training set is wrapped in the augmentation. A spike dataset's parts are
    used as they are."""
    plan.out.mkdir(parents=True, exist_ok=True)
    if plan.dataset in SPIKE_DATASETS:
        return (*plan.splits, [])
    with rank_zero_first():  # rank 0 encodes, then the other processes load its cache entries
        train_set, val_set, test_set = spike_sets(plan.splits, plan.encoder, plan.cache_dir, plan.dt_ms, jobs, progress)
        noisy, aug = [], plan.augment
        if aug.encoded:
            noise = NoiseFolder(plan.noise_dir, plan.encoder.sr, part="train") if aug.noise is not None else None
            perturb = aug.audio if aug.speed or aug.tilt else None
            for k in range(aug.copies):  # copy 0 keeps the seed of single-copy runs: their cache serves
                noisy.append(SpikeDataset(train_set.base, plan.encoder, plan.cache_dir, dt_ms=None, jobs=jobs,
                                          seed=plan.config.seed + 7919 * k, noise=noise, perturb=perturb,
                                          snr_db=None if noise is None else (aug.noise, aug.noise + 20.0), warp=aug.warp))
                noisy[-1].prepare(progress=progress)
                if noisy[-1].skipped:  # a clip that took no noise: keep the clean and perturbed sets aligned
                    raise ValueError(f"{noisy[-1].skipped[0][0]}: cannot perturb it or mix background noise into it "
                                     f"({noisy[-1].skipped[0][1]})")
    skipped = skipped_files(plan.splits, (train_set, val_set, test_set))
    if plan.augment != Augment():
        train_set = AugmentedSpikes(train_set, plan.augment, plan.dt_ms, noisy)
    return train_set, val_set, test_set, skipped


def skipped_files(audio_sets, spike_sets_=()):
    """``[{"file", "reason"}]`` of the files left out: unreadable headers (a folder dataset's ``skipped``)
    and items that failed to encode (each :class:`~datasets.SpikeDataset`'s ``skipped``)."""
    seen = {}
    for s in [*audio_sets, *spike_sets_]:
        for f, why in getattr(s, "skipped", ()):
            seen.setdefault(str(f), why)
    return [{"file": f, "reason": why} for f, why in seen.items()]


def build(plan):
    """Step 3: the network, with the initial weights the seed gives."""
    seed_everything(plan.config.seed)  # the same seed gives the same initial weights
    return build_model(plan.model, plan.encoder.n_channels, len(plan.classes), **plan.model_kwargs)


def fit(plan, net, train_set, val_set, callbacks=(), device=None, progress=True):
    """Step 4: train ``net`` (resuming from the plan's checkpoint if any); returns the :class:`Trainer`."""
    schedule = [Schedule()] if hasattr(net, "schedule") else []  # the model's annealing (DelaySNN's sigma)
    trainer = Trainer(net, train_set, val_set if len(val_set) else None, collate_for(plan.dt_ms), plan.config,
                      [*plan.options, *callbacks, *schedule], run_dir=plan.out, device=device, progress=progress)
    if plan.resume_state is not None:
        trainer.load_checkpoint(plan.out / "checkpoint.pt")
    rank, _ = rank_and_world()
    if rank == 0:
        write_json(plan.settings, plan.out / "settings.json")
    if plan.no_noise and rank == 0:
        warnings.warn(f"{plan.data}: no background-noise folder found, so training without the default noise "
                      "augmentation (give a noise folder: noise_dir)", stacklevel=3)
    trainer.fit()
    return trainer


def report(plan, trainer, test_set, skipped=(), start=None):
    """Step 5: test accuracy, activity and latency; on rank 0 writes ``model.pt``, ``metrics.json`` and
    ``confusion.png``. Returns the metrics dict."""
    rank, world = rank_and_world()
    classes = plan.classes
    result = trainer.evaluate(test_set, n_classes=len(classes))
    run = Run(trainer.model, plan.model, plan.model_kwargs, plan.encoder, plan.dt_ms, classes, plan.config.seed,
              split_rule=plan.split_rule, tta=plan.tta)
    if rank != 0:  # the run folder, its activity and latency are rank 0's
        return {"test_accuracy": result["accuracy"], "n_test": result["n"], "processes": world}
    dt_ms, options = plan.dt_ms, plan.options
    if plan.tta != InferenceAugment() and len(test_set):  # the model's answer averages its views
        sets = view_sets(test_set, plan.tta.views(plan.encoder))
        probs = view_probabilities(run.model, sets, len(classes), dt_ms, trainer.device)
        result = view_result(probs, test_set.labels, len(classes))
    val_speakers = getattr(test_set, "val_speakers", None)
    if val_speakers is None and (plan.split.startswith("loso:") or plan.split_rule):  # whole held-out speakers
        val_speakers = sorted(set(plan.splits[1].groups or ()))
    kind = split_kind(plan.dataset, plan.split, val_speakers, plan.split_rule)
    kind += "" if plan.validation else ", its validation part trained on too"
    if result["n"] == 0:
        warnings.warn(f"{plan.data}: the test part is empty ({len(plan.splits[0])} training clips), so the test accuracy "
                      "is not measured; give more clips (or speakers), or --split-lists", stacklevel=2)
    if plan.dataset == "folder" and plan.split_rule is None:  # said with the result, which it qualifies
        warnings.warn(f"{plan.data}: split by a hash of file names, so one speaker's clips may be in both training and "
                      "test, and the test accuracy is speaker-dependent; give --group-by REGEX or --split-lists",
                      stacklevel=2)
    metrics = {"test_accuracy": result["accuracy"], "n_test": result["n"], "tta": plan.tta.spec(),
               "test_accuracy_single_view": result.get("single_view_accuracy", result["accuracy"]), "classes": classes,
               "confusion": result["confusion"], "dataset": plan.dataset, "split": plan.split,
               "split_kind": kind, "model": plan.model,
               "encoder": plan.encoder_name, "rate": plan.rate, "dt_ms": dt_ms, "augment": plan.augment.spec(),
               "epochs_run": len(trainer.history), "best_val_accuracy": trainer.best_accuracy,
               "parameters": sum(p.numel() for p in run.model.parameters()),
               "parameters_nonzero": sum(int(p.count_nonzero()) for p in run.model.parameters()),
               "history": trainer.history, "train_config": dataclasses.asdict(plan.config),
               **activity(run.model, test_set, collate_for(dt_ms), trainer.device),
               "cpu_latency_ms": cpu_latency(run.model, test_set, collate_for(dt_ms)),
               "skipped_files": list(skipped)}
    # per-speaker accuracy, and on the speakers unseen in training (SHD: 2 of 12; every one of a speaker split)
    trained = None if plan.dataset in SPIKE_DATASETS else dataset_speakers(plan.splits[0])
    metrics.update(speaker_metrics(test_set, result["predictions"], trained,
                                   None if plan.dataset in SPIKE_DATASETS else val_speakers))
    if options:
        metrics["options"] = [o.settings() for o in options]
    for o in options:
        if hasattr(o, "layer_densities"):
            metrics["density"] = o.layer_densities()
    if start is not None:
        metrics["wall_seconds"] = time.perf_counter() - start  # this call's, encoding included (not summed over resumes)
    if world > 1:
        metrics["processes"] = world
    run.save(plan.out / "model.pt", extra={"metrics": {k: metrics[k] for k in ("test_accuracy", "n_test")}})
    write_json(metrics, plan.out / "metrics.json")
    plot_confusion(result["confusion"], classes, plan.out / "confusion.png",
                   f"{plan.dataset}, {kind}: {plan.model} on {plan.encoder_name} spikes: {100 * result['accuracy']:.1f} %")
    return metrics


def train(dataset, data, out, *, split="official", model="srnn", encoder="spiketrum", rate=1000.0, dt_ms=10.0,
          augment=None, config=TrainConfig(), model_kwargs=None, cache_dir=None, jobs=1, resume=False,
          noise_dir=None, options=(), callbacks=(), progress=True, device=None, force=False, group_by=None,
          split_lists=None, tta=None, validation=True, extra_train=(), emphasis=0.0):
    """Train a keyword-spotting SNN and write the run folder ``out``; returns the metrics dict.

    The steps: :func:`plan_training` (every check; nothing written or encoded), :func:`prepare_data`
    (encoding), :func:`build`, :func:`fit`, :func:`report` (test metrics and the run folder).

    ``options`` are training options (:mod:`snn.pruning`, :mod:`snn.distill`; e.g. ``[ESL(0.1)]``):
    callbacks whose ``settings()`` go into ``settings.json`` and ``metrics.json``, with the per-layer
    densities of a sparse option; each option's ``check`` and ``check_model`` run before any encoding.
    ``callbacks`` are plain callbacks, not recorded. ``group_by`` and ``split_lists`` make a folder dataset's
    split speaker-independent (see :func:`audio_splits`); without them the run warns that speakers may leak.

    ``augment`` is a :class:`~spiketrum.perturb.Augment` or its spec string (``"none"`` for none).
    The default, :data:`~spiketrum.perturb.DEFAULT_AUGMENT`, mixes in background noise from
    ``noise_dir`` or the folder :func:`default_noise_dir` finds; without one it warns and trains
    without noise (the run's ``settings.json`` and ``metrics.json`` say which).

    A folder holding a finished run (``model.pt``), or an unfinished one (``checkpoint.pt``) when not
    resuming, is not replaced unless ``force`` (:class:`~spiketrum.app.errors.OutputExists`). Files that
    cannot be read or encoded are left out with a warning each and listed in ``metrics["skipped_files"]``.

    ``tta`` (an :class:`~spiketrum.perturb.InferenceAugment` or its spec) are the test-time views of a clip
    whose class probabilities the model averages, stored in ``model.pt`` for ``evaluate`` and ``predict``; the
    default, :data:`~spiketrum.perturb.DEFAULT_TTA`, is the clip, its encodings with the kernels warped by 0.9,
    0.95, 1.05 and 1.1, and its audio tilted by ±8 dB per octave (the warps only for an encoder whose kernels warp);
    ``"none"`` for the clip alone. ``metrics["test_accuracy_single_view"]`` is the clip alone's accuracy.

    ``validation=False`` trains on the training and validation parts together for ``config.epochs`` epochs and
    keeps the last: the epoch count must have been chosen before, on the validation part (a refit, as
    :func:`train_loso` does with ``refit``).

    ``emphasis`` tilts the spiketrum encoder's selection gains by that many dB per octave
    (:meth:`~spiketrum.encoder.SpiketrumConfig.with_emphasis`); the saved encoder config holds the gains.

    Inside a process group (``with snn.trainer.distributed():`` under torchrun) every process calls this:
    rank 0 encodes the corpus first and the others then read its cache; training is data-parallel
    (see :class:`~snn.trainer.Trainer`), and only rank 0 writes files.
    """
    start = time.perf_counter()
    rank, _ = rank_and_world()
    progress = progress and rank == 0
    plan = plan_training(dataset, data, out, split=split, model=model, encoder=encoder, rate=rate, dt_ms=dt_ms, augment=augment,
                         config=config, model_kwargs=model_kwargs, cache_dir=cache_dir, resume=resume,
                         noise_dir=noise_dir, options=options, force=force, group_by=group_by, split_lists=split_lists,
                         tta=tta, validation=validation, extra_train=extra_train, emphasis=emphasis)
    train_set, val_set, test_set, skipped = prepare_data(plan, jobs, progress)
    net = build(plan)
    trainer = fit(plan, net, train_set, val_set, callbacks, device, progress)
    return report(plan, trainer, test_set, skipped, start)


def train_loso(data, out, *, force=False, progress=True, refit=False, config=TrainConfig(), **kwargs):
    """Leave-one-speaker-out over every FSDD speaker: fold ``s`` trains into ``out/fold-<s>/`` (``split="loso:<s>"``:
    validation on the next speaker, test on ``s``), then ``out/loso.json`` holds each fold and the mean.

    ``refit`` then trains each fold again, into ``out/refit-<s>/``, on all five other speakers (its training
    and validation speakers) for the epoch count its validation speaker chose, keeping the last epoch
    (:func:`train` with ``validation=False``): the test speaker still chooses nothing, but no held-out speaker
    judges the refit model. ``loso.json`` then gives both, the refit's as ``refit_*``.

    Finished folds (their ``model.pt``) are kept and read back, so a killed run continues where it stopped and
    ``refit`` adds the refits to a finished run without them; ``force`` trains every fold afresh. ``kwargs`` go
    to :func:`train`. Returns the summary dict.
    """
    out = Path(out)
    finished = out / "loso.json"
    if finished.exists() and not force and not (refit and "refit_mean_accuracy" not in json.loads(finished.read_text())):
        raise OutputExists(out, "a finished leave-one-speaker-out run (loso.json)")  # refits may be added to one
    speakers = FSDD(data, split="test").all_speakers
    folds = {}
    for i, speaker in enumerate(speakers):
        fold = out / f"fold-{speaker}"
        if progress:
            print(f"fold {i + 1}/{len(speakers)}: {speaker}", flush=True)
        if (fold / "model.pt").is_file() and (fold / "metrics.json").is_file() and not force:
            metrics = json.loads((fold / "metrics.json").read_text())
        else:
            resume = (fold / "checkpoint.pt").is_file() and not force
            metrics = train("fsdd", data, fold, split=f"loso:{speaker}", force=force, resume=resume, progress=progress,
                            config=config, **kwargs)
        folds[speaker] = {"test_accuracy": metrics["test_accuracy"],
                          "test_accuracy_single_view": metrics.get("test_accuracy_single_view", metrics["test_accuracy"]),
                          "best_val_accuracy": metrics["best_val_accuracy"],
                          "validation_speakers": metrics.get("validation_speakers"), "epochs_run": metrics["epochs_run"]}
        if refit:  # as many epochs as the validation speaker liked best (the first best)
            history = metrics["history"]
            chosen = 1 + max(range(len(history)), key=lambda i: history[i]["val_accuracy"])
            again = out / f"refit-{speaker}"
            if (again / "model.pt").is_file() and (again / "metrics.json").is_file() and not force:
                m = json.loads((again / "metrics.json").read_text())
            else:
                m = train("fsdd", data, again, split=f"loso:{speaker}", validation=False, force=force, progress=progress,
                          resume=(again / "checkpoint.pt").is_file() and not force,
                          config=dataclasses.replace(config, epochs=chosen), **kwargs)
            folds[speaker].update(refit_epochs=chosen, refit_test_accuracy=m["test_accuracy"],
                                  refit_test_accuracy_single_view=m.get("test_accuracy_single_view", m["test_accuracy"]))
    accs = [f["test_accuracy"] for f in folds.values()]
    summary = {"dataset": "fsdd", "split": "loso", "mean_accuracy": float(np.mean(accs)), "min_accuracy": float(min(accs)),
               "worst_speaker": min(folds, key=lambda k: folds[k]["test_accuracy"]),
               "mean_single_view_accuracy": float(np.mean([f["test_accuracy_single_view"] for f in folds.values()])),
               "folds": folds}
    if refit:
        again = {k: f["refit_test_accuracy"] for k, f in folds.items()}
        summary.update(refit_mean_accuracy=float(np.mean(list(again.values()))), refit_min_accuracy=min(again.values()),
                       refit_worst_speaker=min(again, key=again.get),
                       refit_mean_single_view_accuracy=float(np.mean([f["refit_test_accuracy_single_view"]
                                                                      for f in folds.values()])))
    write_json(summary, out / "loso.json")
    return summary


@torch.no_grad()
def activity(model, dataset, collate, device, max_batches=None):
    """Spike rates per layer, synaptic operations and MACs per sample, and the energy per inference
    (:func:`snn.models.energy`) on ``dataset`` (its first ``max_batches`` batches of 32 clips; None: all of it)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, collate_fn=collate)
    with record_activity(model) as act:
        for i, (x, lengths, _) in enumerate(loader):
            if i == max_batches:
                break
            model(x.to(device), lengths.to(device))
    return {"activity": act.summary(), "energy": act.energy()}


@torch.no_grad()
def cpu_latency(models, dataset, collate, clips=20, batch=1, repeats=5):
    """Median CPU time (ms) per clip of a forward pass over ``batch`` clips at a time, from the first
    ``clips`` of ``dataset``, each pass timed ``repeats`` times after a warm-up (batch 1: the latency).

    ``models`` may be one model (returns a float) or a list (returns a list), timed in turn on each
    batch so that drift in the machine's speed affects every model alike.
    """
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


def training_seed(run, run_dir):
    """The seed ``run`` (loaded from ``run_dir``) was trained with, which chose a folder dataset's hash split:
    its ``split_seed``, else (older model files) the run folder's ``metrics.json``'s, else 0."""
    if run.split_seed is not None:
        return run.split_seed
    path = Path(run_dir) / "model.pt" if Path(run_dir).is_dir() else Path(run_dir)
    try:
        seed = json.loads((path.parent / "metrics.json").read_text())["train_config"]["seed"]
        return seed if isinstance(seed, int) else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def split_audio(run, dataset, data, split="test", noise_dir=None, seed=0, class_map=None, group_by=None):
    """The audio of one split, labelled with ``run``'s classes; returns ``(audio, unknown_classes)``.

    ``split`` is ``train``, ``val`` or ``test`` of the official split, or ``loso:<speaker>[:part]``
    (part defaults to test). A folder's split is the split training made (:func:`training_seed`, the run's
    split rule), or ``all`` for every file; ``class_map`` renames its class folders to the model's classes
    (e.g. ``{"zero": "0", ...}`` to score an FSDD model on Speech Commands' digit words); classes the model does
    not know are skipped and listed. ``group_by`` (split ``all`` only: the speakers of another corpus) is the
    regular expression of :class:`~datasets.AudioFolder` that finds each file's speaker, for per-speaker scores.
    Files whose header does not read are left out, listed in the audio's ``skipped``. The audio's
    ``trained_speakers`` are the speakers of the run's training part, from the same scan of the data (None where
    speakers are not known, or for ``all``).
    """
    check_split(dataset, split, "score")
    if class_map and dataset != "folder":
        raise ValueError(f"a class map renames a folder dataset's class folders; {dataset} has fixed classes")
    if group_by is not None and (dataset != "folder" or split != "all"):
        raise ValueError("group_by names the speakers of a folder scored whole (split all); a training split keeps "
                         "the run's own grouping")
    if dataset == "folder":
        rule = run.split_rule or {}
        full = AudioFolder(data, group_by=group_by or rule.get("group_by"))
        if class_map:
            missing = sorted(set(class_map) - set(full.classes))
            if missing:
                raise ValueError(f"{data}: the class map names folders that are not there: {', '.join(missing)}")
            full.classes = [class_map.get(c, c) for c in full.classes]
        known = [c for c in full.classes if c in run.classes]
        unknown = sorted(set(full.classes) - set(known))
        if not known:
            raise ValueError(f"{data}: none of its class folders ({', '.join(full.classes)}) is a class of this model")
        lists = rule.get("split_lists")

        def part(name):
            return full.split_by_lists(name, lists) if lists and name != "all" else full.split(name, seed)

        audio = part(split)
        trained = None if split == "all" or class_map else dataset_speakers(part("train"))
        audio = audio.subset([i for i, lab in enumerate(audio.labels) if audio.classes[lab] in run.classes])
        remap = {i: run.classes.index(c) for i, c in enumerate(full.classes) if c in run.classes}
        audio.labels = [remap[lab] for lab in audio.labels]
        audio.classes = list(run.classes)
        audio.skipped, audio.trained_speakers = list(full.skipped), trained
        return audio, unknown
    corpus_split, part = ("official", split) if not split.startswith("loso:") else (":".join(split.split(":")[:2]), (split.split(":") + ["test"])[2])
    parts = dict(zip(("train", "val", "test"), audio_splits(dataset, data, corpus_split, noise_dir)))
    audio = parts[part]
    if list(audio.classes) != list(run.classes):
        raise ValueError(f"{data}: classes {audio.classes} differ from the model's {run.classes}")
    audio.trained_speakers = dataset_speakers(parts["train"])
    return audio, []


def evaluate(run_dir, dataset, data, split="test", noise_dir=None, cache_dir=None, progress=True, class_map=None,
             group_by=None, tta=None):
    """Accuracy of a trained run on a dataset split: ``{"accuracy", "n", "unknown_classes", "skipped_files", "energy",
    "tta", "single_view_accuracy"}``; ``energy`` is the energy of one inference per clip on the same clips
    (:meth:`snn.models.Activity.energy`), which each test-time view costs again.

    Each clip's class is the most probable after averaging over the run's test-time views (``tta``: None for
    the run's own, stored by :func:`train`; ``"none"`` for the clip alone); ``single_view_accuracy`` is the
    clip alone's.

    A folder's ``test`` (the default), ``train`` and ``val`` are the parts the run's training made of that
    folder; ``all`` is every file, whose speakers ``group_by`` finds (:func:`split_audio`). Audio at another rate
    than the model's encoder is resampled to it. A folder's unknown classes, and files that cannot be read or
    encoded, are reported and skipped.
    """
    run = Run.load(run_dir)
    tta = run.tta if tta is None else as_tta(tta)
    if dataset in SPIKE_DATASETS:
        if tta != InferenceAugment():
            raise ValueError(f"test-time views ({tta.spec()}) act on audio; {dataset} is spikes (tta 'none')")
        return evaluate_spikes(run, run_dir, dataset, data, split)
    require_audio_encoder(run, run_dir)
    tta.views(run.encoder)  # before any encoding: warps need an encoder whose kernels warp
    audio, unknown = split_audio(run, dataset, data, split, noise_dir, seed=training_seed(run, run_dir), class_map=class_map,
                                 group_by=group_by)
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(run_dir).parent / "cache"
    (spikes,) = spike_sets([audio], run.encoder, cache_dir, run.dt_ms, progress=progress)
    sets, k, device = view_sets(spikes, tta.views(run.encoder), progress), len(run.classes), default_device()
    run.model.to(device)
    with record_activity(run.model) as act:  # one inference: the clip's own view
        first = view_probabilities(run.model, sets[:1], k, run.dt_ms, device)
    others = view_probabilities(run.model, sets[1:], k, run.dt_ms, device) if len(sets) > 1 else first[:0]
    result = view_result(torch.cat([first, others]), spikes.labels, k)
    trained = audio.trained_speakers  # None for another corpus or every file: their part in training is not known
    return {"accuracy": result["accuracy"], "n": result["n"], "unknown_classes": unknown,
            "skipped_files": skipped_files([audio], [spikes]), **speaker_metrics(spikes, result["predictions"], trained),
            "energy": act.energy(), "tta": tta.spec(), "single_view_accuracy": result["single_view_accuracy"]}


def evaluate_spikes(run, run_dir, dataset, data, split="test"):
    """:func:`evaluate` on a spike dataset's part, with :func:`speaker_metrics`; the dataset's input (channels
    and source) and classes must be the run's."""
    check_split(dataset, split, "score")
    spikes = dict(zip(("train", "val", "test"), spike_parts(dataset, data, run.dt_ms)))[split]
    if spikes.input_config != run.encoder:
        theirs = f"{spikes.input_config.n_channels} channels of {spikes.input_config.corpus or 'a spike corpus'}"
        raise ValueError(f"{spikes.path}: its spikes ({theirs}) are not the input this model was trained on "
                         f"({run.encoder.n_channels} channels of {getattr(run.encoder, 'corpus', '') or run.encoder.name})")
    if list(spikes.classes) != list(run.classes):
        raise ValueError(f"{spikes.path}: classes {spikes.classes} differ from the model's {run.classes}")
    trainer = Trainer(run.model, spikes, None, collate_for(run.dt_ms), TrainConfig(), progress=False)
    with record_activity(run.model) as act:
        result = trainer.evaluate(spikes, n_classes=len(run.classes))
    return {"accuracy": result["accuracy"], "n": result["n"], "unknown_classes": [], "skipped_files": [],
            **speaker_metrics(spikes, result["predictions"]), "energy": act.energy()}


@dataclasses.dataclass
class Prediction:
    """One file's keyword and confidence, or why it has none (``error``, one line naming the file)."""

    file: str
    keyword: str = None
    confidence: float = None
    error: str = None


@torch.no_grad()
def iter_predict(run_dir, files):
    """A :class:`Prediction` per audio file, as each is done; a file that cannot be read or encoded gives
    one with ``error`` set, and the others go on. Audio at another rate is resampled to the model's. The
    confidence is the class probability averaged over the run's test-time views (:func:`train`)."""
    run = Run.load(run_dir)
    require_audio_encoder(run, run_dir)
    views = run.tta.views(run.encoder)
    for f in files:
        try:
            x, sr = load_audio(f, allow_silent=True)
            x = resample(x, sr, run.encoder.sr) if sr != run.encoder.sr else x
            rng = np.random.default_rng(0)  # a view's audio change is fixed: nothing is drawn
            dense = torch.stack([config.encode(x if perturb is None else perturb(x, config.sr, rng), config.sr)
                                 .to_dense(run.dt_ms, torch=True) for config, perturb in views], 1)
        except (ValueError, OSError) as exc:  # InputError names the file
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            yield Prediction(str(f), error=message if message.startswith(str(f)) else f"{f}: {message}")
            continue
        lengths = torch.full((len(views),), dense.shape[0])
        probs = torch.softmax(run.model(dense, lengths, dt=run.dt_ms), 1).mean(0)
        k = int(probs.argmax())
        yield Prediction(str(f), run.classes[k], float(probs[k]))


def predict(run_dir, files):
    """(file, keyword, confidence) for each audio file; the first file that fails raises its error."""
    out = []
    for p in iter_predict(run_dir, files):
        if p.error:
            raise ValueError(p.error)
        out.append((p.file, p.keyword, p.confidence))
    return out


def _check_new_run(out, sources, files, force, what):
    """Refuse to write ``files`` into the run folder ``out`` when it is one of the ``sources`` (run folders or
    model files; ``what`` names them), is not a folder, or already holds one of ``files`` (unless ``force``)."""
    if any(out.resolve() == (Path(d) if Path(d).is_dir() else Path(d).parent).resolve() for d in sources):
        raise ValueError(f"{out}: is {what}; write to another folder")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if not force and any((out / n).exists() for n in files):
        raise OutputExists(out, f"a model ({' or '.join(files)})")


def random_spikes(n_channels, clips, steps=100, p=0.05, seed=0):
    """Seeded random spike input [steps, clips, n_channels] (each entry a spike with probability ``p``), on which
    an exported model is checked against its source."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, clips, n_channels, generator=g) < p).float()


def ensemble(run_dirs, out, force=False):
    """Join trained SRNN clip runs into one run, ``out/model.pt``, whose model averages their class probabilities
    (:class:`~snn.models.Ensemble`; e.g. the same recipe with other seeds); ``out/ensemble.json`` names them.
    Returns that record.

    The runs must share their input (encoder, bin and classes), model options, test-time views and split rule,
    and, unless every one trained on FSDD or Speech Commands (whose splits do not depend on the seed), the seed
    that chose a folder's hash split: so that the ensemble's test part is held out of every member.
    """
    if len(run_dirs) < 2:
        raise ValueError("an ensemble joins two or more trained runs")
    runs, out = [Run.load(d) for d in run_dirs], Path(out)
    first, ref = runs[0], run_dirs[0]

    def dataset(d):
        try:
            return json.loads((Path(d) / "settings.json").read_text()).get("dataset")
        except (OSError, ValueError, AttributeError):
            return None

    seedless = all(dataset(d) in ("fsdd", "speech-commands") for d in run_dirs)
    for d, r in zip(run_dirs, runs):
        if r.model_name != "srnn" or r.detector is not None:
            raise ValueError(f"{d}: an ensemble joins srnn clip models; this is {'a detector' if r.detector else r.model_name}")
        for what, a, b in (("input (encoder, time bin or classes)", input_key(r.encoder, r.dt_ms, r.classes),
                            input_key(first.encoder, first.dt_ms, first.classes)),
                           ("model options", r.model_kwargs, first.model_kwargs), ("test-time views", r.tta, first.tta),
                           ("split rule", r.split_rule, first.split_rule),
                           ("split seed", None if seedless else r.split_seed, None if seedless else first.split_seed)):
            if a != b:
                raise ValueError(f"{d}: its {what} differ from {ref}'s, so the two cannot be averaged")
    _check_new_run(out, run_dirs, ("model.pt", "ensemble.json"), force, "one of the joined run folders")
    kwargs = {**first.model_kwargs, "members": len(runs)}
    model = build_model("ensemble", first.encoder.n_channels, len(first.classes), **kwargs)
    for member, r in zip(model.members, runs):
        member.load_state_dict(r.model.state_dict())
    record = {"members": [str(d) for d in run_dirs], "model_kwargs": kwargs}
    out.mkdir(parents=True, exist_ok=True)
    Run(model.eval(), "ensemble", kwargs, first.encoder, first.dt_ms, first.classes, first.split_seed,
        split_rule=first.split_rule, tta=first.tta).save(out / "model.pt")
    write_json(record, out / "ensemble.json")
    return record


def prune_export(run_dir, out, force=False):
    """Remove the pruned channels of an SCA-pruned conv run physically: writes ``out/model.pt`` (the compact
    model) and ``out/export.json`` (the report), and returns the report.

    The compact model's outputs are checked against the original on random spike input
    (``max_abs_logit_difference``), and both are timed on the CPU. ``out`` is never the source run folder,
    and an ``out`` already holding a model is replaced only with ``force``.
    """
    run, out = Run.load(run_dir), Path(out)
    _check_new_run(out, [run_dir], ("model.pt", "export.json"), force, "the source run folder")
    if run.model_name != "conv":
        raise ValueError(f"{run_dir}: exporting removes pruned convolution channels; this is a {run.model_name} model, "
                         "not a conv one")
    small, kwargs = compact(run.model, run.model_kwargs)
    x = random_spikes(run.encoder.n_channels, clips=64)
    with torch.no_grad():
        diff = float((small(x) - run.model(x)).abs().max())
    clips = [(x[:, i], 0) for i in range(x.shape[1])]

    def collate(b):
        return torch.stack([c for c, _ in b], 1), torch.full((len(b),), 100), torch.zeros(len(b), dtype=torch.long)
    before, after = cpu_latency([run.model, small], clips, collate)
    batched = cpu_latency([run.model, small], clips, collate, clips=64, batch=32)
    report = {"source": str(run_dir), "channels": [c.conv.out_channels for c in run.model.convs],
              "kept_channels": list(kwargs["channels"]), "parameters": sum(p.numel() for p in run.model.parameters()),
              "parameters_compact": sum(p.numel() for p in small.parameters()), "max_abs_logit_difference": diff,
              "cpu_latency_ms": before, "cpu_latency_ms_compact": after,
              "cpu_ms_per_clip_batch32": batched[0], "cpu_ms_per_clip_batch32_compact": batched[1]}
    out.mkdir(parents=True, exist_ok=True)
    Run(small, "conv", kwargs, run.encoder, run.dt_ms, run.classes, training_seed(run, run_dir)).save(out / "model.pt")
    write_json(report, out / "export.json")
    return report


#: Speaker of a clip from its file name, where the corpus names it: FSDD ``<digit>_<speaker>_<take>.wav``,
#: Speech Commands ``<speaker hash>_nohash_<n>.wav``.
_SPEAKER_NAMES = (r"\d_([^_]+)_\d+\.wav", r"([0-9a-f]{8})_nohash_\d+\.\w+")


def speaker_of(path):
    """The speaker a clip's file name says (see :data:`_SPEAKER_NAMES`), else the name of its folder."""
    name = Path(str(path)).name
    for pattern in _SPEAKER_NAMES:
        m = re.fullmatch(pattern, name)
        if m:
            return m[1]
    return Path(str(path)).parent.name


def write_shd(dataset, data, out, *, split="official", encoder="spiketrum", rate=1000.0, cache_dir=None, jobs=1,
              noise_dir=None, seed=0, progress=True, force=False):
    """Write a corpus's train, validation and test encodings as SHD-layout files ``out/<dataset>_train.h5``,
    ``<dataset>_valid.h5`` and ``<dataset>_test.h5`` (:func:`datasets.write_spike_corpus`).

    The encoder is the one :func:`train` would train on (:func:`training_encoder`), the parts the ones it
    would use (:func:`audio_splits` with ``split`` and ``seed``), and the encodings come from (and go into)
    the same cache, so ``train --dataset spikes --data out`` sees exactly the items of ``train --dataset
    <dataset> --augment none``. Speakers come from the file names (:func:`speaker_of`); FSDD's are in every
    file under the same ids. Files that cannot be read or encoded are left out, as in training.

    Returns ``{"files": {part: path}, "clips": {part: n}, "encoder": JSON, "skipped_files": [...]}``.
    """
    check_split(dataset, split, "train")
    out = Path(out)
    names = {part: out / f"{dataset}_{part}.h5" for part in ("train", "valid", "test")}
    if not force and any(p.exists() for p in names.values()):
        raise OutputExists(out, f"a spike corpus ({dataset}_*.h5)", "write into another folder, or pass force=True to replace it")
    if encoder not in audio_encoders():
        raise ValueError(f"unknown encoder {encoder!r}: use {', '.join(audio_encoders())}")
    splits = audio_splits(dataset, data, split, noise_dir, seed=seed)
    enc = training_encoder(dataset, splits, encoder, rate)
    cache_dir = Path(cache_dir) if cache_dir is not None else out / "cache"
    sets = spike_sets(splits, enc, cache_dir, None, jobs, progress)
    speakers = [[speaker_of(f) for f in s.files] for s in sets]
    everyone = sorted({x for part in speakers for x in part})
    out.mkdir(parents=True, exist_ok=True)
    for (part, path), s, who in zip(names.items(), sets, speakers):
        if not len(s) and part != "valid":  # training runs without validation, never without training or test clips
            raise ValueError(f"{data}: the {part} part of the {split} split is empty; nothing to write to {path}")
        write_spike_corpus(path, [s.spikes(i) for i in range(len(s))], s.labels, who, s.classes, all_speakers=everyone,
                           corpus=dataset, config=enc)
    return {"files": {p: str(f) for p, f in names.items()}, "clips": {p: len(s) for p, s in zip(names, sets)},
            "encoder": json.loads(enc.to_json()), "skipped_files": skipped_files(splits, sets)}
