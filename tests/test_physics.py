"""Exact models of geom.physics against independent references: brute-force enumeration, Kaufman vs the row
transfer matrix, Onsager's limit, the TASEP master equation, and samplers' moments vs exact expectations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tol
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


def test_fisher_metric_is_the_enumerated_covariance():
    """ising2d_fisher at several (K, B) equals the Boltzmann-weighted covariance of the statistics over all 2^16
    configurations of the 4 x 4 lattice; bad shapes raise."""
    st = P.ising2d_stats(P.ising2d_enumerate(4))
    theta = torch.tensor([[0.35, 0.2], [0.44, 0.0], [0.2, -0.3]], dtype=torch.float64)
    g = P.ising2d_fisher(4, theta, chunk_size=2)
    assert g.shape == (3, 2, 2) and g.dtype == torch.float64
    for (K, B), gi in zip(theta.tolist(), g):
        w = np.exp(K * st[:, 0] + B * st[:, 1])
        np.testing.assert_allclose(gi.numpy(), np.cov(st.T, aweights=w / w.sum(), bias=True), rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        P.ising2d_fisher(4, torch.tensor([0.3, 0.1]))


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


# ---------------------------------------------------------------------------------------------- 2D Ising: cluster
# sampler, autocorrelation times, Kaufman's energy and heat capacity
K_C = 1 / P.T_CRITICAL


def chain_z(x: np.ndarray, exact) -> np.ndarray:
    """z-scores of the mean of ``x`` (n_samples, chains, k) against ``exact`` (k,), with the standard error taken
    from the spread of the independent chains' means (valid whatever the autocorrelation along a chain)."""
    m = x.mean(0)
    return (m.mean(0) - np.asarray(exact)) / (m.std(0, ddof=1) / math.sqrt(m.shape[0]))


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_integrated_autocorr_time_of_ar1(phi):
    from scipy.signal import lfilter

    # AR(1) x_t = phi x_{t-1} + e_t: rho(t) = phi^t, so tau = (1 + phi) / (1 - phi) exactly
    e = np.random.default_rng(0).normal(size=(20_000, 16))
    x = lfilter([1.0], [1.0, -phi], e, axis=0)[1000:]
    tau, se = P.integrated_autocorr_time(x)
    exact = (1 + phi) / (1 - phi)
    assert abs(tau - exact) < 4 * se and se < 0.05 * exact, (tau, se, exact)
    # one chain gives the same answer with a larger error bar
    tau1, se1 = P.integrated_autocorr_time(x[:, 0])
    assert abs(tau1 - exact) < 4 * se1 and se1 > 3 * se


def test_integrated_autocorr_time_bad_input():
    with pytest.raises(ValueError, match="constant"):
        P.integrated_autocorr_time(np.ones((100, 2)))
    walk = np.cumsum(np.random.default_rng(0).normal(size=20))  # tau is long compared with 20 steps
    with pytest.raises(ValueError, match="too short"):
        P.integrated_autocorr_time(walk)
    assert P.integrated_autocorr_time(walk, min_steps_per_tau=0)[0] > 1
    with pytest.raises(ValueError, match="shape"):
        P.integrated_autocorr_time(np.ones((10, 2, 2)))


@pytest.mark.parametrize("L", [4, 6, 8])
def test_energy_kaufman_matches_transfer_matrix(L):
    # K_c exactly: Kaufman's g_0 vanishes there and its Z4 term must stay differentiable
    K = [0.2, 0.4, K_C, K_C + 1e-7, 0.5, 0.8]
    u, c = P.ising2d_energy_kaufman(L, torch.tensor(K, dtype=torch.float64))
    for i, k in enumerate(K):
        mean, cov = P.ising2d_exact_moments(L, k, 0.0)
        assert u[i].item() == pytest.approx(-mean[0].item() / L ** 2, rel=1e-10)
        assert c[i].item() == pytest.approx(k ** 2 * cov[0, 0].item() / L ** 2, rel=1e-9)


