"""Keyword-spotting datasets (torch ``Dataset`` style): audio clips, their cached spike encodings, batching.

Audio datasets (:class:`FSDD`, :class:`SpeechCommands`, :class:`AudioFolder`) give ``(audio, label)``;
:class:`SpikeDataset` wraps one and gives ``(spikes, label)``; :func:`collate_spikes` batches those.
"""
from .base import AudioDataset, AudioFolder, Background, NoiseFolder, check_split, data_root, hash_split, locate
from .fsdd import FSDD, fsdd_recordings
from .speech_commands import KEYWORDS, SILENCE, UNKNOWN, SpeechCommands, download_speech_commands
from .spikes import SpikeDataset, collate_spikes

__all__ = ["AudioDataset", "AudioFolder", "Background", "FSDD", "KEYWORDS", "NoiseFolder", "SILENCE", "SpeechCommands", "SpikeDataset",
           "UNKNOWN", "check_split", "collate_spikes", "data_root", "hash_split", "locate", "download_speech_commands", "fsdd_recordings"]
