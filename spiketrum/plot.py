"""Spikegram: a spike train drawn as a place-by-time raster under its waveform."""
from __future__ import annotations

import numpy as np


def plot_spikegram(st, x=None, *, reconstruction=False, fig=None, title=None):
    """Draw ``st`` as a raster (time across, kernel centre frequency up) below a waveform panel.

    Each spike sits on its kernel's row, offset within the row by its intensity level; red marks
    positive and blue negative polarity, and larger markers higher levels. The top panel shows
    ``x`` when given (the source audio), and the reconstruction from the spikes when
    ``reconstruction`` is set or no source is given.

    Returns the matplotlib ``Figure``.

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from spiketrum import encode
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> fig = plot_spikegram(encode(x, 8000, rate=500), x, reconstruction=True)
    >>> len(fig.axes)
    2
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    cfg = st.config
    if x is not None and np.asarray(x).shape != (st.n_samples,):
        raise ValueError(f"source has shape {np.asarray(x).shape}, the spike train encodes {st.n_samples} samples")
    if fig is None:
        fig = plt.figure(figsize=(9, 5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 3))
    t = np.arange(st.n_samples) / st.sr
    if x is not None:
        top.plot(t, x, color="0.3", lw=0.6, label="source")
    if reconstruction or x is None:
        top.plot(t, cfg.decode(st), color="tab:orange", lw=0.6, alpha=0.8, label="from spikes")
    top.legend(loc="upper right", fontsize="small")
    top.set_ylabel("amplitude")
    row = st.kernel + (st.level + 0.5) / cfg.levels - 0.5
    pos = st.polarity > 0
    size = 2 + 6 * (st.level + 1) / cfg.levels
    bottom.scatter(st.times[pos], row[pos], s=size[pos], c="tab:red", marker="|", lw=0.8, label="positive")
    bottom.scatter(st.times[~pos], row[~pos], s=size[~pos], c="tab:blue", marker="|", lw=0.8, label="negative")
    cf = cfg.center_freqs()
    ticks = np.linspace(0, cfg.kernels - 1, min(cfg.kernels, 6)).round().astype(int)
    bottom.set_yticks(ticks, [f"{cf[i]:.0f}" for i in ticks])
    bottom.set_ylim(-0.6, cfg.kernels - 0.4)
    bottom.set_xlim(0, st.duration)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("kernel centre frequency (Hz)")
    key = [Line2D([], [], color=c, marker="|", ls="", markersize=8, label=f"{name} polarity")
           for c, name in (("tab:red", "positive"), ("tab:blue", "negative"))]
    key += [Line2D([], [], color="0.4", marker="|", ls="", markersize=np.sqrt(2 + 6 * (lv + 1) / cfg.levels) * 2,
                   label=f"level {lv + 1} of {cfg.levels}") for lv in range(min(cfg.levels, 5))]
    bottom.legend(handles=key, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", frameon=False,
                  title="colour: polarity\nsize and row offset:\nlevel", title_fontsize="x-small", alignment="left")
    top.set_title(title or f"{len(st)} spikes, {len(st) / st.duration:.0f} spikes/s, {st.n_channels} channels ({cfg.name})")
    return fig
