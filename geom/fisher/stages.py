"""Separating the stages of ``geom.fisher``'s method (Lobashev et al. Sec. 3): the exact Bayes posterior of the
held-out bundles, fed to the same log-partition fit as the learned one, tells a loss of the posterior network
from a loss of the fit, grid and smoothing (notebooks 09, 11, 15); and the width of a posterior in grid cells,
which says whether the grid resolves it."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..metric import metric
from ._common import check_shape
from .evaluate import posterior_fisher
from .log_partition import LogPartitionFit, fit_log_partition
from .posterior import ParamGrid, posterior_moments


def exponential_family_loglik(S: torch.Tensor, natural: torch.Tensor, N: float, logz: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of bundles of ``N`` samples of an exponential family ``p(x | theta) = exp(<theta, T(x)> -
    log Z(theta)) h(x)`` at every grid point, up to the terms that do not depend on the point:
    ``<theta_k, S_b> - N log Z(theta_k)``, with ``S`` (B, 2) the summed sufficient statistics of each bundle,
    ``natural`` (G, 2) the grid's natural coordinates, ``logz`` (G,) the exact log-partition there. -> (B, G)."""
    if S.ndim != 2 or natural.ndim != 2 or S.shape[1] != natural.shape[1] or logz.shape != natural.shape[:1]:
        raise ValueError(f"S must be (B, d), natural (G, d) and logz (G,); got {tuple(S.shape)}, "
                         f"{tuple(natural.shape)}, {tuple(logz.shape)}")
    return S @ natural.T - N * logz[None]


@dataclass
class ExactPosteriorStage:
    """Result of :func:`exact_posterior_stage`: the exact posterior ``posterior`` (B, G) (uniform prior on the
    grid) of the held-out bundles and ``smoothed``, the same convolved with the targets' kernel (what a perfect
    posterior network outputs); the log-partition ``fit`` to ``smoothed``, its metric ``g`` (G, 2, 2) (Hessian of
    ``F``, natural coordinates) and the posterior-covariance baseline ``g_post`` (G, 2, 2) of ``smoothed``."""

    posterior: torch.Tensor
    smoothed: torch.Tensor
    fit: LogPartitionFit
    g: torch.Tensor
    g_post: torch.Tensor


def exact_posterior_stage(loglik: torch.Tensor, grid: ParamGrid, N: float, idx: torch.Tensor, steps: int,
                          seed: int = 0, convex: bool = False, device: str | torch.device = "cpu",
                          progress: bool = True) -> ExactPosteriorStage:
    """The method's second stage fed the exact posterior instead of the learned one (Lobashev et al. Sec. 3).

    ``loglik`` (B, G): the exact log-likelihood of each held-out bundle at every grid point (any additive
    constant per bundle; e.g. :func:`exponential_family_loglik` of ``geo.heldout(stats).sum(1)``, or a bundle's
    summed log-probabilities from an enumerated table); ``idx`` (B,): the bundles' true grid points
    (``HessianGeometry.idx``). The posterior ``softmax(loglik)`` is smoothed like the targets
    (``ParamGrid.smooth``) and fitted by :func:`fit_log_partition` with ``steps``, ``seed`` and ``convex`` as for
    the learned posterior, so the two fits differ only in their input. Returns an :class:`ExactPosteriorStage`."""
    check_shape(loglik, "loglik", (None, grid.size))
    if idx.shape != loglik.shape[:1]:
        raise ValueError(f"idx must have shape ({loglik.shape[0]},): one grid point per bundle, got {tuple(idx.shape)}")
    P = torch.softmax(loglik, -1)
    P_s = grid.smooth(P)
    fit = fit_log_partition(P_s, grid, N, steps=steps, seed=seed, convex=convex, device=device, progress=progress)
    g = metric(fit.F, grid.natural).detach()
    return ExactPosteriorStage(P, P_s, fit, g, posterior_fisher(P_s, grid, N, idx))


def cell_coordinates(grid: ParamGrid) -> torch.Tensor:
    """(G, 2) float64 coordinates of the grid points in grid cells (row and column index, ``0 .. n - 1``), as
    ``grid.standardized`` scaled back by ``n - 1`` per axis: equal to the indices to float32 rounding (relative
    3e-8; ``standardized`` is computed in float32), the coordinates behind notebook 15's published widths."""
    return grid.standardized * torch.tensor([grid.shape[0] - 1, grid.shape[1] - 1], dtype=torch.float64)


def posterior_sd_cells(P: torch.Tensor, coords: torch.Tensor, cell=1.0) -> torch.Tensor:
    """Standard deviation of distributions on the grid along each coordinate, in grid cells: ``P`` (B, G),
    ``coords`` (G, 2) the grid points' coordinates, ``cell`` the cell size in those coordinates (scalar or (2,);
    1 for :func:`cell_coordinates`). -> (B, 2): ``sqrt(Var_P[coord_i]) / cell_i``. Whether the grid resolves a
    posterior: below ~0.5 cells the learned posterior is mostly the target smoothing (notebooks 09, 15)."""
    check_shape(coords, "coords", (P.shape[-1], 2))
    _, C = posterior_moments(P, coords)
    return C.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt() / cell
