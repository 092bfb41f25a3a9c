"""geom.chunks: parts are written whole (atomically) with their SHA-256, reads change nothing, missing and damaged
parts are named with the fix, and a folder's lock keeps a second writer out until its holder exits."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from geom import chunks, paths


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
    names = [f"_part-00000{j}.sha256" for j in range(3)] + [f"part-00000{j}.parquet" for j in range(3)]
    assert sorted(p.name for p in folder.iterdir()) == names  # no temp files
    with pytest.raises(ValueError, match=">= 0"):
        chunks.part_path(folder, -1)


def test_a_failed_write_leaves_no_part(tmp_path):
    class Boom(pd.DataFrame):
        def to_parquet(self, *a, **k):
            raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        chunks.write_part(tmp_path, 0, Boom({"x": [1]}))
    assert chunks.pending_parts(tmp_path, 1) == [0] and list(tmp_path.iterdir()) == []


def test_sync_runs_on_the_temporary_files_before_the_rename(tmp_path):
    """The part's and then its checksum's temporary file are synced, each before anything is renamed into place."""
    seen = []

    def sync(p):
        placed = (chunks.part_path(tmp_path, 4).exists(), chunks.checksum_path(tmp_path, 4).exists())
        seen.append((p.name, p.exists(), *placed))

    chunks.write_part(tmp_path, 4, pd.DataFrame({"x": [1]}), sync=sync)
    assert [s[1:] for s in seen] == [(True, False, False), (True, False, False)]
    assert seen[0][0].endswith("-part-000004.parquet") and seen[1][0].endswith("-_part-000004.sha256")
    assert all(s[0].startswith(".tmp-") for s in seen)
    assert chunks.part_path(tmp_path, 4).exists()


# ----------------------------------------------------------------------------------------- damage from outside
def _frames(n: int = 3) -> list[pd.DataFrame]:
    rng = np.random.default_rng(0)
    return [pd.DataFrame({"i": np.arange(4 * j, 4 * j + 4), "x": rng.normal(size=4)}) for j in range(n)]


def _tree(folder) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def _damage(path, how: str, value: float | None = None) -> None:
    """Cut ``path`` to half its size or to 0 bytes, or flip one bit of the stored float ``value`` in the middle."""
    data = path.read_bytes()
    if how == "half":
        path.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raw = struct.pack("<d", value)
        assert data.count(raw) == 1, "the value must be stored once, as plain bytes"
        k = data.index(raw) + 3
        path.write_bytes(data[:k] + bytes([data[k] ^ 0x10]) + data[k + 1:])


@pytest.mark.parametrize("how", ["half", "empty", "value"])
def test_a_damaged_part_is_named_with_the_fix(tmp_path, how):
    """A part cut short or overwritten in the middle: every read raises DamagedPartError naming the file, what
    is wrong and the fix; deleting the file makes it the only pending part. Control: a flipped bit in the middle
    reads back silently as another number through pandas, so only the recorded SHA-256 finds it."""
    frames = _frames()
    for j, f in enumerate(frames):
        chunks.write_part(tmp_path, j, f)
    bad = chunks.part_path(tmp_path, 1)
    value = float(np.sort(frames[1]["x"])[1])  # neither min nor max: not in the column statistics
    _damage(bad, how, value)
    if how == "value":
        silent = pd.read_parquet(bad)["x"]
        assert value not in silent.to_list() and len(silent) == 4  # the control: no error without the checksum
    before = _tree(tmp_path)
    for read in (lambda: chunks.read_parts(tmp_path, 3, what="cache"), lambda: chunks.read_part(tmp_path, 1, "cache"),
                 lambda: chunks.check_parts(tmp_path, what="cache")):
        with pytest.raises(chunks.DamagedPartError) as e:
            read()
        msg = str(e.value)
        assert f"cache part {bad} is damaged: checksum mismatch" in msg and "_part-000001.sha256" in msg
        assert "delete that file and run the same command again" in msg and "recomputes only that part" in msg
        assert e.value.paths == [bad] and isinstance(e.value, ValueError)
    assert _tree(tmp_path) == before  # reads change nothing
    pd.testing.assert_frame_equal(chunks.read_part(tmp_path, 2), frames[2])
    bad.unlink()  # the fix
    assert chunks.pending_parts(tmp_path, 3) == [1]
    chunks.write_part(tmp_path, 1, frames[1])
    for got, want in zip(chunks.read_parts(tmp_path, 3), frames):
        pd.testing.assert_frame_equal(got, want)


def test_parts_without_checksums_still_read_and_must_parse(tmp_path):
    """An older store (parts without SHA-256 files) reads as before; a part of it cut short is named as
    unreadable; a damaged checksum file is named too (it is rewritten with the part)."""
    frames = _frames()
    for j, f in enumerate(frames):
        chunks.write_part(tmp_path, j, f)
    for j in range(3):
        chunks.checksum_path(tmp_path, j).unlink()
    for got, want in zip(chunks.read_parts(tmp_path, 3), frames):
        pd.testing.assert_frame_equal(got, want)
    assert chunks.check_parts(tmp_path) == 3
    _damage(chunks.part_path(tmp_path, 2), "half")
    with pytest.raises(chunks.DamagedPartError, match=r"part-000002.parquet is damaged: it cannot be read as "
                                                      r"Parquet \(ArrowInvalid: .*delete that file"):
        chunks.read_parts(tmp_path, 3)
    chunks.write_part(tmp_path, 0, frames[0])
    chunks.checksum_path(tmp_path, 0).write_text("")  # a copy cut short before the checksum's bytes
    with pytest.raises(chunks.DamagedPartError, match=r"part-000000.parquet is damaged: its checksum file "
                                                      r"_part-000000.sha256 is damaged"):
        chunks.read_part(tmp_path, 0)


def test_check_parts_names_every_damaged_part(tmp_path):
    frames = _frames(4)
    for j, f in enumerate(frames):
        chunks.write_part(tmp_path, j, f)
    (tmp_path / "part-notes.parquet").write_text("not a part")  # not a part name: ignored
    assert chunks.check_parts(tmp_path) == 4
    _damage(chunks.part_path(tmp_path, 1), "empty")
    _damage(chunks.part_path(tmp_path, 3), "half")
    with pytest.raises(chunks.DamagedPartError, match=r"store .*: 2 parts are damaged \(part-000001.parquet: checksum "
                                                      r"mismatch.*; part-000003.parquet: checksum mismatch.*delete "
                                                      r"those files and run the same command again") as e:
        chunks.check_parts(tmp_path)
    assert e.value.paths == [chunks.part_path(tmp_path, 1), chunks.part_path(tmp_path, 3)]


# ----------------------------------------------------------------------------------------------- the folder lock
def test_a_held_lock_refuses_a_second_holder_until_released(tmp_path):
    """flock locks belong to an open file description: a second open of the lock, even in this process, is
    refused (a POSIX fcntl/lockf lock would let this process take it twice) naming the folder and the pid."""
    folder = tmp_path / "run"
    with chunks.lock_folder(folder, what="sweep folder") as lock:
        assert lock == folder / ".lock" and lock.read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(chunks.FolderLockedError, match=rf"sweep folder {folder} is in use by another run \(pid "
                                                           rf"{os.getpid()} on .*wait for that run to finish"):
            with chunks.lock_folder(folder, what="sweep folder"):
                pass
    with chunks.lock_folder(folder):  # released at the end of the block
        pass


HOLD = """
import sys, time
from geom import chunks
with chunks.lock_folder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(300)
"""


def test_the_lock_dies_with_its_process(tmp_path):
    """A process holding the lock and killed with SIGKILL leaves no lock behind: its folder is free at once."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=paths.ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(chunks.FolderLockedError, match=rf"\(pid {holder.pid} on "):
            with chunks.lock_folder(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with chunks.lock_folder(tmp_path):
        assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()} ")
