"""``make demo``: the main job on real audio: cochleagram, then spiketrum encoding at several rates."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from datasets.fsdd import fsdd_recordings

from . import metrics
from .cli import main as cli_main
from .encoder import encode
from .io import load_audio


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--recording", default="3_jackson_0.wav", help="FSDD file name")
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
        st.save(out / f"{clip.stem}.npz")
    print(f"spike files in {out}; try: spiketrum info {out / (clips[0].stem + '.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
