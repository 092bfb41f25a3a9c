"""Decoder geometry along DDIM trajectories, memorisation statistics, level sets and diversity
(Humayun et al. Sec. 3.3.4, Figs. 8, 9, 12, 13).

* ``TrajectoryRecorder`` / ``describe_trajectories``: psi, nu, delta (``geom.describe``) of the decoder
  ``pipe.vae_decode`` at every DDIM step of ``geom.diffusion.sample``, together with the memorisation
  statistic of Wen et al. (ICLR 2024) ``||eps_cond - eps_uncond||_2`` at the same step. The decoder is
  evaluated either at the *predicted clean latent* ``pred_x0`` (default; ``at="pred_x0"``) or at the current
  noisy latent ``x_t`` (``at="latents"``). Default ``pred_x0`` because the decoder was trained on clean
  latents only: at early steps ``x_t`` is almost pure Gaussian noise, far off the decoder's training
  distribution, and its descriptors there mostly measure the decoder off-manifold; ``pred_x0`` is the point
  of the decoder's latent space the trajectory is heading to at that step (it equals ``x_t`` at the last
  step up to the final DDIM update). Humayun et al. plot the decoder's descriptors against the denoising
  step (Fig. 8) without fixing this choice in the text we work from; both readings are supported and the
  notebooks say which one they use.
* ``wen_statistic`` / ``wen_score``: Wen et al.'s detection score, the text-conditional minus unconditional
  noise prediction norm (model outputs converted to noise predictions for v- / x0-prediction models),
  averaged over the first ``n`` steps.
* ``auroc`` (Mann-Whitney U with mid-ranks for ties), ``mean_ci`` (Student t), ``diff_ci`` (Welch).
* ``level_sets``: quantile bins of a descriptor; ``vendi`` / ``vendi_per_level``: the Vendi score
  (Friedman & Dieng 2023, ``vendi-score`` package) of a cosine-similarity kernel (unit diagonal) per level set.
* ``random_conv_features``: an offline image embedding (a fixed, seeded random conv net with mean/std
  pooling) for the Vendi kernel; ``initial_latents``: per-seed ``x_T`` (reproducible whatever the batching).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from .descriptors import describe
from .diffusion import DDIMStep, sample
from .slices import auroc as slices_auroc

AT = ("pred_x0", "latents")


# ------------------------------------------------------------------------------------------ trajectories
def initial_latents(pipe, seeds: Sequence[int]) -> Tensor:
    """``x_T ~ N(0, I)`` ``(len(seeds), *pipe.latent_shape)``, sample ``i`` drawn from
    ``torch.Generator().manual_seed(seeds[i])`` on the CPU (so a seed gives the same ``x_T`` in any batch)."""
    if len(seeds) == 0:
        raise ValueError("seeds is empty")
    zs = [torch.randn(pipe.latent_shape, generator=torch.Generator().manual_seed(int(s)), dtype=pipe.dtype)
          for s in seeds]
    return torch.stack(zs).to(pipe.device)


def wen_statistic(eps_cond: Tensor, eps_uncond: Tensor) -> Tensor:
    """Per-sample ``||eps_theta(x_t, c) - eps_theta(x_t, "")||_2`` (Wen et al., ICLR 2024, Sec. 3):
    ``(B, *latent_shape)`` twice -> ``(B,)`` float64.

    The statistic is defined on *noise* predictions. For a model that predicts ``v`` or ``x0``
    (``prediction_type``), convert each output to ``eps`` first with ``geom.diffusion.to_eps_x0`` (at the same
    ``x_t`` and ``alpha_bar_t``); ``DDIMStep.eps_cond`` / ``eps_uncond`` (what ``TrajectoryRecorder`` uses) are
    already converted. For ``v`` outputs ``eps_c - eps_u = sqrt(a_t) (v_c - v_u)``, so using ``v`` directly
    would scale the statistic by ``1 / sqrt(a_t)`` per step."""
    if eps_cond.shape != eps_uncond.shape or eps_cond.ndim < 2:
        raise ValueError(f"eps_cond {tuple(eps_cond.shape)} and eps_uncond {tuple(eps_uncond.shape)} must be "
                         "equal batches (B, ...)")
    return (eps_cond.double() - eps_uncond.double()).flatten(1).norm(dim=1)


@dataclass
class TrajectoryRecorder:
    """A ``geom.diffusion.sample`` callback that stores, at every step, the latent to describe
    (``at="pred_x0"`` or ``"latents"``, see the module docs) and Wen et al.'s statistic.

    After sampling: ``latents`` ``(num_steps, B, *latent_shape)`` (CPU), ``wen`` ``(num_steps, B)``,
    ``timesteps`` ``(num_steps,)``; ``rows()`` is a long table with one row per (step, sample)."""
    at: str = "pred_x0"
    steps: list[int] = field(default_factory=list)
    timestep_list: list[int] = field(default_factory=list)
    latent_list: list[Tensor] = field(default_factory=list)
    wen_list: list[Tensor] = field(default_factory=list)

    def __post_init__(self):
        if self.at not in AT:
            raise ValueError(f"at must be one of {AT}, got {self.at!r}")

    def __call__(self, s: DDIMStep) -> None:
        self.steps.append(s.index)
        self.timestep_list.append(s.timestep)
        z = s.pred_x0 if self.at == "pred_x0" else s.latents
        self.latent_list.append(z.detach().cpu().clone())
        self.wen_list.append(wen_statistic(s.eps_cond, s.eps_uncond).cpu())

    @property
    def latents(self) -> Tensor:
        return torch.stack(self.latent_list)

    @property
    def wen(self) -> Tensor:
        return torch.stack(self.wen_list)

    @property
    def timesteps(self) -> np.ndarray:
        return np.asarray(self.timestep_list, dtype=np.int64)

    def rows(self) -> pd.DataFrame:
        """``step``, ``timestep``, ``sample`` (index in the batch) and ``wen``, step-major."""
        S, B = len(self.steps), self.wen.shape[1]
        return pd.DataFrame(dict(step=np.repeat(self.steps, B).astype(np.int64),
                                 timestep=np.repeat(self.timesteps, B), sample=np.tile(np.arange(B), S),
                                 wen=self.wen.numpy().reshape(-1)))


def described_steps(num_steps: int, every: int) -> np.ndarray:
    """The steps whose latents are described: ``0, every, 2 every, ...`` and always the last one."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return np.unique(np.r_[np.arange(0, num_steps, every), num_steps - 1]).astype(np.int64)


