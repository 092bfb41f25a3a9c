"""geom.likelihood: the probability-flow ODE log-likelihood against the closed-form Gaussian (the exact score of the
VP marginal is analytic), its solvers' orders, Hutchinson vs the exact divergence, batch independence, the DDIM
step, guidance, and its errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geom.diffusion import ddim_step
from geom.likelihood import ORDER, alpha_bar_at, guided_eps_model, loglik, step_at_alpha_bar, step_grid
from conftest import tol, tol_scaled

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
D = 3
T = 1025  # T - 1 = 1024 whole steps: grids of 16, 32, 64 steps halve exactly
ACP = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=F64), 0)
_LA = np.log(ACP.numpy())
_KS = np.arange(1, T + 1, dtype=np.float64)


def gaussian(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor([0.5, -1.0, 0.3], dtype=F64)
    A = torch.randn(D, D, generator=g, dtype=F64)
    return mu, A @ A.T / D + 0.1 * torch.eye(D, dtype=F64)


def level_of(t: torch.Tensor) -> float:
    """alpha_bar of the network time ``t`` (diffusers' 0-based index, fractional between steps), computed here
    with numpy from the schedule (log-linear between steps), independently of geom.likelihood."""
    return float(np.exp(np.interp(float(t[0].item()) + 1, _KS, _LA)))


def exact_eps(mu, Sigma):
    """The exact noise prediction of data N(mu, Sigma): eps = -sqrt(1 - a) score of N(sqrt(a) mu, a Sigma +
    (1 - a) I)."""
    def eps(x, t):
        a = level_of(t)
        S = a * Sigma + (1 - a) * torch.eye(D, dtype=F64)
        return math.sqrt(1 - a) * torch.linalg.solve(S, (x - math.sqrt(a) * mu).T).T
    return eps


def marginal_logpdf(mu, Sigma, a, x):
    S = a * Sigma + (1 - a) * torch.eye(D, dtype=F64)
    return torch.distributions.MultivariateNormal(math.sqrt(a) * mu, S).log_prob(x)


def path_error(solver, n, exact=True, **kw):
    """max |ODE log p - exact log p| over 5 points, with the exact marginal at the path's end in place of N(0, I)
    (so that only the solver's error remains)."""
    mu, Sigma = gaussian()
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(1), dtype=F64)
    r = loglik(exact_eps(mu, Sigma), x, ACP, solver=solver, num_steps=n, exact=exact, **kw)
    ref = marginal_logpdf(mu, Sigma, float(ACP[0]), x)
    got = r.delta_logp + marginal_logpdf(mu, Sigma, r.alpha_bar_end, r.x_end)
    return float((got - ref).abs().max()), r, ref


@pytest.mark.parametrize("solver", ["euler", "heun", "rk4"])
def test_fixed_step_solvers_converge_to_the_gaussian_log_density_at_their_order(solver):
    """Halving the step divides the error by about 2^order (Euler 1, Heun 2, RK4 4): the tolerance is the solver's
    convergence rate, not one run's digits. Accepted: a ratio above 2^order / 1.5 at both halvings (a solver one
    order lower, or a wrong divergence term, which does not converge to the density at all, fails)."""
    p = ORDER[solver]
    errs = [path_error(solver, n)[0] for n in (16, 32, 64)]
    for e_coarse, e_fine in zip(errs[:-1], errs[1:]):
        assert e_coarse / e_fine > 2 ** p / 1.5, (solver, errs)
    assert errs[-1] < errs[0] / 2 ** p


def test_adaptive_scipy_solver_matches_the_gaussian_log_density_within_its_tolerance():
    """RK45 at rtol = atol = 1e-8 on a path of a few hundred steps: the accumulated error is a few hundred times the
    local tolerance (|log p| ~ 5): 1e-8 * 1e3 = 1e-5; a loose tolerance (1e-3) is measurably worse."""
    err, r, _ = path_error("RK45", None, rtol=1e-8, atol=1e-8)
    assert err < 1e-5 and r.steps is None and r.nfe > 10
    loose, _, _ = path_error("RK45", None, rtol=1e-3, atol=1e-3)
    assert loose > err


def test_log_density_with_the_standard_normal_prior_and_units():
    """With the N(0, I) prior at the last level (a_T ~ 3e-5) the total differs from the exact density only by the
    prior's error, log N(x_T; 0, I) - log p_T(x_T), which is computed here in closed form; bpd = -logp / (D ln 2)."""
    err, r, ref = path_error("rk4", 64)
    mu, Sigma = gaussian()
    prior_err = r.prior_logp - marginal_logpdf(mu, Sigma, r.alpha_bar_end, r.x_end)
    torch.testing.assert_close(r.logp - prior_err, ref, rtol=0, atol=10 * err)
    torch.testing.assert_close(r.bpd, -r.logp / (D * math.log(2)), **tol(F64))
    assert r.dim == D and r.probes == 0 and r.alpha_bar_start == pytest.approx(float(ACP[0]), rel=1e-12)
    torch.testing.assert_close(r.prior_logp, -0.5 * (r.x_end ** 2).sum(1) - 0.5 * D * math.log(2 * math.pi),
                               **tol(F64))


def mlp_eps(seed: int = 0, d: int = 4):
    """A nonlinear noise predictor (dense, non-symmetric Jacobian) in float64."""
    g = torch.Generator().manual_seed(seed)
    W1, W2 = torch.randn(16, d + 1, generator=g, dtype=F64) / 2, torch.randn(d, 16, generator=g, dtype=F64) / 4

    def eps(x, t):
        tt = (t.to(F64) / T)[:, None].expand(x.shape[0], 1)
        return torch.tanh(torch.cat([x, tt], 1) @ W1.T) @ W2.T + 0.3 * x
    return eps


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_divergence_agrees_with_the_exact_one_in_expectation(noise):
    """The path does not depend on the probes, so the Hutchinson estimate differs from the exact one only by the
    divergence estimate: with 400 probes, within 4 of its standard errors for every point, and that standard error
    is small (below 1 nat) yet non-zero."""
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    kw = dict(solver="heun", num_steps=16)
    ex = loglik(mlp_eps(), x, ACP, exact=True, **kw)
    hu = loglik(mlp_eps(), x, ACP, probes=400, noise=noise, seed=5, **kw)
    torch.testing.assert_close(hu.x_end, ex.x_end, **tol(F64))
    z = (hu.logp - ex.logp).abs() / hu.stderr
    assert (z < 4).all(), z
    assert (hu.stderr > 0).all() and (hu.stderr < 1).all()
    few = loglik(mlp_eps(), x, ACP, probes=2, noise=noise, seed=5, **kw)
    assert not torch.equal(few.logp, ex.logp)


def test_a_point_does_not_depend_on_its_batch_and_seeds_are_explicit():
    """Each point alone equals its row of the batch (fixed-step and adaptive), at float64 rounding; the same seed
    gives the same probes, another seed other numbers."""
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(4), dtype=F64)
    for kw in (dict(solver="heun", num_steps=8, probes=3), dict(solver="RK23", probes=2, rtol=1e-5, atol=1e-5)):
        whole = loglik(mlp_eps(), x, ACP, seed=1, **kw)
        alone = torch.cat([loglik(mlp_eps(), x[i:i + 1], ACP, seed=1, **kw).logp for i in range(4)])
        torch.testing.assert_close(alone, whole.logp, **tol_scaled(F64, whole.logp))
        rev = loglik(mlp_eps(), x.flip(0), ACP, seed=1, **kw).logp.flip(0)
        torch.testing.assert_close(rev, whole.logp, **tol_scaled(F64, whole.logp))
    a = loglik(mlp_eps(), x, ACP, seed=1, num_steps=8, probes=3)
    assert torch.equal(a.logp, loglik(mlp_eps(), x, ACP, seed=1, num_steps=8, probes=3).logp)
    assert not torch.equal(a.logp, loglik(mlp_eps(), x, ACP, seed=2, num_steps=8, probes=3).logp)