@pytest.mark.parametrize("L", [16, 64])
def test_energy_kaufman_autograd_vs_finite_differences(L):
    # c = -K^2 du/dK: the autograd second derivative against central differences of the first, near K_c
    K = torch.tensor([0.3, K_C - 1e-7, K_C, K_C + 1e-7, 0.6], dtype=torch.float64)
    e = 1e-5
    _, c = P.ising2d_energy_kaufman(L, K)
    du = (P.ising2d_energy_kaufman(L, K + e)[0] - P.ising2d_energy_kaufman(L, K - e)[0]) / (2 * e)
    torch.testing.assert_close(c, -K ** 2 * du, rtol=1e-6, atol=0)


@pytest.mark.parametrize("K,B", [(0.44, 0.0), (0.4, 0.3), (-0.3, 0.2)])
def test_swendsen_wang_exact_distribution_L4(K, B):
    """Final states of 20k independent chains against the exact joint (E, M) distribution by enumeration (any
    sign of K and B: the bond and ghost-spin probabilities are exercised); the exact distribution at a 5% wrong
    K must be rejected by the same bound."""
    L = 4
    s = P.ising2d_swendsen_wang(L, K, B, size=20_000, sweeps=15, seed=1)
    assert s.shape == (20_000, L, L) and s.dtype == np.int8
    st = P.ising2d_stats(s)
    allst = P.ising2d_stats(P.ising2d_enumerate(L))
    key = lambda a: (a[:, 0] + 40) * 100 + (a[:, 1] + 20)  # noqa: E731
    keys, inv = np.unique(key(allst), return_inverse=True)
    freq = np.bincount(np.searchsorted(keys, key(st)), minlength=len(keys)) / len(st)

    def excess(k):  # largest deviation in units of the binomial standard error
        w = np.exp(k * allst[:, 0] + B * allst[:, 1])
        p = np.bincount(inv, weights=w / w.sum())
        return np.max(np.abs(freq - p) / (np.sqrt(p * (1 - p) / len(st)) + 1e-4))

    assert excess(K) < 5
    assert excess(1.05 * K) > 5


@pytest.mark.parametrize("L,K,B", [(6, K_C, 0.0), (8, K_C, 0.05), (8, 0.3, -0.2), (7, -0.35, 0.1)])
def test_swendsen_wang_chains_vs_transfer_matrix(L, K, B):
    """Means and variances of (E, M) along 128 chains against the transfer matrix (B != 0 included; odd L for
    the antiferromagnet); a 3% wrong temperature must fail the same bound."""
    r = P.ising2d_mcmc(L, K, B, size=128, n_samples=200, burn_in=20, seed=L, keep_configs=False)
    st = r["stats"]
    assert st.shape == (200, 128, 2)
    mean, cov = P.ising2d_exact_moments(L, K, B)
    mean, var = mean.numpy(), np.diag(cov.numpy())
    assert np.all(np.abs(chain_z(st, mean)) < 5)
    assert np.all(np.abs(chain_z((st - mean) ** 2, var)) < 5)  # heat capacity and susceptibility
    wrong, wcov = P.ising2d_exact_moments(L, 1.03 * K, B)
    assert np.abs(chain_z(st, wrong.numpy())[0]) > 5


def test_metropolis_through_mcmc_matches_exact():
    L, K, B = 6, 0.35, 0.1
    r = P.ising2d_mcmc(L, K, B, size=64, n_samples=300, burn_in=100, algorithm="metropolis", seed=2,
                       keep_configs=False)
    mean, _ = P.ising2d_exact_moments(L, K, B)
    assert np.all(np.abs(chain_z(r["stats"], mean.numpy())) < 5)