def describe_trajectories(pipe, prompts: Sequence[str], seeds: Sequence[int], num_steps: int = 50,
                          guidance_scale: float = 7.5, at: str = "pred_x0", every: int = 1, k: int | None = 120,
                          radius: float = 1e-5, dim: int | None = 4, descriptor_seed: int = 0,
                          complexity: bool = True, batch_size: int = 32, sample_batch: int = 16,
                          progress: bool = False) -> tuple[pd.DataFrame, Tensor]:
    """Decoder descriptors along DDIM trajectories (Humayun et al. Sec. 3.3.4, Fig. 8).

    Sample ``i`` runs DDIM (``num_steps`` steps, guidance ``guidance_scale``, eta 0) for ``prompts[i]`` from
    ``x_T = initial_latents(pipe, [seeds[i]])``. Wen et al.'s statistic is recorded at every step; psi, nu,
    delta of ``pipe.vae_decode`` at ``pred_x0`` or ``x_t`` (``at``) are computed with ``geom.describe``
    (``k``, ``radius``, ``dim``, seeded by ``descriptor_seed``: the same projection for every point) at the
    steps ``described_steps(num_steps, every)`` (every step for ``every=1``).

    Returns:
        a DataFrame with one row per (sample, step), ``num_steps`` rows per sample: ``sample, prompt, seed,
        guidance, step, timestep, wen, psi, nu[, delta]`` (descriptors NaN on steps not described); and the
        final latents ``(B, *latent_shape)``.
    """
    prompts = list(prompts)
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts for {len(seeds)} seeds")
    keep = described_steps(num_steps, every)
    frames, finals = [], []
    for s0 in range(0, len(prompts), sample_batch):
        pb, sb = prompts[s0:s0 + sample_batch], list(seeds[s0:s0 + sample_batch])
        rec = TrajectoryRecorder(at=at)
        res = sample(pipe, pb, num_steps=num_steps, guidance_scale=guidance_scale,
                     latents=initial_latents(pipe, sb), callback=rec)
        finals.append(res.latents.detach().cpu())
        rows = rec.rows()
        rows["sample"] += s0
        z = rec.latents[torch.as_tensor(keep)].flatten(0, 1).to(pipe.device)  # step-major, as rows()
        d = describe(pipe.vae_decode, z, k=k, radius=radius, dim=dim, seed=descriptor_seed,
                     batch_size=batch_size, complexity=complexity, progress=progress)
        d.index = rows.index[rows["step"].isin(keep).to_numpy()]
        frames.append(rows.join(d))
    df = pd.concat(frames, ignore_index=True)
    df.insert(1, "prompt", [prompts[i] for i in df["sample"]])
    df.insert(2, "seed", [int(seeds[i]) for i in df["sample"]])
    df.insert(3, "guidance", float(guidance_scale))
    df = df.sort_values(["sample", "step"], kind="stable").reset_index(drop=True)
    return df, torch.cat(finals)


