# %% [markdown]
# # 15 · Why the learned Hessian metric loses on the 2D Ising model: a controlled study
#
# **Reproduces:** issue 17 part 2's controlled study of the Fisher-metric reconstruction of Lobashev et al.,
# "Hessian Geometry of Latent Space in Generative Models" (ICML 2025), Sec. 3 and Theorem 3.1, on the 2D Ising
# model. In 10_ising_2d the Hessian of the learned log-partition loses to the fluctuation baseline given the same
# samples (full metric 0.117 / 0.100, unconstrained / convex, vs 0.081 at $L = 8$) and fails at $L = 64$
# (0.56 / 0.52 vs 0.062). Here, at $L = 8$ with **exact** samples and the **exact** metric (transfer matrix, so
# no Monte Carlo error anywhere), one factor at a time is changed from 10's $L = 8$ settings: (a) bundle size $N$
# (also the error-vs-$N$ curve at a fixed grid, the $N \to \infty$ side of Theorem 3.1), (b) grid spacing,
# (c) posterior-network width, (d) posterior training length, (e) target smoothing $\sigma$. At every setting the
# same log-partition fit is also fed the **exact** Bayes posterior of the same held-out bundles, so a loss is
# attributed either to the posterior network or to the fit, grid and smoothing; and the fluctuation baseline is
# also smoothed over the grid with the same kernel, to test whether the learned $F$ can only win by pooling
# neighbouring grid points.
#
# **Why $L = 8$ can stand in for $L = 64$.** The exact posterior of $(T, h)$ given a bundle narrows with the
# information in it, i.e. with the number of spins seen, $N L^2$ (the Fisher information is extensive, up to the
# logarithmic growth of the specific heat at $T_c$): a bundle of $N = 64$ samples at $L = 8$ carries about as many
# spins as one $L = 64$ sample, $N = 16$ as one $L = 32$ sample. The check is the exact posterior's standard
# deviation in grid cells, reported for every setting beside 10's estimate for one $L = 64$ sample (0.15-0.45 cells
# in $K$, ~1 cell at $L = 32$).
#
# **Inputs:** none (exact samples from `geom.physics.ising2d_sample`, seeded; exact $\log Z$ from
# `ising2d_logz`). Parameters: lattice size `L`, the baseline (10's $L = 8$ settings: 16 x 17 grid on
# $T \in [1.6, 3.6]$, $h \in [-0.4, 0.4]$, natural coordinates $(1/T, h/T)$, `POOL` = 256 samples per point,
# $\sigma = 1$ cell, width 128, 2,000 posterior and 1,500 fit steps), the two arms `ARMS_N` ($N = 8$ as in 10 and
# $N = 64$, about one $L = 64$ sample) and each factor's values.
#
# **Runtime (2-core CPU):** smoke ($L = 4$, small grids, short training) ~12 s; full (23 settings on 4 grids, 34-219 s
# each; $N = 64$ with 6,000 steps and width 256 are the longest) measured 2,270 s (38 min, shared machine).

# %% tags=["parameters"]
SEED = 0
L = 8                     # lattice size (exact transfer-matrix samples and metric: L <= 10)
T_RANGE = [1.6, 3.6]
H_RANGE = [-0.4, 0.4]
GRID = [16, 17]           # baseline [NT, NH] (NH odd: includes h = 0)
POOL = 256                # samples per grid point, the same ones for every estimator of a grid
BUNDLES_PER_POINT = 4     # held-out bundles per grid point that fit F
SIGMA = 1.0               # baseline target smoothing, grid cells
WIDTH = 128               # baseline posterior-network width
POSTERIOR_STEPS = 2000    # baseline posterior training steps
FIT_STEPS = 1500          # log-partition fit steps (every fit)
SWEEP_N = [1, 4, 8, 16, 64]   # (a) bundle sizes at the baseline grid
ARMS_N = [8, 64]          # bundle sizes at which factors (b)-(e) are swept
GRID_SWEEP = [[8, 9, 1.0], [16, 17, 0.5], [16, 17, 0.25]]  # (b) [NT, NH, fraction of the full range] (zoom windows)
ZOOM_CENTER_T = 2.4       # zoom windows are centred on (T, h) = (ZOOM_CENTER_T, 0) and contain T_c = 2.269
WIDTHS = [64, 256]        # (c) posterior-network widths besides WIDTH
STEPS_SWEEP = [500, 6000]  # (d) posterior training steps besides POSTERIOR_STEPS
SIGMAS = [0.5, 2.0]       # (e) target smoothing besides SIGMA (cells)
GAUSS_DRAWS = 20          # draws of the Gaussian prediction of the fluctuation baseline's error
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

