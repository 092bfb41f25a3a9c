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
``<run>``,          log-likelihood of the latent in nats per latent (``<run>_bpd``: bits per dimension) under the
``<run>_stderr``,   diffusion model by the probability-flow ODE, with its Hutchinson standard error (Song et al.
``<run>_bpd``       2021, App. D.2; ``geom.likelihood.loglik``), one triple per run of ``loglik_kwargs`` (e.g.
                    ``{"loglik": {}}``); higher = more likely
``ddos_t<t>``       partial-diffusion reconstruction error at DDPM step ``t`` (noise to ``t``, DDIM back; DDOS,
                    Raya et al.; Graham et al. 2023; ``geom.reconstruction.partial_diffusion_error``), one column
                    per step of ``ddos_steps``
==================  ==========================================================================================

``loglik`` and ``ddos`` use ``diffusion_model`` (default: ``flipd_model``) and, with ``cache_dir``, are cached
like the descriptors: chunks of 64 latents in the resumable chunk store (``geom.chunks``) under the SHA-256 of the
model's weights and schedule, the latents, the settings and the code version, so a re-run reads them.

``DataFrame.attrs["seconds_per_sample"]`` holds the wall time of each step divided by the number of samples,
measured in this call. Every column of a sample depends only on that sample (and the seeds), never on its
batch companions: the descriptors by construction (``geom.describe``), FLIPD because each run's Hutchinson
probes are drawn from its seed, shared by all points, and the same in every chunk (``geom.lid.flipd``); only
the last digits of a float32 model's output may change with the batch shape. ``loglik`` shares its probes and
``ddos`` its noise draw between all points in the same way.
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


SIGNALS = ("descriptors", "latent_norm", "recon_error", "png_bytes", "flipd", "loglik", "ddos")
CACHE_CHUNK = 64  # latents per cached part of loglik / ddos
COLUMNS = ("psi", "nu", "delta", "n_dropped_sv", "latent_norm", "recon_error", "png_bytes")  # besides FLIPD's


