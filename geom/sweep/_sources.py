"""Latent sources of a sweep: ``plane:N[:lo:hi]`` (``PlaneSource``, the grid of ``geom.planes``), ``npy:<file>``
and ``images:<folder>`` (``parse_source``), and the latents of an array or image source (``source_latents``,
encoding images with the model's encoder)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import paths, planes
from ..models.base import Generator

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class PlaneSource:
    """``plane:N:lo:hi``: the ``N x N`` grid of ``geom.planes`` on ``[lo, hi]^2``."""
    n: int
    lo: float = -0.5
    hi: float = 1.5

    def coords(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """``i, j, u, v`` of flat grid indices (``geom.planes.grid_coords``)."""
        return planes.grid_coords(self.n, self.lo, self.hi, index)


def parse_source(source: str) -> PlaneSource | tuple[str, Path]:
    """``plane:N[:lo:hi]`` -> ``PlaneSource``; ``npy:<file>`` / ``images:<folder>`` -> ``(kind, path)``.
    Raises ``ValueError``/``FileNotFoundError`` for a bad spec (grid size < 1, missing file...)."""
    if not isinstance(source, str) or ":" not in source:
        raise ValueError(f"latent source must be 'plane:N[:lo:hi]', 'npy:<file>' or 'images:<folder>', got {source!r}")
    kind, _, rest = source.partition(":")
    if kind == "plane":
        parts = rest.split(":")
        if len(parts) not in (1, 3):
            raise ValueError(f"plane source must be 'plane:N' or 'plane:N:lo:hi', got {source!r}")
        try:
            n = int(parts[0])
        except ValueError:
            raise ValueError(f"plane source must be 'plane:N' with an integer N, got {source!r}") from None
        if n < 1:
            raise ValueError(f"plane grid size must be >= 1 (an N x N grid), got N={n}")
        if len(parts) == 3:
            lo, hi = float(parts[1]), float(parts[2])
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"plane extent must be finite, got lo={lo}, hi={hi}")
            return PlaneSource(n, lo, hi)
        return PlaneSource(n)
    if kind in ("npy", "images"):
        p = paths.resolve(rest)
        if kind == "npy" and not p.is_file():
            raise FileNotFoundError(f"latent source {source!r}: no file {p}")
        if kind == "images":
            if not p.is_dir():
                raise FileNotFoundError(f"latent source {source!r}: no folder {p}")
            if not image_files(p):
                raise ValueError(f"latent source {source!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in {p}")
        return kind, p
    raise ValueError(f"unknown latent source kind {kind!r} in {source!r}; use plane:N, npy:<file> or images:<folder>")


def image_files(folder: Path) -> list[Path]:
    """The images of ``folder`` (suffixes ``IMAGE_SUFFIXES``), sorted by name: what ``images:<folder>`` reads."""
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def source_latents(source: tuple[str, Path], model: Generator, dtype: torch.dtype) -> Tensor:
    """The latents of an ``npy`` / ``images`` source (``parse_source``): an array of latents as is, or images
    (an array ``(n, C, H, W)`` in ``[-1, 1]``, or a folder's files resized to the model's image size) encoded
    by the model's encoder in batches of 8. Returns ``(n, *latent_shape)`` in ``dtype`` on the CPU."""
    kind, p = source
    if kind == "npy":
        a = torch.as_tensor(np.load(p))
        if tuple(a.shape[1:]) == tuple(model.latent_shape):
            return a.to(dtype)
        images = a
    else:
        from PIL import Image

        if model.image_size is None:
            raise ValueError("this model has no image size to resize the images to")
        c, h, w = model.image_size
        arr = []
        for f in image_files(p):
            im = Image.open(f).convert("RGB" if c == 3 else "L").resize((w, h), Image.BICUBIC)
            x = np.asarray(im, dtype=np.float32) / 127.5 - 1
            arr.append(x.reshape(h, w, -1).transpose(2, 0, 1))
        images = torch.as_tensor(np.stack(arr))
    if model.encode is None:
        raise ValueError(f"the latent array has shape {tuple(images.shape)}, not (n, *{tuple(model.latent_shape)}), "
                         f"and the model has no encoder to map images to latents")
    if images.ndim != 4:
        raise ValueError(f"images to encode must be (n, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    dev = model.device
    out = []
    with torch.no_grad():
        for s in range(0, images.shape[0], 8):
            out.append(model.encode(images[s:s + 8].to(device=dev, dtype=dtype)).cpu())
    return torch.cat(out)

