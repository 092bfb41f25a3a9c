"""Latent-space slices and data-set geometry for latent diffusion decoders (Humayun et al. Sec. 3.3.1-3.3.3).

Slices (Sec. 3.3.1, Fig. 5, Figs. 21-26): the 2D plane through three latents ``z0, z1, z2``
(``(*latent_shape)`` each), parameterised as in ``geom.sweep`` (source ``plane:N[:lo:hi]``)::

    z(u, v) = z0 + u (z1 - z0) + v (z2 - z0),   u, v in linspace(lo, hi, N),   row index = i * N + j,
    u = t[i], v = t[j]

so the anchors sit at ``(u, v) = (0, 0), (1, 0), (0, 1)`` and their convex hull (a triangle) is
``u >= 0, v >= 0, u + v <= 1``. ``plane_latents``, ``ANCHOR_UV``, ``in_hull``, ``grid_image`` (sweep table ->
an ``(N, N)`` array for ``imshow(origin="lower")`` with ``u`` along x and ``v`` along y) and
``slice_maps`` (descriptor heatmaps with the anchors and the hull drawn) are the pieces notebook 04 uses.

Data-set geometry and OOD (Sec. 3.3.2-3.3.3, Figs. 6, 7, 14, 15): image sets the embedded model ``tiny-ldm``
never saw (``ood_images``: crops of scikit-learn's two sample photographs, upscaled and coloured
scikit-learn digits, 1/f "natural-image-like" noise textures, crops of pydicom's bundled CT/MR scans),
an in-distribution held-out set (``id_images``: fresh ``geom.shapes`` renders), ``rank_picks`` (images at
evenly spaced ranks of a descriptor, for the ordered grids), and AUROC helpers (``auroc``: the
Mann-Whitney statistic with ties counted 1/2; ``auroc_ci``: stratified bootstrap percentile interval).

Images are float32 arrays ``(n, 3, S, S)`` in ``[0, 1]`` (channels first), like ``geom.shapes``; use
``geom.shapes.to_model_range`` before ``pipe.vae_encode``. Everything is a deterministic function of ``seed``.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

ANCHOR_UV: np.ndarray = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
"""Plane coordinates ``(u, v)`` of the three anchors ``z0, z1, z2`` (rows)."""

OOD_KINDS: tuple[str, ...] = ("photos", "digits", "textures", "medical")


# --------------------------------------------------------------------------------------------- the plane
def plane_axis(n: int, lo: float = -0.5, hi: float = 1.5) -> np.ndarray:
    """The ``N`` plane coordinates ``t = linspace(lo, hi, N)`` of ``geom.sweep``'s ``plane:N:lo:hi``."""
    if int(n) < 1:
        raise ValueError(f"grid size must be >= 1, got {n}")
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"plane extent must be finite with lo < hi, got lo={lo}, hi={hi}")
    return np.linspace(lo, hi, int(n))


def plane_uv(n: int, lo: float = -0.5, hi: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)`` ``(N*N,)`` each, in ``geom.sweep`` row order (``index = i * N + j``, ``u = t[i]``, ``v = t[j]``)."""
    t = plane_axis(n, lo, hi)
    i, j = np.divmod(np.arange(int(n) ** 2), int(n))
    return t[i], t[j]


def check_anchors(anchors: Tensor) -> Tensor:
    """Validate three anchor latents ``(3, *latent_shape)`` (finite, not collinear); returns them."""
    if not isinstance(anchors, Tensor):
        anchors = torch.as_tensor(np.asarray(anchors))
    if anchors.ndim < 2 or anchors.shape[0] != 3:
        raise ValueError(f"anchors must have shape (3, *latent_shape), got {tuple(anchors.shape)}")
    if not torch.isfinite(anchors).all():
        raise ValueError("anchors contain NaN or inf")
    a = anchors.reshape(3, -1).to(torch.float64)
    d = torch.stack([a[1] - a[0], a[2] - a[0]])
    sv = torch.linalg.svdvals(d)
    if sv[-1] <= 1e-9 * max(float(sv[0]), 1e-300):
        raise ValueError("the three anchors are collinear (or coincide): they do not span a plane")
    return anchors


def plane_latents(anchors: Tensor, u, v) -> Tensor:
    """``z(u, v) = z0 + u (z1 - z0) + v (z2 - z0)``: anchors ``(3, *latent_shape)``, ``u, v`` ``(M,)`` ->
    ``(M, *latent_shape)`` in the anchors' dtype (computed in float64). ``geom.sweep``'s plane uses this map."""
    anchors = check_anchors(anchors)
    u = torch.as_tensor(np.asarray(u, dtype=np.float64)).reshape(-1)
    v = torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(-1)
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same length, got {u.numel()} and {v.numel()}")
    z0, z1, z2 = anchors.to(torch.float64)
    shape = (-1, *([1] * z0.ndim))
    return (z0 + u.reshape(shape).to(z0.device) * (z1 - z0) + v.reshape(shape).to(z0.device) * (z2 - z0)).to(anchors.dtype)


def plane_coordinates(anchors: Tensor, z: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares plane coordinates of latents ``z`` ``(M, *latent_shape)``: ``(u, v, residual)`` with
    ``residual = ||z - z(u, v)|| / ||z - z0||`` (0 for latents on the plane)."""
    anchors = check_anchors(anchors)
    a = anchors.reshape(3, -1).to(torch.float64)
    D = torch.stack([a[1] - a[0], a[2] - a[0]], dim=1)  # (E, 2)
    r = z.reshape(z.shape[0], -1).to(torch.float64) - a[0]
    uv = torch.linalg.lstsq(D, r.T).solution.T  # (M, 2)
    res = (r - uv @ D.T).norm(dim=1) / r.norm(dim=1).clamp_min(1e-300)
    return uv[:, 0].numpy(), uv[:, 1].numpy(), res.numpy()


