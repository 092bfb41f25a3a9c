"""The plane through three latents (Humayun et al. Sec. 3.3.1, Fig. 5, Figs. 21-26): anchors, grid, latents,
coordinates, convex hull. Analysis layer: it is a design of where to evaluate a generator (like a sweep or a
statistic), not a property of the generator's local geometry; ``geom.sweep``'s plane source, the notebooks'
slices and ``geom.plots.slice_maps`` all build on it.

Three anchors ``z0, z1, z2`` (``(3, *latent_shape)``, ``plane_anchors``: from a ``.npy`` file or drawn with
the one seeding rule ``torch.randn(3, *latent_shape, generator=torch.Generator().manual_seed(seed),
dtype=float64)``, cast to the model dtype) span::

    z(u, v) = z0 + u (z1 - z0) + v (z2 - z0)       (computed in float64, returned in the anchors' dtype)

sampled on an ``N x N`` grid ``u, v in t = linspace(lo, hi, N)`` with row index ``i * N + j``, ``u = t[i]``,
``v = t[j]`` (``grid_coords``, ``plane_uv``). The anchors sit at ``(u, v) = (0, 0), (1, 0), (0, 1)``
(``ANCHOR_UV``) and their convex hull is the triangle ``u >= 0, v >= 0, u + v <= 1`` (``in_hull``).
``grid_image`` lays a grid's values out for ``imshow(origin="lower")`` (``u`` along x, ``v`` along y).

Not here: ``geom.phases.noise_plane`` (Lobashev et al.'s plane of initial noises), another object: its three
latents are seeded one generator each, it is computed in the latents' dtype and every point is renormalised
to unit standard deviation.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from . import paths

__all__ = ["ANCHOR_UV", "plane_anchors", "plane_axis", "grid_coords", "plane_uv", "check_anchors", "plane_latents",
           "plane_coordinates", "in_hull", "grid_image"]

ANCHOR_UV: np.ndarray = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
"""Plane coordinates ``(u, v)`` of the three anchors ``z0, z1, z2`` (rows)."""


# --------------------------------------------------------------------------------------------- anchors
def plane_anchors(latent_shape: tuple[int, ...], latent_seed: int = 0, anchors: str | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """The three latents ``(3, *latent_shape)`` spanning the plane, in ``dtype``: loaded from ``anchors`` (a
    ``.npy`` of that shape, path resolved by ``geom.paths.resolve``) or standard normal drawn in float64 from
    ``torch.Generator().manual_seed(latent_seed)`` (CPU: the same on every device)."""
    if anchors is not None:
        a = torch.as_tensor(np.load(paths.resolve(anchors)))
        if tuple(a.shape) != (3, *latent_shape):
            raise ValueError(f"anchors must have shape (3, *latent_shape) = {(3, *latent_shape)}, got {tuple(a.shape)}")
        return a.to(dtype)
    g = torch.Generator().manual_seed(int(latent_seed))
    return torch.randn(3, *latent_shape, generator=g, dtype=torch.float64).to(dtype)


def check_anchors(anchors: Tensor) -> Tensor:
    """Validate three anchor latents ``(3, *latent_shape)`` (finite, not collinear); returns them."""
    if not isinstance(anchors, Tensor):
        anchors = torch.as_tensor(np.asarray(anchors))
    if anchors.ndim < 2 or anchors.shape[0] != 3:
        raise ValueError(f"anchors must have shape (3, *latent_shape), got {tuple(anchors.shape)}")
    if not torch.isfinite(anchors).all():
        raise ValueError("anchors contain NaN or inf")
    a = anchors.reshape(3, -1).to(torch.float64)
    d = torch.stack([a[1] - a[0], a[2] - a[0]])
    sv = torch.linalg.svdvals(d)
    if sv[-1] <= 1e-9 * max(float(sv[0]), 1e-300):
        raise ValueError("the three anchors are collinear (or coincide): they do not span a plane")
    return anchors


# --------------------------------------------------------------------------------------------- the grid
def grid_coords(n: int, lo: float = -0.5, hi: float = 1.5, index=None) -> dict[str, np.ndarray]:
    """Grid coordinates of flat indices ``index`` (default: all ``N*N``, in order): ``i = index // N``,
    ``j = index % N`` (int64), ``u = t[i]``, ``v = t[j]`` with ``t = linspace(lo, hi, N)`` (float64).
    Raises ``ValueError`` for ``N < 1`` or a non-finite extent."""
    n = int(n)
    if n < 1:
        raise ValueError(f"grid size must be >= 1, got {n}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"plane extent must be finite, got lo={lo}, hi={hi}")
    t = np.linspace(lo, hi, n)
    index = np.arange(n * n) if index is None else np.asarray(index)
    i, j = index // n, index % n
    return {"i": i.astype(np.int64), "j": j.astype(np.int64), "u": t[i], "v": t[j]}


def plane_axis(n: int, lo: float = -0.5, hi: float = 1.5) -> np.ndarray:
    """The ``N`` plane coordinates ``t = linspace(lo, hi, N)`` of a grid (``geom.sweep``'s ``plane:N:lo:hi``);
    needs ``lo < hi``."""
    if int(n) < 1:
        raise ValueError(f"grid size must be >= 1, got {n}")
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"plane extent must be finite with lo < hi, got lo={lo}, hi={hi}")
    return np.linspace(lo, hi, int(n))


def plane_uv(n: int, lo: float = -0.5, hi: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)`` ``(N*N,)`` each, in grid row order (``index = i * N + j``, ``u = t[i]``, ``v = t[j]``);
    needs ``lo < hi``."""
    plane_axis(n, lo, hi)
    c = grid_coords(n, lo, hi)
    return c["u"], c["v"]


def grid_image(values, n: int) -> np.ndarray:
    """Values ``(N*N,)`` in grid order (``index = i * N + j``, ``u = t[i]``, ``v = t[j]``) -> ``(N, N)`` array
    ``img[j, i]`` (rows = ``v``, columns = ``u``) for ``imshow(img, origin="lower", extent=(lo, hi, lo, hi))``,
    which puts ``u`` on the x axis and ``v`` on the y axis."""
    a = np.asarray(values, dtype=float).reshape(-1)
    if a.size != int(n) ** 2:
        raise ValueError(f"{a.size} values is not an {n} x {n} grid")
    return a.reshape(int(n), int(n)).T


# --------------------------------------------------------------------------------------------- latents
def plane_latents(anchors: Tensor, u, v) -> Tensor:
    """``z(u, v) = z0 + u (z1 - z0) + v (z2 - z0)``: anchors ``(3, *latent_shape)``, ``u, v`` ``(M,)`` ->
    ``(M, *latent_shape)`` in the anchors' dtype (computed in float64)."""
    anchors = check_anchors(anchors)
    u = torch.as_tensor(np.asarray(u, dtype=np.float64)).reshape(-1)
    v = torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(-1)
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same length, got {u.numel()} and {v.numel()}")
    z0, z1, z2 = anchors.to(torch.float64)
    shape = (-1, *([1] * z0.ndim))
    return (z0 + u.reshape(shape).to(z0.device) * (z1 - z0) + v.reshape(shape).to(z0.device) * (z2 - z0)).to(anchors.dtype)


def plane_coordinates(anchors: Tensor, z: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares plane coordinates of latents ``z`` ``(M, *latent_shape)``: ``(u, v, residual)`` with
    ``residual = ||z - z(u, v)|| / ||z - z0||`` (0 for latents on the plane)."""
    anchors = check_anchors(anchors)
    a = anchors.reshape(3, -1).to(torch.float64)
    D = torch.stack([a[1] - a[0], a[2] - a[0]], dim=1)  # (E, 2)
    r = z.reshape(z.shape[0], -1).to(torch.float64) - a[0]
    uv = torch.linalg.lstsq(D, r.T).solution.T  # (M, 2)
    res = (r - uv @ D.T).norm(dim=1) / r.norm(dim=1).clamp_min(1e-300)
    return uv[:, 0].numpy(), uv[:, 1].numpy(), res.numpy()


def in_hull(u, v, tol: float = 1e-12) -> np.ndarray:
    """Boolean mask: is ``(u, v)`` inside the convex hull of the anchors (the triangle ``u >= 0, v >= 0,
    u + v <= 1``, boundary included up to ``tol``)? ``u, v`` arrays of one shape."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same shape, got {u.shape} and {v.shape}")
    return (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol)
