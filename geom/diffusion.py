"""DDIM sampling and inversion with classifier-free guidance for a ``geom.models.LatentDiffusion``
(tiny-ldm or Stable Diffusion), with a callback at every step.

DDIM update (Song et al., ICLR 2021, Eq. 12), ``a_t = alphas_cumprod[t]``:
``x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)``,
``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma noise``,
``sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)``.
Guidance (Ho & Salimans 2022): ``eps = eps_u + s (eps_c - eps_u)``; ``s = 0`` is the unconditional model,
``s = 1`` the conditional one. Both branches are always evaluated (one batch of ``2B``) so that callbacks
see ``eps_c - eps_u`` (the memorisation statistic of Wen et al., ICLR 2024). Time steps follow the model's
``DDIMScheduler`` (``set_timesteps``; ``t_prev = t - T // num_steps``), so results agree with diffusers'
``DDIMScheduler.step``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm


@dataclass
class DDIMStep:
    """What a callback sees at step ``index`` (0-based, ``num_steps`` in all) of the sampler.

    ``timestep`` the UNet time ``t``; ``prev_timestep`` ``t_prev`` (< 0 at the last step);
    ``latents`` ``x_t`` ``(B, 4, h, w)``; ``eps_cond``, ``eps_uncond``, ``eps`` (guided) noise predictions
    ``(B, 4, h, w)``; ``pred_x0`` the denoised latent predicted from ``x_t``; ``next_latents`` ``x_{t_prev}``."""
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


def ddim_timesteps(scheduler, num_steps: int) -> Tensor:
    """The ``num_steps`` UNet times (descending) of ``scheduler.set_timesteps(num_steps)``."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    scheduler.set_timesteps(num_steps)
    return scheduler.timesteps.clone()


def _alpha(scheduler, t: int) -> Tensor:
    acp = scheduler.alphas_cumprod
    return acp[t] if t >= 0 else scheduler.final_alpha_cumprod


