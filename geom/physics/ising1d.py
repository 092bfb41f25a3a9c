"""The periodic 1D Ising chain (``geom.physics``): exact log Z by the transfer matrix, exact samples,
sufficient statistics and the posterior network's features."""
from __future__ import annotations

import numpy as np
import torch

from ._common import check_finite, make_rng, to_tensor


def ising_chain_logz(K, H, n: int) -> torch.Tensor:
    """Exact log Z of the periodic Ising chain of ``n`` spins: ``log(l+^n + l-^n)`` with
    ``l+- = e^K cosh H +- sqrt(e^{2K} sinh^2 H + e^{-2K})`` (transfer matrix; Baxter, Exactly Solved Models, Ch. 2).

    ``K``, ``H``: broadcastable tensors (any shape); returns their broadcast shape, differentiable."""
    if n < 2:
        raise ValueError(f"the periodic chain needs n >= 2 spins, got {n}")
    K, H = torch.broadcast_tensors(to_tensor(K), to_tensor(H))
    check_finite("K, H", torch.stack([K, H]))
    root = torch.sqrt(torch.exp(2 * K) * torch.sinh(H) ** 2 + torch.exp(-2 * K))
    lp = torch.exp(K) * torch.cosh(H) + root
    lm = torch.exp(K) * torch.cosh(H) - root
    return n * torch.log(lp) + torch.log1p((lm / lp) ** n)


def ising_chain_sample(K: float, H: float, n: int, size: int, seed=0) -> np.ndarray:
    """Exact samples of the periodic chain, shape ``(size, n)`` int8 in {-1, +1}.

    Transfer matrix ``T(s, s') = exp(K s s' + H (s + s') / 2)``: draw ``s_1`` from ``(T^n)_{s1 s1} / Z``, then
    ``s_{i+1}`` from ``T(s_i, s_{i+1}) (T^{n-i})_{s_{i+1} s_1}`` (the chain is a Markov chain pinned at s_1)."""
    rng = make_rng(seed)
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
