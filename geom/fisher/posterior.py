"""The grid of parameters and the posterior network of ``geom.fisher`` (Lobashev et al. Sec. 3, step 1): a
permutation-invariant network maps a bundle of samples to a softmax over the grid, trained with cross-entropy
to Gaussian-smoothed one-hot targets; and the moments of distributions on the grid."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from ..deprecation import renamed_kwargs
from ._common import check_shape, seeded_init


@dataclass
class ParamGrid:
    """A regular ``n1 x n2`` grid of parameters ``t`` and the natural coordinates ``theta(t)`` of its points.

    ``t1`` (n1,), ``t2`` (n2,): axes in the experiment's coordinates; points are ordered row-major, index
    ``i = i1 * n2 + i2``. ``natural`` (G, 2): natural coordinates of each point (default: the points themselves).
    ``sigma``: width of the Gaussian target smoothing, in grid cells (Lobashev et al. Sec. 3)."""

    t1: torch.Tensor
    t2: torch.Tensor
    natural: torch.Tensor | None = None
    sigma: float = 1.0
    _S: tuple = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.t1 = torch.as_tensor(self.t1, dtype=torch.float64)
        self.t2 = torch.as_tensor(self.t2, dtype=torch.float64)
        check_shape(self.t1, "t1", (None,))
        check_shape(self.t2, "t2", (None,))
        if self.natural is None:
            self.natural = self.points.clone()
        self.natural = torch.as_tensor(self.natural, dtype=torch.float64)
        check_shape(self.natural, "natural", (self.size, 2))
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        self._S = (self._kernel(len(self.t1)), self._kernel(len(self.t2)))

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.t1), len(self.t2)

    @property
    def size(self) -> int:
        return len(self.t1) * len(self.t2)

    @property
    def points(self) -> torch.Tensor:
        """(G, 2) grid points ``(t1, t2)``, row-major."""
        a, b = torch.meshgrid(self.t1, self.t2, indexing="ij")
        return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)

    @property
    def standardized(self) -> torch.Tensor:
        """(G, 2) grid indices scaled to [0, 1] per axis (the coordinates of the centroid loss)."""
        n1, n2 = self.shape
        i1, i2 = torch.meshgrid(torch.arange(n1) / max(n1 - 1, 1), torch.arange(n2) / max(n2 - 1, 1), indexing="ij")
        return torch.stack([i1.reshape(-1), i2.reshape(-1)], dim=1).double()

    def _kernel(self, n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float64)
        if self.sigma == 0:
            return torch.eye(n, dtype=torch.float64)
        k = torch.exp(-0.5 * ((i[:, None] - i[None, :]) / self.sigma) ** 2)
        return k / k.sum(1, keepdim=True)

    def smooth(self, q: torch.Tensor) -> torch.Tensor:
        """Convolve distributions on the grid with the target-smoothing kernel: (B, G) -> (B, G).
        The kernel is truncated at the grid edges and renormalised per source point, like the targets."""
        n1, n2 = self.shape
        S1, S2 = (s.to(device=q.device, dtype=q.dtype) for s in self._S)
        return ((S1.T @ q.reshape(-1, n1, n2)) @ S2).reshape(q.shape)

    def average(self, f: torch.Tensor) -> torch.Tensor:
        """Gaussian average of a field over neighbouring grid points with the target-smoothing kernel (``sigma``
        cells, truncated at the edges and renormalised per output point): ``f`` (G, ...) -> (G, ...). Unlike
        ``smooth`` (which spreads probability mass and keeps its total), this is a weighted mean at each point;
        e.g. the fluctuation estimate of the metric pooled over neighbours."""
        n1, n2 = self.shape
        check_shape(f.reshape(self.size, -1), "f", (self.size, None))
        S1, S2 = (k.to(device=f.device, dtype=f.dtype) for k in self._S)
        return torch.einsum("ia,jb,abk->ijk", S1, S2, f.reshape(n1, n2, -1)).reshape(f.shape)

    def targets(self, idx: torch.Tensor) -> torch.Tensor:
        """Gaussian-smoothed one-hot targets for true grid indices ``idx`` (B,) -> (B, G)."""
        onehot = torch.zeros(len(idx), self.size, dtype=torch.float64)
        onehot[torch.arange(len(idx)), idx] = 1.0
        return self.smooth(onehot)


# ------------------------------------------------------------------------------------------------- posterior
class PosteriorNet(nn.Module):
    """Permutation-invariant posterior network (Lobashev et al. Sec. 3): per-sample encoder, mean over the
    bundle, head to logits over the ``G`` grid points. Input (B, N, d) -> logits (B, G).

    ``encoder``: optional module (B*N, d) -> (B*N, embed) replacing the default MLP (e.g. a CNN on images)."""

    def __init__(self, d_in: int, n_grid: int, width: int = 128, embed: int = 64, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder or nn.Sequential(nn.Linear(d_in, width), nn.SiLU(), nn.Linear(width, width),
                                                nn.SiLU(), nn.Linear(width, embed))
        self.head = nn.Sequential(nn.Linear(embed, width), nn.SiLU(), nn.Linear(width, 2 * width), nn.SiLU(),
                                  nn.Linear(2 * width, n_grid))
        self.register_buffer("mu", torch.zeros(d_in))
        self.register_buffer("sd", torch.ones(d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, d = x.shape
        h = self.encoder(((x - self.mu) / self.sd).reshape(B * N, d)).reshape(B, N, -1).mean(1)
        return self.head(h)


def make_bundles(pool: torch.Tensor, N: int, n_bundles: int, generator: torch.Generator,
                 idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bundles of ``N`` samples drawn (with replacement) from the pool of one grid point each.

    ``pool`` (G, n, d): per-sample features at every grid point. ``idx`` (B,): grid points of the bundles
    (default: uniform). Returns ``x`` (B, N, d) and ``idx`` (B,)."""
    idx, j = bundle_draws(pool.shape[0], pool.shape[1], N, n_bundles, generator, idx)
    return pool[idx[:, None], j], idx


