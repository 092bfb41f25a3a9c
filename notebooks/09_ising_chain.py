# %% [markdown]
# # 09 · Hessian geometry of the 1D Ising chain (exact validation)
#
# **Reproduces:** the validation of the Fisher-metric reconstruction of Lobashev et al., "Hessian Geometry of
# Latent Space in Generative Models" (ICML 2025), Sec. 3 (method, Theorem 3.1) and the exactly-solvable-model experiments, on the
# periodic Ising chain in $(K, H)$, a true two-parameter exponential family with
# $\log Z = \log(\lambda_+^n + \lambda_-^n)$. The paper's own Ising experiments are 2D (see 10_ising_2d); this
# chain is the cleanest check because every quantity is exact.
#
# Issue 17 parts 2-3 on the chain: the convex-by-construction log-partition (`convex=True`) beside the unconstrained
# one, the fraction of grid points where each estimator's metric is not positive definite, and the convergence of
# the method in the bundle size $N$ at a fixed grid (Theorem 3.1: the Bregman posterior concentrates as $N$ grows),
# against the baselines given the same samples and against the same fit fed the exact Bayes posterior.
#
# **Inputs:** none (exact samples from `geom.physics.ising_chain_sample`, seeded). Parameters: chain length
# `N_SPINS`, bundle size `BUNDLE`, `GRID` x `GRID` parameter grid, `POOL` samples per grid point, training steps,
# `SWEEP_N` (bundle sizes of the convergence study, one pool for all).
#
# **Runtime (2-core CPU):** smoke (10 x 10 grid, short training, `SWEEP_N = [2, 4]`) ~20 s; full (20 x 20 grid,
# `SWEEP_N = [2, 4, 8, 16, 32]`, pool control) measured 852 s (14 min, shared machine): 127 s for the reconstruction,
# convex fit and geodesics, then 90-176 s per bundle size (a posterior network and two log-partition fits; $N = 4$
# reuses the main posterior network) and about 2 min for the pool control.

# %% tags=["parameters"]
SEED = 0
N_SPINS = 16            # spins in the periodic chain
BUNDLE = 4              # samples per bundle (N in q_F ~ exp(-N D_F))
GRID = 20               # grid points per axis
# K_RANGE: coupling K = J / T; H_RANGE: field H = h / T
K_RANGE = [-0.5, 0.8]
H_RANGE = [-0.6, 0.6]
POOL = 256              # exact samples per grid point (half train the posterior net, half make held-out bundles)
SIGMA = 1.0             # target smoothing, grid cells
POSTERIOR_STEPS = 1500
FIT_STEPS = 1500
BUNDLES_PER_POINT = 4
SWEEP_N = [2, 4, 8, 16, 32]  # bundle sizes of the N -> infinity study (same pool, grid and seed SEED for every N)
POOL_CONTROL = 1024     # control at the largest N: a larger pool (samples per point, seed SEED + 1), else as above
OUT_DIR = "."

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from geom import fisher as Fi
from geom import physics as P
from geom.plots import figure_legend
from geom.run import Outputs
from geom.seeds import derive

torch.set_num_threads(1)  # small matrices; leaves the second core to others
out = Outputs("09_ising_chain", OUT_DIR, namespace=globals())
t_run = time.time()

# %% [markdown]
# ## Exact samples on the grid
# $(K, H)$ are already natural parameters, so the grid points are their own natural coordinates. Each sample is
# summarised by `ising_chain_features` (nearest- and next-nearest-neighbour correlation, $m$, $|m|$): a generic
# feature map that contains the sufficient statistics but is not told which ones they are.

