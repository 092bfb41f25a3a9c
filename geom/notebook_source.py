"""A notebook's source, read without running it: the paired notebooks (``notebook_names``), the ``.py`` of one
(``resolve_notebook``) and the assignments of its ``parameters`` cell (``notebook_parameters``). Used by the runner
(``geom.run``, which re-exports them) and by ``geom.outputs.Outputs`` (which records the parameters cell), so
neither imports the other for them."""
from __future__ import annotations

import ast
from pathlib import Path

from . import paths


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


def notebook_parameters(name: str) -> dict[str, str]:
    """Names and default source text of the assignments in a notebook's ``parameters`` cell (in order).

    Parsed with Python's ``ast``: papermill's own ``inspect_notebook`` reads the cell line by line with a
    regular expression and skips any line whose comment holds ``=`` (``STEPS = 20000  # (late checkpoint =
    last step)``), which is why it warned "Passed unknown parameter" for parameters it then applied.
    Raises ``ValueError`` when the notebook has no ``parameters`` cell or the cell is not valid Python."""
    import jupytext

    src = resolve_notebook(name)
    cells = [c for c in jupytext.read(src).cells if "parameters" in (c.metadata.get("tags") or [])]
    if not cells:
        raise ValueError(f"notebook {src.name} has no cell tagged 'parameters'")
    code = cells[0].source
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise ValueError(f"the parameters cell of {src.name} is not valid Python: {e}") from None
    out: dict[str, str] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for t in targets:
            for n in ([t] if isinstance(t, ast.Name) else getattr(t, "elts", [])):
                if isinstance(n, ast.Name) and node.value is not None:
                    out[n.id] = ast.get_source_segment(code, node.value) or ""
    return out
