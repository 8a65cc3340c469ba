"""How a trained keyword-spotting run, and its spike code, survive spike loss, jitter, spurious spikes and noise.

Every point of a curve perturbs the test split's spike trains (or, for noise, the audio before
encoding), classifies them with the trained model, and decodes a fixed subset of clips back to audio
to measure the reconstruction SNR against the clean audio: information lost by the code itself,
whatever the classifier makes of it. Each point is repeated over ``seeds`` perturbation seeds and
reported as mean and standard deviation.

Every random draw comes from a seed derived from (seed, kind, level, clip), so the same settings give
the same JSON, bit for bit, in any order and after any resume.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from datasets import NoiseFolder, SpikeDataset, collate_spikes
from snn.trainer import default_device, write_json
from spiketrum import perturb
from datasets.base import check_split
from spiketrum import config_from_json
from spiketrum.corpus import file_digest
from spiketrum.io import atomic_output
from spiketrum.metrics import envelope_snr_db, snr_db

from .errors import OutputExists
from .kws import Run, default_noise_dir, require_audio_encoder, skipped_files, split_audio, training_seed

KINDS = ("deletion", "jitter", "insertion", "noise")
UNITS = {"deletion": "probability of deleting each spike", "jitter": "sigma of Gaussian spike-time jitter, ms",
         "insertion": "spurious spikes per second per channel", "noise": "SNR of real background noise, dB"}
DEFAULT_LEVELS = {"deletion": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                  "jitter": (0.0, 0.5, 1.0, 2.0, 5.0, 10.0),
                  "insertion": (0.0, 0.5, 1.0, 2.0, 5.0, 10.0),
                  "noise": (20.0, 10.0, 5.0, 0.0)}


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
    """What a robustness measurement perturbs, how often, and on which split; saved in its JSON."""

    dataset: str
    split: str = "test"
    levels: tuple = tuple((k, DEFAULT_LEVELS[k]) for k in KINDS)  # ((kind, (level, ...)), ...)
    seeds: int = 3
    recon_clips: int = 100  # clips decoded for the reconstruction SNR (evenly spread over the split)

    def __post_init__(self):
        if not (isinstance(self.seeds, int) and self.seeds >= 1):
            raise ValueError(f"seeds must be a positive integer, got {self.seeds!r}")
        if not (isinstance(self.recon_clips, int) and self.recon_clips >= 0):
            raise ValueError(f"recon_clips must be an integer >= 0, got {self.recon_clips!r}")
        for kind, levels in self.levels:
            if kind not in KINDS:
                raise ValueError(f"unknown perturbation {kind!r}: use {', '.join(KINDS)}")
            for v in levels:
                ok = np.isfinite(v) and (kind == "noise" or v >= 0) and (kind != "deletion" or v <= 1)
                if not ok:
                    raise ValueError(f"bad {kind} level {v!r}: " + {"deletion": "a probability in [0, 1]",
                                     "noise": "a finite SNR in dB"}.get(kind, "a finite number >= 0"))


def default_levels(data, noise_dir=None, **levels):
    """The perturbation levels to measure: each kind's given levels (``deletion=(0.1, 0.5)``; an empty tuple
    leaves the kind out), else :data:`DEFAULT_LEVELS`. The default noise levels are dropped, with a warning,
    when no background-noise folder is given or found with ``data`` (:func:`~spiketrum.app.kws.default_noise_dir`);
    noise levels given explicitly are kept (:func:`robustness` then says if it has no noise). The one place
    this fallback is decided."""
    unknown = sorted(set(levels) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown perturbation {unknown[0]!r}: use {', '.join(KINDS)}")
    out = {k: tuple(DEFAULT_LEVELS[k] if levels.get(k) is None else levels[k]) for k in KINDS}
    if levels.get("noise") is None and noise_dir is None and default_noise_dir(data) is None:
        warnings.warn(f"{data}: no background-noise folder found; skipping noise (give a noise folder)", stacklevel=2)
        out["noise"] = ()
    return tuple((k, v) for k, v in out.items() if v)


def _read_partial(partial):
    """The finished points kept in ``partial``; a file that is not such a record is ignored, with a warning
    naming it, and its points are measured again (it only ever holds what can be recomputed)."""
    if partial is None or not Path(partial).is_file():
        return {}
    try:
        points = json.loads(Path(partial).read_text())
        if not isinstance(points, dict):
            raise ValueError("not a JSON object")
        for name, value in points.items():
            if not (isinstance(value, list) and len(value) == 3
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
                raise ValueError(f"point {name!r} is not [accuracy, SNR, envelope SNR]")
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        warnings.warn(f"{partial}: not a readable record of finished points ({str(exc).splitlines()[0][:120]}); "
                      "ignoring it and measuring them again", stacklevel=3)
        return {}
    return points


def _seed(*parts):
    """A 63-bit seed from the point's coordinates, independent of evaluation order."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def _perturb(st, kind, level, seed):
    if kind == "deletion":
        return perturb.delete(st, level, seed)
    if kind == "jitter":
        return perturb.jitter(st, level, seed)
    return perturb.insert(st, level, seed)