torch.set_num_threads(1)
out = Outputs("15_ising_2d_study", OUT_DIR, namespace=globals())
t_run = time.time()

# %% [markdown]
# ## Grids, exact samples and the exact metric
# A grid is `[NT, NH, fraction]`: `NT` x `NH` points regular in $(T, h)$ on the full range (fraction 1) or on a
# zoom window of that fraction of each range centred on $(T, h)$ = (`ZOOM_CENTER_T`, 0). Its natural coordinates
# are $(K, B) = (1/T, h/T)$. Every grid gets its own `POOL` exact samples per point (seed `SEED`), the exact
# metric (Hessian of the transfer-matrix $\log Z$) and the exact $\log Z$ for the exact posterior. The grid spacing
# factor is the cell size relative to the baseline's (16 x 17 on the full range = 1).

# %%
BASE = (GRID[0], GRID[1], 1.0)


def grid_axes(NT, NH, frac):
    if frac == 1.0:
        return torch.linspace(*T_RANGE, NT), torch.linspace(*H_RANGE, NH)
    hw_T, hw_h = frac * (T_RANGE[1] - T_RANGE[0]) / 2, frac * (H_RANGE[1] - H_RANGE[0]) / 2
    return torch.linspace(ZOOM_CENTER_T - hw_T, ZOOM_CENTER_T + hw_T, NT), torch.linspace(-hw_h, hw_h, NH)


def make_grid(key, sigma):
    return Fi.temperature_field_grid(*grid_axes(*key), sigma=sigma)


def spacing(key):
    """Cell size relative to the baseline grid's (geometric mean of the T and h spacings)."""
    NT, NH, frac = key
    return frac * np.sqrt((GRID[0] - 1) * (GRID[1] - 1) / ((NT - 1) * (NH - 1)))


GRIDS = {}


def grid_data(key):
    """A grid's exact samples (features, statistics), exact metric and log Z, fluctuation baseline (cached)."""
    if key not in GRIDS:
        t0, grid = time.time(), make_grid(key, SIGMA)
        pool, stats = P.ising2d_sample_grid(L, grid.natural, POOL, SEED)
        GRIDS[key] = dict(pool=pool, stats=stats, g_ref=P.ising2d_fisher(L, grid.natural),
                          logz=P.ising2d_logz(L, grid.natural[:, 0], grid.natural[:, 1]).double(), T_axis=grid.t1,
                          h_axis=grid.t2, g_fluct=Fi.fluctuation_fisher(stats), seconds=time.time() - t0)
        print(f"grid {key}: {grid.size} points, samples + exact metric {time.time() - t0:.0f} s")
    return GRIDS[key]


base = grid_data(BASE)

# %% [markdown]
# ## The fluctuation baseline: theory, and the pooling control
# For an exponential family with the sufficient statistics $T(x) = (\sum s_is_j, \sum s_i)$, the Fisher metric is
# $\mathrm{Cov}[T]$, and the fluctuation baseline is its sample covariance over the $n$ = `POOL` samples at one grid
# point. Using that point's samples only, this is the efficient estimate (for Gaussian-like statistics the relative
# error of a variance is $\sqrt{2/(n-1)}$ = 0.088 at $n = 256$; below, the predicted median relative Frobenius
# error for Gaussian statistics with the exact covariance, `GAUSS_DRAWS` draws). A learned $F$ that is smooth on
# the grid can beat it only by **pooling neighbouring grid points**; the control does exactly that with no network:
# each metric component of the fluctuation estimate averaged over the grid with a Gaussian of $\sigma$ cells
# (truncated at the edges and renormalised, the target-smoothing kernel). Pooling $\sim 4\pi\sigma^2$ points
# (12.6 at $\sigma = 1$) cuts the noise by up to $\sim 3.5\times$, at the price of a bias where the metric curves
# within $\sigma$ cells (near $T_c$).

