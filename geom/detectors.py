"""Every local-geometry signal of a sample in one call: ``report(G, latents=..., images=...)`` -> DataFrame.

Signals (one row per sample; a column is present when its inputs are):

==================  ==========================================================================================
column              what (source)
==================  ==========================================================================================
``psi, nu, delta``  local scaling, local rank, local complexity of ``G`` at the latent (Humayun et al. Eq. 4,
``n_dropped_sv``    Def. 3, Def. 1; ``geom.describe``)
``latent_norm``     ``||z||_2`` (a baseline: OOD images invert to atypical latents)
``recon_error``     mean squared error ``mean((G(z) - x)^2)`` per image, ``z`` the given latents (e.g. a GAN
                    inversion) or ``G.encode(x)`` (a VAE decoder from ``load_generator``); needs ``images``
``png_bytes``       size of the image losslessly PNG-compressed (8-bit, zlib level 9): a model-free control,
                    a standard proxy of image complexity; a geometry signal is informative only where it
                    beats it. Computed on ``images``, else on ``G(latents)``
``flipd``,          FLIPD local intrinsic dimension of the latent under a diffusion model and its Hutchinson
``flipd_stderr``    standard error (Kamkari et al. 2024; ``geom.lid.flipd``), when ``flipd_model`` is given
==================  ==========================================================================================

``DataFrame.attrs["seconds_per_sample"]`` holds the wall time of each signal divided by the number of samples,
measured in this call. Every column of a sample depends only on that sample (and the seeds), never on its
batch companions: the descriptors by construction (``geom.describe``), FLIPD because its Hutchinson probes are
drawn once per call and shared by all points (``geom.lid.flipd``).
"""
from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .descriptors import describe
from .jacobian import call_generator


def png_bytes(images, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """PNG-compressed size in bytes of each image: ``images`` ``(N, C, H, W)`` (C = 1 or 3) or ``(N, H, W)``,
    values in ``value_range`` (clipped), quantised to 8 bits, compressed by Pillow at zlib level 9.
    Returns ``(N,)`` int64. Raises ``ValueError`` for another shape, a NaN, or an empty range."""
    from PIL import Image

    x = images.detach().cpu().double().numpy() if isinstance(images, Tensor) else np.asarray(images, dtype=float)
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C in (1, 3) or (N, H, W), got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("images contain NaN")
    u8 = np.round((np.clip(x, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    out = np.empty(len(u8), dtype=np.int64)
    for i, img in enumerate(u8):
        buf = io.BytesIO()
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(arr).save(buf, format="PNG", compress_level=9)
        out[i] = buf.tell()
    return out


def report(G, latents: Tensor | None = None, images: Tensor | None = None, *, k: int | None = 120,
           radius: float = 1e-5, dim: int | None = 4, seed: int = 0, batch_size: int = 16,
           value_range: tuple[float, float] = (-1.0, 1.0), flipd_model: Any = None, t0: float = 0.05,
           flipd_kwargs: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """Every signal of each sample (module table) as a DataFrame with one row per sample.

    Args:
        G: a generator ``(B, *latent_shape) -> (B, *output_shape)`` in eval mode (``geom.models.load_generator``
            or any module ``geom.describe`` accepts).
        latents: ``(N, *latent_shape)``; or ``None`` with ``images``: then ``latents = G.encode(images)``.
        images: ``(N, C, H, W)`` in ``value_range`` (optional with ``latents``): the images the samples stand for
            (for ``recon_error`` and ``png_bytes``).
        k, radius, dim, seed, batch_size: those of ``geom.describe`` (paper: ``k=120``, ``radius=1e-5``,
            ``dim=4``).
        flipd_model, t0, flipd_kwargs: FLIPD of the latents under this noise predictor (anything
            ``geom.lid.flipd`` accepts; for a latent diffusion model the latents are the diffusion's data);
            ``flipd_kwargs`` go to ``geom.lid.flipd`` (e.g. ``probes``, ``schedule``, ``encoder_hidden_states``).
    Returns:
        DataFrame ``(N, columns)``; ``attrs["seconds_per_sample"]``: ``{signal: seconds}``.
    Raises:
        ValueError when neither latents nor images are given, when images are given without latents and ``G``
        has no ``encode``, or when the two counts differ (and the errors of ``geom.describe`` / ``geom.lid``).
    """
    if latents is None and images is None:
        raise ValueError("report needs latents, images, or both")
    encode = getattr(G, "encode", None)
    seconds: dict[str, float] = {}
    if latents is None:
        if encode is None:
            raise ValueError(f"{type(G).__name__} has no encode(): pass the latents of the images (for a GAN, "
                             "invert them with geom.inversion.invert), or a generator from load_generator with an encoder")
        t = time.perf_counter()
        with torch.no_grad():
            latents = torch.cat([encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
        seconds["encode"] = time.perf_counter() - t
    if images is not None and len(images) != len(latents):
        raise ValueError(f"images ({len(images)}) and latents ({len(latents)}) must be the same samples")
    n = len(latents)
    t = time.perf_counter()
    df = describe(G, latents, k=k, radius=radius, dim=dim, seed=seed, batch_size=batch_size, progress=progress)
    seconds["descriptors"] = time.perf_counter() - t
    df["latent_norm"] = torch.linalg.vector_norm(latents.detach().flatten(1).double(), dim=1).cpu().numpy()
    t = time.perf_counter()
    with torch.no_grad():
        out = torch.cat([call_generator(G, latents[i:i + batch_size]) for i in range(0, n, batch_size)])
    seconds["decode"] = time.perf_counter() - t
    if images is not None:  # the reconstruction (encoder) or inversion (latents given) error
        df["recon_error"] = ((out.double() - images.double()) ** 2).flatten(1).mean(1).cpu().numpy()
    t = time.perf_counter()
    df["png_bytes"] = png_bytes(images if images is not None else out, value_range)
    seconds["png_bytes"] = time.perf_counter() - t
    if flipd_model is not None:
        from .lid import flipd

        t = time.perf_counter()
        res = flipd(flipd_model, latents, t0, **(flipd_kwargs or {}))
        df["flipd"], df["flipd_stderr"] = res.lid.numpy(), res.stderr.numpy()
        seconds["flipd"] = time.perf_counter() - t
    df.attrs["seconds_per_sample"] = {s: v / n for s, v in seconds.items()}
    return df
