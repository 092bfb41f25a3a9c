"""Reference Fisher metrics of the periodic L x L Ising model on a (T, h) grid where the transfer matrix no longer
reaches (L > 10; ``geom.physics``): the long-run fluctuation estimate from Swendsen-Wang chains, doubled by the
model's exact ``h -> -h`` symmetry, with standard errors from the spread across chains; Kaufman's exact ``g_KK`` at
``h = 0`` in its place there, with the long run checked against it; the integrated autocorrelation times along
the ``h = 0`` column (Lobashev et al., ICML 2025, Ising experiment; notebook 10).

Grid convention (as ``geom.fisher.ParamGrid`` orders its points): ``G = n_T * n_h`` points row-major, row ``i``
at temperature ``T_i``, column ``j`` at field ``h_j``, with an odd ``n_h`` and an axis symmetric about 0
(``h_j = -h_{n_h - 1 - j}``), so column ``n_h // 2`` is ``h = 0`` and column ``n_h - 1 - j`` is the mirror of
``j``. Sufficient statistics are ``(E, M) = (sum_<ij> s_i s_j, sum_i s_i)`` as in :func:`ising2d_stats`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..deprecation import renamed_kwargs
from .ising2d import T_CRITICAL, ising2d_gKK_kaufman
from .mcmc import integrated_autocorr_time, ising2d_mcmc


def nearest_row(T_axis, T_target: float) -> int | None:
    """Index of the grid temperature nearest ``T_target`` on the axis ``T_axis`` (n,) (sorted, regular), or
    ``None`` where ``T_target`` lies outside the axis's extent by more than half a cell: a quantity "at T ~ 3" is
    not defined on a grid that stops at 2.6."""
    T_axis = torch.as_tensor(T_axis, dtype=torch.float64)
    half = 0.5 * (T_axis[-1] - T_axis[0]).item() / max(len(T_axis) - 1, 1)
    if not T_axis[0].item() - half - 1e-9 <= T_target <= T_axis[-1].item() + half + 1e-9:
        return None
    return int(torch.argmin((T_axis - T_target).abs()))


def _check_grid(x: np.ndarray, n_h: int) -> tuple[int, int]:
    if x.ndim != 4 or x.shape[-1] != 2:
        raise ValueError(f"x must have shape (updates, chains, G, 2): the statistics (E, M) of every update of "
                         f"every chain at every grid point, got {x.shape}")
    if isinstance(n_h, bool) or int(n_h) != n_h or n_h < 1 or n_h % 2 == 0 or x.shape[2] % n_h:
        raise ValueError(f"n_h must be an odd number of field points (h = 0 in the middle) that divides the "
                         f"G = {x.shape[2]} grid points, got n_h = {n_h!r}")
    if x.shape[1] < 2:
        raise ValueError(f"the standard error needs at least 2 chains per grid point, got {x.shape[1]}")
    return x.shape[2] // n_h, int(n_h)


def ising2d_fluctuation_reference(x, n_h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Long-run fluctuation estimate of the Fisher metric (the covariance of ``(E, M)``; fluctuation-dissipation)
    at every point of a (T, h) grid symmetric in ``h`` (module docstring), with its standard error.

    ``x`` (updates, chains, G, 2): the statistics of every recorded update of ``chains`` independent chains per
    grid point. The model's exact ``h -> -h`` symmetry doubles the samples: a sample at ``-h`` with its spins
    flipped is a sample at ``h``, so the chains at the mirror point enter with ``(E, -M)``. Per chain: the
    covariance about the mean pooled over both mirrors (``1 / updates``); the estimate is the mean of these
    ``2 * chains`` covariances, its standard error their standard deviation (``ddof = 1``) over
    ``sqrt(2 * chains)``. At ``h = 0`` the mirror is the same chain: there only its ``g_KB`` part is new (it
    averages to 0), the standard error uses the ``chains`` chains alone and is 0 for ``g_KB`` (zero by symmetry).
    Returns ``(g, se)``, each (G, 2, 2) float64. Chains correlated along their updates are fine (the error comes
    from the spread across chains); raises ``ValueError`` for a shape that is not a symmetric grid."""
    x = np.asarray(x, dtype=np.float64)
    NT, NH = _check_grid(x, n_h)
    updates, chains, G = x.shape[:3]
    mirror = np.arange(G).reshape(NT, NH)[:, ::-1].reshape(-1)  # grid point at -h
    flip = np.array([1.0, -1.0])  # a sample at -h with its spins flipped is a sample at h: (E, M) -> (E, -M)
    m = x.mean((0, 1))
    mu = 0.5 * (m + m[mirror] * flip)
    d = x - mu
    C = np.einsum("trgi,trgj->rgij", d, d) / updates  # per-chain covariance about the pooled mean
    Cm = C[:, mirror] * np.outer(flip, flip)
    h0 = zero_field_mask(NT, NH)
    both = np.concatenate([C, Cm], 0)  # at h = 0 the mirror is the same chain: only its KB part is new (-> 0)
    g_ref = both.mean(0)
    se = np.where(h0[:, None, None], C.std(0, ddof=1) / math.sqrt(chains),
                  both.std(0, ddof=1) / math.sqrt(2 * chains))
    se[h0, 0, 1] = se[h0, 1, 0] = 0.0  # g_KB = 0 at h = 0 exactly (symmetry)
    return torch.tensor(g_ref), torch.tensor(se)


