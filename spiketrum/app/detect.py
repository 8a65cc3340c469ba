"""Always-on keyword detection: open-set training, a streaming detector, and thresholds set in false alarms per hour.

A detector run is a :class:`~spiketrum.app.kws.Run` whose class 0 is :data:`NO_KEYWORD` and whose
``detector`` entry holds the streaming settings (smoothing, refractory period, one threshold per
keyword). It listens at :data:`DETECT_SR`: every background source then has the same band, so no band
can tell a keyword from anything else (FSDD is 8 kHz, the wake words 16 kHz).
"""
from __future__ import annotations

import dataclasses
import json
import math
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

from datasets import AudioDataset, AudioFolder, Background, NoiseFolder, SpikeDataset, collate_spikes, hash_split
from snn.trainer import Callback, Detection, TrainConfig, Trainer, atomic_save, seed_everything, write_json
from spiketrum import make_config
from spiketrum.io import atomic_output, resample
from spiketrum.perturb import crop

from .errors import OutputExists
from .kws import Run, build_model, skipped_files

NO_KEYWORD = "_none_"
DETECT_SR = 8000
#: The causal encoder a detector hears through: 1000 spikes/s, one level, both polarities on one channel,
#: onsets decided every 50 ms (plus the longest kernel's look-ahead).
DETECT_ENCODER = dict(rate=1000.0, levels=1, chunk_s=0.05, polarity_channels=False)
TAIL_MS = 300.0  # in training, a keyword may be detected up to this long after its spoken end
SMOOTH_MS, REFRACTORY_MS = 50.0, 1000.0
KEYWORD_TEST, KEYWORD_VAL = 0.2, 0.1  # held out of every keyword's clips (test: for test streams only)
CLEAN_READS = 0.0  # of the keyword clips in training; the others have background mixed in (no stream is clean)
HARD_NEGATIVE = 1.0  # weight of the likeliest false-alarm step in the loss (snn.trainer.Detection)
PARTIAL = False  # train on a keyword's start alone and its end alone, as no keyword (no measured gain: off)
MINED = 0.0  # share of background windows drawn from those the network last found likeliest to be a keyword
MEMBERS = 2  # networks trained apart whose probabilities the detector averages (snn.Ensemble)
CALIBRATION_HOURS = 2.0  # of validation streams outside the keywords, on which thresholds are set
PLACEMENTS, SNR_DB = 3, 10.0  # each held-out keyword clip in validation and test streams: times placed, dB over the rest


def word_bounds(x, sr, frame_ms=10.0, range_db=35.0):
    """``(start, end)`` in seconds of the word in a clip of one word: the first and last ``frame_ms`` frame
    whose energy is within ``range_db`` of the loudest and 10 dB above the quietest decile of frames that
    are not digital silence (padding of exact zeros says nothing of the recording's noise floor), or at
    most 10 dB under the loudest.

    Examples
    --------
    >>> sr = 8000
    >>> x = np.zeros(sr); x[2000:6000] = np.sin(np.arange(4000) * 0.3)
    >>> word_bounds(x, sr)
    (0.25, 0.75)
    """
    hop = max(1, int(sr * frame_ms / 1000))
    n = max(1, len(x) // hop)
    e = 10 * np.log10(np.square(np.asarray(x[: n * hop], np.float64)).reshape(n, hop).mean(1) + 1e-12)
    heard = e[e > -100.0]  # a clip of nothing but a word and zeros: its floor is no higher than 10 dB under the peak
    floor = min(np.percentile(heard if heard.size else e, 10) + 10.0, e.max() - 10.0)
    loud = np.flatnonzero(e >= max(e.max() - range_db, floor))
    if loud.size == 0:
        return 0.0, len(x) / sr
    return float(loud[0] * hop / sr), float((loud[-1] + 1) * hop / sr)


@dataclasses.dataclass
class Event:
    """One detection: the keyword, when the detector fired (seconds from the start of the input, its
    look-ahead included), the smoothed score (0-1) at the peak, and the peak's step (bin) index."""

    keyword: str
    time: float
    score: float
    step: int


def peak_steps(v):
    """Offsets into ``v`` [n] of its peaks: a step higher than the one before and not lower than the one after
    (the first step of a plateau); ``v`` holds one step before its first candidate and one after its last."""
    v = np.asarray(v)
    return np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:])) + 1


def refractory_steps(steps, refractory, last=None):
    """The ``steps`` (ascending) kept when each must come at least ``refractory`` after the last one kept
    (``last`` at first, or None); returns them and the last one kept."""
    keep = []
    for t in steps:
        if last is None or t - last >= refractory:
            keep.append(t)
            last = t
    return np.array(keep, np.int64), last


def pick_peaks(v, threshold, refractory, last=None):
    """Peaks of the smoothed score ``v`` (:func:`peak_steps`) at or above ``threshold``, at least ``refractory``
    steps after the previous detection (``last``, in offsets into ``v``, or None). Returns their offsets and
    the offset of the last detection."""
    cand = peak_steps(v)
    return refractory_steps(cand[np.asarray(v)[cand] >= threshold], refractory, last)


