"""The psi + nu + delta pipeline a researcher writes by hand, the reference ``geom.describe`` is timed against
(issue 26; ``benchmarks/run.py``, and ``tests/test_benchmarks.py`` checks its outputs equal to ``describe``).

Per batch of latents ``z`` ``(B, *latent_shape)`` of a generator ``G``:

* psi and nu (Humayun et al., Eq. 4 and Def. 3): ``torch.func.vmap(torch.func.jacrev(lambda v: G(v) @ P))`` of
  the projected generator, one latent at a time, then ``torch.linalg.svdvals`` in float64,
  ``psi = sum log sigma``, ``nu = exp(entropy of sigma / sum sigma)``;
* delta (Def. 1): forward pre-hooks on the activation modules (ReLU, LeakyReLU, SiLU, Tanh, GELU) of a
  float64 copy of ``G`` (``copy.deepcopy(G).double()``, made once, outside the timed part), one forward pass
  over the ``2P`` cross-polytope vertices ``z +- r b_i`` built in float64, counting the neurons whose
  pre-activation changes sign between vertices. float64 as ``geom.local_complexity`` evaluates it, so the
  counts can be equal (in float32 a radius of 1e-5 is below what the vertices resolve, ``smallest_radius``).

The projection ``P`` and the polytope basis are drawn as ``describe`` draws them (``geom.random_projection(D, k,
seed)``, ``geom.polytope_basis(E, P, seed)``), so that the outputs can be compared number for number.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import geom

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.Tanh, nn.GELU)


def float64_copy(G: nn.Module) -> nn.Module:
    """What a user writes once per session for delta in float64."""
    return copy.deepcopy(G).double().eval()


def hand_pipeline(G, z: torch.Tensor, k: int = 120, radius: float = 1e-5, dim: int = 4, seed: int = 0,
                  G64: nn.Module | None = None) -> dict[str, np.ndarray]:
    """psi, nu ``(B,)`` float64 and delta ``(B,)`` int64 of ``G`` at ``z`` (see the module docs). ``G64``: the
    float64 copy of ``G`` (``float64_copy(G)``; made here when not given)."""
    B, latent_shape = z.shape[0], tuple(z.shape[1:])
    E = math.prod(latent_shape)
    with torch.no_grad():
        D = G(z[:1]).numel()
    P = geom.random_projection(D, k, seed=seed, dtype=z.dtype)

    def g(v):  # one latent (E,) -> its projected output (k,)
        with sdpa_kernel([SDPBackend.MATH]):  # attention blocks: the composite kernel vmaps
            return G(v.reshape(1, *latent_shape)).reshape(-1) @ P

    A = torch.func.vmap(torch.func.jacrev(g))(z.reshape(B, E))  # (B, k, E)
    sv = torch.linalg.svdvals(A.double())
    psi = torch.log(sv).sum(-1)
    a = sv / sv.sum(-1, keepdim=True) + 1e-30
    nu = torch.exp(-(a * torch.log(a)).sum(-1))

    G64 = float64_copy(G) if G64 is None else G64
    b = geom.polytope_basis(E, dim, seed=seed)  # (dim, E) float64
    steps = torch.cat([b, -b]) * radius  # (2 dim, E)
    verts = (z.double().reshape(B, 1, E) + steps[None]).reshape(B * 2 * dim, *latent_shape)
    delta = torch.zeros(B, dtype=torch.int64)

    def count(module, inputs):
        positive = inputs[0].reshape(B, 2 * dim, -1) > 0
        delta.add_((positive.any(1) & ~positive.all(1)).sum(1))

    hooks = [m.register_forward_pre_hook(count) for m in G64.modules() if isinstance(m, ACTIVATIONS)]
    try:
        with torch.no_grad():
            G64(verts)
    finally:
        for h in hooks:
            h.remove()
    return {"psi": psi.detach().numpy(), "nu": nu.detach().numpy(), "delta": delta.numpy()}
