"""Figure helpers accept the layouts notebooks produce and reject the wrong ones clearly."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from geom import planes, plots  # noqa: E402


def test_image_grid_layouts():
    chw = torch.rand(5, 3, 8, 8)
    fig = plots.image_grid(chw, ncols=3, titles=list("abcde"))
    assert len(fig.axes) == 6
    img = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(img), chw[0].permute(1, 2, 0).numpy(), rtol=1e-6)
    plots.image_grid(np.random.rand(2, 8, 8), ncols=2)  # grayscale
    with pytest.raises(ValueError, match="images must be"):
        plots.image_grid(np.zeros((2, 2)))


def test_descriptor_maps_orientation_and_errors():
    n = 4
    df = pd.DataFrame({"psi": np.arange(n * n, dtype=float), "nu": np.ones(n * n), "delta": np.zeros(n * n)})
    fig = plots.descriptor_maps(df, n)
    grid = np.asarray(fig.axes[0].images[0].get_array())
    assert grid[0, 1] == 1.0 and grid[1, 0] == n  # row-major, first coordinate fastest
    with pytest.raises(ValueError, match="grid"):
        plots.descriptor_maps(df.iloc[:5], n)


def test_slice_maps_draws_hull():
    n = 6
    u, v = planes.plane_uv(n)
    df = pd.DataFrame(dict(psi=u + v, nu=u, delta=np.zeros(n * n)))
    fig = plots.slice_maps(df, n)
    assert len(fig.axes) == 6  # three maps + three colour bars
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(np.c_[line.get_xdata(), line.get_ydata()][:3], planes.ANCHOR_UV)
    with pytest.raises(ValueError):
        plots.slice_maps(df.iloc[:-1], n)


def test_level_set_rows_places_each_image_in_its_level_row():
    from geom.stats import level_sets
    imgs = torch.rand(30, 3, 4, 5)
    score = np.arange(30.0)[::-1].copy()  # image i has level set by its score
    lv, edges = level_sets(score, 3)
    fig = plots.level_set_rows(imgs, {"psi": (lv, edges), "nu": (lv, edges)}, n_show=4)
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == ["level sets of psi", "level sets of nu"]
    canvas = np.asarray(fig.axes[0].images[0].get_array())
    assert canvas.shape == (3 * (4 + 2), 4 * (5 + 2), 3)
    for level in range(3):
        members = np.nonzero(lv == level)[0][:4]
        for j, i in enumerate(members):  # brute force: the tile at (level, j) is image i
            tile = canvas[level * 6:level * 6 + 4, j * 7:j * 7 + 5]
            np.testing.assert_allclose(tile, imgs[i].permute(1, 2, 0).numpy(), rtol=1e-6)
    assert len(fig.axes[0].get_yticklabels()) == 3


# ------------------------------------------------------------------------------------------- layout check
def test_layout_problems_finds_each_kind_and_passes_clean_figures():
    """Each kind the check names is found on a figure built to have it, and the same figure laid out with
    constrained layout (or the legend moved off the data) passes."""
    x = np.arange(5)
    fig, ax = plt.subplots(1, 2, figsize=(6, 3))
    ax[1].set_ylabel("a very long y label that runs into the left panel", fontsize=20)
    assert any("runs into panel 1" in p for p in plots.layout_problems(fig))
    fig, ax = plt.subplots(1, 2, figsize=(6, 3))
    ax[0].set_title("a long title that runs into the title of the panel beside it")
    ax[1].set_title("second title")
    assert any("overlaps title 'second title'" in p for p in plots.layout_problems(fig))
    fig = plt.figure()
    fig.suptitle("suptitle", y=0.85, fontsize=30)
    fig.add_subplot(111)
    assert plots.layout_problems(fig) == ["suptitle 'suptitle' overlaps panel 1"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.errorbar(x, 0.1 + 0 * x, yerr=0.05, fmt="o", label="a")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower center")
    assert any("legend of panel 1 covers" in p for p in plots.layout_problems(fig))
    ax.legend(loc="upper right")
    ax.axhline(0.5)  # a reference line in axes coordinates is not data
    assert plots.layout_problems(fig) == []
    fig, ax = plt.subplots(1, 2, figsize=(6, 3), layout="constrained")
    ax[0].plot([0, 1], [0, 1])
    ax[1].set_ylabel("label")
    assert plots.layout_problems(fig) == []
    plt.close("all")


def test_outputs_write_keeps_the_results_and_then_raises_on_a_layout_problem(tmp_path):
    from geom import run

    out = run.Outputs("99_layout", tmp_path)
    out.results["x"] = 1.0
    fig, ax = plt.subplots(1, 2, figsize=(6, 3))
    ax[1].set_ylabel("a very long y label that runs into the left panel", fontsize=20)
    out.savefig(fig, "bad")
    with pytest.raises(run.FigureLayoutError, match="bad.png: .*runs into panel 1"):
        out.write()
    assert (tmp_path / "data" / "results" / "99_layout.json").exists()
    assert (tmp_path / "figures" / "99_layout" / "bad.png").exists()
    plt.close("all")


def _legend_outside_every_panel(fig):
    """The legends of ``fig`` (axes and figure legends) as display boxes, and whether each lies outside the
    plotting area of every axes."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    legs = [a.get_legend() for a in fig.axes if a.get_legend() is not None] + list(fig.legends)
    return [not any(plots._overlap(leg.get_window_extent(r), a.bbox, 0.0) for a in fig.axes) for leg in legs]


