# %% [markdown]
# # 00 · Quickstart: local descriptors of a small generator
#
# **Reproduces:** the three local descriptors of Humayun et al., "Understanding the Local Geometry of
# Generative Model Manifolds", Sec. 2: local scaling $\psi$ (Eq. 4), local rank $\nu$ (Def. 3) and local
# complexity $\delta$ (Def. 1), computed with `geom.describe` on a 2D latent grid and shown as heatmaps.
# No figure of the paper is reproduced here; this notebook is the API tour.
#
# **Inputs:** none (a randomly initialised ReLU MLP $G:\mathbb{R}^2\to\mathbb{R}^{D}$, seeded).
#
# **Runtime (2-core CPU):** smoke (12 x 12 grid) ~5 s; full (64 x 64 grid) ~20 s.

# %% tags=["parameters"]
SEED = 0
N = 64            # grid points per side
EXTENT = 3.0      # latent square [-EXTENT, EXTENT]^2
WIDTH = 64        # hidden width of the generator
DEPTH = 3         # hidden layers
D = 16            # output dimension
K = 8             # output projection (k in the paper; 120 for large generators)
RADIUS = 0.02     # cross-polytope radius for delta
DIM = 2           # cross-polytope dimension, at most the latent dimension 2
OUT_DIR = "."     # "." publishes to figures/00_quickstart and data/results/00_quickstart.json

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

import geom
from geom.run import Outputs

out = Outputs("00_quickstart", OUT_DIR, namespace=globals())

# %% [markdown]
# A small generator: a ReLU MLP from a 2D latent to $\mathbb{R}^{16}$, initialised from an explicit seed
# (no global seeding).

# %%
gen = torch.Generator().manual_seed(SEED)
layers, width_in = [], 2
for _ in range(DEPTH):
    lin = torch.nn.Linear(width_in, WIDTH)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * (2 / width_in) ** 0.5)
        lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen) * 0.5)
    layers += [lin, torch.nn.ReLU()]
    width_in = WIDTH
head = torch.nn.Linear(WIDTH, D)
with torch.no_grad():
    head.weight.copy_(torch.randn(head.weight.shape, generator=gen) / WIDTH ** 0.5)
    head.bias.zero_()
G = torch.nn.Sequential(*layers, head).eval()

axis = torch.linspace(-EXTENT, EXTENT, N)
zz = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)  # (N*N, 2), row = y
print("latents", tuple(zz.shape), "-> outputs", tuple(G(zz[:1]).shape))

# %% [markdown]
# `geom.describe` computes the projected Jacobian $A = P^\top J_G(z)$ ($P$: random orthonormal $D\times k$),
# its singular values in float64, $\psi$, $\nu$, and $\delta$ over the cross-polytope of radius `RADIUS`
# spanned by `DIM` random orthonormal directions.

# %%
df = geom.describe(G, zz, k=K, radius=RADIUS, dim=DIM, seed=SEED, batch_size=256)
df["z1"], df["z2"] = zz[:, 0].numpy(), zz[:, 1].numpy()
df.describe().loc[["mean", "std", "min", "max"]].round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
for ax, col, cmap in zip(axes, ["psi", "nu", "delta"], ["viridis", "magma", "rocket"]):
    grid = df[col].to_numpy().reshape(N, N)[::-1]  # image rows: top = largest z2
    sns.heatmap(grid, ax=ax, cmap=cmap, xticklabels=False, yticklabels=False, cbar_kws={"shrink": 0.8})
    ax.set_title({"psi": r"local scaling $\psi$", "nu": r"local rank $\nu$",
                  "delta": r"local complexity $\delta$"}[col])
    ax.set_xlabel(r"$z_1$")
    ax.set_ylabel(r"$z_2$")
fig.suptitle(f"Descriptors of a random ReLU MLP on [-{EXTENT}, {EXTENT}]$^2$ ({N}x{N} grid)")
out.savefig(fig, "descriptor_maps")
plt.show()

# %% [markdown]
# **What to look for.** $\delta$ is non-zero along the knots (neuron hyperplanes) of the ReLU network, in a band
# of width ~`RADIUS` around them. Inside one linear region the Jacobian is constant, so $\psi$ and $\nu$ are
# piecewise constant and jump across the same knots that $\delta$ lights up.

# %%
out.results.update(
    psi_mean=df["psi"].mean(), psi_std=df["psi"].std(), nu_mean=df["nu"].mean(),
    delta_mean=df["delta"].mean(), frac_delta_positive=(df["delta"] > 0).mean(),
    n_psi_levels=df["psi"].round(6).nunique(),
)
out.table(df, "descriptors")
out.write()

# %%
# NBVAL_CHECK_OUTPUT
print(f"psi mean {df['psi'].mean():.2f}, nu mean {df['nu'].mean():.2f}, delta mean {df['delta'].mean():.2f}")
