"""The per-shard computation: ``ShardComputer`` loads the model once and computes psi, nu, delta of a shard's
latents with ``geom.descriptors``' loop (``projection_and_basis``, ``describe_batches``)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..descriptors import describe_batches, projection_and_basis
from ..jacobian import output_dim
from ..models.base import check_generator
from ..models.generators import as_dtype, load_generator
from ._spec import SweepSpec


class ShardComputer:
    """Holds a loaded model, the output projection and the polytope basis; computes one shard's rows.
    The local executor makes one; a Ray worker (actor) makes one at start-up, so the model loads once."""

    def __init__(self, spec: SweepSpec, device: str | None = None):
        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = as_dtype(spec.dtype)
        self.model = load_generator(spec.model, self.device, self.dtype)
        check_generator(self.model)  # before any forward pass: batch-coupled / stochastic / train mode
        self.E = math.prod(self.model.latent_shape)
        self.projection: Tensor | None = None  # both drawn at the first forward pass, which gives D
        self.basis: Tensor | None = None
        self._ready = False

    def _setup(self, z: Tensor) -> None:
        """Draw the output projection and the polytope basis (``geom.descriptors.projection_and_basis``) once,
        after one forward pass on ``z[:1]`` gives the output dimension ``D``."""
        if self._ready:
            return
        D = output_dim(self.model, z)
        self.projection, self.basis = projection_and_basis(D, self.E, self.spec.k, self.spec.dim, self.spec.seed,
                                                           self.spec.complexity, self.dtype, self.device)
        self._ready = True

    def check(self) -> None:
        """One forward pass on a zero latent: catches a ``k`` larger than the output before any shard."""
        self._setup(torch.zeros(1, *self.model.latent_shape, dtype=self.dtype, device=self.device))

    def describe(self, z: Tensor) -> dict[str, np.ndarray]:
        """psi, nu (and delta) of latents ``z`` ``(n, *latent_shape)``, in batches of ``spec.batch_size``:
        ``geom.descriptors.describe_batches``, the loop of ``geom.describe`` (same numbers, same settings)."""
        z = z.to(device=self.device, dtype=self.dtype)
        self._setup(z)
        out = describe_batches(self.model, z, self.projection, self.basis, self.spec.radius,
                               self.spec.batch_size, self.spec.chunk_size, progress=False)
        del out["n_dropped_sv"]  # not a sweep column: a sweep's rows are index, psi, nu, delta (+ coordinates)
        return out

    def run_shard(self, shard: int, index: np.ndarray, z: Tensor) -> pd.DataFrame:
        """Rows of one shard (without the coordinate columns, which the driver adds)."""
        vals = self.describe(z)
        return pd.DataFrame({"index": index.astype(np.int64), **vals})
