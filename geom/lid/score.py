"""FLIPD: the local intrinsic dimension of data points from a diffusion model's noise predictor (``geom.lid``),
with the wrappers that turn a diffusers UNet, a ``LatentDiffusion``, the toy DDPM or a callable and its noise
schedule into one ``EpsModel``.

FLIPD (Kamkari et al., "A Geometric View of Data Complexity", NeurIPS 2024, arXiv 2406.03537, Sec. 3: the
FLIPD estimator; derived here in full). Write the forward process as ``x_t = psi(t) x_0 + sigma(t) e``,
``e ~ N(0, I_D)``; for a VP process (DDPM and every diffusers ``DDPMScheduler``/``DDIMScheduler``) ``psi = sqrt(abar)``,
``sigma = sqrt(1 - abar)``, ``abar`` the cumulative product of ``alphas`` at that step. The data density
convolved with ``N(0, delta^2 I)``, ``delta = sigma / psi``, is ``rho(x, delta) = psi^D p_t(psi x)``, and
``rho(x, delta) ~ delta^(LID - D)`` as ``delta -> 0`` (LIDL, Tempczyk et al. 2022). With the heat equation
``d rho / d(delta^2) = Laplacian(rho) / 2`` this gives

    FLIPD(x, t0) = D + d log rho / d log delta
                 = D + sigma^2 [ tr grad s(psi x, t0) + ||s(psi x, t0)||^2 ]            (the paper's FLIPD)
                 = D - sigma tr( d eps / d x_t )(psi x, t0) + ||eps(psi x, t0)||^2      (s = -eps / sigma),

the score ``s`` and noise prediction ``eps`` evaluated at the *scaled, noise-free* point ``x_t = psi(t0) x``
(not at a noised sample). The derivative is taken in ``log delta`` only, so the formula is the same for a
discrete schedule: a step only fixes ``abar``. The trace is estimated with Hutchinson's estimator
``tr A = E[v^T A v]`` (``v`` Rademacher or standard Gaussian, one VJP per probe) or computed exactly (``D``
VJPs; small ``D``); the reported standard error is that of the probe mean times ``sigma``.

Noise levels: ``t0`` in ``(0, 1]``. For a discrete schedule of ``T`` steps, ``t0`` selects the nearest
step ``k = floor(t0 T + 1/2)`` (1-based; diffusers timestep ``k - 1``, the toy DDPM's ``t = k``), i.e.
``abar = alphas_cumprod[k - 1]``; ``t0 < 1 / (2T)`` is below the schedule's smallest noise level. For a plain callable
without a schedule, ``t0`` is the continuous VP-SDE time (Song et al. 2021, linear ``beta(t)``,
``beta_min = 0.1``, ``beta_max = 20``: ``abar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2)``), the
setting of the paper's experiments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from ..diffusion import PREDICTION_TYPES
from ..jacobian import check_latents
from ..models.base import training_modules

NOISE = ("rademacher", "gaussian")


@dataclass(frozen=True)
class NoiseLevel:
    """A noise level of a schedule: the requested ``t0``, the one used (``k / T`` for a discrete schedule),
    the value passed to the network as its time argument, and ``abar`` (``psi^2 = abar``,
    ``sigma^2 = 1 - abar``)."""
    t0: float
    t0_used: float
    timestep: float
    alpha_bar: float

    @property
    def psi(self) -> float:
        return math.sqrt(self.alpha_bar)

    @property
    def sigma(self) -> float:
        return math.sqrt(1.0 - self.alpha_bar)


class EpsModel:
    """A noise predictor ``eps(x_t, t)`` with its noise schedule (build it with ``as_eps_model``).

    Args:
        fn: ``(x_t (B, *shape), t (B,)) -> (B, *shape)``: the network's output (noise, velocity or clean
            sample, see ``prediction_type``).
        alphas_cumprod: ``(T,)`` cumulative products of a discrete schedule; ``None``: continuous VP-SDE
            (``beta_min``, ``beta_max``).
        prediction_type: ``"epsilon"``, ``"v_prediction"`` (``v = sqrt(abar) eps - sqrt(1 - abar) x_0``,
            Salimans & Ho 2022) or ``"sample"`` (``x_0``); converted to ``eps`` before FLIPD.
        time_offset: the network's time for step ``k`` is ``k - 1 + time_offset`` (0 for diffusers, 1 for
            the 1-based toy DDPM). Time is passed as an int64 tensor for discrete schedules, float otherwise.
        sample_shape: expected ``x.shape[1:]`` (``None`` entries are free); checked before calling ``fn``.
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], alphas_cumprod: Tensor | None = None,
                 prediction_type: str = "epsilon", time_offset: int = 0, beta_min: float = 0.1,
                 beta_max: float = 20.0, sample_shape: Sequence[int | None] | None = None, name: str = "eps"):
        if not callable(fn):
            raise TypeError(f"fn must be callable (x_t, t) -> eps, got {type(fn).__name__}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if alphas_cumprod is not None:
            acp = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).reshape(-1)
            if acp.numel() < 1 or not torch.isfinite(acp).all() or (acp <= 0).any() or (acp >= 1).any():
                raise ValueError("alphas_cumprod must be a non-empty (T,) tensor with values in (0, 1)")
            alphas_cumprod = acp
        elif not 0 <= beta_min <= beta_max or beta_max <= 0:
            raise ValueError(f"need 0 <= beta_min <= beta_max, beta_max > 0; got {beta_min}, {beta_max}")
        self.fn, self.alphas_cumprod, self.prediction_type = fn, alphas_cumprod, prediction_type
        self.time_offset, self.beta_min, self.beta_max = int(time_offset), float(beta_min), float(beta_max)
        self.sample_shape = None if sample_shape is None else tuple(sample_shape)
        self.name = name

    @property
    def T(self) -> int | None:
        """Number of steps of a discrete schedule, ``None`` for a continuous one."""
        return None if self.alphas_cumprod is None else len(self.alphas_cumprod)

    def level(self, t0: float) -> NoiseLevel:
        """The noise level at ``t0`` in ``(0, 1]`` (see the module docs). Raises ``ValueError`` for ``t0``
        outside ``(0, 1]``, non-finite, or below a discrete schedule's first step."""
        if isinstance(t0, bool) or not isinstance(t0, (int, float, np.floating, np.integer)):
            raise TypeError(f"t0 must be a float in (0, 1], got {type(t0).__name__}")
        t0 = float(t0)
        if not math.isfinite(t0) or not 0 < t0 <= 1:
            raise ValueError(f"t0 must be in (0, 1] (the diffusion time as a fraction of the schedule), got {t0}")
        if self.alphas_cumprod is None:
            B = self.beta_min * t0 + 0.5 * (self.beta_max - self.beta_min) * t0 ** 2
            return NoiseLevel(t0, t0, t0, math.exp(-B))
        T = self.T
        k = math.floor(t0 * T + 0.5)  # nearest step, halves up
        if k < 1:
            raise ValueError(f"t0={t0} is outside the schedule: its smallest noise level is step 1 of T={T} "
                             f"(t0 = {1 / T:.3g}); use t0 >= {1 / T:.3g}")
        return NoiseLevel(t0, k / T, float(k - 1 + self.time_offset), float(self.alphas_cumprod[k - 1]))

    def check_input(self, x: Tensor) -> None:
        check_latents(x, "x")
        if self.sample_shape is not None:
            want = self.sample_shape
            got = tuple(x.shape[1:])
            if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
                shown = tuple("*" if w is None else w for w in want)
                raise ValueError(f"x has shape {tuple(x.shape)}; {self.name} takes (B, {', '.join(map(str, shown))})")

    def eps(self, x_t: Tensor, level: NoiseLevel) -> Tensor:
        """``eps(x_t, t)`` ``(B, *shape)`` at ``level``, converted from the network's prediction type."""
        B = x_t.shape[0]
        dtype = torch.long if self.alphas_cumprod is not None else x_t.dtype
        t = torch.full((B,), level.timestep, dtype=dtype, device=x_t.device)
        out = self.fn(x_t, t)
        if not isinstance(out, Tensor):
            raise TypeError(f"{self.name} must return a Tensor, got {type(out).__name__}")
        if out.shape != x_t.shape:
            raise ValueError(f"{self.name} returned shape {tuple(out.shape)} for x_t of shape {tuple(x_t.shape)}; "
                             f"a noise predictor returns the input's shape")
        # geom.diffusion.to_eps_x0's formulas, but with psi and sigma from math.sqrt: torch's float64 sqrt can
        # differ from it by one ulp (e.g. at abar = 0.5720397101981094), which would move FLIPD in the last bits
        psi, sigma = level.psi, level.sigma
        if self.prediction_type == "v_prediction":  # eps = sqrt(abar) v + sqrt(1 - abar) x_t
            out = psi * out + sigma * x_t
        elif self.prediction_type == "sample":  # eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)
            out = (x_t - psi * out) / sigma
        return out


