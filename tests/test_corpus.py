"""Corpus encoding: parallel jobs, shards, the manifest, kills, and streaming long files."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from spiketrum import SpikeTrain, SpiketrumConfig, load_audio
from spiketrum.corpus import in_shard, parse_shard, read_manifest


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "spiketrum.app", *map(str, args)], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_root):
    """16 FSDD clips in two folders and 4 Speech Commands clips (16 kHz), copied so they can be edited."""
    root = tmp_path_factory.mktemp("c") / "corpus"
    rec = data_root / "fsdd" / "recordings"
    for i, f in enumerate(sorted(rec.glob("*_theo_1*.wav"))[:16]):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f"d{i % 2}" / f.name)
    sc = sorted((data_root / "speech_commands_sample").rglob("*.wav"))[:4]
    (root / "sc").mkdir()
    for f in sc:
        shutil.copy(f, root / "sc" / f"{f.parent.name}_{f.name}")
    return root


def tree(out):
    """{relative path: bytes} of every spike file under ``out``."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.npz"))}


def test_jobs_and_shards_give_the_same_bytes_as_one_process(corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli("encode", corpus, "-o", one, "--rate", 400, "-q").returncode == 0
    r = cli("encode", corpus, "-o", two, "--rate", 400, "--jobs", 2, "-q")
    assert r.returncode == 0 and "encoded 20," in r.stdout and "audio h/min" in r.stdout
    ref = tree(one)
    assert len(ref) == 20 and tree(two) == ref
    assert (one / "manifest.jsonl").read_bytes() == (two / "manifest.jsonl").read_bytes()
    sharded = tmp_path / "sharded"
    for k in (1, 2, 3):
        assert cli("encode", corpus, "-o", sharded, "--rate", 400, "--shard", f"{k}/3", "-q").returncode == 0
    parts = [set(read_manifest(sharded / f"manifest-{k}-of-3.jsonl")) for k in (1, 2, 3)]
    assert all(parts) and sum(map(len, parts)) == 20 and set().union(*parts) == set(ref)  # disjoint, complete
    assert tree(sharded) == ref
    for line in read_manifest(one / "manifest.jsonl").values():
        st = SpikeTrain.load(one / line["output"])
        assert line["status"] == "ok" and line["n_spikes"] == len(st) == round(400 * st.duration)
    assert not list(tmp_path.rglob(".tmp-*")) and not list(tmp_path.rglob("*.tmp-*"))


def test_shards_are_deterministic_and_cover_everything():
    names = [f"corpus/x/{i}.npz" for i in range(1000)]
    owners = [[k for k in range(1, 5) if in_shard(n, (k, 4))] for n in names]
    assert all(len(o) == 1 for o in owners)
    counts = np.bincount([o[0] for o in owners], minlength=5)[1:]
    assert counts.min() > 200  # roughly even
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    r = cli("encode", "a.wav", "-o", "out", "--shard", "0/2")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "shard" in r.stderr


def test_manifest_makes_reruns_incremental(corpus, tmp_path):
    src = tmp_path / "corpus"
    shutil.copytree(corpus, src)
    out = tmp_path / "out"
    assert cli("encode", src, "-o", out, "--rate", 300, "-q").returncode == 0
    first = tree(out)
    r = cli("encode", src, "-o", out, "--rate", 300, "-q")
    assert "encoded 0, skipped 20" in r.stdout and tree(out) == first
    changed = next(src.glob("d0/*.wav"))
    x, sr = sf.read(changed)
    sf.write(changed, 0.5 * x, sr, subtype="PCM_16")  # new content under the same name
    r = cli("encode", src, "-o", out, "--rate", 300, "-q")
    assert "encoded 1, skipped 19" in r.stdout
    key = f"corpus/d0/{changed.stem}.npz"
    assert tree(out)[key] != first[key] and all(v == first[k] for k, v in tree(out).items() if k != key)
    r = cli("encode", src, "-o", out, "--rate", 200, "-q")  # another config
    assert "encoded 20, skipped 0" in r.stdout
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 20 and all(json.loads(l)["status"] == "ok" for l in lines)  # compacted: one line per file


def test_a_failed_file_is_listed_and_retried(corpus, tmp_path):
    src = tmp_path / "corpus"
    shutil.copytree(corpus, src)
    (src / "d0" / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    out = tmp_path / "out"
    r = cli("encode", src, "-o", out, "--rate", 300, "--jobs", 2, "-q")
    assert r.returncode == 2 and "failed 1 of 21" in r.stdout
    assert [l for l in r.stderr.splitlines() if "error" in l] == [l for l in r.stderr.splitlines() if "broken.wav" in l]
    entry = read_manifest(out)["corpus/d0/broken.npz"]
    assert entry["status"] == "failed" and "not a readable audio file" in entry["error"]
    (src / "d0" / "broken.wav").unlink()
    shutil.copy(next(src.glob("d1/*.wav")), src / "d0" / "broken.wav")  # fixed
    r = cli("encode", src, "-o", out, "--rate", 300, "-q")
    assert r.returncode == 0 and "encoded 1, skipped 20" in r.stdout


def test_sigkill_mid_corpus_then_rerun_gives_the_uninterrupted_bytes(corpus, tmp_path):
    ref = tmp_path / "ref"
    assert cli("encode", corpus, "-o", ref, "--rate", 2000, "-q").returncode == 0
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "spiketrum.app", "encode", str(corpus), "-o", str(out), "--rate", "2000",
                          "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.npz"))) < 5 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed = len(list(out.rglob("*.npz")))
    torn = {p for p in out.rglob("*") if ".tmp-" in p.name}  # a write the kill cut short, if it landed there
    assert 5 <= killed < 20, "the kill should land mid-corpus"
    assert all(SpikeTrain.load(f) for f in out.rglob("*.npz"))  # whatever is there is whole
    r = cli("encode", corpus, "-o", out, "--rate", 2000, "-q")
    # a file saved just before the kill may miss its manifest line: it is encoded again, to the same bytes
    assert r.returncode == 0 and (f"skipped {killed} " in r.stdout or f"skipped {killed - 1} " in r.stdout)
    assert tree(out) == tree(ref)
    assert (out / "manifest.jsonl").read_bytes() == (ref / "manifest.jsonl").read_bytes()
    assert {p for p in out.rglob("*") if ".tmp-" in p.name} == torn  # the re-run leaves no temporary file