# %%
grid = Fi.ParamGrid(torch.linspace(*K_RANGE, GRID), torch.linspace(*H_RANGE, GRID), sigma=SIGMA)
rng = np.random.default_rng(SEED)
samples = [P.ising_chain_sample(K, H, N_SPINS, POOL, rng) for K, H in grid.points.numpy()]
pool = torch.tensor(np.stack([P.ising_chain_features(s) for s in samples]), dtype=torch.float32)
stats = torch.tensor(np.stack([P.ising_chain_stats(s) for s in samples]))
print("pool", tuple(pool.shape), "stats", tuple(stats.shape))

# %% [markdown]
# ## Reconstruction: posterior network -> Bregman fit of F -> metric = Hessian of F

# %%
geo = Fi.reconstruct(pool, grid, BUNDLE, posterior_steps=POSTERIOR_STEPS, fit_steps=FIT_STEPS,
                     bundles_per_point=BUNDLES_PER_POINT, seed=SEED)
exact_logz = lambda t: P.ising_chain_logz(t[0], t[1], N_SPINS)  # noqa: E731
g_exact = torch.func.vmap(torch.func.hessian(exact_logz))(grid.natural)
g_fluct = Fi.fluctuation_fisher(stats)                      # baseline 1: Cov[T(x)] from all POOL samples
g_post = Fi.posterior_fisher(geo.P, grid, BUNDLE, geo.idx)  # baseline 2: covariance of the learned posterior
print(f"posterior CE {np.mean(geo.posterior_history[:50]):.3f} -> {np.mean(geo.posterior_history[-50:]):.3f}; "
      f"fit JS {geo.fit.history[0][1]:.4f} -> {geo.fit.history[-1][1]:.5f}")

# %% [markdown]
# ## Convex log-partition and positive definiteness
# The chain is an exponential family, so its $\log Z$ is convex in $(K, H)$ and the Fisher metric is positive
# definite everywhere. The unconstrained `LogPartitionNet` need not be convex; `convex=True` fits the input-convex
# `ConvexLogPartitionNet` instead. It is fitted to the same held-out learned posteriors as the unconstrained $F$
# (the same as `Fi.reconstruct(..., convex=True)` with the same seed: the posterior network and its held-out
# bundles are identical, only the $F$ network differs; this saves training the posterior network twice). For
# every estimator: median relative error against the exact metric and the fraction of grid points where it is not
# positive definite (or NaN). Also the two thermodynamic quantities the metric gives at every grid point (issue 17
# asks for them beside the full metric): with $\beta E = -\theta \cdot T(x)$, the heat capacity per spin is
# $C = \mathrm{Var}(\beta E)/n = \theta^\top g\, \theta / n$, and the susceptibility per spin
# $\chi = \partial\langle m\rangle/\partial h = \beta\, g_{HH} / n$; their median relative errors over the grid
# against the exact ones (at $h = 0$ $C$ is $K^2 g_{KK}/n$, as in 10_ising_2d).

# %%
fit_cvx = Fi.fit_log_partition(geo.P, grid, BUNDLE, steps=FIT_STEPS, seed=SEED, convex=True)
g_cvx = Fi.metric(fit_cvx.F, grid.natural).detach()
interior = Fi.interior_mask(GRID, GRID)


def thermo_errors(g):
    """Median relative errors of C = theta^T g theta / n and of chi (relative error of g_HH; beta and n cancel)."""
    C_hat, C = (torch.einsum("gi,gij,gj->g", grid.natural, x, grid.natural) for x in (g, g_exact))
    return dict(C_median_rel_error=((C_hat - C).abs() / C).nanmedian().item(),
                chi_median_rel_error=((g[:, 1, 1] - g_exact[:, 1, 1]).abs() / g_exact[:, 1, 1]).nanmedian().item())


errors = pd.DataFrame([dict(model="ising_chain", estimator=name, **Fi.error_summary(g, g_exact, interior),
                            not_pd_fraction=Fi.not_positive_definite_fraction(g), **thermo_errors(g))
                       for name, g in [("hessian_of_learned_F", geo.g), ("fluctuation_baseline", g_fluct),
                                       ("posterior_covariance_baseline", g_post),
                                       ("hessian_of_learned_F_convex", g_cvx)]])
