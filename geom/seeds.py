"""Derived random streams, in one place: every seed the package or a notebook derives from a user's seed.

A computation that needs more than one random stream (a projection and a polytope basis, a model's initial
weights and its mini-batches, one stream per trajectory) derives them from the one seed it is given, here and
nowhere else, by name::

    from geom import seeds
    seeds.derive(SEED, "polytope_basis")           # -> SEED + 1, the cross-polytope basis of delta
    seeds.derive(SEED, "06.trajectory", i)          # -> SEED * 1000 + i, trajectory i of notebook 06
    seeds.generator(SEED, "minibatches")            # a torch.Generator seeded with derive(SEED, "minibatches")

The rules below are the integer arithmetic the committed results were produced with (``seed + 1``,
``SEED * 1000 + i``, ...): changing one would change published numbers, so they are kept, documented and
tested, and only routed through this module (issue 25). They are *legacy* rules: offsets can coincide between
streams of different purposes (``polytope_basis`` and ``minibatches`` are both ``seed + 1``), which is harmless
because the two never meet in one computation, but a new stream should not add another offset. A new stream
uses ``spawn(seed, name)``: a ``numpy.random.SeedSequence`` keyed by the seed and the stream's name (NumPy's
recommended way to derive independent streams; O'Neill's PCG seeding), never equal to another name's.
"""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

# name -> (rule, what the stream draws). ``i`` is the stream's index (a trajectory, a draw, a size).
_Rule = Callable[[int, int], int]
LEGACY: dict[str, tuple[_Rule, str]] = {
    # package
    "polytope_basis": (lambda s, i: s + 1, "the cross-polytope basis of delta (geom.complexity.polytope_basis); "
                                           "the Jacobian's output projection uses the seed itself"),
    "minibatches": (lambda s, i: s + 1, "mini-batch draws of a training loop (models.vae, models.ddpm, models.toy); "
                                        "the initial weights use the seed itself"),
    "bundles": (lambda s, i: s + 1, "the held-out bundle draws of geom.fisher.pipeline (the posterior's "
                                    "training uses the seed itself)"),
    "draw": (lambda s, i: s + i, "resampling draw i of a repeated estimate (stats.vendi_trend, "
                                 "polarity's Vendi draws)"),
    # notebooks (their published numbers)
    "03.vae_seed": (lambda s, i: s + i, "03: the VAE of training seed i (SEEDS)"),
    "03.level_sets": (lambda s, i: s + 7, "03: the latents of the generated samples of the level sets"),
    "06.trajectory": (lambda s, i: s * 1000 + i, "06: the initial noise of trajectory i"),
    "06.memorisation": (lambda s, i: s * 1000 + 500 + i, "06: the initial noise of memorisation sample i"),
    "07.sample": (lambda s, i: s * 100_000 + i, "07: the initial noise of sample i"),
    "08.dataset": (lambda s, i: s + 1000, "08: the reward model's synthetic training set"),
    "08.prompt": (lambda s, i: s * 1000 + i, "08: the initial noise of prompt i's seeds"),
    "09.control_pool": (lambda s, i: s + 1, "09: the exact samples of the equal-samples control pool"),
    "10.mcmc": (lambda s, i: s + i, "10: the Monte Carlo pool at lattice size L = i"),
    "10.reference": (lambda s, i: s + 10_000 + i, "10: the long-run reference chain at lattice size L = i"),
    "13.pool": (lambda s, i: s + 1, "13: the pool of latents from the prior"),
    "13.in_distribution": (lambda s, i: s + 2, "13: the in-distribution latents of the OOD test"),
    "15.gaussian": (lambda s, i: s + 7, "15: the Gaussian vectors of the fluctuation prediction"),
}


def derive(seed: int, stream: str, index: int = 0) -> int:
    """The integer seed of ``stream`` (a name of ``LEGACY``) derived from ``seed``, for item ``index``.

    Raises ``ValueError`` for an unknown stream (a new stream uses ``spawn``) or a non-integer seed / index."""
    if stream not in LEGACY:
        raise ValueError(f"unknown seed stream {stream!r}: known are {sorted(LEGACY)}; a new stream should use "
                         "geom.seeds.spawn(seed, name) (independent by construction), not a new offset")
    for name, v in (("seed", seed), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {v!r}")
    return int(LEGACY[stream][0](int(seed), int(index)))


def generator(seed: int, stream: str, index: int = 0, device=None):
    """A ``torch.Generator`` (on ``device``) seeded with ``derive(seed, stream, index)``."""
    import torch

    return torch.Generator(device=device or "cpu").manual_seed(derive(seed, stream, index))


def spawn(seed: int, stream: str) -> np.random.SeedSequence:
    """An independent ``numpy.random.SeedSequence`` for a new named stream: entropy ``seed``, spawn key the
    CRC-32 of the name (stable across runs and machines, unlike ``hash``). ``np.random.default_rng(spawn(...))``
    gives the generator; ``int(spawn(...).generate_state(1)[0])`` a 32-bit seed for torch."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(stream.encode()),))
