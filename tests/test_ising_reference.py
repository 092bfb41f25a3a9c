"""The Hessian study's physics (notebook 10, geom.physics): heat capacity and susceptibility from a metric,
Kaufman's g_KK, the grid samplers and the long-run reference with the h -> -h mirror, each against an independent
reference: enumeration of all 2^16 states at L = 4, the row transfer matrix, Kaufman, a brute-force loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tol
from geom import physics as P

pytestmark = pytest.mark.usefixtures("one_thread")


def enumerated_moments(L: int, K: float, B: float):
    """Exact (Var E, Var M, Cov(E, M)) of the sufficient statistics by enumerating all 2^(L^2) states (L <= 4)."""
    st = P.ising2d_stats(P.ising2d_enumerate(L))
    w = K * st[:, 0] + B * st[:, 1]
    p = np.exp(w - w.max())
    p /= p.sum()
    d = st - p @ st
    return np.einsum("s,si,sj->ij", p, d, d)


# ------------------------------------------------------------------------------ thermodynamics from a metric
@pytest.mark.parametrize("L", [3, 4])
def test_heat_capacity_and_susceptibility_against_enumeration(L):
    T = torch.tensor([1.5, 2.269, 3.0], dtype=torch.float64)
    for h in (0.0, 0.2):
        theta = torch.stack([1 / T, h / T], 1)
        g = P.ising2d_fisher(L, theta)
        for i, t in enumerate(T.tolist()):
            cov = enumerated_moments(L, 1 / t, h / t)
            chi = cov[1, 1] / t / L ** 2  # d<m>/dh = beta Var(M) / L^2
            assert P.ising2d_susceptibility(g[i], t, L).item() == pytest.approx(chi, rel=1e-9)
            if h == 0.0:  # C = beta^2 Var(E) / L^2, E = -sum s_i s_j
                C = cov[0, 0] / t ** 2 / L ** 2
                assert P.ising2d_heat_capacity(g[i], t, L).item() == pytest.approx(C, rel=1e-9)
                assert P.ising2d_heat_capacity_kaufman(L, T[i:i + 1]).item() == pytest.approx(C, rel=1e-8)


@pytest.mark.parametrize("L", [4, 6, 8])
def test_gKK_kaufman_matches_the_transfer_matrix(L):
    T = torch.tensor([1.6, 2.0, 2.269, 2.5, 3.6], dtype=torch.float64)
    g = P.ising2d_fisher(L, torch.stack([1 / T, 0 * T], 1))
    torch.testing.assert_close(P.ising2d_gKK_kaufman(L, T), g[:, 0, 0], rtol=1e-8, atol=1e-8)
    # the heat capacity is Kaufman's specific heat of ising2d_energy_kaufman
    _, c = P.ising2d_energy_kaufman(L, 1 / T)
    torch.testing.assert_close(P.ising2d_heat_capacity_kaufman(L, T), c, **tol(torch.float64))


def test_gKK_kaufman_bad_input_names_the_problem():
    with pytest.raises(ValueError, match=r"shape \(m,\)"):
        P.ising2d_gKK_kaufman(8, torch.tensor(2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="Kaufman's formula holds"):
        P.ising2d_gKK_kaufman(8, torch.tensor([2.0, 5000.0], dtype=torch.float64))


def test_swendsen_wang_thinning_covers_the_measured_tau():
    measured = {16: 6.48, 32: 7.64, 64: 9.6}  # tau_E at T_c (ising2d_swendsen_wang's table)
    for L, tau in measured.items():
        assert tau <= P.swendsen_wang_thinning(L) < tau + 1.05
    assert [P.swendsen_wang_thinning(L) for L in (32, 64)] == [8, 10]  # the thinning of notebook 10's runs
    with pytest.raises(ValueError, match="integer >= 2"):
        P.swendsen_wang_thinning(1)


def test_sample_grid_is_the_per_point_sampler_in_order():
    L, theta = 3, torch.tensor([[0.4, 0.0], [0.3, 0.1], [0.5, -0.2]], dtype=torch.float64)
    pool, stats = P.ising2d_sample_grid(L, theta, 7, seed=5)
    rng = np.random.default_rng(5)
    for g, (K, B) in enumerate(theta.tolist()):
        s = P.ising2d_sample(L, K, B, 7, rng)
        np.testing.assert_array_equal(stats[g].numpy(), P.ising2d_stats(s))
        np.testing.assert_array_equal(pool[g].numpy(), P.ising2d_features(s).astype(np.float32))
    assert pool.dtype == torch.float32 and stats.dtype == torch.float64 and pool.shape == (3, 7, 5)
    with pytest.raises(ValueError, match=r"\(G, 2\)"):
        P.ising2d_sample_grid(L, theta[:, :1], 7)


def test_mcmc_pool_matches_the_chains(tmp_path):
    K, B = np.array([0.3, 0.45]), np.array([0.1, 0.0])
    pool, stats = P.ising2d_mcmc_pool(4, K, B, 6, thin=2, burn_in=5, seed=3, out_dir=tmp_path / "pool")
    run = P.ising2d_mcmc(4, K, B, 2, 6, thin=2, burn_in=5, seed=3, shard_size=32)
    for g in range(2):
        np.testing.assert_array_equal(stats[g].numpy(), run["stats"][:, g])
        np.testing.assert_array_equal(pool[g].numpy(), P.ising2d_features(run["configs"][:, g]).astype(np.float32))


# ------------------------------------------------------------------------------------------- the long run
def brute_force_reference(x, n_h, flip=(1.0, -1.0)):
    """The mirrored fluctuation estimate written out point by point and chain by chain (plain loops)."""
    updates, chains, G, _ = x.shape
    g, se = np.zeros((G, 2, 2)), np.zeros((G, 2, 2))
    for p in range(G):
        i, j = divmod(p, n_h)
        q = i * n_h + (n_h - 1 - j)  # the point at -h
        mirrored = x[:, :, q] * np.array(flip)  # spins flipped: (E, M) -> (E, -M)
        mu = 0.5 * (x[:, :, p].mean((0, 1)) + mirrored.mean((0, 1)))
        covs = []
        for series in [x[:, r, p] for r in range(chains)] + [mirrored[:, r] for r in range(chains)]:
            d = series - mu
            covs.append(d.T @ d / updates)
        covs = np.array(covs)
        g[p] = covs.mean(0)
        own = covs[:chains]
        se[p] = own.std(0, ddof=1) / math.sqrt(chains) if q == p else covs.std(0, ddof=1) / math.sqrt(2 * chains)
        if q == p:
            se[p, 0, 1] = se[p, 1, 0] = 0.0
    return g, se


def test_fluctuation_reference_equals_the_brute_force_loop():
    x = np.random.default_rng(0).normal(size=(40, 3, 2 * 5, 2)) * [3.0, 1.5] + [10.0, 0.5]
    g, se = P.ising2d_fluctuation_reference(x, 5)
    g_bf, se_bf = brute_force_reference(x, 5)
    torch.testing.assert_close(g, torch.tensor(g_bf), **tol(torch.float64))
    torch.testing.assert_close(se, torch.tensor(se_bf), **tol(torch.float64))
    # the control: the same loop without the spin flip at the mirror is far outside the tolerance
    g_noflip, _ = brute_force_reference(x, 5, flip=(1.0, 1.0))
    assert not torch.allclose(g, torch.tensor(g_noflip), **tol(torch.float64))


def test_fluctuation_reference_of_exact_samples_is_the_exact_metric():
    """Independent exact samples (L = 4, transfer matrix) arranged as chains on a 2 x 3 grid symmetric in h: the
    estimate agrees with the exact metric within its own standard error, and g_KB = 0 at h = 0."""
    L, T, h = 4, torch.tensor([2.0, 3.0]), torch.tensor([-0.3, 0.0, 0.3])
    pts = torch.stack(torch.meshgrid(T.double(), h.double(), indexing="ij"), -1).reshape(-1, 2)
    theta = torch.stack([1 / pts[:, 0], pts[:, 1] / pts[:, 0]], 1)
    chains, updates = 6, 1500
    _, stats = P.ising2d_sample_grid(L, theta, chains * updates, seed=11)
    x = stats.numpy().reshape(len(theta), chains, updates, 2).transpose(2, 1, 0, 3)
    g, se = P.ising2d_fluctuation_reference(x, 3)
    g_exact = P.ising2d_fisher(L, theta)
    z = ((g - g_exact) / se)[se > 0]
    assert z.abs().max() < 5 and z.abs().median() < 1.5, z
    assert (se[1::3, 0, 1] == 0).all() and g[1::3, 0, 1].abs().max() < 1e-9 * g[1::3].abs().max()


def test_kaufman_zero_field_and_its_check():
    L, T = 12, torch.tensor([2.0, 2.4, 3.0], dtype=torch.float64)
    g_kk = P.ising2d_gKK_kaufman(L, T)
    g = torch.rand(9, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 1
    g[1::3, 0, 0] = g_kk + torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)  # estimates at h = 0
    se = torch.full_like(g, 0.5)
    g0, se0 = g.clone(), se.clone()
    g_new, se_new, z = P.ising2d_kaufman_zero_field(g, se, L, T)
    torch.testing.assert_close(z, torch.tensor([2.0, -1.0, 0.0], dtype=torch.float64), **tol(torch.float64))
    assert torch.equal(g_new[1::3, 0, 0], g_kk) and (se_new[1::3, 0, 0] == 0).all()
    keep = torch.ones(9, 2, 2, dtype=torch.bool)
    keep[1::3, 0, 0] = False
    assert torch.equal(g_new[keep], g[keep]) and torch.equal(se_new[keep], se0[keep])
    assert torch.equal(g, g0) and torch.equal(se, se0)  # the inputs are not modified
    with pytest.raises(ValueError, match="same shape"):
        P.ising2d_kaufman_zero_field(g[:8], se[:8], L, T)


def test_nearest_row_and_autocorr_rows():
    T_axis = torch.tensor([2.0, 2.2, 2.4, 2.6], dtype=torch.float64)
    assert P.nearest_row(T_axis, 2.269) == 1 and P.nearest_row(T_axis, 2.69) == 3
    assert P.nearest_row(T_axis, 2.71) is None and P.nearest_row(T_axis, 3.0) is None
    from scipy.signal import lfilter

    # AR(1) series at the h = 0 column (tau = (1 + phi) / (1 - phi) = 3 at phi = 0.5); the rows use
    # integrated_autocorr_time on -E and |M| there
    e = np.random.default_rng(1).normal(size=(4000, 4, 4 * 3, 2))
    x = lfilter([1.0], [1.0, -0.5], e, axis=0) + [0.0, 5.0]
    rows, notes = P.ising2d_autocorr_rows(x, 12, T_axis, 3)
    assert [r["near"] for r in rows] == ["T_c", "2.0"] and [r["T"] for r in rows] == [2.2, 2.0]  # 3.0: off the grid
    tau, se = P.integrated_autocorr_time(-x[:, :, 1 * 3 + 1, 0])
    assert rows[0]["tau_E"] == tau and abs(tau - 3.0) < 4 * se and notes == []
    short, notes = P.ising2d_autocorr_rows(np.cumsum(e[:30], 0), 12, T_axis, 3)  # random walks: tau too long
    assert math.isnan(short[0]["tau_E"]) and len(notes) == 4 and "too short" in notes[0]


def test_reference_bad_input_names_the_problem():
    x = np.zeros((10, 2, 6, 2))
    with pytest.raises(ValueError, match="odd number of field points"):
        P.ising2d_fluctuation_reference(x, 2)
    with pytest.raises(ValueError, match=r"\(updates, chains, G, 2\)"):
        P.ising2d_fluctuation_reference(x[..., :1], 3)
    with pytest.raises(ValueError, match="at least 2 chains"):
        P.ising2d_fluctuation_reference(x[:, :1], 3)


def test_long_run_reference_at_L4_against_the_transfer_matrix(tmp_path):
    """The whole reference on Swendsen-Wang chains at L = 4 (where the exact metric is known): the mirrored
    estimate within its standard error of the transfer matrix's, g_KK at h = 0 exactly Kaufman's, and a re-run
    from the cache bit-identical."""
    L, T, h = 4, torch.tensor([2.0, 2.5, 3.0]), torch.tensor([-0.2, 0.0, 0.2])
    pts = torch.stack(torch.meshgrid(T.double(), h.double(), indexing="ij"), -1).reshape(-1, 2)
    theta = torch.stack([1 / pts[:, 0], pts[:, 1] / pts[:, 0]], 1)
    K, B = theta[:, 0].numpy(), theta[:, 1].numpy()
    kw = dict(chains=6, updates=400, burn_in=20, seed=2)
    ref = P.ising2d_long_run_reference(L, K, B, T.double(), 3, out_dir=tmp_path / "ref", **kw)
    g_exact = P.ising2d_fisher(L, theta)
    ok = ref.se > 0
    z = (ref.g - g_exact)[ok] / ref.se[ok]
    assert z.abs().max() < 5 and z.abs().median() < 1.5, z
    torch.testing.assert_close(ref.g[1::3, 0, 0], g_exact[1::3, 0, 0], rtol=1e-8, atol=0)
    assert ref.quality["updates_per_point"] == 2 * 6 * 400 and len(ref.z) == 3
    assert ref.quality["kaufman_check_max_abs_z"] < 5
    assert [r["near"] for r in ref.quality["autocorr"]] == ["T_c", "2.0", "3.0"]
    again = P.ising2d_long_run_reference(L, K, B, T.double(), 3, out_dir=tmp_path / "ref", **kw)
    assert torch.equal(again.g, ref.g) and torch.equal(again.se, ref.se)
