"""MLP VAE with descriptor trajectories over training (Humayun et al., Sec. 3.2, Fig. 4; Kingma & Welling 2014).

Encoder and decoder are ReLU MLPs of ``width`` 128 and ``depth`` 5 (5 linear layers, 4 hidden ReLU layers).
The decoder ``(B, latent) -> (B, D)`` has a linear output (Gaussian likelihood with fixed std ``sigma_x``) so it
is a CPWL generator for ``geom.describe``. Training adds Gaussian noise of std ``noise_std`` to every training
batch (the noise levels of Fig. 4) and, every ``record_every`` steps, calls a ``record`` function of the
decoder and the posterior means of the test images (the notebook passes the descriptors' means: this model
layer does not import the geometry layer).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .. import seeds


def mlp(sizes: list[int], gen: torch.Generator) -> nn.Sequential:
    """ReLU MLP with a linear last layer, seeded uniform init (PyTorch's default ranges)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            bound = 1 / a ** 0.5
            lin.weight.copy_((torch.rand(b, a, generator=gen) * 2 - 1) * bound)
            lin.bias.copy_((torch.rand(b, generator=gen) * 2 - 1) * bound)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """``encode: (B, D) -> (mu, logvar)`` each ``(B, latent)``; ``decoder: (B, latent) -> (B, D)``."""

    def __init__(self, D: int, latent: int = 8, width: int = 128, depth: int = 5, seed: int = 0):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2 (linear layers), got {depth}")
        g = torch.Generator().manual_seed(int(seed))
        self.latent = latent
        self.encoder = mlp([D] + [width] * (depth - 1) + [2 * latent], g)
        self.decoder = mlp([latent] + [width] * (depth - 1) + [D], g)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h[:, :self.latent], h[:, self.latent:].clamp(-12, 8)

    def forward(self, x: Tensor, gen: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
        return self.decoder(z), mu, logvar


def elbo_loss(x: Tensor, xhat: Tensor, mu: Tensor, logvar: Tensor, sigma_x: float) -> Tensor:
    """Negative ELBO per sample (up to a constant): ``|x - xhat|^2 / (2 sigma_x^2) + KL(q(z|x) || N(0, I))``."""
    rec = ((x - xhat) ** 2).sum(1) / (2 * sigma_x ** 2)
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
    return (rec + kl).mean()


def train_vae(x_train: np.ndarray, x_test: np.ndarray, seed: int = 0, steps: int = 3000, noise_std: float = 0.0,
              batch_size: int = 128, lr: float = 1e-3, latent: int = 8, width: int = 128, depth: int = 5,
              sigma_x: float = 0.1, record_every: int = 100, n_record: int = 128,
              record: Callable[[nn.Module, Tensor], Mapping[str, float]] | None = None,
              progress: bool = True) -> tuple[VAE, pd.DataFrame]:
    """Train a ``VAE`` on ``x_train`` ``(N, D)`` (Adam), adding ``N(0, noise_std^2)`` noise to each batch.

    Every ``record_every`` steps (and at step 0) ``record(decoder, z)`` is called with the decoder in eval mode
    and ``z`` ``(n_record, latent)``, the posterior means of the first ``n_record`` test images; it returns
    named numbers (e.g. the means of psi, nu, delta from ``geom.describe``: Humayun et al. Fig. 4).
    Returns (model in eval mode, DataFrame with columns step, loss, the names ``record`` returns, noise_std).
    """
    x_tr = torch.as_tensor(x_train, dtype=torch.float32)
    x_te = torch.as_tensor(x_test[:n_record], dtype=torch.float32)
    gen = seeds.generator(int(seed), "minibatches")
    model = VAE(x_tr.shape[1], latent, width, depth, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rows, running = [], float("nan")

    def take_record(step: int):
        model.eval()
        with torch.no_grad():
            z = model.encode(x_te)[0]
        rows.append(dict(step=step, loss=running, **(record(model.decoder, z) if record else {}),
                         noise_std=noise_std))
        model.train()

    take_record(0)
    for step in tqdm(range(1, steps + 1), desc=f"train VAE (noise {noise_std:g})", disable=not progress):
        xb = x_tr[torch.randint(len(x_tr), (batch_size,), generator=gen)]
        if noise_std > 0:
            xb = xb + noise_std * torch.randn(xb.shape, generator=gen)
        xhat, mu, logvar = model(xb, gen)
        loss = elbo_loss(xb, xhat, mu, logvar, sigma_x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running = loss.item() if math.isnan(running) else 0.95 * running + 0.05 * loss.item()
        if step % record_every == 0 or step == steps:
            take_record(step)
    return model.eval(), pd.DataFrame(rows)