def test_an_euler_step_of_the_flow_is_a_ddim_step():
    """One Euler step in s = sqrt((1 - a) / a) from step k0 to k1 is the deterministic DDIM step (Song et al. Eq. 12,
    eta = 0) of geom.diffusion, run backwards in time (to the noisier level)."""
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(6), dtype=F64)
    k0, k1 = 11, 301
    r = loglik(mlp_eps(), x, ACP, solver="euler", steps=[k0, k1], exact=True)
    a0, a1 = float(ACP[k0 - 1]), float(ACP[k1 - 1])
    out = mlp_eps()(x, torch.full((3,), k0 - 1, dtype=torch.long))
    ref = ddim_step(out, x, a0, a1, "epsilon")[0]
    torch.testing.assert_close(r.x_end, ref, **tol(F64))


def test_schedule_interpolation_and_grid():
    assert alpha_bar_at(ACP, 7) == pytest.approx(float(ACP[6]), rel=1e-14)
    mid = alpha_bar_at(ACP, 7.5)
    assert mid == pytest.approx(math.sqrt(float(ACP[6] * ACP[7])), rel=1e-12)
    assert step_at_alpha_bar(ACP, mid) == pytest.approx(7.5, abs=1e-9)
    assert step_grid(T, 4) == [1, 257, 513, 769, 1025]
    with pytest.raises(ValueError, match="exceeds"):
        step_grid(10, 10)
    with pytest.raises(ValueError, match="outside"):
        alpha_bar_at(ACP, 0.5)


