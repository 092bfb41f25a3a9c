"""Exact partition of a 2D latent rectangle into the linear regions of a ReLU MLP (Humayun et al., Sec. 2.3).

A ReLU MLP ``G(z) = W_L relu(... relu(W_1 z + b_1) ...) + b_L`` is continuous piecewise-linear (CPWL): on each
region ``omega`` of a partition of the input space it is affine, ``G(z) = A_w z + b_w`` (Humayun et al. Eq. 2).
For a 2D input the regions are convex polygons, found exactly (no grid) by cutting the domain neuron by
neuron, layer by layer: inside a current region every pre-activation of the next layer is an affine function
of ``z``; each neuron whose zero line crosses the region splits it in two (convex polygon clipping), and the
region's affine map is then updated with the layer's activation pattern.

``psi_w`` is the local scaling of region ``omega`` (Eq. 4): the sum of the log non-zero singular values of
``A_w``, computed with ``geom.singular_values`` / ``geom.local_scaling``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .descriptors import local_rank, local_scaling, singular_values


@dataclass
class Partition:
    """Linear regions of a ReLU MLP on a rectangle.

    Attributes:
        polygons: list of ``R`` arrays ``(n_r, 2)``, vertices of each convex region, counter-clockwise.
        patterns: ``(R, H)`` bool, the activation pattern (pre-activation > 0) of the ``H`` hidden neurons at
            each region's interior point.
        A: ``(R, D, 2)`` float64, the affine map's linear part ``A_w`` (Eq. 2) of each region.
        b: ``(R, D)`` float64, its offset ``b_w``.
        domain: ``(x0, x1, y0, y1)``.
    """
    polygons: list[np.ndarray]
    patterns: np.ndarray
    A: np.ndarray
    b: np.ndarray
    domain: tuple[float, float, float, float]
    _index: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.polygons)

    @property
    def areas(self) -> np.ndarray:
        """``(R,)`` polygon areas (shoelace formula)."""
        return np.array([polygon_area(p) for p in self.polygons])

    @property
    def interior_points(self) -> np.ndarray:
        """``(R, 2)`` a point strictly inside each region (vertex mean of the convex polygon)."""
        return np.stack([p.mean(axis=0) for p in self.polygons])

    def singular_values(self) -> torch.Tensor:
        """``(R, min(D, 2))`` singular values of every ``A_w`` (float64, descending)."""
        return singular_values(torch.from_numpy(self.A))

    def psi(self) -> np.ndarray:
        """``(R,)`` local scaling ``psi_w = sum_i log sigma_i(A_w)`` (Humayun et al. Eq. 4)."""
        return local_scaling(self.singular_values(), dtype=torch.float64).numpy()

    def nu(self) -> np.ndarray:
        """``(R,)`` local rank of every region (Humayun et al. Def. 3)."""
        return local_rank(self.singular_values()).numpy()

    def ranks(self, rtol: float = 1e-10) -> np.ndarray:
        """``(R,)`` numerical rank of every ``A_w`` (singular values above ``rtol * sigma_max``)."""
        sv = self.singular_values()
        return (sv > rtol * sv[:, :1].clamp_min(1e-300)).sum(1).numpy()

    def knots(self) -> np.ndarray:
        """``(S, 2, 2)`` line segments of the region boundaries (the "knots"), for plotting; each interior
        edge appears once per adjacent region."""
        segs = [np.stack([p, np.roll(p, -1, axis=0)], axis=1) for p in self.polygons]
        return np.concatenate(segs) if segs else np.zeros((0, 2, 2))

    def locate(self, model: nn.Module | list, z: np.ndarray) -> np.ndarray:
        """``(N,)`` index of the region holding each point ``z`` ``(N, 2)`` (by activation pattern; -1 when the
        pattern is not one of the partition's, e.g. outside the domain)."""
        if not self._index:
            self._index.update({p.tobytes(): i for i, p in enumerate(self.patterns)})
        pats = activation_patterns(model, z)
        return np.array([self._index.get(p.tobytes(), -1) for p in pats])


def relu_layers(model: nn.Module | list) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W_1, b_1), ..., (W_L, b_L)]`` (float64 numpy) of a ReLU MLP given as an ``nn.Sequential`` of
    ``Linear, ReLU, ..., Linear`` (a module with a ``.net`` Sequential is accepted), or the list itself.
    A ReLU after every Linear except the last; anything else raises ``TypeError``."""
    if isinstance(model, (list, tuple)):
        return [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in model]
    seq = model.net if hasattr(model, "net") and isinstance(model.net, nn.Sequential) else model
    if not isinstance(seq, nn.Sequential):
        raise TypeError(f"relu_layers needs an nn.Sequential of Linear/ReLU layers, got {type(model).__name__}")
    mods = [m for m in seq if not isinstance(m, (nn.Identity, nn.Flatten))]
    layers = []
    for i, m in enumerate(mods):
        want_linear = i % 2 == 0
        if want_linear and not isinstance(m, nn.Linear):
            raise TypeError(f"layer {i} is {type(m).__name__}; the exact partition supports Linear, ReLU, "
                            f"Linear, ReLU, ..., Linear")
        if not want_linear and type(m) is not nn.ReLU:
            raise TypeError(f"layer {i} is {type(m).__name__}; only nn.ReLU activations give a CPWL map "
                            f"supported by the exact partition")
        if want_linear:
            W = m.weight.detach().double().cpu().numpy()
            b = (m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(W.shape[0]))
            layers.append((W, b))
    if len(mods) % 2 == 0:
        raise TypeError("the network must end with a Linear layer (no activation on the output)")
    if layers[0][0].shape[1] != 2:
        raise ValueError(f"the exact partition is for 2D inputs; the first Linear takes {layers[0][0].shape[1]}")
    return layers


def activation_patterns(model: nn.Module | list, z: np.ndarray) -> np.ndarray:
    """``(N, H)`` bool activation pattern (pre-activation > 0) of all hidden neurons at points ``z`` ``(N, 2)``."""
    layers = relu_layers(model)
    h = np.asarray(z, np.float64)
    pats = []
    for W, b in layers[:-1]:
        pre = h @ W.T + b
        pats.append(pre > 0)
        h = np.maximum(pre, 0)
    return np.concatenate(pats, axis=1)


def grid_pattern_count(model: nn.Module | list, domain: tuple[float, float, float, float], n: int) -> int:
    """Number of distinct activation patterns on an ``n x n`` grid over ``domain`` (cell centres): a brute-force
    lower bound on the number of linear regions, used to check ``partition``."""
    x0, x1, y0, y1 = domain
    xs = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n
    ys = y0 + (np.arange(n) + 0.5) * (y1 - y0) / n
    count: set = set()
    for y in np.array_split(ys, max(1, n * n // 250_000)):  # bounded memory
        zz = np.stack(np.meshgrid(xs, y, indexing="xy"), -1).reshape(-1, 2)
        pats = np.packbits(activation_patterns(model, zz), axis=1)
        count.update(map(bytes, np.unique(pats, axis=0)))
    return len(count)


def polygon_area(p: np.ndarray) -> float:
    """Area of a simple polygon ``(n, 2)`` (shoelace; positive for counter-clockwise vertices)."""
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def split_polygon(p: np.ndarray, f: np.ndarray, tol: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Clip the convex polygon ``p`` ``(n, 2)`` by the sign of an affine function with values ``f`` ``(n,)`` at
    its vertices. Returns (part with f >= 0, part with f <= 0); ``None`` for an empty side. Values within
    ``tol`` of zero count as on the line."""
    pos, neg = [], []
    n = len(p)
    for i in range(n):
        j = (i + 1) % n
        fi, fj = f[i], f[j]
        if fi >= -tol:
            pos.append(p[i])
        if fi <= tol:
            neg.append(p[i])
        if (fi > tol and fj < -tol) or (fi < -tol and fj > tol):
            t = fi / (fi - fj)
            q = p[i] + t * (p[j] - p[i])
            pos.append(q)
            neg.append(q)
    P = np.array(pos) if len(pos) >= 3 else None
    N = np.array(neg) if len(neg) >= 3 else None
    return P, N


