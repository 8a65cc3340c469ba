"""cochlea: ERB scale, gammatone filterbank, hair cells and cochleagrams (numba-accelerated)."""
from .erb import erb_bandwidth, erb_rate_to_hz, erb_space, hz_to_erb_rate, vtlp_warp
from .filterbank import GammatoneFilterbank, gammatone_kernels, gammatone_sos
from .haircell import cochleagram, hair_cell, plot_cochleagram

__all__ = [
    "erb_bandwidth",
    "erb_rate_to_hz",
    "erb_space",
    "hz_to_erb_rate",
    "vtlp_warp",
    "GammatoneFilterbank",
    "gammatone_kernels",
    "gammatone_sos",
    "hair_cell",
    "cochleagram",
    "plot_cochleagram",
]
