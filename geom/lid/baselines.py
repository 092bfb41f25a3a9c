"""Baselines of ``geom.lid``: the local intrinsic dimension of a generator's image from the numerical rank of its
Jacobian, and the classical nearest-neighbour estimators (MLE, TwoNN) of ``scikit-dimension``."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..descriptors import local_rank, nonzero_mask, singular_values
from ..jacobian import jacobian


def jacobian_rank(sv: Tensor, rtol: float | None = None, dtype: torch.dtype = torch.float32,
                  shape: tuple[int, int] | None = None) -> Tensor:
    """Numerical rank of each Jacobian from its singular values ``sv`` ``(B, m)`` -> ``(B,)`` int64: the number
    of singular values counted non-zero by ``geom.descriptors.nonzero_mask`` (the same threshold as psi),
    the LID of the generator's image at that latent (rank theorem). ``dtype``/``shape`` are the Jacobian's."""
    if not isinstance(sv, Tensor) or sv.ndim != 2:
        raise ValueError(f"singular values must have shape (B, m), got "
                         f"{tuple(sv.shape) if isinstance(sv, Tensor) else type(sv).__name__}")
    if not torch.isfinite(sv).all() or (sv < 0).any():
        raise ValueError("singular values must be finite and non-negative")
    return nonzero_mask(sv, rtol, dtype, shape).sum(-1).to(torch.int64)


def generator_lid(G: Callable[[Tensor], Tensor], z: Tensor, k: int | None = None, seed: int = 0,
                  rtol: float | None = None, chunk_size: int | None = None) -> pd.DataFrame:
    """LID of a generator's image at each latent of ``z`` ``(N, *latent_shape)``: the numerical rank of the
    (optionally ``k``-projected) Jacobian ``A = P^T J_G(z)`` and the local rank ``nu`` (Humayun et al., Def. 3)
    beside it. A random projection to ``k >= rank`` preserves the rank almost surely.

    Returns:
        DataFrame, ``N`` rows: ``rank`` (int64), ``nu`` (float64).
    """
    J = jacobian(G, z, k=k, seed=seed, chunk_size=chunk_size)
    sv = singular_values(J)
    rank = jacobian_rank(sv, rtol, dtype=J.dtype, shape=tuple(J.shape[1:]))
    return pd.DataFrame({"rank": rank.numpy(), "nu": local_rank(sv).numpy()})


# ------------------------------------------------------------------------------------------ kNN (skdim)
KNN_METHODS = ("mle", "twonn")


def knn_lid(X, method: str = "mle", n_neighbors: int = 20, pointwise: bool = False, n_jobs: int = 1,
            **kwargs) -> float | np.ndarray:
    """Classical nearest-neighbour intrinsic dimension of a point cloud ``X`` ``(N, D)``, from
    ``scikit-dimension``: ``"mle"`` (Levina & Bickel 2004, ``skdim.id.MLE``; Haro et al.'s approximation) or
    ``"twonn"`` (Facco et al. 2017, ``skdim.id.TwoNN``). ``kwargs`` go to the estimator's constructor.

    Returns:
        the global estimate (float), or with ``pointwise=True`` one estimate per point ``(N,)`` from its
        ``n_neighbors``-neighbourhood.
    """
    if method not in KNN_METHODS:
        raise ValueError(f"method must be one of {KNN_METHODS}, got {method!r}")
    X = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 3 or X.shape[1] < 2:
        raise ValueError(f"X must be a point cloud (N, D) with N >= 3 and D >= 2, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
        raise ValueError("X must be finite numbers (NaN/inf found)")
    if not isinstance(n_neighbors, int) or not 2 <= n_neighbors < X.shape[0]:
        raise ValueError(f"n_neighbors must be an int in [2, N) = [2, {X.shape[0]}), got {n_neighbors!r}")
    import skdim

    X = X.astype(np.float64)
    if method == "mle":
        est = skdim.id.MLE(**kwargs).fit(X, n_neighbors=n_neighbors, n_jobs=n_jobs)
        return np.asarray(est.dimension_pw_, dtype=np.float64) if pointwise else float(est.dimension_)
    est = skdim.id.TwoNN(**kwargs)
    if pointwise:
        return np.asarray(est.fit_pw(X, n_neighbors=n_neighbors, n_jobs=n_jobs).dimension_pw_, dtype=np.float64)
    return float(est.fit(X).dimension_)

