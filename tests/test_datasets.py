"""Data loaders and image sets: shapes, dtypes, ranges, seeded splits and draws, clear errors; the noise
textures' power spectrum; held-out images that are not training images."""
import gzip
import shutil

import numpy as np
import pytest

from geom import datasets, paths


def test_dino():
    x = datasets.dino()
    assert x.shape == (142, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-5)
    raw = datasets.dino(standardize=False)
    assert raw.min() > 0 and raw.max() < 110


def test_dino_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        datasets.dino(tmp_path / "nope.csv")


def test_digits_split_seeded():
    a, b, c = datasets.digits(seed=0), datasets.digits(seed=0), datasets.digits(seed=1)
    assert a["x_train"].shape == (1438, 64) and a["x_test"].shape == (359, 64)
    assert a["x_train"].dtype == np.float32 and a["y_train"].dtype == np.int64
    assert 0 <= a["x_train"].min() and a["x_train"].max() <= 1
    np.testing.assert_array_equal(a["x_test"], b["x_test"])
    assert not np.array_equal(a["y_test"], c["y_test"])
    assert set(np.unique(a["y_train"])) == set(range(10))


def test_mnist_repo_copy():
    d = datasets.mnist(paths.DATA / "mnist", split_name="test")
    assert d["x_test"].shape == (10000, 784) and d["x_test"].dtype == np.float32
    assert d["y_test"].shape == (10000,) and d["y_test"].dtype == np.int64
    assert d["x_test"].min() == 0 and d["x_test"].max() == 1
    assert np.bincount(d["y_test"]).tolist()[:2] == [980, 1135]  # the official test-set class counts


def _write_idx(path, arr):
    import struct
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


def test_mnist_synthetic_idx_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("test", 3)):
        img, lab = datasets.MNIST_FILES[split]
        X = rng.integers(0, 256, (n, 28, 28))
        y = rng.integers(0, 10, n)
        _write_idx(tmp_path / img, X)
        _write_idx(tmp_path / lab, y)
        if split == "test":  # gzipped files are read too
            for name in (img, lab):
                with open(tmp_path / name, "rb") as fi, gzip.open(tmp_path / (name + ".gz"), "wb") as fo:
                    shutil.copyfileobj(fi, fo)
                (tmp_path / name).unlink()
        if split == "train":
            Xtr, ytr = X, y
    d = datasets.mnist(tmp_path)
    assert d["x_train"].shape == (7, 784) and d["x_test"].shape == (3, 784)
    np.testing.assert_allclose(d["x_train"], Xtr.reshape(7, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d["y_train"], ytr)


def test_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        datasets.mnist(tmp_path / "absent")


def test_mnist_missing_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        datasets.mnist(tmp_path, split_name="train")


def test_mnist_bad_file(tmp_path):
    for name in sum(datasets.MNIST_FILES.values(), ()):
        (tmp_path / name).write_bytes(b"garbage!")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.mnist(tmp_path)


# ------------------------------------------------------------------------------------------- Fashion-MNIST
FASHION = paths.DATA / "fashion-mnist"


def test_fashion_mnist_shipped_files_match_their_recorded_sha256():
    """The module's digests, the shipped SHA256SUMS and the files agree (hashed here with hashlib directly)."""
    import hashlib

    listed = dict(line.split()[::-1] for line in (FASHION / "SHA256SUMS").read_text().splitlines())
    assert set(listed) == set(datasets.FASHION_MNIST_SHA256) | {"LICENSE"}
    for name, digest in datasets.FASHION_MNIST_SHA256.items():
        assert listed[name] == digest
        assert hashlib.sha256((FASHION / name).read_bytes()).hexdigest() == digest
    assert hashlib.sha256((FASHION / "LICENSE").read_bytes()).hexdigest() == listed["LICENSE"]
    assert "MIT" in (FASHION / "LICENSE").read_text() or "Permission is hereby granted" in (FASHION / "LICENSE").read_text()


def test_fashion_mnist_shapes_classes_and_content():
    d = datasets.fashion_mnist()
    assert d["x_train"].shape == (60000, 784) and d["x_test"].shape == (10000, 784)
    assert d["x_train"].dtype == np.float32 and d["y_train"].dtype == np.int64
    assert d["x_train"].min() == 0 and d["x_train"].max() == 1
    # balanced: 6,000 training and 1,000 test images per class (Xiao et al. 2017, Table 1)
    np.testing.assert_array_equal(np.bincount(d["y_train"]), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(d["y_test"]), [1000] * 10)
    # the first training labels as Zalando's README prints them (9 = ankle boot, 0 = T-shirt/top, 3 = dress)
    np.testing.assert_array_equal(d["y_train"][:6], [9, 0, 0, 3, 0, 2])
    assert datasets.FASHION_CLASSES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                        "Sneaker", "Bag", "Ankle boot")
    # not MNIST: the same reader on the MNIST files gives other images
    m = datasets.mnist(paths.DATA / "mnist", split_name="test")
    assert not np.array_equal(m["x_test"][:10], d["x_test"][:10])
    t = datasets.fashion_mnist(split_name="test")
    assert set(t) == {"x_test", "y_test"}
    np.testing.assert_array_equal(t["x_test"], d["x_test"])


