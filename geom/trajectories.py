"""Decoder geometry along DDIM trajectories, memorisation statistics and the image embedding for diversity
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
  noise prediction norm (model outputs converted to noise predictions for v- / x0-prediction models); by
  default as the peer's code scores it (mean over all steps, one score per prompt: the mean over its
  generations), the first ``n`` steps or one score per trajectory as options.
* ``random_conv_features`` (moved to ``geom.embeddings``, still importable here): an offline image embedding
  (a fixed, seeded random conv net with mean/std pooling) for the Vendi kernel (``geom.stats.vendi``);
  ``initial_latents``: per-seed ``x_T`` (reproducible whatever the batching); ``generate``: final DDIM latents
  in batches (decoded images: ``LatentDiffusion.decode_latents``).

The statistics these notebooks report (AUROC, t intervals, level sets, Vendi scores) are ``geom.stats``; their
former names here (``auroc``, ``mean_ci``, ``diff_ci``, ``band``, ``level_sets``, ``vendi``,
``vendi_per_level``, same signatures) stay importable from this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from .descriptors import describe
from .deprecation import renamed_kwargs
from .diffusion import DDIMStep, sample
from .embeddings import random_conv_features  # noqa: F401 (moved to geom.embeddings)
from .stats import auroc, band, diff_ci, level_sets, mean_ci, vendi, vendi_per_level  # noqa: F401 (moved)

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


@renamed_kwargs(sample_batch="sample_batch_size")
def describe_trajectories(pipe, prompts: Sequence[str], seeds: Sequence[int], num_steps: int = 50,
                          guidance_scale: float = 7.5, at: str = "pred_x0", every: int = 1, k: int | None = 120,
                          radius: float = 1e-5, dim: int | None = 4, descriptor_seed: int = 0,
                          complexity: bool = True, batch_size: int = 32, sample_batch_size: int = 16,
                          progress: bool = True) -> tuple[pd.DataFrame, Tensor]:
    """Decoder descriptors along DDIM trajectories (Humayun et al. Sec. 3.3.4, Fig. 8).

    Sample ``i`` runs DDIM (``num_steps`` steps, guidance ``guidance_scale``, eta 0) for ``prompts[i]`` from
    ``x_T = initial_latents(pipe, [seeds[i]])``. Wen et al.'s statistic is recorded at every step; psi, nu,
    delta of ``pipe.vae_decode`` at ``pred_x0`` or ``x_t`` (``at``) are computed with ``geom.describe``
    (``k``, ``radius``, ``dim``, seeded by ``descriptor_seed``: the same projection for every point) at the
    steps ``described_steps(num_steps, every)`` (every step for ``every=1``). ``sample_batch_size``: trajectories
    sampled per DDIM call; ``batch_size``: latents per ``geom.describe`` batch.

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
    for s0 in range(0, len(prompts), sample_batch_size):
        pb, sb = prompts[s0:s0 + sample_batch_size], list(seeds[s0:s0 + sample_batch_size])
        rec = TrajectoryRecorder(at=at)
        res = sample(pipe, pb, num_steps=num_steps, guidance_scale=guidance_scale,
                     latents=initial_latents(pipe, sb), callback=rec, progress=False)
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


