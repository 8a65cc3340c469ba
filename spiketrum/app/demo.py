"""``make demo``: the main jobs on real audio: cochleagram, spiketrum encoding at several rates, a
spikegram, a small keyword-spotting SNN trained on FSDD, and its robustness to spike loss."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from datasets.fsdd import fsdd_recordings
from snn.trainer import TrainConfig
from spiketrum import encode, metrics
from spiketrum.io import load_audio

from . import kws
from .cli import main as cli_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--recording", default="3_jackson_0.wav", help="FSDD file name")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default 40, half of `spiketrum train`'s "
                   "80, to keep the demo short; 0 skips training)")
    args = p.parse_args(argv)
    rec = fsdd_recordings(download=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wav = rec / args.recording
    t = time.perf_counter()
    rc = cli_main(["cochleagram", str(wav), "-o", str(out / "cochleagram.png")])
    print(f"demo: cochleagram of {wav} in {time.perf_counter() - t:.2f} s -> {out / 'cochleagram.png'}")
    if rc:
        return rc
    clips = [wav]
    sc = rec.parents[1] / "speech_commands_sample"
    if sc.is_dir():
        clips += sorted(sc.glob("*/*.wav"))[:1]
    print(f"\n{'clip':28s} {'rate':>6s} {'spikes':>7s} {'SNR exact':>10s} {'SNR levels':>11s} {'encode s':>9s}")
    for clip in clips:
        x, sr = load_audio(clip)
        for rate in (250, 1000, 4000):
            t = time.perf_counter()
            st = encode(x, sr, rate=rate)
            dt = time.perf_counter() - t
            m = metrics.report(st, x)
            print(f"{clip.parent.name + '/' + clip.name:28s} {rate:6d} {len(st):7d} {m['snr_exact_db']:9.1f}  {m['snr_levels_db']:10.1f} {dt:9.2f}")
            if rate == 1000:
                st.save(out / f"{clip.stem}.npz")
    first = out / f"{clips[0].stem}.npz"
    rc = cli_main(["plot", str(first), "-o", str(out / "spikegram.png"), "--source", str(wav), "--reconstruction"])
    if rc:
        return rc
    print(f"spike files in {out}; try: spiketrum info {first}")
    if args.epochs > 0:
        # The default `spiketrum train` recipe with half its epochs: a few minutes on a 2-core CPU, encoding included
        print(f"\ndemo: training the default SNN on FSDD spiketrum spikes ({args.epochs} epochs; the corpus is encoded once and cached)")
        t = time.perf_counter()
        run = out / "fsdd-srnn"
        m = kws.train("fsdd", rec.parents[1], run, config=TrainConfig(epochs=args.epochs), jobs=2, cache_dir=out / "cache",
                      force=True)  # the demo's own folder: a rerun replaces it
        print(f"demo: FSDD test accuracy {100 * m['test_accuracy']:.1f} % on {m['n_test']} clips after {m['epochs_run']} epochs "
              f"({time.perf_counter() - t:.0f} s with encoding) -> {run}")
        print("\ndemo: robustness of that model to spike deletion, jitter and background noise (one seed)")
        noise = kws.default_noise_dir(rec.parents[1]) is not None  # elsewhere FSDD comes without noise
        return cli_main(["robustness", str(run), "--dataset", "fsdd", "--data", str(rec.parents[1]), "-o",
                         str(out / "robustness"), "--deletion", "0,0.3,0.6,0.9", "--jitter-ms", "0,1,5", "--insertion",
                         "none", "--noise-snr", "10,0" if noise else "none", "--seeds", "1", "--recon-clips", "30",
                         "--cache", str(out / "cache"), "-q", "--force"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
