"""The periodic L x L Ising model (``geom.physics``), exactly: log Z by the row transfer matrix (any field) and by
Kaufman's finite-lattice formula (zero field), Onsager's thermodynamic limit, exact moments and energies,
enumeration, exact samples by the transfer matrix; sufficient statistics and the posterior network's features.
Markov-chain samplers are in ``geom.physics.mcmc``."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..deprecation import renamed_kwargs
from ._common import check_finite, holds, make_rng, to_tensor

T_CRITICAL = 2.0 / math.log(1.0 + math.sqrt(2.0))  # Onsager's critical temperature (J = 1), 2.2692


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


TRACE_MIN = 1e-200  # the rescaled trace of T^L below which float64 no longer holds log Z (see ising2d_logz)


def _check_size(L, lo: int, hi: int, what: str) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or not lo <= L <= hi:
        raise ValueError(f"{what} supports integer L with {lo} <= L <= {hi}, got L={L!r}")
    return int(L)


def _transfer_power_trace(L: int, K: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log of the scale, trace)`` of ``T^L`` computed as ``scale * P`` with ``P`` rescaled to max entry 1 at every
    product: ``log tr T^L = log scale + log trace``."""
    lt = _transfer_log(L, K, B)
    c = lt.amax(dim=(-1, -2), keepdim=True)
    A = torch.exp(lt - c)
    logscale = L * c[..., 0, 0]
    P = A
    for _ in range(L - 1):  # A^L with renormalisation (the scale is a constant: no gradient needed)
        m = P.amax(dim=(-1, -2), keepdim=True).detach()
        P = (P / m) @ A
        logscale = logscale + torch.log(m[..., 0, 0])
    return logscale, torch.diagonal(P, dim1=-2, dim2=-1).sum(-1)


def _range_error(L: int, K, B, what: str) -> ValueError:
    return ValueError(
        f"{what}: (K, B) = ({float(K)}, {float(B)}) at L={L} is outside the float64 range of the row transfer matrix: "
        f"the trace of the rescaled T^L is below {TRACE_MIN:g}, so the states that carry Z (the frustrated ground "
        f"states of an odd-L antiferromagnet at large |K|) underflow next to the largest entries. Valid: every finite "
        f"(K, B) for even L; for odd L, K >= -230 / L (measured: L = 3 holds to K = -77, L = 5 to K = -46). Beyond, "
        f"use the ground-state limit log Z ~ K E_0 + log(degeneracy), or an even L")


def _check_transfer_range(L: int, K, B=0.0, what: str = "ising2d_logz") -> None:
    """Raise a ValueError naming the point where the transfer matrix of :func:`ising2d_logz` loses ``log Z`` in
    float64 (rescaled trace below ``TRACE_MIN``); ``K``, ``B`` broadcastable, evaluated without gradients."""
    with torch.no_grad():
        K, B = torch.broadcast_tensors(to_tensor(K).double(), to_tensor(B).double())
        _, tr = _transfer_power_trace(L, K, B)
    bad = ~(tr >= TRACE_MIN)
    if bool(bad.any()):
        i = int(bad.reshape(-1).nonzero()[0])
        raise _range_error(L, K.reshape(-1)[i], B.reshape(-1)[i], what)


def ising2d_logz(L: int, K, B=0.0) -> torch.Tensor:
    """Exact log Z of the periodic L x L Ising model by the row transfer matrix, ``log tr T^L`` (any field).

    ``T^L`` is built from ``exp(log T - max log T)``, rescaled to max entry 1 after every product: its entries are
    sums of positive terms (no sign cancellation, unlike the eigenvalue sum of an odd antiferromagnet), so log Z
    holds in float64 for any finite (K, B) except where the rescaled trace underflows (below ``TRACE_MIN``: an odd-L
    antiferromagnet with K < -230 / L), where it raises a ValueError naming the point
    (checked outside torch.func transforms; :func:`ising2d_fisher` checks its batch first).
    ``K``, ``B``: broadcastable tensors; returns their broadcast shape, differentiable (float64).
    Cost ``O(L * 8^L)`` per point (L products of 2^L x 2^L matrices): fine for L <= 8, slow beyond 10."""
    L = _check_size(L, 2, 12, "transfer matrix log Z")
    K, B = torch.broadcast_tensors(to_tensor(K).double(), to_tensor(B).double())
    check_finite("K, B", torch.stack([K, B]))
    logscale, tr = _transfer_power_trace(L, K, B)
    if not holds(tr >= TRACE_MIN):
        bad = int((~(tr >= TRACE_MIN)).reshape(-1).nonzero()[0])
        raise _range_error(L, K.reshape(-1)[bad].detach(), B.reshape(-1)[bad].detach(), "ising2d_logz")
    return logscale + torch.log(tr)


