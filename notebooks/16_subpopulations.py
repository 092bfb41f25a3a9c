# %% [markdown]
# # 16 · Sub-populations of one generator: the eight classes of a class-conditional GAN
#
# **Reproduces:** Humayun et al., "Understanding the Local Geometry of Generative Model Manifolds", Fig. 13 and
# its claim: the local scaling $\psi$ (Eq. 4) has a different distribution in different sub-populations of one
# model's generations (there: prompts such as "a photo of a {rich, poor} Swiss person" on Stable Diffusion),
# which the paper reads as "an underlying bias in generation diversity" (higher $\psi$, more diverse: Sec. 3.3.2,
# Fig. 9). Here the sub-populations are the eight classes of a pretrained class-conditional DCGAN, and the
# local rank $\nu$ (Def. 3) and local complexity $\delta$ (Def. 1) are measured beside $\psi$, all with $k = 120$
# random output projections, a $P = 4$ cross-polytope and $r = 10^{-5}$, as in the paper.
#
# **Inputs:** `omniart-eyes:<eye colour>` (`geom.models.load_generator`; README, "A class-conditional pretrained
# generator"): the OmniArt eye cDCGAN of the PyPI package `omniart-eye-generator==0.1` (installed by
# `scripts/setup.sh` with `--no-deps`, weights SHA-256 checked), $z \in \mathbb{R}^{100}$, $z \sim N(0, I)$, one of
# 8 eye colours (`CLASSES`), images $3 \times 128 \times 128$ in $[-1, 1]$. **A paired design:** one seeded draw of
# `N_PER_CLASS` latents is decoded and described under every class, so the class is the only factor that differs
# between the groups, and each latent is a unit measured eight times. Descriptors through
# `geom.slices.cached_describe` (resumable chunks of `CHUNK` latents in `CACHE_DIR`, keyed by the weights, the
# class, the latents and the settings). Statistics (`geom.stats`): Kruskal-Wallis over the 8 classes (the test
# the issue names; it treats the classes as independent samples) and Friedman's test (the same question for the
# paired design: each latent's own level cancels); for every pair of classes the AUROC of the two distributions
# (Fig. 13 compares distributions; Cliff's delta $= 2\,\mathrm{AUROC} - 1$) and the paired $P(\psi_a(z) >
# \psi_b(z))$ at the same latent, with percentile bootstrap CIs over latents (a resampled latent keeps its value
# in both classes, so the pairing is kept), and the Wilcoxon signed-rank test of the paired differences, Holm-
# adjusted over every pair of every descriptor (`ALPHA`). Diversity: the Vendi score of each class's images on
# EfficientNet-Lite0 features (`geom.embeddings.embed("efficientnet-lite0")`, the stand-in for the paper's CLIP,
# cosine kernel, not centred, as notebooks 07, 08 and 13) and on centred pixels (the second view), with
# intervals from `N_DRAWS` half-samples of the latents (the same latents for every class; without replacement,
# since a duplicated image deflates Vendi), and whether the class with higher $\psi$ is the more diverse one.
#
# **Runtime (2-core CPU, shared):** `geom.describe` at $k = 120$, $P = 4$ costs 11-16 s per latent on this model
# (measured for this notebook under load 8: 11.4 s with 2 threads, 15.6 s with one; a full $49{,}152 \times 100$
# forward-mode Jacobian plus $2P$ float64 forwards). Smoke (`smoke.yml`: 3 latents per class, $k = 8$): 174 s
# measured under load 7-8 (5 s per latent and class), 50 s once its descriptors are cached.
# Full (defaults: 32 latents per class, 256 descriptor rows): measured 2,875 s (2026-12-04, shared machine), nearly all of it the descriptors; an
# interrupted run resumes from its cached chunks.

