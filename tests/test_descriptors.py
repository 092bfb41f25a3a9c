"""psi and nu against closed forms (Humayun et al., Eq. 4 and Def. 3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import geom
from conftest import mlp, tol


class Linear(torch.nn.Module):
    """z -> A z + b, with Jacobian exactly A."""

    def __init__(self, A: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.A, self.b = A, b
        self.eval()  # geom refuses modules left in training mode

    def forward(self, z):
        return z @ self.A.T + self.b


def nu_reference(s: np.ndarray, eps: float = 1e-30) -> float:
    a = s / s.sum() + eps
    return float(np.exp(-(a * np.log(a)).sum()))


@pytest.mark.parametrize("D,E", [(7, 3), (5, 5), (3, 6)])
def test_linear_generator_matches_numpy_svd(dtype, D, E):
    g = torch.Generator().manual_seed(D * 10 + E)
    A = torch.randn(D, E, generator=g, dtype=torch.float64)
    G = Linear(A.to(dtype), torch.randn(D, dtype=dtype, generator=g.manual_seed(1)).to(dtype))
    z = torch.randn(4, E, dtype=dtype, generator=g)
    J = geom.jacobian(G, z)
    assert J.shape == (4, D, E) and J.dtype == dtype
    sv = geom.singular_values(J)
    assert sv.dtype == torch.float64 and sv.shape == (4, min(D, E))
    s_ref = np.linalg.svd(A.to(dtype).double().numpy(), compute_uv=False)
    psi = geom.local_scaling(sv, dtype=dtype, shape=(D, E))
    nu = geom.local_rank(sv)
    torch.testing.assert_close(psi, torch.full((4,), np.log(s_ref).sum(), dtype=torch.float64), **tol(dtype))
    torch.testing.assert_close(nu, torch.full((4,), nu_reference(s_ref), dtype=torch.float64), **tol(dtype))


def test_orthonormal_square_projection_leaves_descriptors_unchanged():
    g = torch.Generator().manual_seed(3)
    G = mlp([3, 16, 16, 6], seed=3, act=torch.nn.Tanh)
    z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    sv_full = geom.singular_values(geom.jacobian(G, z))
    sv_proj = geom.singular_values(geom.jacobian(G, z, k=6, seed=11))  # k = D: orthogonal rotation
    torch.testing.assert_close(sv_proj, sv_full, **tol(torch.float64))
    torch.testing.assert_close(geom.local_scaling(sv_proj, dtype=torch.float64),
                               geom.local_scaling(sv_full, dtype=torch.float64), **tol(torch.float64))
    torch.testing.assert_close(geom.local_rank(sv_proj), geom.local_rank(sv_full), **tol(torch.float64))


def test_random_projection_is_orthonormal_seeded_and_leaves_global_rng_alone(dtype):
    state = torch.random.get_rng_state()
    P = geom.random_projection(50, 7, seed=4, dtype=dtype)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert P.shape == (50, 7) and P.dtype == dtype
    torch.testing.assert_close(P.T @ P, torch.eye(7, dtype=dtype), **tol(dtype))
    assert torch.equal(P, geom.random_projection(50, 7, seed=4, dtype=dtype))
    assert not torch.allclose(P, geom.random_projection(50, 7, seed=5, dtype=dtype))
    with pytest.raises(ValueError, match="larger than D"):
        geom.random_projection(5, 6)


def test_rank_deficient_wide_generator():
    """E > D: at most D non-zero singular values; psi is their log-sum, nu uses all of them."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 8, generator=g, dtype=torch.float64)
    G = Linear(A, torch.zeros(3, dtype=torch.float64))
    sv = geom.singular_values(geom.jacobian(G, torch.randn(2, 8, generator=g, dtype=torch.float64)))
    s_ref = np.linalg.svd(A.numpy(), compute_uv=False)
    assert sv.shape == (2, 3)
    torch.testing.assert_close(geom.local_scaling(sv, dtype=torch.float64),
                               torch.full((2,), np.log(s_ref).sum(), dtype=torch.float64))