@torch.no_grad()
def _predict(run, trains, device, batch_size=64):
    preds = []
    for i in range(0, len(trains), batch_size):
        x, lengths, _ = collate_spikes([(st, 0) for st in trains[i:i + batch_size]], dt_ms=run.dt_ms)
        preds.append(run.model(x.to(device), lengths.to(device)).argmax(1).cpu())
    return torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)


def _clips(spike_set):
    """What each item of a :class:`~datasets.SpikeDataset` encodes: ``(file, segment)`` (a file may hold several)."""
    return list(zip(spike_set.base.files, spike_set.base.segments))


def _recon_snr(trains, files, clean_audio):
    """Means over clips of the SNR (dB) of each train's decoded audio against the clean audio, and of
    its decoded envelope against the clean cochleagram (:func:`spiketrum.metrics.envelope_snr_db`).
    ``trains[j]`` encodes clip ``files[j]``; ``clean_audio`` maps clips to their clean audio (clips a noisy
    encoding left out are not in ``files``)."""
    pairs = [(trains[j], clean_audio[f]) for j, f in enumerate(files) if f in clean_audio]
    if not pairs:
        return [float("nan")] * 2
    return [float(np.mean([snr_db(x, st.config.decode(st)) for st, x in pairs])),
            float(np.mean([envelope_snr_db(st, x) for st, x in pairs]))]


