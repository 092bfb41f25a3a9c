"""Run paired notebooks headlessly with papermill, and write their published outputs.

Usage::

    python -m geom.run 00_quickstart                 # full size -> build/notebooks/00_quickstart.ipynb
    python -m geom.run 00_quickstart --smoke         # CI size (parameters from notebooks/smoke.yml)
    python -m geom.run 00_quickstart --smoke --inplace   # refresh the committed notebooks/00_quickstart.ipynb
    python -m geom.run --all --smoke                 # every notebook, in order
    python -m geom.run 04_latent_slices -p MODEL /path/to/stable-diffusion-v1-4 -p N 64

The ``.py`` (jupytext percent format) is the source; it is converted to a notebook, parameterised by papermill
(which inserts an ``injected-parameters`` cell after the ``parameters`` cell) and executed with the
``python3`` kernel. Inside a notebook, ``Outputs`` writes figures to ``OUT_DIR/figures/<notebook>/`` and
published numbers to ``OUT_DIR/data/results/<notebook>.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import paths

SMOKE_FILE = paths.NOTEBOOKS / "smoke.yml"
KERNEL = "python3"


# ----------------------------------------------------------------------------------------------- outputs
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
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)

    @property
    def json_path(self) -> Path:
        return self.results_dir / f"{self.name}.json"

    def savefig(self, fig, stem: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``figures/<name>/<stem>.png``."""
        p = self.fig_dir / f"{stem}.png"
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
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
        return paths.atomic_write(self.json_path, lambda tmp: tmp.write_text(text))


# ----------------------------------------------------------------------------------------------- runner
def notebook_names() -> list[str]:
    """All paired notebooks (``notebooks/NN_*.py``), sorted."""
    return sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def resolve_notebook(name: str) -> Path:
    """``00_quickstart``, ``notebooks/00_quickstart.py`` or ``.ipynb`` -> the ``.py`` source."""
    stem = Path(name).stem
    p = paths.NOTEBOOKS / f"{stem}.py"
    if not p.exists():
        raise FileNotFoundError(f"no notebook '{name}': expected {p}; available: {', '.join(notebook_names())}")
    return p


def smoke_parameters(stem: str) -> dict:
    table = yaml.safe_load(SMOKE_FILE.read_text()) if SMOKE_FILE.exists() else {}
    return dict((table or {}).get(stem) or {})


def parse_value(text: str) -> Any:
    """``-p`` values: YAML scalars/lists (``16``, ``1e-5``, ``true``, ``[0, 1]``), else the string itself."""
    for cast in (int, float):  # YAML 1.1 reads "1e-5" as a string
        try:
            return cast(text)
        except ValueError:
            pass
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if v is None else v


def run_notebook(name: str, parameters: dict | None = None, smoke: bool = False, inplace: bool = False,
                 output_dir: str | Path = "build/notebooks", timeout: int | None = None) -> Path:
    """Execute one notebook with papermill; returns the executed ``.ipynb`` path."""
    import jupytext
    import papermill as pm

    src = resolve_notebook(name)
    params = smoke_parameters(src.stem) if smoke else {}
    params.update(parameters or {})
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": KERNEL}
    out = src.with_suffix(".ipynb") if inplace else paths.resolve(output_dir) / f"{src.stem}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_in = paths.ROOT / "build" / "tmp" / f"{src.stem}.input.ipynb"
    tmp_in.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, tmp_in, fmt="ipynb")
    t0 = time.time()
    pm.execute_notebook(str(tmp_in), str(out), parameters=params, kernel_name=KERNEL, cwd=str(paths.NOTEBOOKS),
                        progress_bar=False, log_output=False, execution_timeout=timeout)
    if inplace:  # keep the pairing metadata of the source
        import nbformat
        done = nbformat.read(out, as_version=4)
        done.metadata["jupytext"] = nb.metadata.get("jupytext", {})
        done.metadata["jupytext"].pop("text_representation", None)
        nbformat.write(done, out)
    print(f"[geom.run] {src.stem}: {time.time() - t0:.1f} s -> {out.relative_to(paths.ROOT)}"
          f"{' (smoke)' if smoke else ''} parameters={params}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geom.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebook names (e.g. 00_quickstart)")
    ap.add_argument("--all", action="store_true", help="run every notebooks/NN_*.py in order")
    ap.add_argument("--smoke", action="store_true", help="inject the CI sizes from notebooks/smoke.yml")
    ap.add_argument("--inplace", action="store_true", help="write the executed notebook next to its .py "
                    "(refreshes the committed, paired .ipynb)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="override a parameter (repeatable)")
    ap.add_argument("--output-dir", default="build/notebooks", help="where executed notebooks go")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    a = ap.parse_args(argv)
    names = notebook_names() if a.all else a.notebooks
    if not names:
        ap.error("name at least one notebook, or --all")
    params = {k: parse_value(v) for k, v in a.parameter}
    for n in names:  # resolve all first: a typo fails before any work starts
        resolve_notebook(n)
    t0 = time.time()
    for n in names:
        run_notebook(n, params, smoke=a.smoke, inplace=a.inplace, output_dir=a.output_dir, timeout=a.timeout)
    print(f"[geom.run] {len(names)} notebook(s) in {time.time() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
