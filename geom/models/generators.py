"""One registry of generators for the descriptors: ``load_generator(name_or_path)``.

Every generator is a ``Generator`` (``geom.models.base``), an ``nn.Module``
``G: (B, *latent_shape) -> (B, *output_shape)`` in eval mode with frozen
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
``fashion-ldm``                 Fashion-MNIST LDM's VAE       ``(4, 8, 8)``     ``(3, 32, 32)``, ~[-1, 1]
                                decoder (checked against its
                                SHA256SUMS)
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

The generator type is ``geom.models.base.Generator`` (re-exported here, with ``ModuleGenerator``);
``load_generator`` is the one door, ``parse_model_name`` the one parser of names (``check_model_spec`` checks
one; ``geom.sweep`` uses both). ``load_model`` and ``LoadedModel``, the former ``geom.sweep`` interface, are
deprecated aliases (``DeprecationWarning``): ``load_model`` is ``load_generator``, ``LoadedModel(G,
latent_shape, ...)`` builds a ``ModuleGenerator``.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from .. import paths
from .base import Generator, ModuleGenerator, check_generator, find_module  # noqa: F401  (the generator type)

DTYPES = ("float32", "float64", "float16", "bfloat16")


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
ModelLoader = Callable[[str, torch.device, torch.dtype], Generator]
MODELS: dict[str, ModelLoader] = {}


def register_model(name: str, loader: ModelLoader) -> None:
    """Register ``loader(arg, device, dtype)`` for names ``name`` or ``name:<arg>`` (``arg``: the text after the
    first ``:``, ``""`` without one); it returns a ``Generator`` (e.g. ``ModuleGenerator(name, net,
    latent_shape, output_shape)`` around an ``nn.Module``). ``load_generator`` names, freezes and puts it in
    eval mode."""
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


def _load_fashion_ldm(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    from .pipeline import load_pipeline
    return _pipeline_generator("fashion-ldm", load_pipeline("fashion-ldm", device=device, dtype=dtype))


def _load_dcgan_faces(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    from .dcgan import load_dcgan_faces
    return load_dcgan_faces(device=device, dtype=dtype)


def _load_omniart_eyes(arg: str, device: torch.device, dtype: torch.dtype) -> Generator:
    from .omniart import load_omniart_eyes
    return load_omniart_eyes(arg, device=device, dtype=dtype)


register_model("dcgan-faces", _load_dcgan_faces)
register_model("omniart-eyes", _load_omniart_eyes)
register_model("tiny-ldm", _load_tiny_ldm)
register_model("fashion-ldm", _load_fashion_ldm)
register_model("mlp", _load_mlp)
register_model("sd-vae-random", _load_sd_vae_random)
_NO_ARG = ("dcgan-faces", "tiny-ldm", "fashion-ldm")
_BUILTIN = {"dcgan-faces": "dcgan-faces", "tiny-ldm": "tiny-ldm", "mlp": "mlp:<seed>",
            "sd-vae-random": "sd-vae-random:<latent_size>", "omniart-eyes": "omniart-eyes:<eye colour>",
            "fashion-ldm": "fashion-ldm"}


def known_names() -> list[str]:
    """The accepted name forms, for error messages."""
    return ([_BUILTIN[n] for n in _BUILTIN] + ["<local Stable Diffusion folder>"]
            + [n for n in MODELS if n not in _BUILTIN])


class ModelName(NamedTuple):
    """A parsed model name (``parse_model_name``): ``spec``, the name as the generator will carry it (the
    absolute path for a folder); ``key``, the ``MODELS`` key (``None`` for a folder); ``arg``, the text after
    the key's ``:`` (``""`` without one); ``folder``, the resolved folder (``None`` for a registered name)."""
    spec: str
    key: str | None
    arg: str
    folder: Path | None


def parse_model_name(model: str | Path | ModelName) -> ModelName:
    """The one parser of model names (``load_generator``, ``check_model_spec``, ``geom.sweep``): ``name`` or
    ``name:<arg>`` for a registered ``name`` (the first ``:`` splits), otherwise a local folder (relative paths
    against the repository root, ``geom.paths.resolve``). Checks without reading weights (reads only: a folder
    must exist).

    Raises ``ValueError`` for a name that is no registered model nor a local folder (listing the known names),
    or a malformed argument (``mlp:x``, ``sd-vae-random:0``, ``tiny-ldm:3``, ``omniart-eyes`` without one of
    its eight eye colours)."""
    if isinstance(model, ModelName):
        return model
    if isinstance(model, Path):
        model = str(model)
    if not isinstance(model, str) or not model:
        raise ValueError(f"model spec must be a non-empty string, got {model!r}")
    key, _, arg = model.partition(":")
    if key in MODELS:
        if key == "mlp" and arg:
            _int_arg(arg, "mlp:<seed>")
        if key == "sd-vae-random" and arg and _int_arg(arg, "sd-vae-random:<latent_size>") < 1:
            raise ValueError(f"sd-vae-random:<latent_size> needs a latent size >= 1, got {arg}")
        if key in _NO_ARG and arg:
            raise ValueError(f"model {key!r} takes no argument, got {model!r}")
        if key == "omniart-eyes":
            from .omniart import eye_color_index  # the colours, without reading the weights
            eye_color_index(arg)
        return ModelName(model, key, arg, None)
    p = paths.resolve(model)
    if p.is_dir():
        return ModelName(str(p), None, "", p)
    raise ValueError(f"unknown model {model!r} (and no folder {p}); known: {', '.join(known_names())}")


