"""Resumable descriptor sweeps (psi, nu, delta of Humayun et al. Eq. 4, Def. 3, Def. 1) over many latents.

A sweep = a model spec + a latent source + descriptor settings. The latents are cut into fixed shards of
``shard_size`` consecutive indices; each shard's rows are written to ``OUT/shards/part-NNNNNN.parquet``
atomically (written under a hidden temporary name in the same folder, then renamed), so an interrupted sweep
(Ctrl-C, SIGKILL, a lost machine) is resumed by running the same command again: finished shards are skipped,
half-written temporary files are ignored and removed. The final table has every latent exactly once.
``OUT/shards`` is a Parquet dataset (``pandas.read_parquet(OUT / "shards")``); ``OUT/sweep.json`` holds the
settings, the SHA-256 content hashes of the inputs behind paths (``inputs``: the latent file or image folder,
the anchors file, the model's state dict) and, once complete, the row count. A re-run into the same folder with
other settings, or after the content behind a path changed (a regenerated latent file, new anchors, a changed
checkpoint), is refused with an error naming the input (``overwrite=True`` / ``--overwrite`` starts afresh):
a sweep never mixes or serves rows computed from other inputs. Files are hashed once per run, the model once
per process that loads it (each Ray worker checks its own copy).

Python::

    from geom.sweep import SweepSpec, run_sweep
    spec = SweepSpec(model="tiny-ldm", source="plane:64", k=120, dim=4, radius=1e-5, seed=0)
    df = run_sweep(spec, "build/sweeps/tiny_ldm_plane64")             # local, in-process
    df = run_sweep(spec, "build/sweeps/tiny_ldm_plane64", executor="ray")  # one actor per worker

CLI (same settings)::

    python -m geom.sweep --model tiny-ldm --plane 64 --out build/sweeps/tiny_ldm_plane64
    python -m geom.sweep --model /models/stable-diffusion-v1-5 --plane 512 --k 120 --dim 4 \\
        --executor ray --address auto --out /shared/sweeps/sd_plane512      # a Ray cluster of GPU machines

Model specs: the names of ``geom.models.load_generator`` (``geom.models.generators``, which also holds
``MODELS``, ``register_model``, ``load_model`` and ``LoadedModel``, re-exported here): ``dcgan-faces``,
``tiny-ldm``, a local Stable Diffusion folder, ``mlp:<seed>`` (seeded ReLU MLP ``(B, 16) -> (B, 256)``, tests)
and ``sd-vae-random:<size>`` (the SD v1 VAE decoder with seeded random weights, latent ``(4, size, size)``).
Descriptor code: ``settings`` record ``geom.descriptors.ENGINE_VERSION``, so a sweep computed by an older
descriptor engine is refused like a sweep with other settings.

Latent sources:
    ``plane:<N>[:<lo>:<hi>]``    ``N x N`` grid on the plane through three latents ``z0, z1, z2`` (standard normal,
                                 seeded by ``latent_seed``, or ``anchors``: a ``.npy`` of shape ``(3, *latent_shape)``):
                                 ``z(u, v) = z0 + u (z1 - z0) + v (z2 - z0)``, ``u, v`` in ``linspace(lo, hi, N)``
                                 (default ``lo=-0.5, hi=1.5``); row ``index = i * N + j`` has ``u = t[i], v = t[j]``
                                 (``geom.planes``: ``plane_anchors``, ``grid_coords``, ``plane_latents``)
    ``npy:<file>``               an array of latents ``(n, *latent_shape)``, or of images ``(n, C, H, W)`` in
                                 ``[-1, 1]`` that the model encodes (its posterior mean)
    ``images:<folder>``          the images of a folder (sorted by name), resized to the model's image size and
                                 encoded
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import descriptors, paths, planes, slices
from .complexity import local_complexity, polytope_basis
from .descriptors import local_rank, local_scaling, singular_values
from .jacobian import check_generator, jacobian, random_projection
from .models.generators import (MODELS, LoadedModel, as_dtype, check_model_spec, load_model, mlp_generator,
                                register_model, sd_vae_random)

__all__ = ["SweepSpec", "Sweep", "ShardComputer", "run_sweep", "load_sweep", "main", "model_digest", "file_digest",
           "folder_digest", "parse_source", "PlaneSource",
           # the model registry (geom.models.generators), re-exported for existing callers
           "MODELS", "LoadedModel", "check_model_spec", "load_model", "mlp_generator", "register_model",
           "sd_vae_random"]

SHARD_DIR = "shards"
MANIFEST = "sweep.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LATENTS = "latents.npy"


# ----------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class SweepSpec:
    """What to compute. ``model``/``source`` are spec strings (see the module docs); ``k``, ``dim``, ``radius``
    and ``seed`` are those of ``geom.describe`` (paper: ``k=120``, ``dim=4``, ``radius=1e-5``);
    ``k=None`` for no projection; ``complexity=False`` leaves delta out. ``shard_size`` latents per shard file
    (the unit of resumption and of work sent to a Ray worker), ``batch_size`` latents per Jacobian batch,
    ``chunk_size`` VJPs vmapped at once (``geom.jacobian``; ``None``: all ``k``; set it for large decoders).
    ``dtype`` of the model and latents (``"float32"`` or ``"float64"``); ``latent_seed`` and ``anchors``
    define the plane (``geom.planes.plane_anchors``)."""

    model: str
    source: str
    k: int | None = 120
    dim: int = 4
    radius: float = 1e-5
    seed: int = 0
    complexity: bool = True
    shard_size: int = 64
    batch_size: int = 16
    chunk_size: int | None = None
    dtype: str = "float32"
    latent_seed: int = 0
    anchors: str | None = None

    def settings(self) -> dict[str, Any]:
        """The fields, with ``anchors`` as an absolute path and ``engine_version``: the
        ``geom.descriptors.ENGINE_VERSION`` of the code computing the rows (what a manifest records)."""
        d = dataclasses.asdict(self)
        if d["anchors"] is not None:
            d["anchors"] = str(paths.resolve(d["anchors"]))
        d["engine_version"] = descriptors.ENGINE_VERSION
        return d

    def validate(self) -> PlaneSource | tuple[str, Path]:
        """Check every field without side effects (reads only: a folder model or a file source must exist) and
        return the parsed source (``parse_source``). Raises ``ValueError`` / ``FileNotFoundError`` naming the
        field."""
        spec = self
        check_model_spec(spec.model)
        source = parse_source(spec.source)
        if spec.k is not None and int(spec.k) < 1:
            raise ValueError(f"k must be >= 1 or None, got {spec.k}")
        if int(spec.dim) < 1:
            raise ValueError(f"dim must be >= 1, got {spec.dim}")
        if not (spec.radius > 0 and math.isfinite(spec.radius)):
            raise ValueError(f"radius must be a finite number > 0, got {spec.radius}")
        if spec.chunk_size is not None and int(spec.chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {spec.chunk_size}")
        if int(spec.shard_size) < 1 or int(spec.batch_size) < 1:
            raise ValueError(f"shard_size and batch_size must be >= 1, got {spec.shard_size}, {spec.batch_size}")
        as_dtype(spec.dtype)
        if spec.anchors is not None and not paths.resolve(spec.anchors).is_file():
            raise FileNotFoundError(f"anchors file {paths.resolve(spec.anchors)} does not exist")
        return source


# ----------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class PlaneSource:
    """``plane:N:lo:hi``: the ``N x N`` grid of ``geom.planes`` on ``[lo, hi]^2``."""
    n: int
    lo: float = -0.5
    hi: float = 1.5

    def coords(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """``i, j, u, v`` of flat grid indices (``geom.planes.grid_coords``)."""
        return planes.grid_coords(self.n, self.lo, self.hi, index)


def parse_source(source: str) -> PlaneSource | tuple[str, Path]:
    """``plane:N[:lo:hi]`` -> ``PlaneSource``; ``npy:<file>`` / ``images:<folder>`` -> ``(kind, path)``.
    Raises ``ValueError``/``FileNotFoundError`` for a bad spec (grid size < 1, missing file...)."""
    if not isinstance(source, str) or ":" not in source:
        raise ValueError(f"latent source must be 'plane:N[:lo:hi]', 'npy:<file>' or 'images:<folder>', got {source!r}")
    kind, _, rest = source.partition(":")
    if kind == "plane":
        parts = rest.split(":")
        if len(parts) not in (1, 3):
            raise ValueError(f"plane source must be 'plane:N' or 'plane:N:lo:hi', got {source!r}")
        try:
            n = int(parts[0])
        except ValueError:
            raise ValueError(f"plane source must be 'plane:N' with an integer N, got {source!r}") from None
        if n < 1:
            raise ValueError(f"plane grid size must be >= 1 (an N x N grid), got N={n}")
        if len(parts) == 3:
            lo, hi = float(parts[1]), float(parts[2])
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"plane extent must be finite, got lo={lo}, hi={hi}")
            return PlaneSource(n, lo, hi)
        return PlaneSource(n)
    if kind in ("npy", "images"):
        p = paths.resolve(rest)
        if kind == "npy" and not p.is_file():
            raise FileNotFoundError(f"latent source {source!r}: no file {p}")
        if kind == "images":
            if not p.is_dir():
                raise FileNotFoundError(f"latent source {source!r}: no folder {p}")
            if not _image_files(p):
                raise ValueError(f"latent source {source!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in {p}")
        return kind, p
    raise ValueError(f"unknown latent source kind {kind!r} in {source!r}; use plane:N, npy:<file> or images:<folder>")


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


# ----------------------------------------------------------------------------------------------- content hashes
file_digest = paths.file_sha256  # SHA-256 (hex) of a file's bytes


def folder_digest(folder: str | Path) -> str:
    """SHA-256 (hex) over the images of a folder (the files an ``images:<folder>`` source reads), in name
    order: each file's name and content hash, so an added, removed, renamed or edited image changes it."""
    h = hashlib.sha256()
    for f in _image_files(Path(folder)):
        h.update(f.name.encode() + b"\0" + file_digest(f).encode() + b"\n")
    return h.hexdigest()


