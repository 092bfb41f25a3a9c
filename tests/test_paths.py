"""geom.paths.atomic_write: the target appears whole or not at all."""
from __future__ import annotations

import numpy as np
import pytest

from geom import paths


def test_atomic_write_replaces_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "latents.npy"
    target.write_bytes(b"old")
    a = np.arange(6.0).reshape(2, 3)
    assert paths.atomic_write(target, lambda tmp: np.save(tmp, a)) == target  # np.save adds .npy unless present
    np.testing.assert_array_equal(np.load(target), a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents.npy"]


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.json"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        paths.atomic_write(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]
