"""The open-boundary TASEP (``geom.physics``; Derrida, Evans, Hakim, Pasquier 1993): exact log Z and current,
matrix-product stationary weights of every configuration, an independent reference from the master equation,
exact samples, the exact Fisher information, the posterior network's features and the phase diagram."""
from __future__ import annotations

import math

import numpy as np
import torch

from ._common import check_finite, holds, make_rng, to_tensor


RATE_RANGE = (1e-12, 1e12)  # alpha, beta (in units of the hopping rate) where every function here holds in float64


def _check_sites(L, lo: int, hi: int, what: str) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or not lo <= L <= hi:
        raise ValueError(f"{what} supports an integer number of sites L with {lo} <= L <= {hi}, got L={L!r}")
    return int(L)


def _check_rates(a: torch.Tensor, b: torch.Tensor) -> None:
    """Positive rates inside ``RATE_RANGE`` (skipped under torch.func transforms, where values cannot be read)."""
    check_finite("alpha, beta", torch.stack([a, b]))
    lo, hi = RATE_RANGE
    ok = (a > 0) & (b > 0)
    if not holds(ok):
        i = int((~ok).reshape(-1).nonzero()[0])
        raise ValueError(f"TASEP rates alpha, beta must be positive, got alpha={a.reshape(-1)[i].item()}, "
                         f"beta={b.reshape(-1)[i].item()}")
    ok = (a >= lo) & (a <= hi) & (b >= lo) & (b <= hi)
    if not holds(ok):
        i = int((~ok).reshape(-1).nonzero()[0])
        raise ValueError(f"TASEP rates alpha, beta must lie in [{lo:g}, {hi:g}] (units of the hopping rate; beyond, "
                         f"alpha^-L and the D-coefficients 1/beta over- or underflow the matrix-product weights in "
                         f"float64), got alpha={a.reshape(-1)[i].item()}, beta={b.reshape(-1)[i].item()}; rescale "
                         f"time or clip the rates to the range (the phase is decided well inside it)")


def tasep_logz(L: int, alpha, beta) -> torch.Tensor:
    """Exact log of the matrix-product normalisation of the open TASEP (Derrida et al. 1993; as quoted in
    Lobashev et al.): ``Z_L = sum_{p=1}^{L} p (2L-1-p)! / (L! (L-p)!) * (b^{p+1} - a^{p+1}) / (b - a)``, ``a = 1/alpha``,
    ``b = 1/beta``, with the ratio written as ``sum_{k=0}^{p} b^k a^{p-k}`` (exact at alpha = beta).
    ``alpha``, ``beta``: broadcastable positive tensors in ``RATE_RANGE``; ``Z_0 = 1``; integer ``L >= 0``.
    Differentiable (float64)."""
    L = _check_sites(L, 0, 10 ** 7, "tasep_logz")
    a, b = torch.broadcast_tensors(to_tensor(alpha).double(), to_tensor(beta).double())
    _check_rates(a, b)
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
    L = _check_sites(L, 1, 10 ** 7, "tasep_current")
    return torch.exp(tasep_logz(L - 1, alpha, beta) - tasep_logz(L, alpha, beta))


def _tasep_configs(L: int) -> np.ndarray:
    idx = np.arange(2 ** L, dtype=np.int64)[:, None]
    return ((idx >> np.arange(L)) & 1).astype(np.int8)  # (2^L, L), tau_1 = column 0


def tasep_weights(L: int, alpha, beta) -> tuple[np.ndarray, torch.Tensor]:
    """All 2^L configurations (2^L, L) int8 (tau_1 first) and their unnormalised stationary log-weights
    ``log <W| prod_i (tau_i D + (1 - tau_i) E) |V>`` (2^L,), differentiable in (alpha, beta) (scalars).

    Each word is normal-ordered from the right: a vector ``c_a`` holds the coefficients of ``E^a |V>``;
    prepending E shifts ``a -> a + 1``; prepending D uses ``D E^a |V> = |V>/beta + sum_{j=1}^a E^j |V>``
    (from DE = D + E); finally ``<W| E^a |V> = alpha^{-a}``. L <= 16; alpha, beta in ``RATE_RANGE``."""
    L = _check_sites(L, 1, 16, "enumeration of the TASEP weights")
    a, b = to_tensor(alpha).double(), to_tensor(beta).double()
    if a.ndim or b.ndim:
        raise ValueError(f"alpha, beta must be scalars, got shapes {tuple(a.shape)}, {tuple(b.shape)}")
    _check_rates(a.detach(), b.detach())
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
    L = _check_sites(L, 1, 10, "the dense generator")
    _check_rates(to_tensor(float(alpha)), to_tensor(float(beta)))
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
    rng = make_rng(seed)
    conf, lw = tasep_weights(L, alpha, beta)
    p = torch.softmax(lw, 0).numpy()
    return conf[rng.choice(len(conf), size=size, p=p)]


def tasep_fisher(L: int, alpha: float, beta: float, method: str = "fd", eps: float = 1e-5) -> torch.Tensor:
    """Exact Fisher information (2, 2) of the stationary TASEP measure in (alpha, beta), by enumeration:
    ``g = sum_tau P(tau) d log P d log P^T``, with the derivatives of ``log P`` by central differences of step
    ``eps`` (``method="fd"``, fast, relative error ~1e-9) or by autograd (``method="autograd"``, slow)."""
    if method == "fd" and not min(alpha, beta) > 10 * eps:
        raise ValueError(f"finite differences of step eps={eps:g} need alpha, beta > 10 eps, got alpha={alpha}, "
                         f"beta={beta}; pass method='autograd' or a smaller eps")

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
