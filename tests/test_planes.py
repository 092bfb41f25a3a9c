"""geom.planes: the plane through three latents (through the anchors, affine, least-squares coordinates back),
hull marking (vs scipy's Delaunay), grid layout, the seeding rule of the anchors, and bit-identical to the
construction the committed sweeps were computed with (geom.sweep's plane source before geom.planes, copied here
as the reference)."""
import numpy as np
import pytest
import torch

from geom import planes
from geom.sweep import PlaneSource, SweepSpec, run_sweep


def _anchors(shape=(4, 3, 3), seed=0, dtype=torch.float64):
    return torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------- the old construction
def _old_sweep_plane(latent_shape, latent_seed, n, lo, hi, dtype):
    """geom.sweep.plane_anchors / plane_coords / plane_latents (via geom.slices.plane_latents) before
    geom.planes: anchors, coordinates and latents of every grid row."""
    g = torch.Generator().manual_seed(int(latent_seed))
    a = torch.randn(3, *latent_shape, generator=g, dtype=torch.float64).to(dtype)
    t = np.linspace(lo, hi, n)
    index = np.arange(n * n)
    i, j = index // n, index % n
    u = torch.as_tensor(np.asarray(t[i], dtype=np.float64)).reshape(-1)
    v = torch.as_tensor(np.asarray(t[j], dtype=np.float64)).reshape(-1)
    z0, z1, z2 = a.to(torch.float64)
    shape = (-1, *([1] * z0.ndim))
    z = (z0 + u.reshape(shape) * (z1 - z0) + v.reshape(shape) * (z2 - z0)).to(a.dtype)
    return a, dict(i=i, j=j, u=t[i], v=t[j]), z


@pytest.mark.parametrize("latent_shape, seed, n, lo, hi, dtype", [
    ((100,), 4, 2, -0.5, 1.5, torch.float32), ((16,), 0, 3, -0.5, 1.5, torch.float64),
    ((4, 8, 8), 3, 7, -1.0, 2.0, torch.float32), ((3, 5), 1, 5, 1.0, 0.0, torch.float64)])
def test_bit_identical_to_the_old_sweep_plane(latent_shape, seed, n, lo, hi, dtype):
    a_old, c_old, z_old = _old_sweep_plane(latent_shape, seed, n, lo, hi, dtype)
    a = planes.plane_anchors(latent_shape, seed, dtype=dtype)
    c = PlaneSource(n, lo, hi).coords(np.arange(n * n))
    z = planes.plane_latents(a, c["u"], c["v"])
    assert a.dtype == z.dtype == dtype
    assert a.numpy().tobytes() == a_old.numpy().tobytes()
    assert z.numpy().tobytes() == z_old.numpy().tobytes()
    for k in ("i", "j", "u", "v"):
        assert c[k].tobytes() == c_old[k].tobytes()
    if lo < hi:
        u, v = planes.plane_uv(n, lo, hi)
        assert u.tobytes() == c_old["u"].tobytes() and v.tobytes() == c_old["v"].tobytes()


def test_sweep_rows_are_the_planes_latents(tmp_path):
    """The sweep's plane rows are the descriptors of planes.plane_latents at planes.grid_coords, seeded by
    planes.plane_anchors (one seeding rule)."""
    import geom
    from geom.models import load_generator

    spec = SweepSpec(model="mlp:0", source="plane:3:-1:2", k=8, dim=2, radius=0.05, seed=1, shard_size=4,
                     batch_size=4, dtype="float64", latent_seed=5)
    df = run_sweep(spec, tmp_path / "s", progress=False)
    c = planes.grid_coords(3, -1.0, 2.0)
    for k in ("i", "j", "u", "v"):
        np.testing.assert_array_equal(df[k].to_numpy(), c[k])
    z = planes.plane_latents(planes.plane_anchors((16,), 5, dtype=torch.float64), c["u"], c["v"])
    ref = geom.describe(load_generator("mlp:0", dtype="float64"), z, k=8, radius=0.05, dim=2, seed=1, batch_size=4,
                        progress=False)
    for k in ("psi", "nu", "delta"):
        np.testing.assert_array_equal(df[k].to_numpy(), ref[k].to_numpy())


