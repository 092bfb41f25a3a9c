"""benchmarks/pipeline.py, the hand-written psi + nu + delta pipeline that benchmarks/run.py times geom.describe
against (issue 26): its outputs must be describe's, or the speed ratio compares different computations."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import geom
from conftest import mlp, tol
from geom import paths


def load_pipeline():
    spec = importlib.util.spec_from_file_location("bench_pipeline", paths.ROOT / "benchmarks" / "pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def small_dcgan(dtype):
    g = torch.Generator().manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Unflatten(1, (6, 1, 1)),
        torch.nn.ConvTranspose2d(6, 8, 4, 1, 0, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(8, 3, 4, 2, 1, bias=False), torch.nn.Tanh()).to(dtype)
    with torch.no_grad():
        bn = net[2]
        bn.running_mean.copy_(torch.randn(8, generator=g, dtype=torch.float64) * 0.1)
        bn.running_var.copy_(torch.rand(8, generator=g, dtype=torch.float64) + 0.5)
    return net.eval()


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_hand_pipeline_equals_describe(dtype, model):
    """psi and nu at the dtype's tolerance (two code paths for the same Jacobian), delta exactly (both count in
    float64 on the same vertices); the radius is large enough that delta is not zero (the check could fail)."""
    pipe = load_pipeline()
    G = mlp([6, 32, 32, 48], seed=2, act=torch.nn.ReLU, dtype=dtype) if model == "mlp" else small_dcgan(dtype)
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dtype)
    ref = geom.describe(G, z, k=5, radius=0.3, dim=3, seed=1, progress=False)
    out = pipe.hand_pipeline(G, z, k=5, radius=0.3, dim=3, seed=1)
    assert (ref["n_dropped_sv"] == 0).all()  # psi over all singular values, as the pipeline sums them
    np.testing.assert_allclose(out["psi"], ref["psi"], rtol=tol(dtype)["rtol"], atol=tol(dtype)["rtol"])
    np.testing.assert_allclose(out["nu"], ref["nu"], **tol(dtype))
    np.testing.assert_array_equal(out["delta"], ref["delta"].to_numpy())
    assert ref["delta"].sum() > 0