def ddim_update(x: Tensor, eps: Tensor, a_t: Tensor | float, a_prev: Tensor | float, eta: float = 0.0,
                noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One DDIM step (Song et al. Eq. 12): ``x_t`` ``(B, ...)`` and ``eps`` -> ``(x_prev, pred_x0)``."""
    a_t = torch.as_tensor(a_t, dtype=torch.float64)
    a_prev = torch.as_tensor(a_prev, dtype=torch.float64)
    x0 = (x - (1 - a_t).sqrt().to(x) * eps) / a_t.sqrt().to(x)
    sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    x_prev = a_prev.sqrt().to(x) * x0 + (1 - a_prev - sigma ** 2).clamp_min(0).sqrt().to(x) * eps
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs a noise tensor")
        x_prev = x_prev + sigma.to(x) * noise
    return x_prev, x0


def guided_noise(pipe, latents: Tensor, t: int, cond: Tensor, uncond: Tensor,
                 guidance_scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(eps, eps_cond, eps_uncond)`` ``(B, 4, h, w)`` at UNet time ``t`` for latents ``(B, 4, h, w)``,
    conditional and unconditional embeddings ``(B, L, D)``; ``eps = eps_u + s (eps_c - eps_u)``."""
    B = latents.shape[0]
    x2 = torch.cat([latents, latents])
    emb = torch.cat([cond, uncond])
    tt = torch.full((2 * B,), int(t), dtype=torch.long, device=latents.device)
    e = pipe.predict_noise(x2, tt, emb)
    e_c, e_u = e[:B], e[B:]
    return e_u + guidance_scale * (e_c - e_u), e_c, e_u


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
    """DDIM sampling with classifier-free guidance.

    Args:
        pipe: a ``LatentDiffusion`` (``geom.models.load_pipeline``).
        prompts: ``B`` prompts; ``negative_prompt`` the unconditional branch (default ``""``).
        num_steps, guidance_scale, eta: DDIM steps, guidance ``s``, stochasticity (0 = deterministic DDIM,
            1 = DDPM-like).
        generator: draws ``x_T ~ N(0, I)`` ``(B, *pipe.latent_shape)`` (when ``latents`` is None) and, for
            ``eta > 0``, the per-step noise, in that order.
        latents: optional initial ``x_T`` ``(B, *latent_shape)``.
        callback: called with a ``DDIMStep`` after every step (e.g. store ``eps_cond - eps_uncond`` or
            compute decoder descriptors of ``pred_x0``).
        eps_fn: optional ``eps_fn(x_t, t, eps, a_t) -> eps'`` applied to the guided noise prediction before the
            DDIM update (e.g. classifier / reward guidance, ``geom.guidance``); the callback sees ``eps'``.
    Returns:
        ``DDIMResult`` with the final latents ``(B, *latent_shape)`` (decode with ``pipe.vae_decode``).
    """
    B = len(prompts)
    shape = (B, *pipe.latent_shape)
    if latents is None:
        latents = torch.randn(shape, generator=generator, dtype=pipe.dtype, device="cpu").to(pipe.device)
    elif tuple(latents.shape) != shape:
        raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
    cond, uncond = _embeddings(pipe, prompts, negative_prompt)
    ts = ddim_timesteps(pipe.scheduler, num_steps)
    ratio = pipe.scheduler.config.num_train_timesteps // num_steps
    x = latents.to(pipe.device, pipe.dtype)
    x_T = x.clone()
    for i, t in enumerate(tqdm(ts.tolist(), disable=not progress, desc="DDIM")):
        t_prev = t - ratio
        eps, e_c, e_u = guided_noise(pipe, x, t, cond, uncond, guidance_scale)
        a_t = _alpha(pipe.scheduler, t)
        if eps_fn is not None:
            eps = eps_fn(x, int(t), eps, a_t)
        noise = None
        if eta > 0:
            noise = torch.randn(shape, generator=generator, dtype=pipe.dtype, device="cpu").to(pipe.device)
        x_prev, x0 = ddim_update(x, eps, a_t, _alpha(pipe.scheduler, t_prev), eta, noise)
        if callback is not None:
            callback(DDIMStep(i, num_steps, int(t), int(t_prev), x, e_c, e_u, eps, x0, x_prev, float(guidance_scale)))
        x = x_prev
    return DDIMResult(x, x_T, ts)


@torch.no_grad()
def invert(pipe, latents: Tensor, prompts: list[str], num_steps: int = 50, guidance_scale: float = 1.0,
           negative_prompt: str | list[str] = "", callback: Callable[[DDIMStep], None] | None = None,
           progress: bool = False) -> Tensor:
    """DDIM inversion (eta = 0; Song et al. Sec. 4.3, Mokady et al. 2023): clean latents ``x_0``
    ``(B, *latent_shape)`` -> ``x_T`` by running the deterministic DDIM map backwards, with the noise
    predicted at the current latent and the next (higher) time step. ``sample(..., latents=x_T, eta=0)``
    with the same prompts, steps and guidance approximately returns ``x_0`` (exactly as steps -> inf)."""
    cond, uncond = _embeddings(pipe, prompts, negative_prompt)
    ts = ddim_timesteps(pipe.scheduler, num_steps).flip(0)  # ascending
    ratio = pipe.scheduler.config.num_train_timesteps // num_steps
    x = latents.to(pipe.device, pipe.dtype)
    for i, t in enumerate(tqdm(ts.tolist(), disable=not progress, desc="DDIM inversion")):
        t_prev = t - ratio  # the level x currently sits at
        eps, e_c, e_u = guided_noise(pipe, x, t, cond, uncond, guidance_scale)
        a_t, a_prev = (_alpha(pipe.scheduler, s).to(torch.float64) for s in (t, t_prev))
        # invert x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps  for x0, then go up to level t
        x0 = (x - (1 - a_prev).sqrt().to(x) * eps) / a_prev.sqrt().to(x)
        x_next = a_t.sqrt().to(x) * x0 + (1 - a_t).sqrt().to(x) * eps
        if callback is not None:
            callback(DDIMStep(i, num_steps, int(t), int(t_prev), x, e_c, e_u, eps, x0, x_next, float(guidance_scale)))
        x = x_next
    return x
