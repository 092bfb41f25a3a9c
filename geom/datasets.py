"""Small datasets (Humayun et al., Secs. 3.1, 3.2 and 3.3.2-3.3.3), nothing downloaded.

Toy-model data:

* ``dino()``: the datasauRus "dino" 2D point cloud (142 points), shipped in ``data/datasaurus_dino.csv``.
* ``digits()``: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn), in [0, 1].
* ``mnist(path)``: MNIST from local IDX files (``data/mnist/`` in this repository), 28x28 in [0, 1].
* ``fashion_mnist(path)``: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, Zalando, MIT licence) from the local IDX
  files of ``data/fashion-mnist/``, 28x28 in [0, 1], each file checked against its SHA-256 before it is read;
  class names ``FASHION_CLASSES`` (Zalando's label order).

These loaders return ``numpy`` arrays; image loaders return flattened images ``X`` ``(N, H*W)`` float32 in
``[0, 1]`` and labels ``y`` ``(N,)`` int64. Splits are seeded (``numpy.random.default_rng(seed)``).

Out-of-distribution and held-out image sets for the OOD studies (notebooks 05 and 13): ``ood_images(kind, n)``
with ``kind`` in ``OOD_KINDS``: crops of scikit-learn's two sample photographs (``photo_crops``), upscaled and
coloured scikit-learn digits (``coloured_digits``), 1/f "natural-image-like" noise textures
(``noise_textures``), crops of pydicom's bundled CT/MR scans (``medical_scans``); ``id_images``: fresh
``geom.shapes`` renders (the training distribution of the embedded ``tiny-ldm``, another seed). These are
float32 arrays ``(n, 3, S, S)`` in ``[0, 1]`` (channels first, like ``geom.shapes``; use
``geom.shapes.to_model_range`` before ``pipe.vae_encode``), each a deterministic function of ``seed``.
"""
from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from . import paths

DINO_CSV = paths.DATA / "datasaurus_dino.csv"
MNIST_DIR = paths.DATA / "mnist"
FASHION_MNIST_DIR = paths.DATA / "fashion-mnist"
OOD_KINDS: tuple[str, ...] = ("photos", "digits", "textures", "medical")
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def dino(path: str | Path | None = None, standardize: bool = True) -> np.ndarray:
    """The datasauRus "dino" points ``(142, 2)`` float32 (columns x, y).

    ``standardize``: subtract the mean and divide by the standard deviation per column (as the paper's toy
    DDPM, Sec. 3.1). ``path``: a CSV with a header ``x,y`` (default ``data/datasaurus_dino.csv``).
    """
    p = DINO_CSV if path is None else paths.resolve(path)
    if not p.is_file():
        raise FileNotFoundError(f"dino data not found: {p} (copy datasaurus_dino.csv into data/, see "
                                f"data/README.md)")
    x = np.loadtxt(p, delimiter=",", skiprows=1, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{p}: expected two columns x,y, got shape {x.shape}")
    if standardize:
        x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32)


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (train indices, test indices)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def digits(test_fraction: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's handwritten digits (8x8, 1,797 images) scaled to ``[0, 1]`` (pixel / 16).

    Returns ``{"x_train": (N_train, 64) float32, "y_train": (N_train,) int64, "x_test": ..., "y_test": ...}``
    with a seeded random split (``test_fraction`` of the images in the test set). Image shape ``(8, 8)``.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    tr, te = split(len(X), test_fraction, seed)
    return {"x_train": X[tr], "y_train": y[tr], "x_test": X[te], "y_test": y[te]}


def _open(p: Path):
    return gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"MNIST file missing: {folder / stem} (or {stem}.gz) in folder {folder}; "
                            f"expected the four IDX files {', '.join(sum(MNIST_FILES.values(), ()))}")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array of its declared shape (uint8 data)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"IDX file not found: {p}")
    with _open(p) as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0:
            raise ValueError(f"{p} is not an IDX file (bad magic {head!r})")
        if head[2] != 0x08:
            raise ValueError(f"{p}: only unsigned-byte IDX data (type 0x08) is supported, got {head[2]:#x}")
        ndim = head[3]
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{p}: header declares shape {shape} but holds {data.size} bytes (truncated file?)")
    return data.reshape(shape)


def mnist(path: str | Path = MNIST_DIR, split_name: str | None = None) -> dict[str, np.ndarray]:
    """MNIST from a local folder of IDX files (``train-images-idx3-ubyte[.gz]`` etc.).

    Returns ``{"x_train": (60000, 784) float32 in [0, 1], "y_train": (60000,) int64, "x_test": (10000, 784),
    "y_test": (10000,)}`` (the official split; ``split_name="train"``/``"test"`` loads only that half).
    Raises ``FileNotFoundError`` naming the missing folder or file.
    """
    folder = paths.resolve(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder} (expected the four IDX files, see "
                                f"data/README.md)")
    names = [split_name] if split_name else list(MNIST_FILES)
    out: dict[str, np.ndarray] = {}
    for s in names:
        if s not in MNIST_FILES:
            raise ValueError(f"split_name must be 'train', 'test' or None, got {s!r}")
        img_path, lab_path = (_find(folder, stem) for stem in MNIST_FILES[s])  # both exist before reading
        X = read_idx(img_path)
        y = read_idx(lab_path)
        if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
            raise ValueError(f"MNIST {s}: inconsistent shapes images {X.shape}, labels {y.shape}")
        out[f"x_{s}"] = (X.reshape(len(X), -1).astype(np.float32) / 255.0)
        out[f"y_{s}"] = y.astype(np.int64)
    return out