def test_mcmc_resume_is_bit_identical(tmp_path):
    L, K, B = 6, np.linspace(0.3, 0.5, 4), 0.1
    kw = dict(size=4, burn_in=5, thin=2, seed=11)
    ref = P.ising2d_mcmc(L, K, B, n_samples=10, **kw)
    assert ref["configs"].shape == (10, 4, L, L) and ref["stats"].shape == (10, 4, 2)
    np.testing.assert_array_equal(ref["stats"], np.stack([P.ising2d_stats(c) for c in ref["configs"]]))
    out = tmp_path / "run"
    first = P.ising2d_mcmc(L, K, B, n_samples=7, out_dir=out, shard_size=3, **kw)
    np.testing.assert_array_equal(first["configs"], ref["configs"][:7])
    assert sorted(p.name for p in out.iterdir()) == ["burn-in.npz", "chunk-000000.npz", "chunk-000001.npz",
                                                     "chunk-000002.npz", "run.json"]
    (out / "chunk-000002.npz").unlink()  # interrupted: the last chunk is lost
    (out / "chunk-000001.npz").unlink()
    again = P.ising2d_mcmc(L, K, B, n_samples=10, out_dir=out, shard_size=3, **kw)  # resumed and extended
    np.testing.assert_array_equal(again["configs"], ref["configs"])
    np.testing.assert_array_equal(again["stats"], ref["stats"])
    # nothing left to do: the stored chunks are read back, the first n_samples of them returned
    np.testing.assert_array_equal(P.ising2d_mcmc(L, K, B, n_samples=4, out_dir=out, shard_size=3, **kw)["configs"],
                                  ref["configs"][:4])
    with pytest.raises(ValueError, match="different settings.*K"):
        P.ising2d_mcmc(L, K + 0.01, B, n_samples=10, out_dir=out, shard_size=3, **kw)
    with pytest.raises(TypeError, match="integer seed"):
        P.ising2d_mcmc(L, K, B, n_samples=10, out_dir=out, shard_size=3, size=4, seed=np.random.default_rng(0))


def test_cluster_sampler_bad_input():
    with pytest.raises(ValueError, match="L must be"):
        P.ising2d_swendsen_wang(1, 0.4, 0.0, size=2, sweeps=1)
    with pytest.raises(ValueError, match="finite"):
        P.ising2d_swendsen_wang(4, float("inf"), 0.0, size=2, sweeps=1)
    with pytest.raises(ValueError, match="shape"):
        P.ising2d_swendsen_wang(4, [0.4, 0.5, 0.6], 0.0, size=2, sweeps=1)
    with pytest.raises(ValueError, match="init must have shape"):
        P.ising2d_swendsen_wang(4, 0.4, 0.0, size=2, sweeps=1, init=np.ones((2, 4, 5)))
    with pytest.raises(ValueError, match="-1 or \\+1"):
        P.ising2d_swendsen_wang(4, 0.4, 0.0, size=2, sweeps=1, init=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="algorithm"):
        P.ising2d_mcmc(4, 0.4, 0.0, size=2, n_samples=1, algorithm="wolff")
    with pytest.raises(ValueError, match="even"):
        P.ising2d_mcmc(5, 0.4, 0.0, size=2, n_samples=1, algorithm="metropolis")
    with pytest.raises(ValueError, match="thin"):
        P.ising2d_mcmc(4, 0.4, 0.0, size=2, n_samples=1, thin=0)