def test_streamed_encoding_equals_whole_file_encoding(data_root, tmp_path):
    clips = [load_audio(f)[0] for f in sorted((data_root / "fsdd" / "recordings").glob("5_lucas_*.wav"))[:12]]
    x = np.concatenate(clips)
    path = tmp_path / "long.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    for cfg in (SpiketrumConfig(sr=8000, rate=800, chunk_s=0.7), SpiketrumConfig(sr=8000, rate=500, frame_ms=10, chunk_s=1.0),
                SpiketrumConfig(sr=8000, snr_db=12, chunk_s=0.9, mode="exact")):
        streamed, whole = cfg.encode_file(path), cfg.encode(x, 8000)
        assert len(streamed) > 0 and streamed == whole
    cfg = SpiketrumConfig(sr=16000, rate=100)  # a file at another rate is loaded whole and resampled
    assert cfg.encode_file(path) == cfg.encode(x, 8000)


_PEAK = """
import resource, sys
from spiketrum import SpiketrumConfig
st = SpiketrumConfig(sr=8000, rate=float(sys.argv[2])).encode_file(sys.argv[1])
print(len(st), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _long_file(path, minutes, clips):
    """``minutes`` of real speech at 8 kHz, written in pieces (the test never holds it whole)."""
    with sf.SoundFile(path, "w", 8000, 1, subtype="PCM_16") as f:
        n, i = 0, 0
        while n < minutes * 60 * 8000:
            f.write(clips[i % len(clips)])
            n += clips[i % len(clips)].size
            i += 1


def test_streaming_memory_does_not_grow_with_the_audio(data_root, tmp_path):
    clips = [load_audio(f)[0] for f in sorted((data_root / "fsdd" / "recordings").glob("*_yweweler_2*.wav"))]
    peaks = {}
    for minutes in (10, 60):
        path = tmp_path / f"{minutes}.wav"
        _long_file(path, minutes, clips)
        r = subprocess.run([sys.executable, "-c", _PEAK, str(path), "50"], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        n, kib = map(int, r.stdout.split())
        assert n == round(50 * sf.info(str(path)).duration)
        peaks[minutes] = kib * 1024
        path.unlink()
    hour_of_audio = 60 * 60 * 8000 * 8  # float64 samples, what whole-file encoding holds
    assert peaks[60] - peaks[10] < 0.15 * hour_of_audio, peaks


def test_a_damaged_manifest_only_costs_re_encoding(corpus, tmp_path):
    out = tmp_path / "out"
    assert cli("encode", corpus / "d0", "-o", out, "--rate", 300, "-q").returncode == 0
    ref = tree(out)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    broken = json.loads(lines[0])
    broken.pop("file_sr")
    (out / "manifest.jsonl").write_text("\n".join([json.dumps(broken), "[1, 2]", '"text"', *lines[1:], '{"output": "d0/x'])
                                        + "\n")
    r = cli("encode", corpus / "d0", "-o", out, "--rate", 300, "-q")
    assert r.returncode == 0 and "encoded 1, skipped 7" in r.stdout and tree(out) == ref