def as_eps_model(model, schedule=None, encoder_hidden_states: Tensor | None = None,
                 prediction_type: str | None = None) -> EpsModel:
    """Wrap a noise predictor and its schedule as an ``EpsModel``.

    Args:
        model: one of
            * a diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` (``schedule``: a diffusers scheduler, or
              ``alphas_cumprod`` ``(T,)``); the conditional one needs ``encoder_hidden_states`` ``(1 or B, L, C)``
              (the prompt embedding, e.g. ``LatentDiffusion.encode_prompt``; ``""`` for the unconditional model);
            * a ``geom.models.LatentDiffusion`` (its UNet and scheduler);
            * the toy DDPM's ``geom.models.ddpm.Denoiser`` (``schedule``: its ``Schedule``; default
              ``linear_schedule()``, the one ``train_ddpm`` uses);
            * a plain callable ``eps(x_t, t)`` (``schedule``: ``alphas_cumprod`` ``(T,)`` or a diffusers
              scheduler, ``t`` the int64 diffusers index; ``None``: continuous VP-SDE, ``t`` float in (0, 1]);
            * an ``EpsModel`` (returned as is).
        prediction_type: overrides the scheduler's ``config.prediction_type`` (default ``"epsilon"``).
    Raises:
        TypeError / ValueError for an unsupported model, a missing or surplus ``encoder_hidden_states``, or a
        model in training mode.
    """
    if isinstance(model, EpsModel):
        return model
    from diffusers import UNet2DConditionModel, UNet2DModel

    from ..models.ddpm import Denoiser, Schedule, linear_schedule
    from ..models.pipeline import LatentDiffusion

    if isinstance(model, LatentDiffusion):
        schedule = model.scheduler if schedule is None else schedule
        model = model.unet
    if isinstance(model, nn.Module) and training_modules(model):
        names = [n or type(m).__name__ for n, m in training_modules(model)][:5]
        raise ValueError(f"{type(model).__name__} is in training mode (modules {names}; dropout / batch statistics "
                         f"make eps random); call .eval() first")
    acp, ptype = _schedule(schedule)
    ptype = prediction_type or ptype or "epsilon"
    if isinstance(model, Denoiser):
        sched = linear_schedule() if schedule is None else schedule
        if not isinstance(sched, Schedule):
            raise TypeError(f"the toy DDPM's schedule must be a geom.models.ddpm.Schedule, got {type(sched).__name__}")
        d = model.net[0].in_features - model.emb_dim
        return EpsModel(lambda x, t: model(x, t), sched.abar, ptype, time_offset=1, sample_shape=(d,),
                        name="the toy DDPM denoiser")
    if isinstance(model, (UNet2DModel, UNet2DConditionModel)):
        if acp is None:
            raise ValueError(f"{type(model).__name__} needs its schedule: pass schedule=<diffusers scheduler> or "
                             f"the (T,) alphas_cumprod")
        cond = isinstance(model, UNet2DConditionModel)
        if cond and encoder_hidden_states is None:
            raise ValueError("UNet2DConditionModel needs encoder_hidden_states (1 or B, L, C): the prompt embedding "
                             "(encode_prompt([\"\"]) for the unconditional model)")
        if not cond and encoder_hidden_states is not None:
            raise ValueError("UNet2DModel is unconditional: encoder_hidden_states must be None")
        if cond and (not isinstance(encoder_hidden_states, Tensor) or encoder_hidden_states.ndim != 3):
            raise ValueError("encoder_hidden_states must be a tensor (1 or B, L, C)")
        s = model.config.sample_size
        h, w = (s, s) if isinstance(s, int) else tuple(s)
        unet, ehs = model, encoder_hidden_states

        def fn(x: Tensor, t: Tensor) -> Tensor:
            if ehs is None:
                return unet(x, t).sample
            e = ehs
            if e.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"encoder_hidden_states has batch {e.shape[0]}, x has {x.shape[0]}: use 1 or B")
            return unet(x, t, encoder_hidden_states=e.to(x).expand(x.shape[0], *e.shape[1:])).sample

        return EpsModel(fn, acp, ptype, time_offset=0, sample_shape=(int(model.config.in_channels), h, w),
                        name=type(model).__name__)
    if isinstance(model, nn.Module) or callable(model):
        if encoder_hidden_states is not None:
            raise ValueError("encoder_hidden_states is only used with a UNet2DConditionModel; close over it in "
                             "the callable instead")
        return EpsModel(model, acp, ptype, time_offset=0, name="the noise predictor")
    raise TypeError(f"cannot use {type(model).__name__} as a noise predictor: pass a diffusers UNet, a "
                    f"geom.models.ddpm.Denoiser, a LatentDiffusion or a callable eps(x_t, t)")


