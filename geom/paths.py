"""Repository paths. Everything that writes results resolves relative paths against ROOT, so notebooks,
tests and the runner agree whatever the current working directory is."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
RESULTS = DATA / "results"
CHECKPOINTS = DATA / "checkpoints"
FIGURES = ROOT / "figures"
NOTEBOOKS = ROOT / "notebooks"


def resolve(path: str | Path) -> Path:
    """Absolute path: relative paths are taken relative to the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p
