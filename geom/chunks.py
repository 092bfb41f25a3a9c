"""The one resumable chunk store of the package: a folder of numbered Parquet parts ``part-NNNNNN.parquet``,
each written atomically (``paths.atomic_write``: a temporary name in the same folder, then ``os.replace``), so
an interrupted run leaves only whole parts and resumes by computing the missing ones. Used by ``geom.sweep``
(shards) and ``geom.slices.cached_describe`` (descriptor chunks); each keeps its own manifest of what the parts
were computed from (settings and content hashes) beside them.

Damage from outside (a copy cut short, bytes overwritten) is found by content: before a part is renamed into
place, the SHA-256 of its bytes is written to ``_part-NNNNNN.sha256`` (``sha256sum`` format; the ``_`` keeps it
out of ``pandas.read_parquet(folder)``), and every read checks it; a part without one (written by an older
geom) must still parse as Parquet. Either failure raises ``DamagedPartError`` naming the file and the fix.

Reads (``part_path``, ``pending_parts``, ``read_part``, ``read_parts``, ``check_parts``) create, write and delete
nothing; ``write_part`` creates the folder it writes into. ``lock_folder`` keeps a second writer out.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from .paths import atomic_write, file_sha256

PART = "part-{:06d}.parquet"
CHECKSUM = "_part-{:06d}.sha256"
LOCK = ".lock"
FIX = "delete {files} and run the same command again: the run resumes and recomputes only {what}"


class DamagedPartError(ValueError):
    """A part that is not what was written: its bytes differ from the SHA-256 recorded beside it, or it does not
    parse as Parquet (cut short, overwritten). ``parts``: ``(path, what is wrong)`` of each damaged part."""

    def __init__(self, message: str, parts: list[tuple[Path, str]]):
        super().__init__(message)
        self.parts = parts
        self.paths = [p for p, _ in parts]


class FolderLockedError(RuntimeError):
    """Another run holds the folder's lock (``lock_folder``)."""


def keyed_folder(cache_dir: str | Path, key: dict, prefix: str = "") -> Path:
    """The store folder of ``key`` under ``cache_dir``: ``<prefix><first 20 hex of SHA-256 of the key's JSON>``,
    created with ``key.json`` (written atomically) on first use. Raises ``RuntimeError`` when the folder holds
    another key (a hash collision or a hand-edited folder: remove it)."""
    text = json.dumps(key, indent=1, sort_keys=True)
    folder = Path(cache_dir) / f"{prefix}{hashlib.sha256(text.encode()).hexdigest()[:20]}"
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "key.json"
    if key_file.exists() and json.loads(key_file.read_text()) != key:
        raise RuntimeError(f"cache {folder} holds another key ({key_file}); remove the folder")
    if not key_file.exists():
        atomic_write(key_file, lambda tmp: tmp.write_text(text + "\n"))
    return folder


def part_path(folder: str | Path, i: int) -> Path:
    """Path of part ``i`` (``int >= 0``) in ``folder``."""
    if int(i) < 0:
        raise ValueError(f"part number must be >= 0, got {i}")
    return Path(folder) / PART.format(int(i))


def checksum_path(folder: str | Path, i: int) -> Path:
    """Path of the SHA-256 file of part ``i``: ``_part-NNNNNN.sha256``, one ``<hex>  part-NNNNNN.parquet`` line."""
    return part_path(folder, i).with_name(CHECKSUM.format(int(i)))


def pending_parts(folder: str | Path, n: int) -> list[int]:
    """The part numbers in ``range(n)`` that are not written yet (a read: nothing is created)."""
    return [i for i in range(int(n)) if not part_path(folder, i).exists()]


def write_part(folder: str | Path, i: int, df: pd.DataFrame, sync: Callable[[Path], None] | None = None) -> Path:
    """Write ``df`` as part ``i`` atomically, its SHA-256 file first (``sync(tmp)``, e.g. an fsync, runs on each
    temporary file before it is renamed), so a part in place always has its checksum beside it; returns the
    part's path."""
    Path(folder).mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        df.to_parquet(tmp, index=False)
        if sync is not None:
            sync(tmp)
        line = f"{file_sha256(tmp)}  {PART.format(int(i))}\n"

        def write_sum(t: Path) -> None:
            t.write_text(line)
            if sync is not None:
                sync(t)

        atomic_write(checksum_path(folder, i), write_sum)

    return atomic_write(part_path(folder, i), write)


