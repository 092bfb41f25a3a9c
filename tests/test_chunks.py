"""geom.chunks: parts are written whole (atomically), reads change nothing, missing parts are named."""
from __future__ import annotations

import pandas as pd
import pytest

from geom import chunks


def test_write_read_and_pending(tmp_path):
    folder = tmp_path / "store"
    assert chunks.pending_parts(folder, 3) == [0, 1, 2] and not folder.exists()  # a read creates nothing
    frames = [pd.DataFrame({"i": [2 * j, 2 * j + 1], "x": [0.5 * j, 1.5]}) for j in range(3)]
    for j in (0, 2):
        assert chunks.write_part(folder, j, frames[j]) == chunks.part_path(folder, j)
    assert chunks.pending_parts(folder, 3) == [1]
    with pytest.raises(RuntimeError, match=r"cache .* incomplete: 1 of 3 parts missing \(\['part-000001.parquet'\]"):
        chunks.read_parts(folder, 3, what="cache")
    chunks.write_part(folder, 1, frames[1])
    for got, want in zip(chunks.read_parts(folder, 3), frames):
        pd.testing.assert_frame_equal(got, want)
    assert sorted(p.name for p in folder.iterdir()) == [f"part-00000{j}.parquet" for j in range(3)]  # no temp files
    with pytest.raises(ValueError, match=">= 0"):
        chunks.part_path(folder, -1)


def test_a_failed_write_leaves_no_part(tmp_path):
    class Boom(pd.DataFrame):
        def to_parquet(self, *a, **k):
            raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        chunks.write_part(tmp_path, 0, Boom({"x": [1]}))
    assert chunks.pending_parts(tmp_path, 1) == [0] and list(tmp_path.iterdir()) == []


def test_sync_runs_on_the_temporary_file_before_the_rename(tmp_path):
    seen = []
    chunks.write_part(tmp_path, 4, pd.DataFrame({"x": [1]}), sync=lambda p: seen.append((p.name, p.exists())))
    assert len(seen) == 1 and seen[0][1] and seen[0][0] != "part-000004.parquet"
    assert chunks.part_path(tmp_path, 4).exists()
