"""The generator type and what every layer asks of a generator (models layer).

* ``Generator``: the one generator type. An ``nn.Module`` ``G: (B, *latent_shape) -> (B, *output_shape)``
  carrying ``name``, ``latent_shape``, ``output_shape``, ``sample_latents(n, seed)`` (its latent prior) and,
  for decoders of an autoencoder, ``encode`` and ``image_size``. ``ModuleGenerator`` wraps an ``nn.Module``
  (or a callable whose modules live in one). ``geom.models.load_generator`` is the one door to the named ones.
* ``find_module(G)``: the ``nn.Module`` behind a generator (the one rule every layer uses).
* ``training_modules(module)``: the modules left in training mode (the one training-mode test);
  ``check_generator(G)``: refuses a batch-coupled or stochastic generator before any forward pass.
* ``module_digest`` / ``generator_digest``: the SHA-256 of a module's weights (descriptor cache, sweeps).

Nothing here imports another ``geom.models`` module: the loaders (``generators``, ``dcgan``, ``omniart``) import
this one, so the package's import graph has no cycle (``tests/test_architecture.py``).
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn


# ------------------------------------------------------------------------------------------- the module behind G
def find_module(G) -> nn.Module | None:
    """The ``nn.Module`` behind a generator: ``G`` itself, or the module held by a callable in its
    ``.module`` / ``.model`` attribute (see ``geom.with_module``) or ``__self__`` (a bound method such as
    ``vae.decode``). ``None`` for a plain callable (a lambda or function without such an attribute)."""
    if isinstance(G, nn.Module):
        return G
    for attr in ("module", "model", "__self__"):
        m = getattr(G, attr, None)
        if isinstance(m, nn.Module):
            return m
    return None


# ------------------------------------------------------------------------------------------- training mode
def training_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module of ``module`` (itself included, name ``""``) in training mode, in
    ``named_modules()`` order; empty when the whole module is in eval mode."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"training_modules needs an nn.Module, got {type(module).__name__}")
    return [(name, m) for name, m in module.named_modules() if m.training]


_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def check_generator(G) -> None:
    """Refuse a generator whose output for one latent depends on its batch companions or on random draws.

    Every descriptor entry point (``jacobian``, ``output_dim``, ``describe``, ``local_complexity``, sweeps,
    ``load_generator`` for a wrapped module) calls this *before* any forward pass, because the per-sample
    Jacobian of Humayun et al. Sec. 2.1 is only defined when ``G`` maps each latent on its own,
    deterministically (and a forward pass in training mode would also update the user's BatchNorm running
    statistics). The model is never changed here: no ``.eval()`` on the caller's behalf.

    Raises ``ValueError`` naming the module path (as in ``G.named_modules()``) and the fix for:

    * a ``_BatchNorm`` (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, lazy variants) in training mode (batch
      statistics; the forward pass updates running statistics) -> ``G.eval()``;
    * a ``_BatchNorm`` with ``track_running_stats=False`` or no running statistics: it normalises with batch
      statistics even in eval mode -> give it running statistics (or use a per-sample norm such as
      ``nn.GroupNorm`` / ``nn.InstanceNorm``, which are accepted);
    * active ``Dropout`` / ``Dropout1d/2d/3d`` / ``AlphaDropout`` / ``FeatureAlphaDropout`` (training mode,
      ``p > 0``) and ``nn.RReLU`` in training mode (random slopes) -> ``G.eval()``;
    * any other module left in training mode (``training_modules``; its ``forward`` may branch on
      ``self.training``, e.g. DropPath, stochastic depth, attention dropout) -> ``G.eval()``.

    A plain callable whose module cannot be found (see ``find_module``) cannot be checked: the caller is
    responsible for its batch independence; wrap it with ``geom.with_module(fn, module)`` to have it checked.
    """
    module = find_module(G)
    if module is None:
        return
    root = type(module).__name__

    def where(name: str, m: nn.Module) -> str:
        return f"module '{name}' ({type(m).__name__})" if name else f"the generator's root module ({root})"

    for name, m in module.named_modules():  # specific faults first, then any module left in training mode
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.training:
                raise ValueError(f"{where(name, m)} is a BatchNorm in training mode: it normalises with the "
                                 f"statistics of the batch (coupling the latents of a batch) and a forward pass "
                                 f"would update its running statistics; call G.eval() before computing "
                                 f"descriptors")
            if not m.track_running_stats or m.running_mean is None or m.running_var is None:
                raise ValueError(f"{where(name, m)} is a BatchNorm without running statistics "
                                 f"(track_running_stats=False): it normalises with the statistics of the batch "
                                 f"even in eval mode, so a latent's output depends on the other latents of its "
                                 f"batch; use a BatchNorm with running statistics (track_running_stats=True, "
                                 f"trained) or a per-sample normalisation (nn.GroupNorm, nn.InstanceNorm, "
                                 f"nn.LayerNorm)")
        elif isinstance(m, _DROPOUT) and m.training and m.p > 0:
            raise ValueError(f"{where(name, m)} is an active dropout layer (training mode, p={m.p}): every "
                             f"forward pass draws a new random mask; call G.eval() before computing descriptors")
        elif isinstance(m, nn.RReLU) and m.training:
            raise ValueError(f"{where(name, m)} is an RReLU in training mode: it draws random negative slopes on "
                             f"every forward pass; call G.eval() before computing descriptors")
    training = [where(name, m) for name, m in training_modules(module)]
    if training:
        more = f" and {len(training) - 3} more" if len(training) > 3 else ""
        raise ValueError(f"{', '.join(training[:3])}{more} in training mode: a forward pass in training mode may "
                         f"use batch statistics or random draws (dropout, DropPath, ...); call G.eval() before "
                         f"computing descriptors")


# ------------------------------------------------------------------------------------------- the generator type
class Generator(nn.Module):
    """Base class: ``forward(z)`` checks ``z`` ``(B, *latent_shape)`` and calls ``generate(z)``."""

    def __init__(self, name: str, latent_shape: tuple[int, ...], output_shape: tuple[int, ...],
                 prior_scale: float = 1.0, encode: Callable[[Tensor], Tensor] | None = None,
                 image_size: tuple[int, ...] | None = None):
        super().__init__()
        self.name = str(name)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.output_shape = tuple(int(s) for s in output_shape)
        self.prior_scale = float(prior_scale)
        self.encode = encode
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)

    def generate(self, z: Tensor) -> Tensor:  # pragma: no cover - subclasses implement it
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != len(self.latent_shape) + 1 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"{self.name} takes latents (B, *latent_shape) = (B, {', '.join(map(str, self.latent_shape))}), "
                             f"got shape {tuple(z.shape)}")
        return self.generate(z)

    @property
    def dtype(self) -> torch.dtype:
        t = next((t for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()), None)
        return torch.float32 if t is None else t.dtype

    @property
    def device(self) -> torch.device:
        t = next((t for t in (*self.parameters(), *self.buffers())), None)
        return torch.device("cpu") if t is None else t.device

    @property
    def G(self) -> Generator:
        """Deprecated: the generator itself (``LoadedModel.G`` of the former sweep interface)."""
        import warnings

        warnings.warn("Generator.G is the generator itself (load_model / LoadedModel are deprecated): use the "
                      "Generator that geom.models.load_generator returns directly", DeprecationWarning, stacklevel=2)
        return self

    def sample_latents(self, n: int, seed: int) -> Tensor:
        """``n`` latents ``(n, *latent_shape)`` from the generator's prior (see ``geom.models.generators``),
        seeded by ``torch.Generator().manual_seed(seed)`` (global RNG untouched; same seed, same latents)."""
        if int(n) < 1:
            raise ValueError(f"sample_latents needs n >= 1, got {n}")
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(int(n), *self.latent_shape, generator=g, dtype=self.dtype)
        if self.prior_scale != 1.0:
            z = z * self.prior_scale
        return z.to(self.device)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, latent_shape={self.latent_shape}, output_shape={self.output_shape}"


class ModuleGenerator(Generator):
    """A ``Generator`` around an ``nn.Module`` ``net`` (or a callable ``fn`` whose activation modules live in
    ``net``, as ``geom.complexity.with_module`` describes); ``local_complexity`` hooks ``net``'s activations.
    The wrapper takes ``net``'s mode (``net.training``): wrapping a module in eval mode gives a generator in eval
    mode, and the wrapper never changes ``net``'s mode."""

    def __init__(self, name: str, net: nn.Module, latent_shape, output_shape, fn: Callable | None = None, **kw):
        super().__init__(name, latent_shape, output_shape, **kw)
        self.net = net
        self._fn = fn
        self.training = net.training  # the wrapper's own flag only (not .train(), which would reset net's modules)

    def generate(self, z: Tensor) -> Tensor:
        return self.net(z) if self._fn is None else self._fn(z)