KAUFMAN_K_RANGE = (1e-3, 100.0)  # where ising2d_logz_kaufman and its autograd derivatives hold in float64


def _check_kaufman_range(K: torch.Tensor) -> None:
    lo, hi = KAUFMAN_K_RANGE
    if not holds((K >= lo) & (K <= hi)):
        bad = K[~((K >= lo) & (K <= hi))].reshape(-1)[0].item()
        raise ValueError(f"Kaufman's formula holds for ferromagnetic K in [{lo:g}, {hi:g}] (T = 1/K in [{1 / hi:g}, "
                         f"{1 / lo:g}]) in float64, got K={bad}; use ising2d_logz (the transfer matrix, L <= 12, any "
                         f"K) or the limits log Z -> 2 L^2 K + log 2 (K -> inf), L^2 log 2 (K -> 0)")


def ising2d_logz_kaufman(L: int, K) -> torch.Tensor:
    """Exact log Z of the periodic L x L Ising model at zero field, Kaufman (1949) finite-lattice formula:
    ``Z = 1/2 (2 sinh 2K)^{L^2/2} (Z1 + Z2 + Z3 + Z4)`` with ``Z1,2 = prod_r 2 cosh|sinh(L g_{2r+1} / 2)``,
    ``Z3,4 = prod_r 2 cosh|sinh(L g_{2r} / 2)``, ``cosh g_l = cosh 2K coth 2K - cos(pi l / L)`` and
    ``g_0 = 2K + log tanh K`` (its sign makes Z4 negative above T_c). ``K`` tensor, any shape, in
    ``KAUFMAN_K_RANGE`` = [1e-3, 100] (T in [0.01, 1000]); differentiable. Outside that range float64 loses the
    formula's derivatives (measured: below K = 1e-3 the second derivative cancels its 1/K^2 terms, relative error
    1e-4 at K = 1e-6, 0.3 at 1e-8; above K ~ 120 acosh's argument squared overflows, wrong Hessian then NaN), so it
    raises a ValueError naming K (checked outside torch.func transforms; :func:`ising2d_energy_kaufman` checks
    before its vmap): use :func:`ising2d_logz` (L <= 12) there, or the limits log Z -> 2 L^2 K + log 2 (K -> inf),
    L^2 log 2 (K -> 0)."""
    L = _check_size(L, 2, 10 ** 6, "Kaufman's formula")
    K = to_tensor(K).double()
    check_finite("K", K)
    _check_kaufman_range(K)
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
    by Gauss-Legendre quadrature with ``n_nodes`` nodes. ``K`` any shape and sign (the square lattice is bipartite:
    f(-K) = f(K)), any finite size: written without overflow as ``log(2 cosh 2K) = 2|K| + log1p(e^{-4|K|})``,
    ``k = 2 tanh 2K sech 2K`` and ``1 - k^2 sin^2 = cos^2 + k'^2 sin^2`` with ``k' = 2 sech^2 2K - 1`` (exact, >= 0
    without clamping). Differentiable away from K_c."""
    K = to_tensor(K).double()
    check_finite("K", K)
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, (int, np.integer)) or n_nodes < 1:
        raise ValueError(f"n_nodes must be an integer >= 1 (Gauss-Legendre nodes), got {n_nodes!r}")
    x, w = _leggauss(int(n_nodes))
    phi = torch.as_tensor((x + 1) * math.pi / 4, dtype=torch.float64)
    w = torch.as_tensor(w * math.pi / 4, dtype=torch.float64)
    a = 2 * K.abs()
    sech = 2 * torch.exp(-a) / (1 + torch.exp(-2 * a))
    kp = 2 * sech ** 2 - 1
    s2 = torch.sin(phi) ** 2
    inner = torch.log((1 + torch.sqrt(torch.cos(phi) ** 2 + kp[..., None] ** 2 * s2)) / 2)
    return a + torch.log1p(torch.exp(-2 * a)) + (inner * w).sum(-1) / math.pi


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


@renamed_kwargs(chunk="chunk_size")
def ising2d_fisher(L: int, theta: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """Exact Fisher metric of the periodic L x L Ising model (L <= 10) in natural coordinates ``theta = (K, B)``
    (m, 2) -> (m, 2, 2) float64: the Hessian of the transfer-matrix log Z, i.e. the covariance of the sufficient
    statistics ``(sum s_i s_j, sum s_i)`` (Lobashev et al. Sec. 3, exponential families); ``chunk_size``
    points per vmapped call bound the memory."""
    L = _check_size(L, 2, 12, "ising2d_fisher")
    theta = torch.as_tensor(theta, dtype=torch.float64)
    if theta.ndim != 2 or theta.shape[1] != 2:
        raise ValueError(f"theta must have shape (m, 2) = (K, B) per point, got {tuple(theta.shape)}")
    check_finite("theta", theta)
    for c in theta.split(chunk_size):  # range check outside vmap, where values can be read
        _check_transfer_range(L, c[:, 0], c[:, 1], "ising2d_fisher")
    hess = torch.func.vmap(torch.func.hessian(lambda t: ising2d_logz(L, t[0], t[1])))
    return torch.cat([hess(c) for c in theta.split(chunk_size)])


def ising2d_exact_moments(L: int, K: float, B: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean (2,) and covariance (2, 2) of the sufficient statistics ``(sum s_i s_j, sum s_i)`` at (K, B):
    gradient and Hessian of the transfer-matrix log Z (exponential-family identities)."""
    f = lambda t: ising2d_logz(L, t[0], t[1])  # noqa: E731
    t = torch.tensor([K, B], dtype=torch.float64)
    f(t)  # checks L, finiteness and the float64 range outside the transforms
    return torch.func.grad(f)(t), torch.func.hessian(f)(t)