out.table(errors, "errors")
not_pd_exact = Fi.not_positive_definite_fraction(g_exact)
print(f"exact metric not positive definite at {not_pd_exact:.0%} of the grid; "
      f"fit JS convex {fit_cvx.history[-1][1]:.5f} vs unconstrained {geo.fit.history[-1][1]:.5f}")
errors.round(3)

# %%
F_aligned, _ = Fi.remove_affine(geo.F, exact_logz(grid.natural.T), grid.natural)
logz = exact_logz(grid.natural.T)
logz_rmse = (F_aligned - logz).pow(2).mean().sqrt().item()
print(f"log Z after removing the best affine term: RMSE {logz_rmse:.3f} (std of log Z over the grid {logz.std():.2f})")

# %%
fig, axes = plt.subplots(3, 3, figsize=(12, 10))
ext = [*H_RANGE, *K_RANGE]
for j, (a, b, lab) in enumerate([(0, 0, "g_KK"), (0, 1, "g_KH"), (1, 1, "g_HH")]):
    for i, (g, title) in enumerate([(g_exact, "exact"), (geo.g, "learned"), (g_fluct, "fluctuation")]):
        im = axes[i, j].imshow(g[:, a, b].reshape(GRID, GRID), origin="lower", extent=ext, aspect="auto",
                               vmin=g_exact[:, a, b].min(), vmax=g_exact[:, a, b].max(), cmap="viridis")
        axes[i, j].set_title(f"{lab} {title}")
        axes[i, j].set_xlabel("H")
        axes[i, j].set_ylabel("K")
        fig.colorbar(im, ax=axes[i, j], shrink=0.8)
fig.suptitle(f"Fisher metric of the periodic Ising chain, n = {N_SPINS}, bundles of {BUNDLE}")
fig.tight_layout()
out.savefig(fig, "metric_maps")
plt.show()

# %% [markdown]
# ## Geodesics: exact metric vs learned metric

# %%
a, b = torch.tensor([K_RANGE[0] + 0.2, H_RANGE[0] + 0.2]), torch.tensor([K_RANGE[1] - 0.2, H_RANGE[1] - 0.2])
path_exact, _, len_exact = Fi.geodesic(lambda x: torch.func.vmap(torch.func.hessian(exact_logz))(x), a, b, 17)
path_learned, _, len_learned = Fi.geodesic(lambda x: Fi.metric(geo.fit.F, x), a, b, 17)
fig, ax = plt.subplots(figsize=(5, 4.6), layout="constrained")
ax.imshow(torch.linalg.det(g_exact).sqrt().reshape(GRID, GRID), origin="lower", extent=ext, aspect="auto", cmap="Greys")
ax.plot(path_exact[:, 1], path_exact[:, 0], "o-", ms=3, label=f"exact metric (length {len_exact:.2f})")
ax.plot(path_learned[:, 1], path_learned[:, 0], "s--", ms=3, label=f"learned metric (length {len_learned:.2f})")
ax.set_xlabel("H")
ax.set_ylabel("K")
fig.legend(loc="outside lower center", fontsize=8)  # outside the map and the paths
ax.set_title(r"geodesics over $\sqrt{\det g}$ (exact)")
out.savefig(fig, "geodesics")
plt.show()
path_dev = (path_exact - path_learned).norm(dim=1).max().item()
t_main = time.time() - t_run

