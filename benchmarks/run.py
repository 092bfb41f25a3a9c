"""Descriptor-engine benchmarks: ratios against the limit and against a naive loop (issue "Scale").

    .venv/bin/python benchmarks/run.py                  # all models, writes benchmarks/results.json
    .venv/bin/python benchmarks/run.py --models mlp     # a subset (mlp, tiny-ldm, dcgan-faces, sd-vae)

Headline ratios (``headline``; every model but the SD decoder, whose k = 16 run already takes minutes on a CPU):
* ``engine_vs_vmap_jacrev``: ``geom.jacobian(G, z, projection=P)`` (``mode="auto"``, as a user calls it)
  against ``torch.func.vmap(torch.func.jacrev(g))`` of the projected generator ``g(v) = G(v[None]) P``, what a
  researcher would write by hand (timed alternately, the minimum over ``reps`` each; outputs checked equal);
* ``engine_vs_compute_limit``: the engine's time against the FLOPs of one forward plus ``k`` VJPs
  (``torch.utils.flop_counter.FlopCounterMode``, batch ``B``, the projection included) divided by the float32
  matrix-multiply throughput measured in the same run (``torch.mm`` of two ``1024 x 1024`` matrices, the best of
  a measurement before and after the engine timings). Also reported: the FLOPs the engine actually executes, the
  forward-mode limit (``E`` JVPs) where ``E < k``, and a per-op profile (``torch.profiler``: time and achieved
  GFLOP/s per aten op), which says where the time above the limit goes.

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
TARGETS = {"engine_vs_limit": 1.5, "naive_vs_engine": 5.0, "delta_vs_forwards": 1.3}


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


def conv_layers(G, z: torch.Tensor, rows: int, reps: int = 2) -> list[dict]:
    """Each convolution / transposed convolution of ``G`` alone, at the batch the engine feeds it (``B * rows``
    samples: ``rows`` vmapped VJPs or JVPs of a batch of ``B``), in a plain no-grad forward: seconds, GFLOP
    (``FlopCounterMode``) and GFLOP/s, against the matmul throughput measured just before. This isolates the
    kernels' efficiency from the engine (vmap, autograd) around them."""
    shapes = {}
    convs = {n: m for n, m in G.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    hooks = [m.register_forward_pre_hook(lambda m_, a, n=n: shapes.setdefault(n, tuple(a[0].shape)) and None)
             for n, m in convs.items()]
    with torch.no_grad():
        G(z)
    for h in hooks:
        h.remove()
    out, thr = [], matmul_gflops()
    for n, m in convs.items():
        if n not in shapes:
            continue
        x = torch.randn(shapes[n][0] * rows, *shapes[n][1:], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            fl, _ = count_flops(lambda: m(x))
            t = measure(lambda: m(x), reps, warmup=1)[0]
        out.append({"layer": n, "type": type(m).__name__, "input": list(x.shape), "s": t, "gflop": fl / 1e9,
                    "gflops": fl / t / 1e9, "matmul_gflops": thr})
    return out


def headline(G, latent_shape, B: int, k: int, reps: int, profile_ops: bool = True) -> dict:
    """The two headline ratios of one model (see the module docs)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

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

    def vmap_jacrev():
        out["Jv"] = user(z.reshape(B, E))

    res["engine_mode"] = "forward" if E < k else "reverse"  # what mode="auto" picks
    runs = {"t_engine": engine, "t_vmap_jacrev": vmap_jacrev}
    if E < k:  # auto takes forward mode (E JVPs); also time the reverse engine (k VJPs), as jacrev does
        runs["t_engine_reverse"] = engine_reverse
    geom.jacobian(G, z[:1], projection=P)  # first calls (imports, dispatch set-up) are not timed
    user(z[:1].reshape(1, E))
    thr0 = matmul_gflops()
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(reps):  # alternate, so that all see the same load
        for key, fn in runs.items():
            times[key].append(measure(fn)[0])
    thr1 = matmul_gflops()
    torch.testing.assert_close(out["J"], out["Jv"], rtol=1e-3, atol=1e-4)
    res.update({key: min(v) for key, v in times.items()})
    res["times_all"] = times
    res.update(matmul_gflops=max(thr0, thr1), matmul_gflops_before_after=[thr0, thr1])

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
    if "t_engine_reverse" in res:
        res["engine_reverse_vs_compute_limit"] = res["t_engine_reverse"] / res["t_compute_limit"]
    res["ratios"] = {"engine_vs_vmap_jacrev": res["t_vmap_jacrev"] / res["t_engine"],
                     "engine_vs_compute_limit": res["t_engine"] / res["t_compute_limit"],
                     "engine_vs_compute_limit_forward_mode": res["t_engine"] / res["t_compute_limit_forward_mode"]}
    q = res["ratios"]
    print(f"  headline: vmap(jacrev) {res['t_vmap_jacrev']:.2f}s / engine {res['t_engine']:.2f}s = "
          f"{q['engine_vs_vmap_jacrev']:.2f}x; engine / compute limit {q['engine_vs_compute_limit']:.2f}x "
          f"(mm {res['matmul_gflops']:.0f} GFLOP/s, engine {res['engine_gflops']:.1f} GFLOP/s)", flush=True)
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


def headline_table(results: list[dict]) -> str:
    lines = ["| model | B | k | vmap(jacrev) / engine | engine / compute limit (target <= 1.5) | engine GFLOP/s "
             "| matmul GFLOP/s |", "|" + "---|" * 7]
    for r in results:
        h = r.get("headline")
        if h is None:
            continue
        q = h["ratios"]
        lines.append(f"| {r['model']} | {h['B']} | {h['k']} | {q['engine_vs_vmap_jacrev']:.2f} | "
                     f"{q['engine_vs_compute_limit']:.2f} | {h['engine_gflops']:.1f} | {h['matmul_gflops']:.0f} |")
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
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each timing (tiny-ldm, dcgan-faces)")
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
            r = bench("mlp 128-512-512-3072", G, ls, B=32, k=a.k, reps=5, naive_rows=None)
            r["headline"] = headline(G, ls, B=32, k=a.k, reps=3)
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
            if m == "dcgan-faces":  # the transposed convolutions alone, at the engine's forward-mode batch
                z = torch.randn(B, *ls, generator=torch.Generator().manual_seed(0))
                rows = conv_layers(G, z, rows=math.prod(ls) + 1)
                fl, t = sum(x["gflop"] for x in rows), sum(x["s"] for x in rows)
                r["headline"]["conv_layers"] = {"layers": rows, "gflop_total": fl, "s_total": t, "gflops_all": fl / t}
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
    doc = {"results": results, "skipped": skipped, "targets": TARGETS, "total_s": total,
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