# %% tags=["parameters"]
SEED = 0
CLASSES = ["amber", "blue", "brown", "gray", "grayscale", "green", "hazel", "red"]  # omniart-eyes colours
N_PER_CLASS = 32          # latents, one draw shared by every class (256 described images at 8 classes)
K = 120                   # random output projection (paper: 120)
DIM = 4                   # cross-polytope dimension for delta (paper: 4)
RADIUS = 1e-5             # cross-polytope radius for delta (paper: 1e-5)
N_BOOT = 2000             # bootstrap resamples of the latents for the pairwise CIs
ALPHA = 0.05              # family-wise error rate of the Holm-adjusted pairwise tests
N_DRAWS = 200             # half-samples of the latents for the Vendi intervals
N_SHOW = 6                # latents shown under every class
BATCH_SIZE = 8            # latents per Jacobian batch
CHUNK = 8                 # latents per cached descriptor chunk (what an interruption loses)
CACHE_DIR = "build/cache/16_subpopulations"    # resumable descriptor chunks (git-ignored)
OUT_DIR = "."             # "." publishes to figures/16_subpopulations and data/results/16_subpopulations.json

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from geom import paths, slices, stats
from geom.embeddings import embed
from geom.models import load_generator
from geom.plots import image_grid
from geom.run import Outputs

torch.set_num_threads(2)
out = Outputs("16_subpopulations", OUT_DIR, namespace=globals())
t_start = time.time()
G = {c: load_generator(f"omniart-eyes:{c}") for c in CLASSES}
z = G[CLASSES[0]].sample_latents(N_PER_CLASS, seed=SEED).cpu()  # ONE draw: the same latents under every class
E = z.shape[1]
DESC = ["psi", "nu", "delta"]
print(f"{len(G)} classes of omniart-eyes, latents {tuple(z.shape)}, "
      f"{sum(p.numel() for p in G[CLASSES[0]].parameters()):,} parameters each (shared weights, one label per class)")


def show(x):
    """Generator output in [-1, 1] -> [0, 1] numpy, for display and the embeddings."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()


@torch.no_grad()
def decode(g, bs=32):
    """The shared latents z decoded by one class's generator -> (N_PER_CLASS, 3, 128, 128) in [0, 1]."""
    return show(torch.cat([g(z[s:s + bs]) for s in range(0, len(z), bs)]))


# %% [markdown]
# ## 1. Descriptors per class (Fig. 13)
# $\psi$, $\nu$, $\delta$ of the same `N_PER_CLASS` latents under each class, and each image's brightness and
# contrast (mean and standard deviation of its pixels in $[0, 1]$: the named control, since $\psi$ followed
# brightness on the unconditional DCGAN of notebook 13). One row per (class, latent): the per-latent table.

# %%
t0, parts = time.time(), []
for c in CLASSES:
    d = slices.cached_describe(G[c], z, paths.resolve(CACHE_DIR), k=K, radius=RADIUS, dim=DIM, seed=SEED,
                               batch_size=BATCH_SIZE, shard_size=CHUNK, progress=False)
    parts.append(d.assign(eye_colour=c, latent=np.arange(len(z))))
    print(f"{c}: {len(d)} latents described, {time.time() - t0:.0f} s so far", flush=True)
t_desc = time.time() - t0
imgs = {c: decode(G[c]) for c in CLASSES}
table = pd.concat(parts, ignore_index=True)
table[["brightness", "contrast"]] = pd.concat([stats.brightness_contrast(imgs[c]) for c in CLASSES]).to_numpy()
table["latent_norm"] = np.tile(z.norm(dim=1).numpy(), len(CLASSES))
print(f"{len(table)} rows in {t_desc:.0f} s ({t_desc / len(table):.2f} s per latent and class)")
values = {d: {c: table.loc[table.eye_colour == c, d].to_numpy() for c in CLASSES} for d in DESC}


# %%
def class_row(c):
    """Mean (Student-t 95% CI) and median of each descriptor, mean brightness and contrast, of one class."""
    g = table[table.eye_colour == c]
    row = dict(eye_colour=c, n=len(g), brightness=g.brightness.mean(), contrast=g.contrast.mean())
    for d in DESC:
        m, lo, hi = stats.mean_ci(g[d])
        row.update({d: m, f"{d}_lo": lo, f"{d}_hi": hi, f"{d}_median": g[d].median()})
    return row


summary = pd.DataFrame([class_row(c) for c in CLASSES])
order = summary.sort_values("psi").eye_colour.tolist()  # classes from the lowest to the highest mean psi
summary.set_index("eye_colour").loc[order].round(3)