def test_errors_name_the_problem():
    x = torch.zeros(2, 4, dtype=F64)
    with pytest.raises(ValueError, match="solver must be one of"):
        loglik(mlp_eps(), x, ACP, solver="midpoint")
    with pytest.raises(ValueError, match="probes must be"):
        loglik(mlp_eps(), x, ACP, probes=0)
    with pytest.raises(ValueError, match="noise must be"):
        loglik(mlp_eps(), x, ACP, noise="uniform")
    with pytest.raises(ValueError, match="discrete schedule"):
        loglik(mlp_eps(), x)
    with pytest.raises(ValueError, match="ascending"):
        loglik(mlp_eps(), x, ACP, steps=[10, 5])
    with pytest.raises(ValueError, match="NaN"):
        loglik(lambda v, t: v * math.nan, x, ACP, num_steps=2, exact=True)
    with pytest.raises(ValueError, match="uncond_hidden_states"):
        guided_eps_model(mlp_eps(), ACP, guidance_scale=0.0)


@pytest.fixture(scope="module")
def pipe():
    from geom.models import load_pipeline
    return load_pipeline("tiny-ldm")


def test_tiny_ldm_guidance_conditioning_and_batch_independence(pipe):
    """On tiny-ldm (float32): guidance_scale 0 with the empty prompt is the model conditioned on the empty prompt
    (the same code path, bit for bit); the guided output equals geom.diffusion.guided_output's; a latent alone equals
    its row of a batch at float32 rounding scaled to the output; the conditional and unconditional densities
    differ."""
    from geom.diffusion import guided_output
    x = torch.randn(3, *pipe.latent_shape, generator=torch.Generator().manual_seed(0))
    cond, empty = pipe.encode_prompt(["a red circle"]), pipe.encode_prompt([""])
    kw = dict(num_steps=6, probes=2, seed=0)
    u0 = loglik(pipe, x, encoder_hidden_states=cond, uncond_hidden_states=empty, guidance_scale=0.0, **kw)
    u1 = loglik(pipe, x, encoder_hidden_states=empty, **kw)
    assert torch.equal(u0.logp, u1.logp)
    c = loglik(pipe, x, encoder_hidden_states=cond, **kw)
    assert (c.logp - u1.logp).abs().max() > 1e-3
    alone = torch.cat([loglik(pipe, x[i:i + 1], encoder_hidden_states=cond, **kw).logp for i in range(3)])
    torch.testing.assert_close(alone, c.logp, **tol_scaled(torch.float32, c.logp))
    em = guided_eps_model(pipe, encoder_hidden_states=cond, uncond_hidden_states=empty, guidance_scale=3.0)
    t = torch.full((3,), 500, dtype=torch.long)
    with torch.no_grad():
        got = em.fn(x, t)
        ref = guided_output(pipe, x, 500, cond.expand(3, -1, -1), empty.expand(3, -1, -1), 3.0)[0]
    torch.testing.assert_close(got, ref, **tol_scaled(torch.float32, ref))
    assert np.isfinite(c.bpd.numpy()).all() and c.dim == math.prod(pipe.latent_shape)
