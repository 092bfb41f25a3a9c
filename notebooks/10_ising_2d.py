# %% [markdown]
# # 10 · Hessian geometry of the 2D Ising model: heat capacity and susceptibility
#
# **Reproduces:** Lobashev et al., "Hessian Geometry of Latent Space in Generative Models" (ICML 2025), Ising experiment:
# the Fisher metric of the periodic $L \times L$ Ising model in $(T, h)$ reconstructed as the Hessian of a
# learned log-partition function, and the thermodynamic quantities derived from it (heat capacity $C(T)$ at
# $h = 0$, susceptibility $\chi(h)$), against exact values and two baselines. The paper uses $L = 128$ and
# $5.4\cdot10^5$ MCMC samples; here $L \le 8$ with exact samples, on a 2-core CPU.
#
# **Inputs:** none. Exact samples from the row-transfer-matrix sampler `geom.physics.ising2d_sample`
# (forward powers, sequential row sampling; exact for any field, used for $L \le 10$). Ground truth: row
# transfer matrix $\log Z$ (any $h$), checked against Kaufman's finite-$L$ formula at $h=0$; Onsager's limit
# for context.
#
# **Runtime (2-core CPU):** smoke ($L = 4$, 10 x 9 grid) ~30 s; full ($L = 8$, 24 x 25 grid) ~20 min on a loaded
# machine (measured 1187 s, most of it the exact transfer-matrix Hessians on the grid and on the fine lines).

# %% tags=["parameters"]
SEED = 0
L = 8                   # linear size of the periodic lattice (exact sampler: L <= 10)
BUNDLE = 8              # samples per bundle
NT = 24                 # temperature grid points
NH = 25                 # field grid points (odd: includes h = 0)
T_RANGE = [1.6, 3.6]
H_RANGE = [-0.4, 0.4]
POOL = 256              # exact samples per grid point
SIGMA = 1.0             # target smoothing, grid cells
POSTERIOR_STEPS = 2000
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

torch.set_num_threads(1)
out = Outputs("10_ising_2d", OUT_DIR, params=dict(
    SEED=SEED, L=L, BUNDLE=BUNDLE, NT=NT, NH=NH, T_RANGE=T_RANGE, H_RANGE=H_RANGE, POOL=POOL, SIGMA=SIGMA,
    POSTERIOR_STEPS=POSTERIOR_STEPS, FIT_STEPS=FIT_STEPS, BUNDLES_PER_POINT=BUNDLES_PER_POINT))

# %% [markdown]
# ## Grid, natural coordinates and exact samples
# The grid is regular in $(T, h)$; the natural parameters of $p(s) \propto \exp(K\sum s_is_j + B\sum s_i)$ are
# $\theta = (K, B) = (1/T, h/T)$. The Bregman posterior is evaluated at each grid point's $\theta$, so the
# learned $F$ is a function of $\theta$ and its Hessian is the metric in natural coordinates.

# %%
T_axis, h_axis = torch.linspace(*T_RANGE, NT), torch.linspace(*H_RANGE, NH)
pts = torch.stack(torch.meshgrid(T_axis.double(), h_axis.double(), indexing="ij"), -1).reshape(-1, 2)
grid = Fi.ParamGrid(T_axis, h_axis, natural=torch.stack([1 / pts[:, 0], pts[:, 1] / pts[:, 0]], 1), sigma=SIGMA)
rng = np.random.default_rng(SEED)
samples = [P.ising2d_sample(L, K, B, POOL, rng) for K, B in grid.natural.numpy()]
pool = torch.tensor(np.stack([P.ising2d_features(s) for s in samples]), dtype=torch.float32)
stats = torch.tensor(np.stack([P.ising2d_stats(s) for s in samples]))
del samples
print("pool", tuple(pool.shape))

# %% [markdown]
# ## Exact metric (transfer matrix), checked against Kaufman at h = 0

# %%
exact_logz = lambda t: P.ising2d_logz(L, t[0], t[1])  # noqa: E731
hess = torch.func.vmap(torch.func.hessian(exact_logz))
g_exact = torch.cat([hess(c) for c in grid.natural.split(32)])
T_fine = torch.linspace(*T_RANGE, 201, dtype=torch.float64)
C_kaufman = (torch.func.vmap(torch.func.hessian(lambda k: P.ising2d_logz_kaufman(L, k)))(1 / T_fine)
             / T_fine ** 2 / L ** 2)
C_tm_fine = torch.cat([hess(c) for c in torch.stack([1 / T_fine, 0 * T_fine], 1).split(32)])[:, 0, 0] / T_fine ** 2 / L ** 2
print(f"Kaufman vs transfer matrix, max |dC| on the fine T line: {(C_kaufman - C_tm_fine).abs().max():.2e}")