def test_descriptor_hist_legend_never_covers_data():
    """Data that fill every corner of every panel (uniform, two groups): wherever an in-axes legend goes, it
    covers a histogram. descriptor_hist puts its one legend outside all panels, and layout_problems (the check
    Outputs.savefig runs) finds nothing; the reference, seaborn's own placement (loc="best", what
    descriptor_hist did), is inside a panel."""
    import seaborn as sns
    rng = np.random.default_rng(0)
    n = 4000
    df = pd.DataFrame(dict(psi=rng.uniform(0, 1, n), nu=rng.uniform(0, 1, n), source=np.repeat(["ID", "OOD"], n // 2)))
    fig = plots.descriptor_hist(df, by="source", columns=("psi", "nu"), bins=10)
    assert _legend_outside_every_panel(fig) == [True]  # one legend, outside
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["ID", "OOD"]
    assert plots.layout_problems(fig) == []
    plt.close(fig)
    fig, ax = plt.subplots()
    sns.histplot(data=df, x="psi", hue="source", bins=10, stat="density", common_norm=False, element="step", ax=ax)
    assert _legend_outside_every_panel(fig) == [False]
    plt.close(fig)


def test_figure_legend_lists_each_label_once_in_order():
    """One figure legend from several panels: every label once, with its first handle, in order of appearance."""
    fig, axes = plt.subplots(2, 2, layout="constrained")
    first = axes[0, 0].plot([0, 1], [0, 1], "C0-", label="a")[0]
    axes[0, 1].plot([0, 1], [1, 0], "C1-", label="a")  # the same label again: not listed twice
    axes[1, 0].plot([0, 1], [0, 0], "C2-", label="b")
    axes[1, 1].plot([0, 1], [1, 1], "C3-")  # no label: not listed
    axes[1, 1].scatter([0.5], [0.5], label="c")
    for where in (axes, axes.flat, list(axes.flat)):
        leg = plots.figure_legend(fig, where, ncol=3)
        assert [t.get_text() for t in leg.get_texts()] == ["a", "b", "c"]
        assert leg.legend_handles[0].get_color() == first.get_color()
        leg.remove()
    assert plots.figure_legend(fig, axes[1, 0]).get_texts()[0].get_text() == "b"  # one Axes
    fig2, ax2 = plt.subplots()
    ax2.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="no artist"):
        plots.figure_legend(fig2, ax2)
    plt.close(fig)
    plt.close(fig2)