def in_hull(u, v, tol: float = 1e-12) -> np.ndarray:
    """Boolean mask: is ``(u, v)`` inside the convex hull of the anchors (the triangle ``u >= 0, v >= 0,
    u + v <= 1``, boundary included up to ``tol``)? ``u, v`` arrays of one shape."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same shape, got {u.shape} and {v.shape}")
    return (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol)


def grid_image(values, n: int) -> np.ndarray:
    """Values ``(N*N,)`` in ``geom.sweep`` plane order (``index = i * N + j``, ``u = t[i]``, ``v = t[j]``) ->
    ``(N, N)`` array ``img[j, i]`` (rows = ``v``, columns = ``u``) for ``imshow(img, origin="lower",
    extent=(lo, hi, lo, hi))``, which puts ``u`` on the x axis and ``v`` on the y axis."""
    a = np.asarray(values, dtype=float).reshape(-1)
    if a.size != int(n) ** 2:
        raise ValueError(f"{a.size} values is not an {n} x {n} grid")
    return a.reshape(int(n), int(n)).T


def slice_maps(df, n: int, lo: float = -0.5, hi: float = 1.5, columns: Sequence[str] = ("psi", "nu", "delta"),
               labels: Sequence[str] = ("z0", "z1", "z2"), suptitle: str | None = None, axes=None):
    """Heatmaps of descriptor columns of a plane sweep table ``df`` (``N*N`` rows in sweep order) with ``u``
    on x and ``v`` on y, the three anchors marked and their convex hull (triangle) outlined. Returns the
    Figure."""
    import matplotlib.pyplot as plt

    from .plots import CMAPS, LABELS

    if len(df) != int(n) ** 2:
        raise ValueError(f"slice_maps: {len(df)} rows is not an {n} x {n} grid")
    if axes is None:
        fig, axes = plt.subplots(1, len(columns), figsize=(4.4 * len(columns), 3.9), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    tri = np.vstack([ANCHOR_UV, ANCHOR_UV[:1]])
    half = (hi - lo) / (2 * max(int(n) - 1, 1))  # pixel centres sit on the grid points
    for ax, col in zip(axes, columns):
        im = ax.imshow(grid_image(df[col], n), origin="lower", cmap=CMAPS.get(col, "viridis"),
                       extent=(lo - half, hi + half, lo - half, hi + half), interpolation="nearest", aspect="equal")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.plot(tri[:, 0], tri[:, 1], color="white", lw=1.2, ls="--")
        ax.scatter(ANCHOR_UV[:, 0], ANCHOR_UV[:, 1], s=30, c="white", edgecolors="black", zorder=3)
        for (x, y), lab in zip(ANCHOR_UV, labels):
            ax.annotate(lab, (x, y), xytext=(4, 4), textcoords="offset points", color="white", fontsize=8)
        ax.set_title(LABELS.get(col, col))
        ax.set_xlabel("u")
        ax.set_ylabel("v")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


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


# --------------------------------------------------------------------------------------------- image sets
def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """``(n, C, h, w)`` float -> ``(n, C, size, size)`` (antialiased bilinear)."""
    t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=t.shape[-1] > size)
    return t.clamp(0, 1).numpy()


def _check_n_size(n: int, size: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < 4:
        raise ValueError(f"size must be an int >= 4, got {size!r}")


def _random_crops(img: np.ndarray, n: int, size: int, rng: np.random.Generator, min_frac: float = 0.15,
                  max_frac: float = 0.5) -> np.ndarray:
    """``n`` random square crops of ``img`` ``(C, H, W)`` in [0, 1], side a random fraction of ``min(H, W)``,
    resized to ``size``."""
    C, H, W = img.shape
    out = []
    for _ in range(n):
        s = max(4, int(rng.uniform(min_frac, max_frac) * min(H, W)))
        y, x = rng.integers(0, H - s + 1), rng.integers(0, W - s + 1)
        out.append(_resize(img[None, :, y:y + s, x:x + s], size)[0])
    return np.stack(out)


def photo_crops(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random crops of scikit-learn's two bundled photographs (``load_sample_images``: a Chinese temple,
    a flower), resized to ``size`` -> ``(n, 3, size, size)`` in [0, 1]."""
    from sklearn.datasets import load_sample_images

    _check_n_size(n, size)
    rng = np.random.default_rng([seed, 11])
    photos = [im.astype(np.float32).transpose(2, 0, 1) / 255.0 for im in load_sample_images().images]
    which = rng.integers(0, len(photos), n)
    return np.concatenate([_random_crops(photos[w], 1, size, rng) for w in which]).astype(np.float32)