@pytest.mark.slow
@pytest.mark.parametrize("L", [16, 32, 64])
def test_swendsen_wang_matches_kaufman(L):
    """Zero field, L = 16-64: energy and heat capacity per spin at T_c and on either side against Kaufman's exact
    finite-L values, error bars from 32 independent chains; a 1% wrong temperature must fail."""
    T = np.array([2.0, P.T_CRITICAL, 2.6])
    n = {16: 400, 32: 300, 64: 100}[L]
    r = P.ising2d_mcmc(L, np.repeat(1 / T, 32), 0.0, size=96, n_samples=n, burn_in=40, seed=L, keep_configs=False)
    E = r["stats"][..., 0].reshape(n, 3, 32)  # bond sum, chains grouped by temperature
    for j, t in enumerate(T):
        x = E[:, j, :, None]
        (u,), (c,) = (v.numpy() for v in P.ising2d_energy_kaufman(L, torch.tensor([1 / t])))
        mean, var = -u * L * L, c * L * L * t ** 2  # exact mean and variance of the bond sum
        assert abs(chain_z(x, [mean])[0]) < 5, (L, t)
        assert abs(chain_z((x - mean) ** 2, [var])[0]) < 5, (L, t)
        (uw,), _ = (v.numpy() for v in P.ising2d_energy_kaufman(L, torch.tensor([1 / (1.01 * t)])))
        assert abs(chain_z(x, [-uw * L * L])[0]) > 5, (L, t)


@pytest.mark.slow
def test_swendsen_wang_and_metropolis_agree_in_a_field_L16():
    """h != 0 at L > 12 has no exact reference: two independent samplers must agree, at a temperature above T_c
    where Metropolis mixes (tau(E) ~ 10 sweeps at L = 16)."""
    L, K, B = 16, 1 / 2.5, 0.04
    sw = P.ising2d_mcmc(L, K, B, size=64, n_samples=400, burn_in=50, seed=1, keep_configs=False)["stats"]
    mh = P.ising2d_mcmc(L, K, B, size=64, n_samples=400, thin=5, burn_in=500, algorithm="metropolis", seed=2,
                        keep_configs=False)["stats"]
    a, b = sw.mean(0), mh.mean(0)  # per-chain means (64, 2)
    se = np.sqrt(a.var(0, ddof=1) / 64 + b.var(0, ddof=1) / 64)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 5 * se), (a.mean(0), b.mean(0), se)
    assert np.all(se / np.abs(a.mean(0)) < 0.02)  # the check resolves the means to 2%


# ---------------------------------------------------------------------------------------------- whole domain (issue 23)
# Every exact reference over its whole parameter domain (large |K|, |h|; the odd antiferromagnet; K -> 0) against
# high-precision enumeration (mpmath, 60 digits, over the exact density of states of all 2^n configurations), or a
# ValueError that names the parameter, its value and the valid range. Covariances are compared with the named float64
# tolerance, its atol in units of the statistics' squared scale (the rounding floor of an autograd Hessian of log Z).
mp = pytest.importorskip("mpmath")
EXACT = tol(torch.float64)


def density_of_states(stats: np.ndarray) -> list[tuple[int, int, int]]:
    """(E, M, number of configurations) for every distinct pair of sufficient statistics, exact integers."""
    keys, counts = np.unique(np.asarray(stats), axis=0, return_counts=True)
    return [(int(e), int(m), int(c)) for (e, m), c in zip(keys, counts)]


def mp_log_partition(dos, K: float, B: float) -> tuple[float, np.ndarray]:
    """log Z and the covariance (2, 2) of (E, M) at (K, B), summed in 60-digit arithmetic."""
    with mp.workdps(60):
        K, B = mp.mpf(K), mp.mpf(B)
        w = [(e, m, c * mp.exp(K * e + B * m)) for e, m, c in dos]
        Z = mp.fsum(x for *_, x in w)
        mE, mM = mp.fsum(e * x for e, _, x in w) / Z, mp.fsum(m * x for _, m, x in w) / Z
        cEE = mp.fsum((e - mE) ** 2 * x for e, _, x in w) / Z
        cEM = mp.fsum((e - mE) * (m - mM) * x for e, m, x in w) / Z
        cMM = mp.fsum((m - mM) ** 2 * x for _, m, x in w) / Z
        return float(mp.log(Z)), np.array([[float(cEE), float(cEM)], [float(cEM), float(cMM)]])


