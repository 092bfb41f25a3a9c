"""geom.models.load_pipeline on a randomly initialised Stable Diffusion-architecture folder (tiny widths,
CLIP text encoder and BPE tokenizer included), and the DDIM sampler of geom.diffusion against diffusers'
DDIMScheduler on the same model."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import tol, tol_scaled
from geom import diffusion
from geom.models import load_pipeline

PROMPTS = ["a red circle", "a blue square"]


def _write_clip_tokenizer(folder):
    """A tiny CLIP BPE tokenizer: single characters + a few merges, CLIP's special tokens."""
    folder.mkdir(parents=True)
    chars = list("abcdefghijklmnopqrstuvwxyz")
    vocab = {"!": 0}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["r e", "re d</w>", "c i", "b l"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 16, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer"}))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}))
    return len(vocab)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A random SD v1-architecture pipeline with tiny widths: 4-level VAE (1/8 resolution), a 2-level
    cross-attention UNet on 4x4 latents (32x32 images), CLIPTextModel + CLIPTokenizer, PNDM scheduler config."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("sd") / "stable-diffusion-tiny"
    torch.manual_seed(0)  # test code only: the random weights of the fixture
    n_vocab = _write_clip_tokenizer(root / "tokenizer")
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4, sample_size=32).save_pretrained(root / "vae")
    UNet2DConditionModel(sample_size=4, in_channels=4, out_channels=4, layers_per_block=1,
                         block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                         attention_head_dim=4, norm_num_groups=8).save_pretrained(root / "unet")
    CLIPTextModel(CLIPTextConfig(vocab_size=n_vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=16, bos_token_id=n_vocab - 2,
                                 eos_token_id=n_vocab - 1, pad_token_id=n_vocab - 1)).save_pretrained(root / "text_encoder")
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return root


@pytest.fixture(scope="module")
def sd(sd_folder):
    return load_pipeline(str(sd_folder))


def test_sd_loads_with_shapes(sd):
    assert sd.kind == "stable-diffusion"
    assert sd.latent_shape == (4, 4, 4) and sd.image_size == (32, 32) and sd.vae_scale_factor == 8
    assert sd.scaling_factor == pytest.approx(0.18215)
    assert type(sd.scheduler).__name__ == "DDIMScheduler"


def test_sd_encode_prompt_matches_clip(sd):
    emb = sd.encode_prompt(PROMPTS + [""])
    assert emb.shape == (3, 16, 16)
    ids = sd.tokenizer(PROMPTS, padding="max_length", max_length=16, return_tensors="pt").input_ids
    assert ids[0, 0] == sd.tokenizer.bos_token_id  # CLIP layout: BOS, tokens, EOS, padding
    ref = sd.text_encoder(ids).last_hidden_state
    torch.testing.assert_close(emb[:2], ref, **tol(torch.float32))
    assert not torch.allclose(emb[0], emb[1])  # different prompts, different embeddings


def test_sd_vae_roundtrip_shapes_and_decode_matches_diffusers(sd):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    z = sd.vae_encode(x)
    assert z.shape == (2, 4, 4, 4)
    ref = sd.vae.encode(x).latent_dist.mean * 0.18215
    torch.testing.assert_close(z, ref, **tol(torch.float32))
    y = sd.vae_decode(z)
    assert y.shape == (2, 3, 32, 32)
    torch.testing.assert_close(y, sd.vae.decode(z / 0.18215).sample, **tol(torch.float32))


def test_sd_decoder_is_a_generator_for_jacobian(sd):
    from geom.jacobian import jacobian
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    J = jacobian(sd.vae_decode, z, k=6, seed=0)
    assert J.shape == (2, 6, 64) and torch.isfinite(J).all()


def _diffusers_ddim(pipe, prompts, steps, scale, eta, generator):
    """Reference sampler: diffusers' DDIMScheduler.step with the same noise draws."""
    from diffusers import DDIMScheduler
    sch = DDIMScheduler.from_config(pipe.scheduler.config)
    sch.set_timesteps(steps)
    B = len(prompts)
    x = torch.randn((B, *pipe.latent_shape), generator=generator)
    c = pipe.encode_prompt(prompts)
    u = pipe.encode_prompt([""] * B)
    for t in sch.timesteps:
        with torch.no_grad():
            if scale == 1.0:  # the pure conditional path, no unconditional branch at all
                eps = pipe.unet(x, t, encoder_hidden_states=c).sample
            else:
                e_c = pipe.unet(x, t, encoder_hidden_states=c).sample
                e_u = pipe.unet(x, t, encoder_hidden_states=u).sample
                eps = e_u + scale * (e_c - e_u)
        noise = torch.randn(x.shape, generator=generator) if eta > 0 else None
        x = sch.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    return x


