"""geom.phases against independent references: the noise plane's construction, Lipschitz estimates of linear
image maps (analytic operator action), boundary distances of synthetic half-planes (analytic), box counting.
Curves under a metric (path lengths, geodesics, linearity) are tested in tests/test_metric.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geom import phases as Ph

from conftest import tol


def test_plane_passes_through_seeds_and_is_renormalised():
    lat = Ph.seed_latents((4, 5, 5), seeds=(3, 4, 5)).double()
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.3, -0.7]], dtype=torch.float64)
    raw = Ph.noise_plane(lat, pts, renormalise=False)
    for k in range(3):
        torch.testing.assert_close(raw[k], lat[k], **tol(torch.float64))
    # independent reference: the affine combination written out
    ref = lat[0] + 0.3 * (lat[1] - lat[0]) - 0.7 * (lat[2] - lat[0])
    torch.testing.assert_close(raw[3], ref, **tol(torch.float64))
    z = Ph.noise_plane(lat, pts)
    torch.testing.assert_close(z.flatten(1).std(1), torch.ones(4, dtype=torch.float64), **tol(torch.float64))
    torch.testing.assert_close(z, raw / raw.flatten(1).std(1).view(-1, 1, 1, 1), **tol(torch.float64))


def test_seed_latents_are_reproducible_and_distinct():
    a, b = Ph.seed_latents((2, 3, 3), (0, 1, 2)), Ph.seed_latents((2, 3, 3), (0, 1, 2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a[0] - a[1]).abs().max() > 0.1
    with pytest.raises(ValueError):
        Ph.seed_latents((2, 3, 3), (0, 1))


def test_noise_plane_rejects_bad_input():
    lat = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="shape"):
        Ph.noise_plane(lat[:2], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="shape"):
        Ph.noise_plane(lat, torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        Ph.noise_plane(lat, torch.tensor([[float("nan"), 0.0]]))


class _ZeroNoisePipe:
    """eps = 0: eta=0 DDIM then only rescales x_T by sqrt(a_final / a_first) (Song et al. Eq. 12)."""
    latent_shape = (4, 3, 3)
    dtype = torch.float64
    device = torch.device("cpu")

    def __init__(self):
        from diffusers import DDIMScheduler
        self.scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        self.vae_decode = lambda z: z[:, :3] * 0.1  # noqa: E731

    def encode_prompt(self, prompts):
        return torch.zeros(len(prompts), 1, 1, dtype=torch.float64)

    def predict_noise(self, x, t, emb):
        return torch.zeros_like(x)


def test_generate_plane_samples_the_plane_noises_in_order():
    pipe = _ZeroNoisePipe()
    lat = Ph.seed_latents(pipe.latent_shape).double()
    pts = Ph.plane_points(torch.linspace(-0.5, 1.5, 3), torch.linspace(0, 1, 2))
    img = Ph.generate_plane(pipe, "a prompt", lat, pts, num_steps=5, guidance_scale=5.0, batch_size=4)
    ts = pipe.scheduler.timesteps
    c = math.sqrt(float(pipe.scheduler.final_alpha_cumprod) / float(pipe.scheduler.alphas_cumprod[ts[0]]))
    ref = (Ph.noise_plane(lat, pts) * c)[:, :3] * 0.1
    assert img.shape == (6, 3, 3, 3)
    torch.testing.assert_close(img.double(), ref.clamp(-1, 1), **tol(torch.float32))


def test_generate_plane_old_batch_keyword_warns_and_gives_the_same_images():
    """issue 25: ``batch=`` is now ``batch_size=`` (points per DDIM call); the old keyword warns, same images."""
    pipe = _ZeroNoisePipe()
    lat = Ph.seed_latents(pipe.latent_shape).double()
    pts = Ph.plane_points(torch.linspace(-0.5, 1.5, 3), torch.linspace(0, 1, 2))
    ref = Ph.generate_plane(pipe, "a prompt", lat, pts, num_steps=3, batch_size=4, progress=False)
    with pytest.warns(DeprecationWarning, match=r"generate_plane\(batch=\.\.\.\) is deprecated: use batch_size="):
        got = Ph.generate_plane(pipe, "a prompt", lat, pts, num_steps=3, batch=4, progress=False)
    assert torch.equal(got, ref)


def test_pixel_features_are_block_means():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    f = Ph.image_features(x, kind="pixels", side=2)
    ref = x.reshape(2, 3, 2, 2, 2, 2).mean((3, 5)).flatten(1)
    torch.testing.assert_close(f, ref)
    with pytest.raises(ValueError, match="pipe"):
        Ph.image_features(x, kind="vae")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lipschitz_of_linear_image_map(dtype):
    """x(a, b) = x0 + a u + b v: every a-edge has ||x(a + da) - x(a)|| / da = |u| and every b-edge |v|."""
    g = torch.Generator().manual_seed(0)
    x0, u, v = (torch.randn(3, 6, 6, generator=g, dtype=dtype) for _ in range(3))
    a, b = torch.linspace(-1, 1, 7, dtype=dtype), torch.linspace(0, 0.5, 5, dtype=dtype)
    imgs = x0 + a[:, None, None, None, None] * u + b[None, :, None, None, None] * v
    da, db = float(a[1] - a[0]), float(b[1] - b[0])
    La, Lb = Ph.edge_lipschitz(imgs, da, db)
    assert La.shape == (6, 5) and Lb.shape == (7, 4)
    t = tol(dtype, "fd")
    torch.testing.assert_close(La, torch.full_like(La, float(u.double().norm())), **t)
    torch.testing.assert_close(Lb, torch.full_like(Lb, float(v.double().norm())), **t)
    L = Ph.lipschitz_map(imgs, da, db)
    torch.testing.assert_close(L, torch.full_like(L, max(float(u.double().norm()), float(v.double().norm()))), **t)


def test_boundary_distance_half_plane_axis_aligned():
    """Labels 1[a > c] with c halfway between grid lines: distance to the boundary is exactly |a - c|."""
    a, b = np.linspace(0, 1, 11), np.linspace(-1, 1, 9)
    c = 0.45
    lab = (a[:, None] > c).astype(int) * np.ones((1, len(b)), int)
    d = Ph.boundary_distance(lab, a, b)
    np.testing.assert_allclose(d, np.abs(a[:, None] - c) * np.ones((1, len(b))), rtol=0, atol=1e-12)
    q = np.array([[0.9, 0.0], [0.0, 0.25]])  # on grid lines of b (boundary points sit on them)
    np.testing.assert_allclose(Ph.boundary_distance(lab, a, b, query=q), [0.45, 0.45], atol=1e-12)
    _, _, pt = Ph.boundary_mask(lab)
    assert pt.sum() == 2 * len(b) and pt[4].all() and pt[5].all()


def test_boundary_distance_tilted_half_plane_within_a_grid_spacing():
    n = 41
    a = b = np.linspace(-1, 1, n)
    h = a[1] - a[0]
    nrm, c = np.array([0.6, 0.8]), 0.13
    P = np.stack(np.meshgrid(a, b, indexing="ij"), -1)
    lab = (P @ nrm > c).astype(int)
    d = Ph.boundary_distance(lab, a, b)
    exact = np.abs(P @ nrm - c)
    foot = P - (P @ nrm - c)[..., None] * nrm  # nearest point of the true boundary
    inside = (np.abs(foot) <= 1 - h).all(-1)    # ... when it lies inside the grid
    assert inside.mean() > 0.7
    err = np.abs(d - exact)[inside]
    assert err.max() <= h  # midpoint estimate: within one spacing
    assert err.mean() < 0.3 * h


def test_boundary_distance_single_phase_is_inf():
    assert np.isinf(Ph.boundary_distance(np.zeros((3, 4), int), np.arange(3), np.arange(4))).all()


def test_kmeans_phases_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0]], float)
    true = np.repeat([0, 1, 2], [50, 30, 20])
    X = centres[true] + rng.normal(0, 0.5, (100, 3))
    lab, assign = Ph.kmeans_phases(X, 3, seed=0)
    np.testing.assert_array_equal(lab, true)  # relabelled by size: 0 = largest
    np.testing.assert_array_equal(assign(X), true)
    np.testing.assert_array_equal(assign(centres + 0.1), [0, 1, 2])
    with pytest.raises(ValueError):
        Ph.kmeans_phases(X, 0)


def test_dominant_colour_phases():
    pal = {"red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0)}
    img = torch.zeros(3, 3, 4, 4)  # [0, 1] space, converted below
    img[0, 0, :3] = 1.0            # 12 red pixels
    img[1, 2, :1] = 1.0            # 4 blue pixels
    img[2] = 0.5                   # grey: no palette pixel
    lab, names = Ph.dominant_colour_phases(img * 2 - 1, pal)
    assert names == ["red", "blue", "none"] and lab.tolist() == [0, 1, 2]


def test_box_counting_dimension_of_a_line_is_one():
    n = 64
    lab = np.zeros((n, n), int)
    lab[:, 20:] = 1  # a straight boundary
    dim, counts = Ph.box_counting_dimension(lab, factors=(1, 2, 4, 8))
    assert counts.tolist() == [64, 32, 16, 8] and dim == pytest.approx(1.0, abs=1e-9)
    # a checkerboard (boundaries everywhere) fills the plane
    chk = np.indices((n, n)).sum(0) % 2
    dim2, _ = Ph.box_counting_dimension(chk)
    assert dim2 == pytest.approx(2.0, abs=0.01)


def test_choose_endpoints_half_plane():
    a = b = np.linspace(0, 1, 21)
    lab = (a[:, None] > 0.5).astype(int) * np.ones((1, 21), int)
    cand = Ph.plane_points(torch.tensor(a[::4]), torch.tensor(b[::4])).numpy()
    pairs = Ph.choose_endpoints(lab, a, b, cand, np.random.default_rng(0), n_pairs=500)
    s, e = pairs["same"]
    assert (s[0] > 0.5) == (e[0] > 0.5)
    s, e = pairs["across"]
    assert (s[0] > 0.5) != (e[0] > 0.5)
    assert list(Ph.segment_labels(lab, a, b, [0, 0], [1, 0], n=5)) == [0, 0, 0, 1, 1]


def test_mosaic_orientation():
    imgs = torch.zeros(2, 3, 3, 1, 1)
    imgs[1, 0, 0] = 1.0   # a = 1 (right), b = 0 (bottom): red at the bottom-right
    m = Ph.mosaic(imgs)
    assert m.shape == (3, 2, 3)
    assert m[2, 1, 0] == 1.0 and m[0, 0, 0] == 0.5
