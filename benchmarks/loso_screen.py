"""Screen training recipes on FSDD leave-one-speaker-out, judged by the validation speakers only.

Each variant trains every fold (``--split loso:<speaker>``: the next speaker validates, the held-out one tests) at
``--epochs`` and reports the validation speakers' accuracy at the best epoch and over the last 5 epochs (which the
best-epoch choice does not inflate); the test speakers' accuracy (each clip alone, as validation hears it, without
the test-time views) is shown beside them and is never used to choose.

    python benchmarks/loso_screen.py --data ../shared/data --out out/screen [--epochs 40] [VARIANT ...]

Finished folds are kept (their metrics.json), so a killed run continues; ``OUT/screen.json`` holds every fold.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from datasets import FSDD
from snn.trainer import Mixup, TrainConfig
from spiketrum.app import kws
from spiketrum.perturb import DEFAULT_AUGMENT

#: The default augmentation before the speaker-robust recipe (no spectral tilt).
BEFORE = "stretch:0.1,shift:1,mask:5,delay:100ms,deletion:0.2,noise:5dB,copies:4"

#: name -> kws.train options (``ema`` and ``label_smoothing`` go to TrainConfig, ``mixup`` is :class:`Mixup`'s alpha).
VARIANTS = {
    "before": dict(augment=BEFORE),
    "default": dict(augment=DEFAULT_AUGMENT),
    "tilt+speed": dict(augment=DEFAULT_AUGMENT + ",speed:0.1"),
    "tilt+dropout": dict(augment=DEFAULT_AUGMENT, model_kwargs={"dropout": 0.3}),
    "tilt+smoothing": dict(augment=DEFAULT_AUGMENT, label_smoothing=0.1),
    "tilt+shift3": dict(augment=DEFAULT_AUGMENT.replace("shift:1", "shift:3")),
    "tilt+h512": dict(augment=DEFAULT_AUGMENT, model_kwargs={"hidden": (512,)}),
    "tilt+warp": dict(augment=DEFAULT_AUGMENT + ",warp:0.1"),
    "tilt+warp15": dict(augment=DEFAULT_AUGMENT + ",warp:0.15"),
    "tilt+warp20": dict(augment=DEFAULT_AUGMENT + ",warp:0.2"),
    "tilt+warp-noshift": dict(augment=DEFAULT_AUGMENT.replace("shift:1,", "") + ",warp:0.1"),
    "tilt+copies8": dict(augment=DEFAULT_AUGMENT.replace("copies:4", "copies:8")),
    "tilt+mixup": dict(augment=DEFAULT_AUGMENT, mixup=0.2),
    "tilt+mixup1": dict(augment=DEFAULT_AUGMENT, mixup=1.0),
    "tilt+voices": dict(augment=DEFAULT_AUGMENT, extra_train="VOICES"),
    "tilt+voices+h512": dict(augment=DEFAULT_AUGMENT, extra_train="VOICES", model_kwargs={"hidden": (512,)}),
    "tilt+emph3": dict(augment=DEFAULT_AUGMENT, emphasis=10 * math.log10(2)),  # gains sqrt(f / 1 kHz): 3.01 dB/octave
    "tilt+voices+emph3": dict(augment=DEFAULT_AUGMENT, extra_train="VOICES", emphasis=10 * math.log10(2)),
    "ema": dict(augment=BEFORE, ema=0.995),
    "rate2000": dict(augment=BEFORE, rate=2000.0),
    "conv": dict(augment=BEFORE, model="conv"),
    "seadlif": dict(augment=BEFORE, model="seadlif"),
    "delay": dict(augment=BEFORE, model="delay", model_kwargs={"hidden": (256,), "max_delay_ms": 100.0}),
}


def fold(data, out, speaker, epochs, seed, options):
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    options = dict(options)
    config = TrainConfig(epochs=epochs, seed=seed, ema=options.pop("ema", 0.0),
                         label_smoothing=options.pop("label_smoothing", 0.0))
    mixup = options.pop("mixup", None)
    return kws.train("fsdd", data, out, split=f"loso:{speaker}", config=config, progress=False, force=True,
                     options=[Mixup(mixup)] if mixup else (), **options)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", default=list(VARIANTS), help=f"default: all of {', '.join(VARIANTS)}")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("out/screen"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voices", type=Path, help="synthetic speakers for the 'voices' variants: the folder "
                   "benchmarks/synthetic_voices.py writes (class folders of extra training clips)")
    p.add_argument("--cache", type=Path, help="encoding cache shared by the runs (default OUT/cache)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}: use {', '.join(VARIANTS)}")
    speakers = FSDD(args.data, split="test").all_speakers
    results = {}
    print("| variant | validation speaker, best epoch | last 5 epochs | test speaker | lowest test speaker |")
    print("|---|---|---|---|---|")
    for name in args.variants:
        rows = {}
        for speaker in speakers:
            options = {**VARIANTS[name], "cache_dir": args.cache or args.out / "cache"}
            if options.get("extra_train") == "VOICES":
                if args.voices is None:
                    p.error(f"{name} needs --voices DIR")
                options["extra_train"] = (args.voices,)
            m = fold(args.data, args.out / name / f"fold-{speaker}", speaker, args.epochs, args.seed, options)
            last = [h["val_accuracy"] for h in m["history"][-5:]]
            rows[speaker] = {"validation_speakers": m["validation_speakers"], "best_val": m["best_val_accuracy"],
                             "last5_val": sum(last) / len(last),
                             "test": m.get("test_accuracy_single_view", m["test_accuracy"])}  # the clip alone, as validated
        mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("best_val", "last5_val", "test")}
        results[name] = {"folds": rows, **mean}
        low = min(rows, key=lambda s: rows[s]["test"])
        print(f"| {name} | {100 * mean['best_val']:.1f} % | {100 * mean['last5_val']:.1f} % | {100 * mean['test']:.1f} % "
              f"| {low} {100 * rows[low]['test']:.1f} % |", flush=True)
    (args.out / "screen.json").write_text(json.dumps({"epochs": args.epochs, "seed": args.seed, "variants": results},
                                                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
