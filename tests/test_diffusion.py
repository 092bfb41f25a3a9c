"""geom.diffusion against independent references: the closed-form denoiser of Gaussian data (exact eps, v and
x0 of one underlying model), a float64 implementation of Song et al. Eq. 12 along the scheduler's own time list
(every timestep_spacing, step counts that do not divide num_train_timesteps, zero terminal SNR), diffusers'
DDIMScheduler.step and DDIMInverseScheduler.step loops where the list is evenly spaced (the only case their
t_prev = t - T // num_steps is the list's next time), for every prediction_type and the scheduler settings geom
honours; refusals of the settings and time lists it does not."""
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
    """Reference: diffusers' own DDIMScheduler (from the same config) on the guided model output, per-step noise
    drawn in geom's order; for a float64 pipe its alphas are cast to float64 (same values, diffusers' arithmetic)
    so that it is a float64 reference. Returns per-step (pred_x0, next latents)."""
    sch = DDIMScheduler.from_config(pipe.scheduler.config)
    if x_T.dtype == torch.float64:
        sch.alphas_cumprod = sch.alphas_cumprod.double()
        sch.final_alpha_cumprod = torch.as_tensor(sch.final_alpha_cumprod, dtype=torch.float64)
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
# step counts whose time list is evenly spaced by T // num_steps and ends below T // num_steps, the lists on which
# diffusers' step (t_prev = t - T // num_steps) is DDIM along the list: "leading" any count, "trailing" the
# divisors of T, "linspace" only 1 and T (test_evenly_spaced_step_counts)
EVEN_STEPS = {"sd": 7, "trailing": 8, "linspace_alpha_one": 1000, "clip_1.5": 7, "linear_betas": 7,
              "zero_snr_trailing": 8}


def _evenly_spaced(scheduler, steps):
    scheduler.set_timesteps(steps)
    ts, ratio = scheduler.timesteps.tolist(), scheduler.config.num_train_timesteps // steps
    return all(a - b == ratio for a, b in zip(ts, ts[1:])) and ts[-1] - ratio < 0


def test_evenly_spaced_step_counts():
    for config, n in EVEN_STEPS.items():
        assert _evenly_spaced(GaussianDenoiser(**CONFIGS[config]).scheduler, n), config
    assert not _evenly_spaced(GaussianDenoiser(**CONFIGS["trailing"]).scheduler, 7)
    assert not _evenly_spaced(GaussianDenoiser(**CONFIGS["linspace_alpha_one"]).scheduler, 7)


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sample_matches_diffusers_step_for_step(prediction_type, config, eta, dtype):
    """On evenly spaced lists geom's step is diffusers' DDIMScheduler.step. Except at zero terminal SNR with
    eta = 1: there 1 - a_prev - sigma^2 = 0 exactly at the first step (a_t = 0), diffusers forms it from float32
    alphas, on some CPUs it rounds below 0 (-6e-8) and diffusers' loop is NaN from that step on; the reference is
    then the float64 closed form of Eq. 12 (_eq12_reference), which cannot fail (diffusers in float64 rounds
    below 0 too, at -1.1e-16). 1000 "linspace" steps only in float64 (in float32 the two accumulate ~1e-6 of
    rounding apart over 1000 steps)."""
    if config == "zero_snr_trailing" and prediction_type == "epsilon":
        pytest.skip("refused (test_refused_scheduler_settings)")
    n = EVEN_STEPS[config]
    if n > 100 and dtype == torch.float32:
        pytest.skip("1000 steps compared in float64")
    pipe = GaussianDenoiser(prediction_type, dtype, **CONFIGS[config])
    steps = []
    res = diffusion.sample(pipe, ["a", "b"], num_steps=n, guidance_scale=3.0, eta=eta, latents=_x_T(dtype),
                           generator=torch.Generator().manual_seed(5), callback=steps.append)
    if config == "zero_snr_trailing" and eta > 0:
        ref = [(x0, nxt) for _, _, x0, nxt in _eq12_reference(pipe, _x_T(dtype), n, 3.0, eta, 5)]
    else:
        ref = _diffusers_loop(pipe, _x_T(dtype), n, 3.0, eta, 5)
    assert len(steps) == len(ref) == n
    assert torch.isfinite(res.latents).all()
    t = tol(dtype)
    for s, (x0, nxt) in zip(steps, ref):
        torch.testing.assert_close(s.pred_x0, x0.to(dtype), **t)
        torch.testing.assert_close(s.next_latents, nxt.to(dtype), **t)
    torch.testing.assert_close(res.latents, ref[-1][1].to(dtype), **t)
    if CONFIGS[config].get("clip_sample"):
        assert max(float(s.pred_x0.abs().max()) for s in steps) == pytest.approx(1.5)  # clipping was active


