"""Local complexity delta (Humayun et al., Def. 1).

delta(z) counts the neurons whose *linear piece* changes over the vertices of a ``P``-dimensional
cross-polytope (l1 ball) of radius ``r`` around ``z``: ``V = {z + s r b_i : s = +-1, i = 1..P}`` with ``b_i``
the rows of an orthonormal ``basis`` ``(P, E)`` (``polytope_basis``). For a continuous piecewise-linear network
this is the number of neuron hyperplanes ("knots") that cut the polytope, a local measure of the density of
linear regions.

Neurons are the elements of the *inputs* (pre-activations) of activation modules (``ACTIVATIONS``), captured
with forward pre-hooks. A module called several times per forward (e.g. a shared ``nn.SiLU`` in a diffusers
ResNet block) contributes a separate set of neurons per call. The output layer counts only if an activation
module follows it. Activations applied functionally (``F.relu`` inside ``forward``) are invisible to hooks
and not counted.

**Joints.** Each activation's joint set (``joints(module)``, table ``JOINTS``, parameters read from the
module instance) splits the real line into pieces; the piece index of a pre-activation ``x`` is the number of
joints ``j`` with ``x > j`` (a value exactly on a joint belongs to the lower piece), and a neuron counts when
its piece index differs between two vertices. Torch's definitions:

==========================  ==========================  =====================================================
activation                  joints                      pieces
==========================  ==========================  =====================================================
ReLU, PReLU, RReLU (eval)   ``0``                       two linear pieces (PReLU: any learned slope)
LeakyReLU(negative_slope)   ``0``; none if slope == 1   two linear pieces
Hardtanh(min_val, max_val)  ``min_val, max_val``        constant, identity, constant
ReLU6                       ``0, 6``                    (a Hardtanh(0, 6))
Hardsigmoid                 ``-3, 3``                   0, ``x / 6 + 1 / 2``, 1
Hardswish                   ``-3, 3``                   0, ``x (x + 3) / 6`` (quadratic), ``x``
Softshrink(lambd)           ``-lambd, lambd``           ``x + lambd``, 0, ``x - lambd`` (none if lambd == 0)
Hardshrink(lambd)           ``-lambd, lambd``           ``x``, 0, ``x`` (jumps; none if lambd == 0)
Threshold(threshold, v)     ``threshold``               ``v`` for ``x <= threshold``, else ``x``
==========================  ==========================  =====================================================

Hardswish's middle piece is not linear; its joints are still the two points where torch's definition
changes form (the only points where its derivative is discontinuous).

**Smooth activations** (SiLU, GELU, Mish, Tanh, Sigmoid, Softsign, Tanhshrink, Softplus, ELU, SELU, CELU)
have no linear pieces. Convention: one joint at ``0``, i.e. a neuron counts when its pre-activation changes
sign, as in the paper (Humayun et al. count sign changes of the pre-activation for the SiLU-based Stable
Diffusion decoder). Why 0: SiLU / GELU / Mish are smoothed ReLUs (``x * gate(x)``, the ReLU limit as the gate
sharpens) and bend around 0; Tanh, Sigmoid, Softsign and Tanhshrink have their inflection point at 0 (the
only point where the curvature changes sign); ELU(alpha), SELU and CELU are defined piecewise with their two
pieces meeting at 0 (a kink for ELU with ``alpha != 1`` and SELU, a jump in the second derivative for CELU);
Softplus(beta, threshold) is a smoothed ReLU bending at 0 -- its ``threshold`` is only where torch switches to
the asymptote ``x`` for numerical reasons (``beta x > threshold``; the two agree to ``exp(-threshold)``), not
a joint.

**Precision.** The vertices are built in float64 (``z.double() + r * basis.double()``) and, by default, the
generator is evaluated in float64 too (its floating parameters and buffers are swapped to float64 copies for
the duration of the call and the original tensors put back, ``cast_module``). In float32, a pre-activation
within rounding of a joint flips piece by rounding alone -- depending on the batch composition -- and at
``r = 1e-5`` the float32 vertex offsets of a Stable Diffusion latent (``E = 16384``, ``|z| ~ 128``) are wrong
by more than ``r`` itself. ``dtype=`` trades this for speed; a radius that the dtype cannot resolve relative to
the latent norm is refused (``smallest_radius``).
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from . import seeds
from .jacobian import NonFiniteError, call_generator, check_latents, random_projection
from .models.base import check_generator, find_module

# Piecewise activations: joints read from the instance (module -> sorted joints).
_PIECEWISE: dict[type[nn.Module], Callable[[nn.Module], tuple[float, ...]]] = {
    nn.ReLU: lambda m: (0.0,),
    nn.LeakyReLU: lambda m: () if float(m.negative_slope) == 1.0 else (0.0,),
    nn.PReLU: lambda m: (0.0,),
    nn.RReLU: lambda m: () if float(m.lower) == float(m.upper) == 1.0 else (0.0,),
    nn.Hardtanh: lambda m: (float(m.min_val), float(m.max_val)),  # nn.ReLU6 is a Hardtanh(0, 6)
    nn.ReLU6: lambda m: (float(m.min_val), float(m.max_val)),
    nn.Hardsigmoid: lambda m: (-3.0, 3.0),
    nn.Hardswish: lambda m: (-3.0, 3.0),
    nn.Softshrink: lambda m: () if float(m.lambd) == 0 else (-float(m.lambd), float(m.lambd)),
    nn.Hardshrink: lambda m: () if float(m.lambd) == 0 else (-float(m.lambd), float(m.lambd)),
    nn.Threshold: lambda m: (float(m.threshold),),
}
# Smooth activations: the paper's convention, a sign change of the pre-activation (see the module docs).
_SMOOTH: tuple[type[nn.Module], ...] = (
    nn.SiLU, nn.GELU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softsign, nn.Tanhshrink, nn.Softplus, nn.ELU, nn.SELU,
    nn.CELU,
)
JOINTS: dict[type[nn.Module], Callable[[nn.Module], tuple[float, ...]]] = {
    **_PIECEWISE, **{t: (lambda m: (0.0,)) for t in _SMOOTH}}
ACTIVATIONS: tuple[type[nn.Module], ...] = tuple(JOINTS)

VERTEX_RTOL = 0.01
"""Largest admitted relative error ``|fl(v) - v| / r`` of the rounded vertex offsets (``smallest_radius``)."""


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Named activation modules of ``model`` (instances of ``ACTIVATIONS``), in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, ACTIVATIONS)}


def joints(module: nn.Module) -> tuple[float, ...]:
    """Sorted joints of an activation module (see the table in the module docs; parameters are read from the
    instance, e.g. ``Hardtanh(min_val, max_val)``). Subclasses use their nearest listed base class."""
    for t in type(module).__mro__:
        if t in JOINTS:
            return tuple(sorted(JOINTS[t](module)))
    known = ", ".join(a.__name__ for a in ACTIVATIONS)
    raise TypeError(f"no joint set for {type(module).__name__}; local complexity knows {known}")


def piece_index(x: Tensor, joint_set: tuple[float, ...]) -> Tensor:
    """Index of the piece each value of ``x`` lies on: the number of joints ``j`` with ``x > j`` (int8,
    shape of ``x``)."""
    idx = torch.zeros(x.shape, dtype=torch.int8, device=x.device)
    for j in joint_set:
        idx += x > j
    return idx


def _module_of(G) -> nn.Module:
    module = find_module(G)
    if module is None:
        raise TypeError("local_complexity needs the activation modules of G: pass an nn.Module, a bound method of "
                        "one, or give the callable a `.module` attribute holding the nn.Module (e.g. "
                        "geom.complexity.with_module(lambda z: vae.decode(z).sample, vae))")
    return module


def with_module(fn: Callable[[Tensor], Tensor], module: nn.Module) -> Callable[[Tensor], Tensor]:
    """Attach ``module`` to a plain callable so ``local_complexity`` can find its activation modules."""
    fn.module = module  # type: ignore[attr-defined]
    return fn


@contextmanager
def cast_module(module: nn.Module, dtype: torch.dtype) -> Iterator[nn.Module]:
    """Evaluate ``module`` in ``dtype`` for the duration of the ``with`` block, without changing it.

    Every floating parameter and buffer whose dtype differs gets a ``dtype`` copy as its ``.data``; on exit
    (also on error) each gets its ORIGINAL data tensor back, so the model's state is bit-for-bit what it was
    (same parameter objects, same storage). Callables that close over the module (``lambda z:
    vae.decode(z).sample``) run in ``dtype`` as well. Tensors held outside parameters and buffers are not cast.
    """
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        for t in itertools.chain(module.parameters(), module.buffers()):
            if t.is_floating_point() and t.dtype != dtype:
                saved.append((t, t.data))
                t.data = t.data.to(dtype)
        yield module
    finally:
        for t, data in reversed(saved):
            t.data = data


def polytope_basis(E: int, dim: int, seed: int = 0, dtype: torch.dtype = torch.float64,
                   device: torch.device | str | None = None) -> Tensor:
    """Random orthonormal cross-polytope basis ``(dim, E)``: ``random_projection(E, dim, seed=seed + 1).T``.

    The one seed convention of every entry point (``local_complexity``, ``geom.describe``, ``geom.sweep``):
    ``seed`` draws the output projection of the Jacobian (``random_projection(D, k, seed)``) and ``seed + 1``
    the polytope basis, so the two are independent draws and the same ``(seed, dim, radius)`` gives the same
    delta everywhere."""
    E, dim = int(E), int(dim)
    if not 1 <= dim <= E:
        raise ValueError(f"dim must be between 1 and the latent dimension E={E}, got {dim}")
    return random_projection(E, dim, seed=seeds.derive(int(seed), "polytope_basis"), dtype=dtype, device=device).T


def smallest_radius(z: Tensor, dtype: torch.dtype) -> float:
    """Smallest radius whose vertex offsets ``dtype`` resolves at latents ``z`` ``(B, *latent_shape)``.

    A vertex ``v = z + r b`` rounded to ``dtype`` is off by ``|fl(v) - v| <= u |v| <= u (|z| + r)`` (2-norms,
    ``u = eps(dtype) / 2`` the unit roundoff), so the offset is accurate to ``VERTEX_RTOL`` (1%) of ``r`` when
    ``r >= u max|z| / (VERTEX_RTOL - u)``. float32: ``6e-6 |z|`` (``8e-4`` for a Stable Diffusion latent of
    norm 128); float64: ``1e-14 |z|``."""
    u = torch.finfo(dtype).eps / 2
    znorm = float(z.detach().to(torch.float64).flatten(1).norm(dim=1).max())
    return u * znorm / (VERTEX_RTOL - u)


def cross_polytope(z: Tensor, radius: float, basis: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Vertices ``z +- radius * basis_i`` of the cross-polytope around each latent, built in float64 and
    rounded once to ``dtype`` (default ``z.dtype``).

    ``z`` ``(B, *latent_shape)``, ``basis`` ``(P, E)`` -> ``(B, 2P, *latent_shape)``, ordered
    ``[+b_1, ..., +b_P, -b_1, ..., -b_P]``."""
    B = z.shape[0]
    b = basis.to(device=z.device, dtype=torch.float64)
    steps = torch.cat([b, -b]) * float(radius)  # (2P, E)
    v = z.detach().to(torch.float64).reshape(B, 1, -1) + steps[None]
    return v.reshape(B, steps.shape[0], *z.shape[1:]).to(z.dtype if dtype is None else dtype)


