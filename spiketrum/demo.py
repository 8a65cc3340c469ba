"""``make demo``: the main job on real audio. Today: an FSDD recording to a cochleagram PNG."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from datasets.fsdd import fsdd_recordings

from .cli import main as cli_main


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
    return rc


if __name__ == "__main__":
    sys.exit(main())
