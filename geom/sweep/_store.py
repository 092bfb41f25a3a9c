"""A sweep's output folder: the manifest (``sweep.json``: settings and content hashes of the inputs), the
cached latents, the shards (written atomically, each with its SHA-256: ``geom.chunks``), the folder's lock
(``.lock``: one writing run at a time) and the table (``Sweep``, ``load_sweep``); the content hashes
(``file_digest``, ``folder_digest``, ``model_digest``)."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import paths, planes
from ..chunks import check_parts, lock_folder, part_path, pending_parts, read_parts, write_part
from ..models.base import Generator, generator_digest
from ..models.generators import as_dtype
from ._sources import PlaneSource, image_files, parse_source, source_latents
from ._spec import SweepSpec

SHARD_DIR = "shards"
MANIFEST = "sweep.json"
LATENTS = "latents.npy"

file_digest = paths.file_sha256  # SHA-256 (hex) of a file's bytes


def folder_digest(folder: str | Path) -> str:
    """SHA-256 (hex) over the images of a folder (the files an ``images:<folder>`` source reads), in name
    order: each file's name and content hash, so an added, removed, renamed or edited image changes it."""
    h = hashlib.sha256()
    for f in image_files(Path(folder)):
        h.update(f.name.encode() + b"\0" + file_digest(f).encode() + b"\n")
    return h.hexdigest()


def model_digest(model: Generator) -> str:
    """SHA-256 (hex) of a loaded generator's weights: ``geom.models.base.generator_digest`` (the state dict of
    the module behind it, names, dtypes, shapes, values, and its ``config`` when it has one)."""
    return generator_digest(model)


LEGACY_NO_PROJECTION = -1  # how shards written before issue 25 spelt "no projection" in their k column


def k_column(k: int | None, n: int):
    """The settings column ``k`` of ``n`` sweep rows: ``k`` (int64), or for no projection (``k=None``, the one
    spelling of the Python API) ``<NA>`` in a nullable ``Int64`` column, pandas' None. The one place that
    writes it; ``Sweep.table`` reads shards of an older geom, which wrote -1 there, as ``<NA>``."""
    return pd.array([pd.NA] * n, dtype="Int64") if k is None else int(k)


