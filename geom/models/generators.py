"""One registry of generators for the descriptors: ``load_generator(name_or_path)``.

Every generator is an ``nn.Module`` ``G: (B, *latent_shape) -> (B, *output_shape)`` in eval mode with frozen
parameters (``requires_grad=False``; Jacobians w.r.t. the latents still work), carrying ``name``,
``latent_shape``, ``output_shape``, ``sample_latents(n, seed)`` (its latent prior), and, for decoders of an
autoencoder, ``encode`` (images ``(B, *image_size)`` in ``[-1, 1]`` -> latents) and ``image_size``.

Names (``MODELS``; add one with ``register_model``):

==============================  ============================  ================  ==========================
name                            model                         latent_shape      output_shape, range
==============================  ============================  ================  ==========================
``dcgan-faces``                 pretrained DigiFace-1M DCGAN  ``(100,)``        ``(3, 64, 64)``, [-1, 1]
                                (``geom.models.dcgan``)
``omniart-eyes:<eye colour>``   pretrained OmniArt eye        ``(100,)``        ``(3, 128, 128)``, [-1, 1]
                                cDCGAN, one of 8 classes
                                (``geom.models.omniart``)
``tiny-ldm``                    the embedded LDM's VAE        ``(4, 8, 8)``     ``(3, 32, 32)``, ~[-1, 1]
                                decoder (``load_pipeline``)
``<folder>``                    a local Stable Diffusion      ``(4, 64, 64)``   ``(3, 512, 512)``, ~[-1, 1]
                                folder's VAE decoder          (SD v1)
``mlp:<seed>``                  seeded ReLU MLP (tests)       ``(16,)``         ``(256,)``, unbounded
``sd-vae-random:<size>``        SD v1 VAE decoder, seeded     ``(4, s, s)``     ``(3, 8s, 8s)``, unbounded
                                random weights (benchmarks)
==============================  ============================  ================  ==========================

Latent priors (``sample_latents``, drawn from ``torch.Generator().manual_seed(seed)`` on the CPU in the
generator's dtype, then moved to its device): standard normal for ``dcgan-faces``, ``omniart-eyes``, ``mlp`` and
``sd-vae-random``; for the latent diffusion decoders, the diffusion's initial noise ``x_T ~ N(0, I)`` times the
scheduler's ``init_noise_sigma`` in the VAE's scaled latent space (what ``geom.diffusion.ddim_sample`` draws;
note that decoded *denoised* latents are distributed differently). Decoders take latents already multiplied
by the VAE's ``scaling_factor`` (Rombach et al. 2022, Sec. 4.3.2), as the diffusion produces them.

``load_model`` / ``LoadedModel`` / ``check_model_spec`` / ``register_model`` keep the interface of
``geom.sweep`` (a ``LoadedModel`` wraps a generator from this registry).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .. import paths

DTYPES = ("float32", "float64", "float16", "bfloat16")


# ------------------------------------------------------------------------------------------- the module
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

    def sample_latents(self, n: int, seed: int) -> Tensor:
        """``n`` latents ``(n, *latent_shape)`` from the generator's prior (see the module docs), seeded by
        ``torch.Generator().manual_seed(seed)`` (global RNG untouched; same seed, same latents)."""
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
    ``net``, as ``geom.complexity.with_module`` describes); ``local_complexity`` hooks ``net``'s activations."""

    def __init__(self, name: str, net: nn.Module, latent_shape, output_shape, fn: Callable | None = None, **kw):
        super().__init__(name, latent_shape, output_shape, **kw)
        self.net = net
        self._fn = fn

    def generate(self, z: Tensor) -> Tensor:
        return self.net(z) if self._fn is None else self._fn(z)


# ------------------------------------------------------------------------------------------- test models
def mlp_generator(seed: int = 0, sizes: tuple[int, ...] = (16, 128, 128, 256),
                  dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """Seeded ReLU MLP generator ``(B, sizes[0]) -> (B, sizes[-1])`` (ReLU after every hidden layer)."""
    g = torch.Generator().manual_seed(int(seed))
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=dtype) * (2 / a) ** 0.5)
            lin.bias.copy_(torch.randn(b, generator=g, dtype=dtype) * 0.1)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