def chain_dos(n: int):
    idx = np.arange(2 ** n)[:, None]
    return density_of_states(P.ising_chain_stats(1 - 2 * ((idx >> np.arange(n)) & 1)))


def assert_cov_close(g: torch.Tensor, cov: np.ndarray, scale: float) -> None:
    assert torch.isfinite(g).all(), g
    torch.testing.assert_close(g, torch.as_tensor(cov), rtol=EXACT["rtol"], atol=EXACT["atol"] * scale ** 2)


CHAIN_K = [-400.0, -50.0, -30.0, -10.0, -1.0, -0.3, 0.0, 1e-9, 1.0, 3.0, 30.0, 50.0, 400.0]
CHAIN_H = [0.0, 0.5, -5.0, 40.0, 800.0]


@pytest.mark.parametrize("n", [2, 3, 5, 7, 8])
def test_chain_logz_and_metric_over_the_whole_domain(n):
    """log Z and its Hessian (the Fisher metric) are finite and equal the 60-digit enumeration for every (K, H) of a
    grid from the odd antiferromagnetic ring at K = -400 (l-/l+ -> -1: the closed form gave -inf) through the
    ferromagnet at K = 400, H = 800 (exp overflows: NaN); the closed form's region (|K| <= 1) is included."""
    dos = chain_dos(n)
    f = lambda t: P.ising_chain_logz(t[0], t[1], n)  # noqa: E731
    theta = torch.tensor([[K, H] for K in CHAIN_K for H in CHAIN_H], dtype=torch.float64)
    logz, g = f(theta.T), torch.func.vmap(torch.func.hessian(f))(theta)
    for (K, H), lz, gi in zip(theta.tolist(), logz, g):
        lz_ref, cov = mp_log_partition(dos, K, H)
        assert math.isfinite(lz.item()) and lz.item() == pytest.approx(lz_ref, rel=EXACT["rtol"]), (K, H, lz, lz_ref)
        assert_cov_close(gi, cov, scale=n)


@pytest.mark.parametrize("n", [5, 7])
@pytest.mark.parametrize("K", [-10.0, -30.0])
def test_odd_antiferromagnetic_ring(n, K):
    """The odd ring at strong antiferromagnetic coupling: one frustrated bond anywhere on the ring, so
    log Z = -K (n - 2) + log(2 n) + O(e^{-4|K|}) and Var(M) = 1 at H = 0; the transfer-matrix eigenvalues are
    l+- = +-e^{-K} + e^{K} (nearly opposite), where log(l+^n + l-^n) cancels (the old closed form: -inf at K = -30)."""
    lz = P.ising_chain_logz(K, 0.0, n).item()
    lz_ref, cov = mp_log_partition(chain_dos(n), K, 0.0)
    assert lz == pytest.approx(lz_ref, rel=EXACT["rtol"])
    assert lz == pytest.approx(-K * (n - 2) + math.log(2 * n), abs=1e-6)
    g = torch.func.hessian(lambda t: P.ising_chain_logz(t[0], t[1], n))(torch.tensor([K, 0.0], dtype=torch.float64))
    assert_cov_close(g, cov, scale=n)
    assert g[1, 1].item() == pytest.approx(1.0, rel=1e-6)


def test_chain_closed_form_and_log_space_agree_at_the_switch():
    """Both evaluations of ising_chain_logz (eigenvalue closed form for |K| <= 1, log-space powers beyond) agree at
    the switch |K| = 1, value and Hessian, so the metric is continuous there."""
    from geom.physics.ising1d import _chain_logz_log_space

    for n in (2, 7, 16):
        for K, H in [(1.0, 0.3), (-1.0, 0.0), (-1.0, -2.0), (0.4, 300.0)]:
            t = torch.tensor([K, H], dtype=torch.float64)
            a = lambda t: P.ising_chain_logz(t[0], t[1], n)  # noqa: E731
            b = lambda t: _chain_logz_log_space(t[0], t[1], n)  # noqa: E731
            torch.testing.assert_close(a(t), b(t), **EXACT)
            torch.testing.assert_close(torch.func.hessian(a)(t), torch.func.hessian(b)(t), rtol=EXACT["rtol"],
                                       atol=EXACT["atol"] * n ** 2)


