"""Corpus encoding: many files in parallel processes, deterministic shards, and a manifest that makes
re-runs incremental.

Every output is written atomically, and every finished file appends one line to a JSONL manifest in
the output folder (``path``, ``hash``, ``config``, ``n_spikes``, ``status``, ...). A re-run skips each
file whose source bytes and encoder config match its manifest line, so a killed run loses at most
the files in flight, and re-runs give byte-identical outputs. ``shard=(k, N)`` takes the files whose
output path hashes to ``k`` of ``N``: shards can run side by side on any scheduler, with no
coordinator, each with its own manifest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from .io import AudioStream, InputError, OutputError
from .registry import make_config

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3", ".au")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How each file of a corpus is encoded: an encoder name and its options (:func:`~spiketrum.make_config`).

    ``sr`` resamples every file to that rate first; None keeps each file's rate. :meth:`config`
    gives the encoder config at a file's rate.

    Examples
    --------
    >>> Recipe("delta", {"rate": 500, "kernels": 16}).config(8000).n_channels
    32
    """

    method: str = "spiketrum"
    options: dict = dataclasses.field(default_factory=dict)
    sr: int | None = None

    def config(self, file_sr):
        """The encoder config for a file at ``file_sr`` Hz (``ValueError`` if the options do not fit it)."""
        return make_config(self.method, self.sr or file_sr, **self.options)