def check_model_spec(model: str) -> None:
    """``parse_model_name`` without its result: raises ``ValueError`` for an unknown name or a bad argument."""
    parse_model_name(model)


def as_dtype(d: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or ``float16``/``bfloat16`` on GPU) or a ``torch.dtype``."""
    if isinstance(d, torch.dtype):
        return d
    if d not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64' (or float16/bfloat16 on GPU), got {d!r}")
    return getattr(torch, d)


def load_generator(name_or_path: str | Path | ModelName, device: str | torch.device = "cpu",
                   dtype: str | torch.dtype = torch.float32) -> Generator:
    """The one door to the named generators: load one by name (see the module docs) or local Stable Diffusion
    folder path onto ``device`` in ``dtype``: a ``Generator`` ``(B, *latent_shape) -> (B, *output_shape)``
    in eval mode with frozen parameters, with ``name``, ``latent_shape``, ``output_shape``,
    ``sample_latents(n, seed)``, ``encode`` and ``image_size`` (``None`` where there is no encoder).

    Raises ``ValueError`` for an unknown name (listing the known ones) or a bad argument,
    ``FileNotFoundError`` for a missing package, checkpoint or folder file (naming the fix), ``TypeError``
    when a registered loader returns no ``Generator``."""
    name = parse_model_name(name_or_path)
    device, dtype = torch.device(device), as_dtype(dtype)
    if name.key is None:
        gen = _load_folder(name.folder, device, dtype)
    else:
        gen = MODELS[name.key](name.arg, device, dtype)
    if not isinstance(gen, Generator):
        raise TypeError(f"the loader of {name.spec!r} returned {type(gen).__name__}; a loader returns a "
                        f"geom.models.Generator: wrap an nn.Module as ModuleGenerator(name, net, latent_shape, "
                        f"output_shape)")
    if name.key not in ("mlp", "sd-vae-random"):  # these keep their loader's name ("mlp" -> "mlp:0")
        gen.name = name.spec
    return gen.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------- deprecated
class LoadedModel(ModuleGenerator):
    """Deprecated (warns ``DeprecationWarning``): the former ``geom.sweep`` interface, now a ``Generator``.
    ``LoadedModel(G, latent_shape, encode=None, image_size=None)`` wraps ``G`` (an ``nn.Module``, or a callable
    whose module ``find_module`` finds) as a ``ModuleGenerator``; ``G`` is checked with ``check_generator``
    (refused in training mode, before any forward pass) and called once on a zero latent to learn
    ``output_shape``. Write ``ModuleGenerator(name, net, latent_shape, output_shape)`` instead."""

    def __init__(self, G: Callable[[Tensor], Tensor], latent_shape: tuple[int, ...],
                 encode: Callable[[Tensor], Tensor] | None = None, image_size: tuple[int, int, int] | None = None):
        warnings.warn("geom.models.LoadedModel is deprecated: a loader returns a Generator, e.g. "
                      "ModuleGenerator(name, net, latent_shape, output_shape)", DeprecationWarning, stacklevel=2)
        net = find_module(G)
        if net is None:
            raise TypeError(f"LoadedModel needs G as an nn.Module or a callable with a .module "
                            f"(geom.with_module), got {type(G).__name__}")
        check_generator(G)  # before the forward pass below (it would update BatchNorm statistics)
        t = next((t for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()), None)
        dtype, device = (torch.float32, torch.device("cpu")) if t is None else (t.dtype, t.device)
        with torch.no_grad():
            out = G(torch.zeros(1, *latent_shape, dtype=dtype, device=device))
        super().__init__(type(net).__name__, net, latent_shape, tuple(out.shape[1:]),
                         fn=None if G is net else G, encode=encode, image_size=image_size)


def load_model(model: str, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32") -> Generator:
    """Deprecated (warns ``DeprecationWarning``): ``load_generator(model, device, dtype)``, the same
    ``Generator`` (its former ``.G`` is the generator itself)."""
    warnings.warn("geom.models.load_model is deprecated: use geom.models.load_generator (the same Generator)",
                  DeprecationWarning, stacklevel=2)
    return load_generator(model, device, dtype)
