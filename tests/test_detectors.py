"""geom.detectors: the per-sample report equals its parts computed independently; the PNG control is the
length of the PNG file; bad input is named."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import geom
from geom import detectors
from geom.models.generators import ModuleGenerator


def png_length_by_hand(img_u8: np.ndarray) -> int:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format="PNG", compress_level=9)
    return len(buf.getvalue())


def test_png_bytes_is_the_png_file_length_and_orders_complexity():
    g = torch.Generator().manual_seed(0)
    flat = torch.zeros(1, 3, 16, 16)
    noise = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    got = detectors.png_bytes(torch.cat([flat, noise]))
    u8 = np.round((noise[0].numpy().transpose(1, 2, 0) + 1) / 2 * 255).astype(np.uint8)
    assert got[1] == png_length_by_hand(u8)
    assert got[0] < got[1]  # a flat image compresses far better than noise
    grey = detectors.png_bytes(torch.rand(2, 8, 8, generator=g), value_range=(0, 1))
    assert grey.shape == (2,) and grey.dtype == np.int64
    with pytest.raises(ValueError, match="images must be"):
        detectors.png_bytes(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        detectors.png_bytes(torch.full((1, 1, 4, 4), float("nan")))


class LinearAE(ModuleGenerator):
    """A linear decoder with a (deliberately inexact) linear encoder: reconstruction error in closed form."""

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3 * 4 * 4), nn.Unflatten(1, (3, 4, 4)))
        for p in net.parameters():
            p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3
        super().__init__("toy-ae", net.double().eval(), (4,), (3, 4, 4))
        self.E = torch.randn(4, 48, generator=g, dtype=torch.float64) * 0.05
        self.encode = lambda x: x.flatten(1) @ self.E.T
        self.eval()


def test_report_equals_its_parts():
    G = LinearAE()
    g = torch.Generator().manual_seed(2)
    images = torch.rand(6, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    df = detectors.report(G, images=images, k=8, radius=0.05, dim=2, seed=3, batch_size=4, progress=False)
    z = G.encode(images)
    ref = geom.describe(G, z, k=8, radius=0.05, dim=2, seed=3, batch_size=4, progress=False)
    pd.testing.assert_frame_equal(df[ref.columns], ref)
    np.testing.assert_allclose(df["latent_norm"], z.norm(dim=1).numpy(), rtol=1e-12)
    with torch.no_grad():
        np.testing.assert_allclose(df["recon_error"], ((G(z) - images) ** 2).mean((1, 2, 3)).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(df["png_bytes"], detectors.png_bytes(images))
    assert set(df.attrs["seconds_per_sample"]) == {"encode", "descriptors", "decode", "png_bytes"}
    # latents alone: the control is computed on the generated images
    dz = detectors.report(G, latents=z, k=8, radius=0.05, dim=2, seed=3, progress=False)
    with torch.no_grad():
        np.testing.assert_array_equal(dz["png_bytes"], detectors.png_bytes(G(z)))
    assert "recon_error" not in dz


def test_report_rows_do_not_depend_on_batch_companions():
    G = LinearAE()
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = detectors.report(G, latents=z, k=8, radius=0.05, dim=2, batch_size=5, progress=False)
    b = detectors.report(G, latents=z[3:4], k=8, radius=0.05, dim=2, batch_size=1, progress=False)
    pd.testing.assert_frame_equal(a.iloc[[3]].reset_index(drop=True), b)


def test_report_names_bad_input():
    G = LinearAE()
    with pytest.raises(ValueError, match="needs latents, images"):
        detectors.report(G)
    gan = ModuleGenerator("gan", nn.Sequential(nn.Linear(4, 48), nn.Unflatten(1, (3, 4, 4))), (4,), (3, 4, 4)).eval()
    with pytest.raises(ValueError, match="no encode"):
        detectors.report(gan, images=torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="same samples"):
        detectors.report(G, latents=torch.zeros(3, 4, dtype=torch.float64), images=torch.zeros(2, 3, 4, 4))