def test_plane_anchors_from_file(tmp_path):
    a = _anchors((2, 3), dtype=torch.float32)
    np.save(tmp_path / "a.npy", a.numpy())
    got = planes.plane_anchors((2, 3), anchors=str(tmp_path / "a.npy"), dtype=torch.float64)
    assert got.dtype == torch.float64 and torch.equal(got, a.double())
    with pytest.raises(ValueError, match="shape"):
        planes.plane_anchors((3, 2), anchors=str(tmp_path / "a.npy"))


# ------------------------------------------------------------------------------------------- the plane
def test_plane_passes_through_anchors():
    a = _anchors()
    z = planes.plane_latents(a, planes.ANCHOR_UV[:, 0], planes.ANCHOR_UV[:, 1])
    torch.testing.assert_close(z, a, rtol=0, atol=1e-12)


def test_plane_is_affine():
    a64 = _anchors()
    mid = planes.plane_latents(a64, [0.5], [0.5])[0]  # the midpoint of z1 and z2 is z(1/2, 1/2)
    torch.testing.assert_close(mid, (a64[1] + a64[2]) / 2)
    cen = planes.plane_latents(a64, [1 / 3], [1 / 3])[0]  # the centroid is z(1/3, 1/3)
    torch.testing.assert_close(cen, a64.mean(0))


def test_plane_coordinates_roundtrip():
    a = _anchors()
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-1, 2, 20), rng.uniform(-1, 2, 20)
    uu, vv, res = planes.plane_coordinates(a, planes.plane_latents(a, u, v))
    np.testing.assert_allclose(uu, u, atol=1e-10)
    np.testing.assert_allclose(vv, v, atol=1e-10)
    assert res.max() < 1e-10
    off = planes.plane_latents(a, u, v) + torch.randn(20, *a.shape[1:], dtype=a.dtype)
    assert planes.plane_coordinates(a, off)[2].min() > 1e-3


def test_plane_errors():
    a = _anchors()
    with pytest.raises(ValueError, match="shape"):
        planes.plane_latents(a[:2], [0], [0])
    with pytest.raises(ValueError, match="collinear"):
        planes.plane_latents(torch.stack([a[0], a[1], 2 * a[1] - a[0]]), [0], [0])
    bad = a.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        planes.plane_latents(bad, [0], [0])
    with pytest.raises(ValueError, match="same length"):
        planes.plane_latents(a, [0, 1], [0])
    with pytest.raises(ValueError):
        planes.plane_axis(0)
    with pytest.raises(ValueError, match="lo < hi"):
        planes.plane_uv(3, 1.0, 0.0)
    with pytest.raises(ValueError, match=">= 1"):
        planes.grid_coords(0)
    with pytest.raises(ValueError, match="finite"):
        planes.grid_coords(3, 0.0, float("inf"))


def test_grid_coords_order():
    c = planes.grid_coords(3, 0.0, 1.0)
    assert c["i"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and c["j"].tolist() == [0, 1, 2] * 3
    assert c["u"].tolist() == [0, 0, 0, 0.5, 0.5, 0.5, 1, 1, 1] and c["v"].tolist() == [0, 0.5, 1] * 3
    sub = planes.grid_coords(3, 0.0, 1.0, np.array([7, 2]))
    assert sub["i"].tolist() == [2, 0] and sub["v"].tolist() == [0.5, 1.0]


def test_in_hull_vs_delaunay():
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.5, 1.5, (4000, 2))
    ours = planes.in_hull(pts[:, 0], pts[:, 1])
    ref = Delaunay(planes.ANCHOR_UV).find_simplex(pts) >= 0
    assert (ours == ref).all()
    assert planes.in_hull(planes.ANCHOR_UV[:, 0], planes.ANCHOR_UV[:, 1]).all()  # vertices included
    # a grid with the anchors in it: the hull covers (about) 1/8 of the [-0.5, 1.5]^2 square
    u, v = planes.plane_uv(101)
    assert abs(planes.in_hull(u, v).mean() - 0.125) < 0.01


def test_grid_image_orientation():
    n = 5
    u, v = planes.plane_uv(n, 0, 1)
    img_u, img_v = planes.grid_image(u, n), planes.grid_image(v, n)
    assert (np.diff(img_u, axis=1) > 0).all() and (np.diff(img_u, axis=0) == 0).all()  # u along x (columns)
    assert (np.diff(img_v, axis=0) > 0).all() and (np.diff(img_v, axis=1) == 0).all()  # v along y (rows)
    with pytest.raises(ValueError, match="grid"):
        planes.grid_image(u[:-1], n)
