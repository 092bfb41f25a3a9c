"""The Hessian study's estimators and error tables (geom.fisher: stages, ising, evaluate; notebooks 09, 10, 11, 15)
against exact references: the 2D Ising model at L = 3, 4 by enumeration and the transfer matrix, Kaufman's
heat capacity, a brute-force Bayes posterior, autograd Jacobians, numpy / scipy statistics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tol
from geom import fisher as Fi
from geom import physics as P

pytestmark = pytest.mark.usefixtures("one_thread")


def ising_grid(NT=5, NH=5, t_range=(1.6, 3.6), h_range=(-0.4, 0.4), sigma=1.0):
    return Fi.temperature_field_grid(torch.linspace(*t_range, NT), torch.linspace(*h_range, NH), sigma=sigma)


# ------------------------------------------------------------------------------------------------ the grid
def test_temperature_field_grid_has_natural_coordinates():
    grid = ising_grid(4, 3)
    T, h = grid.points[:, 0], grid.points[:, 1]
    torch.testing.assert_close(grid.natural, torch.stack([1 / T, h / T], 1), **tol(torch.float64))
    assert grid.shape == (4, 3) and grid.sigma == 1.0
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        Fi.temperature_field_grid(torch.linspace(0.0, 1.0, 3), torch.linspace(-1, 1, 3))


def test_window_mask_selects_the_points_inside():
    grid = ising_grid(5, 5)  # T = 1.6, 2.1, 2.6, 3.1, 3.6; h = -0.4, -0.2, 0, 0.2, 0.4
    m = Fi.window_mask(grid.t1, grid.t2, ((2.0, 2.6), (-0.2, 0.2)))
    pts = grid.points[m]
    assert m.sum() == 6 and ((pts[:, 0] >= 2.0) & (pts[:, 0] <= 2.6 + 1e-6) & (pts[:, 1].abs() <= 0.2 + 1e-6)).all()


def test_cramer_rao_sd_cells_against_the_autograd_jacobian():
    """g in (T, h) = J^T g_theta J with J = d theta / d(T, h) by autograd; sd = 1 / sqrt(N g_ii) / cell."""
    grid = ising_grid(4, 5)
    g = P.ising2d_fisher(3, grid.natural)
    J = torch.func.vmap(torch.func.jacrev(lambda p: torch.stack([1 / p[0], p[1] / p[0]])))(grid.points)
    g_th = J.transpose(1, 2) @ g @ J
    N, cell = 2, (0.5, 0.1)
    out = Fi.cramer_rao_sd_cells(g, grid.points, N, cell)
    for i, name in enumerate("Th"):
        sd = (1 / np.sqrt(N * g_th[:, i, i].numpy()) / cell[i])
        for key, q in (("median", 0.5), ("q10", 0.1), ("q90", 0.9)):
            assert out[name][key] == pytest.approx(np.quantile(sd, q), rel=1e-10)


# --------------------------------------------------------------------------------------------- error tables
@pytest.fixture(scope="module")
def exact_L4():
    """The exact metric of the L = 4 model on a 7 x 5 (T, h) grid (transfer matrix)."""
    grid = ising_grid(7, 5, t_range=(1.5, 3.3))  # T = 1.5, 1.8, ..., 3.3: rows nearest 2.0 and 3.0 exist
    return grid, P.ising2d_fisher(4, grid.natural)


def test_error_rows_of_the_exact_and_of_a_scaled_metric(exact_L4):
    grid, g = exact_L4
    bad = g.clone()
    bad[:7, 1, 1] = -1.0  # 7 of 35 points not positive definite
    rows, it_chi = Fi.ising2d_error_rows(4, {"exact": g, "scaled": 1.1 * g, "bad": bad}, g, grid.t1, grid.t2, "coarse")
    T = grid.t1
    assert T[it_chi["T3"]].item() == pytest.approx(3.0, abs=1e-6) and T[it_chi["T2"]].item() == pytest.approx(2.1)
    r = rows.set_index("estimator")
    # the exact metric: no error, and its C(T) is Kaufman's (the two exact routes agree)
    for col in ("metric_median_rel_error", "chi_median_rel_error_T3", "chi_median_rel_error_T2"):
        assert r.loc["exact", col] == 0.0
    assert r.loc["exact", "C_median_rel_error"] < 1e-8
    # 10% too large everywhere: every relative error is 0.1 (C and chi are linear in g)
    for col in ("metric_median_rel_error", "metric_median_rel_error_interior", "C_median_rel_error",
                "chi_median_rel_error_T3", "chi_median_rel_error_T2"):
        assert r.loc["scaled", col] == pytest.approx(0.1, rel=1e-6), col
    assert r.loc["bad", "not_pd_fraction"] == pytest.approx(7 / 35) and r.loc["exact", "not_pd_fraction"] == 0
    # the peak of C on the grid: that of the exact metric's C along h = 0, computed point by point
    C_enum = [P.ising2d_heat_capacity(P.ising2d_fisher(4, torch.tensor([[1 / t, 0.0]], dtype=torch.float64)), t, 4)
              for t in T.tolist()]
    assert r.loc["exact", "C_peak_T_grid"] == T[int(np.argmax(C_enum))].item()
    assert list(rows.grid.unique()) == ["coarse"] and (rows.model == "ising2d_L4").all()


def test_error_rows_inside_a_window(exact_L4):
    grid, g = exact_L4
    window = ((1.7, 2.5), (-0.2, 0.2))
    rows, it_chi = Fi.ising2d_error_rows(4, {"scaled": 1.1 * g}, g, grid.t1, grid.t2, "in_window", window)
    assert it_chi["T3"] is None and grid.t1[it_chi["T2"]].item() == pytest.approx(2.1)  # 3.0 is off the window
    assert math.isnan(rows.chi_median_rel_error_T3[0]) and rows.chi_median_rel_error_T2[0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="odd n_h"):
        Fi.ising2d_error_rows(4, {"x": g[:28]}, g[:28], grid.t1, grid.t2[:4], "x")


def test_metric_error_row(exact_L4):
    grid, g = exact_L4
    r = Fi.metric_error_row(1.1 * g, g, *grid.shape)
    for col in ("metric_median_rel_error", "metric_median_rel_error_interior", "C_median_rel_error"):
        assert r[col] == pytest.approx(0.1, rel=1e-6)
    assert r["not_pd_fraction"] == 0 and r["frac_nan"] == 0
    g_off = g.clone()
    g_off[:, 0, 0] *= torch.linspace(1, 2, len(g), dtype=torch.float64)
    ref = ((g_off - g).reshape(7, 5, 2, 2)[:, 2, 0, 0] / g.reshape(7, 5, 2, 2)[:, 2, 0, 0]).median()
    assert Fi.metric_error_row(g_off, g, 7, 5)["C_median_rel_error"] == pytest.approx(ref.item(), rel=1e-12)


def test_thermo_curves_of_the_exact_log_partition(exact_L4):
    """'Learned' F = the exact transfer-matrix log Z: its C(T) is Kaufman's, its chi(h) the transfer matrix's."""
    grid, _ = exact_L4
    F = lambda th: P.ising2d_logz(4, th[:, 0], th[:, 1])  # noqa: E731
    cv = Fi.ising2d_thermo_curves({"exact_F": F}, 4, (1.5, 3.3), (-0.4, 0.4), grid.t1, (1, None, 5), exact=True,
                                  n_T=31, n_h=9)
    torch.testing.assert_close(cv.C["exact_F"], cv.C_exact, rtol=1e-8, atol=0)
    assert list(cv.chi) == [1, 5] and cv.not_pd == {"exact_F": 0.0}
    torch.testing.assert_close(cv.chi[5]["exact_F"], cv.chi[5]["exact"], rtol=1e-10, atol=0)
    T, C = cv.T_fine, cv.C_exact
    assert cv.peaks()["exact"] == (T[C.argmax()].item(), C.max().item()) and list(cv.peaks()) == ["exact", "exact_F"]
    h = cv.h_fine[3].item()  # a point of the line against enumeration: chi = beta Var(M) / L^2
    st = P.ising2d_stats(P.ising2d_enumerate(4))
    t = grid.t1[5].item()
    w = np.exp((st[:, 0] + h * st[:, 1]) / t - ((st[:, 0] + h * st[:, 1]) / t).max())
    p = w / w.sum()
    assert cv.chi[5]["exact_F"][3].item() == pytest.approx((p @ st[:, 1] ** 2 - (p @ st[:, 1]) ** 2) / t / 16,
                                                           rel=1e-9)


def test_evaluate_and_its_summary(exact_L4):
    grid, g = exact_L4
    F = lambda th: P.ising2d_logz(4, th[:, 0], th[:, 1])  # noqa: E731
    ev = Fi.ising2d_evaluate(4, grid, {"a": g, "b": 1.1 * g}, {"a": F}, g, (1.5, 3.3), (-0.4, 0.4), "coarse",
                             exact=True)
    assert ev.kaufman_vs_transfer < 1e-8
    s = ev.summary({"a": "learned"}, {"b": "fluct"})
    assert list(s) == ["T_chi_low", "T_chi_high", "C_peak_T_exact", "C_peak_value_exact", "C_peak_T_learned",
                       "C_peak_value_learned", "C_peak_T_fluct_grid", "not_pd_fraction_fine_T_line",
                       "kaufman_vs_transfer_max_abs"]
    assert s["T_chi_high"] == pytest.approx(3.0, abs=1e-6) and s["C_peak_T_learned"] == s["C_peak_T_exact"]
    assert s["C_peak_value_learned"] == pytest.approx(s["C_peak_value_exact"], rel=1e-8)


# ------------------------------------------------------------------------------------------------- stages
def test_exact_posterior_is_the_brute_force_bayes_posterior():
    """The posterior from summed sufficient statistics and log Z equals Bayes' rule applied to the product of the
    bundles' configuration probabilities, each computed by enumerating the 2^9 states of the L = 3 model."""
    L, grid = 3, ising_grid(3, 3)
    states = P.ising2d_enumerate(L)
    st = P.ising2d_stats(states)
    logp = np.stack([K * st[:, 0] + B * st[:, 1] for K, B in grid.natural.tolist()])  # (G, 2^9)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    rng = np.random.default_rng(0)
    bundles = rng.integers(0, len(states), (4, 5))  # 4 bundles of N = 5 configurations (any: Bayes holds for all)
    brute = np.stack([logp[:, b].sum(1) for b in bundles])
    brute = np.exp(brute - brute.max(1, keepdims=True))
    brute /= brute.sum(1, keepdims=True)
    S = torch.tensor(st[bundles].sum(1))
    logz = P.ising2d_logz(L, grid.natural[:, 0], grid.natural[:, 1])
    post = torch.softmax(Fi.exponential_family_loglik(S, grid.natural, 5, logz), -1)
    torch.testing.assert_close(post, torch.tensor(brute), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="logz"):
        Fi.exponential_family_loglik(S, grid.natural, 5, logz[:-1])


