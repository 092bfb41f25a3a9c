"""Shared figure helpers (matplotlib/seaborn). Each returns the Figure; notebooks save it with
``geom.run.Outputs.savefig``."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from . import planes

LABELS = {"psi": r"local scaling $\psi$", "nu": r"local rank $\nu$", "delta": r"local complexity $\delta$"}
CMAPS = {"psi": "viridis", "nu": "magma", "delta": "rocket"}


def _to_numpy_images(images) -> np.ndarray:
    """``(N, C, H, W)`` or ``(N, H, W, C)`` or ``(N, H, W)`` tensor/array -> ``(N, H, W, C)`` float in [0, 1]."""
    x = images.detach().cpu().float().numpy() if hasattr(images, "detach") else np.asarray(images, dtype=float)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), (N, H, W, C) or (N, H, W), got shape {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    return np.clip(x, 0.0, 1.0)


def image_grid(images, ncols: int = 8, titles: Sequence[str] | None = None, scale: float = 1.2,
               suptitle: str | None = None):
    """Show images in a grid; ``images`` in [0, 1] (use ``(x + 1) / 2`` for decoder outputs in [-1, 1])."""
    x = _to_numpy_images(images)
    n = len(x)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i].squeeze(-1) if x.shape[-1] == 1 else x[i], cmap="gray" if x.shape[-1] == 1 else None)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def descriptor_maps(df, n: int, columns: Sequence[str] = ("psi", "nu", "delta"),
                    extent: tuple[float, float, float, float] | None = None, suptitle: str | None = None,
                    axes=None):
    """Heatmaps of descriptor columns of ``df`` evaluated on an ``n x n`` grid in row-major order
    (first coordinate fastest, as ``torch.meshgrid(a, a, indexing="xy")``), the second coordinate upwards."""
    if len(df) != n * n:
        raise ValueError(f"descriptor_maps: {len(df)} rows is not an {n} x {n} grid")
    if axes is None:
        fig, axes = plt.subplots(1, len(columns), figsize=(4.3 * len(columns), 3.8), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, col in zip(axes, columns):
        grid = np.asarray(df[col], dtype=float).reshape(n, n)
        im = ax.imshow(grid, origin="lower", cmap=CMAPS.get(col, "viridis"), extent=extent, aspect="auto",
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(LABELS.get(col, col))
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def slice_maps(df, n: int, lo: float = -0.5, hi: float = 1.5, columns: Sequence[str] = ("psi", "nu", "delta"),
               labels: Sequence[str] = ("z0", "z1", "z2"), suptitle: str | None = None, axes=None):
    """Heatmaps of descriptor columns of a plane sweep table ``df`` (``N*N`` rows in ``geom.planes`` grid order,
    ``u, v`` in ``[lo, hi]``) with ``u`` on x and ``v`` on y, the three anchors marked and their convex hull
    (triangle) outlined (Humayun et al. Fig. 5). Returns the Figure."""
    if len(df) != int(n) ** 2:
        raise ValueError(f"slice_maps: {len(df)} rows is not an {n} x {n} grid")
    if axes is None:
        fig, axes = plt.subplots(1, len(columns), figsize=(4.4 * len(columns), 3.9), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    tri = np.vstack([planes.ANCHOR_UV, planes.ANCHOR_UV[:1]])
    half = (hi - lo) / (2 * max(int(n) - 1, 1))  # pixel centres sit on the grid points
    for ax, col in zip(axes, columns):
        im = ax.imshow(planes.grid_image(df[col], n), origin="lower", cmap=CMAPS.get(col, "viridis"),
                       extent=(lo - half, hi + half, lo - half, hi + half), interpolation="nearest", aspect="equal")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.plot(tri[:, 0], tri[:, 1], color="white", lw=1.2, ls="--")
        ax.scatter(planes.ANCHOR_UV[:, 0], planes.ANCHOR_UV[:, 1], s=30, c="white", edgecolors="black", zorder=3)
        for (x, y), lab in zip(planes.ANCHOR_UV, labels):
            ax.annotate(lab, (x, y), xytext=(4, 4), textcoords="offset points", color="white", fontsize=8)
        ax.set_title(LABELS.get(col, col))
        ax.set_xlabel("u")
        ax.set_ylabel("v")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def descriptor_hist(df, by: str, columns: Sequence[str] = ("psi", "nu", "delta"), bins: int = 40):
    """Overlaid histograms (density per group) of descriptor columns split by the categorical column ``by``:
    one panel per column, one legend (the groups of ``by``) outside the panels, to the right of the last one,
    so that it never covers a histogram whatever the data (constrained layout makes room for it)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.3 * len(columns) + 1.5, 3.3), squeeze=False,
                             layout="constrained")
    for ax, col in zip(axes[0], columns):
        sns.histplot(data=df, x=col, hue=by, bins=bins, stat="density", common_norm=False, element="step",
                     ax=ax, legend=ax is axes[0, -1])
        ax.set_xlabel(LABELS.get(col, col))
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title_fontsize=8)
    return fig


