"""geom.metric against closed forms: path lengths and energies under constant metrics, the Hessian metric of a
quadratic F, the positive-definite projection against eigvalsh, geodesics of the Euclidean plane (straight
lines), of the Poincare half-plane (circular arcs of known length) and bending around a bump of a conformally
flat metric; the energy's gradient against finite differences."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import tol
from geom import metric as M

pytestmark = pytest.mark.usefixtures("one_thread")


def test_path_energy_constant_metric():
    G = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    metric = lambda x: G.expand(len(x), 2, 2)  # noqa: E731
    path = torch.tensor([[0.0, 0.0], [1.0, 0.5], [1.5, 2.0], [-1.0, 1.0]], dtype=torch.float64)
    ref = 3 * sum(float(d @ G @ d) for d in path[1:] - path[:-1])
    assert float(M.path_energy(metric, path)) == pytest.approx(ref, rel=1e-12)
    # a straight line at constant speed: E = length^2 = D^T G D
    s = torch.linspace(0, 1, 17, dtype=torch.float64)[:, None]
    D = torch.tensor([1.5, -0.5], dtype=torch.float64)
    assert float(M.path_energy(metric, s * D)) == pytest.approx(float(D @ G @ D), rel=1e-12)


def test_path_energy_gradient_matches_finite_differences():
    def metric(x):
        w = 1 + torch.exp(-(x ** 2).sum(-1))
        return w[:, None, None] * torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=x.dtype)
    path = torch.tensor([[0.0, 0.0], [0.4, 0.3], [0.9, 0.1], [1.2, 0.8]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: M.path_energy(metric, p), (path,))


def test_metric_of_quadratic_is_its_matrix():
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    F = lambda t: 0.5 * ((t @ A) * t).sum(-1) + t[:, 0]  # noqa: E731
    g = M.metric(F, torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    torch.testing.assert_close(g, A.expand(5, 2, 2), **tol(torch.float64))


def test_bad_paths_raise():
    eye = lambda x: torch.eye(2, dtype=x.dtype).expand(len(x), 2, 2)  # noqa: E731
    for bad in (torch.zeros(1, 2), torch.zeros(4, 3), torch.zeros(4)):
        with pytest.raises(ValueError, match="shape"):
            M.path_length(eye, bad)
        with pytest.raises(ValueError, match="shape"):
            M.path_energy(eye, bad)
    with pytest.raises(ValueError, match="coincide"):
        M.linearity(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="n_points"):
        M.geodesic(eye, [0, 0], [1, 1], n_points=2)


def test_path_length_constant_metric():
    G = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    metric = lambda x: G.expand(len(x), 2, 2)  # noqa: E731
    path = torch.tensor([[0.0, 0.0], [1.0, 0.5], [1.5, 2.0], [-1.0, 1.0]], dtype=torch.float64)
    dt = path[1:] - path[:-1]
    ref = sum(math.sqrt(float(d @ G @ d)) for d in dt)
    assert M.path_length(metric, path) == pytest.approx(ref, rel=1e-12)
    # a straight line, finely subdivided, has the length sqrt(D^T G D) of its chord
    s = torch.linspace(0, 1, 17, dtype=torch.float64)[:, None]
    D = torch.tensor([1.5, -0.5], dtype=torch.float64)
    assert M.path_length(metric, s * D) == pytest.approx(math.sqrt(float(D @ G @ D)), rel=1e-12)


def test_linearity_straight_and_bent():
    s = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None]
    line = s * torch.tensor([2.0, 1.0], dtype=torch.float64)
    lin = M.linearity(line)
    assert lin["chord_ratio"] == pytest.approx(1.0, abs=1e-12) and lin["max_deviation"] == pytest.approx(0, abs=1e-12)
    corner = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    lin = M.linearity(corner)
    assert lin["chord_ratio"] == pytest.approx(2 / (2 * math.sqrt(2)), rel=1e-12)
    assert lin["max_deviation"] == pytest.approx(0.5, rel=1e-12)


def test_geodesic_bends_away_from_high_metric_region():
    """g = (1 + 20 exp(-|x|^2 / 0.1)) I, a bump at the origin; between (-1, 0.1) and (1, 0.1) the geodesic
    moves to larger b (away from the bump) and is shorter under g than the straight line."""
    def metric(x):
        w = 1 + 20 * torch.exp(-(x ** 2).sum(-1) / 0.1)
        return w[:, None, None] * torch.eye(2, dtype=x.dtype)
    a, b = torch.tensor([-1.0, 0.1]), torch.tensor([1.0, 0.1])
    path, _, length = M.geodesic(metric, a, b, n_points=33)
    s = torch.linspace(0, 1, 33, dtype=torch.float64)[:, None]
    straight = (1 - s) * a.double() + s * b.double()
    L_straight = M.path_length(metric, straight)
    assert M.path_length(metric, path) == pytest.approx(length, rel=1e-10)
    assert length < 0.8 * L_straight
    assert path[16, 1] > 0.3  # the middle of the path leaves the bump
    lin = M.linearity(path)
    assert lin["chord_ratio"] < 0.95 and lin["max_deviation"] > 0.1
    # and the geodesic of a constant metric is the straight line (near-linear inside a "phase")
    flat = lambda x: torch.eye(2, dtype=x.dtype).expand(len(x), 2, 2)  # noqa: E731
    p2, _, _ = M.geodesic(flat, a, b, n_points=17)
    assert M.linearity(p2)["max_deviation"] < 1e-6


def test_psd_metric_against_eigvalsh():
    G = torch.tensor([[[2.0, 0.3], [0.3, 1.0]], [[1.0, 2.0], [2.0, -0.5]], [[-1.0, 0.0], [0.0, -2.0]]],
                     dtype=torch.float64)
    g = M.psd_metric(lambda x: G, floor=0.1)(torch.zeros(3, 2, dtype=torch.float64))
    torch.testing.assert_close(g[0], G[0], **tol(torch.float64))  # already positive definite: unchanged
    ev = torch.linalg.eigvalsh(g)
    torch.testing.assert_close(ev[1:, 0], torch.full((2,), 0.1, dtype=torch.float64), **tol(torch.float64))
    ev0 = torch.linalg.eigvalsh(G)
    torch.testing.assert_close(ev[1:, 1] - ev[1:, 0], ev0[1:, 1] - ev0[1:, 0], **tol(torch.float64))


def test_geodesic_euclidean_is_straight():
    eye = lambda x: torch.eye(2, dtype=x.dtype).expand(len(x), 2, 2)  # noqa: E731
    a, b = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 1.0])
    init = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None] * torch.tensor([2.0, 1.0], dtype=torch.float64)
    init[1:-1] += 0.3 * torch.sin(torch.arange(1, 8, dtype=torch.float64))[:, None]
    path, energy, length = M.geodesic(eye, a, b, n_points=9, init=init)
    s = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None]
    torch.testing.assert_close(path, s * b.double(), atol=1e-5, rtol=0)
    assert energy == pytest.approx(5.0, rel=1e-8) and length == pytest.approx(math.sqrt(5.0), rel=1e-8)


def test_geodesic_poincare_half_plane():
    """g = I / y^2: the geodesic between (-1, 1) and (1, 1) is the arc of radius sqrt(2) centred at the origin,
    of length arccosh(3)."""
    half_plane = lambda x: torch.eye(2, dtype=x.dtype) / x[:, 1, None, None] ** 2  # noqa: E731
    path, energy, length = M.geodesic(half_plane, [-1.0, 1.0], [1.0, 1.0], n_points=65)
    r = path.norm(dim=1)
    assert (r - math.sqrt(2)).abs().max() < 2e-3
    assert length == pytest.approx(math.acosh(3.0), rel=1e-3)
    assert energy == pytest.approx(math.acosh(3.0) ** 2, rel=2e-3)  # constant speed: E = length^2
    assert float(M.path_energy(half_plane, path)) == pytest.approx(energy, rel=1e-12)
    assert M.path_length(half_plane, path) == pytest.approx(length, rel=1e-12)
