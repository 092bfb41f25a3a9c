"""Helpers shared by the modules of ``geom.fisher``: a shape-and-finiteness check and seeded initialisation."""
from __future__ import annotations

import torch
from torch import nn


def check_shape(x: torch.Tensor, name: str, shape: tuple) -> None:
    """Raise ``ValueError`` unless ``x`` has ``shape`` (``None`` = any size) and, if floating, is finite."""
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        raise ValueError(f"{name} must have shape {shape} (None = any), got {tuple(x.shape)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")


def seeded_init(module: nn.Module, g: torch.Generator) -> nn.Module:
    """Re-initialise every ``nn.Linear`` of ``module`` (PyTorch's default uniform ranges) from generator ``g``."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                bound = 1 / m.in_features ** 0.5
                m.weight.uniform_(-bound, bound, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=g)
    return module
