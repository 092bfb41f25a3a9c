"""Notebook conventions: every .py has its paired .ipynb in sync, the same opening, one parameters cell,
and smoke parameters. (The notebooks themselves are executed by `pytest --nbval-lax notebooks/`.)"""
from __future__ import annotations

import ast

import jupytext
import pytest
import yaml

from geom import paths
from geom.run import SMOKE_TAG, notebook_names, parse_value, smoke_parameters

NAMES = notebook_names()


def cells(nb):
    """(cell_type, source) of every cell but papermill's injected-parameters cell and the runner's smoke labels."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells
            if not {"injected-parameters", SMOKE_TAG} & set(c.metadata.get("tags", []))]


def test_there_are_notebooks():
    assert "00_quickstart" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_pair_in_sync(name):
    py = paths.NOTEBOOKS / f"{name}.py"
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `python -m geom.run {name} --smoke --inplace`"
    a, b = cells(jupytext.read(py)), cells(jupytext.read(ipynb))
    assert a == b, (f"{name}.py and {name}.ipynb differ: re-run `python -m geom.run {name} --smoke --inplace` "
                    f"after editing the .py")
    nb = jupytext.read(ipynb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1, "the committed .ipynb must come from a smoke run (one injected-parameters cell)"
    assert all(c.get("execution_count") or c.cell_type != "code" or not c.source.strip() for c in nb.cells), \
        "the committed .ipynb has unexecuted code cells"
    labels = [i for i, c in enumerate(nb.cells) if SMOKE_TAG in c.metadata.get("tags", [])]
    at = nb.cells.index(injected[0])
    assert labels == [0, at + 1], "the committed .ipynb must say at the top and after its parameters that its " \
        "outputs are smoke size (geom.run --smoke adds the labels)"
    assert f"data/results/{name}.json" in nb.cells[0].source


@pytest.mark.parametrize("name", NAMES)
def test_opening_and_parameters_cell(name):
    nb = jupytext.read(paths.NOTEBOOKS / f"{name}.py")
    head = nb.cells[0]
    assert head.cell_type == "markdown"
    for word in ("Reproduces", "Inputs", "Runtime"):
        assert f"**{word}" in head.source, f"{name}: the opening cell must state '{word}'"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{name}: exactly one parameters cell"
    tree = ast.parse(params[0].source)
    names = set()
    for node in tree.body:  # plain values only
        assert isinstance(node, ast.Assign), f"{name}: parameters cell must only assign plain values"
        ast.literal_eval(node.value)
        names.update(t.id for t in node.targets)
    assert {"SEED", "OUT_DIR"} <= names, f"{name}: parameters must include SEED and OUT_DIR"
    smoke = smoke_parameters(name)
    assert smoke.get("OUT_DIR") == "build/smoke", f"{name}: smoke.yml entry must set OUT_DIR: build/smoke"
    unknown = set(smoke) - names
    assert not unknown, f"{name}: smoke.yml sets parameters the notebook does not define: {unknown}"


def test_smoke_file_names_existing_notebooks():
    table = yaml.safe_load((paths.NOTEBOOKS / "smoke.yml").read_text())
    assert set(table) <= set(NAMES)


def test_parse_value():
    assert parse_value("16") == 16 and parse_value("1e-5") == 1e-5 and parse_value("true") is True
    assert parse_value("[0, 1.5]") == [0, 1.5]
    assert parse_value("tiny-ldm") == "tiny-ldm" and parse_value("/path/to/sd") == "/path/to/sd"