# %% [markdown]
# ## Convergence in the bundle size N at a fixed grid
# Theorem 3.1 of Lobashev et al.: for an exponential family the posterior given $N$ samples is the Bregman
# posterior $q_F \propto \exp(-N D_F)$, which concentrates as $N$ grows; the curvature it carries is what the fit
# turns into $F$. At a fixed grid the error of $\mathrm{Hess}\,F$ should fall with $N$ until the posterior is
# narrower than the grid spacing and the $\sigma$-cell target smoothing (both fixed here), after which the learned
# posterior is mostly the smoothing kernel. For every $N$ in `SWEEP_N`: the whole method on the same pool (first
# half trains the posterior network, second half makes the held-out bundles; seed `SEED`), the posterior-covariance
# baseline from those posteriors, and the fluctuation baseline from the same pool (all `POOL` samples per point;
# it does not depend on $N$). To locate the limit, two measured diagnostics: the same log-partition fit fed the
# **exact** Bayes posterior of the same held-out bundles (uniform prior on the grid, exact $\log Z$, smoothed like
# the targets; separates the posterior network from the fit, grid and smoothing), and the width of that exact
# posterior in grid cells (median over bundles) with the Jensen-Shannon divergence of the learned posterior from it.

# %%
logz_grid = exact_logz(grid.natural.T)
step = torch.tensor([(K_RANGE[1] - K_RANGE[0]) / (GRID - 1), (H_RANGE[1] - H_RANGE[0]) / (GRID - 1)])
sweep_rows, diag_rows = [], []
for N in SWEEP_N:
    t0 = time.time()
    geo_N = geo if N == BUNDLE else Fi.reconstruct(pool, grid, N, posterior_steps=POSTERIOR_STEPS, fit_steps=FIT_STEPS,
                                                   bundles_per_point=BUNDLES_PER_POINT, seed=SEED)
    S = geo_N.heldout(stats).double().sum(1)  # summed sufficient statistics of the held-out bundles
    ll = Fi.exponential_family_loglik(S, grid.natural, N, logz_grid)
    exact = Fi.exact_posterior_stage(ll, grid, N, geo_N.idx, FIT_STEPS, seed=SEED)  # exact posterior, uniform prior
    ests_N = {"hessian_of_learned_F": geo_N.g,
              "hessian_of_F_fit_to_exact_posterior": exact.g,
              "posterior_covariance_baseline": Fi.posterior_fisher(geo_N.P, grid, N, geo_N.idx),
              "posterior_covariance_of_exact_posterior": exact.g_post,
              "fluctuation_baseline": g_fluct}
    for name, g in ests_N.items():
        sweep_rows.append(dict(N=N, estimator=name, **Fi.error_summary(g, g_exact, interior),
                               not_pd_fraction=Fi.not_positive_definite_fraction(g)))
    sd_cells = Fi.posterior_sd_cells(exact.posterior, grid.natural, step)
    diag_rows.append(dict(N=N, exact_posterior_sd_K_cells=sd_cells[:, 0].median().item(),
                          exact_posterior_sd_H_cells=sd_cells[:, 1].median().item(),
                          js_learned_vs_exact_posterior=Fi.js_divergence(geo_N.P, exact.smoothed).mean().item(),
                          posterior_ce_final=float(np.mean(geo_N.posterior_history[-50:])),
                          fit_js_learned=geo_N.fit.history[-1][1], fit_js_exact_posterior=exact.fit.history[-1][1],
                          seconds=time.time() - t0))
    print(f"N = {N}: {time.time() - t0:.0f} s")
sweep = pd.DataFrame(sweep_rows)
diag = pd.DataFrame(diag_rows)
out.table(sweep, "n_sweep")
out.table(diag, "n_sweep_diagnostics")
display(sweep.pivot(index="N", columns="estimator", values="median_rel_error").round(3))
display(sweep.pivot(index="N", columns="estimator", values="median_rel_error_interior").round(3))
diag.round(3)

# %% [markdown]
# **Control at the largest N: the size of the pool.** The posterior network sees bundles of $N$ drawn (with
# replacement) from `POOL / 2` training samples per point; at large $N$ a point's bundles overlap heavily. The same
# method at the largest $N$ on a new pool of `POOL_CONTROL` samples per point (seed `SEED + 1`), with the
# fluctuation baseline from that pool (equal samples).