# Zalando's label order (https://github.com/zalandoresearch/fashion-mnist#labels): label i is FASHION_CLASSES[i]
FASHION_CLASSES: tuple[str, ...] = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                    "Sneaker", "Bag", "Ankle boot")
# SHA-256 of the four gzipped IDX files as Zalando distributes them (also in data/fashion-mnist/SHA256SUMS)
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


class DataChecksumError(ValueError):
    """A shipped data file whose SHA-256 differs from the one the repository records (a changed, truncated or
    substituted file): the message names the file, both digests and the fix."""


def check_sha256(path: Path, expected: str, fix: str) -> None:
    """Raise ``DataChecksumError`` when ``path``'s SHA-256 is not ``expected`` (``fix``: how to restore it)."""
    got = paths.file_sha256(path)
    if got != expected:
        raise DataChecksumError(f"{path} has SHA-256 {got}, expected {expected}: the file was changed or "
                                f"truncated; {fix}")


def fashion_mnist(path: str | Path = FASHION_MNIST_DIR, split_name: str | None = None) -> dict[str, np.ndarray]:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017: 60,000 training + 10,000 test grey 28x28 photographs of
    clothing in the 10 classes ``FASHION_CLASSES``) from the gzipped IDX files of ``path``, read by ``read_idx``.

    Returns ``{"x_train": (60000, 784) float32 in [0, 1], "y_train": (60000,) int64 (index into
    FASHION_CLASSES), "x_test": (10000, 784), "y_test": (10000,)}`` (Zalando's split; ``split_name="train"`` /
    ``"test"`` loads only that half). Every file is checked against ``FASHION_MNIST_SHA256`` before it is read.
    Raises ``FileNotFoundError`` naming a missing folder or file, ``DataChecksumError`` (a ``ValueError``) for
    a file whose content changed; both name the fix (restore ``data/fashion-mnist/`` from git)."""
    folder = paths.resolve(path)
    fix = ("restore it with `git checkout -- data/fashion-mnist` (or copy Zalando's original "
           "files, https://github.com/zalandoresearch/fashion-mnist, see data/README.md)")
    if not folder.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST folder not found: {folder}; {fix}")
    names = [split_name] if split_name else list(MNIST_FILES)
    out: dict[str, np.ndarray] = {}
    for s in names:
        if s not in MNIST_FILES:
            raise ValueError(f"split_name must be 'train', 'test' or None, got {s!r}")
        files = [folder / (stem + ".gz") for stem in MNIST_FILES[s]]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"Fashion-MNIST file missing: {f}; {fix}")
            check_sha256(f, FASHION_MNIST_SHA256[f.name], fix)
        X, y = read_idx(files[0]), read_idx(files[1])
        if X.shape != (len(y), 28, 28) or y.ndim != 1:
            raise ValueError(f"Fashion-MNIST {s}: inconsistent shapes images {X.shape}, labels {y.shape}")
        out[f"x_{s}"] = X.reshape(len(X), -1).astype(np.float32) / 255.0
        out[f"y_{s}"] = y.astype(np.int64)
    return out


# --------------------------------------------------------------------------------------------- OOD / ID image sets
def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """``(n, C, h, w)`` float -> ``(n, C, size, size)`` (antialiased bilinear)."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=t.shape[-1] > size)
    return t.clamp(0, 1).numpy()


