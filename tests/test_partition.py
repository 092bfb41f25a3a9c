"""Exact 2D partition (geom.partition) vs brute-force grid activation patterns and vs geom.jacobian."""
import numpy as np
import pytest
import torch

import geom
from geom.partition import activation_patterns, grid_pattern_count, partition, polygon_area, split_polygon
from conftest import mlp

DOMAIN = (-2.0, 2.0, -1.5, 1.5)


@pytest.fixture(scope="module")
def net():
    return mlp([2, 8, 8, 3], seed=3)


@pytest.fixture(scope="module")
def part(net):
    return partition(net, DOMAIN)


def test_single_layer_region_count_is_line_arrangement():
    # one hidden layer: regions = faces of an arrangement of lines; with lines in general position crossing
    # the whole square the count is 1 + n_lines + n_intersections inside the square.
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([0.1, -0.2, 0.05])
    P = partition([(W, b), (np.ones((1, 3)), np.zeros(1))], (-1, 1, -1, 1))
    # 3 lines, pairwise intersections: (-0.1, 0.2), (-0.1, 0.05), (-0.25, 0.2): all inside -> 1 + 3 + 3
    assert len(P) == 7
    np.testing.assert_allclose(P.areas.sum(), 4.0, rtol=1e-12)


def test_areas_sum_to_domain(part):
    x0, x1, y0, y1 = DOMAIN
    assert (part.areas > 0).all()
    np.testing.assert_allclose(part.areas.sum(), (x1 - x0) * (y1 - y0), rtol=1e-10)


def test_patterns_unique(part):
    assert len({p.tobytes() for p in part.patterns}) == len(part)


def test_grid_count_bounded_by_exact_and_close(net, part):
    R = len(part)
    coarse = grid_pattern_count(net, DOMAIN, 40)
    fine = grid_pattern_count(net, DOMAIN, 800)
    assert coarse <= fine <= R
    assert fine >= 0.95 * R, (fine, R)
    # every pattern seen on the grid is one of the exact regions
    xs = np.random.default_rng(0).uniform([DOMAIN[0], DOMAIN[2]], [DOMAIN[1], DOMAIN[3]], (20000, 2))
    exact = {p.tobytes() for p in part.patterns}
    assert all(p.tobytes() in exact for p in activation_patterns(net, xs))


def test_affine_maps_reproduce_network(net, part):
    z = part.interior_points
    with torch.no_grad():
        y = net(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(np.einsum("rdk,rk->rd", part.A, z) + part.b, y, rtol=1e-10, atol=1e-10)
    # also at random points located through their activation pattern
    pts = np.random.default_rng(1).uniform([DOMAIN[0], DOMAIN[2]], [DOMAIN[1], DOMAIN[3]], (500, 2))
    idx = part.locate(net, pts)
    assert (idx >= 0).all()
    with torch.no_grad():
        y = net(torch.from_numpy(pts)).numpy()
    np.testing.assert_allclose(np.einsum("ndk,nk->nd", part.A[idx], pts) + part.b[idx], y, rtol=1e-10, atol=1e-10)


def test_psi_matches_jacobian_at_interiors(net, part):
    z = torch.from_numpy(part.interior_points)
    J = geom.jacobian(net, z)  # (R, 3, 2) by autograd
    np.testing.assert_allclose(J.numpy(), part.A, rtol=1e-10, atol=1e-12)
    psi_ref = geom.local_scaling(geom.singular_values(J), dtype=torch.float64).numpy()
    np.testing.assert_allclose(part.psi(), psi_ref, rtol=1e-10, atol=1e-10)
    nu_ref = geom.local_rank(geom.singular_values(J)).numpy()
    np.testing.assert_allclose(part.nu(), nu_ref, rtol=1e-10)


def test_deeper_net_against_grid():
    net = mlp([2, 20, 20, 20, 3], seed=0)
    dom = (-1.0, 1.0, -1.0, 1.0)
    P = partition(net, dom)
    np.testing.assert_allclose(P.areas.sum(), 4.0, rtol=1e-10)
    g = grid_pattern_count(net, dom, 600)
    assert g <= len(P) and g >= 0.9 * len(P), (g, len(P))


def test_split_polygon_square():
    sq = np.array([[0.0, 0], [1, 0], [1, 1], [0, 1]])
    f = sq[:, 0] - 0.25
    pos, neg = split_polygon(sq, f, 1e-12)
    assert polygon_area(pos) == pytest.approx(0.75) and polygon_area(neg) == pytest.approx(0.25)


def test_bad_inputs():
    with pytest.raises(TypeError, match="Tanh"):
        partition(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)))
    with pytest.raises(ValueError, match="2D inputs"):
        partition(mlp([3, 4, 1]))
    with pytest.raises(ValueError, match="domain"):
        partition(mlp([2, 4, 1]), (1, 0, 0, 1))