def test_chain_sampler_at_large_coupling_and_field():
    """Exact draws where T's entries over- or underflow float64: the odd AF ring at K = -400 has exactly one
    frustrated bond, uniformly placed, and M = +-1 with probability 1/2; K = 400 gives the two ferromagnetic states
    1/2 each; H = 800 gives all spins up."""
    n, size = 5, 5000
    s = P.ising_chain_sample(-400.0, 0.0, n, size, seed=0)
    frustrated = s * np.roll(s, -1, 1) > 0
    assert np.all(frustrated.sum(1) == 1)
    counts = np.bincount(frustrated.argmax(1), minlength=n)
    assert np.all(np.abs(counts - size / n) < 5 * math.sqrt(size * (1 / n) * (1 - 1 / n))), counts
    z_bound(s.sum(1, keepdims=True).astype(float), np.array([0.0]))
    s = P.ising_chain_sample(400.0, 0.0, 4, size, seed=1)
    assert np.all(np.abs(s.sum(1)) == 4)
    z_bound(s.sum(1, keepdims=True).astype(float), np.array([0.0]))
    assert np.all(P.ising_chain_sample(0.3, 800.0, 4, 100, seed=2) == 1)


def test_chain_bad_input_names_the_range():
    for bad in (1, 2.5, -3, True):
        with pytest.raises(ValueError, match="n >= 2"):
            P.ising_chain_logz(0.1, 0.0, bad)
    with pytest.raises(ValueError, match="n >= 2"):
        P.ising_chain_sample(0.1, 0.0, 1, 3)
    with pytest.raises(ValueError, match="size must be an integer >= 0"):
        P.ising_chain_sample(0.1, 0.0, 4, -3)
    with pytest.raises(ValueError, match="finite"):
        P.ising_chain_logz(float("inf"), 0.0, 4)


@pytest.mark.parametrize("L,Ks", [(3, [-77.0, -50.0, -20.0, -5.0, 0.0, 5.0, 50.0, 200.0]),
                                  (4, [-1000.0, -200.0, -20.0, 0.0, 20.0, 1000.0])])
def test_transfer_matrix_logz_and_fisher_over_its_range(L, Ks):
    """ising2d_logz and ising2d_fisher vs the 60-digit enumeration of all 2^(L^2) configurations, from the frustrated
    odd (L = 3) antiferromagnet to the edge of its float64 range (K = -77) and |K| up to 1000 for even L, in fields up
    to |B| = 50: finite, log Z to the exact tolerance, the metric to the covariance's rounding floor."""
    dos = density_of_states(P.ising2d_stats(P.ising2d_enumerate(L)))
    theta = torch.tensor([[K, B] for K in Ks for B in (0.0, 0.3, -4.0, 50.0)], dtype=torch.float64)
    logz = P.ising2d_logz(L, theta[:, 0], theta[:, 1])
    g = P.ising2d_fisher(L, theta, chunk_size=8)
    for (K, B), lz, gi in zip(theta.tolist(), logz, g):
        lz_ref, cov = mp_log_partition(dos, K, B)
        assert math.isfinite(lz.item()) and lz.item() == pytest.approx(lz_ref, rel=EXACT["rtol"]), (K, B, lz, lz_ref)
        assert_cov_close(gi, cov, scale=2 * L * L)