def _schedule(schedule) -> tuple[Tensor | None, str | None]:
    from ..models.ddpm import Schedule
    if schedule is None:
        return None, None
    if isinstance(schedule, Schedule):
        return schedule.abar, None
    if hasattr(schedule, "alphas_cumprod") and hasattr(schedule, "config"):  # a diffusers scheduler
        return schedule.alphas_cumprod, getattr(schedule.config, "prediction_type", None)
    if isinstance(schedule, (Tensor, np.ndarray, list, tuple)):
        return torch.as_tensor(schedule), None
    raise TypeError(f"schedule must be a diffusers scheduler, a (T,) alphas_cumprod tensor or a "
                    f"geom.models.ddpm.Schedule, got {type(schedule).__name__}")


@dataclass
class FlipdResult:
    """FLIPD of a batch at one noise level: ``lid`` ``(B,)`` float64 and its Hutchinson standard error
    ``stderr`` ``(B,)`` (0 for the exact trace); ``trace`` ``(B,)`` the (estimated) ``tr d eps / d x_t``,
    ``eps_norm2`` ``(B,)`` ``||eps||^2``; ``level`` the noise level used; ``probes`` (0 = exact)."""
    lid: Tensor
    stderr: Tensor
    trace: Tensor
    eps_norm2: Tensor
    level: NoiseLevel
    probes: int

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"point": np.arange(len(self.lid)), "t0": self.level.t0_used,
                             "timestep": self.level.timestep, "sigma": self.level.sigma, "lid": self.lid.numpy(),
                             "stderr": self.stderr.numpy()})


