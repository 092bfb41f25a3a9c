"""geom.trajectories against independent references: scikit-learn's AUROC, scipy's t intervals, a brute-force
level-set loop, closed-form Vendi scores, and the DDIM callback on a tiny randomly initialised pipeline."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from geom import trajectories as tr


# ------------------------------------------------------------------------------------------ AUROC
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    y[:2] = [0, 1]
    s = rng.normal(size=200) + 0.7 * y
    assert tr.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_with_ties_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300).astype(bool)
    s = rng.integers(0, 5, 300).astype(float)  # many ties
    assert tr.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_extremes_and_errors():
    assert tr.auroc([0, 1, 2, 3], [0, 0, 1, 1]) == 1.0
    assert tr.auroc([3, 2, 1, 0], [0, 0, 1, 1]) == 0.0
    assert tr.auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        tr.auroc([1, 2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        tr.auroc([np.nan, 2], [0, 1])
    with pytest.raises(ValueError, match="binary"):
        tr.auroc([1, 2, 3], [0, 1, 2])


# ------------------------------------------------------------------------------------------ intervals
def test_mean_ci_matches_scipy():
    x = np.random.default_rng(0).normal(2.0, 3.0, 17)
    m, lo, hi = tr.mean_ci(x, 0.95)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert m == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)
    assert math.isnan(tr.mean_ci([1.0])[1])


def test_diff_ci_matches_scipy_welch():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 20), rng.normal(0.5, 3, 35)
    d, lo, hi = tr.diff_ci(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(a.mean() - b.mean())
    assert (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_band_groups():
    df = pd.DataFrame(dict(step=[0, 0, 0, 1, 1, 1], g=["a"] * 6, v=[1.0, 2.0, 3.0, 5.0, 5.0, 5.0]))
    b = tr.band(df, "step", "v", by=["g"])
    assert list(b["n"]) == [3, 3]
    assert b["mean"].tolist() == [2.0, 5.0]
    assert b.loc[1, "low"] == b.loc[1, "high"] == 5.0


# ------------------------------------------------------------------------------------------ level sets
@pytest.mark.parametrize("n_levels", [1, 3, 5])
def test_level_sets_match_brute_force(n_levels):
    v = np.random.default_rng(n_levels).normal(size=101)
    lv, edges = tr.level_sets(v, n_levels)
    qs = [np.quantile(v, q) for q in np.linspace(0, 1, n_levels + 1)]
    for i, x in enumerate(v):  # brute force: the last quantile interval [q_l, q_{l+1}) holding x
        expect = n_levels - 1
        for lvl in range(n_levels):
            if qs[lvl] <= x < qs[lvl + 1]:
                expect = lvl
                break
        assert lv[i] == expect
    counts = np.bincount(lv, minlength=n_levels)
    assert counts.sum() == 101 and counts.max() - counts.min() <= 2  # quantile bins are balanced


def test_level_sets_constant_and_ties():
    lv, edges = tr.level_sets(np.ones(10), 4)
    assert (lv == 0).all()
    lv, edges = tr.level_sets(np.r_[np.zeros(8), 1.0, 2.0], 4)  # duplicate quantiles collapse
    assert lv.max() < len(edges) - 1 and lv[-1] == len(edges) - 2


# ------------------------------------------------------------------------------------------ Vendi
def test_vendi_identical_is_one_and_orthogonal_is_n():
    x = np.random.default_rng(0).normal(size=(1, 16))
    assert tr.vendi(np.repeat(x, 7, 0)) == pytest.approx(1.0, abs=1e-9)
    assert tr.vendi(np.eye(5)[:, :]) == pytest.approx(5.0, abs=1e-9)
    assert tr.vendi(np.eye(8)[:6] * np.arange(1, 7)[:, None]) == pytest.approx(6.0, abs=1e-9)  # scale-free


def test_vendi_primal_equals_dual():
    X = np.abs(np.random.default_rng(0).normal(size=(12, 5)))
    Y = np.abs(np.random.default_rng(1).normal(size=(5, 12)))
    from vendi_score import vendi as v
    assert tr.vendi(X) == pytest.approx(v.score_X(X), rel=1e-8)  # d < n: dual path vs n x n kernel
    assert tr.vendi(Y) == pytest.approx(v.score_dual(Y), rel=1e-8)  # d > n: n x n path vs dual


def test_vendi_two_groups_closed_form():
    # m copies of e1 and m copies of e2: eigenvalues (1/2, 1/2) -> Vendi 2
    X = np.r_[np.tile(np.eye(3)[0], (4, 1)), np.tile(np.eye(3)[1], (4, 1))]
    assert tr.vendi(X) == pytest.approx(2.0, abs=1e-9)
    df = tr.vendi_per_level(X, np.r_[np.zeros(4), np.ones(4)])
    assert df["vendi"].tolist() == pytest.approx([1.0, 1.0])
    assert df["n"].tolist() == [4, 4]
    with pytest.raises(ValueError, match="zero"):
        tr.vendi(np.zeros((2, 3)))


def test_vendi_closed_forms_in_both_modes():
    """Friedman & Dieng: VS = exp(H(eig(K / n))) with K(x, x) = 1: one item -> 1, n copies -> 1, n orthogonal -> n."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5))
    u = x / np.linalg.norm(x)
    for normalize, one in ((True, x), (False, u)):
        assert tr.vendi(one, normalize=normalize) == pytest.approx(1.0, abs=1e-12)
        assert tr.vendi(np.repeat(one, 4, 0), normalize=normalize) == pytest.approx(1.0, abs=1e-9)
        assert tr.vendi(np.eye(3, 10), normalize=normalize) == pytest.approx(3.0, abs=1e-9)
    assert tr.vendi(np.r_[x, 3 * x, 0.1 * x]) == pytest.approx(1.0, abs=1e-9)  # scaled copies: one direction
    assert tr.vendi(5 * np.eye(4)) == pytest.approx(4.0, abs=1e-9)


