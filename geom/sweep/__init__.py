"""Resumable descriptor sweeps (psi, nu, delta of Humayun et al. Eq. 4, Def. 3, Def. 1) over many latents.

A sweep = a model spec + a latent source + descriptor settings. The latents are cut into fixed shards of
``shard_size`` consecutive indices; each shard's rows are written to ``OUT/shards/part-NNNNNN.parquet``
atomically (written under a hidden temporary name in the same folder, then renamed), so an interrupted sweep
(Ctrl-C, SIGKILL, a lost machine) is resumed by running the same command again: finished shards are skipped,
half-written temporary files are ignored and removed. The final table has every latent exactly once.
Each shard's SHA-256 is written beside it (``_part-NNNNNN.sha256``) and checked on every read and before a
resume computes anything: a shard damaged from outside (a copy cut short, bytes overwritten) raises
``DamagedPartError`` naming the file (delete it and run the same command again: only that shard is
recomputed). A run holds ``OUT/.lock`` (``geom.chunks.lock_folder``) from start to finish, so a second run on
the same folder is refused with ``FolderLockedError`` naming the holder's pid instead of racing it; the lock
dies with its process (a killed run leaves nothing that blocks its resume), and reading results takes none.
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

No projection (the full Jacobian): ``k=None`` in Python, ``--k none`` on the command line (``--k 0``, the former
spelling, is accepted with a deprecation message); the table's ``k`` column is then ``<NA>`` (nullable ``Int64``).

Model specs: the names of ``geom.models.load_generator`` (``geom.models.generators``, which also holds
``MODELS``, ``register_model``, ``parse_model_name`` and the deprecated ``load_model`` / ``LoadedModel``,
re-exported here; a sweep loads its model with ``load_generator``, once per process): ``dcgan-faces``,
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

Code: ``_spec`` (``SweepSpec``), ``_sources`` (latent sources), ``_compute`` (``ShardComputer``: the descriptors of
a shard, by ``geom.descriptors.describe_batches``), ``_store`` (``Sweep``: the output folder, manifest, content
hashes, shards; ``load_sweep``), ``_executors`` (``run_sweep``: local and Ray), ``_cli`` (``main``, the command
line ``python -m geom.sweep``).
"""
from ..chunks import DamagedPartError, FolderLockedError
from ..models.generators import (MODELS, LoadedModel, check_model_spec, load_generator, load_model, mlp_generator,
                                 parse_model_name, register_model, sd_vae_random)
from ._cli import main
from ._compute import ShardComputer
from ._executors import run_sweep
from ._sources import PlaneSource, parse_source
from ._spec import SweepSpec
from ._store import Sweep, file_digest, folder_digest, load_sweep, model_digest

__all__ = ["SweepSpec", "Sweep", "ShardComputer", "run_sweep", "load_sweep", "main", "model_digest", "file_digest",
           "folder_digest", "parse_source", "PlaneSource", "DamagedPartError", "FolderLockedError",
           # the model registry (geom.models.generators), re-exported for existing callers
           "MODELS", "LoadedModel", "check_model_spec", "load_generator", "load_model", "mlp_generator",
           "parse_model_name", "register_model", "sd_vae_random"]