def partition(model: nn.Module | list, domain: tuple[float, float, float, float] = (-1.0, 1.0, -1.0, 1.0),
              min_area: float = 1e-12, progress: bool = True) -> Partition:
    """Exact linear regions of a 2D-input ReLU MLP on the rectangle ``domain = (x0, x1, y0, y1)``.

    Humayun et al. Sec. 2.3 / Eq. 2: the domain is cut neuron by neuron, layer by layer. For each current
    region (convex polygon with the affine map ``h = A z + c`` of the current layer's input), every neuron of
    the next layer has the affine pre-activation ``(W A) z + (W c + b)``; a neuron whose zero line crosses the
    polygon splits it (``split_polygon``). After a layer, each polygon's map becomes
    ``diag(pattern) (W A), diag(pattern) (W c + b)``. The output layer is affine: ``A_w = W_L A``.

    Args:
        model: ``nn.Sequential(Linear(2, .), ReLU(), ..., Linear(., D))`` (see ``relu_layers``).
        domain: the latent rectangle.
        min_area: pieces with a smaller area (numerical slivers) are dropped.
    Returns:
        ``Partition`` with ``R`` regions; ``A`` ``(R, D, 2)``, ``b`` ``(R, D)``.
    """
    from tqdm import tqdm

    layers = relu_layers(model)
    x0, x1, y0, y1 = map(float, domain)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"domain must be (x0, x1, y0, y1) with x1 > x0 and y1 > y0, got {domain}")
    scale = max(abs(x0), abs(x1), abs(y0), abs(y1), 1.0)
    square = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    # region: (polygon, A (m, 2), c (m,), pattern list)
    regions = [(square, np.eye(2), np.zeros(2), [])]
    for W, bias in tqdm(layers[:-1], desc="partition", disable=not progress):
        new = []
        for poly, A, c, pat in regions:
            WA, Wc = W @ A, W @ c + bias  # pre-activations (m_next, 2), (m_next,)
            tol_n = 1e-10 * (np.abs(WA).sum(1) * scale + np.abs(Wc) + 1e-300)
            pieces = [poly]
            vals = poly @ WA.T + Wc  # (n_vert, m_next)
            crossing = np.nonzero((vals > tol_n).any(0) & (vals < -tol_n).any(0))[0]
            for i in crossing:  # cut by each neuron whose zero line crosses the polygon
                nxt = []
                for q in pieces:
                    f = q @ WA[i] + Wc[i]
                    if (f > tol_n[i]).any() and (f < -tol_n[i]).any():
                        for part in split_polygon(q, f, tol_n[i]):
                            if part is not None and abs(polygon_area(part)) > min_area:
                                nxt.append(part)
                    else:
                        nxt.append(q)
                pieces = nxt
            for q in pieces:
                mask = (q.mean(0) @ WA.T + Wc) > 0
                new.append((q, WA * mask[:, None], Wc * mask, pat + [mask]))
        regions = new
    WL, bL = layers[-1]
    polys = [r[0] for r in regions]
    A = np.stack([WL @ r[1] for r in regions])
    b = np.stack([WL @ r[2] + bL for r in regions])
    pats = np.stack([np.concatenate(r[3]) if r[3] else np.zeros(0, bool) for r in regions])
    return Partition(polys, pats, A, b, (x0, x1, y0, y1))


def plot_regions(ax, part: Partition, values: np.ndarray | None = None, cmap: str = "viridis",
                 knot_color: str = "k", knot_width: float = 0.3, colorbar: bool = True, label: str = r"$\psi_\omega$"):
    """Draw the regions filled by ``values`` ``(R,)`` (default ``psi``) with the knots (region boundaries)."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    values = part.psi() if values is None else np.asarray(values)
    pc = PolyCollection(part.polygons, array=values, cmap=cmap, edgecolors=knot_color, linewidths=knot_width)
    ax.add_collection(pc)
    x0, x1, y0, y1 = part.domain
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    if colorbar:
        plt.colorbar(pc, ax=ax, shrink=0.8, label=label)
    return pc
