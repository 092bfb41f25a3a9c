"""Synthetic prompt-image data ("shapes") for the embedded latent diffusion model ``tiny-ldm``.

Every image shows one coloured shape on a textured background and is described by a prompt of the form
``"a red circle on stripes"`` (``"a {colour} {shape} on {background}"``). Position, size, rotation, the
background colours and the texture phase/period are random, so no two normal images are equal.

A few *memorised* prompts (``MEMORISED_PROMPTS``, e.g. ``"the famous poster of aurora"``) are each tied to
ONE unique image (a composition of several shapes) that is duplicated ``copies`` times in the training set,
as duplicated captions are in web data (Humayun et al. Sec. 3.3.4; Wen et al., ICLR 2024): the memorised
prompts and their images are known ground truth for memorisation.

Images are ``float32`` arrays ``(N, 3, S, S)`` in ``[0, 1]`` (channels first, RGB); ``to_model_range`` maps
them to the ``[-1, 1]`` tensors the VAE takes. Everything is a deterministic function of ``seed``
(``numpy.random.default_rng``); rendering is supersampled 2x (anti-aliased edges).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .deprecation import renamed_kwargs

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10), "green": (0.10, 0.75, 0.15), "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10), "magenta": (0.90, 0.15, 0.85), "cyan": (0.10, 0.85, 0.90),
    "white": (0.97, 0.97, 0.97), "orange": (1.00, 0.55, 0.05),
}
BACKGROUNDS: tuple[str, ...] = ("plain", "stripes", "checks", "dots", "noise")
MEMORISED_NAMES: tuple[str, ...] = ("aurora", "bramble", "cobalt", "dunmore", "ember", "fjord", "gallow", "harbor")
MEMORISED_PROMPTS: tuple[str, ...] = tuple(f"the famous poster of {n}" for n in MEMORISED_NAMES)
SUPERSAMPLE = 2


def prompt(colour: str, shape: str, background: str) -> str:
    """The caption of a normal image: ``"a {colour} {shape} on {background}"``."""
    return f"a {colour} {shape} on {background}"


def vocabulary() -> list[str]:
    """Every word the prompts of this data set use (sorted), for the word-level prompt encoder."""
    words = {"a", "on", "the", "famous", "poster", "of", *SHAPES, *COLOURS, *BACKGROUNDS, *MEMORISED_NAMES}
    return sorted(words)


# --------------------------------------------------------------------------------------------- rendering
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    n = size * SUPERSAMPLE
    c = (np.arange(n, dtype=np.float32) + 0.5) / SUPERSAMPLE  # pixel units, centres
    return np.meshgrid(c, c, indexing="xy")  # x (cols), y (rows), each (n, n)


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, cx, cy, r, angle) -> np.ndarray:
    """Boolean mask ``(B, n, n)`` of ``shape`` with centre ``(cx, cy)``, circumradius ``r``, rotation ``angle``
    (arrays ``(B,)``) on the supersampled grid ``x, y`` ``(n, n)``."""
    dx = x[None] - cx[:, None, None]
    dy = y[None] - cy[:, None, None]
    rho = np.hypot(dx, dy)
    th = np.arctan2(dy, dx) - angle[:, None, None]
    R = r[:, None, None]
    if shape == "circle":
        return rho <= R
    if shape in ("square", "triangle"):
        n = 4 if shape == "square" else 3
        d = 2 * np.pi / n
        u = np.mod(th, d) - d / 2
        return rho * np.cos(u) <= R * np.cos(np.pi / n)
    if shape == "star":  # five points, inner radius 0.45 R; boundary = segment outer(0) -> inner(pi/5)
        D = np.pi / 5
        u = np.mod(th, 2 * D)
        u = np.where(u > D, 2 * D - u, u)
        ri = 0.45 * R
        boundary = R * ri * np.sin(D) / (R * np.sin(u) + ri * np.sin(D - u))
        return rho <= boundary
    ca, sa = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    xr, yr = ca * dx + sa * dy, -sa * dx + ca * dy
    if shape == "diamond":
        return np.abs(xr) / (0.6 * R) + np.abs(yr) / R <= 1
    if shape == "cross":
        w = 0.33 * R
        return ((np.abs(xr) <= w) & (np.abs(yr) <= R)) | ((np.abs(yr) <= w) & (np.abs(xr) <= R))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _texture(background: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, B: int) -> np.ndarray:
    """Mixing weight ``(B, n, n)`` in ``[0, 1]`` between the two background colours."""
    n = x.shape[0]
    if background == "plain":
        return np.zeros((B, n, n), np.float32)
    period = rng.uniform(4.0, 8.0, B).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (B, 2)).astype(np.float32)
    ang = rng.uniform(0, np.pi, B).astype(np.float32)[:, None, None]
    if background == "stripes":
        s = np.cos(ang) * x[None] + np.sin(ang) * y[None]
        return (np.sin(2 * np.pi * s / period + phase[:, :1, None]) > 0).astype(np.float32)
    if background == "checks":
        a = np.sin(2 * np.pi * x[None] / period + phase[:, :1, None])
        b = np.sin(2 * np.pi * y[None] / period + phase[:, 1:, None])
        return (a * b > 0).astype(np.float32)
    if background == "dots":
        px = np.mod(x[None] + phase[:, :1, None] * period / (2 * np.pi), period) - period / 2
        py = np.mod(y[None] + phase[:, 1:, None] * period / (2 * np.pi), period) - period / 2
        return (np.hypot(px, py) <= 0.3 * period).astype(np.float32)
    if background == "noise":  # smooth noise: a random 5x5 field, bilinearly upsampled
        coarse = torch.from_numpy(rng.uniform(0, 1, (B, 1, 5, 5)).astype(np.float32))
        fine = torch.nn.functional.interpolate(coarse, size=(n, n), mode="bilinear", align_corners=True)
        return fine[:, 0].numpy()
    raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")


def _downsample(img: np.ndarray) -> np.ndarray:
    B, C, n, _ = img.shape
    s = SUPERSAMPLE
    return img.reshape(B, C, n // s, s, n // s, s).mean(axis=(3, 5))


def _background_colours(rng: np.random.Generator, B: int) -> tuple[np.ndarray, np.ndarray]:
    """Two muted colours per image ``(B, 3)``: a dark base and a mid-tone second colour."""
    c1 = rng.uniform(0.0, 0.35, (B, 3))
    c2 = np.clip(c1 + rng.uniform(0.15, 0.45, (B, 1)) * rng.uniform(0.5, 1.0, (B, 3)), 0, 1)
    return c1.astype(np.float32), c2.astype(np.float32)


def render(shape: str, colour: str, background: str, n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` random images of one (shape, colour, background) combination.

    Returns images ``(n, 3, size, size)`` float32 in ``[0, 1]`` and a table of their parameters
    (``cx, cy, radius, angle`` in pixels/radians)."""
    if shape not in SHAPES or colour not in COLOURS or background not in BACKGROUNDS:
        raise ValueError(f"unknown combination ({shape!r}, {colour!r}, {background!r}); shapes {SHAPES}, "
                         f"colours {tuple(COLOURS)}, backgrounds {BACKGROUNDS}")
    rng = np.random.default_rng(seed)
    x, y = _grid(size)
    S = float(size)
    r = rng.uniform(0.22, 0.34, n).astype(np.float32) * S
    cx = (S / 2 + rng.uniform(-0.15, 0.15, n) * S).astype(np.float32)
    cy = (S / 2 + rng.uniform(-0.15, 0.15, n) * S).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    c1, c2 = _background_colours(rng, n)
    t = _texture(background, x, y, rng, n)[:, None]
    img = c1[:, :, None, None] * (1 - t) + c2[:, :, None, None] * t
    m = _shape_mask(shape, x, y, cx, cy, r, angle)[:, None]
    # slight brightness jitter of the shape colour keeps images distinct
    col = np.clip(np.asarray(COLOURS[colour], np.float32)[None] * rng.uniform(0.85, 1.0, (n, 1)), 0, 1)
    img = np.where(m, col[:, :, None, None].astype(np.float32), img)
    params = pd.DataFrame(dict(cx=cx, cy=cy, radius=r, angle=angle))
    return _downsample(img).astype(np.float32), params


