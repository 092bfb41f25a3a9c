"""What notebooks 04, 05 and 13 need besides the plane and the statistics: orderings of a descriptor and
descriptors cached on disk (Humayun et al. Sec. 3.3.1-3.3.3).

* ``extreme_indices`` (the lowest and highest values) and ``rank_picks`` (items at evenly spaced ranks: the
  images of a grid "ordered by the descriptor", Fig. 6).
* ``cached_describe``: ``geom.describe`` in chunks cached on disk under the SHA-256 of every input (decoder
  weights, latents, settings, descriptor engine version), so a re-run reads finished chunks and an
  interrupted run resumes. The weights hash it keys on, ``module_digest``, lives with the generator type in
  ``geom.models.base`` (also ``geom.sweep.model_digest``'s) and stays importable from here.

Elsewhere: the plane through three latents is ``geom.planes``, AUROC and intervals are
``geom.stats``, the OOD / ID image sets are ``geom.datasets``, ``slice_maps`` is ``geom.plots``. Their former
names here stay importable (same signatures), except ``auroc`` / ``auroc_ci``, which took
``(positive, negative)``: call ``geom.stats.auroc(scores, labels)``.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .deprecation import renamed_kwargs

# former names of this module, moved by concept (same signatures): importable from here as before
from .datasets import (coloured_digits, id_images, medical_scans, noise_textures, ood_images,  # noqa: F401
                       photo_crops)
from .planes import (ANCHOR_UV, check_anchors, grid_image, in_hull, plane_axis, plane_coordinates,  # noqa: F401
                     plane_latents, plane_uv)
from .models.base import module_digest, tensor_bytes  # noqa: F401  (module_digest: geom.models.base)
from .stats import auroc_table  # noqa: F401


def __getattr__(name: str):
    if name == "slice_maps":  # a figure: imported on first use (matplotlib stays out of the sweep's imports)
        from .plots import slice_maps
        return slice_maps
    raise AttributeError(f"module 'geom.slices' has no attribute {name!r}"
                         + ("; it took (positive, negative): use geom.stats.auroc(scores, labels)"
                            if name in ("auroc", "auroc_ci") else ""))


# --------------------------------------------------------------------------------------------- orderings
def extreme_indices(values, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``m`` lowest (ascending) and ``m`` highest (descending) finite values."""
    a = np.asarray(values, dtype=float).reshape(-1)
    ok = np.flatnonzero(np.isfinite(a))
    if m < 1 or m > ok.size:
        raise ValueError(f"m must be between 1 and the number of finite values {ok.size}, got {m}")
    order = ok[np.argsort(a[ok], kind="stable")]
    return order[:m], order[::-1][:m]


def rank_picks(values, m: int) -> np.ndarray:
    """Indices of ``m`` items at evenly spaced ranks of ``values`` (lowest first, highest last): the images
    of a grid "ordered by the descriptor" (Humayun et al. Fig. 6)."""
    a = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(a).all():
        raise ValueError("values contain NaN or inf")
    if m < 1 or m > a.size:
        raise ValueError(f"m must be between 1 and {a.size}, got {m}")
    order = np.argsort(a, kind="stable")
    return order[np.round(np.linspace(0, a.size - 1, m)).astype(int)]


# --------------------------------------------------------------------------------------------- cached descriptors
@renamed_kwargs(chunk="shard_size")
def cached_describe(G: torch.nn.Module, z: Tensor, cache_dir, k: int | None = 120, radius: float = 1e-5,
                    dim: int | None = 4, seed: int = 0, batch_size: int = 16, shard_size: int = 64,
                    extra: Sequence = (), progress: bool = True):
    """``geom.describe(G, z, ...)`` computed in shards of ``shard_size`` latents, each shard cached as
    ``cache_dir/<key>/part-NNNNNN.parquet`` (written atomically), where ``key`` is the SHA-256 of the content
    of every input: the weights of ``G`` and its non-persistent buffers (``module_digest(G, extra)``; put
    anything else outside the module's tensors that changes ``G``, e.g. a ``scaling_factor``, in ``extra``), the bytes of the latents ``z``
    ``(N, *latent_shape)``, every setting (``k, radius, dim, seed, batch_size, shard_size``; recorded under the
    key ``chunk``, its name when the caches were first written, so existing caches stay valid) and the version of
    the descriptor code (``geom.descriptors.ENGINE_VERSION``). The key and its
    parts are written to ``cache_dir/<key>/key.json``. A re-run with the same decoder, latents and settings
    (in any process, under any model name) reads the finished shards instead of recomputing them: an
    interrupted run resumes; other weights, latents or settings get another folder (recomputed), so rows
    computed from other inputs are never served. Returns the DataFrame of ``geom.describe`` (``psi``,
    ``nu``, ``delta``; ``N`` rows). Descriptors are those of Humayun et al. Eq. 4, Def. 3, Def. 1.
    Raises ``ValueError`` for bad ``z`` / ``shard_size``, ``TypeError`` when ``G`` is not an ``nn.Module`` and
    ``RuntimeError`` when a cached chunk does not hold the rows of its latents."""
    import pandas as pd

    from . import descriptors
    from .chunks import keyed_folder, part_path, pending_parts, read_parts, write_part

    if not isinstance(z, Tensor) or z.ndim < 2:
        raise ValueError(f"z must be a tensor (N, *latent_shape), got {getattr(z, 'shape', type(z).__name__)}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    settings = dict(k=k, radius=float(radius), dim=dim, seed=int(seed), batch_size=int(batch_size),
                    chunk=int(shard_size))
    key = dict(version=2, engine_version=descriptors.ENGINE_VERSION, module_sha256=module_digest(G, extra),
               latents_sha256=hashlib.sha256(tensor_bytes(z)).hexdigest(),
               latents=f"{z.dtype}{tuple(z.shape)}", settings=settings)
    folder = keyed_folder(cache_dir, key)
    starts = range(0, z.shape[0], int(shard_size))
    for c in pending_parts(folder, len(starts)):  # the chunk store of geom.chunks: resume = compute what is missing
        s = starts[c]
        df = descriptors.describe(G, z[s:s + int(shard_size)], k=k, radius=radius, dim=dim, seed=seed,
                                  batch_size=batch_size, progress=False)
        p = write_part(folder, c, df)
        if progress:
            print(f"cached_describe: chunk {c + 1}/{len(starts)} -> {p}", flush=True)
    parts = read_parts(folder, len(starts), what="descriptor cache")
    for c, (s, part) in enumerate(zip(starts, parts)):
        n_rows = min(int(shard_size), z.shape[0] - s)
        if len(part) != n_rows:
            raise RuntimeError(f"cache chunk {part_path(folder, c)} holds {len(part)} rows for latents "
                               f"{s}..{s + n_rows - 1}; remove {folder}")
    out = pd.concat(parts, ignore_index=True)
    if len(out) != z.shape[0]:
        raise RuntimeError(f"cache {folder} holds {len(out)} rows for {z.shape[0]} latents")
    return out
