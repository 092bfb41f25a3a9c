"""Checking a learned metric (``geom.fisher``): the two baselines (the learned posterior's covariance and, for
exponential families, the fluctuations of the sufficient statistics), relative errors and their summary over
a grid, the fraction of matrices that are no metric, and the affine term by which ``F`` is undetermined."""
from __future__ import annotations

import numpy as np
import torch

from ._common import check_shape
from .posterior import ParamGrid, posterior_moments


def posterior_fisher(P: torch.Tensor, grid: ParamGrid, N: float, idx: torch.Tensor) -> torch.Tensor:
    """Baseline: Fisher metric from the covariance of the learned posterior, ``g ~ (N (C - S))^{-1}`` per grid
    point, where ``C`` is the posterior covariance in natural coordinates averaged over the bundles generated at
    that point (``idx`` (B,)) and ``S`` the covariance of the smoothing kernel there. (G, 2, 2); NaN where no
    bundle was drawn or ``C - S`` is not positive definite."""
    check_shape(P, "P", (None, grid.size))
    theta = grid.natural
    _, cov = posterior_moments(P.double(), theta)
    _, Sk = posterior_moments(grid.targets(torch.arange(grid.size)), theta)
    out = torch.full((grid.size, 2, 2), float("nan"), dtype=torch.float64)
    counts = torch.bincount(idx, minlength=grid.size)
    sums = torch.zeros(grid.size, 2, 2, dtype=torch.float64).index_add_(0, idx, cov)
    ok = counts > 0
    C = sums[ok] / counts[ok, None, None] - Sk[ok]
    ev = torch.linalg.eigvalsh(C)
    g = torch.linalg.inv(N * C)
    g[ev[:, 0] <= 0] = float("nan")
    out[ok] = g
    return out


def fluctuation_fisher(stats: torch.Tensor) -> torch.Tensor:
    """Baseline for exponential families: ``g = Cov[T(x)]`` estimated from samples' sufficient statistics
    ``stats`` (G, n, 2) -> (G, 2, 2) (fluctuation-dissipation; unbiased sample covariance)."""
    d = stats - stats.mean(1, keepdim=True)
    return torch.einsum("gni,gnj->gij", d, d) / (stats.shape[1] - 1)


def gaussian_fluctuation_error(g: torch.Tensor, n: int, draws: int, seed: int = 0) -> float:
    """What the fluctuation baseline's error would be for Gaussian sufficient statistics: the median over the grid
    of the relative Frobenius error of ``fluctuation_fisher`` from ``n`` Gaussian vectors with covariance ``g``
    (G, 2, 2) at every point, averaged over ``draws`` draws (``torch.Generator`` seeded with ``seed``). For a
    variance alone the relative error is ``sqrt(2 / (n - 1))``; measured statistics with heavier or bimodal
    tails (magnetisation below T_c) give larger errors. Raises ``ValueError`` unless every ``g`` is positive
    definite (its Cholesky factor draws the vectors)."""
    if g.ndim != 3 or g.shape[1:] != (2, 2) or n < 2 or draws < 1:
        raise ValueError(f"need g (G, 2, 2), n >= 2 and draws >= 1; got {tuple(g.shape)}, n={n}, draws={draws}")
    gen = torch.Generator().manual_seed(seed)
    chol, info = torch.linalg.cholesky_ex(g)
    if bool((info > 0).any()):
        raise ValueError(f"g is not positive definite at grid point {int((info > 0).nonzero()[0])}")
    med = []
    for _ in range(draws):
        z = torch.randn(len(g), n, 2, generator=gen, dtype=torch.float64)
        med.append(relative_error(fluctuation_fisher(z @ chol.transpose(1, 2)), g).median().item())
    return float(np.mean(med))


def relative_error(g_hat: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-point relative Frobenius error ``|g_hat - g| / |g|`` of metrics (m, 2, 2) -> (m,)."""
    return torch.linalg.matrix_norm(g_hat - g) / torch.linalg.matrix_norm(g)


def not_positive_definite_fraction(g: torch.Tensor) -> float:
    """Fraction of metrics ``g`` (m, 2, 2) that are not positive definite: smallest eigenvalue of the symmetric
    part ``<= 0``, or any entry NaN/inf (a Fisher metric is positive semi-definite; a learned "metric" with a
    negative direction is no metric there). Returns a float in [0, 1]."""
    if g.ndim != 3 or g.shape[1:] != (2, 2):
        raise ValueError(f"g must have shape (m, 2, 2), got {tuple(g.shape)}")
    finite = torch.isfinite(g).all(-1).all(-1)
    sym = 0.5 * (g + g.transpose(-1, -2))
    lam = torch.linalg.eigvalsh(torch.where(finite[:, None, None], sym, torch.eye(2, dtype=g.dtype)))[:, 0]
    return (~finite | (lam <= 0)).double().mean().item()


def interior_mask(n_rows: int, n_cols: int, margin: int = 2) -> torch.Tensor:
    """Flat boolean mask (n_rows * n_cols,) of a row-major grid, True at least ``margin`` cells from its edge
    (where finite differences, target smoothing and the Hessian of F are not affected by the boundary)."""
    if margin < 0 or n_rows <= 2 * margin or n_cols <= 2 * margin:
        raise ValueError(f"a {n_rows} x {n_cols} grid has no interior at margin {margin}")
    m = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    m[margin:n_rows - margin, margin:n_cols - margin] = True
    return m.reshape(-1)


def error_summary(g_hat: torch.Tensor, g: torch.Tensor, interior: torch.Tensor) -> dict[str, float]:
    """Summary of ``relative_error(g_hat, g)`` over a grid (m, 2, 2), (m, 2, 2), mask (m,) -> dict with
    ``median_rel_error`` (all points), ``median_rel_error_interior``, ``mean_rel_error_interior`` and
    ``frac_nan`` (points where the relative error is undefined, e.g. a NaN estimate), NaNs ignored."""
    if g_hat.shape != g.shape or interior.shape != g.shape[:1]:
        raise ValueError(f"shapes do not match: g_hat {tuple(g_hat.shape)}, g {tuple(g.shape)}, "
                         f"interior {tuple(interior.shape)}")
    e = relative_error(g_hat, g)
    return dict(median_rel_error=e.nanmedian().item(), median_rel_error_interior=e[interior].nanmedian().item(),
                mean_rel_error_interior=e[interior].nanmean().item(), frac_nan=e.isnan().double().mean().item())


def remove_affine(f: torch.Tensor, ref: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``f - (a + <b, coords>)`` with the affine term fitted by least squares to ``f - ref``; (G,), (G,), (G, 2)
    -> (residual-aligned ``f`` (G,), coefficients (3,)). F is identifiable only up to this term."""
    X = torch.cat([torch.ones(len(f), 1, dtype=torch.float64), coords.double()], 1)
    coef = torch.linalg.lstsq(X, (f - ref).double()[:, None]).solution[:, 0]
    return f - X @ coef, coef