def model_digest(model: LoadedModel) -> str:
    """SHA-256 (hex) of a loaded model's weights: ``geom.slices.module_digest`` of its module's state dict
    (names, dtypes, shapes, values), with the public entries of the module's ``config`` when it has one (a
    diffusers VAE's ``scaling_factor`` lives there, outside the state dict)."""
    module = _module_of(model)
    config = getattr(module, "config", None)
    extra = ()
    if config is not None:
        extra = (sorted((str(k), repr(v)) for k, v in dict(config).items() if not str(k).startswith("_")),)
    return slices.module_digest(module, extra=extra)


# ----------------------------------------------------------------------------------------------- compute
class ShardComputer:
    """Holds a loaded model, the output projection and the polytope basis; computes one shard's rows.
    The local executor makes one; a Ray worker (actor) makes one at start-up, so the model loads once."""

    def __init__(self, spec: SweepSpec, device: str | None = None):
        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = as_dtype(spec.dtype)
        self.model = load_model(spec.model, self.device, self.dtype)
        check_generator(self.model.G)  # before any forward pass: batch-coupled / stochastic / train mode
        self.E = math.prod(self.model.latent_shape)
        self._P: Tensor | None = None
        self._rows = None
        self.dim = min(int(spec.dim), self.E)
        self.basis = (polytope_basis(self.E, self.dim, spec.seed, dtype=torch.float64, device=self.device)
                      if spec.complexity else None)

    def _projection(self, z: Tensor) -> Tensor | None:
        if self._rows is None:
            with torch.no_grad():
                D = math.prod(self.model.G(z[:1]).shape[1:])
            k = self.spec.k
            if k is not None and k > D:
                raise ValueError(f"k={k} is larger than the output dimension D={D} of {self.spec.model!r}; "
                                 f"use k <= {D} or k=None")
            self._P = None if k is None else random_projection(D, k, seed=self.spec.seed, dtype=self.dtype,
                                                                device=self.device)
            self._rows = D if k is None else k
        return self._P

    def check(self) -> None:
        """One forward pass on a zero latent: catches a ``k`` larger than the output before any shard."""
        self._projection(torch.zeros(1, *self.model.latent_shape, dtype=self.dtype, device=self.device))

    def describe(self, z: Tensor) -> dict[str, np.ndarray]:
        """psi, nu (and delta) of latents ``z`` ``(n, *latent_shape)``, in batches of ``spec.batch_size``
        (same numbers as ``geom.describe`` with the same settings)."""
        z = z.to(device=self.device, dtype=self.dtype)
        P = self._projection(z)
        psi, nu, delta = [], [], []
        for s in range(0, z.shape[0], self.spec.batch_size):
            zb = z[s:s + self.spec.batch_size]
            J = jacobian(self.model.G, zb, projection=P, chunk_size=self.spec.chunk_size)
            sv = singular_values(J)
            psi.append(local_scaling(sv, dtype=J.dtype, shape=(self._rows, self.E)).cpu())
            nu.append(local_rank(sv).cpu())
            if self.spec.complexity:
                delta.append(local_complexity(self.model.G, zb, radius=self.spec.radius, dim=self.dim,
                                              basis=self.basis).cpu())
        out = {"psi": torch.cat(psi).numpy(), "nu": torch.cat(nu).numpy()}
        if self.spec.complexity:
            out["delta"] = torch.cat(delta).numpy().astype(np.int64)
        return out

    def run_shard(self, shard: int, index: np.ndarray, z: Tensor) -> pd.DataFrame:
        """Rows of one shard (without the coordinate columns, which the driver adds)."""
        vals = self.describe(z)
        return pd.DataFrame({"index": index.astype(np.int64), **vals})


