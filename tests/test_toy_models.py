"""Toy models: DDPM forward marginals vs closed form, reverse map, CPWL generator, VAE training records."""
import math

import numpy as np
import pytest
import torch

import geom
from geom.models import ddpm, toy, vae


def test_schedule_abar():
    s = ddpm.linear_schedule(50, 1e-4, 0.2)
    np.testing.assert_allclose(s.abar.numpy(), np.cumprod(1 - np.linspace(1e-4, 0.2, 50)), rtol=1e-12)
    assert float(s.abar[-1]) < 0.01
    with pytest.raises(ValueError):
        ddpm.linear_schedule(10, 0.5, 0.1)


@pytest.mark.parametrize("t", [1, 6, 28, 50])
def test_forward_marginals_match_closed_form(t):
    # iterate the one-step forward chain (Ho et al. Eq. 2) from fixed x0 and compare the empirical marginal of
    # x_t with N(sqrt(abar_t) x0, (1 - abar_t) I) (Eq. 4), and with q_sample's own samples
    s = ddpm.linear_schedule()
    g = torch.Generator().manual_seed(t)
    n = 200_000
    x0 = torch.tensor([[1.5, -0.7]], dtype=torch.float64).expand(n, 2)
    x = x0.clone()
    for step in range(1, t + 1):
        x = ddpm.q_step(s, x, step, torch.randn(n, 2, generator=g, dtype=torch.float64))
    ab = float(s.abar[t - 1])
    mean, var = math.sqrt(ab) * x0[0], 1 - ab
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / n)
    assert torch.all((x.mean(0) - mean).abs() < 5 * se_mean)
    assert torch.all((x.var(0) - var).abs() < 5 * se_var)
    xq = ddpm.q_sample(s, x0, t, torch.randn(n, 2, generator=g, dtype=torch.float64))
    assert torch.all((xq.mean(0) - mean).abs() < 5 * se_mean)
    assert torch.all((xq.var(0) - var).abs() < 5 * se_var)


def test_q_sample_bad_t():
    s = ddpm.linear_schedule()
    with pytest.raises(ValueError, match="1..50"):
        ddpm.q_sample(s, torch.zeros(3, 2), 0, torch.zeros(3, 2))


def test_reverse_step_with_perfect_denoiser_is_posterior_mean():
    # with eps_theta = the true noise of a point mass at 0, mu(x_t) = sqrt(abar_{t-1}) * 0 + ... : for data at
    # the origin, x_t = sqrt(1 - abar_t) eps, so the true eps = x_t / sqrt(1 - abar_t) and
    # mu = x_t (1 - beta_t / (1 - abar_t)) / sqrt(alpha_t) = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
    s = ddpm.linear_schedule()

    class Oracle(torch.nn.Module):
        def forward(self, x, t):
            ab = s.abar.to(x.dtype)[t.long() - 1][:, None]
            return x / (1 - ab).sqrt()

    t = 17
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mu = ddpm.ReverseStep(Oracle(), s, t)(x)
    a, ab, abp = float(s.alphas[t - 1]), float(s.abar[t - 1]), float(s.abar[t - 2])
    torch.testing.assert_close(mu, math.sqrt(a) * (1 - abp) / (1 - ab) * x)


def test_ddpm_trains_and_reverse_map_is_a_generator():
    from geom.datasets import dino
    x = torch.from_numpy(dino())
    model, snaps, losses = ddpm.train_ddpm(x, seed=0, steps=200, batch_size=128, width=32, checkpoints=(50,),
                                           progress=False)
    assert set(snaps) == {50} and np.mean(losses[-50:]) < np.mean(losses[:20])
    G = ddpm.ReverseStep(model, ddpm.linear_schedule(), 6)
    df = geom.describe(G, x[:10], k=None, radius=1e-2, dim=2, progress=False)
    assert list(df.columns) == ["psi", "nu", "delta", "n_dropped_sv"] and len(df) == 10
    assert np.isfinite(df["psi"]).all() and (df["n_dropped_sv"] == 0).all()
    traj = ddpm.sample(model, ddpm.linear_schedule(), 20, seed=0)
    assert sorted(traj) == list(range(51)) and traj[0].shape == (20, 2)


def test_cpwl_generator_fits_bumps_and_is_full_rank():
    G, bumps, losses = toy.train_cpwl(seed=0, steps=300, batch_size=256, progress=False)
    assert losses[-1] < 0.2 * losses[0]
    from geom.partition import partition
    P = partition(G, (-10, 10, -10, 10))
    np.testing.assert_allclose(P.areas.sum(), 400, rtol=1e-9)
    assert P.A.shape == (len(P), 3, 2)


def test_vae_training_records():
    from geom.datasets import digits
    d = digits()
    import geom

    def record(decoder, z):
        assert not decoder.training and z.shape == (16, 8)
        return geom.describe(decoder, z, k=None, radius=1e-2, dim=None, seed=0, progress=False)[["psi", "nu", "delta"]].mean()

    model, rec = vae.train_vae(d["x_train"], d["x_test"], seed=0, steps=60, record_every=30, n_record=16,
                               width=32, record=record, progress=False)
    assert rec["step"].tolist() == [0, 30, 60]
    assert {"psi", "delta", "nu", "loss", "noise_std"} <= set(rec.columns)
    assert np.isfinite(rec[["psi", "nu", "delta"]].to_numpy()).all()
    with torch.no_grad():
        assert model.decoder(torch.zeros(2, 8)).shape == (2, 64)
