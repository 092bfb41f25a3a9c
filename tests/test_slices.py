"""geom.slices: the plane through three latents (vs geom.sweep and the anchors themselves), hull marking
(vs scipy's Delaunay), grid layout, AUROC (vs scikit-learn and a brute-force pair count), bootstrap CI,
OOD/ID image sets (shapes, ranges, determinism, errors)."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from geom import slices  # noqa: E402


def _anchors(shape=(4, 3, 3), seed=0, dtype=torch.float64):
    return torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------- plane
def test_plane_passes_through_anchors():
    a = _anchors()
    z = slices.plane_latents(a, slices.ANCHOR_UV[:, 0], slices.ANCHOR_UV[:, 1])
    torch.testing.assert_close(z, a, rtol=0, atol=1e-12)


def test_plane_coordinates_roundtrip():
    a = _anchors()
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-1, 2, 20), rng.uniform(-1, 2, 20)
    uu, vv, res = slices.plane_coordinates(a, slices.plane_latents(a, u, v))
    np.testing.assert_allclose(uu, u, atol=1e-10)
    np.testing.assert_allclose(vv, v, atol=1e-10)
    assert res.max() < 1e-10
    off = slices.plane_latents(a, u, v) + torch.randn(20, *a.shape[1:], dtype=a.dtype)
    assert slices.plane_coordinates(a, off)[2].min() > 1e-3


def test_plane_errors():
    a = _anchors()
    with pytest.raises(ValueError, match="shape"):
        slices.plane_latents(a[:2], [0], [0])
    with pytest.raises(ValueError, match="collinear"):
        slices.plane_latents(torch.stack([a[0], a[1], 2 * a[1] - a[0]]), [0], [0])
    bad = a.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        slices.plane_latents(bad, [0], [0])
    with pytest.raises(ValueError, match="same length"):
        slices.plane_latents(a, [0, 1], [0])
    with pytest.raises(ValueError):
        slices.plane_axis(0)


def test_in_hull_vs_delaunay():
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.5, 1.5, (4000, 2))
    ours = slices.in_hull(pts[:, 0], pts[:, 1])
    ref = Delaunay(slices.ANCHOR_UV).find_simplex(pts) >= 0
    assert (ours == ref).all()
    assert slices.in_hull(slices.ANCHOR_UV[:, 0], slices.ANCHOR_UV[:, 1]).all()  # vertices included
    # a grid with the anchors in it: the hull covers (about) 1/8 of the [-0.5, 1.5]^2 square
    u, v = slices.plane_uv(101)
    assert abs(slices.in_hull(u, v).mean() - 0.125) < 0.01


def test_grid_image_orientation():
    n = 5
    u, v = slices.plane_uv(n, 0, 1)
    img_u, img_v = slices.grid_image(u, n), slices.grid_image(v, n)
    assert (np.diff(img_u, axis=1) > 0).all() and (np.diff(img_u, axis=0) == 0).all()  # u along x (columns)
    assert (np.diff(img_v, axis=0) > 0).all() and (np.diff(img_v, axis=1) == 0).all()  # v along y (rows)
    with pytest.raises(ValueError, match="grid"):
        slices.grid_image(u[:-1], n)


# ------------------------------------------------------------------------------------------- orderings
def test_extremes_and_rank_picks():
    vals = np.array([3.0, -1.0, 7.0, 2.0, 7.5, 0.0])
    low, high = slices.extreme_indices(vals, 2)
    assert list(low) == [1, 5] and list(high) == [4, 2]
    picks = slices.rank_picks(vals, 3)
    assert picks[0] == 1 and picks[-1] == 4 and np.all(np.diff(vals[picks]) >= 0)
    with pytest.raises(ValueError):
        slices.rank_picks(vals, 0)
    with pytest.raises(ValueError):
        slices.rank_picks([1.0, np.nan], 1)


# ------------------------------------------------------------------------------------------- AUROC
def _brute_auroc(x, y):
    x, y = np.asarray(x)[:, None], np.asarray(y)[None, :]
    return ((x > y).sum() + 0.5 * (x == y).sum()) / (x.size * y.size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_vs_sklearn_and_pairs(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 1, 37).round(1)  # rounding makes ties
    y = rng.normal(0, 1, 53).round(1)
    a = slices.auroc(x, y)
    labels = np.r_[np.ones(x.size), np.zeros(y.size)]
    assert a == pytest.approx(roc_auc_score(labels, np.r_[x, y]), abs=1e-12)
    assert a == pytest.approx(_brute_auroc(x, y), abs=1e-12)
    assert slices.auroc(y, x) == pytest.approx(1 - a, abs=1e-12)


def test_auroc_edge_cases():
    assert slices.auroc([2, 3], [0, 1]) == 1.0
    assert slices.auroc([0, 1], [2, 3]) == 0.0
    assert slices.auroc([1, 1], [1, 1, 1]) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        slices.auroc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        slices.auroc([np.nan], [1.0])


def test_auroc_ci_covers_and_is_seeded():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    a, lo, hi = slices.auroc_ci(x, y, n_boot=300, seed=0)
    assert lo < a < hi and hi - lo < 0.2
    # true AUROC of N(1,1) vs N(0,1) is Phi(1/sqrt 2) = 0.760
    assert lo < 0.760 < hi
    assert slices.auroc_ci(x, y, n_boot=300, seed=0) == (a, lo, hi)
    tab = slices.auroc_table({"good": np.r_[x, y], "flipped": -np.r_[x, y]}, np.r_[np.ones(200), np.zeros(200)] > 0,
                             n_boot=100)
    assert list(tab.best_direction) == ["higher", "lower"]
    assert tab.auroc.iloc[0] == pytest.approx(1 - tab.auroc.iloc[1])
    with pytest.raises(ValueError, match="labels"):
        slices.auroc_table({"s": np.zeros(3)}, np.ones(4, bool))


# ------------------------------------------------------------------------------------------- cached describe
def _mlp(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 20))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net.eval()


def test_cached_describe_matches_describe_and_resumes(tmp_path, monkeypatch):
    import geom

    G = _mlp()
    z = torch.randn(23, 6, generator=torch.Generator().manual_seed(1))
    ref = geom.describe(G, z, k=8, radius=0.05, dim=3, seed=2, progress=False)
    got = slices.cached_describe(G, z, tmp_path, k=8, radius=0.05, dim=3, seed=2, chunk=10, progress=False)
    pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-10, atol=1e-10)
    (folder,) = list(tmp_path.iterdir())
    assert len(list(folder.glob("part-*.parquet"))) == 3
    # a second run reads the cache: describe must not be called
    import geom.descriptors

    monkeypatch.setattr(geom.descriptors, "describe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = slices.cached_describe(G, z, tmp_path, k=8, radius=0.05, dim=3, seed=2, chunk=10, progress=False)
    pd.testing.assert_frame_equal(again, got)
    monkeypatch.undo()
    # other weights, latents or settings -> another cache entry
    slices.cached_describe(_mlp(1), z, tmp_path, k=8, radius=0.05, dim=3, seed=2, chunk=10, progress=False)
    slices.cached_describe(G, z, tmp_path, k=8, radius=0.05, dim=3, seed=2, chunk=10, extra=(2.0,), progress=False)
    assert len(list(tmp_path.iterdir())) == 3


def test_cached_describe_changed_chunking_or_batch_never_mixes_rows(tmp_path):
    """Chunks of one chunk size are never read as chunks of another (the old key left ``chunk`` out: a run with
    chunk=2 after an interrupted chunk=4 run wrote z[2:4]'s rows as part 1, which a chunk=4 run then served
    as z[4:6]'s). Reference: geom.describe on all latents at once."""
    import geom

    G = _mlp()
    z = torch.randn(6, 6, generator=torch.Generator().manual_seed(3))
    ref = geom.describe(G, z, k=8, radius=0.05, dim=3, seed=2, progress=False)
    kw = dict(k=8, radius=0.05, dim=3, seed=2, progress=False)
    slices.cached_describe(G, z, tmp_path, chunk=4, **kw)
    (folder,) = list(tmp_path.iterdir())
    (folder / "part-000001.parquet").unlink()  # interrupted
    for chunk, batch in ((2, 16), (4, 16), (4, 1)):
        got = slices.cached_describe(G, z, tmp_path, chunk=chunk, batch_size=batch, **kw)
        pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-10, atol=1e-10)
    keys = [json.loads((f / "key.json").read_text()) for f in tmp_path.iterdir()]
    assert sorted((k["settings"]["chunk"], k["settings"]["batch_size"]) for k in keys) == [(2, 16), (4, 1), (4, 16)]
    assert {k["module_sha256"] for k in keys} == {slices.module_digest(G)}