# %%
def gaussian_prediction(key):
    """Median relative error of the sample covariance of POOL Gaussian vectors with the exact covariance."""
    return Fi.gaussian_fluctuation_error(grid_data(key)["g_ref"], POOL, GAUSS_DRAWS, seed=derive(SEED, "15.gaussian"))


gauss_pred = {BASE: gaussian_prediction(BASE)}
print(f"predicted median relative error of the fluctuation baseline (Gaussian statistics, n = {POOL}): "
      f"{gauss_pred[BASE]:.3f}; sqrt(2/(n-1)) = {np.sqrt(2 / (POOL - 1)):.3f}")

# %% [markdown]
# ## One setting
# A setting is (N, grid, sigma, width, steps). For it: `Fi.reconstruct` with the convex log-partition (as 10 with
# `convex=True`; same seed, same held-out bundles), plus the unconstrained log-partition on the same held-out
# posteriors in the $N$ sweep (a); the exact Bayes posterior of the same held-out bundles (uniform prior on the
# grid, exact $\log Z$: $p(k \mid x_{1..N}) \propto \exp(\theta_k \cdot \sum_i T(x_i) - N \log Z(\theta_k))$),
# smoothed like the targets, and the convex fit to it; its standard deviation in grid cells along $T$ and $h$
# (median over bundles; unsmoothed); the Jensen-Shannon divergence of the learned posterior from the smoothed exact
# one; and the baselines from the same samples: fluctuation, fluctuation smoothed with $\sigma$ cells, and the
# posterior covariance (learned and exact posterior). Errors are median relative Frobenius errors against the exact
# metric over the grid (and at least 2 cells from its edge), and the median relative error of $C(T)$ at $h = 0$
# ($C \propto g_{KK}/T^2$, so this is $g_{KK}$'s relative error on the $h = 0$ line).

# %%
SETTINGS = {}   # (N, grid key, sigma, width, steps) -> dict(rows=..., diag=...)
EXACT_FITS = {}  # (N, grid key, sigma) -> exact-posterior fit and diagnostics (independent of width and steps)


def exact_stage(N, key, sigma, geo, d, grid):
    """The convex fit fed the exact posterior of geo's held-out bundles, and that posterior's width (cached)."""
    if (N, key, sigma) not in EXACT_FITS:
        ll = Fi.exponential_family_loglik(geo.heldout(d["stats"]).double().sum(1), grid.natural, N, d["logz"])
        st = Fi.exact_posterior_stage(ll, grid, N, geo.idx, FIT_STEPS, seed=SEED, convex=True)
        sd = Fi.posterior_sd_cells(st.posterior, Fi.cell_coordinates(grid))  # unsmoothed, in grid cells
        EXACT_FITS[(N, key, sigma)] = dict(P_s=st.smoothed, g=st.g, g_post=st.g_post, fit_js=st.fit.history[-1][1],
                                           sd_T_cells=sd[:, 0].median().item(), sd_h_cells=sd[:, 1].median().item())
    return EXACT_FITS[(N, key, sigma)]


def estimates(geo, grid, N, d, ex, unconstrained):
    """Every metric estimate of a setting, in the order of the study table."""
    ests = {"hessian_of_learned_F_convex": geo.g}
    if unconstrained:  # the unconstrained F fitted to the same held-out learned posteriors (the N sweep)
        fit_u = Fi.fit_log_partition(geo.P, grid, N, steps=FIT_STEPS, seed=SEED, convex=False)
        ests["hessian_of_learned_F"] = Fi.metric(fit_u.F, grid.natural).detach()
    return dict(ests, hessian_of_F_fit_to_exact_posterior=ex["g"], fluctuation_baseline=d["g_fluct"],
                fluctuation_smoothed=grid.average(d["g_fluct"]),
                posterior_covariance_baseline=Fi.posterior_fisher(geo.P, grid, N, geo.idx),
                posterior_covariance_of_exact_posterior=ex["g_post"])


