"""Random projections and per-sample Jacobians of a generator (Humayun et al., Sec. 2.1).

A generator ``G`` maps a batch of latents ``(B, *latent_shape)`` to a batch of outputs ``(B, *out_shape)``.
For each sample we want ``A = d P^T vec(G(z)) / d vec(z)`` of shape ``(k, E)``, where ``E = prod(latent_shape)``,
``D = prod(out_shape)`` and ``P`` is an optional ``(D, k)`` matrix with orthonormal columns (the paper projects
the output to ``k = 120`` dimensions before the SVD to make large decoders tractable).

Samples must be independent under ``G`` (``check_generator`` enforces this before any forward pass: no
BatchNorm using batch statistics, no active Dropout/RReLU, no module left in training mode). Then row ``i`` of
every sample's projected Jacobian is the VJP of ``G`` with cotangent ``P[:, i]`` (the projection folded into the
cotangent): the engine runs one forward pass per sample under ``torch.vmap`` and vmaps ``torch.func.vjp`` over
the ``k`` cotangents, which are the same for every sample, so backward work that does not depend on the sample
(an output layer) is done once per row. Forward mode (JVPs along the ``E`` latent axes) is the alternative when
``E`` is smaller than the number of rows (``mode="auto"``: ``jacobian``). The passes are chunked to fit a memory
budget (``memory_budget_bytes``, ``chunk_for_budget``).
"""
from __future__ import annotations

import math
import os
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from .deprecation import deprecated, renamed_kwargs
from .models.base import check_generator, find_module  # noqa: F401  (the one rule of each; re-exported here)


def __getattr__(name: str):
    """``geom.jacobian.Generator``, the former alias of ``Callable[[Tensor], Tensor]``, which shared its name with
    the generator type ``geom.models.Generator``: still importable, with a ``DeprecationWarning``."""
    if name == "Generator":
        deprecated("geom.jacobian.Generator (an alias of Callable[[Tensor], Tensor])",
                   "annotate with typing.Callable[[Tensor], Tensor], or use the generator type geom.models.Generator")
        return Callable[[Tensor], Tensor]
    raise AttributeError(f"module 'geom.jacobian' has no attribute {name!r}")