# ----------------------------------------------------------------------------------------------- the sweep
class Sweep:
    """A sweep in an output folder: validates the spec and the folder, checks that the content of its inputs
    is that of the rows already there (``check_inputs``), materialises the latent source, knows which shards
    are done, writes shards atomically and assembles the table. ``Sweep(spec, out)`` opens the folder for
    writing (creating it); ``Sweep.open(out)`` is a read-only view."""

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
        self._prepare_dir(overwrite)

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
        self.out, self.shard_dir, self.overwrite, self.manifest = out, out / SHARD_DIR, False, doc
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
        for f in self.shard_dir.glob("*.parquet"):
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

    def check_inputs(self, model: LoadedModel | str | None = None) -> None:
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
    def prepare(self, model: LoadedModel | None = None) -> None:
        """Materialise the latents of an array/image source (encoding with ``model`` if they are images),
        cached in ``OUT/latents.npy`` so a resumed sweep does not encode again; the plane needs nothing
        but the latent shape."""
        if isinstance(self.source, PlaneSource):
            if self._anchors is None:
                if model is None:
                    raise ValueError("the plane source needs the model's latent shape: pass the loaded model")
                self._anchors = planes.plane_anchors(model.latent_shape, self.spec.latent_seed, self.spec.anchors,
                                              as_dtype(self.spec.dtype))
            return
        if not self.load_cached_latents():
            if model is None:
                raise ValueError("this latent source needs the model: pass the loaded model")
            self._latents = _source_latents(self.source, model, as_dtype(self.spec.dtype))
            arr = self._latents.cpu().numpy()
            cache = paths.atomic_write(self.out / LATENTS, lambda tmp: np.save(tmp, arr))
            self.manifest["latents_sha256"] = file_digest(cache)
            self._write_manifest(self.manifest)
        self.n = int(self._latents.shape[0])

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
        return self.shard_dir / f"part-{shard:06d}.parquet"

    def pending(self) -> list[int]:
        return [s for s in range(self.n_shards) if not self.shard_path(s).exists()]

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
        df["k"] = -1 if self.spec.k is None else int(self.spec.k)
        df["dim"] = int(self.spec.dim)
        df["radius"] = float(self.spec.radius)
        df["seed"] = int(self.spec.seed)
        return df

    def write_shard(self, shard: int, rows: pd.DataFrame) -> None:
        expect = self.shard_index(shard)
        got = rows["index"].to_numpy()
        if not np.array_equal(got, expect):
            raise RuntimeError(f"shard {shard} returned indices {got[:5]}... instead of {expect[:5]}...")
        df = self.finish_rows(rows)

        def write(tmp: Path) -> None:
            df.to_parquet(tmp, index=False)
            _fsync(tmp)

        paths.atomic_write(self.shard_path(shard), write)

    def table(self) -> pd.DataFrame:
        """All shards as one DataFrame sorted by ``index``; checks every latent is there exactly once."""
        files = [self.shard_path(s) for s in range(self.n_shards)]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise RuntimeError(f"sweep {self.out} is incomplete: {len(missing)} shards missing ({missing[:3]}...)")
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        idx = df["index"].to_numpy()
        if len(df) != self.n or not np.array_equal(np.sort(idx), np.arange(self.n)):
            raise RuntimeError(f"sweep {self.out}: {len(df)} rows for {self.n} latents (lost or duplicated rows)")
        return df.sort_values("index", kind="stable").reset_index(drop=True)

    def mark_complete(self) -> None:
        self.manifest.update(complete=True, rows=int(self.n), shards=int(self.n_shards))
        self._write_manifest(self.manifest)


