"""geom.jacobian against torch.autograd.functional.jacobian and central finite differences."""
from __future__ import annotations

import pytest
import torch

import geom
from conftest import fd_step, mlp, tol
from geom.jacobian import ForwardModeError


def reference_jacobian(G, z, P=None):
    """Dense per-sample reference: autograd.functional.jacobian of one sample at a time."""
    out = []
    for zi in z:
        def f(x):
            y = G(x[None]).reshape(-1)
            return y if P is None else y @ P
        out.append(torch.autograd.functional.jacobian(f, zi).reshape(-1, zi.numel()))
    return torch.stack(out)


def fd_jacobian(G, z, h, P=None):
    """Central differences, one latent coordinate at a time (computed in the model's dtype)."""
    B, E = z.shape[0], z[0].numel()
    cols = []
    for j in range(E):
        e = torch.zeros(E, dtype=z.dtype)
        e[j] = h
        e = e.reshape(z.shape[1:])
        with torch.no_grad():
            d = (G(z + e) - G(z - e)).reshape(B, -1) / (2 * h)
        cols.append(d if P is None else d @ P)
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("act", [torch.nn.Tanh, torch.nn.SiLU, torch.nn.GELU])
@pytest.mark.parametrize("mode", ["reverse", "forward", "auto"])
def test_mlp_jacobian_matches_autograd_and_fd(dtype, act, mode):
    G = mlp([3, 20, 20, 7], seed=1, act=act, dtype=dtype)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    J = geom.jacobian(G, z, mode=mode)
    assert J.shape == (5, 7, 3) and J.dtype == dtype
    torch.testing.assert_close(J, reference_jacobian(G, z), **tol(dtype))
    torch.testing.assert_close(J, fd_jacobian(G, z, fd_step(dtype)), **tol(dtype, "fd"))


def test_projected_jacobian_and_chunking(dtype):
    G = mlp([4, 32, 50], seed=2, act=torch.nn.Tanh, dtype=dtype)
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    P = geom.random_projection(50, 6, seed=9, dtype=dtype)
    J = geom.jacobian(G, z, k=6, seed=9)
    assert J.shape == (3, 6, 4)
    torch.testing.assert_close(J, reference_jacobian(G, z, P), **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, chunk_size=2, mode="reverse"), J, **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, chunk_size=3, mode="forward"), J, **tol(dtype))


def test_multidimensional_latents_and_outputs():
    """Latents (B, 2, 3) and outputs (B, 2, 5): the Jacobian is of the flattened output w.r.t. flattened z."""
    conv = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3, padding=1), torch.nn.Tanh(),
                               torch.nn.Conv1d(4, 2, 1), torch.nn.Upsample(size=5, mode="linear")).double().eval()
    z = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    J = geom.jacobian(conv, z)
    assert J.shape == (3, 10, 6)
    torch.testing.assert_close(J, reference_jacobian(conv, z), **tol(torch.float64))


def tiny_autoencoder(dtype):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)  # diffusers initialises from the global RNG; this test owns the process' RNG use
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=8)
    return vae.to(dtype).eval()


def test_diffusers_autoencoder_decode(dtype):
    """The decoder of a tiny diffusers AutoencoderKL (ResNet blocks, GroupNorm, attention, upsampling)."""
    vae = tiny_autoencoder(dtype)
    G = lambda z: vae.decode(z).sample  # noqa: E731
    z = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    P = geom.random_projection(3 * 4 * 4, 10, seed=0, dtype=dtype)
    J = geom.jacobian(G, z, projection=P)
    assert J.shape == (2, 10, 16)
    torch.testing.assert_close(J, reference_jacobian(G, z, P), **tol(dtype))
    torch.testing.assert_close(J, fd_jacobian(G, z, fd_step(dtype), P), **tol(dtype, "fd"))
    # full, unprojected Jacobian (48 x 16): forward mode (E < D) or its fallback agrees with reverse mode
    torch.testing.assert_close(geom.jacobian(G, z, mode="auto"), geom.jacobian(G, z, mode="reverse"), **tol(dtype))


