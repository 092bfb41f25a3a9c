"""The one resumable chunk store of the package: a folder of numbered Parquet parts ``part-NNNNNN.parquet``,
each written atomically (``paths.atomic_write``: a temporary name in the same folder, then ``os.replace``), so
an interrupted run leaves only whole parts and resumes by computing the missing ones. Used by ``geom.sweep``
(shards) and ``geom.slices.cached_describe`` (descriptor chunks); each keeps its own manifest of what the parts
were computed from (settings and content hashes) beside them.

Reads (``part_path``, ``pending_parts``, ``read_parts``) create, write and delete nothing; ``write_part``
creates the folder it writes into.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from .paths import atomic_write

PART = "part-{:06d}.parquet"


def part_path(folder: str | Path, i: int) -> Path:
    """Path of part ``i`` (``int >= 0``) in ``folder``."""
    if int(i) < 0:
        raise ValueError(f"part number must be >= 0, got {i}")
    return Path(folder) / PART.format(int(i))


def pending_parts(folder: str | Path, n: int) -> list[int]:
    """The part numbers in ``range(n)`` that are not written yet (a read: nothing is created)."""
    return [i for i in range(int(n)) if not part_path(folder, i).exists()]


def write_part(folder: str | Path, i: int, df: pd.DataFrame, sync: Callable[[Path], None] | None = None) -> Path:
    """Write ``df`` as part ``i`` atomically (``sync(tmp)``, e.g. an fsync, runs on the temporary file before it
    is renamed); returns the path."""
    Path(folder).mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        df.to_parquet(tmp, index=False)
        if sync is not None:
            sync(tmp)

    return atomic_write(part_path(folder, i), write)


def read_parts(folder: str | Path, n: int, what: str = "store") -> list[pd.DataFrame]:
    """Parts ``0 .. n - 1`` of ``folder`` as DataFrames; ``RuntimeError`` naming the missing ones (``what``
    names the store in the message)."""
    missing = [part_path(folder, i).name for i in pending_parts(folder, n)]
    if missing:
        raise RuntimeError(f"{what} {folder} is incomplete: {len(missing)} of {n} parts missing ({missing[:3]}...)")
    return [pd.read_parquet(part_path(folder, i)) for i in range(int(n))]
