"""geom.reconstruction: the partial-diffusion reconstruction error on cases with a known answer (t = 0; data that
is one point, whose exact denoiser reconstructs it from any level), batch independence, seeds, decode, the
multi-scale score and errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geom.diffusion import ddim_step
from geom.reconstruction import ddim_levels, multiscale_score, partial_diffusion_error
from conftest import tol, tol_scaled

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
T = 200
ACP = torch.cumprod(1 - torch.linspace(1e-4, 0.05, T, dtype=F64), 0)


def point_mass_eps(x_star):
    """The exact noise prediction when the data is the one point x*: eps = (x_t - sqrt(a) x*) / sqrt(1 - a)."""
    def eps(x, t):
        a = ACP[t[0].item()].item()
        return (x - math.sqrt(a) * x_star) / math.sqrt(1 - a)
    return eps


def mlp_eps(seed=0, d=5):
    g = torch.Generator().manual_seed(seed)
    W1, W2 = torch.randn(16, d + 1, generator=g, dtype=F64) / 2, torch.randn(d, 16, generator=g, dtype=F64) / 4

    def eps(x, t):
        return torch.tanh(torch.cat([x, (t.to(F64) / T)[:, None]], 1) @ W1.T) @ W2.T + 0.2 * x
    return eps


def test_t0_is_no_noise_and_gives_zero_error():
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = partial_diffusion_error(mlp_eps(), x, [0], ACP)
    assert torch.equal(r.errors, torch.zeros(3, 1, dtype=F64))
    assert torch.equal(r.reconstructions[:, 0], x)
    assert ddim_levels(0, 10) == [0]


def test_the_exact_denoiser_of_one_point_reconstructs_it_from_every_level():
    """Data = the point x*: its exact denoiser predicts x0 = x* at every level, so DDIM returns x* from any noised
    input, with any number of steps: the error is mean((x - x*)^2) exactly (0 for x = x*)."""
    g = torch.Generator().manual_seed(1)
    x_star = torch.randn(5, generator=g, dtype=F64)
    x = torch.cat([x_star[None], torch.randn(3, 5, generator=g, dtype=F64)])
    for n in (1, 4, 50):
        r = partial_diffusion_error(point_mass_eps(x_star), x, [1, 20, 100, 200], ACP, num_steps=n, repeats=2)
        want = ((x - x_star) ** 2).mean(1)[:, None].expand(4, 4)
        torch.testing.assert_close(r.errors, want, **tol_scaled(F64, want))
        torch.testing.assert_close(r.reconstructions, x_star.expand(4, 4, 5), **tol(F64))


def test_one_ddim_step_and_the_level_list():
    """num_steps = 1 from level t is one geom.diffusion.ddim_step from a_t to a = 1 on the noised point."""
    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    r = partial_diffusion_error(mlp_eps(), x, [50], ACP, num_steps=1, seed=3)
    from geom import seeds
    gen = torch.Generator().manual_seed(int(seeds.spawn(3, "ddos.noise").generate_state(1)[0]))
    e = torch.randn(5, generator=gen, dtype=F64)
    a = float(ACP[49])
    xt = math.sqrt(a) * x + math.sqrt(1 - a) * e
    ref = ddim_step(mlp_eps()(xt, torch.full((2,), 49)), xt, a, 1.0, "epsilon")[0]
    torch.testing.assert_close(r.reconstructions[:, 0], ref, **tol(F64))
    assert ddim_levels(7, 3) == [7, 5, 2, 0] and ddim_levels(3, 10) == [3, 2, 1, 0]


def test_a_point_does_not_depend_on_its_batch_and_seeds_are_explicit():
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(4), dtype=F64)
    kw = dict(num_steps=5, repeats=3, seed=1)
    whole = partial_diffusion_error(mlp_eps(), x, [10, 100], ACP, **kw)
    alone = torch.cat([partial_diffusion_error(mlp_eps(), x[i:i + 1], [10, 100], ACP, **kw).errors for i in range(4)])
    torch.testing.assert_close(alone, whole.errors, **tol_scaled(F64, whole.errors))
    assert torch.equal(whole.errors, partial_diffusion_error(mlp_eps(), x, [10, 100], ACP, **kw).errors)
    other = partial_diffusion_error(mlp_eps(), x, [10, 100], ACP, num_steps=5, repeats=3, seed=2).errors
    assert not torch.equal(whole.errors, other)
    assert (whole.stderr > 0).all() and (whole.errors[:, 1] > whole.errors[:, 0]).all()
    assert list(whole.columns()) == ["ddos_t10", "ddos_t100"]


def test_decode_measures_the_error_in_image_units():
    """With a linear decoder W the error is mean((W x_hat - W x)^2), from the returned reconstruction."""
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    W = torch.randn(7, 5, generator=torch.Generator().manual_seed(6), dtype=F64)
    r = partial_diffusion_error(mlp_eps(), x, [30], ACP, num_steps=4, decode=lambda z: z @ W.T)
    want = ((r.reconstructions[:, 0] @ W.T - x @ W.T) ** 2).mean(1)
    torch.testing.assert_close(r.errors[:, 0], want, **tol(F64))


def test_multiscale_score_is_the_mean_z_score_against_the_reference():
    rng = np.random.default_rng(0)
    ref, E = rng.gamma(2.0, size=(50, 3)), rng.gamma(2.0, size=(4, 3))
    want = np.mean([(E[:, j] - ref[:, j].mean()) / ref[:, j].std(ddof=1) for j in range(3)], axis=0)
    np.testing.assert_allclose(multiscale_score(E, ref), want, rtol=1e-12)
    with pytest.raises(ValueError, match="constant"):
        multiscale_score(np.c_[E, np.zeros(4)], np.c_[ref, np.zeros(50)])
    with pytest.raises(ValueError, match="same levels"):
        multiscale_score(E, ref[:, :2])
    with pytest.raises(ValueError, match="at least 2"):
        multiscale_score(E, ref[:1])


def test_errors_name_the_problem():
    x = torch.zeros(2, 5, dtype=F64)
    with pytest.raises(ValueError, match=r"steps must be whole"):
        partial_diffusion_error(mlp_eps(), x, [T + 1], ACP)
    with pytest.raises(ValueError, match=r"steps must be whole"):
        partial_diffusion_error(mlp_eps(), x, [2.5], ACP)
    with pytest.raises(ValueError, match="num_steps must be"):
        partial_diffusion_error(mlp_eps(), x, [5], ACP, num_steps=0)
    with pytest.raises(ValueError, match="discrete schedule"):
        partial_diffusion_error(mlp_eps(), x, [5])
    with pytest.raises(ValueError, match="not finite"):
        partial_diffusion_error(lambda v, t: v * math.nan, x, [5], ACP)