# %% [markdown]
# ## Reconstruction and baselines

# %%
geo = Fi.reconstruct(pool, grid, BUNDLE, posterior_steps=POSTERIOR_STEPS, fit_steps=FIT_STEPS,
                     bundles_per_point=BUNDLES_PER_POINT, seed=SEED)
g_fluct = Fi.fluctuation_fisher(stats)
g_post = Fi.posterior_fisher(geo.P, grid, BUNDLE, geo.idx)
print(f"posterior CE {np.mean(geo.posterior_history[:50]):.3f} -> {np.mean(geo.posterior_history[-50:]):.3f}; "
      f"fit JS {geo.fit.history[0][1]:.4f} -> {geo.fit.history[-1][1]:.5f}")


# %%
def heat_capacity(g, T):
    """C per spin = beta^2 d^2 log Z / d beta^2 / L^2 (at h = 0)."""
    return g[..., 0, 0] / T ** 2 / L ** 2


def susceptibility(g, T):
    """chi per spin = d<m>/dh = beta d^2 log Z / dB^2 / L^2, B = beta h."""
    return g[..., 1, 1] / T / L ** 2


j0 = NH // 2  # h = 0 column
Tg = grid.points.reshape(NT, NH, 2)[:, j0, 0]
it_hi, it_lo = int(torch.argmin((T_axis - 3.0).abs())), int(torch.argmin((T_axis - 2.0).abs()))
# the learned F is a smooth function: evaluate its C(T) on the fine line too
C_learned_fine = heat_capacity(Fi.metric(geo.fit.F, torch.stack([1 / T_fine, 0 * T_fine], 1)).detach(), T_fine)
ests = {"hessian_of_learned_F": geo.g, "fluctuation_baseline": g_fluct, "posterior_covariance_baseline": g_post}
interior = Fi.interior_mask(NT, NH)
C_exact = heat_capacity(g_exact.reshape(NT, NH, 2, 2)[:, j0], Tg)
rows = []
for name, g in ests.items():
    gr = g.reshape(NT, NH, 2, 2)
    C = heat_capacity(gr[:, j0], Tg)
    summary = Fi.error_summary(g, g_exact, interior)
    row = dict(model=f"ising2d_L{L}", estimator=name, metric_median_rel_error=summary["median_rel_error"],
               metric_median_rel_error_interior=summary["median_rel_error_interior"],
               C_median_rel_error=((C - C_exact).abs() / C_exact).nanmedian().item(),
               C_peak_T_grid=Tg[torch.nan_to_num(C, nan=-1.0).argmax()].item())
    for it, tag in [(it_hi, "T3"), (it_lo, "T2")]:
        chi, chi_ex = susceptibility(gr[it], T_axis[it]), susceptibility(g_exact.reshape(NT, NH, 2, 2)[it], T_axis[it])
        row[f"chi_median_rel_error_{tag}"] = ((chi - chi_ex).abs() / chi_ex).nanmedian().item()
    rows.append(row)
errors = pd.DataFrame(rows)
C_peak_exact = T_fine[C_tm_fine.argmax()].item()
C_peak_learned_fine = T_fine[C_learned_fine.argmax()].item()
out.table(errors, "errors")
print(f"C peak: exact (fine line) T = {C_peak_exact:.3f}, exact on grid T = {Tg[C_exact.argmax()]:.3f}, "
      f"learned F (fine line) T = {C_peak_learned_fine:.3f}; Onsager T_c = {P.T_CRITICAL:.3f}")
errors.round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
ax = axes[0]
ax.plot(T_fine, C_tm_fine, "k-", label=f"exact (transfer matrix = Kaufman), L={L}")
ax.plot(T_fine, C_learned_fine, "C0-", label="Hessian of learned F")
ax.plot(Tg, heat_capacity(g_fluct.reshape(NT, NH, 2, 2)[:, j0], Tg), "C1o", ms=4, label="fluctuation baseline")
ax.plot(Tg, heat_capacity(g_post.reshape(NT, NH, 2, 2)[:, j0], Tg), "C2s", ms=4, label="posterior covariance")
ax.axvline(P.T_CRITICAL, color="grey", ls=":", label=r"Onsager $T_c$")
ax.set_xlabel("T")
ax.set_ylabel("C per spin (h = 0)")
ax.legend(fontsize=7)
for ax, it in zip(axes[1:], [it_lo, it_hi]):
    T = T_axis[it]
    h_fine = torch.linspace(*H_RANGE, 201, dtype=torch.float64)
    th = torch.stack([1 / T.double() * torch.ones_like(h_fine), h_fine / T.double()], 1)
    ax.plot(h_fine, susceptibility(torch.cat([hess(c) for c in th.split(32)]), T), "k-", label="exact")
    ax.plot(h_fine, susceptibility(Fi.metric(geo.fit.F, th).detach(), T), "C0-", label="learned F")
    gr = lambda g: g.reshape(NT, NH, 2, 2)[it]  # noqa: E731
    ax.plot(h_axis, susceptibility(gr(g_fluct), T), "C1o", ms=4, label="fluctuation")
    ax.plot(h_axis, susceptibility(gr(g_post), T), "C2s", ms=4, label="posterior covariance")
    ax.set_yscale("log")
    ax.set_xlabel("h")
    ax.set_ylabel(r"$\chi$ per spin")
    ax.set_title(f"T = {T:.2f}")
    ax.legend(fontsize=7)