def level_set_rows(images, levels: dict, n_show: int = 8, scale: float = 0.75):
    """Fig. 9 of Humayun et al.: one panel per descriptor, one row per level set, ``n_show`` images per row.

    ``images`` ``(N, C, H, W)`` / ``(N, H, W, C)`` in [0, 1]; ``levels`` ``{name: (level (N,) int, edges (L + 1,))}``
    as returned by ``geom.stats.level_sets`` (level 0 = lowest)."""
    x = _to_numpy_images(images)
    H, W = x.shape[1:3]
    L = max(len(edges) - 1 for _, edges in levels.values())
    fig, axes = plt.subplots(1, len(levels), figsize=(len(levels) * n_show * scale, L * 0.8 + 0.8), squeeze=False)
    for ax, (c, (lv, edges)) in zip(axes[0], levels.items()):
        L = len(edges) - 1
        canvas = np.ones((L * (H + 2), n_show * (W + 2), x.shape[-1]))
        for l in range(L):
            for j, i in enumerate(np.nonzero(np.asarray(lv) == l)[0][:n_show]):
                canvas[l * (H + 2):l * (H + 2) + H, j * (W + 2):j * (W + 2) + W] = x[i]
        ax.imshow(canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas, cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([(l + 0.5) * (H + 2) for l in range(L)])
        ax.set_yticklabels([f"L{l + 1} [{edges[l]:.3g}, {edges[l + 1]:.3g}]" for l in range(L)], fontsize=7)
        ax.set_title(f"level sets of {c}")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- layout check
def _overlap(a, b, tol: float) -> bool:
    """Whether two display-space bounding boxes overlap by more than ``tol`` pixels in both directions."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _axes_texts(ax):
    """(what, Text) of the visible, non-empty labels an axes owns: titles, axis labels, tick labels."""
    out = [(f"title '{t.get_text()}'", t) for t in (ax.title, ax._left_title, ax._right_title)]
    out += [(f"x label '{ax.xaxis.label.get_text()}'", ax.xaxis.label),
            (f"y label '{ax.yaxis.label.get_text()}'", ax.yaxis.label)]
    if ax.axison:  # tick labels inside the view limits (the locator also returns ticks beyond them, not drawn)
        for name, labels, lim, k in (("x", ax.get_xticklabels(), ax.get_xlim(), 0),
                                     ("y", ax.get_yticklabels(), ax.get_ylim(), 1)):
            lo, hi = sorted(lim)
            pad = 1e-9 * max(1.0, abs(hi - lo))
            out += [(f"{name} tick label '{t.get_text()}'", t) for t in labels
                    if lo - pad <= t.get_position()[k] <= hi + pad]
    return [(w, t) for w, t in out if t.get_visible() and t.get_text().strip()]


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the data an axes draws in data coordinates: line vertices (sampled along each
    segment), errorbar segments, scatter offsets. Reference lines in axes coordinates (axhline) are not data."""
    pts = []
    for line in ax.lines:
        if line.get_visible() and line.get_transform() == ax.transData and len(line.get_xydata()):
            xy = np.asarray(line.get_xydata(), float)
            if len(xy) > 1:  # points along each segment, so a legend over a line between markers counts
                s = np.linspace(0, 1, 16)[:, None, None]
                xy = np.concatenate([xy, (xy[:-1] + s * (xy[1:] - xy[:-1])).reshape(-1, 2)])
            pts.append(ax.transData.transform(xy))
    for c in ax.collections:
        if not c.get_visible():
            continue
        if hasattr(c, "get_segments") and c.get_transform() == ax.transData:
            for seg in c.get_segments():
                seg = np.asarray(seg, float)
                if len(seg) > 1:
                    s = np.linspace(0, 1, 16)[:, None, None]
                    pts.append(ax.transData.transform((seg[:-1] + s * (seg[1:] - seg[:-1])).reshape(-1, 2)))
        elif hasattr(c, "get_offsets") and c.get_offset_transform() == ax.transData and len(c.get_offsets()):
            pts.append(ax.transData.transform(np.asarray(c.get_offsets(), float)))
    pts = [p[np.isfinite(p).all(1)] for p in pts]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def figure_legend(fig, axes, ncol: int = 4, fontsize: float = 8, loc: str = "outside lower center"):
    """One legend for the whole figure, outside its panels (below them by default, with a constrained layout):
    every label of the artists in ``axes`` (an Axes, or an array or iterable of them) once, with the handle of
    its first appearance, in the order the labels first appear. Returns the legend. Raises ``ValueError`` when
    no artist has a label (an empty legend would say nothing)."""
    handles = {}
    for a in np.ravel(np.asarray(axes, dtype=object)):
        for hd, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, hd)
    if not handles:
        raise ValueError("no artist of these axes has a label: pass label=... to the plotting calls")
    return fig.legend(handles.values(), handles.keys(), loc=loc, ncol=ncol, fontsize=fontsize)


