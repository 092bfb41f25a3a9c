"""Where a notebook publishes: ``Outputs`` (figures, results JSON, Parquet tables with their schema) and the
layout check of every saved figure (``FigureLayoutError``). Notebooks import it as ``from geom.run import
Outputs`` (re-exported there)."""
from __future__ import annotations

import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import paths


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.bool_):
        return bool(x)
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:  # torch scalars
        return _jsonable(x.item())
    if isinstance(x, Path):
        return str(x)
    return x


class Outputs:
    """Where a notebook publishes: ``OUT_DIR/figures/<name>/*.png``, ``OUT_DIR/data/results/<name>.json``
    (numbers, parameters, table schemas) and ``OUT_DIR/data/results/<name>/<table>.parquet``.

    ``OUT_DIR`` is resolved against the repository root ("." = the repository itself, where full-size runs
    publish; smoke runs use ``build/smoke``)."""

    def __init__(self, name: str, out_dir: str | Path = ".", params: dict | None = None):
        self.name = name
        self.root = paths.resolve(out_dir)
        self.fig_dir = self.root / "figures" / name
        self.results_dir = self.root / "data" / "results"
        self.results: dict[str, Any] = {}
        self.params = dict(params or {})
        self.tables: dict[str, dict] = {}
        self.layout_problems: list[str] = []
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)

    @property
    def json_path(self) -> Path:
        return self.results_dir / f"{self.name}.json"

    def savefig(self, fig, stem: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``figures/<name>/<stem>.png``, then check its layout
        (``geom.plots.layout_problems``: overlapping labels, a suptitle over a panel, a legend over data). A
        problem is printed at once and makes ``write`` raise ``FigureLayoutError`` after the results are
        written, so a long run keeps its numbers and a smoke run (CI) fails."""
        from .plots import layout_problems

        p = self.fig_dir / f"{stem}.png"
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        for problem in layout_problems(fig):
            self.layout_problems.append(f"{p.name}: {problem}")
            print(f"figure layout problem in {p.name}: {problem}", flush=True)
        return p

    def table(self, df, stem: str) -> Path:
        """Write a pandas DataFrame as Parquet; its schema (column -> dtype) is recorded in the JSON."""
        d = self.results_dir / self.name
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{stem}.parquet"
        paths.atomic_write(p, lambda tmp: df.to_parquet(tmp, index=False))
        self.tables[stem] = {"path": str(p.relative_to(self.root)), "rows": int(len(df)),
                             "schema": {c: str(t) for c, t in df.dtypes.items()}}
        return p

    def write(self) -> Path:
        """Write ``data/results/<name>.json`` (atomically) and return its path."""
        doc = {"notebook": self.name, "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "platform": platform.platform(), "parameters": self.params, "results": self.results,
               "tables": self.tables}
        text = json.dumps(_jsonable(doc), indent=2, sort_keys=False) + "\n"
        path = paths.atomic_write(self.json_path, lambda tmp: tmp.write_text(text))
        if self.layout_problems:
            raise FigureLayoutError(f"{len(self.layout_problems)} figure layout problem(s) in {self.name} "
                                    f"(results were written to {path}); fix the plotting code:\n  "
                                    + "\n  ".join(self.layout_problems))
        return path


class FigureLayoutError(RuntimeError):
    """A figure saved through ``Outputs.savefig`` does not read cleanly at its rendered size."""