def read_part(folder: str | Path, i: int, what: str = "store") -> pd.DataFrame:
    """Part ``i`` of ``folder`` as a DataFrame, checked against its SHA-256 file when it has one.
    Raises ``DamagedPartError`` (the bytes differ from the recorded SHA-256, the SHA-256 file is unreadable, or
    the part does not parse as Parquet), naming the file and the fix; ``FileNotFoundError`` when it is missing."""
    p, s = part_path(folder, i), checksum_path(folder, i)
    data = p.read_bytes()
    if s.exists():
        m = re.fullmatch(r"([0-9a-f]{64})  " + re.escape(p.name) + r"\n", s.read_text(errors="replace"))
        if m is None:
            raise _damaged(what, [(p, f"its checksum file {s.name} is damaged (rewritten with the part)")])
        got = hashlib.sha256(data).hexdigest()
        if got != m.group(1):
            raise _damaged(what, [(p, f"checksum mismatch: its SHA-256 {got[:16]}... is not the {m.group(1)[:16]}... "
                                      f"recorded in {s.name} when it was written (cut short or overwritten since)")])
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as e:  # pyarrow's errors for a cut or overwritten file: ArrowInvalid, OSError, ...
        raise _damaged(what, [(p, f"it cannot be read as Parquet ({type(e).__name__}: {e})")]) from e


def read_parts(folder: str | Path, n: int, what: str = "store") -> list[pd.DataFrame]:
    """Parts ``0 .. n - 1`` of ``folder`` as DataFrames (``read_part``); ``RuntimeError`` naming the missing ones,
    ``DamagedPartError`` naming a damaged one (``what`` names the store in the messages)."""
    missing = [part_path(folder, i).name for i in pending_parts(folder, n)]
    if missing:
        raise RuntimeError(f"{what} {folder} is incomplete: {len(missing)} of {n} parts missing ({missing[:3]}...)")
    return [read_part(folder, i, what) for i in range(int(n))]


def check_parts(folder: str | Path, what: str = "store") -> int:
    """Read every part present in ``folder`` (``read_part``), before a resume computes anything; returns how many
    there are. Raises one ``DamagedPartError`` naming every damaged part."""
    found = sorted(int(m.group(1)) for f in Path(folder).glob("part-*.parquet")
                   if (m := re.fullmatch(r"part-(\d{6})\.parquet", f.name)))
    bad: list[DamagedPartError] = []
    for i in found:
        try:
            read_part(folder, i, what)
        except DamagedPartError as e:
            bad.append(e)
    if len(bad) == 1:
        raise bad[0]
    if bad:
        raise _damaged(what, [part for e in bad for part in e.parts])
    return len(found)


def _damaged(what: str, parts: list[tuple[Path, str]]) -> DamagedPartError:
    """The error for damaged ``parts`` (``(path, what is wrong)``): what is wrong with each, and the fix."""
    (first, why), n = parts[0], len(parts)
    if n == 1:
        msg = f"{what} part {first} is damaged: {why}; " + FIX.format(files="that file", what="that part")
    else:
        listed = "; ".join(f"{p.name}: {w}" for p, w in parts)
        msg = f"{what} {first.parent}: {n} parts are damaged ({listed}); " + FIX.format(files="those files",
                                                                                          what="those parts")
    return DamagedPartError(msg, parts)


@contextmanager
def lock_folder(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold ``folder``'s lock for the block: an exclusive, non-blocking ``fcntl.flock`` of ``folder/.lock``
    (created with the folder), which records ``pid <pid> on <host>`` of the holder. Raises
    ``FolderLockedError`` naming the folder and that holder when another run (or another open of the lock in
    this process) holds it. The kernel releases the lock when its holder exits, however it ends (``kill -9``
    included), so a crashed run never blocks its resume; the file stays. Readers need no lock. On NFS, flock
    needs the server's lock manager (Linux maps it to a POSIX lock). Yields the lock file's path."""
    path = Path(folder) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "pid not recorded yet"
            raise FolderLockedError(f"{what} {path.parent} is in use by another run ({holder}, holding {path}): "
                                    f"wait for that run to finish (or stop it), or use another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
