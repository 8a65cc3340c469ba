"""Keyword-spotting datasets (torch ``Dataset`` style): audio clips, their cached spike encodings, batching.

Audio datasets (:class:`FSDD`, :class:`SpeechCommands`, :class:`AudioFolder`) give ``(audio, label)``;
:class:`SpikeDataset` wraps one and gives ``(spikes, label)``; :func:`collate_spikes` batches those.
Spike datasets in the SHD/SSC HDF5 layout (:class:`SpikeFile`, :func:`spike_splits`) give the same items.
"""
from .base import AudioDataset, AudioFolder, Background, NoiseFolder, check_split, data_root, hash_split, locate
from .fsdd import FSDD, fsdd_recordings
from .speech_commands import KEYWORDS, SILENCE, UNKNOWN, SpeechCommands, download_speech_commands
from .shd import SpikeFile, download_spike_corpus, spike_splits, write_spike_corpus
from .spikes import SpikeDataset, collate_spikes

__all__ = ["AudioDataset", "AudioFolder", "Background", "FSDD", "KEYWORDS", "NoiseFolder", "SILENCE", "SpeechCommands", "SpikeDataset",
           "SpikeFile", "UNKNOWN", "check_split", "collate_spikes", "data_root", "hash_split", "locate", "download_speech_commands",
           "download_spike_corpus", "fsdd_recordings", "spike_splits", "write_spike_corpus"]