# %%
t0 = time.time()
rng_c = np.random.default_rng(derive(SEED, "09.control_pool"))
samples_c = [P.ising_chain_sample(K, H, N_SPINS, POOL_CONTROL, rng_c) for K, H in grid.points.numpy()]
pool_c = torch.tensor(np.stack([P.ising_chain_features(x) for x in samples_c]), dtype=torch.float32)
g_fluct_c = Fi.fluctuation_fisher(torch.tensor(np.stack([P.ising_chain_stats(x) for x in samples_c])))
del samples_c
N_c = max(SWEEP_N)
geo_c = Fi.reconstruct(pool_c, grid, N_c, posterior_steps=POSTERIOR_STEPS, fit_steps=FIT_STEPS,
                       bundles_per_point=BUNDLES_PER_POINT, seed=SEED)
control = pd.DataFrame([dict(N=N_c, pool=POOL_CONTROL, estimator=name, **Fi.error_summary(g, g_exact, interior))
                        for name, g in [("hessian_of_learned_F", geo_c.g), ("fluctuation_baseline", g_fluct_c)]])
out.table(control, "pool_control")
print(f"pool control: {time.time() - t0:.0f} s")
control.round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 5), layout="constrained")
SWEEP_STYLE = {"hessian_of_learned_F": ("C0", "o-", "Hessian of learned F"),
               "hessian_of_F_fit_to_exact_posterior": ("C3", "s--", "Hessian of F fit to exact posterior"),
               "posterior_covariance_baseline": ("C2", "^-", "posterior covariance (learned)"),
               "posterior_covariance_of_exact_posterior": ("C2", "v:", "posterior covariance (exact posterior)"),
               "fluctuation_baseline": ("C1", "-", f"fluctuation baseline ({POOL} samples/point)")}
for ax, col, title in [(axes[0], "median_rel_error", "all grid points"),
                       (axes[1], "median_rel_error_interior", ">= 2 cells from the edge")]:
    for name, (c, ls, lab) in SWEEP_STYLE.items():
        d = sweep[sweep.estimator == name]
        ax.plot(d.N, d[col], ls, color=c, ms=4, label=lab)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("bundle size N")
    ax.set_ylabel("median relative error of the metric")
    ax.set_title(f"error vs N, {title}")
ax = axes[2]
ax.plot(diag.N, diag.exact_posterior_sd_K_cells, "o-", color="C4", label="exact posterior s.d. in K (cells)")
ax.plot(diag.N, diag.exact_posterior_sd_H_cells, "s-", color="C5", label="exact posterior s.d. in H (cells)")
ax.plot(diag.N, diag.js_learned_vs_exact_posterior, "d--", color="k", label="JS(learned, exact posterior), nats")
ax.axhline(SIGMA, color="grey", ls=":", label=f"target smoothing sigma = {SIGMA:g} cell")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("bundle size N")
ax.set_title("posterior width vs grid and smoothing")
for a in axes:
    a.set_xticks(SWEEP_N, [str(n) for n in SWEEP_N], minor=False)
    a.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
figure_legend(fig, axes, ncol=3)
out.savefig(fig, "error_vs_bundle_size")
plt.show()