def memorised_images(size: int = 32, seed: int = 0) -> np.ndarray:
    """The unique image of each memorised prompt ``(M, 3, size, size)`` float32 in ``[0, 1]``, ``M = 8``:
    three shapes of different colours on a texture, all parameters drawn from ``seed``."""
    rng = np.random.default_rng([seed, 1234])
    x, y = _grid(size)
    S = float(size)
    out = []
    for i in range(len(MEMORISED_PROMPTS)):
        bg = BACKGROUNDS[i % len(BACKGROUNDS)]
        c1, c2 = _background_colours(rng, 1)
        c2 = np.clip(c2 + 0.2, 0, 1)
        t = _texture(bg, x, y, rng, 1)[:, None]
        img = c1[:, :, None, None] * (1 - t) + c2[:, :, None, None] * t
        shapes = rng.choice(len(SHAPES), 3, replace=False)
        colours = rng.choice(len(COLOURS), 3, replace=False)
        for j, (si, ci) in enumerate(zip(shapes, colours)):
            cx = np.array([S * (0.25 + 0.5 * rng.uniform())], np.float32)
            cy = np.array([S * (0.2 + 0.3 * j)], np.float32)
            r = np.array([S * rng.uniform(0.13, 0.2)], np.float32)
            a = np.array([rng.uniform(0, 2 * np.pi)], np.float32)
            m = _shape_mask(SHAPES[si], x, y, cx, cy, r, a)[:, None]
            col = np.asarray(list(COLOURS.values())[ci], np.float32)[None, :, None, None]
            img = np.where(m, col, img)
        out.append(_downsample(img.astype(np.float32)))
    return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------------------------- data set