def wen_score(df: pd.DataFrame, first_steps: int = 1, by: Sequence[str] = ("sample",)) -> pd.Series:
    """Wen et al.'s detection score: the mean of the ``wen`` column over the first ``first_steps`` DDIM
    steps (smallest ``step`` values) of each trajectory (grouped by ``by``). Wen et al. average the norm over
    the first steps and report that the first step alone already separates memorised prompts."""
    if first_steps < 1:
        raise ValueError(f"first_steps must be >= 1, got {first_steps}")
    first = sorted(df["step"].unique())[:first_steps]
    return df[df["step"].isin(first)].groupby(list(by))["wen"].mean()


# ------------------------------------------------------------------------------------------ statistics
def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` ``(N,)`` for binary ``labels`` ``(N,)`` (1 = positive), the
    probability that a random positive scores higher than a random negative (ties count 1/2): the
    Mann-Whitney U statistic with mid-ranks, divided by ``n_pos * n_neg``."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if not np.isin(y, (0, 1, True, False)).all():
        raise ValueError("labels must be binary (0/1 or bool)")
    y = y.astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"AUROC needs both classes, got {n1} positives and {n0} negatives")
    return slices_auroc(s[y], s[~y])  # one Mann-Whitney implementation (mid-ranks for ties)


def mean_ci(x, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x`` ``(n,)`` and its Student-t confidence interval ``(mean, low, high)``; for ``n = 1`` the
    interval is ``(nan, nan)``."""
    from scipy import stats
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        raise ValueError("mean_ci of an empty sample")
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def diff_ci(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` with its Welch (unequal variances) t interval
    ``(diff, low, high)``."""
    from scipy import stats
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"diff_ci needs at least 2 values per group, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dfree = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else np.inf
    d = float(a.mean() - b.mean())
    h = float(stats.t.ppf(0.5 + level / 2, dfree) * se)
    return d, d - h, d + h


def band(df: pd.DataFrame, x: str, y: str, by: Sequence[str] = (), level: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t confidence band of column ``y`` at every value of ``x`` (per group ``by``), over
    the rows sharing them (e.g. seeds): columns ``*by, x, mean, low, high, n``."""
    keys = [*by, x]
    out = []
    for key, g in df.groupby(keys, sort=True):
        m, lo, hi = mean_ci(g[y].to_numpy(), level)
        key = key if isinstance(key, tuple) else (key,)
        out.append(dict(zip(keys, key), mean=m, low=lo, high=hi, n=len(g)))
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------ level sets
def level_sets(values, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile level sets: ``values`` ``(N,)`` -> ``(levels (N,) int64 in [0, L), edges (L + 1,))`` with
    ``edges`` the ``0, 1/n_levels, ..., 1`` quantiles (duplicates removed, so ``L <= n_levels``); value ``v``
    is in level ``l`` when ``edges[l] <= v < edges[l + 1]`` (the maximum in the last level)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    if len(v) == 0 or not np.isfinite(v).all():
        raise ValueError("level_sets needs a non-empty, finite array")
    edges = np.unique(np.quantile(v, np.linspace(0, 1, n_levels + 1)))
    if len(edges) == 1:
        return np.zeros(len(v), dtype=np.int64), np.array([edges[0], edges[0]])
    levels = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    return levels.astype(np.int64), edges


VENDI_UNIT_NORM_TOL = 1e-5  # |row norm - 1| accepted as a unit diagonal with normalize=False (float32 rounding)


def vendi(features, normalize: bool = True) -> float:
    """Vendi score (Friedman & Dieng, TMLR 2023, Sec. 3) of ``features`` ``(n, d)``: ``exp`` of the Shannon
    entropy of the eigenvalues of ``K / n`` for the cosine-similarity kernel ``K = X X^T`` of unit rows, so
    that ``K(x, x) = 1`` and the eigenvalues of ``K / n`` sum to 1. Between 1 (all items identical, or
    ``n = 1``) and ``n`` (mutually orthogonal items). Computed by the ``vendi-score`` package on the unit
    rows: ``vendi.score_dual`` (``d x d`` eigenproblem) when ``d <= n``, else ``vendi.score_X`` (``n x n``);
    both have the same non-zero eigenvalues.

    ``normalize=True`` divides each row by its L2 norm (cosine similarity). ``normalize=False`` takes the rows
    as they are and requires them to be unit vectors (``|norm - 1| <= VENDI_UNIT_NORM_TOL``): with other norms
    ``K`` has no unit diagonal, the eigenvalues of ``K / n`` do not sum to 1 and the "score" is not a Vendi
    score (it can fall outside ``[1, n]``).

    Raises ``ValueError`` for a shape other than ``(n >= 1, d >= 1)``, NaN / inf, a zero row (it has no
    direction: its cosine similarity is undefined), and for ``normalize=False`` rows that are not unit norm."""
    from vendi_score import vendi as _vendi
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"features must be (n, d) with n >= 1 and d >= 1, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or inf")
    norms = np.linalg.norm(X, axis=1)
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise ValueError(f"feature rows {zero[:10].tolist()}{' ...' if len(zero) > 10 else ''} are zero: a zero "
                         "vector has no direction, so its similarity kernel (cosine) is undefined; drop those rows "
                         "or use an embedding without zero vectors")
    if normalize:
        X = X / norms[:, None]
    elif (np.abs(norms - 1) > VENDI_UNIT_NORM_TOL).any():
        bad = np.abs(norms - 1) > VENDI_UNIT_NORM_TOL
        raise ValueError(f"vendi needs a similarity kernel with unit diagonal (K(x, x) = |x|^2 = 1); {int(bad.sum())} "
                         f"of {len(X)} rows have norms in [{norms.min():.4g}, {norms.max():.4g}]; use normalize=True "
                         "(cosine similarity) or pass unit-norm rows")
    if X.shape[1] <= X.shape[0]:
        return float(_vendi.score_dual(X, normalize=False))
    return float(_vendi.score_X(X, normalize=False))


