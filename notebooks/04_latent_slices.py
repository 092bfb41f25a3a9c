# %% [markdown]
# # 04 · Latent-space slices of a latent diffusion decoder
#
# **Reproduces:** Humayun et al., "Understanding the Local Geometry of Generative Model Manifolds", Sec. 3.3.1,
# Fig. 5 and Appendix Figs. 21-26: three prompts are denoised to three latents $z_0, z_1, z_2$; on the 2D
# plane through them, $z(u, v) = z_0 + u (z_1 - z_0) + v (z_2 - z_0)$, the decoder's local scaling $\psi$,
# local rank $\nu$ and local complexity $\delta$ are mapped on an $N \times N$ grid ($k = 120$ random output
# projection, $\delta$ with a $P = 4$ cross-polytope of radius $r = 10^{-5}$, as in the paper); the anchors
# and their convex hull (the triangle $u, v \ge 0$, $u + v \le 1$) are marked, and the decoded images at
# the highest and lowest descriptor values are shown.
#
# **Inputs:** `MODEL`: `"tiny-ldm"` (the embedded latent diffusion model, `data/checkpoints/tiny-ldm`) or the
# folder of a local Stable Diffusion v1.x in diffusers format (`-p MODEL /path/to/stable-diffusion-v1-4`; use a
# GPU). `PROMPTS` (three), DDIM `NUM_STEPS` and `GUIDANCE`, grid `N` on $[LO, HI]^2$, `K`, `DIM`, `RADIUS`.
# The grid is computed with `geom.sweep.run_sweep` (resumable: re-running the notebook after an interruption
# skips the finished shards in `SWEEP_DIR`). Changes from the paper: the paper's grid is $N = 512$ on Stable
# Diffusion v1.4; here the default is tiny-ldm at $N = 40$ (see Runtime), and because $r = 10^{-5}$ gives
# almost no sign changes on tiny-ldm's small decoder, $\delta$ is also shown at `RADIUS_LARGE`.
#
# **Runtime (2-core CPU, tiny-ldm):** the cost is the decoder Jacobian ($k = 120$ VJPs) plus $2P = 8$ forwards
# for $\delta$: measured 1.0 s of CPU time per grid latent (one thread), i.e. ~0.5-0.6 s wall with two threads
# on a quiet machine (2.2-5.6 s wall under the load of 5-10 of the shared development machine). Smoke ($N = 5$,
# 25 latents) ~30 s quiet (125 s measured under load). Full ($N = 40$, 1600 latents): measured 925 s (15.4 min,
# 0.54 s per latent) with two threads on a quiet machine, ~27 min single-threaded, i.e. within 30 min;
# $N = 48$ (2304 latents) would take 21-38 min. Stable Diffusion
# v1.4 at 512x512 needs a GPU (about 6 s forward + 13 s backward per image on this CPU).

# %% tags=["parameters"]
SEED = 0
MODEL = "tiny-ldm"        # or the path of a local Stable Diffusion v1.x diffusers folder
PROMPTS = ["a red circle on stripes", "a blue square on checks", "a yellow star on plain"]
NUM_STEPS = 50            # DDIM steps
GUIDANCE = 7.5            # classifier-free guidance scale
N = 40                    # grid points per side (paper: 512)
LO = -0.5                 # plane coordinates u, v in [LO, HI] (anchors at (0,0), (1,0), (0,1))
HI = 1.5
K = 120                   # random output projection (paper: 120)
DIM = 4                   # cross-polytope dimension for delta (paper: 4)
RADIUS = 1e-5             # cross-polytope radius for delta (paper: 1e-5)
RADIUS_LARGE = 0.05       # a larger radius for a second delta map (tiny-ldm: delta is ~0 at 1e-5)
N_EXTREME = 4             # decoded images at the highest / lowest descriptor points
MOSAIC = 7                # decoded images on a MOSAIC x MOSAIC sub-grid of the plane
BATCH_SIZE = 16           # latents per Jacobian batch
SHARD_SIZE = 64           # latents per resumable shard
SWEEP_DIR = "build/sweeps"  # where the resumable sweep shards go (git-ignored)
OUT_DIR = "."             # "." publishes to figures/04_latent_slices and data/results/04_latent_slices.json