def diagnostics(geo, ex, t0):
    return dict(exact_posterior_sd_T_cells=ex["sd_T_cells"], exact_posterior_sd_h_cells=ex["sd_h_cells"],
                js_learned_vs_exact_posterior=Fi.js_divergence(geo.P, ex["P_s"]).mean().item(),
                posterior_ce_final=float(np.mean(geo.posterior_history[-50:])),
                fit_js_learned=geo.fit.history[-1][1], fit_js_exact_posterior=ex["fit_js"], seconds=time.time() - t0)


def report(sk, rows, diag):
    err = lambda est: f"{rows[est]['metric_median_rel_error']:.3f}"  # noqa: E731
    print(f"N = {sk[0]}, grid {sk[1]}, sigma {sk[2]}, width {sk[3]}, steps {sk[4]}: {diag['seconds']:.0f} s; "
          f"learned convex {err('hessian_of_learned_F_convex')}, exact-posterior fit "
          f"{err('hessian_of_F_fit_to_exact_posterior')}, fluctuation {err('fluctuation_baseline')} (smoothed "
          f"{err('fluctuation_smoothed')}); exact posterior s.d. {diag['exact_posterior_sd_T_cells']:.2f} / "
          f"{diag['exact_posterior_sd_h_cells']:.2f} cells (T / h)", flush=True)


def run_setting(N, key, sigma, width, steps, unconstrained=False):
    """One setting (cached): the learned convex F (and the unconstrained one), the exact-posterior stage, baselines."""
    sk = (N, key, sigma, width, steps)
    if sk in SETTINGS and (SETTINGS[sk]["unconstrained"] or not unconstrained):
        return SETTINGS[sk]
    t0, d, grid = time.time(), grid_data(key), make_grid(key, sigma)
    geo = Fi.reconstruct(d["pool"], grid, N, posterior_steps=steps, fit_steps=FIT_STEPS,
                         bundles_per_point=BUNDLES_PER_POINT, width=width, seed=SEED, convex=True)
    ex = exact_stage(N, key, sigma, geo, d, grid)
    ests = estimates(geo, grid, N, d, ex, unconstrained)
    rows = {name: Fi.metric_error_row(g, d["g_ref"], key[0], key[1]) for name, g in ests.items()}
    diag = diagnostics(geo, ex, t0)
    SETTINGS[sk] = dict(rows=rows, diag=diag, unconstrained=unconstrained, g=ests)
    report(sk, rows, diag)
    return SETTINGS[sk]


# %% [markdown]
# ## The study: one factor at a time
# Baseline (N, grid, sigma, width, steps) = (arm, 16 x 17 full range, `SIGMA`, `WIDTH`, `POSTERIOR_STEPS`). Factor
# (a) sweeps $N$ at the baseline; (b)-(e) change one factor at each arm $N$ in `ARMS_N`. A setting shared by two
# factors (the baseline) is computed once.

# %%
PLAN = [("N", v, dict(N=v)) for v in SWEEP_N]
for N in ARMS_N:
    PLAN += [("grid", spacing(tuple(k)), dict(N=N, key=tuple(k))) for k in GRID_SWEEP]
    PLAN += [("width", v, dict(N=N, width=v)) for v in WIDTHS]
    PLAN += [("steps", v, dict(N=N, steps=v)) for v in STEPS_SWEEP]
    PLAN += [("sigma", v, dict(N=N, sigma=v)) for v in SIGMAS]
for N in ARMS_N:  # the baseline appears on every factor's axis
    PLAN += [("grid", 1.0, dict(N=N)), ("width", WIDTH, dict(N=N)), ("steps", POSTERIOR_STEPS, dict(N=N)),
             ("sigma", SIGMA, dict(N=N))]