def coloured_digits(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """scikit-learn's 8x8 handwritten digits (``load_digits``), upscaled to ``size`` and coloured with a
    random foreground and background colour each -> ``(n, 3, size, size)`` in [0, 1]."""
    from sklearn.datasets import load_digits

    _check_n_size(n, size)
    rng = np.random.default_rng([seed, 12])
    d = load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8)
    idx = rng.choice(len(d), n, replace=n > len(d))
    m = _resize(d[idx][:, None], size)  # (n, 1, S, S) stroke intensity
    fg = rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32)
    bg = rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32)
    return (bg * (1 - m) + fg * m).astype(np.float32)


def noise_textures(n: int, size: int = 32, seed: int = 0, exponent: float = 2.0) -> np.ndarray:
    """Natural-image-like random textures: Gaussian noise with power spectrum ``1 / f^exponent``
    (``exponent = 2``: the spectrum of natural images), per channel with correlated colours, rescaled to
    [0, 1] -> ``(n, 3, size, size)``."""
    _check_n_size(n, size)
    rng = np.random.default_rng([seed, 13])
    f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2)
    f[0, 0] = 1.0
    amp = f ** (-exponent / 2)
    amp[0, 0] = 0.0
    out = np.empty((n, 3, size, size), np.float32)
    for k in range(n):
        base = np.fft.ifft2(amp * np.fft.fft2(rng.standard_normal((size, size)))).real
        own = np.fft.ifft2(amp[None] * np.fft.fft2(rng.standard_normal((3, size, size)))).real
        x = 0.7 * base[None] + 0.3 * own
        x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
        tint = rng.uniform(0.4, 1.0, (3, 1, 1))
        out[k] = (x * tint).astype(np.float32)
    return out


MEDICAL_FILES: tuple[str, ...] = ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm")