# %%
import hashlib
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import geom
from geom import paths, planes, slices, stats
from geom.complexity import polytope_basis
from geom.diffusion import sample
from geom.models import load_pipeline
from geom.plots import image_grid, slice_maps
from geom.run import Outputs
from geom.shapes import from_model_range
from geom.sweep import SweepSpec, run_sweep

torch.set_num_threads(2)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
out = Outputs("04_latent_slices", OUT_DIR, namespace=globals())
t_start = time.time()
MODEL_REF = MODEL if MODEL == "tiny-ldm" else str(paths.resolve(MODEL))  # relative to the repository root
pipe = load_pipeline(MODEL_REF, device=DEVICE)
print(f"{pipe.kind}: latents {pipe.latent_shape} -> images {pipe.image_size}, device {pipe.device}")

# %% [markdown]
# ## Three denoised latents
# DDIM with classifier-free guidance (`geom.diffusion.sample`) from seeded noise; the three final latents
# are the anchors of the plane.

# %%
if len(PROMPTS) != 3:
    raise ValueError(f"PROMPTS must hold three prompts, got {len(PROMPTS)}")
res = sample(pipe, list(PROMPTS), num_steps=NUM_STEPS, guidance_scale=GUIDANCE,
             generator=torch.Generator().manual_seed(SEED))
anchors = res.latents.detach().to("cpu", torch.float32)
with torch.no_grad():
    anchor_images = from_model_range(pipe.vae_decode(anchors.to(pipe.device, pipe.dtype)))
fig = image_grid(anchor_images, ncols=3, titles=[f"z{i}: {p}" for i, p in enumerate(PROMPTS)], scale=2.0)
out.savefig(fig, "anchors")
plt.show()
a = anchors.reshape(3, -1)
print("anchor norms", [round(float(x), 1) for x in a.norm(dim=1)],
      "pairwise distances", [round(float((a[i] - a[j]).norm()), 1) for i, j in ((0, 1), (0, 2), (1, 2))])

# %% [markdown]
# ## Descriptors on the plane (resumable sweep)
# `geom.sweep` evaluates $\psi, \nu, \delta$ of `pipe.vae_decode` at $z(u, v)$ with $u = t_i$, $v = t_j$,
# $t = \mathrm{linspace}(LO, HI, N)$ (row `i * N + j`). The anchors are stored in a `.npy` whose name
# carries their hash, so a sweep folder can only be resumed with the same anchors and settings.

# %%
digest = hashlib.sha256(anchors.numpy().tobytes()).hexdigest()[:12]
name = (MODEL if MODEL == "tiny-ldm" else paths.resolve(MODEL).name).replace("/", "_")
sweep_dir = paths.resolve(SWEEP_DIR) / f"04_latent_slices-{name}-{digest}-N{N}-k{K}-r{RADIUS:g}-s{SEED}"
sweep_dir.mkdir(parents=True, exist_ok=True)
anchors_file = sweep_dir / "anchors.npy"
if not anchors_file.exists():
    np.save(anchors_file, anchors.numpy())
spec = SweepSpec(model=MODEL_REF, source=f"plane:{N}:{LO}:{HI}", k=K, dim=DIM, radius=RADIUS, seed=SEED,
                 batch_size=BATCH_SIZE, shard_size=SHARD_SIZE, anchors=str(anchors_file))
t0 = time.time()
df = run_sweep(spec, sweep_dir, device=DEVICE, progress=False)
t_sweep = time.time() - t0
print(f"{len(df)} latents in {t_sweep:.0f} s ({t_sweep / len(df):.2f} s per latent; shards in {sweep_dir})")

# same plane, our parameterisation: the sweep's latents pass through the anchors
u, v = planes.plane_uv(N, LO, HI)
assert np.allclose(df["u"], u) and np.allclose(df["v"], v)
z = planes.plane_latents(anchors, u, v)
df["inside_hull"] = planes.in_hull(u, v)

# %% [markdown]
# $\delta$ again at a larger radius (`RADIUS_LARGE`), with the same polytope basis as the sweep
# (`geom.complexity.polytope_basis(E, DIM, seed=SEED)`, the rule of every entry point): only forward passes, cheap.