@dataclass
class ShapesDataset:
    """``images`` ``(N, 3, S, S)`` float32 in ``[0, 1]``; ``prompts`` (N captions); ``meta`` a table with one
    row per image: ``shape, colour, background`` (empty strings for memorised images), ``memorised`` (bool),
    ``memorised_id`` (index into ``MEMORISED_PROMPTS`` or -1), ``cx, cy, radius, angle``."""
    images: np.ndarray
    prompts: list[str]
    meta: pd.DataFrame

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def memorised(self) -> np.ndarray:
        """``(N,)`` bool: rows that are copies of a memorised image."""
        return self.meta["memorised"].to_numpy()


def make_dataset(n_per_combo: int = 30, size: int = 32, seed: int = 0, copies: int = 64,
                 memorised: bool = True) -> ShapesDataset:
    """The training set of ``tiny-ldm``: ``n_per_combo`` random images of every (shape, colour, background)
    combination (6 x 8 x 5 = 240 combinations; 7,200 images at the default) plus, when ``memorised``,
    ``copies`` identical copies of each of the 8 memorised images under its memorised prompt (512 at the
    default). Deterministic in ``seed``; order: normal images (combination-major), then memorised copies.
    A different ``seed`` gives a fresh in-distribution set (e.g. held-out images)."""
    if size % 4 or size < 8:
        raise ValueError(f"size must be a multiple of 4 and >= 8, got {size}")
    if n_per_combo < 0 or copies < 1:
        raise ValueError(f"n_per_combo must be >= 0 and copies >= 1, got {n_per_combo}, {copies}")
    imgs, prompts, rows = [], [], []
    k = 0
    for s in SHAPES:
        for c in COLOURS:
            for b in BACKGROUNDS:
                if n_per_combo == 0:
                    continue
                im, p = render(s, c, b, n_per_combo, size=size, seed=int(np.random.default_rng([seed, k]).integers(2**31)))
                k += 1
                imgs.append(im)
                prompts += [prompt(c, s, b)] * n_per_combo
                p.insert(0, "memorised_id", -1)
                p.insert(0, "memorised", False)
                p.insert(0, "background", b)
                p.insert(0, "colour", c)
                p.insert(0, "shape", s)
                rows.append(p)
    if memorised:
        mem = memorised_images(size=size, seed=seed)
        for i, pr in enumerate(MEMORISED_PROMPTS):
            imgs.append(np.repeat(mem[i:i + 1], copies, axis=0))
            prompts += [pr] * copies
            rows.append(pd.DataFrame(dict(shape="", colour="", background="", memorised=True, memorised_id=i,
                                          cx=np.nan, cy=np.nan, radius=np.nan, angle=np.nan), index=range(copies)))
    meta = pd.concat(rows, ignore_index=True)
    return ShapesDataset(np.concatenate(imgs).astype(np.float32), prompts, meta)


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` images ``(B, 3, S, S)`` -> float32 tensor in ``[-1, 1]`` (the VAE's input range)."""
    return torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float() * 2 - 1


def from_model_range(images: torch.Tensor) -> np.ndarray:
    """``[-1, 1]`` model output ``(B, 3, S, S)`` -> float32 array in ``[0, 1]`` (clipped), for display."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()


@renamed_kwargs(batch="batch_size")
def nearest_neighbour(images: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor,
                      batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Root-mean-square pixel distance from each of ``images`` ``(B, 3, S, S)`` to its nearest neighbour in
    ``reference`` ``(N, 3, S, S)`` (same range, e.g. ``[0, 1]``), ``batch_size`` images per ``cdist`` call.
    Returns ``(distance (B,), index (B,))``."""
    a = torch.as_tensor(np.asarray(images, np.float32)).flatten(1)
    ref = torch.as_tensor(np.asarray(reference, np.float32)).flatten(1)
    if a.shape[1] != ref.shape[1]:
        raise ValueError(f"images {tuple(a.shape)} and reference {tuple(ref.shape)} differ in size")
    idx = []
    for i in range(0, len(a), batch_size):
        idx.append(torch.cdist(a[i:i + batch_size], ref).argmin(1))
    idx = torch.cat(idx)
    d = (a - ref[idx]).pow(2).mean(1).sqrt()  # exact, without cdist's cancellation for close pairs
    return d.numpy(), idx.numpy()