def medical_scans(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random crops of the CT and MR scans bundled with pydicom (``pydicom/data/test_files``:
    ``MEDICAL_FILES``; read from the installed package, nothing is downloaded), each scan windowed to its
    1st-99th percentile, grey replicated to RGB -> ``(n, 3, size, size)`` in [0, 1]. Raises ``ImportError``
    when pydicom is missing and ``FileNotFoundError`` when its test files are."""
    _check_n_size(n, size)
    try:
        import pydicom
    except ImportError as e:
        raise ImportError("medical_scans needs pydicom (pip install pydicom)") from e
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    scans = []
    for name in MEDICAL_FILES:
        p = folder / name
        if not p.is_file():
            raise FileNotFoundError(f"pydicom test file {p} is missing (medical_scans reads {MEDICAL_FILES})")
        a = pydicom.dcmread(p).pixel_array.astype(np.float32)
        lo, hi = np.percentile(a, [1, 99])
        scans.append(np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)[None])
    rng = np.random.default_rng([seed, 14])
    which = rng.integers(0, len(scans), n)
    grey = np.concatenate([_random_crops(scans[w], 1, size, rng, 0.4, 0.9) for w in which])
    return np.repeat(grey, 3, axis=1).astype(np.float32)


def ood_images(kind: str, n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """An out-of-distribution image set ``(n, 3, size, size)`` float32 in [0, 1] of one ``kind`` in
    ``OOD_KINDS``: ``"photos"`` (``photo_crops``), ``"digits"`` (``coloured_digits``), ``"textures"``
    (``noise_textures``), ``"medical"`` (``medical_scans``, needs pydicom)."""
    makers = {"photos": photo_crops, "digits": coloured_digits, "textures": noise_textures, "medical": medical_scans}
    if kind not in makers:
        raise ValueError(f"unknown OOD image kind {kind!r}; expected one of {OOD_KINDS}")
    x = makers[kind](n, size, seed)
    if x.shape != (n, 3, size, size) or not np.isfinite(x).all():
        raise RuntimeError(f"ood_images({kind!r}) made an array of shape {x.shape}")  # a bug, never bad input
    return x


def id_images(n: int, size: int = 32, seed: int = 1) -> tuple[np.ndarray, list[str]]:
    """``n`` held-out in-distribution images of ``geom.shapes`` (the training distribution of tiny-ldm, drawn
    with a seed other than the training seed 0; no memorised images), evenly spread over the (shape, colour,
    background) combinations -> ``(images (n, 3, size, size) in [0, 1], prompts)``."""
    from . import shapes

    _check_n_size(n, size)
    if int(seed) == 0:
        raise ValueError("seed 0 is the training set of tiny-ldm; use another seed for held-out images")
    combos = len(shapes.SHAPES) * len(shapes.COLOURS) * len(shapes.BACKGROUNDS)
    ds = shapes.make_dataset(n_per_combo=math.ceil(n / combos), size=size, seed=seed, memorised=False)
    idx = np.sort(np.random.default_rng([seed, 15]).choice(len(ds), n, replace=False))
    return ds.images[idx], [ds.prompts[i] for i in idx]


# --------------------------------------------------------------------------------------------- AUROC
def auroc(positive, negative) -> float:
    """Area under the ROC curve for separating ``positive`` (scores expected higher) from ``negative``:
    ``P(X > Y) + P(X = Y) / 2`` over all pairs (the Mann-Whitney U statistic / (n_pos n_neg)), computed from
    mid-ranks in ``O(n log n)``. 0.5 = no separation; 1 - AUROC is the AUROC of the flipped score."""
    x = np.asarray(positive, dtype=float).reshape(-1)
    y = np.asarray(negative, dtype=float).reshape(-1)
    if x.size == 0 or y.size == 0:
        raise ValueError(f"auroc needs at least one positive and one negative score, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("auroc: scores contain NaN or inf")
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([x, y]))  # mid-ranks for ties
    u = r[:x.size].sum() - x.size * (x.size + 1) / 2
    return float(u / (x.size * y.size))


def auroc_ci(positive, negative, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(auroc, lo, hi)``: the AUROC and a stratified bootstrap percentile interval (positives and negatives
    resampled with replacement separately, ``n_boot`` times, ``numpy.random.default_rng(seed)``)."""
    x = np.asarray(positive, dtype=float).reshape(-1)
    y = np.asarray(negative, dtype=float).reshape(-1)
    a = auroc(x, y)
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    boots = np.array([auroc(x[rng.integers(0, x.size, x.size)], y[rng.integers(0, y.size, y.size)])
                      for _ in range(int(n_boot))])
    q = (1 - level) / 2
    lo, hi = np.quantile(boots, [q, 1 - q])
    return a, float(lo), float(hi)


def auroc_table(scores: dict, is_positive, n_boot: int = 2000, seed: int = 0):
    """AUROC with bootstrap CI of several scores: ``scores`` ``{name: (n,) array}``, ``is_positive`` ``(n,)``
    bool. Returns a DataFrame (``score, auroc, lo, hi, best_direction``): ``best_direction`` is ``"higher"``
    when larger scores mean positive (AUROC >= 0.5), else ``"lower"``; AUROC is always reported for
    "higher = positive" so that values below 0.5 stay visible."""
    import pandas as pd

    pos = np.asarray(is_positive, dtype=bool).reshape(-1)
    rows = []
    for name, s in scores.items():
        s = np.asarray(s, dtype=float).reshape(-1)
        if s.shape != pos.shape:
            raise ValueError(f"score {name!r} has {s.size} values for {pos.size} labels")
        a, lo, hi = auroc_ci(s[pos], s[~pos], n_boot=n_boot, seed=seed)
        rows.append(dict(score=name, auroc=a, lo=lo, hi=hi, best_direction="higher" if a >= 0.5 else "lower"))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- cached descriptors
def _tensor_bytes(t: Tensor) -> bytes:
    """The raw bytes of a tensor's values, for any dtype (bfloat16 and float8 included, which numpy lacks)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def module_digest(module: torch.nn.Module, extra: Sequence = ()) -> str:
    """SHA-256 (hex) of a module's state dict (names, dtypes, shapes, values; sorted by name) and of the
    ``repr`` of ``extra`` (e.g. a ``scaling_factor`` that lives outside the state dict). Works for every
    dtype (bfloat16 too). Raises ``TypeError`` for anything but an ``nn.Module``."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module_digest needs an nn.Module, got {type(module).__name__}")
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(_tensor_bytes(t))
    h.update(repr(tuple(extra)).encode())
    return h.hexdigest()


