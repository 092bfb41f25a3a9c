"""Running a sweep: ``run_sweep`` (resume or start, serve a complete one) with the local executor (this
process) or the Ray executor (one actor per worker, each loading the model once; a dead worker's shard is
retried on a new one)."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor
from tqdm import tqdm

from ..models.base import Generator
from ..models.generators import load_generator
from ._compute import ShardComputer
from ._sources import PlaneSource
from ._spec import SweepSpec
from ._store import Sweep, model_digest


def run_sweep(spec: SweepSpec, out_dir: str | Path, executor: str = "local", address: str | None = None,
              workers: int | None = None, num_cpus: int | None = None, device: str | None = None,
              overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) a sweep and return its table: one row per latent, sorted by ``index``.

    Columns: ``index`` (and ``i, j, u, v`` for a plane), ``psi``, ``nu`` (float64), ``delta`` (int64, when
    ``spec.complexity``), and the settings ``model, k, dim, radius, seed`` (``k``: ``<NA>`` of a nullable ``Int64``
    column for ``k=None``, no projection).
    Shards already in ``out_dir`` are skipped, once each is checked against its SHA-256.
    ``executor="local"`` computes in this process; ``"ray"`` runs one actor per worker (``ray.init(address)``:
    a new local instance with ``num_cpus`` CPUs when ``address`` is None, else joins that cluster, e.g.
    ``"auto"``); ``workers`` defaults to the number of GPUs in the cluster (one GPU each), else its CPUs.
    ``device``: ``"cpu"``/``"cuda"``, default CUDA when available.

    Raises ``FolderLockedError`` while another run writes ``out_dir`` (wait for it or use another folder; the
    lock is held from start to finish), ``DamagedPartError`` naming a shard file cut short or overwritten
    (delete it and run again: only that shard is recomputed), ``ValueError`` for bad settings or for inputs
    that changed since the sweep started.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with Sweep(spec, out_dir, overwrite=overwrite) as sweep:  # holds the folder's lock until the table is written
        sweep.check_inputs()  # the source file / image folder and the anchors, hashed once per run
        sweep.load_cached_latents()  # cached latents of an array/image source: the row count is known
        # the model is loaded (and hashed) at most once in this process: by the local executor's ShardComputer,
        # or on the CPU for a complete sweep / the Ray driver's encoder; the digest is reused
        comp, model, digest = None, None, None
        if sweep.n is not None and not sweep.pending():  # complete: served once the weights match too (no Ray)
            if executor == "local":
                comp = ShardComputer(spec, device)
                model = comp.model
            else:
                model = load_generator(spec.model, "cpu", spec.dtype)
            digest = model_digest(model)
            sweep.check_inputs(digest)
            if sweep.n is not None and not sweep.pending():
                df = sweep.table()
                sweep.mark_complete()
                return df
        sweep.check_shards()  # a damaged shard is named before any work
        if executor == "local":
            comp = comp or ShardComputer(spec, device)
            comp.check()
            sweep.check_inputs(digest or model_digest(comp.model))
            sweep.prepare(comp.model)
            _run_local(sweep, comp, progress)
        else:
            _run_ray(sweep, address, workers, num_cpus, device, progress, probe=model)
        df = sweep.table()
        sweep.mark_complete()
        return df


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
             device: str | None, progress: bool, max_attempts: int = 3, probe: Generator | None = None) -> None:
    """The Ray executor; ``probe``: the driver's copy of the model on the CPU when ``run_sweep`` loaded one
    already (reused to encode an array/image source instead of loading it again)."""
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
        new_actor = _actor_factory(ray, sweep, device, n_gpu)
        first = _first_worker(ray, RayActorError, RayTaskError, sweep, new_actor, probe)
        todo = sweep.pending()
        n_workers = int(workers) if workers else (n_gpu or n_cpu)
        n_workers = max(1, min(n_workers, len(todo)))
        actors = [first] + [new_actor() for _ in range(n_workers - 1)]
        _ray_shards(ray, RayActorError, RayTaskError, sweep, actors, new_actor, todo, progress, max_attempts)
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()


def _actor_factory(ray, sweep: Sweep, device: str | None, n_gpu: int):
    """A function starting one new ``_RayWorker`` actor (one GPU each when the cluster has GPUs, else one CPU);
    workers started after the first check their weights against the hash the manifest recorded."""
    Actor = ray.remote(_RayWorker)
    opts = dict(num_gpus=1, num_cpus=1) if n_gpu else dict(num_cpus=1)
    settings = dataclasses.asdict(sweep.spec)
    dev = device or ("cuda" if n_gpu else "cpu")

    def new_actor():
        return Actor.options(max_restarts=0, **opts).remote(settings, dev, sweep.manifest["inputs"].get("model"))

    return new_actor


def _first_worker(ray, RayActorError, RayTaskError, sweep: Sweep, new_actor, probe: Generator | None):
    """Start the first worker, check its model and weights hash, and give the sweep what the driver needs from
    the model: the latent shape (plane) or the encoded latents (arrays/images, encoded by ``probe``, the
    driver's CPU copy, loaded here when ``run_sweep`` had none)."""
    if isinstance(sweep.source, PlaneSource) or sweep.n is not None:
        probe = None
    elif probe is None:
        probe = load_generator(sweep.spec.model, "cpu", sweep.spec.dtype)
    first = new_actor()
    try:
        info = ray.get(first.info.remote())
    except RayActorError as e:
        raise RuntimeError(f"a Ray worker could not load model {sweep.spec.model!r} (see the worker error "
                           f"above): {e}") from None
    _unwrap(ray, RayTaskError, lambda: ray.get(first.check.remote()))
    sweep.check_inputs(info["model_sha256"])
    if isinstance(sweep.source, PlaneSource):
        sweep.set_anchors(info["latent_shape"])
    else:
        if probe is not None:  # the driver encodes the images: its copy of the weights must match too
            sweep.check_inputs(probe)
        sweep.prepare(probe)
    return first


def _ray_shards(ray, RayActorError, RayTaskError, sweep: Sweep, actors: list, new_actor, todo: list[int],
                progress: bool, max_attempts: int) -> None:
    """Send the shards ``todo`` to the actors, one at a time each, and write the rows that come back. A worker
    that dies (killed, OOM, lost node) is replaced in ``actors`` (in place) and its shard sent again, at most
    ``max_attempts`` times; an error raised inside a worker is raised here as its cause."""
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
        s, slot = running.pop(done[0])
        try:
            rows = ray.get(done[0])
        except RayActorError as e:  # the worker died: new worker, shard again
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