# %%
r = errors.set_index("estimator")
sw = sweep.set_index(["N", "estimator"])
out.results.update(
    median_rel_error_learned_convex=r.loc["hessian_of_learned_F_convex", "median_rel_error"],
    median_rel_error_learned_convex_interior=r.loc["hessian_of_learned_F_convex", "median_rel_error_interior"],
    not_pd_fraction={**r["not_pd_fraction"].to_dict(), "exact": not_pd_exact},
    n_sweep={str(N): {e: dict(median_rel_error=sw.loc[(N, e), "median_rel_error"],
                              median_rel_error_interior=sw.loc[(N, e), "median_rel_error_interior"],
                              not_pd_fraction=sw.loc[(N, e), "not_pd_fraction"]) for e in SWEEP_STYLE}
             | {"diagnostics": diag.set_index("N").loc[N].to_dict()} for N in SWEEP_N},
    pool_control={r_["estimator"]: dict(N=N_c, pool=POOL_CONTROL, median_rel_error=r_["median_rel_error"],
                                        median_rel_error_interior=r_["median_rel_error_interior"])
                  for r_ in control.to_dict(orient="records")},
    seconds_main=t_main, seconds_total=time.time() - t_run,
    median_rel_error_learned=r.loc["hessian_of_learned_F", "median_rel_error"],
    median_rel_error_learned_interior=r.loc["hessian_of_learned_F", "median_rel_error_interior"],
    median_rel_error_fluctuation=r.loc["fluctuation_baseline", "median_rel_error"],
    median_rel_error_posterior_cov=r.loc["posterior_covariance_baseline", "median_rel_error"],
    logz_rmse_after_affine=logz_rmse, logz_std=logz.std().item(),
    geodesic_length_exact=len_exact, geodesic_length_learned=len_learned, geodesic_max_deviation=path_dev,
    error_table=errors.to_dict(orient="records"))
out.write()

