"""Derived random streams come from one place (issue 25): ``geom.seeds``. The legacy rules are the arithmetic
the committed results were produced with, written out here independently; no module or notebook derives a seed
by arithmetic of its own."""
from __future__ import annotations

import ast

import numpy as np
import pytest
import torch

from geom import paths, seeds
from geom.complexity import polytope_basis
from geom.jacobian import random_projection

# The published arithmetic of each stream (the reference), at (seed, index).
PUBLISHED = {
    "polytope_basis": lambda s, i: s + 1, "minibatches": lambda s, i: s + 1, "bundles": lambda s, i: s + 1,
    "draw": lambda s, i: s + i, "03.vae_seed": lambda s, i: s + i, "03.level_sets": lambda s, i: s + 7,
    "06.trajectory": lambda s, i: s * 1000 + i, "06.memorisation": lambda s, i: s * 1000 + 500 + i,
    "07.sample": lambda s, i: s * 100_000 + i, "08.dataset": lambda s, i: s + 1000,
    "08.prompt": lambda s, i: s * 1000 + i, "09.control_pool": lambda s, i: s + 1,
    "10.mcmc": lambda s, i: s + i, "10.reference": lambda s, i: s + 10_000 + i, "13.pool": lambda s, i: s + 1,
    "13.in_distribution": lambda s, i: s + 2, "15.gaussian": lambda s, i: s + 7,
}


def test_every_stream_keeps_its_published_arithmetic():
    assert set(seeds.LEGACY) == set(PUBLISHED)
    for name, rule in PUBLISHED.items():
        for s in (0, 3, 12345):
            for i in (0, 1, 7, 64):
                assert seeds.derive(s, name, i) == rule(s, i), (name, s, i)


def test_polytope_basis_is_routed_and_unchanged():
    """The basis of delta is today's ``random_projection(E, dim, seed + 1).T`` (exactly)."""
    for s in (0, 5):
        assert torch.equal(polytope_basis(10, 4, seed=s), random_projection(10, 4, seed=s + 1, dtype=torch.float64).T)


def test_generator_is_seeded_with_the_derived_seed():
    a = torch.rand(5, generator=seeds.generator(3, "minibatches"))
    assert torch.equal(a, torch.rand(5, generator=torch.Generator().manual_seed(4)))


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="spawn"):
        seeds.derive(0, "no-such-stream")
    with pytest.raises(ValueError, match="int"):
        seeds.derive(0.5, "draw")
    with pytest.raises(ValueError, match="int"):
        seeds.derive(0, "draw", True)
    with pytest.raises(ValueError, match="non-negative"):
        seeds.spawn(-1, "x")


def test_spawn_is_stable_and_independent_by_name():
    a = np.random.default_rng(seeds.spawn(0, "new-stream")).random(4)
    assert np.array_equal(a, np.random.default_rng(seeds.spawn(0, "new-stream")).random(4))
    b = np.random.default_rng(seeds.spawn(0, "other-stream")).random(4)
    c = np.random.default_rng(seeds.spawn(1, "new-stream")).random(4)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # the name's key is CRC-32 (stable across processes), not Python's salted hash
    import zlib
    assert seeds.spawn(0, "new-stream").spawn_key == (zlib.crc32(b"new-stream"),)


def _seed_arithmetic(path):
    """(line, text) of every +, -, * with an operand named seed / SEED (or int(seed)) in ``path``."""
    def is_seed(x):
        if isinstance(x, ast.Call) and getattr(x.func, "id", None) == "int" and x.args:
            x = x.args[0]
        return isinstance(x, ast.Name) and x.id in ("seed", "SEED")
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub, ast.Mult)) and (
                is_seed(n.left) or is_seed(n.right)):
            yield n.lineno, ast.unparse(n)


def test_no_seed_arithmetic_outside_geom_seeds():
    files = [p for p in sorted((paths.ROOT / "geom").rglob("*.py")) if p.name != "seeds.py"]
    files += sorted((paths.ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    found = [f"{p.relative_to(paths.ROOT)}:{ln}: {txt}" for p in files for ln, txt in _seed_arithmetic(p)]
    assert not found, ("derive seeds with geom.seeds.derive(seed, name, index) (or spawn for a new stream), "
                       "not by arithmetic:\n  " + "\n  ".join(found))


def test_the_check_sees_arithmetic(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("a = seed + 1\nb = int(seed) + 1\nc = SEED * 1000 + i\nd = N_SEEDS * 2\n")
    assert [ln for ln, _ in _seed_arithmetic(p)] == [1, 2, 3]
