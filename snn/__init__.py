"""Spiking neural networks with fused multi-step neurons (numba on CPU, torch on CUDA).

Layout is time-major ``[T, B, N]`` throughout. :mod:`snn.functional` holds the pure sequence
functions, :mod:`snn.layers` the modules, :mod:`snn.models` the classifiers.
"""
from . import functional
from .layers import ALIF, LI, LIF, RALIF, RLIF, DelayedLinear, SEAdLIF, SpikingConv1d
from .models import SRNN, Activity, ConvSNN, DelaySNN, Ensemble, SEAdLIFSNN, record_activity

__all__ = ["functional", "LIF", "ALIF", "RLIF", "RALIF", "LI", "SEAdLIF", "DelayedLinear", "SpikingConv1d", "SRNN",
           "ConvSNN", "SEAdLIFSNN", "DelaySNN", "Ensemble", "Activity", "record_activity"]
