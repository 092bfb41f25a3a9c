"""Riemannian metrics on a 2D coordinate plane and the curves they measure (Lobashev et al., "Hessian Geometry
of Latent Space in Generative Models", ICML 2025, Sec. 3 and the diffusion-model experiments).

One family, in the style of stochman's ``manifold.py`` (Detlefsen et al.): a metric is a function
``metric_fn``: points (m, 2) -> matrices (m, 2, 2), and everything about curves is derived from it with one
discretisation, a polygonal path ``t_0 .. t_{n-1}`` with the metric at the segment midpoints ``m_k``:

- ``path_energy``: ``E = (n - 1) sum_k dt_k^T g(m_k) dt_k`` (differentiable);
- ``path_length``: ``sum_k sqrt(dt_k^T g(m_k) dt_k)``;
- ``geodesic``: the path of least energy between two points (hence of least length, at constant speed).

Metrics: ``metric(F, theta)``, the Hessian of a log-partition ``F`` (the Fisher metric of an exponential family,
learned by ``geom.fisher``), and ``psd_metric``, which makes any metric positive definite. ``linearity``
measures how straight a path is in the plane's own (Euclidean) coordinates.
"""
from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["metric", "psd_metric", "path_energy", "path_length", "geodesic", "linearity"]


# ------------------------------------------------------------------------------------------------- metrics
def metric(F, theta: torch.Tensor) -> torch.Tensor:
    """Fisher metric ``g(theta) = Hessian of F`` (Lobashev et al. Sec. 3) by ``torch.func``; (m, 2) -> (m, 2, 2).
    ``F``: (m, 2) -> (m,). Differentiable in ``theta`` (used by ``geodesic``)."""
    f = lambda x: F(x[None])[0]  # noqa: E731
    # reverse-over-reverse (not torch.func.hessian's forward-over-reverse): stays differentiable by autograd,
    # which `geodesic` needs (SiLU's backward has no forward-mode rule)
    return torch.func.vmap(torch.func.jacrev(torch.func.jacrev(f)))(theta)


def psd_metric(metric_fn, floor: float = 1e-6):
    """Wrap a metric (m, 2) -> (m, 2, 2) so that it is positive definite: ``g + max(0, floor - lambda_min) I``
    with the smallest eigenvalue ``lambda_min`` of the symmetrised 2x2 ``g`` in closed form (differentiable,
    unlike ``eigh`` at degenerate eigenvalues). A learned Hessian of ``F`` may be indefinite where the fit is
    poor; geodesic energy is unbounded below there without this projection."""
    def g_psd(x):
        g = metric_fn(x)
        g = 0.5 * (g + g.transpose(-1, -2))
        half_tr = 0.5 * (g[:, 0, 0] + g[:, 1, 1])
        rad = torch.sqrt((0.5 * (g[:, 0, 0] - g[:, 1, 1])) ** 2 + g[:, 0, 1] ** 2 + 1e-30)
        shift = torch.relu(floor - (half_tr - rad))
        return g + shift[:, None, None] * torch.eye(2, dtype=g.dtype, device=g.device)
    return g_psd


# ------------------------------------------------------------------------------------------------- curves
def _path(path) -> torch.Tensor:
    p = torch.as_tensor(path, dtype=torch.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
        raise ValueError(f"path must have shape (n >= 2, 2), got {tuple(p.shape)}")
    return p


def _forms(metric_fn, p: torch.Tensor) -> torch.Tensor:
    """``dt_k^T g(m_k) dt_k`` (n - 1,) of the segments ``dt_k`` of a path ``p`` (n, 2), ``g`` at their midpoints."""
    d = p[1:] - p[:-1]
    g = torch.as_tensor(metric_fn(0.5 * (p[1:] + p[:-1]))).double()
    return torch.einsum("ki,kij,kj->k", d, g, d)


def _energy(q: torch.Tensor) -> torch.Tensor:
    return len(q) * q.sum()  # (n - 1) sum_k q_k


def _length(q: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(q.clamp_min(0)).sum()


def path_energy(metric_fn, path: torch.Tensor) -> torch.Tensor:
    """Discrete energy of a polygonal path (n, 2) under a metric, ``E = (n - 1) sum_k dt_k^T g(m_k) dt_k`` with
    ``g`` at the segment midpoints ``m_k`` (the objective of ``geodesic``; for a path at constant speed
    ``E = length^2``). ``metric_fn``: (m, 2) -> (m, 2, 2). Returns a 0-dim float64 tensor, differentiable in
    ``path``."""
    return _energy(_forms(metric_fn, _path(path)))


def path_length(metric_fn, path: torch.Tensor) -> float:
    """Length of a polygonal path (n, 2) under a metric: ``sum_k sqrt(dt_k^T g(m_k) dt_k)`` with ``g`` at the
    segment midpoints ``m_k`` (the discretisation of ``geodesic``). ``metric_fn``: (m, 2) -> (m, 2, 2).
    Negative quadratic forms (a learned Hessian need not be positive) count as zero."""
    return float(_length(_forms(metric_fn, _path(path)).detach()))


def geodesic(metric_fn, start, end, n_points: int = 33, steps: int = 200, init: torch.Tensor | None = None,
             progress: bool = True) -> tuple[torch.Tensor, float, float]:
    """Geodesic between ``start`` and ``end`` (2,) by minimising the discrete curve energy
    ``E = (n - 1) sum_k dt_k^T g(m_k) dt_k`` (``path_energy``; midpoints ``m_k``) over the interior points,
    endpoints fixed (Lobashev et al. Sec. 3); L-BFGS with strong-Wolfe line search, float64.

    ``metric_fn``: (m, 2) -> (m, 2, 2), differentiable. Returns the path (n_points, 2), its energy and its
    length ``sum_k sqrt(dt_k^T g dt_k)`` (``path_length``)."""
    a = torch.as_tensor(start, dtype=torch.float64)
    b = torch.as_tensor(end, dtype=torch.float64)
    if n_points < 3:
        raise ValueError(f"n_points must be >= 3, got {n_points}")
    s = torch.linspace(0, 1, n_points, dtype=torch.float64)[:, None]
    path0 = init.double() if init is not None else (1 - s) * a + s * b
    inner = nn.Parameter(path0[1:-1].clone())

    def forms():
        p = torch.cat([a[None], inner, b[None]])
        return p, _forms(metric_fn, p)

    opt = torch.optim.LBFGS([inner], lr=1, max_iter=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        e = _energy(forms()[1])
        e.backward()
        return e

    for _ in tqdm(range(steps), disable=not progress, desc="geodesic"):
        before = inner.detach().clone()
        opt.step(closure)
        if torch.allclose(before, inner.detach(), rtol=0, atol=1e-12):
            break
    with torch.no_grad():
        p, q = forms()
    return p, float(_energy(q)), float(_length(q))


def linearity(path: torch.Tensor) -> dict:
    """How straight a path (n, 2) is, in plane coordinates: ``chord_ratio`` = endpoint distance / Euclidean
    arc length (1 for a straight segment, smaller when bent) and ``max_deviation`` = largest distance of a path
    point from the chord, divided by the chord length."""
    p = _path(path)
    chord = p[-1] - p[0]
    c = float(chord.norm())
    arc = float((p[1:] - p[:-1]).norm(dim=1).sum())
    if c == 0:
        raise ValueError("path endpoints coincide")
    r = p - p[0]
    dev = (r[:, 0] * chord[1] - r[:, 1] * chord[0]).abs() / c
    return dict(chord_ratio=c / arc, max_deviation=float(dev.max()) / c)
