"""PocketSphinx keyphrase spotting against the spiking detector, on the test streams of ``spiketrum detect-eval``.

    pip install pocketsphinx==5.1.1
    python benchmarks/bench_pocketsphinx.py EVAL_DIR

``EVAL_DIR`` is a ``detect-eval`` output folder (``truth.json``, ``streams/``, ``detect.json``). PocketSphinx
(its bundled US English model and CMUdict; words missing from it get :data:`PRONUNCIATIONS`) spots all the
keywords in one pass over each stream, scored by the detector's own rules (:func:`spiketrum.app.detect.det_curve`).
Writes ``EVAL_DIR/pocketsphinx.json`` (per keyword the miss rate at 0.5/1/2/5 false alarms per hour and the DET
points, the real-time factor) and ``EVAL_DIR/det_vs_pocketsphinx.png``, and prints the miss rates at 1 FA/h.

Why one decode per stream is enough: the keyword search (phone loop, beam) does not depend on the keyphrase
thresholds, they only decide which candidates are kept. So each stream is decoded once at :data:`PERMISSIVE`
and each detection keeps its score; a threshold swept over the scores gives the detections a decode at that
threshold would give, which ``sweep_check`` in the output verifies on one stream. The decodes are kept in
``EVAL_DIR/pocketsphinx_decodes.json`` and reused while the streams are the same. Thresholds are given as the
``kws_threshold`` (log10) a user would set. Detection time is the end of the keyphrase (its last 10 ms frame).
"""
import argparse
import json
import math
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import soundfile as sf

from snn.trainer import write_json
from spiketrum.app.detect import FA_POINTS, det_curve, plot_det, poisson_interval

#: CMU-phone pronunciations, used only for keywords missing from PocketSphinx's dictionary.
PRONUNCIATIONS = {"snowboy": "S N OW B OY", "jarvis": "JH AA R V IH S", "alexa": "AH L EH K S AH",
                  "computer": "K AH M P Y UW T ER"}
PERMISSIVE = 1e-40  # kws_threshold of the one decode: far more candidates than 20 false alarms per hour
CHECK = 1e-20  # kws_threshold of the decode that checks the offline sweep
# From pocketsphinx's kws_search.c: a detection's log score (base LOGBASE) is the keyphrase-minus-phone-loop
# score, in units of 2**SENSCR_SHIFT, less KWS_MAX; its threshold is log(kws_threshold) in the same units.
LOGBASE, SENSCR_SHIFT, KWS_MAX = 1.0001, 10, 1500


def decoder(keywords, threshold):
    """A keyword-spotting decoder for ``keywords`` at ``kws_threshold`` ``threshold``, and the dictionary entries it
    had to add."""
    import pocketsphinx

    dec = pocketsphinx.Decoder(lm=None, loglevel="ERROR")
    added = {}
    for kw in keywords:
        if dec.lookup_word(kw) is None:
            dec.add_word(kw, PRONUNCIATIONS[kw], True)
            added[kw] = PRONUNCIATIONS[kw]
    with tempfile.NamedTemporaryFile("w", suffix=".kws") as f:
        f.write("".join(f"{kw} /{threshold:g}/\n" for kw in keywords))
        f.flush()
        dec.add_kws("kws", f.name)
    dec.activate_search("kws")
    return dec, added


def decode(dec, path):
    """``(keywords, end frames, scores)`` of the detections in one stream file, fed a second at a time like a live
    microphone, and the seconds spent decoding. A score is the integer log ratio that ``kws_threshold`` bounds."""
    x, sr = sf.read(path, dtype="int16")
    t0 = time.perf_counter()
    dec.start_utt()
    for a in range(0, x.size, sr):
        dec.process_raw(x[a : a + sr].tobytes(), False, False)
    dec.end_utt()
    busy = time.perf_counter() - t0
    segs = list(dec.seg() or [])
    score = [round(math.log(s.prob) / math.log(LOGBASE)) + KWS_MAX for s in segs]
    return [s.word.strip() for s in segs], np.array([s.end_frame for s in segs]), np.array(score), busy


def threshold_units(kws_threshold):
    """The integer bound a ``kws_threshold`` sets on a detection's score (see :func:`decode`)."""
    return math.floor(math.log(kws_threshold) / math.log(LOGBASE)) >> SENSCR_SHIFT


def to_log10(score):
    """The log10 ``kws_threshold`` (to within one score unit) at which a detection with ``score`` is just kept."""
    return score * 2**SENSCR_SHIFT * math.log10(LOGBASE)


def sweep_check(keywords, path, permissive):
    """Decode ``path`` at :data:`CHECK` and compare with the permissive decode's detections kept by that threshold."""
    dec, _ = decoder(keywords, CHECK)
    words, ends, score, _ = decode(dec, path)
    keep = permissive[2] >= threshold_units(CHECK)
    offline = sorted(zip(np.array(permissive[0])[keep].tolist(), permissive[1][keep].tolist(),
                         permissive[2][keep].tolist()))
    decoded = sorted(zip(words, ends.tolist(), score.tolist()))
    return {"file": str(path), "kws_threshold": CHECK, "decoded": len(decoded), "offline": len(offline),
            "same": decoded == offline}


