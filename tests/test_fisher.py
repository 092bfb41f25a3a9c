"""geom.fisher against closed forms: the univariate Gaussian family (F, Fisher metric and posteriors known
analytically), quadratic F (Bregman divergence = Mahalanobis). Geodesics are tested in tests/test_metric.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tol
from geom import fisher as Fi


pytestmark = pytest.mark.usefixtures("one_thread")


def gauss_F(theta: torch.Tensor) -> torch.Tensor:
    """Log-partition of N(mu, s^2) in natural coordinates theta = (mu / s^2, -1 / (2 s^2)), (m, 2) -> (m,)."""
    t1, t2 = theta[..., 0], theta[..., 1]
    return -t1 ** 2 / (4 * t2) - 0.5 * torch.log(-2 * t2)


def gauss_natural(mu, s):
    return torch.stack([mu / s ** 2, -0.5 / s ** 2], -1)


def gauss_fisher(mu, s):
    """Closed-form Fisher metric in natural coordinates = Cov[(x, x^2)] under N(mu, s^2), (m,) -> (m, 2, 2)."""
    v = s ** 2
    return torch.stack([torch.stack([v, 2 * mu * v], -1), torch.stack([2 * mu * v, 2 * v ** 2 + 4 * mu ** 2 * v], -1)], -2)


def gauss_grid(n=16, sigma=1.0):
    mu, s = torch.linspace(-1, 1, n), torch.linspace(0.6, 1.6, n)
    grid = Fi.ParamGrid(mu, s, sigma=sigma)
    grid.natural = gauss_natural(grid.points[:, 0], grid.points[:, 1])
    return grid


def test_metric_of_gaussian_family_is_closed_form(dtype):
    mu = torch.tensor([-0.7, 0.0, 0.4, 1.3], dtype=dtype)
    s = torch.tensor([0.5, 1.0, 1.7, 0.9], dtype=dtype)
    g = Fi.metric(gauss_F, gauss_natural(mu, s))
    assert g.shape == (4, 2, 2) and g.dtype == dtype
    torch.testing.assert_close(g, gauss_fisher(mu, s), **tol(dtype))


def test_bregman_divergence_of_quadratic_is_mahalanobis(dtype):
    A = torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=dtype)
    F = lambda x: 0.5 * ((x @ A) * x).sum(-1) + x[..., 0] - 3.0  # noqa: E731  (affine terms drop out)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 2, generator=g, dtype=dtype), torch.randn(3, 2, generator=g, dtype=dtype)
    D = Fi.bregman_divergence(F, a, b)
    d = a[None] - b[:, None]
    torch.testing.assert_close(D, 0.5 * torch.einsum("bai,ij,baj->ba", d, A, d), **tol(dtype))


def test_bregman_posterior_is_exact_gaussian_posterior():
    """q_F(theta | theta') ~ exp(-N D_F) equals the posterior from N samples whose mean sufficient statistic is
    grad F(theta') (Lobashev et al. Sec. 3): two samples mu' +- s' have mean (mu', mu'^2 + s'^2)."""
    grid = gauss_grid(12, sigma=0.0)
    mu0, s0 = 0.2, 1.1
    x = torch.tensor([mu0 - s0, mu0 + s0], dtype=torch.float64)
    th = grid.natural
    loglik = (th[:, :1] * x + th[:, 1:] * x ** 2).sum(1) - 2 * gauss_F(th)
    exact = torch.softmax(loglik, 0)
    q = Fi.bregman_posterior(gauss_F, th, gauss_natural(torch.tensor([mu0], dtype=torch.float64), torch.tensor([s0], dtype=torch.float64)), N=2)
    torch.testing.assert_close(q[0], exact, rtol=1e-10, atol=1e-14)


def test_grid_smoothing_and_targets():
    grid = Fi.ParamGrid(torch.linspace(0, 1, 7), torch.linspace(0, 2, 5), sigma=1.3)
    T = grid.targets(torch.arange(grid.size))
    torch.testing.assert_close(T.sum(1), torch.ones(grid.size, dtype=torch.float64))
    assert torch.equal(T.argmax(1), torch.arange(grid.size))
    # separable smoothing equals the dense 2D Gaussian kernel, renormalised per source point
    i1, i2 = torch.meshgrid(torch.arange(7.), torch.arange(5.), indexing="ij")
    ij = torch.stack([i1.reshape(-1), i2.reshape(-1)], 1).double()
    k1 = torch.exp(-0.5 * ((ij[:, None, 0] - ij[None, :, 0]) / 1.3) ** 2)
    k2 = torch.exp(-0.5 * ((ij[:, None, 1] - ij[None, :, 1]) / 1.3) ** 2)
    k1 = k1 / (torch.exp(-0.5 * ((torch.arange(7.)[:, None] - torch.arange(7.)) / 1.3) ** 2).sum(1))[i1.reshape(-1).long(), None].double()
    k2 = k2 / (torch.exp(-0.5 * ((torch.arange(5.)[:, None] - torch.arange(5.)) / 1.3) ** 2).sum(1))[i2.reshape(-1).long(), None].double()
    torch.testing.assert_close(T, k1 * k2)
    assert torch.equal(Fi.ParamGrid(grid.t1, grid.t2, sigma=0).targets(torch.tensor([3])).argmax(1), torch.tensor([3]))


def test_grid_average_is_the_weighted_mean_over_neighbours():
    """Brute force: at each point, the mean of the field over all grid points weighted by the Gaussian of the
    cell distance (sigma cells), the weights of each axis renormalised over that axis; constants are kept;
    sigma = 0 is the identity."""
    grid = Fi.ParamGrid(torch.linspace(0, 1, 6), torch.linspace(0, 2, 5), sigma=1.3)
    f = torch.randn(grid.size, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    i1, i2 = torch.meshgrid(torch.arange(6.), torch.arange(5.), indexing="ij")
    i1, i2 = i1.reshape(-1).double(), i2.reshape(-1).double()
    w1 = torch.exp(-0.5 * ((i1[:, None] - i1[None]) / 1.3) ** 2)
    w2 = torch.exp(-0.5 * ((i2[:, None] - i2[None]) / 1.3) ** 2)
    w1 = w1 / w1.sum(1, keepdim=True) * 5  # each row of w1 counts every axis-1 index 5 times (once per column)
    w2 = w2 / w2.sum(1, keepdim=True) * 6
    brute = torch.einsum("pq,qij->pij", w1 * w2, f)
    torch.testing.assert_close(grid.average(f), brute)
    torch.testing.assert_close(grid.average(torch.full((grid.size, 3), 2.5, dtype=torch.float64)),
                               torch.full((grid.size, 3), 2.5, dtype=torch.float64))
    assert torch.equal(Fi.ParamGrid(grid.t1, grid.t2, sigma=0).average(f), f)
    with pytest.raises(ValueError, match="NaN"):
        grid.average(torch.full((grid.size,), float("nan")))


def test_fit_log_partition_recovers_gaussian_metric():
    """From exact (smoothed) Bregman posteriors of the Gaussian family, the fitted F has the right Hessian."""
    N = 40  # posteriors ~1.5-2 cells wide: well inside the grid
    grid = gauss_grid(20, sigma=0.7)
    theta = grid.natural
    idx = torch.arange(grid.size).repeat(2)
    P = grid.smooth(Fi.bregman_posterior(gauss_F, theta, theta[idx], N)).detach()
    fit = Fi.fit_log_partition(P, grid, N, steps=700, batch_size=256, seed=0)
    assert fit.history[-1][0] < 0.2 * fit.history[0][0]
    g = Fi.metric(fit.F, theta).detach()
    ref = gauss_fisher(grid.points[:, 0], grid.points[:, 1])
    err = Fi.relative_error(g, ref).reshape(20, 20)[2:-2, 2:-2]
    assert err.median() < 0.05, err.median()
    # the fitted log Z matches the exact one up to an affine term
    res, _ = Fi.remove_affine(fit.F(theta).detach(), gauss_F(theta), theta)
    inner = grid.points[:, 0].abs() < 0.8
    assert (res - gauss_F(theta))[inner].abs().max() < 0.05 * gauss_F(theta)[inner].std()


def test_posterior_covariance_baseline_on_exact_posteriors():
    N = 40
    grid = gauss_grid(20, sigma=0.7)
    theta = grid.natural
    idx = torch.arange(grid.size)
    P = grid.smooth(Fi.bregman_posterior(gauss_F, theta, theta, N)).detach()
    g = Fi.posterior_fisher(P, grid, N, idx)
    ref = gauss_fisher(grid.points[:, 0], grid.points[:, 1])
    err = Fi.relative_error(g, ref).reshape(20, 20)[4:-4, 4:-4]
    assert err.median() < 0.1  # Laplace approximation of a posterior ~2 cells wide


def test_fluctuation_fisher_and_remove_affine():
    g = torch.Generator().manual_seed(0)
    C = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    x = torch.randn(3, 20_000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(C).T
    est = Fi.fluctuation_fisher(x)
    assert (est - C).abs().max() < 5 * 2.0 * math.sqrt(2 / 20_000) * 2
    coords = torch.randn(50, 2, generator=g, dtype=torch.float64)
    ref = torch.randn(50, generator=g, dtype=torch.float64)
    f = ref + 3.0 - 2.0 * coords[:, 0] + 0.5 * coords[:, 1]
    res, coef = Fi.remove_affine(f, ref, coords)
    torch.testing.assert_close(res, ref)
    torch.testing.assert_close(coef, torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64))


def test_train_posterior_learns_gaussian_parameters():
    """A small posterior network on bundles from N(mu, s^2): its posterior centroid lands near the truth."""
    grid = Fi.ParamGrid(torch.linspace(-1, 1, 8), torch.linspace(0.6, 1.6, 8), sigma=0.7)
    rng = np.random.default_rng(0)
    mu, s = grid.points[:, 0].numpy(), grid.points[:, 1].numpy()
    x = rng.normal(mu[:, None], s[:, None], size=(grid.size, 256))
    pool = torch.tensor(np.stack([x, x ** 2], -1), dtype=torch.float32)
    net, hist = Fi.train_posterior(pool, grid, N=32, steps=400, batch_size=128, width=64, seed=0)
    assert np.mean(hist[-50:]) < np.mean(hist[:50]) - 0.5
    X, idx = Fi.make_bundles(pool, 32, 512, torch.Generator().manual_seed(1))
    P = Fi.predict_posterior(net, X)
    assert P.shape == (512, grid.size) and torch.allclose(P.sum(1), torch.ones(512, dtype=torch.float64))
    cen = P @ grid.standardized * 7  # in grid cells
    true = grid.standardized[idx] * 7
    assert (cen - true).norm(dim=1).median() < 1.5


def test_bad_input_raises():
    grid = gauss_grid(4)
    with pytest.raises(ValueError):
        Fi.fit_log_partition(torch.ones(3, 5), grid, 4)
    with pytest.raises(ValueError):
        Fi.fit_log_partition(torch.full((3, 16), float("nan")), grid, 4)
    with pytest.raises(ValueError):
        Fi.ParamGrid(torch.zeros(3), torch.zeros(2), natural=torch.zeros(5, 2))
    with pytest.raises(ValueError):
        Fi.geodesic(lambda x: x, [0, 0], [1, 1], n_points=2)


def test_interior_mask_and_error_summary_on_known_errors():
    mask = Fi.interior_mask(6, 7, margin=2)
    grid = mask.reshape(6, 7)
    assert grid.sum() == 2 * 3 and grid[2:4, 2:5].all()
    with pytest.raises(ValueError, match="no interior"):
        Fi.interior_mask(4, 7, margin=2)
    # g_hat = (1 + c) g has relative Frobenius error exactly |c| at every point
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(42, 2, 2, generator=gen, dtype=torch.float64)
    g = a @ a.transpose(1, 2) + torch.eye(2, dtype=torch.float64)
    c = torch.linspace(0.0, 0.41, 42, dtype=torch.float64)
    g_hat = (1 + c)[:, None, None] * g
    g_hat[0] = float("nan")  # one undefined point
    s = Fi.error_summary(g_hat, g, mask)
    assert s["median_rel_error"] == pytest.approx(c[1:].median().item(), rel=1e-12)
    assert s["median_rel_error_interior"] == pytest.approx(c[mask].median().item(), rel=1e-12)
    assert s["mean_rel_error_interior"] == pytest.approx(c[mask].mean().item(), rel=1e-12)
    assert s["frac_nan"] == pytest.approx(1 / 42)
    with pytest.raises(ValueError, match="shapes do not match"):
        Fi.error_summary(g_hat[:-1], g, mask)


# ---------------------------------------------------------------------------------------------- convex log Z
def randomised(net: torch.nn.Module, seed: int, scale: float = 3.0) -> torch.nn.Module:
    """Every parameter redrawn from N(0, scale^2): convexity must hold for any parameters, not just at init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def nets(kind, seed):
    c, w = torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([2.0, 0.5], dtype=torch.float64)
    A0 = torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    return randomised(kind(c, w, A0, width=16, depth=3, seed=seed), seed)


@pytest.mark.parametrize("seed", range(4))
def test_convex_log_partition_is_convex_for_any_parameters(seed):
    g = torch.Generator().manual_seed(100 + seed)
    theta = torch.randn(300, 2, generator=g, dtype=torch.float64) * 4
    F = nets(Fi.ConvexLogPartitionNet, seed)
    assert Fi.not_positive_definite_fraction(Fi.metric(F, theta).detach()) == 0
    # midpoint convexity on random segments: no derivatives involved
    a, b = theta[:150], theta[150:]
    with torch.no_grad():
        gap = 0.5 * (F(a) + F(b)) - F(0.5 * (a + b))
    assert (gap >= -1e-12 * F(a).abs().max()).all()
    # the same checks find non-convexity in the unconstrained network: they can fail
    U = nets(Fi.LogPartitionNet, seed)
    with torch.no_grad():
        gap_u = 0.5 * (U(a) + U(b)) - U(0.5 * (a + b))
    assert Fi.not_positive_definite_fraction(Fi.metric(U, theta).detach()) > 0.05 and (gap_u < 0).any()


def test_convex_log_partition_metric_matches_finite_differences():
    F = nets(Fi.ConvexLogPartitionNet, 0)
    theta = torch.tensor([[0.3, -0.8], [1.5, 0.2], [-2.0, -1.1]], dtype=torch.float64)
    h, e = 1e-4, torch.eye(2, dtype=torch.float64)
    with torch.no_grad():
        fd = torch.stack([torch.stack([(F(theta + h * (e[i] + e[j])) - F(theta + h * (e[i] - e[j]))
                                        - F(theta - h * (e[i] - e[j])) + F(theta - h * (e[i] + e[j]))) / (4 * h * h)
                                       for j in range(2)], -1) for i in range(2)], -2)
    torch.testing.assert_close(Fi.metric(F, theta).detach(), fd, rtol=1e-5, atol=1e-6)


def test_not_positive_definite_fraction_on_known_matrices():
    g = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, -1.0]], [[1.0, 0.0], [0.0, 0.0]],
                      [[1.0, 2.0], [2.0, 1.0]], [[2.0, 1.0], [1.0, 2.0]], [[float("nan"), 0], [0, 1]]],
                     dtype=torch.float64)
    assert Fi.not_positive_definite_fraction(g) == pytest.approx(4 / 6)  # PD: the identity and [[2,1],[1,2]]
    with pytest.raises(ValueError, match="shape"):
        Fi.not_positive_definite_fraction(torch.eye(2))


