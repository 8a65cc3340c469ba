"""Which test-time views to average, chosen on the validation speakers of FSDD leave-one-speaker-out.

For every fold of finished ``spiketrum train --dataset fsdd --split loso --seed S -o RUN`` runs, each candidate
set of views (:class:`spiketrum.perturb.InferenceAugment`) scores the fold's validation speaker, which chooses, and
its test speaker, which is only shown. The views are encoded once (cached) and their class probabilities are
averaged per candidate, as ``evaluate --tta SPEC`` does.

    python benchmarks/loso_tta.py RUN [RUN ...] --data ../shared/data [--cache DIR]

Writes nothing but the cache; prints a row per candidate: the mean over folds and runs of the validation and the
test speaker's accuracy, and the lowest test speaker (the mean of the runs), and each test speaker.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spiketrum.app import kws
from spiketrum.perturb import InferenceAugment

CANDIDATES = ("none", "tilt:4dB", "warp:0.1", "warp:0.15", "warp:0.05,tilt:4dB", "warp:0.1,tilt:4dB", "warp:0.15,tilt:4dB",
              "warp:0.2,tilt:4dB", "warp:0.1,tilt:8dB")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished --split loso runs (RUN/fold-<speaker>/model.pt)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=Path("out/loso-tta-cache"))
    p.add_argument("--views", nargs="+", default=CANDIDATES, metavar="SPEC", help="the candidates (default: %(default)s)")
    args = p.parse_args(argv)
    candidates = args.views
    acc = {c: {"val": {}, "test": {}} for c in candidates}  # candidate -> part -> speaker -> [accuracy per run]
    for run_dir in args.runs:
        for fold in sorted(run_dir.glob("fold-*")):
            speaker, run = fold.name[len("fold-"):], kws.Run.load(fold)
            all_views = []  # every candidate's views, each once, the clip itself first
            for c in candidates:
                all_views += [v for v in InferenceAugment.parse(c).views(run.encoder) if v not in all_views]
            for part in ("val", "test"):
                audio, _ = kws.split_audio(run, "fsdd", args.data, f"loso:{speaker}:{part}")
                (spikes,) = kws.spike_sets([audio], run.encoder, args.cache, run.dt_ms, progress=False)
                probs = kws.view_probabilities(run.model, kws.view_sets(spikes, all_views), len(run.classes), run.dt_ms)
                for c in candidates:
                    chosen = [all_views.index(v) for v in InferenceAugment.parse(c).views(run.encoder)]
                    r = kws.view_result(probs[chosen], spikes.labels, len(run.classes))
                    acc[c][part].setdefault(speaker, []).append(r["accuracy"])
            print(f"{fold}: " + ", ".join(f"{c} {100 * acc[c]['test'][speaker][-1]:.1f}" for c in candidates), flush=True)
    print(f"{'views':22s} {'validation':>10s} {'test':>6s}  lowest test speaker")
    for c in candidates:
        val = np.mean([np.mean(v) for v in acc[c]["val"].values()])
        test = {s: np.mean(v) for s, v in acc[c]["test"].items()}
        low = min(test, key=test.get)
        print(f"{c:22s} {100 * val:9.1f} % {100 * np.mean(list(test.values())):5.1f} %  {low} {100 * test[low]:.1f} %  ("
              + ", ".join(f"{s} {100 * a:.1f}" for s, a in test.items()) + ")")


if __name__ == "__main__":
    main()
