"""Exactly solvable models used to validate the Hessian-geometry method (Lobashev et al., ICML 2025, experiments on
exactly solvable models):
the periodic 1D Ising chain, the periodic 2D Ising model on an L x L torus, and the open-boundary TASEP.

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

import functools
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

__all__ = [
    "ising_chain_logz", "ising_chain_sample", "ising_chain_stats", "ising_chain_features",
    "ising2d_logz", "ising2d_logz_kaufman", "ising2d_free_energy_onsager", "ising2d_enumerate",
    "ising2d_sample", "ising2d_metropolis", "ising2d_swendsen_wang", "ising2d_mcmc", "integrated_autocorr_time",
    "ising2d_energy_kaufman", "ising2d_stats", "ising2d_features", "ising2d_exact_moments",
    "T_CRITICAL", "tasep_logz", "tasep_current", "tasep_weights", "tasep_generator_stationary",
    "tasep_sample", "tasep_fisher", "tasep_features", "tasep_phase",
]

T_CRITICAL = 2.0 / math.log(1.0 + math.sqrt(2.0))  # Onsager's critical temperature (J = 1), 2.2692


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)


def _holds(cond: torch.Tensor) -> bool:
    """``bool(cond.all())``, or True under torch.func transforms (vmap/grad), where values cannot be read."""
    try:
        return bool(cond.all())
    except RuntimeError:
        return True


def _check_finite(name: str, x) -> None:
    if not _holds(torch.isfinite(_t(x))):
        raise ValueError(f"{name} must be finite, got {x}")


# ------------------------------------------------------------------------------------------ 1D Ising chain
def ising_chain_logz(K, H, n: int) -> torch.Tensor:
    """Exact log Z of the periodic Ising chain of ``n`` spins: ``log(l+^n + l-^n)`` with
    ``l+- = e^K cosh H +- sqrt(e^{2K} sinh^2 H + e^{-2K})`` (transfer matrix; Baxter, Exactly Solved Models, Ch. 2).

    ``K``, ``H``: broadcastable tensors (any shape); returns their broadcast shape, differentiable."""
    if n < 2:
        raise ValueError(f"the periodic chain needs n >= 2 spins, got {n}")
    K, H = torch.broadcast_tensors(_t(K), _t(H))
    _check_finite("K, H", torch.stack([K, H]))
    root = torch.sqrt(torch.exp(2 * K) * torch.sinh(H) ** 2 + torch.exp(-2 * K))
    lp = torch.exp(K) * torch.cosh(H) + root
    lm = torch.exp(K) * torch.cosh(H) - root
    return n * torch.log(lp) + torch.log1p((lm / lp) ** n)


def ising_chain_sample(K: float, H: float, n: int, size: int, seed=0) -> np.ndarray:
    """Exact samples of the periodic chain, shape ``(size, n)`` int8 in {-1, +1}.

    Transfer matrix ``T(s, s') = exp(K s s' + H (s + s') / 2)``: draw ``s_1`` from ``(T^n)_{s1 s1} / Z``, then
    ``s_{i+1}`` from ``T(s_i, s_{i+1}) (T^{n-i})_{s_{i+1} s_1}`` (the chain is a Markov chain pinned at s_1)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not (np.isfinite(K) and np.isfinite(H)):
        raise ValueError(f"K, H must be finite, got {K}, {H}")
    s = np.array([1.0, -1.0])
    T = np.exp(K * s[:, None] * s[None, :] + H * (s[:, None] + s[None, :]) / 2)
    T = T / np.linalg.eigvalsh(T).max()
    P = [np.eye(2)]
    for _ in range(n):
        P.append(P[-1] @ T)
    first = np.diag(P[n]) / np.trace(P[n])
    idx = np.empty((size, n), dtype=np.int64)
    idx[:, 0] = (rng.random(size) > first[0]).astype(np.int64)  # index 0 = spin +1
    i1 = idx[:, 0]
    for i in range(1, n):
        w = T[idx[:, i - 1]] * P[n - i][:, i1].T  # (size, 2)
        idx[:, i] = (rng.random(size) * w.sum(1) > w[:, 0]).astype(np.int64)
    return s[idx].astype(np.int8)


def ising_chain_stats(s) -> np.ndarray:
    """Sufficient statistics ``(sum_i s_i s_{i+1}, sum_i s_i)`` of periodic chains ``s`` (size, n) -> (size, 2)."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"chains must have shape (size, n), got {s.shape}")
    return np.stack([(s * np.roll(s, -1, axis=1)).sum(1), s.sum(1)], axis=1)


def ising_chain_features(s) -> np.ndarray:
    """Per-sample features fed to the posterior network, (size, n) -> (size, 4): nearest- and next-nearest
    neighbour correlation, magnetisation and |magnetisation| per spin (the first and third are sufficient)."""
    s = np.asarray(s, dtype=np.float64)
    n = s.shape[1]
    return np.stack([(s * np.roll(s, -1, 1)).sum(1) / n, (s * np.roll(s, -2, 1)).sum(1) / n,
                     s.mean(1), np.abs(s.mean(1))], axis=1)


# ------------------------------------------------------------------------------------------ 2D Ising model
def _rows(L: int) -> np.ndarray:
    """All 2^L rows of spins, (2^L, L), row r has spin j = +1 iff bit j of r is 0."""
    r = np.arange(2 ** L)[:, None]
    return 1 - 2 * ((r >> np.arange(L)[None, :]) & 1)


def _transfer_log(L: int, K: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Log of the symmetric row transfer matrix, (..., 2^L, 2^L)."""
    rows = torch.as_tensor(_rows(L), dtype=torch.float64)
    intra = (rows * rows.roll(-1, 1)).sum(1)  # (S,)
    mag = rows.sum(1)
    inter = rows @ rows.T  # (S, S)
    K, B = K[..., None, None], B[..., None, None]
    half = (K * intra[:, None] + B * mag[:, None]) / 2
    return half + half.transpose(-1, -2) + K * inter


def ising2d_logz(L: int, K, B=0.0) -> torch.Tensor:
    """Exact log Z of the periodic L x L Ising model by the row transfer matrix, ``log tr T^L`` (any field).

    ``K``, ``B``: broadcastable tensors; returns their broadcast shape, differentiable (float64).
    Cost ``O(L * 8^L)`` per point (L products of 2^L x 2^L matrices): fine for L <= 8, slow beyond 10."""
    if not 2 <= L <= 12:
        raise ValueError(f"transfer matrix log Z supports 2 <= L <= 12, got L={L}")
    K, B = torch.broadcast_tensors(_t(K).double(), _t(B).double())
    _check_finite("K, B", torch.stack([K, B]))
    lt = _transfer_log(L, K, B)
    c = lt.amax(dim=(-1, -2), keepdim=True)
    A = torch.exp(lt - c)
    logscale = L * c[..., 0, 0]
    P = A
    for _ in range(L - 1):  # A^L with renormalisation (the scale is a constant: no gradient needed)
        m = P.amax(dim=(-1, -2), keepdim=True).detach()
        P = (P / m) @ A
        logscale = logscale + torch.log(m[..., 0, 0])
    return logscale + torch.log(torch.diagonal(P, dim1=-2, dim2=-1).sum(-1))


def ising2d_logz_kaufman(L: int, K) -> torch.Tensor:
    """Exact log Z of the periodic L x L Ising model at zero field, Kaufman (1949) finite-lattice formula:
    ``Z = 1/2 (2 sinh 2K)^{L^2/2} (Z1 + Z2 + Z3 + Z4)`` with ``Z1,2 = prod_r 2 cosh|sinh(L g_{2r+1} / 2)``,
    ``Z3,4 = prod_r 2 cosh|sinh(L g_{2r} / 2)``, ``cosh g_l = cosh 2K coth 2K - cos(pi l / L)`` and
    ``g_0 = 2K + log tanh K`` (its sign makes Z4 negative above T_c). ``K > 0`` tensor, any shape; differentiable."""
    K = _t(K).double()
    _check_finite("K", K)
    if not _holds(K > 0):
        raise ValueError("Kaufman's formula is implemented for ferromagnetic K > 0")
    Ke = K[..., None]
    l = torch.arange(2 * L, dtype=torch.float64)
    arg = torch.cosh(2 * Ke) / torch.tanh(2 * Ke) - torch.cos(math.pi * l / L)
    g = torch.acosh(arg[..., 1:])
    g0 = 2 * Ke + torch.log(torch.tanh(Ke))
    x = L * torch.cat([g0, g], dim=-1) / 2  # (..., 2L), x_l = L gamma_l / 2
    xo, xe = x[..., 1::2], x[..., 0::2]

    def log2cosh(v):
        return v.abs() + torch.log1p(torch.exp(-2 * v.abs()))

    def log2sinh_abs(v):
        return v.abs() + torch.log(-torch.expm1(-2 * v.abs()))

    l1, l2 = log2cosh(xo).sum(-1), log2sinh_abs(xo).sum(-1)
    l3, rest4 = log2cosh(xe).sum(-1), log2sinh_abs(xe[..., 1:]).sum(-1)
    m = torch.maximum(torch.maximum(l1, l2), l3)  # Z4 <= Z3 (|sinh| < cosh)
    # Z4 = 2 sinh(x_0) * prod_{r>=1} 2 sinh(x_2r). Its factor 2 sinh(x_0) changes sign at K_c (g_0 = 0); written
    # as sign(x_0) exp(log|2 sinh x_0|) its derivatives cancel catastrophically there (coth^2 - csch^2 = 1), so
    # near K_c it is kept as 2 sinh(x_0). Both branches get safe inputs so that where's gradient has no NaN.
    x0 = xe[..., 0]
    small = x0.abs() < 1
    xs = torch.where(small, x0, torch.zeros_like(x0))
    xb = torch.where(small, torch.ones_like(x0), x0)
    term4 = torch.where(small, 2 * torch.sinh(xs) * torch.exp(rest4 - m),
                        torch.sign(xb) * torch.exp(log2sinh_abs(xb) + rest4 - m))
    total = torch.exp(l1 - m) + torch.exp(l2 - m) + torch.exp(l3 - m) + term4
    return math.log(0.5) + L * L / 2 * torch.log(2 * torch.sinh(2 * K)) + m + torch.log(total)


@functools.lru_cache(maxsize=8)
def _leggauss(n: int):
    return np.polynomial.legendre.leggauss(n)


def ising2d_free_energy_onsager(K, n_nodes: int = 512) -> torch.Tensor:
    """Onsager's thermodynamic limit ``lim log Z / L^2`` at zero field (Onsager 1944), evaluated as
    ``log(2 cosh 2K) + 1/pi int_0^{pi/2} log[(1 + sqrt(1 - k^2 sin^2 phi)) / 2] dphi``, ``k = 2 sinh 2K / cosh^2 2K``,
    by Gauss-Legendre quadrature with ``n_nodes`` nodes. ``K`` any shape; differentiable away from K_c."""
    K = _t(K).double()
    _check_finite("K", K)
    x, w = _leggauss(n_nodes)
    phi = torch.as_tensor((x + 1) * math.pi / 4, dtype=torch.float64)
    w = torch.as_tensor(w * math.pi / 4, dtype=torch.float64)
    k = 2 * torch.sinh(2 * K) / torch.cosh(2 * K) ** 2
    inner = torch.log((1 + torch.sqrt(torch.clamp(1 - (k[..., None] * torch.sin(phi)) ** 2, min=0))) / 2)
    return torch.log(2 * torch.cosh(2 * K)) + (inner * w).sum(-1) / math.pi


def ising2d_stats(s) -> np.ndarray:
    """Sufficient statistics ``(sum_<ij> s_i s_j, sum_i s_i)`` (2 L^2 bonds on the torus), (size, L, L) -> (size, 2)."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 3 or s.shape[1] != s.shape[2]:
        raise ValueError(f"configurations must have shape (size, L, L), got {s.shape}")
    nn = (s * np.roll(s, -1, 1)).sum((1, 2)) + (s * np.roll(s, -1, 2)).sum((1, 2))
    return np.stack([nn, s.sum((1, 2))], axis=1)


def ising2d_features(s) -> np.ndarray:
    """Per-sample features for the posterior network, (size, L, L) -> (size, 5): bond energy per bond, diagonal
    (next-nearest) correlation, magnetisation, |m| and m^2 per spin (the first and third are sufficient)."""
    s = np.asarray(s, dtype=np.float64)
    n = s.shape[1] * s.shape[2]
    st = ising2d_stats(s)
    diag = (s * np.roll(np.roll(s, -1, 1), -1, 2)).sum((1, 2)) / n
    m = st[:, 1] / n
    return np.stack([st[:, 0] / (2 * n), diag, m, np.abs(m), m * m], axis=1)


def ising2d_enumerate(L: int) -> np.ndarray:
    """All ``2^(L^2)`` configurations of the L x L torus, (2^(L^2), L, L) int8 (L <= 4)."""
    if not 1 <= L <= 4:
        raise ValueError(f"enumeration is limited to L <= 4 (2^16 states), got L={L}")
    n = L * L
    idx = np.arange(2 ** n, dtype=np.int64)[:, None]
    return (1 - 2 * ((idx >> np.arange(n)) & 1)).astype(np.int8).reshape(-1, L, L)


def ising2d_exact_moments(L: int, K: float, B: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean (2,) and covariance (2, 2) of the sufficient statistics ``(sum s_i s_j, sum s_i)`` at (K, B):
    gradient and Hessian of the transfer-matrix log Z (exponential-family identities)."""
    f = lambda t: ising2d_logz(L, t[0], t[1])  # noqa: E731
    t = torch.tensor([K, B], dtype=torch.float64)
    return torch.func.grad(f)(t), torch.func.hessian(f)(t)


def ising2d_sample(L: int, K: float, B: float, size: int, seed=0) -> np.ndarray:
    """Exact samples of the periodic L x L Ising model, (size, L, L) int8, by the row transfer matrix:
    forward powers ``T^k`` then sequential sampling of rows, ``r_1 ~ (T^L)_{r1 r1}`` and
    ``r_{i+1} ~ T(r_i, r_{i+1}) (T^{L-i})_{r_{i+1} r_1}`` (forward-filter / backward-sample on the periodic chain
    of rows). Memory ``L * 4^L`` doubles: L <= 10."""
    if not 2 <= L <= 10:
        raise ValueError(f"transfer-matrix sampling supports 2 <= L <= 10, got L={L}")
    if not (np.isfinite(K) and np.isfinite(B)):
        raise ValueError(f"K, B must be finite, got {K}, {B}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows = _rows(L)
    lt = _transfer_log(L, torch.tensor(float(K), dtype=torch.float64),
                       torch.tensor(float(B), dtype=torch.float64)).numpy()
    T = np.exp(lt - lt.max())
    P = [np.eye(len(T))]
    for _ in range(L):
        Q = P[-1] @ T
        P.append(Q / Q.max())

    def draw(w):
        c = np.cumsum(w, axis=-1)
        u = rng.random(len(c)) * c[:, -1]
        return np.minimum((c < u[:, None]).sum(1), w.shape[1] - 1)

    d = np.diag(P[L])
    r = np.empty((size, L), dtype=np.int64)
    r[:, 0] = draw(np.broadcast_to(d, (size, len(d))))
    r1 = r[:, 0]
    for i in range(1, L):
        r[:, i] = draw(T[r[:, i - 1]] * P[L - i][:, r1].T)
    return rows[r].astype(np.int8)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _chain_params(K, B, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``K``, ``B`` as float64 arrays of shape (size,) (scalars broadcast), checked finite."""
    if int(size) != size or size < 1:
        raise ValueError(f"size (the number of chains) must be a positive integer, got {size}")
    try:
        K = np.broadcast_to(np.asarray(K, dtype=np.float64), (size,))
        B = np.broadcast_to(np.asarray(B, dtype=np.float64), (size,))
    except ValueError:
        raise ValueError(f"K and B must be scalars or arrays of shape (size,) = ({size},), got shapes "
                         f"{np.shape(K)} and {np.shape(B)}") from None
    if not (np.isfinite(K).all() and np.isfinite(B).all()):
        raise ValueError("K and B must be finite (K = J/T, B = h/T; T = 0 is not supported)")
    return K, B


def _init_spins(L: int, size: int, init, rng: np.random.Generator) -> np.ndarray:
    """Initial configurations (size, L, L) int8: ``init`` checked, or independent random spins."""
    if init is None:
        return (1 - 2 * rng.integers(0, 2, (size, L, L))).astype(np.int8)
    s = np.asarray(init)
    if s.shape != (size, L, L):
        raise ValueError(f"init must have shape (size, L, L) = ({size}, {L}, {L}), got {s.shape}")
    if not np.isin(s, (-1, 1)).all():
        raise ValueError("init must hold spins -1 or +1 only")
    return s.astype(np.int8)


def _metropolis_sweep(s: np.ndarray, K: np.ndarray, B: np.ndarray, rng: np.random.Generator,
                      masks: list[np.ndarray]) -> np.ndarray:
    """One checkerboard Metropolis sweep: s float64 (size, L, L), K and B (size, 1, 1)."""
    for mask in masks:
        nb = np.roll(s, 1, 1) + np.roll(s, -1, 1) + np.roll(s, 1, 2) + np.roll(s, -1, 2)
        dlogw = -2 * s * (K * nb + B)  # change of the log weight when flipping
        flip = mask & (np.log(rng.random(s.shape)) < dlogw)
        s = np.where(flip, -s, s)
    return s


def ising2d_metropolis(L: int, K, B, size: int, sweeps: int, seed=0, init=None) -> np.ndarray:
    """Checkerboard Metropolis for the periodic L x L Ising model: ``size`` independent chains (one per row of
    ``K``, ``B`` if they are arrays of shape (size,)), ``sweeps`` full sweeps from ``init`` (default: random spins);
    returns the final configurations (size, L, L) int8. Use enough sweeps to equilibrate (checked against the
    exact moments in tests/test_physics.py); near T_c Metropolis decorrelates slowly (z ~ 2.17; measured
    autocorrelation times in :func:`ising2d_swendsen_wang`)."""
    if L % 2:
        raise ValueError(f"the checkerboard update needs an even L, got {L}")
    rng = _rng(seed)
    K, B = _chain_params(K, B, size)
    s = (1 - 2 * rng.integers(0, 2, (size, L, L))).astype(np.float64) if init is None \
        else _init_spins(L, size, init, rng).astype(np.float64)
    ii, jj = np.indices((L, L))
    masks = [((ii + jj) % 2 == c) for c in (0, 1)]
    for _ in range(sweeps):
        s = _metropolis_sweep(s, K[:, None, None], B[:, None, None], rng, masks)
    return s.astype(np.int8)


def _swendsen_wang_sweep(s: np.ndarray, K: np.ndarray, B: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Swendsen-Wang update of every chain: s int8 (size, L, L), K and B float64 (size,). All chains'
    bond graphs (plus one ghost node per chain) form one block-diagonal sparse graph whose connected
    components are found by scipy in one call."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    size, L, _ = s.shape
    n = size * L * L
    node = np.arange(n, dtype=np.int64).reshape(size, L, L)
    p_bond = (-np.expm1(-2 * np.abs(K)))[:, None, None]
    p_ghost = (-np.expm1(-2 * np.abs(B)))[:, None, None]
    sk, sb = np.sign(K)[:, None, None], np.sign(B)[:, None, None]
    rows, cols = [], []
    for axis in (2, 1):  # right and down neighbours: each of the 2 L^2 bonds once
        nb = np.roll(s, -1, axis)
        bond = (s * nb * sk > 0) & (rng.random(s.shape) < p_bond)
        rows.append(node[bond])
        cols.append(np.roll(node, -1, axis)[bond])
    ghost = (s * sb > 0) & (rng.random(s.shape) < p_ghost)
    rows.append(node[ghost])
    cols.append(n + np.nonzero(ghost)[0])  # the ghost spin of chain c is node n + c
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_array((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n + size, n + size))
    n_clusters, label = connected_components(graph, directed=False)
    flip = rng.random(n_clusters) < 0.5
    flip[label[n:]] = False  # clusters bonded to the ghost spin keep the field's sign
    return np.where(flip[label[:n]].reshape(size, L, L), -s, s).astype(np.int8)


def ising2d_swendsen_wang(L: int, K, B, size: int, sweeps: int, seed=0, init=None,
                          progress: bool = False) -> np.ndarray:
    """Swendsen-Wang cluster updates (Swendsen & Wang 1987) of the periodic L x L Ising model
    ``p(s) ~ exp(K sum_<ij> s_i s_j + B sum_i s_i)``, for ``size`` independent chains (one per entry of ``K``,
    ``B`` when they are arrays of shape (size,)), ``sweeps`` updates from ``init`` (default: random spins).
    Returns the final configurations (size, L, L) int8. For samples along the chain, error bars and resumable
    output use :func:`ising2d_mcmc`.

    One update (Fortuin-Kasteleyn): each bond <ij> with ``K s_i s_j > 0`` is occupied with probability
    ``1 - exp(-2|K|)``; the field enters through a ghost spin ``s_0 = sign(B)`` coupled to every site with
    strength ``|B|`` (Wang & Swendsen 1990, Physica A 167, 565; in units of T, h/T = B, so the ghost bond
    probability ``1 - exp(-2|B|) = 1 - exp(-2h/T)``): site i is bonded to the ghost with that probability
    when ``B s_i > 0``. Every cluster is then flipped with probability 1/2, except the clusters bonded to the
    ghost, which keep their spins (the ghost is held fixed, which samples p(s) itself rather than the
    ghost-extended model). Any sign of K and B and any L >= 2 (odd L frustrates an antiferromagnet but the
    update stays exact).

    Measured integrated autocorrelation times ``tau = 1 + 2 sum_t rho(t)`` in updates (one SW step or one
    Metropolis sweep; twice Sokal's tau_int convention), of the energy E and |M| at B = 0, with Sokal's window
    (:func:`integrated_autocorr_time`, +- its standard error in the last digits); 32 chains x 4,000 SW steps
    (L = 64: 2,000), Metropolis 32 x 20,000 (L = 16), 32 x 40,000 (L = 32) and 16 x 30,000 sweeps (L = 64), after
    burn-in, seed 7:

    ====  =====  ===========  ===========  ===========  ===========
    L     T      SW E         SW |M|       Metro E      Metro |M|
    ====  =====  ===========  ===========  ===========  ===========
    16    2.0    4.43 (12)    4.52 (12)    3.41 (4)     6.74 (10)
    16    T_c    6.48 (21)    5.86 (18)    11.6 (2)     20.6 (5)
    16    2.6    3.72 (9)     2.71 (6)     4.96 (6)     9.54 (17)
    32    2.0    4.36 (12)    4.34 (12)    3.30 (2)     6.04 (6)
    32    T_c    7.64 (27)    6.79 (22)    36.3 (9)     85.1 (31)
    32    2.6    3.19 (7)     1.45 (2)     3.94 (3)     12.1 (2)
    64    T_c    9.6 (5)      7.8 (4)      114 (8)      298 (33)
    ====  =====  ===========  ===========  ===========  ===========

    So SW pays off at T_c (at L = 64, 12x fewer updates for E and 38x for |M|; from L = 16 to 64 Metropolis'
    tau(|M|) grows 14x, z ~ 1.9, SW's 1.3x) and not away from it: below T_c Metropolis decorrelates E faster
    per update.

    Runtime per chain and update (numpy + scipy.sparse.csgraph, one thread, 64 chains at once, shared 2-core CPU
    at load average 3): SW 0.14 / 0.65 / 2.2 ms and checkerboard Metropolis 0.048 / 0.30 / 0.89 ms at
    L = 32 / 64 / 128 (both ~ L^2; at load 11 everything was 5-12x slower). Per effectively independent sample
    at L = 64, T_c (tau x time): SW 6 ms (E) and 5 ms (|M|) against Metropolis 34 ms and 89 ms.

    ``K``, ``B``: scalars or arrays (size,); ``seed``: int or ``numpy.random.Generator``. Raises ``ValueError`` for
    non-finite parameters, a wrong ``init`` shape or values other than +-1."""
    if int(L) != L or L < 2:
        raise ValueError(f"L must be an integer >= 2, got {L}")
    rng = _rng(seed)
    K, B = _chain_params(K, B, size)
    s = _init_spins(L, size, init, rng)
    for _ in tqdm(range(sweeps), desc="Swendsen-Wang", disable=not progress):
        s = _swendsen_wang_sweep(s, K, B, rng)
    return s


_ALGORITHMS = ("swendsen-wang", "metropolis")


def _save_npz(path: Path, **arrays) -> None:
    from geom.paths import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def _load_state(path: Path) -> tuple[np.ndarray, dict]:
    with np.load(path, allow_pickle=False) as z:
        return z["state"].copy(), json.loads(str(z["rng"]))


def ising2d_mcmc(L: int, K, B, size: int, n_samples: int, *, algorithm: str = "swendsen-wang", thin: int = 1,
                 burn_in: int = 200, seed: int | np.random.Generator = 0, init=None, out_dir=None,
                 chunk: int = 1000, keep_configs: bool = True, progress: bool = False) -> dict[str, np.ndarray]:
    """Samples along ``size`` independent Markov chains of the periodic L x L Ising model, with resumable output.

    Each chain runs ``burn_in`` updates, then records a sample every ``thin`` updates until ``n_samples`` are
    recorded; an update is one Swendsen-Wang step (``algorithm="swendsen-wang"``, :func:`ising2d_swendsen_wang`)
    or one checkerboard Metropolis sweep (``"metropolis"``, even L only). ``K``, ``B``: scalars or (size,) arrays
    (one (K, B) per chain). Returns ``{"stats": (n_samples, size, 2) float64`` sufficient statistics
    ``(sum_<ij> s_i s_j, sum_i s_i)`` per sample and chain, ``"configs": (n_samples, size, L, L) int8}`` (only
    with ``keep_configs``). Samples along a chain are correlated: estimate errors from the spread across chains,
    or with :func:`integrated_autocorr_time`.

    Resumable (``out_dir``, needs an int seed): the settings go to ``out_dir/run.json``, the state after burn-in
    to ``burn-in.npz`` and the samples in chunks of ``chunk`` to ``chunk-000000.npz``, ... (configurations
    bit-packed), each with the chain state and the RNG state at its end, written atomically. A re-run with the
    same settings loads the chunks present and continues from the last one, so an interrupted run loses at most
    the chunk in progress, never duplicates one, and gives bit-for-bit the samples of an uninterrupted run; a
    larger ``n_samples`` extends a finished run. A re-run with different settings raises ``ValueError``."""
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    if int(L) != L or L < 2 or (algorithm == "metropolis" and L % 2):
        raise ValueError(f"L must be an integer >= 2 (even for the checkerboard Metropolis), got {L}")
    for name, v, lo in (("n_samples", n_samples, 1), ("thin", thin, 1), ("burn_in", burn_in, 0), ("chunk", chunk, 1)):
        if int(v) != v or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v}")
    K, B = _chain_params(K, B, size)
    if algorithm == "swendsen-wang":
        def update(s, rng):
            return _swendsen_wang_sweep(s, K, B, rng)
    else:
        ii, jj = np.indices((L, L))
        masks = [((ii + jj) % 2 == c) for c in (0, 1)]

        def update(s, rng):
            return _metropolis_sweep(s.astype(np.float64), K[:, None, None], B[:, None, None], rng,
                                     masks).astype(np.int8)

    stats, configs, done, s, rng = [], [], 0, None, None
    out = None
    if out_dir is not None:
        from geom.paths import atomic_write, resolve

        if isinstance(seed, np.random.Generator) or int(seed) != seed:
            raise TypeError("a resumable run (out_dir) needs an integer seed, not a Generator: its state at the "
                            "start could not be recorded")
        init_hash = None if init is None else hashlib.sha256(np.ascontiguousarray(init, dtype=np.int8)).hexdigest()
        meta = dict(L=int(L), K=K.tolist(), B=B.tolist(), size=int(size), algorithm=algorithm, thin=int(thin),
                    burn_in=int(burn_in), seed=int(seed), init=init_hash, chunk=int(chunk),
                    keep_configs=bool(keep_configs))
        out = resolve(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        manifest = out / "run.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            if diff:
                raise ValueError(f"{out} holds a run with different settings ({', '.join(diff)}); use a new out_dir "
                                 "or delete the old one")
        else:
            atomic_write(manifest, lambda p: p.write_text(json.dumps(meta)))
        i = 0
        while (out / f"chunk-{i:06d}.npz").exists() and done < n_samples:
            with np.load(out / f"chunk-{i:06d}.npz", allow_pickle=False) as z:
                stats.append(z["stats"])
                if keep_configs:
                    configs.append(np.unpackbits(z["configs"], axis=-1, count=L).astype(np.int8) * 2 - 1)
            done += len(stats[-1])
            i += 1
        last = out / f"chunk-{i - 1:06d}.npz" if i else out / "burn-in.npz"
        if last.exists():
            s, state = _load_state(last)
            rng = np.random.default_rng()
            rng.bit_generator.state = state
    if s is None:  # fresh start: burn in
        rng = _rng(seed)
        s = _init_spins(L, size, init, rng)
        for _ in tqdm(range(burn_in), desc=f"{algorithm} burn-in", disable=not progress):
            s = update(s, rng)
        if out is not None:
            _save_npz(out / "burn-in.npz", state=s, rng=np.array(json.dumps(rng.bit_generator.state)))
    with tqdm(total=max(n_samples - done, 0) * thin, desc=algorithm, disable=not progress) as bar:
        while done < n_samples:
            n = min(chunk, n_samples - done)
            st = np.empty((n, size, 2))
            cf = np.empty((n, size, L, L), dtype=np.int8) if keep_configs else None
            for t in range(n):
                for _ in range(thin):
                    s = update(s, rng)
                bar.update(thin)
                st[t] = ising2d_stats(s)
                if keep_configs:
                    cf[t] = s
            if out is not None:
                packed = np.packbits(cf > 0, axis=-1) if keep_configs else np.zeros(0, np.uint8)
                _save_npz(out / f"chunk-{len(stats):06d}.npz", stats=st, configs=packed, state=s,
                          rng=np.array(json.dumps(rng.bit_generator.state)))
            stats.append(st)
            if keep_configs:
                configs.append(cf)
            done += n
    result = {"stats": np.concatenate(stats)[:n_samples]}
    if keep_configs:
        result["configs"] = np.concatenate(configs)[:n_samples]
    return result


def integrated_autocorr_time(x, c: float = 5.0, min_steps_per_tau: float = 50.0) -> tuple[float, float]:
    """Integrated autocorrelation time ``tau = 1 + 2 sum_{t >= 1} rho(t)`` of a stationary series, with Sokal's
    automatic window (Sokal 1997, "Monte Carlo methods in statistical mechanics", Sec. 3; as in emcee): the
    sum is cut at the smallest M with ``M >= c tau(M)``. ``x``: (n_steps,) or (n_steps, chains); the
    autocovariance (FFT, each chain about its own mean) is averaged over chains. Returns ``(tau, se)`` in steps,
    ``se = tau sqrt(2 (2M + 1) / (n_steps * chains))`` (Madras & Sokal 1988). The standard error of a mean of
    the series is then ``sqrt(tau var / (n_steps * chains))``.

    Raises ``ValueError`` for a non-finite or constant series, and for one shorter than ``min_steps_per_tau``
    times its tau (emcee's default 50: on shorter series the windowed estimate is biased low); pass
    ``min_steps_per_tau=0`` to accept that bias knowingly."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"x must have shape (n_steps,) or (n_steps, chains) with n_steps >= 4, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    n = x.shape[0]
    y = x - x.mean(0)
    nfft = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(y, nfft, axis=0)
    acov = np.fft.irfft(f * f.conj(), nfft, axis=0)[:n].mean(1) / n
    if acov[0] <= 0:
        raise ValueError("the series is constant: its autocorrelation time is undefined")
    taus = 2 * np.cumsum(acov / acov[0]) - 1  # tau(M) = 1 + 2 sum_{t=1}^{M} rho(t)
    ok = np.arange(n) >= c * taus
    M = int(np.argmax(ok))
    tau = float(taus[M])
    if not ok.any() or n < min_steps_per_tau * tau:
        raise ValueError(f"series too short: n_steps = {n} < {min_steps_per_tau:g} tau = "
                         f"{min_steps_per_tau * tau:.0f}, so tau is biased low; run longer (or pass "
                         "min_steps_per_tau=0 to accept the bias)")
    return tau, tau * math.sqrt(2 * (2 * M + 1) / x.size)


def ising2d_energy_kaufman(L: int, K) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact zero-field internal energy per spin ``u = -<sum_<ij> s_i s_j> / L^2`` (J = 1) and specific heat per
    spin ``c = K^2 Var(sum_<ij> s_i s_j) / L^2`` of the periodic L x L model, from the first and second
    derivatives of Kaufman's log Z (:func:`ising2d_logz_kaufman`) by autograd. ``K > 0``: any shape; returns
    two tensors of that shape (float64)."""
    if int(L) != L or L < 2:
        raise ValueError(f"L must be an integer >= 2, got {L}")
    K = _t(K).double()
    flat = K.reshape(-1)
    f = lambda k: ising2d_logz_kaufman(L, k)  # noqa: E731
    mean = torch.func.vmap(torch.func.grad(f))(flat)
    var = torch.func.vmap(torch.func.hessian(f))(flat)
    n = L * L
    return (-mean / n).reshape(K.shape), (flat ** 2 * var / n).reshape(K.shape)


# ------------------------------------------------------------------------------------------ TASEP
def tasep_logz(L: int, alpha, beta) -> torch.Tensor:
    """Exact log of the matrix-product normalisation of the open TASEP (Derrida et al. 1993; as quoted in
    Lobashev et al.): ``Z_L = sum_{p=1}^{L} p (2L-1-p)! / (L! (L-p)!) * (b^{p+1} - a^{p+1}) / (b - a)``, ``a = 1/alpha``,
    ``b = 1/beta``, with the ratio written as ``sum_{k=0}^{p} b^k a^{p-k}`` (exact at alpha = beta).
    ``alpha``, ``beta``: broadcastable positive tensors; ``Z_0 = 1``. Differentiable (float64)."""
    a, b = torch.broadcast_tensors(_t(alpha).double(), _t(beta).double())
    _check_finite("alpha, beta", torch.stack([a, b]))
    if not _holds((a > 0) & (b > 0)):
        raise ValueError("TASEP rates alpha, beta must be positive")
    if L == 0:
        return torch.zeros_like(a)
    la, lb = -torch.log(a), -torch.log(b)
    terms = []
    for p in range(1, L + 1):
        lc = math.log(p) + math.lgamma(2 * L - p) - math.lgamma(L + 1) - math.lgamma(L - p + 1)
        k = torch.arange(p + 1, dtype=torch.float64)
        inner = torch.logsumexp(lb[..., None] * k + la[..., None] * (p - k), dim=-1)
        terms.append(lc + inner)
    return torch.logsumexp(torch.stack(terms, dim=-1), dim=-1)


def tasep_current(L: int, alpha, beta) -> torch.Tensor:
    """Stationary current ``J = Z_{L-1} / Z_L`` of the open TASEP (Derrida et al. 1993)."""
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    return torch.exp(tasep_logz(L - 1, alpha, beta) - tasep_logz(L, alpha, beta))


def _tasep_configs(L: int) -> np.ndarray:
    idx = np.arange(2 ** L, dtype=np.int64)[:, None]
    return ((idx >> np.arange(L)) & 1).astype(np.int8)  # (2^L, L), tau_1 = column 0


def tasep_weights(L: int, alpha, beta) -> tuple[np.ndarray, torch.Tensor]:
    """All 2^L configurations (2^L, L) int8 (tau_1 first) and their unnormalised stationary log-weights
    ``log <W| prod_i (tau_i D + (1 - tau_i) E) |V>`` (2^L,), differentiable in (alpha, beta) (scalars).

    Each word is normal-ordered from the right: a vector ``c_a`` holds the coefficients of ``E^a |V>``;
    prepending E shifts ``a -> a + 1``; prepending D uses ``D E^a |V> = |V>/beta + sum_{j=1}^a E^j |V>``
    (from DE = D + E); finally ``<W| E^a |V> = alpha^{-a}``. L <= 16."""
    if not 1 <= L <= 16:
        raise ValueError(f"enumeration supports 1 <= L <= 16, got L={L}")
    a, b = _t(alpha).double(), _t(beta).double()
    if a.ndim or b.ndim or float(a.detach()) <= 0 or float(b.detach()) <= 0:
        raise ValueError(f"alpha, beta must be positive scalars, got {alpha}, {beta}")
    conf = _tasep_configs(L)
    n = len(conf)
    c = torch.zeros(n, L + 1, dtype=torch.float64)
    c[:, 0] = 1.0
    logscale = torch.zeros(n, dtype=torch.float64)
    for i in range(L - 1, -1, -1):
        occ = torch.as_tensor(conf[:, i] == 1)[:, None]
        shifted = torch.cat([torch.zeros(n, 1, dtype=torch.float64), c[:, :-1]], dim=1)  # E
        tail = torch.flip(torch.cumsum(torch.flip(c, [1]), 1), [1])  # sum_{a >= j} c_a
        dmul = torch.cat([tail[:, :1] / b, tail[:, 1:]], dim=1)  # D
        c = torch.where(occ, dmul, shifted)
        m = c.amax(1, keepdim=True).detach()
        c, logscale = c / m, logscale + torch.log(m[:, 0])
    powers = torch.exp(-torch.log(a) * torch.arange(L + 1, dtype=torch.float64))
    return conf, logscale + torch.log(c @ powers)


def tasep_generator_stationary(L: int, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: the stationary distribution of the TASEP master equation, from the null vector
    of the dense 2^L x 2^L generator (L <= 10). Returns configurations (2^L, L) and probabilities (2^L,)."""
    if not 1 <= L <= 10:
        raise ValueError(f"dense generator supports 1 <= L <= 10, got L={L}")
    conf = _tasep_configs(L)
    n = len(conf)
    code = lambda c: int((c.astype(np.int64) << np.arange(L)).sum())  # noqa: E731
    Q = np.zeros((n, n))
    for s, c in enumerate(conf):
        moves = []
        if c[0] == 0:
            moves.append((0, alpha))
        for i in range(L - 1):
            if c[i] == 1 and c[i + 1] == 0:
                moves.append((("hop", i), 1.0))
        if c[L - 1] == 1:
            moves.append((L - 1, beta))
        for mv, rate in moves:
            d = c.copy()
            if isinstance(mv, tuple):
                d[mv[1]], d[mv[1] + 1] = 0, 1
            else:
                d[mv] = 1 - d[mv]
            Q[s, code(d)] += rate
            Q[s, s] -= rate
    A = np.vstack([Q.T, np.ones(n)])
    rhs = np.zeros(n + 1)
    rhs[-1] = 1
    p = np.linalg.lstsq(A, rhs, rcond=None)[0]
    return conf, p


def tasep_sample(L: int, alpha: float, beta: float, size: int, seed=0) -> np.ndarray:
    """Exact stationary samples of the open TASEP by enumeration of the matrix-product weights, (size, L) int8."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    conf, lw = tasep_weights(L, alpha, beta)
    p = torch.softmax(lw, 0).numpy()
    return conf[rng.choice(len(conf), size=size, p=p)]


def tasep_fisher(L: int, alpha: float, beta: float, method: str = "fd", eps: float = 1e-5) -> torch.Tensor:
    """Exact Fisher information (2, 2) of the stationary TASEP measure in (alpha, beta), by enumeration:
    ``g = sum_tau P(tau) d log P d log P^T``, with the derivatives of ``log P`` by central differences of step
    ``eps`` (``method="fd"``, fast, relative error ~1e-9) or by autograd (``method="autograd"``, slow)."""
    def logp(a, b):
        return torch.log_softmax(tasep_weights(L, a, b)[1], 0)

    if method == "autograd":
        t = torch.tensor([alpha, beta], dtype=torch.float64)
        J = torch.autograd.functional.jacobian(lambda t: logp(t[0], t[1]), t)  # (2^L, 2)
    elif method == "fd":
        J = torch.stack([(logp(alpha + eps, beta) - logp(alpha - eps, beta)) / (2 * eps),
                         (logp(alpha, beta + eps) - logp(alpha, beta - eps)) / (2 * eps)], 1)
    else:
        raise ValueError(f"method must be 'fd' or 'autograd', got {method!r}")
    p = torch.exp(logp(alpha, beta))
    return (J * p[:, None]).T @ J


def tasep_features(tau) -> np.ndarray:
    """Per-sample features for the posterior network, (size, L) -> (size, L): the occupation numbers."""
    tau = np.asarray(tau, dtype=np.float64)
    if tau.ndim != 2:
        raise ValueError(f"configurations must have shape (size, L), got {tau.shape}")
    return tau


def tasep_phase(alpha, beta) -> np.ndarray:
    """Mean-field-exact phase labels of the open TASEP: 'LD' (alpha < min(beta, 1/2)), 'HD' (beta < min(alpha,
    1/2)), 'MC' (alpha, beta >= 1/2)."""
    a, b = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(beta, float))
    return np.where((a >= 0.5) & (b >= 0.5), "MC", np.where(a < b, "LD", "HD"))
