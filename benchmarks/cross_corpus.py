"""Cross-corpus test of FSDD digit models: voices no FSDD speaker has.

Two test sets, never used for training or tuning:

- the Speech Commands sample's digit words (``zero`` ... ``nine``, many speakers, 16 kHz), scored through
  ``evaluate --class-map`` on the sample folder itself (no copied folder);
- synthetic voices: flite's kal, awb, rms and slt and festival's default voice, each at 3 speaking rates
  (duration stretch 0.85, 1.0 and 1.2), every digit once: 150 clips, written to ``OUT/tts-digits``.

Needs the Debian packages flite and festival (a benchmark tool, not a dependency of spiketrum):

    apt-get install flite festival
    python benchmarks/cross_corpus.py RUN [RUN ...] --data ../shared/data --out out/cross-corpus

Writes ``OUT/cross_corpus.json`` and prints one row per run: accuracy on each set and per synthetic voice.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tts_background import DIGITS, STRETCH, synthesize  # noqa: E402

from spiketrum.app import kws  # noqa: E402

VOICES = ("kal", "awb", "rms", "slt", "festival")


def tts_digits(out):
    """The synthetic digit folder ``out`` (``<digit>/<voice>_<stretch>.wav``), synthesised where missing."""
    missing = [t for t in ("flite", "text2wave") if shutil.which(t) is None]
    if missing:
        sys.exit(f"cross_corpus: error: {', '.join(missing)} not found (apt-get install flite festival)")
    for d, word in enumerate(DIGITS):
        (out / str(d)).mkdir(parents=True, exist_ok=True)
        for voice in VOICES:
            for stretch in STRETCH:
                wav = out / str(d) / f"{voice}_{stretch:g}.wav"
                if not wav.exists():
                    synthesize(voice, stretch, word, wav)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="runs trained on FSDD")
    p.add_argument("--data", type=Path, required=True, help="the data root holding speech_commands_sample")
    p.add_argument("--out", type=Path, default=Path("out/cross-corpus"))
    p.add_argument("--tta", help="test-time views instead of each run's own (see spiketrum train --tta; none: the clip alone)")
    args = p.parse_args(argv)
    tts = tts_digits(args.out / "tts-digits")
    sc = args.data / "speech_commands_sample"
    class_map = {w: str(d) for d, w in enumerate(DIGITS)}
    cache = args.out / "cache"
    results = {}
    for run in args.runs:
        on_sc = kws.evaluate(run, "folder", sc, split="all", class_map=class_map, cache_dir=cache, progress=False,
                             group_by=r"^([0-9a-f]{8})_nohash", tta=args.tta)
        on_tts = kws.evaluate(run, "folder", tts, split="all", cache_dir=cache, progress=False, group_by=r"^([a-z]+)_",
                              tta=args.tta)
        results[str(run)] = {"tta": on_sc["tta"], "speech_commands_digits": on_sc["accuracy"],
                             "speech_commands_digits_single_view": on_sc["single_view_accuracy"],
                             "tts_single_view": on_tts["single_view_accuracy"], "n_speech_commands": on_sc["n"],
                             "speech_commands_speakers": len(on_sc["per_speaker"]),
                             "tts": on_tts["accuracy"], "n_tts": on_tts["n"],
                             "tts_per_voice": {v: row["accuracy"] for v, row in on_tts["per_speaker"].items()}}
        r = results[str(run)]
        print(f"{run} (test-time views {r['tta']}): Speech Commands digits {100 * r['speech_commands_digits']:.1f} % (n={r['n_speech_commands']}, "
              f"{r['speech_commands_speakers']} speakers), "
              f"tts {100 * r['tts']:.1f} % (n={r['n_tts']}; "
              + ", ".join(f"{v} {100 * a:.0f} %" for v, a in r["tts_per_voice"].items()) + ")", flush=True)
    (args.out / "cross_corpus.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