def test_rank_deficient_zeroed_weights_give_finite_psi_and_right_nu():
    """Zeroing two input columns: rank 2 of 4; psi = log pseudo-determinant, nu from all four values."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(6, 4, generator=g, dtype=torch.float64)
    A[:, 1] = 0
    A[:, 3] = 0
    for dt in (torch.float32, torch.float64):
        G = Linear(A.to(dt), torch.zeros(6, dtype=dt))
        sv = geom.singular_values(geom.jacobian(G, torch.randn(3, 4, generator=g, dtype=torch.float64).to(dt)))
        psi = geom.local_scaling(sv, dtype=dt, shape=(6, 4))
        s_ref = np.linalg.svd(A.to(dt).double().numpy(), compute_uv=False)
        assert torch.isfinite(psi).all()
        nz = s_ref[:2]
        torch.testing.assert_close(psi, torch.full((3,), np.log(nz).sum(), dtype=torch.float64), **tol(dt))
        # nu of the exact spectrum (two exact zeros contribute eps log eps ~ 0)
        torch.testing.assert_close(geom.local_rank(sv), torch.full((3,), nu_reference(np.r_[nz, 0, 0]),
                                                                   dtype=torch.float64), **tol(dt))


def test_local_rank_bounds_and_special_cases():
    sv = torch.tensor([[1.0, 0.0, 0.0], [2.0, 2.0, 2.0], [3.0, 1.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    nu = geom.local_rank(sv)
    torch.testing.assert_close(nu[:2], torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert 1.0 < nu[2] < 3.0
    assert torch.isfinite(nu).all() and torch.isfinite(geom.local_scaling(sv)).all()
    assert geom.local_scaling(sv)[3] == 0.0  # all-zero Jacobian: no non-zero singular value


def test_threshold_separates_numerical_zeros():
    sv = torch.tensor([[1.0, 1e-3, 1e-9]], dtype=torch.float64)
    # float32 Jacobian: 1e-9 is below 3 * eps32 ~ 3.6e-7 -> excluded; float64: kept
    assert geom.local_scaling(sv, dtype=torch.float32).item() == pytest.approx(np.log(1e-3))
    assert geom.local_scaling(sv, dtype=torch.float64).item() == pytest.approx(np.log(1e-3) + np.log(1e-9))
    assert geom.local_scaling(sv, rtol=1e-2).item() == pytest.approx(0.0)


def test_descriptor_input_errors():
    with pytest.raises(ValueError, match="shape"):
        geom.local_scaling(torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        geom.local_rank(torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        geom.singular_values(torch.full((1, 2, 2), float("nan")))


def test_describe_matches_components_and_errors():
    G = mlp([2, 12, 12, 5], seed=2)
    z = torch.randn(9, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    df = geom.describe(G, z, k=4, radius=0.2, dim=2, seed=7, batch_size=4, progress=False)
    assert list(df.columns) == ["psi", "nu", "delta", "n_dropped_sv"] and len(df) == 9
    assert df["delta"].dtype == np.int64
    J = geom.jacobian(G, z, projection=geom.random_projection(5, 4, seed=7, dtype=torch.float64))
    sv = geom.singular_values(J)
    np.testing.assert_allclose(df["psi"], geom.local_scaling(sv, dtype=torch.float64, shape=(4, 2)).numpy())
    np.testing.assert_allclose(df["nu"], geom.local_rank(sv).numpy())
    basis = geom.random_projection(2, 2, seed=8, dtype=torch.float64).T
    np.testing.assert_array_equal(df["delta"], geom.local_complexity(G, z, 0.2, 2, basis=basis).numpy())
    with pytest.raises(ValueError, match="larger than the output dimension"):
        geom.describe(G, z, k=120, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        geom.describe(G, z.clone().fill_(float("nan")), k=None, progress=False)
    with pytest.raises(ValueError, match="batch dimension"):
        geom.describe(G, z[0], k=None, progress=False)
    with pytest.raises(ValueError, match="radius"):
        geom.describe(G, z, k=None, radius=0.0, progress=False)
    lin = Linear(torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="no activation modules"):
        geom.describe(lin, z, k=None, progress=False)
    assert "delta" not in geom.describe(lin, z, k=None, complexity=False, progress=False)
