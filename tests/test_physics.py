"""Exact models of geom.physics against independent references: brute-force enumeration, Kaufman vs the row
transfer matrix, Onsager's limit, the TASEP master equation, and samplers' moments vs exact expectations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geom import physics as P


pytestmark = pytest.mark.usefixtures("one_thread")


def z_bound(samples: np.ndarray, exact: np.ndarray, z: float = 5.0) -> None:
    """Sample means agree with exact expectations within ``z`` standard errors (per component)."""
    mean, se = samples.mean(0), samples.std(0, ddof=1) / math.sqrt(len(samples))
    assert np.all(np.abs(mean - exact) < z * se + 1e-12), (mean, exact, se)


# ---------------------------------------------------------------------------------------------- 1D chain
@pytest.mark.parametrize("n", [2, 5, 8])
@pytest.mark.parametrize("K,H", [(0.4, 0.0), (-0.7, 0.3), (1.2, -0.5)])
def test_chain_logz_matches_enumeration(n, K, H):
    idx = np.arange(2 ** n)[:, None]
    s = 1 - 2 * ((idx >> np.arange(n)) & 1)
    st = P.ising_chain_stats(s)
    ref = np.log(np.exp(K * st[:, 0] + H * st[:, 1]).sum())
    assert P.ising_chain_logz(K, H, n).item() == pytest.approx(ref, rel=1e-12)


def test_chain_sampler_moments():
    K, H, n = 0.6, 0.15, 16
    s = P.ising_chain_sample(K, H, n, size=40_000, seed=1)
    mean = torch.func.grad(lambda t: P.ising_chain_logz(t[0], t[1], n))(torch.tensor([K, H], dtype=torch.float64))
    z_bound(P.ising_chain_stats(s), mean.numpy())
    # the per-configuration distribution is exact: compare frequencies with enumeration for a short chain
    n = 4
    s = P.ising_chain_sample(K, H, n, size=60_000, seed=2)
    codes = ((s < 0).astype(int) << np.arange(n)).sum(1)
    freq = np.bincount(codes, minlength=2 ** n) / len(codes)
    idx = np.arange(2 ** n)[:, None]
    st = P.ising_chain_stats(1 - 2 * ((idx >> np.arange(n)) & 1))
    p = np.exp(K * st[:, 0] + H * st[:, 1])
    p /= p.sum()
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(codes)) + 1e-4)


# ---------------------------------------------------------------------------------------------- 2D Ising
@pytest.mark.parametrize("K,B", [(0.2, 0.0), (0.44, 0.0), (0.6, 0.1), (0.3, -0.5), (-0.3, 0.2)])
def test_transfer_matrix_matches_enumeration_L4(K, B):
    st = P.ising2d_stats(P.ising2d_enumerate(4))
    ref = np.log(np.exp(K * st[:, 0] + B * st[:, 1]).sum())
    assert P.ising2d_logz(4, K, B).item() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("L", [2, 4, 6, 8])
def test_kaufman_matches_transfer_matrix_at_zero_field(L):
    K = torch.tensor([0.15, 0.3, 0.44, 0.45, 0.7], dtype=torch.float64)
    torch.testing.assert_close(P.ising2d_logz_kaufman(L, K), P.ising2d_logz(L, K, 0.0), rtol=1e-12, atol=1e-10)
    # and its second derivative (the heat capacity) through autograd
    h_k = torch.func.vmap(torch.func.hessian(lambda k: P.ising2d_logz_kaufman(L, k)))(K)
    h_t = torch.func.vmap(torch.func.hessian(lambda k: P.ising2d_logz(L, k, 0.0)))(K)
    torch.testing.assert_close(h_k, h_t, rtol=1e-8, atol=1e-8)


def test_kaufman_approaches_onsager():
    for K, tol in [(0.3, 1e-9), (0.6, 1e-9)]:
        f = P.ising2d_free_energy_onsager(K).item()
        lz = P.ising2d_logz_kaufman(128, K).item()
        # below T_c the two ground states add log 2 to log Z; above, corrections are exponentially small
        extra = math.log(2) if K > 1 / P.T_CRITICAL else 0.0
        assert (lz - extra) / 128 ** 2 == pytest.approx(f, abs=tol)
    # heat-capacity peak of the finite lattice approaches T_c from above as L grows (Ferdinand-Fisher)
    T = torch.linspace(2.25, 2.6, 141, dtype=torch.float64)
    peaks = []
    for L in (8, 32, 96):
        k, e = 1 / T, 1e-4  # second derivative by central differences (autograd agreement is tested above)
        d2 = (P.ising2d_logz_kaufman(L, k + e) - 2 * P.ising2d_logz_kaufman(L, k) + P.ising2d_logz_kaufman(L, k - e)) / e ** 2
        peaks.append(T[torch.argmax(d2 / T ** 2)].item())
    assert peaks[0] > peaks[1] > peaks[2] > P.T_CRITICAL and peaks[2] - P.T_CRITICAL < 0.02


def test_exact_moments_match_enumeration():
    st = P.ising2d_stats(P.ising2d_enumerate(4))
    K, B = 0.35, 0.2
    w = np.exp(K * st[:, 0] + B * st[:, 1])
    w /= w.sum()
    mean, cov = P.ising2d_exact_moments(4, K, B)
    np.testing.assert_allclose(mean.numpy(), w @ st, rtol=1e-10)
    np.testing.assert_allclose(cov.numpy(), np.cov(st.T, aweights=w, bias=True), rtol=1e-8)


@pytest.mark.parametrize("L,K,B", [(4, 0.44, 0.0), (6, 0.3, 0.1), (8, 0.5, -0.05)])
def test_transfer_matrix_sampler_moments(L, K, B):
    s = P.ising2d_sample(L, K, B, size=20_000, seed=L)
    assert s.shape == (20_000, L, L) and s.dtype == np.int8
    st = P.ising2d_stats(s)
    mean, cov = P.ising2d_exact_moments(L, K, B)
    z_bound(st, mean.numpy())
    # second moments: energy variance within 10% (20k samples: ~1% standard error on a variance)
    assert np.var(st[:, 0]) == pytest.approx(cov[0, 0].item(), rel=0.1)


def test_transfer_matrix_sampler_exact_distribution_L4():
    L, K, B = 4, 0.4, 0.15
    s = P.ising2d_sample(L, K, B, size=200_000, seed=0)
    st = P.ising2d_stats(s)
    allst = P.ising2d_stats(P.ising2d_enumerate(L))
    w = np.exp(K * allst[:, 0] + B * allst[:, 1])
    w /= w.sum()
    # joint (E, M) histogram vs the exact one
    key = lambda a: (a[:, 0] + 40) * 100 + (a[:, 1] + 20)  # noqa: E731
    keys, inv = np.unique(key(allst), return_inverse=True)
    p = np.bincount(inv, weights=w)
    freq = np.bincount(np.searchsorted(keys, key(st)), minlength=len(keys)) / len(st)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(st)) + 1e-4)


def test_metropolis_moments_against_exact():
    L, K, B = 4, 0.35, 0.1
    s = P.ising2d_metropolis(L, K, B, size=4000, sweeps=200, seed=3)
    st = P.ising2d_stats(s)
    mean, _ = P.ising2d_exact_moments(L, K, B)
    z_bound(st, mean.numpy())


def test_bad_input_raises():
    with pytest.raises(ValueError):
        P.ising2d_logz(4, float("nan"), 0.0)
    with pytest.raises(ValueError):
        P.ising2d_enumerate(5)
    with pytest.raises(ValueError):
        P.ising2d_stats(np.ones((3, 4)))
    with pytest.raises(ValueError):
        P.tasep_logz(4, -0.1, 0.5)


# ---------------------------------------------------------------------------------------------- TASEP
@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.5, 0.77])
@pytest.mark.parametrize("L", [1, 5, 20, 200])
def test_tasep_current_on_alpha_plus_beta_one(alpha, L):
    assert P.tasep_current(L, alpha, 1 - alpha).item() == pytest.approx(alpha * (1 - alpha), rel=1e-10)


@pytest.mark.parametrize("L", [1, 2, 5, 9])
@pytest.mark.parametrize("alpha,beta", [(0.3, 0.7), (0.8, 0.2), (0.6, 0.6), (1.5, 0.4)])
def test_tasep_matrix_product_matches_master_equation(L, alpha, beta):
    conf, p_gen = P.tasep_generator_stationary(L, alpha, beta)
    conf2, lw = P.tasep_weights(L, alpha, beta)
    np.testing.assert_array_equal(conf, conf2)
    np.testing.assert_allclose(torch.softmax(lw, 0).numpy(), p_gen, atol=1e-10)
    # normalisation of the weights = closed-form Z_L; current = alpha * P(tau_1 = 0)
    assert torch.logsumexp(lw, 0).item() == pytest.approx(P.tasep_logz(L, alpha, beta).item(), rel=1e-12)
    assert P.tasep_current(L, alpha, beta).item() == pytest.approx(alpha * p_gen[conf[:, 0] == 0].sum(), rel=1e-9)


def test_tasep_large_L_currents_by_phase():
    L = 2000
    assert P.tasep_current(L, 0.2, 0.8).item() == pytest.approx(0.2 * 0.8, rel=1e-2)   # LD: alpha(1-alpha)
    assert P.tasep_current(L, 0.9, 0.3).item() == pytest.approx(0.3 * 0.7, rel=1e-2)   # HD: beta(1-beta)
    assert P.tasep_current(L, 0.9, 0.8).item() == pytest.approx(0.25, rel=1e-2)        # MC: 1/4
    assert list(P.tasep_phase([0.2, 0.9, 0.9], [0.8, 0.3, 0.8])) == ["LD", "HD", "MC"]


def test_tasep_sampler_and_fisher():
    L, a, b = 6, 0.4, 0.7
    tau = P.tasep_sample(L, a, b, size=30_000, seed=5)
    conf, p = P.tasep_generator_stationary(L, a, b)
    z_bound(tau.astype(float), p @ conf)
    # Fisher information: autograd vs central finite differences of log P
    np.testing.assert_allclose(P.tasep_fisher(L, a, b, method="autograd").numpy(),
                               P.tasep_fisher(L, a, b, method="fd").numpy(), rtol=1e-6)
