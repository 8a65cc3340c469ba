"""What the figures tell a reader: keys for every encoding of the marks, honest axis labels."""
import matplotlib
import numpy as np

matplotlib.use("Agg")

from cochlea import cochleagram, erb_space, plot_cochleagram  # noqa: E402
from spiketrum import encode  # noqa: E402
from spiketrum.plot import plot_spikegram  # noqa: E402


def test_spikegram_has_a_key_for_polarity_and_level():
    x = np.random.default_rng(0).standard_normal(4000)
    fig = plot_spikegram(encode(x, 8000, rate=500, levels=3), x)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["positive polarity", "negative polarity", "level 1 of 3", "level 2 of 3", "level 3 of 3"]


def test_cochleagram_colour_bar_does_not_claim_sound_level():
    x = np.sin(2 * np.pi * 500 * np.arange(8000) / 8000)
    cf = erb_space(50, 3600, 16)
    img = plot_cochleagram(cochleagram(x, 8000, center_freqs=cf), 8000, cf)
    label = img.colorbar.ax.get_ylabel()
    assert label != "dB" and "hair-cell" in label


def test_confusion_figure_of_few_classes_holds_its_whole_title(tmp_path):
    import matplotlib.image

    from spiketrum.app.kws import plot_confusion, split_kind

    title = f"folder, {split_kind('folder', 'official')}: srnn on spiketrum spikes: 97.5 %"
    plot_confusion([[3, 1], [0, 4]], ["yes", "no"], tmp_path / "c.png", title)
    height, width = matplotlib.image.imread(tmp_path / "c.png").shape[:2]
    assert width >= 500 and height >= 500
    assert "official" not in title and "speakers may be on both sides" in title


def test_confusion_title_fits_inside_the_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from spiketrum.app import kws

    seen = {}
    monkeypatch.setattr(plt, "close", lambda fig: seen.setdefault("fig", fig))
    kws.plot_confusion([[1, 0], [0, 1]], ["a", "b"], tmp_path / "c.png", "x" * 40 + " " + "y" * 40 + " " + "z" * 30)
    fig = seen["fig"]
    fig.canvas.draw()
    box, page = fig.axes[0].title.get_window_extent(), fig.bbox
    assert box.x0 >= page.x0 and box.x1 <= page.x1