def report(G, latents: Tensor | None = None, images: Tensor | None = None, *, k: int | None = 120,
           radius: float = 1e-5, dim: int | None = 4, seed: int = 0, batch_size: int = 16,
           value_range: tuple[float, float] = (-1.0, 1.0), clip_output: bool = False,
           encode: Callable[[Tensor], Tensor] | None = None, signals: Sequence[str] | None = None,
           cache_dir=None, cache_extra: Sequence = (), flipd_model: Any = None, t0: float = 0.05,
           flipd_kwargs: dict[str, dict] | None = None, diffusion_model: Any = None,
           loglik_kwargs: dict[str, dict] | None = None, ddos_steps: Sequence[int] | None = None,
           ddos_kwargs: dict | None = None, progress: bool = True) -> pd.DataFrame:
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
        diffusion_model: the noise predictor of ``loglik`` and ``ddos`` (anything ``geom.lid.as_eps_model``
            accepts: a ``LatentDiffusion``, a diffusers UNet with ``schedule`` in the keyword arguments, ...);
            default ``flipd_model``.
        loglik_kwargs: ``{column name: keyword arguments of one geom.likelihood.loglik run}`` (``solver``,
            ``num_steps``, ``probes``, ``seed`` (default ``seed``), ``encoder_hidden_states`` /
            ``uncond_hidden_states`` ``(1 or N, L, C)`` sliced with the chunks, ``guidance_scale``, ...), e.g.
            ``{"loglik": dict(encoder_hidden_states=pipe.encode_prompt([""]))}``; ``None``: no likelihood.
        ddos_steps, ddos_kwargs: the DDPM steps of the partial-diffusion error (columns ``ddos_t<t>``) and the
            keyword arguments of ``geom.reconstruction.partial_diffusion_error`` (``num_steps``, ``repeats``,
            ``seed`` (default ``seed``), embeddings as above, ``decode``); ``None``: no reconstruction error.
        progress: progress bars / cache messages.
    Returns:
        DataFrame ``(N, columns)`` (module table; FLIPD runs as ``<name>``, ``<name>_stderr``).
        ``attrs["seconds_per_sample"]``: ``{step: seconds}`` wall time of each step of this call divided by
        ``N``: ``encode``, ``psi_nu`` (``geom.describe`` without delta) and ``delta`` (delta alone, on the same
        polytope basis: ``describe`` with delta costs their sum) or, with ``cache_dir``, ``descriptors`` (~0 for
        chunks read from the cache), ``latent_norm``, ``decode`` (``G`` on the latents), ``recon_error`` (the
        MSE after the decode), ``png_bytes``, and one per FLIPD run. ``attrs["flipd"]``: ``{run: {t0, t0_used,
        timestep, sigma, alpha_bar, probes}}``, the noise level each run used. ``attrs["loglik"]``: ``{run:
        {units, dim, solver, steps, probes, alpha_bar_start, alpha_bar_end, nfe}}``; ``attrs["ddos"]``: ``{steps,
        num_steps, repeats}``.
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
    dm = diffusion_model if diffusion_model is not None else flipd_model
    ll_runs, ddos_cols = _diffusion_signals(dm, loglik_kwargs, ddos_steps, ddos_kwargs, set(runs))
    available = {"descriptors", "latent_norm", "png_bytes"} | ({"recon_error"} if images is not None else set()) \
        | ({"flipd"} if runs else set()) | ({"loglik"} if ll_runs else set()) | ({"ddos"} if ddos_cols else set())
    wanted = _wanted_signals(signals, available)
    seconds: dict[str, float] = {}
    if latents is None:
        latents = _encode_images(G, images, encode, bs, seconds)
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
    _image_columns(df, G, latents, images, wanted, value_range, clip_output, bs, seconds)
    if "flipd" in wanted:
        _flipd_columns(df, flipd_model, latents, runs, t0, seed, bs, seconds)
    if "loglik" in wanted:
        info = {}
        for name, kw in ll_runs.items():
            t = time.perf_counter()
            cols, info[name] = _loglik_chunked(dm, latents, dict(kw), seed, bs, name, cache_dir, progress)
            seconds[name] = time.perf_counter() - t
            for c, v in cols.items():
                df[c] = v
        df.attrs["loglik"] = info
    if "ddos" in wanted:
        _ddos_columns(df, dm, latents, ddos_steps, ddos_kwargs, seed, bs, cache_dir, progress, seconds)
    df.attrs["seconds_per_sample"] = {s: v / n for s, v in seconds.items()}
    return df


def _wanted_signals(signals, available: set[str]) -> set[str]:
    """``signals`` checked against ``SIGNALS`` and against what the inputs allow (``available``); ``None``: all."""
    if signals is None:
        return available
    wanted = set(signals) if not isinstance(signals, str) else {signals}
    unknown = wanted - set(SIGNALS)
    if unknown:
        raise ValueError(f"unknown signals {sorted(unknown)}; choose from {list(SIGNALS)}")
    missing = wanted - available
    if missing:
        raise ValueError(f"signals {sorted(missing)} need inputs that were not given: recon_error needs images, "
                         "flipd needs flipd_model, loglik needs loglik_kwargs (e.g. {'loglik': {}}), ddos needs "
                         "ddos_steps (e.g. [100, 300, 500])")
    return wanted


def _encode_images(G, images: Tensor, encode, bs: int, seconds: dict) -> Tensor:
    """The latents of ``images`` by ``encode`` (default ``G.encode``), ``bs`` images at a time."""
    enc = encode if encode is not None else getattr(G, "encode", None)
    if enc is None:
        raise ValueError(f"{type(G).__name__} has no encode(): pass the latents of the images (for a GAN, "
                         "invert them with geom.inversion.invert), encode=<images -> latents> (for a "
                         "pipeline, pipe.vae_encode), or a generator from load_generator with an encoder")
    t = time.perf_counter()
    with torch.no_grad():
        latents = torch.cat([enc(images[i:i + bs]) for i in range(0, len(images), bs)])
    seconds["encode"] = time.perf_counter() - t
    return latents


