"""geom.run.Outputs writes what notebooks publish; the runner resolves names and fails early on typos."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from geom import run


def test_outputs_write_json_tables_and_figures(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = run.Outputs("99_test", tmp_path, params={"SEED": 1})
    out.results.update(a=np.float32(1.5), b=torch.tensor(2), c=[np.int64(3)], d=float("nan"))
    out.table(pd.DataFrame({"x": [1, 2], "y": [0.5, 0.25]}), "t")
    fig, _ = plt.subplots()
    out.savefig(fig, "f")
    doc = json.loads(out.write().read_text())
    assert doc["results"] == {"a": 1.5, "b": 2, "c": [3], "d": None}
    assert doc["parameters"] == {"SEED": 1}
    assert doc["tables"]["t"]["rows"] == 2 and doc["tables"]["t"]["schema"] == {"x": "int64", "y": "float64"}
    assert (tmp_path / "figures" / "99_test" / "f.png").stat().st_size > 0
    assert pd.read_parquet(tmp_path / "data" / "results" / "99_test" / "t.parquet").shape == (2, 2)


def test_unknown_notebook_fails_before_running():
    with pytest.raises(FileNotFoundError, match="no notebook"):
        run.main(["00_quickstart", "99_does_not_exist"])