@pytest.mark.kernels
@pytest.mark.parametrize("scale,eta", [(1.0, 0.0), (7.5, 0.0), (3.0, 1.0)])
def test_ddim_matches_diffusers_scheduler(sd, scale, eta):
    ref = _diffusers_ddim(sd, PROMPTS, 6, scale, eta, torch.Generator().manual_seed(3))
    out = diffusion.sample(sd, PROMPTS, num_steps=6, guidance_scale=scale, eta=eta,
                           generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.latents, ref, **tol_scaled(ref.dtype, ref))  # 6 float32 UNet steps


def test_ddim_seeded_deterministic_and_callback(sd):
    steps = []
    a = diffusion.sample(sd, PROMPTS, num_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(7),
                         callback=steps.append)
    b = diffusion.sample(sd, PROMPTS, num_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(7))
    c = diffusion.sample(sd, PROMPTS, num_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=0)
    assert not torch.allclose(a.latents, c.latents)
    assert [s.index for s in steps] == [0, 1, 2, 3] and steps[0].timestep == 751 and steps[-1].prev_timestep < 0
    torch.testing.assert_close(steps[0].latents, a.initial_latents)
    torch.testing.assert_close(steps[-1].next_latents, a.latents)
    for s in steps:  # the guided prediction is the documented combination of the two branches
        torch.testing.assert_close(s.eps, s.eps_uncond + 5.0 * (s.eps_cond - s.eps_uncond))
    for s0, s1 in zip(steps[:-1], steps[1:]):
        torch.testing.assert_close(s0.next_latents, s1.latents)


def test_ddim_scale_zero_ignores_prompt(sd):
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    a = diffusion.sample(sd, ["a red circle"], num_steps=3, guidance_scale=0.0, generator=g())
    b = diffusion.sample(sd, ["a blue square"], num_steps=3, guidance_scale=0.0, generator=g())
    torch.testing.assert_close(a.latents, b.latents)


