"""Reward-guided DDIM (Humayun et al. Sec. 4): exactness at rho = 0, the sign and size of the guidance
term against the closed-form DDIM update, the reward model and its data, and input errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tol
from geom import diffusion, guidance
from geom.models.pipeline import LatentDiffusion
from geom.models.tiny_ldm import PromptEncoder, TrainConfig, build_scheduler, build_unet, build_vae


@pytest.fixture(scope="module")
def pipe():
    """A randomly initialised pipeline of tiny-ldm's architecture (16 px images, 4 x 4 latents)."""
    torch.manual_seed(0)  # diffusers initialises from the global RNG
    cfg = TrainConfig(size=16, vae_channels=(8, 16, 16), unet_channels=(16, 32), text_hidden=16)
    enc = PromptEncoder(vocab=["red", "blue", "circle", "square"], max_length=4, hidden_size=16, num_layers=1,
                        num_heads=2, ff_size=16)
    p = LatentDiffusion(kind="tiny-ldm", path=Path("."), vae=build_vae(cfg).eval(),
                        unet=build_unet(cfg, latent_size=4).eval(), text_encoder=enc.eval(), tokenizer=None,
                        scheduler=build_scheduler())
    for m in (p.vae, p.unet, p.text_encoder):
        m.requires_grad_(False)
    return p


PROMPTS = ["red circle", "blue square", ""]


def mean_reward(x, t):
    return x.flatten(1).mean(1)


def test_rho_zero_reproduces_unguided_sampling_exactly(pipe):
    ref = diffusion.sample(pipe, PROMPTS, num_steps=4, guidance_scale=3.0, generator=torch.Generator().manual_seed(1))
    out = guidance.guided_sample(pipe, PROMPTS, mean_reward, rho=0.0, num_steps=4, guidance_scale=3.0,
                                 generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.latents, ref.latents) and torch.equal(out.initial_latents, ref.initial_latents)
    # eta > 0 draws the same per-step noise as the unguided sampler
    ref = diffusion.sample(pipe, PROMPTS, num_steps=3, eta=1.0, generator=torch.Generator().manual_seed(2))
    out = guidance.guided_sample(pipe, PROMPTS, mean_reward, rho=0, num_steps=3, eta=1.0,
                                 generator=torch.Generator().manual_seed(2))
    assert torch.equal(out.latents, ref.latents)


@pytest.mark.kernels
def test_one_step_guidance_matches_closed_form(pipe):
    """r = mean(x): grad = 1/E everywhere. One DDIM step from t to t_prev changes by
    (sqrt(1 - a_prev) - sqrt(a_prev) sqrt(1 - a_t) / sqrt(a_t)) * (-rho sqrt(1 - a_t) / E)."""
    x_T = torch.randn(3, *pipe.latent_shape, generator=torch.Generator().manual_seed(3))
    base = guidance.guided_sample(pipe, PROMPTS, mean_reward, rho=0.0, num_steps=1, latents=x_T).latents
    E = x_T[0].numel()
    t = int(diffusion.ddim_timesteps(pipe.scheduler, 1)[0])
    a_t = pipe.scheduler.alphas_cumprod[t].double()
    a_p = pipe.scheduler.final_alpha_cumprod.double()
    coef = (1 - a_p).sqrt() - a_p.sqrt() * (1 - a_t).sqrt() / a_t.sqrt()
    for rho in (-1.5, 1.0):
        out = guidance.guided_sample(pipe, PROMPTS, mean_reward, rho=rho, num_steps=1, latents=x_T).latents
        expected = float(coef * (-rho * (1 - a_t).sqrt() / E))
        # float32 latents of magnitude ~1: the difference carries their rounding (~3e-7), the shift is ~1e-5
        torch.testing.assert_close(out - base, torch.full_like(base, expected), **tol(base.dtype))


