"""The whole method of ``geom.fisher`` in one call (Lobashev et al. Sec. 3): ``reconstruct`` trains the posterior
network, fits the log-partition on held-out bundles and returns the metric on the grid (``HessianGeometry``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import seeds
from ..deprecation import renamed_kwargs
from ..metric import metric
from ._common import check_shape
from .log_partition import LogPartitionFit, fit_log_partition
from .posterior import ParamGrid, PosteriorNet, bundle_draws, predict_posterior, train_posterior


@dataclass
class HessianGeometry:
    """Result of ``reconstruct``: the posterior network and its loss history, the held-out bundles' learned
    posteriors ``P`` (B, G) with their true grid indices ``idx`` (B,) and the positions ``sample_idx`` (B, N) of
    their samples in the pool, the log-partition fit, and on the grid the learned metric ``g`` (G, 2, 2)
    (natural coordinates) and log-partition ``F`` (G,)."""

    grid: ParamGrid
    net: PosteriorNet
    posterior_history: list
    P: torch.Tensor
    idx: torch.Tensor
    fit: LogPartitionFit
    g: torch.Tensor
    F: torch.Tensor
    sample_idx: torch.Tensor

    def heldout(self, values: torch.Tensor) -> torch.Tensor:
        """Any per-sample quantity of the pool, ``values`` (G, n, ...), for the held-out bundles: (B, N, ...).
        ``heldout(pool)`` are the bundles whose posteriors are ``P``; e.g. ``heldout(stats).sum(1)`` are their
        summed sufficient statistics, for the exact posterior of the same bundles."""
        if values.ndim < 2 or values.shape[0] != self.grid.size:
            raise ValueError(f"values must have shape ({self.grid.size}, n, ...): one row per grid point, got "
                             f"{tuple(values.shape)}")
        if values.shape[1] <= int(self.sample_idx.max()):
            raise ValueError(f"values has {values.shape[1]} samples per grid point; the pool given to reconstruct "
                             f"had at least {int(self.sample_idx.max()) + 1}: pass a per-sample quantity of that pool")
        return values[self.idx[:, None], self.sample_idx]


@renamed_kwargs(batch="batch_size", fit_batch="fit_batch_size")
def reconstruct(pool: torch.Tensor, grid: ParamGrid, N: int, posterior_steps: int = 2000,
                fit_steps: int = 1500, bundles_per_point: int = 4, batch_size: int = 256, width: int = 128,
                fit_batch_size: int = 512, centroid_weight: float = 1.0, encoder: nn.Module | None = None,
                seed: int = 0, convex: bool = False, device: str | torch.device = "cpu",
                progress: bool = True) -> HessianGeometry:
    """The whole method of Lobashev et al. (Sec. 3) on a pool of per-sample features ``pool`` (G, n, d): the
    first half of each grid point's samples trains the posterior network, the second half makes
    ``bundles_per_point`` held-out bundles per grid point whose learned posteriors fit ``F``; returns the metric
    ``g = Hessian F`` on the grid. ``convex``: fit the convex-by-construction ``ConvexLogPartitionNet`` (for
    exponential families: the metric is then positive definite everywhere). ``device``: where both networks
    train (e.g. "cuda"); the results come back on the CPU. ``batch_size``: bundles per optimisation step of the
    posterior network (``train_posterior``), ``fit_batch_size``: of the fit of ``F`` (``fit_log_partition``)."""
    check_shape(pool, "pool", (grid.size, None, None))
    n = pool.shape[1]
    if n < 2:
        raise ValueError(f"the pool needs at least 2 samples per grid point, got {n}")
    net, hist = train_posterior(pool[:, : n // 2], grid, N, steps=posterior_steps, batch_size=batch_size, lr=2e-3,
                                width=width, encoder=encoder, seed=seed, device=device, progress=progress)
    gen = seeds.generator(seed, "bundles")
    idx, j = bundle_draws(grid.size, n - n // 2, N, 0, gen, idx=torch.arange(grid.size).repeat(bundles_per_point))
    sample_idx = j + n // 2  # the held-out half of each grid point's samples
    P = predict_posterior(net, pool[idx[:, None], sample_idx])
    fit = fit_log_partition(P, grid, N, steps=fit_steps, batch_size=fit_batch_size, centroid_weight=centroid_weight,
                            seed=seed, convex=convex, device=device, progress=progress)
    g = metric(fit.F, grid.natural).detach()
    with torch.no_grad():
        F = fit.F(grid.natural)
    return HessianGeometry(grid, net, hist, P, idx, fit, g, F, sample_idx)
