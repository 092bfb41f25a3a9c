"""Every local-geometry signal of a sample in one call: ``report(G, latents=..., images=...)`` -> DataFrame.

Signals (one row per sample; a column is present when its inputs are and ``signals`` asks for it):

==================  ==========================================================================================
column              what (source)
==================  ==========================================================================================
``psi, nu, delta``  local scaling, local rank, local complexity of ``G`` at the latent (Humayun et al. Eq. 4,
``n_dropped_sv``    Def. 3, Def. 1; ``geom.describe``, or ``geom.slices.cached_describe`` with ``cache_dir``:
                    the same numbers, resumable)
``latent_norm``     ``||z||_2`` in float64 (a baseline: OOD images invert to atypical latents)
``recon_error``     mean squared error ``mean((G(z) - x)^2)`` per image in float64, ``z`` the given latents (e.g. a
                    GAN inversion: its pixel MSE) or ``encode(x)`` (a VAE: the round trip); ``G(z)`` clipped to
                    ``value_range`` first with ``clip_output=True``; needs ``images``
``png_bytes``       size of the image losslessly PNG-compressed (8-bit, zlib level 9): a model-free control,
                    a standard proxy of image complexity; a geometry signal is informative only where it
                    beats it. Computed on ``images``, else on ``G(latents)``
``<run>``,          FLIPD local intrinsic dimension of the latent under a diffusion model and its Hutchinson
``<run>_stderr``    standard error (Kamkari et al. 2024; ``geom.lid.flipd``), one pair per run of
                    ``flipd_kwargs`` (default one run, ``flipd``), when ``flipd_model`` is given
==================  ==========================================================================================

``DataFrame.attrs["seconds_per_sample"]`` holds the wall time of each step divided by the number of samples,
measured in this call. Every column of a sample depends only on that sample (and the seeds), never on its
batch companions: the descriptors by construction (``geom.describe``), FLIPD because each run's Hutchinson
probes are drawn from its seed, shared by all points, and the same in every chunk (``geom.lid.flipd``); only
the last digits of a float32 model's output may change with the batch shape.
"""
from __future__ import annotations

import io
import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .complexity import local_complexity, polytope_basis
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


SIGNALS = ("descriptors", "latent_norm", "recon_error", "png_bytes", "flipd")
COLUMNS = ("psi", "nu", "delta", "n_dropped_sv", "latent_norm", "recon_error", "png_bytes")  # besides FLIPD's


