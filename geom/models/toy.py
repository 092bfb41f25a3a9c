"""CPWL toy generator G: R^2 -> R^3 (Humayun et al., Sec. 2.3, Fig. 2).

A ReLU MLP (depth 3, width 20) regressed onto the graph of a mixture of five Gaussian bumps over the latent
square ``[-extent, extent]^2``: ``G(z) ~ (z_1, z_2, h(z))``, ``h(z) = sum_k a_k exp(-|z - mu_k|^2 / (2 s_k^2))``.
Being CPWL, ``G`` is affine on each linear region (``geom.partition``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .. import seeds


class CPWLGenerator(nn.Module):
    """ReLU MLP ``(B, 2) -> (B, out_dim)`` with ``depth`` hidden layers of ``width`` units; ``self.net`` is the
    ``nn.Sequential(Linear, ReLU, ..., Linear)`` that ``geom.partition`` reads."""

    def __init__(self, depth: int = 3, width: int = 20, in_dim: int = 2, out_dim: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        layers, d = [], in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():  # seeded init (kaiming-uniform-like), independent of the global RNG
            for m in self.net:
                if isinstance(m, nn.Linear):
                    bound = 1 / m.in_features ** 0.5
                    m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound * 3 ** 0.5)
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def make_bumps(seed: int = 0, n: int = 5, extent: float = 10.0) -> dict[str, np.ndarray]:
    """Seeded mixture of ``n`` Gaussian bumps: centres ``(n, 2)`` in ``[-0.6 extent, 0.6 extent]^2``,
    amplitudes ``(n,)`` in ``[0.3, 0.6] extent`` (random sign), widths ``(n,)`` in ``[0.12, 0.22] extent``."""
    rng = np.random.default_rng(seed)
    return {"centers": rng.uniform(-0.6, 0.6, (n, 2)) * extent,
            "amps": rng.uniform(0.3, 0.6, n) * extent * rng.choice([-1.0, 1.0], n),
            "widths": rng.uniform(0.12, 0.22, n) * extent}


def bump_surface(z: Tensor, bumps: dict[str, np.ndarray]) -> Tensor:
    """The target manifold: ``(B, 2) -> (B, 3)``, ``(z_1, z_2, h(z))`` with ``h`` the bump mixture."""
    c = torch.as_tensor(bumps["centers"], dtype=z.dtype)
    a = torch.as_tensor(bumps["amps"], dtype=z.dtype)
    s = torch.as_tensor(bumps["widths"], dtype=z.dtype)
    d2 = ((z[:, None, :] - c[None]) ** 2).sum(-1)  # (B, n)
    h = (a * torch.exp(-d2 / (2 * s ** 2))).sum(-1)
    return torch.cat([z, h[:, None]], dim=1)


def train_cpwl(seed: int = 0, steps: int = 4000, batch_size: int = 512, lr: float = 3e-3, extent: float = 10.0,
               depth: int = 3, width: int = 20, bumps: dict | None = None,
               progress: bool = True) -> tuple[CPWLGenerator, dict, list[float]]:
    """Fit ``CPWLGenerator`` to ``bump_surface`` with an MSE regression loss on uniform latents in
    ``[-extent, extent]^2`` (Adam, cosine learning-rate decay). Returns (model in eval mode, bumps, losses)."""
    bumps = make_bumps(seed, extent=extent) if bumps is None else bumps
    G = CPWLGenerator(depth, width, seed=seed)
    gen = seeds.generator(int(seed), "minibatches")
    opt = torch.optim.Adam(G.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for _ in tqdm(range(steps), desc="train CPWL", disable=not progress):
        z = (torch.rand(batch_size, 2, generator=gen) * 2 - 1) * extent
        loss = ((G(z) - bump_surface(z, bumps)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return G.eval(), bumps, losses