# %% [markdown]
# **Paper claim vs this measurement.** Lobashev et al. claim that the Hessian of the learned log-partition
# function reconstructs the Fisher metric of exactly solvable models and beats the fluctuation and
# posterior-covariance baselines. **Full size (n = 16 spins, bundles of 4, 20 x 20 grid, 256 samples per
# point; `data/results/09_ising_chain.json`): agrees.** Median relative error of the learned metric over the
# grid 0.066 (0.047 away from the grid edges), vs 0.080 for the fluctuation estimator from the same 256
# samples per point and 0.37 for the posterior-covariance estimate; the learned $F$ matches the exact
# $\log Z$ to RMSE 0.05 after removing the affine term (std of $\log Z$ over the grid 2.5); the geodesic
# under the learned metric stays within 0.014 of the exact one (length 4.97 vs 5.04). These keys are the same
# computation as the earlier run and equal to it to six significant digits.
#
# **Thermodynamic quantities at equal samples (issue 17, part 2; `error_table` columns `C_median_rel_error`,
# `chi_median_rel_error`).** Median relative error over the grid of the heat capacity $C = \theta^\top g\,\theta/n$
# and of the susceptibility ($\propto g_{HH}$): learned $F$ unconstrained / convex 0.068 / 0.050 and 0.067 / 0.077;
# fluctuation baseline 0.065 and 0.060; posterior covariance 0.48 and 0.39. **The full metric beats the
# fluctuation baseline (0.066 vs 0.080), its thermodynamic components do not:** $C$ only with the convex $F$
# (0.050 vs 0.065), $\chi$ with neither.
#
# **A metric that is a metric (issue 17, part 3).** Not-positive-definite fraction on the 20 x 20 grid: 0 for the
# exact metric and for every estimator (unconstrained $F$, convex $F$, fluctuation, posterior covariance); on
# this chain the unconstrained $F$ happens to stay convex on the grid, unlike in 10_ising_2d. The convex $F$
# (`convex=True`, same held-out posteriors) is as accurate overall, median relative error 0.064 vs 0.066, and
# somewhat worse away from the edges, 0.056 vs 0.047: **target (0) met; no accuracy gain here, a small loss in
# the interior.**
#
# **Convergence in N at the fixed grid (issue 17, part 2; `n_sweep` in the JSON).** Median relative error of the
# metric over the grid (all points / at least 2 cells from the edge); the fluctuation baseline uses all 256
# samples per point and does not depend on $N$: 0.080 / 0.084.
#
# | N | learned F | F fit to the exact posterior | posterior cov. (learned) | posterior cov. (exact posterior) | exact posterior s.d. in K, cells |
# |---|---|---|---|---|---|
# | 2 | 0.087 / 0.065 | 0.070 / 0.037 | 0.54 / 0.40 | 0.57 / 0.40 | 2.5 |
# | 4 | 0.066 / 0.047 | 0.032 / 0.018 | 0.37 / 0.24 | 0.38 / 0.24 | 1.9 |
# | 8 | 0.071 / 0.056 | 0.020 / 0.014 | 0.26 / 0.18 | 0.29 / 0.16 | 1.4 |
# | 16 | 0.106 / 0.100 | 0.012 / 0.008 | 0.24 / 0.19 | 0.24 / 0.12 | 1.0 |
# | 32 | 0.177 / 0.176 | 0.010 / 0.007 | 0.27 / 0.23 | 0.19 / 0.088 | 0.73 |
#
# - *The error of Hess F falls as N grows (the Bregman posterior concentrates), until the grid and smoothing
#   dominate.* **Agrees for the log-partition fit, not reproduced for the whole method beyond N = 4.** Fed the
#   exact Bayes posterior of the same held-out bundles, the fit's error falls 7x from N = 2 to 32 (0.070 to
#   0.010; about $N^{-0.7}$), flattening only between 16 and 32 (0.012 to 0.010), even though at N = 32 the exact
#   posterior is narrower than a grid cell (s.d. 0.73 cells in K, 0.91 in H) and than the $\sigma = 1$-cell
#   smoothing. With the learned posterior the error is lowest at N = 4 (0.066) and rises to 0.177 at N = 32.
# - *What limits it at large N (measured):* the posterior network, not the fit, grid or smoothing. The
#   Jensen-Shannon divergence of the learned posterior from the exact smoothed one grows with N (0.0014 nats at
#   N = 2, 0.0060 at N = 32) while the fit reproduces the posteriors it is given to a JS of 0.0009-0.0014 (and the
#   exact ones to under 1e-4). Within the network, the training pool is a limit (`pool_control`): at N = 32 a
#   pool of 1,024 samples per point (512 train the network) instead of 256 cuts the learned $F$'s error from
#   0.177 to 0.101 (interior 0.176 to 0.099), but the fluctuation baseline from that pool is at 0.039, so at
#   equal samples the learned $F$ still loses at N = 32. The posterior-covariance baseline shows
#   the same: from the exact posterior it keeps improving (interior 0.40 to 0.088), from the learned one it stops
#   at N = 8-16 (0.18-0.19 interior) and worsens at 32; at N = 32 it is NaN at 0.25% (learned) and 0.75% (exact) of
#   the grid, where the posterior is narrower than the smoothing kernel.
# - *Beats the baselines at equal samples:* **agrees at N = 4 and 8, not at 16 and 32.** The learned $F$ beats the
#   fluctuation baseline at N = 4 (0.066 vs 0.080) and N = 8 (0.071 vs 0.080), at N = 2 only away from the edges
#   (0.065 vs 0.084; 0.087 vs 0.080 over all points), and loses at N = 16 (0.106) and 32 (0.177). It beats the
#   posterior-covariance baseline at every N. With the exact posterior the fit would beat the fluctuation baseline
#   at every N (0.070 vs 0.080 at N = 2) and by 8x at N = 32: the room for improvement is in the posterior network.
#
# The smoke run below is only a pipeline check; its errors are larger.

# %%
# NBVAL_CHECK_OUTPUT
print(f"exact g at grid centre: {[round(v, 1) for v in g_exact[len(g_exact) // 2].flatten().tolist()]}")
print(f"learned metric better than 100% error: {r.loc['hessian_of_learned_F', 'median_rel_error'] < 1.0}")
print(f"exact metric positive definite everywhere: {not_pd_exact == 0}; "
      f"convex learned metric positive definite everywhere: {r.loc['hessian_of_learned_F_convex', 'not_pd_fraction'] == 0}")
print(f"bundle sizes of the N sweep: {SWEEP_N}")