rows = []
for factor, value, s in PLAN:
    kw = dict(N=s["N"], key=s.get("key", BASE), sigma=s.get("sigma", SIGMA), width=s.get("width", WIDTH),
              steps=s.get("steps", POSTERIOR_STEPS))
    res = run_setting(**kw, unconstrained=factor == "N")
    NT, NH, frac = kw["key"]
    for est, r in res["rows"].items():
        rows.append(dict(factor=factor, value=float(value), N=kw["N"], grid=f"{NT}x{NH}", range_fraction=frac,
                         spacing=spacing(kw["key"]), sigma=kw["sigma"], width=kw["width"], steps=kw["steps"],
                         estimator=est, **r, **res["diag"]))
study = pd.DataFrame(rows)
for key in GRIDS:
    if key not in gauss_pred:
        gauss_pred[key] = gaussian_prediction(key)
out.table(study, "study")
print(f"{len(SETTINGS)} settings, {time.time() - t_run:.0f} s")

# %%
main_est = ["hessian_of_learned_F_convex", "hessian_of_learned_F", "hessian_of_F_fit_to_exact_posterior",
            "fluctuation_baseline", "fluctuation_smoothed", "posterior_covariance_baseline"]
view = study[study.estimator.isin(main_est)].pivot_table(
    index=["factor", "N", "value"], columns="estimator", values="metric_median_rel_error")[
        [e for e in main_est if e in set(study.estimator)]]
display(view.round(3))
diag_view = study[study.estimator == "hessian_of_learned_F_convex"].set_index(["factor", "N", "value"])[
    ["exact_posterior_sd_T_cells", "exact_posterior_sd_h_cells", "js_learned_vs_exact_posterior",
     "fit_js_learned", "fit_js_exact_posterior", "seconds"]]
diag_view.round(4)

# %% [markdown]
# ## Figures: error against each factor
# One panel per factor, median relative error of the full metric over the grid; solid lines at $N = 8$, dashed at
# $N = 64$ (factors (b)-(e)). Learned convex $F$ (blue), the same fit fed the exact posterior (red), the fluctuation
# baseline (orange, from the same samples) and the fluctuation baseline smoothed with $\sigma$ cells (purple). The
# last panel: the exact posterior's width in grid cells and the JS divergence of the learned posterior from it,
# against $N$, with notebook 10's estimate for one $L = 64$ sample.

# %%
FIG_STYLE = {"hessian_of_learned_F_convex": ("C0", "o", "learned F (convex)"),
             "hessian_of_learned_F": ("C9", "x", "learned F (unconstrained)"),
             "hessian_of_F_fit_to_exact_posterior": ("C3", "s", "F fit to exact posterior"),
             "fluctuation_baseline": ("C1", "^", "fluctuation baseline"),
             "fluctuation_smoothed": ("C4", "v", "fluctuation, smoothed sigma cells")}
XLABEL = {"N": "bundle size N", "grid": "grid cell size (baseline = 1)", "width": "posterior network width",
          "steps": "posterior training steps", "sigma": "target smoothing sigma (cells)"}
fig, axes = plt.subplots(2, 3, figsize=(16, 9.5), layout="constrained")
for ax, factor in zip(axes.flat, ["N", "grid", "width", "steps", "sigma"]):
    d = study[study.factor == factor]
    for arm in sorted(d.N.unique()) if factor != "N" else [None]:
        da = d if arm is None else d[d.N == arm]
        ls = "-" if arm is None or arm == min(ARMS_N) else "--"
        for est, (c, m, lab) in FIG_STYLE.items():
            e = da[da.estimator == est].sort_values("value")
            if len(e) and (factor == "N" or est != "hessian_of_learned_F"):
                ax.plot(e.value, e.metric_median_rel_error, ls, marker=m, color=c, ms=4,
                        label=lab if arm is None or arm == min(ARMS_N) else None)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(XLABEL[factor])
    ax.set_ylabel("median relative error of the metric")
    title = f"({'abcde'[list(XLABEL).index(factor)]}) {factor}"
    ax.set_title(title + ("" if factor == "N" else f": solid N = {min(ARMS_N)}, dashed N = {max(ARMS_N)}"),
                 fontsize=10)