def _image_columns(df: pd.DataFrame, G, latents: Tensor, images, wanted: set[str], value_range, clip_output: bool,
                   bs: int, seconds: dict) -> None:
    """``recon_error`` and ``png_bytes`` into ``df`` (decoding the latents once when either needs it)."""
    n = len(latents)
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


def _flipd_columns(df: pd.DataFrame, flipd_model, latents: Tensor, runs: dict, t0: float, seed: int, bs: int,
                   seconds: dict) -> None:
    """One ``<name>``, ``<name>_stderr`` column pair per FLIPD run, and ``df.attrs["flipd"]``."""
    levels = {}
    for name, kw in runs.items():
        t = time.perf_counter()
        lid, stderr, level, probes = _flipd_chunked(flipd_model, latents, dict(kw), t0, seed, bs, name)
        seconds[name] = time.perf_counter() - t
        df[name], df[f"{name}_stderr"] = lid, stderr
        levels[name] = dict(t0=level.t0, t0_used=level.t0_used, timestep=level.timestep, sigma=level.sigma,
                            alpha_bar=level.alpha_bar, probes=probes)
    df.attrs["flipd"] = levels


def _ddos_columns(df: pd.DataFrame, dm, latents: Tensor, ddos_steps, ddos_kwargs, seed: int, bs: int, cache_dir,
                  progress: bool, seconds: dict) -> None:
    """One ``ddos_t<t>`` column per step, and ``df.attrs["ddos"]``."""
    t = time.perf_counter()
    cols = _ddos_chunked(dm, latents, list(ddos_steps), dict(ddos_kwargs or {}), seed, bs, cache_dir, progress)
    seconds["ddos"] = time.perf_counter() - t
    for c, v in cols.items():
        df[c] = v
    kw = ddos_kwargs or {}
    df.attrs["ddos"] = dict(steps=[int(v) for v in ddos_steps], num_steps=int(kw.get("num_steps", 10)),
                            repeats=int(kw.get("repeats", 1)))


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


# ------------------------------------------------------------------------------------------ loglik / ddos
def _diffusion_signals(model, loglik_kwargs, ddos_steps, ddos_kwargs, flipd_names: set) -> tuple[dict, list]:
    """``loglik_kwargs`` and ``ddos_steps`` checked: ``({column: kwargs}, [ddos column names])``."""
    if (loglik_kwargs is not None or ddos_steps is not None) and model is None:
        raise ValueError("loglik_kwargs / ddos_steps given without a diffusion model: pass diffusion_model (or "
                         "flipd_model), e.g. the LatentDiffusion of geom.models.load_pipeline")
    if ddos_kwargs is not None and ddos_steps is None:
        raise ValueError("ddos_kwargs given without ddos_steps: pass the DDPM steps, e.g. ddos_steps=[100, 300, 500]")
    runs = {}
    if loglik_kwargs is not None:
        if not isinstance(loglik_kwargs, dict) or not loglik_kwargs \
                or not all(isinstance(k, str) and isinstance(v, dict) for k, v in loglik_kwargs.items()):
            raise TypeError("loglik_kwargs maps a column name to the keyword arguments of one geom.likelihood.loglik "
                            f"run, e.g. {{'loglik': {{'probes': 4}}}}; got {loglik_kwargs!r:.200}")
        runs = loglik_kwargs
    cols = []
    if ddos_steps is not None:
        steps = [ddos_steps] if isinstance(ddos_steps, (int, np.integer)) else list(ddos_steps)
        if not steps or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) for t in steps) \
                or len(set(steps)) != len(steps):
            raise ValueError(f"ddos_steps must be distinct whole DDPM steps, e.g. [100, 300, 500], got {ddos_steps!r}")
        cols = [f"ddos_t{int(t)}" for t in steps]
    taken = set(COLUMNS) | {f"{n}{x}" for n in flipd_names for x in ("", "_stderr")}
    new = [f"{n}{x}" for n in runs for x in ("", "_stderr", "_bpd")] + cols
    clash = sorted((set(new) & taken) | {c for c in new if new.count(c) > 1})
    if clash:
        raise ValueError(f"loglik / ddos columns {clash} would overwrite other columns of the report; name the loglik "
                         "runs otherwise")
    return runs, cols


