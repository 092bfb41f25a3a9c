"""Local complexity delta (Humayun et al., Def. 1) against the exact hyperplane count."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import geom
from conftest import mlp
from geom.complexity import JOINTS, cast_module, cross_polytope, joints, polytope_basis, smallest_radius


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
    basis = geom.random_projection(3, 2, seed=6, dtype=torch.float64).T  # polytope_basis: seed + 1
    c = geom.local_complexity(G, z, radius=0.3, dim=2, basis=basis)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.equal(polytope_basis(3, 2, 5), basis)


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
    G = Shared().eval()
    z = torch.randn(20, 2, dtype=torch.float64)
    total, layers = geom.local_complexity(G, z, radius=0.4, dim=2, seed=1, per_layer=True)
    assert set(layers) == {"act", "act#1"}
    assert torch.equal(total, layers["act"] + layers["act#1"])
    # first call = the first hidden layer: exact count
    basis = polytope_basis(2, 2, seed=1)
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
        geom.local_complexity(torch.nn.Linear(2, 2).double().eval(), z, radius=0.1, dim=1)
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


# ------------------------------------------------------------------ joints of piecewise activations (Def. 1)
# Instances with non-default parameters; every piecewise entry of geom.complexity.JOINTS appears.
PIECEWISE = [
    nn.ReLU(), nn.LeakyReLU(0.2), nn.LeakyReLU(1.0), nn.PReLU(init=0.3, dtype=torch.float64),
    nn.RReLU(0.1, 0.3).eval(), nn.Hardtanh(-2.0, 1.5), nn.ReLU6(), nn.Hardsigmoid(), nn.Hardswish(),
    nn.Softshrink(1.0), nn.Softshrink(0.0), nn.Hardshrink(0.75), nn.Threshold(0.5, -2.0),
]
# Where the test places its latents: the joints as stated by torch's documentation (written here by hand).
DOC_JOINTS = {"ReLU": [0.0], "LeakyReLU(0.2)": [0.0], "LeakyReLU(1.0)": [], "PReLU": [0.0], "RReLU": [0.0],
              "Hardtanh": [-2.0, 1.5], "ReLU6": [0.0, 6.0], "Hardsigmoid": [-3.0, 3.0], "Hardswish": [-3.0, 3.0],
              "Softshrink(1.0)": [-1.0, 1.0], "Softshrink(0.0)": [], "Hardshrink": [-0.75, 0.75],
              "Threshold": [0.5]}
GRID_STEP = 2.0 ** -10   # exact binary grid for the numerical joint search
SIG_STEP = 1e-3          # stencil half-width of the local polynomial signature
SIG_TOL = 1e-6           # two signatures differ (float64: rounding of the stencil ~1e-9)


def _label(m: nn.Module) -> str:
    name = type(m).__name__
    if isinstance(m, nn.LeakyReLU):
        return f"{name}({m.negative_slope})"
    if isinstance(m, nn.Softshrink):
        return f"{name}({m.lambd})"
    return name


def numerical_joints(act: nn.Module, lo: float = -8.0, hi: float = 8.0) -> list[float]:
    """Joints found from the activation's own output: points of a fine grid where the third finite difference
    is not zero, i.e. where the function is not locally a polynomial of degree <= 2 (kinks, jumps, and
    Hardswish's change of curvature). Each cluster of flagged points is one joint (its midpoint)."""
    x = torch.arange(lo, hi + GRID_STEP, GRID_STEP, dtype=torch.float64)
    with torch.no_grad():
        y = act(x)
    d3 = y[3:] - 3 * y[2:-1] + 3 * y[1:-2] - y[:-3]          # centred at x[i] + 1.5 h
    flagged = (d3.abs() > 1e-9).nonzero().flatten().tolist()
    clusters: list[list[int]] = []
    for i in flagged:
        if clusters and i - clusters[-1][-1] <= 4:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    return [float(x[0] + (sum(c) / len(c) + 1.5) * GRID_STEP) for c in clusters]


def piece_signature(act: nn.Module, x: Tensor) -> Tensor:
    """``(..., 3)`` coefficients ``(a, b, c)`` of the polynomial ``a x^2 + b x + c`` that the activation equals
    around each ``x`` (from its outputs at ``x - h, x, x + h``; exact on pieces of degree <= 2): two values lie
    on the same piece iff their signatures agree. Independent of geom's joint table."""
    h = SIG_STEP
    with torch.no_grad():
        ym, y0, yp = act(x - h), act(x), act(x + h)
    a = (yp - 2 * y0 + ym) / (2 * h * h)
    b = (yp - ym) / (2 * h) - 2 * a * x
    c = y0 - a * x * x - b * x
    return torch.stack([a, b, c], dim=-1)


@pytest.mark.parametrize("act", PIECEWISE, ids=_label)
def test_joint_table_matches_the_activation_output(act):
    found = numerical_joints(act)
    table = joints(act)
    assert len(found) == len(table) == len(DOC_JOINTS[_label(act)]), (found, table)
    torch.testing.assert_close(torch.tensor(found, dtype=torch.float64), torch.tensor(table, dtype=torch.float64),
                               rtol=0, atol=4 * GRID_STEP)


@pytest.mark.parametrize("act", PIECEWISE, ids=_label)
def test_delta_counts_joint_crossings_brute_force(act):
    """Hand-placed latents straddling (or not) each joint; reference: neurons whose piece signature (from the
    activation's own output) differs between the polytope vertices."""
    lin = nn.Linear(2, 2, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2, dtype=torch.float64))
        lin.bias.zero_()
    G = nn.Sequential(lin, act, nn.Linear(2, 3, dtype=torch.float64)).eval()
    r, basis = 0.1, torch.eye(2, dtype=torch.float64)
    offsets = [(0.05, 0.3), (-0.05, -0.15), (0.15, -0.03), (-0.3, 0.07), (0.02, -0.09)]
    centres = DOC_JOINTS[_label(act)] or [0.0, 1.0]
    z = torch.tensor([[j + a, j + b] for j in centres for a, b in offsets], dtype=torch.float64)
    delta = geom.local_complexity(G, z, radius=r, dim=2, basis=basis)
    pre = lin(cross_polytope(z, r, basis)).detach()               # (B, 4, 2) pre-activations at the vertices
    sig = piece_signature(act, pre)                               # (B, 4, 2, 3)
    ref = ((sig.amax(1) - sig.amin(1)).abs().amax(-1) > SIG_TOL).sum(1)
    assert torch.equal(delta, ref)
    assert int(ref.sum()) == (3 * len(DOC_JOINTS[_label(act)]) * 2 if DOC_JOINTS[_label(act)] else 0)