def layout_problems(fig, tol: float = 1.0) -> list[str]:
    """What a reader of ``fig`` at its rendered size cannot read cleanly, as sentences (empty: none).

    Checked after drawing: (1) a label of one axes (title, axis label, tick label) overlapping another axes'
    plotting area or labels (a y label running into the panel on its left); (2) the figure's suptitle
    overlapping an axes or its labels; (3) a legend covering data points, lines or error bars of its axes; (4)
    a matplotlib layout-engine warning (tight/constrained layout that could not make room). Twin axes (same
    plotting area) are not compared. ``tol``: overlaps of at most this many pixels are ignored."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    r = fig.canvas.get_renderer()
    problems = [f"layout warning: {w.message}" for w in caught if "layout" in str(w.message).lower()]
    axes = [ax for ax in fig.axes if ax.get_visible()]
    texts = {id(ax): [(w, t.get_window_extent(r)) for w, t in _axes_texts(ax)] for ax in axes}
    for i, a in enumerate(axes):
        for b in axes:
            if b is a or _overlap(a.bbox, b.bbox, tol) and (a.bbox.bounds == b.bbox.bounds):
                continue  # the same plotting area: twinx / twiny
            for what, box in texts[id(a)]:
                if b.axison and _overlap(box, b.bbox, tol) and not _overlap(a.bbox, b.bbox, tol):
                    problems.append(f"{what} of panel {i + 1} runs into panel {axes.index(b) + 1}")
                for what_b, box_b in texts[id(b)]:
                    if axes.index(b) > i and _overlap(box, box_b, tol):
                        problems.append(f"{what} of panel {i + 1} overlaps {what_b} of panel {axes.index(b) + 1}")
    sup = fig._suptitle
    if sup is not None and sup.get_visible() and sup.get_text().strip():
        box = sup.get_window_extent(r)
        for i, a in enumerate(axes):
            if _overlap(box, a.bbox, tol) or any(_overlap(box, bb, tol) for _, bb in texts[id(a)]):
                problems.append(f"suptitle '{sup.get_text()}' overlaps panel {i + 1}")
    for i, a in enumerate(axes):
        leg = a.get_legend()
        if leg is None or not leg.get_visible():
            continue
        box = leg.get_window_extent(r)
        p = _data_points(a)
        inside = ((p[:, 0] > box.x0 + tol) & (p[:, 0] < box.x1 - tol) & (p[:, 1] > box.y0 + tol)
                  & (p[:, 1] < box.y1 - tol))
        if inside.any():
            problems.append(f"the legend of panel {i + 1} covers {int(inside.sum())} drawn data points: place it "
                            "outside the axes (bbox_to_anchor) or where there is no data")
    return problems