class Detector:
    """Streaming keyword detection with a detector run: push audio, get :class:`Event` s back.

    Audio passes through the run's causal encoder (:meth:`~spiketrum.SpiketrumConfig.stream`), is binned
    at the model's ``dt``, and drives the network one step per bin with its state carried across
    pushes. Each keyword's probability is averaged over the last ``smooth_ms`` and a peak at or above
    its threshold fires, at most once per ``refractory_ms`` per keyword. Pushing audio in pieces gives
    the events of pushing it whole.

    Parameters
    ----------
    run : Run
        A detector run (:func:`train`), e.g. ``Run.load(path)``.
    sr : int, optional
        Rate of the pushed audio (default the encoder's); other rates are resampled by a stateful
        polyphase filter.
    thresholds : float or dict, optional
        One threshold for every keyword, or per keyword; default the run's calibrated ones.
    smooth_ms, refractory_ms : float, optional
        Default the run's.
    """

    def __init__(self, run, sr=None, thresholds=None, smooth_ms=None, refractory_ms=None):
        settings = run.detector
        if not settings:
            raise ValueError("this run is a clip classifier, not a detector (train one with --keywords or --background)")
        self.run, self.keywords = run, list(run.classes[1:])
        self.thresholds = _thresholds(self.keywords, settings["thresholds"] if thresholds is None else thresholds)
        self.smooth_ms = float(settings["smooth_ms"] if smooth_ms is None else smooth_ms)
        self.refractory_ms = float(settings["refractory_ms"] if refractory_ms is None else refractory_ms)
        if not (self.smooth_ms >= 0 and self.refractory_ms >= 0):
            raise ValueError("smooth_ms and refractory_ms must be >= 0 ms")
        enc = run.encoder
        self.sr = int(sr or enc.sr)
        self._resampler = None
        if self.sr != enc.sr:
            import soxr

            self._resampler = soxr.ResampleStream(self.sr, enc.sr, 1, dtype="float32", quality="HQ")
        self._encoder = enc.stream()
        self._bin = enc.sr * run.dt_ms / 1000
        if abs(self._bin - round(self._bin)) > 1e-9:
            raise ValueError(f"a {run.dt_ms:g} ms bin is not a whole number of samples at {enc.sr} Hz")
        self._bin = int(round(self._bin))
        self._chunk = int(round(enc.chunk_s * enc.sr))
        self._pending = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # spikes of unfinished bins
        self._steps = 0  # bins run through the network
        self._state = None
        self._probs = np.zeros((0, len(self.keywords)))  # the last raw probabilities the smoothing still needs
        self._tail = np.full((1, len(self.keywords)), -np.inf)  # the last smoothed steps (at first a virtual one)
        self._last = [None] * len(self.keywords)  # step of each keyword's last detection
        self._heard = 0  # samples pushed, at the encoder's rate
        self.trace = None  # set to a list to keep every step's smoothed scores

    @property
    def latency_s(self):
        """Encoder look-ahead plus a chunk, one bin, and the step that confirms a peak."""
        return self._encoder.latency_s + 2 * self.run.dt_ms / 1000

    def push(self, x):
        """Events that ``x`` (mono audio at ``sr``) completes."""
        x = np.asarray(x, np.float32).reshape(-1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        self._heard += x.size
        return self._feed(self._encoder.push(x), final=False)

    def close(self):
        """Events of the rest of the stream."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self._heard += tail.size
            st = self._encoder.push(tail)
            events = self._feed(st, final=False)
        else:
            events = []
        return events + self._feed(self._encoder.close(), final=True)

    @torch.no_grad()
    def _feed(self, st, final):
        run = self.run
        samples = np.concatenate([self._pending[0], st.samples])
        channels = np.concatenate([self._pending[1], st.channels])
        done = st.n_samples // self._bin if not final else -(-st.n_samples // self._bin)  # bins whose spikes are all known
        n = done - self._steps
        events = []
        if n > 0:
            b = samples // self._bin - self._steps
            now = b < n
            dense = np.zeros((n, run.encoder.n_channels), np.float32)
            np.add.at(dense, (b[now], channels[now]), 1.0)
            samples, channels = samples[~now], channels[~now]
            u, self._state = run.model.steps(torch.from_numpy(dense)[:, None], self._state, dt=run.dt_ms)
            events = self._peaks(self._smooth(torch.softmax(u[:, 0].double(), -1)[:, 1:].numpy()), final)
            self._steps = done
        elif final:
            events = self._peaks(np.zeros((0, len(self.keywords))), final)
        self._pending = (samples, channels)
        return events

    def _smooth(self, probs):
        """Causal moving average over the last ``smooth_ms`` (fewer steps at the start of the stream)."""
        w = max(1, int(round(self.smooth_ms / self.run.dt_ms)))
        hist = np.concatenate([self._probs, probs])
        c = np.cumsum(np.concatenate([np.zeros((1, hist.shape[1])), hist]), 0)
        j = np.arange(len(self._probs), len(hist))
        lo = np.maximum(j - w + 1, 0)
        self._probs = hist[len(hist) - (w - 1):] if w > 1 else hist[:0]
        smoothed = (c[j + 1] - c[lo]) / (j + 1 - lo)[:, None]
        if self.trace is not None:
            self.trace.extend(smoothed)
        return smoothed

    def _peaks(self, smoothed, final):
        """Events of the peaks whose next step is now known (at the end of the stream: all of them)."""
        v = np.concatenate([self._tail, smoothed, np.full((1, smoothed.shape[1]), -np.inf)] if final else [self._tail, smoothed])
        first = self._steps - len(self._tail)  # the step v[0] is (-1: the virtual step before the stream)
        events = []
        for j, kw in enumerate(self.keywords):
            last = None if self._last[j] is None else self._last[j] - first
            cand, last = pick_peaks(v[:, j], self.thresholds[j], self.refractory_ms / self.run.dt_ms, last)
            self._last[j] = None if last is None else int(last) + first
            events += [Event(kw, float(self._fire_time(first + t + 2)), float(v[t, j]), int(first + t)) for t in cand]
        self._tail = v[-2:]
        return sorted(events, key=lambda e: e.time)

    def _fire_time(self, bins):
        """Seconds into the input when ``bins`` (a number or an array) bins of spikes are known: their chunks and
        the look-ahead heard."""
        need = -(-np.asarray(bins) * self._bin // self._chunk) * self._chunk + self._encoder.lookahead
        return np.minimum(need, self._heard) / self.run.encoder.sr


def _per_keyword(keywords, given, what, default):
    """One value per keyword from a number or a ``{keyword: value}`` dict (a keyword left out: ``default``)."""
    if isinstance(given, dict):
        unknown = sorted(set(given) - set(keywords))
        if unknown:
            raise ValueError(f"{what}: no keyword {unknown[0]!r} in this detector (it knows {', '.join(keywords)})")
        out = [float(given.get(k, default)) for k in keywords]
    else:
        out = [float(given)] * len(keywords)
    if any(not v >= 0 for v in out):
        raise ValueError(f"{what} must be >= 0")
    return out


def _thresholds(keywords, given):
    out = _per_keyword(keywords, given, "thresholds", np.inf)  # a keyword left out never fires
    if any(not (t <= 1 or t == np.inf) for t in out):
        raise ValueError("thresholds are scores from 0 to 1")
    return out


class DetectionItems(torch.utils.data.Dataset):
    """Training items ``(dense spikes [T, C], (class, start, stop))`` for :class:`~snn.trainer.Detection`.

    The first ``len(clips)`` items are the clips, each read from the clean encoding (a fraction ``clean`` of
    the reads) or from one with background mixed in, a keyword clip cut to its word with 0.2-0.8 s of context before
    and 0.3-0.8 s after, and read after 0 to ``context`` steps of background (:func:`background_window`:
    the network meets the word in the state a stream leaves it in, not fresh); then as many windows of
    ``window`` steps joined from random background items; with ``partial``, then a read of every keyword clip
    cut 30-70 % of the way through its word, its start or its end alone, as no keyword (the network must hear
    the whole word). The per-read generator is seeded from numpy's global state, which checkpoints carry.
    """

    def __init__(self, clips, noisy, marks, background, window, context=0, clean=CLEAN_READS, partial=PARTIAL,
                 mined_share=MINED):
        self.clips, self.noisy, self.marks, self.background = clips, list(noisy), marks, background
        self.window, self.context, self.clean, self.partial = window, context, clean, partial
        self.mined_share, self.mined = mined_share, []  # seeds of background windows (MinedNegatives)

    def negative(self, rng):
        """A background window of ``window`` steps: a mined one (a share ``mined_share`` of the draws, once there
        are any), else a random one."""
        if self.mined and rng.random() < self.mined_share:
            return background_window(self.background, self.window, np.random.default_rng(
                self.mined[int(rng.integers(len(self.mined)))]))
        return background_window(self.background, self.window, rng)

    def __len__(self):
        return (3 if self.partial else 2) * len(self.clips)

    def __getitem__(self, i):
        rng = np.random.default_rng(np.random.randint(2**31))
        n_clips = len(self.clips)
        partial = i >= 2 * n_clips
        if partial:
            i -= 2 * n_clips
        if i >= n_clips or (partial and self.marks[i][0] == 0):
            return self.negative(rng), (0, 0, 0)
        k, (a, b) = self.marks[i]
        src = self.clips if not self.noisy or rng.random() < self.clean else self.noisy[int(rng.integers(len(self.noisy)))]
        x = src[i][0]
        if k == 0:
            s = int(rng.integers(max(1, x.shape[0] - self.window + 1)))
            return x[s : s + self.window], (0, 0, 0)
        lo, hi = max(0, a - int(rng.integers(20, 80))), min(x.shape[0], b + int(rng.integers(0, 50)))
        if partial:  # the word cut 30-70 % of the way through: its start alone, or its end alone, is no keyword
            cut = a + max(1, int(rng.uniform(0.3, 0.7) * (b - int(round(TAIL_MS / src.dt_ms)) - a)))
            lo, hi, k = (lo, cut, 0) if rng.random() < 0.5 else (cut, hi, 0)
        n = int(rng.integers(self.context + 1))
        x = torch.cat([background_window(self.background, n, rng), x[lo:hi]]) if n else x[lo:hi]
        return x, ((k, a - lo + n, b - lo + n) if k else (0, 0, 0))


class MinedNegatives(Callback):
    """Hard-negative mining over the whole background: after every epoch the network scores ``candidates``
    fresh background windows (each by its highest per-step keyword probability), and the ``keep`` it found
    likeliest to be a keyword become the pool that ``items`` (:class:`DetectionItems`) draws its share of
    background windows from. Random windows are mostly easy; these are the speech the network confuses with a
    keyword. The pool is kept as the windows' seeds, so a checkpoint carries it and a resumed run draws the same
    windows. Candidates are drawn from ``(seed, epoch)`` alone."""

    def __init__(self, items, candidates=2048, keep=512, seed=0, batch=64):
        self.items, self.candidates, self.keep, self.seed, self.batch = items, candidates, keep, seed, batch

    @torch.no_grad()
    def on_epoch_end(self, trainer, record):
        seeds = np.random.default_rng([self.seed, trainer.epoch]).integers(2**63 - 1, size=self.candidates)
        net, scores = trainer.model.eval(), []
        for k in range(0, len(seeds), self.batch):
            x, lengths, _ = collate_spikes([(background_window(self.items.background, self.items.window,
                                                               np.random.default_rng(s)), 0) for s in seeds[k:k + self.batch]])
            u = net(x.to(trainer.device), lengths.to(trainer.device), per_step=True)
            scores.append(torch.softmax(u, -1)[..., 1:].amax(-1).amax(0).cpu())
        scores = torch.cat(scores)
        top = torch.argsort(scores, descending=True)[:self.keep]
        self.items.mined = [int(seeds[i]) for i in top]
        record["mined_keyword_probability"] = float(scores[top].mean())

    def state_dict(self):
        return {"mined": torch.tensor(self.items.mined, dtype=torch.int64)}

    def load_state_dict(self, state):
        self.items.mined = [int(s) for s in state["mined"]]


def background_window(background, steps, rng):
    """``steps`` steps of random items of SpikeDataset ``background`` joined end to end (a long item: a random part
    of it, cropped before it is binned)."""
    pieces, total, hop = [], 0, background.config.sr * background.dt_ms / 1000  # samples per step
    while total < steps:
        st, need = background.spikes(int(rng.integers(len(background)))), steps - total
        n = math.ceil(st.n_samples / hop - 1e-9)
        if n > need:
            s = int(rng.integers(n - need + 1))
            st = crop(st, int(round(s * hop)), min(st.n_samples, int(round((s + need) * hop))))
        pieces.append(st.to_dense(background.dt_ms, torch=True))
        total += pieces[-1].shape[0]
    return torch.cat(pieces)[:steps]


def keyword_parts(data, keywords=None, seed=0):
    """``(train, val, test)`` audio of a folder per class, labelled 0 for every class not in ``keywords`` (default:
    all) and 1.. for the keywords, with :data:`KEYWORD_VAL` and :data:`KEYWORD_TEST` of the clips held out by a
    hash of each file name (test clips go into test streams only)."""
    full = AudioFolder(data)
    keywords = list(full.classes) if not keywords else list(keywords)
    unknown = [k for k in keywords if k not in full.classes]
    if unknown:
        raise ValueError(f"{data}: no class folder {unknown[0]!r} for a keyword (it has {', '.join(full.classes)})")
    if NO_KEYWORD in keywords:
        raise ValueError(f"{NO_KEYWORD!r} is the detector's own class, not a keyword")
    remap = [keywords.index(c) + 1 if c in keywords else 0 for c in full.classes]
    parts = hash_split(full.files, seed, val=KEYWORD_VAL, test=KEYWORD_TEST)
    out = []
    for name in ("train", "val", "test"):
        idx = parts[name]
        out.append(AudioDataset([full.files[i] for i in idx], [remap[full.labels[i]] for i in idx], [NO_KEYWORD, *keywords]))
        out[-1].skipped = list(full.skipped)
    return tuple(out)


def marks(audio, dt_ms):
    """Per clip ``(class, (start, stop))``: the steps where a keyword may be detected, from its spoken start to
    :data:`TAIL_MS` after its end (``(0, (0, 0))`` for a non-keyword clip)."""
    out = []
    for i in range(len(audio)):
        k = audio.labels[i]
        if k == 0:
            out.append((0, (0, 0)))
            continue
        x, rate = audio.load(i)
        a, b = word_bounds(x, rate)
        out.append((k, (int(a * 1000 // dt_ms), int(math.ceil((b * 1000 + TAIL_MS) / dt_ms)))))
    return out


def validation_streams(val_audio, background, noise_dir, hours, seed):
    """:func:`build_streams` at :data:`DETECT_SR` of ``val_audio``'s keyword clips placed :data:`PLACEMENTS` times
    at :data:`SNR_DB` into ``background`` (a :class:`~datasets.Background` calibrate part) with the calibrate
    part of the noise in ``noise_dir`` (or none) under it: the test streams' recipe, on data held out of
    training and test."""
    clips, pieces = stream_material(val_audio, background, DETECT_SR, [])  # the encoded sets list unreadable files
    if not clips or not pieces:
        raise ValueError("no validation keyword clips or no calibrate-part background to set thresholds on")
    noise = Background([noise_dir], "calibrate") if noise_dir else None
    noise = NoiseFolder.from_audio(noise, DETECT_SR) if noise is not None and len(noise) else None
    return build_streams(clips, pieces, noise, DETECT_SR, hours, PLACEMENTS, SNR_DB, np.random.default_rng(seed))


def calibrate(run, streams, target_fa_per_hour, progress=False):
    """Per keyword, a threshold that fires at most ``target_fa_per_hour`` outside the keywords of ``streams``
    (``(audio at the encoder's rate, truth)`` each, from :func:`build_streams`): halfway between the highest
    peak that would exceed it and the next peak up. Returns ``{"thresholds", "hours", "false_alarms",
    "miss_rate"}`` at those thresholds, and :func:`keyword_rows` of the streams."""
    sr, files = run.encoder.sr, []

    def audio():
        for y, keywords in streams:
            files.append({"seconds": y.size / sr, "keywords": keywords})
            yield y, sr

    traces, _ = stream_traces(run, audio(), progress)
    truth = {"files": files, "negative_hours": negative_hours(files)}
    targets = dict(zip(run.classes[1:], _per_keyword(run.classes[1:], target_fa_per_hour, "target_fa_per_hour", 1.0)))
    det = det_points(run, truth, traces, max_fa_per_hour=max(20.0, *targets.values()))
    thresholds, alarms, missed = {}, {}, {}
    for kw, d in det.items():
        pts = d["points"]
        at, threshold = {"threshold": 1.0, "false_alarms": 0, "miss_rate": 1.0}, 0.5 if not pts else pts[-1]["threshold"]
        for p in pts:  # halfway between the highest peak that would exceed the target and the next one up
            if p["fa_per_hour"] > targets[kw] + 1e-9:
                threshold = (p["threshold"] + at["threshold"]) / 2
                break
            at = p
        thresholds[kw], alarms[kw], missed[kw] = min(float(threshold), 1.0), at["false_alarms"], float(at["miss_rate"])
    return {"thresholds": thresholds, "hours": truth["negative_hours"], "false_alarms": alarms, "miss_rate": missed,
            "keyword_instances": sum(len(f["keywords"]) for f in files),
            "keywords": keyword_rows(det, truth["negative_hours"], thresholds)}


def train(data, out, *, keywords=None, background=(), group_by=None, hidden=(256,), dt_ms=10.0,
          config=TrainConfig(epochs=30, patience=10), target_fa_per_hour=1.0, smooth_ms=SMOOTH_MS,
          refractory_ms=REFRACTORY_MS, snr_db=(0.0, 20.0), copies=2, partial=PARTIAL, mined=MINED, members=MEMBERS, noise_dir=None,
          calibration_hours=CALIBRATION_HOURS, cache_dir=None, jobs=1, progress=True, force=False):
    """Train a streaming keyword detector on a folder per class and background audio; writes the run folder.

    ``keywords`` (default every class) are detected; the other classes, and windows of the ``background``
    audio's train part (:class:`~datasets.Background`), teach the model what is no keyword. Keyword
    clips are learnt in time with the max-pooling loss (:class:`~snn.trainer.Detection`, with its
    :data:`HARD_NEGATIVE` term), each read with background mixed in at a random SNR in ``snr_db`` and
    after 0-2 s of background windows (:class:`DetectionItems`; ``partial``: also the word's start alone and its
    end alone, as no keyword). ``members`` networks are trained so, one after another from seeds
    ``config.seed``, ``config.seed + 1``, ... on the same split, each into ``out/member-<k>/``, and the
    detector averages their probabilities (:class:`snn.Ensemble`): a false alarm one network makes alone is
    outvoted. A finished member is kept, so a run cut short and started again (without ``force``) trains only
    the rest; a member of another recipe is trained anew. The thresholds are then set for
    ``target_fa_per_hour`` (one number, or per keyword) on ``calibration_hours`` of validation streams: the
    validation clips placed as in the test streams into the background's calibrate part, with the calibrate part of
    ``noise_dir``'s noise under it (:func:`build_streams`, as :func:`detect_eval` does with the test parts),
    whose miss rates ``metrics.json`` reports. Returns the metrics dict, also written to ``out/metrics.json``.
    """
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and (out / "model.pt").exists() and not force:
        raise OutputExists(out, "a finished run (model.pt)", "train into another folder, or pass force=True to replace it")
    if not background:
        raise ValueError("a detector needs background audio (--background): what it must not fire on")
    if not (0 <= smooth_ms and 0 <= refractory_ms):
        raise ValueError("smooth_ms and refractory_ms must be >= 0 ms")
    train_audio, val_audio, _ = keyword_parts(data, keywords, config.seed)
    classes = train_audio.classes
    _per_keyword(classes[1:], target_fa_per_hour, "target_fa_per_hour", 1.0)  # a keyword it lacks fails before any work
    bg_train, bg_cal = (Background(background, p, group_by=group_by) for p in ("train", "calibrate"))
    val_streams = validation_streams(val_audio, bg_cal, noise_dir, calibration_hours, config.seed)
    enc = make_config("spiketrum", DETECT_SR, **DETECT_ENCODER)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / "cache"
    out.mkdir(parents=True, exist_ok=True)

    def encoded(audio, **kw):
        s = SpikeDataset(audio, enc, cache, dt_ms=dt_ms, jobs=jobs, **kw)
        s.prepare(progress=progress)
        return s

    noise_train = NoiseFolder.from_audio(bg_train, DETECT_SR)
    clips = encoded(train_audio)
    # built on the clips that encoded (a corrupt file is dropped from `clips`), so every copy stays aligned
    noisy = [encoded(clips.base, noise=noise_train, snr_db=snr_db, seed=config.seed + 7919 * k) for k in range(copies)]
    bg = encoded(bg_train)
    window = int(round(2000 / dt_ms))
    train_set = DetectionItems(clips, noisy, marks(clips.base, dt_ms), bg, window, context=window, clean=CLEAN_READS,
                               partial=partial, mined_share=mined)
    # validation: held-out clips at 10 dB in calibrate-part background, and as many calibrate-part windows
    val_clips = encoded(val_audio, noise=NoiseFolder.from_audio(bg_cal, DETECT_SR), snr_db=SNR_DB, seed=config.seed)
    val_marks = marks(val_clips.base, dt_ms)
    bg_val = encoded(bg_cal)
    g = np.random.default_rng(config.seed)
    val_set = [(val_clips[i][0], (val_marks[i][0], *val_marks[i][1])) for i in range(len(val_clips))]
    val_set += [(background_window(bg_val, window, g), (0, 0, 0)) for _ in range(len(val_clips))]

    model_kwargs = {"members": members, "hidden": tuple(hidden), "dt": dt_ms}
    model, trained = build_model("ensemble", enc.n_channels, len(classes), **model_kwargs), []
    recipe = json.dumps([str(data), [str(b) for b in background], group_by, classes, enc.to_json(), dt_ms, list(hidden),
                         dataclasses.asdict(config), snr_db, copies, partial, HARD_NEGATIVE, CLEAN_READS]
                        + ([mined] if mined else []), default=str)
    for m, member in enumerate(model.members):  # each from its own seed and checkpoint folder, on the same split
        folder, member_config = out / f"member-{m}", dataclasses.replace(config, seed=config.seed + m)
        kept = _finished_member(folder / "member.pt", recipe) if not force else None
        if kept is None:  # train it; a finished member is kept, so a run cut short trains only the rest
            seed_everything(member_config.seed)
            net = build_model("srnn", enc.n_channels, len(classes), hidden=tuple(hidden), dt=dt_ms)
            folder.mkdir(exist_ok=True)
            train_set.mined = []
            mining = [MinedNegatives(train_set, seed=member_config.seed)] if mined else []
            trainer = Trainer(net, train_set, val_set, lambda b: collate_spikes(b), member_config, mining, run_dir=folder,
                              progress=progress, objective=Detection(hard_negative=HARD_NEGATIVE))
            if not force and _same_recipe(folder / "recipe.json", recipe) and (folder / "checkpoint.pt").is_file():
                trainer.load_checkpoint(folder / "checkpoint.pt")  # a member cut short goes on where it stopped
            else:
                write_json(json.loads(recipe), folder / "recipe.json")
            trainer.fit()
            kept = {"recipe": recipe, "state_dict": trainer.model.cpu().state_dict(),
                    "info": {"seed": member_config.seed, "best_val_accuracy": trainer.best_accuracy,
                             "epochs_run": len(trainer.history), "history": trainer.history}}
            atomic_save(kept, folder / "member.pt")
        member.load_state_dict(kept["state_dict"])
        trained.append(kept["info"])
    run = Run(model.eval(), "ensemble", model_kwargs, enc, dt_ms, classes, config.seed,
              {"thresholds": {k: 0.5 for k in classes[1:]}, "smooth_ms": float(smooth_ms),
               "refractory_ms": float(refractory_ms)})
    cal = calibrate(run, val_streams, target_fa_per_hour, progress)
    run.detector.update(thresholds=cal["thresholds"], target_fa_per_hour=target_fa_per_hour,
                        calibration_hours=cal["hours"])
    metrics = {"task": "detect", "keywords": classes[1:], "classes": classes, "data": str(data),
               "background": [str(b) for b in background], "group_by": group_by,
               "background_minutes": {"train": bg_train.seconds() / 60, "calibrate": bg_cal.seconds() / 60},
               "n_train_clips": len(train_audio), "n_val_clips": len(val_audio),
               "encoder": json.loads(enc.to_json()), "dt_ms": dt_ms, "encoder_latency_s": enc.stream().latency_s,
               "best_val_accuracy": float(np.mean([t["best_val_accuracy"] for t in trained])), "members": trained,
               "calibration": cal, "detector": run.detector,
               "train_config": dataclasses.asdict(config), "partial": partial, "mined": mined,
               "skipped_files": skipped_files([train_audio, val_audio, bg_train, bg_cal], [clips, val_clips, bg, bg_val])}
    metrics["wall_seconds"] = time.perf_counter() - start
    run.save(out / "model.pt")
    write_json(metrics, out / "metrics.json")
    return metrics


def _same_recipe(path, recipe):
    """Whether ``path`` holds the JSON of ``recipe`` (a member's checkpoint may be resumed)."""
    try:
        return json.loads(path.read_text()) == json.loads(recipe)
    except (OSError, ValueError):
        return False


def _finished_member(path, recipe):
    """A member saved by an earlier :func:`train` of the same recipe at ``path``, or None."""
    try:
        kept = torch.load(path, weights_only=True)
        return kept if kept.get("recipe") == recipe else None
    except (OSError, RuntimeError, pickle.UnpicklingError, AttributeError):
        return None


READ_S = 1.0  # seconds read from an input at a time: memory stays flat however long it is


def detect_inputs(run_dir, inputs, sr=None, thresholds=None, smooth_ms=None, refractory_ms=None, stdin=None):
    """Stream every input through a fresh :class:`Detector`; yields ``(input, Event)`` as each detection is made
    and ``(input, error message)`` (one line naming the input) for an input that fails, then goes on.

    ``"-"`` reads raw 16-bit little-endian mono PCM at ``sr`` (default the model's rate) from ``stdin``
    (default the process's). Files are read :data:`READ_S` at a time at their own rate.
    """
    from spiketrum.io import AudioStream, InputError

    run = Run.load(run_dir)
    Detector(run, thresholds=thresholds, smooth_ms=smooth_ms, refractory_ms=refractory_ms)  # bad options fail first
    for name in inputs:
        try:
            if name == "-":
                rate = int(sr or run.encoder.sr)
                det = Detector(run, rate, thresholds, smooth_ms, refractory_ms)
                pipe = stdin if stdin is not None else sys.stdin.buffer
                block, left = int(READ_S * rate) * 2, b""
                while True:
                    data = pipe.read(block)
                    if not data:
                        break
                    data = left + data
                    cut = len(data) - len(data) % 2
                    data, left = data[:cut], data[cut:]
                    for e in det.push(np.frombuffer(data, "<i2").astype(np.float32) / 32768.0):
                        yield name, e
                if left:
                    raise InputError("stdin", "cut off in the middle of a 16-bit sample")
            else:
                with AudioStream(name) as f:
                    det = Detector(run, f.sr, thresholds, smooth_ms, refractory_ms)
                    step = int(READ_S * f.sr)
                    for a in range(0, f.frames, step):
                        seg = f.read(a, a + step)
                        if seg.size != min(step, f.frames - a):
                            raise InputError(name, "file is shorter than its header says (truncated?)")
                        for e in det.push(seg):
                            yield name, e
            for e in det.close():
                yield name, e
        except (ValueError, OSError) as exc:  # InputError names the input
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            yield name, msg if msg.startswith(str(name)) or msg.startswith("stdin") else f"{name}: {msg}"


# -- evaluation on long streams: misses per false alarm per hour ------------------------------------------

FA_POINTS = (0.5, 1.0, 2.0, 5.0)  # false alarms per hour at which the miss rate is reported
HIT_AFTER_S = 1.0  # a detection counts for a keyword up to this long after the keyword's end
STREAM_S = 600.0  # seconds per test-stream file
#: Rate of the test streams: the keywords' own, so a peer that listens at 16 kHz (PocketSphinx) hears them whole;
#: the detector resamples them to its own rate as it would a live 16 kHz microphone.
STREAM_SR = 16000


def stream_material(clip_audio, background, sr, skipped):
    """``(clips, pieces)`` at ``sr`` for :func:`build_streams`: the keyword clips of ``clip_audio`` as
    ``(keyword, audio, file)``, and the non-silent items of ``background`` plus ``clip_audio``'s
    non-keyword clips; a file that does not read is appended to ``skipped`` as ``(file, reason)``."""

    def load(audio, i):
        try:
            x, rate = audio.load(i)
        except ValueError as exc:  # a corrupt file: listed, the others go on
            skipped.append((str(audio.files[i]), str(exc).splitlines()[0]))
            return None
        return x if rate == sr else resample(x, rate, sr)

    pieces = [x for x in (load(background, i) for i in range(len(background))) if x is not None and np.any(x)]
    pieces += [x for x in (load(clip_audio, i) for i in range(len(clip_audio)) if clip_audio.labels[i] == 0)
               if x is not None and np.any(x)]
    clips = [(clip_audio.classes[clip_audio.labels[i]], x, str(clip_audio.files[i]))
             for i, x in ((i, load(clip_audio, i)) for i in range(len(clip_audio)) if clip_audio.labels[i] > 0)
             if x is not None]
    return clips, pieces


def build_streams(clips, pieces, noise, sr, hours, placements, snr_db, rng):
    """Yield streams of keywords in background, ``(audio, truth)`` per :data:`STREAM_S` seconds at ``sr``.

    The ``pieces`` (background audio) play in shuffled order (reshuffled when used up) with 0.1-1 s
    pauses, ``noise`` (a :class:`~datasets.NoiseFolder` at ``sr``, or None) mixed under each at a random
    5-20 dB. Each of the ``clips`` (:func:`stream_material`) is added ``placements`` times at random
    places, at ``snr_db`` to the audio under it; the streams hold ``hours`` of audio outside the
    keywords (each from its start to :data:`HIT_AFTER_S` after its end). ``truth`` lists each keyword's
    ``start``, ``end`` (its clip) and ``word_end`` (the energy-based end of the word) in seconds.
    """
    instances = [clips[j] for j in rng.permutation(np.repeat(np.arange(len(clips)), placements))]
    total_s = hours * 3600 + sum(x.size / sr + HIT_AFTER_S for _, x, _ in instances)
    slot = total_s / len(instances)
    starts = (np.arange(len(instances)) + rng.uniform(0.1, max(0.1, 0.9 - min(0.8, 6.0 / slot)), len(instances))) * slot
    n_total = int(total_s * sr)
    level = float(np.median([np.sqrt(np.mean(np.square(x, dtype=np.float64))) for x in pieces]))

    def background_audio():
        while True:
            for j in rng.permutation(len(pieces)):
                x = np.concatenate([pieces[j], np.zeros(int(rng.uniform(0.1, 1.0) * sr), np.float32)]).astype(np.float64)
                yield noise.mix(x, rng.uniform(5.0, 20.0), rng) if noise is not None else x

    source, carry, k = background_audio(), np.zeros(0), 0
    per_file = int(STREAM_S * sr)
    for f0 in range(0, n_total, per_file):
        n = min(per_file, n_total - f0)
        parts, have = [carry], carry.size
        while have < n:
            parts.append(next(source))
            have += parts[-1].size
        y = np.concatenate(parts)
        y, carry = y[:n], y[n:]
        truth = []
        while k < len(instances) and starts[k] * sr < f0 + n:
            name, x, clip = instances[k]
            a = min(int(starts[k] * sr) - f0, n - x.size - int(0.5 * sr))  # a clip never straddles two files
            under = y[a : a + x.size]
            e_under, e_kw = float(under @ under), float(x.astype(np.float64) @ x)
            gain = math.sqrt(e_under * 10 ** (snr_db / 10) / e_kw) if e_under > 1e-9 * x.size else level / math.sqrt(e_kw / x.size)
            y[a : a + x.size] += gain * x
            truth.append({"keyword": name, "start": a / sr, "end": (a + x.size) / sr,
                          "word_end": a / sr + word_bounds(x, sr)[1], "clip": clip})
            k += 1
        yield (y / max(1.0, float(np.abs(y).max()) / 0.99)).astype(np.float32), truth


def negative_hours(files):
    """Hours of the streams ``files`` (``{"seconds", "keywords"}`` each) outside the keyword windows."""
    windows_s = sum(t["end"] - t["start"] + HIT_AFTER_S for f in files for t in f["keywords"])
    return (sum(f["seconds"] for f in files) - windows_s) / 3600


def make_streams(run, data, background, out, noise_dir=None, hours=3.0, placements=PLACEMENTS, snr_db=SNR_DB,
                 group_by=None, seed=0, progress=True):
    """Test streams for a detector (:func:`build_streams`): the held-out keyword clips of ``data`` placed into the
    test part of ``background`` (:class:`~datasets.Background`) and the held-out clips of the non-keyword
    classes, with the test part (last 20 %) of the noise in ``noise_dir`` under it. Writes the streams as
    WAV files at :data:`STREAM_SR` into ``out/streams`` and returns the ground truth (also ``out/truth.json``).
    """
    import soundfile as sf
    from tqdm.auto import tqdm

    sr = STREAM_SR
    _, _, test = keyword_parts(data, run.classes[1:], run.split_seed or 0)
    bg = Background(background, "test", group_by=group_by)
    noise = NoiseFolder(noise_dir, sr, part="test") if noise_dir else None
    skipped = list(bg.skipped)
    clips, pieces = stream_material(test, bg, sr, skipped)
    if not pieces or not clips:
        raise ValueError(f"{data}: no held-out keyword clips or no background audio to make test streams of")
    out = Path(out)
    (out / "streams").mkdir(parents=True, exist_ok=True)
    files = []
    streams = build_streams(clips, pieces, noise, sr, hours, placements, snr_db, np.random.default_rng(seed))
    for y, keywords in tqdm(streams, desc="test streams", disable=not progress):
        path = out / "streams" / f"stream-{len(files):03d}.wav"
        with atomic_output(path) as tmp:
            sf.write(tmp, y, sr, subtype="PCM_16", format="WAV")
        files.append({"file": str(path.relative_to(out)), "seconds": y.size / sr, "keywords": keywords})
    truth = {"sr": sr, "snr_db": snr_db, "placements": placements, "seed": seed, "files": files,
             "negative_hours": negative_hours(files),
             "unique_background_minutes": sum(x.size for x in pieces) / sr / 60, "keyword_clips": len(clips),
             "keyword_instances": sum(len(f["keywords"]) for f in files), "background": [str(b) for b in background],
             "noise_dir": None if noise_dir is None else str(noise_dir),
             "skipped_files": [{"file": str(f), "reason": r} for f, r in skipped]}
    write_json(truth, out / "truth.json")
    return truth


def stream_traces(run, streams, progress=True):
    """Per stream (``(audio, sr)`` each), the detector's smoothed scores and the fire time of each step; also the
    real-time factor of the streaming detector (encoder and network) over all of them, on this process's threads."""
    from tqdm.auto import tqdm

    traces, busy, heard = [], 0.0, 0.0
    for x, sr in tqdm(streams, desc="detecting", disable=not progress):
        det = Detector(run, sr, thresholds=0.0)
        det.trace = []
        t0 = time.perf_counter()
        for a in range(0, x.size, sr):  # a second at a time, as a live stream
            det.push(x[a : a + sr])
        det.close()
        busy += time.perf_counter() - t0
        heard += x.size / sr
        traces.append((np.asarray(det.trace), det._fire_time(np.arange(len(det.trace)) + 2)))
    return traces, heard / busy


def score_detections(truth, keyword, detections):
    """``(false alarms, hits, latencies)`` of ``keyword``'s detections against the ground truth.

    ``detections[i]`` lists the fire times (s) in stream file ``i``. A detection between a ``keyword``
    instance's start and :data:`HIT_AFTER_S` after its end hits it (once: later ones are ignored);
    any other is a false alarm, the wrong keyword's window included. Latency is the fire time minus
    the word's energy-based end, per hit.
    """
    fa, hits, latency = 0, set(), []
    for fi, times in enumerate(detections):
        truth_file = truth["files"][fi]["keywords"]
        for t in times:
            mine = [n for n, g in enumerate(truth_file)
                    if g["keyword"] == keyword and g["start"] <= t <= g["end"] + HIT_AFTER_S]
            if not mine:
                fa += 1
            elif (fi, mine[0]) not in hits:
                hits.add((fi, mine[0]))
                latency.append(t - truth_file[mine[0]]["word_end"])
    return fa, hits, latency


def det_curve(truth, keyword, thresholds, detections_at, max_fa_per_hour=20.0):
    """``{"instances", "points"}``: at each of ``thresholds`` (from the highest down, until false alarms pass
    ``max_fa_per_hour``) the false alarms per hour, miss rate and hit latencies of ``detections_at(threshold)``
    (fire times per stream file, see :func:`score_detections`). Works for any detector: a peer's too."""
    hours = truth["negative_hours"]
    n_true = sum(t["keyword"] == keyword for f in truth["files"] for t in f["keywords"])
    points = []
    for thr in sorted(set(thresholds), reverse=True):
        fa, hits, lat = score_detections(truth, keyword, detections_at(thr))
        points.append({"threshold": thr, "fa_per_hour": fa / hours, "miss_rate": 1 - len(hits) / max(n_true, 1),
                       "false_alarms": fa, "latency_s": lat})
        if fa / hours > max_fa_per_hour:
            break
    return {"instances": n_true, "points": points}


def det_points(run, truth, traces, refractory_ms=None, max_fa_per_hour=20.0):
    """Per keyword, :func:`det_curve` of the detector's smoothed scores: at each threshold, the peaks at or above
    it, one per refractory period, fire when the step after them is known."""
    refractory = (run.detector["refractory_ms"] if refractory_ms is None else refractory_ms) / run.dt_ms
    out = {}
    for j, kw in enumerate(run.classes[1:]):
        peaks = []  # per file: (steps, scores) of every peak
        for trace, _ in traces:
            c = peak_steps(np.concatenate([[-np.inf], trace[:, j], [-np.inf]])) - 1
            peaks.append((c, trace[c, j]))

        def detections_at(thr):
            return [fire[refractory_steps(steps[scores >= thr], refractory)[0]]
                    for (steps, scores), (_, fire) in zip(peaks, traces)]

        scores = np.concatenate([p[1] for p in peaks]) if peaks else np.zeros(0)
        out[kw] = det_curve(truth, kw, scores, detections_at, max_fa_per_hour)
    return out


def poisson_interval(k, hours, level=0.95):
    """Exact (Garwood) confidence interval of a rate from ``k`` events in ``hours``, per hour."""
    from scipy.stats import chi2

    a = (1 - level) / 2
    lo = chi2.ppf(a, 2 * k) / 2 if k > 0 else 0.0
    return lo / hours, chi2.ppf(1 - a, 2 * k + 2) / 2 / hours


def summarize(run, truth, det, rtf):
    """``detect.json``'s content: the streams' summary and :func:`keyword_rows` at the run's thresholds."""
    return {"negative_hours": truth["negative_hours"], "unique_background_minutes": truth["unique_background_minutes"],
            "keyword_clips": truth["keyword_clips"], "keyword_instances": truth["keyword_instances"],
            "snr_db": truth["snr_db"], "real_time_factor": rtf, "encoder": json.loads(run.encoder.to_json()),
            "dt_ms": run.dt_ms, "detector": run.detector,
            "keywords": keyword_rows(det, truth["negative_hours"], run.detector["thresholds"])}


def keyword_rows(det, hours, thresholds):
    """Per keyword of :func:`det_points`' ``det``: the miss rate at :data:`FA_POINTS` false alarms per hour (each
    with a Poisson interval), the latency quantiles at 1 false alarm per hour and at ``thresholds[keyword]``,
    and the DET points."""
    rows = {}
    for kw, d in det.items():
        pts = d["points"]
        row = {"instances": d["instances"], "miss_rate_at": {}, "fa_per_hour_interval_at": {}}
        for x in FA_POINTS:
            ok = [p for p in pts if p["fa_per_hour"] <= x]
            best = ok[-1] if ok else None  # the lowest threshold within the false-alarm rate
            row["miss_rate_at"][f"{x:g}"] = best["miss_rate"] if best else 1.0
            row["fa_per_hour_interval_at"][f"{x:g}"] = poisson_interval(best["false_alarms"] if best else 0, hours)
            if x == 1.0 and best:
                row["threshold_at_1"] = best["threshold"]
                row["latency_s_at_1"] = _quantiles(best["latency_s"])
        at_own = [p for p in pts if p["threshold"] >= thresholds[kw]]
        if at_own:
            p = at_own[-1]
            row["at_run_threshold"] = {"threshold": thresholds[kw], "fa_per_hour": p["fa_per_hour"],
                                       "miss_rate": p["miss_rate"], "latency_s": _quantiles(p["latency_s"])}
        row["det"] = [(p["threshold"], p["fa_per_hour"], p["miss_rate"]) for p in pts]
        rows[kw] = row
    return rows


def _quantiles(values):
    v = np.asarray(values, float)
    return {q: float(np.quantile(v, float(q[1:]) / 100)) for q in ("p10", "p50", "p90")} if v.size else None


def plot_det(curves, path, title):
    """DET curves: ``curves`` maps a label to ``[(fa_per_hour, miss_rate), ...]`` from the highest threshold down,
    or to ``(points, line_style)`` with matplotlib line options (e.g. ``{"ls": "--", "color": "C1"}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    for label, pts in curves.items():  # in threshold order: several thresholds may share one false-alarm rate
        pts, style = pts if isinstance(pts, tuple) else (pts, {})
        ax.step([max(p[0], 0.05) for p in pts], [100 * p[1] for p in pts], where="post", label=label, **style)
    ax.set_xscale("log")
    ax.set_xlim(0.05, 20)
    ax.set_ylim(0, 100)
    ax.axvline(1.0, color="0.7", lw=0.8)
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("miss rate (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2 if len(curves) > 4 else 1)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def detect_eval(run_dir, data, background, out, noise_dir=None, hours=3.0, placements=PLACEMENTS, snr_db=SNR_DB,
                group_by=None, seed=0, progress=True, force=False):
    """Make the test streams (:func:`make_streams`; kept and reused when ``out/truth.json`` was made with the same
    settings), run the detector over them, and write ``out/detect.json`` (:func:`summarize`) and ``out/det.png``."""
    run = Run.load(run_dir)
    if not run.detector:
        raise ValueError(f"{run_dir}: a clip classifier, not a detector (train one with --background)")
    out = Path(out)
    if (out / "detect.json").exists() and not force:
        raise OutputExists(out, "an evaluation (detect.json)")
    wanted = {"sr": STREAM_SR, "snr_db": snr_db, "placements": placements, "seed": seed, "background": [str(b) for b in background],
              "noise_dir": None if noise_dir is None else str(noise_dir)}
    truth = None
    if (out / "truth.json").is_file():
        truth = json.loads((out / "truth.json").read_text())
        if any(truth.get(k) != v for k, v in wanted.items()) or truth["negative_hours"] < hours * 0.999 or \
                not all((out / f["file"]).is_file() for f in truth["files"]):
            truth = None
    if truth is None:
        truth = make_streams(run, data, background, out, noise_dir, hours, placements, snr_db, group_by, seed, progress)
    import soundfile as sf

    streams = (sf.read(out / f["file"], dtype="float32") for f in truth["files"])
    traces, rtf = stream_traces(run, streams, progress)
    det = det_points(run, truth, traces)
    result = summarize(run, truth, det, rtf)
    result["streams"] = str(out / "streams")
    write_json(result, out / "detect.json")
    plot_det({kw: [(p[1], p[2]) for p in r["det"]] for kw, r in result["keywords"].items()}, out / "det.png",
             f"spiketrum detector, {hours:g} h of streams at {snr_db:g} dB SNR")
    return result