def test_exact_posterior_stage_is_the_fit_of_the_smoothed_posterior():
    grid = ising_grid(5, 5)
    ll = torch.randn(12, grid.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    idx = torch.arange(12) % grid.size
    st = Fi.exact_posterior_stage(ll, grid, 4, idx, steps=20, seed=3, convex=True)
    torch.testing.assert_close(st.posterior.sum(1), torch.ones(12, dtype=torch.float64), **tol(torch.float64))
    assert torch.equal(st.smoothed, grid.smooth(torch.softmax(ll, -1)))
    fit = Fi.fit_log_partition(st.smoothed, grid, 4, steps=20, seed=3, convex=True)  # the same call: same bits
    assert torch.equal(st.g, Fi.metric(fit.F, grid.natural).detach()) and st.fit.history == fit.history
    torch.testing.assert_close(st.g_post, Fi.posterior_fisher(st.smoothed, grid, 4, idx), rtol=0, atol=0,
                               equal_nan=True)
    with pytest.raises(ValueError, match="idx"):
        Fi.exact_posterior_stage(ll, grid, 4, idx[:5], steps=1)


def test_posterior_sd_cells_against_numpy():
    grid = ising_grid(4, 5)
    P_ = torch.softmax(torch.randn(6, grid.size, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), -1)
    cells = Fi.cell_coordinates(grid)
    # the indices to float32 rounding (grid.standardized is computed in float32)
    torch.testing.assert_close(cells, torch.cartesian_prod(torch.arange(4.0), torch.arange(5.0)).double(),
                               **tol(torch.float32))
    sd = Fi.posterior_sd_cells(P_, cells)
    p, c = P_.numpy(), cells.numpy()
    for i in range(2):
        mean = p @ c[:, i]
        ref = np.sqrt((p * (c[None, :, i] - mean[:, None]) ** 2).sum(1))
        np.testing.assert_allclose(sd[:, i].numpy(), ref, rtol=1e-10)
    # in other coordinates with their cell size: the same widths (natural = points here: T and h in their units)
    step = torch.tensor([(grid.t1[1] - grid.t1[0]).item(), (grid.t2[1] - grid.t2[0]).item()], dtype=torch.float64)
    torch.testing.assert_close(Fi.posterior_sd_cells(P_, grid.points, step), sd, rtol=1e-6, atol=1e-9)


def test_gaussian_fluctuation_error_against_numpy_draws():
    """The predicted median error against the same quantity from numpy's multivariate normal draws (a different
    generator: agreement within the Monte Carlo error of both), and the sqrt(2 / (n - 1)) error of a variance."""
    A, B = np.array([[2.0, 0.6], [0.6, 1.0]]), np.array([[5.0, -1.0], [-1.0, 0.5]])
    g = torch.tensor(np.stack([A] * 1000 + [B] * 1000))
    n, draws = 64, 8
    ours = Fi.gaussian_fluctuation_error(g, n, draws, seed=0)
    rng = np.random.default_rng(0)
    meds = []
    for _ in range(draws):
        err = []
        for cov in (A, B):
            x = rng.multivariate_normal(np.zeros(2), cov, size=(1000, n))
            S = np.stack([np.cov(xi.T) for xi in x])
            err.append(np.linalg.norm(S - cov, axis=(1, 2)) / np.linalg.norm(cov))
        meds.append(np.median(np.concatenate(err)))
    # measured spread of one draw's median over 2,000 points: ~2% relative, so ~1% for the difference of the two
    # means over 8 draws; 4 of those
    assert ours == pytest.approx(np.mean(meds), rel=0.04)
    # one variance only (the other 1e-12 of it): the relative error is |s^2 / sigma^2 - 1|, of standard deviation
    # sqrt(2 / (n - 1)), so its median is the normal quartile 0.674 times that (n large)
    var_only = torch.diag_embed(torch.tensor([1.0, 1e-12], dtype=torch.float64).repeat(2000, 1))
    assert Fi.gaussian_fluctuation_error(var_only, 256, 1, seed=1) == pytest.approx(
        0.6745 * math.sqrt(2 / 255), rel=0.1)
    with pytest.raises(ValueError, match="not positive definite"):
        Fi.gaussian_fluctuation_error(-g, n, 1)
