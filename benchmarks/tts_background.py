"""Synthetic background speech for keyword detection: many voices, rates and texts, none of them a keyword.

Writes one long WAV per (voice, speaking rate) into OUT, each of different sentences taken from the
docstrings of Python's standard library (so no sentence is spoken twice), with every sentence that
holds a word like a keyword left out. A long file falls into the train, calibrate and test parts of
``datasets.Background`` by time, so no sentence is in two parts.

Needs the Debian packages flite and festival (a benchmark tool, not a dependency of spiketrum):

    apt-get install flite festival
    python benchmarks/tts_background.py out/tts --minutes 17

Voices: flite's kal (8 kHz), kal16, awb, rms and slt (16 kHz) and festival's default kal_diphone
(16 kHz), each at 3 speaking rates (duration stretch 0.85, 1.0 and 1.2).

``--espeak N`` also writes N files of eSpeak NG voices (``apt-get install espeak-ng``), each a voice variant with an
English accent, a pitch and a rate drawn at random, speaking the sentences after those of flite and festival: more
voices for training only (``OUT`` another folder than the test streams' background, so those stay as they were).
"""
from __future__ import annotations

import argparse
import ast
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
STRETCH = (0.85, 1.0, 1.2)
WORDS_PER_MINUTE = 150
#: Word starts that sound like a keyword of the wake-word benchmark (alexa, computer, jarvis, snowboy).
KEYWORD_LIKE = re.compile(r"\b(alex|comput|jarv|snow)", re.I)


DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
#: eSpeak NG variants left out: not a human voice.
ESPEAK_ODD = ("robot", "demonic", "whisper", "croak", "tweaky", "storm")


def espeak_variants():
    """eSpeak NG's voice variants (m1 ... f5, klatt, named ones) that sound like a person, sorted."""
    out = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True).stdout
    names = [f.name for f in (Path(out.split("Data at:")[1].strip()) / "voices" / "!v").iterdir()]
    return sorted(n for n in names if " " not in n and not any(o in n.lower() for o in ESPEAK_ODD))


def espeak(voice, pitch, wpm, text, wav):
    """``text`` spoken by eSpeak NG ``voice`` (``accent+variant``) at ``pitch`` (0-99) and ``wpm`` into ``wav``."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(wpm), "-f", f.name, "-w", str(wav)],
                       check=True, capture_output=True)
    finally:
        Path(f.name).unlink()


def sentences(seed=0):
    """Plain English sentences of 6-24 words from the standard library's docstrings, shuffled."""
    seen, out = set(), []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if {"test", "idlelib", "site-packages"} & set(path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                for s in re.split(r"(?<=[.!?])\s+", " ".join((doc or "").split())):
                    words = s.split()
                    if (6 <= len(words) <= 24 and re.fullmatch(r"[A-Za-z ,;'.!?-]+", s) and not KEYWORD_LIKE.search(s)
                            and s[0].isupper() and s not in seen):
                        seen.add(s)
                        out.append(s)
    random.Random(seed).shuffle(out)
    return out


def synthesize(voice, stretch, text, wav):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        if voice == "festival":
            cmd = ["text2wave", "-eval", f"(Parameter.set 'Duration_Stretch {stretch})", f.name, "-o", str(wav)]
        else:
            cmd = ["flite", "-voice", voice, "-f", f.name, "-o", str(wav), "--setf", f"duration_stretch={stretch}"]
        subprocess.run(cmd, check=True, capture_output=True)
    finally:
        Path(f.name).unlink()


def take(pool, k, words):
    """Sentences ``pool[k:]`` up to (and just past) ``words`` words, joined by newlines, and the index after them."""
    text, n = [], 0
    while n < words and k < len(pool):
        text.append(pool[k])
        n += len(pool[k].split())
        k += 1
    return "\n".join(text), k


def flite_texts(pool, minutes):
    """``[(voice, stretch, text)]`` of the flite and festival files, each about ``minutes`` of speech, and the index
    of the first sentence none of them speaks."""
    texts, k = [], 0
    for voice in (*FLITE_VOICES, "festival"):
        for stretch in STRETCH:
            text, k = take(pool, k, minutes * WORDS_PER_MINUTE * stretch)
            texts.append((voice, stretch, text))
    return texts, k


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--minutes", type=float, default=17.0, help="speech per (voice, rate) file (default 17: 5 h in all)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--espeak", type=int, default=0, metavar="N", help="instead: N files of eSpeak NG voices")
    p.add_argument("--espeak-minutes", type=float, default=5.0, help="speech per eSpeak NG file (default 5)")
    args = p.parse_args(argv)
    if args.espeak:
        return espeak_files(args.out, args.espeak, args.espeak_minutes, args.jobs, skip_minutes=args.minutes)
    missing = [t for t in ("flite", "text2wave") if shutil.which(t) is None]
    if missing:
        sys.exit(f"tts_background: error: {', '.join(missing)} not found (apt-get install flite festival)")
    pool = sentences()
    args.out.mkdir(parents=True, exist_ok=True)
    texts, k = flite_texts(pool, args.minutes)
    jobs = [(voice, stretch, text, args.out / f"tts_{voice}_{stretch:g}.wav") for voice, stretch, text in texts]
    jobs = [j for j in jobs if not j[-1].exists()]
    print(f"{len(pool)} sentences available, {k} used; synthesizing {len(jobs)} files", flush=True)
    with ThreadPoolExecutor(args.jobs) as ex:
        for _ in ex.map(lambda j: synthesize(*j), jobs):
            pass
    return 0


def espeak_files(out, n, minutes, jobs, skip_minutes, seed=0):
    if shutil.which("espeak-ng") is None:
        sys.exit("tts_background: error: espeak-ng not found (apt-get install espeak-ng)")
    pool = sentences()
    _, k = flite_texts(pool, skip_minutes)  # after the sentences flite and festival speak: none is in both folders
    rng, variants = random.Random(seed), espeak_variants()
    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for i in range(n):
        variant, accent = variants[i * len(variants) // n], rng.choice(ESPEAK_ACCENTS)  # spread over the list
        pitch, wpm = rng.randint(25, 75), rng.randint(130, 200)
        text, k = take(pool, k, minutes * wpm)
        wav = out / f"espeak_{i:02d}_{accent}_{variant}.wav"
        if text and not wav.exists():
            todo.append((f"{accent}+{variant}", pitch, wpm, text, wav))
    print(f"{len(pool)} sentences available, {k} used; synthesizing {len(todo)} files", flush=True)
    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(lambda j: espeak(*j), todo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
