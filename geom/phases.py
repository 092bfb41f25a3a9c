"""Phases of a diffusion model over a 2D plane of initial noises (Lobashev et al., "Hessian Geometry of Latent
Space in Generative Models", ICML 2025, the diffusion-model experiments): the noise plane, DDIM images on a
grid of it, image features, phase labels, the image-space Lipschitz estimate, distances to phase boundaries,
endpoints of geodesics within and across phases, and a box-counting dimension of boundaries under zoom.

The Fisher metric itself (posterior network, log-partition fit, Hessian) is ``geom.fisher``; geodesics, path
lengths and linearity of curves under a metric are ``geom.metric``. This module supplies what is specific to a
generator's latent plane and the measurements around it.

Conventions: a grid of plane coordinates is ``a`` (n1,) x ``b`` (n2,), row-major (``i = i1 * n2 + i2``) like
``geom.fisher.ParamGrid``; per-point arrays on the grid have shape ``(n1, n2, ...)``.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from .deprecation import renamed_kwargs

__all__ = [
    "seed_latents", "noise_plane", "plane_points", "generate_plane", "image_features", "kmeans_phases",
    "dominant_colour_phases", "edge_lipschitz", "lipschitz_map", "boundary_mask", "boundary_points",
    "boundary_distance", "choose_endpoints", "segment_labels", "box_counting_dimension", "mosaic",
]


# ------------------------------------------------------------------------------------------------- the plane
def seed_latents(shape: tuple[int, ...], seeds: tuple[int, int, int] = (0, 1, 2)) -> torch.Tensor:
    """Three standard normal initial noises ``l0, l1, l2`` ``(3, *shape)`` float32, each drawn from
    ``torch.Generator().manual_seed(seed)`` (CPU, so the same on every device)."""
    if len(seeds) != 3:
        raise ValueError(f"need three seeds (l0, l1, l2), got {seeds!r}")
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def noise_plane(latents: torch.Tensor, points: torch.Tensor, renormalise: bool = True) -> torch.Tensor:
    """Initial noises on the plane through three latents (Lobashev et al., diffusion experiments):
    ``z(a, b) = l0 + a (l1 - l0) + b (l2 - l0)``, each divided by its own standard deviation (over all its
    elements) when ``renormalise`` (so that ``z`` has the scale of ``N(0, I)`` noise the sampler expects).

    ``latents`` (3, *shape): ``l0, l1, l2``; ``points`` (P, 2): ``(a, b)`` -> (P, *shape) (dtype of latents)."""
    latents = torch.as_tensor(latents)
    points = torch.as_tensor(points, dtype=latents.dtype, device=latents.device)
    if latents.ndim < 2 or latents.shape[0] != 3:
        raise ValueError(f"latents must have shape (3, ...), got {tuple(latents.shape)}")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (P, 2), got {tuple(points.shape)}")
    if not (torch.isfinite(latents).all() and torch.isfinite(points).all()):
        raise ValueError("latents or points contain NaN or inf")
    l0, l1, l2 = latents
    view = (-1,) + (1,) * (latents.ndim - 1)
    z = l0[None] + points[:, 0].view(view) * (l1 - l0)[None] + points[:, 1].view(view) * (l2 - l0)[None]
    if renormalise:
        sd = z.flatten(1).std(1)
        if bool((sd == 0).any()):
            raise ValueError("a plane point has a constant latent (zero standard deviation); cannot renormalise")
        z = z / sd.view(view)
    return z


def plane_points(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-major grid points ``(n1 * n2, 2)`` of the axes ``a`` (n1,), ``b`` (n2,) (float64)."""
    A, B = torch.meshgrid(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                          indexing="ij")
    return torch.stack([A.reshape(-1), B.reshape(-1)], 1)


