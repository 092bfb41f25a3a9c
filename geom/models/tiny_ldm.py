"""``tiny-ldm``: a small latent diffusion model with the structure of Stable Diffusion, trained by the
repository on ``geom.shapes`` (Humayun et al. Sec. 3.3 use Stable Diffusion v1.4; this is its CPU-sized
stand-in).

Parts (all diffusers/torch modules):

- ``vae``: ``diffusers.AutoencoderKL``, RGB ``(B, 3, 32, 32)`` in ``[-1, 1]`` <-> latent ``(B, 4, 8, 8)``
  (1/4 resolution); latents are multiplied by ``vae.config.scaling_factor`` (``1 / std`` of the training
  latents, as SD's 0.18215) before diffusion.
- ``text_encoder``: ``PromptEncoder``, a word-level prompt encoder defined here (vocabulary of
  ``geom.shapes.vocabulary()``, embeddings + learned positions + a 2-layer pre-norm transformer);
  ``(B, L=8) token ids -> (B, 8, 64)`` embeddings. The empty prompt ``""`` is the unconditional branch.
- ``unet``: ``diffusers.UNet2DConditionModel`` with cross-attention to the prompt embeddings, predicting
  the noise (epsilon) of the DDPM forward process (Ho et al. 2020) with SD's ``scaled_linear`` betas.
- ``scheduler``: ``diffusers.DDIMScheduler`` configuration (SD v1 settings) used for sampling.

Training (``python -m geom.models.tiny_ldm train``): stage 1 trains the VAE (L1 + MSE reconstruction +
small KL), stage 2 encodes the data set once and trains UNet + prompt encoder with the DDPM epsilon loss,
prompt dropout ``p_uncond`` (classifier-free guidance, Ho & Salimans 2022) and an EMA of the weights.
Checkpoints for resuming go to ``OUT/runs/`` (git-ignored); the final folder ``OUT/`` holds ``vae/``,
``unet/``, ``text_encoder/`` (config.json + safetensors), ``scheduler/scheduler_config.json``,
``training_config.json`` (arguments, losses, timings) and ``SHA256SUMS``.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from .. import shapes
from ..paths import CHECKPOINTS
from ..deprecation import renamed_fields
from .ldm_train import (OLD_FIELDS, COMMON_HELP, LDMConfig, LDMData, build_scheduler, build_unet, build_vae,  # noqa: F401
                        train_cli, train_ldm, verify_sha256sums, write_sha256sums)

DEFAULT_DIR = CHECKPOINTS / "tiny-ldm"
PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"


# --------------------------------------------------------------------------------------------- prompt encoder
class PromptEncoder(ModelMixin, ConfigMixin):
    """Word-level prompt encoder: ``tokenize(list[str]) -> (B, max_length)`` ids, ``forward(ids) ->
    (B, max_length, hidden_size)``. Token 0 is padding, 1 a begin token (always first, so the empty
    prompt is ``[BOS, PAD, ...]``), 2 the unknown word; words are lower-cased and split on whitespace
    (punctuation removed). Like CLIP in SD, no attention mask: padding positions carry embeddings too."""

    @register_to_config
    def __init__(self, vocab: list[str] = (), max_length: int = 8, hidden_size: int = 64, num_layers: int = 2,
                 num_heads: int = 4, ff_size: int = 128):
        super().__init__()
        self.tokens = [PAD, BOS, UNK, *vocab]
        self.index = {w: i for i, w in enumerate(self.tokens)}
        self.embed = nn.Embedding(len(self.tokens), hidden_size)
        self.pos = nn.Parameter(torch.randn(max_length, hidden_size) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, ff_size, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)

    @staticmethod
    def words(prompt: str) -> list[str]:
        return re.sub(r"[^\w\s]", " ", prompt.lower()).split()

    def tokenize(self, prompts: list[str]) -> Tensor:
        """``(B, max_length)`` int64 ids; too long a prompt raises. Words outside the vocabulary map to
        ``<unk>`` (an embedding the model never saw in training) with a warning naming them."""
        if isinstance(prompts, str):
            raise TypeError("tokenize takes a list of prompts, got a single string")
        L = self.config.max_length
        ids = torch.zeros(len(prompts), L, dtype=torch.long)
        unknown = []
        for i, p in enumerate(prompts):
            w = self.words(p)
            if len(w) > L - 1:
                raise ValueError(f"prompt {p!r} has {len(w)} words; this prompt encoder takes at most {L - 1}")
            unknown += [x for x in w if x not in self.index]
            ids[i, 0] = self.index[BOS]
            ids[i, 1:1 + len(w)] = torch.tensor([self.index.get(x, self.index[UNK]) for x in w], dtype=torch.long)
        if unknown:
            warnings.warn(f"words not in the prompt encoder's vocabulary map to <unk>: {sorted(set(unknown))} "
                          f"(known words: its .tokens; tiny-ldm's are geom.shapes.vocabulary(), fashion-ldm's "
                          f"geom.models.fashion_ldm.vocabulary())", UserWarning, stacklevel=2)
        return ids

    def forward(self, input_ids: Tensor) -> Tensor:
        h = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        return self.norm(self.layers(h))


# --------------------------------------------------------------------------------------------- training
@renamed_fields(**OLD_FIELDS)
@dataclass
class TrainConfig(LDMConfig):
    """All settings of one tiny-ldm run (written to ``training_config.json``): ``LDMConfig``'s and the data set's
    (``n_per_combo`` images per prompt, ``copies`` of each memorised image)."""
    n_per_combo: int = 30
    copies: int = 100


def training_data(cfg: TrainConfig) -> LDMData:
    """``geom.shapes.make_dataset`` as the trainer's ``LDMData`` (images in ``[-1, 1]``, held in memory)."""
    data = shapes.make_dataset(n_per_combo=cfg.n_per_combo, size=cfg.size, seed=cfg.seed, copies=cfg.copies)
    info = {"n_images": len(data), "n_memorised_copies": int(data.memorised.sum()),
            "memorised_prompts": list(shapes.MEMORISED_PROMPTS)}
    return LDMData.from_tensor(shapes.to_model_range(data.images), data.prompts, shapes.vocabulary(), info)


def train(out: str | Path = DEFAULT_DIR, cfg: TrainConfig | None = None, progress: bool = True) -> Path:
    """Train ``tiny-ldm`` and write the checkpoint folder ``out`` (see module docs). Resumes from
    ``out/runs/state.pt`` when present. Returns ``out``."""
    cfg = cfg or TrainConfig()
    return train_ldm(out, cfg, training_data(cfg), PromptEncoder, "TinyLDM", "python -m geom.models.tiny_ldm train",
                     progress)


TRAIN_HELP = {  # one line per TrainConfig field that the CLI exposes
    **COMMON_HELP,
    "seed": "seed of the data set, the initialisation and the training batches",
    "size": "image side in pixels (the latent is size / 4)",
    "n_per_combo": "training images per (shape, colour, background) prompt",
    "copies": "copies of each memorised prompt's single image in the training set",
}


def main(argv: list[str] | None = None) -> None:
    train_cli("python -m geom.models.tiny_ldm", __doc__.splitlines()[0], "tiny-ldm", TrainConfig, TRAIN_HELP,
              DEFAULT_DIR, lambda out, cfg: train(out, cfg), argv)


if __name__ == "__main__":
    main()
