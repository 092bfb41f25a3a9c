"""One spelling per idea (issue 25), the size names: ``batch_size`` = samples per forward call / optimisation step,
``chunk_size`` = vmapped passes at once, ``shard_size`` = rows per stored shard (CONTRIBUTING.md, "Names").
The former keywords (``batch=``, ``chunk=``, ``fit_batch=``, ``sample_batch=``) still work through
``geom.deprecation.renamed_kwargs``: they warn ``DeprecationWarning`` naming the new keyword and give the
result of the new spelling exactly (the same code path on the same inputs, so compared with ``torch.equal`` /
``assert_array_equal``)."""
from __future__ import annotations

import ast
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import geom
from geom import deprecation, paths


# ------------------------------------------------------------------------------------------------ the helper
def test_renamed_kwargs_warns_forwards_and_refuses_both():
    @deprecation.renamed_kwargs(batch="batch_size")
    def f(x, batch_size=3):
        return x * batch_size

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling: no warning
        assert f(2) == 6 and f(2, 5) == 10 and f(2, batch_size=4) == 8
    with pytest.warns(DeprecationWarning, match=r"f\(batch=\.\.\.\) is deprecated: use batch_size=") as rec:
        assert f(2, batch=4) == 8
    assert rec[0].filename == __file__  # points at the caller, not at the helper
    with pytest.raises(TypeError, match="both batch= .* and batch_size="):
        f(2, batch=4, batch_size=4)
    assert f.__deprecated_kwargs__ == {"batch": "batch_size"} and f.__name__ == "f"


def test_renamed_fields_keep_old_dataclass_keywords_for_each_config():
    from geom.models import fashion_ldm, ldm_train, tiny_ldm

    for cls in (ldm_train.LDMConfig, tiny_ldm.TrainConfig, fashion_ldm.FashionConfig):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            new = cls(vae_batch_size=5, unet_batch_size=7)
        with pytest.warns(DeprecationWarning, match=r"vae_batch=\.\.\.\) is deprecated: use vae_batch_size="):
            old = cls(vae_batch=5, unet_batch_size=7)
        assert old == new and type(old) is cls and (old.vae_batch_size, old.unet_batch_size) == (5, 7)
        with pytest.raises(TypeError, match="both unet_batch= .* and unet_batch_size="):
            cls(unet_batch=3, unet_batch_size=3)
        assert cls(4).seed == 4  # positional arguments are unaffected


def test_deprecated_names_the_fix():
    with pytest.warns(DeprecationWarning, match="^x is deprecated: do y$"):
        deprecation.deprecated("x", "do y")


# ------------------------------------------------------------------------------------- every renamed function
def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    elif isinstance(a, torch.nn.Module):
        _same(a.state_dict(), b.state_dict())
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def _old_equals_new(fn, args, old: dict, new: dict):
    """``fn(*args, **old)`` warns naming each new keyword and equals ``fn(*args, **new)``."""
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        ref = fn(*args, **new)
    assert not [w for w in quiet if "is deprecated: use" in str(w.message)]  # (torch's own warnings may come)
    with pytest.warns(DeprecationWarning) as rec:
        got = fn(*args, **old)
    text = " ".join(str(w.message) for w in rec)
    for o, n in zip(old, new):
        if o != n:
            assert f"{o}=...) is deprecated: use {n}=" in text
    _same(got, ref)
    return got


def test_physics_sizes():
    from geom import physics as P

    theta = torch.tensor([[0.2, 0.0], [0.3, 0.1], [0.4, -0.1]], dtype=torch.float64)
    _old_equals_new(P.ising2d_fisher, (3, theta), dict(chunk=2), dict(chunk_size=2))
    kw = dict(thin=1, burn_in=3, seed=4, progress=False)
    _old_equals_new(P.ising2d_mcmc, (4, 0.4, 0.1, 2, 5), dict(chunk=2, **kw), dict(shard_size=2, **kw))
    K, B = np.array([0.3, 0.5]), np.array([0.0, 0.1])
    _old_equals_new(P.ising2d_mcmc_pool, (4, K, B, 3), dict(chunk=2, **kw), dict(shard_size=2, **kw))