def _per_sample(kw: dict, n: int, what: str) -> dict:
    """The embeddings of ``kw`` checked: ``(1, L, C)`` (shared) or ``(N, L, C)`` (one per sample, sliced later)."""
    for key in ("encoder_hidden_states", "uncond_hidden_states"):
        e = kw.get(key)
        if e is not None and (not isinstance(e, Tensor) or e.ndim < 1 or e.shape[0] not in (1, n)):
            raise ValueError(f"{what}: {key} must be (1, L, C) (shared) or (N, L, C) with N = {n} (one per sample), "
                             f"got {getattr(e, 'shape', type(e).__name__)}")
    return kw


def _slice(kw: dict, s: int, e: int) -> dict:
    out = dict(kw)
    for key in ("encoder_hidden_states", "uncond_hidden_states"):
        v = out.get(key)
        if v is not None and v.shape[0] != 1:
            out[key] = v[s:e]
    return out


def _key_value(v: Any, what: str):
    """A JSON-able, content-based stand-in for a keyword argument (tensors and schedules by their bytes)."""
    import hashlib

    from .models.base import tensor_bytes
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_key_value(x, what) for x in v]
    if isinstance(v, Tensor):
        return f"tensor {v.dtype}{tuple(v.shape)} sha256 {hashlib.sha256(tensor_bytes(v)).hexdigest()}"
    if hasattr(v, "alphas_cumprod") and hasattr(v, "config"):  # a diffusers scheduler
        return dict(scheduler=type(v).__name__, alphas_cumprod=_key_value(v.alphas_cumprod, what),
                    prediction_type=str(getattr(v.config, "prediction_type", None)))
    if isinstance(v, torch.nn.Module):
        from .models.base import module_digest
        return f"module {type(v).__name__} sha256 {module_digest(v)}"
    raise ValueError(f"{what}: cannot cache with the argument {v!r:.80} (no content hash): pass cache_dir=None, or "
                     "an nn.Module instead of a function")


def _model_key(model, what: str) -> dict:
    from .models.base import module_digest
    from .models.pipeline import LatentDiffusion
    if isinstance(model, LatentDiffusion):
        return dict(unet=module_digest(model.unet), schedule=_key_value(model.scheduler, what))
    if isinstance(model, torch.nn.Module):
        return dict(module=module_digest(model))
    raise ValueError(f"{what}: cache_dir needs a model whose weights can be hashed (a LatentDiffusion or an "
                     f"nn.Module), got {type(model).__name__}; pass cache_dir=None")


def _cached_columns(cache_dir, what: str, key: dict, n: int, compute: Callable[[int, int], pd.DataFrame],
                    progress: bool) -> pd.DataFrame:
    """``compute(start, stop)`` for the rows ``0..n-1`` in parts of ``CACHE_CHUNK``; with ``cache_dir`` each part is
    cached in the chunk store ``cache_dir/<what>-<SHA-256 of key>/`` (``key.json`` beside it), as the descriptors."""
    from .chunks import keyed_folder, pending_parts, read_parts, write_part
    starts = list(range(0, n, CACHE_CHUNK))
    if cache_dir is None:
        return pd.concat([compute(s, min(s + CACHE_CHUNK, n)) for s in starts], ignore_index=True)
    folder = keyed_folder(cache_dir, key, prefix=f"{what}-")
    for c in pending_parts(folder, len(starts)):
        p = write_part(folder, c, compute(starts[c], min(starts[c] + CACHE_CHUNK, n)))
        if progress:
            print(f"{what}: chunk {c + 1}/{len(starts)} -> {p}", flush=True)
    parts = read_parts(folder, len(starts), what=f"{what} cache")
    out = pd.concat(parts, ignore_index=True)
    if len(out) != n:
        raise RuntimeError(f"cache {folder} holds {len(out)} rows for {n} latents; remove the folder")
    return out


