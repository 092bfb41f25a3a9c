"""DDIM sampling and inversion with classifier-free guidance for a ``geom.models.LatentDiffusion``
(tiny-ldm or Stable Diffusion), with a callback at every step.

DDIM update (Song et al., ICLR 2021, Eq. 12), ``a_t = alphas_cumprod[t]``:
``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma noise``,
``sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)``, where ``(eps, x0)`` are the noise and
clean-latent predictions implied by the denoiser output (``to_eps_x0``; the scheduler's ``prediction_type``:
``"epsilon"``, ``"v_prediction"`` (Stable Diffusion 2.x) or ``"sample"``).
Guidance (Ho & Salimans 2022): ``out = out_u + s (out_c - out_u)`` on the denoiser outputs, as diffusers'
pipelines do (the conversion to ``eps`` is affine with unit weight on ``out``, so this equals
``eps = eps_u + s (eps_c - eps_u)``); ``s = 0`` is the unconditional model, ``s = 1`` the conditional one.
Both branches are always evaluated (one batch of ``2B``) so that callbacks see ``eps_c - eps_u`` (the
memorisation statistic of Wen et al., ICLR 2024).

Sampling delegates each step to diffusers' own ``DDIMScheduler.step`` on the model's scheduler (its
``prediction_type``, time steps (``timestep_spacing``, ``steps_offset``), ``t_prev = t - T // num_steps``,
final alpha (``set_alpha_to_one``), ``clip_sample`` / ``clip_sample_range``, and the noise schedule
(``beta_schedule`` / ``trained_betas`` / ``rescale_betas_zero_snr``, through ``alphas_cumprod``)), with one
precision change: the step's coefficients are formed from ``alphas_cumprod`` in float64 (same values), so a
float64 pipeline samples in float64. Settings geom does not implement are refused by ``check_scheduler``
(also called by ``geom.models.load_pipeline`` on load). Inversion (``invert``) is geom's own (see there).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


@dataclass
class DDIMStep:
    """What a callback sees at step ``index`` (0-based, ``num_steps`` in all) of the sampler.

    ``timestep`` the UNet time ``t``; ``prev_timestep`` ``t_prev`` (< 0 at the last step);
    ``latents`` ``x_t`` ``(B, 4, h, w)``; ``eps_cond``, ``eps_uncond``, ``eps`` (guided) *noise* predictions
    ``(B, 4, h, w)``: the denoiser outputs converted to ``eps`` with ``to_eps_x0`` whatever the model's
    ``prediction_type``; ``pred_x0`` the denoised latent predicted from ``x_t`` (after the scheduler's
    ``clip_sample``, if set); ``next_latents`` ``x_{t_prev}``."""
    index: int
    num_steps: int
    timestep: int
    prev_timestep: int
    latents: Tensor
    eps_cond: Tensor
    eps_uncond: Tensor
    eps: Tensor
    pred_x0: Tensor
    next_latents: Tensor
    guidance_scale: float


@dataclass
class DDIMResult:
    """``latents`` final ``x_0`` latents ``(B, 4, h, w)``; ``initial_latents`` the ``x_T`` used;
    ``timesteps`` ``(num_steps,)``."""
    latents: Tensor
    initial_latents: Tensor
    timesteps: Tensor


# ------------------------------------------------------------------------------------------ scheduler
def check_scheduler(scheduler, source: object = None) -> None:
    """Refuse a scheduler whose settings geom's sampler / inversion would not honour.

    Honoured (by diffusers' ``DDIMScheduler`` itself or by ``invert`` in the same way): ``prediction_type``
    in ``PREDICTION_TYPES``, ``timestep_spacing`` in ``TIMESTEP_SPACINGS``, ``steps_offset``,
    ``set_alpha_to_one``, ``clip_sample`` / ``clip_sample_range``, ``beta_schedule`` / ``trained_betas`` /
    ``num_train_timesteps`` / ``rescale_betas_zero_snr`` (all through ``alphas_cumprod``). Refused
    (``ValueError`` naming the setting, ``source`` (e.g. the config file) and the fix): a scheduler that is not a
    ``DDIMScheduler``, ``thresholding=True`` (dynamic thresholding, Saharia et al. 2022, is not implemented
    by ``invert``), an unknown ``prediction_type`` or ``timestep_spacing``, and zero terminal SNR with an
    ``epsilon`` model (``x0 = (x_T - eps) / sqrt(a_T)`` divides by ``sqrt(a_T) = 0``; Lin et al., WACV 2024,
    Sec. 3.2, pair it with v-prediction)."""
    from diffusers import DDIMScheduler

    where = f" ({source})" if source is not None else ""
    if not isinstance(scheduler, DDIMScheduler):
        raise ValueError(f"geom.diffusion samples with a diffusers DDIMScheduler, got {type(scheduler).__name__}"
                         f"{where}; build one with DDIMScheduler.from_config(scheduler.config)")
    c = scheduler.config
    if c.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"scheduler config sets prediction_type={c.prediction_type!r}{where}; geom.diffusion "
                         f"implements {PREDICTION_TYPES} (as diffusers' DDIMScheduler)")
    if c.thresholding:
        raise ValueError(f"scheduler config sets thresholding=True{where}, which geom.diffusion does not implement; "
                         "dynamic thresholding (Saharia et al. 2022) is meant for pixel-space models: set "
                         "\"thresholding\": false in scheduler_config.json (latent models such as Stable Diffusion "
                         "do not use it)")
    if c.timestep_spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"scheduler config sets timestep_spacing={c.timestep_spacing!r}{where}; DDIM supports "
                         f"{TIMESTEP_SPACINGS}")
    if c.rescale_betas_zero_snr and c.prediction_type == "epsilon":
        raise ValueError(f"scheduler config sets rescale_betas_zero_snr=True with prediction_type='epsilon'{where}: "
                         "at zero terminal SNR x0 = (x_T - eps) / sqrt(a_T) divides by 0; zero-SNR models predict "
                         "v (set prediction_type='v_prediction' if the model was trained so, else "
                         "rescale_betas_zero_snr=false)")


def ddim_timesteps(scheduler, num_steps: int) -> Tensor:
    """The ``num_steps`` UNet times (descending) of ``scheduler.set_timesteps(num_steps)`` (diffusers'
    ``timestep_spacing`` and ``steps_offset``)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    scheduler.set_timesteps(num_steps)
    return scheduler.timesteps.clone()


def _alpha(scheduler, t: int) -> Tensor:
    acp = scheduler.alphas_cumprod
    return acp[t] if t >= 0 else scheduler.final_alpha_cumprod


def _coefs(alpha_bar_t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor]:
    a = torch.as_tensor(alpha_bar_t, dtype=torch.float64)
    return a.sqrt().to(x), (1 - a).sqrt().to(x)


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def to_eps_x0(model_output: Tensor, x_t: Tensor, alpha_bar_t: Tensor | float,
              prediction_type: str) -> tuple[Tensor, Tensor]:
    """The noise and clean-sample predictions ``(eps, x0)`` implied by a denoiser output at ``x_t``, with
    ``a = alpha_bar_t`` the cumulative alpha of the time the denoiser was given (``x_t = sqrt(a) x0 +
    sqrt(1 - a) eps``, DDPM Eq. 4; ``v = sqrt(a) eps - sqrt(1 - a) x0``, Salimans & Ho, ICLR 2022, Sec. 4):

    - ``"epsilon"``: ``eps = out``, ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``;
    - ``"v_prediction"``: ``eps = sqrt(a) out + sqrt(1 - a) x_t``, ``x0 = sqrt(a) x_t - sqrt(1 - a) out``;
    - ``"sample"``: ``x0 = out``, ``eps = (x_t - sqrt(a) x0) / sqrt(1 - a)``;

    the formulas of diffusers' ``DDIMScheduler.step`` (step 3), coefficients in float64. ``model_output``,
    ``x_t`` ``(B, ...)`` -> ``(eps, x0)`` of the same shape and dtype. The one conversion used by sampling,
    inversion, the Wen et al. statistic and reward guidance."""
    _check_prediction_type(prediction_type)
    sa, sb = _coefs(alpha_bar_t, x_t)
    if prediction_type == "epsilon":
        return model_output, (x_t - sb * model_output) / sa
    if prediction_type == "v_prediction":
        return sa * model_output + sb * x_t, sa * x_t - sb * model_output
    return (x_t - sa * model_output) / sb, model_output


def from_eps(eps: Tensor, x_t: Tensor, alpha_bar_t: Tensor | float, prediction_type: str) -> Tensor:
    """The denoiser output of type ``prediction_type`` whose noise prediction at ``x_t`` is ``eps`` (the
    inverse of ``to_eps_x0`` at fixed ``x_t``): ``eps``; ``v = (eps - sqrt(1 - a) x_t) / sqrt(a)``;
    ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``. Shapes ``(B, ...)``."""
    _check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return eps
    sa, sb = _coefs(alpha_bar_t, x_t)
    if prediction_type == "v_prediction":
        return (eps - sb * x_t) / sa
    return (x_t - sb * eps) / sa


def _stepper(scheduler):
    """A shallow copy of the model's ``DDIMScheduler`` whose ``alphas_cumprod`` / ``final_alpha_cumprod`` are
    float64 (the same values): diffusers' ``step`` then forms ``sqrt(a)``, ``sqrt(1 - a)``, ``sigma`` in float64
    before they multiply the latents (in the latents' dtype).

    Rounding guard: ``sigma^2 <= 1 - a_prev`` holds exactly for ``eta <= 1`` (equality only at ``a_t = 0``, the
    first step of a zero-terminal-SNR schedule), but rounded it can exceed it by an ulp and the step's
    ``sqrt(1 - a_prev - sigma^2)`` is NaN; the copy's variance is capped at ``(1 - a_prev)(1 - 2^-50)``, which
    changes nothing unless ``a_t < ~1e-15``."""
    st = copy.copy(scheduler)
    st.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
    st.final_alpha_cumprod = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float64)
    variance = st._get_variance

    def _get_variance(timestep, prev_timestep):
        a_prev = st.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else st.final_alpha_cumprod
        return torch.minimum(variance(timestep, prev_timestep), (1 - a_prev) * (1 - 2.0 ** -50))

    st._get_variance = _get_variance
    return st


