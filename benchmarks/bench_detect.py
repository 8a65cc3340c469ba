"""Streaming keyword detection on one core: real-time factor (encoder plus SNN) and memory over an hour of audio.

    python benchmarks/bench_detect.py RUN EVAL_DIR

RUN is a detector run (``spiketrum train --background ...``); EVAL_DIR a ``spiketrum detect-eval`` output whose
16 kHz stream files are played back to back through one detector, a second at a time, as from a microphone.
The resident memory is sampled after every 10 minutes of audio: it must stay flat.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import soundfile as sf
import torch


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main(run_dir, eval_dir, minutes=60):
    from spiketrum.app.detect import Detector
    from spiketrum.app.kws import Run

    torch.set_num_threads(1)
    run = Run.load(run_dir)
    files = [Path(eval_dir) / f["file"] for f in json.loads((Path(eval_dir) / "truth.json").read_text())["files"]]
    sr = sf.info(files[0]).samplerate
    det = Detector(run, sr)
    heard, busy, memory = 0.0, 0.0, []
    for path in files:
        x, _ = sf.read(path, dtype="float32")
        t0 = time.perf_counter()
        for a in range(0, x.size, sr):
            det.push(x[a : a + sr])
        busy += time.perf_counter() - t0
        heard += x.size / sr
        memory.append((round(heard / 60), round(rss_mb(), 1)))
        if heard >= minutes * 60:
            break
    det.close()
    result = {"audio_minutes": heard / 60, "input_sr": sr, "model_sr": run.encoder.sr,
              "spikes_per_s": run.encoder.rate, "real_time_factor_one_core": heard / busy,
              "rss_mb_by_minute": memory, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:3])
