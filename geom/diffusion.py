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

Time list: every step goes from ``t`` to the NEXT entry ``t_prev`` of the scheduler's own list
(``scheduler.set_timesteps(num_steps)``: ``timestep_spacing``, ``steps_offset``), and the last step to
``final_alpha_cumprod`` (``1`` with ``set_alpha_to_one``, else ``alphas_cumprod[0]``); ``ddim_schedule`` is the one
place where ``t_prev`` is decided, for sampling, inversion (the same list reversed) and the callbacks.
diffusers' own ``DDIMScheduler.step`` instead takes ``t_prev = t - T // num_steps``, which is the list's next entry
only when the list is evenly spaced by ``T // num_steps`` (``"leading"`` always; ``"trailing"`` / ``"linspace"``
only for some step counts: ``"trailing"`` with 7 steps goes 999 -> 856 but diffusers steps to 857), and whose
last step reaches the final alpha only when ``t_last < T // num_steps`` (else it stops at
``alphas_cumprod[t_last - T // num_steps]``, whatever ``set_alpha_to_one``). Where the list is evenly spaced
geom's step is diffusers' step (tested); elsewhere geom follows the list. Each step (``ddim_step``) honours
``prediction_type``, ``clip_sample`` / ``clip_sample_range`` and the noise schedule (``beta_schedule`` /
``trained_betas`` / ``rescale_betas_zero_snr``, through ``alphas_cumprod``), with its coefficients formed from
``alphas_cumprod`` in float64, so a float64 pipeline samples in float64. Settings geom does not implement are refused by
``check_scheduler`` (also called by ``geom.models.load_pipeline`` on load), time lists it cannot follow by
``ddim_schedule``.
"""
from __future__ import annotations

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

    ``timestep`` the UNet time ``t``; ``prev_timestep`` ``t_prev``, the next time of the scheduler's list
    (``ddim_schedule``; ``-1`` at the last step: the level ``final_alpha_cumprod``);
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


def ddim_schedule(scheduler, num_steps: int) -> tuple[Tensor, Tensor]:
    """The DDIM time list and each step's target, ``(timesteps, prev_timesteps)``, both ``(num_steps,)`` int64: the
    one place where ``t_prev`` is decided (sampling, inversion, callbacks).

    ``timesteps`` is the scheduler's own list ``scheduler.set_timesteps(num_steps)`` (descending; diffusers'
    ``timestep_spacing`` and ``steps_offset``); ``prev_timesteps[i] = timesteps[i + 1]`` (Song et al. Eq. 12 steps
    from ``t`` to the next time of the sub-sequence, Sec. 4.2) and ``prev_timesteps[-1] = -1``, the final level
    ``final_alpha_cumprod`` (``_alpha``). Raises ``ValueError`` for a ``num_steps`` that is not an int in
    ``[1, num_train_timesteps]`` and for a list geom cannot follow (diffusers' float ``arange`` makes
    ``"trailing"`` return ``num_steps + 1`` times ending in ``-1`` for some counts, e.g. 61 of 1000; ``"leading"``
    with ``steps_offset = 1`` and ``num_steps = num_train_timesteps`` reaches time ``T``), naming the setting and
    a step count that works."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    c = scheduler.config
    T = int(c.num_train_timesteps)
    if num_steps > T:
        raise ValueError(f"num_steps={num_steps} exceeds the scheduler's num_train_timesteps={T}; use at most {T} "
                         "steps")
    scheduler.set_timesteps(num_steps)
    ts = scheduler.timesteps.clone().long()
    ok = len(ts) == num_steps and bool((ts[1:] < ts[:-1]).all()) and int(ts.min()) >= 0 and int(ts.max()) < T
    if not ok:
        near = [n for n in (num_steps - 1, num_steps + 1) if 1 <= n <= T]
        raise ValueError(f"scheduler.set_timesteps({num_steps}) with timestep_spacing={c.timestep_spacing!r}, "
                         f"steps_offset={c.steps_offset} gives {len(ts)} times in [{int(ts.min())}, {int(ts.max())}] "
                         f"(DDIM needs {num_steps} distinct descending times in [0, {T})); choose another num_steps "
                         f"(e.g. {' or '.join(map(str, near))}) or another timestep_spacing")
    prev = torch.cat([ts[1:], ts.new_full((1,), -1)])
    return ts, prev


def ddim_timesteps(scheduler, num_steps: int) -> Tensor:
    """The ``num_steps`` UNet times (descending) of ``ddim_schedule``: the scheduler's own list."""
    return ddim_schedule(scheduler, num_steps)[0]


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


