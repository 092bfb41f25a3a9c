"""omniart-eyes (geom.models.omniart): the pretrained class-conditional OmniArt eye DCGAN of the PyPI package
omniart-eye-generator, in the repository's own module. Nothing of the package is imported (its __init__ loads
the model, on CUDA when present): its generator.py and eye_generator.py are read as text, and the reference
forward pass is written out with torch.nn.functional from the raw state dict."""
from __future__ import annotations

import ast
import functools
import importlib.util
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import geom
from geom import paths
from geom.models import Generator, load_generator, load_model, omniart
from geom.models.generators import check_model_spec

from conftest import tol, tol_scaled

pytestmark = pytest.mark.usefixtures("one_thread")

INSTALL = "pip install --no-deps omniart-eye-generator==0.1"
CONVS = (0, 4, 7, 10, 13, 16)  # main.N of the ConvTranspose2d layers (generator.py), each followed by a BatchNorm
STRIDE_PAD = {0: (1, 0)}       # the first maps (108, 1, 1) -> (1024, 4, 4); the others double H and W: (2, 1)


def _package_file(name: str) -> str:
    return (omniart.weights_path().parent / name).read_text()


@functools.cache
def _state_float64() -> dict[str, torch.Tensor]:
    sd = torch.load(omniart.weights_path(), map_location="cpu", weights_only=True)
    return {k: v.double() for k, v in sd.items() if v.is_floating_point()}


def _reference(z: torch.Tensor, class_index: int) -> torch.Tensor:
    """The package's forward pass in float64, op by op from the raw state dict: x = cat(z, onehot) -> (B, 108, 1,
    1); conv_transpose2d, batch_norm on the running statistics (eps 1e-5, PyTorch's default), ReLU per block
    (Dropout: identity in eval mode), Tanh at the end. Independent of the module under test."""
    sd = _state_float64()
    onehot = torch.zeros(z.shape[0], len(omniart.EYE_COLORS), dtype=torch.float64)
    onehot[:, class_index] = 1
    x = torch.cat([z.double(), onehot], 1)[:, :, None, None]
    for i in CONVS:
        stride, pad = STRIDE_PAD.get(i, (2, 1))
        x = F.conv_transpose2d(x, sd[f"main.{i}.weight"], stride=stride, padding=pad)
        if i == CONVS[-1]:
            return torch.tanh(x)
        bn = f"main.{i + 1}"
        x = F.relu(F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"],
                                sd[f"{bn}.bias"], training=False, eps=1e-5))


@pytest.fixture(scope="module")
def eyes() -> dict[str, Generator]:
    return {c: load_generator(f"omniart-eyes:{c}") for c in omniart.EYE_COLORS}


# ------------------------------------------------------------------------------------------- the package, as text
def test_module_follows_the_package_source():
    """generator.py's Sequential (layer types, in order), latent and label sizes, the order of the concatenation,
    and eye_generator.py's class names (their order is the one-hot index), read from the installed files."""
    src = _package_file("generator.py")
    body = src[src.index("nn.Sequential(") + len("nn.Sequential("):src.index("def forward")]
    G = omniart.OmniArtEyesGenerator("blue")
    assert re.findall(r"nn\.(\w+)\(", body) == [type(m).__name__ for m in G.main]
    consts = {t.id: ast.literal_eval(n.value) for n in ast.parse(src).body if isinstance(n, ast.Assign)
              for t in n.targets}
    assert consts["latent_space_size"] == omniart.NZ == G.latent_shape[0] == 100
    assert consts["label_count"] == len(omniart.EYE_COLORS) == 8
    assert "torch.cat([noise, labels], 1)" in src  # z first, then the one-hot label
    classes = next(ast.literal_eval(n.value) for n in ast.parse(_package_file("eye_generator.py")).body
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "classes")
    assert tuple(classes) == omniart.EYE_COLORS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_every_class_equals_the_reference_forward_pass(dtype):
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(11), dtype=dtype)
    for idx, color in enumerate(omniart.EYE_COLORS):
        G = load_generator(f"omniart-eyes:{color}", dtype=dtype)
        assert G.eye_color == color and G.class_index == idx and G.name == f"omniart-eyes:{color}"
        with torch.no_grad():
            y = G(z)
        ref = _reference(z, idx)
        assert y.shape == (2, 3, 128, 128) and y.dtype == dtype
        torch.testing.assert_close(y.double(), ref, **tol_scaled(dtype, ref))
    assert sum(p.numel() for p in G.parameters()) == omniart.N_PARAMETERS == 12_917_632


