"""Notebook 13 (13_pretrained_gan) runs for any generator name: it loads MODEL once with
geom.models.load_generator and hands the same name to geom.sweep, whose load_model resolves every name
load_generator does, with nothing registered. The old notebook registered a lambda under MODEL calling
load_model(MODEL): for a name whose registry key is MODEL itself (a local Stable Diffusion folder) the lambda
called itself. Reference: geom.describe of the generator the notebook loaded, on the plane's latents."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import geom
from geom import paths, planes
from geom.models import generators, load_generator
from geom.models.generators import MODELS
from geom.sweep import SweepSpec, run_sweep

from conftest import tol

NOTEBOOK = paths.ROOT / "notebooks" / "13_pretrained_gan.py"


def _sd_folder(root: Path) -> Path:
    """A local diffusers folder holding only a small random-weight SD-style VAE (save_pretrained)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        sample_size=8, layers_per_block=1).eval()
    vae.save_pretrained(root / "sd" / "vae")
    return root / "sd"


def _notebook_way(model: str, out: Path, seed: int = 0):
    """What notebook 13 does with MODEL: load_generator once, anchors from its prior, the plane sweep named by
    MODEL (folder name made of MODEL's characters, as the notebook's model_slug)."""
    G = load_generator(model)
    anchors = G.sample_latents(3, seed=seed).cpu()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")
    sweep_dir = out / f"13_pretrained_gan-{slug}"
    sweep_dir.mkdir(parents=True)
    np.save(sweep_dir / "anchors.npy", anchors.numpy())
    spec = SweepSpec(model=model, source="plane:2", k=8, dim=2, radius=0.01, seed=seed, shard_size=3, batch_size=2,
                     anchors=str(sweep_dir / "anchors.npy"))
    return G, anchors, sweep_dir, run_sweep(spec, sweep_dir, progress=False)


@pytest.mark.parametrize("kind", ["sd-folder", "mlp:3"])  # sd-vae-random: same path as the folder, 80M weights
def test_notebook_13_loads_a_name_that_is_not_registered(tmp_path, kind):
    model = str(_sd_folder(tmp_path)) if kind == "sd-folder" else kind
    assert model not in MODELS
    before = dict(MODELS)
    G, anchors, sweep_dir, df = _notebook_way(model, tmp_path / "sweeps")
    assert dict(MODELS) == before                       # nothing registered
    assert sweep_dir.parent == tmp_path / "sweeps"      # one folder, also for a path or "mlp:3"
    z = planes.plane_latents(anchors, *planes.plane_uv(2))
    ref = geom.describe(G, z, k=8, radius=0.01, dim=2, seed=0, batch_size=2, progress=False)
    for c in ("psi", "nu"):
        np.testing.assert_allclose(df[c].to_numpy(), ref[c].to_numpy(), **tol(torch.float32))
    np.testing.assert_array_equal(df["delta"].to_numpy(), ref["delta"].to_numpy())


def test_the_old_registration_recursed_for_a_folder(tmp_path, monkeypatch):
    """The diagnosis: the lambda the old notebook registered under a folder path resolves to itself."""
    model = str(_sd_folder(tmp_path))
    monkeypatch.setitem(MODELS, model, lambda arg, device, dtype: generators.load_model(model, device, dtype))
    with pytest.raises(RecursionError):
        generators.load_model(model)


def test_notebook_13_registers_no_model():
    """The notebook's code (not its text) calls neither register_model nor load_model: the sweep is named by
    MODEL and loads it itself."""
    calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
             for n in ast.walk(ast.parse(NOTEBOOK.read_text())) if isinstance(n, ast.Call)}
    assert "load_generator" in calls and "run_sweep" in calls
    assert not calls & {"register_model", "load_model"}