ax = axes.flat[5]
dg = study[(study.factor == "N") & (study.estimator == "hessian_of_learned_F_convex")].sort_values("N")
ax.plot(dg.N, dg.exact_posterior_sd_T_cells, "o-", color="C5", label="exact posterior s.d. along T (cells)")
ax.plot(dg.N, dg.exact_posterior_sd_h_cells, "s-", color="C6", label="exact posterior s.d. along h (cells)")
ax.plot(dg.N, dg.js_learned_vs_exact_posterior, "d--", color="k", label="JS(learned, exact posterior), nats")
ax.axhspan(0.15, 0.45, color="grey", alpha=0.25, label="10_ising_2d estimate, one L = 64 sample")
ax.axhline(SIGMA, color="grey", ls=":", label=f"target smoothing sigma = {SIGMA:g} cell")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("bundle size N")
ax.set_title("posterior width vs grid and smoothing", fontsize=10)
figure_legend(fig, axes.flat, ncol=4)
out.savefig(fig, "error_vs_factor")
plt.show()

# %% [markdown]
# **Metric maps at the two arms (baseline settings).** Relative error of the convex learned metric, of the fit to
# the exact posterior, of the fluctuation baseline and of its smoothed version, at $N = 8$ (top) and $N = 64$
# (bottom): where on the grid each one loses.

# %%
NT, NH, _ = BASE
fig, axes = plt.subplots(len(ARMS_N), 4, figsize=(17, 3.6 * len(ARMS_N)), layout="constrained", squeeze=False)
ext = [*H_RANGE, *T_RANGE]
for row, N in zip(axes, ARMS_N):
    res = SETTINGS[(N, BASE, SIGMA, WIDTH, POSTERIOR_STEPS)]
    for ax, est in zip(row, ["hessian_of_learned_F_convex", "hessian_of_F_fit_to_exact_posterior",
                             "fluctuation_baseline", "fluctuation_smoothed"]):
        im = ax.imshow(Fi.relative_error(res["g"][est], base["g_ref"]).reshape(NT, NH), origin="lower", extent=ext,
                       aspect="auto", cmap="viridis", vmin=0, vmax=0.4)
        ax.axhline(P.T_CRITICAL, color="w", ls=":")
        ax.set_xlabel("h")
        ax.set_ylabel("T")
        ax.set_title(f"{FIG_STYLE[est][2]}, N = {N}", fontsize=9)
    fig.colorbar(im, ax=row.tolist(), shrink=0.8, label="relative error")
out.savefig(fig, "error_maps")
plt.show()

# %%
def pick(factor, N, value, est, col="metric_median_rel_error"):
    d = study[(study.factor == factor) & (study.N == N) & (study.value == float(value)) & (study.estimator == est)]
    return d[col].iloc[0] if len(d) else None


summary = {}
for (factor, N, value), d in study.groupby(["factor", "N", "value"]):
    e = d.set_index("estimator")
    summary.setdefault(factor, {}).setdefault(str(N), {})[f"{value:g}"] = dict(
        {est: dict(metric=e.loc[est, "metric_median_rel_error"], interior=e.loc[est, "metric_median_rel_error_interior"],
                   C=e.loc[est, "C_median_rel_error"], not_pd=e.loc[est, "not_pd_fraction"]) for est in e.index},
        diagnostics={c: e.iloc[0][c] for c in ["exact_posterior_sd_T_cells", "exact_posterior_sd_h_cells",
                                                "js_learned_vs_exact_posterior", "fit_js_learned",
                                                "fit_js_exact_posterior", "seconds", "grid", "range_fraction"]})
out.results.update(
    study=summary, n_settings=len(SETTINGS),
    fluctuation_gaussian_prediction={f"{k[0]}x{k[1]}@{k[2]:g}": v for k, v in gauss_pred.items()},
    sqrt_2_over_n=float(np.sqrt(2 / (POOL - 1))),
    seconds_per_grid={f"{k[0]}x{k[1]}@{k[2]:g}": v["seconds"] for k, v in GRIDS.items()},
    seconds_total=time.time() - t_run)
out.write()