SMOOTH = [nn.SiLU, nn.GELU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softsign, nn.Tanhshrink, nn.Softplus, nn.ELU,
          nn.SELU, nn.CELU, nn.LeakyReLU, nn.PReLU]


@pytest.mark.parametrize("act", SMOOTH, ids=lambda a: a.__name__)
def test_smooth_activations_count_sign_changes(act):
    """Convention for smooth activations (module docs): one joint at 0, the paper's sign changes."""
    assert joints(act()) == (0.0,)
    G = mlp([5, 64, 3], seed=11, act=act, dtype=torch.float64)
    W, b = G[0].weight.detach(), G[0].bias.detach()
    z = torch.randn(40, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    basis = polytope_basis(5, 3, seed=4)
    delta = geom.local_complexity(G, z, radius=0.5, dim=3, basis=basis)
    torch.testing.assert_close(delta, exact_one_layer_count(W, b, z, basis, 0.5))
    assert delta.sum() > 0


def test_every_listed_activation_has_a_joint_set():
    assert set(geom.complexity.ACTIVATIONS) == set(JOINTS)
    assert {type(a) for a in PIECEWISE} | set(SMOOTH) == set(JOINTS)


# ------------------------------------------------------------------ precision of the polytope (small radii)
class _Recorder(nn.Module):
    """Identity that keeps its last input (the vertices the generator was evaluated at)."""

    def forward(self, x):
        self.seen = x.detach().clone()
        return x


def test_vertices_lie_at_the_radius_for_a_large_latent():
    """E = 16384 (Stable Diffusion v1), r = 1e-5: the vertices the generator sees are at distance r from z up
    to the float64 rounding of a vertex next to |z| ~ 128, |fl(v) - v| <= u (|z| + r) (float32: ~30% of r)."""
    E, r = 16384, 1e-5
    rec = _Recorder()
    G = nn.Sequential(rec, nn.ReLU()).eval()
    z = torch.randn(2, E, generator=torch.Generator().manual_seed(0))             # a user's float32 latents
    basis = polytope_basis(E, 4, seed=0)
    geom.local_complexity(G, z, radius=r, dim=4, basis=basis)
    v = rec.seen.reshape(2, 8, E)
    assert v.dtype == torch.float64
    u = torch.finfo(torch.float64).eps / 2
    bound = u * (float(z.double().norm(dim=1).max()) + r) / r                      # ~1.4e-9 relative
    dist = (v - z.double()[:, None]).norm(dim=-1)
    torch.testing.assert_close(dist, torch.full_like(dist, r), rtol=bound, atol=0)
    off = v - z.double()[:, None] - r * torch.cat([basis, -basis])[None]
    assert float(off.norm(dim=-1).max()) <= bound * r


def test_smallest_radius_bounds_the_vertex_error_and_refuses_below_it():
    E = 16384
    z = torch.randn(2, E, generator=torch.Generator().manual_seed(1))
    basis = polytope_basis(E, 4, seed=1)
    r_min = smallest_radius(z, torch.float32)
    assert 5e-4 < r_min < 1e-3                                                     # 6e-6 |z|, |z| ~ 128
    for r in (r_min, 10 * r_min):                                                  # brute force: 1% at r_min
        v = cross_polytope(z, r, basis, dtype=torch.float32).double()
        err = (v - z.double()[:, None] - r * torch.cat([basis, -basis])[None]).norm(dim=-1) / r
        assert float(err.max()) <= geom.complexity.VERTEX_RTOL
    G = nn.Sequential(nn.ReLU()).eval()
    with pytest.raises(ValueError, match=r"smallest radius .* is 0\.0007\d"):
        geom.local_complexity(G, z, radius=1e-5, dim=4, basis=basis, dtype=torch.float32)
    geom.local_complexity(G, z, radius=1e-3, dim=4, basis=basis, dtype=torch.float32)  # resolvable: accepted
    geom.local_complexity(G, z, radius=1e-5, dim=4, basis=basis)                        # float64 default


def _state(model: nn.Module) -> dict[str, tuple]:
    return {k: (v, v.dtype, v.data_ptr(), v.detach().clone()) for k, v in model.state_dict(keep_vars=True).items()}


def _assert_state_unchanged(model: nn.Module, before: dict[str, tuple]) -> None:
    after = model.state_dict(keep_vars=True)
    assert after.keys() == before.keys()
    for k, (obj, dtype, ptr, val) in before.items():
        t = after[k]
        assert t is obj and t.dtype == dtype and t.data_ptr() == ptr, k
        assert torch.equal(t.detach().reshape(-1).view(torch.uint8), val.reshape(-1).view(torch.uint8)), k  # bits


class _Net(nn.Module):
    """float32 model with parameters, a BatchNorm (eval, running statistics) and a buffer; can fail mid-call."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.l1, self.bn, self.l2 = nn.Linear(3, 16), nn.BatchNorm1d(16), nn.Linear(16, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            self.bn.running_mean.copy_(torch.randn(16, generator=g))
            self.bn.running_var.copy_(torch.rand(16, generator=g) + 0.5)
        self.register_buffer("shift", torch.randn(3, generator=g))
        self.act = nn.SiLU()
        self.fail = False

    def forward(self, z):
        h = self.act(self.bn(self.l1(z + self.shift)))
        if self.fail:
            raise RuntimeError("boom")
        return self.l2(h)


def test_float64_evaluation_leaves_the_model_bit_for_bit_unchanged():
    net = _Net().eval()
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    before = _state(net)
    d = geom.local_complexity(net, z, radius=0.3, dim=2, seed=0)
    _assert_state_unchanged(net, before)
    ref = geom.local_complexity(_Net().double().eval(), z.double(), radius=0.3, dim=2, seed=0)
    assert torch.equal(d, ref) and d.sum() > 0                 # it really ran in float64
    net.fail = True
    with pytest.raises(ValueError, match="boom"):
        geom.local_complexity(net, z, radius=0.3, dim=2, seed=0)
    _assert_state_unchanged(net, before)
    with cast_module(net, torch.float64):                      # the context manager itself, with an error inside
        assert net.l1.weight.dtype == net.shift.dtype == torch.float64
        assert net.bn.num_batches_tracked.dtype == torch.int64
        with pytest.raises(RuntimeError, match="boom"):
            net(z.double())
    _assert_state_unchanged(net, before)


@pytest.fixture(scope="module")
def tiny_ldm_decoder():
    from geom.models import load_pipeline

    pipe = load_pipeline("tiny-ldm")
    z = torch.randn(4, *pipe.latent_shape, generator=torch.Generator().manual_seed(0))
    return pipe.vae_decode.eval(), z


@pytest.mark.parametrize("radius", [1e-5, 1e-4, 1e-3])
def test_tiny_ldm_delta_independent_of_model_dtype_and_batch_size(tiny_ldm_decoder, radius):
    """Reference: the same decoder converted to float64 (a copy), all latents in one batch."""
    import copy

    G32, z = tiny_ldm_decoder
    G64 = copy.deepcopy(G32).double()
    before = _state(G32)
    ref = geom.local_complexity(G64, z.double(), radius=radius, dim=4, seed=0)
    for bs in (1, 3, None):
        assert torch.equal(geom.local_complexity(G32, z, radius=radius, dim=4, seed=0, batch_size=bs), ref)
    _assert_state_unchanged(G32, before)
    if radius == 1e-3:
        assert ref.sum() > 0


# ------------------------------------------------------------------ one seed convention for every entry point
def test_describe_local_complexity_and_sweep_agree_on_delta(tmp_path):
    from geom.sweep import ShardComputer, Sweep, SweepSpec, run_sweep

    spec = SweepSpec(model="mlp:0", source="plane:3", k=8, dim=4, radius=0.3, seed=5, shard_size=9,
                     batch_size=4, dtype="float64", latent_seed=2)
    df = run_sweep(spec, tmp_path / "sweep", progress=False)
    comp = ShardComputer(spec)
    sw = Sweep(spec, tmp_path / "sweep")
    sw.prepare(comp.model)
    z = sw.latents(np.arange(9))
    G = comp.model.G
    lc = geom.local_complexity(G, z, radius=0.3, dim=4, seed=5)
    ds = geom.describe(G, z, k=8, radius=0.3, dim=4, seed=5, batch_size=4, progress=False)["delta"].to_numpy()
    np.testing.assert_array_equal(lc.numpy(), ds)
    np.testing.assert_array_equal(lc.numpy(), df["delta"].to_numpy())
    assert torch.equal(lc, geom.local_complexity(G, z, radius=0.3, dim=4, basis=polytope_basis(16, 4, seed=5)))
    assert lc.sum() > 0 and not torch.equal(
        lc, geom.local_complexity(G, z, radius=0.3, dim=4, basis=polytope_basis(16, 4, seed=4)))
