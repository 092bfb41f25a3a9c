"""Hessian geometry of a two-parameter generative family (Lobashev et al., "Hessian Geometry of Latent Space in
Generative Models", ICML 2025, Sec. 3): a posterior network, a log-partition network fitted through Bregman
posteriors, the Fisher metric as its Hessian, and geodesics.

The method, for a family ``p(x | t)`` with 2D parameter ``t`` treated as an exponential family
``p(x | theta) ~ exp(<theta, T(x)> - F(theta))`` in natural coordinates ``theta = theta(t)``:

1. ``train_posterior``: a permutation-invariant network maps a bundle of ``N`` samples drawn at one grid point
   to a softmax over the grid of parameters; it is trained with cross-entropy to Gaussian-smoothed one-hot
   targets. The minimiser of that loss is the Bayes posterior (uniform prior on the grid) convolved with the
   smoothing kernel, so ``ParamGrid.smooth`` applies the same kernel to model posteriors before comparing.
2. ``fit_log_partition``: a smooth network ``F`` (SiLU; its Hessian is not zero almost everywhere) is fitted so
   that ``q_F(t | t') ~ exp(-N D_F(theta(t), theta'))``, with the Bregman divergence
   ``D_F(a, b) = F(a) - F(b) - <grad F(b), a - b>``, matches the learned posterior: Jensen-Shannon divergence
   plus squared distance of centroids (in standardised grid coordinates). For an exponential family this
   ``q_F`` is exactly the posterior given ``N`` samples whose mean sufficient statistic is ``grad F(theta')``;
   we therefore learn one anchor ``theta'_b`` per bundle jointly with ``F`` (initialised at the centroid of the
   learned posterior) instead of pinning it to the bundle's true parameter (whose posterior is centred on the
   noisy maximum-likelihood estimate, not on the truth). ``F`` is identifiable up to an affine term.
3. ``metric``: ``g(theta) = Hessian of F`` (torch.func); ``geodesic``: discrete curve-energy minimisation
   (both in ``geom.metric``, with curve lengths and energies, and re-exported here).

The sample-feature map is the caller's: everything here takes per-sample feature vectors (``(G, n, d)`` pools
of samples at every grid point), whatever model and feature extractor produced them.

Modules: ``posterior`` (step 1: ``ParamGrid``, ``PosteriorNet``, ``train_posterior``), ``log_partition`` (step 2:
Bregman posteriors, ``LogPartitionNet``, ``ConvexLogPartitionNet``, ``fit_log_partition``), ``evaluate`` (baselines
and error measures), ``pipeline`` (``reconstruct``: all three steps), ``stages`` (the same fit fed the exact
posterior, posterior widths in grid cells), ``ising`` (the 2D Ising study on a (T, h) grid: natural coordinates,
error tables against the exact / long-run references, heat capacity and susceptibility curves); every public name
is re-exported here.
"""
from __future__ import annotations

from ..metric import geodesic, metric
from .evaluate import (error_summary, fluctuation_fisher, gaussian_fluctuation_error, interior_mask,
                       not_positive_definite_fraction, posterior_fisher, relative_error, remove_affine)
from .ising import (Ising2DEvaluation, ThermoCurves, cramer_rao_sd_cells, ising2d_error_rows, ising2d_evaluate,
                    ising2d_thermo_curves, metric_error_row, temperature_field_grid, window_mask)
from .log_partition import (ConvexLogPartitionNet, LogPartitionFit, LogPartitionNet, bregman_divergence,
                            bregman_posterior, fit_log_partition, js_divergence)
from .pipeline import HessianGeometry, reconstruct
from .posterior import (ParamGrid, PosteriorNet, bundle_draws, make_bundles, posterior_moments, predict_posterior,
                        train_posterior)
from .stages import (ExactPosteriorStage, cell_coordinates, exact_posterior_stage, exponential_family_loglik,
                     posterior_sd_cells)

__all__ = [
    "ParamGrid", "PosteriorNet", "make_bundles", "bundle_draws", "train_posterior", "predict_posterior", "LogPartitionNet",
    "ConvexLogPartitionNet", "LogPartitionFit", "fit_log_partition", "bregman_divergence", "bregman_posterior",
    "js_divergence", "metric", "posterior_moments", "posterior_fisher", "fluctuation_fisher", "relative_error",
    "not_positive_definite_fraction", "interior_mask", "error_summary", "remove_affine", "geodesic",
    "HessianGeometry", "reconstruct", "gaussian_fluctuation_error", "exponential_family_loglik",
    "ExactPosteriorStage", "exact_posterior_stage", "cell_coordinates", "posterior_sd_cells", "temperature_field_grid",
    "cramer_rao_sd_cells", "ising2d_error_rows", "metric_error_row", "ThermoCurves", "ising2d_thermo_curves",
    "window_mask", "Ising2DEvaluation", "ising2d_evaluate",
]