# %% [markdown]
# **Paper claims vs this run.** Full size (`data/results/15_ising_2d_study.json`, table `study`): $L = 8$, exact
# samples, 256 per grid point for every estimator, 23 settings, 2,270 s. Median relative error of the full metric
# over the grid against the exact metric.
#
# **(a) Bundle size at the fixed 16 x 17 grid** (fluctuation baseline 0.081; smoothed with $\sigma = 1$ cell 0.060):
#
# | N | exact posterior s.d., cells (T / h) | learned F convex / unconstr. | F fit to exact posterior | posterior cov. | JS(learned, exact posterior) |
# |---|---|---|---|---|---|
# | 1 | 2.50 / 2.46 | 0.134 / 0.473 | 0.121 | 1.16 | 0.0008 |
# | 4 | 1.50 / 2.06 | 0.091 / 0.130 | 0.039 | 0.54 | 0.0015 |
# | 8 | 1.15 / 1.82 | 0.100 / 0.117 | 0.028 | 0.42 | 0.0022 |
# | 16 | 0.91 / 1.59 | 0.106 / 0.108 | 0.026 | 0.39 | 0.0038 |
# | 64 | 0.56 / 0.99 | 0.376 / 0.370 | 0.084 | 0.54 | 0.0122 |
#
# **(b)-(e) One factor at a time, at N = 8 / N = 64** (learned F convex; the same fit fed the exact posterior;
# fluctuation baseline and its $\sigma$-smoothed version from the same samples, which do not depend on $N$):
#
# | setting | exact posterior s.d. along T, cells | learned F (convex) | F fit to exact posterior | fluctuation / smoothed |
# |---|---|---|---|---|
# | baseline (16 x 17, cell 1, $\sigma$ 1, width 128, 2,000 steps) | 1.15 / 0.56 | 0.100 / 0.376 | 0.028 / 0.084 | 0.081 / 0.060 |
# | grid 8 x 9 (cell 2.07) | 0.55 / 0.10 | 0.173 / 0.673 | 0.057 / 0.584 | 0.077 / 0.248 |
# | zoom 16 x 17 on 1/2 the range (cell 0.5) | 1.71 / 0.75 | 0.098 / 0.264 | 0.048 / 0.025 | 0.084 / 0.061 |
# | zoom 16 x 17 on 1/4 the range (cell 0.25) | 2.57 / 1.13 | 0.101 / 0.284 | 0.047 / 0.014 | 0.082 / 0.046 |
# | width 64 / 256 | as baseline | 0.092, 0.089 / 0.355, 0.365 | as baseline | as baseline |
# | 500 / 6,000 steps | as baseline | 0.116, 0.085 / 0.461, 0.335 | as baseline | as baseline |
# | $\sigma$ = 0.5 cell | as baseline | 0.101 / 0.349 | 0.023 / 0.026 | 0.081 / 0.066 |
# | $\sigma$ = 2 cells | as baseline | 0.122 / 0.605 | 0.061 / 0.532 | 0.081 / 0.232 |
#
# - *$N$ at $L = 8$ stands in for $L$:* **checked, approximately.** The exact posterior s.d. along $T$ is 0.91 cells
#   at $N = 16$ (10_ising_2d: ~1 cell for one $L = 32$ sample) and 0.56 cells at $N = 64$, wider than 10's
#   estimate for one $L = 64$ sample (0.15-0.45 cells in $K$; the specific heat near $T_c$ grows with $L$, so a
#   large lattice carries more than $N L^2$ spins' worth). The 8 x 9 grid at $N = 64$ (0.10 cells along $T$, 0.39
#   along $h$) brackets it from the other side, and there the method fails as at $L = 64$: 0.673 (10: 0.52-0.56),
#   the fit fed the exact posterior 0.584.
# - *Convergence in $N$ at a fixed grid (Theorem 3.1):* **agrees for the log-partition fit until the posterior is
#   narrower than ~0.75 cells; not reproduced for the whole method.** Fed the exact Bayes posterior, the fit's
#   error falls 0.121 -> 0.039 -> 0.028 -> 0.026 (N = 1, 4, 8, 16) and rises to 0.084 at N = 64, where the
#   posterior s.d. along $T$ is 0.56 cells; a finer grid restores the convergence at N = 64 (0.025 with half the
#   cell, 0.014 with a quarter), and so does sharper target smoothing ($\sigma$ = 0.5: 0.026). The learned method is
#   best at N = 4 (0.091) and fails at N = 64 (0.376).
# - *Where the loss is (stage separation):* **the posterior network.** At N = 4-16 the fit fed the exact posterior
#   beats the fluctuation baseline 2-3x (0.039-0.026 vs 0.081), the learned posterior 2.3-4x worse (0.091-0.106);
#   the JS divergence of the learned posterior from the exact one grows with N (0.0008 nats at N = 1 to 0.0122 at
#   64) while the fit reproduces what it is given (final JS 0.0006-0.0022). At N = 64 on the 16 x 17 grid both
#   stages lose: the grid (exact-posterior fit 0.084) and the network (0.376).
# - *Fixable?* **At N = 8 partly; at N = 64 not with these factors.** N = 8: 6,000 training steps 0.100 -> 0.085
#   (0.077 away from the edges vs the fluctuation baseline's 0.079), width 256 0.089, width 64 0.092; none beats
#   the fluctuation baseline over the whole grid (0.081), but $C(T)$ then beats it 2x (6,000 steps 0.025, width
#   256 0.021, vs 0.052; baseline setting 0.052). N = 64: the best single change is the finer grid (0.264 at half
#   the cell), then 6,000 steps 0.335, $\sigma$ = 0.5 0.349, width 64 0.355, against 0.081: the network does not
#   resolve sub-cell posteriors (JS 0.010-0.038 at N = 64 in every setting but $\sigma$ = 2, where the wide
#   targets hide the posterior, 0.0049; sharper targets make it worse, 0.0379 at $\sigma$ = 0.5), and a finer
#   grid fixes only the fit stage. **Grid rule from (a)-(b):** the fit fed the exact posterior is at its best where
#   the posterior s.d. of one bundle is ~0.75-1.2 cells along $T$ (0.014-0.028) and degrades below ~0.6 cells
#   (0.057-0.084 at 0.55-0.56; 0.584 at 0.10) and above ~1.5 (0.039-0.121 at 1.5-2.6); so the grid spacing should
#   scale with $L$ (or $N$) to keep the posterior s.d. >= ~0.75 cells.
# - *"The learned F can beat the fluctuation estimate only by pooling neighbouring grid points":* **supported.**
#   Theory: the per-point sample covariance is the efficient estimate from one point's samples; for Gaussian
#   statistics its predicted median error is 0.069 (0.089 = $\sqrt{2/255}$ per variance), measured 0.081 (the
#   statistics are not Gaussian: bimodal magnetisation below $T_c$). The same estimate averaged over the grid with
#   the 1-cell kernel, no network: 0.060 over the grid, beating the learned $F$ (0.100) and the plain fluctuation
#   baseline; away from the edges it is 0.084 vs 0.079, because the kernel smears the sharp drop of $\chi$ below
#   $T_c$ near $h = 0$ (error maps); with a 2-cell kernel it is 0.232. The fit fed the exact posterior (a perfect
#   posterior network: pooling through a convex $F$ with the exponential family's structure) reaches 0.026: that
#   is the room the learned posterior leaves.
# - *Convex vs unconstrained (issue 17 part 3):* the convex $F$ is positive definite at every grid point in every
#   setting; the unconstrained $F$ is not at 12-35% of the points (N sweep), with errors 0.473 / 0.130 / 0.117 /
#   0.108 / 0.370 vs the convex 0.134 / 0.091 / 0.100 / 0.106 / 0.376.
#
# The smoke run below ($L = 4$, tiny grids and training) is only a pipeline check.

# %%
# NBVAL_CHECK_OUTPUT
print(f"L = {L}; factors: {sorted(study.factor.unique())}; settings: {len(SETTINGS)}")
print(f"grids: {[f'{k[0]}x{k[1]} at range fraction {k[2]:g}' for k in GRIDS]}")
print(f"convex learned metric positive definite everywhere: "
      f"{bool((study[study.estimator == 'hessian_of_learned_F_convex'].not_pd_fraction == 0).all())}")
