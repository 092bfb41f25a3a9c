"""Log-likelihood of data under a diffusion model by the probability-flow ODE (``loglik``), and the noise
predictor with classifier-free guidance that it and ``geom.reconstruction`` share (``guided_eps_model``).

The probability-flow ODE (Song et al., "Score-Based Generative Modeling through Stochastic Differential
Equations", ICLR 2021, Eq. 13 and App. D.2, Eqs. 39-40) of the VP process that diffusers' DDPM / DDIM schedulers
discretise, ``x_t = sqrt(a) x_0 + sqrt(1 - a) e`` (``a = alpha_bar``), is written here in the scaled state
``y = x / sqrt(a)`` and the noise-to-signal ratio ``s = sqrt((1 - a) / a)`` (Song et al., DDIM, ICLR 2021, Eq. 14;
Karras et al. 2022, Eq. 4 with ``sigma = s``)::

    dy / ds = eps(sqrt(a) y, t(s))                         (a = 1 / (1 + s^2))
    d log p_y(y(s)) / ds = - div_y eps = - sqrt(a) tr(d eps / d x)     (instantaneous change of variables,
                                                                       Chen et al. 2018; FFJORD, Grathwohl 2019)

so ``log p_{a_0}(x) = log p_{a_1}(x_1) + (D / 2) (log a_1 - log a_0) + int_{s_0}^{s_1} sqrt(a) tr(d eps / d x) ds``
(``D`` = dimension; the ``D / 2 log a`` terms are the Jacobians of ``x = sqrt(a) y``), with the prior
``p_{a_1} = N(0, I)`` at the last level (Song et al. Eq. 40 with ``p_T = N(0, I)``). An Euler step in ``s`` is a
DDIM step (eta = 0) exactly.

Levels: the schedule's 1-based DDPM steps ``k = 1..T`` (Ho et al. 2020; ``a_k = alphas_cumprod[k - 1]``, the
network's time ``k - 1 + time_offset``: diffusers' timestep ``k - 1``). Between steps ``log a`` is interpolated
linearly in ``k`` (``alpha_bar_at`` / ``step_at_alpha_bar``), so a continuous solver can evaluate the network
between its training times (passed as a float time). The model defines no density below its first noise level:
``loglik`` returns the density of the marginal at step ``start_step`` (default 1, ``a = alphas_cumprod[0]``), with
the data point ``x`` taken as a point of that marginal (Song et al. start at ``t = 1e-5`` for the same reason).

Divergence: ``tr(d eps / d x)`` by Hutchinson's estimator ``E[v^T J v]`` (``v`` Rademacher or standard Gaussian,
one vector-Jacobian product per probe; the same probes all along the path and for every point, drawn from the seed
as in FFJORD), or exactly (``D`` VJPs, small ``D``). The state does not depend on the probes, so each probe gives
its own estimate of the integral along the one path; their spread gives the Hutchinson standard error.

Units: ``logp`` is in nats per latent (the log-density of the whole ``D``-dimensional point), ``bpd`` bits per
dimension, ``-logp / (D ln 2)``; for a latent diffusion model these are per *latent* dimension, not per pixel
(the decoder's change of volume is not included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from . import seeds
from .diffusion import to_eps_x0
from .lid import NOISE, EpsModel, as_eps_model

VERSION = 1  # of the numbers loglik returns (part of geom.report's cache key)
FIXED_SOLVERS = ("euler", "heun", "rk4")
SCIPY_SOLVERS = ("RK45", "RK23", "DOP853")
SOLVERS = FIXED_SOLVERS + SCIPY_SOLVERS
ORDER = {"euler": 1, "heun": 2, "rk4": 4}


# ------------------------------------------------------------------------------------------ the noise predictor
def discrete_schedule(em, x: Tensor, who: str) -> Tensor:
    """The ``(T,)`` ``alphas_cumprod`` of the noise predictor ``em`` (from ``guided_eps_model``) after checking
    ``x`` against it (``em.check_input``). Raises ``ValueError`` naming ``who`` for a continuous schedule."""
    if em.alphas_cumprod is None:
        raise ValueError(f"{who} needs a discrete schedule: pass schedule=<diffusers scheduler> or the (T,) "
                         "alphas_cumprod")
    em.check_input(x)
    return em.alphas_cumprod


def guided_eps_model(model, schedule=None, encoder_hidden_states: Tensor | None = None,
                     uncond_hidden_states: Tensor | None = None, guidance_scale: float = 1.0,
                     prediction_type: str | None = None) -> EpsModel:
    """A noise predictor with classifier-free guidance (Ho & Salimans 2022) as one ``geom.lid.EpsModel``:
    ``out = out_u + s (out_c - out_u)`` on the network outputs (the conversion to ``eps`` is affine with unit
    weight on ``out``, so this is ``eps_u + s (eps_c - eps_u)``, as ``geom.diffusion.guided_output``).

    ``s = guidance_scale``: ``1`` is the conditional model ``eps(x, t, c)`` (only ``encoder_hidden_states``, the
    prompt embedding ``(1 or B, L, C)``, is used: its density is ``p(x | c)``), ``0`` the unconditional one (only
    ``uncond_hidden_states``, the embedding of ``""``: ``p(x)``); another ``s`` needs both, and its probability-flow
    density is that of the guided ODE sampler's distribution (not a Bayes posterior). For an unconditional model
    (a callable, a ``UNet2DModel``, the toy DDPM) leave both ``None`` with ``s = 1``. ``model``, ``schedule``,
    ``prediction_type``: as ``geom.lid.as_eps_model``.

    Raises ``ValueError`` for a non-finite ``guidance_scale``, or a scale whose embeddings are missing."""
    s = float(guidance_scale)
    if not math.isfinite(s):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale!r}")
    if isinstance(model, EpsModel):
        if s != 1.0 or encoder_hidden_states is not None or uncond_hidden_states is not None:
            raise ValueError("an EpsModel is used as it is: pass the diffusers model itself to condition or guide it")
        return model
    if s == 1.0:
        return as_eps_model(model, schedule, encoder_hidden_states, prediction_type)
    if uncond_hidden_states is None:
        raise ValueError(f"guidance_scale={s} needs uncond_hidden_states (the embedding of the empty prompt, e.g. "
                         "pipe.encode_prompt([''])); guidance_scale=1 is the conditional model alone")
    em_u = as_eps_model(model, schedule, uncond_hidden_states, prediction_type)
    if s == 0.0:
        return em_u
    if encoder_hidden_states is None:
        raise ValueError(f"guidance_scale={s} needs encoder_hidden_states (the prompt embedding) besides "
                         "uncond_hidden_states; guidance_scale=0 is the unconditional model alone")
    em_c = as_eps_model(model, schedule, encoder_hidden_states, prediction_type)

    def fn(x: Tensor, t: Tensor) -> Tensor:
        o_u = em_u.fn(x, t)
        return o_u + s * (em_c.fn(x, t) - o_u)

    return EpsModel(fn, em_c.alphas_cumprod, em_c.prediction_type, time_offset=em_c.time_offset,
                    sample_shape=em_c.sample_shape, name=f"{em_c.name} (guidance {s:g})")


def alpha_bar_at(alphas_cumprod: Tensor, step: float) -> float:
    """``a(k)`` at a (fractional) 1-based DDPM step ``k`` in ``[1, T]``: ``alphas_cumprod[k - 1]`` at whole
    steps, ``log a`` interpolated linearly in ``k`` between them. Raises ``ValueError`` outside ``[1, T]``."""
    acp = np.asarray(torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu())
    T = len(acp)
    if not 1 <= float(step) <= T:
        raise ValueError(f"step {step} is outside the schedule's steps [1, {T}]")
    return float(np.exp(np.interp(float(step), np.arange(1, T + 1, dtype=np.float64), np.log(acp))))


def step_at_alpha_bar(alphas_cumprod: Tensor, alpha_bar: float) -> float:
    """The inverse of ``alpha_bar_at``: the fractional 1-based step whose ``a`` is ``alpha_bar`` (clamped to
    ``[1, T]``; ``alphas_cumprod`` must decrease strictly)."""
    acp = np.asarray(torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu())
    T = len(acp)
    la = np.log(acp)[::-1]  # increasing
    return float(np.interp(math.log(alpha_bar), la, np.arange(T, 0, -1, dtype=np.float64)))


def _nsr(a: float) -> float:
    """``s = sqrt((1 - a) / a)``."""
    return math.sqrt((1.0 - a) / a)


# ------------------------------------------------------------------------------------------ result
@dataclass
class LoglikResult:
    """``loglik`` of a batch: every array ``(B,)`` float64 on the CPU.

    ``logp`` log-density in nats per latent of the marginal at ``alpha_bar_start`` (``prior_logp + delta_logp``);
    ``stderr`` its Hutchinson standard error (0 with the exact divergence); ``bpd`` ``-logp / (D ln 2)``, bits per
    dimension; ``prior_logp`` ``log N(x_end; 0, I)``; ``delta_logp`` the rest (the change of variables along the
    path, ``(D / 2) log(a_end / a_start)`` included), so that another prior (e.g. the exact marginal of a test) can
    be put in its place; ``x_end`` ``(B, *shape)`` the end of the path at ``alpha_bar_end``; ``nfe`` network
    evaluations per point (each with ``probes`` VJPs, or ``D`` exact); ``solver``, ``steps`` (fixed-step grid or
    ``None``), ``probes`` (0 = exact), ``dim`` ``D``."""
    logp: Tensor
    stderr: Tensor
    bpd: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    x_end: Tensor
    alpha_bar_start: float
    alpha_bar_end: float
    nfe: int
    solver: str
    steps: tuple[int, ...] | None
    probes: int
    dim: int


# ------------------------------------------------------------------------------------------ divergence
class _Field:
    """``eps`` and the per-probe ``v^T (d eps / d x) v`` of a batch at one level (float64 out)."""

    def __init__(self, em: EpsModel, shape: tuple[int, ...], dtype: torch.dtype, device, probes: Tensor | None,
                 chunk_size: int | None):
        self.em, self.shape, self.dtype, self.device = em, shape, dtype, device
        self.D = math.prod(shape)
        self.probes, self.chunk_size = probes, chunk_size
        self.acp = em.alphas_cumprod
        self.nfe = 0

    def __call__(self, y: Tensor, step: float, a: float) -> tuple[Tensor, Tensor]:
        """``y`` ``(B, D)`` float64 scaled state at fractional step ``step`` (level ``a``) -> ``(eps (B, D),
        q (P, B))``, float64."""
        B, D, em = y.shape[0], self.D, self.em
        whole = abs(step - round(step)) < 1e-9
        net_t = (round(step) if whole else step) - 1 + em.time_offset
        t = torch.full((B,), net_t, dtype=torch.long if whole else self.dtype, device=self.device)
        pt = em.prediction_type
        x = (math.sqrt(a) * y).to(self.device, self.dtype)

        def f(v: Tensor) -> Tensor:  # (B, D) -> (B, D) noise prediction
            with sdpa_kernel([SDPBackend.MATH]):  # vmap-able attention (see geom.jacobian)
                xs = v.reshape(B, *self.shape)
                out = em.fn(xs, t)
                if not isinstance(out, Tensor) or out.shape != xs.shape:
                    raise ValueError(f"{em.name} returned {getattr(out, 'shape', type(out).__name__)} for x_t of shape "
                                     f"{tuple(xs.shape)}; a noise predictor returns the input's shape")
                return to_eps_x0(out, xs, a, pt)[0].reshape(B, D)

        with torch.enable_grad():
            eps, vjp_fn = torch.func.vjp(f, x)
            if not torch.isfinite(eps).all():
                raise ValueError(f"the noise predictor returned NaN/inf at step {step:g} (alpha_bar {a:.4g})")
            if self.probes is None:  # exact: diagonal of J from D basis cotangents
                n = D if self.chunk_size is None else int(self.chunk_size)
                eye = torch.eye(D, dtype=eps.dtype, device=eps.device)
                q = torch.zeros(1, B, dtype=torch.float64)
                for j in range(0, D, n):
                    idx = torch.arange(j, min(j + n, D), device=eps.device)
                    rows = self._vjps(vjp_fn, eye[idx][:, None, :].expand(len(idx), B, D))
                    q += rows[torch.arange(len(idx)), :, idx].to(torch.float64).sum(0).cpu()
            else:
                v = self.probes.to(eps).expand(self.probes.shape[0], B, D).contiguous()
                q = (self._vjps(vjp_fn, v).to(torch.float64) * v.to(torch.float64)).sum(-1).cpu()
        self.nfe += 1
        return eps.detach().to(torch.float64).cpu(), q

    def _vjps(self, vjp_fn, cot: Tensor) -> Tensor:
        try:
            (out,) = torch.vmap(vjp_fn, chunk_size=self.chunk_size)(cot)
            return out.detach()
        except (RuntimeError, NotImplementedError) as e:  # an op without a vmap rule: one VJP at a time
            if "vmap" not in str(e).lower() and "batch" not in str(e).lower():
                raise
            return torch.stack([vjp_fn(c)[0].detach() for c in cot])


# ------------------------------------------------------------------------------------------ solvers
def _fixed(field: _Field, y: Tensor, grid: list[int], solver: str, P: int, progress: bool) -> tuple[Tensor, Tensor]:
    """Integrate ``(y, I)`` over the 1-based step grid (ascending) with a fixed-step Runge-Kutta method in ``s``:
    ``y`` ``(B, D)``, ``I`` ``(P, B)`` per-probe integral of ``sqrt(a) tr J ds``."""
    acp = field.acp
    I = torch.zeros(P, y.shape[0], dtype=torch.float64)
    for k0, k1 in tqdm(list(zip(grid[:-1], grid[1:])), disable=not progress, desc=f"PF-ODE ({solver})"):
        a0, a1 = alpha_bar_at(acp, k0), alpha_bar_at(acp, k1)
        s0, s1 = _nsr(a0), _nsr(a1)
        h = s1 - s0
        e1, q1 = field(y, k0, a0)
        g1 = math.sqrt(a0) * q1
        if solver == "euler":
            y, I = y + h * e1, I + h * g1
            continue
        if solver == "heun":  # Karras et al. 2022, Alg. 1 (2nd order)
            e2, q2 = field(y + h * e1, k1, a1)
            y, I = y + h / 2 * (e1 + e2), I + h / 2 * (g1 + math.sqrt(a1) * q2)
            continue
        sm = s0 + h / 2  # classical RK4 in s; the midpoint level is between two training steps
        am = 1.0 / (1.0 + sm * sm)
        km = step_at_alpha_bar(acp, am)
        e2, q2 = field(y + h / 2 * e1, km, am)
        e3, q3 = field(y + h / 2 * e2, km, am)
        e4, q4 = field(y + h * e3, k1, a1)
        y = y + h / 6 * (e1 + 2 * e2 + 2 * e3 + e4)
        I = I + h / 6 * (g1 + 2 * math.sqrt(am) * (q2 + q3) + math.sqrt(a1) * q4)
    return y, I


def _scipy(field: _Field, y: Tensor, k_start: int, k_end: int, method: str, P: int, rtol: float, atol: float,
           progress: bool) -> tuple[Tensor, Tensor, int]:
    """``scipy.integrate.solve_ivp`` over ``s`` for each point on its own (an adaptive step size shared by a batch
    would make a point's value depend on its companions)."""
    from scipy.integrate import solve_ivp

    acp = field.acp
    a0, a1 = alpha_bar_at(acp, k_start), alpha_bar_at(acp, k_end)
    s0, s1 = _nsr(a0), _nsr(a1)
    B, D = y.shape
    ys, Is, nfe = [], [], 0
    for b in tqdm(range(B), disable=not progress, desc=f"PF-ODE ({method})"):
        def rhs(s: float, z: np.ndarray) -> np.ndarray:
            a = 1.0 / (1.0 + s * s)
            k = min(max(step_at_alpha_bar(acp, a), float(k_start)), float(k_end))
            e, q = field(torch.from_numpy(z[:D].copy())[None], k, a)
            return np.concatenate([e[0].numpy(), math.sqrt(a) * q[:, 0].numpy()])

        z0 = np.concatenate([y[b].numpy(), np.zeros(P)])
        sol = solve_ivp(rhs, (s0, s1), z0, method=method, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"scipy solve_ivp ({method}) failed on point {b}: {sol.message}; loosen rtol/atol or "
                               "use a fixed-step solver")
        ys.append(torch.from_numpy(sol.y[:D, -1].copy()))
        Is.append(torch.from_numpy(sol.y[D:, -1].copy()))
        nfe = max(nfe, int(sol.nfev))
    return torch.stack(ys), torch.stack(Is, 1), nfe


def step_grid(T: int, num_steps: int, start_step: int = 1, end_step: int | None = None) -> list[int]:
    """The fixed-step grid: ``num_steps + 1`` whole 1-based DDPM steps from ``start_step`` to ``end_step`` (default
    ``T``), evenly spaced and rounded, ascending (``np.linspace(start, end, num_steps + 1)``). Raises
    ``ValueError`` when two of them coincide (``num_steps > end - start``) or the range is outside ``[1, T]``."""
    end = T if end_step is None else int(end_step)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not 1 <= int(start_step) < end <= T:
        raise ValueError(f"need 1 <= start_step < end_step <= T = {T}, got {start_step}, {end}")
    g = [int(k) for k in np.rint(np.linspace(int(start_step), end, int(num_steps) + 1))]
    if len(set(g)) != len(g):
        raise ValueError(f"num_steps={num_steps} exceeds the {end - int(start_step)} whole steps between "
                         f"{start_step} and {end}; use at most {end - int(start_step)}")
    return g


# ------------------------------------------------------------------------------------------ loglik
def loglik(model, x: Tensor, schedule=None, *, encoder_hidden_states: Tensor | None = None,
           uncond_hidden_states: Tensor | None = None, guidance_scale: float = 1.0, solver: str = "heun",
           num_steps: int = 50, steps: Sequence[int] | None = None, start_step: int = 1, end_step: int | None = None,
           probes: int = 4, noise: str = "rademacher", seed: int = 0, exact: bool = False, rtol: float = 1e-5,
           atol: float = 1e-5, prediction_type: str | None = None, chunk_size: int | None = None,
           progress: bool = True) -> LoglikResult:
    """Log-likelihood of each point of ``x`` under a diffusion model by the probability-flow ODE (module docs;
    Song et al. 2021, App. D.2, Eqs. 39-40, with the Hutchinson divergence of FFJORD, Grathwohl et al. 2019).

    Args:
        model, schedule, prediction_type: the noise predictor and its discrete schedule (``geom.lid.as_eps_model``:
            a ``LatentDiffusion``, a diffusers UNet and scheduler, the toy DDPM, or a callable ``eps(x_t, t)`` with
            ``alphas_cumprod`` ``(T,)``); the network is called with int64 times at whole steps and float times
            between them (``"rk4"`` midpoints, scipy solvers).
        x: points ``(B, *shape)`` (for a latent diffusion model the scaled latents, as the UNet sees them), finite.
            Their dtype is the one the network is called in; the ODE state is float64.
        encoder_hidden_states, uncond_hidden_states, guidance_scale: conditioning (``guided_eps_model``:
            ``1`` = ``p(x | c)`` from the prompt embedding, ``0`` = ``p(x)`` from the empty prompt's).
        solver: ``"euler"`` (1st order, = DDIM), ``"heun"`` (2nd order, Karras et al. 2022 Alg. 1), ``"rk4"`` (4th
            order) on the fixed grid ``steps`` (default ``step_grid(T, num_steps, start_step, end_step)``), or a
            ``scipy.integrate.solve_ivp`` method (``"RK45"``, ``"RK23"``, ``"DOP853"``: adaptive, ``rtol`` /
            ``atol``, one point at a time) from ``start_step`` to ``end_step`` (default ``T``).
        probes, noise, seed: Hutchinson probes per point (``>= 1``; ``>= 2`` for a standard error), ``"rademacher"``
            or ``"gaussian"``, drawn once from ``geom.seeds.spawn(seed, "loglik.probes")`` with shape ``x.shape[1:]``
            and shared by every point and every step (a point's value never depends on its batch).
        exact: the exact divergence (``D`` VJPs per evaluation; small ``D``), ``probes`` ignored.
        chunk_size: VJPs vmapped at once (memory); ``None``: all.
    Returns:
        ``LoglikResult``: ``logp`` (nats per latent), ``bpd`` (bits per dimension), ``stderr``, the prior and
        change-of-variables parts, the path's end.
    Raises:
        ValueError for an unknown solver or noise, ``probes < 1``, a grid outside the schedule or not ascending,
        a continuous schedule (``loglik`` needs a discrete one), bad ``x`` (shape, NaN), NaN from the network;
        RuntimeError when a scipy solve fails.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if noise not in NOISE:
        raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
    if not exact and (isinstance(probes, bool) or not isinstance(probes, (int, np.integer)) or probes < 1):
        raise ValueError(f"probes must be an int >= 1 (>= 2 for a standard error), got {probes!r}; or exact=True")
    em = guided_eps_model(model, schedule, encoder_hidden_states, uncond_hidden_states, guidance_scale,
                          prediction_type)
    acp = discrete_schedule(em, x, "loglik")
    if not bool((acp[1:] < acp[:-1]).all()):
        raise ValueError("alphas_cumprod must decrease strictly (every beta > 0)")
    T = len(acp)
    B, shape = x.shape[0], tuple(x.shape[1:])
    D = math.prod(shape)
    if steps is not None:
        grid = [int(k) for k in steps]
        if len(grid) < 2 or any(b <= a for a, b in zip(grid[:-1], grid[1:])) or grid[0] < 1 or grid[-1] > T:
            raise ValueError(f"steps must be >= 2 ascending whole 1-based steps in [1, {T}], got {list(steps)[:8]}")
    elif solver in SCIPY_SOLVERS:  # adaptive: only the ends
        grid = step_grid(T, 1, start_step, end_step)
    else:
        grid = step_grid(T, num_steps, start_step, end_step)
    k0, k1 = grid[0], grid[-1]
    P = 1 if exact else int(probes)
    v = None
    if not exact:
        gen = torch.Generator().manual_seed(int(seeds.spawn(seed, "loglik.probes").generate_state(1)[0]))
        if noise == "rademacher":
            v = torch.randint(0, 2, (P, 1, D), generator=gen, dtype=torch.float64) * 2 - 1
        else:
            v = torch.randn(P, 1, D, generator=gen, dtype=torch.float64)
    field = _Field(em, shape, x.dtype, x.device, v, chunk_size)
    a0, a1 = alpha_bar_at(acp, k0), alpha_bar_at(acp, k1)
    y = x.detach().to("cpu", torch.float64).reshape(B, D) / math.sqrt(a0)
    if solver in FIXED_SOLVERS:
        y, I = _fixed(field, y, grid, solver, P, progress)
        nfe, used = field.nfe, tuple(grid)
    else:
        y, I, nfe = _scipy(field, y, k0, k1, solver, P, rtol, atol, progress)
        used = None
    x_end = math.sqrt(a1) * y
    prior = -0.5 * (x_end ** 2).sum(1) - 0.5 * D * math.log(2 * math.pi)
    per_probe = I + 0.5 * D * (math.log(a1) - math.log(a0))  # (P, B)
    delta = per_probe.mean(0)
    stderr = torch.zeros(B, dtype=torch.float64) if exact or P < 2 else per_probe.std(0, correction=1) / math.sqrt(P)
    if not exact and P < 2:
        stderr = torch.full((B,), math.nan, dtype=torch.float64)
    logp = prior + delta
    return LoglikResult(logp=logp, stderr=stderr, bpd=-logp / (D * math.log(2)), prior_logp=prior, delta_logp=delta,
                        x_end=x_end.reshape(B, *shape), alpha_bar_start=a0, alpha_bar_end=a1, nfe=nfe, solver=solver,
                        steps=used, probes=0 if exact else P, dim=D)