def test_resumable_runs_keep_their_on_disk_form(tmp_path):
    """ising2d_mcmc's run.json keeps the key ``chunk`` and the files ``chunk-NNNNNN.npz`` (folders written
    before the rename resume); resuming with the old or the new keyword reads the same shards."""
    from geom import physics as P

    kw = dict(thin=1, burn_in=3, seed=4, out_dir=tmp_path, progress=False)
    a = P.ising2d_mcmc(4, 0.4, 0.1, 2, 5, shard_size=2, **kw)
    import json
    assert json.loads((tmp_path / "run.json").read_text())["chunk"] == 2
    assert sorted(p.name for p in tmp_path.glob("chunk-*.npz")) == [f"chunk-{i:06d}.npz" for i in range(3)]
    with pytest.warns(DeprecationWarning):
        b = P.ising2d_mcmc(4, 0.4, 0.1, 2, 5, chunk=2, **kw)
    _same(a, b)
    with pytest.raises(ValueError, match="different settings \\(chunk\\)"):
        P.ising2d_mcmc(4, 0.4, 0.1, 2, 5, shard_size=3, **kw)


def test_long_run_reference_passes_shard_size_on(monkeypatch):
    from geom.physics import reference

    seen = {}

    def fake(*a, **k):
        seen.update(k)
        raise RuntimeError("stop")

    monkeypatch.setattr(reference, "ising2d_mcmc", fake)
    args = (4, np.array([0.4]), np.array([0.0]), np.array([2.5]), 1)
    kw = dict(chains=1, updates=2, burn_in=1, seed=0, progress=False)
    for extra in (dict(shard_size=7), dict(chunk=7)):
        seen.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(RuntimeError, match="stop"):
                reference.ising2d_long_run_reference(*args, **kw, **extra)
        assert seen["shard_size"] == 7 and "chunk" not in seen
    with pytest.warns(DeprecationWarning, match=r"chunk=\.\.\.\) is deprecated: use shard_size="):
        with pytest.raises(RuntimeError):
            reference.ising2d_long_run_reference(*args, **kw, chunk=7)


def test_fisher_sizes():
    from geom import fisher as Fi
    from test_fisher import gauss_grid

    grid = gauss_grid(6, sigma=0.7)
    pool = torch.randn(grid.size, 8, 3, generator=torch.Generator().manual_seed(1))
    kw = dict(steps=3, width=8, seed=0, progress=False)
    net, _ = _old_equals_new(Fi.train_posterior, (pool, grid, 2), dict(batch=5, **kw), dict(batch_size=5, **kw))
    x = pool[:, :2].reshape(-1, 2, 3)[:7]
    P = _old_equals_new(Fi.predict_posterior, (net, x), dict(batch=3), dict(batch_size=3))
    fit = _old_equals_new(lambda *a, **k: Fi.fit_log_partition(*a, **k).anchors, (P, grid, 2),
                          dict(batch=4, steps=3, seed=0, progress=False),
                          dict(batch_size=4, steps=3, seed=0, progress=False))
    assert fit.shape == (7, 2)
    kw = dict(posterior_steps=3, fit_steps=3, bundles_per_point=2, width=8, seed=0, progress=False)
    _old_equals_new(lambda *a, **k: Fi.reconstruct(*a, **k).g, (pool, grid, 2),
                    dict(batch=5, fit_batch=6, **kw), dict(batch_size=5, fit_batch_size=6, **kw))