def cached_describe(G: torch.nn.Module, z: Tensor, cache_dir, k: int | None = 120, radius: float = 1e-5,
                    dim: int | None = 4, seed: int = 0, batch_size: int = 16, chunk: int = 64,
                    extra: Sequence = (), progress: bool = True):
    """``geom.describe(G, z, ...)`` computed in chunks of ``chunk`` latents, each chunk cached as
    ``cache_dir/<key>/part-NNNNNN.parquet`` (written atomically), where ``key`` is the SHA-256 of the content
    of every input: the weights of ``G`` (``module_digest(G, extra)``; put anything outside the state dict
    that changes ``G``, e.g. a ``scaling_factor``, in ``extra``), the bytes of the latents ``z``
    ``(N, *latent_shape)``, every setting (``k, radius, dim, seed, batch_size, chunk``) and the version of
    the descriptor code (``geom.descriptors.ENGINE_VERSION``). The key and its
    parts are written to ``cache_dir/<key>/key.json``. A re-run with the same decoder, latents and settings
    (in any process, under any model name) reads the finished chunks instead of recomputing them: an
    interrupted run resumes; other weights, latents or settings get another folder (recomputed), so rows
    computed from other inputs are never served. Returns the DataFrame of ``geom.describe`` (``psi``,
    ``nu``, ``delta``; ``N`` rows). Descriptors are those of Humayun et al. Eq. 4, Def. 3, Def. 1.
    Raises ``ValueError`` for bad ``z`` / ``chunk``, ``TypeError`` when ``G`` is not an ``nn.Module`` and
    ``RuntimeError`` when a cached chunk does not hold the rows of its latents."""
    import pandas as pd

    from . import descriptors
    from .paths import atomic_write

    if not isinstance(z, Tensor) or z.ndim < 2:
        raise ValueError(f"z must be a tensor (N, *latent_shape), got {getattr(z, 'shape', type(z).__name__)}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    settings = dict(k=k, radius=float(radius), dim=dim, seed=int(seed), batch_size=int(batch_size),
                    chunk=int(chunk))
    key = dict(version=2, engine_version=descriptors.ENGINE_VERSION, module_sha256=module_digest(G, extra),
               latents_sha256=hashlib.sha256(_tensor_bytes(z)).hexdigest(),
               latents=f"{z.dtype}{tuple(z.shape)}", settings=settings)
    text = json.dumps(key, indent=1, sort_keys=True)
    folder = Path(cache_dir) / hashlib.sha256(text.encode()).hexdigest()[:20]
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "key.json"
    if key_file.exists() and json.loads(key_file.read_text()) != key:
        raise RuntimeError(f"cache {folder} holds another key ({key_file}); remove the folder")
    if not key_file.exists():
        atomic_write(key_file, lambda tmp: tmp.write_text(text + "\n"))
    parts = []
    starts = range(0, z.shape[0], int(chunk))
    for c, s in enumerate(starts):
        p = folder / f"part-{c:06d}.parquet"
        n_rows = min(int(chunk), z.shape[0] - s)
        if p.exists():
            part = pd.read_parquet(p)
            if len(part) != n_rows:
                raise RuntimeError(f"cache chunk {p} holds {len(part)} rows for latents {s}..{s + n_rows - 1}; "
                                   f"remove {folder}")
            parts.append(part)
            continue
        df = descriptors.describe(G, z[s:s + int(chunk)], k=k, radius=radius, dim=dim, seed=seed, batch_size=batch_size,
                      progress=False)
        atomic_write(p, lambda tmp: df.to_parquet(tmp, index=False))
        parts.append(df)
        if progress:
            print(f"cached_describe: chunk {c + 1}/{len(starts)} -> {p}", flush=True)
    out = pd.concat(parts, ignore_index=True)
    if len(out) != z.shape[0]:
        raise RuntimeError(f"cache {folder} holds {len(out)} rows for {z.shape[0]} latents")
    return out
