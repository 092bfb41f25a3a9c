"""fashion-ldm (issue 28): its data (Fashion-MNIST padded to 32 x 32, class and item prompts, the memorised subset),
a tiny-config train + load round trip through the registry names, the named errors (missing checkpoint, changed
checksum), and the loaded generator: batch independence and its Jacobian against float64 autograd."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

import geom
from geom import datasets
from geom.jacobian import jacobian, random_projection
from geom.models import fashion_ldm as fl
from geom.models import load_generator, load_pipeline, pipeline
from geom.models.tiny_ldm import PromptEncoder

from conftest import tol, tol_scaled

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_train=200, n_memorised=10, copies=3, vae_channels=(8, 16, 16), vae_steps=3, vae_batch_size=4,
            unet_channels=(16, 32), text_hidden=16, unet_steps=4, unet_batch_size=4, checkpoint_every=2, threads=1)


# ------------------------------------------------------------------------------------------ data
def test_prompts_and_vocabulary():
    assert fl.class_prompt(7) == "a photo of a sneaker" and fl.class_prompt(9) == "a photo of a ankle boot"
    assert fl.memorised_prompt(7, 3) == "a photo of a sneaker, item 3"
    assert len(fl.PROMPT_NAMES) == len(datasets.FASHION_CLASSES) == 10
    assert fl.PROMPT_NAMES == ("t-shirt",) + tuple(c.lower() for c in datasets.FASHION_CLASSES[1:])
    te = PromptEncoder(vocab=fl.vocabulary(10), max_length=fl.FashionConfig().prompt_length)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every training prompt is in the vocabulary
        ids = te.tokenize([fl.memorised_prompt(c, j) for c in range(10) for j in range(10)] + [""])
    assert ids.shape == (101, 10) and (ids[:-1] > 2).sum(1).max() <= 9  # the longest prompt fits
    with pytest.warns(UserWarning, match=r"map to <unk>: \['10'\]"):
        te.tokenize([fl.memorised_prompt(0, 10)])


def test_model_images_pad_and_repeat():
    x = np.random.default_rng(0).uniform(size=(3, 784)).astype(np.float32)
    y = fl.to_model_images(x)
    assert y.shape == (3, 3, 32, 32) and y.dtype == torch.float32
    torch.testing.assert_close(y[:, :, 2:30, 2:30], torch.from_numpy(x).view(3, 1, 28, 28).expand(3, 3, 28, 28) * 2 - 1,
                               rtol=0, atol=1e-7)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (y[:, :, border] == -1).all()  # black padding, as the photographs' background


def test_memorised_indices_seeded_one_per_class():
    y = datasets.fashion_mnist(split_name="train")["y_train"]
    a, b, c = fl.memorised_indices(y, 10, 0), fl.memorised_indices(y, 10, 0), fl.memorised_indices(y, 10, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(y[a], np.arange(10))
    twelve = fl.memorised_indices(y, 12, 0)
    assert len(set(twelve)) == 12 and list(y[twelve]) == [*range(10), 0, 1]
    for bad in (0, len(y) + 1):
        with pytest.raises(ValueError, match="n_memorised"):
            fl.memorised_indices(y, bad, 0)


def test_training_data_holds_the_copies_under_their_prompts():
    cfg = fl.FashionConfig(**TINY)
    d = fl.training_data(cfg)
    assert d.n == 200 + 10 * 3 == len(d.prompts) and d.info["n_memorised_copies"] == 30
    x = datasets.fashion_mnist(split_name="train")
    mem = d.info["memorised"]
    assert [m["item"] for m in mem] == list(range(10)) and [m["label"] for m in mem] == list(range(10))
    for j, m in enumerate(mem):
        rows = torch.arange(200 + 3 * j, 200 + 3 * j + 3)
        assert [d.prompts[i] for i in rows] == [m["prompt"]] * 3 == [fl.memorised_prompt(j, j)] * 3
        ref = fl.to_model_images(x["x_train"][m["train_index"]][None])
        assert torch.equal(d.images(rows), ref.expand(3, -1, -1, -1))
        assert d.prompts[m["train_index"]] == fl.class_prompt(m["label"])  # once more under its class prompt
    assert torch.equal(d.images(torch.tensor([5])), fl.to_model_images(x["x_train"][5][None]))


# ------------------------------------------------------------------------------------------ train, load
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return fl.train(tmp_path_factory.mktemp("fashion") / "ckpt", fl.FashionConfig(**TINY), progress=False)


@pytest.fixture
def named(trained, monkeypatch):
    """``"fashion-ldm"`` pointing at the tiny trained folder."""
    monkeypatch.setitem(pipeline.NAMES, "fashion-ldm", trained)
    return trained


def test_train_writes_a_folder_that_loads_by_name(named):
    info = json.loads((named / "training_config.json").read_text())
    assert info["n_images"] == 230 and info["config"]["copies"] == 3 and info["config"]["init_seed"] == 0
    assert [m["prompt"] for m in info["memorised"]] == info["memorised_prompts"] == [
        fl.memorised_prompt(j, j) for j in range(10)]
    assert json.loads((named / "model_index.json").read_text())["_class_name"] == "FashionLDM"
    assert "runs/" not in (named / "SHA256SUMS").read_text()
    p = load_pipeline("fashion-ldm")
    assert p.kind == "fashion-ldm" and p.latent_shape == (4, 8, 8) and p.image_size == (32, 32)
    assert p.scaling_factor == pytest.approx(info["scaling_factor"])
    assert p.encode_prompt(["a photo of a sneaker, item 7", ""]).shape == (2, 10, 16)
    G = load_generator("fashion-ldm")
    assert G.name == "fashion-ldm" and G.latent_shape == (4, 8, 8) and G.output_shape == (3, 32, 32)
    z = G.sample_latents(2, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(G(z), p.vae.decode(z / p.scaling_factor).sample, **tol(torch.float32))
    out = geom.diffusion.sample(p, ["a photo of a sneaker"], num_steps=2, guidance_scale=3.0,
                                generator=torch.Generator().manual_seed(0), progress=False)
    assert out.latents.shape == (1, 4, 8, 8) and torch.isfinite(out.latents).all()


def test_training_is_seeded(trained, tmp_path):
    """init_seed 0: the same weights in another process state of the global RNG; another seed: other weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        again = fl.train(tmp_path / "again", fl.FashionConfig(**TINY), progress=False)
    f = "unet/diffusion_pytorch_model.safetensors"
    assert (again / f).read_bytes() == (trained / f).read_bytes()
    other = fl.train(tmp_path / "other", fl.FashionConfig(**{**TINY, "init_seed": 1}), progress=False)
    assert (other / f).read_bytes() != (trained / f).read_bytes()


