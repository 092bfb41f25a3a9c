#!/usr/bin/env bash
# The Stable Diffusion v1 VAE decoder (diffusers AutoencoderKL, SD v1 config, seeded random weights:
# `sd-vae-random:<size>` of geom.models.load_generator) at a 64 x 64 latent (512 x 512 px), k = 120, on one CUDA
# GPU (issue 26), in each precision of GEOM_GPU_PRECISIONS:
#   float32  strict fp32 (TF32 off for matmuls and cuDNN convolutions)
#   tf32     float32 weights and latents, TF32 tensor cores allowed (torch.backends.{cuda.matmul,cudnn}.allow_tf32)
#   bf16     weights and latents in bfloat16
# For each: seconds per latent of geom.jacobian (mode "auto", chunk size from the memory budget) and of
# torch.func.vmap(torch.func.jacrev(...)) (what a researcher writes, chunked like the engine so that it fits),
# the FLOP limit (FLOPs of one forward + k VJPs, FlopCounterMode, / the device's torch.mm rate measured in the
# same precision), psi/nu (SVD) and delta (P = 4, r = 1e-5) per latent, peak memory
# (torch.cuda.max_memory_allocated); and psi's (and nu's) error in each precision against float64 on a smaller
# latent (GEOM_GPU_REF_LATENT, 16: same weights, same latent). Beside the paper's 3.6 s per latent (TPU) and the
# issue's goal (< 1.5 s per latent on one H200). One JSON object goes to stdout and to $OUT/gpu_sd_decoder.json
# when OUT is set.
#
#   bash benchmarks/gpu.sh
#
# Settings (environment): GEOM_GPU_LATENT (64), GEOM_GPU_K (120), GEOM_GPU_N (latents timed per precision, 2),
# GEOM_GPU_PRECISIONS ("float32,tf32,bf16"), GEOM_GPU_REF_LATENT (16), GEOM_GPU_JACREV (1: also time
# vmap(jacrev); 0: skip it), GEOM_GPU_BUDGET_S (stop timing further latents of a precision after this many
# seconds in it, 150), GEOM_MEMORY_BUDGET (the engine's memory budget, default half the free GPU memory),
# GEOM_GPU_SETUP (1: run scripts/setup.sh first; 0: use $GEOM_VENV / .venv as it is), GEOM_GPU_ALLOW_CPU (0; 1 runs
# on the CPU, for testing at a tiny size:
#   GEOM_GPU_ALLOW_CPU=1 GEOM_GPU_SETUP=0 GEOM_GPU_LATENT=2 GEOM_GPU_K=2 GEOM_GPU_N=1 GEOM_GPU_REF_LATENT=2 \
#     bash benchmarks/gpu.sh
# which tests/test_generators.py runs).
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
import copy, json, math, os, platform, sys, time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import geom
from geom.models import load_generator
from geom.models.generators import ModuleGenerator

env = os.environ.get
latent, k, n = int(env("GEOM_GPU_LATENT", "64")), int(env("GEOM_GPU_K", "120")), int(env("GEOM_GPU_N", "2"))
ref_latent, budget = int(env("GEOM_GPU_REF_LATENT", "16")), float(env("GEOM_GPU_BUDGET_S", "150"))
precisions = [p.strip() for p in env("GEOM_GPU_PRECISIONS", "float32,tf32,bf16").split(",") if p.strip()]
with_jacrev = env("GEOM_GPU_JACREV", "1") == "1"
for p in precisions:
    if p not in ("float32", "tf32", "bf16"):
        sys.exit(f"[gpu.sh] unknown precision {p!r} in GEOM_GPU_PRECISIONS (float32, tf32, bf16)")
cuda = torch.cuda.is_available()
dev = torch.device("cuda" if cuda else "cpu")
t0 = time.perf_counter()


def log(msg):
    print(f"[gpu.sh] {msg}", file=sys.stderr, flush=True)


def sync():
    if cuda:
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