def test_fashion_mnist_refuses_a_changed_file(tmp_path):
    for f in FASHION.iterdir():
        shutil.copy(f, tmp_path / f.name)
    datasets.fashion_mnist(tmp_path, split_name="test")  # an exact copy is accepted
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(labels[:-1] + bytes([(labels[-1] + 1) % 10])))  # one label changed, valid IDX
    with pytest.raises(datasets.DataChecksumError, match="t10k-labels-idx1-ubyte.gz has SHA-256 .*`git checkout"):
        datasets.fashion_mnist(tmp_path, split_name="test")
    datasets.fashion_mnist(tmp_path, split_name="train")  # the other half is untouched


def test_fashion_mnist_missing_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST folder not found.*git checkout"):
        datasets.fashion_mnist(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST file missing: .*train-images-idx3-ubyte.gz"):
        datasets.fashion_mnist(tmp_path, split_name="train")
    with pytest.raises(ValueError, match="split_name"):
        datasets.fashion_mnist(FASHION, split_name="val")


# ------------------------------------------------------------------------------------------- OOD / ID image sets
@pytest.mark.parametrize("kind", datasets.OOD_KINDS)
def test_ood_images_shape_range_determinism(kind):
    if kind == "medical":
        pytest.importorskip("pydicom")
    x = datasets.ood_images(kind, 5, size=16, seed=3)
    assert x.shape == (5, 3, 16, 16) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.01
    np.testing.assert_array_equal(x, datasets.ood_images(kind, 5, size=16, seed=3))
    assert not np.array_equal(x, datasets.ood_images(kind, 5, size=16, seed=4))
    assert len({im.tobytes() for im in x}) == 5  # distinct images


def test_ood_images_errors():
    with pytest.raises(ValueError, match="unknown OOD"):
        datasets.ood_images("cats", 3)
    with pytest.raises(ValueError, match="n must"):
        datasets.ood_images("digits", 0)
    with pytest.raises(ValueError, match="size"):
        datasets.ood_images("textures", 2, size=2)


def test_noise_textures_have_natural_spectrum():
    # radially averaged power falls off about as 1/f^2 (log-log slope near -2)
    x = datasets.noise_textures(16, size=64, seed=0, exponent=2.0).mean(1)
    p = np.abs(np.fft.fft2(x - x.mean(axis=(1, 2), keepdims=True))) ** 2
    f = np.sqrt(np.fft.fftfreq(64)[:, None] ** 2 + np.fft.fftfreq(64)[None, :] ** 2)
    band = (f > 0.03) & (f < 0.3)
    slope = np.polyfit(np.log(f[band]), np.log(p.mean(0)[band]), 1)[0]
    assert -2.6 < slope < -1.4


def test_id_images():
    from geom import shapes

    x, prompts = datasets.id_images(12, size=16, seed=1)
    assert x.shape == (12, 3, 16, 16) and len(prompts) == 12
    assert x.min() >= 0 and x.max() <= 1
    assert all(p not in shapes.MEMORISED_PROMPTS for p in prompts)
    train = shapes.make_dataset(n_per_combo=1, size=16, seed=0, memorised=False).images
    assert shapes.nearest_neighbour(x, train)[0].min() > 0  # held out, not copies of training images
    with pytest.raises(ValueError, match="training"):
        datasets.id_images(3, seed=0)