def test_missing_checkpoint_names_the_train_command(tmp_path, monkeypatch):
    monkeypatch.setitem(pipeline.NAMES, "fashion-ldm", tmp_path / "absent")
    for load in (load_pipeline, load_generator):
        with pytest.raises(FileNotFoundError, match="fashion-ldm checkpoint .* `python -m geom.models.fashion_ldm "
                                                    "train --out data/checkpoints/fashion-ldm`"):
            load("fashion-ldm")


@pytest.mark.parametrize("changed", ["unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                                     "training_config.json"])
def test_changed_checksum_is_refused(trained, tmp_path, monkeypatch, changed):
    folder = tmp_path / "copy"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("runs"))
    monkeypatch.setitem(pipeline.NAMES, "fashion-ldm", folder)
    load_pipeline("fashion-ldm")  # an exact copy loads
    f = folder / changed
    raw = bytearray(f.read_bytes())
    raw[-2] ^= 1  # one bit
    f.write_bytes(bytes(raw))
    for load in (load_pipeline, load_generator):
        with pytest.raises(ValueError, match=f"{changed} does not match its SHA-256 .*git checkout"):
            load("fashion-ldm")
    with pytest.raises(ValueError, match="does not match"):
        load_pipeline(folder, verify=True)


# ------------------------------------------------------------------------------------------ the generator
def test_loaded_generator_is_batch_independent(named):
    G = load_generator("fashion-ldm")
    z = G.sample_latents(5, seed=1)
    with torch.no_grad():
        whole = G(z)
        one = torch.cat([G(z[i:i + 1]) for i in range(5)])
        torch.testing.assert_close(one, whole, **tol_scaled(torch.float32, whole))
        torch.testing.assert_close(G(z.flip(0)).flip(0), whole, **tol_scaled(torch.float32, whole))
    J = jacobian(G, z, k=6, seed=0)
    J1 = torch.cat([jacobian(G, z[i:i + 1], k=6, seed=0) for i in range(5)])
    torch.testing.assert_close(J1, J, **tol_scaled(torch.float32, J))
    assert not torch.allclose(J[0], J[1], **tol_scaled(torch.float32, J))  # the check can fail: rows differ


@pytest.mark.kernels
def test_jacobian_equals_float64_autograd(named):
    """geom.jacobian of the decoder (float32 and float64) with a random orthonormal projection of the output
    (k = 40 rows of ``P^T J``, as descriptors use it) against torch.autograd.functional.jacobian of the projected
    float64 decoder, per latent: 40 x (4 * 8 * 8) entries."""
    G32, G64 = load_generator("fashion-ldm"), load_generator("fashion-ldm", dtype="float64")
    z = G64.sample_latents(2, seed=3)
    P = random_projection(3072, 40, seed=0, dtype=torch.float64)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda v: G64(v[None]).flatten() @ P, zi,
                                                          vectorize=True).reshape(40, 256) for zi in z])
    J64 = jacobian(G64, z, projection=P)
    J32 = jacobian(G32, z.float(), projection=P.float())
    assert J64.shape == J32.shape == (2, 40, 256) and J32.dtype == torch.float32
    torch.testing.assert_close(J64, ref, **tol_scaled(torch.float64, ref))
    torch.testing.assert_close(J32.double(), ref, **tol_scaled(torch.float32, ref))
    assert (ref - ref[[1, 0]]).abs().max() > 10 * tol_scaled(torch.float32, ref)["atol"]  # latents differ