def test_guidance_moves_samples_towards_the_reward(pipe):
    """Over a full trajectory, positive rho raises a known reward of x and negative rho lowers it."""
    x_T = torch.randn(3, *pipe.latent_shape, generator=torch.Generator().manual_seed(4))
    means = {rho: guidance.guided_sample(pipe, PROMPTS, mean_reward, rho=rho, num_steps=5,
                                         latents=x_T).latents.flatten(1).mean(1)
             for rho in (-20.0, 0.0, 20.0)}
    assert (means[20.0] > means[0.0]).all() and (means[0.0] > means[-20.0]).all()


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_guidance_is_the_same_for_eps_v_and_x0_models(eta):
    """One underlying model (the exact denoiser of Gaussian data) written as an eps, v or x0 predictor: the guidance
    shift acts on the noise prediction, so guided samples (and the callback's eps) agree; the guidance moved them."""
    from test_diffusion import GaussianDenoiser
    x_T = torch.randn(2, *GaussianDenoiser.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = {}
    for pt in ("epsilon", "v_prediction", "sample"):
        steps = []
        runs[pt] = (guidance.guided_sample(GaussianDenoiser(pt, torch.float64), ["a", "b"], mean_reward, rho=30.0,
                                           num_steps=6, guidance_scale=2.0, eta=eta, latents=x_T, callback=steps.append,
                                           generator=torch.Generator().manual_seed(1)).latents, steps)
    for pt in ("v_prediction", "sample"):
        torch.testing.assert_close(runs[pt][0], runs["epsilon"][0], rtol=1e-9, atol=1e-10)
        for a, b in zip(runs[pt][1], runs["epsilon"][1]):
            torch.testing.assert_close(a.eps, b.eps, rtol=1e-9, atol=1e-10)
    plain = diffusion.sample(GaussianDenoiser("v_prediction", torch.float64), ["a", "b"], num_steps=6, guidance_scale=2.0,
                             eta=eta, latents=x_T, generator=torch.Generator().manual_seed(1)).latents
    assert (runs["v_prediction"][0].flatten(1).mean(1) > plain.flatten(1).mean(1)).all()


def test_reward_model_for_another_schedule_length_is_refused(pipe):
    torch.manual_seed(0)
    model = guidance.RewardModel(n_bins=5, width=16, num_train_timesteps=500).eval()
    with pytest.raises(ValueError, match="num_train_timesteps=500.*1000"):
        guidance.guided_sample(pipe, PROMPTS, model, rho=1.0, num_steps=1)


def test_reward_model_guidance_gradient_direction(pipe):
    """With a RewardModel the step follows +grad of its expected bin: reward increases for rho > 0 at t."""
    torch.manual_seed(0)
    model = guidance.RewardModel(in_channels=4, n_bins=5, width=16).eval()
    x = torch.randn(4, *pipe.latent_shape, generator=torch.Generator().manual_seed(5))
    g = guidance.reward_gradient(lambda z, t: guidance.reward(model, z, t), x, 500)
    r0 = guidance.reward(model, x, 500)
    r1 = guidance.reward(model, x + 1e-2 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1), 500)
    assert (r1 > r0).all()


def test_psi_bins_and_reward_data(pipe):
    psi = torch.tensor([0.0, 1.0, 2.5, 4.99, 5.0, 3.0], dtype=torch.float64)
    edges, labels = guidance.psi_bins(psi, 5)
    torch.testing.assert_close(edges, torch.linspace(0, 5, 6, dtype=torch.float64))
    assert labels.tolist() == [0, 1, 2, 4, 4, 3]
    with pytest.raises(ValueError, match="no spread"):
        guidance.psi_bins(torch.ones(3), 5)
    x0 = torch.full((2000, 4, 1, 1), 2.0)
    data = guidance.make_reward_data(x0, torch.zeros(2000, dtype=torch.long), pipe.scheduler, timesteps_per_latent=2,
                                     seed=0)
    assert data["x_t"].shape == (4000, 4, 1, 1) and data["y"].shape == (4000,) and data["t"].max() < 1000
    a = pipe.scheduler.alphas_cumprod[data["t"]].view(-1, 1, 1, 1)
    z = (data["x_t"] - a.sqrt() * 2.0) / (1 - a).sqrt()  # should be standard normal
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05


@pytest.mark.slow
def test_reward_model_learns_a_separable_label():
    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, (400,), generator=g)
    x0 = 0.5 * torch.randn(400, 4, 4, 4, generator=g) + (2.0 * sign - 1).view(-1, 1, 1, 1)
    labels = sign * 4  # bins 0 and 4: the sign of the clean latent's mean
    from diffusers import DDIMScheduler
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    data = guidance.make_reward_data(x0, labels, sch, timesteps_per_latent=4, seed=1)
    model, hist = guidance.train_reward_model(data, n_bins=5, steps=150, batch_size=64, width=16, seed=0,
                                              progress=False)
    assert hist["val_accuracy_by_t"][0] > 0.8  # low noise: clearly above chance (0.5)
    assert hist["loss"][-1] < hist["loss"][0]


def test_bad_inputs(pipe):
    for bad in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(ValueError, match="rho"):
            guidance.guided_sample(pipe, PROMPTS, mean_reward, rho=bad, num_steps=1)
    torch.manual_seed(0)
    model = guidance.RewardModel(n_bins=5, width=16)
    x = torch.zeros(2, 4, 4, 4)
    for t in (-1, 1000, torch.tensor([1, 2, 3])):
        with pytest.raises(ValueError, match="t"):
            model(x, t)
    with pytest.raises(ValueError, match="kind"):
        guidance.reward(model, x, 10, kind="max")
    with pytest.raises(ValueError, match="num_steps"):
        guidance.guided_sample(pipe, PROMPTS, mean_reward, rho=1.0, num_steps=0)
