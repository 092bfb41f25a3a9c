"""``omniart-eyes:<eye colour>``: a third-party pretrained class-conditional DCGAN of eyes, in this repository's module.

The weights come from the PyPI package ``omniart-eye-generator==0.1`` (MIT licence, Rogier Knoester,
http://github.com/rogierknoester/omniart_eye_generator), file ``omniart_eye_generator/generator_model_state.pth``:
a conditional DCGAN (cDCGAN; Radford et al., ICLR 2016, conditioned as in Mirza & Osindero 2014 by concatenating
a one-hot class to the latent) trained on eyes cropped from artworks (the OmniArt Eye Dataset,
https://github.com/rogierkn/omniart_eye_dataset), part of a Master's thesis at the University of Amsterdam.
Install it WITHOUT dependencies; only the weights file is used here, and no code of the package is imported (its
``__init__`` loads the model at import and moves it to CUDA when one is present)::

    pip install --no-deps omniart-eye-generator==0.1      # or: bash scripts/setup.sh

Classes (``EYE_COLORS``, the order of ``classes`` in the package's ``eye_generator.py``, i.e. the index of the
one-hot label): amber, blue, brown, gray, grayscale, green, hazel, red.

Architecture (``main.N`` indices as in the package's ``generator.py``, so its state dict loads unchanged):
``cat(z (B, 100), onehot(class) (B, 8)) -> (B, 108, 1, 1)``, then ``ConvTranspose2d(108, 1024, 4, 1, 0)`` +
``BatchNorm2d`` + ``ReLU`` + ``Dropout(0.2)`` ``-> (1024, 4, 4)``, four ``ConvTranspose2d(., ., 4, 2, 1)`` +
``BatchNorm2d`` + ``ReLU`` blocks ``-> (512, 8, 8) -> (256, 16, 16) -> (128, 32, 32) -> (64, 64, 64)``,
``ConvTranspose2d(64, 3, 4, 2, 1)`` + ``Tanh`` ``-> (3, 128, 128)`` in ``[-1, 1]``; no biases in the
convolutions; 12,917,632 parameters. In eval mode (BatchNorm on its running statistics, Dropout the identity)
the network before the ``Tanh`` is continuous piecewise linear in ``z`` for a fixed class. The package turns
an output ``x`` into 8-bit RGB as ``clip((x + 1) / 2 * 256, 0, 255)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..paths import file_sha256
from .base import Generator, packaged_file

PACKAGE = "omniart_eye_generator"
DISTRIBUTION = "omniart-eye-generator==0.1"
WEIGHTS_FILE = "generator_model_state.pth"
SHA256 = "dd486abbd738bfe3d28ddd46987bec11e3842ddcc8c28ccc5251b52c6ecf4da0"
N_PARAMETERS = 12_917_632
EYE_COLORS = ("amber", "blue", "brown", "gray", "grayscale", "green", "hazel", "red")
NZ = 100
INSTALL = f"pip install --no-deps {DISTRIBUTION}` (or `bash scripts/setup.sh`)"


def eye_color_index(eye_color: str) -> int:
    """Index of ``eye_color`` in ``EYE_COLORS`` (the package's one-hot position). Raises ``ValueError`` naming
    the eight colours for anything else (names are lower case, as the package spells them)."""
    if not isinstance(eye_color, str) or eye_color not in EYE_COLORS:
        raise ValueError(f"omniart-eyes takes one of its 8 eye colours, {', '.join(EYE_COLORS)}, as "
                         f"'omniart-eyes:<eye colour>' (e.g. load_generator('omniart-eyes:{EYE_COLORS[1]}')); "
                         f"got {eye_color!r}")
    return EYE_COLORS.index(eye_color)


class OmniArtEyesGenerator(Generator):
    """Class-conditional DCGAN ``G(z; c)``: latents ``(B, 100)`` -> images ``(B, 3, 128, 128)`` in ``[-1, 1]``
    (Tanh output), for ONE eye colour ``c`` fixed at construction (``eye_color``, ``class_index``).

    The class enters as the package's one-hot label concatenated after ``z`` (``label``, a non-persistent
    ``(8,)`` buffer: it follows ``.to(device, dtype)`` and is not in the state dict), so ``latent_shape ==
    (100,)`` and Jacobians are taken w.r.t. ``z`` only, at a fixed class. Same layers and parameter names
    (``main.0.weight`` ... ``main.16.weight``) as ``Generator`` of the package's ``generator.py`` (its
    ``forward(noise (B, 100, 1, 1), labels (B, 8))``). Prior: ``z ~ N(0, I_100)`` (the package's
    ``torch.randn``); the same latents under two colours give the paired images of the two classes.
    Built with default (untrained) initialisation; ``load_omniart_eyes`` loads the pretrained weights."""

    def __init__(self, eye_color: str, name: str | None = None):
        idx = eye_color_index(eye_color)
        super().__init__(name=name or f"omniart-eyes:{eye_color}", latent_shape=(NZ,), output_shape=(3, 128, 128))
        self.eye_color = eye_color
        self.class_index = idx
        self.register_buffer("label", nn.functional.one_hot(torch.tensor(idx), len(EYE_COLORS)).float(),
                             persistent=False)
        nin, ngf = NZ + len(EYE_COLORS), 64
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nin, ngf * 16, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 16), nn.ReLU(),
            nn.Dropout(0.2),  # 4x4; the identity in eval mode (geom.models.base.check_generator refuses it in training)
            nn.ConvTranspose2d(ngf * 16, ngf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(),  # 8
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(),  # 16
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(),  # 32
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(),  # 64x64
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh(),  # 128x128
        )

    def generate(self, z: Tensor) -> Tensor:
        labels = self.label.to(z.dtype).expand(z.shape[0], -1)
        return self.main(torch.cat([z, labels], dim=1).reshape(z.shape[0], -1, 1, 1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eye_color={self.eye_color!r}, class_index={self.class_index}"


def weights_path() -> Path:
    """Path of ``omniart_eye_generator/generator_model_state.pth`` in the installed package (the package is
    located, not imported: importing it would load the model). Raises ``FileNotFoundError`` naming the install
    command when the package or the file is missing."""
    return packaged_file("omniart-eyes", PACKAGE, DISTRIBUTION, WEIGHTS_FILE, INSTALL)


def load_omniart_eyes(eye_color: str, path: str | Path | None = None, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> OmniArtEyesGenerator:
    """The pretrained OmniArt eye cDCGAN for one class, an ``OmniArtEyesGenerator`` named
    ``"omniart-eyes:<eye_color>"`` in eval mode with frozen parameters, on ``device`` in ``dtype``:
    ``(B, 100) -> (B, 3, 128, 128)`` in ``[-1, 1]``.

    ``eye_color``: one of ``EYE_COLORS``. ``path`` defaults to the installed package's
    ``generator_model_state.pth``. The file's SHA-256 must equal ``SHA256``; it is read with
    ``torch.load(..., map_location="cpu", weights_only=True)`` (tensors only: no pickled code runs) and loaded
    strictly. Raises ``ValueError`` (unknown colour; checksum or contents differ, naming the reinstall command)
    or ``FileNotFoundError`` (package or file missing, naming the install command)."""
    net = OmniArtEyesGenerator(eye_color)  # an unknown colour fails before any file is read
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"omniart-eyes weights {path} do not exist; install them: `{INSTALL}")
    digest = file_sha256(path)
    if digest != SHA256:
        raise ValueError(f"omniart-eyes weights {path} have SHA-256 {digest}, expected {SHA256} "
                         f"({DISTRIBUTION}); reinstall: "
                         f"`{INSTALL.replace('--no-deps', '--no-deps --force-reinstall')}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise ValueError(f"omniart-eyes weights {path} are no state dict of the package's Generator; "
                         f"reinstall: `{INSTALL}")
    net.load_state_dict(state, strict=True)
    return net.to(device=device, dtype=dtype).eval().requires_grad_(False)