def _check_n_size(n: int, size: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < 4:
        raise ValueError(f"size must be an int >= 4, got {size!r}")


def _random_crops(img: np.ndarray, n: int, size: int, rng: np.random.Generator, min_frac: float = 0.15,
                  max_frac: float = 0.5) -> np.ndarray:
    """``n`` random square crops of ``img`` ``(C, H, W)`` in [0, 1], side a random fraction of ``min(H, W)``,
    resized to ``size``."""
    C, H, W = img.shape
    out = []
    for _ in range(n):
        s = max(4, int(rng.uniform(min_frac, max_frac) * min(H, W)))
        y, x = rng.integers(0, H - s + 1), rng.integers(0, W - s + 1)
        out.append(_resize(img[None, :, y:y + s, x:x + s], size)[0])
    return np.stack(out)


def photo_crops(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random crops of scikit-learn's two bundled photographs (``load_sample_images``: a Chinese temple,
    a flower), resized to ``size`` -> ``(n, 3, size, size)`` in [0, 1]."""
    from sklearn.datasets import load_sample_images

    _check_n_size(n, size)
    rng = np.random.default_rng([seed, 11])
    photos = [im.astype(np.float32).transpose(2, 0, 1) / 255.0 for im in load_sample_images().images]
    which = rng.integers(0, len(photos), n)
    return np.concatenate([_random_crops(photos[w], 1, size, rng) for w in which]).astype(np.float32)


def coloured_digits(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """scikit-learn's 8x8 handwritten digits (``load_digits``), upscaled to ``size`` and coloured with a
    random foreground and background colour each -> ``(n, 3, size, size)`` in [0, 1]."""
    from sklearn.datasets import load_digits

    _check_n_size(n, size)
    rng = np.random.default_rng([seed, 12])
    d = load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8)
    idx = rng.choice(len(d), n, replace=n > len(d))
    m = _resize(d[idx][:, None], size)  # (n, 1, S, S) stroke intensity
    fg = rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32)
    bg = rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32)
    return (bg * (1 - m) + fg * m).astype(np.float32)


def noise_textures(n: int, size: int = 32, seed: int = 0, exponent: float = 2.0) -> np.ndarray:
    """Natural-image-like random textures: Gaussian noise with power spectrum ``1 / f^exponent``
    (``exponent = 2``: the spectrum of natural images), per channel with correlated colours, rescaled to
    [0, 1] -> ``(n, 3, size, size)``."""
    _check_n_size(n, size)
    rng = np.random.default_rng([seed, 13])
    f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2)
    f[0, 0] = 1.0
    amp = f ** (-exponent / 2)
    amp[0, 0] = 0.0
    out = np.empty((n, 3, size, size), np.float32)
    for k in range(n):
        base = np.fft.ifft2(amp * np.fft.fft2(rng.standard_normal((size, size)))).real
        own = np.fft.ifft2(amp[None] * np.fft.fft2(rng.standard_normal((3, size, size)))).real
        x = 0.7 * base[None] + 0.3 * own
        x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
        tint = rng.uniform(0.4, 1.0, (3, 1, 1))
        out[k] = (x * tint).astype(np.float32)
    return out


MEDICAL_FILES: tuple[str, ...] = ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm")


def medical_scans(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random crops of the CT and MR scans bundled with pydicom (``pydicom/data/test_files``:
    ``MEDICAL_FILES``; read from the installed package, nothing is downloaded), each scan windowed to its
    1st-99th percentile, grey replicated to RGB -> ``(n, 3, size, size)`` in [0, 1]. Raises ``ImportError``
    when pydicom is missing and ``FileNotFoundError`` when its test files are."""
    _check_n_size(n, size)
    try:
        import pydicom
    except ImportError as e:
        raise ImportError("medical_scans needs pydicom (pip install pydicom)") from e
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    scans = []
    for name in MEDICAL_FILES:
        p = folder / name
        if not p.is_file():
            raise FileNotFoundError(f"pydicom test file {p} is missing (medical_scans reads {MEDICAL_FILES})")
        a = pydicom.dcmread(p).pixel_array.astype(np.float32)
        lo, hi = np.percentile(a, [1, 99])
        scans.append(np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)[None])
    rng = np.random.default_rng([seed, 14])
    which = rng.integers(0, len(scans), n)
    grey = np.concatenate([_random_crops(scans[w], 1, size, rng, 0.4, 0.9) for w in which])
    return np.repeat(grey, 3, axis=1).astype(np.float32)


def ood_images(kind: str, n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """An out-of-distribution image set ``(n, 3, size, size)`` float32 in [0, 1] of one ``kind`` in
    ``OOD_KINDS``: ``"photos"`` (``photo_crops``), ``"digits"`` (``coloured_digits``), ``"textures"``
    (``noise_textures``), ``"medical"`` (``medical_scans``, needs pydicom)."""
    makers = {"photos": photo_crops, "digits": coloured_digits, "textures": noise_textures, "medical": medical_scans}
    if kind not in makers:
        raise ValueError(f"unknown OOD image kind {kind!r}; expected one of {OOD_KINDS}")
    x = makers[kind](n, size, seed)
    if x.shape != (n, 3, size, size) or not np.isfinite(x).all():
        raise RuntimeError(f"ood_images({kind!r}) made an array of shape {x.shape}")  # a bug, never bad input
    return x


def id_images(n: int, size: int = 32, seed: int = 1) -> tuple[np.ndarray, list[str]]:
    """``n`` held-out in-distribution images of ``geom.shapes`` (the training distribution of tiny-ldm, drawn
    with a seed other than the training seed 0; no memorised images), evenly spread over the (shape, colour,
    background) combinations -> ``(images (n, 3, size, size) in [0, 1], prompts)``."""
    from . import shapes

    _check_n_size(n, size)
    if int(seed) == 0:
        raise ValueError("seed 0 is the training set of tiny-ldm; use another seed for held-out images")
    combos = len(shapes.SHAPES) * len(shapes.COLOURS) * len(shapes.BACKGROUNDS)
    ds = shapes.make_dataset(n_per_combo=math.ceil(n / combos), size=size, seed=seed, memorised=False)
    idx = np.sort(np.random.default_rng([seed, 15]).choice(len(ds), n, replace=False))
    return ds.images[idx], [ds.prompts[i] for i in idx]
