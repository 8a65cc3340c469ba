import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("spiketrum", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("spiketrum")


def _data_root():
    env = os.environ.get("SPIKETRUM_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root():
    root = _data_root()
    if not (root / "fsdd" / "recordings").is_dir():
        pytest.skip(f"real audio not found at {root}; set SPIKETRUM_DATA")
    return root


@pytest.fixture(scope="session")
def fsdd_wav(data_root):
    return data_root / "fsdd" / "recordings" / "3_jackson_0.wav"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, data_root):
    """Three FSDD digits, 14 takes each of two speakers, as a folder per class (links, no copies)."""
    root = tmp_path_factory.mktemp("digits")
    rec = data_root / "fsdd" / "recordings"
    for digit in ("0", "1", "7"):
        (root / digit).mkdir()
        for speaker in ("jackson", "theo"):
            for take in range(14):
                os.symlink(rec / f"{digit}_{speaker}_{take}.wav", root / digit / f"{digit}_{speaker}_{take}.wav")
    return root