def test_cached_describe_recomputes_for_another_descriptor_engine(tmp_path, monkeypatch):
    """The key holds geom.descriptors.ENGINE_VERSION: after a change of the descriptor code (the constant
    bumped) the cached rows are not served but recomputed into another folder. Reference: geom.describe."""
    import geom
    import geom.descriptors

    G = _mlp()
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(4))
    kw = dict(k=8, radius=0.05, dim=3, seed=2, chunk=3, progress=False)
    first = slices.cached_describe(G, z, tmp_path, **kw)
    calls = []
    real = geom.descriptors.describe

    def counting(*a, **k):
        calls.append(a[1].shape[0])
        return real(*a, **k)
    monkeypatch.setattr(geom.descriptors, "describe", counting)
    monkeypatch.setattr(geom.descriptors, "ENGINE_VERSION", geom.descriptors.ENGINE_VERSION + 1)
    again = slices.cached_describe(G, z, tmp_path, **kw)
    assert calls == [3, 2], "rows cached by another descriptor engine were served"
    keys = sorted(json.loads((f / "key.json").read_text())["engine_version"] for f in tmp_path.iterdir())
    assert keys == [geom.descriptors.ENGINE_VERSION - 1, geom.descriptors.ENGINE_VERSION]
    ref = geom.describe(G, z, k=8, radius=0.05, dim=3, seed=2, progress=False)
    pd.testing.assert_frame_equal(again, ref, check_exact=False, rtol=1e-10, atol=1e-10)
    pd.testing.assert_frame_equal(first, ref, check_exact=False, rtol=1e-10, atol=1e-10)


def test_module_digest():
    a, b = _mlp(0), _mlp(0)
    assert slices.module_digest(a) == slices.module_digest(b)
    with torch.no_grad():
        b[0].bias[0] += 1e-6
    assert slices.module_digest(a) != slices.module_digest(b)
    assert slices.module_digest(a, (1.0,)) != slices.module_digest(a, (2.0,))
    with pytest.raises(TypeError):
        slices.module_digest(lambda x: x)
    c = _mlp(0).to(torch.bfloat16)  # numpy has no bfloat16: hashed from the raw bytes
    assert slices.module_digest(c) != slices.module_digest(a)
    with torch.no_grad():
        c[2].weight[0, 0] += 1
    assert slices.module_digest(c) != slices.module_digest(_mlp(0).to(torch.bfloat16))
