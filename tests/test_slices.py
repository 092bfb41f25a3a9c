"""geom.slices: orderings of a descriptor, and cached_describe (equal to geom.describe, keyed by the content of
every input, resumable) with module_digest."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tol
from geom import slices


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


# ------------------------------------------------------------------------------------------- cached describe
def _mlp(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 20))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net.eval()


def assert_same_rows(got, ref, dtype):
    """``got`` holds the rows of ``ref`` in ``ref``'s order, up to the rounding of ``dtype`` (the dtype the
    descriptors were computed in: ``conftest.tol``). Another batch size or chunking changes the shapes of the
    batched matmuls and SVDs, and with them the last digits of float32 results (psi differs by ~4e-8 between
    batch sizes 16 and 1 on an AMD EPYC): equality to 1e-10 held only on the CPU the test was written on. A row
    of another latent differs from a row by far more than the tolerance, checked on ``ref`` itself, so the
    comparison still fails on mixed, shifted or repeated rows."""
    t = tol(dtype)
    psi = ref["psi"].to_numpy()
    apart = np.abs(psi[:, None] - psi[None, :]) > t["atol"] + t["rtol"] * np.abs(psi[None, :])
    assert apart[~np.eye(len(psi), dtype=bool)].all(), f"rows of ref not distinguishable at {t}: psi = {psi}"
    pd.testing.assert_frame_equal(got, ref, check_exact=False, **t)


@pytest.mark.kernels
def test_cached_describe_matches_describe_and_resumes(tmp_path, monkeypatch):
    import geom

    G = _mlp()
    z = torch.randn(23, 6, generator=torch.Generator().manual_seed(1))
    ref = geom.describe(G, z, k=8, radius=0.05, dim=3, seed=2, progress=False)
    got = slices.cached_describe(G, z, tmp_path, k=8, radius=0.05, dim=3, seed=2, shard_size=10, progress=False)
    assert_same_rows(got, ref, z.dtype)
    (folder,) = list(tmp_path.iterdir())
    assert len(list(folder.glob("part-*.parquet"))) == 3
    # a second run reads the cache: describe must not be called
    import geom.descriptors

    monkeypatch.setattr(geom.descriptors, "describe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = slices.cached_describe(G, z, tmp_path, k=8, radius=0.05, dim=3, seed=2, shard_size=10, progress=False)
    pd.testing.assert_frame_equal(again, got)
    monkeypatch.undo()
    # other weights, latents or settings -> another cache entry
    slices.cached_describe(_mlp(1), z, tmp_path, k=8, radius=0.05, dim=3, seed=2, shard_size=10, progress=False)
    slices.cached_describe(G, z, tmp_path, k=8, radius=0.05, dim=3, seed=2, shard_size=10, extra=(2.0,), progress=False)
    assert len(list(tmp_path.iterdir())) == 3


@pytest.mark.kernels
def test_cached_describe_changed_chunking_or_batch_never_mixes_rows(tmp_path):
    """Chunks of one chunk size are never read as chunks of another (the old key left ``chunk`` out: a run with
    chunk=2 after an interrupted chunk=4 run wrote z[2:4]'s rows as part 1, which a chunk=4 run then served
    as z[4:6]'s). Reference: geom.describe on all latents at once."""
    import geom

    G = _mlp()
    z = torch.randn(6, 6, generator=torch.Generator().manual_seed(3))
    ref = geom.describe(G, z, k=8, radius=0.05, dim=3, seed=2, progress=False)
    kw = dict(k=8, radius=0.05, dim=3, seed=2, progress=False)
    slices.cached_describe(G, z, tmp_path, shard_size=4, **kw)
    (folder,) = list(tmp_path.iterdir())
    (folder / "part-000001.parquet").unlink()  # interrupted
    for chunk, batch in ((2, 16), (4, 16), (4, 1)):
        got = slices.cached_describe(G, z, tmp_path, shard_size=chunk, batch_size=batch, **kw)
        assert_same_rows(got, ref, z.dtype)
    mixed = pd.concat([ref.iloc[:4], ref.iloc[2:4]], ignore_index=True)  # the old fault: z[2:4]'s rows as z[4:6]'s
    with pytest.raises(AssertionError):
        assert_same_rows(mixed, ref, z.dtype)
    keys = [json.loads((f / "key.json").read_text()) for f in tmp_path.iterdir()]
    assert sorted((k["settings"]["chunk"], k["settings"]["batch_size"]) for k in keys) == [(2, 16), (4, 1), (4, 16)]
    assert {k["module_sha256"] for k in keys} == {slices.module_digest(G)}


@pytest.mark.kernels
def test_cached_describe_recomputes_for_another_descriptor_engine(tmp_path, monkeypatch):
    """The key holds geom.descriptors.ENGINE_VERSION: after a change of the descriptor code (the constant
    bumped) the cached rows are not served but recomputed into another folder. Reference: geom.describe."""
    import geom
    import geom.descriptors

    G = _mlp()
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(4))
    kw = dict(k=8, radius=0.05, dim=3, seed=2, shard_size=3, progress=False)
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
    assert_same_rows(again, ref, z.dtype)
    assert_same_rows(first, ref, z.dtype)


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