def set_precision(p):
    """TF32 on for 'tf32' only (cuDNN convolutions default to TF32 in torch: 'float32' turns it off)."""
    torch.backends.cuda.matmul.allow_tf32 = p == "tf32"
    torch.backends.cudnn.allow_tf32 = p == "tf32"
    return torch.bfloat16 if p == "bf16" else torch.float32


def matmul_tflops(dtype):
    """Best of 5 torch.mm of two square matrices (8192 on a GPU, 512 on the CPU) in dtype, TFLOP/s."""
    m = 8192 if cuda else 512
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(m, m, generator=g, device=dev).to(dtype)
    b = torch.randn(m, m, generator=g, device=dev).to(dtype)
    a @ b
    best = min(timed(lambda: a @ b)[1] for _ in range(5))
    return 2 * m ** 3 / best / 1e12


def at_latent(net, size, dtype):
    """The SD decoder (the same seeded weights) at another latent size / dtype, as load_generator builds it."""
    net = net if dtype is None else copy.deepcopy(net).to(dtype)
    return ModuleGenerator(f"sd-vae-random:{size}", net, (4, size, size), (3, 8 * size, 8 * size)).eval()


def peak_gib():
    return torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None


def reset_peak():
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


base = load_generator(f"sd-vae-random:{latent}", device=dev, dtype=torch.float32)
D = math.prod(base.output_shape)
res = {"model": f"SD v1 VAE decoder (random weights), latent {tuple(base.latent_shape)} -> image {base.output_shape}",
       "latent": latent, "k": k, "device": str(dev),
       "gpu": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu", "torch": torch.__version__,
       "paper_s_per_latent": 3.6, "goal_s_per_latent": 1.5, "load_s": time.perf_counter() - t0}

# FLOPs of one forward and one VJP (one latent, projection included); they do not depend on the precision
set_precision("float32")
P32 = geom.random_projection(D, k, seed=0, device=dev)
z1 = base.sample_latents(1, seed=0).clone().requires_grad_(True)
fc = FlopCounterMode(display=False)
with fc:
    y = base(z1).reshape(1, -1) @ P32
fwd_flops = fc.get_total_flops()
fc = FlopCounterMode(display=False)
with fc:
    torch.autograd.grad(y, z1, torch.ones_like(y) / k ** 0.5)
vjp_flops = fc.get_total_flops()
del y, z1
res.update(flops_forward=fwd_flops, flops_vjp=vjp_flops, flops_per_latent=fwd_flops + k * vjp_flops)