# %%
def by_class(ax, d):
    """Box plot of descriptor d per class (ordered by mean psi), each latent's eight values joined by a line."""
    X = np.stack([values[d][c] for c in order], axis=1)  # (latents, classes)
    ax.plot(np.arange(1, len(order) + 1), X.T, color="grey", lw=0.5, alpha=0.35)
    ax.boxplot(X, showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=45, ha="right")
    ax.set_xlabel("eye colour (ordered by mean psi)")
    ax.set_title(f"{d} per class; grey: one latent under every class", fontsize=9)


fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
for ax, d in zip(axes, DESC):
    by_class(ax, d)
out.savefig(fig, "fig13_descriptors_by_class")
plt.show()

# %%
show_idx = np.arange(min(N_SHOW, len(z)))
fig = image_grid(np.concatenate([np.stack([imgs[c][i] for c in order]) for i in show_idx]), ncols=len(order),
                 titles=[c if i == 0 else "" for i in show_idx for c in order], scale=1.2,
                 suptitle="the same latents (rows) under every class (columns, by mean psi)")
out.savefig(fig, "same_latents_every_class")
plt.show()

# %% [markdown]
# ## 2. Do the classes differ? Omnibus tests, pairwise effect sizes, Holm
# Per descriptor: Kruskal-Wallis $H$ and Friedman's $\chi^2$ over the eight classes, and the share of the sum of
# squares that is the class, the latent and their interaction (`variance_shares`). Per pair of classes $(a, b)$:
# AUROC $= P(\psi_a > \psi_b)$ for independent draws of the two distributions (0.5 = the same distribution),
# the paired $P(\psi_a(z) > \psi_b(z))$ at the same latent, the mean paired difference, all with 95% bootstrap
# CIs over latents; the Wilcoxon signed-rank p-value, Holm-adjusted over all pairs of all three descriptors
# (`significant`: adjusted $p \le$ `ALPHA`). Why both effect sizes: the AUROC answers the paper's question
# (do the distributions differ), the paired one uses the design (the latent's own level, shared by its eight
# images, cancels), which is what the Wilcoxon and Friedman tests test.

# %%
omnibus = pd.DataFrame([dict(descriptor=d, **stats.group_tests(values[d]),
                             **{f"share_{k}": v for k, v in stats.variance_shares(values[d]).items()})
                        for d in DESC])
pairs = pd.concat([stats.paired_comparisons(values[d], n_boot=N_BOOT, seed=SEED).assign(descriptor=d) for d in DESC],
                  ignore_index=True)
pairs["p_holm"] = stats.holm(pairs.wilcoxon_p.to_numpy())
pairs["significant"] = pairs.p_holm <= ALPHA
display(omnibus.round(4))
pairs.groupby("descriptor", sort=False).agg(pairs=("a", "size"), significant=("significant", "sum"),
                                            min_p_holm=("p_holm", "min"))


# %%
def auroc_matrix(d):
    """(classes x classes) AUROC of row class vs column class for descriptor d (classes in `order`), and where
    the Holm-adjusted test is significant."""
    n = len(order)
    M, sig = np.full((n, n), 0.5), np.zeros((n, n), bool)
    for r in pairs[pairs.descriptor == d].itertuples():
        i, j = order.index(r.a), order.index(r.b)
        M[i, j], M[j, i] = r.auroc, 1 - r.auroc
        sig[i, j] = sig[j, i] = r.significant
    return M, sig


def draw_matrix(ax, d):
    """Heat map of auroc_matrix(d), each cell's AUROC written in it, '*' where Holm-significant."""
    M, sig = auroc_matrix(d)
    im = ax.imshow(M, vmin=0, vmax=1, cmap="RdBu_r")
    for (i, j), v in np.ndenumerate(M):
        ax.text(j, i, f"{v:.2f}{'*' if sig[i, j] else ''}", ha="center", va="center", fontsize=6,
                color="white" if abs(v - 0.5) > 0.3 else "black")  # readable on the dark ends of the map
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(order)), order, fontsize=7)
    ax.set_title(f"AUROC({d}: row class > column class)", fontsize=9)
    return im


fig, axes = plt.subplots(1, 3, figsize=(16, 5.0), layout="constrained")
for ax, d in zip(axes, DESC):
    im = draw_matrix(ax, d)