def ddim_step(model_output: Tensor, x_t: Tensor, alpha_bar_t: Tensor | float, alpha_bar_prev: Tensor | float,
              prediction_type: str, eta: float = 0.0, noise: Tensor | None = None,
              clip_sample_range: float | None = None) -> tuple[Tensor, Tensor]:
    """One DDIM step (Song et al., ICLR 2021, Eq. 12) from level ``a_t = alpha_bar_t`` to ``a_prev =
    alpha_bar_prev``: ``(x_prev, x0)``, both of the shape and dtype of ``x_t`` ``(B, ...)``.

    ``(eps, x0) = to_eps_x0(model_output, x_t, a_t, prediction_type)``, ``x0`` clamped to
    ``[-clip_sample_range, clip_sample_range]`` when given (the scheduler's ``clip_sample``; ``eps`` is not
    re-derived, as diffusers' default ``use_clipped_model_output=False``);
    ``sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)`` (Eq. 16),
    ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma noise`` (``noise`` ``(B, ...)``, needed
    for ``eta > 0``); diffusers' ``DDIMScheduler.step`` for the same ``a_t``, ``a_prev``. Coefficients in float64.

    The direction coefficient is formed as ``1 - a_prev - sigma^2 = (1 - a_prev) ((1 - eta^2) + eta^2 a_t
    (1 - a_prev) / (a_prev (1 - a_t)))`` (the same number, a sum of non-negative terms for ``eta <= 1``): it is
    exactly 0 at ``a_t = 0, eta = 1`` (the first step at zero terminal SNR), where the difference as written rounds
    to ``-1 ulp`` (measured -1.1e-16 in float64, -6e-8 in float32: a NaN square root), and near it the difference
    cancels (a relative error ``1e-16 / (1 - a_prev - sigma^2)``, amplified by the square root). For ``eta = 0`` it
    is ``1 - a_prev`` either way (bit for bit)."""
    a_t = torch.as_tensor(alpha_bar_t, dtype=torch.float64)
    a_prev = torch.as_tensor(alpha_bar_prev, dtype=torch.float64)
    eps, x0 = to_eps_x0(model_output, x_t, a_t, prediction_type)
    if clip_sample_range is not None:
        x0 = x0.clamp(-clip_sample_range, clip_sample_range)
    std = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    direction = ((1 - a_prev) * ((1 - eta ** 2) + eta ** 2 * a_t * (1 - a_prev) / (a_prev * (1 - a_t)))) ** 0.5
    x_prev = (a_prev ** 0.5).to(x_t) * x0 + direction.to(x_t) * eps
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise (B, ...) ~ N(0, I)")
        x_prev = x_prev + std.to(x_t) * noise
    return x_prev, x0


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
           callback: Callable[[DDIMStep], None] | None = None, progress: bool = True,
           eps_fn: Callable[[Tensor, int, Tensor, Tensor], Tensor] | None = None) -> DDIMResult:
    """DDIM sampling with classifier-free guidance along the scheduler's own time list (``ddim_schedule``;
    ``ddim_step`` from each time to the next, the last to ``final_alpha_cumprod``); every ``prediction_type`` and
    scheduler setting is honoured (``check_scheduler`` refuses the rest). Where the list is evenly spaced by
    ``T // num_steps`` this is diffusers' ``DDIMScheduler.step`` loop (module docs).

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
        ``ValueError`` for a scheduler ``check_scheduler`` refuses, a time list ``ddim_schedule`` refuses, ``eta``
        outside ``[0, 1]``, or ``latents`` of the wrong shape.
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
    ts, prevs = ddim_schedule(pipe.scheduler, num_steps)
    c = pipe.scheduler.config
    pt = c.prediction_type
    clip = float(c.clip_sample_range) if c.clip_sample else None
    x = latents.to(pipe.device, pipe.dtype)
    x_T = x.clone()
    for i, (t, t_prev) in enumerate(tqdm(list(zip(ts.tolist(), prevs.tolist())), disable=not progress, desc="DDIM")):
        out, o_c, o_u = guided_output(pipe, x, t, cond, uncond, guidance_scale)
        a_t, a_prev = _alpha(pipe.scheduler, t), _alpha(pipe.scheduler, t_prev)
        eps = to_eps_x0(out, x, a_t, pt)[0]
        if eps_fn is not None:
            eps = eps_fn(x, int(t), eps, a_t)
            out = from_eps(eps, x, a_t, pt)
        noise = None
        if eta > 0:
            noise = torch.randn(shape, generator=generator, dtype=pipe.dtype, device="cpu").to(pipe.device)
        x_prev, x0 = ddim_step(out, x, a_t, a_prev, pt, eta=float(eta), noise=noise, clip_sample_range=clip)
        if callback is not None:
            e_c, e_u = (to_eps_x0(o, x, a_t, pt)[0] for o in (o_c, o_u))
            callback(DDIMStep(i, num_steps, int(t), int(t_prev), x, e_c, e_u, eps, x0, x_prev,
                              float(guidance_scale)))
        x = x_prev
    return DDIMResult(x, x_T, ts)


@torch.no_grad()
def invert(pipe, latents: Tensor, prompts: list[str], num_steps: int = 50, guidance_scale: float = 1.0,
           negative_prompt: str | list[str] = "", callback: Callable[[DDIMStep], None] | None = None,
           progress: bool = True) -> Tensor:
    """DDIM inversion (eta = 0; Song et al. Sec. 4.3, Mokady et al. 2023): clean latents ``x_0``
    ``(B, *latent_shape)`` -> ``x_T`` ``(B, *latent_shape)`` by running the deterministic DDIM map backwards
    over the sampler's own ``(t_prev, t)`` pairs (``ddim_schedule``'s time list reversed: from
    ``final_alpha_cumprod`` up to the last time, then each time up to the one before it in the list), with the
    model evaluated at the current latent (level ``t_prev``) and the higher time ``t``:
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
    the higher level. Raises ``ValueError`` for a scheduler ``check_scheduler`` refuses or a time list
    ``ddim_schedule`` refuses."""
    check_scheduler(pipe.scheduler)
    cond, uncond = _embeddings(pipe, prompts, negative_prompt)
    ts, prevs = ddim_schedule(pipe.scheduler, num_steps)
    c = pipe.scheduler.config
    x = latents.to(pipe.device, pipe.dtype)
    pairs = list(zip(ts.flip(0).tolist(), prevs.flip(0).tolist()))  # the sampler's (t, t_prev) pairs, ascending
    for i, (t, t_prev) in enumerate(tqdm(pairs, disable=not progress, desc="DDIM inversion")):
        # x currently sits at level t_prev
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
