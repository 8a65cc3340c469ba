"""The application layer: the ``spiketrum`` commands and the runs behind them.

It sits above the libraries and is the only part that joins them: audio and datasets
(:mod:`spiketrum`, :mod:`datasets`) on one side, spike-tensor networks (:mod:`snn`) on the other.
``import spiketrum`` never loads it.

- :mod:`spiketrum.app.cli`: the command line (``spiketrum COMMAND``).
- :mod:`spiketrum.app.kws`: train, evaluate and predict keyword spotters; run folders.
- :mod:`spiketrum.app.robustness`: accuracy under spike loss, jitter, spurious spikes and noise.
- :mod:`spiketrum.app.continual`: a task sequence on one network, every continual-learning method.
- :mod:`spiketrum.app.demo`: ``make demo``.
"""
