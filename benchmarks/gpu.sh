#!/usr/bin/env bash
# The Stable Diffusion v1 VAE decoder (diffusers AutoencoderKL, SD v1 config, seeded random weights:
# `sd-vae-random:<size>` of geom.models.load_generator) at a 64 x 64 latent (512 x 512 px), k = 120:
# seconds per latent of geom.jacobian (+ psi/nu, + delta at P = 4) and peak GPU memory, beside the paper's
# 3.6 s per latent (Humayun et al., on a TPU). One CUDA GPU; under 8 minutes including setup of an existing venv.
#
#   bash benchmarks/gpu.sh                        # prints one JSON object; also writes $OUT/gpu_sd_decoder.json
#
# Settings (environment): GEOM_GPU_LATENT (64), GEOM_GPU_K (120), GEOM_GPU_N (latents timed, 3),
# GEOM_GPU_CHUNK (VJPs vmapped at once, 8; halved on out-of-memory), GEOM_GPU_DTYPE (float32),
# GEOM_GPU_BUDGET_S (stop timing further latents after this many seconds, 240), GEOM_GPU_SETUP (1: run
# scripts/setup.sh first; 0: use $GEOM_VENV / .venv as it is), GEOM_GPU_ALLOW_CPU (0; 1 runs on the CPU, for
# testing at a tiny size: GEOM_GPU_ALLOW_CPU=1 GEOM_GPU_SETUP=0 GEOM_GPU_LATENT=8 GEOM_GPU_K=4 bash benchmarks/gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GEOM_VENV:-.venv}
if [ "${GEOM_GPU_SETUP:-1}" = "1" ]; then
  # setup installs torch==2.13.0 from the configured index; on a GPU machine that is normally the CUDA build
  bash scripts/setup.sh >&2
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "[gpu.sh] no python in $VENV; run bash scripts/setup.sh" >&2; exit 2; }
if [ "${GEOM_GPU_ALLOW_CPU:-0}" != "1" ] && [ "$("$PY" -c 'import torch; print(torch.cuda.is_available())')" != "True" ]; then
  echo "[gpu.sh] torch $("$PY" -c 'import torch; print(torch.__version__)') in $VENV sees no CUDA GPU." >&2
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >&2 || true
  echo "[gpu.sh] install the CUDA build of the same version, e.g." >&2
  echo "  $PY -m pip install --force-reinstall --no-deps torch==2.13.0 --index-url https://download.pytorch.org/whl/<cuda tag>" >&2
  exit 2
fi
exec "$PY" - <<'PYTHON'
"""Timed part of benchmarks/gpu.sh (reads the GEOM_GPU_* settings of the shell script)."""
import json, math, os, platform, sys, time

import torch

import geom
from geom.models import load_generator

env = os.environ.get
latent, k, n = int(env("GEOM_GPU_LATENT", "64")), int(env("GEOM_GPU_K", "120")), int(env("GEOM_GPU_N", "3"))
chunk, budget = int(env("GEOM_GPU_CHUNK", "8")), float(env("GEOM_GPU_BUDGET_S", "240"))
dtype = getattr(torch, env("GEOM_GPU_DTYPE", "float32"))
cuda = torch.cuda.is_available()
dev = torch.device("cuda" if cuda else "cpu")
t0 = time.perf_counter()


def sync():
    if cuda:
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


G = load_generator(f"sd-vae-random:{latent}", device=dev, dtype=dtype)
z = G.sample_latents(n, seed=0)
D = math.prod(G.output_shape)
P = geom.random_projection(D, k, seed=0, dtype=dtype, device=dev)
basis = geom.random_projection(math.prod(G.latent_shape), 4, seed=1, dtype=dtype, device=dev).T
res = {"model": f"SD v1 VAE decoder (random weights), latent {tuple(G.latent_shape)} -> image {G.output_shape}",
       "latent": latent, "k": k, "dtype": str(dtype).replace("torch.", ""), "device": str(dev),
       "gpu": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
       "torch": torch.__version__, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
       "matmul_precision": torch.get_float32_matmul_precision(), "paper_s_per_latent": 3.6,
       "load_s": time.perf_counter() - t0}