def _source_latents(source: tuple[str, Path], model: LoadedModel, dtype: torch.dtype) -> Tensor:
    kind, p = source
    if kind == "npy":
        a = torch.as_tensor(np.load(p))
        if tuple(a.shape[1:]) == tuple(model.latent_shape):
            return a.to(dtype)
        images = a
    else:
        from PIL import Image

        if model.image_size is None:
            raise ValueError("this model has no image size to resize the images to")
        c, h, w = model.image_size
        arr = []
        for f in _image_files(p):
            im = Image.open(f).convert("RGB" if c == 3 else "L").resize((w, h), Image.BICUBIC)
            x = np.asarray(im, dtype=np.float32) / 127.5 - 1
            arr.append(x.reshape(h, w, -1).transpose(2, 0, 1))
        images = torch.as_tensor(np.stack(arr))
    if model.encode is None:
        raise ValueError(f"the latent array has shape {tuple(images.shape)}, not (n, *{tuple(model.latent_shape)}), "
                         f"and the model has no encoder to map images to latents")
    if images.ndim != 4:
        raise ValueError(f"images to encode must be (n, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    dev = next(iter(_module_of(model).parameters())).device
    out = []
    with torch.no_grad():
        for s in range(0, images.shape[0], 8):
            out.append(model.encode(images[s:s + 8].to(device=dev, dtype=dtype)).cpu())
    return torch.cat(out)


def _module_of(model: LoadedModel) -> nn.Module:
    return model.G if isinstance(model.G, nn.Module) else model.G.module  # type: ignore[attr-defined]


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------- executors
def run_sweep(spec: SweepSpec, out_dir: str | Path, executor: str = "local", address: str | None = None,
              workers: int | None = None, num_cpus: int | None = None, device: str | None = None,
              overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) a sweep and return its table: one row per latent, sorted by ``index``.

    Columns: ``index`` (and ``i, j, u, v`` for a plane), ``psi``, ``nu`` (float64), ``delta`` (int64, when
    ``spec.complexity``), and the settings ``model, k, dim, radius, seed`` (``k = -1``: no projection).
    Shards already in ``out_dir`` are skipped. ``executor="local"`` computes in this process; ``"ray"``
    runs one actor per worker (``ray.init(address)``: a new local instance with ``num_cpus`` CPUs when
    ``address`` is None, else joins that cluster, e.g. ``"auto"``); ``workers`` defaults to the number of
    GPUs in the cluster (one GPU each), else its CPUs. ``device``: ``"cpu"``/``"cuda"``, default CUDA
    when available.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sweep = Sweep(spec, out_dir, overwrite=overwrite)
    sweep.check_inputs()  # the source file / image folder and the anchors, hashed once per run
    sweep.load_cached_latents()  # cached latents of an array/image source: the row count is known
    if sweep.n is not None and not sweep.pending():  # complete: served once the weights match too (no Ray)
        sweep.check_inputs(load_model(spec.model, "cpu", spec.dtype))
        if sweep.n is not None and not sweep.pending():
            df = sweep.table()
            sweep.mark_complete()
            return df
    if executor == "local":
        comp = ShardComputer(spec, device)
        comp.check()
        sweep.check_inputs(comp.model)
        sweep.prepare(comp.model)
        _run_local(sweep, comp, progress)
    else:
        _run_ray(sweep, address, workers, num_cpus, device, progress)
    df = sweep.table()
    sweep.mark_complete()
    return df


def load_sweep(out_dir: str | Path) -> pd.DataFrame:
    """The table of a finished sweep folder (sorted by ``index``): a read (``Sweep.open``) that creates,
    writes and deletes nothing and needs neither the model nor the source. Raises ``FileNotFoundError``
    (no sweep there) or ``RuntimeError`` (not started, or shards missing: run the same sweep to finish it)."""
    sweep = Sweep.open(out_dir)
    if sweep.n is None:
        raise RuntimeError(f"sweep {sweep.out} never started (no rows, no {LATENTS}); run it to compute them")
    return sweep.table()


def _run_local(sweep: Sweep, comp: ShardComputer, progress: bool) -> None:
    todo = sweep.pending()
    bar = tqdm(total=sweep.n_shards, initial=sweep.n_shards - len(todo), desc="sweep shards", unit="shard",
               disable=not progress)
    for s in todo:
        idx = sweep.shard_index(s)
        sweep.write_shard(s, comp.run_shard(s, idx, sweep.latents(idx)))
        bar.update(1)
    bar.close()


class _RayWorker:
    """Ray actor body: loads the model once, then computes shards sent by the driver."""

    def __init__(self, spec_dict: dict, device: str | None, model_sha256: str | None = None):
        self.comp = ShardComputer(SweepSpec(**spec_dict), device)
        self.model_sha256 = model_digest(self.comp.model)
        self.expected_sha256 = model_sha256

    def info(self) -> dict:
        return {"pid": os.getpid(), "device": str(self.comp.device), "latent_shape": self.comp.model.latent_shape,
                "model_sha256": self.model_sha256}

    def check(self) -> None:
        self.comp.check()

    def run_shard(self, shard: int, index: np.ndarray, z: Tensor) -> pd.DataFrame:
        if self.expected_sha256 is not None and self.model_sha256 != self.expected_sha256:
            raise ValueError(f"the weights of model {self.comp.spec.model!r} on worker {os.getpid()} differ from "
                             f"those this sweep was computed with (sha256 {self.model_sha256[:16]}... != "
                             f"{self.expected_sha256[:16]}...): every worker must load the same checkpoint")
        return self.comp.run_shard(shard, index, z)


def _run_ray(sweep: Sweep, address: str | None, workers: int | None, num_cpus: int | None,
             device: str | None, progress: bool, max_attempts: int = 3) -> None:
    try:
        import ray
        from ray.exceptions import RayActorError, RayTaskError
    except ImportError as e:
        raise ImportError("executor='ray' needs ray (pip install ray)") from e
    started = not ray.is_initialized()
    if started:
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True)
        if address is None:
            kw["num_cpus"] = num_cpus
            # the local raylet waits for its Python agents to start; on a busy small machine they can take
            # longer than Ray's default, so give them 2 minutes (inherited by the processes ray.init starts)
            os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
        _ray_init(ray, address, kw)
    try:
        res = ray.cluster_resources()
        n_gpu, n_cpu = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        if device == "cpu":
            n_gpu = 0
        Actor = ray.remote(_RayWorker)
        opts = dict(num_gpus=1, num_cpus=1) if n_gpu else dict(num_cpus=1)
        settings = dataclasses.asdict(sweep.spec)
        dev = device or ("cuda" if n_gpu else "cpu")

        def new_actor():  # workers started after the first check their weights against the recorded hash
            return Actor.options(max_restarts=0, **opts).remote(settings, dev, sweep.manifest["inputs"].get("model"))

        # the driver needs the latent shape (plane) or the encoded latents (arrays/images)
        if isinstance(sweep.source, PlaneSource) or sweep.n is not None:
            probe = None
        else:
            probe = load_model(sweep.spec.model, "cpu", sweep.spec.dtype)
        first = new_actor()
        try:
            info = ray.get(first.info.remote())
        except RayActorError as e:
            raise RuntimeError(f"a Ray worker could not load model {sweep.spec.model!r} (see the worker error "
                               f"above): {e}") from None
        _unwrap(ray, RayTaskError, lambda: ray.get(first.check.remote()))
        sweep.check_inputs(info["model_sha256"])
        if isinstance(sweep.source, PlaneSource):
            sweep._anchors = planes.plane_anchors(tuple(info["latent_shape"]), sweep.spec.latent_seed, sweep.spec.anchors,
                                           as_dtype(sweep.spec.dtype))
        else:
            if probe is not None:  # the driver encodes the images: its copy of the weights must match too
                sweep.check_inputs(probe)
            sweep.prepare(probe)
        todo = sweep.pending()
        n_workers = int(workers) if workers else (n_gpu or n_cpu)
        n_workers = max(1, min(n_workers, len(todo)))
        actors = [first] + [new_actor() for _ in range(n_workers - 1)]
        bar = tqdm(total=sweep.n_shards, initial=sweep.n_shards - len(todo), desc="sweep shards (ray)",
                   unit="shard", disable=not progress)
        queue = list(todo)
        attempts: dict[int, int] = {}
        running: dict[Any, tuple[int, int]] = {}  # future -> (shard, actor slot)

        def submit(slot: int) -> None:
            if queue:
                s = queue.pop(0)
                idx = sweep.shard_index(s)
                fut = actors[slot].run_shard.remote(s, idx, sweep.latents(idx))
                running[fut] = (s, slot)

        for slot in range(len(actors)):
            submit(slot)
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            fut = done[0]
            s, slot = running.pop(fut)
            try:
                rows = ray.get(fut)
            except RayActorError as e:  # the worker died (killed, OOM, lost node): new worker, shard again
                attempts[s] = attempts.get(s, 0) + 1
                if attempts[s] >= max_attempts:
                    raise RuntimeError(f"shard {s} failed {attempts[s]} times (worker died): {e}") from e
                print(f"geom.sweep: worker of shard {s} died ({type(e).__name__}); restarting it and retrying",
                      file=sys.stderr)
                queue.insert(0, s)
                try:
                    ray.kill(actors[slot], no_restart=True)
                except Exception:
                    pass
                actors[slot] = new_actor()
                submit(slot)
                continue
            except RayTaskError as e:
                raise e.as_instanceof_cause() from None
            sweep.write_shard(s, rows)
            bar.update(1)
            submit(slot)
        bar.close()
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()


