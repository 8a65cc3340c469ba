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
import time
from pathlib import Path

import numpy as np
import torch

from datasets import AudioDataset, AudioFolder, Background, NoiseFolder, SpikeDataset, collate_spikes, hash_split
from snn.trainer import Detection, TrainConfig, Trainer, rank_and_world, seed_everything, write_json
from spiketrum import make_config
from spiketrum.io import resample

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


def word_bounds(x, sr, frame_ms=10.0, range_db=35.0):
    """``(start, end)`` in seconds of the word in a clip of one word: the first and last ``frame_ms`` frame
    whose energy is within ``range_db`` of the loudest and 10 dB above the quietest decile of frames.

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
    loud = np.flatnonzero(e >= max(e.max() - range_db, np.percentile(e, 10) + 10.0))
    if loud.size == 0:
        return 0.0, len(x) / sr
    return loud[0] * hop / sr, (loud[-1] + 1) * hop / sr


@dataclasses.dataclass
class Event:
    """One detection: the keyword, when the detector fired (seconds from the start of the input, its
    look-ahead included), the smoothed score (0-1) at the peak, and the peak's step (bin) index."""

    keyword: str
    time: float
    score: float
    step: int


def pick_peaks(v, threshold, refractory, last=None):
    """Steps where the smoothed score ``v`` [n] peaks at or above ``threshold``, at least ``refractory`` steps
    after the previous detection (``last``, the step of the one before ``v[0]``, or None).

    A peak is a step higher than the one before and not lower than the one after (the first step of a
    plateau); ``v`` holds one step before its first candidate and one after its last. Returns the
    candidate offsets into ``v`` and the step of the last detection.
    """
    v = np.asarray(v)
    cand = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]) & (v[1:-1] >= threshold)) + 1
    keep = []
    for t in cand:
        if last is None or t - last >= refractory:
            keep.append(t)
            last = t
    return np.array(keep, np.int64), last


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
        first = self._steps - (len(self._tail) - 1) - 1  # the step v[0] is (-1: the virtual step before the stream)
        events = []
        for j, kw in enumerate(self.keywords):
            last = None if self._last[j] is None else self._last[j] - first
            cand, last = pick_peaks(v[:, j], self.thresholds[j], self.refractory_ms / self.run.dt_ms, last)
            self._last[j] = None if last is None else int(last) + first
            events += [Event(kw, self._fire_time(first + t + 2), float(v[t, j]), int(first + t)) for t in cand]
        self._tail = v[-2:]
        return sorted(events, key=lambda e: e.time)

    def _fire_time(self, bins):
        """Seconds into the input when ``bins`` bins of spikes are known: their chunks and the look-ahead heard."""
        enc = self.run.encoder
        need = -(-bins * self._bin // self._chunk) * self._chunk + self._encoder.lookahead
        return min(need, self._heard) / enc.sr


def _thresholds(keywords, given):
    """One threshold per keyword from a number or a ``{keyword: threshold}`` dict."""
    if isinstance(given, dict):
        unknown = sorted(set(given) - set(keywords))
        if unknown:
            raise ValueError(f"no keyword {unknown[0]!r} in this detector (it knows {', '.join(keywords)})")
        out = [float(given.get(k, np.inf)) for k in keywords]
    else:
        out = [float(given)] * len(keywords)
    if any(not (0 <= t <= 1 or t == np.inf) for t in out):
        raise ValueError("thresholds are scores from 0 to 1")
    return out


class DetectionItems(torch.utils.data.Dataset):
    """Training items ``(dense spikes [T, C], (class, start, stop))`` for :class:`~snn.trainer.Detection`.

    The first ``len(clips)`` items are the clips, each read from the clean encoding or (half the reads)
    from one with background mixed in, a keyword clip cut to its word with 0.2-0.8 s of context before
    and 0.3-0.8 s after; then as many windows of ``window`` steps joined from random background items.
    The per-read generator is seeded from numpy's global state, which checkpoints carry.
    """

    def __init__(self, clips, noisy, marks, background, window):
        self.clips, self.noisy, self.marks, self.background, self.window = clips, list(noisy), marks, background, window

    def __len__(self):
        return 2 * len(self.clips)

    def __getitem__(self, i):
        rng = np.random.default_rng(np.random.randint(2**31))
        if i >= len(self.clips):
            return background_window(self.background, self.window, rng), (0, 0, 0)
        src = self.clips if not self.noisy or rng.random() < 0.5 else self.noisy[int(rng.integers(len(self.noisy)))]
        x, k, (a, b) = src[i][0], *self.marks[i]
        if k == 0:
            s = int(rng.integers(max(1, x.shape[0] - self.window + 1)))
            return x[s : s + self.window], (0, 0, 0)
        lo, hi = max(0, a - int(rng.integers(20, 80))), min(x.shape[0], b + int(rng.integers(0, 50)))
        return x[lo:hi], (k, a - lo, b - lo)


def background_window(background, steps, rng):
    """``steps`` steps of random background items joined end to end (a long item: a random part of it)."""
    pieces, total = [], 0
    while total < steps:
        x = background[int(rng.integers(len(background)))][0]
        if x.shape[0] > steps - total:
            s = int(rng.integers(x.shape[0] - (steps - total) + 1))
            x = x[s : s + steps - total]
        pieces.append(x)
        total += x.shape[0]
    return torch.cat(pieces)


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


def marks(audio, dt_ms, sr=DETECT_SR):
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


def calibrate(run, audio, target_fa_per_hour, progress=False):
    """Per keyword, the lowest threshold that fires at most ``target_fa_per_hour`` on ``audio`` (keyword-free
    audio, e.g. :class:`~datasets.Background`'s calibrate part, streamed item after item), and what was
    measured: ``{"thresholds", "hours", "false_alarms"}``. With too little audio for one false alarm at the
    target, the threshold sits just above the highest peak (none fires)."""
    det = Detector(run, thresholds=0.0, refractory_ms=run.detector["refractory_ms"], smooth_ms=run.detector["smooth_ms"])
    det.trace = []
    samples = 0
    for i in range(len(audio)):
        x, sr = audio.load(i)
        x = resample(x, sr, run.encoder.sr) if sr != run.encoder.sr else x
        det.push(x)
        samples += x.size
    det.close()
    trace = np.asarray(det.trace)
    hours = samples / run.encoder.sr / 3600
    targets = _thresholds(det.keywords, target_fa_per_hour)
    refractory = det.refractory_ms / run.dt_ms
    thresholds, alarms = [], []
    for j in range(len(det.keywords)):
        v = np.concatenate([[-np.inf], trace[:, j], [-np.inf]])
        allowed = math.floor(targets[j] * hours + 1e-9)
        peaks = np.sort(v[pick_peaks(v, 0.0, 0)[0]])[::-1]
        t = float(np.nextafter(peaks[0], 2.0)) if peaks.size else 0.5
        for p in peaks:  # lower the threshold while the false alarms stay within the allowance
            if len(pick_peaks(v, p, refractory)[0]) > allowed:
                break
            t = float(p)
        thresholds.append(min(t, 1.0))
        alarms.append(len(pick_peaks(v, t, refractory)[0]))
    return {"thresholds": dict(zip(det.keywords, thresholds)), "hours": hours,
            "false_alarms": dict(zip(det.keywords, alarms))}


def train(data, out, *, keywords=None, background=(), group_by=None, hidden=(256,), dt_ms=10.0,
          config=TrainConfig(epochs=30, patience=10), target_fa_per_hour=1.0, smooth_ms=SMOOTH_MS,
          refractory_ms=REFRACTORY_MS, snr_db=(0.0, 20.0), copies=2, cache_dir=None, jobs=1, progress=True, force=False):
    """Train a streaming keyword detector on a folder per class and background audio; writes the run folder.

    ``keywords`` (default every class) are detected; the other classes, and windows of the ``background``
    audio's train part (:class:`~datasets.Background`), teach the model what is no keyword. Keyword
    clips are learnt in time with the max-pooling loss (:class:`~snn.trainer.Detection`), half of the
    reads with background mixed in at a random SNR in ``snr_db``. The thresholds are then set for
    ``target_fa_per_hour`` (one number, or per keyword) on the background's calibrate part.
    Returns the metrics dict, also written to ``out/metrics.json``.
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
    _thresholds(classes[1:], target_fa_per_hour)  # a keyword the detector does not have fails before any work
    bg_train, bg_cal = (Background(background, p, group_by=group_by) for p in ("train", "calibrate"))
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
    train_set = DetectionItems(clips, noisy, marks(clips.base, dt_ms), bg, window)
    # validation: held-out clips at 10 dB in calibrate-part background, and as many calibrate-part windows
    val_clips = encoded(val_audio, noise=NoiseFolder.from_audio(bg_cal, DETECT_SR), snr_db=10.0, seed=config.seed)
    val_marks = marks(val_clips.base, dt_ms)
    bg_val = encoded(bg_cal)
    g = np.random.default_rng(config.seed)
    val_set = [(val_clips[i][0], (val_marks[i][0], *val_marks[i][1])) for i in range(len(val_clips))]
    val_set += [(background_window(bg_val, window, g), (0, 0, 0)) for _ in range(len(val_clips))]

    seed_everything(config.seed)
    model_kwargs = {"hidden": tuple(hidden), "dt": dt_ms}
    net = build_model("srnn", enc.n_channels, len(classes), **model_kwargs)
    trainer = Trainer(net, train_set, val_set, lambda b: collate_spikes(b), config, run_dir=out, progress=progress,
                      objective=Detection())
    trainer.fit()
    run = Run(trainer.model.cpu().eval(), "srnn", model_kwargs, enc, dt_ms, classes, config.seed,
              {"thresholds": {k: 0.5 for k in classes[1:]}, "smooth_ms": float(smooth_ms),
               "refractory_ms": float(refractory_ms)})
    cal = calibrate(run, bg_cal, target_fa_per_hour)
    run.detector.update(thresholds=cal["thresholds"], target_fa_per_hour=target_fa_per_hour,
                        calibration_hours=cal["hours"])
    metrics = {"task": "detect", "keywords": classes[1:], "classes": classes, "data": str(data),
               "background": [str(b) for b in background], "group_by": group_by,
               "background_minutes": {"train": bg_train.seconds() / 60, "calibrate": bg_cal.seconds() / 60},
               "n_train_clips": len(train_audio), "n_val_clips": len(val_audio),
               "encoder": json.loads(enc.to_json()), "dt_ms": dt_ms, "encoder_latency_s": enc.stream().latency_s,
               "best_val_accuracy": trainer.best_accuracy, "epochs_run": len(trainer.history),
               "calibration": cal, "detector": run.detector, "history": trainer.history,
               "train_config": dataclasses.asdict(config),
               "skipped_files": skipped_files([train_audio, val_audio, bg_train, bg_cal], [clips, val_clips, bg, bg_val])}
    metrics["wall_seconds"] = time.perf_counter() - start
    run.save(out / "model.pt")
    write_json(metrics, out / "metrics.json")
    return metrics


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
                pipe = stdin if stdin is not None else __import__("sys").stdin.buffer
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
