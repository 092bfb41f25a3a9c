"""geom.trajectories: the random-conv embedding, Wen et al.'s statistic against its reference, and the DDIM
callback on a tiny randomly initialised pipeline (the statistics are tests/test_stats.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tol
from geom import trajectories as tr


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
                                         every=2, k=8, complexity=True, sample_batch_size=2)
    assert final.shape == (3, *pipe.latent_shape)
    # one row per step; every=2 of 4 steps: descriptors at steps 0, 2 and the last one (3)
    assert len(df) == 3 * 4 and df.groupby("sample")["step"].apply(list).tolist() == [[0, 1, 2, 3]] * 3
    assert set(df.columns) >= {"sample", "prompt", "seed", "guidance", "step", "timestep", "wen", "psi", "nu", "delta"}
    described = df.dropna(subset=["psi"])
    assert described.groupby("sample")["step"].apply(list).tolist() == [[0, 2, 3]] * 3
    assert np.isfinite(described[["psi", "nu", "delta"]]).all().all()
    assert df["wen"].notna().all()
    ws = tr.wen_score(df, first_steps=2, by="sample")
    expect = df[df.step.isin([0, 1])].groupby("sample")["wen"].mean()
    pd.testing.assert_series_equal(ws, expect)
    per_prompt = tr.wen_score(df)  # the peer's protocol: all steps, one score per prompt
    assert per_prompt.index.tolist() == ["x", "y", "z"]
    np.testing.assert_allclose(per_prompt.to_numpy(), df.groupby("prompt")["wen"].mean().to_numpy(),
                               **tol(torch.float64))
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


# ------------------------------------------------------------------------------------------ Wen et al.'s score
def test_describe_trajectories_old_sample_batch_keyword_warns_and_gives_the_same_rows(pipe):
    """issue 25: ``sample_batch=`` is now ``sample_batch_size=``; the old keyword warns and gives the same table."""
    kw = dict(num_steps=3, guidance_scale=2.0, every=2, k=8, complexity=False, progress=False)
    ref, zr = tr.describe_trajectories(pipe, ["x", "y", "z"], [0, 1, 2], sample_batch_size=2, **kw)
    with pytest.warns(DeprecationWarning, match=r"sample_batch=\.\.\.\) is deprecated: use sample_batch_size="):
        got, zg = tr.describe_trajectories(pipe, ["x", "y", "z"], [0, 1, 2], sample_batch=2, **kw)
    pd.testing.assert_frame_equal(got, ref)
    assert torch.equal(zg, zr)


def wen_table(gens=(4, 4, 2), n_steps=7, seed=0) -> pd.DataFrame:
    """A long (trajectory, step) table of random positive ``wen`` values, prompt ``p{i}`` with ``gens[i]``
    trajectories, rows shuffled (the score must not depend on the row order)."""
    rng = np.random.default_rng(seed)
    rows, sample = [], 0
    for i, g in enumerate(gens):
        for j in range(g):
            level = 1.0 + i + 0.3 * j  # prompts and seeds differ, so per prompt / per trajectory / window all differ
            for t in range(n_steps):
                rows.append(dict(sample=sample, prompt=f"p{i}", seed=j, step=t, wen=level * (2.0 - t / n_steps)
                                 + rng.gamma(2.0, 0.2)))
            sample += 1
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def peer_reference(df: pd.DataFrame, start: int, end: int) -> dict:
    """Wen et al.'s examples/det_mem_viz.ipynb, re-done with plain numpy: per prompt the array
    (generations, steps) of the statistic, sliced ``[:, start:end]``, mean over generations, then over steps."""
    out = {}
    for prompt in sorted(df["prompt"].unique()):
        d = df[df["prompt"] == prompt]
        arr = np.array([d[d["sample"] == s].sort_values("step")["wen"].to_numpy()
                        for s in sorted(d["sample"].unique())])
        out[prompt] = float(np.mean(np.mean(arr[:, start:end], axis=0)))
    return out


@pytest.mark.parametrize("first_steps", [None, 1, 3])
def test_wen_score_per_prompt_is_the_peers_protocol(first_steps):
    df = wen_table()
    got = tr.wen_score(df, first_steps=first_steps)
    ref = peer_reference(df, 0, 7 if first_steps is None else first_steps)
    assert got.index.name == "prompt" and got.index.tolist() == list(ref)
    np.testing.assert_allclose(got.to_numpy(), list(ref.values()), **tol(torch.float64))
    # control: the reference over another window differs, so this check tells the windows apart
    other = peer_reference(df, 0, 2 if first_steps is None else 7)
    assert not np.allclose(got.to_numpy(), list(other.values()), **tol(torch.float64))


def test_wen_score_default_is_all_steps_per_prompt():
    """The default (no arguments) is the peer's: all steps, per prompt; the former default (first step, per
    trajectory) would fail here."""
    df = wen_table()
    got = tr.wen_score(df)
    np.testing.assert_allclose(got.to_numpy(), list(peer_reference(df, 0, 7).values()), **tol(torch.float64))
    old = tr.wen_score(df, first_steps=1, by="sample")
    assert len(old) != len(got)


@pytest.mark.parametrize("first_steps", [None, 1, 4])
def test_wen_score_per_trajectory(first_steps):
    df = wen_table()
    got = tr.wen_score(df, first_steps=first_steps, by="sample")
    n = 7 if first_steps is None else first_steps
    ref = [np.mean([r.wen for r in df.itertuples() if r.sample == s and r.step < n]) for s in range(10)]
    assert got.index.tolist() == list(range(10))
    np.testing.assert_allclose(got.to_numpy(), ref, **tol(torch.float64))
    # control: the per-prompt score is not the per-trajectory one (prompt p0 has 4 different trajectories)
    assert not np.allclose(tr.wen_score(df, first_steps=first_steps).loc["p0"], got.iloc[:4].to_numpy())


def test_wen_score_refuses_bad_input():
    df = wen_table()
    with pytest.raises(ValueError, match="missing"):
        tr.wen_score(df.drop(columns=["prompt"]))
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="first_steps must be None"):
            tr.wen_score(df, first_steps=bad)
    with pytest.raises(ValueError, match="first_steps=None for all steps"):
        tr.wen_score(df, first_steps=8)
    with pytest.raises(ValueError, match="do not have one row at each"):
        tr.wen_score(df[~((df["sample"] == 3) & (df["step"] == 5))])  # one step missing
    with pytest.raises(ValueError, match="do not have one row at each"):
        tr.wen_score(pd.concat([df, df[(df["sample"] == 3) & (df["step"] == 0)]]), first_steps=2)  # a step twice
    nan = df.copy()
    nan.loc[nan.index[0], "wen"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tr.wen_score(nan)
    mixed = df.copy()
    mixed.loc[(mixed["sample"] == 1) & (mixed["step"] == 2), "prompt"] = "p1"
    with pytest.raises(ValueError, match="several 'prompt' values"):
        tr.wen_score(mixed)
    # controls: the complete table, and a missing step outside the window, are accepted
    tr.wen_score(df)
    tr.wen_score(df[~((df["sample"] == 3) & (df["step"] == 5))], first_steps=3)
