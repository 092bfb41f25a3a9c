"""Small datasets used by the toy-model notebooks (Humayun et al., Secs. 3.1 and 3.2).

* ``dino()``: the datasauRus "dino" 2D point cloud (142 points), shipped in ``data/datasaurus_dino.csv``.
* ``digits()``: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn), in [0, 1].
* ``mnist(path)``: MNIST from local IDX files (``data/mnist/`` in this repository), 28x28 in [0, 1].

Every loader returns ``numpy`` arrays; image loaders return flattened images ``X`` ``(N, H*W)`` float32 in
``[0, 1]`` and labels ``y`` ``(N,)`` int64. Splits are seeded (``numpy.random.default_rng(seed)``).
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from . import paths

DINO_CSV = paths.DATA / "datasaurus_dino.csv"
MNIST_DIR = paths.DATA / "mnist"
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