fig.colorbar(im, ax=axes, shrink=0.8, label=f"AUROC (0.5 = same distribution); * Holm-adjusted p <= {ALPHA:g}")
out.savefig(fig, "pairwise_auroc")
plt.show()
pairs[pairs.descriptor == "psi"].sort_values("p_holm").head(10).round(3)

# %% [markdown]
# ## 3. Diversity per class and the direction of the "bias in generation diversity"
# Vendi of each class's `N_PER_CLASS` images (cosine kernel) on EfficientNet-Lite0 features and on centred
# pixels, with the 95% range over `N_DRAWS` half-samples of the latents (the same latents for every class in a
# draw, so classes are compared on the same units, and at one size: Vendi grows with the number of items, so
# every diversity number is that of $m$ = `N_PER_CLASS` / 2 images, the mean over draws with its 95% range). The
# paper's reading, stated with its direction: the class with the higher $\psi$ is the more diverse one. Measured
# as (i) the Vendi difference between the class of highest and the class of lowest mean $\psi$ (with its range
# and the fraction of draws in which it is positive) and (ii) the Spearman correlation over the eight classes
# between mean $\psi$ and Vendi, per draw.

# %%
t0 = time.time()
all_imgs = np.concatenate([imgs[c] for c in CLASSES])
feats = {}
for view, kind in (("efficientnet", "efficientnet-lite0"), ("centred_pixels", "centred-pixels")):
    X = embed(all_imgs, kind)
    feats[view] = {c: X[i * len(z):(i + 1) * len(z)] for i, c in enumerate(CLASSES)}
div = {v: stats.diversity_by_group(f, values["psi"], draws=N_DRAWS, seed=SEED) for v, f in feats.items()}
t_div = time.time() - t0
vendi_tab = pd.concat([d.assign(view=v) for v, d in div.items()], ignore_index=True)
direction = pd.DataFrame([dict(view=v, **d.attrs) for v, d in div.items()])
print(f"embeddings and Vendi in {t_div:.0f} s")
display(direction.round(3))
vendi_tab.round(3)

# %%
fig, axes = plt.subplots(1, len(div), figsize=(6.2 * len(div), 4.2), layout="constrained")
for ax, (view, d) in zip(np.atleast_1d(axes), div.items()):
    s = summary.set_index("eye_colour").loc[d.group]
    ax.errorbar(d.score_mean, d.vendi_sub, xerr=[s.psi - s.psi_lo, s.psi_hi - s.psi],
                yerr=[d.vendi_sub - d.vendi_lo, d.vendi_hi - d.vendi_sub], fmt="o", capsize=3)
    for r in d.itertuples():
        ax.annotate(r.group, (r.score_mean, r.vendi_sub), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("mean psi of the class (95% t CI)")
    ax.set_ylabel(f"Vendi of {d.m.iloc[0]}-latent half-samples (95% range)")
    ax.set_title(f"{view}: Spearman over classes {d.attrs['spearman']:+.2f}", fontsize=9)
out.savefig(fig, "vendi_vs_psi_by_class")
plt.show()

# %% [markdown]
# **Named control.** Whether the ordering of the classes by mean $\psi$ is their ordering by brightness or
# contrast: Spearman over the eight classes (8 points, no interval) of mean $\psi$ with mean brightness and
# mean contrast.

# %%
from scipy.stats import spearmanr  # noqa: E402

control = {k: float(spearmanr(summary.psi, summary[k]).statistic) for k in ("brightness", "contrast")}
print("Spearman over classes, mean psi vs:", {k: round(v, 2) for k, v in control.items()})

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(CLASSES)} classes x {N_PER_CLASS} latents = {len(table)} rows; one draw for every class:",
      all(torch.equal(G[c].sample_latents(N_PER_CLASS, seed=SEED).cpu(), z) for c in CLASSES))
print("psi finite:", bool(np.isfinite(table.psi).all()), "| nu within [1, min(k, E)]:",
      bool(table.nu.between(1, min(K, E)).all()))
print("pairs per descriptor:", pairs.groupby("descriptor").size().tolist(), "| Holm-adjusted p >= raw p:",
      bool((pairs.p_holm.fillna(1) >= pairs.wilcoxon_p.fillna(0)).all()))