def report(G, latents: Tensor | None = None, images: Tensor | None = None, *, k: int | None = 120,
           radius: float = 1e-5, dim: int | None = 4, seed: int = 0, batch_size: int = 16,
           value_range: tuple[float, float] = (-1.0, 1.0), clip_output: bool = False,
           encode: Callable[[Tensor], Tensor] | None = None, signals: Sequence[str] | None = None,
           cache_dir=None, cache_extra: Sequence = (), flipd_model: Any = None, t0: float = 0.05,
           flipd_kwargs: dict[str, dict] | None = None, progress: bool = True) -> pd.DataFrame:
    """Every signal of each sample (module table) as a DataFrame with one row per sample.

    Args:
        G: a generator ``(B, *latent_shape) -> (B, *output_shape)`` in eval mode (``geom.models.load_generator``
            or any module ``geom.describe`` accepts).
        latents: ``(N, *latent_shape)``; or ``None`` with ``images``: then ``latents = encode(images)``.
        images: ``(N, *output_shape)`` in ``value_range`` (optional with ``latents``): the images the samples
            stand for (for ``recon_error``, and for ``png_bytes``, which needs ``(N, C, H, W)`` or ``(N, H, W)``).
        k, radius, dim, seed, batch_size: those of ``geom.describe`` (paper: ``k=120``, ``radius=1e-5``,
            ``dim=4``). ``batch_size`` latents also go through every other model call at a time (encode, decode,
            FLIPD), so that a sample's row does not depend on how many samples there are.
        value_range: the range of ``images`` and of ``G``'s output (``png_bytes`` quantises it to 8 bits).
        clip_output: clip ``G``'s output to ``value_range`` before ``recon_error`` (the error of the image as
            it is shown; the model's input images are in range by assumption). Default ``False``: the raw output.
        encode: the encoder ``images (B, ...) -> latents (B, *latent_shape)`` used when ``latents`` is ``None``;
            default ``G.encode`` (a VAE decoder from ``load_generator``; for a pipeline, ``pipe.vae_encode``).
        signals: the signals to compute, a subset of ``SIGNALS`` (``"descriptors"`` is ``psi, nu, delta,
            n_dropped_sv``; ``"flipd"`` every run of ``flipd_kwargs``); ``None``: all that the inputs allow.
        cache_dir: descriptors through ``geom.slices.cached_describe`` (chunks of 64 latents cached under the
            SHA-256 of ``G``'s weights, the latents and the settings: a re-run reads them, an interrupted one
            resumes; the same numbers as ``geom.describe``). ``cache_extra``: what changes ``G`` outside its state
            dict (e.g. a ``scaling_factor``), part of the key. ``None``: ``geom.describe``, uncached.
        flipd_model, t0, flipd_kwargs: FLIPD of the latents under this noise predictor (anything
            ``geom.lid.flipd`` accepts; for a latent diffusion model the latents are the diffusion's data) at noise
            level ``t0``. ``flipd_kwargs`` maps a column name to the keyword arguments of one ``geom.lid.flipd``
            run (``probes``, ``schedule``, ``seed`` (default ``seed``), ``t0`` (default ``t0``),
            ``encoder_hidden_states`` ``(1 or N, L, C)``: one embedding shared by every sample, or one per
            sample, sliced with its chunk), e.g. ``{"flipd_cond": dict(encoder_hidden_states=emb),
            "flipd_uncond": dict(encoder_hidden_states=emb_empty)}``; ``None``: one run ``{"flipd": {}}``.
            Each run is evaluated in chunks of ``batch_size`` latents with the same probes (drawn from its seed,
            shared by every point), so a sample's value does not depend on its chunk.
        progress: progress bars / cache messages.
    Returns:
        DataFrame ``(N, columns)`` (module table; FLIPD runs as ``<name>``, ``<name>_stderr``).
        ``attrs["seconds_per_sample"]``: ``{step: seconds}`` wall time of each step of this call divided by
        ``N``: ``encode``, ``psi_nu`` (``geom.describe`` without delta) and ``delta`` (delta alone, on the same
        polytope basis: ``describe`` with delta costs their sum) or, with ``cache_dir``, ``descriptors`` (~0 for
        chunks read from the cache), ``latent_norm``, ``decode`` (``G`` on the latents), ``recon_error`` (the
        MSE after the decode), ``png_bytes``, and one per FLIPD run. ``attrs["flipd"]``: ``{run: {t0, t0_used,
        timestep, sigma, alpha_bar, probes}}``, the noise level each run used.
    Raises:
        ValueError when neither latents nor images are given, when images are given without latents and there
        is no encoder, when the two counts differ, for an unknown or unavailable signal, a FLIPD run without a
        model, an ``encoder_hidden_states`` of another batch than 1 or N, or a column name taken twice (and the
        errors of ``geom.describe`` / ``geom.slices.cached_describe`` / ``geom.lid``). TypeError when
        ``flipd_kwargs`` is not a mapping of names to keyword dicts.
    """
    if latents is None and images is None:
        raise ValueError("report needs latents, images, or both")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    bs = int(batch_size)
    runs = _flipd_runs(flipd_model, flipd_kwargs)
    available = {"descriptors", "latent_norm", "png_bytes"} | ({"recon_error"} if images is not None else set()) \
        | ({"flipd"} if runs else set())
    if signals is None:
        wanted = available
    else:
        wanted = set(signals) if not isinstance(signals, str) else {signals}
        unknown = wanted - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; choose from {list(SIGNALS)}")
        missing = wanted - available
        if missing:
            raise ValueError(f"signals {sorted(missing)} need inputs that were not given: recon_error needs images, "
                             "flipd needs flipd_model")
    enc = encode if encode is not None else getattr(G, "encode", None)
    seconds: dict[str, float] = {}
    if latents is None:
        if enc is None:
            raise ValueError(f"{type(G).__name__} has no encode(): pass the latents of the images (for a GAN, "
                             "invert them with geom.inversion.invert), encode=<images -> latents> (for a "
                             "pipeline, pipe.vae_encode), or a generator from load_generator with an encoder")
        t = time.perf_counter()
        with torch.no_grad():
            latents = torch.cat([enc(images[i:i + bs]) for i in range(0, len(images), bs)])
        seconds["encode"] = time.perf_counter() - t
    if images is not None and len(images) != len(latents):
        raise ValueError(f"images ({len(images)}) and latents ({len(latents)}) must be the same samples")
    n = len(latents)
    df = pd.DataFrame(index=pd.RangeIndex(n))
    if "descriptors" in wanted:
        df = _descriptors(G, latents, k, radius, dim, seed, bs, cache_dir, cache_extra, progress, seconds)
    if "latent_norm" in wanted:
        t = time.perf_counter()
        df["latent_norm"] = torch.linalg.vector_norm(latents.detach().flatten(1).double(), dim=1).cpu().numpy()
        seconds["latent_norm"] = time.perf_counter() - t
    out = None
    if "recon_error" in wanted or ("png_bytes" in wanted and images is None):
        t = time.perf_counter()
        with torch.no_grad():
            out = torch.cat([call_generator(G, latents[i:i + bs]).detach().cpu() for i in range(0, n, bs)])
        seconds["decode"] = time.perf_counter() - t
    if "recon_error" in wanted:  # the reconstruction (encoder) or inversion (latents given) error, in float64
        t = time.perf_counter()
        y = out.double()
        if clip_output:
            y = y.clamp(*(float(v) for v in value_range))
        x = images.detach().cpu().double()
        if x.shape != y.shape:
            raise ValueError(f"images {tuple(x.shape)} and G's output {tuple(y.shape)} differ in shape: pass the "
                             "images G should reproduce, shaped like its output")
        df["recon_error"] = ((y - x) ** 2).flatten(1).mean(1).numpy()
        seconds["recon_error"] = time.perf_counter() - t
    if "png_bytes" in wanted:
        t = time.perf_counter()
        df["png_bytes"] = png_bytes(images if images is not None else out, value_range)
        seconds["png_bytes"] = time.perf_counter() - t
    if "flipd" in wanted:
        levels = {}
        for name, kw in runs.items():
            t = time.perf_counter()
            lid, stderr, level, probes = _flipd_chunked(flipd_model, latents, dict(kw), t0, seed, bs, name)
            seconds[name] = time.perf_counter() - t
            df[name], df[f"{name}_stderr"] = lid, stderr
            levels[name] = dict(t0=level.t0, t0_used=level.t0_used, timestep=level.timestep, sigma=level.sigma,
                                alpha_bar=level.alpha_bar, probes=probes)
        df.attrs["flipd"] = levels
    df.attrs["seconds_per_sample"] = {s: v / n for s, v in seconds.items()}
    return df


