# %% [markdown]
# # 09 · Hessian geometry of the 1D Ising chain (exact validation)
#
# **Reproduces:** the validation of the Fisher-metric reconstruction of Lobashev et al., "Hessian Geometry of
# Latent Space in Generative Models" (ICML 2025), Sec. 3 (method, Theorem 3.1) and the exactly-solvable-model experiments, on the
# periodic Ising chain in $(K, H)$, a true two-parameter exponential family with
# $\log Z = \log(\lambda_+^n + \lambda_-^n)$. The paper's own Ising experiments are 2D (see 10_ising_2d); this
# chain is the cleanest check because every quantity is exact.
#
# **Inputs:** none (exact samples from `geom.physics.ising_chain_sample`, seeded). Parameters: chain length
# `N_SPINS`, bundle size `BUNDLE`, `GRID` x `GRID` parameter grid, `POOL` samples per grid point, training steps.
#
# **Runtime (2-core CPU):** smoke (10 x 10 grid, short training) ~20-40 s; full (20 x 20 grid) ~2 min
# (measured 97 s on a loaded machine).

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
OUT_DIR = "."

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from geom import fisher as Fi
from geom import physics as P
from geom.run import Outputs

torch.set_num_threads(1)  # small matrices; leaves the second core to others
out = Outputs("09_ising_chain", OUT_DIR, params=dict(
    SEED=SEED, N_SPINS=N_SPINS, BUNDLE=BUNDLE, GRID=GRID, K_RANGE=K_RANGE, H_RANGE=H_RANGE, POOL=POOL,
    SIGMA=SIGMA, POSTERIOR_STEPS=POSTERIOR_STEPS, FIT_STEPS=FIT_STEPS, BUNDLES_PER_POINT=BUNDLES_PER_POINT))

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

# %%
interior = Fi.interior_mask(GRID, GRID)
errors = pd.DataFrame([dict(model="ising_chain", estimator=name, **Fi.error_summary(g, g_exact, interior))
                       for name, g in [("hessian_of_learned_F", geo.g), ("fluctuation_baseline", g_fluct),
                                       ("posterior_covariance_baseline", g_post)]])
out.table(errors, "errors")
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
fig, ax = plt.subplots(figsize=(5, 4))
ax.imshow(torch.linalg.det(g_exact).sqrt().reshape(GRID, GRID), origin="lower", extent=ext, aspect="auto", cmap="Greys")
ax.plot(path_exact[:, 1], path_exact[:, 0], "o-", ms=3, label=f"exact metric (length {len_exact:.2f})")
ax.plot(path_learned[:, 1], path_learned[:, 0], "s--", ms=3, label=f"learned metric (length {len_learned:.2f})")
ax.set_xlabel("H")
ax.set_ylabel("K")
ax.legend(fontsize=8)
ax.set_title(r"geodesics over $\sqrt{\det g}$ (exact)")
out.savefig(fig, "geodesics")
plt.show()
path_dev = (path_exact - path_learned).norm(dim=1).max().item()

# %%
r = errors.set_index("estimator")
out.results.update(
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
# under the learned metric stays within 0.014 of the exact one (length 4.97 vs 5.04). The smoke run below is
# only a pipeline check; its errors are larger.

# %%
# NBVAL_CHECK_OUTPUT
print(f"exact g at grid centre: {[round(v, 1) for v in g_exact[len(g_exact) // 2].flatten().tolist()]}")
print(f"learned metric better than 100% error: {r.loc['hessian_of_learned_F', 'median_rel_error'] < 1.0}")
