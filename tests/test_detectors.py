"""geom.detectors: the per-sample report equals its parts computed independently (the inline computations of
notebooks 05, 06 and 13 it replaces, written out here: cached descriptors, clipped reconstruction error, FLIPD runs
in chunks with shared or per-sample prompt embeddings); the PNG control is the length of the PNG file; rows do not
depend on their batch companions; bad input is named."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import geom
from conftest import tol, tol_scaled
from geom import descriptors, detectors, lid
from geom.models.generators import ModuleGenerator


def png_length_by_hand(img_u8: np.ndarray) -> int:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format="PNG", compress_level=9)
    return len(buf.getvalue())


def test_png_bytes_is_the_png_file_length_and_orders_complexity():
    g = torch.Generator().manual_seed(0)
    flat = torch.zeros(1, 3, 16, 16)
    noise = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    got = detectors.png_bytes(torch.cat([flat, noise]))
    u8 = np.round((noise[0].numpy().transpose(1, 2, 0) + 1) / 2 * 255).astype(np.uint8)
    assert got[1] == png_length_by_hand(u8)
    assert got[0] < got[1]  # a flat image compresses far better than noise
    grey = detectors.png_bytes(torch.rand(2, 8, 8, generator=g), value_range=(0, 1))
    assert grey.shape == (2,) and grey.dtype == np.int64
    with pytest.raises(ValueError, match="images must be"):
        detectors.png_bytes(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        detectors.png_bytes(torch.full((1, 1, 4, 4), float("nan")))


class LinearAE(ModuleGenerator):
    """A linear decoder with a (deliberately inexact) linear encoder: reconstruction error in closed form."""

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3 * 4 * 4), nn.Unflatten(1, (3, 4, 4)))
        for p in net.parameters():
            p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3
        super().__init__("toy-ae", net.double().eval(), (4,), (3, 4, 4))
        self.E = torch.randn(4, 48, generator=g, dtype=torch.float64) * 0.05
        self.encode = lambda x: x.flatten(1) @ self.E.T
        self.eval()


def test_report_equals_its_parts():
    G = LinearAE()
    g = torch.Generator().manual_seed(2)
    images = torch.rand(6, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    df = detectors.report(G, images=images, k=8, radius=0.05, dim=2, seed=3, batch_size=4, progress=False)
    z = G.encode(images)
    ref = geom.describe(G, z, k=8, radius=0.05, dim=2, seed=3, batch_size=4, progress=False)
    pd.testing.assert_frame_equal(df[ref.columns], ref, check_exact=True)  # psi/nu and delta timed apart, same code
    assert (ref["delta"] > 0).any()  # the delta column is exercised, not all zeros
    np.testing.assert_allclose(df["latent_norm"], z.norm(dim=1).numpy(), rtol=1e-12)
    with torch.no_grad():
        np.testing.assert_allclose(df["recon_error"], ((G(z) - images) ** 2).mean((1, 2, 3)).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(df["png_bytes"], detectors.png_bytes(images))
    assert set(df.attrs["seconds_per_sample"]) == {"encode", "psi_nu", "delta", "latent_norm", "decode",
                                                   "recon_error", "png_bytes"}
    # latents alone: the control is computed on the generated images
    dz = detectors.report(G, latents=z, k=8, radius=0.05, dim=2, seed=3, progress=False)
    with torch.no_grad():
        np.testing.assert_array_equal(dz["png_bytes"], detectors.png_bytes(G(z)))
    assert "recon_error" not in dz


def test_report_rows_do_not_depend_on_batch_companions():
    G = LinearAE()
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = detectors.report(G, latents=z, k=8, radius=0.05, dim=2, batch_size=5, progress=False)
    b = detectors.report(G, latents=z[3:4], k=8, radius=0.05, dim=2, batch_size=1, progress=False)
    pd.testing.assert_frame_equal(a.iloc[[3]].reset_index(drop=True), b)


def test_report_names_bad_input():
    G = LinearAE()
    with pytest.raises(ValueError, match="needs latents, images"):
        detectors.report(G)
    gan = ModuleGenerator("gan", nn.Sequential(nn.Linear(4, 48), nn.Unflatten(1, (3, 4, 4))), (4,), (3, 4, 4)).eval()
    with pytest.raises(ValueError, match="no encode"):
        detectors.report(gan, images=torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="same samples"):
        detectors.report(G, latents=torch.zeros(3, 4, dtype=torch.float64), images=torch.zeros(2, 3, 4, 4))


def test_report_cache_dir_is_describe_and_resumes(tmp_path, monkeypatch):
    """``cache_dir``: the descriptors of ``geom.slices.cached_describe`` (what 05 and 13 called inline), equal to
    the uncached report; a second call reads them back (``describe`` is not called again); ``cache_extra`` is
    part of the key."""
    G = LinearAE()
    z = torch.randn(7, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    kw = dict(k=8, radius=0.05, dim=2, seed=3, batch_size=4, progress=False)
    plain = detectors.report(G, z, **kw)
    cached = detectors.report(G, z, cache_dir=tmp_path, **kw)
    pd.testing.assert_frame_equal(cached, plain, check_exact=True)  # chunk of 64 = the same batches of 4
    assert "descriptors" in cached.attrs["seconds_per_sample"]
    (folder,) = list(tmp_path.iterdir())
    assert list(folder.glob("part-*.parquet"))

    def fail(*a, **k):
        raise AssertionError("describe called although the descriptors are cached")

    monkeypatch.setattr(descriptors, "describe", fail)
    again = detectors.report(G, z, cache_dir=tmp_path, **kw)
    pd.testing.assert_frame_equal(again, cached, check_exact=True)
    monkeypatch.undo()
    detectors.report(G, z, cache_dir=tmp_path, cache_extra=(0.5,), **kw)
    assert len(list(tmp_path.iterdir())) == 2  # another decoder (e.g. another scaling_factor): another folder


@pytest.mark.kernels
def test_report_recon_error_clip_output_is_the_clipped_mse():
    """``clip_output``: notebook 05's ``mean((clamp(D(E(x)), -1, 1) - x)^2)``, by hand in numpy float64; without
    it the raw output (notebooks 06 and 13)."""
    G = LinearAE()
    g = torch.Generator().manual_seed(6)
    images = torch.rand(6, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    z = torch.randn(6, 4, generator=g, dtype=torch.float64) * 3
    with torch.no_grad():
        out = G(z).numpy()
    lo, hi = -1.0, 1.0
    assert ((out < lo) | (out > hi)).any()  # the clip matters for these outputs
    x = images.numpy()
    ref_clip = ((np.clip(out, lo, hi) - x) ** 2).reshape(6, -1).mean(1)
    ref_raw = ((out - x) ** 2).reshape(6, -1).mean(1)
    assert not np.allclose(ref_clip, ref_raw)
    kw = dict(signals=["recon_error"], batch_size=4, progress=False)
    got_clip = detectors.report(G, z, images, clip_output=True, **kw)["recon_error"].to_numpy()
    got_raw = detectors.report(G, z, images, **kw)["recon_error"].to_numpy()
    np.testing.assert_allclose(got_clip, ref_clip, **tol(torch.float64))
    np.testing.assert_allclose(got_raw, ref_raw, **tol(torch.float64))
    # a narrower range clips more: the range is the one given
    narrow = detectors.report(G, z, images, clip_output=True, value_range=(-0.5, 0.5), **kw)["recon_error"]
    np.testing.assert_allclose(narrow, ((np.clip(out, -0.5, 0.5) - x) ** 2).reshape(6, -1).mean(1),
                               **tol(torch.float64))


def test_report_encode_argument_is_the_encoder():
    """``encode=``: the round trip of 06 (``pipe.vae_encode`` beside a decoder without ``encode``) equals the
    report of the same decoder carrying that encoder."""
    G = LinearAE()
    bare = ModuleGenerator("bare", G.net, (4,), (3, 4, 4)).eval()
    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 2 - 1
    kw = dict(signals=["recon_error", "latent_norm"], batch_size=2, progress=False)
    a = detectors.report(bare, images=images, encode=G.encode, **kw)
    b = detectors.report(G, images=images, **kw)
    pd.testing.assert_frame_equal(a, b[a.columns], check_exact=True)
    assert list(a.columns) == ["latent_norm", "recon_error"]


def tiny_cond_unet():
    from diffusers import UNet2DConditionModel
    with torch.random.fork_rng():
        torch.manual_seed(0)  # diffusers initialises from the global RNG; forked, the caller's RNG is untouched
        unet = UNet2DConditionModel(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1,
                                    block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=8,
                                    attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    return unet.double().eval()


@pytest.mark.kernels
def test_report_flipd_runs_in_chunks_equal_flipd_point_by_point():
    """Two FLIPD runs (06: the sample's own prompt embedding, one per sample, and the empty prompt, shared),
    evaluated in chunks of ``batch_size``: each point equals ``geom.lid.flipd`` of that point alone with its own
    embedding (brute force, batch size 1), and the shared run equals one ``flipd`` call on all points (the
    inline code of 06); the seed is report's."""
    from diffusers import DDPMScheduler
    unet, sched = tiny_cond_unet(), DDPMScheduler(num_train_timesteps=100)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(5, 2, 8, 8, generator=g, dtype=torch.float64)
    emb = torch.randn(5, 3, 8, generator=g, dtype=torch.float64)   # one per sample
    empty = torch.randn(1, 3, 8, generator=g, dtype=torch.float64)  # shared
    runs = {"flipd_cond": dict(encoder_hidden_states=emb, schedule=sched, probes=4),
            "flipd_uncond": dict(encoder_hidden_states=empty, schedule=sched, probes=4)}
    df = detectors.report(None, x, signals=["flipd"], flipd_model=unet, t0=0.3, flipd_kwargs=runs, seed=2,
                          batch_size=2, progress=False)
    one = [lid.flipd(unet, x[i:i + 1], 0.3, schedule=sched, encoder_hidden_states=emb[i:i + 1], probes=4, seed=2)
           for i in range(5)]
    ref = torch.cat([r.lid for r in one])
    col = lambda c: torch.tensor(df[c].to_numpy())  # noqa: E731
    torch.testing.assert_close(col("flipd_cond"), ref, **tol_scaled(torch.float64, ref))
    torch.testing.assert_close(col("flipd_cond_stderr"), torch.cat([r.stderr for r in one]),
                               **tol_scaled(torch.float64, ref))
    whole = lid.flipd(unet, x, 0.3, schedule=sched, encoder_hidden_states=empty, probes=4, seed=2)
    torch.testing.assert_close(col("flipd_uncond"), whole.lid, **tol_scaled(torch.float64, whole.lid))
    # the embeddings matter (a run that sliced the wrong rows, or shared the first, would be caught above)
    assert (df["flipd_cond"] - df["flipd_uncond"]).abs().max() > 1e-3
    other_seed = lid.flipd(unet, x, 0.3, schedule=sched, encoder_hidden_states=empty, probes=4, seed=0).lid
    assert (other_seed - whole.lid).abs().max() > 1e-6  # so the seed test above can fail
    assert set(df.attrs["seconds_per_sample"]) == {"flipd_cond", "flipd_uncond"}
    lv = df.attrs["flipd"]["flipd_cond"]
    assert lv["timestep"] == whole.level.timestep and lv["sigma"] == whole.level.sigma and lv["probes"] == 4
    assert list(df.columns) == ["flipd_cond", "flipd_cond_stderr", "flipd_uncond", "flipd_uncond_stderr"]


def test_report_signals_select_and_bad_options_are_named():
    G = LinearAE()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    df = detectors.report(G, z, signals=["latent_norm"], progress=False)
    assert list(df.columns) == ["latent_norm"] and set(df.attrs["seconds_per_sample"]) == {"latent_norm"}
    with pytest.raises(ValueError, match="unknown signals"):
        detectors.report(G, z, signals=["psi"], progress=False)
    with pytest.raises(ValueError, match="recon_error needs images"):
        detectors.report(G, z, signals=["recon_error"], progress=False)
    with pytest.raises(ValueError, match="without flipd_model"):
        detectors.report(G, z, flipd_kwargs={"flipd": {}}, progress=False)
    with pytest.raises(TypeError, match="maps a column name"):
        detectors.report(G, z, flipd_model=lambda x, t: x, flipd_kwargs={"probes": 8}, progress=False)
    with pytest.raises(ValueError, match="one per sample"):
        detectors.report(G, z, signals=["flipd"], flipd_model=lambda x, t: x,
                         flipd_kwargs={"f": dict(encoder_hidden_states=torch.zeros(2, 3, 8))}, progress=False)
    with pytest.raises(ValueError, match="overwrite a column"):
        detectors.report(G, z, flipd_model=lambda x, t: x, flipd_kwargs={"psi": {}}, progress=False)
    with pytest.raises(ValueError, match="overwrite a column"):
        detectors.report(G, z, flipd_model=lambda x, t: x, flipd_kwargs={"a": {}, "a_stderr": {}}, progress=False)
    with pytest.raises(ValueError, match="differ in shape"):
        detectors.report(G, z, torch.zeros(3, 48, dtype=torch.float64), signals=["recon_error"], progress=False)


@pytest.mark.slow
def test_report_reproduces_the_committed_baselines_of_05_and_13():
    """The published per-sample baselines that notebooks 05 and 13 now take from ``geom.report``, recomputed from
    the shipped models and data: 05's reconstruction error (``clip_output=True``), latent norm and PNG size of 80
    of its 480 images, 16 of each set (``data/results/05_dataset_geometry_ood/descriptors.parquet``; float32 there,
    float64 here, so a float32 tolerance; the PNG size exactly); 13's latent norms of the 2,000 pool latents
    (``pool.parquet``). The descriptors and FLIPD take the former code path exactly (``test_report_equals_its_parts``,
    ``test_report_cache_dir_is_describe_and_resumes``) and are too slow to recompute here."""
    from geom import datasets
    from geom.models import load_generator, load_pipeline
    from geom.shapes import to_model_range

    committed = pd.read_parquet(geom.paths.RESULTS / "05_dataset_geometry_ood" / "descriptors.parquet")
    pipe = load_pipeline("tiny-ldm")
    H = pipe.image_size[0]
    images = np.concatenate([datasets.id_images(240, size=H, seed=1)[0]]  # the parameters of the committed run
                            + [datasets.ood_images(k, 60, size=H, seed=0) for k in ("photos", "digits", "textures", "medical")])
    rows = np.r_[0:16, 240:256, 300:316, 360:376, 420:436]
    ref = committed.iloc[rows].reset_index(drop=True)
    assert ref["source"].nunique() == 5
    x = to_model_range(images[rows])
    lat = pipe.encode_images(x)
    df = detectors.report(pipe.vae_decode, lat, x, clip_output=True, batch_size=16, progress=False,
                          signals=["latent_norm", "recon_error", "png_bytes"])
    np.testing.assert_array_equal(df["png_bytes"], ref["png_bytes"])
    for c in ("recon_error", "latent_norm"):
        np.testing.assert_allclose(df[c], ref[c], **tol(torch.float32))
    raw = detectors.report(pipe.vae_decode, lat, x, signals=["recon_error"], batch_size=16, progress=False)
    with pytest.raises(AssertionError):  # the committed numbers hold the clipped output: the tolerance sees it
        np.testing.assert_allclose(raw["recon_error"], ref["recon_error"], **tol(torch.float32))

    pool = pd.read_parquet(geom.paths.RESULTS / "13_pretrained_gan" / "pool.parquet")
    G = load_generator("dcgan-faces")
    z = G.sample_latents(len(pool), seed=1).cpu()  # SEED + 1 of the committed run
    got = detectors.report(G, z, signals=["latent_norm"], progress=False)["latent_norm"]
    np.testing.assert_allclose(got, pool["latent_norm"], **tol(torch.float32))


@pytest.mark.kernels
def test_report_loglik_and_ddos_equal_their_functions_point_by_point_and_are_cached(tmp_path, monkeypatch):
    """loglik (one embedding per sample) and ddos (one shared embedding) in chunks of ``batch_size``: each row
    equals geom.likelihood.loglik / geom.reconstruction.partial_diffusion_error of that point alone (brute force),
    with report's seed; with ``cache_dir`` a second call reads the chunks (the functions are not called again) and
    gives the same numbers bit for bit; other settings get another cache folder."""
    from diffusers import DDPMScheduler

    from geom import likelihood, reconstruction
    unet, sched = tiny_cond_unet(), DDPMScheduler(num_train_timesteps=100)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64)
    emb = torch.randn(3, 3, 8, generator=g, dtype=torch.float64)
    empty = torch.randn(1, 3, 8, generator=g, dtype=torch.float64)
    ll = {"loglik": dict(encoder_hidden_states=emb, schedule=sched, num_steps=4, probes=2)}
    dd = dict(encoder_hidden_states=empty, schedule=sched, num_steps=3)
    kw = dict(signals=["loglik", "ddos"], diffusion_model=unet, loglik_kwargs=ll, ddos_steps=[0, 20, 60],
              ddos_kwargs=dd, seed=2, batch_size=2, progress=False)
    df = detectors.report(None, x, cache_dir=tmp_path, **kw)
    assert list(df.columns) == ["loglik", "loglik_stderr", "loglik_bpd", "ddos_t0", "ddos_t20", "ddos_t60"]
    one = [likelihood.loglik(unet, x[i:i + 1], sched, encoder_hidden_states=emb[i:i + 1], num_steps=4, probes=2,
                             seed=2) for i in range(3)]
    ref = torch.cat([r.logp for r in one])
    torch.testing.assert_close(torch.tensor(df["loglik"].to_numpy()), ref, **tol_scaled(torch.float64, ref))
    torch.testing.assert_close(torch.tensor(df["loglik_bpd"].to_numpy()), torch.cat([r.bpd for r in one]),
                               **tol_scaled(torch.float64, ref))
    rec = torch.cat([reconstruction.partial_diffusion_error(unet, x[i:i + 1], [0, 20, 60], sched, seed=2,
                                                            encoder_hidden_states=empty, num_steps=3).errors
                     for i in range(3)])
    torch.testing.assert_close(torch.tensor(df[["ddos_t0", "ddos_t20", "ddos_t60"]].to_numpy()), rec,
                               **tol_scaled(torch.float64, rec))
    assert (df["ddos_t0"] == 0).all() and df.attrs["loglik"]["loglik"]["units"].startswith("nats per latent")
    folders = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert folders == ["ddos", "loglik"]

    def boom(*a, **k):
        raise AssertionError("recomputed instead of read from the cache")
    monkeypatch.setattr(likelihood, "loglik", boom)
    monkeypatch.setattr(reconstruction, "partial_diffusion_error", boom)
    again = detectors.report(None, x, cache_dir=tmp_path, **kw)
    pd.testing.assert_frame_equal(again, df)
    with pytest.raises(AssertionError, match="recomputed"):  # another seed is another key
        detectors.report(None, x, cache_dir=tmp_path, **{**kw, "seed": 3})