def collect(inputs, output):
    """(source, destination) pairs: folders are walked recursively and mirrored under ``output``.

    A single file with an ``output`` ending in ``.npz`` is written to exactly that path. Sources that
    differ only in their audio extension (``a.wav`` and ``a.flac``) would share ``a.npz``: each of them
    keeps its extension instead (``a.wav.npz``, ``a.flac.npz``), and a warning says so once. Every other
    file keeps the plain name, so adding a file never renames the outputs of the others.
    """
    out = Path(output)
    single = len(inputs) == 1 and not Path(inputs[0]).is_dir() and out.suffix == ".npz"
    pairs = []
    for inp in map(Path, inputs):
        if inp.is_dir():
            for f in sorted(p for p in inp.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
                pairs.append((f, out / inp.name / f.relative_to(inp).with_suffix(".npz")))
        elif single:
            pairs.append((inp, out))
        elif inp.exists() or inp.suffix:
            pairs.append((inp, out / inp.with_suffix(".npz").name))
        else:
            raise InputError(inp, "no such file or folder")
    return _distinct_outputs(pairs)


def _distinct_outputs(pairs):
    by_output = {}
    for src, dst in pairs:
        by_output.setdefault(dst, []).append(src)
    clashing = sorted(src for sources in by_output.values() if len(sources) > 1 for src in sources)
    if not clashing:
        return pairs
    pairs = [(src, dst.with_name(src.name + ".npz") if len(by_output[dst]) > 1 else dst) for src, dst in pairs]
    seen = {}
    for src, dst in pairs:
        if dst in seen:  # the same file name from two inputs (x/a.wav, y/a.wav given as files)
            raise InputError(src, f"would be written to {dst} as {seen[dst]} is: give the files separate output folders")
        seen[dst] = src
    warnings.warn(f"{len(clashing)} audio files differ from another only in their extension ({', '.join(map(str, clashing[:4]))}"
                  f"{', ...' if len(clashing) > 4 else ''}): their spike files keep the audio extension (name.ext.npz)",
                  stacklevel=3)
    return pairs


def parse_shard(text):
    """``"k/N"`` (1 <= k <= N) as the tuple ``(k, N)``."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"expected a shard as k/N, for example 1/4, got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"shard {text!r}: need 1 <= k <= N (shards are numbered from 1)")
    return k, n


def in_shard(relative_output, shard):
    """Whether an output path (relative to the output folder) belongs to ``shard = (k, N)``."""
    k, n = shard
    digest = hashlib.sha256(Path(relative_output).as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "little") % n == k - 1


def config_digest(cfg):
    return hashlib.sha256(cfg.to_json().encode()).hexdigest()[:16]


def file_digest(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise InputError(path, exc.strerror or type(exc).__name__) from None
    return h.hexdigest()


def manifest_path(root, shard=None):
    return Path(root) / ("manifest.jsonl" if shard is None else f"manifest-{shard[0]}-of-{shard[1]}.jsonl")


def read_manifest(path):
    """The newest line per output of a manifest, or of every manifest in a folder (a torn line is skipped)."""
    path = Path(path)
    entries = {}
    for f in sorted(path.glob("manifest*.jsonl")) if path.is_dir() else [path] if path.is_file() else []:
        with open(f, encoding="utf-8") as lines:
            for line in lines:
                try:
                    e = json.loads(line)
                    entries[e["output"]] = e
                except (ValueError, KeyError, TypeError):
                    continue
    return entries


def _append(path, entry):
    # One write() of a whole line to an O_APPEND file: a crash leaves whole lines, at worst a torn last one.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


def _compact(path, entries):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for key in sorted(entries):
            f.write(json.dumps(entries[key], sort_keys=True) + "\n")
    os.replace(tmp, path)


def _done(prior, digest, dst, recipe):
    """Whether a manifest line shows ``dst`` encoded from these source bytes with this recipe (a damaged
    line just means encoding again)."""
    try:
        return (prior["status"] == "ok" and prior["hash"] == digest and Path(dst).is_file()
                and prior["config"] == config_digest(recipe.config(int(prior["file_sr"]))))
    except (KeyError, TypeError, ValueError):
        return False


def encode_one(src, dst, recipe, output=None, prior=None):
    """Encode one file to ``dst`` unless ``prior`` (its manifest line) shows it done; returns its new line.

    Bad input never raises: the line's ``status`` is ``"failed"`` and ``error`` says why, in one line.
    """
    entry = {"path": Path(src).as_posix(), "output": Path(output or dst).as_posix(), "status": "failed"}
    try:
        entry["hash"] = file_digest(src)
        if _done(prior, entry["hash"], dst, recipe):
            return {**prior, "path": entry["path"], "skipped": True}
        with AudioStream(src) as f:
            file_sr, frames = f.sr, f.frames
        cfg = recipe.config(file_sr)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # the encoder's own words (silence, or why no spikes) are kept below
            st = cfg.encode_file(src)  # spiketrum streams files at its rate: memory does not grow with the audio
        try:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError.from_os_error(Path(dst).parent, exc, "cannot create the output folder") from None
        st.save(dst)
        entry.update(status="ok", config=config_digest(cfg), file_sr=file_sr, n_spikes=len(st),
                     seconds=round(frames / file_sr, 6))
        said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        if said:
            entry["warning"] = said[0]
    except (ValueError, OSError) as exc:
        if isinstance(exc, (InputError, OutputError)):
            message = str(exc)
        elif isinstance(exc, OSError):
            message = str(OutputError.from_os_error(exc.filename or dst, exc, "cannot write"))
        else:
            message = f"{src}: {exc}"
        entry["error"] = message.split("\n")[0]
    return entry


def encode_corpus(pairs, output, recipe, jobs=1, shard=None, progress=True, log=print):
    """Encode ``(source, destination)`` pairs under the folder ``output``, incrementally and in parallel.

    Parameters
    ----------
    pairs : list of (path, path)
        From :func:`collect`; destinations lie under ``output``.
    output : path
        Holds the outputs and the manifest.
    recipe : Recipe
    jobs : int
        Worker processes (spawned). ``1`` encodes in this process.
    shard : (int, int), optional
        Only this ``(k, N)`` share of the pairs.
    log : callable
        Takes one-line messages (errors, warnings).

    Returns
    -------
    dict
        ``encoded``, ``skipped``, ``failed`` (list of messages), ``files``, ``audio_seconds`` (of the
        files encoded now), ``wall_seconds``.
    """
    from tqdm import tqdm

    root = Path(output)
    if shard is not None:
        pairs = [(s, d) for s, d in pairs if in_shard(Path(d).relative_to(root), shard)]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(root, "is a file, not an output folder") from None
    except OSError as exc:
        raise OutputError.from_os_error(root, exc, "cannot create the output folder") from None
    mine = manifest_path(root, shard)
    entries = read_manifest(mine)
    prior = {**read_manifest(root), **entries}  # this run's own manifest has the last word
    summary = {"encoded": 0, "skipped": 0, "failed": [], "files": len(pairs), "audio_seconds": 0.0}
    start = time.perf_counter()
    tasks = []
    for s, d in pairs:
        rel = Path(d).relative_to(root).as_posix()
        tasks.append((s, d, recipe, rel, prior.get(rel)))

    def record(e):
        if e.pop("skipped", False):
            summary["skipped"] += 1
        elif e["status"] == "ok":
            summary["encoded"] += 1
            summary["audio_seconds"] += e["seconds"]
            if "warning" in e:
                log(f"warning: {e['path']}: {e.pop('warning')}")
            _append(mine, e)
        else:
            summary["failed"].append(e["error"])
            log(f"error: {e['error']}")
            _append(mine, e)
        entries[e["output"]] = e
        bar.update()

    with tqdm(total=len(tasks), desc="encode", unit="file", disable=not progress or len(tasks) < 2) as bar:
        try:
            if jobs == 1 or len(tasks) < 2:
                for t in tasks:
                    record(encode_one(*t))
            else:
                _in_pool(tasks, jobs, record)
        finally:  # even after an interruption, the manifest is left whole and compact
            _compact(mine, entries)
    summary["wall_seconds"] = time.perf_counter() - start
    return summary


def _in_pool(tasks, jobs, record):
    """Run :func:`encode_one` over ``tasks`` in ``jobs`` spawned processes, passing each line to ``record``.

    A bounded window of submissions keeps memory flat on huge corpora. If a worker dies (killed, out of memory),
    the files in flight are recorded as failed (a re-run retries them) and a fresh pool takes the rest.
    """
    from concurrent.futures.process import BrokenProcessPool

    todo = iter(tasks)
    while True:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            running = {}
            while True:
                for t in todo:
                    running[pool.submit(encode_one, *t)] = t
                    if len(running) >= 4 * jobs:
                        break
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                try:
                    for fut in done:
                        record(fut.result())
                        running.pop(fut)
                except BrokenProcessPool:
                    for t in running.values():
                        record({"path": Path(t[0]).as_posix(), "output": t[3], "status": "failed",
                                "error": f"{t[0]}: the worker process encoding it died (out of memory?)"})
                    break

