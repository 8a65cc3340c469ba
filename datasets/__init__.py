"""Keyword-spotting datasets (torch ``Dataset`` style): audio clips, their cached spike encodings, batching.

Audio datasets (:class:`FSDD`, :class:`SpeechCommands`, :class:`AudioFolder`) give ``(audio, label)``;
:class:`SpikeDataset` wraps one and gives ``(spikes, label)``; :func:`collate_spikes` batches those.
"""
from .base import AudioDataset, AudioFolder, NoiseFolder
from .fsdd import FSDD, data_root, fsdd_recordings
from .speech_commands import KEYWORDS, SILENCE, UNKNOWN, SpeechCommands, download_speech_commands
from .spikes import SpikeDataset, collate_spikes

__all__ = ["AudioDataset", "AudioFolder", "FSDD", "KEYWORDS", "NoiseFolder", "SILENCE", "SpeechCommands", "SpikeDataset",
           "UNKNOWN", "collate_spikes", "data_root", "download_speech_commands", "fsdd_recordings"]
