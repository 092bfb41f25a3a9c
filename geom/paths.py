"""Repository paths. Everything that writes results resolves relative paths against ROOT, so notebooks,
tests and the runner agree whatever the current working directory is."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Callable

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


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks): the content hash behind checkpoint checks and
    resumable caches."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a uniquely named temporary file in the same folder
    (its name ends with ``path``'s name, so suffix-sensitive writers such as ``np.save`` keep it), which then
    replaces ``path`` in one ``os.replace``. A reader or a resumed run never sees a half-written file; the
    temporary file is removed if ``write`` fails. Returns ``path``."""
    path = Path(path)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