def test_jacobian_input_errors():
    G = mlp([3, 8, 4], seed=0)
    z = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch dimension"):
        geom.jacobian(G, z[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        geom.jacobian(G, torch.tensor([[0.0, float("inf"), 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="larger than the output dimension"):
        geom.jacobian(G, z, k=5)
    with pytest.raises(ValueError, match="shape"):
        geom.jacobian(G, torch.randn(2, 5, dtype=torch.float64))  # wrong latent size for the model
    with pytest.raises(ValueError, match=r"projection must have shape"):
        geom.jacobian(G, z, projection=torch.eye(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        geom.jacobian(G, torch.ones(2, 3, dtype=torch.int64))
    bn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double().train()
    with pytest.raises(ValueError, match="BatchNorm"):
        geom.jacobian(bn, z)
    with pytest.raises(ValueError, match="expected \\(B, \\*out_shape\\)"):
        geom.jacobian(lambda x: x.sum(0, keepdim=True), torch.randn(3, 2, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["auto", "reverse", "forward"])
def test_diffusers_autoencoder_decode_all_modes(dtype, mode):
    """GroupNorm + attention decoder: every mode gives the autograd reference, forward mode included (group_norm's
    forward-mode derivative fails on the non-contiguous activations of the decoder unless given contiguous
    ones), with the module attached (geom.with_module) and as a plain callable; k = 24 > E = 16 and the full
    48 x 16 Jacobian both make "auto" use forward mode."""
    vae = tiny_autoencoder(dtype)
    z = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
    P = geom.random_projection(3 * 4 * 4, 24, seed=0, dtype=dtype)
    for G in (geom.with_module(lambda x: vae.decode(x).sample, vae), lambda x: vae.decode(x).sample):
        torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode), reference_jacobian(G, z, P),
                                   **tol(dtype))
        torch.testing.assert_close(geom.jacobian(G, z, mode=mode, chunk_size=5), reference_jacobian(G, z),
                                   **tol(dtype))


class _NoForwardAD(torch.autograd.Function):
    """x -> 2 x with a backward formula but no jvp: forward-mode AD cannot differentiate it."""

    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return 2 * g


class _Doubling(torch.nn.Module):
    def forward(self, x):
        return _NoForwardAD.apply(x)


def test_forward_mode_names_the_operation_it_cannot_differentiate():
    G = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), _Doubling()).double().eval()
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(ForwardModeError, match=r"mode='forward' cannot differentiate .* module '2' \(_Doubling\).*"
                                                r"use mode='reverse' or 'auto'"):
        geom.jacobian(G, z, mode="forward")
    ref = reference_jacobian(G, z)
    torch.testing.assert_close(geom.jacobian(G, z, mode="auto"), ref, **tol(torch.float64))  # E < D: falls back
    torch.testing.assert_close(geom.jacobian(G, z, mode="reverse"), ref, **tol(torch.float64))
    snap = {k: v.clone() for k, v in G.state_dict().items()}
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in snap.items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in G.modules())  # temporary hooks removed


def tiny_dcgan(dtype):
    """A DCGAN-shaped generator (ConvTranspose2d, eval-mode BatchNorm2d with non-trivial running statistics and
    affine parameters, ReLU, Tanh): the engine evaluates BatchNorm as its per-channel affine map."""
    g = torch.Generator().manual_seed(6)
    net = torch.nn.Sequential(
        torch.nn.Unflatten(1, (5, 1, 1)),
        torch.nn.ConvTranspose2d(5, 8, 4, 1, 0, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(8, 4, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(4, 3, 3, 1, 1, bias=False), torch.nn.Tanh()).to(dtype)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
                m.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
                m.weight.copy_(torch.randn(c, generator=g, dtype=torch.float64))
                m.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    return net.eval()


@pytest.mark.parametrize("mode", ["auto", "reverse", "forward"])
def test_batchnorm_generator_matches_autograd_in_every_mode(dtype, mode):
    """Eval-mode BatchNorm (the affine map the engine substitutes) between transposed convolutions: every mode,
    projected and unprojected, chunked, against per-sample autograd and central differences; the model's
    buffers and outputs are unchanged afterwards."""
    G = tiny_dcgan(dtype)
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(dtype)
    snap = {k: v.clone() for k, v in G.state_dict().items()}
    P = geom.random_projection(3 * 8 * 8, 7, seed=2, dtype=dtype)
    ref = reference_jacobian(G, z, P)
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode), ref, **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode, chunk_size=3), ref, **tol(dtype))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode), fd_jacobian(G, z, fd_step(dtype), P),
                               **tol(dtype, "fd"))
    torch.testing.assert_close(geom.jacobian(G, z[:2], mode=mode), reference_jacobian(G, z[:2]), **tol(dtype))
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in snap.items())


class _Preallocated(torch.nn.Module):
    """Writes its output into a preallocated buffer in place: runs on a batch, but not under a vmap over its
    samples (a batched value cannot be written into an unbatched buffer), so the engine falls back to one batched
    pass."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4).double()

    def forward(self, x):
        out = torch.zeros(x.shape[0], 6, dtype=x.dtype)
        out[:, :4] = torch.tanh(self.lin(x))
        out[:, 4:] = x[:, :2] ** 2
        return out


@pytest.mark.parametrize("mode", ["auto", "reverse", "forward"])
def test_generator_that_cannot_run_per_sample_falls_back_to_batched_passes(mode):
    G = _Preallocated().eval()
    z = torch.randn(3, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="vmap"):  # control: the per-sample vmap the engine tries first fails
        torch.vmap(lambda v: G(v[None]))(z)
    P = geom.random_projection(6, 4, seed=0, dtype=torch.float64)
    torch.testing.assert_close(geom.jacobian(G, z, mode=mode), reference_jacobian(G, z), **tol(torch.float64))
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode=mode, chunk_size=3),
                               reference_jacobian(G, z, P), **tol(torch.float64))
