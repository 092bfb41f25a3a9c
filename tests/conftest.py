"""Shared test helpers: named, dtype-dependent tolerances and small reference models."""
from __future__ import annotations

import pytest
import torch

# Named tolerances per dtype. EXACT: a routine vs an independent exact computation of the same quantity
# (e.g. two AD modes, SVD vs closed form); FD: autograd vs central finite differences (truncation + rounding
# error of the difference quotient, step chosen per dtype in `fd_step`).
TOLERANCES = {
    torch.float64: {"exact": dict(rtol=1e-10, atol=1e-12), "fd": dict(rtol=1e-6, atol=1e-8)},
    torch.float32: {"exact": dict(rtol=1e-4, atol=1e-6), "fd": dict(rtol=2e-2, atol=2e-3)},
}
FD_STEP = {torch.float64: 1e-6, torch.float32: 1e-3}


def tol(dtype: torch.dtype, kind: str = "exact") -> dict:
    """``dict(rtol=..., atol=...)`` for ``torch.testing.assert_close`` at this dtype."""
    return TOLERANCES[dtype][kind]


def tol_scaled(dtype: torch.dtype, ref: torch.Tensor, kind: str = "exact") -> dict:
    """``tol(dtype, kind)`` for an output ``ref`` of a deep network or of a multi-step sampler compared with
    another code path (other batch shapes, another library's loop): rounding errors pile up over the layers and
    steps in proportion to the magnitude of the whole output, not of each element, so an element near 0 carries
    the error of the large ones. ``atol = max(atol, rtol * max|ref|)``; a wrong row, step or formula still
    moves the output by far more (a fraction of ``max|ref|``)."""
    t = tol(dtype, kind)
    return dict(rtol=t["rtol"], atol=max(t["atol"], t["rtol"] * float(ref.detach().abs().max())))


def fd_step(dtype: torch.dtype) -> float:
    return FD_STEP[dtype]


DTYPES = [torch.float32, torch.float64]


def pytest_collection_modifyitems(items):
    """Every test parametrised over ``dtype`` compares at a dtype tolerance: mark it ``kernels`` (like an explicit
    ``@pytest.mark.kernels``), so that ``.ci/run`` re-runs it under ``ATEN_CPU_CAPABILITY=default``, where the
    last digits of float32 results differ from those of the machine's default (AVX2 / AVX-512) kernels."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if isinstance(params.get("dtype"), torch.dtype):
            item.add_marker(pytest.mark.kernels)


@pytest.fixture(scope="module")
def one_thread():
    """Small matrices: a single thread is faster, and fair to a shared 2-core machine. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def mlp(sizes, seed=0, act=torch.nn.ReLU, dtype=torch.float64, bias_scale=0.5):
    """A seeded MLP with ``act`` after every hidden layer (none after the output layer)."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=dtype) / a ** 0.5)
            lin.bias.copy_(torch.randn(b, generator=g, dtype=dtype) * bias_scale)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers).eval()
