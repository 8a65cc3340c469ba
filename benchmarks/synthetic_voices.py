"""Synthetic speakers of the ten digits, for training: eSpeak NG voices that no test set uses.

Each speaker is one eSpeak NG voice variant (``m1`` ... ``f5``, ``klatt``, named variants) with an English accent,
a pitch and a speaking rate drawn from ``--seed``; it says every digit ``--takes`` times, each take at a slightly
different rate and pitch. Clips are written at 8 kHz (FSDD's rate) as ``OUT/<digit>/<digit>_<speaker>_<take>.wav``,
FSDD's naming, so ``--group-by '^\\d_([a-z0-9]+)_'`` reads the speaker back.

Needs the Debian package espeak-ng (a tool for experiments, not a dependency of spiketrum):

    apt-get install espeak-ng
    python benchmarks/synthetic_voices.py out/espeak-digits
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tts_background import DIGITS, ESPEAK_ACCENTS, espeak, espeak_variants  # noqa: E402


def speak(voice, pitch, wpm, word, wav):
    """``word`` by eSpeak NG, resampled to 8 kHz and trimmed, written to ``wav`` whole or not at all."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        espeak(voice, pitch, wpm, word, tmp.name)
        x, sr = sf.read(tmp.name, dtype="float64")
    y = resample_poly(x, 8000, sr)
    nz = np.flatnonzero(np.abs(y) > 1e-3 * np.abs(y).max())  # trim the silence eSpeak pads, as FSDD's clips are cut
    y = y[max(nz[0] - 200, 0):nz[-1] + 200]
    part = wav.with_suffix(".part.wav")
    sf.write(part, y, 8000, subtype="PCM_16")
    part.replace(wav)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--takes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        sys.exit("synthetic_voices: error: espeak-ng not found (apt-get install espeak-ng)")
    rng = random.Random(args.seed)
    jobs = []
    for variant in espeak_variants():
        accent, pitch, speed = rng.choice(ESPEAK_ACCENTS), rng.randint(25, 75), rng.randint(130, 200)
        speaker = "es" + "".join(c for c in variant.lower() if c.isalnum())
        for d, word in enumerate(DIGITS):
            (args.out / str(d)).mkdir(parents=True, exist_ok=True)
            for take in range(args.takes):
                wav = args.out / str(d) / f"{d}_{speaker}_{take}.wav"
                if not wav.exists():
                    jobs.append((f"{accent}+{variant}", pitch + rng.randint(-5, 5), speed + rng.randint(-15, 15), word, wav))
    print(f"{len(jobs)} clips to synthesise", flush=True)
    with ThreadPoolExecutor(args.jobs) as ex:
        list(ex.map(lambda j: speak(*j), jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