# ------------------------------------------------------------------------------------------ sampling
def guided_output(pipe, latents: Tensor, t: int, cond: Tensor, uncond: Tensor,
                  guidance_scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """Denoiser outputs ``(out, out_cond, out_uncond)`` ``(B, 4, h, w)`` at UNet time ``t`` for latents
    ``(B, 4, h, w)``, conditional and unconditional embeddings ``(B, L, D)``; ``out = out_u + s (out_c -
    out_u)``. Of the scheduler's ``prediction_type`` (``to_eps_x0`` converts them)."""
    B = latents.shape[0]
    x2 = torch.cat([latents, latents])
    emb = torch.cat([cond, uncond])
    tt = torch.full((2 * B,), int(t), dtype=torch.long, device=latents.device)
    e = pipe.predict_noise(x2, tt, emb)
    e_c, e_u = e[:B], e[B:]
    return e_u + guidance_scale * (e_c - e_u), e_c, e_u


def guided_noise(pipe, latents: Tensor, t: int, cond: Tensor, uncond: Tensor,
                 guidance_scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(eps, eps_cond, eps_uncond)`` ``(B, 4, h, w)``: ``guided_output`` converted to noise predictions
    (``to_eps_x0`` with the scheduler's ``prediction_type``); ``eps = eps_u + s (eps_c - eps_u)``."""
    pt = pipe.scheduler.config.prediction_type
    a_t = _alpha(pipe.scheduler, int(t))
    return tuple(to_eps_x0(o, latents, a_t, pt)[0]
                 for o in guided_output(pipe, latents, t, cond, uncond, guidance_scale))


def _embeddings(pipe, prompts: list[str], negative_prompt: str | list[str]) -> tuple[Tensor, Tensor]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings (one per sample)")
    neg = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
    if len(neg) != len(prompts):
        raise ValueError(f"{len(neg)} negative prompts for {len(prompts)} prompts")
    return pipe.encode_prompt(list(prompts)), pipe.encode_prompt(neg)


@torch.no_grad()
def sample(pipe, prompts: list[str], num_steps: int = 50, guidance_scale: float = 7.5, eta: float = 0.0,
           generator: torch.Generator | None = None, latents: Tensor | None = None, negative_prompt: str | list[str] = "",
           callback: Callable[[DDIMStep], None] | None = None, progress: bool = False,
           eps_fn: Callable[[Tensor, int, Tensor, Tensor], Tensor] | None = None) -> DDIMResult:
    """DDIM sampling with classifier-free guidance; each step is diffusers' ``DDIMScheduler.step`` on the
    model's scheduler (module docs), so every ``prediction_type`` and scheduler setting is honoured as diffusers
    does (``check_scheduler`` refuses the rest).

    Args:
        pipe: a ``LatentDiffusion`` (``geom.models.load_pipeline``).
        prompts: ``B`` prompts; ``negative_prompt`` the unconditional branch (default ``""``).
        num_steps, guidance_scale, eta: DDIM steps, guidance ``s``, stochasticity in ``[0, 1]`` (0 =
            deterministic DDIM, 1 = DDPM-like).
        generator: draws ``x_T ~ N(0, I)`` ``(B, *pipe.latent_shape)`` (when ``latents`` is None) and, for
            ``eta > 0``, the per-step noise, in that order.
        latents: optional initial ``x_T`` ``(B, *latent_shape)``.
        callback: called with a ``DDIMStep`` after every step (e.g. store ``eps_cond - eps_uncond`` or
            compute decoder descriptors of ``pred_x0``).
        eps_fn: optional ``eps_fn(x_t, t, eps, a_t) -> eps'`` applied to the guided *noise* prediction (the model
            output converted by ``to_eps_x0``) before the step (e.g. classifier / reward guidance,
            ``geom.guidance``); ``eps'`` is converted back to the model's output type (``from_eps``) for the step,
            and the callback sees ``eps'``.
    Returns:
        ``DDIMResult`` with the final latents ``(B, *latent_shape)`` (decode with ``pipe.vae_decode``).
    Raises:
        ``ValueError`` for a scheduler ``check_scheduler`` refuses, ``eta`` outside ``[0, 1]``, or ``latents`` of
        the wrong shape.
    """
    check_scheduler(pipe.scheduler)
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = DDIM, 1 = DDPM-like), got {eta!r}")
    B = len(prompts)
    shape = (B, *pipe.latent_shape)
    if latents is None:
        latents = torch.randn(shape, generator=generator, dtype=pipe.dtype, device="cpu").to(pipe.device)
    elif tuple(latents.shape) != shape:
        raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
    cond, uncond = _embeddings(pipe, prompts, negative_prompt)
    ts = ddim_timesteps(pipe.scheduler, num_steps)
    step = _stepper(pipe.scheduler)
    pt = pipe.scheduler.config.prediction_type
    ratio = pipe.scheduler.config.num_train_timesteps // num_steps
    x = latents.to(pipe.device, pipe.dtype)
    x_T = x.clone()
    for i, t in enumerate(tqdm(ts.tolist(), disable=not progress, desc="DDIM")):
        out, o_c, o_u = guided_output(pipe, x, t, cond, uncond, guidance_scale)
        a_t = _alpha(pipe.scheduler, t)
        eps = to_eps_x0(out, x, a_t, pt)[0]
        if eps_fn is not None:
            eps = eps_fn(x, int(t), eps, a_t)
            out = from_eps(eps, x, a_t, pt)
        noise = None
        if eta > 0:
            noise = torch.randn(shape, generator=generator, dtype=pipe.dtype, device="cpu").to(pipe.device)
        res = step.step(out, t, x, eta=float(eta), variance_noise=noise)
        x_prev, x0 = res.prev_sample, res.pred_original_sample
        if callback is not None:
            e_c, e_u = (to_eps_x0(o, x, a_t, pt)[0] for o in (o_c, o_u))
            callback(DDIMStep(i, num_steps, int(t), int(t) - ratio, x, e_c, e_u, eps, x0, x_prev,
                              float(guidance_scale)))
        x = x_prev
    return DDIMResult(x, x_T, ts)


@torch.no_grad()
def invert(pipe, latents: Tensor, prompts: list[str], num_steps: int = 50, guidance_scale: float = 1.0,
           negative_prompt: str | list[str] = "", callback: Callable[[DDIMStep], None] | None = None,
           progress: bool = False) -> Tensor:
    """DDIM inversion (eta = 0; Song et al. Sec. 4.3, Mokady et al. 2023): clean latents ``x_0``
    ``(B, *latent_shape)`` -> ``x_T`` ``(B, *latent_shape)`` by running the deterministic DDIM map backwards
    over the sampler's own ``(t_prev, t)`` pairs (``ddim_timesteps`` ascending, ``t_prev = t - T // num_steps``,
    ``final_alpha_cumprod`` below the first), with the model evaluated at the current latent (level
    ``t_prev``) and the higher time ``t``:
    ``(eps, _) = to_eps_x0(out(x, t), x, a_t)``, ``x0 = (x - sqrt(1 - a_prev) eps) / sqrt(a_prev)`` (clipped to
    ``clip_sample_range`` when the scheduler's ``clip_sample`` is set, as the sampler does),
    ``x_next = sqrt(a_t) x0 + sqrt(1 - a_t) eps``. Each step is the exact inverse of the sampler's step when
    the noise prediction does not depend on ``x``; ``sample(..., latents=x_T, eta=0)`` with the same prompts,
    steps and guidance approximately returns ``x_0`` (exactly as steps -> inf).

    For ``epsilon`` models this is diffusers' ``DDIMInverseScheduler`` step for step. For ``v_prediction`` /
    ``sample`` models the output is converted at ``a_t``, the time the model was given, so a model gives the
    same inversion in any parametrisation; ``DDIMInverseScheduler`` converts it at ``a_prev`` instead (the
    two differ at O(step) in the model output).
    Callbacks see ``DDIMStep`` with ``latents`` the current (lower) level, ``pred_x0`` and ``next_latents``
    the higher level. Raises ``ValueError`` for a scheduler ``check_scheduler`` refuses."""
    check_scheduler(pipe.scheduler)
    cond, uncond = _embeddings(pipe, prompts, negative_prompt)
    ts = ddim_timesteps(pipe.scheduler, num_steps).flip(0)  # ascending
    c = pipe.scheduler.config
    ratio = c.num_train_timesteps // num_steps
    x = latents.to(pipe.device, pipe.dtype)
    for i, t in enumerate(tqdm(ts.tolist(), disable=not progress, desc="DDIM inversion")):
        t_prev = t - ratio  # the level x currently sits at
        out, o_c, o_u = guided_output(pipe, x, t, cond, uncond, guidance_scale)
        a_t, a_prev = _alpha(pipe.scheduler, t), _alpha(pipe.scheduler, t_prev)
        eps, e_c, e_u = (to_eps_x0(o, x, a_t, c.prediction_type)[0] for o in (out, o_c, o_u))
        # invert x = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps  for x0, then go up to level t
        sa_p, sb_p = _coefs(a_prev, x)
        x0 = (x - sb_p * eps) / sa_p
        if c.clip_sample:
            x0 = x0.clamp(-c.clip_sample_range, c.clip_sample_range)
        sa, sb = _coefs(a_t, x)
        x_next = sa * x0 + sb * eps
        if callback is not None:
            callback(DDIMStep(i, num_steps, int(t), int(t_prev), x, e_c, e_u, eps, x0, x_next, float(guidance_scale)))
        x = x_next
    return x