def summary(det, hours):
    """Miss rate (and its false-alarm interval) at each of ``FA_POINTS``: the lowest threshold within the rate, as
    ``spiketrum.app.detect.summarize`` picks it."""
    row = {"instances": det["instances"], "miss_rate_at": {}, "fa_per_hour_interval_at": {},
           "kws_threshold_log10_at": {}}
    for x in FA_POINTS:
        ok = [p for p in det["points"] if p["fa_per_hour"] <= x]
        best = ok[-1] if ok else None
        row["miss_rate_at"][f"{x:g}"] = best["miss_rate"] if best else 1.0
        row["fa_per_hour_interval_at"][f"{x:g}"] = poisson_interval(best["false_alarms"] if best else 0, hours)
        row["kws_threshold_log10_at"][f"{x:g}"] = best["threshold"] if best else None
    row["det"] = [(p["threshold"], p["fa_per_hour"], p["miss_rate"]) for p in det["points"]]
    return row


def plot(ours, peer, path, title):
    """Both systems' DET curves in one figure: spiketrum solid, PocketSphinx dashed, one colour per keyword."""
    curves = {}
    for i, kw in enumerate(peer):
        for rows, style, name in ((ours, "-", "spiketrum"), (peer, "--", "PocketSphinx")):
            if kw in rows:
                curves[f"{kw} ({name})"] = ([(fa, m) for _, fa, m in rows[kw]["det"]], {"ls": style, "color": f"C{i}"})
    plot_det(curves, path, title)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("eval_dir", type=Path, help="a spiketrum detect-eval output folder")
    args = p.parse_args()
    root = args.eval_dir
    truth = json.loads((root / "truth.json").read_text())
    ours = json.loads((root / "detect.json").read_text())["keywords"]
    keywords = list(ours)

    dec, added = decoder(keywords, PERMISSIVE)
    # the decodes depend on the streams only: kept, so that a new detector is compared without decoding again
    kept = root / "pocketsphinx_decodes.json"
    decodes = json.loads(kept.read_text()) if kept.is_file() else {}
    if decodes.get("truth") != truth["files"] or decodes.get("version") != version("pocketsphinx"):
        decodes = {"truth": truth["files"], "version": version("pocketsphinx"), "files": []}
        for f in truth["files"]:
            words, ends, score, t = decode(dec, root / f["file"])
            decodes["files"].append({"words": words, "ends": ends.tolist(), "scores": score.tolist(), "busy": t})
            print(f"{f['file']}: {len(words)} candidates, {f['seconds'] / t:.0f}x real time", flush=True)
        write_json(decodes, kept)  # atomic: a run killed mid-write leaves no half a cache
    per_file = [(d["words"], np.array(d["ends"], int), np.array(d["scores"])) for d in decodes["files"]]
    busy = sum(d["busy"] for d in decodes["files"])
    heard = sum(f["seconds"] for f in truth["files"])
    frame_s = 1.0 / dec.config["frate"]
    pronunciations = {kw: dec.lookup_word(kw) for kw in keywords}

    result = {"pocketsphinx": version("pocketsphinx"), "model": "bundled en-us acoustic model, cmudict-en-us.dict",
              "dictionary_added": added, "pronunciations": pronunciations, "permissive_kws_threshold": PERMISSIVE,
              "threshold": "log10 kws_threshold", "fire_time": "end of the keyphrase's last frame",
              "real_time_factor": heard / busy, "audio_hours": heard / 3600, "negative_hours": truth["negative_hours"],
              "sweep_check": sweep_check(keywords, root / truth["files"][0]["file"], per_file[0]), "keywords": {}}
    for kw in keywords:
        found = [(to_log10(score[np.array(words) == kw]), (ends[np.array(words) == kw] + 1) * frame_s)
                 for words, ends, score in per_file]

        def detections_at(thr, found=found):
            return [times[level >= thr] for level, times in found]

        thresholds = np.concatenate([level for level, _ in found]).tolist()
        result["keywords"][kw] = summary(det_curve(truth, kw, thresholds, detections_at), truth["negative_hours"])
    (root / "pocketsphinx.json").write_text(json.dumps(result, indent=1))
    plot(ours, result["keywords"], root / "det_vs_pocketsphinx.png",
         f"spiketrum (solid) vs PocketSphinx {result['pocketsphinx']} (dashed), "
         f"{truth['negative_hours']:.2g} h of streams at {truth['snr_db']:g} dB SNR")

    print(f"PocketSphinx {result['pocketsphinx']}: {result['real_time_factor']:.0f}x real time (one process), "
          f"added to its dictionary: {added or 'nothing'}, offline sweep check: {result['sweep_check']}")
    print(f"{'keyword':8} | spiketrum miss @1 FA/h | PocketSphinx miss @1 FA/h")
    for kw in keywords:
        ps_miss = result["keywords"][kw]["miss_rate_at"]["1"]
        print(f"{kw:8} | {100 * ours[kw]['miss_rate_at']['1']:21.1f}% | {100 * ps_miss:24.1f}%")

if __name__ == "__main__":
    main()