def test_transfer_matrix_range_errors_name_the_point():
    """Past the float64 range of the row transfer matrix (odd-L antiferromagnet, K < -230 / L) every entry point
    raises a ValueError naming (K, B), L and the valid range, instead of -inf (ising2d_logz), NaN (its Hessian) or
    draws from all-zero weights (ising2d_sample returned the all-up lattice at K = -200)."""
    for L, K in [(3, -100.0), (5, -100.0), (7, -40.0)]:
        with pytest.raises(ValueError, match=r"outside the float64 range.*K >= -230 / L"):
            P.ising2d_logz(L, K, 0.1)
    with pytest.raises(ValueError, match=r"ising2d_fisher: \(K, B\) = \(-100.0, 0.0\) at L=3"):
        P.ising2d_fisher(3, torch.tensor([[0.3, 0.0], [-100.0, 0.0]]))
    with pytest.raises(ValueError, match="ising2d_sample.*outside the float64 range"):
        P.ising2d_sample(3, -200.0, 0.0, 5, seed=0)
    with pytest.raises(ValueError, match="outside the float64 range"):
        P.ising2d_exact_moments(5, -100.0, 0.0)
    for bad in (1, 13, 4.0):
        with pytest.raises(ValueError, match="integer L"):
            P.ising2d_logz(bad, 0.3)
    with pytest.raises(ValueError, match="size must be an integer >= 0"):
        P.ising2d_sample(4, 0.3, 0.0, -1)


def test_transfer_matrix_sampler_frustrated_ground_states_L3():
    """At K = -20 (well inside the range) the odd 3 x 3 antiferromagnet is sampled exactly: every draw is a
    frustrated ground state (the enumerated minimum energy) and the magnetisation's mean matches the exact one."""
    L, K, B = 3, -20.0, 0.05
    st_all = P.ising2d_stats(P.ising2d_enumerate(L))
    s = P.ising2d_sample(L, K, B, 20_000, seed=4)
    st = P.ising2d_stats(s)
    assert np.all(st[:, 0] == st_all[:, 0].min())
    grad = torch.func.grad(lambda t: P.ising2d_logz(L, t[0], t[1]))(torch.tensor([K, B], dtype=torch.float64))
    z_bound(st[:, 1:], grad[1:].numpy())


@pytest.mark.parametrize("L", [2, 3, 4])
def test_kaufman_over_its_range(L):
    """Kaufman's log Z and d^2 log Z / dK^2 (autograd) vs the 60-digit enumeration from K = 1e-3 (T = 1000, where the
    formula's 1/K^2 terms cancel: relative error ~1e-16 / K^2) to K = 100 (T = 0.01)."""
    dos = density_of_states(P.ising2d_stats(P.ising2d_enumerate(L)))
    K = torch.tensor([1e-3, 1e-2, 0.3, 2.0, 20.0, 100.0], dtype=torch.float64)
    lz = P.ising2d_logz_kaufman(L, K)
    gKK = torch.func.vmap(torch.func.hessian(lambda k: P.ising2d_logz_kaufman(L, k)))(K)
    u, c = P.ising2d_energy_kaufman(L, K)
    assert torch.isfinite(torch.stack([lz, gKK, u, c])).all()
    for k, lzi, gi in zip(K.tolist(), lz, gKK):
        lz_ref, cov = mp_log_partition(dos, k, 0.0)
        assert lzi.item() == pytest.approx(lz_ref, rel=EXACT["rtol"])
        # the cancellation floor of the second derivative at small K: 1e-16 / K^2 relative, below rtol at K >= 1e-3
        assert gi.item() == pytest.approx(cov[0, 0], rel=max(EXACT["rtol"], 1e-16 / k ** 2 * 10),
                                          abs=EXACT["atol"] * (2 * L * L) ** 2)


