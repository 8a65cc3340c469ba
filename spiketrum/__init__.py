"""spiketrum: cochlea-like audio-to-spike encoding by matching pursuit over gammatone kernels.

Every encoder is a config object (:class:`SpiketrumConfig`, the :mod:`~spiketrum.baselines`),
registered by name in :data:`ENCODERS`; :func:`make_config` builds one from a name, and
:func:`encode` is the short way to encode an array.
"""
__version__ = "0.1.0"

# Importing the encoder modules registers their configs (spiketrum first: it leads every list of names).
from .encoder import SpiketrumConfig
from . import baselines, metrics  # noqa: E402, I001
from .baselines import BaselineConfig, BSAConfig, DeltaConfig, LIFConfig, PoissonConfig
from .io import InputError, load_audio
from .registry import ENCODERS, EncoderConfig, config_from_json, decode, encode, make_config
from .spiketrain import SpikeTrain

__all__ = ["ENCODERS", "BSAConfig", "BaselineConfig", "DeltaConfig", "EncoderConfig", "InputError", "LIFConfig",
           "PoissonConfig", "SpikeTrain", "SpiketrumConfig", "baselines", "config_from_json", "decode", "encode",
           "load_audio", "make_config", "metrics"]
