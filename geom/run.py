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
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .notebook_source import notebook_names, notebook_parameters, resolve_notebook  # noqa: F401  (their former home)
from .outputs import FigureLayoutError, Outputs

__all__ = ["Outputs", "FigureLayoutError", "run_notebook", "main", "parse_value", "label_smoke", "SMOKE_TAG"]

SMOKE_FILE = paths.NOTEBOOKS / "smoke.yml"
KERNEL = "python3"


# ----------------------------------------------------------------------------------------------- runner
def smoke_parameters(stem: str) -> dict:
    table = yaml.safe_load(SMOKE_FILE.read_text()) if SMOKE_FILE.exists() else {}
    return dict((table or {}).get(stem) or {})


def check_parameters(name: str, parameters: dict, origin: str = "-p") -> None:
    """Raise ``ValueError`` naming every key of ``parameters`` that the notebook's parameters cell does not
    assign (a typo would otherwise be injected as a new, unused variable), with the notebook's parameters."""
    known = notebook_parameters(name)
    unknown = [k for k in parameters if k not in known]
    if unknown:
        raise ValueError(f"{origin}: notebook {Path(name).stem} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(known)}")


# ------------------------------------------------------------------------------------------ parameter values
VALUE_RULES = """\
parameter values (-p NAME VALUE), papermill's rules extended to None, any-case booleans and lists:
  None, null                 -> None
  true, false (any case)     -> True, False
  16, -3                     -> int               (what int() accepts)
  1e-5, 0.5, inf, nan        -> float             (what float() accepts)
  [0, 1e-3], ['a', b, null]  -> list; unquoted items follow these same rules, quoted items stay text
  anything else              -> the text itself ('3:4', '2024-01-02', 'no', 'a red circle: on stripes')
-y NAME YAML  takes VALUE as YAML (yaml.safe_load: YAML 1.1, so 3:4 -> 184, no -> False, dates -> date);
-r NAME TEXT  passes TEXT as it is (a raw string). Later options override earlier ones of the same NAME;
every NAME must be a parameter of every notebook run (a typo is an error, not a new variable)."""