def _legacy_k_as_na(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``k`` is the former -1 (``LEGACY_NO_PROJECTION``) get ``<NA>`` (``k_column``'s no projection)."""
    legacy = (df["k"] == LEGACY_NO_PROJECTION).fillna(False).to_numpy(dtype=bool)
    if legacy.any():
        df["k"] = df["k"].astype("Int64").mask(legacy)
    return df


class Sweep:
    """A sweep in an output folder: validates the spec and the folder, checks that the content of its inputs
    is that of the rows already there (``check_inputs``), materialises the latent source, knows which shards
    are done, writes shards atomically and assembles the table. ``Sweep(spec, out)`` opens the folder for
    writing (creating it) and holds its lock (``geom.chunks.lock_folder``) until ``close()`` or the end of a
    ``with`` block: ``FolderLockedError`` while another run writes there. ``Sweep.open(out)`` is a read-only
    view and takes no lock."""

    def __init__(self, spec: SweepSpec, out_dir: str | Path, overwrite: bool = False):
        if not isinstance(spec, SweepSpec):
            raise TypeError(f"spec must be a geom.sweep.SweepSpec, got {type(spec).__name__}")
        self.spec = spec
        self.source = spec.validate()
        self.out = paths.resolve(out_dir)
        self.shard_dir = self.out / SHARD_DIR
        self.overwrite = bool(overwrite)
        self.manifest: dict[str, Any] = {}
        self._latents: Tensor | None = None
        self._anchors: Tensor | None = None
        self._digests: dict[str, str] | None = None
        self.n: int | None = self.source.n ** 2 if isinstance(self.source, PlaneSource) else None
        self._lock = ExitStack()
        try:
            self._prepare_dir(overwrite)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder's lock (a read-only view holds none)."""
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def open(cls, out_dir: str | Path) -> Sweep:
        """A read-only view of the sweep in ``out_dir``, built from its manifest: creates, writes, probes and
        deletes nothing, and needs neither the model (registered or not in this process) nor the source.
        ``n`` is None when the row count is not known yet. Raises ``FileNotFoundError`` without a manifest."""
        out = paths.resolve(out_dir)
        man = out / MANIFEST
        if not man.is_file():
            raise FileNotFoundError(f"no sweep in {out} (missing {MANIFEST})")
        doc = json.loads(man.read_text())
        self = cls.__new__(cls)
        self.spec = SweepSpec(**{k: v for k, v in doc["settings"].items() if k != "engine_version"})
        self.out, self.shard_dir, self.overwrite, self.manifest, self._lock = out, out / SHARD_DIR, False, doc, None
        kind, _, rest = self.spec.source.partition(":")
        self.source = parse_source(self.spec.source) if kind == "plane" else (kind, paths.resolve(rest))
        self._latents, self._anchors, self._digests = None, None, None
        self.n = self.source.n ** 2 if isinstance(self.source, PlaneSource) else doc.get("rows")
        if self.n is None and (out / LATENTS).is_file():
            self.n = int(np.load(out / LATENTS, mmap_mode="r").shape[0])
        return self

    # -- output folder
    def _prepare_dir(self, overwrite: bool) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(f"output {self.out} exists and is not a directory")
        try:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
            probe = self.shard_dir / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise PermissionError(f"output directory {self.out} is not writable: {e}") from e
        self._lock.enter_context(lock_folder(self.out, what="sweep folder"))  # before anything is removed
        for d in (self.shard_dir, self.out):  # leftovers of a killed run
            for f in d.glob(".tmp-*"):
                f.unlink(missing_ok=True)
        man = self.out / MANIFEST
        old = json.loads(man.read_text()) if man.exists() else None
        rows = self._has_rows()
        if old is None:
            if rows and not overwrite:
                raise ValueError(f"{self.out} holds sweep rows but no {MANIFEST}: the inputs they were computed "
                                 f"from are unknown; use another output folder, or overwrite=True / --overwrite")
            self._discard()
        elif old.get("settings") != self.spec.settings():
            if not overwrite:
                diff = {k: (old.get("settings", {}).get(k), v) for k, v in self.spec.settings().items()
                        if old.get("settings", {}).get(k) != v}
                why = (" (engine_version: its rows were computed by another version of the descriptor code, "
                       "geom.descriptors.ENGINE_VERSION)" if "engine_version" in diff else "")
                raise ValueError(f"{self.out} holds a sweep with other settings (old, new): {diff}{why}; use "
                                 f"another output folder, or overwrite=True / --overwrite to start afresh")
            self._discard()
        elif "inputs" not in old:
            if rows and not overwrite:
                raise ValueError(f"{self.out} holds a sweep started without content hashes of its inputs (an "
                                 f"older geom): its rows cannot be checked against the latent file, anchors and "
                                 f"weights; use another output folder, or overwrite=True / --overwrite")
            self._discard()
        else:
            self.manifest = old

    def _has_rows(self) -> bool:
        return any(self.shard_dir.glob("*.parquet")) or (self.out / LATENTS).exists()

    def _discard(self) -> None:
        """Start afresh: remove the shards and cached latents, write a manifest with no recorded inputs."""
        for pattern in ("*.parquet", "_part-*.sha256"):
            for f in self.shard_dir.glob(pattern):
                f.unlink()
        (self.out / LATENTS).unlink(missing_ok=True)
        self._latents = None
        self.n = self.source.n ** 2 if isinstance(self.source, PlaneSource) else None
        self.manifest = {"settings": self.spec.settings(), "inputs": {}, "complete": False}
        self._write_manifest(self.manifest)

    # -- inputs
    def _input_digests(self) -> dict[str, str]:
        """SHA-256 of the source file or image folder and of the anchors file (computed once per object)."""
        if self._digests is None:
            d: dict[str, str] = {}
            if not isinstance(self.source, PlaneSource):
                kind, p = self.source
                d["source"] = file_digest(p) if kind == "npy" else folder_digest(p)
            if self.spec.anchors is not None:
                d["anchors"] = file_digest(paths.resolve(self.spec.anchors))
            self._digests = d
        return self._digests

    def _input_name(self, key: str) -> str:
        if key == "source":
            kind, p = self.source
            return f"the source {'file' if kind == 'npy' else 'image folder'} {p}"
        if key == "anchors":
            return f"the anchors file {paths.resolve(self.spec.anchors)}"
        return f"the weights of model {self.spec.model!r} (state dict)"

    def check_inputs(self, model: Generator | str | None = None) -> None:
        """Compare the content hashes of the inputs behind paths (source file / image folder, anchors file and,
        given the loaded ``model`` or its ``model_digest``, its weights) with those the manifest recorded when
        the sweep started; record those not recorded yet. A change raises ``ValueError`` naming the input
        (the rows there were computed from other inputs), or with ``overwrite`` discards the rows."""
        cur = dict(self._input_digests())
        if model is not None:
            cur["model"] = model if isinstance(model, str) else model_digest(model)
        rec = self.manifest.setdefault("inputs", {})
        changed = [k for k, v in cur.items() if k in rec and rec[k] != v]
        if changed and not self.overwrite:
            what = "; ".join(f"{self._input_name(k)} changed since this sweep was started (sha256 {cur[k][:16]}... "
                             f"!= {rec[k][:16]}...)" for k in changed)
            raise ValueError(f"{self.out}: {what}; its rows were computed from other inputs: use a new output "
                             f"folder, or overwrite=True / --overwrite to start afresh")
        if changed:
            self._discard()
            rec = self.manifest["inputs"]
        if any(rec.get(k) != v for k, v in cur.items()):
            rec.update(cur)
            self._write_manifest(self.manifest)

    def _write_manifest(self, d: dict) -> None:
        data = json.dumps(d, indent=1).encode()
        paths.atomic_write(self.out / MANIFEST, lambda tmp: tmp.write_bytes(data))

    # -- latents
    def prepare(self, model: Generator | None = None) -> None:
        """Materialise the latents of an array/image source (encoding with ``model`` if they are images),
        cached in ``OUT/latents.npy`` so a resumed sweep does not encode again; the plane needs nothing
        but the latent shape."""
        if isinstance(self.source, PlaneSource):
            if self._anchors is None:
                if model is None:
                    raise ValueError("the plane source needs the model's latent shape: pass the loaded model")
                self.set_anchors(model.latent_shape)
            return
        if not self.load_cached_latents():
            if model is None:
                raise ValueError("this latent source needs the model: pass the loaded model")
            self._latents = source_latents(self.source, model, as_dtype(self.spec.dtype))
            arr = self._latents.cpu().numpy()
            cache = paths.atomic_write(self.out / LATENTS, lambda tmp: np.save(tmp, arr))
            self.manifest["latents_sha256"] = file_digest(cache)
            self._write_manifest(self.manifest)
        self.n = int(self._latents.shape[0])

    def set_anchors(self, latent_shape: tuple[int, ...]) -> None:
        """The plane's three latents for this latent shape: ``geom.planes.plane_anchors`` of the spec's
        ``latent_seed`` or ``anchors`` file."""
        self._anchors = planes.plane_anchors(tuple(latent_shape), self.spec.latent_seed, self.spec.anchors,
                                             as_dtype(self.spec.dtype))

    def load_cached_latents(self) -> bool:
        """Load ``OUT/latents.npy`` when it is the file this sweep wrote (its SHA-256 is the manifest's
        ``latents_sha256``); a file not recorded or altered since is ignored (the latents are recomputed from
        the source, whose content ``check_inputs`` vouches for). Returns whether latents are loaded."""
        if isinstance(self.source, PlaneSource):
            return False
        if self._latents is None:
            cache, want = self.out / LATENTS, self.manifest.get("latents_sha256")
            if want is None or not cache.is_file():
                return False
            data = cache.read_bytes()
            if hashlib.sha256(data).hexdigest() != want:
                return False
            self._latents = torch.as_tensor(np.load(io.BytesIO(data)))
            self.n = int(self._latents.shape[0])
        return True

    def latents(self, index: np.ndarray) -> Tensor:
        if isinstance(self.source, PlaneSource):
            c = self.source.coords(index)
            return planes.plane_latents(self._anchors, c["u"], c["v"])
        return self._latents[torch.as_tensor(index)]

    # -- shards
    @property
    def n_shards(self) -> int:
        return math.ceil(self.n / self.spec.shard_size)

    def shard_index(self, shard: int) -> np.ndarray:
        s = self.spec.shard_size
        return np.arange(shard * s, min((shard + 1) * s, self.n), dtype=np.int64)

    def shard_path(self, shard: int) -> Path:
        return part_path(self.shard_dir, shard)

    def pending(self) -> list[int]:
        return pending_parts(self.shard_dir, self.n_shards)

    def check_shards(self) -> None:
        """Read every shard present (``geom.chunks.check_parts``) before a resume computes anything:
        ``DamagedPartError`` naming each damaged shard file (delete it and run the same command again)."""
        check_parts(self.shard_dir, what="sweep")

    def finish_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Add grid coordinates and the settings columns to a shard's rows."""
        idx = rows["index"].to_numpy()
        cols: dict[str, Any] = {"index": idx}
        if isinstance(self.source, PlaneSource):
            cols.update(self.source.coords(idx))
        for c in rows.columns:
            if c != "index":
                cols[c] = rows[c].to_numpy()
        df = pd.DataFrame(cols)
        df["model"] = self.spec.model
        df["k"] = k_column(self.spec.k, len(df))
        df["dim"] = int(self.spec.dim)
        df["radius"] = float(self.spec.radius)
        df["seed"] = int(self.spec.seed)
        return df

    def write_shard(self, shard: int, rows: pd.DataFrame) -> None:
        expect = self.shard_index(shard)
        got = rows["index"].to_numpy()
        if not np.array_equal(got, expect):
            raise RuntimeError(f"shard {shard} returned indices {got[:5]}... instead of {expect[:5]}...")
        write_part(self.shard_dir, shard, self.finish_rows(rows), sync=_fsync)

    def table(self) -> pd.DataFrame:
        """All shards as one DataFrame sorted by ``index``; checks every latent is there exactly once and every
        shard against its SHA-256 (``DamagedPartError`` naming a damaged shard file)."""
        df = _legacy_k_as_na(pd.concat(read_parts(self.shard_dir, self.n_shards, what="sweep"), ignore_index=True))
        idx = df["index"].to_numpy()
        if len(df) != self.n or not np.array_equal(np.sort(idx), np.arange(self.n)):
            raise RuntimeError(f"sweep {self.out}: {len(df)} rows for {self.n} latents (lost or duplicated rows)")
        return df.sort_values("index", kind="stable").reset_index(drop=True)

    def mark_complete(self) -> None:
        self.manifest.update(complete=True, rows=int(self.n), shards=int(self.n_shards))
        self._write_manifest(self.manifest)


def load_sweep(out_dir: str | Path) -> pd.DataFrame:
    """The table of a finished sweep folder (sorted by ``index``): a read (``Sweep.open``) that creates,
    writes and deletes nothing, needs neither the model nor the source, and takes no lock (a running sweep's
    shards are whole). Raises ``FileNotFoundError`` (no sweep there), ``RuntimeError`` (not started, or shards
    missing: run the same sweep to finish it) or ``DamagedPartError`` (a shard file cut short or overwritten:
    delete it and run the same sweep)."""
    sweep = Sweep.open(out_dir)
    if sweep.n is None:
        raise RuntimeError(f"sweep {sweep.out} never started (no rows, no {LATENTS}); run it to compute them")
    return sweep.table()


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
