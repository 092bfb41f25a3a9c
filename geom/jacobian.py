"""Random projections and per-sample Jacobians of a generator (Humayun et al., Sec. 2.1).

A generator ``G`` maps a batch of latents ``(B, *latent_shape)`` to a batch of outputs ``(B, *out_shape)``.
For each sample we want ``A = d P^T vec(G(z)) / d vec(z)`` of shape ``(k, E)``, where ``E = prod(latent_shape)``,
``D = prod(out_shape)`` and ``P`` is an optional ``(D, k)`` matrix with orthonormal columns (the paper projects
the output to ``k = 120`` dimensions before the SVD to make large decoders tractable).

Samples are assumed independent under ``G`` (no batch-coupled layers such as BatchNorm in training mode):
then one batched backward pass with cotangent ``e_j`` on every sample yields row ``j`` of every sample's
Jacobian. We vmap that VJP over the ``k`` cotangents (``torch.func.vjp`` + ``torch.vmap``, chunked), or use
forward mode (JVPs over the ``E`` latent directions) when ``E`` is smaller than the output dimension.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

Generator = Callable[[Tensor], Tensor]


def random_projection(D: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """Random matrix ``P`` of shape ``(D, k)`` with orthonormal columns (``P^T P = I_k``).

    Drawn as the Q factor of a Gaussian ``(D, k)`` matrix (signs fixed so that ``diag(R) > 0``), i.e.
    uniformly from the Stiefel manifold. Seeded by a local ``torch.Generator``; global RNG untouched.
    Used for the output projection of Humayun et al. Sec. 2.1 (``k = 120``) and for cross-polytope bases.
    """
    D, k = int(D), int(k)
    if k < 1 or D < 1:
        raise ValueError(f"random_projection needs D >= 1 and k >= 1, got D={D}, k={k}")
    if k > D:
        raise ValueError(f"random_projection: k={k} is larger than D={D}; an orthonormal (D, k) matrix "
                         f"needs k <= D (use k=None for no projection)")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    g = torch.randn(D, k, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(g, mode="reduced")
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
    return q.to(dtype=dtype, device=device)


def check_latents(z: Tensor, name: str = "z") -> None:
    """Raise a clear error for a latent batch that is not a floating tensor ``(B, *latent_shape)``
    of finite values."""
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, *latent_shape), got {type(z).__name__}")
    if z.ndim < 2:
        raise ValueError(f"{name} must have a batch dimension: expected (B, *latent_shape), got shape "
                         f"{tuple(z.shape)}; use z[None] for a single latent")
    if z.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(z.shape)})")
    if not torch.is_floating_point(z):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    if not torch.isfinite(z).all():
        bad = (~torch.isfinite(z)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"{name} contains NaN or inf values (batch rows {bad[:10]})")


def _check_batch_independent(G: Generator) -> None:
    if isinstance(G, nn.Module):
        for name, m in G.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
                raise ValueError(f"module '{name}' is a BatchNorm in training mode, which couples the samples of "
                                 f"a batch; call G.eval() before computing per-sample Jacobians")


def _call(G: Generator, z: Tensor) -> Tensor:
    try:
        y = G(z)
    except Exception as e:  # re-raise with the shape that was fed, the commonest mistake
        raise ValueError(f"calling the generator on a latent batch of shape {tuple(z.shape)} failed: "
                         f"{type(e).__name__}: {e}") from e
    if not isinstance(y, Tensor):
        raise TypeError(f"the generator must return a Tensor (B, *out_shape), got {type(y).__name__}; wrap it, "
                        f"e.g. lambda z: vae.decode(z).sample")
    if y.ndim < 1 or y.shape[0] != z.shape[0]:
        raise ValueError(f"the generator returned shape {tuple(y.shape)} for a batch of {z.shape[0]} latents; "
                         f"expected (B, *out_shape) with B={z.shape[0]}")
    return y


def output_dim(G: Generator, z: Tensor) -> int:
    """``D = prod(out_shape)``, found by one forward pass on the first latent of ``z`` ``(B, *latent_shape)``."""
    with torch.no_grad():
        return math.prod(_call(G, z[:1]).shape[1:])


def jacobian(G: Generator, z: Tensor, k: int | None = None, seed: int = 0, projection: Tensor | None = None,
             chunk_size: int | None = None, mode: str = "auto") -> Tensor:
    """Per-sample Jacobian of the (optionally projected) flattened output w.r.t. the flattened latent.

    Args:
        G: callable ``(B, *latent_shape) -> (B, *out_shape)`` (an ``nn.Module``, or e.g.
            ``lambda z: vae.decode(z).sample`` for a diffusers ``AutoencoderKL``).
        z: latents ``(B, *latent_shape)``, finite.
        k: project the output onto ``k`` random orthonormal directions (``random_projection(D, k, seed)``).
            ``None``: no projection (full ``D x E`` Jacobian).
        seed: seed of the projection when ``k`` is given.
        projection: explicit ``(D, k)`` projection matrix (overrides ``k``/``seed``).
        chunk_size: how many VJPs (or JVPs) are vmapped at once (memory vs speed); ``None``: all at once.
        mode: ``"reverse"`` (vmap over VJPs, one per output row), ``"forward"`` (vmap over JVPs, one per latent
            direction) or ``"auto"`` (forward when ``E`` < number of output rows, falling back to reverse
            if an operation has no forward-mode derivative).

    Returns:
        ``(B, k, E)`` with a projection, else ``(B, D, E)``; dtype of ``G``'s output.
        Row ``i`` of sample ``b`` is ``d <P[:, i], vec G(z)[b]> / d vec z[b]`` (Humayun et al., Sec. 2.1:
        ``A_z = P^T J_G(z)``).
    """
    check_latents(z)
    _check_batch_independent(G)
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    B, latent_shape = z.shape[0], tuple(z.shape[1:])
    E = math.prod(latent_shape)
    with torch.no_grad():
        y0 = _call(G, z[:1])
    D = math.prod(y0.shape[1:])
    if projection is None and k is not None:
        if k > D:
            raise ValueError(f"k={k} is larger than the output dimension D={D}; use k=None (no projection) "
                             f"or k <= {D}")
        projection = random_projection(D, k, seed=seed, dtype=y0.dtype, device=y0.device)
    if projection is not None:
        if projection.ndim != 2 or projection.shape[0] != D:
            raise ValueError(f"projection must have shape (D, k) = ({D}, k), got {tuple(projection.shape)}")
        projection = projection.to(dtype=y0.dtype, device=y0.device)
    rows = D if projection is None else projection.shape[1]

    def f(zz: Tensor) -> Tensor:  # (B, E) -> (B, rows)
        # the math SDPA kernel is a composite of matmul/softmax: it has vmap batching rules and forward-mode
        # derivatives, which the fused CPU/flash kernels lack (diffusers attention blocks call SDPA)
        with sdpa_kernel([SDPBackend.MATH]):
            y = G(zz.reshape(zz.shape[0], *latent_shape))
        if y.shape[0] != zz.shape[0]:
            raise ValueError(f"the generator returned shape {tuple(y.shape)} for a batch of {zz.shape[0]} "
                             f"latents; expected (B, *out_shape) with B={zz.shape[0]}")
        y = y.reshape(zz.shape[0], -1)
        return y if projection is None else y @ projection

    zf = z.detach().reshape(B, E)
    use_forward = mode == "forward" or (mode == "auto" and E < rows)
    if use_forward:
        try:
            return _jacobian_forward(f, zf, E, chunk_size)
        except (NotImplementedError, RuntimeError):
            # some ops lack forward-mode derivatives or vmap rules under jvp (e.g. group_norm on
            # non-contiguous batched inputs); reverse mode is always valid
            if mode == "forward":
                raise
    return _jacobian_reverse(f, zf, rows, chunk_size)


def _jacobian_reverse(f, zf: Tensor, rows: int, chunk_size: int | None) -> Tensor:
    B = zf.shape[0]
    with torch.enable_grad():
        y, vjp_fn = torch.func.vjp(f, zf)
        eye = torch.eye(rows, dtype=y.dtype, device=y.device)
        # cotangent j: e_j on every sample of the batch -> row j of every sample's Jacobian
        cot = eye[:, None, :].expand(rows, B, rows)
        try:
            (jt,) = torch.vmap(vjp_fn, chunk_size=chunk_size)(cot)  # (rows, B, E)
        except (RuntimeError, NotImplementedError) as e:
            if "vmap" not in str(e).lower() and "batch" not in str(e).lower():
                raise
            jt = _reverse_loop(f, zf, rows)
    return jt.permute(1, 0, 2).contiguous().detach()


def _reverse_loop(f, zf: Tensor, rows: int) -> Tensor:
    """Fallback when an op of G has no vmap rule: one backward pass per output row."""
    z = zf.clone().requires_grad_(True)
    y = f(z)
    out = []
    for j in range(rows):
        (g,) = torch.autograd.grad(y[:, j].sum(), z, retain_graph=j < rows - 1)
        out.append(g)
    return torch.stack(out)


def _jacobian_forward(f, zf: Tensor, E: int, chunk_size: int | None) -> Tensor:
    B = zf.shape[0]
    eye = torch.eye(E, dtype=zf.dtype, device=zf.device)
    tang = eye[:, None, :].expand(E, B, E)

    def jvp_col(t: Tensor) -> Tensor:
        return torch.func.jvp(f, (zf,), (t,))[1]  # (B, rows)

    cols = torch.vmap(jvp_col, chunk_size=chunk_size)(tang)  # (E, B, rows)
    return cols.permute(1, 2, 0).contiguous().detach()