fig.tight_layout()
out.savefig(fig, "heat_capacity_susceptibility")
plt.show()

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
ext = [*H_RANGE, *T_RANGE]
for ax, g, title in zip(axes, [g_exact, geo.g, Fi.relative_error(geo.g, g_exact)],
                        [r"exact $\log_{10}\sqrt{\det g}$", r"learned $\log_{10}\sqrt{\det g}$", "relative error"]):
    v = g if g.ndim == 1 else torch.log10(torch.linalg.det(g).clamp_min(1e-12).sqrt())
    im = ax.imshow(v.reshape(NT, NH), origin="lower", extent=ext, aspect="auto", cmap="viridis",
                   vmin=0 if g.ndim == 1 else None, vmax=1 if g.ndim == 1 else None)
    ax.axhline(P.T_CRITICAL, color="w", ls=":")
    ax.set_xlabel("h")
    ax.set_ylabel("T")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
fig.tight_layout()
out.savefig(fig, "metric_maps")
plt.show()

# %%
r = errors.set_index("estimator")
out.results.update(
    L=L, C_peak_T_exact=C_peak_exact, C_peak_T_learned=C_peak_learned_fine, T_critical_onsager=P.T_CRITICAL,
    C_peak_T_fluctuation_grid=r.loc["fluctuation_baseline", "C_peak_T_grid"],
    C_peak_T_posterior_cov_grid=r.loc["posterior_covariance_baseline", "C_peak_T_grid"],
    C_peak_value_exact=C_tm_fine.max().item(), C_peak_value_learned=C_learned_fine.max().item(),
    kaufman_vs_transfer_max_abs=(C_kaufman - C_tm_fine).abs().max().item(),
    error_table=errors.to_dict(orient="records"))
out.write()

# %% [markdown]
# **Paper claim vs this measurement.** The paper (Ising experiment, $L = 128$) reports that the heat capacity and
# susceptibility obtained from the Hessian of the learned $\log Z$ follow the exact curves, with the heat-capacity
# peak near $T_c$, and that the method beats the fluctuation and posterior-covariance baselines.
# **Full size ($L = 8$, bundles of 8, 24 x 25 grid on $T \in [1.6, 3.6]$, $h \in [-0.4, 0.4]$, 256 exact samples
# per point; `data/results/10_ising_2d.json`):**
# - *Heat capacity: agrees.* $C(T)$ at $h = 0$ from the learned $F$: median relative error 0.049 on the grid
#   (fluctuation baseline 0.067, posterior covariance 0.27); peak at $T = 2.39$ vs the exact $L = 8$ peak
#   $T = 2.36$ (grid spacing 0.087; Onsager $T_c = 2.269$ is the $L \to \infty$ limit).
# - *Full metric: on par with the fluctuation baseline, not better.* Median relative error 0.096 (0.079 away from the
#   edges) vs 0.084 for the fluctuation estimator from the same samples and 0.38 for the posterior covariance.
# - *Susceptibility: agrees above $T_c$, not below.* At $T = 3.0$ median relative error 0.084 (fluctuation 0.069);
#   at $T = 2.0$ 0.50 (fluctuation 0.16): in the ordered phase $\chi$ near $h = 0$ is so large that a bundle's
#   posterior in $h$ is narrower than one grid cell, and the learned $F$ (not constrained to be convex) oscillates
#   and even goes non-convex in the flanks. A finer $h$ grid there would be needed.

# %%
# NBVAL_CHECK_OUTPUT
print(f"exact C peak T (L={L}): {C_peak_exact:.2f}; Onsager T_c: {P.T_CRITICAL:.3f}")
print(f"Kaufman = transfer matrix: {(C_kaufman - C_tm_fine).abs().max().item() < 1e-6}")