def test_report_loglik_and_ddos_bad_options_are_named(tmp_path):
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    acp = torch.cumprod(1 - torch.linspace(1e-4, 0.05, 50, dtype=torch.float64), 0)
    with pytest.raises(ValueError, match="without a diffusion model"):
        detectors.report(None, z, loglik_kwargs={"loglik": {}}, progress=False)
    with pytest.raises(ValueError, match="loglik needs loglik_kwargs"):
        detectors.report(None, z, signals=["loglik"], diffusion_model=lambda x, t: x, progress=False)
    with pytest.raises(TypeError, match="loglik_kwargs maps a column name"):
        detectors.report(None, z, diffusion_model=lambda x, t: x, loglik_kwargs={"probes": 4}, progress=False)
    with pytest.raises(ValueError, match="would overwrite"):
        detectors.report(None, z, diffusion_model=lambda x, t: x, loglik_kwargs={"latent_norm": {}}, progress=False)
    with pytest.raises(ValueError, match="ddos_steps must be"):
        detectors.report(None, z, diffusion_model=lambda x, t: x, ddos_steps=[10, 10], progress=False)
    with pytest.raises(ValueError, match="without ddos_steps"):
        detectors.report(None, z, diffusion_model=lambda x, t: x, ddos_kwargs={"num_steps": 3}, progress=False)
    with pytest.raises(ValueError, match="weights can be hashed"):
        detectors.report(None, z, signals=["ddos"], diffusion_model=lambda x, t: 0 * x, ddos_steps=[5],
                         ddos_kwargs=dict(schedule=acp), cache_dir=tmp_path, progress=False)
    df = detectors.report(None, z, signals=["ddos"], diffusion_model=lambda x, t: 0 * x, ddos_steps=[5],
                          ddos_kwargs=dict(schedule=acp), progress=False)
    assert df.shape == (3, 1) and (df["ddos_t5"] > 0).all()