def _old_module_digest(module, extra=()):
    """geom.slices.module_digest before non-persistent buffers were hashed (the state dict and extra only)."""
    import hashlib
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(repr(tuple(extra)).encode())
    return h.hexdigest()


class _Labelled(torch.nn.Module):
    """An MLP on cat(z, label) with the label a NON-persistent buffer, as omniart-eyes holds its eye colour:
    two labels, one state dict."""

    def __init__(self, label: int):
        super().__init__()
        self.net = _mlp(0)
        self.net[0] = torch.nn.Linear(4 + 2, 32)
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            self.net[0].weight.copy_(torch.randn(32, 6, generator=g))
            self.net[0].bias.copy_(torch.randn(32, generator=g))
        self.register_buffer("label", torch.nn.functional.one_hot(torch.tensor(label), 2).float(), persistent=False)

    def forward(self, z):
        return self.net(torch.cat([z, self.label.expand(z.shape[0], -1)], 1))


def test_module_digest_unchanged_without_non_persistent_buffers():
    """Modules without non-persistent buffers (every generator but omniart-eyes) keep their digest: the cache
    folders and sweeps written before stay valid. Reference: the former formula, copied above."""
    net = _mlp(0)
    net.register_buffer("persistent_one", torch.arange(3.0))  # persistent buffers are in the state dict already
    for m, extra in ((_mlp(0), ()), (_mlp(1), (0.18215,)), (net, ()), (_mlp(0).to(torch.bfloat16), ())):
        assert slices.module_digest(m, extra) == _old_module_digest(m, extra)


def test_module_digest_and_cache_tell_non_persistent_buffers_apart(tmp_path):
    """Two modules with one state dict and different non-persistent buffers (two classes of a conditional
    generator) compute different functions: their digests differ, and cached_describe serves each its own
    rows (the former digest gave both one cache folder, so the second class was served the first's rows).
    Reference: geom.describe of each module."""
    import geom

    a, b = _Labelled(0).eval(), _Labelled(1).eval()
    assert a.state_dict().keys() == b.state_dict().keys() and _old_module_digest(a) == _old_module_digest(b)
    assert slices.module_digest(a) != slices.module_digest(b)
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(6))
    kw = dict(k=8, radius=0.05, dim=3, seed=2, progress=False)
    got = [slices.cached_describe(m, z, tmp_path, shard_size=3, **kw) for m in (a, b)]
    refs = [geom.describe(m, z, **kw) for m in (a, b)]
    assert len(list(tmp_path.iterdir())) == 2
    for g, r in zip(got, refs):
        assert_same_rows(g, r, z.dtype)
    with pytest.raises(AssertionError):  # the check fails on the former fault: class 0's rows served for class 1
        assert_same_rows(got[0], refs[1], z.dtype)
