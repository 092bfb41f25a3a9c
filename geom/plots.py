"""Shared figure helpers (matplotlib/seaborn). Each returns the Figure; notebooks save it with
``geom.run.Outputs.savefig``."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

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


def descriptor_hist(df, by: str, columns: Sequence[str] = ("psi", "nu", "delta"), bins: int = 40):
    """Overlaid histograms of descriptor columns split by the categorical column ``by``."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.3 * len(columns), 3.3), squeeze=False)
    for ax, col in zip(axes[0], columns):
        sns.histplot(data=df, x=col, hue=by, bins=bins, stat="density", common_norm=False, element="step",
                     ax=ax)
        ax.set_xlabel(LABELS.get(col, col))
    fig.tight_layout()
    return fig


def level_set_rows(images, levels: dict, n_show: int = 8, scale: float = 0.75):
    """Fig. 9 of Humayun et al.: one panel per descriptor, one row per level set, ``n_show`` images per row.

    ``images`` ``(N, C, H, W)`` / ``(N, H, W, C)`` in [0, 1]; ``levels`` ``{name: (level (N,) int, edges (L + 1,))}``
    as returned by ``geom.trajectories.level_sets`` (level 0 = lowest)."""
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
