"""geom.diffusion against independent references: the closed-form denoiser of Gaussian data (exact eps, v and
x0 of one underlying model), diffusers' DDIMScheduler.step and DDIMInverseScheduler.step loops, for every
prediction_type and the scheduler settings geom honours; refusals of the settings it does not."""
from __future__ import annotations

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, PNDMScheduler

from conftest import tol
from geom import diffusion
from geom.paths import CHECKPOINTS

pytestmark = pytest.mark.usefixtures("one_thread")

PREDICTION_TYPES = ["epsilon", "v_prediction", "sample"]
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


class GaussianDenoiser:
    """A stand-in pipe (what geom.diffusion uses: latent_shape, dtype, device, encode_prompt, scheduler,
    predict_noise) whose denoiser is exact for data ``x0 ~ N(c mu, s^2 I)``, ``c = 1`` for a prompt and ``0``
    for ``""``. With ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` and ``D = a s^2 + 1 - a``:
    ``E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) m) / D``, ``E[x0 | x_t] = m + sqrt(a) s^2 (x_t - sqrt(a) m) / D``,
    ``v = sqrt(a) eps - sqrt(1 - a) x0``; the output is the one of ``prediction_type`` (no division by ``a``,
    so it is exact at zero terminal SNR too). One underlying model in three parametrisations."""
    latent_shape = (2, 3, 3)
    device = torch.device("cpu")
    s = 0.5

    def __init__(self, prediction_type="epsilon", dtype=torch.float32, **config):
        cfg = dict(SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        cfg.update(config)
        self.scheduler = DDIMScheduler(prediction_type=prediction_type, **cfg)
        self.dtype = dtype
        self.mu = torch.linspace(-1, 1, 18, dtype=torch.float64).reshape(self.latent_shape)

    def encode_prompt(self, prompts):
        return torch.tensor([[[0.0 if p == "" else 1.0]] for p in prompts], dtype=self.dtype)

    def predict_noise(self, x, t, emb):
        a = self.scheduler.alphas_cumprod[t.long()].double().view(-1, 1, 1, 1)
        xd = x.double()
        m = emb.double().view(-1, 1, 1, 1) * self.mu
        r = (xd - a.sqrt() * m) / (a * self.s ** 2 + 1 - a)
        eps, x0 = (1 - a).sqrt() * r, m + a.sqrt() * self.s ** 2 * r
        out = {"epsilon": eps, "sample": x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}
        return out[self.scheduler.config.prediction_type].to(x.dtype)


def _x_T(dtype=torch.float32, seed=1):
    return torch.randn(2, *GaussianDenoiser.latent_shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------ conversion
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_to_eps_x0_and_from_eps_closed_form(prediction_type):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    for a in (0.003, 0.4, 0.97):
        x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
        out = {"epsilon": eps, "sample": x0, "v_prediction": a ** 0.5 * eps - (1 - a) ** 0.5 * x0}[prediction_type]
        e, x = diffusion.to_eps_x0(out, x_t, torch.tensor(a, dtype=torch.float64), prediction_type)
        torch.testing.assert_close(e, eps, **tol(torch.float64))
        torch.testing.assert_close(x, x0, **tol(torch.float64))
        torch.testing.assert_close(diffusion.from_eps(eps, x_t, a, prediction_type), out, **tol(torch.float64))
    with pytest.raises(ValueError, match="prediction_type"):
        diffusion.to_eps_x0(eps, eps, 0.5, "x0")


# ------------------------------------------------------------------------------------------ sampling
def _diffusers_loop(pipe, x_T, steps, scale, eta, seed):
    """Reference: diffusers' own DDIMScheduler (from the same config, its own float32 alphas) on the guided
    model output, per-step noise drawn in geom's order. Returns per-step (pred_x0, next latents)."""
    sch = DDIMScheduler.from_config(pipe.scheduler.config)
    sch.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    c, u = pipe.encode_prompt(["a", "b"]), pipe.encode_prompt(["", ""])
    x, out = x_T.clone(), []
    for t in sch.timesteps:
        tt = torch.full((2,), int(t))
        o_c, o_u = pipe.predict_noise(x, tt, c), pipe.predict_noise(x, tt, u)
        noise = torch.randn(x.shape, generator=g, dtype=x.dtype) if eta > 0 else None
        r = sch.step(o_u + scale * (o_c - o_u), t, x, eta=eta, variance_noise=noise)
        out.append((r.pred_original_sample, r.prev_sample))
        x = r.prev_sample
    return out


CONFIGS = {
    "sd": {},
    "trailing": dict(timestep_spacing="trailing", steps_offset=0),
    "linspace_alpha_one": dict(timestep_spacing="linspace", set_alpha_to_one=True),
    "clip_1.5": dict(clip_sample=True, clip_sample_range=1.5),
    "linear_betas": dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, num_train_timesteps=500),
    "zero_snr_trailing": dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", steps_offset=0),
}


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sample_matches_diffusers_step_for_step(prediction_type, config, eta):
    if config == "zero_snr_trailing" and prediction_type == "epsilon":
        pytest.skip("refused (test_refused_scheduler_settings)")
    pipe = GaussianDenoiser(prediction_type, **CONFIGS[config])
    steps = []
    res = diffusion.sample(pipe, ["a", "b"], num_steps=7, guidance_scale=3.0, eta=eta, latents=_x_T(),
                           generator=torch.Generator().manual_seed(5), callback=steps.append)
    ref = _diffusers_loop(pipe, _x_T(), 7, 3.0, eta, 5)
    assert len(steps) == len(ref) == 7
    t32 = tol(torch.float32)
    if config == "zero_snr_trailing" and eta > 0:
        # first step at a_t = 0: 1 - a_prev - sigma^2 = 0 exactly; diffusers forms it from float32 alphas, so it
        # is +-1 ulp and its square root ~sqrt(6e-8) = 2.4e-4 multiplies eps. Check that step against the closed
        # form sqrt(a_prev) x0 + sqrt(1 - a_prev) noise, and diffusers at sqrt(ulp) after it.
        s = steps[0]
        a_p = pipe.scheduler.alphas_cumprod[s.prev_timestep].double()
        noise = torch.randn(_x_T().shape, generator=torch.Generator().manual_seed(5))
        exact = a_p.sqrt() * s.pred_x0.double() + (1 - a_p).sqrt() * noise.double()
        torch.testing.assert_close(s.next_latents, exact.float(), **t32)
        t32 = dict(rtol=1e-2, atol=2e-3)
    for s, (x0, nxt) in zip(steps, ref):
        torch.testing.assert_close(s.pred_x0, x0, **t32)
        torch.testing.assert_close(s.next_latents, nxt, **t32)
    torch.testing.assert_close(res.latents, ref[-1][1], **t32)
    if CONFIGS[config].get("clip_sample"):
        assert max(float(s.pred_x0.abs().max()) for s in steps) == pytest.approx(1.5)  # clipping was active


def test_sample_matches_diffusers_with_the_tiny_ldm_config():
    """The shipped tiny-ldm scheduler config as it is (epsilon) and with each other prediction type."""
    cfg = dict(DDIMScheduler.from_pretrained(CHECKPOINTS / "tiny-ldm", subfolder="scheduler").config)
    for pt in PREDICTION_TYPES:
        pipe = GaussianDenoiser()
        pipe.scheduler = DDIMScheduler.from_config(cfg, prediction_type=pt)
        res = diffusion.sample(pipe, ["a", "b"], num_steps=10, guidance_scale=7.5, latents=_x_T())
        ref = _diffusers_loop(pipe, _x_T(), 10, 7.5, 0.0, 0)
        torch.testing.assert_close(res.latents, ref[-1][1], **tol(torch.float32))


def test_one_model_in_three_parametrisations_samples_alike():
    """Same underlying model: the same latents, pred_x0 and noise predictions (the callback's eps are the
    outputs converted to eps) whatever the prediction type. Exact model: x0 -> data mean at the end."""
    runs = {}
    for pt in PREDICTION_TYPES:
        steps = []
        res = diffusion.sample(GaussianDenoiser(pt, torch.float64), ["a", "b"], num_steps=10, guidance_scale=1.0,
                               latents=_x_T(torch.float64), callback=steps.append)
        runs[pt] = (res, steps)
    res, steps = runs["epsilon"]
    for pt in ("v_prediction", "sample"):
        torch.testing.assert_close(runs[pt][0].latents, res.latents, rtol=1e-9, atol=1e-10)
        for s, r in zip(runs[pt][1], steps):
            for f in ("eps_cond", "eps_uncond", "eps", "pred_x0", "next_latents"):
                torch.testing.assert_close(getattr(s, f), getattr(r, f), rtol=1e-9, atol=1e-10)


def test_sample_refuses_eta_outside_unit_interval():
    for eta in (-0.1, 1.5):
        with pytest.raises(ValueError, match="eta"):
            diffusion.sample(GaussianDenoiser(), ["a"], num_steps=2, eta=eta)


# ------------------------------------------------------------------------------------------ inversion
def _diffusers_inverse_loop(pipe, x0, steps, scale):
    inv = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    inv.set_timesteps(steps)
    c, u, x = pipe.encode_prompt(["a", "b"]), pipe.encode_prompt(["", ""]), x0.clone()
    for t in inv.timesteps:
        tt = torch.full((2,), int(t))
        o_c, o_u = pipe.predict_noise(x, tt, c), pipe.predict_noise(x, tt, u)
        x = inv.step(o_u + scale * (o_c - o_u), t, x).prev_sample
    return x


@pytest.mark.parametrize("config", ["sd", "trailing", "clip_1.5"])
def test_invert_matches_diffusers_inverse_scheduler_for_epsilon(config):
    pipe = GaussianDenoiser("epsilon", **CONFIGS[config])
    x0 = 1.5 * _x_T(seed=2)
    got = diffusion.invert(pipe, x0, ["a", "b"], num_steps=8, guidance_scale=2.0)
    ref = _diffusers_inverse_loop(pipe, x0, 8, 2.0)
    torch.testing.assert_close(got, ref, **tol(torch.float32))


class XIndependentNoise(GaussianDenoiser):
    """eps(x, t, c) = sin(t / 100) pattern + 0.01 c, independent of x, written in any parametrisation:
    inversion is then the exact inverse of eta = 0 sampling."""

    def predict_noise(self, x, t, emb):
        a = self.scheduler.alphas_cumprod[t.long()].double().view(-1, 1, 1, 1)
        eps = torch.sin(t.double() / 100).view(-1, 1, 1, 1) * self.mu + 0.01 * emb.double().view(-1, 1, 1, 1)
        out = diffusion.from_eps(eps, x.double(), a, self.scheduler.config.prediction_type)
        return out.to(x.dtype)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("config", ["sd", "trailing", "linspace_alpha_one"])
def test_invert_then_sample_round_trips(prediction_type, config):
    pipe = XIndependentNoise(prediction_type, torch.float64, **CONFIGS[config])
    x0 = _x_T(torch.float64, seed=4)
    xT = diffusion.invert(pipe, x0, ["a", "b"], num_steps=12, guidance_scale=3.0)
    back = diffusion.sample(pipe, ["a", "b"], num_steps=12, guidance_scale=3.0, latents=xT).latents
    torch.testing.assert_close(back, x0, **tol(torch.float64))
    assert (xT - x0).norm() > 0.5 * x0.norm()  # the inversion moved the latents


def test_invert_is_parametrisation_invariant_and_converges():
    """One underlying (x-dependent) model in three parametrisations inverts alike; the round trip error of the
    exact Gaussian denoiser shrinks with the number of steps."""
    x0 = _x_T(torch.float64, seed=6)
    ref = diffusion.invert(GaussianDenoiser("epsilon", torch.float64), x0, ["a", "b"], num_steps=10)
    for pt in ("v_prediction", "sample"):
        got = diffusion.invert(GaussianDenoiser(pt, torch.float64), x0, ["a", "b"], num_steps=10)
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-10)
    pipe = GaussianDenoiser("v_prediction", torch.float64)
    err = {}
    for n in (10, 100):
        xT = diffusion.invert(pipe, x0, ["a", "b"], num_steps=n)
        err[n] = float((diffusion.sample(pipe, ["a", "b"], num_steps=n, guidance_scale=1.0, latents=xT).latents
                        - x0).norm() / x0.norm())
    assert err[100] < 0.3 * err[10], err


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("setting,match", [
    (dict(thresholding=True), "thresholding=True"),
    (dict(prediction_type="x0"), "prediction_type='x0'"),
    (dict(timestep_spacing="karras"), "timestep_spacing='karras'"),
    (dict(rescale_betas_zero_snr=True), "rescale_betas_zero_snr=True with prediction_type='epsilon'"),
])
def test_refused_scheduler_settings(setting, match):
    pipe = GaussianDenoiser()
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **setting)
    with pytest.raises(ValueError, match=match):
        diffusion.check_scheduler(pipe.scheduler)
    with pytest.raises(ValueError, match=match):
        diffusion.sample(pipe, ["a"], num_steps=2)
    with pytest.raises(ValueError, match=match):
        diffusion.invert(pipe, _x_T()[:1], ["a"], num_steps=2)


def test_refuses_a_scheduler_that_is_not_ddim():
    pipe = GaussianDenoiser()
    pipe.scheduler = PNDMScheduler(**SD_SCHEDULE)
    with pytest.raises(ValueError, match="DDIMScheduler.from_config"):
        diffusion.sample(pipe, ["a"], num_steps=2)