def flipd(model, x: Tensor, t0: float, schedule=None, encoder_hidden_states: Tensor | None = None,
          probes: int | None = 16, noise: str = "rademacher", seed: int = 0, exact: bool = False,
          chunk_size: int | None = None, prediction_type: str | None = None) -> FlipdResult:
    """FLIPD estimate of the local intrinsic dimension of each point of ``x`` (Kamkari et al. 2024, Sec. 3):
    ``FLIPD(x, t0) = D - sigma tr(d eps / d x_t) + ||eps||^2`` at ``x_t = sqrt(abar) x`` (module docs).

    Args:
        model, schedule, encoder_hidden_states, prediction_type: the noise predictor (see ``as_eps_model``).
        x: data points ``(B, *shape)`` (for a latent diffusion model: latents, scaled as the UNet sees them),
            finite; ``D = prod(shape)``.
        t0: noise level in ``(0, 1]`` (paper: ``t0 ~ 0.01-0.05`` on synthetic data; sweep it with
            ``flipd_curve``).
        probes: number of Hutchinson probes per point (>= 2, for the standard error).
        noise: ``"rademacher"`` (lower variance) or ``"gaussian"`` probes, drawn from
            ``torch.Generator().manual_seed(seed)``: ``probes`` draws of shape ``x.shape[1:]``, shared by every
            point, so that a point's estimate does not depend on its batch.
        exact: the exact trace with ``D`` VJPs (small ``D``; ``probes`` ignored, ``stderr = 0``).
        chunk_size: VJPs vmapped at once (memory vs speed); ``None``: all.
    Returns:
        ``FlipdResult`` (``lid``, ``stderr`` ``(B,)`` float64).
    Raises:
        ValueError / TypeError for ``t0`` outside ``(0, 1]`` or the schedule, a wrong ``x`` shape, NaN/inf
        in ``x`` or in the model's output, ``probes < 2``, an unknown ``noise``.
    """
    em = as_eps_model(model, schedule, encoder_hidden_states, prediction_type)
    level = em.level(t0)
    em.check_input(x)
    if noise not in NOISE:
        raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
    if not exact and (isinstance(probes, bool) or not isinstance(probes, int) or probes < 2):
        raise ValueError(f"probes must be an int >= 2 (the standard error needs two probes), got {probes!r}; "
                         f"or exact=True for the exact trace")
    B, shape = x.shape[0], tuple(x.shape[1:])
    D = math.prod(shape)
    xt = (level.psi * x.detach()).reshape(B, D)

    def f(v: Tensor) -> Tensor:  # (B, D) -> (B, D)
        with sdpa_kernel([SDPBackend.MATH]):  # vmap-able attention (see geom.jacobian)
            return em.eps(v.reshape(B, *shape), level).reshape(B, D)

    with torch.enable_grad():
        eps, vjp_fn = torch.func.vjp(f, xt)
        if not torch.isfinite(eps).all():
            raise ValueError(f"the noise predictor returned NaN/inf at t0={t0} (check the model and the input scale)")
        if exact:  # diagonal entries J_jj, in chunks of basis cotangents (memory chunk * B * D)
            n = D if chunk_size is None else int(chunk_size)
            eye = torch.eye(D, dtype=eps.dtype, device=eps.device)
            q = torch.zeros(1, B, dtype=torch.float64, device=eps.device)
            for j in range(0, D, n):
                idx = torch.arange(j, min(j + n, D), device=eps.device)
                rows = _vjps(vjp_fn, eye[idx][:, None, :].expand(len(idx), B, D), chunk_size)  # rows j of J
                q += rows[torch.arange(len(idx)), :, idx].to(torch.float64).sum(0)
        else:
            gen = torch.Generator().manual_seed(int(seed))
            if noise == "rademacher":
                v = torch.randint(0, 2, (probes, 1, D), generator=gen, dtype=torch.float64) * 2 - 1
            else:
                v = torch.randn(probes, 1, D, generator=gen, dtype=torch.float64)
            # one set of probes shared by every point: a point's estimate depends on it and the seed only, never
            # on its batch companions or its position in the batch
            v = v.expand(probes, B, D).contiguous()
            v = v.to(eps)
            q = (_vjps(vjp_fn, v, chunk_size).to(torch.float64) * v.to(torch.float64)).sum(-1)  # (probes, B) v^T J v
    eps = eps.detach().to(torch.float64)
    trace = q.mean(0)
    stderr = torch.zeros(B, dtype=torch.float64) if exact else q.std(0, correction=1) / math.sqrt(probes)
    eps2 = (eps ** 2).sum(-1)
    lid = D - level.sigma * trace + eps2
    return FlipdResult(lid.cpu(), (level.sigma * stderr).cpu(), trace.cpu(), eps2.cpu(), level,
                       0 if exact else probes)


