"""Local complexity delta (Humayun et al., Def. 1) against the exact hyperplane count."""
from __future__ import annotations

import pytest
import torch

import geom
from conftest import mlp


def exact_one_layer_count(W, b, z, basis, r):
    """Number of hidden hyperplanes w.x + b = 0 meeting the l1 ball {z + basis^T u : ||u||_1 <= r}:
    |w.z + b| < r * ||basis w||_inf (the extreme values of a linear function on an l1 ball are at its vertices)."""
    pre = z @ W.T + b                          # (B, H)
    reach = r * (basis @ W.T).abs().amax(0)    # (H,)
    return (pre.abs() < reach).sum(1)


@pytest.mark.parametrize("E,dim", [(2, 1), (2, 2), (5, 3), (8, 8)])
@pytest.mark.parametrize("radius", [0.05, 0.5, 2.0])
def test_one_hidden_layer_relu_matches_exact_count(E, dim, radius):
    G = mlp([E, 64, 3], seed=E + dim, dtype=torch.float64)
    W, b = G[0].weight.detach(), G[0].bias.detach()
    g = torch.Generator().manual_seed(7)
    z = torch.randn(40, E, generator=g, dtype=torch.float64)
    basis = geom.random_projection(E, dim, seed=3, dtype=torch.float64).T
    delta = geom.local_complexity(G, z, radius=radius, dim=dim, basis=basis)
    assert delta.dtype == torch.int64 and delta.shape == (40,)
    torch.testing.assert_close(delta, exact_one_layer_count(W, b, z, basis, radius))
    assert delta.sum() > 0  # the test exercises real crossings


def test_seeded_basis_and_batching_are_consistent():
    G = mlp([3, 32, 32, 4], seed=1, dtype=torch.float64)
    z = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = geom.local_complexity(G, z, radius=0.3, dim=2, seed=5)
    b = geom.local_complexity(G, z, radius=0.3, dim=2, seed=5, batch_size=3)
    basis = geom.random_projection(3, 2, seed=5, dtype=torch.float64).T
    c = geom.local_complexity(G, z, radius=0.3, dim=2, basis=basis)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_per_layer_counts_sum_and_repeated_module_calls():
    """A module called twice contributes two sets of neurons; per-layer counts add up to the total."""

    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.out = (torch.nn.Linear(2, 16).double(), torch.nn.Linear(16, 16).double(),
                                          torch.nn.Linear(16, 3).double())
            self.act = torch.nn.ReLU()

        def forward(self, z):
            return self.out(self.act(self.l2(self.act(self.l1(z)))))

    torch.manual_seed(0)
    G = Shared()
    z = torch.randn(20, 2, dtype=torch.float64)
    total, layers = geom.local_complexity(G, z, radius=0.4, dim=2, seed=1, per_layer=True)
    assert set(layers) == {"act", "act#1"}
    assert torch.equal(total, layers["act"] + layers["act#1"])
    # first call = the first hidden layer: exact count
    basis = geom.random_projection(2, 2, seed=1, dtype=torch.float64).T
    ref = exact_one_layer_count(G.l1.weight.detach(), G.l1.bias.detach(), z, basis, 0.4)
    assert torch.equal(layers["act"], ref)


def test_cross_polytope_vertices():
    z = torch.zeros(1, 3, dtype=torch.float64)
    basis = torch.eye(3, dtype=torch.float64)[:2]
    v = geom.cross_polytope(z, 0.5, basis)
    assert v.shape == (1, 4, 3)
    assert torch.equal(v[0], torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [-0.5, 0, 0], [0, -0.5, 0]], dtype=torch.float64))


def test_complexity_errors():
    G = mlp([2, 8, 2], seed=0, dtype=torch.float64)
    z = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="radius"):
        geom.local_complexity(G, z, radius=0.0, dim=2)
    with pytest.raises(ValueError, match="radius"):
        geom.local_complexity(G, z, radius=-1.0, dim=2)
    with pytest.raises(ValueError, match="dim"):
        geom.local_complexity(G, z, radius=0.1, dim=3)
    with pytest.raises(ValueError, match="no activation modules"):
        geom.local_complexity(torch.nn.Linear(2, 2).double(), z, radius=0.1, dim=1)
    with pytest.raises(TypeError, match="activation modules of G"):
        geom.local_complexity(lambda x: x, z, radius=0.1, dim=1)
    with pytest.raises(ValueError, match="basis must have shape"):
        geom.local_complexity(G, z, radius=0.1, dim=1, basis=torch.ones(1, 3, dtype=torch.float64))


def test_diffusers_decoder_counts_silu_neurons():
    """Bound-method generators (vae.decode) expose their modules; counts are non-negative and grow with r."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=8).eval()
    G = geom.with_module(lambda z: vae.decode(z).sample, vae)
    z = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    small = geom.local_complexity(G, z, radius=1e-3, dim=4, seed=0)
    large = geom.local_complexity(G, z, radius=1.0, dim=4, seed=0)
    assert (small >= 0).all() and (large >= small).all() and large.sum() > 0