def zero_field_mask(n_T: int, n_h: int) -> np.ndarray:
    """Flat boolean mask (n_T * n_h,) of the ``h = 0`` column (``n_h // 2``) of a row-major (T, h) grid."""
    h0 = np.zeros((n_T, n_h), dtype=bool)
    h0[:, n_h // 2] = True
    return h0.reshape(-1)


def ising2d_kaufman_zero_field(g: torch.Tensor, se: torch.Tensor, L: int,
                               T_axis) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Put Kaufman's exact ``g_KK`` (:func:`ising2d_gKK_kaufman`) in place of an estimate's at ``h = 0``.

    ``g``, ``se`` (G, 2, 2): a reference metric and its standard error on a (T, h) grid (module docstring) with
    temperatures ``T_axis`` (n_T,). Returns copies ``(g, se, z)``: ``g_KK`` at ``h = 0`` exact (standard error
    0) and ``z`` (n_T,) = (estimate - exact) / standard error there, the check of the estimate against the
    exact value (for an honest error, ``z`` is roughly a t variable with ``chains - 1`` degrees of freedom)."""
    T_axis = torch.as_tensor(T_axis, dtype=torch.float64)
    n_T = len(T_axis)
    if g.shape != se.shape or g.ndim != 3 or g.shape[1:] != (2, 2) or g.shape[0] % n_T:
        raise ValueError(f"g and se must have the same shape (G, 2, 2) with G a multiple of len(T_axis) = {n_T}, "
                         f"got {tuple(g.shape)} and {tuple(se.shape)}")
    g, se = g.clone(), se.clone()
    g_kauf = ising2d_gKK_kaufman(L, T_axis)
    idx0 = torch.tensor(np.nonzero(zero_field_mask(n_T, g.shape[0] // n_T))[0])
    z = (g[idx0, 0, 0] - g_kauf) / se[idx0, 0, 0]
    g[idx0, 0, 0] = g_kauf
    se[idx0, 0, 0] = 0.0
    return g, se, z


def ising2d_autocorr_rows(x, L: int, T_axis, n_h: int,
                          targets=(T_CRITICAL, 2.0, 3.0)) -> tuple[list[dict], list[str]]:
    """Integrated autocorrelation times (:func:`integrated_autocorr_time`, in updates) of ``E`` and ``|M|`` along
    the chains at ``h = 0``, at the grid temperatures nearest each of ``targets`` (skipped where outside the grid,
    :func:`nearest_row`). ``x`` (updates, chains, G, 2) as in :func:`ising2d_fluctuation_reference`, ``T_axis``
    (n_T,). Returns the rows ``dict(L, T, near, tau_E, tau_E_se, tau_absM, tau_absM_se)`` (``near``: "T_c" or the
    target as "2.0") and a note per series too short for its tau (its entries NaN, not guessed)."""
    x = np.asarray(x, dtype=np.float64)
    _, NH = _check_grid(x, n_h)
    taus, notes = [], []
    for T_target in targets:
        it = nearest_row(T_axis, T_target)
        if it is None:
            continue
        g = it * NH + NH // 2
        row = dict(L=L, T=T_axis[it].item(), near="T_c" if T_target == T_CRITICAL else f"{T_target:.1f}")
        for name, series in (("E", -x[:, :, g, 0]), ("absM", np.abs(x[:, :, g, 1]))):
            try:
                row[f"tau_{name}"], row[f"tau_{name}_se"] = integrated_autocorr_time(series)
            except ValueError as e:  # a series shorter than 50 tau: report it, do not guess
                row[f"tau_{name}"], row[f"tau_{name}_se"] = float("nan"), float("nan")
                notes.append(f"L={L}, T={T_axis[it]:.2f}, {name}: {e}")
        taus.append(row)
    return taus, notes


@dataclass
class LongRunReference:
    """Result of :func:`ising2d_long_run_reference`: the reference metric ``g`` (G, 2, 2) in natural coordinates
    with its standard error ``se`` (0 where exact), the Kaufman check ``z`` (n_T,), ``quality`` (the summary
    notebook 10 publishes: updates and chains per point, median / max relative standard error of the metric,
    median / max ``|z|`` and the fraction below 2, the autocorrelation rows under ``autocorr``) and ``notes``
    (autocorrelation series too short for their tau)."""

    g: torch.Tensor
    se: torch.Tensor
    z: torch.Tensor
    quality: dict
    notes: list = field(default_factory=list)


@renamed_kwargs(chunk="shard_size")
def ising2d_long_run_reference(L: int, K, B, T_axis, n_h: int, *, chains: int, updates: int, burn_in: int,
                               seed: int, out_dir=None, shard_size: int = 256,
                               progress: bool = True) -> LongRunReference:
    """The reference metric of notebook 10 for L > 10 on a (T, h) grid (module docstring): ``chains`` independent
    Swendsen-Wang chains per grid point (``K``, ``B`` (G,) natural parameters), ``burn_in`` updates, then every one
    of ``updates`` updates recorded (:func:`ising2d_mcmc`, resumable under ``out_dir``, statistics only); the
    mirrored long-run fluctuation estimate (:func:`ising2d_fluctuation_reference`), Kaufman's exact ``g_KK`` at
    ``h = 0`` in its place with the check ``z`` (:func:`ising2d_kaufman_zero_field`), and the autocorrelation
    times at ``h = 0`` near ``T_c``, 2.0 and 3.0 (:func:`ising2d_autocorr_rows`). ``T_axis`` (n_T,): the grid's
    temperatures. Cost: ``chains * G`` chains of ``burn_in + updates`` updates (2.2 ms per chain and update at
    L = 128)."""
    K, B = np.asarray(K, dtype=np.float64), np.asarray(B, dtype=np.float64)
    G = len(K)
    ref = ising2d_mcmc(L, np.tile(K, chains), np.tile(B, chains), G * chains, updates, thin=1, burn_in=burn_in,
                       seed=seed, shard_size=shard_size, keep_configs=False, out_dir=out_dir, progress=progress)
    x = ref["stats"].reshape(updates, chains, G, 2)
    g, se = ising2d_fluctuation_reference(x, n_h)
    g, se, z = ising2d_kaufman_zero_field(g, se, L, T_axis)
    taus, notes = ising2d_autocorr_rows(x, L, T_axis, n_h)
    rel_se = torch.linalg.matrix_norm(se) / torch.linalg.matrix_norm(g)
    quality = dict(updates_per_point=2 * chains * updates, chains_per_point=chains,
                   median_rel_se_metric=rel_se.median().item(), max_rel_se_metric=rel_se.max().item(),
                   kaufman_check_median_abs_z=z.abs().median().item(),
                   kaufman_check_frac_abs_z_below_2=(z.abs() < 2).double().mean().item(),
                   kaufman_check_max_abs_z=z.abs().max().item(), autocorr=taus)
    return LongRunReference(g, se, z, quality, notes)
