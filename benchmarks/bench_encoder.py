"""Spiketrum encoder speed and quality: fast and exact modes against the slow oracle, side by side.

Issue setting: 40 kernels, 16 kHz, 10 s of real speech (Speech Commands clips from
$SPIKETRUM_DATA, concatenated), one thread. RTF = seconds of audio per second of wall time
(median of --repeats). The oracle (tests/mp_oracle.py) is timed per spike on the first second.

    python benchmarks/bench_encoder.py [--repeats 3] [--rates 1000,4000] [--long-minutes 10]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from datasets import data_root  # noqa: E402
from spiketrum import decode, encode, metrics  # noqa: E402
from spiketrum.encoder import dictionary  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mp_oracle import slow_mp  # noqa: E402


def speech(seconds, sr=16000):
    """Real speech: Speech Commands clips (one per word, cycling) concatenated to ``seconds``."""
    clips = sorted((data_root() / "speech_commands_sample").glob("*/*.wav"))[::10]
    parts, n = [], 0
    while n < seconds * sr:
        x, fs = sf.read(clips[len(parts) % len(clips)])
        assert fs == sr
        parts.append(x)
        n += x.size
    return np.concatenate(parts)[: int(seconds * sr)]


def timed(fn, repeats):
    fn()  # warm-up: numba's on-disk cache, dictionary tables
    ts, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def long_file_memory(minutes):
    """Peak RSS of encoding ``minutes`` of speech at 1000 spikes/s in a fresh process."""
    code = (f"import resource, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from bench_encoder import speech; from spiketrum import encode; x = speech({minutes * 60}); "
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; import time; t = time.perf_counter(); "
            "st = encode(x, 16000, rate=1000); dt = time.perf_counter() - t; "
            "print(len(st), dt, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    n, dt, base, peak = int(out[0]), float(out[1]), int(out[2]), int(out[3])
    return n, dt, base / 1024, peak / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="1000,4000")
    ap.add_argument("--oracle-spikes", type=int, default=60)
    ap.add_argument("--long-minutes", type=float, default=10.0, help="0 skips the long-file memory run")
    args = ap.parse_args()
    sr = 16000
    x = speech(args.seconds)
    print(f"{x.size / sr:.1f} s of Speech Commands speech at {sr} Hz, 40 kernels, one thread\n")

    phi, lengths = dictionary(sr, 40, 50.0, 7200.0, -60.0)
    x1 = x[:sr]
    t = time.perf_counter()
    slow_mp(x1, phi, lengths, args.oracle_spikes)
    oracle = (time.perf_counter() - t) / args.oracle_spikes

    print(f"{'rate':>6} {'mode':>6} {'RTF':>8} {'us/spike':>9} {'x oracle/spike':>15} {'SNR dB':>8} {'levels dB':>10}")
    for rate in map(float, args.rates.split(",")):
        snr = {}
        for mode in ("exact", "fast"):
            dt, st = timed(lambda: encode(x, sr, rate=rate, mode=mode), args.repeats)
            snr[mode] = metrics.snr_db(x, decode(st, exact=True))
            print(f"{rate:6.0f} {mode:>6} {x.size / sr / dt:7.1f}x {dt / len(st) * 1e6:9.1f} {oracle / (dt / len(st)):14.0f}x "
                  f"{snr[mode]:8.2f} {metrics.snr_db(x, decode(st)):10.2f}")
        # greedy pursuit's own path sensitivity: the exact encoder on the input scaled by 1 + 1e-9
        jitter = metrics.snr_db(x, decode(encode(x * (1 + 1e-9), sr, rate=rate, mode="exact"), exact=True)) - snr["exact"]
        print(f"{'':6} fast - exact: {snr['fast'] - snr['exact']:+.3f} dB (exact on a 1e-9 rescaled input: {jitter:+.3f} dB)")
    print(f"\noracle (tests/mp_oracle.py): {oracle * 1e3:.1f} ms/spike on 1 s")

    if args.long_minutes > 0:
        n, dt, base, peak = long_file_memory(args.long_minutes)
        print(f"{args.long_minutes:g} min at 1000 spikes/s: {n} spikes in {dt:.1f} s ({args.long_minutes * 60 / dt:.0f}x real time), "
              f"peak RSS {peak:.0f} MiB ({base:.0f} MiB before encoding: audio, libraries)")


if __name__ == "__main__":
    main()
