"""Encoder configs: their common base, the registry of encoder names, and the one factory.

Every encoder is a frozen dataclass deriving from :class:`EncoderConfig`. The config is the
encoder: it encodes (:meth:`~EncoderConfig.encode`), decodes (:meth:`~EncoderConfig.decode`) and
describes its channel layout, and its JSON (saved with every spike file, model and cache entry)
names the encoder, so code dispatches on the config object, never on a name string.

Import order inside the package is one-way: ``io -> registry -> spiketrain -> metrics ->
encoder, baselines -> corpus, perturb, plot``. Encoder modules register their classes with
:func:`register` when imported; ``import spiketrum`` imports them all, so the registry is full
whenever any ``spiketrum`` module is in use.
"""
from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import numpy as np

from cochlea import cochleagram, erb_space

from .io import as_audio, check_sample_rate, load_audio, resample

#: Encoder name -> config class; filled by :func:`register`.
ENCODERS: dict[str, type] = {}

#: Version of every config's JSON. 1: the 0.1 layout (a ``"method"`` key, baselines' ``"channels"``);
#: 2: an ``"encoder"`` key naming the registered class, and ``"kernels"`` for every encoder's places.
CONFIG_VERSION = 2

# The hair-cell compression of the envelope domain every encoder is compared in (the cochleagram's default).
ENVELOPE_EXPONENT = 0.3


def register(name):
    """Class decorator: make ``name`` select this config class in :func:`make_config` and JSON."""

    def add(cls):
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is registered twice")
        cls.name = name
        ENCODERS[name] = cls
        return cls

    return add


class EncoderConfig:
    """Base of every encoder config (a frozen dataclass with at least ``sr``, ``fmin`` and ``fmax``).

    Subclasses implement :meth:`_encode` (audio already at ``sr``), :meth:`decode`, and the
    place layout that :class:`~spiketrum.SpikeTrain` reads: ``kernels`` places, ``levels`` intensity
    levels per place, and ``polarity_channels`` (polarity coded by place, doubling the channels).
    """

    name: ClassVar[str] = ""
    #: Whether this config encodes audio (False: it only describes spikes that came from elsewhere, see
    #: :class:`SpikeInputConfig`); only audio encoders are offered by name (:func:`audio_encoders`).
    encodes_audio: ClassVar[bool] = True
    #: Whether :meth:`decode` gives back the waveform (else an envelope code: compare envelopes, not waveforms).
    codes_waveform: ClassVar[bool] = False
    sr: int
    kernels: int
    levels: int
    polarity_channels: bool

    # -- layout -------------------------------------------------------------------------------------
    @property
    def n_channels(self):
        """Output channels: ``kernels x levels``, times 2 when polarity is coded by place."""
        return self.kernels * self.levels * (2 if self.polarity_channels else 1)

    @property
    def resolved_fmax(self):
        return float(self.fmax) if self.fmax is not None else min(8000.0, 0.45 * self.sr)

    def center_freqs(self):
        return erb_space(self.fmin, self.resolved_fmax, self.kernels)

    def for_training(self):
        """The config whose channel layout SNNs are trained on (this one unless a subclass says otherwise)."""
        return self

    # -- encoding -------------------------------------------------------------------------------------
    def encode(self, x, sr):
        """Encode mono audio ``x`` sampled at ``sr`` Hz; audio at another rate than ``self.sr`` is resampled.

        Integer arrays are scaled to [-1, 1) as soundfile reads them (int16 / 2**15, int32 / 2**31,
        uint8 (x - 128) / 2**7); float arrays are taken as they are.

        Returns
        -------
        SpikeTrain
        """
        x, sr = as_audio(x), check_sample_rate(sr)
        if sr != self.sr:
            x = resample(x, sr, self.sr).astype(np.float64)
        return self._encode(x)

    def encode_file(self, path):
        """Encode an audio file: ``self.encode(*load_audio(path))``, so equal to encoding its samples."""
        return self.encode(*load_audio(path))

    def _encode(self, x):
        raise NotImplementedError

    def decode(self, spike_train, exact=False):
        """Audio of length ``spike_train.n_samples`` reconstructed from the spikes."""
        raise NotImplementedError

    # -- envelope domain ------------------------------------------------------------------------------
    def envelope_bank(self):
        """(centre frequencies, frame_ms) of the cochleagram this code is compared in.

        Defaults to 40 ERB-spaced channels from 50 Hz to min(8 kHz, 0.45 sr) and 25 ms frames; envelope
        codes override it with their own channels.
        """
        return erb_space(50.0, min(8000.0, 0.45 * self.sr), 40), 25.0

    def decode_envelope(self, spike_train, hop_ms=10.0):
        """Linear cochleagram ``[channels, 1 + n_samples // hop]`` of the decoded audio (exact amplitudes)."""
        return envelope_cochleagram(self.decode(spike_train, exact=True), self.sr, *self.envelope_bank(), hop_ms)

    # -- files ----------------------------------------------------------------------------------------
    def to_json(self):
        """JSON of every field, with the encoder's name and the config version."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return json.dumps({"encoder": self.name, "config_version": CONFIG_VERSION, **d}, sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        """The config from a JSON object of this class (unknown keys are ignored, lists become tuples)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})

    @classmethod
    def from_json(cls, text):
        cfg = config_from_json(text)
        if not isinstance(cfg, cls):
            raise ValueError(f"the JSON describes a {type(cfg).__name__}, not a {cls.__name__}")
        return cfg