@renamed_kwargs(batch="batch_size")
@torch.no_grad()
def generate_plane(pipe, prompt: str, latents: torch.Tensor, points: torch.Tensor, num_steps: int = 50,
                   guidance_scale: float = 5.0, batch_size: int = 64, progress: bool = True) -> torch.Tensor:
    """Deterministic DDIM (``eta = 0``; ``geom.diffusion.sample`` with ``latents=``) from the plane noises
    ``noise_plane(latents, points)`` with one fixed ``prompt``, decoded and clamped to ``[-1, 1]``.

    Lobashev et al. (diffusion experiments) use 50 steps and guidance 5. ``points`` (P, 2) -> images
    (P, 3, H, W) float32 on the CPU (``batch_size`` points per DDIM call, so memory stays bounded on large grids)."""
    from .diffusion import sample

    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be one string, got {type(prompt).__name__}")
    points = torch.as_tensor(points, dtype=torch.float64)
    lat = torch.as_tensor(latents).double()
    if tuple(lat.shape[1:]) != tuple(pipe.latent_shape):
        raise ValueError(f"latents have shape {tuple(lat.shape)}, the model takes (3, {pipe.latent_shape})")
    out = []
    for i in tqdm(range(0, len(points), batch_size), disable=not progress, desc="plane"):
        z = noise_plane(lat, points[i:i + batch_size]).to(pipe.dtype)
        res = sample(pipe, [prompt] * len(z), num_steps=num_steps, guidance_scale=guidance_scale, eta=0.0,
                     latents=z.to(pipe.device), progress=False)
        out.append(pipe.vae_decode(res.latents).clamp(-1, 1).float().cpu())
    return torch.cat(out)


@renamed_kwargs(batch="batch_size")
@torch.no_grad()
def image_features(images: torch.Tensor, pipe=None, kind: str = "vae", side: int = 8,
                   batch_size: int = 64) -> torch.Tensor:
    """Offline per-image feature vectors for the posterior network: (B, 3, H, W) in ``[-1, 1]`` -> (B, d).

    ``kind="vae"``: the VAE posterior mean ``pipe.vae_encode(images)`` (the model's own compressed image
    representation, computed from the decoded, clamped image), average-pooled to at most ``side x side``
    (``d = 4 side^2``; tiny-ldm's 8x8 latent is kept whole, SD's 64x64 is pooled). ``kind="pixels"``: the image
    average-pooled to ``side x side`` (``d = 3 side^2``); needs no model. ``batch_size``: images per
    ``vae_encode`` call."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    def pool(x):
        return torch.nn.functional.adaptive_avg_pool2d(x, (min(side, x.shape[-2]), min(side, x.shape[-1])))

    if kind == "pixels":
        return pool(images.float()).flatten(1)
    if kind != "vae":
        raise ValueError(f"kind must be 'vae' or 'pixels', got {kind!r}")
    if pipe is None:
        raise ValueError("kind='vae' needs the pipeline (pipe=...)")
    out = [pool(pipe.vae_encode(images[i:i + batch_size].to(pipe.device, pipe.dtype)).float()).flatten(1).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------- phases
def kmeans_phases(features: torch.Tensor | np.ndarray, k: int, seed: int = 0, n_init: int = 10):
    """Phase labels by k-means (scikit-learn, ``n_init`` restarts, ``random_state=seed``) of standardised
    features (B, d) -> labels (B,) int64, relabelled by size (0 = largest phase), and ``assign``: a function
    features (M, d) -> labels (M,) of the nearest centre (same standardisation and label order), for new
    images such as a zoomed sub-grid. Generic: works on any model's features."""
    from sklearn.cluster import KMeans

    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must have shape (B, d), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or inf")
    if not 1 <= k <= len(X):
        raise ValueError(f"k must be in [1, {len(X)}], got {k}")
    mu, sd = X.mean(0), np.maximum(X.std(0), 1e-12)
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit((X - mu) / sd)
    u, c = np.unique(km.labels_, return_counts=True)
    order = u[np.lexsort((u, -c))]
    lut = np.zeros(k, dtype=np.int64)
    lut[order] = np.arange(len(order))

    def assign(F):
        F = np.asarray(F, dtype=np.float64)
        if F.ndim != 2 or F.shape[1] != X.shape[1]:
            raise ValueError(f"features must have shape (M, {X.shape[1]}), got {F.shape}")
        return lut[km.predict((F - mu) / sd)]

    return lut[km.labels_], assign