print("classes give different images at the same latent:",
      all(np.abs(imgs[a] - imgs[b]).mean() > 1e-3 for a in CLASSES for b in CLASSES if a < b))

# %% [markdown]
# ## Paper claims vs this run
# Each claim beside the number this run measured (95% intervals as above). At smoke size the numbers mean
# nothing; the full-size run is `data/results/16_subpopulations.json`.

# %%
def oriented(r):
    """A row of `pairs` read as 'higher > lower' (AUROC >= 0.5): reversed when its AUROC is below 0.5 (the AUROC
    and paired P of (b, a) are 1 - those of (a, b), the mean paired difference is the negative)."""
    if r.auroc >= 0.5:
        return r.to_dict()
    flip = {k: (1 - r[k], 1 - r[f"{k}_hi"], 1 - r[f"{k}_lo"]) for k in ("auroc", "p_paired")}
    flip["mean_diff"] = (-r.mean_diff, -r.mean_diff_hi, -r.mean_diff_lo)
    out = dict(a=r.b, b=r.a, p_holm=r.p_holm)
    for k, (v, lo, hi) in flip.items():
        out.update({k: v, f"{k}_lo": lo, f"{k}_hi": hi})
    return out


def pair_text(d):
    """The most separated pair of classes for descriptor d, higher class first: AUROC [CI], paired P [CI],
    mean paired difference [CI], Holm-adjusted p."""
    o = oriented(pairs[pairs.descriptor == d].assign(gap=lambda t: (t.auroc - 0.5).abs()).sort_values("gap").iloc[-1])
    return (f"most separated pair {o['a']} > {o['b']}: AUROC {o['auroc']:.2f} [{o['auroc_lo']:.2f}, "
            f"{o['auroc_hi']:.2f}], paired P {o['p_paired']:.2f} [{o['p_paired_lo']:.2f}, {o['p_paired_hi']:.2f}], "
            f"mean paired difference {o['mean_diff']:+.3g} [{o['mean_diff_lo']:+.3g}, {o['mean_diff_hi']:+.3g}], "
            f"Holm p {o['p_holm']:.2g}")


def omnibus_text(d):
    """Omnibus tests and significant pairs of descriptor d."""
    o = omnibus.set_index("descriptor").loc[d]
    k = int(pairs[pairs.descriptor == d].significant.sum())
    return (f"Kruskal-Wallis H {o.kruskal_h:.1f} (p {o.kruskal_p:.2g}), Friedman chi2 {o.friedman_chi2:.1f} "
            f"(p {o.friedman_p:.2g}); {k} of {len(CLASSES) * (len(CLASSES) - 1) // 2} pairs Holm-significant; "
            f"class / latent share of the variance {o.share_group:.2f} / {o.share_unit:.2f}; {pair_text(d)}")


def diversity_text(view):
    """The direction of diversity with psi over classes in one view."""
    a = div[view].attrs
    return (f"{view}, {div[view].m.iloc[0]}-latent half-samples: Vendi({a['top']}, highest psi) - "
            f"Vendi({a['bottom']}, lowest psi) {a['diff']:+.2f} "
            f"[{a['diff_lo']:+.2f}, {a['diff_hi']:+.2f}], P(>) {a['p_top_higher']:.2f}; Spearman(mean psi, Vendi) "
            f"over classes {a['spearman']:+.2f} [{a['spearman_lo']:+.2f}, {a['spearman_hi']:+.2f}]: {a['direction']}")


claims = pd.DataFrame([
    dict(claim="Fig. 13: psi's distribution differs between sub-populations of one model's generations",
         measured=omnibus_text("psi")),
    *[dict(claim=f"(not in the paper) {d} differs between the classes", measured=omnibus_text(d))
      for d in ("nu", "delta")],
    *[dict(claim="Fig. 13: 'an underlying bias in generation diversity': the higher-psi sub-population is the more "
                 "diverse", measured=diversity_text(v)) for v in div],
    dict(claim="(control, not in the paper) the psi ordering of the classes is not their brightness / contrast",
         measured=f"Spearman over classes, mean psi vs brightness {control['brightness']:+.2f}, "
                  f"vs contrast {control['contrast']:+.2f}"),
])
with pd.option_context("display.max_colwidth", 500):
    display(claims)