def test_kaufman_range_errors_name_the_value():
    """Outside K in [1e-3, 100] float64 loses Kaufman's derivatives (measured: relative error 0.33 at K = 1e-8,
    L = 3; at K = 150 the Hessian was 120 instead of ~0, NaN from K = 180): a ValueError names K and the range."""
    for K in (1e-4, 150.0, 0.0, -0.3):
        with pytest.raises(ValueError, match=r"K in \[0.001, 100\].*got K="):
            P.ising2d_logz_kaufman(8, K)
        with pytest.raises(ValueError, match=r"K in \[0.001, 100\]"):
            P.ising2d_energy_kaufman(8, torch.tensor([0.3, K]))
    for L in (0, 1, 2.5):
        with pytest.raises(ValueError, match="integer L"):
            P.ising2d_logz_kaufman(L, 0.3)


def test_onsager_over_the_whole_axis():
    """Onsager's free energy vs mpmath's quadrature of the same integral (50 digits) for K of either sign up to
    |K| = 400 (cosh 2K overflowed: NaN), its symmetry f(-K) = f(K) and the ground-state limit f -> 2|K|."""
    K = [-400.0, -1.0, -0.3, 1e-6, 0.3, 1 / P.T_CRITICAL, 1.0, 10.0, 50.0, 400.0]
    f = P.ising2d_free_energy_onsager(torch.tensor(K, dtype=torch.float64))
    assert torch.isfinite(f).all()
    with mp.workdps(50):
        for k, fi in zip(K, f.tolist()):
            k2 = 2 * mp.sinh(2 * mp.mpf(k)) / mp.cosh(2 * mp.mpf(k)) ** 2
            ref = mp.log(2 * mp.cosh(2 * mp.mpf(k))) + mp.quad(
                lambda p: mp.log((1 + mp.sqrt(1 - k2 ** 2 * mp.sin(p) ** 2)) / 2), [0, mp.pi / 4, mp.pi / 2]) / mp.pi
            # Gauss-Legendre with 512 nodes: the kink of the integrand at K_c limits it to ~1e-9 there
            assert fi == pytest.approx(float(ref), rel=1e-9, abs=1e-9), (k, fi, float(ref))
    torch.testing.assert_close(P.ising2d_free_energy_onsager(torch.tensor(K)), P.ising2d_free_energy_onsager(
        -torch.tensor(K)), **EXACT)
    assert f[-1].item() == pytest.approx(800.0, rel=EXACT["rtol"])


@pytest.mark.parametrize("L", [1, 3, 6])
def test_tasep_at_the_edges_of_its_rate_range(L):
    """At the corners of RATE_RANGE = [1e-12, 1e12] the matrix-product weights stay finite, normalise to the
    closed-form Z_L (an independent formula) and give a finite Fisher information (autograd)."""
    for a, b in [(1e-12, 0.5), (0.5, 1e-12), (1e12, 1e12), (1e-12, 1e-12), (1e12, 1e-12), (1e-12, 1e12)]:
        conf, lw = P.tasep_weights(L, a, b)
        lz = P.tasep_logz(L, a, b).item()
        assert torch.isfinite(lw).all() and math.isfinite(lz)
        assert torch.logsumexp(lw, 0).item() == pytest.approx(lz, rel=EXACT["rtol"]), (a, b)
        assert torch.isfinite(P.tasep_fisher(L, a, b, method="autograd")).all()


def test_tasep_range_errors_name_the_value():
    for a, b in [(1e-300, 0.5), (0.5, 1e13), (0.0, 0.5), (-0.1, 0.5)]:
        with pytest.raises(ValueError, match=r"alpha, beta must (lie in \[1e-12, 1e\+12\]|be positive)"):
            P.tasep_logz(4, a, b)
        with pytest.raises(ValueError, match=r"alpha, beta must (lie in|be positive)"):
            P.tasep_weights(4, a, b)
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="integer number of sites"):
            P.tasep_logz(bad, 0.5, 0.5)
    with pytest.raises(ValueError, match="integer number of sites"):
        P.tasep_current(0, 0.5, 0.5)
    with pytest.raises(ValueError, match="method='autograd'"):
        P.tasep_fisher(4, 1e-5, 0.5)
