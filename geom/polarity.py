"""Polarity sampling: resample a generator's latents by their local scaling (Humayun et al., "Polarity
Sampling: Quality and Diversity Control of Pre-Trained Generative Networks via Singular Values", CVPR 2022).

Polarity sampling draws latents from the prior re-weighted by the product of the generator's Jacobian singular
values raised to a power ``rho`` (the *polarity*; CVPR 2022, Sec. 3: ``p_rho(z) ∝ p(z) prod_i sigma_i(z)^rho``).
Since ``psi(z) = sum_i log sigma_i(z)`` (Humayun et al. 2024, Eq. 4), ``prod_i sigma_i^rho = exp(rho psi)``.
Given a pool ``z_1..z_N ~ p(z)`` with local scaling ``psi_n``, self-normalised importance resampling (sampling /
importance resampling, Rubin 1988) draws from ``p_rho`` in the limit of a large pool, with weights::

    w_n(rho) = exp(rho psi_n) / sum_m exp(rho psi_m)          (computed as a softmax of rho psi: no overflow)

``rho = 0`` is the prior (uniform weights); ``rho < 0`` favours low-psi latents (the CVPR paper: higher
quality, lower diversity, "modes"), ``rho > 0`` high-psi ones (more diversity, "anti-modes"). Here ``psi`` is that
of the *projected* Jacobian (``geom.describe``, ``k`` rows), so the weights are those of the paper's up to the
projection. ``effective_sample_size`` (Kish) says how many pool members a weighting really uses; when it
is small the resampled set repeats a few latents.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import seeds
from .stats import vendi


def _check_psi_rho(psi, rho: float) -> np.ndarray:
    a = np.asarray(psi, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("psi is empty: polarity weights need a pool of at least one latent")
    if not np.isfinite(a).all():
        raise ValueError("psi contains NaN or inf (a rank-deficient Jacobian gives psi = -inf); drop those latents "
                         "or describe them with a rank threshold")
    if not isinstance(rho, (int, float, np.integer, np.floating)) or not math.isfinite(float(rho)):
        raise ValueError(f"rho must be a finite number, got {rho!r}")
    return a


def polarity_weights(psi, rho: float) -> np.ndarray:
    """Normalised polarity weights ``w_n = exp(rho psi_n) / sum_m exp(rho psi_m)`` (CVPR 2022 Sec. 3 with
    ``prod sigma^rho = exp(rho psi)``): ``psi`` ``(N,)`` finite -> ``(N,)`` float64, non-negative, summing to 1
    (uniform for ``rho = 0``). Computed as a max-shifted softmax, exact for any magnitude of ``rho psi``."""
    a = _check_psi_rho(psi, rho)
    s = float(rho) * a
    e = np.exp(s - s.max())
    return e / e.sum()


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``1 / sum_n w_n^2`` of normalised weights ``(N,)`` (``N`` for uniform
    weights, 1 when one weight is 1)."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be a non-empty array of finite, non-negative numbers")
    if not math.isclose(w.sum(), 1.0, rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"weights must sum to 1 (got {w.sum():.6g}); normalise them first")
    return float(1.0 / np.square(w).sum())


def polarity_resample(psi, rho: float, n: int, seed: int = 0, replace: bool = True) -> np.ndarray:
    """Indices ``(n,)`` of ``n`` pool latents drawn with probabilities ``polarity_weights(psi, rho)``
    (``numpy.random.default_rng(seed).choice``). ``replace=True``: i.i.d. draws, the sampling-importance-
    resampling estimate of ``p_rho`` (a latent can repeat); ``replace=False``: ``n`` distinct latents drawn
    successively with the weights (for diversity scores, which duplicates would deflate; needs ``n`` <= the
    number of non-zero weights)."""
    w = polarity_weights(psi, rho)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not replace and n > np.count_nonzero(w):
        raise ValueError(f"cannot draw {n} distinct latents: only {np.count_nonzero(w)} of {w.size} have a non-zero "
                         f"weight at rho={rho} (use replace=True or a smaller n or |rho|)")
    return np.random.default_rng(seed).choice(w.size, size=int(n), replace=replace, p=w)


def polarity_table(psi, rhos) -> pd.DataFrame:
    """For each ``rho`` of ``rhos``: the weighted mean of ``psi`` under ``p_rho`` (``sum_n w_n psi_n``), its
    shift from the pool mean, and the effective sample size -> DataFrame ``rho, psi_mean, psi_shift, ess``."""
    a = _check_psi_rho(psi, 0.0)
    rows = []
    for rho in rhos:
        w = polarity_weights(a, rho)
        m = float(w @ a)
        rows.append(dict(rho=float(rho), psi_mean=m, psi_shift=m - float(a.mean()), ess=effective_sample_size(w)))
    return pd.DataFrame(rows)


def polarity_diversity(features, psi, rhos, n: int, draws: int = 20, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Diversity of polarity samples: for each ``rho``, ``draws`` sets of ``n`` distinct pool latents
    (``polarity_resample(..., replace=False)``, seeds ``seed + d``); the Vendi score
    (``geom.stats.vendi``, cosine kernel) of their ``features`` ``(N, d)`` and their mean ``psi``.
    Returns one row per rho: ``rho, vendi, vendi_lo, vendi_hi, psi_mean, psi_lo, psi_hi`` (mean over draws and
    the ``level`` percentile interval over draws: the spread of a polarity sample of size ``n`` from this pool)."""
    X = np.asarray(features, dtype=np.float64)
    a = _check_psi_rho(psi, 0.0)
    if X.ndim != 2 or len(X) != a.size:
        raise ValueError(f"features must be (N, d) with N = len(psi) = {a.size}, got shape {X.shape}")
    if not isinstance(draws, (int, np.integer)) or draws < 1 or not 0 < level < 1:
        raise ValueError(f"draws must be a positive int and 0 < level < 1, got {draws!r}, {level!r}")
    q = (1 - level) / 2
    rows = []
    for rho in rhos:
        v, m = [], []
        for d in range(int(draws)):
            idx = polarity_resample(a, rho, n, seed=seeds.derive(seed, "draw", d), replace=False)
            v.append(vendi(X[idx]))
            m.append(a[idx].mean())
        v, m = np.asarray(v), np.asarray(m)
        rows.append(dict(rho=float(rho), vendi=v.mean(), vendi_lo=np.quantile(v, q), vendi_hi=np.quantile(v, 1 - q),
                         psi_mean=m.mean(), psi_lo=np.quantile(m, q), psi_hi=np.quantile(m, 1 - q)))
    return pd.DataFrame(rows)
