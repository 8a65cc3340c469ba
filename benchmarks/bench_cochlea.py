"""Gammatone filterbank speed against scipy and the gammatone package, measured side by side.

64 channels ERB-spaced 50-7990 Hz (8000 Hz is Nyquist, which the filterbank rejects), 10 s of
16 kHz audio, one thread. RTF = seconds of audio per second of wall time; median of --repeats.

    python benchmarks/bench_cochlea.py [--repeats 7] [--seconds 10]
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402

from cochlea import GammatoneFilterbank, erb_space  # noqa: E402


def median_time(fn, repeats):
    fn()  # warm-up (numba compile / caches)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    numba.set_num_threads(1)
    sr = 16000
    cf = erb_space(50.0, 7990.0, 64)
    rng = np.random.default_rng(0)
    t = np.arange(int(args.seconds * sr)) / sr
    x = (0.1 * rng.standard_normal(t.size) + sum(np.sin(2 * np.pi * f * t) for f in (220, 1250, 3100))).astype(np.float32)

    fb32 = GammatoneFilterbank(sr, cf, np.float32)
    fb64 = GammatoneFilterbank(sr, cf, np.float64)
    out = np.empty((cf.size, x.size), np.float32)
    sos32 = fb32.sos.astype(np.float32)
    x64 = x.astype(np.float64)
    rows = [
        ("spiketrum cochlea float32", lambda: fb32.filter(x)),
        ("spiketrum cochlea float32, reused out=", lambda: fb32.filter(x, out=out)),
        ("spiketrum cochlea float64", lambda: fb64.filter(x64)),
        ("scipy sosfilt per channel, same sections, float64 (baseline)", lambda: [scipy.signal.sosfilt(fb64.sos[c], x64) for c in range(cf.size)]),
        ("scipy sosfilt per channel, same sections, float32", lambda: [scipy.signal.sosfilt(sos32[c], x) for c in range(cf.size)]),
    ]
    try:
        from gammatone.filters import erb_filterbank, make_erb_filters

        rows.append(("gammatone erb_filterbank (incl. make_erb_filters)", lambda: erb_filterbank(x64, make_erb_filters(sr, cf))))
    except ImportError:
        print("(gammatone package not installed: pip install gammatone)")
    try:
        import librosa

        rows.append(("librosa melspectrogram, 64 mels (not a filterbank; context)", lambda: librosa.feature.melspectrogram(y=x, sr=sr, n_fft=512, hop_length=160, n_mels=64)))
    except ImportError:
        pass

    results = [(name, median_time(fn, args.repeats)) for name, fn in rows]
    base = dict(results)["scipy sosfilt per channel, same sections, float64 (baseline)"]
    print(f"{args.seconds:g} s of {sr} Hz audio, {cf.size} channels, 1 thread, median of {args.repeats}")
    print(f"{'method':66s} {'wall ms':>9s} {'RTF':>8s} {'vs scipy':>9s}")
    for name, sec in results:
        print(f"{name:66s} {1000 * sec:9.2f} {args.seconds / sec:8.0f} {base / sec:8.2f}x")


if __name__ == "__main__":
    main()