def dominant_colour_phases(images: torch.Tensor, palette: dict[str, tuple[float, float, float]],
                           max_distance: float = 0.25) -> tuple[np.ndarray, list[str]]:
    """Phase = the palette colour covering most pixels of an image (the dominant saturated content).

    ``images`` (B, 3, H, W) in ``[-1, 1]``; ``palette`` name -> RGB in ``[0, 1]``. A pixel counts for its
    nearest palette colour if within ``max_distance`` (RGB Euclidean, ``[0, 1]`` units); images with no such
    pixel get the label ``len(palette)`` (``"none"``). Returns labels (B,) int64 and the names (palette order,
    then ``"none"``)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    names = list(palette)
    P = torch.tensor([palette[n] for n in names], dtype=torch.float32)  # (K, 3)
    x = ((images.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).reshape(len(images), -1, 3)  # (B, HW, 3)
    d = torch.cdist(x, P[None].expand(len(images), -1, -1))  # (B, HW, K)
    dmin, j = d.min(-1)
    counts = torch.zeros(len(images), len(names) + 1)
    j = torch.where(dmin <= max_distance, j, torch.full_like(j, len(names)))
    counts.scatter_add_(1, j, torch.ones_like(j, dtype=torch.float32))
    lab = counts[:, :-1].argmax(1)
    lab[counts[:, :-1].sum(1) == 0] = len(names)
    return lab.numpy().astype(np.int64), names + ["none"]


# ------------------------------------------------------------------------------------------------- Lipschitz
def edge_lipschitz(images: torch.Tensor, da: float, db: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-space Lipschitz estimates on the edges of a grid (Lobashev et al., diffusion experiments):
    ``||x(a + da, b) - x(a, b)|| / da`` (Euclidean norm over all pixels and channels) along ``a`` and likewise
    along ``b``. ``images`` (n1, n2, ...) -> ``(La (n1 - 1, n2), Lb (n1, n2 - 1))`` float64."""
    if images.ndim < 3:
        raise ValueError(f"images must have shape (n1, n2, ...), got {tuple(images.shape)}")
    if da <= 0 or db <= 0:
        raise ValueError(f"grid spacings must be positive, got da={da}, db={db}")
    x = images.double().flatten(2)
    La = (x[1:] - x[:-1]).norm(dim=-1) / da
    Lb = (x[:, 1:] - x[:, :-1]).norm(dim=-1) / db
    return La, Lb


def lipschitz_map(images: torch.Tensor, da: float, db: float) -> torch.Tensor:
    """Per-point Lipschitz estimate (n1, n2): the largest ``edge_lipschitz`` over the (up to four) grid edges
    at each point."""
    La, Lb = edge_lipschitz(images, da, db)
    n1, n2 = images.shape[:2]
    L = torch.zeros(n1, n2, dtype=torch.float64)
    L[1:] = torch.maximum(L[1:], La)
    L[:-1] = torch.maximum(L[:-1], La)
    L[:, 1:] = torch.maximum(L[:, 1:], Lb)
    L[:, :-1] = torch.maximum(L[:, :-1], Lb)
    return L


# ------------------------------------------------------------------------------------------------- boundaries
def _labels2d(labels) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must have shape (n1, n2), got {lab.shape}")
    return lab