def bundle_draws(G: int, n: int, N: int, n_bundles: int, generator: torch.Generator,
                 idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The draws behind ``make_bundles`` for a pool of ``n`` samples at each of ``G`` grid points: grid points
    ``idx`` (B,) (default: ``n_bundles`` uniform draws) and sample positions ``j`` (B, N) (with replacement), so
    that bundle ``b`` is ``pool[idx[b], j[b]]``."""
    if idx is None:
        idx = torch.randint(G, (n_bundles,), generator=generator)
    return idx, torch.randint(n, (len(idx), N), generator=generator)


@renamed_kwargs(batch="batch_size")
def train_posterior(pool: torch.Tensor, grid: ParamGrid, N: int, steps: int = 3000, batch_size: int = 256,
                    lr: float = 2e-3, width: int = 128, encoder: nn.Module | None = None, seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True) -> tuple[PosteriorNet, list[float]]:
    """Train ``PosteriorNet`` on bundles of ``N`` samples from ``pool`` (G, n, d) (float32 features), with
    cross-entropy to ``grid.targets`` (Lobashev et al. Sec. 3); Adam with cosine decay. Returns the network
    (eval mode, on the CPU) and the loss history. ``device``: where the network trains (bundles are drawn on the
    CPU from the seeded generator and moved there, so the bundles do not depend on the device)."""
    check_shape(pool, "pool", (grid.size, None, None))
    g = torch.Generator().manual_seed(seed)
    net = seeded_init(PosteriorNet(pool.shape[-1], grid.size, width=width, encoder=encoder), g)
    flat = pool.reshape(-1, pool.shape[-1]).float()
    net.mu.copy_(flat.mean(0))
    net.sd.copy_(flat.std(0).clamp_min(1e-6))
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    hist = []
    for _ in tqdm(range(steps), disable=not progress, desc="posterior"):
        x, idx = make_bundles(pool, N, batch_size, g)
        tgt = grid.targets(idx).float().to(device)
        loss = -(tgt * torch.log_softmax(net(x.float().to(device)), -1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist.append(loss.item())
    return net.cpu().eval(), hist


@renamed_kwargs(batch="batch_size")
@torch.no_grad()
def predict_posterior(net: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Learned posterior over the grid for bundles ``x`` (B, N, d) -> (B, G) float64 probabilities,
    ``batch_size`` bundles per forward call."""
    return torch.cat([torch.softmax(net(x[i:i + batch_size].float()).double(), -1)
                      for i in range(0, len(x), batch_size)])



def posterior_moments(P: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, 2) and covariance (B, 2, 2) of distributions ``P`` (B, G) over points ``coords`` (G, 2)."""
    mean = P @ coords
    d = coords[None] - mean[:, None]
    return mean, torch.einsum("bg,bgi,bgj->bij", P, d, d)