def robustness(run_dir, data, config, partial=None, noise_dir=None, cache_dir=None, jobs=1, device=None, progress=True):
    """Accuracy and reconstruction SNR of a trained run under every perturbation level of ``config``.

    Parameters
    ----------
    run_dir : path
        A ``spiketrum train`` run folder (its ``model.pt``).
    data : path
        The dataset root, as for ``spiketrum evaluate``.
    config : RobustnessConfig
    partial : path, optional
        A JSON file that keeps finished points as they complete, so that an interrupted measurement
        resumes where it stopped (see :func:`measure`).
    noise_dir : path, optional
        Background-noise folder for the ``noise`` kind; its last 20 % is used (the first 80 % is
        what ``--augment noise`` trains on). Defaults as for Speech Commands silence.
    cache_dir : path, optional
        Encoding cache (default ``cache/`` beside the run folder).
    jobs : int
        Processes encoding the noisy audio.

    Returns
    -------
    dict
        ``clean_accuracy``, ``clean_recon_snr_db``, ``n``, the run's ``encoder`` and ``model``,
        ``config``, ``units``, and for each kind a list of ``{level, accuracy, accuracy_std,
        recon_snr_db, recon_snr_db_std, envelope_snr_db, envelope_snr_db_std}``: the reconstruction
        SNR of the decoded waveform and of the decoded envelope (cochleagram), both against the clean
        audio; the envelope one is the fair scale for envelope codes (delta, LIF, Poisson).
    """
    run_dir = Path(run_dir)
    device = torch.device(device) if device is not None else default_device()
    run = Run.load(run_dir, device=device)
    audio, _ = split_audio(run, config.dataset, data, config.split, noise_dir, seed=training_seed(run, run_dir))
    cache_dir = Path(cache_dir) if cache_dir is not None else run_dir.parent / "cache"
    levels = dict(config.levels)
    noise = None
    if levels.get("noise"):
        noise_dir = noise_dir or default_noise_dir(data)
        if noise_dir is None:
            raise FileNotFoundError(f"{data}: no background-noise folder found in or beside the data; give one "
                                    "(noise_dir) or leave out the noise levels")
        noise = NoiseFolder(noise_dir, run.encoder.sr, part="test")

    clean_set = SpikeDataset(audio, run.encoder, cache_dir, dt_ms=None, jobs=jobs)
    clean_set.prepare(progress=progress)  # drops (and lists) clips that cannot be read or encoded
    audio, labels = clean_set.base, np.asarray(clean_set.labels)
    clean = [clean_set.spikes(i) for i in range(len(clean_set))]
    picks = np.unique(np.linspace(0, len(clean) - 1, min(config.recon_clips, len(clean))).round().astype(int)) if clean else []
    clips = _clips(clean_set)
    clean_audio = {clips[int(i)]: clean_set.audio(int(i)) for i in picks}
    points = _read_partial(partial)

    total = sum(len(v) for v in levels.values()) * config.seeds
    bar = tqdm(total=total, desc=f"robustness of {run_dir.name}", unit="point", disable=not progress)
    for kind, kind_levels in config.levels:
        for li, level in enumerate(kind_levels):
            for seed in range(config.seeds):
                name = f"{kind}:{level!r}:{seed}"
                if name not in points:
                    if kind == "noise":
                        noisy = SpikeDataset(audio, run.encoder, cache_dir, dt_ms=None, jobs=jobs, noise=noise,
                                             snr_db=float(level), seed=_seed(seed, kind, li) % 2**32)
                        noisy.prepare(progress=False)
                        trains, files = [noisy.spikes(i) for i in range(len(noisy))], _clips(noisy)
                        truth = np.asarray(noisy.labels)  # a clip that took no noise (silent) is left out
                    else:
                        trains = [_perturb(st, kind, float(level), _seed(seed, kind, li, i)) for i, st in enumerate(clean)]
                        truth, files = labels, clips
                    acc = float(np.mean(_predict(run, trains, device) == truth)) if len(truth) else float("nan")
                    points[name] = [acc, *_recon_snr(trains, files, clean_audio)]
                    if partial is not None:
                        write_json(points, partial)
                bar.update()
    bar.close()

    result = {"run": str(run_dir), "model": run.model_name, "encoder": json.loads(run.encoder.to_json()),
              "dataset": config.dataset, "split": config.split, "n": len(clean), "config": dataclasses.asdict(config),
              "units": {k: UNITS[k] for k in levels}, "skipped_files": skipped_files([audio], [clean_set]),
              "clean_accuracy": float(np.mean(_predict(run, clean, device) == labels)) if len(labels) else float("nan"),
              **dict(zip(("clean_recon_snr_db", "clean_envelope_snr_db"), _recon_snr(clean, clips, clean_audio)))}
    for kind, kind_levels in config.levels:
        rows = []
        for level in kind_levels:
            acc, snr, env = np.array([points[f"{kind}:{level!r}:{s}"] for s in range(config.seeds)]).T
            rows.append({"level": float(level), "accuracy": float(acc.mean()), "accuracy_std": float(acc.std()),
                         "recon_snr_db": float(snr.mean()), "recon_snr_db_std": float(snr.std()),
                         "envelope_snr_db": float(env.mean()), "envelope_snr_db_std": float(env.std())})
        result[kind] = rows
    return result


