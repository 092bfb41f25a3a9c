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
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from .complexity import local_complexity, polytope_basis
from .deprecation import deprecated
from .jacobian import NonFiniteError, check_latents, jacobian, output_dim, random_projection
from .models.base import check_generator


SVD_ONE_THREAD_MAX = 1 << 20
"""On the CPU, matrices with at most this many entries (``k x E``) are decomposed with one intra-op thread: for
the descriptor's ``120 x E`` Jacobians LAPACK's threaded SVD is slower than a single thread (a batch of 32
``120 x 128`` float64 matrices: 0.52 s with two threads, 0.077 s with one, on the shared 2-core machine of
``benchmarks/README.md``), and the values are those of the same LAPACK routine."""


@contextmanager
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def singular_values(J: Tensor) -> Tensor:
    """Singular values of a batch of Jacobians ``J`` ``(B, k, E)`` -> ``(B, min(k, E))``, descending,
    computed in float64 (whatever the dtype of ``J``), by ``torch.linalg.svdvals`` (LAPACK ``gesdd`` on the CPU;
    one intra-op thread for matrices up to ``SVD_ONE_THREAD_MAX`` entries)."""
    if not isinstance(J, Tensor) or J.ndim != 3:
        raise ValueError(f"J must be a batch of matrices (B, k, E), got "
                         f"{tuple(J.shape) if isinstance(J, Tensor) else type(J).__name__}")
    if not torch.isfinite(J).all():
        bad = (~torch.isfinite(J)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(f"J contains NaN or inf entries (batch rows {bad[:10]}); no singular value is "
                             f"defined there")
    Jd = J.to(torch.float64)
    if Jd.device.type == "cpu" and Jd.shape[-1] * Jd.shape[-2] <= SVD_ONE_THREAD_MAX:
        with _one_thread():
            sv = torch.linalg.svdvals(Jd)
    else:
        sv = torch.linalg.svdvals(Jd)
    if not torch.isfinite(sv).all():  # LAPACK does not always raise on failure to converge
        raise NonFiniteError("the SVD of J returned NaN or inf singular values (LAPACK did not converge); "
                             "rescale the generator's output or compute J in float64")
    return sv


# Version of the descriptor engine (geom.jacobian, geom.complexity, geom.descriptors). Bump it with every change
# to that code that can change a published number (psi, nu or delta of the same generator, latents and settings):
# geom.sweep manifests and geom.slices.cached_describe keys record it, so rows computed by older code are never
# served. 2: psi's zero threshold ``zero_threshold`` and delta evaluated in float64 (``local_complexity``).
ENGINE_VERSION = 2

# Rounding error of a computed Jacobian, relative to eps(dtype) * ||J||_F; see ``zero_threshold``.
SV_ERROR_FACTOR = 10.0


def zero_threshold(sv: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Absolute threshold ``tau`` ``(B, 1)`` under which a singular value of a Jacobian computed in ``dtype``
    is not resolved: ``tau = SV_ERROR_FACTOR * eps(dtype) * ||J||_F``, with ``||J||_F = ||sigma||_2`` exactly
    (so only ``sv`` ``(B, m)`` and the Jacobian's dtype are needed).

    Why: a computed Jacobian is ``J + dJ`` with rounding error ``dJ``. By Weyl's inequality each computed
    singular value is within ``||dJ||_2`` of the exact one, so a singular value above ``||dJ||_2`` is resolved
    (non-zero) and one below it may be pure rounding noise (e.g. the spurious singular values of a map whose
    rank is lower than ``min(k, E)``). The rounding error of automatic differentiation in floating point is
    a sum of products of the layers' local derivatives, each rounded relative to its size; empirically
    ``||dJ||_2 <= c * eps(dtype) * ||J||_F`` with a small ``c``. Measured against float64 recomputation
    (``geom.jacobian`` of the same network in float64, same latents and projection) on 96 MLP generators
    with ReLU / SiLU / Tanh, one or three hidden layers, ``E`` in {16, 256, 4096}, ``D`` in {48, 256},
    ``k = None`` and ``k = 120``, output layers of condition number 1e3 and 1e6, full rank and with half
    the rank removed, ``max ||dJ||_2 / (eps ||J||_F) = 3.2`` (``||dJ||_F``: 4.9; the largest spurious singular
    value of the rank-deficient ones: 0.56); on the tiny-ldm VAE decoder (convolutions, GroupNorm, attention;
    ``E = 256``, ``k = 120``) 4.3. ``SV_ERROR_FACTOR = 10`` is that maximum times a margin of 2.3, so a kept
    singular value has relative error below ``4.3 / 10`` in the worst case (Weyl); in practice the error of
    a singular value is far smaller (first order ``|u_i^T dJ v_i|``, 1e-6..1e-3 relative). The
    classical rule ``max(k, E) * eps * sigma_max`` (``numpy.linalg.matrix_rank``, ``default_rtol``) grows
    with ``E`` and, for ``E = 4096`` in float32, dropped singular values resolved to 1e-3 relative accuracy.
    The estimate assumes no catastrophic cancellation inside ``G`` (a Jacobian that is a small difference of
    large terms carries a larger error); pass ``rtol`` to ``local_scaling`` to override it.
    """
    _check_sv(sv)
    return SV_ERROR_FACTOR * torch.finfo(dtype).eps * torch.linalg.vector_norm(sv.to(torch.float64), dim=-1,
                                                                               keepdim=True)


@dataclass(frozen=True)
class Spectrum:
    """The singular values of a batch of Jacobians with their zero threshold: ``values`` ``(B, m)`` float64,
    descending; ``threshold`` ``(B, 1)`` = ``zero_threshold(values, dtype)``; ``dtype`` the Jacobian's dtype.
    ``local_scaling`` / ``local_rank`` take it directly, so no caller passes the dtype by hand."""
    values: Tensor
    threshold: Tensor
    dtype: torch.dtype

    @property
    def nonzero(self) -> Tensor:
        """``(B, m)`` bool: the singular values the Jacobian resolves."""
        return self.values > self.threshold

    @property
    def n_dropped(self) -> Tensor:
        """``(B,)`` int64: how many singular values psi leaves out (``describe``'s ``n_dropped_sv``)."""
        return (~self.nonzero).sum(dim=-1)


def spectrum(J: Tensor) -> Spectrum:
    """``Spectrum`` of a batch of Jacobians ``J`` ``(B, k, E)``: ``singular_values(J)`` and the zero threshold
    of a Jacobian computed in ``J.dtype`` (``zero_threshold``)."""
    values = singular_values(J)
    return Spectrum(values, zero_threshold(values, J.dtype), J.dtype)


def _warn_shape(shape, name: str) -> None:
    if shape is not None:
        deprecated(f"{name}(shape=...)", "it has no effect (the zero threshold needs no shape): drop the argument; "
                   "it will be removed", stacklevel=3)


def default_rtol(shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> float:
    """The classical numerical-rank rule ``max(k, E) * eps(dtype)`` relative to ``sigma_max`` (as
    ``numpy.linalg.matrix_rank``). Kept for comparison and for explicit use (``local_scaling(sv,
    rtol=default_rtol((k, E)))``); it is no longer the default, which is ``zero_threshold``: for large ``E``
    this rule drops singular values that a float32 Jacobian resolves accurately."""
    return max(shape) * torch.finfo(dtype).eps


def nonzero_mask(sv: Tensor, rtol: float | None = None, dtype: torch.dtype = torch.float32,
                 shape: tuple[int, int] | None = None) -> Tensor:
    """``(B, m)`` boolean mask of the resolved (non-zero) singular values of ``sv`` ``(B, m)``.

    Default: ``sv > zero_threshold(sv, dtype)``, ``dtype`` being the dtype the Jacobian was computed in.
    With ``rtol``: ``sv > rtol * max_i sigma_i`` per sample (an explicit relative threshold).
    ``shape``: deprecated (``DeprecationWarning``): the threshold needs no shape; drop the argument."""
    _warn_shape(shape, "nonzero_mask")
    if rtol is None:
        return sv > zero_threshold(sv, dtype)
    return sv > rtol * sv.amax(dim=-1, keepdim=True)


def local_scaling(sv: Tensor, rtol: float | None = None, dtype: torch.dtype = torch.float32,
                  shape: tuple[int, int] | None = None) -> Tensor:
    """Local scaling ``psi = sum_i log sigma_i`` over the non-zero singular values (Humayun et al., Eq. 4).

    Args:
        sv: a ``Spectrum`` (from ``spectrum(J)``: carries its threshold) or singular values ``(B, m)`` (from
            ``singular_values``; then ``dtype`` says how the Jacobian was computed).
        rtol: explicit relative zero threshold (``sigma_i > rtol * sigma_max``); default ``None``: the
            singular values resolved by a Jacobian computed in ``dtype`` (``zero_threshold``).
        dtype: the dtype the Jacobian was computed in (``J.dtype``; pass ``torch.float64`` for float64
            Jacobians).
        shape: deprecated (``DeprecationWarning``): the threshold no longer depends on ``(k, E)``; drop it.
    Returns:
        ``(B,)`` float64, in nats. Unresolved singular values are excluded, so rank-deficient maps give a
        finite psi (the log pseudo-determinant); an all-zero Jacobian gives 0. ``(~nonzero_mask(sv, rtol,
        dtype)).sum(-1)`` counts the excluded ones (``describe``'s ``n_dropped_sv``).
    """
    _warn_shape(shape, "local_scaling")
    if isinstance(sv, Spectrum):
        mask = sv.nonzero if rtol is None else nonzero_mask(sv.values, rtol)
        sv = sv.values
    else:
        _check_sv(sv)
        mask = nonzero_mask(sv, rtol, dtype)
    logs = torch.where(mask, torch.log(torch.where(mask, sv, torch.ones_like(sv))), torch.zeros_like(sv))
    return logs.sum(dim=-1)


def local_rank(sv: Tensor, eps: float = 1e-30) -> Tensor:
    """Local rank ``nu = exp(-sum_i a_i log a_i)``, ``a_i = sigma_i / sum_j sigma_j + eps``
    (Humayun et al., Def. 3). ``sv`` ``(B, m)`` -> ``(B,)`` float64; 1 for a rank-one map, ``m`` when all
    singular values are equal. ``sv`` may be a ``Spectrum``."""
    if isinstance(sv, Spectrum):
        sv = sv.values
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
        chunk_size: VJPs (or JVPs) vmapped at once (``geom.jacobian``); ``None``: as many as the memory budget
            holds (``$GEOM_MEMORY_BUDGET``, else half the free memory: ``geom.memory_budget_bytes``).
    Returns:
        DataFrame with ``N`` rows and columns ``psi``, ``nu`` (float64), ``delta`` (int64, when ``complexity``)
        and ``n_dropped_sv`` (int64): how many of the ``min(k, E)`` singular values (``min(D, E)`` for
        ``k=None``) were below the rounding-error threshold ``zero_threshold`` of the Jacobian's dtype and
        left out of ``psi`` (``nu`` uses all of them).

    Raises:
        ValueError: ``G`` is batch-coupled or stochastic (``geom.models.base.check_generator``; checked before
            any forward pass, the model is never changed), ``k > D``, bad latents or ``batch_size``.
    """
    check_latents(z)
    check_generator(G)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    E = math.prod(z.shape[1:])
    D = output_dim(G, z)
    P, basis = projection_and_basis(D, E, k, 4 if dim is None else dim, seed, complexity, z.dtype, z.device)
    out = describe_batches(G, z, P, basis, radius, batch_size, chunk_size, progress)
    return pd.DataFrame(out)


def projection_and_basis(D: int, E: int, k: int | None, dim: int, seed: int, complexity: bool = True,
                         dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
                         ) -> tuple[Tensor | None, Tensor | None]:
    """What every latent of a run shares, drawn from ``seed``: the output projection ``P`` ``(D, k)``
    (``random_projection(D, k, seed)`` in ``dtype``; ``None`` for ``k=None``) and the cross-polytope basis
    ``(min(dim, E), E)`` (``polytope_basis(E, min(dim, E), seed)``, float64; ``None`` without ``complexity``).
    ``describe`` and ``geom.sweep`` both draw them here, so the same settings give the same numbers.
    Raises ``ValueError`` when ``k > D``."""
    if k is not None and k > D:
        raise ValueError(f"k={k} is larger than the output dimension D={D}; use k=None or k <= {D}")
    P = None if k is None else random_projection(D, k, seed=seed, dtype=dtype, device=device)
    basis = polytope_basis(E, min(int(dim), E), seed, dtype=torch.float64, device=device) if complexity else None
    return P, basis


def describe_batches(G: Callable[[Tensor], Tensor], z: Tensor, projection: Tensor | None, basis: Tensor | None,
                     radius: float, batch_size: int, chunk_size: int | None = None,
                     progress: bool = True) -> dict[str, np.ndarray]:
    """The descriptor loop of ``describe`` (and ``geom.sweep``): per batch of ``batch_size`` latents of ``z``,
    the (projected) Jacobian, its singular values -> psi, nu, ``n_dropped_sv``, and delta at ``radius`` on the
    polytope ``basis`` (left out when ``basis`` is None). ``projection`` and ``basis`` from
    ``projection_and_basis``. Returns ``{"psi", "nu"[, "delta"], "n_dropped_sv"}`` arrays of ``len(z)``
    (psi, nu float64; delta, n_dropped_sv int64), on the CPU."""
    psi, nu, delta, dropped = [], [], [], []
    starts = range(0, z.shape[0], batch_size)
    for s in tqdm(starts, desc="describe", disable=not progress, total=len(starts)):
        zb = z[s:s + batch_size]
        J = jacobian(G, zb, projection=projection, chunk_size=chunk_size)
        sp = spectrum(J)
        psi.append(local_scaling(sp).cpu())
        dropped.append(sp.n_dropped.cpu())
        nu.append(local_rank(sp).cpu())
        if basis is not None:
            delta.append(local_complexity(G, zb, radius=radius, dim=basis.shape[0], basis=basis).cpu())
    out = {"psi": torch.cat(psi).numpy(), "nu": torch.cat(nu).numpy()}
    if basis is not None:
        out["delta"] = torch.cat(delta).numpy().astype(np.int64)
    out["n_dropped_sv"] = torch.cat(dropped).numpy().astype(np.int64)
    return out
