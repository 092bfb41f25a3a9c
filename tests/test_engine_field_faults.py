"""Field faults of the descriptor engine (issue 23): generators that write to their input in place, activation
checkpointing, and non-finite values. References: per-latent float64 ``torch.autograd.functional.jacobian`` of
the out-of-place / un-checkpointed network (the function the user means), and ``local_complexity`` of it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import geom
from conftest import mlp, tol
from geom.jacobian import CheckpointingError, ForwardModeError, NonFiniteError

pytestmark = pytest.mark.usefixtures("one_thread")


class InPlace(nn.Module):
    """``net(h(z))`` with ``h`` a prior scaling ``z *= 2.5`` or a truncation ``z.clamp_(-1, 1)``, written in place
    (``inplace=True``, the idiom under test) or out of place (the reference); both share ``net``."""

    def __init__(self, net: nn.Module, kind: str, inplace: bool = True):
        super().__init__()
        self.net, self.kind, self.inplace = net, kind, inplace

    def forward(self, z):
        if self.kind == "scale":
            if self.inplace:
                z *= 2.5
            else:
                z = z * 2.5
        elif self.inplace:
            z.clamp_(-1.0, 1.0)
        else:
            z = z.clamp(-1.0, 1.0)
        return self.net(z).reshape(-1, 1, 2, 3)  # a 2 x 3 grey image (geom.report reads images)


def per_latent_jacobian(G, z, P=None):
    """Reference: autograd.functional.jacobian of one latent at a time, on a copy of it."""
    def one(x):
        y = G(x.clone()[None]).reshape(-1)
        return y if P is None else y @ P
    return torch.stack([torch.autograd.functional.jacobian(one, zi.clone()) for zi in z])


@pytest.mark.parametrize("kind", ["scale", "clamp"])
@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_inplace_latent_write_gives_the_jacobian_of_z_to_G_z_and_leaves_latents_alone(dtype, kind, mode):
    net = mlp([4, 32, 6], seed=3, dtype=dtype)  # E = 4 < D = 6: auto picks forward mode
    G, G_ref = InPlace(net, kind).eval(), InPlace(net, kind, inplace=False).eval()
    z0 = (torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5).to(dtype)
    z = z0.clone()
    J = geom.jacobian(G, z, mode=mode)
    torch.testing.assert_close(z, z0, rtol=0, atol=0)  # the caller's latents, bit for bit
    ref = per_latent_jacobian(G_ref, z0)
    torch.testing.assert_close(J, ref, **tol(dtype))
    # control: the in-place write does change the function's derivative, so a check at the moved point fails
    if kind == "scale":
        assert (per_latent_jacobian(G_ref, z0 * 2.5) - ref).abs().max() > 0.05


@pytest.mark.parametrize("kind", ["scale", "clamp"])
def test_describe_and_report_with_an_inplace_generator_match_the_out_of_place_one(kind):
    net = mlp([4, 32, 6], seed=3)
    G, G_ref = InPlace(net, kind).eval(), InPlace(net, kind, inplace=False).eval()
    z0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    z = z0.clone()
    df = geom.describe(G, z, k=None, radius=0.3, dim=3, progress=False)
    ref = geom.describe(G_ref, z0.clone(), k=None, radius=0.3, dim=3, progress=False)
    torch.testing.assert_close(z, z0, rtol=0, atol=0)
    np.testing.assert_allclose(df.psi, ref.psi, rtol=1e-10)
    assert df.delta.tolist() == ref.delta.tolist()
    # psi from numpy's SVD of the reference Jacobian (truncated coordinates: zero singular values dropped)
    sv = np.linalg.svd(per_latent_jacobian(G_ref, z0).numpy(), compute_uv=False)
    np.testing.assert_allclose(df.psi, [np.log(s[s > 1e-10 * s[0]]).sum() for s in sv], rtol=1e-10)
    rep = geom.report(G, latents=z, k=None, radius=0.3, dim=3, progress=False)
    torch.testing.assert_close(z, z0, rtol=0, atol=0)
    np.testing.assert_allclose(rep.psi, ref.psi, rtol=1e-10)


class Checkpointed(nn.Module):
    """E = 16 -> 32 -> 32 -> D = 24, both blocks under ``torch.utils.checkpoint`` (reentrant or not)."""

    def __init__(self, reentrant: bool, dtype=torch.float64):
        super().__init__()
        self.reentrant = reentrant
        self.a = mlp([16, 32, 32], seed=5, dtype=dtype)  # Linear, ReLU, Linear
        self.b = nn.Sequential(nn.ReLU(), mlp([32, 24], seed=6, dtype=dtype))

    def forward(self, z):
        h = checkpoint(self.a, z, use_reentrant=self.reentrant)
        return checkpoint(self.b, h, use_reentrant=self.reentrant)

    def plain(self, z):
        return self.b(self.a(z))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("mode", ["auto", "reverse"])
def test_checkpointed_generator_gets_the_plain_autograd_jacobian(dtype, reentrant, mode):
    G = Checkpointed(reentrant, dtype).eval()
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    P = geom.random_projection(24, 8, seed=0, dtype=dtype)
    J = geom.jacobian(G, z, k=8, mode=mode)
    torch.testing.assert_close(J, per_latent_jacobian(G.plain, z, P), **tol(dtype))
    # the fallback leaves the model's gradients as they were (reentrant checkpointing needs .backward())
    assert all(p.grad is None and p.requires_grad for p in G.parameters())
    d = geom.local_complexity(G, z, radius=0.3, dim=3)
    assert d.tolist() == geom.local_complexity(geom.with_module(lambda v: G.plain(v), G), z, radius=0.3, dim=3).tolist()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_checkpointing_that_cannot_be_differentiated_is_named():
    G = Checkpointed(reentrant=True).eval()
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.raises(ForwardModeError, match="checkpointing.*use mode='reverse'"):
        geom.jacobian(G, z, k=8, mode="forward")
    # a plain callable hides the module whose gradients .backward() would touch: refused, with the fix
    with pytest.raises(CheckpointingError, match="use_reentrant=False.*with_module"):
        geom.jacobian(lambda v: G(v), z, k=8, mode="reverse")
    torch.testing.assert_close(geom.jacobian(geom.with_module(lambda v: G(v), G), z, k=8, mode="reverse"),
                               geom.jacobian(G, z, k=8, mode="reverse"), **tol(torch.float64))


class Overflow(nn.Module):
    """ReLU MLP whose hidden pre-activations are ``exp(z_0 * 100) - 1``: inf for ``z_0 > ~7.1`` (float64)."""

    def __init__(self):
        super().__init__()
        self.net = mlp([3, 8, 4], seed=2)

    def forward(self, z):
        return self.net(torch.cat([torch.expm1(z[:, :1] * 100), z[:, 1:]], dim=1))


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_nonfinite_output_or_jacobian_is_a_named_error(mode):
    G = Overflow().eval()
    z = torch.zeros(3, 3, dtype=torch.float64)
    z[1, 0] = 8.0  # row 1 overflows
    assert torch.isfinite(geom.jacobian(G, z[[0, 2]], mode=mode)).all()  # control: finite rows are fine
    with pytest.raises(NonFiniteError, match=r"NaN or inf.*rows \[1\]"):
        geom.jacobian(G, z[[0, 1]], mode=mode)
    with pytest.raises(NonFiniteError, match=r"output contains NaN or inf values at latent rows \[0\]"):
        geom.jacobian(G, z[[1, 0]], mode=mode)
    with pytest.raises(NonFiniteError):
        geom.describe(G, z, k=None, dim=2, radius=1e-3, progress=False, complexity=False)


def test_local_complexity_never_counts_over_nonfinite_preactivations():
    G = Overflow().eval()
    z = torch.zeros(3, 3, dtype=torch.float64)
    assert geom.local_complexity(G, z, radius=1e-3, dim=2).shape == (3,)  # control
    z[2, 0] = 8.0
    with pytest.raises(NonFiniteError, match=r"pre-activation of 'net.1'.*latent rows \[2\]"):
        geom.local_complexity(G, z, radius=1e-3, dim=2)
    with pytest.raises(NonFiniteError, match=r"latent rows \[2\]"):
        geom.local_complexity(G, z, radius=1e-3, dim=2, batch_size=1)
    # NaN in the output of a network whose activations are finite (a NaN made after the last activation)
    H = geom.with_module(lambda v: G.net(v) * torch.where(v[:, :1] > 7, torch.nan, 1.0), G)
    with pytest.raises(NonFiniteError, match="output"):
        geom.local_complexity(H, z, radius=1e-3, dim=2)


def test_nonfinite_jacobian_and_singular_values_are_named():
    J = torch.ones(2, 3, 3, dtype=torch.float64)
    J[1, 0, 0] = torch.nan
    with pytest.raises(NonFiniteError, match=r"batch rows \[1\]"):
        geom.singular_values(J)
    assert isinstance(NonFiniteError("x"), ValueError)  # callers catching ValueError still catch it