def random_projection(D: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """Random matrix ``P`` of shape ``(D, k)`` with orthonormal columns (``P^T P = I_k``).

    Drawn as the Q factor of a Gaussian ``(D, k)`` matrix (signs fixed so that ``diag(R) > 0``), i.e.
    uniformly from the Stiefel manifold. Seeded by a local ``torch.Generator``; global RNG untouched.
    Used for the output projection of Humayun et al. Sec. 2.1 (``k = 120``) and for cross-polytope bases.
    """
    D, k = int(D), int(k)
    if k < 1 or D < 1:
        raise ValueError(f"random_projection needs D >= 1 and k >= 1, got D={D}, k={k} (no projection is spelt "
                         f"k=None, not k=0)")
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


def call_generator(G: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """``G(z)`` for latents ``z`` ``(B, *latent_shape)``, checked: returns a Tensor ``(B, *out_shape)``.

    ``G`` is handed a copy of ``z``: a generator that writes to its input in place (``z *= sigma``,
    ``z.clamp_(-t, t)``) never changes the caller's latents.
    Raises ``ValueError`` naming the latent shape when the call fails or returns another batch size, and
    ``TypeError`` when ``G`` returns no Tensor (e.g. a diffusers output object: wrap it)."""
    try:
        y = G(z.clone())
    except NonFiniteError:  # raised by geom's own hooks inside G (local_complexity): already named
        raise
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


def output_dim(G: Callable[[Tensor], Tensor], z: Tensor) -> int:
    """``D = prod(out_shape)``, found by one forward pass on the first latent of ``z`` ``(B, *latent_shape)``
    (after ``check_generator``)."""
    check_generator(G)
    with torch.no_grad():
        return math.prod(call_generator(G, z[:1]).shape[1:])


def jacobian(G: Callable[[Tensor], Tensor], z: Tensor, k: int | None = None, seed: int = 0,
             projection: Tensor | None = None, chunk_size: int | None = None, mode: str = "auto",
             memory_budget: int | str | None = None) -> Tensor:
    """Per-sample Jacobian of the (optionally projected) flattened output w.r.t. the flattened latent.

    Args:
        G: callable ``(B, *latent_shape) -> (B, *out_shape)`` (an ``nn.Module``, or e.g.
            ``lambda z: vae.decode(z).sample`` for a diffusers ``AutoencoderKL``).
        z: latents ``(B, *latent_shape)``, finite.
        k: project the output onto ``k`` random orthonormal directions (``random_projection(D, k, seed)``).
            ``None``: no projection (full ``D x E`` Jacobian).
        seed: seed of the projection when ``k`` is given.
        projection: explicit ``(D, k)`` projection matrix (overrides ``k``/``seed``).
        chunk_size: how many VJPs (or JVPs) are vmapped at once (memory vs speed); ``None``: as many as
            ``memory_budget`` holds (``chunk_for_budget``; all at once when they fit).
        mode: ``"reverse"`` (vmap over VJPs, one per output row), ``"forward"`` (vmap over JVPs, one per latent
            direction), ``"auto"`` or ``"tune"``. ``"auto"`` is decided from the shapes and the layer types
            alone, so that the same call gives the same bits in every run (a timing never chooses a
            kernel): forward when ``E * AUTO_SHAPE_RATIO <= rows`` (3; ``rows``: ``k``, or ``D`` unprojected; a
            JVP costs 1.3-2.6x a VJP here), else reverse; the 2-D convolution weights channels-last on the CPU
            when the model has a ``ConvTranspose2d`` (``default_layout``), else contiguous. ``"tune"``
            measures instead, once per model and shape: the candidates (both modes when
            ``rows / AUTO_SHAPE_RATIO < E < rows``, both layouts for a model with 2-D convolutions) run
            ``AUTO_PROBE_PASSES`` passes each on this batch and the fastest finishes the Jacobian
            (``_probe_and_run``; about ``3 m + 2`` passes per pair of candidates, paid once); its values can
            differ from ``"auto"``'s in the last float bits, since another kernel may be chosen. Either
            decision is kept for every later call with the same model, latent shape, batch size, number of
            rows, dtype and device (``jacobian_plan`` returns it, with the measured seconds for ``"tune"``). A
            forced mode uses ``default_layout``. Falls back to reverse when an operation has no forward-mode
            derivative.
        memory_budget: bytes the vmapped passes may hold at once when ``chunk_size`` is None (an int, or a
            string such as ``"8G"`` / ``"512M"``); ``None``: ``$GEOM_MEMORY_BUDGET`` if set, else
            ``MEMORY_FRACTION`` (half) of the memory free at the call (``memory_budget_bytes``).

    Returns:
        ``(B, k, E)`` with a projection, else ``(B, D, E)``; dtype of ``G``'s output.
        Row ``i`` of sample ``b`` is ``d <P[:, i], vec G(z)[b]> / d vec z[b]`` (Humayun et al., Sec. 2.1:
        ``A_z = P^T J_G(z)``).

    Raises:
        ValueError: ``G`` is batch-coupled or stochastic (``check_generator``, run before any forward pass;
            a plain callable without a findable module is not checked), bad ``z``, ``k``, ``projection``.
        ForwardModeError: ``mode="forward"`` met an operation without a forward-mode derivative (named with
            the module it ran in); ``"auto"`` falls back to reverse mode instead. Group norm, whose
            forward-mode rule fails on non-contiguous inputs, is given contiguous ones (diffusers decoders).
        NonFiniteError (a ``ValueError``): ``G``'s output or the Jacobian contains NaN or inf (rows named).
        CheckpointingError: reentrant activation checkpointing in a plain callable whose module is not found.

    ``G`` is always called on a copy of the latents: a generator that writes to its input in place
    (``z *= sigma``, ``z.clamp_(-t, t)``) gets the Jacobian of ``z -> G(z)`` that plain autograd gives, and the
    caller's ``z`` is never changed. Activation checkpointing (``torch.utils.checkpoint``), which ``torch.func``
    cannot transform, and ops without vmap rules are differentiated by plain autograd, one backward pass per
    output row (slower: ``k`` backward passes instead of one vmapped one).
    """
    check_latents(z)
    check_generator(G)
    if mode not in ("auto", "tune", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'tune', 'forward' or 'reverse', got {mode!r}")
    B, latent_shape = z.shape[0], tuple(z.shape[1:])
    E = math.prod(latent_shape)
    with torch.no_grad():  # two latents: the output size, and a generator that mixes the batch (x.sum(0)) is
        y0 = call_generator(G, z[:2])  # caught by its batch size (the per-sample vmap below would hide it)
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

    def g(zz: Tensor) -> Tensor:  # (n, E) -> (n, D): the generator on flattened latents and outputs
        # the math SDPA kernel is a composite of matmul/softmax: it has vmap batching rules and forward-mode
        # derivatives, which the fused CPU/flash kernels lack (diffusers attention blocks call SDPA)
        # G gets a fresh tensor: an in-place write to its input (``z *= sigma``) then changes neither the
        # caller's latents nor the point at which forward mode differentiates, and autograd records it
        with sdpa_kernel([SDPBackend.MATH]), _EngineOps():
            y = G(zz.reshape(zz.shape[0], *latent_shape).clone())
        if y.shape[0] != zz.shape[0]:
            raise ValueError(f"the generator returned shape {tuple(y.shape)} for a batch of {zz.shape[0]} "
                             f"latents; expected (B, *out_shape) with B={zz.shape[0]}")
        return y.reshape(zz.shape[0], -1)

    def f(zz: Tensor) -> Tensor:  # (n, E) -> (n, rows): projected
        y = g(zz)
        return y if projection is None else y @ projection

    if not torch.isfinite(y0).all():
        bad = (~torch.isfinite(y0)).reshape(y0.shape[0], -1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(f"the generator's output contains NaN or inf values at latent rows {bad} "
                             f"({_nonfinite_count(y0)}); descriptors of a non-finite output are undefined: check "
                             f"the latents' scale and the model's dtype (float16/bfloat16 overflow)")
    zf = z.detach().reshape(B, E)
    module = find_module(G)
    J, _ = _compute(g, f, zf, projection, D, rows, module, mode, chunk_size, memory_budget,
                    _plan_key(G, module, latent_shape, B, rows, projection is None, z))
    if not torch.isfinite(J).all():
        bad = (~torch.isfinite(J)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(f"the Jacobian of the generator contains NaN or inf values at latent rows {bad[:10]}: "
                             f"the generator's output or an intermediate activation overflowed or is undefined "
                             f"there (check the latents' scale and the model's dtype; float16/bfloat16 overflow "
                             f"is the usual cause)")
    return J


class NonFiniteError(ValueError):
    """A generator's output, an activation or a Jacobian contains NaN or inf: no descriptor is defined there
    (raised by ``jacobian``, ``describe`` and ``local_complexity`` instead of a count or spectrum taken over
    non-finite values)."""


def _nonfinite_count(x: Tensor) -> str:
    return f"{int(torch.isnan(x).sum())} NaN, {int(torch.isinf(x).sum())} inf of {x.numel()} values"


class CheckpointingError(RuntimeError):
    """The generator uses activation checkpointing (``torch.utils.checkpoint`` with ``use_reentrant=True``)
    and its module cannot be found, so geom cannot differentiate it with plain autograd without touching
    gradients it does not own."""


class ForwardModeError(RuntimeError):
    """``jacobian(..., mode="forward")`` met an operation that forward-mode AD (``torch.func.jvp`` under
    ``vmap``) cannot differentiate; ``mode="reverse"`` or ``"auto"`` computes the same Jacobian."""


@contextmanager
def _forward_mode_guard(module: nn.Module | None) -> Iterator[list[str]]:
    """Temporary forward hooks for forward mode, removed on exit (the model itself is not changed): a stack of
    the modules whose forward is running (when ``module`` is known), so that an error names the innermost one.

    Yields that stack (descriptions ``"module 'name' (Type)"``); after a failed pass its last entry is the
    module where the failure happened."""
    stack: list[str] = []
    if module is None:
        yield stack
        return

    def pre(mod: nn.Module, args: tuple, label: str):
        stack.append(label)

    def post(mod: nn.Module, args: tuple, out, label: str):
        if stack and stack[-1] == label:
            stack.pop()

    handles = []
    for name, m in module.named_modules():
        label = f"module '{name}' ({type(m).__name__})" if name else f"the root module ({type(m).__name__})"
        handles.append(m.register_forward_pre_hook(lambda mod, args, label=label: pre(mod, args, label)))
        handles.append(m.register_forward_hook(lambda mod, args, out, label=label: post(mod, args, out, label)))
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def _arg(args: tuple, kwargs: dict, i: int, name: str, default=None):
    return args[i] if len(args) > i else kwargs.get(name, default)


class _EngineOps(TorchFunctionMode):
    """How the engine evaluates three operations while it differentiates ``G`` (the model is not changed):

    * ``group_norm`` gets a contiguous input: its forward-mode derivative (torch 2.x) ``view``s the primal and
      fails on a non-contiguous one ("view size is not compatible with input tensor's size and stride"), e.g.
      in the ResNet blocks of a diffusers ``AutoencoderKL`` decoder under ``jvp``; ``.contiguous()`` changes no
      value;
    * ``batch_norm`` in evaluation mode (``training=False`` with running statistics, the only BatchNorm that
      ``check_generator`` admits) is the per-channel affine map it is, ``x * a + b`` with
      ``a = weight / sqrt(running_var + eps)`` and ``b = bias - running_mean * a`` (the same two terms torch's
      CPU kernel forms). Its JVP and VJP are then one multiplication by ``a``, where ``batch_norm``'s general
      derivative formulas (written for batch statistics) cost several elementwise passes per vmapped row
      (dcgan-faces, reverse mode: 22 % of the engine's time, issue 26). Only when the input and the statistics
      share a dtype (else torch's mixed-precision kernel is called as is);
    * ``silu`` (float32/float64, not in place) keeps its derivative from the forward pass (``_SiLU``)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.group_norm, torch.group_norm) and args and isinstance(args[0], Tensor):
            args = (args[0].contiguous(), *args[1:])
        elif func is F.batch_norm and args and isinstance(args[0], Tensor):
            x, mean, var = args[0], _arg(args, kwargs, 1, "running_mean"), _arg(args, kwargs, 2, "running_var")
            w, b = _arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 4, "bias")
            training, eps = _arg(args, kwargs, 5, "training", False), _arg(args, kwargs, 7, "eps", 1e-5)
            if (not training and isinstance(mean, Tensor) and isinstance(var, Tensor) and x.ndim >= 2
                    and mean.dtype == var.dtype == x.dtype
                    and all(t is None or (isinstance(t, Tensor) and t.dtype == x.dtype) for t in (w, b))):
                a = torch.rsqrt(var + eps)
                if w is not None:
                    a = a * w
                shift = -mean * a if b is None else b - mean * a
                shape = (-1,) + (1,) * (x.ndim - 2)
                return torch.addcmul(shift.reshape(shape), x, a.reshape(shape))
        elif (func is F.silu and args and isinstance(args[0], Tensor) and not _arg(args, kwargs, 1, "inplace", False)
              and args[0].dtype in (torch.float32, torch.float64)):
            return _SiLU.apply(args[0])[0]
        return func(*args, **kwargs)


class _SiLU(torch.autograd.Function):
    """``silu(x) = x sigmoid(x)`` with its derivative ``s (1 + x (1 - s))`` (``s = sigmoid(x)``) formed once in
    the forward pass: each vmapped VJP or JVP is then one multiplication, where torch's ``silu_backward`` under
    ``vmap`` multiplies every row twice (the SiLU-heavy diffusers decoders, issue 26)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        s = torch.sigmoid(x)
        return x * s, s * (1 + x * (1 - s))

    @staticmethod
    def setup_context(ctx, inputs, output):
        d = output[1]
        ctx.mark_non_differentiable(d)
        ctx.save_for_backward(d)
        ctx.save_for_forward(d)

    @staticmethod
    def backward(ctx, grad, _grad_d):
        (d,) = ctx.saved_tensors
        return grad * d

    @staticmethod
    def jvp(ctx, tangent):
        (d,) = ctx.saved_tensors
        return tangent * d, None


# What torch.func cannot transform but plain autograd can: ops without vmap rules, and activation
# checkpointing (torch.utils.checkpoint: saved tensor hooks when use_reentrant=False, an autograd.Function
# without setup_context when use_reentrant=True).
_VMAP_UNSUPPORTED = ("vmap", "batch")
_TRANSFORM_UNSUPPORTED = ("saved tensor hooks", "setup_context", "functorch transforms")


def _is_vmap_unsupported(e: BaseException) -> bool:
    return any(m in str(e).lower() for m in _VMAP_UNSUPPORTED)


def _is_checkpointing(e: BaseException) -> bool:
    return any(m in str(e) for m in _TRANSFORM_UNSUPPORTED)


def _is_transform_unsupported(e: BaseException) -> bool:
    return _is_vmap_unsupported(e) or _is_checkpointing(e)


def _chunks(n: int, chunk_size: int | None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in pieces of ``chunk_size`` (all at once for ``None``)."""
    c = n if chunk_size is None else max(1, int(chunk_size))
    return [(s, min(s + c, n)) for s in range(0, n, c)]


AUTO_SHAPE_RATIO = 3.0
"""``mode="auto"`` takes forward mode from the shapes alone when ``E * AUTO_SHAPE_RATIO <= rows``. A JVP of this
engine costs 1.3-2.6x a VJP (measured per pass on the benchmark models, CPU: dcgan-faces B = 8 1.3x, tiny-ldm
B = 4 1.4x, the MLP B = 32 2.6x, where reverse mode's shared output layer runs once per row), so forward mode
can only win when it needs clearly fewer passes; reverse mode is taken when ``E >= rows``."""
AUTO_PROBE_PASSES = 8
"""Passes each candidate times for ``mode="tune"`` (at most the chunk size)."""
MEMORY_FRACTION = 0.5
"""Default memory budget of ``jacobian``: this fraction of the memory free at the call."""


@dataclass(frozen=True)
class JacobianPlan:
    """How ``jacobian`` computed one model's Jacobian at one shape (``jacobian_plan``).

    ``mode``: ``"reverse"`` or ``"forward"``; ``passes``: VJPs (rows) or JVPs (``E``) in total;
    ``chunk_size``: passes vmapped at once (``None``: all); ``reason``: why this mode (``"mode='reverse'"``,
    ``"shapes: ..."``, ``"measured: ..."``, ``"forward mode unsupported"``); ``seconds``: for a measured
    decision, each candidate's (``"mode/layout"``) extrapolated seconds for the whole batch; ``bytes_per_pass``
    (per latent, ``pass_bytes``) and ``memory_budget`` (bytes): what ``chunk_size`` was chosen from (``None``
    when the caller gave ``chunk_size``); ``layout``: the memory format of the 2-D convolution weights while the
    engine ran (``"contiguous"`` or ``"channels_last"``, see ``_probe_and_run``)."""
    mode: str
    passes: int
    chunk_size: int | None
    reason: str
    seconds: tuple[tuple[str, float], ...] = ()
    bytes_per_pass: int | None = None
    memory_budget: int | None = None
    layout: str = "contiguous"


# per model (weakly held): the auto-mode decision per shape, and the memory estimate per shape
_DECISIONS: "weakref.WeakKeyDictionary[object, dict[tuple, JacobianPlan]]" = weakref.WeakKeyDictionary()
_PASS_BYTES: "weakref.WeakKeyDictionary[object, dict[tuple, int]]" = weakref.WeakKeyDictionary()


def _plan_key(G, module, latent_shape, B, rows, unprojected, z) -> tuple | None:
    owner = module if module is not None else G
    try:
        weakref.ref(owner)
    except TypeError:
        return None
    return owner, (tuple(latent_shape), int(B), int(rows), bool(unprojected), z.dtype, str(z.device))


def parse_bytes(value: int | str) -> int:
    """``8 << 30``, ``"8G"``, ``"8GiB"``, ``"512M"``, ``"1.5T"`` or ``"123456"`` -> bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip().upper().replace("IB", "").replace("B", "")
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
        try:
            n = int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(float(text))
        except ValueError:
            raise ValueError(f"memory budget {value!r} is not a number of bytes (e.g. 8589934592, '8G', "
                             f"'512M')") from None
    if n <= 0:
        raise ValueError(f"memory budget must be > 0 bytes, got {value!r}")
    return n


def memory_budget_bytes(device: torch.device | str, memory_budget: int | str | None = None) -> int:
    """Bytes that the vmapped passes of ``jacobian`` may hold on ``device``: ``memory_budget`` if given, else
    ``$GEOM_MEMORY_BUDGET`` if set (same syntax, ``parse_bytes``), else ``MEMORY_FRACTION`` of the memory free
    now: ``torch.cuda.mem_get_info`` on a CUDA device; ``MemAvailable`` of ``/proc/meminfo`` on the CPU (4 GiB
    where it cannot be read)."""
    if memory_budget is not None:
        return parse_bytes(memory_budget)
    if os.environ.get("GEOM_MEMORY_BUDGET"):
        return parse_bytes(os.environ["GEOM_MEMORY_BUDGET"])
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(MEMORY_FRACTION * free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(MEMORY_FRACTION * int(line.split()[1]) * 1024)
    except OSError:
        pass
    return 4 << 30


_VIEWS = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.reshape.default,
          torch.ops.aten.expand.default, torch.ops.aten.permute.default, torch.ops.aten.t.default,
          torch.ops.aten.transpose.int, torch.ops.aten.unsqueeze.default, torch.ops.aten.squeeze.dim,
          torch.ops.aten.slice.Tensor, torch.ops.aten.select.int, torch.ops.aten.alias.default,
          torch.ops.aten.detach.default, torch.ops.aten.as_strided.default}


class _OutputBytes(TorchDispatchMode):
    """Sums the bytes of the floating tensors that the (non-view) ops of a call produce."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func not in _VIEWS:
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, Tensor) and t.is_floating_point():
                    self.total += t.numel() * t.element_size()
        return out


def pass_bytes(g: Callable[[Tensor], Tensor], z1: Tensor) -> int:
    """Memory estimate of one vmapped pass (VJP or JVP) for ONE latent, in bytes: the floating tensors that one
    forward pass of ``g`` at ``z1`` ``(1, E)`` produces (views excluded). A VJP makes a gradient for each of
    them and a JVP a tangent, most freed before the pass ends, so the sum bounds what one pass holds at once
    (measured peaks: ``benchmarks/README.md``)."""
    counter = _OutputBytes()
    with torch.no_grad(), counter:
        g(z1)
    return max(counter.total, 1)


@renamed_kwargs(batch="batch_size")
def chunk_for_budget(passes: int, batch_size: int, bytes_per_pass: int, budget: int) -> int | None:
    """Passes to vmap at once (a ``chunk_size``) so that ``batch_size x bytes_per_pass`` per pass (``pass_bytes``,
    per latent; ``batch_size`` latents per call), plus the forward graph the passes share (one more
    ``batch_size x bytes_per_pass``), fit in ``budget`` bytes: ``None`` (all ``passes`` at once) when they fit,
    else ``max(1, budget // (batch_size x bytes_per_pass) - 1)``."""
    n = budget // max(1, batch_size * bytes_per_pass) - 1
    return None if n >= passes else max(1, int(n))


def _timed(fn):
    sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else (lambda: None)
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and
                                                    "can't allocate memory" in str(e))


def _compute(g, f, zf: Tensor, projection: Tensor | None, D: int, rows: int, module: nn.Module | None,
             mode: str, chunk_size: int | None, memory_budget, key) -> tuple[Tensor, JacobianPlan]:
    """The Jacobian ``(B, rows, E)`` and the ``JacobianPlan`` it was computed with (see ``jacobian``: mode,
    layout, chunk size); on an out-of-memory error the chunk size is halved and the computation repeated."""
    B, E = zf.shape
    owner, shape = key if key is not None else (None, None)
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        chunk, per, budget = int(chunk_size), None, None
    else:
        budget = memory_budget_bytes(zf.device, memory_budget)
        per = _PASS_BYTES.get(owner, {}).get(shape) if owner is not None else None
        if per is None:
            per = pass_bytes(g, zf[:1])
            if owner is not None:
                _PASS_BYTES.setdefault(owner, {})[shape] = per
        chunk = chunk_for_budget(max(rows, E), B, per, budget)
    cached = _DECISIONS.get(owner, {}).get((mode, shape)) if owner is not None else None
    passes = {"reverse": rows, "forward": E}
    layout = default_layout(module, zf.device)
    if mode in ("forward", "reverse"):
        candidates, reason = [(mode, layout)], f"mode={mode!r}"
    elif cached is not None:
        candidates, reason = [(cached.mode, cached.layout)], cached.reason
    elif mode == "auto":
        if E * AUTO_SHAPE_RATIO <= rows:
            m_, reason = "forward", f"shapes: E={E} JVPs, at least {AUTO_SHAPE_RATIO:g}x fewer than {rows} VJPs"
        else:
            m_, reason = "reverse", f"shapes: {rows} VJPs, E={E} JVPs not {AUTO_SHAPE_RATIO:g}x fewer"
        candidates = [(m_, layout)]
    else:  # tune: measure
        if E >= rows:
            modes, reason = ["reverse"], f"shapes: {rows} VJPs, no more than E={E} JVPs"
        elif E * AUTO_SHAPE_RATIO <= rows:
            modes, reason = ["forward"], f"shapes: E={E} JVPs, at least {AUTO_SHAPE_RATIO:g}x fewer than {rows} VJPs"
        else:
            modes, reason = ["reverse", "forward"], "measured"
        layouts = ["contiguous", "channels_last"] if _has_conv2d(module) else ["contiguous"]
        candidates = [(m_, l_) for m_ in modes for l_ in layouts]
    run = _Runner(g, f, zf, projection, D, rows, module, forced=mode == "forward")
    while True:
        c = None if chunk is None or chunk >= max(passes[m_] for m_, _ in candidates) else chunk
        try:
            if len(candidates) > 1:
                J, plan = _probe_and_run(run, candidates, passes, c, reason)
            else:
                (m_, l_), = candidates
                J = run(m_, l_, 0, passes[m_], c)
                if J is None:  # an operation without a forward-mode derivative: reverse mode
                    m_, reason = "reverse", "forward mode unsupported"
                    J = run(m_, l_, 0, rows, c)
                plan = JacobianPlan(m_, passes[m_], None, reason, cached.seconds if cached else (), layout=l_)
            break
        except (RuntimeError, torch.OutOfMemoryError) as e:
            if not _is_oom(e) or (c or max(passes.values())) <= 1:
                raise
            chunk = max(1, (c or max(passes.values())) // 2)
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
    plan = replace(plan, chunk_size=None if chunk is None or chunk >= plan.passes else chunk,
                   bytes_per_pass=per, memory_budget=budget)
    if mode in ("auto", "tune") and owner is not None:
        _DECISIONS.setdefault(owner, {})[(mode, shape)] = plan
    return J, plan


def default_layout(module: nn.Module | None, device: torch.device | str = "cpu") -> str:
    """The memory layout ``jacobian`` gives the 2-D convolution weights of ``module`` unless ``mode="tune"``
    measured another: ``"channels_last"`` on the CPU when the model has a ``ConvTranspose2d`` (oneDNN's
    transposed-convolution kernels: dcgan-faces' Jacobian 1.25x and omniart-eyes' 1.12x faster, measured by
    ``mode="tune"``, ``benchmarks/README.md``), else ``"contiguous"`` (tiny-ldm's Conv2d + GroupNorm decoder
    is 1.05x slower channels-last). A rule of the model and device only, so the choice, and with it the last
    float bits of the Jacobian, is the same in every run."""
    if torch.device(device).type != "cpu" or module is None:
        return "contiguous"
    has_transposed = any(isinstance(m, nn.ConvTranspose2d) and m.weight.ndim == 4 for m in module.modules())
    return "channels_last" if has_transposed else "contiguous"


def _has_conv2d(module: nn.Module | None) -> bool:
    return module is not None and any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.weight.ndim == 4
                                      for m in module.modules())


@contextmanager
def _conv_layout(module: nn.Module | None, layout: str) -> Iterator[None]:
    """``layout="channels_last"``: the weights of ``module``'s ``Conv2d`` / ``ConvTranspose2d`` layers get a
    channels-last copy as ``.data`` for the duration (the original tensors are put back on exit, also on error),
    so that oneDNN / cuDNN run the convolutions, their VJPs and JVPs in that memory format; values unchanged."""
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        if layout == "channels_last" and module is not None:
            for m in module.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.weight.ndim == 4:
                    saved.append((m.weight, m.weight.data))
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
        yield
    finally:
        for t, data in reversed(saved):
            t.data = data


class _Runner:
    """``run(mode, layout, start, stop, chunk)``: rows (reverse) or latent directions (forward) ``start:stop``
    of the Jacobian, ``(B, stop - start, E)`` or ``(B, rows, stop - start)``; ``None`` when forward mode meets an
    operation without a forward-mode derivative and the mode was not forced."""

    def __init__(self, g, f, zf, projection, D, rows, module, forced):
        self.g, self.f, self.zf, self.projection, self.D, self.rows = g, f, zf, projection, D, rows
        self.module, self.forced = module, forced

    def __call__(self, mode: str, layout: str, start: int, stop: int, chunk: int | None) -> Tensor | None:
        with _conv_layout(self.module, layout):
            if mode == "forward":
                return _forward(self.g, self.f, self.zf, self.rows, self.module, chunk, start, stop, self.forced)
            chunks = [(start + a, start + b) for a, b in _chunks(stop - start, chunk)]
            return _jacobian_reverse(self.g, self.f, self.zf, self.projection, self.D, chunks, self.module)


def _forward(g, f, zf: Tensor, rows: int, module, chunk: int | None, start: int, stop: int,
             forced: bool) -> Tensor | None:
    """Forward mode over the latent directions ``start:stop`` -> ``(B, rows, stop - start)``; ``None`` when an
    operation has no forward-mode derivative and ``forced`` is False (``ForwardModeError`` when True)."""
    chunks = [(start + a, start + b) for a, b in _chunks(stop - start, chunk)]
    with _forward_mode_guard(module) as where:
        try:
            return _jacobian_forward(f, zf, rows, chunks)
        except (NotImplementedError, RuntimeError) as e:
            if _is_oom(e):
                raise
            if not forced:
                return None
            msg = (str(e).strip().splitlines() or [""])[0]
            loc = where[-1] if where else "the generator (wrap it with geom.with_module to name the module)"
            what = ("an autograd.Function without forward-mode support, e.g. activation checkpointing "
                    "(torch.utils.checkpoint, use_reentrant=True)," if _is_checkpointing(e) else "an operation")
            raise ForwardModeError(f"mode='forward' cannot differentiate {what} in {loc} "
                                   f"({type(e).__name__}: {msg}); use mode='reverse' or 'auto'") from e


def _probe_and_run(run: _Runner, candidates: list[tuple[str, str]], passes: dict[str, int], chunk: int | None,
                   reason: str) -> tuple[Tensor, JacobianPlan]:
    """``mode="auto"``'s one-time measurement between the candidates (mode, memory layout): reverse and forward
    when ``rows / AUTO_SHAPE_RATIO < E < rows``, and, for a model with 2-D convolutions, the contiguous and the
    channels-last layout of their weights (oneDNN's kernels differ: dcgan-faces' transposed convolutions run
    1.25x faster channels-last, tiny-ldm's GroupNorm decoder 1.2x slower). Each candidate runs once with one pass
    (warm-up: the first transform of a process or shape pays set-up costs; forward mode drops out here when an
    operation has no forward-mode derivative), then ``m = AUTO_PROBE_PASSES`` passes of every candidate, twice,
    alternating; a candidate's time for its ``n`` passes is ``t_fwd + (t_m - t_fwd) n / m``, with ``t_m`` the
    faster of its two runs and ``t_fwd`` a plain forward pass of the batch (the part all share). The fastest
    finishes the Jacobian, reusing its last probe (the first ``m`` rows, or columns, of the result); the
    measurement costs about ``(2 c - 1) m + c`` passes for ``c`` candidates, once per model and shape."""
    zf, rows = run.zf, run.rows
    E = zf.shape[1]
    alive = []
    for cand in candidates:
        if run(*cand, 0, 1, None) is not None:
            alive.append(cand)
    if not alive:
        raise RuntimeError("no mode of the engine could differentiate the generator")  # pragma: no cover
    if len(alive) == 1:
        (m_, l_), = alive
        return run(m_, l_, 0, passes[m_], chunk), JacobianPlan(m_, passes[m_], None, "forward mode unsupported",
                                                               layout=l_)
    m = max(1, min(AUTO_PROBE_PASSES, rows, E, chunk or AUTO_PROBE_PASSES))
    with torch.no_grad():
        t_fwd = min(_timed(lambda: run.g(zf))[1] for _ in range(2))
    t: dict[tuple[str, str], list[float]] = {cand: [] for cand in alive}
    last: dict[tuple[str, str], Tensor] = {}
    for _ in range(2):
        for cand in alive:
            last[cand], dt = _timed(lambda: run(*cand, 0, m, chunk))
            t[cand].append(dt)
    T = {cand: t_fwd + max(min(v) - t_fwd, 0.0) * passes[cand[0]] / m for cand, v in t.items()}
    mode, layout = min(T, key=T.get)
    what = ", ".join(f"{md} {ly} {T[(md, ly)]:.3g} s" for md, ly in alive)
    measured = f"measured: {what} (extrapolated from {m} passes of each)"
    plan = JacobianPlan(mode, passes[mode], None, measured if reason == "measured" else f"{reason}; {measured}",
                        tuple((f"{md}/{ly}", T[(md, ly)]) for md, ly in alive), layout=layout)
    J0, n = last[(mode, layout)], passes[mode]
    if m >= n:
        return J0, plan
    rest = run(mode, layout, m, n, chunk)
    return torch.cat([J0, rest], dim=2 if mode == "forward" else 1), plan


def jacobian_plan(G: Callable[[Tensor], Tensor], z: Tensor, k: int | None = None, projection: Tensor | None = None,
                  mode: str = "auto") -> JacobianPlan | None:
    """The ``JacobianPlan`` (mode, layout, chunk size, and why) that ``jacobian(G, z, k=k or
    projection=projection)`` with ``mode`` (``"auto"`` or ``"tune"``) stored for this model and shape (latent
    shape, batch size, number of rows, dtype, device of ``z``), or ``None`` before the first such call. Runs
    ``G`` on one latent only when neither ``k`` nor ``projection`` is given (for the output size)."""
    if mode not in ("auto", "tune"):
        raise ValueError(f"only mode='auto' and mode='tune' store a plan, got {mode!r}")
    module = find_module(G)
    rows = projection.shape[1] if projection is not None else int(k) if k is not None else output_dim(G, z)
    key = _plan_key(G, module, tuple(z.shape[1:]), z.shape[0], rows, projection is None and k is None, z)
    return None if key is None else _DECISIONS.get(key[0], {}).get((mode, key[1]))


def _basis_rows(start: int, stop: int, n: int, like: Tensor) -> Tensor:
    """Rows ``start:stop`` of the ``(n, n)`` identity, built without the full identity."""
    e = torch.zeros(stop - start, n, dtype=like.dtype, device=like.device)
    e[torch.arange(stop - start, device=like.device), torch.arange(start, stop, device=like.device)] = 1
    return e


def _cotangents(projection: Tensor | None, D: int, start: int, stop: int, like: Tensor) -> Tensor:
    """Cotangents of the generator's flattened output for Jacobian rows ``start:stop``, ``(stop - start, D)``:
    the projection folded in (row ``i`` of ``P^T J`` is the VJP of ``G`` with cotangent ``P[:, i]``), so no VJP
    of ``y @ P`` is ever vmapped; identity rows without a projection. Contiguous (a stride-0 expanded cotangent
    makes the first backward op a slow batched matmul, issue 26)."""
    if projection is None:
        return _basis_rows(start, stop, D, like)
    return projection[:, start:stop].T.contiguous()


def _jacobian_reverse(g, f, zf: Tensor, projection: Tensor | None, D: int, chunks: list[tuple[int, int]],
                      module: nn.Module | None = None) -> Tensor:
    """``(B, rows, E)`` by VJPs. Per sample (``vmap`` over the batch), one forward pass and a ``vmap`` over the
    cotangent rows of each chunk: the cotangents are the same for every sample (``P^T`` rows, not batched over
    the samples), so the backward ops ahead of the first sample-dependent one (e.g. the output layer of an MLP)
    run once per row instead of once per row and sample. Falls back to one batched forward with the cotangents
    expanded over the batch (contiguous) when the generator cannot run under a vmap over its samples, and to a
    loop of plain autograd passes when ``torch.func`` cannot transform it at all."""
    def per_sample(v: Tensor) -> Tensor:  # (E,) -> (rows, E)
        _, vjp_fn = torch.func.vjp(lambda u: g(u[None])[0], v)
        return torch.cat([torch.vmap(vjp_fn)(_cotangents(projection, D, s, e, zf))[0] for s, e in chunks])

    try:
        with torch.enable_grad():
            return torch.vmap(per_sample)(zf).contiguous().detach()
    except (RuntimeError, NotImplementedError) as e:
        if not _is_transform_unsupported(e):
            raise
    B = zf.shape[0]
    try:
        with torch.enable_grad():
            _, vjp_fn = torch.func.vjp(g, zf)
            parts = []
            for s, e in chunks:
                cot = _cotangents(projection, D, s, e, zf)
                cot = cot[:, None, :].expand(e - s, B, D).contiguous()
                parts.append(torch.vmap(vjp_fn)(cot)[0])  # (n, B, E)
            jt = torch.cat(parts)
    except (RuntimeError, NotImplementedError) as e:
        if not _is_transform_unsupported(e):
            raise
        jt = _reverse_loop(f, zf, chunks[0][0], chunks[-1][1], module)
    return jt.permute(1, 0, 2).contiguous().detach()


def _reverse_loop(f, zf: Tensor, start: int, stop: int, module: nn.Module | None = None) -> Tensor:
    """Fallback when torch.func cannot transform G (an op without a vmap rule, activation checkpointing):
    plain autograd, one backward pass per output row ``start:stop``, ``(stop - start, B, E)``.

    ``torch.autograd.grad`` first. Reentrant checkpointing (``use_reentrant=True``) refuses ``.grad()`` and
    needs ``.backward()``, which would accumulate into the model's parameter gradients: the parameters of
    ``module`` are then frozen (``requires_grad=False``) for the duration and restored, so no ``.grad`` of the
    caller's changes. Without a findable module that is impossible: ``CheckpointingError``."""
    with torch.enable_grad():
        z = zf.clone().requires_grad_(True)
        y = f(z)
        out = []
        try:
            for j in range(start, stop):
                (g,) = torch.autograd.grad(y[:, j].sum(), z, retain_graph=j < stop - 1)
                out.append(g)
            return torch.stack(out)
        except RuntimeError as e:
            if "checkpoint" not in str(e).lower():
                raise
            if module is None:
                raise CheckpointingError(
                    "the generator uses reentrant activation checkpointing (torch.utils.checkpoint with "
                    "use_reentrant=True), which only .backward() can differentiate, and geom cannot find its "
                    "nn.Module to keep .backward() off the parameters' gradients; pass use_reentrant=False, "
                    "or wrap the callable with geom.with_module(fn, module)") from e
    with torch.enable_grad(), _frozen_parameters(module):
        z = zf.clone().requires_grad_(True)
        y = f(z)
        out = []
        for j in range(start, stop):
            z.grad = None
            y[:, j].sum().backward(retain_graph=j < stop - 1)
            out.append(z.grad if z.grad is not None else torch.zeros_like(z))
        return torch.stack(out)


@contextmanager
def _frozen_parameters(module: nn.Module) -> Iterator[None]:
    """``requires_grad=False`` on every parameter of ``module`` for the duration; restored on exit."""
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _jacobian_forward(f, zf: Tensor, rows: int, chunks: list[tuple[int, int]]) -> Tensor:
    """``(B, rows, E)`` by JVPs along the latent axes. Per sample (``vmap`` over the batch), a ``vmap`` over the
    tangents of each chunk of latent directions: the tangents (identity rows) are the same for every sample, so
    the first layer's JVP runs once per direction. Falls back to the tangents expanded over one batched JVP
    when the generator cannot run under a vmap over its samples."""
    E = zf.shape[1]

    def per_sample(v: Tensor) -> Tensor:  # (E,) -> (rows, E)
        f1 = lambda u: f(u[None])[0]  # noqa: E731
        jvp = lambda t: torch.func.jvp(f1, (v,), (t,))[1]  # noqa: E731
        return torch.cat([torch.vmap(jvp)(_basis_rows(s, e, E, zf)) for s, e in chunks]).T

    try:
        return torch.vmap(per_sample)(zf).contiguous().detach()
    except (RuntimeError, NotImplementedError) as e:
        if not _is_vmap_unsupported(e):
            raise
    B = zf.shape[0]
    cols = []
    for s, e in chunks:
        tang = _basis_rows(s, e, E, zf)[:, None, :].expand(e - s, B, E)
        cols.append(torch.vmap(lambda t: torch.func.jvp(f, (zf,), (t,))[1])(tang))  # (n, B, rows)
    return torch.cat(cols).permute(1, 2, 0).contiguous().detach()