def _check_basis(basis: Tensor, E: int) -> None:
    if not isinstance(basis, Tensor) or basis.ndim != 2 or basis.shape[1] != E:
        shape = tuple(basis.shape) if isinstance(basis, Tensor) else type(basis).__name__
        raise ValueError(f"basis must have shape (P, E) = (P, {E}), got {shape}")
    if not 1 <= basis.shape[0] <= E:
        raise ValueError(f"basis must have between 1 and E={E} rows, got {basis.shape[0]}")
    b = basis.detach().to(torch.float64)
    err = float((b @ b.T - torch.eye(b.shape[0], dtype=torch.float64, device=b.device)).abs().max())
    if not err <= max(64 * torch.finfo(basis.dtype).eps, 1e-5):  # also a float32 basis cast to float64
        raise ValueError(f"basis rows must be orthonormal (|B B^T - I| = {err:.2g}); use "
                         f"geom.complexity.polytope_basis(E, dim, seed) or the Q factor of a QR decomposition")


def local_complexity(G: Callable[[Tensor], Tensor], z: Tensor, radius: float, dim: int, seed: int = 0,
                     basis: Tensor | None = None, batch_size: int | None = None, per_layer: bool = False,
                     dtype: torch.dtype = torch.float64) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Number of neurons whose linear piece changes over the cross-polytope around each latent
    (Humayun et al., Def. 1; joints and the convention for smooth activations: see the module docs).

    Args:
        G: generator ``(B, *latent_shape) -> (B, *out_shape)`` with activation modules (see module docs), in
            eval mode; an ``nn.Module``, a bound method of one, or a callable with a ``.module`` attribute.
        z: latents ``(B, *latent_shape)``.
        radius: polytope radius ``r > 0`` (l1 ball: vertices at distance ``r``), in latent units.
        dim: polytope dimension ``P`` (``1 <= P <= E``); the paper uses ``P = 4``... ``E``.
        seed: seed of the basis when ``basis`` is not given: ``polytope_basis(E, dim, seed)``, i.e.
            ``random_projection(E, dim, seed=seed + 1).T`` -- the same basis as ``geom.describe`` and
            ``geom.sweep`` with the same ``seed``.
        basis: ``(P, E)`` orthonormal rows spanning the polytope (overrides ``dim`` and ``seed``).
        batch_size: latents per forward pass (each costs ``2P`` evaluations); default all. Does not change
            the result in float64.
        per_layer: also return ``{module_name[#call]: (B,) counts}``.
        dtype: precision in which the vertices are rounded and ``G`` is evaluated (default float64; ``G`` is
            cast temporarily with ``cast_module`` and left unchanged). Passing the model's own dtype (e.g.
            ``torch.float32``) is faster but lets neurons within rounding of a joint flip with the batch
            composition, and refuses radii below ``smallest_radius(z, dtype)``.
    Returns:
        ``(B,)`` int64 counts (and the per-layer dict when ``per_layer``).
    Raises:
        ValueError: bad radius, dim or basis; a radius below ``smallest_radius(z, dtype)``; a generator that
            fails in ``dtype``. TypeError: no ``nn.Module`` to find the activation modules in.
        NonFiniteError (a ``ValueError``): latents, a pre-activation or the output are NaN or inf.
    """
    check_generator(G)
    check_latents(z)
    radius = _check_radius(radius, dtype)
    E = math.prod(z.shape[1:])
    if basis is None:
        basis = polytope_basis(E, int(dim), seed, dtype=torch.float64, device=z.device)
    _check_basis(basis, E)
    _check_resolved(z, radius, dtype)
    module, acts = _activations_of(G)
    B = z.shape[0]
    batch_size = B if batch_size is None else max(1, int(batch_size))
    totals = torch.zeros(B, dtype=torch.int64)
    layers: dict[str, Tensor] = defaultdict(lambda: torch.zeros(B, dtype=torch.int64))
    for s in range(0, B, batch_size):
        zb = z[s:s + batch_size]
        for key, cnt in _batch_counts(G, module, acts, zb, s, radius, basis, dtype):
            cnt = cnt.cpu()  # moved to the CPU once per batch, not once per activation (device syncs)
            totals[s:s + zb.shape[0]] += cnt
            layers[key][s:s + zb.shape[0]] += cnt
    if per_layer:
        return totals, dict(layers)
    return totals


def _check_radius(radius, dtype) -> float:
    """``radius`` as a finite float > 0, and ``dtype`` a floating torch dtype (``local_complexity``'s checks)."""
    try:
        radius = float(radius)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"radius must be a finite number > 0, got {radius!r}") from None
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be a finite number > 0, got {radius}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (default torch.float64), got {dtype!r}")
    return radius


def _check_resolved(z: Tensor, radius: float, dtype: torch.dtype) -> None:
    """Refuse a radius below ``smallest_radius(z, dtype)``, naming the smallest one and the finer dtype."""
    r_min = smallest_radius(z, dtype)
    if radius < r_min:
        znorm = float(z.detach().to(torch.float64).flatten(1).norm(dim=1).max())
        raise ValueError(f"radius={radius:g} is too small for {dtype}: at these latents (norm up to {znorm:.3g}) "
                         f"the smallest radius whose vertex offsets it resolves to {VERTEX_RTOL:.0%} is "
                         f"{r_min:.2g}; use radius >= "
                         f"{r_min:.2g} or a finer dtype (default torch.float64)")


def _activations_of(G) -> tuple[nn.Module, dict[str, nn.Module]]:
    """The module behind ``G`` and its activation modules (``activation_modules``); ``ValueError`` without any."""
    module = _module_of(G)
    acts = activation_modules(module)
    if not acts:
        known = ", ".join(a.__name__ for a in ACTIVATIONS[:6])
        raise ValueError(f"{type(module).__name__} has no activation modules ({known}, ...): local complexity "
                         f"counts the neurons whose pre-activation crosses one of their joints")
    return module, acts


def _batch_counts(G, module: nn.Module, acts: dict[str, nn.Module], zb: Tensor, s: int, radius: float,
                  basis: Tensor, dtype: torch.dtype) -> list[tuple[str, Tensor]]:
    """``(activation[#call], (nb,) counts)`` for the latents ``zb`` (rows ``s`` ... of the caller's batch): one
    forward pass of ``G`` in ``dtype`` over the ``2P`` vertices of each latent's cross-polytope, with a forward
    pre-hook on every activation module counting the neurons whose piece changes (``_changed_neurons``)."""
    names = {id(m): n for n, m in acts.items()}
    joint_sets = {id(m): joints(m) for m in acts.values()}
    P2, nb = 2 * basis.shape[0], zb.shape[0]
    verts = cross_polytope(zb, radius, basis, dtype=dtype).reshape(nb * P2, *zb.shape[1:])
    calls: dict[int, int] = defaultdict(int)
    counts: list[tuple[str, Tensor]] = []

    def hook(mod, inputs):
        key, c = names[id(mod)], calls[id(mod)]
        calls[id(mod)] += 1
        counts.append((f"{key}#{c}" if c else key, _changed_neurons(inputs[0], joint_sets[id(mod)], nb, P2, key,
                                                                     s, dtype)))

    handles = [m.register_forward_pre_hook(hook) for m in acts.values()]
    try:
        with torch.no_grad(), cast_module(module, dtype):
            y = call_generator(G, verts)
        if not torch.isfinite(y).all():
            bad = (s + (~torch.isfinite(y)).reshape(nb, -1).any(1).nonzero().flatten()).tolist()
            raise NonFiniteError(f"the generator's output contains NaN or inf values at the polytope vertices "
                                 f"of latent rows {bad[:10]} (evaluated in {dtype}); check the latents' scale, "
                                 f"the radius and the model")
    except NonFiniteError:
        raise
    except ValueError as e:
        raise ValueError(f"{e} (local_complexity evaluates G in {dtype}, see its `dtype` argument; tensors "
                         f"outside the parameters and buffers of {type(module).__name__} are not cast)") from e
    finally:
        for h in handles:
            h.remove()
    return counts


def _changed_neurons(x: Tensor, joint_set, nb: int, P2: int, key: str, s: int, dtype: torch.dtype) -> Tensor:
    """``(nb,)`` counts of the neurons of activation ``key`` whose piece differs between vertices: ``x`` the
    pre-activation ``(nb * P2, ...)`` over the ``P2`` vertices of each of ``nb`` latents (rows ``s`` ...)."""
    if x.shape[0] != nb * P2:
        raise ValueError(f"activation '{key}' saw a leading dimension {x.shape[0]} != batch "
                         f"{nb * P2}: local_complexity needs batch-first activations")
    # the lowest and highest value of each neuron over the latent's 2P vertices, in one pass: the piece
    # index is monotone in x, so it differs between some vertices iff a joint j has lo <= j < hi
    lo, hi = torch.aminmax(x.detach().reshape(nb, P2, -1), dim=1)
    finite = (torch.isfinite(lo) & torch.isfinite(hi)).all(dim=1)  # NaN and inf reach lo or hi
    if not bool(finite.all()):  # a NaN is on no piece: a count over it would be silently wrong
        rows = (s + (~finite).nonzero().flatten().cpu()).tolist()
        raise NonFiniteError(f"the pre-activation of '{key}' contains NaN or inf values at the polytope "
                             f"vertices of latent rows {rows[:10]} (evaluated in {dtype}): no neuron's "
                             f"piece is defined there; check the latents' scale, the radius and the model")
    changed = None
    for j in joint_set:
        cut = (lo <= j) & (hi > j)
        changed = cut if changed is None else changed | cut
    return changed.sum(dim=1) if changed is not None else torch.zeros(nb, dtype=torch.int64, device=x.device)
