"""Corpus encoding throughput (files and audio hours per minute at --jobs 1 and 2) and the peak memory of
streaming a 10-minute and a 1-hour file.

    python benchmarks/bench_corpus.py [--data ../shared/data] [--rate 1000]

Throughput encodes all of FSDD and the Speech Commands sample with ``spiketrum encode`` into a fresh
folder, once per job count. Peak memory is the resident-set high-water mark of a fresh process that
streams a file (``SpiketrumConfig.encode_file``), against one that loads it whole first (``load_audio`` +
``SpiketrumConfig.encode``).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
PEAK = """
import resource, sys, time
import soundfile
from spiketrum import SpiketrumConfig, load_audio
t = time.perf_counter()
cfg = SpiketrumConfig(sr=soundfile.info(sys.argv[1]).samplerate, rate=float(sys.argv[2]))
if sys.argv[3] == "stream":
    st = cfg.encode_file(sys.argv[1])
else:
    st = cfg.encode(*load_audio(sys.argv[1]))
print(len(st), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t)
"""


def throughput(data, rate, jobs, tmp):
    out = Path(tmp) / f"jobs{jobs}"
    r = subprocess.run([sys.executable, "-m", "spiketrum.app", "encode", str(data / "fsdd" / "recordings"),
                        str(data / "speech_commands_sample"), "-o", str(out), "--rate", str(rate), "--jobs", str(jobs), "-q"],
                       capture_output=True, text=True, cwd=ROOT)
    m = re.search(r"encoded (\d+).*\(([\d.e-]+) h of audio in ([\d.]+) s: (\d+) files/min, ([\d.e-]+) audio h/min", r.stdout)
    if not m:
        raise SystemExit(f"encode failed: {r.stdout}{r.stderr}")
    return int(m[1]), float(m[2]), float(m[3]), int(m[4]), float(m[5])


def long_file(path, minutes, data):
    clips = [sf.read(f, dtype="float32")[0] for f in sorted((data / "fsdd" / "recordings").glob("*_yweweler_2*.wav"))]
    with sf.SoundFile(path, "w", 8000, 1, subtype="PCM_16") as f:
        n, i = 0, 0
        while n < minutes * 60 * 8000:
            f.write(clips[i % len(clips)])
            n, i = n + clips[i % len(clips)].size, i + 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("SPIKETRUM_DATA", ROOT.parent / "shared" / "data")))
    p.add_argument("--rate", type=float, default=1000.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"corpus: FSDD + Speech Commands sample, {args.rate:g} spikes/s, {os.cpu_count()} cores")
        print(f"{'jobs':>4} {'files':>6} {'audio h':>8} {'wall s':>7} {'files/min':>10} {'audio h/min':>12}")
        for jobs in (1, 2):
            n, hours, wall, fpm, hpm = throughput(args.data, args.rate, jobs, tmp)
            print(f"{jobs:>4} {n:>6} {hours:>8.3f} {wall:>7.1f} {fpm:>10} {hpm:>12.3f}")
        print(f"\npeak RSS of one process (MiB), 8 kHz speech; an import-only process holds about "
              f"{float(subprocess.check_output([sys.executable, '-c', 'import resource, spiketrum.encoder; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)'], cwd=ROOT)):.0f}")
        print(f"{'length':>7} {'rate':>6} {'spikes':>9} {'streamed':>9} {'whole file':>11} {'stream s':>9}")
        for minutes in (10, 60):
            path = Path(tmp) / f"{minutes}.wav"
            long_file(path, minutes, args.data)
            for rate in (50.0, args.rate):
                res = {}
                for how in ("stream", "whole"):
                    out = subprocess.check_output([sys.executable, "-c", PEAK, str(path), str(rate), how], cwd=ROOT,
                                                  env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True).split()
                    res[how] = (int(out[0]), float(out[1]), float(out[2]))
                print(f"{minutes:>5}min {rate:>6g} {res['stream'][0]:>9} {res['stream'][1]:>9.0f} {res['whole'][1]:>11.0f} "
                      f"{res['stream'][2]:>9.1f}")
            path.unlink()


if __name__ == "__main__":
    main()