def test_engine_and_analysis_sizes(tmp_path):
    import sys

    from geom import phases, shapes, slices

    jacobian = sys.modules["geom.jacobian"]  # the module (geom.jacobian is also the function's name)

    assert _old_equals_new(jacobian.chunk_for_budget, (10,), dict(batch=5, bytes_per_pass=8, budget=3 * 5 * 8),
                           dict(batch_size=5, bytes_per_pass=8, budget=3 * 5 * 8)) == 2
    g = torch.Generator().manual_seed(0)
    a, ref = torch.rand(7, 3, 2, 2, generator=g).numpy(), torch.rand(5, 3, 2, 2, generator=g).numpy()
    _old_equals_new(shapes.nearest_neighbour, (a, ref), dict(batch=3), dict(batch_size=3))

    class Pipe:  # what image_features needs of a pipeline: vae_encode, device, dtype
        device, dtype = torch.device("cpu"), torch.float32
        vae_encode = staticmethod(lambda x: x[:, :2] * 2 - x[:, 1:])

    x = torch.rand(5, 3, 4, 4, generator=g)
    _old_equals_new(phases.image_features, (x, Pipe()), dict(batch=2, side=2), dict(batch_size=2, side=2))
    G = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5)).eval()
    z = torch.randn(5, 3, generator=g)
    kw = dict(k=4, radius=0.05, dim=2, seed=1, progress=False)
    _old_equals_new(slices.cached_describe, (G, z, tmp_path / "a"), dict(chunk=2, **kw), dict(shard_size=2, **kw))
    assert len(list((tmp_path / "a").iterdir())) == 1  # both spellings: one cache key


# ------------------------------------------------------------------------------------ no odd size name is left
ODD_SIZE_NAMES = {"batch", "chunk", "bs", "fit_batch", "sample_batch", "n_batch", "batchsize", "chunksize"}
# dataclass fields outside this branch's files, renamed where their file is edited (listed, with the reason)
EXEMPT: dict[str, str] = {}


def odd_size_names(name: str, source: str) -> list[str]:
    """Public functions' parameters and dataclass fields of module ``name`` spelt with an odd size name."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs:
                if arg.arg in ODD_SIZE_NAMES or arg.arg.endswith(("_batch", "_chunk")):
                    out.append(f"geom.{name}.{node.name}({arg.arg}=)")
        elif isinstance(node, ast.ClassDef):
            for b in node.body:
                if isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name):
                    f = b.target.id
                    if (f in ODD_SIZE_NAMES or f.endswith(("_batch", "_chunk"))) and \
                            f"{name}.{node.name}.{f}" not in EXEMPT:
                        out.append(f"geom.{name}.{node.name}.{f}")
    return out


def test_public_size_parameters_use_the_three_names():
    from test_architecture import modules, source_path

    wrong = [w for m in modules() for w in odd_size_names(m, source_path(m).read_text())]
    assert not wrong, ("size parameters are batch_size / chunk_size / shard_size (CONTRIBUTING.md, Names): "
                       + ", ".join(wrong))


def test_the_size_name_checker_finds_odd_names():
    assert odd_size_names("x", "def f(a, batch=2):\n    pass\n") == ["geom.x.f(batch=)"]
    assert odd_size_names("x", "def f(*, fit_batch=2, chunk=3):\n    pass\n") == ["geom.x.f(fit_batch=)",
                                                                               "geom.x.f(chunk=)"]
    assert odd_size_names("x", "def _f(batch=2):\n    pass\n") == []  # private helpers are not the API
    assert odd_size_names("x", "class C:\n    vae_batch: int = 2\n") == ["geom.x.C.vae_batch"]
    assert odd_size_names("x", "def f(batch_size=1, chunk_size=None, shard_size=64):\n    pass\n") == []


def test_the_glossary_names_the_three_sizes():
    text = (paths.ROOT / "CONTRIBUTING.md").read_text()
    for name in ("`batch_size`", "`chunk_size`", "`shard_size`"):
        assert name in text
    assert geom.deprecation.renamed_kwargs is deprecation.renamed_kwargs


def test_the_former_generator_alias_of_geom_jacobian_warns():
    """issue 25: ``geom.jacobian.Generator`` (a ``Callable`` alias) shared its name with the generator type
    ``geom.models.Generator``; it is gone from the annotations and still importable, with a warning."""
    import sys
    from typing import Callable

    from torch import Tensor

    jac = sys.modules["geom.jacobian"]
    assert "Generator" not in vars(jac)
    with pytest.warns(DeprecationWarning, match="geom.jacobian.Generator .* is deprecated: annotate with"):
        from geom.jacobian import Generator
    assert Generator == Callable[[Tensor], Tensor] and Generator is not geom.models.Generator
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        jac.nothing