def wen_score(df: pd.DataFrame, first_steps: int | None = None, by: str = "prompt") -> pd.Series:
    """Wen et al.'s detection score (ICLR 2024, Sec. 3): the statistic ``wen`` (``wen_statistic``) averaged
    over DDIM steps, per prompt (default) or per trajectory.

    Default = the peer's protocol, as its code does it (YuxinWenRick/diffusion_memorization):
    ``local_sd_pipeline.py`` records, at every step and for every generated image, the L2 norm (``lp=2``) of
    ``noise_pred_text - noise_pred_uncond`` over the whole latent; ``detect_mem.py`` samples 50 DDIM steps with 4
    images per prompt (``num_inference_steps=50``, ``num_images_per_prompt=4``); ``examples/det_mem_viz.ipynb``
    scores a prompt by slicing ``[:num_gens, start:end]`` with ``start = 0, end = 50`` (all steps), taking the
    mean over its generations and then over the steps. So: all steps, and one score per prompt.

    Args:
        df: long table with one row per (trajectory, step), as ``describe_trajectories`` returns it: columns
            ``sample`` (trajectory id), ``step``, ``wen`` and the column ``by``.
        first_steps: ``None`` (default, the peer's): every step; ``n``: only the first ``n`` DDIM steps (the
            ``n`` smallest ``step`` values, step 0 = pure noise): the early-window variant (Wen et al. report
            that the first step alone already separates memorised prompts, at 1/50 of the cost).
        by: ``"prompt"`` (default, the peer's unit): mean over the trajectories of each prompt of their mean over
            the steps (equal to the peer's mean over generations per step, then over steps, because every
            trajectory has the same steps); ``"sample"``: one score per trajectory; any other column of ``df``:
            mean over the trajectories sharing its value.

    Returns:
        ``(n_units,)`` float64 Series indexed by ``by`` (sorted), name ``"wen"``.

    Raises ``ValueError`` for a missing column, NaN / inf ``wen``, ``first_steps`` < 1 or more than the steps
    recorded, trajectories that do not all have the same steps, and a trajectory with several ``by`` values."""
    need = {"sample", "step", "wen", by}
    missing = sorted(need - set(df.columns))
    if missing:
        raise ValueError(f"wen_score needs columns {sorted(need)}; {missing} missing (df has {list(df.columns)}): "
                         "pass the table of describe_trajectories, or name another grouping column with by=")
    steps = np.sort(df["step"].unique())
    if first_steps is not None:
        if not (isinstance(first_steps, (int, np.integer)) and first_steps >= 1):
            raise ValueError(f"first_steps must be None (all steps) or an int >= 1, got {first_steps!r}")
        if first_steps > len(steps):
            raise ValueError(f"first_steps={first_steps} but the trajectories have {len(steps)} steps; use "
                             "first_steps=None for all steps")
        steps = steps[:first_steps]
    d = df[df["step"].isin(steps)]
    bad = np.flatnonzero(~np.isfinite(d["wen"].to_numpy(dtype=np.float64)))
    if bad.size:
        raise ValueError(f"wen has {bad.size} NaN / inf value(s) in the steps used (trajectories "
                         f"{sorted(d['sample'].iloc[bad].unique().tolist())[:10]}); fix the recording, or drop "
                         "those trajectories")
    want = tuple(steps.tolist())
    per_traj = d.groupby("sample")["step"].agg(lambda s: tuple(np.sort(s.to_numpy()).tolist()))
    ragged = per_traj.index[per_traj.map(lambda t: t != want).to_numpy()].tolist()
    ragged += [t for t in df["sample"].unique() if t not in per_traj.index]  # no row in the window at all
    if ragged:
        raise ValueError(f"{len(ragged)} trajectories (e.g. sample {ragged[0]!r}) do not have one row at each "
                         f"of the steps used {steps.tolist()[:10]}{' ...' if len(steps) > 10 else ''}: a mean over "
                         "them would weigh steps unequally; keep complete trajectories only")
    score = d.groupby("sample")["wen"].mean().astype(np.float64)
    if by == "sample":
        return score.rename("wen")
    units = d.groupby("sample")[by].agg(lambda s: s.unique().tolist())
    mixed = units[units.map(len) > 1]
    if len(mixed):
        raise ValueError(f"trajectory {mixed.index[0]!r} has several {by!r} values {mixed.iloc[0][:5]}: a trajectory "
                         f"must belong to one {by}")
    return score.groupby(units.map(lambda v: v[0]).rename(by)).mean().rename("wen")


# ------------------------------------------------------------------------------------------ embedding
# random_conv_features: moved to geom.embeddings (imported above)


def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], num_steps: int = 50, guidance_scale: float = 7.5,
             batch_size: int = 32, progress: bool = True) -> Tensor:
    """Final DDIM latents ``(N, *latent_shape)`` (CPU) for ``prompts[i]`` from ``initial_latents([seeds[i]])``
    (deterministic DDIM, eta 0), in batches of ``batch_size``."""
    prompts = list(prompts)
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts for {len(seeds)} seeds")
    out = []
    starts = range(0, len(prompts), batch_size)
    for s in tqdm(starts, disable=not progress, desc="generate"):
        res = sample(pipe, prompts[s:s + batch_size], num_steps=num_steps, guidance_scale=guidance_scale,
                     latents=initial_latents(pipe, list(seeds[s:s + batch_size])), progress=False)
        out.append(res.latents.detach().cpu())
    return torch.cat(out)