runs = {}
for p in precisions:
    dtype = set_precision(p)
    t_p = time.perf_counter()
    G = base if dtype == torch.float32 else at_latent(base.net, latent, dtype)
    z = G.sample_latents(n, seed=0)
    P = P32.to(dtype)
    r = {"dtype": str(dtype).replace("torch.", ""), "tf32": p == "tf32", "matmul_tflops": matmul_tflops(dtype)}
    r["t_flop_limit"] = res["flops_per_latent"] / (r["matmul_tflops"] * 1e12)
    with torch.no_grad():
        _, r["t_forward"] = timed(lambda: G(z[:1]))
        _, r["t_forward"] = timed(lambda: G(z[:1]))  # second call: after cuDNN autotuning / allocation
    reset_peak()
    geom.jacobian(G, z[:1], projection=P)  # warm-up; decides the mode and the chunk size (jacobian_plan)
    plan = geom.jacobian_plan(G, z[:1], projection=P)
    r["plan"] = {"mode": plan.mode, "reason": plan.reason, "chunk_size": plan.chunk_size,
                 "bytes_per_pass": plan.bytes_per_pass, "memory_budget": plan.memory_budget}
    basis = geom.polytope_basis(math.prod(G.latent_shape), 4, seed=0, device=dev)
    rows = []
    for i in range(n):
        if rows and time.perf_counter() - t_p > budget:
            break
        zi = z[i:i + 1]
        reset_peak()
        J, t_jac = timed(lambda: geom.jacobian(G, zi, projection=P))
        peak_jac = peak_gib()
        sp, t_svd = timed(lambda: geom.spectrum(J))
        reset_peak()
        delta, t_delta = timed(lambda: geom.local_complexity(G, zi, radius=1e-5, dim=4, basis=basis))
        rows.append({"t_jacobian": t_jac, "t_svd": t_svd, "t_delta": t_delta, "t_total": t_jac + t_svd + t_delta,
                     "peak_gib_jacobian": peak_jac, "peak_gib_delta": peak_gib(),
                     "psi": float(geom.local_scaling(sp)[0]), "nu": float(geom.local_rank(sp)[0]),
                     "delta": int(delta[0])})
        log(f"{p} latent {i}: jacobian {t_jac:.2f}s ({plan.mode}, chunk {plan.chunk_size}), svd {t_svd:.2f}s, "
            f"delta {t_delta:.2f}s, peak {peak_jac} GiB")
        del J
    best = min(rows, key=lambda row: row["t_total"])
    r.update(latents_timed=len(rows), per_latent=rows, s_per_latent_jacobian=best["t_jacobian"],
             s_per_latent_total=best["t_total"],
             engine_vs_flop_limit=best["t_jacobian"] / r["t_flop_limit"],
             tflops_achieved=res["flops_per_latent"] / best["t_jacobian"] / 1e12,
             vs_paper=best["t_total"] / 3.6, goal_met=best["t_total"] < 1.5)
    if with_jacrev:  # what a researcher writes, chunked like the engine (unchunked, k = 120 does not fit)
        latent_shape = tuple(G.latent_shape)

        def g1(v):
            with sdpa_kernel([SDPBackend.MATH]):
                return G(v.reshape(1, *latent_shape)).reshape(-1) @ P
        chunk = plan.chunk_size
        while True:
            try:
                user = torch.func.vmap(torch.func.jacrev(g1, chunk_size=chunk))
                reset_peak()
                Jv, t_v = timed(lambda: user(z[:1].reshape(1, -1)))
                break
            except torch.OutOfMemoryError:
                if chunk == 1:
                    raise
                chunk = max(1, (chunk or k) // 2)
                log(f"{p} vmap(jacrev): out of memory; chunk_size -> {chunk}")
        r.update(t_vmap_jacrev=t_v, vmap_jacrev_chunk_size=chunk, peak_gib_vmap_jacrev=peak_gib(),
                 vmap_jacrev_vs_engine=t_v / best["t_jacobian"])
        del Jv
    r["seconds_in_precision"] = time.perf_counter() - t_p
    runs[p] = r
    if G is not base:
        del G
res["precisions"] = runs

# psi's error in each precision against float64, same weights, on a smaller latent (one latent, seed 1)
set_precision("float32")
G64 = at_latent(base.net, ref_latent, torch.float64)
z64 = G64.sample_latents(1, seed=1)
D_ref = math.prod(G64.output_shape)
P64 = geom.random_projection(D_ref, k, seed=0, dtype=torch.float64, device=dev)
sp64 = geom.spectrum(geom.jacobian(G64, z64, projection=P64))
psi64, nu64 = float(geom.local_scaling(sp64)[0]), float(geom.local_rank(sp64)[0])
del G64
err = {"latent": ref_latent, "psi_float64": psi64, "nu_float64": nu64}
for p in precisions:
    dtype = set_precision(p)
    Gp = at_latent(base.net, ref_latent, dtype)
    sp = geom.spectrum(geom.jacobian(Gp, z64.to(dtype), projection=P64.to(dtype)))
    psi, nu = float(geom.local_scaling(sp)[0]), float(geom.local_rank(sp)[0])
    err[p] = {"psi": psi, "psi_abs_error": abs(psi - psi64), "psi_rel_error": abs(psi - psi64) / abs(psi64),
              "nu": nu, "nu_rel_error": abs(nu - nu64) / abs(nu64), "n_dropped_sv": int(sp.n_dropped[0])}
    del Gp
set_precision("float32")
res["psi_error_vs_float64"] = err
res["total_s"] = time.perf_counter() - t0
text = json.dumps(res, indent=1)
print(text)
if env("OUT"):
    os.makedirs(env("OUT"), exist_ok=True)
    with open(os.path.join(env("OUT"), "gpu_sd_decoder.json"), "w") as f:
        f.write(text + "\n")
PYTHON