@pytest.mark.slow
def test_fit_convex_log_partition_recovers_gaussian_metric():
    """As test_fit_log_partition_recovers_gaussian_metric, with the convex network: same accuracy (median 0.022
    when written), and a positive-definite metric at every grid point and between grid points."""
    N = 40
    grid = gauss_grid(20, sigma=0.7)
    theta = grid.natural
    idx = torch.arange(grid.size).repeat(2)
    P = grid.smooth(Fi.bregman_posterior(gauss_F, theta, theta[idx], N)).detach()
    fit = Fi.fit_log_partition(P, grid, N, steps=700, batch_size=256, seed=0, convex=True)
    assert isinstance(fit.F, Fi.ConvexLogPartitionNet)
    assert fit.history[-1][0] < 0.2 * fit.history[0][0]
    g = Fi.metric(fit.F, theta).detach()
    ref = gauss_fisher(grid.points[:, 0], grid.points[:, 1])
    err = Fi.relative_error(g, ref).reshape(20, 20)[2:-2, 2:-2]
    assert err.median() < 0.05, err.median()
    fine = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fine = theta.min(0).values + fine * (theta.max(0).values - theta.min(0).values)
    assert Fi.not_positive_definite_fraction(Fi.metric(fit.F, fine).detach()) == 0


