"""spiketrum: cochlea-like audio-to-spike encoding by matching pursuit over gammatone kernels."""
__version__ = "0.1.0"

from . import metrics
from .encoder import SpiketrumConfig, decode, encode, encode_with
from .io import InputError, load_audio
from .spiketrain import SpikeTrain

__all__ = ["SpikeTrain", "SpiketrumConfig", "decode", "encode", "encode_with", "metrics", "load_audio", "InputError"]