def _scalar(text: str) -> Any:
    if text in ("None", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


class _ListLoader(yaml.SafeLoader):
    """YAML flow sequences whose plain (unquoted) scalars go through ``_scalar`` and quoted ones stay text:
    no YAML 1.1 implicit types (base-60 integers, dates, yes/no booleans)."""

    yaml_implicit_resolvers: dict = {}


_ListLoader.add_constructor(
    "tag:yaml.org,2002:str",
    lambda loader, node: _scalar(node.value) if node.style is None else loader.construct_scalar(node))


def _holds_mapping(v: Any) -> bool:
    return isinstance(v, dict) or (isinstance(v, list) and any(_holds_mapping(x) for x in v))


def parse_value(text: str) -> Any:
    """A ``-p`` value -> the Python value a user means (rules: ``VALUE_RULES``). Raises ``ValueError`` for
    text in brackets that is not a list (say ``-r NAME TEXT`` for a raw string)."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            v = yaml.load(s, Loader=_ListLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as e:
            raise ValueError(f"{text!r} is not a list ({type(e).__name__}); quote text items, or pass a raw "
                             f"string with -r NAME TEXT") from None
        if not isinstance(v, list) or _holds_mapping(v):
            raise ValueError(f"{text!r} is not a list of values (nested lists allowed); pass YAML with "
                             f"-y NAME YAML or a raw string with -r NAME TEXT")
        return v
    return _scalar(text)


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{text!r} is not YAML: {e}") from None


PARSERS = {"-p": parse_value, "-y": _yaml_value, "-r": str}


# ----------------------------------------------------------------------------------------------- runner
def _shown(p: Path) -> str:
    try:
        return str(p.relative_to(paths.ROOT))
    except ValueError:
        return str(p)


class _DropUnknownParameterWarning(logging.Filter):
    """papermill's "Passed unknown parameter" and "Unable to parse line" come from its line-regex inspection,
    which misses parameters whose comment holds ``=``; names are checked before the run by
    ``check_parameters`` (which reads the cell with ``ast``) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Passed unknown parameter", "Unable to parse line"))


SMOKE_TAG = "smoke-label"


def label_smoke(nb, name: str, params: dict) -> None:
    """Insert the smoke-size labels into an executed notebook (in place): a banner at the top and one right
    after papermill's injected-parameters cell, each a markdown cell tagged ``SMOKE_TAG`` (not part of the
    paired ``.py``). A reader of the committed ``.ipynb`` (whose outputs are at the CI sizes of
    ``notebooks/smoke.yml`` so that nbval can re-run it) is told that its printed numbers are not results and
    where the full-size ones are."""
    import nbformat

    nb.cells = [c for c in nb.cells if SMOKE_TAG not in c.metadata.get("tags", [])]
    sizes = ", ".join(f"`{k} = {v!r}`" for k, v in params.items() if k != "OUT_DIR") or "none"
    where = (f"The full-size results are the verdict tables written in this notebook's text, "
             f"[`data/results/{name}.json`](../data/results/{name}.json) and [`figures/{name}/`](../figures/{name}/)")
    top = (f"> **Smoke-size outputs.** The outputs in this file come from a run at the CI sizes of "
           f"`notebooks/smoke.yml` ({sizes}), so that the nbval tests can re-run it in minutes. Its printed "
           f"numbers, tables and figures show that the code runs; **they are not results**. {where}. "
           f"Run `.venv/bin/python -m geom.run {name}` for the full size.")
    below = ("> **Smoke size from here on:** every output below comes from the smoke-size run (sizes above), "
             "not from the full-size run that the verdict tables report.")
    banner = [nbformat.v4.new_markdown_cell(t, metadata={"tags": [SMOKE_TAG]}) for t in (top, below)]
    nb.cells.insert(0, banner[0])
    at = next((i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", [])), 0)
    nb.cells.insert(at + 1, banner[1])


def run_notebook(name: str, parameters: dict | None = None, smoke: bool = False, inplace: bool = False,
                 output_dir: str | Path = "build/notebooks", timeout: int | None = None,
                 check_only: bool = False) -> Path:
    """Execute one notebook with papermill; returns the executed ``.ipynb`` path.

    ``parameters`` (name -> Python value) override the notebook's defaults (and, with ``smoke``, the sizes of
    ``notebooks/smoke.yml``); a name the notebook's parameters cell does not assign raises ``ValueError``
    before anything runs. ``output_dir`` (relative: to the repository root) receives ``<notebook>.ipynb``;
    ``inplace`` writes next to the ``.py`` instead. The kernel talks over IPC sockets in a private
    temporary folder (not TCP on localhost, which ipykernel warns about). ``check_only``: resolve the
    notebook and check the parameters, run nothing (returns the path it would write)."""
    import jupytext
    import papermill as pm
    from jupyter_client.manager import KernelManager

    src = resolve_notebook(name)
    params = smoke_parameters(src.stem) if smoke else {}
    if smoke:
        check_parameters(src.stem, params, origin=f"{SMOKE_FILE.name}")
    check_parameters(src.stem, parameters or {})
    params.update(parameters or {})
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": KERNEL}
    out = src.with_suffix(".ipynb") if inplace else paths.resolve(output_dir) / f"{src.stem}.ipynb"
    if check_only:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pm_logs = [logging.getLogger(n) for n in ("papermill", "papermill.translators")]
    quiet = _DropUnknownParameterWarning()
    for log in pm_logs:
        log.addFilter(quiet)
    # progress bars in a saved notebook: one line per 30 s of a long loop instead of one per 0.1 s
    tqdm_before = os.environ.get("TQDM_MININTERVAL")
    os.environ.setdefault("TQDM_MININTERVAL", "30")
    try:
        with tempfile.TemporaryDirectory(prefix="geom-run-") as tmp:
            tmp_in = Path(tmp) / f"{src.stem}.input.ipynb"
            jupytext.write(nb, tmp_in, fmt="ipynb")
            km = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(Path(tmp) / "kernel"))
            try:
                pm.execute_notebook(str(tmp_in), str(out), parameters=params, kernel_name=KERNEL,
                                    cwd=str(paths.NOTEBOOKS), progress_bar=False, log_output=False,
                                    execution_timeout=timeout, km=km)
            finally:  # nbclient leaves a kernel manager it was given running: shut the kernel down here
                if km.has_kernel:
                    km.shutdown_kernel(now=False)
    finally:
        for log in pm_logs:
            log.removeFilter(quiet)
        if tqdm_before is None:
            os.environ.pop("TQDM_MININTERVAL", None)
    if inplace or smoke:
        import nbformat
        done = nbformat.read(out, as_version=4)
        if smoke:
            label_smoke(done, src.stem, params)
        if inplace:  # keep the pairing metadata of the source
            done.metadata["jupytext"] = nb.metadata.get("jupytext", {})
            done.metadata["jupytext"].pop("text_representation", None)
        nbformat.write(done, out)
    print(f"[geom.run] {src.stem}: {time.time() - t0:.1f} s -> {_shown(out)}"
          f"{' (smoke)' if smoke else ''} parameters={params}", flush=True)
    return out


class _Parameter(argparse.Action):
    """``-p``/``-y``/``-r NAME VALUE``: appends ``(option, NAME, VALUE)`` to one list, in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest) or [])
        items.append((self.const, *values))
        setattr(namespace, self.dest, items)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout; appends ``(default: ...)`` to every option that has a default value
    (flags are off and ``-p`` lists empty unless given)."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default not in (None, [], False, argparse.SUPPRESS) and "%(default)" not in h:
            h += " (default: %(default)s)"
        return h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geom.run", description=__doc__.split("\n\n")[0],
                                 epilog=VALUE_RULES, formatter_class=_HelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="notebook names (e.g. 00_quickstart)")
    ap.add_argument("--all", action="store_true", help="run every notebooks/NN_*.py in order")
    ap.add_argument("--smoke", action="store_true", help="inject the CI sizes from notebooks/smoke.yml")
    ap.add_argument("--inplace", action="store_true", help="write the executed notebook next to its .py "
                    "(refreshes the committed, paired .ipynb)")
    for flag, long, meta, text in (("-p", "--parameter", "VALUE", "set a parameter; VALUE typed by the rules below"),
                                   ("-y", "--parameter-yaml", "YAML", "set a parameter to a YAML value"),
                                   ("-r", "--parameter-raw", "TEXT", "set a parameter to the string TEXT")):
        ap.add_argument(flag, long, nargs=2, action=_Parameter, const=flag, dest="parameters", default=[],
                        metavar=("NAME", meta), help=f"{text} (repeatable)")
    ap.add_argument("--output-dir", default="build/notebooks",
                    help="where executed notebooks go (relative: to the repository root)")
    ap.add_argument("--check", action="store_true", help="check notebook and parameter names, run nothing")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default: no limit)")
    a = ap.parse_args(argv)
    names = notebook_names() if a.all else a.notebooks
    if not names:
        ap.error("name at least one notebook, or --all")
    params: dict[str, Any] = {}
    for flag, k, v in a.parameters:
        if not k.isidentifier():
            ap.error(f"{flag} {k} {v}: {k!r} is not a Python name")
        try:
            params[k] = PARSERS[flag](v)
        except ValueError as e:
            ap.error(f"{flag} {k}: {e}")
    for n in names:  # check all first: a typo (notebook or parameter name) fails before any work starts
        resolve_notebook(n)
        try:
            run_notebook(n, params, smoke=a.smoke, inplace=a.inplace, output_dir=a.output_dir, check_only=True)
        except ValueError as e:
            ap.error(str(e))
    if a.check:
        print(f"[geom.run] {len(names)} notebook(s): names and parameters check out; nothing run", flush=True)
        return 0
    t0 = time.time()
    for n in names:
        try:
            run_notebook(n, params, smoke=a.smoke, inplace=a.inplace, output_dir=a.output_dir, timeout=a.timeout)
        except KeyboardInterrupt:
            print(f"[geom.run] {n}: interrupted. Run the same command again to restart it; notebooks with a "
                  f"resumable cache or sweep (04, 05, 13) continue where they stopped.", file=sys.stderr, flush=True)
            return 130
    print(f"[geom.run] {len(names)} notebook(s) in {time.time() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
