"""Geometry reward model and reward-guided DDIM sampling (Humayun et al., Sec. 4, Figs. 1, 10, 11, 20).

1. Labels: the local scaling ``psi`` of the decoder at clean latents ``x_0`` (``psi_labels``), discretised
   into ``n_bins`` uniform bins over its observed range (``psi_bins``).
2. Data: every latent is noised to ``timesteps_per_latent`` random times, ``x_t = sqrt(a_t) x_0 +
   sqrt(1 - a_t) eps`` (``make_reward_data``); the label is the bin of the clean latent's psi.
3. Reward model: a small time-conditioned CNN classifier ``(x_t, t) -> logits (n_bins)`` (``RewardModel``,
   ``train_reward_model``). Its reward is the expected bin ``sum_b b p(b | x_t)`` or ``log p(top bin | x_t)``.
4. Guidance (classifier guidance, Dhariwal & Nichol 2021 Eq. 14; "forward universal guidance" of Bansal et
   al. 2023): at every DDIM step the classifier-free-guided noise prediction is shifted,

       eps_hat = eps_cfg - rho * sqrt(1 - a_t) * grad_{x_t} r(x_t, t),

   so ``rho > 0`` moves samples towards higher reward (higher psi) and ``rho < 0`` towards lower, and
   ``rho = 0`` is plain DDIM (``geom.diffusion.sample``) exactly. The shift is defined on the *noise*
   prediction: for a model that predicts ``v`` or ``x0`` (the scheduler's ``prediction_type``, e.g. Stable
   Diffusion 2.x), ``geom.diffusion.sample`` converts the output to ``eps`` (``to_eps_x0``), applies the
   shift and converts back (``from_eps``), so a model gives the same guided samples in any parametrisation. Scale convention: ``rho`` multiplies the
   gradient of the reward as defined above (expected bin index, in bin units), unnormalised.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .descriptors import describe
from .diffusion import DDIMResult, DDIMStep, sample

REWARDS = ("expected_bin", "log_top")


# ------------------------------------------------------------------------------------------------ labels
def psi_labels(pipe, latents: Tensor, k: int | None = 120, seed: int = 0, batch_size: int = 8,
               progress: bool = True) -> Tensor:
    """psi of the decoder ``pipe.vae_decode`` at clean latents ``(N, 4, h, w)`` -> ``(N,)`` float64
    (Humayun et al. Eq. 4, output projected to ``k`` dims as in the paper)."""
    df = describe(pipe.vae_decode, latents, k=k, seed=seed, batch_size=batch_size, complexity=False,
                  progress=progress)
    return torch.tensor(df["psi"].to_numpy(), dtype=torch.float64)


def psi_bins(psi: Tensor, n_bins: int = 5) -> tuple[Tensor, Tensor]:
    """Uniform bins over the observed range of ``psi`` ``(N,)`` -> ``(edges (n_bins + 1,), labels (N,) int64)``
    with labels in ``0 .. n_bins - 1`` (the maximum falls in the top bin)."""
    psi = torch.as_tensor(psi, dtype=torch.float64)
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    if psi.ndim != 1 or psi.numel() < 2 or not torch.isfinite(psi).all():
        raise ValueError("psi must be a finite 1D tensor with at least two values")
    lo, hi = psi.min(), psi.max()
    if hi <= lo:
        raise ValueError("psi has no spread: all values are equal, bins are undefined")
    edges = torch.linspace(lo.item(), hi.item(), n_bins + 1, dtype=torch.float64)
    labels = torch.bucketize(psi, edges[1:-1], right=True)
    return edges, labels


def make_reward_data(latents: Tensor, labels: Tensor, scheduler, timesteps_per_latent: int = 10,
                     seed: int = 0) -> dict[str, Tensor]:
    """Noised training pairs: ``x_t`` ``(N T, 4, h, w)``, ``t`` ``(N T,)`` int64 uniform in
    ``[0, num_train_timesteps)``, ``y`` ``(N T,)`` the label of the clean latent (``T`` =
    ``timesteps_per_latent``). Forward process ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` (DDPM Eq. 4)."""
    if latents.shape[0] != labels.shape[0]:
        raise ValueError(f"{latents.shape[0]} latents but {labels.shape[0]} labels")
    g = torch.Generator().manual_seed(seed)
    T = int(scheduler.config.num_train_timesteps)
    x0 = latents.repeat_interleave(timesteps_per_latent, dim=0)
    t = torch.randint(0, T, (x0.shape[0],), generator=g)
    a = scheduler.alphas_cumprod[t].to(x0.dtype).view(-1, *[1] * (x0.ndim - 1))
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    return {"x_t": a.sqrt() * x0 + (1 - a).sqrt() * eps, "t": t,
            "y": labels.repeat_interleave(timesteps_per_latent, dim=0).long()}


# ------------------------------------------------------------------------------------------------ model
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of integer times ``(B,)`` -> ``(B, dim)`` (Vaswani et al.; DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    arg = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


class RewardModel(nn.Module):
    """Time-conditioned CNN classifier ``(x_t (B, C, h, w), t (B,)) -> logits (B, n_bins)``: the encoder half
    of a small UNet (conv, GroupNorm, SiLU, stride-2 downsampling, time embedding added per block),
    global average pooling and a linear head."""

    def __init__(self, in_channels: int = 4, n_bins: int = 5, width: int = 32, levels: int = 2,
                 num_train_timesteps: int = 1000):
        super().__init__()
        self.n_bins, self.width, self.num_train_timesteps = n_bins, width, num_train_timesteps
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList()
        self.temb = nn.ModuleList()
        for i in range(levels):
            self.temb.append(nn.Linear(width, width))
            self.blocks.append(nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
                                             nn.GroupNorm(8, width), nn.SiLU(),
                                             nn.Conv2d(width, width, 3, padding=1, stride=2 if i < levels - 1 else 1)))
        self.head = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(width, n_bins))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if (t < 0).any() or (t >= self.num_train_timesteps).any():
            raise ValueError(f"timesteps must lie in [0, {self.num_train_timesteps}), got "
                             f"[{int(t.min())}, {int(t.max())}]")
        e = self.time(timestep_embedding(t, self.width))
        h = self.inp(x)
        for blk, te in zip(self.blocks, self.temb):
            h = h + te(e)[:, :, None, None]
            h = blk(h) + (h if blk[-1].stride == (1, 1) else 0)
        return self.head(h)


def train_reward_model(data: dict[str, Tensor], n_bins: int = 5, steps: int = 2000, batch_size: int = 128,
                       lr: float = 2e-3, width: int = 32, val_fraction: float = 0.1, seed: int = 0,
                       num_train_timesteps: int = 1000, progress: bool = True) -> tuple[RewardModel, dict]:
    """Train ``RewardModel`` with cross-entropy on ``make_reward_data`` output. A seeded split of
    ``val_fraction`` of the pairs is held out. Returns the model (eval mode) and a history dict
    (``loss``: per-step training loss; ``val_accuracy``, ``val_accuracy_by_t``: accuracy on the held-out
    pairs overall and in 5 equal time ranges; ``chance``: majority-class rate)."""
    g = torch.Generator().manual_seed(seed)
    n = data["x_t"].shape[0]
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(val_fraction * n)))
    val, tr = perm[:n_val], perm[n_val:]
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # module init draws from the global RNG; restore it afterwards
    model = RewardModel(data["x_t"].shape[1], n_bins, width, num_train_timesteps=num_train_timesteps)
    torch.random.set_rng_state(torch_state)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="reward model", disable=not progress):
        idx = tr[torch.randint(0, len(tr), (batch_size,), generator=g)]
        loss = nn.functional.cross_entropy(model(data["x_t"][idx], data["t"][idx]), data["y"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(data["x_t"][val[i:i + 512]], data["t"][val[i:i + 512]]).argmax(1)
                          for i in range(0, n_val, 512)])
    correct = (pred == data["y"][val]).double()
    tv = data["t"][val]
    edges = np.linspace(0, num_train_timesteps, 6)
    by_t = [float(correct[(tv >= lo) & (tv < hi)].mean()) if ((tv >= lo) & (tv < hi)).any() else float("nan")
            for lo, hi in zip(edges[:-1], edges[1:])]
    chance = float(torch.bincount(data["y"], minlength=n_bins).max()) / n
    return model, {"loss": losses, "val_accuracy": float(correct.mean()), "val_accuracy_by_t": by_t,
                   "chance": chance}


def reward(model: RewardModel, x_t: Tensor, t: int | Tensor, kind: str = "expected_bin") -> Tensor:
    """Reward ``(B,)`` of noisy latents ``(B, C, h, w)`` at time ``t``: ``"expected_bin"`` =
    ``sum_b b p(b | x_t, t)`` or ``"log_top"`` = ``log p(n_bins - 1 | x_t, t)``."""
    if kind not in REWARDS:
        raise ValueError(f"reward kind must be one of {REWARDS}, got {kind!r}")
    logp = torch.log_softmax(model(x_t, t), dim=-1)
    if kind == "log_top":
        return logp[:, -1]
    bins = torch.arange(logp.shape[-1], dtype=logp.dtype, device=logp.device)
    return (logp.exp() * bins).sum(-1)


def reward_gradient(reward_fn: Callable[[Tensor, int], Tensor], x_t: Tensor, t: int) -> Tensor:
    """``grad_{x_t} sum_b r(x_t, t)_b`` ``(B, C, h, w)`` (samples independent, so per-sample gradients)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        r = reward_fn(x, t)
        if r.shape != (x.shape[0],):
            raise ValueError(f"the reward must return shape ({x.shape[0]},), got {tuple(r.shape)}")
        (grad,) = torch.autograd.grad(r.sum(), x)
    return grad


# --------------------------------------------------------------------------------------------- sampler
def _check_rho(rho) -> float:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho):
        raise ValueError(f"rho must be a finite real number, got {rho!r}")
    return float(rho)


def guided_sample(pipe, prompts: list[str], reward_fn: Callable[[Tensor, int], Tensor] | RewardModel,
                  rho: float, num_steps: int = 50, guidance_scale: float = 7.5, eta: float = 0.0,
                  generator: torch.Generator | None = None, latents: Tensor | None = None,
                  negative_prompt: str | list[str] = "", kind: str = "expected_bin",
                  callback: Callable[[DDIMStep], None] | None = None, progress: bool = True) -> DDIMResult:
    """DDIM with classifier-free guidance plus reward guidance ``eps_hat = eps_cfg - rho sqrt(1 - a_t)
    grad_{x_t} r(x_t, t)`` (module docs). Same arguments and random draws as ``geom.diffusion.sample``, so
    ``rho = 0`` reproduces it exactly; ``reward_fn`` is a ``RewardModel`` (reward ``kind``) or any callable
    ``(x_t (B, C, h, w), t: int) -> (B,)``. Works with both kinds of ``load_pipeline`` and every
    ``prediction_type`` (the shift acts on the noise prediction; module docs). Raises ``ValueError`` for a
    non-finite ``rho``, an unknown ``kind``, or a ``RewardModel`` trained on another number of diffusion
    times than the pipeline's scheduler (its time embedding would read the times wrongly)."""
    rho = _check_rho(rho)
    if isinstance(reward_fn, RewardModel):
        model = reward_fn
        T = int(pipe.scheduler.config.num_train_timesteps)
        if model.num_train_timesteps != T:
            raise ValueError(f"the RewardModel was built for num_train_timesteps={model.num_train_timesteps}, the "
                             f"pipeline's scheduler has {T}; train it with num_train_timesteps={T}")
        if kind not in REWARDS:
            raise ValueError(f"reward kind must be one of {REWARDS}, got {kind!r}")
        reward_fn = lambda x, t: reward(model, x, t, kind)  # noqa: E731

    def eps_fn(x: Tensor, t: int, eps: Tensor, a_t: Tensor) -> Tensor:
        return eps - rho * (1 - a_t).sqrt().to(x) * reward_gradient(reward_fn, x, t)

    return sample(pipe, prompts, num_steps=num_steps, guidance_scale=guidance_scale, eta=eta, generator=generator,
                  latents=latents, negative_prompt=negative_prompt, callback=callback, progress=progress,
                  eps_fn=eps_fn if rho != 0.0 else None)
