"""psi and nu against closed forms (Humayun et al., Eq. 4 and Def. 3)."""
from __future__ import annotations

import copy

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
    psi = geom.local_scaling(sv, dtype=dtype)
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
        psi = geom.local_scaling(sv, dtype=dt)
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
    np.testing.assert_allclose(df["psi"], geom.local_scaling(sv, dtype=torch.float64).numpy())
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


# ---------------------------------------------------------------- the zero threshold vs float64 recomputation
# A singular value kept by the float32 threshold agrees with the float64 recomputation to KEPT_RTOL (Weyl bound
# with SV_ERROR_FACTOR = 10 and the measured error factor 4.3: 0.43 at worst; measured here: < 1e-3, so the
# tolerance below has a margin of >= 10); psi over the kept set agrees to PSI_NATS.
KEPT_RTOL = 1e-2
PSI_NATS = 1e-2


def ill_conditioned(E, D, H, cond, act, rank=None, seed=0):
    """``E -> H -> D`` MLP whose output layer ``U diag(s) W^T`` has condition number ``cond`` and ``rank``
    (default ``min(H, D)``), singular values log-spaced (float32 weights)."""
    g = torch.Generator().manual_seed(seed)
    r = min(H, D) if rank is None else rank
    U, _ = torch.linalg.qr(torch.randn(D, r, generator=g, dtype=torch.float64))
    W, _ = torch.linalg.qr(torch.randn(H, r, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -np.log10(cond), r, dtype=torch.float64)
    G = torch.nn.Sequential(torch.nn.Linear(E, H), act(), torch.nn.Linear(H, D, bias=False)).eval()
    with torch.no_grad():
        G[0].weight.copy_(torch.randn(H, E, generator=g) / E ** 0.5)
        G[0].bias.copy_(torch.randn(H, generator=g) * 0.5)
        G[2].weight.copy_(((U * s) @ W.T).float())
    return G


def float32_vs_float64(G, z, k):
    P = None if k is None else geom.random_projection(G[-1].out_features, k, seed=0, dtype=torch.float64)
    J32 = geom.jacobian(G, z, projection=None if P is None else P.float())
    J64 = geom.jacobian(copy.deepcopy(G).double(), z.double(), projection=P)
    return geom.singular_values(J32), geom.singular_values(J64)


@pytest.mark.parametrize("E,D,H,k", [(16, 48, 32, None), (4096, 48, 64, None), (256, 256, 160, 120),
                                     (4096, 256, 128, 120)])
@pytest.mark.parametrize("cond", [1e3, 1e6])
@pytest.mark.parametrize("act", [torch.nn.ReLU, torch.nn.SiLU, torch.nn.Tanh])
def test_zero_threshold_keeps_what_float32_resolves(one_thread, E, D, H, k, cond, act):
    G = ill_conditioned(E, D, H, cond, act, seed=E + D)
    z = torch.randn(2, E, generator=torch.Generator().manual_seed(1))
    sv32, sv64 = float32_vs_float64(G, z, k)
    keep = geom.descriptors.nonzero_mask(sv32, dtype=torch.float32)
    tau = geom.descriptors.zero_threshold(sv32, torch.float32)
    # every kept float32 singular value is resolved: it agrees with float64
    rel = ((sv32 - sv64).abs() / sv64)[keep]
    assert rel.max() < KEPT_RTOL
    # every singular value clearly above the threshold is kept (the old max(k, E) * eps rule failed this)
    assert keep[sv64 > 2 * tau].all()
    # what is dropped is at most the rounding-error level, or exactly zero (dead ReLU units)
    assert (sv64[~keep] < 2 * tau.expand_as(sv64)[~keep]).all()
    psi64 = torch.where(keep, sv64.log(), torch.zeros_like(sv64)).sum(-1)
    torch.testing.assert_close(geom.local_scaling(sv32, dtype=torch.float32), psi64, rtol=0, atol=PSI_NATS)
    df = geom.describe(G, z, k=k, complexity=False, progress=False)
    np.testing.assert_allclose(df["psi"], psi64.numpy(), rtol=0, atol=PSI_NATS)
    np.testing.assert_array_equal(df["n_dropped_sv"], (~keep).sum(-1).numpy())


@pytest.mark.parametrize("k", [None, 40])
@pytest.mark.parametrize("act", [torch.nn.SiLU, torch.nn.Tanh])
def test_zero_threshold_drops_exactly_the_zero_singular_values_of_rank_deficient_generators(one_thread, k, act):
    """A rank-8 bottleneck layer (E = 512 > D = 64, condition 1e4) and zeroed latent columns: the float32
    Jacobian has spurious singular values at the rounding level; exactly the true zeros are dropped and psi is
    finite."""
    G = ill_conditioned(512, 8, 32, 1e4, act, seed=5)
    G.append(torch.nn.Linear(8, 64, bias=False)).eval()  # 8 -> 64: the Jacobian has rank 8 exactly (in any precision)
    with torch.no_grad():
        G[3].weight.copy_(torch.randn(64, 8, generator=torch.Generator().manual_seed(6)) / 8 ** 0.5)
    z = torch.randn(3, 512, generator=torch.Generator().manual_seed(2))
    sv32, sv64 = float32_vs_float64(G, z, k)
    keep = geom.descriptors.nonzero_mask(sv32, dtype=torch.float32)
    assert (keep.sum(-1) == 8).all()
    assert (sv64[:, 8:] < 1e-12 * sv64[:, :1]).all()  # the float64 reference: rank 8
    psi = geom.local_scaling(sv32, dtype=torch.float32)
    assert torch.isfinite(psi).all()
    torch.testing.assert_close(psi, sv64[:, :8].log().sum(-1), rtol=0, atol=PSI_NATS)
    with torch.no_grad():  # zeroed columns: the first layer ignores 500 of the 512 latent coordinates
        G[0].weight[:, 12:] = 0
    sv32, sv64 = float32_vs_float64(G, z, k)
    keep = geom.descriptors.nonzero_mask(sv32, dtype=torch.float32)
    assert (keep.sum(-1) == 8).all()
    df = geom.describe(G, z, k=k, complexity=False, progress=False)
    assert (df["n_dropped_sv"] == sv32.shape[-1] - 8).all()


def test_zero_threshold_needs_only_the_singular_values_and_the_dtype():
    sv = torch.tensor([[3.0, 4.0, 0.0]], dtype=torch.float64)  # ||J||_F = 5
    for dt in (torch.float32, torch.float64):
        tau = geom.descriptors.zero_threshold(sv, dt)
        torch.testing.assert_close(tau, torch.tensor([[geom.descriptors.SV_ERROR_FACTOR * torch.finfo(dt).eps * 5]],
                                                     dtype=torch.float64))
    sv = torch.tensor([[1.0, 1e-5]], dtype=torch.float64)  # kept in float32 (tau ~ 1.2e-6); the old rule
    assert geom.local_scaling(sv).item() == pytest.approx(np.log(1e-5))  # max(k, E) eps with E = 4096 dropped it
    assert geom.local_scaling(sv, rtol=geom.default_rtol((48, 4096))).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spectrum_carries_its_threshold(dtype):
    """spectrum(J) gives the same psi, nu and dropped count as singular_values + the Jacobian's dtype by hand,
    on a rank-deficient map (its zero singular values are dropped), and an explicit rtol still applies."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 12, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 3, 8, generator=g,
                                                                                 dtype=torch.float64)
    J = A.to(dtype)  # rank 3 of min(12, 8) = 8
    sp = geom.spectrum(J)
    sv = geom.singular_values(J)
    assert sp.dtype == dtype and torch.equal(sp.values, sv)
    torch.testing.assert_close(geom.local_scaling(sp), geom.local_scaling(sv, dtype=dtype), rtol=0, atol=0)
    torch.testing.assert_close(geom.local_rank(sp), geom.local_rank(sv), rtol=0, atol=0)
    assert sp.n_dropped.tolist() == [5, 5, 5]
    torch.testing.assert_close(geom.local_scaling(sp, rtol=0.5), geom.local_scaling(sv, rtol=0.5), rtol=0, atol=0)


def test_shape_argument_is_deprecated_not_silently_ignored():
    """Issue 25: no parameter accepted and ignored. ``shape`` no longer changes the threshold: passing it
    warns (and the result equals the call without it)."""
    sv = torch.tensor([[3.0, 1.0, 1e-9]], dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="drop the argument"):
        a = geom.local_scaling(sv, dtype=torch.float64, shape=(3, 2))
    with pytest.warns(DeprecationWarning, match="nonzero_mask"):
        m = geom.descriptors.nonzero_mask(sv, dtype=torch.float64, shape=(3, 2))
    assert torch.equal(a, geom.local_scaling(sv, dtype=torch.float64))
    assert torch.equal(m, geom.descriptors.nonzero_mask(sv, dtype=torch.float64))