def test_vendi_equals_vendi_score_kernel_on_unit_rows():
    """Unit-norm rows: geom (dual / primal eigenproblem) equals vendi-score's score_K on the kernel built
    entry by entry (vendi_score.vendi.score with k = dot product), for d < n and d > n."""
    from vendi_score import vendi as v
    rng = np.random.default_rng(1)
    for n, d in ((12, 5), (6, 20)):
        X = rng.normal(size=(n, d)) + 0.5
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        ref = v.score(list(U), np.dot)
        assert tr.vendi(U, normalize=False) == pytest.approx(ref, rel=1e-9)
        assert tr.vendi(X, normalize=True) == pytest.approx(ref, rel=1e-9)
        assert 1.0 <= ref <= n


def test_vendi_refuses_kernels_without_unit_diagonal_and_zero_rows():
    with pytest.raises(ValueError, match=r"unit diagonal.*norms in \[2, 2\].*normalize=True"):
        tr.vendi(2 * np.eye(3), normalize=False)  # K(x, x) = 4: the old code returned 0.32, outside [1, 3]
    with pytest.raises(ValueError, match="unit diagonal"):
        tr.vendi(np.r_[np.eye(3)[:2], [[0.0, 0.0, 1.1]]], normalize=False)
    tr.vendi(np.eye(3) * (1 + 1e-7), normalize=False)  # float32-level rounding of unit rows is accepted
    for normalize in (True, False):
        with pytest.raises(ValueError, match=r"rows \[1\] are zero.*no direction"):
            tr.vendi(np.r_[np.eye(3)[:1], np.zeros((1, 3)), np.eye(3)[1:2]], normalize=normalize)
    with pytest.raises(ValueError, match="shape"):
        tr.vendi(np.zeros((0, 3)))


# ------------------------------------------------------------------------------------------ embedding
def test_random_conv_features_deterministic_and_translation_tolerant():
    img = -torch.ones(1, 3, 32, 32)
    img[..., 4:12, 4:12] = 1.0
    moved = torch.roll(img, shifts=(12, 12), dims=(2, 3))
    f = tr.random_conv_features(torch.cat([img, moved, -img]), seed=0)
    assert f.shape == (3, 2 * (3 + 3 * 32))
    np.testing.assert_array_equal(f, tr.random_conv_features(torch.cat([img, moved, -img]), seed=0))
    cos = f @ f.T / np.outer(np.linalg.norm(f, axis=1), np.linalg.norm(f, axis=1))
    px = torch.cat([img, moved]).flatten(1)
    pix_cos = float(torch.nn.functional.cosine_similarity(px[0] + 1, px[1] + 1, dim=0))
    assert cos[0, 1] > 0.95 > pix_cos  # the shifted square is close in features, not in pixels
    assert cos[0, 1] > cos[0, 2]