# %%
out.results.update(
    model="omniart-eyes", classes=CLASSES, n_per_class=len(z), n_rows=len(table),
    seconds_per_latent=t_desc / len(table), seconds_diversity=t_div, class_order_by_psi=order,
    class_summary=summary.set_index("eye_colour").to_dict(orient="index"),
    omnibus=omnibus.set_index("descriptor").to_dict(orient="index"),
    n_significant_pairs={d: int(pairs[pairs.descriptor == d].significant.sum()) for d in DESC},
    diversity={v: dict(d.attrs, vendi={r.group: dict(vendi=r.vendi, vendi_sub=r.vendi_sub, lo=r.vendi_lo,
                                                     hi=r.vendi_hi) for r in d.itertuples()})
               for v, d in div.items()},
    control_spearman_over_classes=control, claims=claims.to_dict(orient="records"),
    runtime_s=time.time() - t_start)
out.table(table, "descriptors")
out.table(summary, "class_summary")
out.table(omnibus, "omnibus")
out.table(pairs, "pairs")
out.table(vendi_tab, "vendi")
_ = out.write()
print(f"total {time.time() - t_start:.0f} s")

# %% [markdown]
# ## Verdicts for the committed run
#
# Full-size run (2026-12-04, `python -m geom.run 16_subpopulations`: 32 latents per class, one shared draw, 256
# descriptor rows; 2,875 s on the shared 2-core CPU, 10.7 s per latent and class). Numbers from
# `data/results/16_subpopulations.json`.
#
# | Claim (Humayun et al.) | Measured | Agreement |
# |---|---|---|
# | Fig. 13: $\psi$'s distribution differs between sub-populations of one model's generations | Kruskal-Wallis H 59.1 (p 2.3e-10), Friedman (paired) p 4.6e-30; 18 of 28 pairs Holm-significant; the class explains 0.23 of $\psi$'s variance, the latent 0.70; mean $\psi$ from -252.9 (brown) to -181.7 (amber): amber > brown AUROC 0.92 [0.86, 0.97], higher at every shared latent (paired P 1.00), +71.1 [65.1, 78.0] nats | yes: a real class-conditional GAN's sub-populations differ in $\psi$ |
# | (not in the paper) $\nu$, $\delta$ by class | $\nu$: H 90.9 (p 7.9e-17), 20 of 28 pairs, class share 0.40; $\delta$ at $r = 10^{-5}$: H 7.8 (p 0.35), no pair significant | $\nu$ differs more than $\psi$; $\delta$ does not resolve classes at this radius |
# | Fig. 13: "an underlying bias in generation diversity": the higher-$\psi$ sub-population is the more diverse | EfficientNet-Lite0 features (16-latent half-samples): Vendi(amber, highest $\psi$) - Vendi(brown, lowest) +0.47 [-0.21, 1.17], P(>) 0.90; Spearman over the 8 classes (mean $\psi$ vs Vendi) +0.42 [-0.19, 0.81]. Centred pixels: +4.38 [3.76, 5.02], P(>) 1.00; Spearman +0.55 [0.14, 0.81] | on the pretrained features (the paper's CLIP stood in for): no clear direction at 32 latents per class; on centred pixels: yes (rises with $\psi$) |
# | (control, not in the paper) the class order by $\psi$ is not their brightness / contrast | Spearman over classes, mean $\psi$ vs brightness +0.45, vs contrast +0.83 | partly confounded: the higher-$\psi$ colours are the higher-contrast ones |
#
# **Choices behind the verdicts:** a paired design (one draw of latents for all 8 classes, so the class is the
# only factor; Friedman and paired differences beside the paper's unpaired distribution comparison, Kruskal-Wallis
# and AUROC); Holm over all 84 pairs (28 per descriptor x 3); Vendi of order 1, cosine kernel, on half-samples of
# 16 latents drawn without replacement and shared by all classes (Vendi grows with the number of images, so every
# class is scored at the same size). 32 latents per class is what the 2-core CPU allows in one session; the
# EfficientNet diversity verdict is the one a larger `N_PER_CLASS` would sharpen.
