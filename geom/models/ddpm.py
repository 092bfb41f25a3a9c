"""Toy DDPM on 2D data (Humayun et al., Sec. 3.1, Figs. 3 and 19; Ho et al. 2020).

``T`` = 50 steps, a linear beta schedule, and a ReLU MLP noise predictor ``eps_theta(x_t, t)`` (sinusoidal
time embedding concatenated to the input). The one-step reverse map at step ``t``,
``G_t(x_t) = mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(alpha_t)``
(Ho et al. Eq. 11), is a CPWL map ``R^2 -> R^2`` (``ReverseStep``), usable as a generator by ``geom.describe``.
Time steps are 1-based: ``t = 1..T``; ``x_0`` is data, ``x_T`` is (nearly) Gaussian noise.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .. import seeds


@dataclass
class Schedule:
    """``betas`` ``(T,)``; ``alphas = 1 - betas``; ``abar[t-1] = prod_{s<=t} alpha_s`` (Ho et al. Eq. 4)."""
    betas: Tensor

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> Tensor:
        return 1 - self.betas

    @property
    def abar(self) -> Tensor:
        return torch.cumprod(self.alphas, 0)


def linear_schedule(T: int = 50, beta_start: float = 1e-4, beta_end: float = 0.2) -> Schedule:
    """Linear betas (float64). With ``T = 50`` and ``beta_end = 0.2``, ``abar_T ~ 0.005`` (x_T ~ noise)."""
    if T < 1 or not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need T >= 1 and 0 < beta_start <= beta_end < 1, got {T}, {beta_start}, {beta_end}")
    return Schedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))


def _index(t: Tensor | int, T: int, B: int) -> Tensor:
    t = torch.as_tensor(t).long().reshape(-1).expand(B) if torch.as_tensor(t).numel() == 1 else torch.as_tensor(t).long()
    if (t < 1).any() or (t > T).any():
        raise ValueError(f"time steps are 1..{T}, got values in [{int(t.min())}, {int(t.max())}]")
    return t - 1


def q_sample(sched: Schedule, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
    """Forward noising in closed form (Ho et al. Eq. 4): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.
    ``x0``, ``noise`` ``(B, d)``; ``t`` int or ``(B,)`` in ``1..T`` -> ``(B, d)``."""
    i = _index(t, sched.T, x0.shape[0])
    ab = sched.abar.to(x0.dtype)[i][:, None]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_step(sched: Schedule, x_prev: Tensor, t: int, noise: Tensor) -> Tensor:
    """One forward step ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps`` (Ho et al. Eq. 2)."""
    b = sched.betas[_index(t, sched.T, 1)].to(x_prev.dtype)
    return (1 - b).sqrt() * x_prev + b.sqrt() * noise


def time_embedding(t: Tensor, dim: int = 16, max_period: float = 100.0) -> Tensor:
    """Sinusoidal embedding ``(B,) -> (B, dim)`` of (float) time steps."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class Denoiser(nn.Module):
    """ReLU MLP noise predictor ``eps_theta``: ``(x (B, d), t (B,)) -> (B, d)``; ``depth`` hidden ReLU layers
    of ``width`` units on ``[x, time_embedding(t)]``."""

    def __init__(self, d: int = 2, width: int = 128, depth: int = 3, emb_dim: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.emb_dim = emb_dim
        layers, n = [], d + emb_dim
        for _ in range(depth):
            layers += [nn.Linear(n, width), nn.ReLU()]
            n = width
        layers.append(nn.Linear(n, d))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    bound = 1 / m.in_features ** 0.5
                    m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound * 3 ** 0.5)
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = time_embedding(t, self.emb_dim).to(x.dtype)
        return self.net(torch.cat([x, emb], dim=1))


class ReverseStep(nn.Module):
    """The one-step reverse map at step ``t`` as a generator ``(B, d) -> (B, d)``:
    ``x_t -> mu_theta(x_t, t)`` (Ho et al. Eq. 11). Holds the denoiser, so ``geom.describe`` finds its ReLUs."""

    def __init__(self, denoiser: Denoiser, sched: Schedule, t: int):
        super().__init__()
        if not 1 <= int(t) <= sched.T:
            raise ValueError(f"t must be in 1..{sched.T}, got {t}")
        self.denoiser, self.sched, self.t = denoiser, sched, int(t)
        self.train(denoiser.training)  # a fresh wrapper is in training mode; take the denoiser's mode

    def forward(self, x: Tensor) -> Tensor:
        i = self.t - 1
        beta, ab = float(self.sched.betas[i]), float(self.sched.abar[i])
        tt = torch.full((x.shape[0],), self.t, dtype=torch.float32)
        eps = self.denoiser(x, tt)
        return (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)


def train_ddpm(x: Tensor, seed: int = 0, steps: int = 10000, batch_size: int = 256, lr: float = 1e-3,
               sched: Schedule | None = None, width: int = 128, depth: int = 3, checkpoints: tuple[int, ...] = (),
               progress: bool = True) -> tuple[Denoiser, dict[int, Denoiser], list[float]]:
    """Train ``Denoiser`` with the simple loss ``|eps - eps_theta(x_t, t)|^2`` (Ho et al. Eq. 14) on ``x``
    ``(N, d)`` (mini-batches resampled with replacement). Returns (final model, {step: copy of the model at
    that step} for ``checkpoints``, losses); all models in eval mode."""
    sched = linear_schedule() if sched is None else sched
    gen = seeds.generator(int(seed), "minibatches")
    model = Denoiser(x.shape[1], width, depth, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    snaps, losses = {}, []
    for step in tqdm(range(1, steps + 1), desc="train DDPM", disable=not progress):
        x0 = x[torch.randint(len(x), (batch_size,), generator=gen)]
        t = torch.randint(1, sched.T + 1, (batch_size,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        loss = ((model(q_sample(sched, x0, t, eps), t) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step in checkpoints:
            snaps[step] = copy.deepcopy(model).eval()
    return model.eval(), snaps, losses


@torch.no_grad()
def sample(model: Denoiser, sched: Schedule, n: int, seed: int = 0, d: int = 2) -> dict[int, Tensor]:
    """Ancestral sampling (Ho et al. Alg. 2, sigma_t^2 = beta_t). Returns ``{t: x_t (n, d)}`` for
    ``t = T..0`` (``x_T`` the initial noise, ``x_0`` the samples)."""
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n, d, generator=gen)
    traj = {sched.T: x}
    for t in range(sched.T, 0, -1):
        mu = ReverseStep(model, sched, t)(x)
        x = mu + (math.sqrt(float(sched.betas[t - 1])) * torch.randn(n, d, generator=gen) if t > 1 else 0)
        traj[t - 1] = x
    return traj