# ------------------------------------------------------------------------------------------ DDIM callback
@pytest.fixture(scope="module")
def pipe():
    """A randomly initialised tiny latent diffusion pipeline (tiny-ldm structure, no checkpoint needed)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from geom.models.pipeline import LatentDiffusion

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=8)
    unet = UNet2DConditionModel(sample_size=4, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                norm_num_groups=4, attention_head_dim=2)

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(64, 8)

        def tokenize(self, prompts):
            return torch.tensor([[hash(w) % 63 + 1 for w in (p.split() + ["<pad>"] * 3)[:3]] if p else [0, 0, 0]
                                 for p in prompts])

        def forward(self, ids):
            return self.emb(ids)

    sched = DDIMScheduler(num_train_timesteps=100, clip_sample=False, set_alpha_to_one=True)
    p = LatentDiffusion(kind="tiny-ldm", path=None, vae=vae.eval(), unet=unet.eval(), text_encoder=Text().eval(),
                        tokenizer=None, scheduler=sched)
    for m in (vae, unet, p.text_encoder):
        m.requires_grad_(False)
    return p


def test_initial_latents_per_seed(pipe):
    a = tr.initial_latents(pipe, [3, 4])
    b = tr.initial_latents(pipe, [4])
    assert a.shape == (2, *pipe.latent_shape)
    torch.testing.assert_close(a[1:], b)


@pytest.mark.parametrize("at", ["pred_x0", "latents"])
def test_recorder_collects_every_step(pipe, at):
    from geom.diffusion import sample

    steps = 5
    rec = tr.TrajectoryRecorder(at=at)
    seen = []
    res = sample(pipe, ["a red circle", "b"], num_steps=steps, guidance_scale=3.0,
                 latents=tr.initial_latents(pipe, [0, 1]),
                 callback=lambda s: (rec(s), seen.append((s.pred_x0 if at == "pred_x0" else s.latents).clone())))
    rows = rec.rows()
    assert len(rows) == steps * 2 and rec.latents.shape == (steps, 2, *pipe.latent_shape)
    assert rows["step"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert (np.diff(rec.timesteps) < 0).all()
    for i in range(steps):
        torch.testing.assert_close(rec.latents[i], seen[i])
    if at == "latents":
        torch.testing.assert_close(rec.latents[0], res.initial_latents)
    assert (rows["wen"] > 0).all()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_wen_statistic_is_on_noise_predictions_for_every_prediction_type(prediction_type):
    """Gaussian data N(c mu, s^2 I), exact denoiser in any parametrisation: eps_c - eps_u =
    -sqrt(a (1 - a)) mu / (a s^2 + 1 - a) whatever x_t, so the recorded statistic has this closed form at every
    step, for eps, v and x0 models alike (a v or x0 output used as if it were noise would not)."""
    from geom.diffusion import sample
    from test_diffusion import GaussianDenoiser
    pipe = GaussianDenoiser(prediction_type, torch.float64)
    rec = tr.TrajectoryRecorder()
    x_T = torch.randn(2, *pipe.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sample(pipe, ["a", "b"], num_steps=6, guidance_scale=4.0, latents=x_T, callback=rec)
    a = pipe.scheduler.alphas_cumprod[torch.as_tensor(rec.timesteps)].double()
    ref = (a * (1 - a)).sqrt() / (a * pipe.s ** 2 + 1 - a) * pipe.mu.norm()
    torch.testing.assert_close(rec.wen, ref[:, None].expand(6, 2), rtol=1e-9, atol=1e-12)


def test_wen_statistic_reference():
    a, b = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    ref = torch.stack([torch.sqrt(((a[i] - b[i]) ** 2).sum()) for i in range(3)]).double()
    torch.testing.assert_close(tr.wen_statistic(a, b), ref)
    with pytest.raises(ValueError):
        tr.wen_statistic(a, b[:2])


def test_describe_trajectories_shapes_and_wen_score(pipe):
    df, final = tr.describe_trajectories(pipe, ["x", "y", "z"], [0, 1, 2], num_steps=4, guidance_scale=2.0,
                                         every=2, k=8, complexity=True, sample_batch=2)
    assert final.shape == (3, *pipe.latent_shape)
    # one row per step; every=2 of 4 steps: descriptors at steps 0, 2 and the last one (3)
    assert len(df) == 3 * 4 and df.groupby("sample")["step"].apply(list).tolist() == [[0, 1, 2, 3]] * 3
    assert set(df.columns) >= {"sample", "prompt", "seed", "guidance", "step", "timestep", "wen", "psi", "nu", "delta"}
    described = df.dropna(subset=["psi"])
    assert described.groupby("sample")["step"].apply(list).tolist() == [[0, 2, 3]] * 3
    assert np.isfinite(described[["psi", "nu", "delta"]]).all().all()
    assert df["wen"].notna().all()
    ws = tr.wen_score(df, first_steps=2)
    expect = df[df.step.isin([0, 1])].groupby("sample")["wen"].mean()
    pd.testing.assert_series_equal(ws, expect)
    assert tr.described_steps(10, 3).tolist() == [0, 3, 6, 9] and tr.described_steps(5, 3).tolist() == [0, 3, 4]
    # the descriptor of a recorded latent equals geom.describe at that latent
    from geom import describe
    rec = tr.TrajectoryRecorder()
    from geom.diffusion import sample
    sample(pipe, ["x", "y"], num_steps=4, guidance_scale=2.0, latents=tr.initial_latents(pipe, [0, 1]), callback=rec)
    d = describe(pipe.vae_decode, rec.latents[2], k=8, complexity=False, progress=False)
    got = df[df.step == 2].set_index("sample")
    assert got.loc[[0, 1], "psi"].to_numpy() == pytest.approx(d.psi.to_numpy(), rel=1e-4)
    assert got.loc[[0, 1], "nu"].to_numpy() == pytest.approx(d.nu.to_numpy(), rel=1e-4)
