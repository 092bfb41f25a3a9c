"""Local scaling psi and local rank nu from singular values, and ``describe`` (Humayun et al., Sec. 2).

Given the per-sample Jacobian ``A`` (``(B, k, E)``, see ``geom.jacobian``) with singular values
``sigma_1 >= ... >= sigma_m``, ``m = min(k, E)``:

* local scaling (Eq. 4): ``psi = sum_{i: sigma_i > 0} log sigma_i`` -- the log volume change of the
  generator on its local tangent space (the log pseudo-determinant);
* local rank (Def. 3): ``nu = exp(-sum_i a_i log a_i)``, ``a_i = sigma_i / sum_j sigma_j + eps`` -- the
  exponential of the entropy of the normalised singular values, an effective dimension in ``[1, m]``;
* local complexity delta (Def. 1): see ``geom.complexity``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .complexity import local_complexity
from .jacobian import check_latents, jacobian, output_dim, random_projection


def singular_values(J: Tensor) -> Tensor:
    """Singular values of a batch of Jacobians ``J`` ``(B, k, E)`` -> ``(B, min(k, E))``, descending,
    computed in float64 (whatever the dtype of ``J``)."""
    if not isinstance(J, Tensor) or J.ndim != 3:
        raise ValueError(f"J must be a batch of matrices (B, k, E), got "
                         f"{tuple(J.shape) if isinstance(J, Tensor) else type(J).__name__}")
    if not torch.isfinite(J).all():
        raise ValueError("J contains NaN or inf entries")
    return torch.linalg.svdvals(J.to(torch.float64))


def default_rtol(shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> float:
    """Relative threshold under which a singular value counts as zero: ``max(k, E) * eps(dtype)``, the
    usual numerical-rank rule (as ``numpy.linalg.matrix_rank``), ``dtype`` being the Jacobian's dtype."""
    return max(shape) * torch.finfo(dtype).eps


def nonzero_mask(sv: Tensor, rtol: float | None = None, dtype: torch.dtype = torch.float32,
                 shape: tuple[int, int] | None = None) -> Tensor:
    """``(B, m)`` boolean mask of the singular values ``> rtol * max_i sigma_i`` (per sample).
    Default ``rtol = default_rtol(shape, dtype)`` with ``shape`` defaulting to ``(m, m)``."""
    if rtol is None:
        rtol = default_rtol(shape or (sv.shape[-1], sv.shape[-1]), dtype)
    return sv > rtol * sv.amax(dim=-1, keepdim=True)


def local_scaling(sv: Tensor, rtol: float | None = None, dtype: torch.dtype = torch.float32,
                  shape: tuple[int, int] | None = None) -> Tensor:
    """Local scaling ``psi = sum_i log sigma_i`` over the non-zero singular values (Humayun et al., Eq. 4).

    Args:
        sv: singular values ``(B, m)`` (from ``singular_values``).
        rtol: relative zero threshold (see ``nonzero_mask``); default tied to the Jacobian's size
            ``shape = (k, E)`` and ``dtype`` (pass ``dtype=torch.float64`` for float64 Jacobians).
    Returns:
        ``(B,)`` float64. Zero singular values are excluded, so rank-deficient maps give a finite psi
        (the log pseudo-determinant); an all-zero Jacobian gives 0.
    """
    _check_sv(sv)
    mask = nonzero_mask(sv, rtol, dtype, shape)
    logs = torch.where(mask, torch.log(torch.where(mask, sv, torch.ones_like(sv))), torch.zeros_like(sv))
    return logs.sum(dim=-1)


def local_rank(sv: Tensor, eps: float = 1e-30) -> Tensor:
    """Local rank ``nu = exp(-sum_i a_i log a_i)``, ``a_i = sigma_i / sum_j sigma_j + eps``
    (Humayun et al., Def. 3). ``sv`` ``(B, m)`` -> ``(B,)`` float64; 1 for a rank-one map, ``m`` when all
    singular values are equal."""
    _check_sv(sv)
    sv = sv.to(torch.float64)
    total = sv.sum(dim=-1, keepdim=True)
    a = sv / torch.where(total > 0, total, torch.ones_like(total)) + eps
    return torch.exp(-(a * torch.log(a)).sum(dim=-1))


def _check_sv(sv: Tensor) -> None:
    if not isinstance(sv, Tensor) or sv.ndim != 2:
        raise ValueError(f"singular values must have shape (B, m), got "
                         f"{tuple(sv.shape) if isinstance(sv, Tensor) else type(sv).__name__}")
    if not torch.isfinite(sv).all() or (sv < 0).any():
        raise ValueError("singular values must be finite and non-negative")


def describe(G: Callable[[Tensor], Tensor], z: Tensor, k: int | None = 120, radius: float = 1e-5,
             dim: int | None = 4, seed: int = 0, batch_size: int = 32, complexity: bool = True,
             chunk_size: int | None = None, progress: bool = True) -> pd.DataFrame:
    """psi, nu and delta of ``G`` at every latent of ``z`` (Humayun et al., Eq. 4, Def. 3, Def. 1).

    Args:
        G: generator ``(B, *latent_shape) -> (B, *out_shape)``.
        z: latents ``(N, *latent_shape)``.
        k: output projection dimension (paper: 120); ``None`` for the full Jacobian.
        radius, dim: cross-polytope radius and dimension for delta (paper: ``r = 1e-5``, ``P = 4`` for SD);
            ``dim`` is capped at ``E``; ``dim=None`` means ``min(4, E)``.
        seed: seeds the output projection and the cross-polytope basis (both fixed across the batch, so
            descriptors of different latents are comparable).
        batch_size: latents per Jacobian/forward batch.
        complexity: compute delta (needs activation modules in ``G``); ``False`` leaves it out.
    Returns:
        DataFrame with ``N`` rows and columns ``psi``, ``nu`` (float64) and ``delta`` (int64).
    """
    check_latents(z)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    E = math.prod(z.shape[1:])
    D = output_dim(G, z)
    if k is not None and k > D:
        raise ValueError(f"k={k} is larger than the output dimension D={D}; use k=None or k <= {D}")
    P = None if k is None else random_projection(D, k, seed=seed, dtype=z.dtype, device=z.device)
    rows = D if P is None else k
    dim = min(4, E) if dim is None else min(int(dim), E)
    basis = random_projection(E, dim, seed=seed + 1, dtype=z.dtype, device=z.device).T if complexity else None
    psi, nu, delta = [], [], []
    starts = range(0, z.shape[0], batch_size)
    for s in tqdm(starts, desc="describe", disable=not progress, total=len(starts)):
        zb = z[s:s + batch_size]
        J = jacobian(G, zb, projection=P, chunk_size=chunk_size)
        sv = singular_values(J)
        psi.append(local_scaling(sv, dtype=J.dtype, shape=(rows, E)))
        nu.append(local_rank(sv))
        if complexity:
            delta.append(local_complexity(G, zb, radius=radius, dim=dim, basis=basis))
    out = {"psi": torch.cat(psi).numpy(), "nu": torch.cat(nu).numpy()}
    if complexity:
        out["delta"] = torch.cat(delta).numpy().astype(np.int64)
    return pd.DataFrame(out)