def envelope_cochleagram(x, sr, center_freqs, frame_ms, hop_ms):
    """Linear cochleagram in the envelope domain shared by every encoder (float64)."""
    return cochleagram(x, sr, center_freqs=center_freqs, frame_ms=frame_ms, hop_ms=hop_ms, db=False,
                       exponent=ENVELOPE_EXPONENT).astype(np.float64)


def audio_encoders():
    """Names of the registered encoders that encode audio (every one but :class:`SpikeInputConfig`)."""
    return [name for name, cls in ENCODERS.items() if cls.encodes_audio]


#: What a model trained on spike-dataset input answers when asked to encode audio.
NO_AUDIO_ENCODER = "this model was trained on spike-dataset input; it has no audio encoder"


@register("spike-input")
@dataclasses.dataclass(frozen=True)
class SpikeInputConfig(EncoderConfig):
    """The input of a model trained on a spike dataset (SHD, SSC, a corpus file written by
    :func:`datasets.shd.write_spike_corpus`): its channel layout and where the spikes came from, with no
    audio encoder. It stands where an encoder config stands in a run's ``model.pt``; :meth:`encode` refuses.

    Parameters
    ----------
    kernels : int
        Places (SHD and SSC: 700 cochlea channels; a written corpus: its encoder's kernels).
    levels : int
        Channels per place (a written corpus: its encoder's levels): with ``polarity_channels``, the
        features a convolutional model takes per place (``in_maps``).
    polarity_channels : bool
    corpus : str
        The corpus's name (``"shd"``, ``"ssc"``, or the prefix of a written corpus's files).
    source : str
        JSON of the encoder that made a written corpus's spikes; empty for SHD and SSC.
    """

    kernels: int
    levels: int = 1
    polarity_channels: bool = False
    corpus: str = ""
    source: str = ""

    encodes_audio: ClassVar[bool] = False
    sr: ClassVar = None

    def __post_init__(self):
        for k in ("kernels", "levels"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"SpikeInputConfig: {k} must be a positive integer, got {v!r}")

    def encode(self, x, sr):
        """Refuses: ValueError :data:`NO_AUDIO_ENCODER`."""
        raise ValueError(NO_AUDIO_ENCODER)

    def encode_file(self, path):
        raise ValueError(NO_AUDIO_ENCODER)

    def decode(self, spike_train, exact=False):
        raise ValueError("spike-dataset input has no encoder to decode it with")