def _ray_init(ray, address: str | None, kw: dict, attempts: int = 3) -> None:
    """``ray.init``; a local instance that misses Ray's fixed 30 s start-up deadline (an overloaded machine)
    is torn down (the processes this call started, by pid) and started again."""
    import psutil

    me = psutil.Process()
    for attempt in range(1, attempts + 1):
        before = {p.pid for p in me.children(recursive=True)}
        try:
            ray.init(address=address, **kw)
            return
        except Exception as e:
            if address is not None or "timed out during startup" not in str(e) or attempt == attempts:
                raise
            print(f"geom.sweep: Ray start-up timed out (attempt {attempt}/{attempts}); retrying", file=sys.stderr)
            ray.shutdown()
            new = [p for p in me.children(recursive=True) if p.pid not in before]
            for p in new:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(new, timeout=10)


def _unwrap(ray, RayTaskError, fn):
    try:
        return fn()
    except RayTaskError as e:
        raise e.as_instanceof_cause() from None


# ----------------------------------------------------------------------------------------------- CLI
class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows every option's default."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geom.sweep", description=__doc__.split("\n\n")[0],
                                 formatter_class=_HelpFormatter)
    ap.add_argument("--model", required=True,
                    help="a geom.models.load_generator name (dcgan-faces, tiny-ldm, mlp:<seed>, "
                         "sd-vae-random:<latent_size>) or a local Stable Diffusion folder")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--plane", type=int, metavar="N", help="N x N grid on the plane through three latents")
    src.add_argument("--latents", metavar="FILE.npy", help="latents (n, *latent_shape) or images to encode")
    src.add_argument("--images", metavar="FOLDER", help="a folder of images to encode")
    src.add_argument("--source", help="a source spec string (plane:N[:lo:hi], npy:<file>, images:<folder>)")
    ap.add_argument("--extent", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="plane coordinates u, v in [LO, HI] (None: -0.5 1.5)")
    ap.add_argument("--anchors", help=".npy (3, *latent_shape): the three latents of the plane")
    ap.add_argument("--latent-seed", type=int, default=0, help="seed of the plane's three latents")
    ap.add_argument("--out", required=True, help="output folder (resumed when it holds the same sweep)")
    ap.add_argument("--k", type=int, default=120, help="output projection dimension (0: none)")
    ap.add_argument("--dim", type=int, default=4, help="cross-polytope dimension P for delta")
    ap.add_argument("--radius", type=float, default=1e-5, help="cross-polytope radius for delta")
    ap.add_argument("--seed", type=int, default=0, help="seed of the projection and polytope basis")
    ap.add_argument("--no-complexity", action="store_true", help="skip delta")
    ap.add_argument("--shard-size", type=int, default=64, help="latents per resumable shard (one Parquet file)")
    ap.add_argument("--batch-size", type=int, default=16, help="latents per Jacobian / delta batch")
    ap.add_argument("--chunk-size", type=int, default=None, help="VJPs vmapped at once (memory); None: all k at once")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"],
                    help="dtype of the model and latents (delta is always evaluated in float64)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"],
                    help="local: this process; ray: one Ray actor per worker")
    ap.add_argument("--address", default=None, help="Ray cluster address ('auto', 'ray://host:10001'); "
                                                     "None: start a local Ray instance")
    ap.add_argument("--workers", type=int, default=None, help="Ray workers (None: #GPUs, else #CPUs)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance")
    ap.add_argument("--device", default=None, help="cpu or cuda (None: cuda when available)")
    ap.add_argument("--overwrite", action="store_true", help="discard a different sweep in --out")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    ap.add_argument("--check", action="store_true",
                    help="validate the settings, the model name and the source, print the plan, compute nothing")
    a = ap.parse_args(argv)
    if a.plane is not None:
        source = f"plane:{a.plane}" + (f":{a.extent[0]}:{a.extent[1]}" if a.extent else "")
    elif a.latents:
        source = f"npy:{a.latents}"
    elif a.images:
        source = f"images:{a.images}"
    else:
        source = a.source
    spec = SweepSpec(model=a.model, source=source, k=a.k or None, dim=a.dim, radius=a.radius, seed=a.seed,
                     complexity=not a.no_complexity, shard_size=a.shard_size, batch_size=a.batch_size,
                     chunk_size=a.chunk_size, dtype=a.dtype, latent_seed=a.latent_seed, anchors=a.anchors)
    if a.check:
        try:
            source = spec.validate()
        except (ValueError, TypeError, FileNotFoundError, NotADirectoryError) as e:
            print(f"geom.sweep: error: {e}", file=sys.stderr)
            return 2
        print(f"geom.sweep: would run {spec.model} on {spec.source} ({source}) -> {paths.resolve(a.out)} "
              f"(k={spec.k}, dim={spec.dim}, radius={spec.radius:g}, seed={spec.seed}, executor={a.executor})")
        return 0
    try:
        df = run_sweep(spec, a.out, executor=a.executor, address=a.address, workers=a.workers,
                       num_cpus=a.num_cpus, device=a.device, overwrite=a.overwrite, progress=not a.no_progress)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, NotADirectoryError) as e:
        print(f"geom.sweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geom.sweep: interrupted; the finished shards are kept in {paths.resolve(a.out) / SHARD_DIR}. Run the "
              f"same command again to resume.", file=sys.stderr)
        return 130
    print(f"geom.sweep: {len(df)} rows in {paths.resolve(a.out) / SHARD_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
