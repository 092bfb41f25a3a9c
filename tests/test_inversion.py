"""geom.inversion: optimisation-based GAN inversion recovers the latent of a generated image (known ground
truth) on a DCGAN-shaped stand-in; the objective equals its formula; starts do not depend on the batching;
bad input is refused. Plus one check on the pretrained dcgan-faces: descriptors of a latent do not depend on
the batch it is described in."""
import numpy as np
import pytest
import torch
from torch import nn

from geom.inversion import inversion_loss, invert

pytestmark = pytest.mark.usefixtures("one_thread")

NZ = 8
# Stated recovery error of the stand-in (float64, 300 Adam steps, lr 0.1, 3 restarts, no prior): the latent to
# a relative error below 1e-4 (measured ~3e-7) and the image to a pixel MSE below 1e-10 (measured ~1e-14).
LATENT_RTOL = 1e-4
PIXEL_MSE = 1e-10


class StandIn(nn.Module):
    """DCGAN-shaped generator (ConvTranspose2d / eval BatchNorm2d / ReLU blocks, Tanh output) with seeded random
    weights: ``(B, 8) -> (B, 3, 16, 16)``."""

    def __init__(self, nz=NZ, ngf=8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())
        with torch.no_grad():
            for m in self.main:
                if isinstance(m, nn.ConvTranspose2d):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (0.5 / m.weight.shape[0]) ** 0.5)
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)

    def forward(self, z):
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


def _standin(dtype=torch.float64):
    return StandIn().to(dtype).eval().requires_grad_(False)


def _truth(n=4, seed=1, dtype=torch.float64):
    return torch.randn(n, NZ, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_inversion_recovers_latent_of_generated_image():
    G = _standin()
    z_true = _truth()
    with torch.no_grad():
        x = G(z_true)
    r = invert(G, x, (NZ,), steps=300, restarts=3, lr=0.1, prior_weight=0.0, seed=0)
    rel = ((r.z - z_true).norm(dim=1) / z_true.norm(dim=1)).numpy()
    assert (rel < LATENT_RTOL).all(), rel
    assert (r.error < PIXEL_MSE).all(), r.error
    np.testing.assert_allclose(r.latent_norm, r.z.norm(dim=1).numpy(), rtol=1e-12)
    assert r.z.shape == z_true.shape and r.restart.shape == (4,) and set(r.restart) <= {0, 1, 2}


def test_reported_error_and_objective_are_those_of_the_returned_latent():
    G = _standin()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1  # not in range of G
    lam = 0.3
    r = invert(G, x, (NZ,), steps=40, restarts=2, lr=0.05, prior_weight=lam, seed=3)
    with torch.no_grad():
        mse = ((G(r.z) - x) ** 2).mean(dim=(1, 2, 3))  # brute force, independent of inversion_loss
        obj = mse + lam * (r.z ** 2).mean(1)
    np.testing.assert_allclose(r.error, mse.numpy(), rtol=1e-12)
    np.testing.assert_allclose(r.objective, obj.numpy(), rtol=1e-12)
    assert (r.error > 1e-3).all()  # a random image is not reproduced: the error says so
    with torch.no_grad():
        L, m = inversion_loss(G, r.z, x, lam)
    torch.testing.assert_close(L, obj)
    torch.testing.assert_close(m, mse)


def test_more_steps_never_increase_the_objective():
    G = _standin()
    x = G(_truth(2, seed=5))
    short = invert(G, x, (NZ,), steps=10, restarts=2, lr=0.05, seed=0)
    long = invert(G, x, (NZ,), steps=60, restarts=2, lr=0.05, seed=0)
    assert (long.objective <= short.objective + 1e-15).all()  # the best iterate is kept, same starts


def test_starts_do_not_depend_on_batching():
    G = _standin()
    x = G(_truth(3, seed=6))
    a = invert(G, x, (NZ,), steps=15, restarts=2, lr=0.05, seed=4, batch_size=6)
    b = invert(G, x, (NZ,), steps=15, restarts=2, lr=0.05, seed=4, batch_size=1)
    torch.testing.assert_close(a.z, b.z, rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(a.restart, b.restart)
    c = invert(G, x, (NZ,), steps=15, restarts=2, lr=0.05, seed=5)
    assert not torch.allclose(a.z, c.z)  # the seed matters


def test_bad_input_is_refused():
    G = _standin()
    x = G(_truth(2))
    with pytest.raises(ValueError, match="training mode"):
        invert(StandIn().double().train(), x, (NZ,), steps=1)
    with pytest.raises(ValueError, match="NaN"):
        invert(G, x * float("nan"), (NZ,), steps=1)
    with pytest.raises(ValueError, match="shape"):
        invert(G, x[:, :, :8], (NZ,), steps=1)
    with pytest.raises(ValueError, match="steps"):
        invert(G, x, (NZ,), steps=0)
    with pytest.raises(ValueError, match="prior_weight"):
        invert(G, x, (NZ,), steps=1, prior_weight=-1.0)
    with pytest.raises(TypeError, match="nn.Module"):
        invert(lambda z: z, x, (NZ,), steps=1)


def test_dcgan_faces_descriptors_do_not_depend_on_the_batch():
    import geom
    from geom.models import load_generator

    try:
        G = load_generator("dcgan-faces")
    except FileNotFoundError as e:  # gan-face-generate not installed (scripts/setup.sh installs it)
        pytest.skip(str(e))
    z = G.sample_latents(3, seed=0)
    together = geom.describe(G, z, k=120, seed=0, batch_size=3, progress=False)
    alone = geom.describe(G, z[1:2], k=120, seed=0, batch_size=1, progress=False)
    np.testing.assert_allclose(alone[["psi", "nu"]].to_numpy()[0], together[["psi", "nu"]].to_numpy()[1], rtol=1e-4)
    assert alone["delta"].iloc[0] == together["delta"].iloc[1]