# ------------------------------------------------------------------------------------------ Eq. 12 on the time list
def _eq12_reference(pipe, x_T, steps, scale, eta, seed):
    """Independent float64 DDIM (Song et al. 2021, Eq. 12 and 16) along the scheduler's own time list
    ``set_timesteps(steps)``: from each time to the NEXT one, the last to ``final_alpha_cumprod`` (1 with
    set_alpha_to_one, else alphas_cumprod[0]); the model's output converted with the formulas written here;
    per-step noise drawn in geom's order. ``1 - a_prev - sigma^2`` in the closed form
    ``(1 - a_prev) ((1 - eta^2) + eta^2 a_t (1 - a_prev) / (a_prev (1 - a_t)))``, a sum of non-negative terms that
    cannot round below 0. Returns per step ``(t, t_prev, pred_x0, next latents)``, float64."""
    cfg = pipe.scheduler.config
    sch = DDIMScheduler.from_config(cfg)
    sch.set_timesteps(steps)
    ts = [int(t) for t in sch.timesteps]
    acp = sch.alphas_cumprod.double()
    final = torch.tensor(1.0 if cfg.set_alpha_to_one else float(acp[0]), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    c, u = pipe.encode_prompt(["a", "b"]).double(), pipe.encode_prompt(["", ""]).double()
    x, out = x_T.double(), []
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        a, ap = acp[t], (acp[t_prev] if t_prev >= 0 else final)
        tt = torch.full((2,), t)
        o_c, o_u = pipe.predict_noise(x, tt, c), pipe.predict_noise(x, tt, u)
        o = o_u + scale * (o_c - o_u)
        if cfg.prediction_type == "epsilon":
            eps, x0 = o, (x - (1 - a).sqrt() * o) / a.sqrt()
        elif cfg.prediction_type == "v_prediction":
            eps, x0 = a.sqrt() * o + (1 - a).sqrt() * x, a.sqrt() * x - (1 - a).sqrt() * o
        else:
            eps, x0 = (x - a.sqrt() * o) / (1 - a).sqrt(), o
        if cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        sigma2 = eta ** 2 * (1 - ap) * (ap - a) / (ap * (1 - a))
        dir2 = (1 - ap) * ((1 - eta ** 2) + eta ** 2 * a * (1 - ap) / (ap * (1 - a)))
        x = ap.sqrt() * x0 + dir2.sqrt() * eps
        if eta > 0:
            x = x + sigma2.sqrt() * torch.randn(x.shape, generator=g, dtype=pipe.dtype).double()
        out.append((t, t_prev, x0, x))
    return out


SPACINGS = {
    "leading": dict(timestep_spacing="leading", steps_offset=1),   # Stable Diffusion's
    "trailing": dict(timestep_spacing="trailing", steps_offset=0, set_alpha_to_one=True),
    "linspace": dict(timestep_spacing="linspace", steps_offset=0),
}
NOISE = {"sd": {}, "zero_snr": dict(rescale_betas_zero_snr=True)}


@pytest.mark.parametrize("num_steps,dtype", [(1, torch.float32), (7, torch.float32), (30, torch.float32),
                                             (50, torch.float32), (7, torch.float64),
                                             pytest.param(999, torch.float64, marks=pytest.mark.slow)],
                         ids=["1-float32", "7-float32", "30-float32", "50-float32", "7-float64", "999-float64"])
@pytest.mark.parametrize("noise", list(NOISE))
@pytest.mark.parametrize("spacing", list(SPACINGS))
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sample_is_eq12_along_the_scheduler_time_list(eta, prediction_type, spacing, noise, num_steps, dtype):
    """Every spacing, step counts that do and do not divide T = 1000, zero terminal SNR: geom's sampler step for
    step against the float64 Eq. 12 reference (times, pred_x0, next latents) at the tolerance of its dtype (999
    steps in float64: float32 rounding accumulates to ~1e-6 over 999 steps, above the float32 tolerance)."""
    if noise == "zero_snr" and prediction_type == "epsilon":
        pytest.skip("refused (test_refused_scheduler_settings)")
    pipe = GaussianDenoiser(prediction_type, dtype, **SPACINGS[spacing], **NOISE[noise])
    steps = []
    res = diffusion.sample(pipe, ["a", "b"], num_steps=num_steps, guidance_scale=3.0, eta=eta, latents=_x_T(dtype),
                           generator=torch.Generator().manual_seed(5), callback=steps.append)
    ref = _eq12_reference(pipe, _x_T(dtype), num_steps, 3.0, eta, 5)
    assert [(s.timestep, s.prev_timestep) for s in steps] == [(t, tp) for t, tp, _, _ in ref]
    assert torch.isfinite(res.latents).all()
    t = tol(dtype)
    for s, (_, _, x0, nxt) in zip(steps, ref):
        torch.testing.assert_close(s.pred_x0, x0.to(dtype), **t)
        torch.testing.assert_close(s.next_latents, nxt.to(dtype), **t)
    torch.testing.assert_close(res.latents, ref[-1][3].to(dtype), **t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_ddim_step_at_zero_snr_where_the_direction_rounds_below_zero(dtype):
    """At a_t = 0, eta = 1: sigma^2 = 1 - a_prev, so x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) noise exactly.
    Found by search: pairs (999, t_prev) of the zero-SNR schedule where 1 - a_prev - sigma^2 as written (diffusers'
    step) rounds below 0 in float64 (its square root is NaN); geom's step there is finite and the closed form."""
    acp = GaussianDenoiser("v_prediction", **NOISE["zero_snr"]).scheduler.alphas_cumprod.double()
    assert float(acp[999]) == 0.0
    a_t = acp[999]
    neg = [tp for tp in range(1, 999)
           if float(1 - acp[tp] - (((1 - acp[tp]) / (1 - a_t) * (1 - a_t / acp[tp])) ** 0.5) ** 2) < 0]
    assert neg, "no pair rounds below 0: the case is not exercised"
    g = torch.Generator().manual_seed(3)
    out, x, noise = (torch.randn(2, 4, 3, 3, generator=g, dtype=dtype) for _ in range(3))
    for tp in neg[:20]:
        x_prev, x0 = diffusion.ddim_step(out, x, a_t, acp[tp], "v_prediction", eta=1.0, noise=noise)
        assert torch.isfinite(x_prev).all()
        torch.testing.assert_close(x0, -out)  # v at a_t = 0: x0 = sqrt(a) x - sqrt(1 - a) v = -v
        exact = acp[tp].sqrt() * x0.double() + (1 - acp[tp]).sqrt() * noise.double()
        torch.testing.assert_close(x_prev, exact.to(dtype), **tol(dtype))
    with pytest.raises(ValueError, match="needs noise"):
        diffusion.ddim_step(out, x, a_t, acp[neg[0]], "v_prediction", eta=1.0)


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


def _inversion_reference(pipe, x0, steps, scale):
    """Independent float64 DDIM inversion along the sampler's time list reversed: x starts at the final level
    (final_alpha_cumprod) and goes up to each time t of the list in ascending order from the level t_prev below
    it, with eps of the model at (x, t): x <- sqrt(a_t) (x - sqrt(1 - a_prev) eps) / sqrt(a_prev)
    + sqrt(1 - a_t) eps. Returns per step (t, t_prev, x after the step)."""
    cfg = pipe.scheduler.config
    sch = DDIMScheduler.from_config(cfg)
    sch.set_timesteps(steps)
    ts = [int(t) for t in sch.timesteps][::-1]
    acp = sch.alphas_cumprod.double()
    final = torch.tensor(1.0 if cfg.set_alpha_to_one else float(acp[0]), dtype=torch.float64)
    c, u, x, out = pipe.encode_prompt(["a", "b"]).double(), pipe.encode_prompt(["", ""]).double(), x0.double(), []
    for i, t in enumerate(ts):
        t_prev = ts[i - 1] if i > 0 else -1
        a, ap = acp[t], (acp[t_prev] if t_prev >= 0 else final)
        tt = torch.full((2,), t)
        o_c, o_u = pipe.predict_noise(x, tt, c), pipe.predict_noise(x, tt, u)
        o = o_u + scale * (o_c - o_u)
        eps = {"epsilon": o, "v_prediction": a.sqrt() * o + (1 - a).sqrt() * x,
               "sample": (x - a.sqrt() * o) / (1 - a).sqrt()}[cfg.prediction_type]
        x = a.sqrt() * (x - (1 - ap).sqrt() * eps) / ap.sqrt() + (1 - a).sqrt() * eps
        out.append((t, t_prev, x))
    return out


@pytest.mark.parametrize("num_steps", [1, 7, 30, 50])
@pytest.mark.parametrize("spacing", list(SPACINGS))
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_invert_is_the_time_list_reversed(prediction_type, spacing, num_steps):
    """Inversion steps through the sampler's own (t_prev, t) pairs in reverse order (callback times checked against
    the sampler's), step for step equal to the float64 reference at the float32 tolerance."""
    pipe = GaussianDenoiser(prediction_type, **SPACINGS[spacing])
    fwd, inv = [], []
    diffusion.sample(pipe, ["a", "b"], num_steps=num_steps, guidance_scale=2.0, latents=_x_T(), callback=fwd.append)
    x0 = 1.5 * _x_T(seed=2)
    got = diffusion.invert(pipe, x0, ["a", "b"], num_steps=num_steps, guidance_scale=2.0, callback=inv.append)
    ref = _inversion_reference(pipe, x0, num_steps, 2.0)
    pairs = [(s.timestep, s.prev_timestep) for s in inv]
    assert pairs == [(s.timestep, s.prev_timestep) for s in fwd][::-1] == [(t, tp) for t, tp, _ in ref]
    for s, (_, _, x) in zip(inv, ref):
        torch.testing.assert_close(s.next_latents, x.float(), **tol(torch.float32))
    torch.testing.assert_close(got, ref[-1][2].float(), **tol(torch.float32))


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
@pytest.mark.parametrize("num_steps", [12, 30])
def test_invert_then_sample_round_trips(prediction_type, config, num_steps):
    pipe = XIndependentNoise(prediction_type, torch.float64, **CONFIGS[config])
    x0 = _x_T(torch.float64, seed=4)
    xT = diffusion.invert(pipe, x0, ["a", "b"], num_steps=num_steps, guidance_scale=3.0)
    back = diffusion.sample(pipe, ["a", "b"], num_steps=num_steps, guidance_scale=3.0, latents=xT).latents
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


@pytest.mark.parametrize("setting,num_steps,match", [
    (dict(timestep_spacing="trailing", steps_offset=0), 61, r"gives 62 times in \[-1, 999\].*60 or 62"),
    (dict(timestep_spacing="leading", steps_offset=1), 1000, r"gives 1000 times in \[1, 1000\]"),
    ({}, 1001, "exceeds the scheduler's num_train_timesteps=1000"),
    ({}, 0, "num_steps must be a positive int"),
])
def test_refused_time_lists(setting, num_steps, match):
    """Lists DDIM cannot follow (diffusers' set_timesteps returns them silently; its step would index
    alphas_cumprod[-1], the noisiest level, or past the end) are refused by name with a step count that works."""
    pipe = GaussianDenoiser(**setting)
    with pytest.raises(ValueError, match=match):
        diffusion.ddim_schedule(pipe.scheduler, num_steps)
    with pytest.raises(ValueError, match=match):
        diffusion.sample(pipe, ["a"], num_steps=num_steps)
    with pytest.raises(ValueError, match=match):
        diffusion.invert(pipe, _x_T()[:1], ["a"], num_steps=num_steps)
    if num_steps == 61:  # the step counts the message proposes work
        for n in (60, 62):
            ts, prev = diffusion.ddim_schedule(pipe.scheduler, n)
            assert len(ts) == n and ts.min() >= 0 and prev.tolist() == ts[1:].tolist() + [-1]


def test_refuses_a_scheduler_that_is_not_ddim():
    pipe = GaussianDenoiser()
    pipe.scheduler = PNDMScheduler(**SD_SCHEDULE)
    with pytest.raises(ValueError, match="DDIMScheduler.from_config"):
        diffusion.sample(pipe, ["a"], num_steps=2)