def ising2d_sample(L: int, K: float, B: float, size: int, seed=0) -> np.ndarray:
    """Exact samples of the periodic L x L Ising model, (size, L, L) int8, by the row transfer matrix:
    forward powers ``T^k`` then sequential sampling of rows, ``r_1 ~ (T^L)_{r1 r1}`` and
    ``r_{i+1} ~ T(r_i, r_{i+1}) (T^{L-i})_{r_{i+1} r_1}`` (forward-filter / backward-sample on the periodic chain
    of rows). Memory ``L * 4^L`` doubles: L <= 10. Where the weights that carry Z underflow (below ``TRACE_MIN``
    after rescaling: an odd-L antiferromagnet at large |K|) it raises a ValueError naming the point instead of
    drawing from zeros."""
    L = _check_size(L, 2, 10, "transfer-matrix sampling")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be an integer >= 0 (samples to draw), got size={size!r}")
    if not (np.isfinite(K) and np.isfinite(B)):
        raise ValueError(f"K, B must be finite, got {K}, {B}")
    rng = make_rng(seed)
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
    if not d.sum() >= TRACE_MIN:  # the states that carry Z underflowed: the draws would be silently wrong
        raise _range_error(L, K, B, "ising2d_sample")
    r = np.empty((size, L), dtype=np.int64)
    r[:, 0] = draw(np.broadcast_to(d, (size, len(d))))
    r1 = r[:, 0]
    for i in range(1, L):
        w = T[r[:, i - 1]] * P[L - i][:, r1].T
        if size and not w.sum(1).min() >= TRACE_MIN:
            raise _range_error(L, K, B, "ising2d_sample")
        r[:, i] = draw(w)
    return rows[r].astype(np.int8)