def vendi_per_level(features, levels, min_size: int = 2) -> pd.DataFrame:
    """Vendi score of the items of each level set: ``features`` ``(N, d)``, ``levels`` ``(N,)`` -> columns
    ``level, n, vendi`` (NaN for levels with fewer than ``min_size`` items)."""
    X = np.asarray(features, dtype=np.float64)
    lv = np.asarray(levels).reshape(-1)
    if len(X) != len(lv):
        raise ValueError(f"{len(X)} feature rows for {len(lv)} levels")
    rows = []
    for lvl in np.unique(lv):
        m = lv == lvl
        rows.append(dict(level=int(lvl), n=int(m.sum()),
                         vendi=vendi(X[m]) if m.sum() >= min_size else math.nan))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ embedding
@torch.no_grad()
def random_conv_features(images: Tensor, seed: int = 0, width: int = 32, layers: int = 3, max_side: int = 64,
                         batch_size: int = 256) -> np.ndarray:
    """An offline image embedding for diversity scores: a fixed random conv net (seeded He-normal 3x3
    convolutions, stride 2, ReLU) with per-channel mean and std pooling after every layer, concatenated with
    the channel means/stds of the input. ``images`` ``(N, 3, H, W)`` in ``[-1, 1]`` (larger sides are
    average-pooled to at most ``max_side``) -> ``(N, 2 * (3 + layers * width))`` float64.

    Random conv features with global pooling are (approximately) translation invariant and respond to colour,
    texture and edges, which a raw-pixel embedding does not: two images of the same red circle at different
    positions are nearly orthogonal in pixels but close here. They need no pretrained weights (no download)."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    g = torch.Generator().manual_seed(int(seed))
    C = images.shape[1]
    ws, c = [], C
    for _ in range(layers):
        ws.append(torch.randn(width, c, 3, 3, generator=g, dtype=torch.float32) * math.sqrt(2.0 / (9 * c)))
        c = width
    feats = []
    for s in range(0, images.shape[0], batch_size):
        x = images[s:s + batch_size].detach().float().cpu()
        side = max(x.shape[-2:])
        if side > max_side:
            x = torch.nn.functional.adaptive_avg_pool2d(x, (x.shape[-2] * max_side // side,
                                                            x.shape[-1] * max_side // side))
        parts = [x.mean((2, 3)), x.std((2, 3))]
        for w in ws:
            x = torch.relu(torch.nn.functional.conv2d(x, w, stride=2, padding=1))
            parts += [x.mean((2, 3)), x.std((2, 3))]
        feats.append(torch.cat(parts, 1))
    return torch.cat(feats).double().numpy()


def decode(pipe, latents: Tensor, batch_size: int = 64) -> Tensor:
    """Decoded images ``(N, 3, H, W)`` in ``[-1, 1]`` (CPU) of latents ``(N, *latent_shape)``."""
    out = []
    with torch.no_grad():
        for s in range(0, latents.shape[0], batch_size):
            out.append(pipe.vae_decode(latents[s:s + batch_size].to(pipe.device, pipe.dtype)).float().cpu())
    return torch.cat(out)


def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], num_steps: int = 50, guidance_scale: float = 7.5,
             batch_size: int = 32, progress: bool = False) -> Tensor:
    """Final DDIM latents ``(N, *latent_shape)`` (CPU) for ``prompts[i]`` from ``initial_latents([seeds[i]])``
    (deterministic DDIM, eta 0), in batches of ``batch_size``."""
    prompts = list(prompts)
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts for {len(seeds)} seeds")
    out = []
    starts = range(0, len(prompts), batch_size)
    for s in tqdm(starts, disable=not progress, desc="generate"):
        res = sample(pipe, prompts[s:s + batch_size], num_steps=num_steps, guidance_scale=guidance_scale,
                     latents=initial_latents(pipe, list(seeds[s:s + batch_size])))
        out.append(res.latents.detach().cpu())
    return torch.cat(out)