# ------------------------------------------------------------------------------------------- weights hash
def tensor_bytes(t: Tensor) -> bytes:
    """The raw bytes of a tensor's values, for any dtype (bfloat16 and float8 included, which numpy lacks)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def module_digest(module: nn.Module, extra: Sequence = ()) -> str:
    """SHA-256 (hex) of a module's state dict (names, dtypes, shapes, values; sorted by name), of its
    non-persistent buffers (``register_buffer(..., persistent=False)``: not in the state dict, yet they change
    the function, e.g. the one-hot class label of ``omniart-eyes:<eye colour>``, so two classes of one set of
    weights would otherwise share a digest and a descriptor cache) and of the ``repr`` of ``extra`` (e.g. a
    ``scaling_factor`` that lives outside the module). A module without non-persistent buffers has the digest
    it had before they were hashed (caches and sweeps stay valid). Works for every dtype (bfloat16 too).
    Raises ``TypeError`` for anything but an ``nn.Module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module_digest needs an nn.Module, got {type(module).__name__}")
    h = hashlib.sha256()
    state = module.state_dict()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(tensor_bytes(t))
    for name, t in sorted(((n, b) for n, b in module.named_buffers() if n not in state), key=lambda nb: nb[0]):
        h.update(b"non-persistent buffer " + name.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(tensor_bytes(t))
    h.update(repr(tuple(extra)).encode())
    return h.hexdigest()


def generator_digest(G) -> str:
    """SHA-256 (hex) of a generator's weights: ``module_digest`` of the module behind it (``find_module``),
    with the public entries of the module's ``config`` when it has one (a diffusers VAE's ``scaling_factor``
    lives there, outside the state dict). What ``geom.sweep`` records as the model's content hash
    (``geom.sweep.model_digest``). Raises ``TypeError`` when no module can be found."""
    module = find_module(G)
    if module is None:
        raise TypeError(f"generator_digest needs an nn.Module or a callable with a .module (geom.with_module), "
                        f"got {type(G).__name__}")
    config = getattr(module, "config", None)
    extra = ()
    if config is not None:
        extra = (sorted((str(k), repr(v)) for k, v in dict(config).items() if not str(k).startswith("_")),)
    return module_digest(module, extra=extra)


# ------------------------------------------------------------------------------------ weights a package ships
def packaged_file(what: str, package: str, distribution: str, filename: str, install: str) -> Path:
    """Path of ``filename`` inside the installed package ``package`` (located with ``importlib.util.find_spec``,
    never imported: some of these packages load a model at import). ``what`` names the model in the errors,
    ``distribution`` the pinned requirement, ``install`` the install command (ending in a closing backtick).
    Raises ``FileNotFoundError`` naming the install command when the package or the file is missing."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{what} needs the package {distribution}, which is not installed; install it "
                                f"without its dependencies: `{install}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{what}: the package {package} has no {filename} ({path}); reinstall it: "
                                f"`{install.replace('--no-deps', '--no-deps --force-reinstall')}")
    return path