def _loglik_chunked(model, x: Tensor, kw: dict, seed: int, bs: int, name: str, cache_dir, progress: bool):
    """One ``loglik`` run over ``x`` in batches of ``bs``: ``({name, name_stderr, name_bpd: (N,)}, info)``."""
    from .likelihood import VERSION, loglik
    from .models.base import tensor_bytes

    n = len(x)
    kw = _per_sample({"seed": seed, **kw}, n, f"loglik run {name!r}")
    info: dict = {}

    def compute(s: int, e: int) -> pd.DataFrame:
        rows = []
        for b in range(s, e, bs):
            r = loglik(model, x[b:min(b + bs, e)], **{"progress": False, **_slice(kw, b, min(b + bs, e))})
            info.update(solver=r.solver, steps=None if r.steps is None else list(r.steps), probes=r.probes,
                        alpha_bar_start=r.alpha_bar_start, alpha_bar_end=r.alpha_bar_end, nfe=r.nfe)
            rows.append(pd.DataFrame({name: r.logp.numpy(), f"{name}_stderr": r.stderr.numpy(),
                                      f"{name}_bpd": r.bpd.numpy()}))
        return pd.concat(rows, ignore_index=True)

    key = None
    if cache_dir is not None:
        import hashlib
        key = dict(signal="loglik", version=VERSION, column=name, model=_model_key(model, f"loglik run {name!r}"),
                   latents=f"{x.dtype}{tuple(x.shape)} sha256 {hashlib.sha256(tensor_bytes(x)).hexdigest()}",
                   batch_size=bs, kwargs={k: _key_value(v, f"loglik run {name!r}") for k, v in sorted(kw.items())})
    df = _cached_columns(cache_dir, "loglik", key, n, compute, progress)
    if not info:  # every part read from the cache
        info = dict(solver=kw.get("solver", "heun"), probes=0 if kw.get("exact") else kw.get("probes", 4), cached=True)
    info = dict(units="nats per latent (column), bits per dimension (_bpd)", dim=int(math.prod(x.shape[1:])), **info)
    return {c: df[c].to_numpy() for c in df.columns}, info


def _ddos_chunked(model, x: Tensor, steps: list, kw: dict, seed: int, bs: int, cache_dir, progress: bool) -> dict:
    """``partial_diffusion_error`` over ``x`` in batches of ``bs``: ``{ddos_t<t>: (N,)}``."""
    from .models.base import tensor_bytes
    from .reconstruction import VERSION, partial_diffusion_error

    n = len(x)
    kw = _per_sample({"seed": seed, **kw}, n, "ddos")

    def compute(s: int, e: int) -> pd.DataFrame:
        rows = [pd.DataFrame(partial_diffusion_error(model, x[b:min(b + bs, e)], steps,
                                                     **{"progress": False, **_slice(kw, b, min(b + bs, e))}).columns())
                for b in range(s, e, bs)]
        return pd.concat(rows, ignore_index=True)

    key = None
    if cache_dir is not None:
        import hashlib
        key = dict(signal="ddos", version=VERSION, steps=[int(t) for t in steps], model=_model_key(model, "ddos"),
                   latents=f"{x.dtype}{tuple(x.shape)} sha256 {hashlib.sha256(tensor_bytes(x)).hexdigest()}",
                   batch_size=bs, kwargs={k: _key_value(v, "ddos") for k, v in sorted(kw.items())})
    df = _cached_columns(cache_dir, "ddos", key, n, compute, progress)
    return {c: df[c].to_numpy() for c in df.columns}