def test_the_reference_sees_a_wrong_class():
    """The comparison above can fail: the neighbouring class's reference is far outside its tolerance."""
    G = load_generator("omniart-eyes:brown")
    z = G.sample_latents(2, seed=3)
    with torch.no_grad():
        y = G(z).double()
    ref = _reference(z, omniart.eye_color_index("blue"))
    with pytest.raises(AssertionError):
        torch.testing.assert_close(y, ref, **tol_scaled(torch.float32, ref))


# ------------------------------------------------------------------------------------------- loading, errors
def test_weights_read_with_weights_only(monkeypatch):
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)
    monkeypatch.setattr(omniart.torch, "load", spy)
    omniart.load_omniart_eyes("hazel")
    assert seen.get("weights_only") is True and seen.get("map_location") == "cpu"  # saved on CUDA by its author


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == omniart.PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match=INSTALL):
        load_generator("omniart-eyes:blue")
    with pytest.raises(FileNotFoundError, match=INSTALL):
        load_model("omniart-eyes:blue")  # the sweep's entry point too


def test_missing_weights_file_names_the_install_command(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_loader(omniart.PACKAGE, loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]  # the package without its generator_model_state.pth
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: spec if name == omniart.PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="no generator_model_state.pth") as e:
        load_generator("omniart-eyes:blue")
    assert "--force-reinstall" in str(e.value) and omniart.DISTRIBUTION in str(e.value)
    with pytest.raises(FileNotFoundError, match=INSTALL):
        omniart.load_omniart_eyes("blue", tmp_path / "nothing.pth")


def test_wrong_checksum_names_the_install_command(tmp_path):
    bad = tmp_path / omniart.WEIGHTS_FILE
    shutil.copy(omniart.weights_path(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte inside a weight tensor
    bad.write_bytes(bytes(data))
    assert paths.file_sha256(bad) != omniart.SHA256 == paths.file_sha256(omniart.weights_path())
    with pytest.raises(ValueError, match="SHA-256") as e:
        omniart.load_omniart_eyes("blue", bad)
    assert "--force-reinstall" in str(e.value) and omniart.SHA256 in str(e.value)


@pytest.mark.parametrize("spec", ["omniart-eyes", "omniart-eyes:", "omniart-eyes:purple", "omniart-eyes:Blue",
                                  "omniart-eyes:1"])
def test_a_class_that_is_no_eye_colour_is_refused_naming_the_eight(spec, monkeypatch):
    def no_read():
        raise AssertionError("the weights must not be looked for before the colour is checked")
    monkeypatch.setattr(omniart, "weights_path", no_read)
    for call in (check_model_spec, load_generator, load_model):
        with pytest.raises(ValueError, match="amber, blue, brown, gray, grayscale, green, hazel, red"):
            call(spec)


def test_takes_flat_latents_only(eyes):
    with pytest.raises(ValueError, match=r"\(B, 100\)"):
        eyes["blue"](torch.zeros(2, 100, 1, 1))
    with pytest.raises(ValueError, match=r"\(B, 100\)"):
        eyes["blue"](torch.zeros(2, 108))  # the label is not part of the latent


# ------------------------------------------------------------------------------------------- outputs
def test_loads_frozen_with_its_prior_shape_and_range(eyes):
    for color, G in eyes.items():
        assert not G.training and not any(m.training for m in G.modules())
        assert not any(p.requires_grad for p in G.parameters())
        assert G.latent_shape == (100,) and G.output_shape == (3, 128, 128) and G.encode is None
    G = eyes["green"]
    z = G.sample_latents(4, seed=5)
    torch.testing.assert_close(z, torch.randn(4, 100, generator=torch.Generator().manual_seed(5)), rtol=0, atol=0)
    with torch.no_grad():
        y = G(z)
    assert y.shape == (4, 3, 128, 128) and torch.isfinite(y).all()
    assert y.abs().max() <= 1 and y.std() > 0.2  # Tanh output, not a constant image
    G64 = load_generator("omniart-eyes:green", dtype=torch.float64)
    assert G64.label.dtype == torch.float64 and G64(z.double()).dtype == torch.float64


def test_classes_give_different_images_at_the_same_latents(eyes):
    """Same z, eight classes: every pair of classes differs by far more than rounding (RMS over pixels), the
    images of one class differ across latents, and the classes mean what their names say: 'grayscale' has the
    least colour (mean per-pixel std over RGB, 3x below every other class; measured 0.010 vs >= 0.034 over 16
    latents) and 'green' the largest G - (R + B) / 2 (+0.021 vs <= -0.003)."""
    z = torch.randn(8, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = {c: (G(z) + 1) / 2 for c, G in eyes.items()}  # [0, 1]
    colors = list(x)
    rms = {(a, b): float((x[a] - x[b]).pow(2).mean(dim=(1, 2, 3)).sqrt().min())
           for i, a in enumerate(colors) for b in colors[i + 1:]}
    assert min(rms.values()) > 0.01, sorted(rms.items(), key=lambda kv: kv[1])[:3]
    assert float((x["blue"][0] - x["blue"][1]).pow(2).mean().sqrt()) > 0.05
    chroma = {c: float(v.std(dim=1).mean()) for c, v in x.items()}
    assert all(chroma["grayscale"] * 3 < chroma[c] for c in colors if c != "grayscale"), chroma
    greenness = {c: float((v[:, 1] - (v[:, 0] + v[:, 2]) / 2).mean()) for c, v in x.items()}
    assert max(greenness, key=greenness.get) == "green", greenness



def test_every_class_has_its_own_weights_digest(eyes):
    """The class is a non-persistent buffer (not in the state dict): geom.slices.module_digest hashes it, so the
    descriptor cache (cached_describe) and the sweeps never serve one colour's rows for another's. Eight
    colours, eight digests; one colour loaded twice, one digest."""
    from geom.slices import module_digest

    digests = {c: module_digest(G) for c, G in eyes.items()}
    assert len(set(digests.values())) == len(omniart.EYE_COLORS), digests
    assert module_digest(load_generator("omniart-eyes:blue")) == digests["blue"]

# ------------------------------------------------------------------------------------------- descriptors
@pytest.mark.slow
def test_jacobian_equals_float64_autograd():
    """geom.jacobian (reverse engine on two latents, forward engine on one: its 100 JVPs through a 12.9 M
    parameter net dominate; projected to k = 8 rows to keep the reference loop short) against a per-sample loop
    of torch.autograd.functional.jacobian (one backward pass per row) in float64; a latent's Jacobian does not
    depend on its batch."""
    G = load_generator("omniart-eyes:hazel", dtype=torch.float64)
    z = G.sample_latents(2, seed=2)
    P = geom.random_projection(3 * 128 * 128, 8, seed=4, dtype=torch.float64)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda v: G(v[None]).reshape(-1) @ P, z[b])
                       for b in range(z.shape[0])])  # (2, 8, 100)
    torch.testing.assert_close(geom.jacobian(G, z, projection=P, mode="reverse"), ref, **tol(torch.float64))
    torch.testing.assert_close(geom.jacobian(G, z[1:2], projection=P, mode="forward")[0], ref[1],
                               **tol(torch.float64))
    torch.testing.assert_close(geom.jacobian(G, z[1:2], projection=P, mode="reverse")[0], ref[1],
                               **tol(torch.float64))
    assert ref.abs().max() > 1e-3  # a Jacobian, not zeros