def _vjps(vjp_fn, cot: Tensor, chunk_size: int | None) -> Tensor:
    """``J^T c`` for every cotangent ``c`` of ``cot`` ``(n, B, D)`` -> ``(n, B, D)``."""
    try:
        (out,) = torch.vmap(vjp_fn, chunk_size=chunk_size)(cot)
        return out.detach()
    except (RuntimeError, NotImplementedError) as e:  # an op without a vmap rule: one VJP at a time
        if "vmap" not in str(e).lower() and "batch" not in str(e).lower():
            raise
        return torch.stack([vjp_fn(c)[0].detach() for c in cot])


def flipd_curve(model, x: Tensor, t0s: Sequence[float], schedule=None, encoder_hidden_states: Tensor | None = None,
                probes: int | None = 16, noise: str = "rademacher", seed: int = 0, exact: bool = False,
                chunk_size: int | None = None, prediction_type: str | None = None,
                progress: bool = True) -> pd.DataFrame:
    """FLIPD of every point of ``x`` ``(B, *shape)`` at each noise level of ``t0s`` (the FLIPD curve; on
    a manifold it plateaus, or shows a knee, at the LID: Kamkari et al., the FLIPD curves). Same arguments as
    ``flipd``; the same probe seed at every ``t0``.

    Returns:
        long DataFrame, ``len(t0s) * B`` rows: ``point``, ``t0`` (the one used: ``k / T`` on a discrete
        schedule), ``timestep``, ``sigma``, ``lid``, ``stderr``.
    """
    t0s = list(t0s)
    if not t0s:
        raise ValueError("t0s is empty")
    em = as_eps_model(model, schedule, encoder_hidden_states, prediction_type)
    for t0 in t0s:  # fail before any work
        em.level(t0)
    frames = [flipd(em, x, t0, probes=probes, noise=noise, seed=seed, exact=exact, chunk_size=chunk_size).to_frame()
              for t0 in tqdm(t0s, desc="FLIPD curve", disable=not progress)]
    return pd.concat(frames, ignore_index=True)

