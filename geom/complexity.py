"""Local complexity delta (Humayun et al., Def. 1).

delta(z) counts the neurons whose pre-activation changes sign over the vertices of a ``P``-dimensional
cross-polytope (l1 ball) of radius ``r`` around ``z``: ``V = {z + s r b_i : s = +-1, i = 1..P}`` with ``b_i``
the rows of an orthonormal ``basis`` ``(P, E)``. For a ReLU network this is the number of neuron hyperplanes
("knots") that cut the polytope, a local measure of the density of linear regions.

Neurons are the elements of the *inputs* of activation modules (``nn.ReLU``, ``nn.LeakyReLU``, ``nn.SiLU``,
``nn.GELU``, ``nn.Tanh``, ...), captured with forward pre-hooks. A module called several times per forward
(e.g. a shared ``nn.SiLU`` in a diffusers ResNet block) contributes a separate set of neurons per call.
The output layer counts only if an activation module follows it. Activations applied functionally
(``F.relu`` inside ``forward``) are invisible to hooks and not counted.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable

import torch
from torch import Tensor, nn

from .jacobian import _call, check_latents, random_projection

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softsign, nn.Tanhshrink,
)


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Named activation modules of ``model`` (instances of ``ACTIVATIONS``), in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, ACTIVATIONS)}


def _find_module(G) -> nn.Module:
    if isinstance(G, nn.Module):
        return G
    for attr in ("module", "model", "__self__"):  # bound methods (vae.decode) and simple wrappers
        m = getattr(G, attr, None)
        if isinstance(m, nn.Module):
            return m
    raise TypeError("local_complexity needs the activation modules of G: pass an nn.Module, a bound method of "
                    "one, or give the callable a `.module` attribute holding the nn.Module (e.g. "
                    "geom.complexity.with_module(lambda z: vae.decode(z).sample, vae))")


def with_module(fn: Callable[[Tensor], Tensor], module: nn.Module) -> Callable[[Tensor], Tensor]:
    """Attach ``module`` to a plain callable so ``local_complexity`` can find its activation modules."""
    fn.module = module  # type: ignore[attr-defined]
    return fn


def cross_polytope(z: Tensor, radius: float, basis: Tensor) -> Tensor:
    """Vertices ``z +- radius * basis_i`` of the cross-polytope around each latent.

    ``z`` ``(B, *latent_shape)``, ``basis`` ``(P, E)`` -> ``(B, 2P, *latent_shape)``, ordered
    ``[+b_1, ..., +b_P, -b_1, ..., -b_P]``."""
    B = z.shape[0]
    steps = torch.cat([basis, -basis]).to(z) * radius  # (2P, E)
    return (z.reshape(B, 1, -1) + steps[None]).reshape(B, steps.shape[0], *z.shape[1:])


def local_complexity(G: Callable[[Tensor], Tensor], z: Tensor, radius: float, dim: int, seed: int = 0,
                     basis: Tensor | None = None, batch_size: int | None = None,
                     per_layer: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Number of neurons whose pre-activation changes sign over the cross-polytope around each latent
    (Humayun et al., Def. 1).

    Args:
        G: generator ``(B, *latent_shape) -> (B, *out_shape)`` with activation modules (see module docs).
        z: latents ``(B, *latent_shape)``.
        radius: polytope radius ``r > 0`` (l1 ball: vertices at distance ``r``).
        dim: polytope dimension ``P`` (``1 <= P <= E``); the paper uses ``P = 4``... ``E``.
        seed: seed of the random orthonormal basis when ``basis`` is not given.
        basis: ``(P, E)`` orthonormal rows spanning the polytope.
        batch_size: latents per forward pass (each costs ``2P`` evaluations); default all.
        per_layer: also return ``{module_name[#call]: (B,) counts}``.
    Returns:
        ``(B,)`` int64 counts (and the per-layer dict when ``per_layer``).
    """
    check_latents(z)
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be a finite number > 0, got {radius}")
    E = math.prod(z.shape[1:])
    if basis is None:
        if not 1 <= int(dim) <= E:
            raise ValueError(f"dim must be between 1 and the latent dimension E={E}, got {dim}")
        basis = random_projection(E, int(dim), seed=seed, dtype=z.dtype, device=z.device).T
    if basis.ndim != 2 or basis.shape[1] != E:
        raise ValueError(f"basis must have shape (P, E) = (P, {E}), got {tuple(basis.shape)}")
    module = _find_module(G)
    acts = activation_modules(module)
    if not acts:
        known = ", ".join(a.__name__ for a in ACTIVATIONS[:6])
        raise ValueError(f"{type(module).__name__} has no activation modules ({known}, ...): local complexity "
                         f"counts sign changes of their inputs")
    names = {id(m): n for n, m in acts.items()}
    P2 = 2 * basis.shape[0]
    B = z.shape[0]
    batch_size = B if batch_size is None else max(1, int(batch_size))
    totals = torch.zeros(B, dtype=torch.int64)
    layers: dict[str, Tensor] = defaultdict(lambda: torch.zeros(B, dtype=torch.int64))

    for s in range(0, B, batch_size):
        zb = z[s:s + batch_size]
        nb = zb.shape[0]
        verts = cross_polytope(zb, radius, basis).reshape(nb * P2, *z.shape[1:])
        calls: dict[int, int] = defaultdict(int)
        counts: list[tuple[str, Tensor]] = []

        def hook(mod, inputs):
            x = inputs[0]
            key = names[id(mod)]
            c = calls[id(mod)]
            calls[id(mod)] += 1
            if x.shape[0] != nb * P2:
                raise ValueError(f"activation '{key}' saw a leading dimension {x.shape[0]} != batch "
                                 f"{nb * P2}: local_complexity needs batch-first activations")
            pos = (x.detach() > 0).reshape(nb, P2, -1)
            changed = pos.any(dim=1) & ~pos.all(dim=1)  # sign differs between some vertices
            counts.append((f"{key}#{c}" if c else key, changed.sum(dim=1).cpu()))

        handles = [m.register_forward_pre_hook(hook) for m in acts.values()]
        try:
            with torch.no_grad():
                _call(G, verts)
        finally:
            for h in handles:
                h.remove()
        for key, cnt in counts:
            totals[s:s + nb] += cnt
            layers[key][s:s + nb] += cnt
    if per_layer:
        return totals, dict(layers)
    return totals