SD_V1_VAE_CONFIG = dict(  # runwayml/stable-diffusion-v1-5, vae/config.json
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, act_fn="silu",
    block_out_channels=(128, 256, 512, 512), sample_size=512, scaling_factor=0.18215,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def sd_vae_random(seed: int = 0, dtype: torch.dtype = torch.float32):
    """diffusers ``AutoencoderKL`` with the Stable Diffusion v1 VAE architecture and seeded random weights
    (``kaiming_uniform`` convolutions/linears drawn from a local ``torch.Generator``; global RNG untouched)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**SD_V1_VAE_CONFIG)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                if m.bias is not None:
                    bound = 1 / math.sqrt(m.weight[0].numel())
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)
    return vae.to(dtype).eval()


# ------------------------------------------------------------------------------------------- loaders
ModelLoader = Callable[[str, torch.device, torch.dtype], "Generator | LoadedModel"]
MODELS: dict[str, ModelLoader] = {}


def register_model(name: str, loader: ModelLoader) -> None:
    """Register ``loader(arg, device, dtype)`` for names ``name`` or ``name:<arg>``; it returns a ``Generator``
    (or, as in ``geom.sweep``, a ``LoadedModel``)."""
    MODELS[name] = loader


def _int_arg(s: str, form: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise ValueError(f"expected {form} with an integer, got {s!r}") from None


def _vae_generator(name: str, vae: nn.Module, latent_shape: tuple[int, int, int], **kw) -> Generator:
    """The decoder ``z -> decoder(post_quant_conv(z / scaling_factor))`` of a diffusers ``AutoencoderKL``
    (``geom.models.pipeline.VAEDecoder``, the same numbers as ``vae.decode(z / scaling_factor).sample``)."""
    from .pipeline import VAEDecoder

    sf = float(vae.config.scaling_factor)
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    image = (int(vae.config.out_channels), latent_shape[1] * down, latent_shape[2] * down)
    gen = ModuleGenerator(name, VAEDecoder(vae, sf), latent_shape, image, image_size=image,
                          encode=lambda x: vae.encode(x).latent_dist.mean * sf, **kw)
    gen.config = vae.config  # scaling_factor etc. live outside the state dict (geom.sweep.model_digest reads it)
    return gen


def _load_mlp(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    seed = _int_arg(arg or "0", "mlp:<seed>")
    net = mlp_generator(seed, dtype=dtype).to(device)
    return ModuleGenerator(f"mlp:{seed}", net, (net[0].in_features,), (net[-1].out_features,))


def _load_sd_vae_random(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    size = _int_arg(arg or "16", "sd-vae-random:<latent_size>")
    if size < 1:
        raise ValueError(f"sd-vae-random:<latent_size> needs a latent size >= 1, got {size}")
    vae = sd_vae_random(0, dtype).to(device)
    return _vae_generator(f"sd-vae-random:{size}", vae, (4, size, size))


def _load_folder(folder: Path, device: torch.device, dtype: torch.dtype) -> Generator:
    """A diffusers folder's decoder. Only ``vae/`` is loaded when it exists (a sweep needs nothing else; the
    latent size is the UNet's ``sample_size`` when ``unet/config.json`` exists); otherwise ``load_pipeline``
    is called, which names the missing files."""
    if not (folder / "vae" / "config.json").exists():
        from .pipeline import load_pipeline
        return _pipeline_generator(str(folder), load_pipeline(folder, device=device, dtype=dtype))
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype,
                                        local_files_only=True).to(device).eval()
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    s = int(vae.config.sample_size)
    latent = (int(vae.config.latent_channels), s // down, s // down)
    unet_cfg = folder / "unet" / "config.json"
    if unet_cfg.exists():  # the UNet's sample size is the latent size the model generates at
        u = json.loads(unet_cfg.read_text()).get("sample_size")
        if isinstance(u, int):
            latent = (latent[0], u, u)
    return _vae_generator(str(folder), vae, latent)


def _pipeline_generator(name: str, pipe) -> Generator:
    """The ``vae_decode`` of a ``geom.models.load_pipeline`` object; prior ``init_noise_sigma * N(0, I)``."""
    latent = tuple(int(s) for s in pipe.latent_shape)
    image = (int(pipe.vae.config.out_channels), *pipe.image_size)
    sigma = float(getattr(pipe.scheduler, "init_noise_sigma", 1.0))
    gen = ModuleGenerator(name, pipe.vae_decode, latent, image, prior_scale=sigma, encode=pipe.vae_encode,
                          image_size=image)
    gen.config = pipe.vae.config  # as in _vae_generator
    return gen


def _load_tiny_ldm(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    from .pipeline import load_pipeline
    return _pipeline_generator("tiny-ldm", load_pipeline("tiny-ldm", device=device, dtype=dtype))


def _load_dcgan_faces(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    from .dcgan import load_dcgan_faces
    return load_dcgan_faces(device=device, dtype=dtype)


def _load_omniart_eyes(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    from .omniart import load_omniart_eyes
    return load_omniart_eyes(arg, device=device, dtype=dtype)


register_model("dcgan-faces", _load_dcgan_faces)
register_model("omniart-eyes", _load_omniart_eyes)
register_model("tiny-ldm", _load_tiny_ldm)
register_model("mlp", _load_mlp)
register_model("sd-vae-random", _load_sd_vae_random)
_NO_ARG = ("dcgan-faces", "tiny-ldm")
_BUILTIN = {"dcgan-faces": "dcgan-faces", "tiny-ldm": "tiny-ldm", "mlp": "mlp:<seed>",
            "sd-vae-random": "sd-vae-random:<latent_size>", "omniart-eyes": "omniart-eyes:<eye colour>"}


def known_names() -> list[str]:
    """The accepted name forms, for error messages."""
    return ([_BUILTIN[n] for n in _BUILTIN] + ["<local Stable Diffusion folder>"]
            + [n for n in MODELS if n not in _BUILTIN])


def check_model_spec(model: str) -> None:
    """Raise ``ValueError`` for a name that is no registered model nor a local folder (listing the known
    names), or a malformed argument (``mlp:x``, ``sd-vae-random:0``, ``tiny-ldm:3``, ``omniart-eyes`` without
    one of its eight eye colours)."""
    if not isinstance(model, str) or not model:
        raise ValueError(f"model spec must be a non-empty string, got {model!r}")
    name, _, arg = model.partition(":")
    if name in MODELS:
        if name == "mlp" and arg:
            _int_arg(arg, "mlp:<seed>")
        if name == "sd-vae-random" and arg and _int_arg(arg, "sd-vae-random:<latent_size>") < 1:
            raise ValueError(f"sd-vae-random:<latent_size> needs a latent size >= 1, got {arg}")
        if name in _NO_ARG and arg:
            raise ValueError(f"model {name!r} takes no argument, got {model!r}")
        if name == "omniart-eyes":
            from .omniart import eye_color_index  # the colours, without reading the weights
            eye_color_index(arg)
        return
    p = paths.resolve(model)
    if p.is_dir():
        return
    raise ValueError(f"unknown model {model!r} (and no folder {p}); known: {', '.join(known_names())}")


def as_dtype(d: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or ``float16``/``bfloat16`` on GPU) or a ``torch.dtype``."""
    if isinstance(d, torch.dtype):
        return d
    if d not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64' (or float16/bfloat16 on GPU), got {d!r}")
    return getattr(torch, d)


def load_generator(name_or_path: str | Path, device: str | torch.device = "cpu",
                   dtype: str | torch.dtype = torch.float32) -> Generator:
    """Load a generator by name (see the module docs) or local Stable Diffusion folder path onto ``device`` in
    ``dtype``: an ``nn.Module`` ``(B, *latent_shape) -> (B, *output_shape)`` in eval mode with frozen
    parameters, with ``name``, ``latent_shape``, ``output_shape``, ``sample_latents(n, seed)``, ``encode`` and
    ``image_size`` (``None`` where there is no encoder).

    Raises ``ValueError`` for an unknown name (listing the known ones) or a bad argument,
    ``FileNotFoundError`` for a missing package, checkpoint or folder file (naming the fix)."""
    spec, obj = _load(name_or_path, device, dtype)
    return _finish(_as_generator(obj, spec, torch.device(device), as_dtype(dtype)), spec)


def _finish(gen: Generator, spec: str) -> Generator:
    """Name (the spec; ``mlp``/``sd-vae-random`` keep their loader's name), eval mode, frozen parameters."""
    if spec.partition(":")[0] not in ("mlp", "sd-vae-random"):
        gen.name = spec
    return gen.eval().requires_grad_(False)


def _load(name_or_path: str | Path, device: str | torch.device, dtype: str | torch.dtype
          ) -> tuple[str, Generator | LoadedModel]:
    """``(spec, what the loader returned)``; ``spec`` is the absolute path for a folder."""
    spec = str(name_or_path)
    check_model_spec(spec)
    device, dtype = torch.device(device), as_dtype(dtype)
    name, _, arg = spec.partition(":")
    if name in MODELS:
        return spec, MODELS[name](arg, device, dtype)
    folder = paths.resolve(spec)
    return str(folder), _load_folder(folder, device, dtype)


# ------------------------------------------------------------------------------------------- geom.sweep
@dataclass
class LoadedModel:
    """A generator for ``geom.sweep``: ``G`` ``(B, *latent_shape) -> (B, *out_shape)`` (an ``nn.Module``, or a
    callable carrying a ``.module`` for ``local_complexity``), the ``latent_shape``, and optionally ``encode``
    (images ``(B, C, H, W)`` in ``[-1, 1]`` -> latents) with the ``image_size`` ``(C, H, W)`` it expects."""

    G: Callable[[Tensor], Tensor]
    latent_shape: tuple[int, ...]
    encode: Callable[[Tensor], Tensor] | None = None
    image_size: tuple[int, int, int] | None = None


def _as_generator(obj, name: str, device: torch.device, dtype: torch.dtype) -> Generator:
    if isinstance(obj, Generator):
        return obj
    if not isinstance(obj, LoadedModel):
        raise TypeError(f"the loader of {name!r} returned {type(obj).__name__}; expected a Generator or LoadedModel")
    G = obj.G
    net = G if isinstance(G, nn.Module) else getattr(G, "module", None)
    if not isinstance(net, nn.Module):
        raise TypeError(f"the loader of {name!r} returned a LoadedModel whose G is neither an nn.Module nor a "
                        f"callable with a .module (geom.complexity.with_module)")
    training = [n or type(net).__name__ for n, m in net.named_modules() if m.training]
    if training:  # refused before any forward pass (it would update BatchNorm statistics): no .eval() for it
        raise ValueError(f"the loader of {name!r} returned a generator with modules in training mode "
                         f"({', '.join(training[:3])}); call G.eval() in the loader")
    with torch.no_grad():
        out = G(torch.zeros(1, *obj.latent_shape, dtype=dtype, device=device))
    return ModuleGenerator(name, net, obj.latent_shape, tuple(out.shape[1:]),
                           fn=None if isinstance(G, nn.Module) else G, encode=obj.encode, image_size=obj.image_size)


def load_model(model: str, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32") -> LoadedModel:
    """``load_generator`` for ``geom.sweep``: the generator as a ``LoadedModel`` (``G`` is the ``Generator``).
    A loader registered the ``geom.sweep`` way keeps its ``LoadedModel`` as it returned it (its module's mode
    and parameters untouched: ``geom.sweep`` checks it with ``geom.jacobian.check_generator``)."""
    spec, obj = _load(model, device, dtype)
    if isinstance(obj, LoadedModel):
        return obj
    gen = _finish(_as_generator(obj, spec, torch.device(device), as_dtype(dtype)), spec)
    return LoadedModel(G=gen, latent_shape=gen.latent_shape, encode=gen.encode, image_size=gen.image_size)