def _lookup(name):
    try:
        return ENCODERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}") from None


def make_config(name, sr, **options):
    """The config of encoder ``name`` at ``sr`` Hz: the one way to build an encoder from a name.

    Parameters
    ----------
    name : str
        A registered encoder: ``"spiketrum"``, ``"delta"``, ``"lif"``, ``"bsa"`` or ``"poisson"``.
    sr : int
        Sample rate in Hz (an integral float such as 8000.0 is accepted).
    **options
        Fields of that encoder's config. An option set to None means the encoder's default (so one set
        of command-line options serves every encoder); an option the encoder does not have is a
        ``ValueError`` naming it.

    Examples
    --------
    >>> make_config("spiketrum", 16000, rate=1000).n_channels
    240
    >>> make_config("delta", 16000, rate=1000, kernels=16).n_channels
    32
    >>> make_config("lif", 8000, rate=100, levels=3)
    Traceback (most recent call last):
    ValueError: the lif encoder has no option levels
    """
    cls = _lookup(name)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(options.keys() - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"the {name} encoder has no option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    return cls(sr=check_sample_rate(sr), **options)


def encode(x, sr, *, method="spiketrum", **options):
    """Encode audio into a spike train: the convenient entry, ``make_config(method, sr, **options).encode(x, sr)``.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,)
        Mono audio; integer arrays are scaled to [-1, 1) as soundfile reads them.
    sr : int
        Sample rate in Hz.
    method : str
        A registered encoder (:data:`ENCODERS`): ``"spiketrum"`` (:class:`~spiketrum.SpiketrumConfig`)
        or a baseline at the same exact spike count (``"delta"``, ``"lif"``, ``"bsa"``, ``"poisson"``,
        :mod:`spiketrum.baselines`).
    **options
        That encoder's config fields, e.g. ``rate`` (spikes/s), ``n_spikes``, ``kernels``, ``levels``.

    Returns
    -------
    SpikeTrain

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> st = encode(x, 16000, rate=1000)
    >>> len(st), st.n_channels
    (500, 240)
    >>> len(encode(x, 16000, rate=1000, method="delta"))
    500
    """
    return make_config(method, sr, **options).encode(x, sr)


def _upgrade(d):
    """A version-1 config dict (``"method"`` key, baselines' ``"channels"``) in the current layout."""
    d = dict(d)
    d["encoder"] = d.pop("method", "spiketrum")
    if "channels" in d:
        d["kernels"] = d.pop("channels")
    return d


def config_from_json(text):
    """The config saved as ``text`` (by any :meth:`EncoderConfig.to_json`, this version or earlier).

    Examples
    --------
    >>> cfg = make_config("poisson", 8000, rate=500, seed=3)
    >>> config_from_json(cfg.to_json()) == cfg
    True
    >>> config_from_json('{"method": "delta", "sr": 8000, "rate": 100, "channels": 8}').kernels  # a 0.1 file
    8
    """
    d = json.loads(text)
    if not isinstance(d, dict):
        raise ValueError("the encoder config is not a JSON object")
    version = d.get("config_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > CONFIG_VERSION:
        raise ValueError(f"encoder config version {version!r} is newer than this spiketrum reads ({CONFIG_VERSION}); "
                         "upgrade spiketrum")
    if version < 2:
        d = _upgrade(d)
    return _lookup(d.get("encoder")).from_dict(d)


def decode(spike_train, exact=False):
    """Audio reconstructed from any spike train, by its own encoder config.

    ``exact=True`` uses each spike's exact amplitude where the code keeps one (spiketrum's "code
    set"); otherwise what the spikes alone carry.

    Examples
    --------
    >>> import numpy as np
    >>> from spiketrum import encode
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> decode(encode(x, 8000, rate=500)).shape
    (4000,)
    """
    return spike_train.config.decode(spike_train, exact=exact)
