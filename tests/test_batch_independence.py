"""Descriptors are per-latent and leave the model untouched (issue 12, kind 1).

For every generator the repository ships: a latent's psi, nu, delta do not depend on the other latents of its
batch nor on ``batch_size`` (reference: the same latent described alone), and ``jacobian``,
``local_complexity`` and ``describe`` leave the state dict bit-for-bit unchanged (every tensor, BatchNorm
buffers included) and every module's training flag as it was. A generator whose output for one latent depends
on its batch companions or on random draws (BatchNorm in training mode or without running statistics, active
dropout, RReLU in training mode, any module left in training mode) is refused by every entry point, before any
forward pass, with an error naming the module.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import geom
from geom import sweep
from geom.jacobian import check_generator, find_module, output_dim
from geom.models import ddpm, toy, vae

pytestmark = pytest.mark.usefixtures("one_thread")

# psi/nu of one latent computed in batches of different sizes: float32 matmuls may sum in another order
# (different BLAS kernels per batch size), so agreement is to float32 rounding, not bitwise
BATCH_TOL = dict(rtol=1e-4, atol=1e-4)


def _tiny_ldm():
    from geom.models import load_pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pipeline("tiny-ldm").vae_decode


def _ddpm_step():
    den = ddpm.Denoiser(d=2, width=16, depth=2, seed=0).eval()
    return ddpm.ReverseStep(den, ddpm.linear_schedule(), 10).eval()


# name -> (generator factory, latent shape, describe settings); all tiny
SHIPPED = {
    "toy-cpwl": (lambda: toy.CPWLGenerator(depth=2, width=12, seed=0).eval(), (2,), dict(k=None, dim=2)),
    "ddpm-reverse-step": (_ddpm_step, (2,), dict(k=None, dim=2)),
    "vae-decoder": (lambda: vae.VAE(D=20, latent=4, width=16, depth=3, seed=0).eval().decoder, (4,),
                    dict(k=8, dim=3)),
    "sweep-mlp": (lambda: sweep.load_generator("mlp:0"), (16,), dict(k=12, dim=4)),
    "tiny-ldm-decoder": (_tiny_ldm, (4, 8, 8), dict(k=6, dim=4)),
    "sweep-sd-vae-random": (lambda: sweep.load_generator("sd-vae-random:1"), (4, 1, 1), dict(k=6, dim=2)),
}
SLOW = {"sweep-sd-vae-random"}  # the Stable Diffusion VAE architecture: ~10 s to build, ~1 s per latent


def _latents(shape, n=5, seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def _snapshot(G):
    m = find_module(G)
    return ({k: v.detach().clone() for k, v in m.state_dict().items()},
            [(n, s.training) for n, s in m.named_modules()])


def _assert_unchanged(G, snap):
    state, modes = snap
    m = find_module(G)
    now = m.state_dict()
    assert now.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(now[k], v), f"{k} changed"
    assert [(n, s.training) for n, s in m.named_modules()] == modes


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SHIPPED],
                ids=list(SHIPPED))
def shipped(request):
    make, shape, kw = SHIPPED[request.param]
    return make(), shape, kw


def test_descriptors_of_a_latent_do_not_depend_on_its_batch(shipped):
    G, shape, kw = shipped
    z = _latents(shape)
    common = dict(radius=0.05, seed=3, progress=False, **kw)
    together = geom.describe(G, z, batch_size=5, **common)
    pairs = geom.describe(G, z, batch_size=2, **common)
    for i in (0, 3):  # the reference: the latent alone, then in a batch of other latents
        alone = geom.describe(G, z[i:i + 1], batch_size=1, **common)
        others = geom.describe(G, torch.cat([_latents(shape, 3, seed=9), z[i:i + 1]]), batch_size=4, **common)
        for df in (together.iloc[[i]], pairs.iloc[[i]], others.iloc[[3]]):
            for col in ("psi", "nu"):
                np.testing.assert_allclose(df[col].to_numpy(), alone[col].to_numpy(), **BATCH_TOL)
            assert df["delta"].item() == alone["delta"].item()
            assert df["n_dropped_sv"].item() == alone["n_dropped_sv"].item()


def test_entry_points_leave_the_model_unchanged(shipped):
    G, shape, kw = shipped
    z = _latents(shape, n=3)
    snap = _snapshot(G)
    geom.jacobian(G, z, k=kw["k"], seed=1)
    _assert_unchanged(G, snap)
    geom.local_complexity(G, z, radius=0.05, dim=kw["dim"], seed=1)
    _assert_unchanged(G, snap)
    geom.describe(G, z, radius=0.05, seed=1, progress=False, **kw)
    _assert_unchanged(G, snap)


# ------------------------------------------------------------------------ generators that must be refused
class DCGAN(nn.Module):
    """DCGAN-like generator (Radford et al. 2016): ConvTranspose2d / BatchNorm2d / ReLU, Tanh output;
    latents (B, 8, 1, 1) -> images (B, 1, 8, 8)."""

    def __init__(self, track_running_stats: bool = True, dropout: float = 0.0, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(8, 16, 4, 1, 0, bias=False), nn.BatchNorm2d(16, track_running_stats=track_running_stats),
            act(), nn.Dropout2d(dropout),
            nn.ConvTranspose2d(16, 1, 4, 2, 1, bias=False), nn.Tanh())
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if p.ndim == 1 else 0.0))

    def forward(self, z):
        return self.net(z)


def _train_mode():  # left as constructed: everything in training mode
    return DCGAN(), "module 'net.1' (BatchNorm2d) is a BatchNorm in training mode"


def _no_running_stats():
    return DCGAN(track_running_stats=False).eval(), "module 'net.1' (BatchNorm2d) is a BatchNorm without running"


def _active_dropout():
    G = DCGAN(dropout=0.3).eval()
    G.net[3].train()
    return G, "module 'net.3' (Dropout2d) is an active dropout layer"


def _rrelu():
    G = DCGAN(act=nn.RReLU).eval()
    G.net[2].train()
    return G, "module 'net.2' (RReLU) is an RReLU in training mode"


def _custom_in_train_mode():
    class DropPath(nn.Module):  # stochastic depth as timm writes it: branches on self.training
        def forward(self, x):
            if not self.training:
                return x
            keep = torch.rand(x.shape[0], 1, 1, 1) > 0.2
            return x * keep / 0.8

    G = DCGAN().eval()
    G.net.insert(2, DropPath())  # a new module: in training mode
    return G, "module 'net.2' (DropPath) in training mode"


REFUSED = {"train-mode": _train_mode, "batchnorm-no-running-stats": _no_running_stats,
           "active-dropout": _active_dropout, "rrelu-train": _rrelu, "custom-train-mode": _custom_in_train_mode}


def _entry_points(G, z, monkeypatch):
    yield "jacobian", lambda: geom.jacobian(G, z)
    yield "output_dim", lambda: output_dim(G, z)
    yield "local_complexity", lambda: geom.local_complexity(G, z, radius=0.05, dim=2)
    yield "describe", lambda: geom.describe(G, z, k=4, radius=0.05, dim=2, progress=False)
    yield "describe-no-delta", lambda: geom.describe(G, z, k=None, complexity=False, progress=False)
    yield "jacobian-of-a-wrapper", lambda: geom.jacobian(geom.with_module(lambda x: G(x), G), z)
    monkeypatch.setitem(sweep.MODELS, "test-refused",
                        lambda arg, device, dtype: sweep.LoadedModel(G=G, latent_shape=(8, 1, 1)))
    yield "sweep", lambda: sweep.ShardComputer(sweep.SweepSpec(model="test-refused", source="gaussian:4"))


@pytest.mark.parametrize("case", list(REFUSED))
def test_batch_coupled_or_stochastic_generators_are_refused_by_every_entry_point(case, monkeypatch):
    G, message = REFUSED[case]()
    z = torch.randn(4, 8, 1, 1, generator=torch.Generator().manual_seed(0))
    snap = _snapshot(G)
    for name, call in _entry_points(G, z, monkeypatch):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            call()
        assert "G.eval()" in str(err.value) or "running statistics" in str(err.value), name
        _assert_unchanged(G, snap)  # no forward pass in training mode, no .eval() on the user's behalf


def test_refused_generators_really_couple_the_batch_or_draw_at_random():
    """The reference for the refusals: each refused generator gives a latent another output in another batch
    (or on another call), so a per-sample Jacobian would be ill-defined."""
    z = torch.randn(4, 8, 1, 1, generator=torch.Generator().manual_seed(0))
    for case, make in REFUSED.items():
        G = make()[0]
        with torch.no_grad():
            torch.manual_seed(0)  # this test owns the global RNG (dropout, RReLU, DropPath draw from it)
            outs = [G(z)[:1]] + [G(z[:1]) for _ in range(10)]
        assert not all(torch.allclose(outs[0], o) for o in outs[1:]), case


def test_per_sample_normalisation_and_plain_callables_are_accepted():
    """InstanceNorm / GroupNorm normalise each sample on its own; a callable with no findable module cannot
    be checked and is the caller's responsibility (documented), so it is not refused."""
    G = nn.Sequential(nn.ConvTranspose2d(8, 4, 4), nn.InstanceNorm2d(4, affine=True), nn.GroupNorm(2, 4),
                      nn.ReLU(), nn.Conv2d(4, 1, 3)).eval()
    check_generator(G)
    assert find_module(G) is G and find_module(geom.with_module(lambda x: G(x), G)) is G
    assert find_module(lambda x: G(x)) is None
    check_generator(lambda x: G(x))  # no module to inspect: accepted
    z = torch.randn(3, 8, 1, 1, generator=torch.Generator().manual_seed(1))
    J = geom.jacobian(G, z)
    J1 = geom.jacobian(G, z[1:2])
    torch.testing.assert_close(J[1:2], J1, **BATCH_TOL)