def ising2d_energy_kaufman(L: int, K) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact zero-field internal energy per spin ``u = -<sum_<ij> s_i s_j> / L^2`` (J = 1) and specific heat per
    spin ``c = K^2 Var(sum_<ij> s_i s_j) / L^2`` of the periodic L x L model, from the first and second
    derivatives of Kaufman's log Z (:func:`ising2d_logz_kaufman`) by autograd. ``K > 0``: any shape; returns
    two tensors of that shape (float64)."""
    L = _check_size(L, 2, 10 ** 6, "Kaufman's energy")
    K = to_tensor(K).double()
    check_finite("K", K)
    _check_kaufman_range(K)
    flat = K.reshape(-1)
    f = lambda k: ising2d_logz_kaufman(L, k)  # noqa: E731
    mean = torch.func.vmap(torch.func.grad(f))(flat)
    var = torch.func.vmap(torch.func.hessian(f))(flat)
    n = L * L
    return (-mean / n).reshape(K.shape), (flat ** 2 * var / n).reshape(K.shape)



def ising2d_gKK_kaufman(L: int, T) -> torch.Tensor:
    """Exact ``g_KK = d^2 log Z / dK^2`` of the periodic L x L model at zero field (the variance of the bond sum
    ``sum_<ij> s_i s_j``), from Kaufman's finite-lattice log Z (:func:`ising2d_logz_kaufman`) by autograd, at
    ``K = 1 / T``. ``T`` (m,) temperatures (J = k_B = 1) -> (m,) float64. Raises ``ValueError`` for a ``T``
    outside ``1 / KAUFMAN_K_RANGE`` (T in [0.01, 1000]), checked before the vmap. At ``h = 0`` the metric of the
    field direction is not Kaufman's (its ``g_BB`` needs the field); ``g_KB = 0`` there by the ``h -> -h``
    symmetry."""
    L = _check_size(L, 2, 10 ** 6, "Kaufman's g_KK")
    T = to_tensor(T)
    if T.ndim != 1:
        raise ValueError(f"T must have shape (m,) (one temperature per point), got {tuple(T.shape)}")
    K = 1 / T.double()
    check_finite("K = 1 / T", K)
    _check_kaufman_range(K)
    return torch.func.vmap(torch.func.hessian(lambda k: ising2d_logz_kaufman(L, k)))(K)


def ising2d_heat_capacity_kaufman(L: int, T) -> torch.Tensor:
    """Exact heat capacity per spin at zero field of the periodic L x L model, ``g_KK / T^2 / L^2`` with Kaufman's
    ``g_KK`` (:func:`ising2d_gKK_kaufman`): ``T`` (m,) -> (m,) float64 (the :func:`ising2d_heat_capacity` of the
    exact metric)."""
    T = to_tensor(T)
    return ising2d_gKK_kaufman(L, T) / T ** 2 / L ** 2


def ising2d_heat_capacity(g: torch.Tensor, T, L: int) -> torch.Tensor:
    """Heat capacity per spin at zero field, ``C = beta^2 Var(E) / L^2 = g_KK / T^2 / L^2`` (J = k_B = 1; at
    ``h = 0`` the energy is ``-sum_<ij> s_i s_j``, whose variance is ``g_KK``), from Fisher metrics ``g``
    (..., 2, 2) in natural coordinates ``(K, B) = (1/T, h/T)``; ``T`` broadcastable with ``g[..., 0, 0]``.
    Returns (...). Only at ``h = 0``: in a field ``Var(E)`` also involves ``g_KB`` and ``g_BB``."""
    return g[..., 0, 0] / T ** 2 / L ** 2


def ising2d_susceptibility(g: torch.Tensor, T, L: int) -> torch.Tensor:
    """Magnetic susceptibility per spin, ``chi = d<m>/dh = beta Var(M) / L^2 = g_BB / T / L^2`` (``B = h / T``,
    so ``d<M>/dh = g_BB / T``), from Fisher metrics ``g`` (..., 2, 2) in natural coordinates ``(K, B)``; ``T``
    broadcastable with ``g[..., 1, 1]``. Returns (...); valid at any field."""
    return g[..., 1, 1] / T / L ** 2


def ising2d_sample_grid(L: int, theta, size: int, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact samples (:func:`ising2d_sample`, L <= 10) at every point of a grid of natural parameters ``theta``
    (G, 2) = (K, B), ``size`` per point, drawn in order from one generator (``seed``: int or
    ``numpy.random.Generator``). Returns the posterior network's features (G, size, 5) float32
    (:func:`ising2d_features`) and the sufficient statistics (G, size, 2) float64 (:func:`ising2d_stats`) of the
    same samples."""
    theta = torch.as_tensor(theta, dtype=torch.float64)
    if theta.ndim != 2 or theta.shape[1] != 2:
        raise ValueError(f"theta must have shape (G, 2) = (K, B) per grid point, got {tuple(theta.shape)}")
    rng = make_rng(seed)
    samples = [ising2d_sample(L, K, B, size, rng) for K, B in theta.numpy()]
    pool = torch.tensor(np.stack([ising2d_features(s) for s in samples]), dtype=torch.float32)
    stats = torch.tensor(np.stack([ising2d_stats(s) for s in samples]))
    return pool, stats
