"""Helpers shared by the models of ``geom.physics``: tensors in float64, checks that also run under
``torch.func`` transforms, and seeds as ``numpy`` generators."""
from __future__ import annotations

import numpy as np
import torch


def to_tensor(x) -> torch.Tensor:
    """``x`` itself if it is a tensor, else a float64 tensor of it."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)


def holds(cond: torch.Tensor) -> bool:
    """``bool(cond.all())``, or True under torch.func transforms (vmap/grad), where values cannot be read."""
    try:
        return bool(cond.all())
    except RuntimeError:
        return True


def check_finite(name: str, x) -> None:
    if not holds(torch.isfinite(to_tensor(x))):
        raise ValueError(f"{name} must be finite, got {x}")


def make_rng(seed) -> np.random.Generator:
    """``seed`` itself if it is a ``numpy.random.Generator``, else ``numpy.random.default_rng(seed)``."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