def _flipd_runs(flipd_model, flipd_kwargs) -> dict[str, dict]:
    """``flipd_kwargs`` checked: ``{column name: kwargs}`` (``{"flipd": {}}`` by default with a model)."""
    if flipd_kwargs is None:
        return {"flipd": {}} if flipd_model is not None else {}
    if flipd_model is None:
        raise ValueError("flipd_kwargs given without flipd_model: pass the noise predictor as flipd_model")
    if not isinstance(flipd_kwargs, dict) or not flipd_kwargs \
            or not all(isinstance(k, str) and isinstance(v, dict) for k, v in flipd_kwargs.items()):
        raise TypeError("flipd_kwargs maps a column name to the keyword arguments of one geom.lid.flipd run, e.g. "
                        "{'flipd': {'probes': 64}} or {'flipd_cond': {...}, 'flipd_uncond': {...}}; got "
                        f"{flipd_kwargs!r:.200}")
    taken = set(COLUMNS) | set(flipd_kwargs)
    for name in flipd_kwargs:
        if name in COLUMNS or f"{name}_stderr" in taken:
            raise ValueError(f"FLIPD run {name!r} would overwrite a column of the report; name it otherwise")
    return flipd_kwargs


def _descriptors(G, z, k, radius, dim, seed, bs, cache_dir, cache_extra, progress, seconds) -> pd.DataFrame:
    """psi, nu, delta, n_dropped_sv of ``geom.describe``: cached (``cache_dir``) or as two timed steps."""
    if cache_dir is not None:
        from .slices import cached_describe

        t = time.perf_counter()
        df = cached_describe(G, z, cache_dir, k=k, radius=radius, dim=dim, seed=seed, batch_size=bs,
                             extra=tuple(cache_extra), progress=progress)
        seconds["descriptors"] = time.perf_counter() - t
        return df
    # geom.describe's loop, split so that psi/nu and delta are timed apart: the Jacobian part is describe without
    # delta, delta is local_complexity per batch on describe's basis (polytope_basis(E, min(dim, E), seed))
    t = time.perf_counter()
    df = describe(G, z, k=k, radius=radius, dim=dim, seed=seed, batch_size=bs, complexity=False, progress=progress)
    seconds["psi_nu"] = time.perf_counter() - t
    t = time.perf_counter()
    E = math.prod(z.shape[1:])
    basis = polytope_basis(E, min(4 if dim is None else int(dim), E), seed, dtype=torch.float64, device=z.device)
    delta = [local_complexity(G, z[s:s + bs], radius=radius, dim=basis.shape[0], basis=basis).cpu()
             for s in range(0, len(z), bs)]
    df.insert(2, "delta", torch.cat(delta).numpy().astype(np.int64))
    seconds["delta"] = time.perf_counter() - t
    return df


def _flipd_chunked(model, x: Tensor, kw: dict, t0: float, seed: int, bs: int, name: str):
    """One FLIPD run over ``x`` in chunks of ``bs`` points (an ``encoder_hidden_states`` of batch N sliced with
    them): ``(lid, stderr, level, probes)``, arrays float64 ``(N,)``."""
    from .lid import flipd

    n = len(x)
    ehs = kw.pop("encoder_hidden_states", None)
    if ehs is not None and (not isinstance(ehs, Tensor) or ehs.ndim < 1 or ehs.shape[0] not in (1, n)):
        raise ValueError(f"FLIPD run {name!r}: encoder_hidden_states must be (1, L, C) (shared) or (N, L, C) with "
                         f"N = {n} (one per sample), got {getattr(ehs, 'shape', type(ehs).__name__)}")
    kw = {"t0": t0, "seed": seed, **kw}
    lid, stderr, res = [], [], None
    for s in range(0, n, bs):
        e = ehs if ehs is None or ehs.shape[0] == 1 else ehs[s:s + bs]
        extra = {} if e is None else {"encoder_hidden_states": e}
        res = flipd(model, x[s:s + bs], **kw, **extra)
        lid.append(res.lid)
        stderr.append(res.stderr)
    return torch.cat(lid).numpy(), torch.cat(stderr).numpy(), res.level, res.probes
