"""The ``spiketrum`` command line."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import warnings
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from cochlea import cochleagram, erb_space, plot_cochleagram
from spiketrum import __version__, metrics
from spiketrum.corpus import Recipe, collect, encode_corpus, encode_one, parse_shard
from spiketrum.io import InputError, atomic_output, audio_format, check_output_path, load_audio
from spiketrum.perturb import DEFAULT_AUGMENT, DEFAULT_TTA
from spiketrum.plot import plot_spikegram
from spiketrum.registry import audio_encoders
from spiketrum.spiketrain import SpikeTrain

from .errors import OutputExists

# The commands that train or run a model import torch (about a second) and the application modules
# over it inside their functions, so that encode, decode, info and plot start fast.


class _Parser(argparse.ArgumentParser):
    """Bad command-line values get one line naming the problem (no usage dump), and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(cast, ok, what):
    """argparse type: ``cast(text)`` when it satisfies ``ok``, else one line saying what was expected."""
    def parse(text):
        try:
            v = cast(text)
        except ValueError:
            v = None
        if v is None or not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_positive_float = _number(float, lambda v: 0 < v < math.inf, "a positive finite number")
_fraction = _number(float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")
_unit = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
_finite_float = _number(float, math.isfinite, "a finite number")


def _shard(s):
    try:
        return parse_shard(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_cochleagram(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_output_path(args.output)
    x, sr = load_audio(args.input)
    fmax = args.fmax if args.fmax is not None else 0.45 * sr
    if not args.fmin < fmax < sr / 2:
        raise InputError(args.input, f"need fmin < fmax < sr/2 = {sr / 2:g} Hz, got fmin={args.fmin:g}, fmax={fmax:g}")
    cf = erb_space(args.fmin, fmax, args.channels)
    C = cochleagram(x, sr, center_freqs=cf, hop_ms=args.hop_ms, frame_ms=args.frame_ms)
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    plot_cochleagram(C, sr, cf, hop_ms=args.hop_ms, ax=ax, title=f"{args.input} ({len(x) / sr:.2f} s, {sr} Hz)")
    with atomic_output(args.output) as tmp:
        fig.savefig(tmp, dpi=args.dpi, format=args.output.rsplit(".", 1)[-1] if "." in args.output else "png")
    plt.close(fig)
    print(f"wrote {args.output}: {args.channels} channels x {C.shape[1]} frames")


def cmd_encode(args):
    rate = args.rate if args.rate is not None or args.spikes or args.snr is not None else 1000.0
    recipe = Recipe(args.method, dict(rate=rate, n_spikes=args.spikes, snr_db=args.snr, frame_ms=args.frame_ms,
                                      kernels=args.kernels, levels=args.levels, fmin=args.fmin, fmax=args.fmax,
                                      mode=args.mode), sr=args.sr)
    shard = args.shard
    pairs = collect(args.input, args.output)
    if not pairs:
        raise InputError(args.input[0], "no audio files found")
    if Path(args.output).suffix == ".npz":
        if shard is not None or len(pairs) != 1 or pairs[0][1] != Path(args.output):
            raise InputError(args.output, "a .npz output takes exactly one audio file and no --shard; "
                             "give an output folder otherwise")
    if len(pairs) == 1 and pairs[0][1] == Path(args.output):  # one file to one named output
        check_output_path(args.output)
        e = encode_one(*pairs[0], recipe)
        if e["status"] != "ok":
            raise ValueError(e["error"])  # one line that names the file at fault, input or output
        if "warning" in e:
            print(f"spiketrum encode: warning: {e['path']}: {e['warning']}", file=sys.stderr)
        print(f"wrote {args.output}")
        return
    s = encode_corpus(pairs, args.output, recipe, jobs=args.jobs, shard=shard, progress=not args.quiet,
                      log=lambda m: tqdm.write(f"spiketrum encode: {m}", file=sys.stderr))
    minutes = s["wall_seconds"] / 60
    print(f"encoded {s['encoded']}, skipped {s['skipped']} already done, failed {len(s['failed'])} of {s['files']} files"
          + (f" ({s['audio_seconds'] / 3600:.3g} h of audio in {s['wall_seconds']:.1f} s: {s['encoded'] / minutes:.0f} "
             f"files/min, {s['audio_seconds'] / 3600 / minutes:.3g} audio h/min)" if s["encoded"] and minutes > 0 else ""))
    if s["failed"]:
        raise SystemExit(2)


def cmd_decode(args):
    check_output_path(args.output)
    fmt, subtype = audio_format(args.output)
    st = SpikeTrain.load(args.input)
    y = st.config.decode(st, exact=args.exact)
    peak = float(max(abs(y).max(), 1e-12)) if y.size else 1.0
    audio = io.BytesIO()  # written by Python, not libsndfile: a full disk is an OSError naming the output
    sf.write(audio, (y / peak if peak > 1 else y).astype("float32"), st.sr, subtype=subtype, format=fmt)
    with atomic_output(args.output) as tmp, open(tmp, "wb") as f:
        f.write(audio.getbuffer())
    print(f"wrote {args.output}: {st.duration:.3f} s at {st.sr} Hz from {len(st)} spikes")


def cmd_info(args):
    st = SpikeTrain.load(args.input)
    info = {"file": args.input, **metrics.report(st), "config": json.loads(st.config.to_json())}
    if "signal_energy" in st.meta and st.meta["residual_energy"] > 0:
        info["encoder_residual_snr_db"] = 10 * math.log10(st.meta["signal_energy"] / st.meta["residual_energy"])
    if args.source:
        x, _ = load_audio(args.source, sr=st.sr)
        if x.size != st.n_samples:
            raise ValueError(f"{args.source}: has {x.size} samples, the spike file encodes {st.n_samples}")
        info.update(metrics.report(st, x))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>24s}: {v:.4g}" if isinstance(v, float) else f"{k:>24s}: {v}")


def cmd_plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_output_path(args.output)
    st = SpikeTrain.load(args.input)
    x = None
    if args.source:
        x, _ = load_audio(args.source, sr=st.sr)
        if x.size != st.n_samples:
            raise ValueError(f"{args.source}: has {x.size} samples, the spike file encodes {st.n_samples}")
    fig = plot_spikegram(st, x, reconstruction=args.reconstruction, title=args.title)
    with atomic_output(args.output) as tmp:
        fig.savefig(tmp, dpi=args.dpi, format=args.output.rsplit(".", 1)[-1] if "." in args.output else "png")
    plt.close(fig)
    print(f"wrote {args.output}: {len(st)} spikes over {st.duration:.3f} s")


@contextlib.contextmanager
def _removed_if_left_empty(folder):
    """An output folder this command creates is removed again if the command fails before writing into it."""
    new, p = [], Path(folder).absolute()
    while not p.exists() and p != p.parent:
        new.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for d in new:  # deepest first; a folder with anything in it (a checkpoint to resume) stays
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _train_config(args, epochs=80, patience=30):
    """The flags' TrainConfig; ``epochs`` and ``patience`` are the defaults of what is trained."""
    from snn.trainer import TrainConfig

    given = {k: getattr(args, k) for k in ("ema", "label_smoothing") if getattr(args, k, None) is not None}
    return TrainConfig(epochs=args.epochs or epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       patience=patience if args.patience is None else args.patience, **given)


def cmd_train(args):
    from . import kws
    from snn.trainer import distributed

    if args.background or args.keywords:
        return _train_detector(args)

    # Which options combine is the library's to say (kws.train checks them all before encoding); here only
    # how flags map onto the library's options.
    model_kwargs = {}
    if args.hidden and args.model == "conv":  # the conv model has one fully connected hidden layer
        if len(args.hidden) != 1:
            raise ValueError("--model conv has one hidden layer: give one --hidden size")
        model_kwargs["hidden"] = args.hidden[0]
    elif args.hidden:
        model_kwargs["maps" if args.model == "srnn-scbam" else "hidden"] = tuple(args.hidden)
    if args.attention is not None:
        if args.model != "srnn-scbam":  # the flag's own rule, said in flags; the library checks model options too
            raise ValueError("--attention needs --model srnn-scbam")
        model_kwargs["attention"] = args.attention
    for flag, key, value in (("--neuron", "adaptive", None if args.neuron is None else args.neuron == "alif"),
                             ("--reset", "reset", args.reset)):
        if value is not None:
            if args.model not in ("srnn", "conv"):
                raise ValueError(f"{flag} needs --model srnn or conv")
            model_kwargs[key] = value
    if args.max_delay_ms is not None:
        if args.model != "delay":
            raise ValueError("--max-delay-ms needs --model delay")
        model_kwargs["max_delay_ms"] = args.max_delay_ms
    options = []
    if args.prune == "sca":
        from snn.pruning import SCA

        if args.keep is None or args.density is not None:
            raise ValueError("--prune sca takes --keep (the fraction of channels kept), not --density")
        options.append(SCA(args.keep, importance=args.importance, schedule=args.prune_schedule, every=args.prune_every,
                           swap=args.swap, seed=args.seed))
    elif args.prune:
        from snn.pruning import ESL

        if args.density is None or args.keep is not None:
            raise ValueError(f"--prune {args.prune} takes --density (the fraction of connections kept), not --keep")
        options.append(ESL(args.density, every=args.prune_every, drop=0.0 if args.prune == "static" else args.swap,
                           regrow=args.regrow, seed=args.seed))
    elif args.density is not None or args.keep is not None:
        raise ValueError("--density and --keep need --prune")
    if args.distill:
        from snn.distill import KD, LaSNN

        if not args.teacher:
            raise ValueError(f"--distill {args.distill} needs --teacher RUN_DIR, ann or virtual")
        method = LaSNN if args.distill == "lasnn" else KD
        kwargs = dict(temperature=args.kd_temperature, alpha=args.kd_alpha, feature_beta=args.kd_feature_beta,
                      online=args.kd_online or args.teacher == "ann")
        if args.distill == "lasnn":
            kwargs.update(beta=args.at_beta, schedule=args.distill_schedule)
        if args.teacher in ("ann", "virtual"):
            if args.teacher == "virtual" and args.kd_online:  # online without a teacher run means the ANN teacher
                raise ValueError("--teacher virtual is fixed: it cannot be trained online (--kd-online); use --teacher ann")
            options.append(method(None, **kwargs))
        else:
            options.append(kws.distiller(method, args.teacher, **kwargs))
    elif args.teacher:
        raise ValueError("--teacher needs --distill kd or lasnn")
    if args.mixup is not None:
        from snn.trainer import Mixup

        options.append(Mixup(args.mixup))
    split_lists = None
    if args.split_lists:
        split_lists = [None if p == "-" else p for p in args.split_lists]
    common = dict(model=args.model, encoder=args.encoder, rate=args.rate, dt_ms=args.dt_ms, augment=args.augment,
                  config=_train_config(args), model_kwargs=model_kwargs, cache_dir=args.cache, jobs=args.jobs,
                  options=options, noise_dir=args.noise_dir, progress=not args.quiet, force=args.force, tta=args.tta,
                  extra_train=tuple(args.extra_train or ()), emphasis=args.emphasis)
    if args.refit and args.split != "loso":
        raise ValueError("--refit trains every fold of --split loso again on its validation speaker too")
    if args.split == "loso":  # every fold, one after another
        if args.dataset != "fsdd" or args.resume:
            raise ValueError("--split loso (every fold) is for --dataset fsdd, and resumes by itself (no --resume)")
        with _removed_if_left_empty(args.output):
            m = kws.train_loso(args.data, args.output, refit=args.refit, **common)
        for name, key in (("leave one speaker out", ""),) + ((("refit on five speakers", "refit_"),) if args.refit else ()):
            print(f"{name}: mean {100 * m[key + 'mean_accuracy']:.2f} %, lowest {100 * m[key + 'min_accuracy']:.2f} % "
                  f"({m[key + 'worst_speaker']}); "
                  + ", ".join(f"{k} {100 * v[key + 'test_accuracy']:.1f}" for k, v in m["folds"].items()))
        print(f"wrote {args.output}/loso.json")
        return
    with _removed_if_left_empty(args.output), distributed() as rank:  # data-parallel under torchrun, else one process
        m = kws.train(args.dataset, args.data, args.output, split=args.split, resume=args.resume, group_by=args.group_by,
                      split_lists=split_lists, **common)
    if rank != 0:
        return
    skipped = len(m.get("skipped_files", []))
    print(f"test accuracy {100 * m['test_accuracy']:.2f} % on {m['n_test']} clips ({m['epochs_run']} epochs)"
          f"{_speaker_line(m)}; wrote {args.output}/model.pt, metrics.json, confusion.png"
          + (f"; skipped {skipped} unreadable file(s), listed in metrics.json" if skipped else ""))


def _train_detector(args):
    from datasets import locate

    from . import detect

    if not args.background:
        raise ValueError("--keywords trains a detector, which needs --background audio")
    if args.dataset != "folder":
        raise ValueError("a detector trains on --dataset folder (a folder per keyword class)")
    clip_only = [f for f, v in (("--prune", args.prune), ("--distill", args.distill), ("--resume", args.resume),
                                ("--augment", args.augment), ("--attention", args.attention), ("--mixup", args.mixup),
                                ("--tta", args.tta), ("--extra-train", args.extra_train),
                                ("--emphasis", args.emphasis)) if v]
    if clip_only or args.model != "srnn" or args.encoder != "spiketrum":
        raise ValueError(f"{(clip_only or ['--model/--encoder'])[0]} is not available for a detector (an srnn on the "
                         "causal spiketrum encoder)")
    fa = _one_or_per_keyword(args.target_fa_per_hour, "--target-fa-per-hour")
    config = _train_config(args, epochs=30, patience=10)
    m = detect.train(args.data, args.output, keywords=args.keywords.split(",") if args.keywords else None,
                     background=args.background, group_by=args.group_by, hidden=tuple(args.hidden or (256,)),
                     dt_ms=args.dt_ms, config=config, target_fa_per_hour=fa,
                     smooth_ms=detect.SMOOTH_MS if args.smooth_ms is None else args.smooth_ms,
                     refractory_ms=detect.REFRACTORY_MS if args.refractory_ms is None else args.refractory_ms,
                     noise_dir=args.noise_dir or locate("noise", args.data), cache_dir=args.cache, jobs=args.jobs,
                     progress=not args.quiet, force=args.force)
    cal = m["calibration"]
    print(f"detector for {', '.join(m['keywords'])}: {len(m['members'])} networks, validation accuracy "
          f"{100 * m['best_val_accuracy']:.1f} % (their mean); thresholds {', '.join(f'{k} {v:.3f}' for k, v in cal['thresholds'].items())} "
          f"set on {cal['hours']:.1f} h of validation streams, where they miss "
          f"{', '.join(f'{100 * v:.0f} %' for v in cal['miss_rate'].values())}; wrote {args.output}/model.pt, metrics.json")


def cmd_continual(args):
    from .continual import continual
    from snn.trainer import TrainConfig

    options = {"hidden": args.hidden, "spikes": args.spikes, "rule": args.rule, "hebb_lr": args.hebb_lr,
               "ewc_lambda": args.ewc_lambda, "xdg_fraction": args.xdg_fraction, "context_scale": args.context_scale,
               "context_init": args.context_init, "gate_bias": args.gate_bias}
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, patience=0)
    with _removed_if_left_empty(args.output):
        results = continual(args.dataset, args.data, args.output, tasks=args.tasks, methods=args.methods,
                            split=args.split, encoder=args.encoder, rate=args.rate, dt_ms=args.dt_ms, config=config,
                            cache_dir=args.cache, jobs=args.jobs, progress=not args.quiet, force=args.force, **options)
    for m, r in results.items():
        print(f"{m:9s} average accuracy {100 * r['average_accuracy']:5.1f} %  backward transfer "
              f"{100 * r['backward_transfer']:+5.1f}  task-selective neurons {100 * r['selective_fraction']:4.1f} %")
    print(f"wrote {args.output}/continual.json, continual.png")


def cmd_evaluate(args):
    from . import kws

    r = kws.evaluate(args.run_dir, args.dataset, args.data, split=args.split, noise_dir=args.noise_dir, cache_dir=args.cache,
                     progress=not args.json, class_map=_class_map(args.class_map), group_by=args.group_by, tta=args.tta)
    for c in r["unknown_classes"]:
        print(f"spiketrum evaluate: warning: {args.data}: class folder {c!r} is not a class of this model; skipped",
              file=sys.stderr)
    speakers = {k: r[k] for k in ("per_speaker", "unseen_speakers", "unseen_speaker_accuracy", "n_unseen",
                                  "seen_speaker_accuracy", "validation_speakers") if k in r}
    if args.json:
        print(json.dumps({"accuracy": r["accuracy"], "n": r["n"], "tta": r.get("tta", "none"),
                          "single_view_accuracy": r.get("single_view_accuracy", r["accuracy"]),
                          "skipped_files": r["skipped_files"], **speakers, "energy": r["energy"]}))
    else:
        e = r["energy"]
        views = r.get("tta", "none")
        print(f"accuracy {100 * r['accuracy']:.2f} % on {r['n']} clips"
              + (f" (test-time views {views}; the clip alone {100 * r['single_view_accuracy']:.2f} %)"
                 if views != "none" else "")
              + (f" ({len(r['skipped_files'])} unreadable file(s) skipped)" if r["skipped_files"] else "")
              + _speaker_line({"per_speaker": None, **speakers}))
        for spk, row in speakers.get("per_speaker", {}).items():
            print(f"  speaker {spk}: {100 * row['accuracy']:.2f} % of {row['n']}")
        print(f"energy per clip {e['uj']:.4g} µJ: {e['synops']:.4g} SynOps x {e['pj_per_ac']:g} pJ + {e['macs']:.4g} MACs "
              f"x {e['pj_per_mac']:g} pJ; neuron-state updates {e['state_updates']:.4g} ({e['state_uj']:.4g} µJ) not "
              f"included ({e['uj_with_state']:.4g} µJ with them); {e['convention']}")


def _class_map(text):
    """``FOLDER=CLASS,...`` as a dict (None for None); ValueError naming a malformed pair."""
    if text is None:
        return None
    pairs = [p for p in text.split(",") if p]
    bad = [p for p in pairs if p.count("=") != 1 or not all(p.split("="))]
    if bad or not pairs:
        raise ValueError(f"--class-map: {bad[0] if bad else text!r} is not FOLDER=CLASS (e.g. zero=0,one=1)")
    return dict(p.split("=") for p in pairs)


def _levels(kind, lo=None, hi=None):
    """argparse type: a comma-separated list of numbers (or 'none' for an empty list)."""
    def parse(text):
        if text.strip().lower() in ("", "none"):
            return ()
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        bad = [v for v in values if v != v or abs(v) == float("inf") or (lo is not None and v < lo) or (hi is not None and v > hi)]
        if bad:
            raise argparse.ArgumentTypeError(f"{kind} levels must be finite{f' and >= {lo:g}' if lo is not None else ''}"
                                             f"{f' and <= {hi:g}' if hi is not None else ''}, got {bad[0]:g}")
        return values
    return parse


def cmd_robustness(args):
    from . import robustness as rb

    # a missing or foreign model, a bad split or finished results fail here, before any warning or output
    rb.check_inputs([args.run_dir, *args.compare], args.dataset, args.split, args.output, args.force)
    levels = rb.default_levels(args.data, args.noise_dir, deletion=args.deletion, jitter=args.jitter_ms,
                               insertion=args.insertion, noise=args.noise_snr)
    if not levels:
        raise ValueError("nothing to measure: every perturbation list is empty")
    config = rb.RobustnessConfig(dataset=args.dataset, split=args.split, levels=levels, seeds=args.seeds,
                                 recon_clips=args.recon_clips)
    with _removed_if_left_empty(args.output):
        out = rb.measure([args.run_dir, *args.compare], args.data, config, args.output, noise_dir=args.noise_dir,
                         cache_dir=args.cache, jobs=args.jobs, progress=not args.quiet, force=args.force)
    snr = args.recon_clips > 0  # without decoded clips there is no reconstruction SNR to show
    for r in [out, *out.get("compare", [])]:
        print(f"{rb.run_label(r)}: clean accuracy {100 * r['clean_accuracy']:.2f} %"
              + (f", reconstruction SNR {r['clean_recon_snr_db']:.1f} dB" if snr else ""))
        for kind, _ in levels:
            cells = ", ".join(f"{row['level']:g}: {100 * row['accuracy']:.1f}±{100 * row['accuracy_std']:.1f} %"
                              + (f" / {row['recon_snr_db']:.1f} dB" if snr else "") for row in r[kind])
            print(f"  {kind:9s} {cells}")
    print(f"wrote {args.output}/robustness.json, robustness.png")


def cmd_prune_export(args):
    from . import kws

    report = kws.prune_export(args.run_dir, args.output, force=args.force)
    r = report
    print(f"wrote {args.output}/model.pt: channels {r['channels']} -> {r['kept_channels']}, "
          f"{r['parameters']} -> {r['parameters_compact']} parameters, CPU latency {r['cpu_latency_ms']:.2f} -> "
          f"{r['cpu_latency_ms_compact']:.2f} ms per clip ({r['cpu_ms_per_clip_batch32']:.3f} -> "
          f"{r['cpu_ms_per_clip_batch32_compact']:.3f} ms per clip in batches of 32), outputs equal to "
          f"{r['max_abs_logit_difference']:.1e}")


def cmd_ensemble(args):
    from . import kws

    r = kws.ensemble(args.runs, args.output, force=args.force)
    print(f"wrote {args.output}/model.pt: {len(r['members'])} networks whose class probabilities are averaged")


def cmd_export(args):
    from . import export

    r = export.export(args.run_dir, args.output, int8=args.int8, force=args.force)
    check = (f"int8 weights (layer scales {', '.join(f'{s:.3g}' for s in r['scales'])}); score it with import-nir and "
             "evaluate" if r["int8"] else f"read back: readout equal to {r['max_abs_readout_difference']:.1e} on random spikes")
    print(f"wrote {r['graph']}: {r['model']} at {r['dt_ms']:g} ms, {len(r['nodes'])} NIR nodes; {check}")


def cmd_import_nir(args):
    from . import export

    classes = None if args.classes is None else [c for c in args.classes.split(",") if c]
    r = export.import_graph(args.graph, args.output, dt_ms=args.dt_ms, classes=classes, like=args.like,
                            sidecar=args.sidecar, readout=args.readout, force=args.force)
    print(f"wrote {args.output}/model.pt: {r['model']} {r['model_kwargs']} at {r['dt_ms']:g} ms, "
          f"{len(r['classes'])} classes, {r['parameters']} parameters")


def cmd_to_shd(args):
    from . import kws

    with _removed_if_left_empty(args.output):
        r = kws.write_shd(args.dataset, args.data, args.output, split=args.split, encoder=args.encoder, rate=args.rate,
                          cache_dir=args.cache, jobs=args.jobs, noise_dir=args.noise_dir, seed=args.seed,
                          progress=not args.quiet, force=args.force)
    print("wrote " + ", ".join(f"{f} ({r['clips'][p]} clips)" for p, f in r["files"].items())
          + (f"; skipped {len(r['skipped_files'])} unreadable file(s)" if r["skipped_files"] else ""))


def _speaker_line(m):
    """The unseen-speaker figure of a run's or evaluation's metrics, in words ('' where speakers are not known)."""
    if not m.get("per_speaker"):
        return ""
    if m.get("unseen_speaker_accuracy") is None:
        return "; every test speaker is in the training file"
    return (f"; on the {len(m['unseen_speakers'])} test speaker(s) unseen in training ({', '.join(m['unseen_speakers'])}): "
            f"{100 * m['unseen_speaker_accuracy']:.2f} % of {m['n_unseen']} clips")


def cmd_predict(args):
    """Each result as it comes; one error line per file that fails, and exit code 2 at the end if any did."""
    from . import kws

    failed = 0
    for p in kws.iter_predict(args.run_dir, args.input):
        if p.error:
            failed += 1
            print(f"spiketrum predict: error: {p.error}", file=sys.stderr, flush=True)
        else:
            print(f"{p.file}\t{p.keyword}\t{p.confidence:.3f}", flush=True)
    return 2 if failed else 0


def cmd_detect(args):
    """One line (or JSON object) per detection as it is made; one error line per input that fails, exit 2 at the end."""
    from . import detect

    failed = 0
    thresholds = _one_or_per_keyword(args.threshold, "--threshold")
    for name, e in detect.detect_inputs(args.run_dir, args.input, sr=args.sr, thresholds=thresholds,
                                        smooth_ms=args.smooth_ms, refractory_ms=args.refractory_ms):
        if isinstance(e, str):
            failed += 1
            print(f"spiketrum detect: error: {e}", file=sys.stderr, flush=True)
        elif args.json:
            print(json.dumps({"file": name, "keyword": e.keyword, "time": round(e.time, 3), "score": round(e.score, 4)}),
                  flush=True)
        else:
            print(f"{name}\t{e.keyword}\t{e.time:.2f} s\t{e.score:.3f}", flush=True)
    return 2 if failed else 0


def cmd_detect_eval(args):
    from datasets import locate

    from . import detect

    noise = args.noise_dir or locate("noise", args.data)
    r = detect.detect_eval(args.run_dir, args.data, args.background, args.output, noise, args.hours, args.placements,
                           args.snr, args.group_by, args.seed, progress=not args.quiet, force=args.force)
    print(f"{r['negative_hours']:.2f} h of streams without keywords ({r['unique_background_minutes']:.0f} unique minutes), "
          f"{r['keyword_instances']} keywords at {r['snr_db']:g} dB; real-time factor {r['real_time_factor']:.0f}x")
    for kw, row in r["keywords"].items():
        at = ", ".join(f"{100 * m:.1f} % at {x}" for x, m in row["miss_rate_at"].items())
        print(f"{kw}: miss rate {at} false alarms/h")
    print(f"wrote {args.output}/detect.json, det.png")


def _one_or_per_keyword(items, flag):
    """A flag's values as one number (``["0.5"]``), a ``{keyword: number}`` dict (``["a=0.5", "b=0.7"]``), or None."""
    if items is None:
        return None
    out = {}
    for item in items:
        k, sep, v = item.rpartition("=")
        try:
            value = float(v)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (sep and not k):
            raise ValueError(f"{flag}: expected a number >= 0 or KEYWORD=NUMBER pairs, got {item!r}")
        if not sep:
            if len(items) > 1:
                raise ValueError(f"{flag}: give one number, or KEYWORD=NUMBER for every value")
            return value
        out[k] = value
    return out


def build_parser():
    p = _Parser(
        prog="spiketrum",
        description="Cochlea-like audio-to-spike encoding (spiketrum) and spiking neural networks.",
    )
    p.add_argument("--version", action="version", version=f"spiketrum {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("cochleagram", help="plot the gammatone cochleagram of an audio file")
    c.add_argument("input", help="audio file (wav, flac, ...)")
    c.add_argument("-o", "--output", required=True, help="image to write (.png, .pdf, .svg)")
    c.add_argument("--channels", type=_positive_int, default=64, help="number of ERB-spaced channels (default 64)")
    c.add_argument("--fmin", type=_positive_float, default=50.0, help="lowest centre frequency in Hz (default 50)")
    c.add_argument("--fmax", type=_positive_float, default=None, help="highest centre frequency in Hz (default 0.45 sr)")
    c.add_argument("--frame-ms", type=_positive_float, default=25.0, help="frame length in ms (default 25)")
    c.add_argument("--hop-ms", type=_positive_float, default=10.0, help="frame hop in ms (default 10)")
    c.add_argument("--dpi", type=_positive_int, default=120)
    c.set_defaults(func=cmd_cochleagram)

    e = sub.add_parser("encode", help="encode audio files or folders into spike files (.npz)")
    e.add_argument("input", nargs="+", help="audio files or folders (walked recursively)")
    e.add_argument("-o", "--output", required=True, help="output folder (mirrors input folders), or a .npz for one file")
    rule = e.add_mutually_exclusive_group()
    rule.add_argument("--spikes", type=_positive_int, help="total number of spikes")
    rule.add_argument("--snr", type=float, help="stop at this residual SNR in dB")
    e.add_argument("--rate", type=_positive_float, help="spikes per second (default 1000); per frame with --frame-ms")
    e.add_argument("--frame-ms", type=_positive_float, help="frame length for per-frame spike budgets of --rate (default rate 1000)")
    e.add_argument("--kernels", type=_positive_int, default=40, help="gammatone kernels (default 40)")
    e.add_argument("--levels", type=_positive_int, help="intensity levels per kernel (spiketrum; default 3)")
    e.add_argument("--fmin", type=_positive_float, default=50.0, help="lowest kernel centre frequency, Hz (default 50)")
    e.add_argument("--fmax", type=_positive_float, default=None, help="highest kernel centre frequency, Hz (default min(8000, 0.45 sr))")
    e.add_argument("--sr", type=_positive_int, default=None, help="resample to this rate first (default: keep the file's rate)")
    e.add_argument("--mode", choices=["fast", "exact"],
                   help="spiketrum: fast (default; within 0.1 dB of exact on speech) or exact matching pursuit")
    e.add_argument("--method", choices=audio_encoders(), default="spiketrum",
                   help="encoder (default spiketrum); the baselines use --kernels cochlear channels")
    e.add_argument("--jobs", type=_positive_int, default=1, help="worker processes (default 1)")
    e.add_argument("--shard", type=_shard, metavar="K/N", help="encode only shard K of N (1 <= K <= N), e.g. one Slurm array task "
                   "each; shards are chosen by a hash of each output path and keep their own manifest")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="reconstruct audio from a spike file")
    d.add_argument("input", help="spike file (.npz)")
    d.add_argument("-o", "--output", required=True, help="audio file to write, in the format its extension names "
                   "(.wav as 32-bit float, .flac, .ogg, .mp3, ...)")
    d.add_argument("--exact", action="store_true", help="use exact amplitudes (code set), not level representatives")
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="describe a spike file")
    i.add_argument("input", help="spike file (.npz)")
    i.add_argument("--source", help="the source audio, to report reconstruction SNR")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    pl = sub.add_parser("plot", help="draw a spike file as a spikegram over its waveform")
    pl.add_argument("input", help="spike file (.npz)")
    pl.add_argument("-o", "--output", required=True, help="image to write (.png, .pdf, .svg)")
    pl.add_argument("--source", help="the source audio, drawn above the raster")
    pl.add_argument("--reconstruction", action="store_true", help="also draw the audio decoded from the spikes")
    pl.add_argument("--title", help="figure title")
    pl.add_argument("--dpi", type=_positive_int, default=120)
    pl.set_defaults(func=cmd_plot)

    audio_datasets = ["fsdd", "speech-commands", "folder"]
    datasets = audio_datasets + ["shd", "ssc", "spikes"]
    spike_help = ("; shd, ssc: the Spiking Heidelberg Digits / Speech Commands files (<name>_train.h5, _test.h5, ssc: "
                  "_valid.h5; or .h5.gz) in --data, binned at --dt-ms; spikes: the one SHD-layout corpus in --data (e.g. "
                  "written by to-shd), with its own _valid.h5 or, like shd, validation speakers held out of training")
    t = sub.add_parser("train", help="train a keyword-spotting SNN on spike-encoded audio or a spike dataset",
                       epilog="Data-parallel on N processes (gloo on the CPU, nccl with one GPU each): "
                              "torchrun --standalone --nproc_per_node N -m spiketrum.app train ...; "
                              "--batch-size is then the global batch, split evenly between them.")
    t.add_argument("--dataset", choices=datasets, required=True, help="the corpus" + spike_help.replace("%", "%%"))
    t.add_argument("--data", required=True, help="data root: the FSDD root (holding fsdd/recordings), a Speech Commands "
                   "folder, a folder per class, or a folder of SHD-layout .h5 files (shd, ssc, spikes)")
    t.add_argument("-o", "--output", required=True, help="run folder to write (model.pt, metrics.json, confusion.png)")
    t.add_argument("--split", default="official", help="fsdd: official, loso:<speaker> or loso (every speaker in turn, "
                   "into RUN/fold-<speaker>/, and RUN/loso.json); speech-commands and folder: "
                   "official (folder: 10 %% validation and 10 %% test by a hash of each file name) (default official)")
    t.add_argument("--model", choices=["srnn", "conv", "srnn-scbam", "ann", "seadlif", "delay"], default="srnn",
                   help="srnn (default), conv (ConvSNN), srnn-scbam (spiking ConvLSTM with attention on its forget "
                        "gate), ann (a non-spiking GRU teacher on the same input), seadlif (recurrent SE-adLIF "
                        "neurons, Baronig et al. 2025) or delay (feed-forward LIF layers with learnt synaptic delays, "
                        "DCLS-Delays)")
    t.add_argument("--max-delay-ms", type=_positive_float, help="delay: longest synaptic delay in ms (default 250)")
    t.add_argument("--hidden", type=_positive_int, nargs="+", help="hidden layer sizes (srnn-scbam: state maps per layer)")
    t.add_argument("--attention", choices=["cbam", "channel", "spatial", "temporal", "none"],
                   help="srnn-scbam: forget-gate attention (default cbam), one of its two gates, the temporal (TA) "
                        "comparator, or none")
    t.add_argument("--neuron", choices=["alif", "lif"], help="srnn, conv: adaptive-threshold (alif; the srnn's default) "
                   "or plain LIF neurons (conv's default); `spiketrum export` (NIR) needs lif")
    t.add_argument("--reset", choices=["subtract", "zero"], help="srnn, conv: at a spike, subtract the threshold "
                   "(default) or reset the membrane to 0; `spiketrum export` (NIR) needs zero")
    t.add_argument("--encoder", choices=audio_encoders(), default="spiketrum")
    t.add_argument("--rate", type=_positive_float, default=1000.0, help="spikes per second (default 1000)")
    t.add_argument("--emphasis", type=_finite_float, default=0.0, metavar="DB",
                   help="spiketrum: tilt the kernels' selection gains by DB per octave (0 dB at 1 kHz), a pre-emphasis "
                   "that moves spikes from the vowels' low harmonics to the consonants (default 0)")
    t.add_argument("--dt-ms", type=_positive_float, default=10.0, help="time bin of the spike tensor in ms (default 10)")
    t.add_argument("--augment", metavar="SPEC",
                   help="training augmentation, key:value,... with keys deletion, jitter (ms), insertion (spikes/s per "
                        "channel), stretch, shift (kernels), mask (kernels), delay (ms), noise (dB), speed (audio speed factor "
                        "range), tilt (dB per octave), warp (vocal-tract-length factor range), copies (perturbed "
                        "encodings per clip); 'none' for none "
                        f"(default: {DEFAULT_AUGMENT}; noise only where a noise folder is found; spike datasets: none, "
                        "the only choice)")
    t.add_argument("--refit", action="store_true",
                   help="--split loso: train each fold again, into RUN/refit-<speaker>/, on its validation speaker too, "
                        "for the epoch count that speaker chose (about twice the time); loso.json gives both")
    t.add_argument("--tta", metavar="SPEC",
                   help="test-time views whose class probabilities the model averages, stored with it for evaluate "
                        "and predict: warp (kernel warps 1 +- 0.05 k up to it; spiketrum) and tilt (+- dB per octave); "
                        f"'none' for the clip alone (default: {DEFAULT_TTA}, the warps only for spiketrum)")
    t.add_argument("--prune", choices=["esl", "static", "sca"],
                   help="esl: sparse training at --density, evolving the topology (magnitude prune + regrowth every "
                        "--prune-every steps); static: a fixed random ERK mask at --density; sca: structured pruning of "
                        "the conv channels down to --keep, with regrowth (--model conv)")
    t.add_argument("--density", type=_fraction, help="fraction of connections kept, in (0, 1] (esl, static)")
    t.add_argument("--keep", type=_fraction, help="fraction of each conv layer's channels kept at the end (sca)")
    t.add_argument("--prune-every", type=_positive_int, help="steps between structure updates (default: one epoch)")
    t.add_argument("--swap", type=_unit, default=0.3,
                   help="fraction of the kept channels (sca) or connections (esl) pruned and regrown at the first "
                        "update, decayed to 0 by a cosine; 0: prune only, no regrowth (default 0.3)")
    t.add_argument("--regrow", choices=["gradient", "random"], default="gradient",
                   help="where esl regrows connections: where the gradient is largest (RigL, the default) or at random (SET)")
    t.add_argument("--importance", choices=["taylor", "membrane", "rate", "random"], default="taylor",
                   help="sca channel score: taylor (default: |sum dL/dz * z| of the input current), membrane (the "
                        "paper's mean |membrane potential|), rate, or random (the random baseline)")
    t.add_argument("--prune-schedule", choices=["cubic", "oneshot"], default="cubic",
                   help="sca: gradual cubic schedule with regrowth, or one-shot pruning at half of training")
    t.add_argument("--distill", choices=["kd", "lasnn"], help="knowledge distillation from --teacher: kd (Hinton KD on "
                   "the time-averaged logits) or lasnn (kd plus layer-wise attention transfer)")
    t.add_argument("--teacher", metavar="RUN_DIR", help="a trained run on the same input (e.g. --model ann; a weaker "
                   "model for reverse KD), ann (a GRU teacher trained jointly from scratch, online) or virtual (the "
                   "teacher-free virtual teacher: 0.9 on the true class)")
    t.add_argument("--kd-feature-beta", type=float, default=0.0,
                   help="weight of feature KD: student stage rates -> linear adapter -> teacher stage features (default 0)")
    t.add_argument("--kd-online", action="store_true", help="keep training the --teacher run jointly (online KD)")
    t.add_argument("--kd-temperature", type=_positive_float, help="KD temperature (default 4; 1 for the virtual teacher)")
    t.add_argument("--kd-alpha", type=_fraction, default=0.5, help="weight of the KD term (default 0.5)")
    t.add_argument("--at-beta", type=_positive_float, default=100.0, help="lasnn: weight of attention transfer (default 100)")
    t.add_argument("--distill-schedule", choices=["layerwise", "single"], default="layerwise",
                   help="lasnn: one layer after another for the first quarter of training, then all (default), or all throughout")
    t.add_argument("--epochs", type=_positive_int, help="default 80 (a detector: 30)")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="clips per step, over all processes (default 32)")
    t.add_argument("--lr", type=_positive_float, default=2e-3)
    t.add_argument("--patience", type=int, help="early stopping: epochs without a better validation accuracy "
                   "(default 30, a detector 10; 0 never stops early)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ema", type=float, metavar="DECAY", help="decay per step of the moving average of the weights that "
                   "validation scores and the run keeps (0: off, the default)")
    t.add_argument("--label-smoothing", type=float, help="label smoothing of the cross-entropy (default 0)")
    t.add_argument("--mixup", type=_positive_float, metavar="ALPHA", help="mix every batch with itself in a random "
                   "order, the weight drawn from Beta(ALPHA, ALPHA) (Zhang et al. 2018; default: off)")
    t.add_argument("--jobs", type=_positive_int, default=1, help="processes encoding the corpus")
    t.add_argument("--cache", help="encoding cache folder (default: cache/ beside the run folder)")
    t.add_argument("--noise-dir", help="background noise for Speech Commands silence, --augment noise and a detector's "
                   "validation streams (default: found beside the data)")
    t.add_argument("--keywords", help="a detector (needs --background): the class folders, comma-separated, it "
                   "detects in streams (default: every class); the others are non-keywords")
    t.add_argument("--background", nargs="+", metavar="DIR", help="train a streaming keyword detector (--dataset folder): "
                   "audio of anything but the keywords, any length; 70 %% trains, 10 %% sets the threshold, 20 %% is "
                   "left for detect-eval")
    t.add_argument("--group-by", metavar="REGEX", help="the first group of this regex in a file's name is its speaker: "
                   "a folder dataset's split keeps every speaker on one side (e.g. '^([0-9a-f]{8})_nohash' for Speech "
                   "Commands, '^\\d_([a-z]+)_' for FSDD), and so does a detector's short background files")
    t.add_argument("--split-lists", nargs=3, metavar=("TRAIN", "VAL", "TEST"), help="folder: the split from three "
                   "lists of paths relative to the folder (TRAIN '-': every file in neither other list), e.g. Speech "
                   "Commands' - validation_list.txt testing_list.txt")
    t.add_argument("--extra-train", nargs="+", metavar="DIR", help="more training clips: folders of class folders "
                   "named as the dataset's classes, added to the training part only (never validation or test), e.g. "
                   "synthetic voices (benchmarks/synthetic_voices.py)")
    t.add_argument("--target-fa-per-hour", nargs="+", default=["1"], metavar="F",
                   help="detector: false alarms per hour its thresholds are set for, one number or KEYWORD=F pairs (default 1)")
    t.add_argument("--smooth-ms", type=_number(float, lambda v: 0 <= v < math.inf, "a number of ms >= 0"),
                   help="detector: moving average of its scores (default 50)")
    t.add_argument("--refractory-ms", type=_number(float, lambda v: 0 <= v < math.inf, "a number of ms >= 0"),
                   help="detector: least time between two detections of one keyword (default 1000)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    t.add_argument("--force", action="store_true", help="replace a finished (or unfinished) run in the output folder")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    cl = sub.add_parser("continual", help="learn keyword tasks one after another: context gating (CG-SNN) against "
                        "fine-tuning, joint training, EWC and XdG")
    cl.add_argument("--dataset", choices=datasets, required=True, help="the corpus" + spike_help.replace("%", "%%"))
    cl.add_argument("--data", required=True)
    cl.add_argument("-o", "--output", required=True, help="folder for continual.json, continual.png and one JSON per method")
    cl.add_argument("--tasks", default="pairs", help="pairs (class pairs: FSDD {0,1}, {2,3}, ...), rules (parity, then "
                    "magnitude of the digits) or groups such as 0,1/2,3/4,5 (default pairs)")
    methods = ["cg", "finetune", "joint", "ewc", "xdg"]
    cl.add_argument("--methods", nargs="+", choices=methods, default=methods)
    cl.add_argument("--rule", choices=["oja", "gha", "stdp"], default="oja", help="cg local rule (default oja)")
    cl.add_argument("--hebb-lr", type=_positive_float,
                    help="cg local learning rate (default: 0.5 for oja, 0.02 for gha, 0.005 for stdp)")
    cl.add_argument("--spikes", choices=["multi", "single"], default="multi",
                    help="multi-spike neurons, or single: each hidden neuron passes on only its first spike")
    cl.add_argument("--context-scale", type=_positive_float, default=4.0,
                    help="cg: scale of the centred task signal (default 4)")
    cl.add_argument("--context-init", type=_positive_float, default=1.0,
                    help="cg: standard deviation of the initial task-unit weights (default 1)")
    cl.add_argument("--gate-bias", type=float, default=-3.0,
                    help="cg: offset inside the gate sigmoid; below 0 most gates start closed (default -3)")
    cl.add_argument("--ewc-lambda", type=_positive_float, default=1000.0, help="ewc penalty weight (default 1000)")
    cl.add_argument("--xdg-fraction", type=_unit, default=0.8, help="xdg: fraction of hidden units gated off per task, "
                    "in [0, 1) (default 0.8)")
    cl.add_argument("--hidden", type=_positive_int, default=128, help="hidden neurons (default 128)")
    cl.add_argument("--split", default="official", help="as for train (default official)")
    cl.add_argument("--force", action="store_true", help="replace finished results made with other settings")
    cl.add_argument("--encoder", choices=audio_encoders(), default="spiketrum")
    cl.add_argument("--rate", type=_positive_float, default=1000.0)
    cl.add_argument("--dt-ms", type=_positive_float, default=10.0)
    cl.add_argument("--epochs", type=_positive_int, default=10, help="epochs per task (joint: over all tasks' data)")
    cl.add_argument("--batch-size", type=_positive_int, default=32)
    cl.add_argument("--lr", type=_positive_float, default=2e-3)
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--jobs", type=_positive_int, default=1)
    cl.add_argument("--cache", help="encoding cache folder (default: cache/ in the output folder)")
    cl.add_argument("-q", "--quiet", action="store_true")
    cl.set_defaults(func=cmd_continual)

    ev = sub.add_parser("evaluate", help="accuracy and energy per clip of a trained run on a dataset split")
    ev.add_argument("run_dir")
    ev.add_argument("--dataset", choices=datasets, required=True)
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="test", help="train, val or test (a folder: the parts training made of it), "
                    "all (a folder: every file), or loso:<speaker>[:part] (fsdd) (default test); a spike dataset "
                    "also reports per-speaker accuracy and that on test speakers absent from its training file")
    ev.add_argument("--noise-dir")
    ev.add_argument("--class-map", metavar="FOLDER=CLASS,...", help="folder: rename class folders to the model's "
                    "classes, e.g. zero=0,one=1,... to score an FSDD model on Speech Commands' digit words "
                    "(with --split all; other folders are skipped)")
    ev.add_argument("--group-by", metavar="REGEX", help="folder, --split all: the first capture group of each file "
                    "name is its speaker, for per-speaker accuracy on another corpus (e.g. '^([0-9a-f]{8})_nohash')")
    ev.add_argument("--tta", metavar="SPEC", help="test-time views instead of the run's own (see train --tta); "
                    "'none' for the clip alone")
    ev.add_argument("--cache")
    ev.add_argument("--json", action="store_true", help='print {"accuracy": ..., "n": ..., "energy": {...}}')
    ev.set_defaults(func=cmd_evaluate)

    rb = sub.add_parser("robustness", help="accuracy and reconstruction SNR of a trained run under spike loss, "
                        "jitter, spurious spikes and background noise")
    rb.add_argument("run_dir")
    rb.add_argument("--dataset", choices=audio_datasets, required=True)
    rb.add_argument("--data", required=True)
    rb.add_argument("-o", "--output", required=True, help="folder for robustness.json and robustness.png")
    rb.add_argument("--split", default="test", help="as for evaluate (default test)")
    rb.add_argument("--deletion", type=_levels("deletion", 0, 1), help="deletion probabilities (default 0,0.1,...,0.9)")
    rb.add_argument("--jitter-ms", type=_levels("jitter", 0), help="jitter sigmas in ms (default 0,0.5,1,2,5,10)")
    rb.add_argument("--insertion", type=_levels("insertion", 0),
                    help="spurious spikes per second per channel (default 0,0.5,1,2,5,10)")
    rb.add_argument("--noise-snr", type=_levels("noise"), help="background-noise SNRs in dB (default 20,10,5,0)")
    rb.add_argument("--noise-dir", help="background-noise folder (default: found beside the data)")
    rb.add_argument("--seeds", type=_positive_int, default=3, help="perturbation seeds per point (default 3)")
    rb.add_argument("--recon-clips", type=int, default=100, help="clips decoded for the reconstruction SNR (default 100)")
    rb.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR", help="more runs, measured alike and overlaid")
    rb.add_argument("--jobs", type=_positive_int, default=1, help="processes encoding the noisy audio")
    rb.add_argument("--cache", help="encoding cache folder (default: cache/ beside the run folder)")
    rb.add_argument("--force", action="store_true", help="replace finished results in the output folder")
    rb.add_argument("-q", "--quiet", action="store_true")
    rb.set_defaults(func=cmd_robustness)

    pe = sub.add_parser("prune-export", help="remove the pruned channels of a --prune sca run physically")
    pe.add_argument("run_dir")
    pe.add_argument("-o", "--output", required=True, help="run folder to write (model.pt, export.json); never the source")
    pe.add_argument("--force", action="store_true", help="replace a model already in the output folder")
    pe.set_defaults(func=cmd_prune_export)

    en = sub.add_parser("ensemble", help="join trained srnn runs (e.g. other seeds of one recipe) into one run whose "
                        "model averages their class probabilities")
    en.add_argument("runs", nargs="+", help="two or more run folders with the same input, model options and views")
    en.add_argument("-o", "--output", required=True, help="run folder to write (model.pt, ensemble.json)")
    en.add_argument("--force", action="store_true", help="replace a model already in the output folder")
    en.set_defaults(func=cmd_ensemble)

    ex = sub.add_parser("export", help="a trained run as a NIR graph (Neuromorphic Intermediate Representation) for "
                        "other simulators and chips; srnn and conv models trained with --neuron lif --reset zero")
    ex.add_argument("run_dir")
    ex.add_argument("-o", "--output", required=True, help="graph file to write (e.g. model.nir)")
    ex.add_argument("--int8", action="store_true", help="integer weights in [-127, 127] per layer, biases on the same "
                    "scale and thresholds divided by it")
    ex.add_argument("--force", action="store_true", help="replace an existing output file")
    ex.set_defaults(func=cmd_export)

    im = sub.add_parser("import-nir", help="a run folder from a NIR graph, for evaluate, predict and robustness")
    im.add_argument("graph", help="NIR file (.nir)")
    im.add_argument("-o", "--output", required=True, help="run folder to write (model.pt, import.json)")
    im.add_argument("--like", metavar="RUN_DIR", help="take the encoder, time bin and classes from this run")
    im.add_argument("--sidecar", metavar="JSON", help="a JSON object with dt_ms, classes, encoder (and readout)")
    im.add_argument("--dt-ms", type=_positive_float, help="the time step the graph runs at, in ms")
    im.add_argument("--classes", help="class names in output order, comma-separated")
    im.add_argument("--readout", choices=["mean", "max"], help="reduction over time of an LI readout (default mean)")
    im.add_argument("--force", action="store_true", help="replace a model already in the output folder")
    im.set_defaults(func=cmd_import_nir)

    ts = sub.add_parser("to-shd", help="write a corpus's train/valid/test spike encodings as SHD-layout HDF5 files "
                        "(<dataset>_train.h5, _valid.h5, _test.h5), trainable with train --dataset spikes")
    ts.add_argument("--dataset", choices=audio_datasets, required=True)
    ts.add_argument("--data", required=True, help="as for train")
    ts.add_argument("-o", "--output", required=True, help="folder for the .h5 files")
    ts.add_argument("--split", default="official", help="as for train (default official)")
    ts.add_argument("--encoder", choices=audio_encoders(), default="spiketrum", help="as for train: the training encoder")
    ts.add_argument("--rate", type=_positive_float, default=1000.0, help="spikes per second (default 1000)")
    ts.add_argument("--seed", type=int, default=0, help="as for train: chooses FSDD's validation takes (default 0)")
    ts.add_argument("--jobs", type=_positive_int, default=1, help="processes encoding the corpus")
    ts.add_argument("--cache", help="encoding cache folder, shared with train (default: cache/ in the output folder)")
    ts.add_argument("--noise-dir", help="Speech Commands: background noise its silence class is cut from")
    ts.add_argument("--force", action="store_true", help="replace the corpus files already in the output folder")
    ts.add_argument("-q", "--quiet", action="store_true")
    ts.set_defaults(func=cmd_to_shd)

    pr = sub.add_parser("predict", help="keyword and confidence for audio files")
    pr.add_argument("run_dir")
    pr.add_argument("input", nargs="+", help="audio files")
    pr.set_defaults(func=cmd_predict)

    dd = sub.add_parser("detect", help="keywords in audio streams: one line per detection, as it is made")
    dd.add_argument("run_dir", help="a detector run (train with --background)")
    dd.add_argument("input", nargs="+", help="audio files, or - for raw 16-bit mono PCM on stdin (at --sr)")
    dd.add_argument("--threshold", nargs="+", metavar="T", help="score from 0 to 1 that fires, one for all keywords or "
                    "KEYWORD=T pairs (default: the run's, calibrated to its false alarms per hour); 0 lists every "
                    "candidate peak")
    dd.add_argument("--json", action="store_true", help="JSON Lines: {file, keyword, time (s), score}")
    dd.add_argument("--sr", type=_positive_int, help="sample rate of stdin's PCM (default: the model's)")
    dd.add_argument("--smooth-ms", type=_number(float, lambda v: 0 <= v < math.inf, "a number of ms >= 0"),
                    help="moving average of the scores (default: the run's)")
    dd.add_argument("--refractory-ms", type=_number(float, lambda v: 0 <= v < math.inf, "a number of ms >= 0"),
                    help="least time between two detections of one keyword (default: the run's)")
    dd.set_defaults(func=cmd_detect)

    de = sub.add_parser("detect-eval", help="misses per false alarm per hour of a detector on long test streams")
    de.add_argument("run_dir", help="a detector run")
    de.add_argument("--data", required=True, help="the keyword folder the detector was trained on (its held-out 20 %% "
                    "is placed into the streams)")
    de.add_argument("--background", nargs="+", required=True, help="background audio (its test part is used)")
    de.add_argument("--group-by", help="regex whose first group names a short background file's speaker (as in training)")
    de.add_argument("--noise-dir", help="noise mixed under the background (its last 20 %%; default: found beside --data)")
    de.add_argument("--hours", type=_positive_float, default=3.0, help="hours of stream outside the keywords (default 3)")
    de.add_argument("--placements", type=_positive_int, default=3, help="times each held-out clip is placed (default 3)")
    de.add_argument("--snr", type=float, default=10.0, help="keyword to background SNR in dB (default 10)")
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("-o", "--output", required=True, help="folder for the streams, truth.json, detect.json and det.png")
    de.add_argument("--force", action="store_true", help="replace an earlier detect.json")
    de.add_argument("-q", "--quiet", action="store_true")
    de.set_defaults(func=cmd_detect_eval)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"spiketrum {args.command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line
    try:
        rc = args.func(args)
    except OutputExists as exc:  # library words -> this command line's flags
        hint = exc.hint.replace("pass force=True", "give --force").replace("resume=True", "--resume")
        print(f"spiketrum {args.command}: error: {exc.path}: already holds {exc.what}; {hint}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # InputError is a ValueError naming the file
        print(f"spiketrum {args.command}: error: {exc}".split("\n")[0], file=sys.stderr)
        return 2
    except MemoryError:
        src = getattr(args, "input", None) or getattr(args, "data", None)
        src = ", ".join(map(str, src)) if isinstance(src, list) else src
        print(f"spiketrum {args.command}: error: {f'{src}: ' if src else ''}not enough memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