@pytest.mark.slow
def test_descriptors_do_not_depend_on_the_batch():
    """geom.describe on two latents together equals each alone (BatchNorm on running statistics, the label
    expanded per sample). float64, k = 24 (reverse mode: 24 VJPs per latent instead of forward mode's 100 JVPs;
    the batch coupling this guards against does not depend on k), P = 4 for delta."""
    G = load_generator("omniart-eyes:gray", dtype=torch.float64)
    z = G.sample_latents(2, seed=0)
    together = geom.describe(G, z, k=24, dim=4, seed=0, batch_size=2, progress=False)
    alone = geom.describe(G, z[1:2], k=24, dim=4, seed=0, batch_size=1, progress=False)
    t = tol(torch.float64)
    np.testing.assert_allclose(alone[["psi", "nu"]].to_numpy()[0], together[["psi", "nu"]].to_numpy()[1],
                               rtol=t["rtol"], atol=t["atol"])
    assert alone["delta"].iloc[0] == together["delta"].iloc[1]  # a count of sign changes, float64 rounding
    assert np.isfinite(together[["psi", "nu"]].to_numpy()).all()


def test_local_complexity_sees_every_activation(eyes):
    """delta hooks the five ReLUs and the Tanh of the repository's module (names as in the package)."""
    z = eyes["amber"].sample_latents(2, seed=0)
    total, layers = geom.local_complexity(eyes["amber"], z, radius=0.5, dim=2, per_layer=True)
    assert set(layers) == {"main.2", "main.6", "main.9", "main.12", "main.15", "main.17"}
    torch.testing.assert_close(total, sum(layers.values()), rtol=0, atol=0)
    assert (total > 0).all()  # at r = 0.5 some neuron changes sign