# FLOPs of one forward and one VJP (one latent, projection included)
from torch.utils.flop_counter import FlopCounterMode

z1 = z[:1].clone().requires_grad_(True)
fc = FlopCounterMode(display=False)
with fc:
    y = G(z1).reshape(1, -1) @ P
fwd_flops = fc.get_total_flops()
fc = FlopCounterMode(display=False)
with fc:
    torch.autograd.grad(y, z1, torch.ones_like(y) / k ** 0.5)
vjp_flops = fc.get_total_flops()
del y, z1
res.update(flops_forward=fwd_flops, flops_vjp=vjp_flops, flops_per_latent=fwd_flops + k * vjp_flops)

with torch.no_grad():
    _, res["t_forward"] = timed(lambda: G(z[:1]))
    _, res["t_forward"] = timed(lambda: G(z[:1]))  # second call: after cuDNN autotuning / allocation

# warm-up: one chunk of VJPs; on out-of-memory halve the chunk
while True:
    try:
        if cuda:
            torch.cuda.empty_cache()
        geom.jacobian(G, z[:1], projection=P[:, :max(1, min(chunk, k))], chunk_size=chunk, mode="reverse")
        break
    except torch.cuda.OutOfMemoryError:
        if chunk == 1:
            raise
        chunk = max(1, chunk // 2)
        print(f"[gpu.sh] out of memory; chunk_size -> {chunk}", file=sys.stderr, flush=True)
res["chunk_size"] = chunk

rows = []
for i in range(n):
    if rows and time.perf_counter() - t0 > budget:
        break
    zi = z[i:i + 1]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    while True:
        try:
            J, t_jac = timed(lambda: geom.jacobian(G, zi, projection=P, chunk_size=chunk, mode="reverse"))
            break
        except torch.cuda.OutOfMemoryError:
            if chunk == 1:
                raise
            chunk = max(1, chunk // 2)
            res["chunk_size"] = chunk
            torch.cuda.empty_cache()
            print(f"[gpu.sh] out of memory; chunk_size -> {chunk}", file=sys.stderr, flush=True)
    peak_jac = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None
    (psi, nu), t_svd = timed(lambda: (lambda sv: (geom.local_scaling(sv, dtype=J.dtype), geom.local_rank(sv)))(geom.singular_values(J)))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    delta, t_delta = timed(lambda: geom.local_complexity(G, zi, radius=1e-5, dim=4, basis=basis))
    peak_delta = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None
    rows.append({"t_jacobian": t_jac, "t_svd": t_svd, "t_delta": t_delta, "t_total": t_jac + t_svd + t_delta,
                 "peak_gib_jacobian": peak_jac, "peak_gib_delta": peak_delta, "psi": float(psi[0]),
                 "nu": float(nu[0]), "delta": int(delta[0])})
    print(f"[gpu.sh] latent {i}: jacobian {t_jac:.2f}s, svd {t_svd:.2f}s, delta {t_delta:.2f}s, "
          f"peak {peak_jac} GiB", file=sys.stderr, flush=True)
    del J

best = min(rows, key=lambda r: r["t_total"])
res.update(latents_timed=len(rows), per_latent=rows, s_per_latent_jacobian=best["t_jacobian"],
           s_per_latent_total=best["t_total"], peak_gib=max((r["peak_gib_jacobian"] or 0) for r in rows) or None,
           tflops_achieved=res["flops_per_latent"] / best["t_jacobian"] / 1e12,
           vs_paper=best["t_total"] / 3.6, total_s=time.perf_counter() - t0)
text = json.dumps(res, indent=1)
print(text)
if env("OUT"):
    os.makedirs(env("OUT"), exist_ok=True)
    with open(os.path.join(env("OUT"), "gpu_sd_decoder.json"), "w") as f:
        f.write(text + "\n")
PYTHON