def check_inputs(run_dirs, dataset, split, out_dir, force=False):
    """What :func:`measure` checks before it writes or warns about anything: every run's model loads, ``split`` is
    a split of ``dataset``, and ``out_dir`` holds no finished results (unless ``force``)."""
    for run_dir in run_dirs:
        require_audio_encoder(Run.load(run_dir), run_dir)  # perturbs audio and its encodings: a spike-input run has none
    check_split(dataset, split, "score")
    if not force and (Path(out_dir) / "robustness.json").exists():
        raise OutputExists(out_dir, "finished results (robustness.json)")


def measure(run_dirs, data, config, out_dir, force=False, **kwargs):
    """:func:`robustness` of every run, written as ``out_dir/robustness.json`` and ``robustness.png``.

    The first run is the subject: its result is the top level of the JSON. Any further runs (the
    ``--compare`` runs) are measured the same way, listed under ``"compare"`` and overlaid in the
    figure. Finished points survive an interruption in ``out_dir/robustness.partial-<key>.json`` (a damaged
    one is ignored with a warning and its points measured again). A folder that already holds a
    ``robustness.json`` is not overwritten unless ``force``.

    Returns
    -------
    dict
        The JSON written.
    """
    check_inputs(run_dirs, config.dataset, config.split, out_dir, force)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partials, results = [], []
    for run_dir in run_dirs:
        model = Path(run_dir) / "model.pt" if Path(run_dir).is_dir() else Path(run_dir)
        digest = file_digest(model) if model.is_file() else "missing"  # Run.load reports a missing model
        key = hashlib.sha256(json.dumps([digest, dataclasses.asdict(config), str(Path(data).resolve())]).encode())
        partials.append(out_dir / f"robustness.partial-{key.hexdigest()[:16]}.json")
        results.append(robustness(run_dir, data, config, partial=partials[-1], **kwargs))
    out = dict(results[0])
    if len(results) > 1:
        out["compare"] = results[1:]
    write_json(out, out_dir / "robustness.json")
    plot_robustness(results, out_dir / "robustness.png")
    for p in partials:
        p.unlink(missing_ok=True)
    return out


def run_label(result):
    """A legend label: run folder, encoder and rate."""
    enc = config_from_json(json.dumps(result["encoder"]))
    rate = getattr(enc, "rate", None)
    return f"{Path(result['run']).name} ({enc.name}{f', {rate:g}/s' if rate else ''})"


def plot_robustness(results, path):
    """One panel per perturbation kind: accuracy (solid) and reconstruction SNR (dashed) against level.

    The SNR drawn is the decoded waveform's when every run is a spiketrum run, else the decoded
    envelope's: envelope codes (delta, LIF, Poisson) do not carry a waveform, so only the envelope
    compares them fairly.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if k in results[0]]
    cols = min(2, len(kinds))
    rows = -(-len(kinds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), layout="constrained", squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    waveform = all(config_from_json(json.dumps(r["encoder"])).codes_waveform for r in results)
    snr_key, snr_label = ("recon_snr_db", "waveform") if waveform else ("envelope_snr_db", "envelope")
    for ax in axes.flat[len(kinds):]:
        ax.set_visible(False)
    for ax, kind in zip(axes.flat, kinds):
        twin = ax.twinx()
        for j, r in enumerate(results):
            rows, c = r[kind], colors[j % len(colors)]
            x = [row["level"] for row in rows]
            acc = 100 * np.array([row["accuracy"] for row in rows])
            ax.errorbar(x, acc, yerr=100 * np.array([row["accuracy_std"] for row in rows]), color=c, marker="o", ms=3,
                        capsize=2, label=run_label(r))
            ax.axhline(100 * r["clean_accuracy"], color=c, lw=0.6, ls=":")
            twin.plot(x, [row[snr_key] for row in rows], color=c, ls="--", marker="s", ms=2.5, alpha=0.7)
        if kind == "noise":
            ax.invert_xaxis()
        ax.set_xlabel(UNITS[kind])
        ax.set_ylabel("test accuracy, % (solid)")
        twin.set_ylabel(f"{snr_label} reconstruction SNR, dB (dashed)")
        ax.set_ylim(0, 100)
        ax.set_title(kind)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
