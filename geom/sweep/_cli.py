"""The command line ``python -m geom.sweep`` (``main``)."""
from __future__ import annotations

import argparse
import sys

from .. import paths
from ..chunks import FolderLockedError
from ._executors import run_sweep
from ._spec import SweepSpec
from ._store import SHARD_DIR

DESCRIPTION = "Resumable descriptor sweeps (psi, nu, delta of Humayun et al. Eq. 4, Def. 3, Def. 1) over many latents."


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows every option's default."""


def _projection_k(text: str) -> int | None:
    """``--k``: a projection dimension >= 1, or ``none`` for no projection (``k=None`` of the Python API). The
    former ``--k 0`` still means none, with a deprecation message on stderr."""
    if text.strip().lower() == "none":
        return None
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'none' (no projection), got {text!r}") from None
    if k == 0:
        print("geom.sweep: warning: --k 0 is deprecated; write --k none for no projection", file=sys.stderr)
        return None
    if k < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'none' (no projection), got {k}")
    return k


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geom.sweep", description=DESCRIPTION,
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
    ap.add_argument("--k", type=_projection_k, default=120, metavar="K|none",
                    help="output projection dimension; none: no projection (the full Jacobian)")
    ap.add_argument("--dim", type=int, default=4, help="cross-polytope dimension P for delta")
    ap.add_argument("--radius", type=float, default=1e-5, help="cross-polytope radius for delta")
    ap.add_argument("--seed", type=int, default=0, help="seed of the projection and polytope basis")
    ap.add_argument("--no-complexity", action="store_true", help="skip delta")
    ap.add_argument("--shard-size", type=int, default=64, help="latents per resumable shard (one Parquet file)")
    ap.add_argument("--batch-size", type=int, default=16, help="latents per Jacobian / delta batch")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="VJPs vmapped at once (memory); default: as many as the memory budget holds "
                         "(GEOM_MEMORY_BUDGET, else half the free memory)")
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
    spec = SweepSpec(model=a.model, source=source, k=a.k, dim=a.dim, radius=a.radius, seed=a.seed,
                     complexity=not a.no_complexity, shard_size=a.shard_size, batch_size=a.batch_size,
                     chunk_size=a.chunk_size, dtype=a.dtype, latent_seed=a.latent_seed, anchors=a.anchors)
    if a.check:
        try:
            source = spec.validate()
        except (ValueError, TypeError, FileNotFoundError, NotADirectoryError) as e:
            print(f"geom.sweep: error: {e}", file=sys.stderr)
            return 2
        print(f"geom.sweep: would run {spec.model} on {spec.source} ({source}) -> {paths.resolve(a.out)} "
              f"(k={'none' if spec.k is None else spec.k}, dim={spec.dim}, radius={spec.radius:g}, seed={spec.seed}, "
              f"executor={a.executor})")
        return 0
    try:
        df = run_sweep(spec, a.out, executor=a.executor, address=a.address, workers=a.workers,
                       num_cpus=a.num_cpus, device=a.device, overwrite=a.overwrite, progress=not a.no_progress)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, NotADirectoryError, FolderLockedError) as e:
        print(f"geom.sweep: error: {e}", file=sys.stderr)  # DamagedPartError is a ValueError
        return 2
    except KeyboardInterrupt:
        print(f"geom.sweep: interrupted; the finished shards are kept in {paths.resolve(a.out) / SHARD_DIR}. Run the "
              f"same command again to resume.", file=sys.stderr)
        return 130
    print(f"geom.sweep: {len(df)} rows in {paths.resolve(a.out) / SHARD_DIR}")
    return 0
