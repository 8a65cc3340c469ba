"""Reconstruction quality of spiketrum and the baseline encoders at equal spike counts, on real speech.

Mean over --files FSDD recordings (8 kHz) and --files Speech Commands clips (16 kHz) from
$SPIKETRUM_DATA. Audio SNR is of the decoded waveform (spiketrum: exact amplitudes, and the
3-level spike-only code); envelope SNR compares cochleagrams (40 channels, 25 ms frames, 10 ms hop),
the one measure an envelope code (delta, lif, poisson) can be held to.

    python benchmarks/quality_encoder.py [--files 20] [--rates 250,500,1000,2000,4000]
"""
import argparse

import numpy as np
import soundfile as sf

from datasets import data_root
from spiketrum import decode, encode, metrics
from spiketrum.baselines import METHODS
from spiketrum.metrics import envelope_snr_db


def corpora(n):
    root = data_root()
    fsdd = sorted((root / "fsdd" / "recordings").glob("*.wav"))
    sc = sorted((root / "speech_commands_sample").glob("*/*.wav"))
    pick = lambda fs: [fs[i] for i in np.linspace(0, len(fs) - 1, n).astype(int)]  # noqa: E731
    return {"FSDD": pick(fsdd), "Speech Commands": pick(sc)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--rates", default="250,500,1000,2000,4000")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    for name, files in corpora(args.files).items():
        clips = [sf.read(f) for f in files]
        print(f"\n{name}: {len(clips)} clips, {sum(x.size / sr for x, sr in clips):.1f} s")
        print(f"{'spikes/s':>8} | {'spiketrum SNR exact':>19} {'levels':>7} {'bits/spike':>10} {'env SNR':>8} | "
              + " | ".join(f"{m + ' SNR':>9} {'env':>6}" for m in METHODS))
        for rate in rates:
            row = {k: [] for k in ("exact", "levels", "bits", "env")}
            base = {m: ([], []) for m in METHODS}
            for x, sr in clips:
                st = encode(x, sr, rate=rate)
                row["exact"].append(metrics.snr_db(x, decode(st, exact=True)))
                row["levels"].append(metrics.snr_db(x, decode(st)))
                row["bits"].append(metrics.bits_per_spike(st))
                row["env"].append(envelope_snr_db(st, x))
                for m in METHODS:
                    try:
                        b = encode(x, sr, rate=rate, method=m)
                    except ValueError:  # a count the code cannot reach (e.g. lif past its refractory limit)
                        continue
                    base[m][0].append(metrics.snr_db(x, decode(b)))
                    base[m][1].append(envelope_snr_db(b, x))
            mean = {k: np.mean(v) for k, v in row.items()}
            cells = " | ".join(f"{np.mean(a) if a else np.nan:9.1f} {np.mean(e) if e else np.nan:6.1f}"
                               + ("*" if 0 < len(a) < len(clips) else " ") for a, e in base.values())
            print(f"{rate:8.0f} | {mean['exact']:19.1f} {mean['levels']:7.1f} {mean['bits']:10.1f} {mean['env']:8.1f} | {cells}")
    print("\n* = some clips could not reach this count with that encoder and are left out of its mean")


if __name__ == "__main__":
    main()
