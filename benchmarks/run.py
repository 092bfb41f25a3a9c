"""Descriptor-engine benchmarks: ratios against the limit and against a naive loop (issue "Scale").

    .venv/bin/python benchmarks/run.py                  # all models, writes benchmarks/results.json
    .venv/bin/python benchmarks/run.py --models mlp     # a subset (mlp, tiny-ldm, dcgan-faces, sd-vae)

Headline ratios (``headline``; issue 26; every model but the SD decoder, whose k = 16 run already takes minutes
on a CPU), all measured in the same run, timed alternately, the minimum over ``reps`` of each:
* ``engine_vs_vmap_jacrev``: ``geom.jacobian(G, z, projection=P)`` (``mode="auto"``, as a user calls it; its first
  call at the shape, where auto decides the mode, is timed apart as ``t_engine_first_call``) against
  ``torch.func.vmap(torch.func.jacrev(g))`` of the projected generator ``g(v) = G(v[None]) P``, what a researcher
  writes by hand (outputs checked equal); both forced modes are timed too, so ``auto`` shows whether it picked
  the faster (``auto``);
* ``describe_vs_pipeline``: ``geom.describe`` (psi, nu, delta; k = 120, P = 4, r = 1e-5) against the hand-written
  pipeline of ``benchmarks/pipeline.py`` (vmap(jacrev), ``svdvals`` in float64, forward pre-hooks on the
  activations of a float64 copy over the 2P vertices); outputs checked equal (delta exactly);
* ``engine_vs_compute_limit``: the engine's time against the FLOPs of one forward plus ``k`` VJPs
  (``torch.utils.flop_counter.FlopCounterMode``, batch ``B``, the projection included) divided by the float32
  matrix-multiply throughput measured in the same run (``torch.mm`` of two ``1024 x 1024`` matrices, the best of
  a measurement before and after the engine timings). Also reported: the FLOPs the engine actually executes, the
  forward-mode limit (``E`` JVPs), and a per-op profile (``torch.profiler``: time and achieved GFLOP/s per aten
  op), which says where the time above the limit goes;
* ``engine_vs_conv_floor`` (models with convolutions): the engine against its convolution kernels alone at the
  batch it feeds them (``conv_floor``: the input-gradient kernels at ``k x B`` for reverse mode, the forward
  kernels at ``E x B`` for forward mode);
* ``delta_vs_forward32`` / ``delta_vs_forward64``: ``geom.local_complexity`` against one plain forward pass over
  the same ``2P`` vertices in float32 and in float64 (delta evaluates ``G`` in float64, ``geom.complexity``);
* peak resident memory of each (``peak_mb``, VmHWM above the resident size before the call).

Context (the previous comparisons), for each model, on the same latents in one process:
* ``engine``: ``geom.jacobian(G, z, projection=P)`` with ``k = 120`` (P precomputed as a sweep does; the QR
  of ``P`` is timed separately as ``projection_s``);
* ``limit``: one forward pass plus ``k`` VJPs, each timed alone (``t_fwd + k * t_vjp``): what any reverse-mode
  method needs;
* ``naive``: a loop over the samples of ``torch.autograd.functional.jacobian`` (one backward per output
  element, ``D`` of them) followed by ``P^T J``. For large ``D`` this is infeasible; then a subset of ``rows``
  output rows is timed and the loop extrapolated to ``D`` rows (``naive_extrapolated: true``);
* ``delta``: ``geom.local_complexity(G, z, radius, dim)`` vs plain forward passes over the same ``2 dim``
  cross-polytope vertices (one batched call) and vs ``2 dim + 1`` batched forwards of the latents;
* peak memory (``/proc/self/status`` VmHWM above the resident size before the call; reset through
  ``/proc/self/clear_refs``) of each.
Times are the minimum over ``reps`` repetitions. Ratios > 1 mean slower than the reference.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

import geom
from geom.jacobian import random_projection

HERE = Path(__file__).resolve().parent
TARGETS = {"engine_vs_limit": 1.5, "naive_vs_engine": 5.0, "delta_vs_forwards": 1.3}  # the context table
# issue 26, per model: (>= or <=, target)
TARGETS_26 = {"engine_vs_vmap_jacrev": (">=", 1.3), "describe_vs_pipeline": (">=", 1.5),
              "engine_vs_compute_limit": ("<=", {"mlp": 1.3, "dcgan-faces": 1.3, "tiny-ldm": 2.5}),
              "delta_vs_forward32": ("<=", 1.5)}


# --------------------------------------------------------------------------------------------- measuring
def _status_kb(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def measure(fn, reps: int = 1, warmup: int = 0) -> tuple[float, float]:
    """(min seconds over reps, peak extra resident memory in MB over the first measured call)."""
    for _ in range(warmup):
        fn()
    times, peak = [], 0.0
    for r in range(reps):
        _trim()
        base = _status_kb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        peak = max(peak, (_status_kb("VmHWM") - base) / 1024)
    return min(times), peak


# --------------------------------------------------------------------------------------------- models
def mlp_model():
    torch_gen = torch.Generator().manual_seed(0)
    sizes = (128, 512, 512, 3 * 32 * 32)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=torch_gen) * (2 / a) ** 0.5)
            lin.bias.copy_(torch.randn(b, generator=torch_gen) * 0.1)
        layers += [lin] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
    net = torch.nn.Sequential(*layers).eval()
    return net, (128,)


def registry_model(spec: str):
    from geom.models import load_generator

    G = load_generator(spec)
    return G, tuple(G.latent_shape)


# --------------------------------------------------------------------------------------------- headline
def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 5) -> float:
    """Best-of-``reps`` throughput of ``torch.mm`` on two ``n x n`` matrices (GFLOP/s, ``2 n^3`` per product)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g, dtype=dtype), torch.randn(n, n, generator=g, dtype=dtype)
    a @ b  # warm-up
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def count_flops(fn) -> tuple[float, dict[str, float]]:
    """(total FLOPs, FLOPs per aten op) of one call of ``fn`` (``FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with fc:
        fn()
    per_op = {str(op).replace(".", "::", 1): float(v) for op, v in fc.get_flop_counts().get("Global", {}).items()}
    return float(fc.get_total_flops()), per_op


def op_profile(fn, flops_per_op: dict[str, float], top: int = 6) -> list[dict]:
    """Per aten op of one call of ``fn``: self CPU seconds, share of the total, and for ops with a FLOP count
    their (inclusive) seconds and achieved GFLOP/s."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev) / 1e6
    rows = []
    for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:top]:
        rows.append({"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / 1e6 / total})
    for e in ev:
        if e.key in flops_per_op and e.cpu_time_total > 0:
            rows.append({"op": e.key, "inclusive_s": e.cpu_time_total / 1e6, "gflop": flops_per_op[e.key] / 1e9,
                         "gflops": flops_per_op[e.key] / (e.cpu_time_total / 1e6) / 1e9})
    return rows


def same_jacobian(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-3) -> dict:
    """Check that two computations of the same float32 Jacobians ``(B, k, E)`` agree: per sample, the relative
    Frobenius difference is at most ``rel``. Elementwise they agree to rounding (~1e-7 relative), except in a
    sample where a pre-activation lies within rounding of a ReLU's kink: there the two code paths may put it on
    different sides (dcgan-faces, B = 8: one neuron of sample 2, |x| = 1e-7, differs between torch's batch_norm
    and the engine's affine BatchNorm), which changes a few hundred entries by up to ~1e-3, a valid float32
    Jacobian either way. Returns the largest relative difference, the largest elementwise one and the samples
    whose entries differ by more than 1e-4 + 1e-3 |b|."""
    diff = (a - b).flatten(1)
    r = (diff.norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-30))
    assert float(r.max()) <= rel, f"Jacobians differ: relative Frobenius difference per sample {r.tolist()}"
    off = (diff.abs() > 1e-4 + 1e-3 * b.flatten(1).abs()).any(dim=1).nonzero().flatten().tolist()
    return {"max_rel_frobenius": float(r.max()), "max_abs": float(diff.abs().max()), "samples_elementwise_off": off}


def conv_floor(G, z: torch.Tensor, k: int, reps: int = 2) -> dict:
    """The convolution kernels alone, as each mode of the engine runs them (issue 26: where a kernel sets the
    floor): every ``Conv2d`` / ``ConvTranspose2d`` of ``G`` at the batch the engine feeds it, timed alone
    (no autograd, no vmap). Reverse mode: the input-gradient kernel (``aten.convolution_backward``, input
    gradient only) at ``k x B`` samples, plus the forward pass at ``B``; forward mode: the forward kernel at
    ``E x B`` (tangents) plus ``B`` (primal). Seconds per layer and in total; GFLOP/s from ``FlopCounterMode``."""
    shapes = {}
    convs = {n: m for n, m in G.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    hooks = [m.register_forward_pre_hook(lambda m_, a, n=n: shapes.setdefault(n, tuple(a[0].shape)) and None)
             for n, m in convs.items()]
    with torch.no_grad():
        G(z)
    for h in hooks:
        h.remove()
    B, E = z.shape[0], math.prod(z.shape[1:])
    gen = torch.Generator().manual_seed(0)
    layers, tot = [], {"reverse": 0.0, "forward": 0.0, "forward_pass": 0.0}
    for n, m in convs.items():
        if n not in shapes:
            continue
        x1 = torch.randn(*shapes[n], generator=gen)
        transposed = isinstance(m, torch.nn.ConvTranspose2d)
        with torch.no_grad():
            y1 = m(x1)
            t_fwd_b = measure(lambda: m(x1), reps, warmup=1)[0]
            xr = x1.repeat(k, 1, 1, 1)
            gr = torch.randn(k * B, *y1.shape[1:], generator=gen)
            out_pad = list(getattr(m, "output_padding", (0, 0)))

            def bwd():
                return torch.ops.aten.convolution_backward(gr, xr, m.weight, None, list(m.stride), list(m.padding),
                                                           list(m.dilation), transposed, out_pad, m.groups,
                                                           [True, False, False])
            t_bwd = measure(bwd, reps, warmup=1)[0]
            fl_bwd = count_flops(bwd)[0]
            xf = x1.repeat(E, 1, 1, 1)
            t_jvp = measure(lambda: m(xf), reps, warmup=1)[0]
            fl_jvp = count_flops(lambda: m(xf))[0]
        layers.append({"layer": n, "type": type(m).__name__, "input": list(x1.shape), "s_forward_B": t_fwd_b,
                       "s_input_grad_kB": t_bwd, "gflops_input_grad": fl_bwd / t_bwd / 1e9,
                       "s_forward_EB": t_jvp, "gflops_forward_EB": fl_jvp / t_jvp / 1e9})
        tot["reverse"] += t_bwd + t_fwd_b
        tot["forward"] += t_jvp + t_fwd_b
        tot["forward_pass"] += t_fwd_b
    return {"layers": layers, "s_reverse": tot["reverse"], "s_forward": tot["forward"],
            "s_forward_pass": tot["forward_pass"]}


def headline(G, latent_shape, B: int, k: int, reps: int, profile_ops: bool = True, dim: int = 4,
             radius: float = 1e-5) -> dict:
    """The ratios issue 26 names, for one model, measured in one run (see the module docs): the engine
    (``mode="auto"``, and each mode forced) against ``vmap(jacrev)`` and the FLOP limit, its peak memory, the
    convolution kernels alone (``conv_floor``), ``geom.describe`` against the hand-written pipeline
    (``pipeline.hand_pipeline``, outputs checked equal), and delta against plain forward passes over its vertices
    in float32 and in float64."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from pipeline import float64_copy, hand_pipeline

    z = torch.randn(B, *latent_shape, generator=torch.Generator().manual_seed(0))
    E = math.prod(latent_shape)
    with torch.no_grad():
        D = math.prod(G(z[:1]).shape[1:])
    P = random_projection(D, k, seed=0)
    res: dict = {"B": B, "k": k, "E": E, "D": D, "reps": reps}
    out = {}

    def g1(v):  # one latent (E,) -> projected output (k,): what a user would differentiate
        with sdpa_kernel([SDPBackend.MATH]):  # diffusers attention needs it under vmap, as in the engine
            return G(v.reshape(1, *latent_shape)).reshape(-1) @ P

    user = torch.func.vmap(torch.func.jacrev(g1))

    def engine():
        out["J"] = geom.jacobian(G, z, projection=P)

    def engine_reverse():
        out["Jr"] = geom.jacobian(G, z, projection=P, mode="reverse")

    def engine_forward():
        out["Jf"] = geom.jacobian(G, z, projection=P, mode="forward")

    def vmap_jacrev():
        out["Jv"] = user(z.reshape(B, E))

    user(z[:1].reshape(1, E))  # first call (imports, dispatch set-up) not timed
    # the first auto call at this shape decides the mode and layout by rule (shapes, layer types) and the
    # chunk size from the memory budget: timed on its own, then every later call reuses the decision
    res["t_engine_first_call"], res["mem_engine_first_call_mb"] = measure(engine)
    plan = geom.jacobian_plan(G, z, projection=P)
    res["plan"] = {"mode": plan.mode, "layout": plan.layout, "reason": plan.reason, "chunk_size": plan.chunk_size,
                   "bytes_per_pass": plan.bytes_per_pass, "memory_budget": plan.memory_budget}
    # mode="tune" measures the candidates (modes between the shape thresholds, layouts for 2-D convolutions):
    # does the rule pick what the measurement picks? (a check of auto's rule, once per model)
    geom.jacobian(G, z, projection=P, mode="tune")
    tuned = geom.jacobian_plan(G, z, projection=P, mode="tune")
    res["tune"] = {"mode": tuned.mode, "layout": tuned.layout, "reason": tuned.reason,
                   "seconds": dict(tuned.seconds),
                   "auto_agrees": (tuned.mode, tuned.layout) == (plan.mode, plan.layout)}
    res["engine_mode"] = plan.mode
    n_pass = plan.chunk_size or plan.passes
    res["memory_estimate"] = {  # what chunk_size is chosen from (geom.jacobian.pass_bytes) vs the measured peak
        "bytes_per_pass_per_latent": plan.bytes_per_pass, "passes_at_once": n_pass,
        "estimate_mb": B * plan.bytes_per_pass * (n_pass + 1) / 2 ** 20 if plan.bytes_per_pass else None,
        "peak_mb_first_call": res["mem_engine_first_call_mb"]}
    runs = {"t_engine": engine, "t_engine_reverse": engine_reverse, "t_engine_forward": engine_forward,
            "t_vmap_jacrev": vmap_jacrev}
    thr0 = matmul_gflops()
    times: dict[str, list[float]] = {key: [] for key in runs}
    mems: dict[str, float] = {key: 0.0 for key in runs}
    for _ in range(reps):  # alternate, so that all see the same load
        for key, fn in runs.items():
            t, mem = measure(fn)
            times[key].append(t)
            mems[key] = max(mems[key], mem)
    thr1 = matmul_gflops()
    res["jacobians_agree"] = {key: same_jacobian(out["J"], out[key]) for key in ("Jr", "Jf", "Jv")}
    res.update({key: min(v) for key, v in times.items()})
    res["times_all"] = times
    res["peak_mb"] = {key.replace("t_", ""): v for key, v in mems.items()}
    res.update(matmul_gflops=max(thr0, thr1), matmul_gflops_before_after=[thr0, thr1])
    faster = "reverse" if res["t_engine_reverse"] <= res["t_engine_forward"] else "forward"
    res["auto"] = {"picked": plan.mode, "faster_forced_mode": faster, "picked_the_faster": plan.mode == faster,
                   "forced_ratio_slower_vs_faster": max(res["t_engine_reverse"], res["t_engine_forward"])
                   / min(res["t_engine_reverse"], res["t_engine_forward"])}

    # FLOPs: forward (with the projection), one VJP and one JVP of the batch, and the engine as it runs
    zz = z.reshape(B, E).clone().requires_grad_(True)

    def f(v):
        with sdpa_kernel([SDPBackend.MATH]):
            return G(v.reshape(B, *latent_shape)).reshape(B, -1) @ P
    with torch.no_grad():
        res["flops_fwd"], _ = count_flops(lambda: f(zz.detach()))
    y = f(zz)
    cot = torch.zeros_like(y)
    cot[:, 0] = 1
    res["flops_vjp"], _ = count_flops(lambda: torch.autograd.grad(y, zz, cot, retain_graph=True))
    del y
    # a JVP of the counted ops (matmuls, convolutions: linear in the tangent) costs one forward's FLOPs
    # (FlopCounterMode counts torch.func.jvp's primal and tangent passes together, so it is not used here)
    res["flops_jvp"] = res["flops_fwd"]
    res["flops_engine"], per_op = count_flops(engine)
    res["flops_engine_per_op"] = per_op
    thr = res["matmul_gflops"] * 1e9
    res["t_compute_limit"] = (res["flops_fwd"] + k * res["flops_vjp"]) / thr
    res["t_compute_limit_forward_mode"] = (res["flops_fwd"] + E * res["flops_jvp"]) / thr
    res["engine_gflops"] = res["flops_engine"] / res["t_engine"] / 1e9
    if profile_ops:
        res["op_profile"] = op_profile(engine, per_op)
    if any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in G.modules()):
        res["conv_floor"] = conv_floor(G, z, k, reps=2)
        res["conv_floor"]["engine_vs_floor"] = res["t_engine"] / res["conv_floor"][f"s_{plan.mode}"]
        res["conv_floor"]["floor_vs_compute_limit"] = res["conv_floor"][f"s_{plan.mode}"] / res["t_compute_limit"]

    # describe (psi, nu, delta) against the hand-written pipeline, same latents and settings
    G64 = float64_copy(G)
    pipe_out = {}

    def describe():
        pipe_out["describe"] = geom.describe(G, z, k=k, radius=radius, dim=dim, seed=0, batch_size=B,
                                             progress=False)

    def pipeline():
        pipe_out["pipeline"] = hand_pipeline(G, z, k=k, radius=radius, dim=dim, seed=0, G64=G64)

    basis = geom.polytope_basis(E, dim, seed=0)
    verts = geom.cross_polytope(z, radius, basis, dtype=torch.float64).reshape(B * 2 * dim, *latent_shape)
    verts32 = verts.float()

    def delta():
        geom.local_complexity(G, z, radius=radius, dim=dim, basis=basis)

    def fwd_vertices32():
        with torch.no_grad():
            G(verts32)

    def fwd_vertices64():
        with torch.no_grad():
            G64(verts)

    runs = {"t_describe": describe, "t_pipeline": pipeline, "t_delta": delta, "t_fwd_vertices32": fwd_vertices32,
            "t_fwd_vertices64": fwd_vertices64}
    for fn in runs.values():
        fn()  # warm-up: first float64 kernels, hooks
    times = {key: [] for key in runs}
    for _ in range(reps):
        for key, fn in runs.items():
            t, mem = measure(fn)
            times[key].append(t)
            res.setdefault("peak_mb", {})[key.replace("t_", "")] = max(res["peak_mb"].get(key.replace("t_", ""), 0),
                                                                        mem)
    res.update({key: min(v) for key, v in times.items()})
    res["times_all"].update(times)
    d, p = pipe_out["describe"], pipe_out["pipeline"]
    res["describe_vs_pipeline_outputs"] = {
        "psi_max_abs_diff": float(abs(d["psi"].to_numpy() - p["psi"]).max()),
        "nu_max_abs_diff": float(abs(d["nu"].to_numpy() - p["nu"]).max()),
        "delta_equal": bool((d["delta"].to_numpy() == p["delta"]).all()),
        "n_dropped_sv": int(d["n_dropped_sv"].sum())}
    import numpy as np
    np.testing.assert_allclose(d["psi"].to_numpy(), p["psi"], rtol=1e-4, atol=1e-2)  # float32 J, see same_jacobian
    np.testing.assert_allclose(d["nu"].to_numpy(), p["nu"], rtol=1e-4, atol=1e-4)
    assert res["describe_vs_pipeline_outputs"]["delta_equal"], (d["delta"].to_numpy(), p["delta"])

    res["ratios"] = {"engine_vs_vmap_jacrev": res["t_vmap_jacrev"] / res["t_engine"],
                     "describe_vs_pipeline": res["t_pipeline"] / res["t_describe"],
                     "engine_vs_compute_limit": res["t_engine"] / res["t_compute_limit"],
                     "engine_vs_compute_limit_forward_mode": res["t_engine"] / res["t_compute_limit_forward_mode"],
                     "delta_vs_forward32": res["t_delta"] / res["t_fwd_vertices32"],
                     "delta_vs_forward64": res["t_delta"] / res["t_fwd_vertices64"],
                     "forward64_vs_forward32": res["t_fwd_vertices64"] / res["t_fwd_vertices32"]}
    if "conv_floor" in res:
        res["ratios"]["engine_vs_conv_floor"] = res["conv_floor"]["engine_vs_floor"]
    q = res["ratios"]
    print(f"  headline: engine ({plan.mode}; {plan.reason}) {res['t_engine']:.2f}s, reverse "
          f"{res['t_engine_reverse']:.2f}s, forward {res['t_engine_forward']:.2f}s, vmap(jacrev) "
          f"{res['t_vmap_jacrev']:.2f}s = {q['engine_vs_vmap_jacrev']:.2f}x; engine / FLOP limit "
          f"{q['engine_vs_compute_limit']:.2f}x (mm {res['matmul_gflops']:.0f} GFLOP/s); describe "
          f"{res['t_describe']:.2f}s vs pipeline {res['t_pipeline']:.2f}s = {q['describe_vs_pipeline']:.2f}x; "
          f"delta / fwd32 {q['delta_vs_forward32']:.2f}, / fwd64 {q['delta_vs_forward64']:.2f}", flush=True)
    print(f"  auto: {plan.mode}/{plan.layout}; tune measured {res['tune']['mode']}/{res['tune']['layout']} "
          f"({res['tune']['reason']}); agree: {res['tune']['auto_agrees']}", flush=True)
    return res


# --------------------------------------------------------------------------------------------- one model
def bench(name: str, G, latent_shape, B: int, k: int, reps: int, naive_rows: int | None, dim: int = 4,
          radius: float = 1e-5, chunk_size: int | None = None, naive_samples: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(B, *latent_shape, generator=g)
    E = math.prod(latent_shape)
    with torch.no_grad():
        D = math.prod(G(z[:1]).shape[1:])
    res: dict = {"model": name, "B": B, "k": k, "E": E, "D": D, "reps": reps, "chunk_size": chunk_size}
    print(f"[{name}] B={B} k={k} E={E} D={D}", flush=True)

    t0 = time.perf_counter()
    P = random_projection(D, k, seed=0)
    res["projection_s"] = time.perf_counter() - t0

    # limit: one forward + k VJPs, each timed alone
    def fwd():
        with torch.no_grad():
            G(z)
    res["t_fwd"], res["mem_fwd_mb"] = measure(fwd, reps, warmup=1 if reps > 1 else 0)
    zz = z.clone().requires_grad_(True)
    y = (G(zz).reshape(B, -1) @ P)  # graph kept for the VJPs
    cot = torch.zeros_like(y)
    cot[:, 0] = 1

    def vjp():
        torch.autograd.grad(y, zz, cot, retain_graph=True)
    res["t_vjp"], res["mem_vjp_mb"] = measure(vjp, max(reps, 2))
    del y
    res["t_limit"] = res["t_fwd"] + k * res["t_vjp"]
    print(f"  fwd {res['t_fwd']:.3f}s vjp {res['t_vjp']:.3f}s limit {res['t_limit']:.2f}s", flush=True)

    # engine
    mode = "reverse" if E >= k else "auto"
    out = {}

    def engine():
        out["J"] = geom.jacobian(G, z, projection=P, chunk_size=chunk_size, mode=mode)
    res["engine_mode"] = mode
    res["t_engine"], res["mem_engine_mb"] = measure(engine, reps)
    print(f"  engine {res['t_engine']:.2f}s  ({res['t_engine'] / res['t_limit']:.2f}x limit)", flush=True)

    # naive: per-sample torch.autograd.functional.jacobian (D backward passes) then P^T J
    zs = z[:naive_samples]
    if naive_rows is None:
        def naive():
            Js = []
            for b in range(zs.shape[0]):
                Jb = torch.autograd.functional.jacobian(lambda v: G(v[None]).reshape(-1), zs[b])
                Js.append(P.T @ Jb.reshape(D, E))
            out["Jn"] = torch.stack(Js)
        t, mem = measure(naive, 1)
        res["t_naive_per_latent"] = t / zs.shape[0]
        res["naive_extrapolated"] = False
        torch.testing.assert_close(out["Jn"], out["J"][:naive_samples], rtol=1e-3, atol=1e-4)
    else:
        # the same loop as functional.jacobian (one autograd.grad per output element), for naive_rows rows
        v = zs[0].clone().requires_grad_(True)

        def fwd1():
            return G(v[None]).reshape(-1)
        t_f, mem = measure(lambda: out.__setitem__("y1", fwd1()), 1)
        y1 = out.pop("y1")
        rows = torch.randperm(D, generator=g)[:naive_rows]

        def some_rows():
            for i in rows.tolist():
                torch.autograd.grad(y1[i], v, retain_graph=True)
        t_r, mem_r = measure(some_rows, 1)
        del y1
        res["t_naive_per_latent"] = t_f + D * t_r / naive_rows + 0.0
        res["naive_extrapolated"] = True
        res["naive_rows_timed"] = naive_rows
        mem = max(mem, mem_r)
    res["mem_naive_mb"] = mem
    res["t_engine_per_latent"] = res["t_engine"] / B
    print(f"  naive {res['t_naive_per_latent']:.2f}s/latent{' (extrapolated)' if res['naive_extrapolated'] else ''}"
          f" -> {res['t_naive_per_latent'] / res['t_engine_per_latent']:.1f}x engine", flush=True)

    # delta vs plain forwards of the same vertices
    basis = random_projection(E, dim, seed=1).T

    def delta():
        geom.local_complexity(G, z, radius=radius, dim=dim, basis=basis)
    res["t_delta"], res["mem_delta_mb"] = measure(delta, reps)
    verts = geom.cross_polytope(z, radius, basis).reshape(B * 2 * dim, *latent_shape)

    def fwd_verts():
        with torch.no_grad():
            G(verts)
    res["t_fwd_vertices"], res["mem_fwd_vertices_mb"] = measure(fwd_verts, reps)
    res["t_2dim1_forwards"] = (2 * dim + 1) * res["t_fwd"]
    print(f"  delta {res['t_delta']:.2f}s vs vertex forward {res['t_fwd_vertices']:.2f}s", flush=True)

    res["ratios"] = {
        "engine_vs_limit": res["t_engine"] / res["t_limit"],
        "naive_vs_engine": res["t_naive_per_latent"] / res["t_engine_per_latent"],
        "delta_vs_forwards": res["t_delta"] / res["t_fwd_vertices"],
        "delta_vs_2dim1_forwards": res["t_delta"] / res["t_2dim1_forwards"],
    }
    return res


def table(results: list[dict]) -> str:
    hdr = ("| model | B | k | E | D | engine / limit (<= 1.5) | naive / engine (>= 5) | delta / forwards (<= 1.3) "
           "| delta / (2P+1) fwd | peak MB engine / naive / delta |")
    lines = [hdr, "|" + "---|" * 10]
    for r in results:
        q = r["ratios"]
        ok = lambda v, t, ge=False: f"{v:.2f}" + (" ✓" if (v >= t if ge else v <= t) else " ✗")
        lines.append(
            f"| {r['model']} | {r['B']} | {r['k']} | {r['E']} | {r['D']} | {ok(q['engine_vs_limit'], 1.5)} | "
            f"{ok(q['naive_vs_engine'], 5, True)}{' (extrap.)' if r['naive_extrapolated'] else ''} | "
            f"{ok(q['delta_vs_forwards'], 1.3)} | {q['delta_vs_2dim1_forwards']:.2f} | "
            f"{r['mem_engine_mb']:.0f} / {r['mem_naive_mb']:.0f} / {r['mem_delta_mb']:.0f} |")
    return "\n".join(lines)


def _target(key: str, model: str):
    op, t = TARGETS_26[key]
    if isinstance(t, dict):
        t = next((v for name, v in t.items() if model.startswith(name)), None)
    return op, t


def _ok(value: float, key: str, model: str) -> str:
    op, t = _target(key, model)
    if t is None:
        return f"{value:.2f}"
    good = value >= t if op == ">=" else value <= t
    return f"{value:.2f} {'✓' if good else '✗'}"


def headline_table(results: list[dict]) -> str:
    """The ratios of issue 26, one row per model (targets: TARGETS_26)."""
    lines = ["| model | B | k | auto: mode (reverse / forward s) | vmap(jacrev) / engine (>= 1.3) | describe vs "
             "pipeline (>= 1.5) | engine / FLOP limit (<= 1.3; tiny-ldm <= 2.5) | engine / conv kernels alone | "
             "delta / fp32 vertex forward (<= 1.5) | delta / fp64 vertex forward | peak MB engine / vmap(jacrev) "
             "| engine GFLOP/s | matmul GFLOP/s |", "|" + "---|" * 13]
    for r in results:
        h = r.get("headline")
        if h is None:
            continue
        q, m, a = h["ratios"], r["key"], h["auto"]
        pick = (f"{a['picked']}{'' if a['picked_the_faster'] else ' (slower)'} ({h['t_engine_reverse']:.2f} / "
                f"{h['t_engine_forward']:.2f})")
        floor = f"{q['engine_vs_conv_floor']:.2f}" if "engine_vs_conv_floor" in q else "-"
        lines.append(f"| {r['model']} | {h['B']} | {h['k']} | {pick} | "
                     f"{_ok(q['engine_vs_vmap_jacrev'], 'engine_vs_vmap_jacrev', m)} | "
                     f"{_ok(q['describe_vs_pipeline'], 'describe_vs_pipeline', m)} | "
                     f"{_ok(q['engine_vs_compute_limit'], 'engine_vs_compute_limit', m)} | {floor} | "
                     f"{_ok(q['delta_vs_forward32'], 'delta_vs_forward32', m)} | {q['delta_vs_forward64']:.2f} | "
                     f"{h['peak_mb']['engine']:.0f} / {h['peak_mb']['vmap_jacrev']:.0f} | {h['engine_gflops']:.1f} | "
                     f"{h['matmul_gflops']:.0f} |")
    return "\n".join(lines)


def _code_state() -> dict:
    """The commit measured and the uncommitted files of geom/ (the benchmark runs the working tree)."""
    import subprocess

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True,
                                  timeout=30).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted_geom_files": [ln[3:] for ln in git("status", "--porcelain", "geom").splitlines()]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", default="mlp,tiny-ldm,dcgan-faces,sd-vae",
                    help="comma-separated models to time")
    ap.add_argument("--reps", type=int, default=2,
                    help="repetitions of each headline timing (every model) and of the context timings of "
                         "tiny-ldm and dcgan-faces")
    ap.add_argument("--k", type=int, default=120, help="output projection dimension (paper: 120)")
    ap.add_argument("--sd-k", type=int, default=16,
                    help="k for the SD-VAE decoder (k=120 takes ~120 VJPs of ~2-10 s each on a shared 2-core CPU; "
                         "the k=120 figures are then extrapolated linearly in k, see results.json)")
    ap.add_argument("--sd-chunk", type=int, default=None, help="chunk_size of the SD-VAE engine run")
    ap.add_argument("--out", default=str(HERE / "results.json"), help="JSON file the results are written to")
    ap.add_argument("--note", default=None, help="a remark stored in the results (e.g. the machine's load)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other models' entries already in --out (replace only those run now)")
    a = ap.parse_args(argv)
    results, skipped = [], {}
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    for m in a.models.split(","):
        if m == "mlp":
            G, ls = mlp_model()
            r = bench("mlp 128-512-512-3072", G, ls, B=32, k=a.k, reps=5, naive_rows=256)
            r["headline"] = headline(G, ls, B=32, k=a.k, reps=a.reps)
            r["key"] = m
            results.append(r)
        elif m in ("tiny-ldm", "dcgan-faces"):
            try:
                G, ls = registry_model(m)
            except (FileNotFoundError, ImportError) as e:  # checkpoint / package not installed
                skipped[m] = f"{type(e).__name__}: {e}"
                print(f"[{m}] skipped: {skipped[m]}", flush=True)
                continue
            name = {"tiny-ldm": "tiny-ldm decoder", "dcgan-faces": "dcgan-faces (DCGAN 100 -> 3x64x64)"}[m]
            B = {"tiny-ldm": 4, "dcgan-faces": 8}[m]
            r = bench(name, G, ls, B=B, k=a.k, reps=a.reps, naive_rows=16)
            r["headline"] = headline(G, ls, B=B, k=a.k, reps=a.reps)
            r["key"] = m
            results.append(r)
        elif m == "sd-vae":
            G, ls = registry_model("sd-vae-random:16")
            r = bench("SD v1 VAE decoder (random), 16x16 latent", G, ls, B=1, k=a.sd_k, reps=1,
                      naive_rows=4, chunk_size=a.sd_chunk)
            if a.sd_k != a.k:  # engine and limit are affine in k: t(k) = t_fwd + k * per-row cost
                per_row = (r["t_engine"] - r["t_fwd"]) / a.sd_k
                r["extrapolated_k"] = {"k": a.k, "t_limit": r["t_fwd"] + a.k * r["t_vjp"],
                                       "t_engine": r["t_fwd"] + a.k * per_row}
                r["extrapolated_k"]["engine_vs_limit"] = (r["extrapolated_k"]["t_engine"]
                                                          / r["extrapolated_k"]["t_limit"])
                r["extrapolated_k"]["naive_vs_engine"] = r["t_naive_per_latent"] / r["extrapolated_k"]["t_engine"]
            r["key"] = m
            results.append(r)
        else:
            raise SystemExit(f"unknown model {m!r}")
    if a.merge and Path(a.out).exists():
        old = json.loads(Path(a.out).read_text())
        ran = {r["model"] for r in results} | set(skipped)
        results = [r for r in old.get("results", []) if r["model"] not in ran] + results
        skipped = {**{k_: v for k_, v in old.get("skipped", {}).items() if k_ not in ran and
                      not any(k_ in r["model"] for r in results)}, **skipped}
    total = time.perf_counter() - t_start
    if a.merge and Path(a.out).exists():
        total += json.loads(Path(a.out).read_text()).get("total_s", 0.0)  # runtime of all runs merged
    doc = {"results": results, "skipped": skipped, "targets": TARGETS, "targets_issue26": TARGETS_26,
           "total_s": total,
           "machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "python": sys.version.split()[0], "cpus": os.cpu_count(),
                       "load_average_1_5_15min_start_end": [list(load_start), list(os.getloadavg())]},
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "code": _code_state()}
    if a.note:
        doc["note"] = a.note
    Path(a.out).write_text(json.dumps(doc, indent=1))
    print()
    print(headline_table(results))
    print()
    print(table(results))
    for k_, v in skipped.items():
        print(f"\nskipped {k_}: {v}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # one line, no traceback: nothing is half-written (results.json is written at the end)
        print("benchmarks/run.py: interrupted; results.json is unchanged. Run the same command again (a run is not "
              "resumable; --models <names> --merge adds single models to the existing results).", file=sys.stderr)
        sys.exit(130)
