"""Partial-diffusion reconstruction error: noise a point to an intermediate level, denoise it back with DDIM, and
score how far the reconstruction lands from the input (an out-of-distribution score).

Method: "Diffusing and denoising samples for out-of-distribution detection" (DDOS; G. Raya, J. S. Olier Jauregui,
E. Postma, OpenReview eATJn1VZQia; code github.com/gabrielraya/ddos: a score-based model on Fashion-MNIST, AUROC
0.98 against MNIST; docs/published_ood.md) and "Denoising
diffusion models for out-of-distribution detection" (M. S. Graham, W. H. L. Pinaya, P.-D. Tudosiu, P. Nachev,
S. Ourselin, M. J. Cardoso, CVPR Workshops 2023, arXiv 2211.07740: several noise levels as one multi-dimensional
score). For each level ``t`` (a 1-based DDPM step, Ho et al. 2020: ``a_t = alphas_cumprod[t - 1]``; ``t = 0`` is
the data itself):

    x_t = sqrt(a_t) x + sqrt(1 - a_t) e          (Ho et al. Eq. 4; e ~ N(0, I), drawn from the seed)
    x_hat = DDIM(x_t; t -> 0)                     (eta = 0, Song et al. ICLR 2021 Eq. 12, ``num_steps`` steps on
                                                   the whole steps round(linspace(t, 0, n + 1)), the last to a = 1)
    error_t(x) = mean((x_hat - x)^2)              (per element; of ``decode(x_hat)`` vs ``decode(x)`` with
                                                   ``decode``, e.g. a VAE decoder, to compare images)

Here the denoiser is the deterministic DDIM ODE (DDOS denoises with the reverse SDE; Graham et al.'s code runs a
100-step fast sampler of its DDPM, ``--num_inference_steps=100``); the noise draw is the only randomness. One noise ``e`` per repeat is shared
by every point and every level (common random numbers), so a point's errors depend on it, the seed and the model
only, never on its batch. ``multiscale_score`` combines the levels as Graham et al. do: z-scores against the
in-distribution errors, averaged over levels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from . import seeds
from .diffusion import ddim_step
from .likelihood import discrete_schedule, guided_eps_model

VERSION = 1  # of the numbers partial_diffusion_error returns (part of geom.report's cache key)


@dataclass
class ReconstructionResult:
    """``errors`` ``(B, S)`` float64: the mean squared error per element at each level of ``steps`` (``S`` of them),
    averaged over ``repeats`` noise draws; ``stderr`` ``(B, S)`` its standard error over the draws (NaN for one
    draw); ``reconstructions`` ``(B, S, *shape)`` of the first draw (latents, in ``x``'s dtype); ``steps`` the
    levels; ``num_steps`` the DDIM steps asked for (a level ``t`` uses ``min(num_steps, t)``)."""
    errors: Tensor
    stderr: Tensor
    reconstructions: Tensor
    steps: tuple[int, ...]
    num_steps: int
    repeats: int

    def columns(self, prefix: str = "ddos_t") -> dict[str, np.ndarray]:
        """``{f"{prefix}{t}": (B,) errors}``, one per level (the ``geom.report`` columns)."""
        return {f"{prefix}{t}": self.errors[:, j].numpy() for j, t in enumerate(self.steps)}


def ddim_levels(t: int, num_steps: int) -> list[int]:
    """The whole 1-based steps DDIM visits from level ``t`` down to the data: ``round(linspace(t, 0, n + 1))``
    with ``n = min(num_steps, t)`` (descending, distinct, ending in 0 = ``a = 1``). ``t = 0``: ``[0]``."""
    if t == 0:
        return [0]
    n = min(int(num_steps), int(t))
    return [int(k) for k in np.rint(np.linspace(int(t), 0, n + 1))]


def partial_diffusion_error(model, x: Tensor, steps: Sequence[int], schedule=None, *,
                            encoder_hidden_states: Tensor | None = None, uncond_hidden_states: Tensor | None = None,
                            guidance_scale: float = 1.0, num_steps: int = 10, repeats: int = 1, seed: int = 0,
                            decode: Callable[[Tensor], Tensor] | None = None, prediction_type: str | None = None,
                            progress: bool = True) -> ReconstructionResult:
    """Partial-diffusion reconstruction error of each point of ``x`` at each level of ``steps`` (module docs;
    DDOS, Raya et al.; Graham et al. 2023, Sec. 3).

    Args:
        model, schedule, prediction_type, encoder_hidden_states, uncond_hidden_states, guidance_scale: the noise
            predictor (``geom.likelihood.guided_eps_model``; for a ``LatentDiffusion``, ``encode_prompt([""])`` as
            ``encoder_hidden_states`` is the unconditional model).
        x: points ``(B, *shape)`` (scaled latents for a latent diffusion model), finite.
        steps: levels, whole 1-based DDPM steps in ``[0, T]`` (``0``: no noise, error 0).
        num_steps: DDIM steps from a level back to the data (``ddim_levels``).
        repeats: noise draws averaged; draw ``r`` is ``torch.randn(shape)`` from a generator seeded with
            ``geom.seeds.spawn(seed, "ddos.noise")``, the ``r``-th of that stream, shared by every point and level.
        decode: optional ``latents (B, *shape) -> images``: the error is then that of the decoded reconstruction
            against the decoded input (in image units).
    Returns:
        ``ReconstructionResult`` (``errors`` ``(B, len(steps))`` float64).
    Raises:
        ValueError for a level outside ``[0, T]`` or not an int, ``num_steps`` / ``repeats`` < 1, bad ``x``
        (shape, NaN), or a continuous schedule.
    """
    em = guided_eps_model(model, schedule, encoder_hidden_states, uncond_hidden_states, guidance_scale,
                          prediction_type)
    acp = discrete_schedule(em, x, "partial_diffusion_error")
    T = len(acp)
    levels = [int(t) for t in steps]
    if not levels or any(isinstance(t, bool) or int(t) != t or not 0 <= int(t) <= T for t in steps):
        raise ValueError(f"steps must be whole 1-based DDPM steps in [0, {T}] (0 = the data), got {list(steps)}")
    for name, v in (("num_steps", num_steps), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    B, shape = x.shape[0], tuple(x.shape[1:])
    gen = torch.Generator().manual_seed(int(seeds.spawn(seed, "ddos.noise").generate_state(1)[0]))
    noises = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(int(repeats))]
    x0 = x.detach()
    ref = None if decode is None else _decoded(decode, x0)
    errs = torch.zeros(int(repeats), B, len(levels), dtype=torch.float64)
    recons = torch.empty(B, len(levels), *shape, dtype=x.dtype)
    pt = em.prediction_type

    def level(k: int) -> float:
        return 1.0 if k == 0 else float(acp[k - 1])

    for r, e in enumerate(tqdm(noises, disable=not progress, desc="partial diffusion")):
        for j, t in enumerate(levels):
            a = level(t)
            xt = (math.sqrt(a) * x0.to(torch.float64) + math.sqrt(1 - a) * e).to(x.dtype)
            path = ddim_levels(t, num_steps)
            with torch.no_grad():
                for k, k_prev in zip(path[:-1], path[1:]):
                    tt = torch.full((B,), k - 1 + em.time_offset, dtype=torch.long, device=x.device)
                    out = em.fn(xt, tt)
                    xt = ddim_step(out, xt, level(k), level(k_prev), pt)[0]
            if not torch.isfinite(xt).all():
                raise ValueError(f"the reconstruction from level {t} is not finite (check the model and x's scale)")
            if r == 0:
                recons[:, j] = xt.detach().cpu()
            got = xt.detach() if decode is None else _decoded(decode, xt.detach())
            want = x0 if ref is None else ref
            errs[r, :, j] = ((got.to(torch.float64) - want.to(torch.float64)) ** 2).flatten(1).mean(1).cpu()
    stderr = (errs.std(0, correction=1) / math.sqrt(repeats) if repeats > 1
              else torch.full((B, len(levels)), math.nan, dtype=torch.float64))
    return ReconstructionResult(errs.mean(0), stderr, recons, tuple(levels), int(num_steps), int(repeats))


def _decoded(decode: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    with torch.no_grad():
        out = decode(z)
    if not isinstance(out, Tensor) or out.shape[0] != z.shape[0]:
        raise ValueError(f"decode must return a tensor with one row per latent, got {getattr(out, 'shape', out)}")
    return out


def multiscale_score(errors, reference) -> np.ndarray:
    """One score from the errors at several levels as Graham et al. 2023 combine them (their code,
    github.com/marksgraham/ddpm-ood ``ood_detection.py``: each level's error as a z-score against the errors of an
    in-distribution validation set, standard deviation with ``ddof = 1``, then the mean over levels; they add the
    z-scores of MSE and LPIPS, here one error): ``errors`` ``(N, S)`` of the points to score,
    ``reference`` ``(M, S)`` of in-distribution points (a held-out set, M >= 2) -> ``(N,)`` float64,
    ``mean_j (errors[:, j] - mean(reference[:, j])) / std(reference[:, j])``. Higher = more out of distribution.
    Raises ``ValueError`` for mismatched levels, ``M < 2``, NaN, or a level whose reference errors are all equal."""
    E = np.asarray(errors, dtype=np.float64)
    R = np.asarray(reference, dtype=np.float64)
    if E.ndim != 2 or R.ndim != 2 or E.shape[1] != R.shape[1]:
        raise ValueError(f"errors (N, S) and reference (M, S) must have the same levels S, got {E.shape}, {R.shape}")
    if R.shape[0] < 2:
        raise ValueError(f"reference needs at least 2 in-distribution points for a standard deviation, got {R.shape[0]}")
    if not (np.isfinite(E).all() and np.isfinite(R).all()):
        raise ValueError("errors and reference must be finite")
    sd = R.std(0, ddof=1)
    if (sd == 0).any():
        raise ValueError(f"reference errors are constant at levels {np.flatnonzero(sd == 0).tolist()} (e.g. t = 0): "
                         "drop those levels")
    return ((E - R.mean(0)) / sd).mean(1)