class _StubPipe:
    """predict_noise independent of x: DDIM inversion is then the exact inverse of eta=0 sampling."""
    latent_shape = (4, 3, 3)
    dtype = torch.float64
    device = torch.device("cpu")

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.pattern = torch.randn(1, *self.latent_shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def encode_prompt(self, prompts):
        return torch.tensor([[[float(len(p))]] for p in prompts], dtype=torch.float64)

    def predict_noise(self, x, t, emb):
        return torch.sin(t.double() / 100).view(-1, 1, 1, 1) * self.pattern + 0.01 * emb.view(-1, 1, 1, 1)


def test_ddim_inversion_exact_for_x_independent_noise(sd):
    stub = _StubPipe(sd.scheduler)
    x0 = torch.randn(2, *stub.latent_shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    xT = diffusion.invert(stub, x0, PROMPTS, num_steps=20, guidance_scale=3.0)
    back = diffusion.sample(stub, PROMPTS, num_steps=20, guidance_scale=3.0, latents=xT).latents
    torch.testing.assert_close(back, x0, **tol(torch.float64))
    assert (xT - x0).norm() > 0.5 * x0.norm()  # inversion actually moved the latents


def test_ddim_inversion_consistency_improves_with_steps(sd):
    """eta=0 DDIM on a real (random) UNet: inverting then sampling returns near the start, closer with more steps."""
    x0 = torch.randn(2, *sd.latent_shape, generator=torch.Generator().manual_seed(4))
    err = {}
    for n in (10, 100):
        xT = diffusion.invert(sd, x0, PROMPTS, num_steps=n, guidance_scale=1.0)
        back = diffusion.sample(sd, PROMPTS, num_steps=n, guidance_scale=1.0, latents=xT).latents
        err[n] = float((back - x0).norm() / x0.norm())
    assert err[100] < 0.5 * err[10] and err[100] < 0.3, err


def test_missing_folder_and_files(sd_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pipeline(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="unknown model"):
        load_pipeline("stable-diffusion-xxl")
    broken = tmp_path / "sd"
    shutil.copytree(sd_folder, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(FileNotFoundError, match=r"unet/ weights.*tokenizer/vocab.json") as e:
        load_pipeline(broken)
    assert "vae" not in str(e.value).split("missing:")[1]  # only what is missing is named
    (broken / "text_encoder" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="text_encoder/config.json"):
        load_pipeline(broken)


def test_float64(sd_folder):
    p = load_pipeline(sd_folder, dtype=torch.float64)
    assert next(p.unet.parameters()).dtype == torch.float64
    z = torch.randn(1, *p.latent_shape, dtype=torch.float64)
    assert p.vae_decode(z).dtype == torch.float64
    assert p.encode_prompt(["a red circle"]).dtype == torch.float64


def test_guidance_api_runs_on_the_sd_path(sd):
    """geom.guidance on a Stable Diffusion-architecture pipeline: psi labels of its decoder, the reward model on
    its latents, rho = 0 equal to plain DDIM and rho != 0 moving the samples."""
    from geom import diffusion, guidance

    x0 = torch.randn(3, *sd.latent_shape, generator=torch.Generator().manual_seed(0))
    psi = guidance.psi_labels(sd, x0, k=8, batch_size=2, progress=False)
    assert psi.shape == (3,) and torch.isfinite(psi).all()
    torch.manual_seed(0)
    model = guidance.RewardModel(in_channels=sd.latent_shape[0], n_bins=5, width=16,
                                 num_train_timesteps=sd.scheduler.config.num_train_timesteps).eval()
    kw = dict(num_steps=2, guidance_scale=3.0)
    ref = diffusion.sample(sd, ["a photo"], generator=torch.Generator().manual_seed(1), **kw)
    same = guidance.guided_sample(sd, ["a photo"], model, rho=0.0, generator=torch.Generator().manual_seed(1), **kw)
    moved = guidance.guided_sample(sd, ["a photo"], model, rho=50.0, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(same.latents, ref.latents)
    assert not torch.allclose(moved.latents, ref.latents)


# ------------------------------------------------------------------------------------------ scheduler config
def _tiny_copy(tmp_path, **settings):
    """A copy of the shipped tiny-ldm folder whose scheduler_config.json has ``settings`` (None deletes a key)."""
    from geom.paths import CHECKPOINTS
    folder = tmp_path / "tiny-ldm-copy"
    shutil.copytree(CHECKPOINTS / "tiny-ldm", folder)
    cfg_file = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_file.read_text())
    for k, v in settings.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    cfg_file.write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("settings,match", [
    (dict(thresholding=True), r"thresholding=True \(.*scheduler_config.json\), which geom.diffusion does not implement"),
    (dict(prediction_type="x0"), "prediction_type='x0'"),
    (dict(timestep_spacing="karras"), "timestep_spacing='karras'"),
    (dict(rescale_betas_zero_snr=True, timestep_spacing="trailing"), "rescale_betas_zero_snr=True"),
])
def test_unsupported_scheduler_setting_is_refused_on_load(tmp_path, settings, match):
    with pytest.raises(ValueError, match=match):
        load_pipeline(_tiny_copy(tmp_path, **settings))


def test_scheduler_settings_are_kept_on_load(tmp_path, sd_folder):
    """The folder's prediction_type and clipping reach the sampler; a config that does not state clip_sample
    (SD v1's PNDM config) gets clip_sample=False, not DDIM's default True."""
    p = load_pipeline(_tiny_copy(tmp_path, prediction_type="v_prediction", clip_sample=True, clip_sample_range=2.5,
                                 timestep_spacing="trailing", steps_offset=0))
    c = p.scheduler.config
    assert (c.prediction_type, c.clip_sample, c.clip_sample_range, c.timestep_spacing) == \
        ("v_prediction", True, 2.5, "trailing")
    assert "clip_sample" not in json.loads((sd_folder / "scheduler" / "scheduler_config.json").read_text())
    assert load_pipeline(sd_folder).scheduler.config.clip_sample is False


@pytest.mark.kernels
def test_v_prediction_folder_samples_as_diffusers(tmp_path):
    """A v-prediction config on the tiny-ldm weights: geom's sampler equals diffusers' DDIMScheduler loop (the
    UNet output read as v, not as noise)."""
    p = load_pipeline(_tiny_copy(tmp_path, prediction_type="v_prediction"))
    ref = _diffusers_ddim(p, PROMPTS, 4, 3.0, 0.0, torch.Generator().manual_seed(0))
    out = diffusion.sample(p, PROMPTS, num_steps=4, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.latents, ref, **tol_scaled(ref.dtype, ref))


@pytest.mark.kernels
def test_batched_encode_images_and_decode_latents_equal_the_single_calls(sd):
    """The pipeline's batched helpers (used by the notebooks) equal vae_encode / vae_decode of the whole batch,
    for a batch size that does not divide the count, and return CPU tensors."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, *sd.image_size, generator=g) * 2 - 1
    with torch.no_grad():
        z_ref = sd.vae_encode(x)
        x_ref = sd.vae_decode(z_ref)
    z = sd.encode_images(x, batch_size=2)
    back = sd.decode_latents(z, batch_size=3)
    assert z.device.type == "cpu" and back.dtype == torch.float32 and back.shape == x.shape
    # other batch shapes through the VAE's convolutions: float32 last digits differ (up to 4e-6 on images of
    # magnitude ~2, AMD EPYC), a row of another image by O(1)
    torch.testing.assert_close(z, z_ref.cpu(), **tol_scaled(z_ref.dtype, z_ref))
    torch.testing.assert_close(back, x_ref.float().cpu(), **tol_scaled(x_ref.dtype, x_ref))
    with pytest.raises(AssertionError):  # the tolerance still sees a row of another image
        torch.testing.assert_close(back, x_ref.float().cpu().roll(1, 0), **tol_scaled(x_ref.dtype, x_ref))
