"""One interface to a latent diffusion model for the notebooks: the embedded ``tiny-ldm`` or a local
Stable Diffusion v1.x folder in diffusers format (Humayun et al. Sec. 3.3 study SD v1.4's decoder).

``load_pipeline(name_or_path)`` returns a ``LatentDiffusion`` with

- ``encode_prompt(prompts: list[str]) -> (B, L, D)`` text embeddings (``""`` = unconditional),
- ``unet`` (``UNet2DConditionModel``), ``predict_noise(latents, t, embeddings) -> (B, 4, h, w)`` (the UNet's
  output, of the scheduler's ``prediction_type``),
- ``scheduler`` (a ``DDIMScheduler`` with the model's noise schedule and ``prediction_type``),
- ``vae_encode(images (B, 3, H, W) in [-1, 1]) -> latents (B, 4, h, w)`` (scaled by ``scaling_factor``),
- ``vae_decode``: an ``nn.Module`` ``(B, 4, h, w) -> (B, 3, H, W)`` (images in ``[-1, 1]``, not clamped, so
  it is differentiable): the generator ``G`` for ``geom.jacobian`` / ``geom.describe`` /
  ``geom.local_complexity``. It holds only ``post_quant_conv`` and ``decoder`` of the VAE (shared weights),
  so ``local_complexity`` counts decoder neurons only.
- ``latent_shape`` ``(4, h, w)``, ``image_size`` ``(H, W)``, ``device``, ``dtype``, ``kind``
  (``"tiny-ldm"`` or ``"stable-diffusion"``), ``path``.

DDIM sampling with classifier-free guidance and per-step callbacks: ``geom.diffusion``.
Nothing is downloaded: every ``from_pretrained`` uses ``local_files_only=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..paths import CHECKPOINTS, resolve

NAMES = {"tiny-ldm": CHECKPOINTS / "tiny-ldm", "fashion-ldm": CHECKPOINTS / "fashion-ldm"}
# how each named checkpoint is made (named in the error for a missing one)
TRAIN_COMMANDS = {"tiny-ldm": "python -m geom.models.tiny_ldm train",
                  "fashion-ldm": "python -m geom.models.fashion_ldm train --out data/checkpoints/fashion-ldm"}
VERIFIED = ("fashion-ldm",)  # named checkpoints checked against their SHA256SUMS on every load
# model_index.json's _class_name -> kind, for folders whose text encoder is geom's PromptEncoder
PROMPT_ENCODER_KINDS = {"TinyLDM": "tiny-ldm", "FashionLDM": "fashion-ldm"}
_WEIGHTS = {
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
            "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin"),
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
             "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin"),
    "text_encoder": ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors", "pytorch_model.fp16.bin"),
}


class VAEDecoder(nn.Module):
    """``G(z) = decoder(post_quant_conv(z / scaling_factor))``: scaled latents ``(B, 4, h, w)`` -> images
    ``(B, 3, H, W)`` in ``[-1, 1]`` (not clamped). Shares its weights with the ``AutoencoderKL``."""

    def __init__(self, vae: nn.Module, scaling_factor: float):
        super().__init__()
        self.post_quant_conv = getattr(vae, "post_quant_conv", None)
        self.decoder = vae.decoder
        self.scaling_factor = float(scaling_factor)

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 4:
            raise ValueError(f"vae_decode takes latents (B, C, h, w), got shape {tuple(z.shape)}")
        z = z / self.scaling_factor
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


@dataclass
class LatentDiffusion:
    """A loaded latent diffusion model (see the module docs). Build it with ``load_pipeline``."""
    kind: str
    path: Path
    vae: nn.Module
    unet: nn.Module
    text_encoder: nn.Module
    tokenizer: object | None
    scheduler: object
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def __post_init__(self):
        # the wrapper follows the VAE's mode (a fresh nn.Module is in training mode; geom refuses those)
        self.vae_decode = VAEDecoder(self.vae, self.scaling_factor).train(self.vae.training)

    # ---------------------------------------------------------------- shapes
    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def vae_scale_factor(self) -> int:
        """Image side / latent side (4 for tiny-ldm, 8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one latent (``(4, 8, 8)`` for tiny-ldm, ``(4, 64, 64)`` for SD v1 at 512 px)."""
        s = self.unet.config.sample_size
        h, w = (s, s) if isinstance(s, int) else tuple(s)
        return (int(self.unet.config.in_channels), int(h), int(w))

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of a decoded image."""
        _, h, w = self.latent_shape
        return (h * self.vae_scale_factor, w * self.vae_scale_factor)

    # ---------------------------------------------------------------- text
    def tokenize(self, prompts: list[str]) -> Tensor:
        """``(B, L)`` token ids."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a list of strings")
        if self.tokenizer is None:  # geom's PromptEncoder (tiny-ldm, fashion-ldm) tokenizes itself
            return self.text_encoder.tokenize(list(prompts))
        tok = self.tokenizer
        return tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> Tensor:
        """Prompt embeddings ``(B, L, D)`` for the UNet's cross-attention (SD v1: CLIP's last hidden state,
        ``L = 77, D = 768``; tiny-ldm: ``L = 8, D = 64``). ``""`` gives the unconditional embedding."""
        ids = self.tokenize(prompts).to(self.device)
        out = self.text_encoder(ids)
        out = out if isinstance(out, Tensor) else out[0]
        return out.to(self.dtype)

    # ---------------------------------------------------------------- UNet
    def predict_noise(self, latents: Tensor, t: int | Tensor, embeddings: Tensor) -> Tensor:
        """The UNet's output ``(B, 4, h, w)`` for latents ``(B, 4, h, w)`` at time ``t`` and embeddings ``(B, L, D)``:
        the noise ``eps_theta(z_t, t, c)`` when ``scheduler.config.prediction_type`` is ``"epsilon"``, else ``v`` or
        ``x0`` (``geom.diffusion.to_eps_x0`` converts it to ``(eps, x0)``)."""
        return self.unet(latents, t, encoder_hidden_states=embeddings).sample

    # ---------------------------------------------------------------- VAE
    def vae_encode(self, images: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` in ``[-1, 1]`` -> scaled latents ``(B, 4, h, w)``: the posterior mean
        (``sample=False``) or a sample drawn with ``generator``, times ``scaling_factor``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"vae_encode takes images (B, 3, H, W), got shape {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"images are {tuple(images.shape[-2:])}, the model takes {self.image_size}")
        dist = self.vae.encode(images.to(self.device, self.dtype)).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mean
        return z * self.scaling_factor

    def encode_images(self, images: Tensor, batch_size: int = 64) -> Tensor:
        """``vae_encode`` (posterior means) of many images ``(N, 3, H, W)`` in ``[-1, 1]``, ``batch_size`` at a
        time without gradients: scaled latents ``(N, 4, h, w)`` on the CPU."""
        with torch.no_grad():
            return torch.cat([self.vae_encode(images[s:s + batch_size]).cpu()
                              for s in range(0, len(images), batch_size)])

    def decode_latents(self, latents: Tensor, batch_size: int = 64) -> Tensor:
        """``vae_decode`` of many scaled latents ``(N, 4, h, w)``, ``batch_size`` at a time without gradients:
        images ``(N, 3, H, W)`` (about ``[-1, 1]``, not clipped) as float32 on the CPU."""
        with torch.no_grad():
            return torch.cat([self.vae_decode(latents[s:s + batch_size].to(self.device, self.dtype)).float().cpu()
                              for s in range(0, len(latents), batch_size)])

    def to(self, device=None, dtype=None) -> "LatentDiffusion":
        """Move all modules (in place) and return self."""
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        for m in (self.vae, self.unet, self.text_encoder):
            p = next(m.parameters())
            if p.device != self.device or p.dtype != self.dtype:
                m.to(device=self.device, dtype=self.dtype)
        return self


# ------------------------------------------------------------------------------------------- loading
def _weights_file(folder: Path, sub: str) -> Path | None:
    for name in _WEIGHTS[sub]:
        if (folder / sub / name).is_file():
            return folder / sub / name
    return None


def _check_folder(folder: Path, tiny: bool) -> None:
    if not folder.exists():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (expected a diffusers-format model folder)")
    missing = []
    for sub in ("vae", "unet", "text_encoder"):
        if not (folder / sub / "config.json").is_file():
            missing.append(f"{sub}/config.json")
        if tiny and sub == "text_encoder":
            if not (folder / sub / "diffusion_pytorch_model.safetensors").is_file():
                missing.append(f"{sub}/diffusion_pytorch_model.safetensors")
        elif _weights_file(folder, sub) is None:
            missing.append(f"{sub}/ weights (one of {', '.join(_WEIGHTS[sub])})")
    if not (folder / "scheduler" / "scheduler_config.json").is_file():
        missing.append("scheduler/scheduler_config.json")
    if not tiny:
        tok = folder / "tokenizer"
        if not ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file()) and not (tok / "tokenizer.json").is_file():
            missing.append("tokenizer/vocab.json + tokenizer/merges.txt (CLIP BPE files)")
    if missing:
        raise FileNotFoundError(f"model folder {folder} is incomplete; missing: {'; '.join(missing)}")


def _is_tiny(folder: Path) -> bool:
    import json
    cfg = folder / "text_encoder" / "config.json"
    try:
        return json.loads(cfg.read_text()).get("_class_name") == "PromptEncoder"
    except (OSError, ValueError):
        return False


def _kind(folder: Path, tiny: bool) -> str:
    """``"tiny-ldm"`` / ``"fashion-ldm"`` (a PromptEncoder folder, by model_index.json) or ``"stable-diffusion"``."""
    import json
    if not tiny:
        return "stable-diffusion"
    try:
        name = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError):
        name = None
    return PROMPT_ENCODER_KINDS.get(name, "tiny-ldm")


def _variant(folder: Path, sub: str) -> str | None:
    w = _weights_file(folder, sub)
    return "fp16" if w is not None and ".fp16." in w.name else None


def _load_scheduler(folder: Path):
    """``DDIMScheduler`` from ``folder/scheduler/scheduler_config.json`` (see ``load_pipeline``), checked by
    ``geom.diffusion.check_scheduler``."""
    import json

    from diffusers import DDIMScheduler

    from ..diffusion import check_scheduler
    cfg_file = folder / "scheduler" / "scheduler_config.json"
    try:
        stated = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise ValueError(f"{cfg_file} is not valid JSON: {e}") from None
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    if "clip_sample" not in stated and scheduler.config.clip_sample:
        scheduler = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    check_scheduler(scheduler, source=cfg_file)
    return scheduler


def load_pipeline(name_or_path: str | Path = "tiny-ldm", device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32, verify: bool | None = None) -> LatentDiffusion:
    """Load ``"tiny-ldm"`` (the committed checkpoint ``data/checkpoints/tiny-ldm``) or a local diffusers
    folder: a tiny-ldm checkpoint folder, or Stable Diffusion v1.x (``vae/``, ``unet/``, ``text_encoder/``
    (``CLIPTextModel``), ``tokenizer/`` (``CLIPTokenizer``: ``vocab.json``, ``merges.txt``), ``scheduler/``).

    The scheduler is always a ``DDIMScheduler`` built from the folder's ``scheduler/scheduler_config.json``
    (SD v1 ships a PNDM config: the noise schedule is the same), keeping every setting it states:
    ``prediction_type`` (``"epsilon"``; ``"v_prediction"`` for SD 2.x; ``"sample"``), ``timestep_spacing``,
    ``steps_offset``, ``set_alpha_to_one``, ``clip_sample`` / ``clip_sample_range``, ``beta_schedule`` /
    ``trained_betas``, ``num_train_timesteps``, ``rescale_betas_zero_snr``; ``geom.diffusion`` honours them as
    diffusers' ``DDIMScheduler`` does. One default differs: a config that does not state ``clip_sample`` (a
    config written for a sampler without that setting, e.g. PNDM) gets ``clip_sample=False`` (latents are not
    in ``[-1, 1]``), not DDIM's default ``True``. Settings of other samplers (``skip_prk_steps``,
    ``use_karras_sigmas``, ...) do not apply to DDIM and are ignored. Modules are in eval mode with gradients off
    for their weights (Jacobians w.r.t. latents still work). ``verify=True`` checks tiny-ldm files against
    ``SHA256SUMS``; ``verify=None`` (the default) does so for the names of ``VERIFIED`` (``"fashion-ldm"``) only.
    ``"fashion-ldm"``: ``data/checkpoints/fashion-ldm`` (``geom.models.fashion_ldm``, Fashion-MNIST).

    Raises ``ValueError`` for an unknown name (a bare word that is neither a known name nor an existing
    folder) and for a scheduler setting geom does not implement (``geom.diffusion.check_scheduler``:
    ``thresholding=True``, an unknown ``prediction_type`` / ``timestep_spacing``, zero terminal SNR with
    epsilon prediction) and for a file that differs from ``SHA256SUMS`` (naming it), ``FileNotFoundError`` naming
    the missing folder or files (for a named checkpoint: the command that trains it)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    named = isinstance(name_or_path, str) and name_or_path in NAMES
    if verify is None:
        verify = named and name_or_path in VERIFIED
    if named:
        folder = NAMES[name_or_path]
        if not (folder / "vae" / "config.json").exists():
            raise FileNotFoundError(f"the {name_or_path} checkpoint {folder} is missing; regenerate it with "
                                    f"`{TRAIN_COMMANDS[name_or_path]}`")
    else:
        s = str(name_or_path)
        folder = Path(s).expanduser()
        if not folder.is_absolute() and not folder.exists() and resolve(folder).exists():
            folder = resolve(folder)  # relative to the repository root (notebooks run in notebooks/)
        looks_like_path = isinstance(name_or_path, Path) or any(c in s for c in "/\\~.")
        if not looks_like_path and not folder.exists():
            raise ValueError(f"unknown model {s!r}: use one of {sorted(NAMES)} or the path of a local diffusers "
                             f"folder (e.g. /path/to/stable-diffusion-v1-4); nothing is downloaded")
        if not folder.exists():
            raise FileNotFoundError(f"model folder {folder} does not exist (models are loaded from local folders "
                                    f"only; download Stable Diffusion elsewhere and pass its folder)")
    folder = folder.resolve()
    tiny = _is_tiny(folder)
    _check_folder(folder, tiny)
    if tiny and verify:  # before any file is read
        from .ldm_train import verify_sha256sums
        verify_sha256sums(folder)
    scheduler = _load_scheduler(folder)  # first: an unsupported setting is refused before the weights load
    kw = dict(local_files_only=True)
    dkw = dict(kw, torch_dtype=dtype, low_cpu_mem_usage=False)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", variant=_variant(folder, "vae"), **dkw)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", variant=_variant(folder, "unet"), **dkw)
    if tiny:
        from .tiny_ldm import PromptEncoder
        text_encoder = PromptEncoder.from_pretrained(folder, subfolder="text_encoder", **dkw)
        tokenizer = None
    else:
        from transformers import CLIPTextModel, CLIPTokenizer
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder",
                                                     variant=_variant(folder, "text_encoder"), **kw)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **kw)
    for m in (vae, unet, text_encoder):
        m.eval().requires_grad_(False)
    pipe = LatentDiffusion(kind=_kind(folder, tiny), path=folder, vae=vae, unet=unet,
                           text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    return pipe.to(device, dtype)