def boundary_mask(labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase-boundary indicators of an ``(n1, n2)`` label grid: edges along ``a`` (n1 - 1, n2) and along ``b``
    (n1, n2 - 1) whose two ends differ, and points (n1, n2) with at least one such edge."""
    lab = _labels2d(labels)
    ea = lab[1:] != lab[:-1]
    eb = lab[:, 1:] != lab[:, :-1]
    pt = np.zeros(lab.shape, dtype=bool)
    pt[1:] |= ea
    pt[:-1] |= ea
    pt[:, 1:] |= eb
    pt[:, :-1] |= eb
    return ea, eb, pt


def boundary_points(labels, a, b) -> np.ndarray:
    """Estimated boundary locations (M, 2) in ``(a, b)`` coordinates: the midpoint of every grid edge whose two
    ends have different labels (each lies within half a grid spacing of the true boundary it crosses)."""
    lab = _labels2d(labels)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if lab.shape != (len(a), len(b)):
        raise ValueError(f"labels {lab.shape} do not match the axes ({len(a)}, {len(b)})")
    ea, eb, _ = boundary_mask(lab)
    i, j = np.nonzero(ea)
    pa = np.stack([(a[i] + a[i + 1]) / 2, b[j]], 1)
    i, j = np.nonzero(eb)
    pb = np.stack([a[i], (b[j] + b[j + 1]) / 2], 1)
    return np.concatenate([pa, pb]).reshape(-1, 2)


def boundary_distance(labels, a, b, query=None) -> np.ndarray:
    """Euclidean distance (in ``(a, b)``) from each query point (Q, 2) (default: every grid point, returned as
    (n1, n2)) to the nearest estimated phase boundary (``boundary_points``); ``inf`` if there is one phase.
    Accurate to about one grid spacing (the midpoint estimate of the crossing point)."""
    pts = boundary_points(labels, a, b)
    grid_shape = None
    if query is None:
        q = plane_points(torch.as_tensor(np.asarray(a, np.float64)), torch.as_tensor(np.asarray(b, np.float64))).numpy()
        grid_shape = (len(a), len(b))
    else:
        q = np.asarray(query, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != 2:
            raise ValueError(f"query must have shape (Q, 2), got {q.shape}")
    if len(pts) == 0:
        d = np.full(len(q), np.inf)
    else:
        d = np.sqrt(((q[:, None, :] - pts[None]) ** 2).sum(-1)).min(1)
    return d.reshape(grid_shape) if grid_shape else d


def box_counting_dimension(labels, factors=(1, 2, 4, 8)) -> tuple[float, np.ndarray]:
    """Box-counting dimension of the phase boundaries of an ``(n1, n2)`` label grid. Boundary points are the
    midpoints of the grid edges whose ends differ (in grid-index units, e.g. ``(i + 1/2, j)``); for each box
    size ``s`` in ``factors`` (grid cells) ``N(s)`` counts the ``s x s`` boxes holding one; the dimension is minus
    the least-squares slope of ``log N`` against ``log s`` (1 for a smooth curve, 2 for a space-filling one).
    Returns ``(dimension, counts)``; NaN if fewer than two sizes have boundary boxes."""
    lab = _labels2d(labels)
    ea, eb, _ = boundary_mask(lab)
    i, j = np.nonzero(ea)
    pts = [np.stack([i + 0.5, j], 1)]
    i, j = np.nonzero(eb)
    pts.append(np.stack([i, j + 0.5], 1))
    pts = np.concatenate(pts).reshape(-1, 2)
    counts = np.asarray([len(np.unique(np.floor(pts / s).astype(np.int64), axis=0)) if len(pts) else 0
                         for s in factors])
    ok = counts > 0
    if ok.sum() < 2:
        return float("nan"), counts
    slope = np.polyfit(np.log(np.asarray(factors, float)[ok]), np.log(counts[ok]), 1)[0]
    return float(-slope), counts


# ------------------------------------------------------------------------------ mosaic, segments, endpoints
def mosaic(images: torch.Tensor, a_step: int = 1, b_step: int = 1) -> np.ndarray:
    """One picture of a grid of images ``(n1, n2, 3, H, W)`` in ``[-1, 1]`` (every ``a_step``-th / ``b_step``-th
    one): ``a`` grows to the right, ``b`` upwards. Returns (rows * H, cols * W, 3) in ``[0, 1]``."""
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"images must have shape (n1, n2, 3, H, W), got {tuple(images.shape)}")
    x = ((images[::a_step, ::b_step].float().clamp(-1, 1) + 1) / 2).flip(1)  # b descending = top to bottom
    n1, n2, _, H, W = x.shape
    return x.permute(1, 3, 0, 4, 2).reshape(n2 * H, n1 * W, 3).numpy()


def segment_labels(labels, a, b, start, end, n: int = 64) -> np.ndarray:
    """Phase labels (n,) along the straight segment ``start -> end`` (nearest grid point at each of ``n``
    evenly spaced points)."""
    lab = _labels2d(labels)
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    s = np.linspace(0, 1, n)[:, None]
    p = (1 - s) * np.asarray(start, np.float64) + s * np.asarray(end, np.float64)
    i = np.abs(p[:, :1] - a[None]).argmin(1)
    j = np.abs(p[:, 1:] - b[None]).argmin(1)
    return lab[i, j]


def choose_endpoints(labels, a, b, candidates, rng: np.random.Generator, n_pairs: int = 2000,
                     min_length: float = 0.0) -> dict:
    """Endpoint pairs for geodesics among ``candidates`` (C, 2) plane points: ``"same"``, the longest sampled
    pair whose straight segment stays in one phase, and ``"across"``, the longest whose endpoints lie in
    different phases and whose segment crosses exactly one boundary (one label change). ``n_pairs`` random
    pairs are drawn with ``rng``; pairs shorter than ``min_length`` are ignored. Values are ``(start, end)``
    arrays (2,) or ``None`` if no pair qualifies."""
    c = np.asarray(candidates, np.float64)
    if c.ndim != 2 or c.shape[1] != 2 or len(c) < 2:
        raise ValueError(f"candidates must have shape (C >= 2, 2), got {c.shape}")
    best = {"same": (None, -1.0), "across": (None, -1.0)}
    for _ in range(n_pairs):
        i, j = rng.choice(len(c), 2, replace=False)
        L = float(np.linalg.norm(c[i] - c[j]))
        if L < min_length:
            continue
        s = segment_labels(labels, a, b, c[i], c[j])
        changes = int((s[1:] != s[:-1]).sum())
        kind = "same" if changes == 0 else "across" if changes == 1 else None
        if kind and L > best[kind][1]:
            best[kind] = ((c[i], c[j]), L)
    return {k: v[0] for k, v in best.items()}
