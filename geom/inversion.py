"""GAN inversion by optimising the latent (for generators without an encoder; Humayun et al. Sec. 3.3.3).

A GAN generator ``G: R^E -> R^D`` has no encoder, so an image ``x`` is mapped to the latent that best
reproduces it (the "optimisation-based inversion" of Xia et al., "GAN Inversion: A Survey", TPAMI 2022,
Sec. 3.2; Creswell & Bharath 2018). Per image, with ``E = prod(latent_shape)``, ``D = prod(x.shape[1:])``::

    L(z) = ||G(z) - x||^2 / D  +  prior_weight * ||z||^2 / E

(pixel mean squared error plus an optional Gaussian latent prior term: ``-log N(z; 0, I)`` up to a constant
and the factor ``E / 2``, which keeps ``z`` near the typical set of the prior ``N(0, I)``). ``L`` is minimised
with Adam (learning rate ``lr``, default betas) for ``steps`` steps from ``restarts`` independent starts
``z_0 ~ N(0, I)`` (drawn from ``torch.Generator().manual_seed(seed)`` for all images at once, so a seed gives
the same starts whatever ``batch_size``). For every start the iterate with the lowest ``L`` seen is kept, and
per image the start with the lowest ``L`` wins. Images are optimised together in batches; the loss is the sum of
the per-image losses and Adam acts element-wise, so each image's trajectory is that of its own optimisation
(``G`` must not couple the samples of a batch: eval-mode BatchNorm, no batch statistics).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .models.base import training_modules


@dataclass
class Inversion:
    """Result of ``invert`` for ``N`` images: ``z`` ``(N, *latent_shape)`` (the best latents, float, CPU),
    ``error`` ``(N,)`` pixel MSE ``||G(z) - x||^2 / D`` at ``z`` (in the squared units of ``x``; for images in
    ``[-1, 1]`` at most 4), ``objective`` ``(N,)`` the minimised ``L(z)``, ``restart`` ``(N,)`` the index of
    the winning start, ``latent_norm`` ``(N,)`` ``||z||``. Arrays are float64 numpy."""

    z: Tensor
    error: np.ndarray
    objective: np.ndarray
    restart: np.ndarray
    latent_norm: np.ndarray


def _check_generator(G: nn.Module) -> None:
    if not isinstance(G, nn.Module):
        raise TypeError(f"invert needs the generator as an nn.Module, got {type(G).__name__}")
    if training_modules(G):
        raise ValueError("the generator is in training mode (BatchNorm would mix the images of a batch): "
                         "call G.eval() before inverting")


def inversion_loss(G: nn.Module, z: Tensor, x: Tensor, prior_weight: float = 0.0) -> tuple[Tensor, Tensor]:
    """Per-image objective ``L(z) = ||G(z) - x||^2 / D + prior_weight ||z||^2 / E`` and pixel MSE:
    ``z`` ``(B, *latent_shape)``, ``x`` ``(B, *out_shape)`` -> ``(L (B,), mse (B,))`` (differentiable in ``z``)."""
    out = G(z.clone())  # a copy: a generator that scales or clamps its input in place never changes z
    if out.shape != x.shape:
        raise ValueError(f"G(z) has shape {tuple(out.shape)} but the images have shape {tuple(x.shape)}")
    mse = (out - x).flatten(1).square().mean(1)
    prior = z.flatten(1).square().mean(1)
    return mse + prior_weight * prior, mse


def invert(G: nn.Module, x: Tensor, latent_shape: tuple[int, ...], steps: int = 300, restarts: int = 2,
           lr: float = 0.05, prior_weight: float = 1e-3, seed: int = 0, batch_size: int = 64,
           progress: bool = True) -> Inversion:
    """Invert images ``x`` ``(N, *out_shape)`` (in ``G``'s output range, e.g. ``[-1, 1]``) through ``G`` by
    minimising ``L(z)`` (module docs) with Adam.

    Args:
        G: eval-mode generator ``(B, *latent_shape) -> (B, *out_shape)``; its parameters are not updated.
        latent_shape: the shape of one latent (``(100,)`` for ``dcgan-faces``).
        steps: Adam steps per start (>= 1). restarts: independent starts per image (>= 1).
        lr: Adam learning rate. prior_weight: weight of ``||z||^2 / E`` (0: pure pixel MSE).
        seed: seeds the starts ``z_0 ~ N(0, I)``, shape ``(N, restarts, *latent_shape)``.
        batch_size: (image, start) pairs optimised together.
    Returns:
        ``Inversion`` (``z``, ``error``, ``objective``, ``restart``, ``latent_norm``).
    Raises:
        TypeError / ValueError for a non-module or training-mode ``G``, a non-finite or mis-shaped ``x``,
        or non-positive ``steps``, ``restarts``, ``lr``, ``batch_size`` or a negative ``prior_weight``.
    """
    _check_generator(G)
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a tensor of images (N, *out_shape), got {getattr(x, 'shape', type(x).__name__)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    for name, val in (("steps", steps), ("restarts", restarts), ("batch_size", batch_size)):
        if not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (prior_weight >= 0 and math.isfinite(prior_weight)):
        raise ValueError(f"prior_weight must be a finite number >= 0, got {prior_weight}")
    latent_shape = tuple(int(s) for s in latent_shape)
    param = next(iter(G.parameters()), None)
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None else x.dtype
    N, R = x.shape[0], int(restarts)
    g = torch.Generator().manual_seed(int(seed))
    z0 = torch.randn((N, R, *latent_shape), generator=g, dtype=torch.float64).to(dtype)
    targets = x.detach().to(device, dtype).repeat_interleave(R, dim=0)  # pair p = image p // R, start p % R
    z0 = z0.reshape(N * R, *latent_shape)
    best_z = torch.empty_like(z0)
    best_obj = torch.full((N * R,), math.inf, dtype=torch.float64)
    best_mse = torch.full((N * R,), math.inf, dtype=torch.float64)
    starts = range(0, N * R, int(batch_size))
    for s in tqdm(starts, desc="invert", disable=not progress, total=len(starts)):
        z = z0[s:s + batch_size].clone().to(device).requires_grad_(True)
        xb = targets[s:s + batch_size]
        opt = torch.optim.Adam([z], lr=lr)
        bz = z.detach().clone()
        bo = torch.full((z.shape[0],), math.inf, dtype=torch.float64, device=device)
        bm = bo.clone()
        for it in range(int(steps) + 1):  # the last pass only evaluates the final iterate
            obj, mse = inversion_loss(G, z, xb, prior_weight)
            with torch.no_grad():
                better = obj.double() < bo
                bo = torch.where(better, obj.double(), bo)
                bm = torch.where(better, mse.double(), bm)
                bz[better] = z.detach()[better]
            if it == steps:
                break
            grad, = torch.autograd.grad(obj.sum(), z)
            z.grad = grad
            opt.step()
        best_z[s:s + batch_size] = bz.cpu()
        best_obj[s:s + batch_size] = bo.cpu()
        best_mse[s:s + batch_size] = bm.cpu()
    obj = best_obj.reshape(N, R)
    win = obj.argmin(dim=1)
    rows = torch.arange(N) * R + win
    z_best = best_z[rows]
    return Inversion(z=z_best, error=best_mse[rows].numpy(), objective=obj[torch.arange(N), win].numpy(),
                     restart=win.numpy(), latent_norm=z_best.flatten(1).double().norm(dim=1).numpy())
