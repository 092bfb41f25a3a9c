"""Exactly solvable models used to validate the Hessian-geometry method (Lobashev et al., ICML 2025, experiments on
exactly solvable models):
the periodic 1D Ising chain (``ising1d``), the periodic 2D Ising model on an L x L torus (``ising2d``: transfer
matrix, Kaufman, Onsager, exact samples, heat capacity and susceptibility from a metric; ``mcmc``: Metropolis,
Swendsen-Wang, resumable chains; ``reference``: the long-run fluctuation reference metric on a (T, h) grid with the
h -> -h mirror, Kaufman at h = 0, autocorrelation times) and the open-boundary TASEP (``tasep``). Every public name is re-exported here: ``from geom import physics; physics.x``.

Conventions. Ising weights are ``p(s) ~ exp(K * sum_<ij> s_i s_j + B * sum_i s_i)`` with spins ``s = +-1``,
natural parameters ``(K, B) = (J / T, h / T)`` (J = 1) and sufficient statistics ``(sum_<ij> s_i s_j, sum_i s_i)``;
``log Z(K, B)`` is the log-partition function, so its Hessian in ``(K, B)`` is the Fisher metric of one
configuration. Functions that return ``log Z`` are written in torch (float64) so that ``torch.func.hessian``
differentiates them; samplers take an explicit ``seed`` and use ``numpy.random.default_rng``.

TASEP (Derrida, Evans, Hakim, Pasquier 1993): particles enter at site 1 with rate alpha, hop right with rate 1,
leave site L with rate beta; the stationary weight of a configuration tau in {0,1}^L is the matrix-product
element ``<W| prod_i (tau_i D + (1 - tau_i) E) |V>`` with ``DE = D + E``, ``D|V> = |V>/beta``,
``<W|E = <W|/alpha``, ``<W|V> = 1``.
"""
from __future__ import annotations

from .ising1d import ising_chain_features, ising_chain_logz, ising_chain_sample, ising_chain_stats
from .ising2d import (T_CRITICAL, ising2d_energy_kaufman, ising2d_enumerate, ising2d_exact_moments,
                      ising2d_features, ising2d_fisher, ising2d_free_energy_onsager, ising2d_gKK_kaufman,
                      ising2d_heat_capacity, ising2d_heat_capacity_kaufman, ising2d_logz, ising2d_logz_kaufman,
                      ising2d_sample, ising2d_sample_grid, ising2d_stats, ising2d_susceptibility)
from .mcmc import (integrated_autocorr_time, ising2d_mcmc, ising2d_mcmc_pool, ising2d_metropolis,
                   ising2d_swendsen_wang, swendsen_wang_thinning)
from .reference import (LongRunReference, ising2d_autocorr_rows, ising2d_fluctuation_reference,
                        ising2d_kaufman_zero_field, ising2d_long_run_reference, nearest_row, zero_field_mask)
from .tasep import (tasep_current, tasep_features, tasep_fisher, tasep_generator_stationary, tasep_logz,
                    tasep_phase, tasep_sample, tasep_weights)

__all__ = [
    "ising_chain_logz", "ising_chain_sample", "ising_chain_stats", "ising_chain_features",
    "ising2d_logz", "ising2d_logz_kaufman", "ising2d_free_energy_onsager", "ising2d_enumerate",
    "ising2d_sample", "ising2d_metropolis", "ising2d_swendsen_wang", "ising2d_mcmc", "integrated_autocorr_time",
    "ising2d_energy_kaufman", "ising2d_stats", "ising2d_features", "ising2d_exact_moments",
    "ising2d_fisher", "ising2d_gKK_kaufman", "ising2d_heat_capacity", "ising2d_heat_capacity_kaufman",
    "ising2d_susceptibility", "ising2d_sample_grid",
    "ising2d_mcmc_pool", "swendsen_wang_thinning", "LongRunReference", "ising2d_long_run_reference",
    "ising2d_fluctuation_reference", "ising2d_kaufman_zero_field", "ising2d_autocorr_rows", "nearest_row",
    "zero_field_mask",
    "T_CRITICAL", "tasep_logz", "tasep_current", "tasep_weights", "tasep_generator_stationary",
    "tasep_sample", "tasep_fisher", "tasep_features", "tasep_phase",
]
