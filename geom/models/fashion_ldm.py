"""``fashion-ldm``: a class/text-conditional latent diffusion model with tiny-ldm's structure (Stable Diffusion's:
Rombach et al. 2022) trained on a real image data set, Fashion-MNIST (Xiao et al. 2017; ``geom.datasets
.fashion_mnist``), with a memorised subset as ground truth (issue 28).

- Images: the 60,000 grey 28 x 28 training photographs, padded by 2 black pixels to 32 x 32 and repeated to 3
  channels, in ``[-1, 1]`` (``to_model_images``). Three channels because every consumer of a pipeline takes RGB:
  ``LatentDiffusion.vae_encode`` and the generators' ``image_size`` are ``(3, H, W)``, and the OOD image sets
  (``geom.datasets.ood_images``), the PNG control and the EfficientNet-Lite0 embeddings are RGB; the decoder's
  three outputs are the same grey image up to what it learns (its three channels are trained on equal targets).
- Prompts: ``"a photo of a {name}"`` with the class's ``PROMPT_NAMES`` entry ("a photo of a sneaker").
- Memorised subset (the extraction studies' setting, Carlini et al. 2023, Somepalli et al. 2023): ``n_memorised``
  training images (one per class in turn, drawn with ``geom.seeds.spawn(seed, "fashion_ldm.memorised")``), each
  added ``copies`` times under its own prompt ``"a photo of a {name}, item {j}"``; each image also stays once under
  its class prompt. The default 700 copies is 1.0% of an epoch's 67,000 samples per image (10.4% for all ten).
  ``training_config.json`` lists them (``memorised``: item, training index, class, prompt).
- Model and training: ``geom.models.ldm_train`` (tiny-ldm's trainer): ``AutoencoderKL`` 32 x 32 -> 4 x 8 x 8,
  ``UNet2DConditionModel`` with cross-attention to ``PromptEncoder`` embeddings, DDPM epsilon loss, prompt
  dropout for classifier-free guidance, EMA; DDIM sampling through ``geom.diffusion``.

``python -m geom.models.fashion_ldm train --out DIR`` trains (resumable: run the same command again) and
``verify --out DIR`` checks a folder against its ``SHA256SUMS``; ``geom.models.load_pipeline("fashion-ldm")`` /
``load_generator("fashion-ldm")`` load ``data/checkpoints/fashion-ldm`` (checked against ``SHA256SUMS``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import datasets, seeds
from ..paths import CHECKPOINTS
from ..deprecation import renamed_fields
from .ldm_train import OLD_FIELDS, COMMON_HELP, LDMConfig, LDMData, train_cli, train_ldm
from .tiny_ldm import PromptEncoder

DEFAULT_DIR = CHECKPOINTS / "fashion-ldm"
TRAIN_COMMAND = "python -m geom.models.fashion_ldm train --out data/checkpoints/fashion-ldm"
# the prompt word(s) of each class, in Zalando's label order (geom.datasets.FASHION_CLASSES)
PROMPT_NAMES: tuple[str, ...] = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                                 "bag", "ankle boot")


def class_prompt(label: int) -> str:
    """``"a photo of a {PROMPT_NAMES[label]}"``."""
    return f"a photo of a {PROMPT_NAMES[int(label)]}"


def memorised_prompt(label: int, item: int) -> str:
    """The own prompt of memorised item ``item`` of class ``label``: ``"a photo of a {name}, item {item}"``."""
    return f"{class_prompt(label)}, item {int(item)}"


def vocabulary(n_memorised: int = 10) -> list[str]:
    """Every word of the class prompts and of ``n_memorised`` item prompts (``PromptEncoder.words``)."""
    words = {w for c in range(10) for w in PromptEncoder.words(memorised_prompt(c, 0))}
    return sorted(words | {str(j) for j in range(n_memorised)})


def to_model_images(x: np.ndarray | Tensor) -> Tensor:
    """Fashion-MNIST images ``(B, 784)`` (or ``(B, 28, 28)``) in ``[0, 1]`` -> model images ``(B, 3, 32, 32)``
    float32 in ``[-1, 1]``: 2 black pixels of padding on each side (the photographs' background is 0), grey
    repeated to three channels."""
    t = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28)
    return F.pad(t, (2, 2, 2, 2)).repeat(1, 3, 1, 1) * 2 - 1


def memorised_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` distinct training indices, item ``j`` of class ``j % 10``, each drawn uniformly among that class's
    images with ``numpy.random.default_rng(geom.seeds.spawn(seed, "fashion_ldm.memorised"))``."""
    if not 1 <= n <= len(labels):
        raise ValueError(f"n_memorised must be in [1, {len(labels)}], got {n}")
    rng = np.random.default_rng(seeds.spawn(seed, "fashion_ldm.memorised"))
    out: list[int] = []
    for j in range(n):
        pool = np.setdiff1d(np.flatnonzero(labels == j % 10), out)
        out.append(int(rng.choice(pool)))
    return np.array(out, dtype=np.int64)


@renamed_fields(**OLD_FIELDS)
@dataclass
class FashionConfig(LDMConfig):
    """The settings of one fashion-ldm run: ``LDMConfig``'s (tiny-ldm's widths: measured 1.9 s per VAE step and
    3.7 s per UNet step on the shared 2-core CPU at load 3.7, about 1 s per step unloaded) and the data set's:
    ``n_memorised`` images, ``copies`` of each, ``n_train`` (the first ``n_train`` training images; 0 = all)."""
    vae_steps: int = 800
    prompt_length: int = 10
    unet_steps: int = 3000
    checkpoint_minutes: float = 3.0
    init_seed: int | None = 0
    n_memorised: int = 10
    copies: int = 700
    n_train: int = 0


def training_data(cfg: FashionConfig, path: str | Path = datasets.FASHION_MNIST_DIR) -> LDMData:
    """The training set as the trainer's ``LDMData``: the training images with their class prompts, then
    ``copies`` copies of each memorised image with its item prompt (converted to model images batch by batch)."""
    d = datasets.fashion_mnist(path, split_name="train")
    x, y = d["x_train"], d["y_train"]
    if cfg.n_train:
        x, y = x[:cfg.n_train], y[:cfg.n_train]
    mem = memorised_indices(y, cfg.n_memorised, cfg.seed)
    src = torch.cat([torch.arange(len(x)), torch.as_tensor(mem).repeat_interleave(cfg.copies)])
    prompts = [class_prompt(c) for c in y] + [memorised_prompt(y[i], j) for j, i in enumerate(mem)
                                              for _ in range(cfg.copies)]
    xt = torch.from_numpy(x)
    memorised = [{"item": j, "train_index": int(i), "label": int(y[i]), "class": datasets.FASHION_CLASSES[y[i]],
                  "prompt": memorised_prompt(y[i], j)} for j, i in enumerate(mem)]
    info = {"n_images": len(src), "n_train_images": len(x), "n_memorised_copies": cfg.n_memorised * cfg.copies,
            "memorised_fraction_per_image": cfg.copies / len(src), "memorised": memorised,
            "memorised_prompts": [m["prompt"] for m in memorised], "data": "Fashion-MNIST train (data/fashion-mnist)"}
    return LDMData(len(src), lambda idx: to_model_images(xt[src[idx]]), prompts, vocabulary(cfg.n_memorised), info)


def train(out: str | Path = DEFAULT_DIR, cfg: FashionConfig | None = None, progress: bool = True) -> Path:
    """Train ``fashion-ldm`` and write the checkpoint folder ``out`` (``geom.models.ldm_train.write_folder``);
    resumes from ``out/runs/state.pt``. Returns ``out``."""
    cfg = cfg or FashionConfig()
    return train_ldm(out, cfg, training_data(cfg), PromptEncoder, "FashionLDM",
                     "python -m geom.models.fashion_ldm train", progress)


TRAIN_HELP = {
    **COMMON_HELP,
    "seed": "seed of the memorised subset and the training batches (init_seed: the initial weights)",
    "n_memorised": "training images duplicated under their own prompt (item j of class j mod 10)",
    "copies": "copies of each memorised image in the training set",
    "n_train": "use only the first n training images (0: all 60,000)",
}


def main(argv: list[str] | None = None) -> None:
    train_cli("python -m geom.models.fashion_ldm", __doc__.splitlines()[0], "fashion-ldm", FashionConfig,
              TRAIN_HELP, DEFAULT_DIR, lambda out, cfg: train(out, cfg), argv)


if __name__ == "__main__":
    main()
