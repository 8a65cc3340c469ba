"""Experiment: what one more training speaker is worth in FSDD leave-one-speaker-out.

Each fold of a finished ``spiketrum train --dataset fsdd --split loso --seed S -o RUN`` trained on four speakers and
kept the epoch E* that its validation speaker liked best. This trains the fold again on all five non-test speakers
(its training and validation clips) for E* epochs with the same seed, keeps the last epoch (there is no validation
left), and scores the test speaker. E* is chosen before the test speaker is seen, but no held-out speaker can judge the
refit model, so it is an experiment beside the LOSO protocol, not part of it.

    python benchmarks/loso_refit.py RUN --seed S --data ../shared/data --out out/refit-S [--cache DIR]

Finished folds are kept; ``OUT/refit.json`` holds each fold beside RUN's own test accuracy.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from datasets import AudioDataset
from snn.trainer import TrainConfig, write_json
from spiketrum.app import kws


def five_speaker_splits(audio_splits):
    """``kws.audio_splits`` with a LOSO fold's validation speaker moved into training (and no validation)."""
    def splits(dataset, data, split="official", *args, **kwargs):
        train, val, test = audio_splits(dataset, data, split, *args, **kwargs)
        both = AudioDataset([*train.files, *val.files], [*train.labels, *val.labels], train.classes,
                            groups=[*train.groups, *val.groups])
        return both, val.subset([]), test
    return splits


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished --split loso run (RUN/fold-<speaker>/metrics.json)")
    p.add_argument("--seed", type=int, required=True, help="the seed RUN was trained with")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, help="encoding cache (default OUT/cache)")
    args = p.parse_args(argv)
    kws.audio_splits = five_speaker_splits(kws.audio_splits)
    rows = {}
    for fold in sorted(args.run.glob("fold-*/metrics.json")):
        speaker, before = fold.parent.name[len("fold-"):], json.loads(fold.read_text())
        history = before["history"]
        best = max(range(len(history)), key=lambda i: history[i]["val_accuracy"]) + 1
        out = args.out / fold.parent.name
        if (out / "metrics.json").is_file():
            m = json.loads((out / "metrics.json").read_text())
        else:
            m = kws.train("fsdd", args.data, out, split=f"loso:{speaker}", config=TrainConfig(epochs=best, seed=args.seed),
                          cache_dir=args.cache or args.out / "cache", progress=False, force=True)
        rows[speaker] = {"epochs": best, "refit_test_accuracy": m["test_accuracy"],
                         "four_speaker_test_accuracy": before["test_accuracy"]}
        print(f"{speaker}: {100 * m['test_accuracy']:.1f} % after {best} epochs on five speakers "
              f"({100 * before['test_accuracy']:.1f} % on four)", flush=True)
    mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("refit_test_accuracy", "four_speaker_test_accuracy")}
    write_json({"run": str(args.run), "seed": args.seed, "folds": rows, **mean}, args.out / "refit.json")
    print(f"mean {100 * mean['refit_test_accuracy']:.1f} % refit, {100 * mean['four_speaker_test_accuracy']:.1f} % on four")


if __name__ == "__main__":
    main()