def _tiny_reconstruct(device):
    grid = gauss_grid(6, sigma=0.7)
    pool = torch.randn(grid.size, 8, 3, generator=torch.Generator().manual_seed(1))
    return Fi.reconstruct(pool, grid, 2, posterior_steps=5, fit_steps=5, bundles_per_point=2, batch_size=16,
                          width=8, fit_batch_size=16, seed=0, convex=True, device=device)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"),
                                    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                  reason="no CUDA device"))])
def test_reconstruct_device_argument(device):
    """``device`` only says where the networks train: on the CPU the results are bit-identical to the default,
    on a GPU equal within float32 round-off; the results come back on the CPU either way."""
    ref, geo = _tiny_reconstruct("cpu"), _tiny_reconstruct(device)
    assert geo.g.device.type == "cpu" and geo.fit.anchors.device.type == "cpu"
    assert next(geo.net.parameters()).device.type == "cpu"
    if torch.device(device).type == "cpu":
        assert torch.equal(geo.g, ref.g) and torch.equal(geo.P, ref.P)
    else:
        torch.testing.assert_close(geo.P, ref.P, rtol=1e-3, atol=1e-5)


def test_heldout_gives_the_bundles_behind_P():
    """``heldout(pool)`` are the held-out bundles whose learned posteriors are ``P``: each sample comes from the
    second half of its own grid point's pool; any per-sample array (here a sample label) is indexed the same way."""
    geo = _tiny_reconstruct("cpu")
    pool = torch.randn(geo.grid.size, 8, 3, generator=torch.Generator().manual_seed(1))
    X = geo.heldout(pool)
    assert X.shape == (len(geo.idx), 2, 3)
    torch.testing.assert_close(Fi.predict_posterior(geo.net, X), geo.P, rtol=0, atol=0)
    label = torch.arange(geo.grid.size * 8).reshape(geo.grid.size, 8)  # label = 8 * grid point + position
    lab = geo.heldout(label)
    assert torch.equal(lab // 8, geo.idx[:, None].expand_as(lab)) and bool((lab % 8 >= 4).all())
    # the draws are make_bundles' on the held-out half, with the same generator
    X2, _ = Fi.make_bundles(pool[:, 4:], 2, 0, torch.Generator().manual_seed(1), idx=geo.idx)
    assert torch.equal(X, X2)
    with pytest.raises(ValueError, match="one row per grid point"):
        geo.heldout(pool[:-1])
    with pytest.raises(ValueError, match="samples per grid point"):
        geo.heldout(pool[:, :4])