# %%
E = int(np.prod(pipe.latent_shape))
basis = polytope_basis(E, min(DIM, E), seed=SEED, dtype=pipe.dtype, device=pipe.device)
delta_large = []
for s in range(0, len(z), 64):
    delta_large.append(geom.local_complexity(pipe.vae_decode, z[s:s + 64].to(pipe.device, pipe.dtype),
                                             radius=RADIUS_LARGE, dim=DIM, basis=basis))
df["delta_large"] = torch.cat(delta_large).numpy()
print(f"delta at r={RADIUS:g}: zero at {np.mean(df['delta'] == 0):.0%} of the grid, max {df['delta'].max()}; "
      f"at r={RADIUS_LARGE:g}: zero at {np.mean(df['delta_large'] == 0):.0%}, max {df['delta_large'].max()}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(18, 4.0))
slice_maps(df, N, LO, HI, columns=("psi", "nu", "delta", "delta_large"), axes=axes,
           suptitle=f"{pipe.kind} decoder on the plane through three denoised latents ({N}x{N}, k={K})")
axes[2].set_title(rf"local complexity $\delta$, r={RADIUS:g}")
axes[3].set_title(rf"local complexity $\delta$, r={RADIUS_LARGE:g}")
out.savefig(fig, "fig5_slice_descriptors")
plt.show()

# %% [markdown]
# ## What the plane decodes to
# Decoded images on a `MOSAIC` x `MOSAIC` sub-grid of the plane (u to the right, v upwards, the anchors at
# the corners of the dashed triangle), and the images at the highest and lowest $\psi$ and $\nu$.

# %%
t = np.linspace(LO, HI, MOSAIC)
mu, mv = np.meshgrid(t, t, indexing="xy")  # rows: v, columns: u
mu, mv = mu[::-1].reshape(-1), mv[::-1].reshape(-1)  # top row = largest v
with torch.no_grad():
    mosaic = from_model_range(pipe.vae_decode(planes.plane_latents(anchors, mu, mv).to(pipe.device, pipe.dtype)))
fig = image_grid(mosaic, ncols=MOSAIC, scale=1.1,
                 titles=[f"({a:.1f},{b:.1f}){'*' if planes.in_hull([a], [b])[0] else ''}" for a, b in zip(mu, mv)],
                 suptitle="decoded plane (u, v); * inside the convex hull")
out.savefig(fig, "plane_mosaic")
plt.show()

# %%
picks, titles = [], []
for col in ("psi", "nu"):
    low, high = slices.extreme_indices(df[col], N_EXTREME)
    for tag, idx in (("high", high), ("low", low)):
        picks += list(idx)
        titles += [f"{col} {tag}\n{df[col].iloc[i]:.1f} ({df.u.iloc[i]:.2f},{df.v.iloc[i]:.2f})" for i in idx]
with torch.no_grad():
    ext_images = from_model_range(pipe.vae_decode(z[picks].to(pipe.device, pipe.dtype)))
fig = image_grid(ext_images, ncols=N_EXTREME, titles=titles, scale=1.6)
out.savefig(fig, "extremes")
plt.show()

# %% [markdown]
# ## Inside vs outside the convex hull
# The paper reads the slices qualitatively; here the contrast is one number per descriptor: the AUROC of
# "inside the hull" vs "outside" (0.5: no difference; > 0.5: larger inside).

# %%
inside = df["inside_hull"].to_numpy()
summary = {}
for col in ("psi", "nu", "delta", "delta_large"):
    x = df[col].to_numpy(dtype=float)
    summary[col] = dict(min=x.min(), max=x.max(), mean_inside=x[inside].mean(), mean_outside=x[~inside].mean(),
                        auroc_inside=stats.auroc(x, inside))
    print(f"{col:12s} range [{x.min():9.2f}, {x.max():9.2f}]  mean inside {x[inside].mean():9.2f}  "
          f"outside {x[~inside].mean():9.2f}  AUROC(inside > outside) {summary[col]['auroc_inside']:.2f}")
# image roughness of the decoded plane (mean absolute neighbour difference), compared with psi
imgs = pipe.decode_latents(z, batch_size=256)
rough = ((imgs[..., 1:, :] - imgs[..., :-1, :]).abs().mean((1, 2, 3)) + (imgs[..., 1:] - imgs[..., :-1]).abs().mean((1, 2, 3))).numpy()
df["roughness"] = rough
from scipy.stats import spearmanr  # noqa: E402

rho_psi_rough = spearmanr(df["psi"], rough).statistic
rho_nu_rough = spearmanr(df["nu"], rough).statistic
print(f"Spearman(psi, image roughness) = {rho_psi_rough:.2f}; Spearman(nu, roughness) = {rho_nu_rough:.2f}")

# %%
out.results.update(
    model=pipe.kind, n_grid=N, n_latents=len(df), seconds_per_latent=t_sweep / len(df),
    descriptors=summary, frac_delta_zero=float(np.mean(df["delta"] == 0)),
    frac_delta_large_zero=float(np.mean(df["delta_large"] == 0)), frac_inside_hull=float(inside.mean()),
    spearman_psi_roughness=rho_psi_rough, spearman_nu_roughness=rho_nu_rough,
    runtime_s=time.time() - t_start)
out.table(df.drop(columns=["model"]), "slice")
_ = out.write()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{N}x{N} grid, {inside.sum()} points inside the hull")
print(f"psi finite everywhere: {bool(np.isfinite(df['psi']).all())}; delta >= 0: {bool((df['delta'] >= 0).all())}")
print(f"nu within [1, {min(K, E)}]: {bool(df['nu'].between(1, min(K, E)).all())}")

# %% [markdown]
# ## Paper claims vs this run
# Committed full-size outputs (`figures/04_latent_slices/`, `data/results/04_latent_slices.json`) are from
# `python -m geom.run 04_latent_slices` at the default $N = 40$ on tiny-ldm (1600 latents, 925 s = 0.54 s per
# latent with two threads on an otherwise idle 2-core CPU; an earlier $N = 16$ run gave the same numbers to
# within 0.01 AUROC). Re-run on 2026-11-30 after the descriptor fixes of issue 12 (3170 s on a heavily loaded
# machine): $\psi$ and $\nu$ are unchanged; $\delta$ is now evaluated in float64 (in float32, rounding near
# the joints flipped neurons at $r = 10^{-5}$ and made $\delta$ depend on the batch size): at $r = 10^{-5}$ the
# zero fraction went from 95.3% to 95.6% and the maximum from 2 to 1; at $r = 0.05$ the AUROC moved by 1e-4.
# The smoke run above ($N = 5$) is too coarse to judge.
#
# | paper (SD v1.4, Sec. 3.3.1, Fig. 5, Figs. 21-26) | measured here (tiny-ldm, $N = 40$) | agree? |
# | --- | --- | --- |
# | the descriptors vary smoothly over the slice, with structure tied to the anchors and their convex hull | $\psi \in [-330, -180]$, $\nu \in [76, 92]$; $\psi$ is larger inside the hull (mean -238 vs -281 outside, AUROC 0.84) and lowest where the plane extrapolates far from the anchors ($u$ or $v = 1.5$); $\nu$ is smaller inside (AUROC 0.24), with a sharp minimum between $z_0$ and $z_1$ where the decoded images blend two shapes | yes, qualitatively |
# | decoded images at high $\psi$ are more detailed / textured, at low $\psi$ smoother | the highest-$\psi$ points ($u \approx 0.4$, $v \approx 0.1$) decode to blends of two shapes over stripes, the lowest to washed-out extrapolations at the far corners; over the grid Spearman($\psi$, pixel roughness) = -0.33 | partly: high $\psi$ marks "in-between" images, not rougher ones |
# | $\delta$ with $r = 10^{-5}$, $P = 4$ is informative | on tiny-ldm $\delta = 0$ at 96% of the grid (max 1, scattered single points; AUROC inside 0.54): the finding survives the float64 fix; at $r = 0.05$, $\delta \in [63, 606]$ and it peaks where $\psi$ does (mean 359 inside vs 191 outside, AUROC 0.88) | not at the paper's radius; yes at $r = 0.05$ |
