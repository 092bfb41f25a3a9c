"""Figure helpers accept the layouts notebooks produce and reject the wrong ones clearly."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from geom import plots  # noqa: E402


def test_image_grid_layouts():
    chw = torch.rand(5, 3, 8, 8)
    fig = plots.image_grid(chw, ncols=3, titles=list("abcde"))
    assert len(fig.axes) == 6
    img = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(img), chw[0].permute(1, 2, 0).numpy(), rtol=1e-6)
    plots.image_grid(np.random.rand(2, 8, 8), ncols=2)  # grayscale
    with pytest.raises(ValueError, match="images must be"):
        plots.image_grid(np.zeros((2, 2)))


def test_descriptor_maps_orientation_and_errors():
    n = 4
    df = pd.DataFrame({"psi": np.arange(n * n, dtype=float), "nu": np.ones(n * n), "delta": np.zeros(n * n)})
    fig = plots.descriptor_maps(df, n)
    grid = np.asarray(fig.axes[0].images[0].get_array())
    assert grid[0, 1] == 1.0 and grid[1, 0] == n  # row-major, first coordinate fastest
    with pytest.raises(ValueError, match="grid"):
        plots.descriptor_maps(df.iloc[:5], n)
