"""What a sweep computes: ``SweepSpec`` (the model and latent source spec strings and the descriptor settings)
and its side-effect-free ``validate()``."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import descriptors, paths
from ..models.generators import as_dtype, check_model_spec
from ._sources import PlaneSource, parse_source


@dataclass(frozen=True)
class SweepSpec:
    """What to compute. ``model``/``source`` are spec strings (see the ``geom.sweep`` docs); ``k``, ``dim``, ``radius``
    and ``seed`` are those of ``geom.describe`` (paper: ``k=120``, ``dim=4``, ``radius=1e-5``);
    ``k=None`` for no projection; ``complexity=False`` leaves delta out. ``shard_size`` latents per shard file
    (the unit of resumption and of work sent to a Ray worker), ``batch_size`` latents per Jacobian batch,
    ``chunk_size`` VJPs vmapped at once (``geom.jacobian``; ``None``: as many as the memory budget holds,
    ``GEOM_MEMORY_BUDGET`` or half the free memory, see ``geom.memory_budget_bytes``).
    ``dtype`` of the model and latents (``"float32"`` or ``"float64"``); ``latent_seed`` and ``anchors``
    define the plane (``geom.planes.plane_anchors``)."""

    model: str
    source: str
    k: int | None = 120
    dim: int = 4
    radius: float = 1e-5
    seed: int = 0
    complexity: bool = True
    shard_size: int = 64
    batch_size: int = 16
    chunk_size: int | None = None
    dtype: str = "float32"
    latent_seed: int = 0
    anchors: str | None = None

    def settings(self) -> dict[str, Any]:
        """The fields, with ``anchors`` as an absolute path and ``engine_version``: the
        ``geom.descriptors.ENGINE_VERSION`` of the code computing the rows (what a manifest records)."""
        d = dataclasses.asdict(self)
        if d["anchors"] is not None:
            d["anchors"] = str(paths.resolve(d["anchors"]))
        d["engine_version"] = descriptors.ENGINE_VERSION
        return d

    def validate(self) -> PlaneSource | tuple[str, Path]:
        """Check every field without side effects (reads only: a folder model or a file source must exist) and
        return the parsed source (``parse_source``). Raises ``ValueError`` / ``FileNotFoundError`` naming the
        field."""
        spec = self
        check_model_spec(spec.model)
        source = parse_source(spec.source)
        if spec.k is not None and int(spec.k) < 1:
            raise ValueError(f"k must be >= 1 or None, got {spec.k}")
        if int(spec.dim) < 1:
            raise ValueError(f"dim must be >= 1, got {spec.dim}")
        if not (spec.radius > 0 and math.isfinite(spec.radius)):
            raise ValueError(f"radius must be a finite number > 0, got {spec.radius}")
        if spec.chunk_size is not None and int(spec.chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {spec.chunk_size}")
        if int(spec.shard_size) < 1 or int(spec.batch_size) < 1:
            raise ValueError(f"shard_size and batch_size must be >= 1, got {spec.shard_size}, {spec.batch_size}")
        as_dtype(spec.dtype)
        if spec.anchors is not None and not paths.resolve(spec.anchors).is_file():
            raise FileNotFoundError(f"anchors file {paths.resolve(spec.anchors)} does not exist")
        return source
