"""The shapes data set, the tiny-ldm prompt encoder and training command, and the committed checkpoint:
it loads, reconstructs its training images, and its memorised prompts reproduce their training image
(nearest-neighbour distance to the training set) while normal prompts do not."""
from __future__ import annotations

import json

import warnings

import numpy as np
import pytest
import torch

from geom import diffusion, shapes
from geom.models import load_pipeline
from geom.models.tiny_ldm import DEFAULT_DIR, PromptEncoder, TrainConfig, train, verify_sha256sums

HAVE_CKPT = (DEFAULT_DIR / "SHA256SUMS").exists()
needs_ckpt = pytest.mark.skipif(not HAVE_CKPT, reason="data/checkpoints/tiny-ldm not present")


# ------------------------------------------------------------------------------------------ data
def test_dataset_shapes_determinism_and_memorised_copies():
    a = shapes.make_dataset(n_per_combo=2, copies=3, seed=1)
    b = shapes.make_dataset(n_per_combo=2, copies=3, seed=1)
    c = shapes.make_dataset(n_per_combo=2, copies=3, seed=2)
    n_normal = 2 * len(shapes.SHAPES) * len(shapes.COLOURS) * len(shapes.BACKGROUNDS)
    M = len(shapes.MEMORISED_PROMPTS)
    assert a.images.shape == (n_normal + 3 * M, 3, 32, 32) and a.images.dtype == np.float32
    assert a.images.min() >= 0 and a.images.max() <= 1
    assert len(a.prompts) == len(a) == len(a.meta)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.allclose(a.images[:n_normal], c.images[:n_normal])
    assert a.memorised.sum() == 3 * M
    mem = a.images[a.memorised].reshape(M, 3, -1)
    assert np.all(mem == mem[:, :1])  # copies are identical
    assert np.array_equal(a.images[a.memorised][::3], shapes.memorised_images(seed=1))
    # every normal image is unique (no accidental duplicates)
    flat = a.images[:n_normal].reshape(n_normal, -1)
    assert len(np.unique(flat.round(4), axis=0)) == n_normal
    assert a.prompts[0] == "a red circle on plain" and a.prompts[-1] == shapes.MEMORISED_PROMPTS[-1]
    words = set(shapes.vocabulary())
    assert all(set(p.split()) <= words for p in a.prompts)


def test_render_draws_the_named_shape():
    """A centred circle covers ~pi r^2 pixels, a square 2 r^2 (r the circumradius)."""
    img, p = shapes.render("circle", "white", "plain", 4, seed=0)
    frac = (img.min(axis=1) > 0.55).mean(axis=(1, 2))  # >~half covered by the white shape (plain bg <= 0.35)
    expect = np.pi * p["radius"].to_numpy() ** 2 / 32 ** 2
    np.testing.assert_allclose(frac, expect, rtol=0.1)
    img, p = shapes.render("square", "white", "plain", 4, seed=0)
    frac = (img.min(axis=1) > 0.55).mean(axis=(1, 2))
    np.testing.assert_allclose(frac, 2 * p["radius"].to_numpy() ** 2 / 32 ** 2, rtol=0.1)
    with pytest.raises(ValueError, match="unknown"):
        shapes.render("hexagon", "red", "plain", 1)


def test_nearest_neighbour_against_brute_force():
    rng = np.random.default_rng(0)
    ref = rng.uniform(size=(50, 3, 4, 4)).astype(np.float32)
    q = ref[[3, 7]] + 0.01
    d, i = shapes.nearest_neighbour(q, ref)
    brute = np.sqrt(((q[:, None] - ref[None]) ** 2).reshape(2, 50, -1).mean(-1))
    np.testing.assert_array_equal(i, brute.argmin(1))
    np.testing.assert_allclose(d, brute.min(1), rtol=1e-4)
    assert list(i) == [3, 7]


# ------------------------------------------------------------------------------------------ prompt encoder
def test_prompt_encoder_tokens(tmp_path):
    te = PromptEncoder(vocab=shapes.vocabulary())
    with pytest.warns(UserWarning, match=r"not in the prompt encoder's vocabulary map to <unk>: \['purple'\]"):
        ids = te.tokenize(["a red circle on stripes", "", "A RED, circle! on stripes", "a purple circle"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every word of the training grammar is known: no warning
        te.tokenize([shapes.prompt(c, s, b) for c in shapes.COLOURS for s in shapes.SHAPES for b in shapes.BACKGROUNDS])
        te.tokenize(list(shapes.MEMORISED_PROMPTS))
    assert ids.shape == (4, 8)
    assert ids[1].tolist() == [1] + [0] * 7  # empty prompt: BOS then padding
    assert torch.equal(ids[0], ids[2])  # case and punctuation ignored
    assert ids[3, 2] == 2  # unknown word
    with pytest.raises(ValueError, match="at most 7"):
        te.tokenize(["a b c d e f g h"])
    with pytest.raises(TypeError):
        te.tokenize("a red circle")
    out = te(ids)
    assert out.shape == (4, 8, 64)
    te.save_pretrained(tmp_path / "te")
    te2 = PromptEncoder.from_pretrained(tmp_path / "te")
    torch.testing.assert_close(te2(ids), out)


@pytest.mark.slow
def test_train_command_writes_a_loadable_checkpoint(tmp_path):
    cfg = TrainConfig(n_per_combo=1, copies=2, vae_steps=2, unet_steps=3, vae_batch_size=4, unet_batch_size=4,
                      checkpoint_every=1, threads=1)
    out = train(tmp_path / "ckpt", cfg, progress=False)
    for f in ("vae/config.json", "vae/diffusion_pytorch_model.safetensors", "unet/config.json",
              "unet/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
              "text_encoder/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
              "training_config.json", "SHA256SUMS"):
        assert (out / f).is_file(), f
    info = json.loads((out / "training_config.json").read_text())
    assert info["config"]["unet_steps"] == 3 and info["n_images"] == 240 + 16
    verify_sha256sums(out)
    assert "runs/" not in (out / "SHA256SUMS").read_text()
    p = load_pipeline(out)
    assert p.kind == "tiny-ldm" and p.latent_shape == (4, 8, 8) and p.image_size == (32, 32)
    assert p.scaling_factor == pytest.approx(info["scaling_factor"])
    # resuming a finished run rewrites the same weights
    before = (out / "unet/diffusion_pytorch_model.safetensors").read_bytes()
    train(out, cfg, progress=False)
    assert (out / "unet/diffusion_pytorch_model.safetensors").read_bytes() == before
    # a modified file is caught
    (out / "training_config.json").write_text("{}")
    with pytest.raises(ValueError, match="training_config.json"):
        verify_sha256sums(out)


def _seeded_train(out, cfg, global_seed=5):
    """``train`` with torch's global RNG (the initial weights of tiny-ldm, ``init_seed=None``) seeded with
    ``global_seed`` (torch seeds it at random per process) and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(global_seed)
        return train(out, cfg, progress=False)


def _run_state(folder):
    st = torch.load(folder / "runs" / "state.pt", weights_only=False)
    return {k: v for k, v in st.items() if k not in ("elapsed", "segments")}


def _assert_same_state(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_state(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


@pytest.mark.parametrize("stage,init_seed", [("vae_step", None), ("unet_step", None), ("vae_step", 0)])
def test_a_run_killed_mid_stage_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, stage, init_seed):
    """Interrupted at step 4 of a stage (checkpoint every 2 steps: step 3 is lost and redone), the same command
    again continues from the checkpoint; the final weights, optimiser, RNG and loss history are bit-for-bit
    those of one uninterrupted run (same batches, same noise, same lr schedule: no step lost or repeated).
    ``init_seed=None`` (tiny-ldm's published setting): the UNet's initial weights come from the global RNG, so a
    run killed in the VAE stage resumes to the same weights when the global RNG is seeded as before; with an
    ``init_seed`` (fashion-ldm) the resumed process's global RNG does not matter."""
    from geom.models import ldm_train

    cfg = TrainConfig(n_per_combo=1, copies=2, vae_steps=5, unet_steps=6, vae_batch_size=4, unet_batch_size=4,
                      checkpoint_every=2, threads=1, init_seed=init_seed)
    whole = _seeded_train(tmp_path / "whole", cfg)
    real, calls = getattr(ldm_train, stage), []

    def killed_at_step_4(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(ldm_train, stage, killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        _seeded_train(tmp_path / "resumed", cfg)
    assert _run_state(tmp_path / "resumed")["step"] == 2 and not (tmp_path / "resumed" / "SHA256SUMS").exists()
    monkeypatch.setattr(ldm_train, stage, real)
    # another global RNG state where the resumed run takes nothing from it
    resumed = _seeded_train(tmp_path / "resumed", cfg, 5 if stage == "vae_step" and init_seed is None else 6)
    _assert_same_state(_run_state(whole), _run_state(resumed))
    assert len(_run_state(resumed)["log"]["unet_loss"]) == 6 and len(_run_state(resumed)["log"]["vae_rec"]) == 5
    for sub in ("vae", "unet", "text_encoder"):
        f = f"{sub}/diffusion_pytorch_model.safetensors"
        assert (whole / f).read_bytes() == (resumed / f).read_bytes(), f
    if stage == "vae_step":
        return
    # the check can fail: one more step gives other weights
    longer = _seeded_train(tmp_path / "longer", TrainConfig(**{**cfg.__dict__, "unet_steps": 7}))
    assert (longer / "unet/diffusion_pytorch_model.safetensors").read_bytes() != (
        whole / "unet/diffusion_pytorch_model.safetensors").read_bytes()


# ------------------------------------------------------------------------------------------ committed checkpoint
@pytest.fixture(scope="module")
def tiny():
    return load_pipeline("tiny-ldm", verify=True)


@pytest.fixture(scope="module")
def train_set():
    info = json.loads((DEFAULT_DIR / "training_config.json").read_text())
    c = info["config"]
    return shapes.make_dataset(n_per_combo=c["n_per_combo"], size=c["size"], seed=c["seed"], copies=c["copies"])


@needs_ckpt
def test_checkpoint_small_and_loads(tiny):
    size = sum(p.stat().st_size for p in DEFAULT_DIR.rglob("*") if p.is_file() and "runs" not in p.parts)
    assert size < 8e6
    assert tiny.kind == "tiny-ldm" and tiny.latent_shape == (4, 8, 8) and tiny.image_size == (32, 32)
    emb = tiny.encode_prompt(["a red circle on stripes", ""])
    assert emb.shape == (2, 8, 64)


@needs_ckpt
def test_vae_reconstructs_training_images(tiny, train_set):
    idx = np.random.default_rng(0).choice(len(train_set), 64, replace=False)
    x = shapes.to_model_range(train_set.images[idx])
    with torch.no_grad():
        y = tiny.vae_decode(tiny.vae_encode(x))
    rms = float(((y.clamp(-1, 1) - x) / 2).pow(2).mean().sqrt())  # in [0, 1] units
    assert rms < 0.12, rms
    # latents are scaled to about unit variance, as SD's scaling_factor does
    z = tiny.vae_encode(x)
    assert 0.5 < float(z.std()) < 2.0


# Thresholds from the committed checkpoint (numbers in data/README.md): a wrong model (untrained UNet,
# swapped prompts, a sampler ignoring the prompt) gives hit rate ~0 and ratios ~1 for both groups.
HIT_MIN = 0.75
RATIO_GAP = 0.8
NORMAL_PROMPTS = [shapes.prompt(c, s, b) for c, s, b in
                  zip(["red", "blue", "green", "yellow", "white", "cyan", "magenta", "orange"],
                      ["circle", "square", "star", "triangle", "cross", "diamond", "circle", "star"],
                      ["stripes", "dots", "plain", "checks", "noise", "stripes", "checks", "dots"])]


def memorisation_check(pipe, seeds=(0, 1), steps=25, scale=7.5):
    """Sample every memorised prompt and 8 normal prompts with each seed; nearest and second-nearest
    neighbour (RMS distance per latent entry) of each sample among the VAE latents of the DISTINCT
    training images (the 7,200 normal images + the 8 memorised ones). Returns a dict of arrays."""
    cfg = json.loads((pipe.path / "training_config.json").read_text())["config"]
    uniq = shapes.make_dataset(n_per_combo=cfg["n_per_combo"], size=cfg["size"], seed=cfg["seed"], copies=1)
    with torch.no_grad():
        ref = torch.cat([pipe.vae_encode(shapes.to_model_range(uniq.images[i:i + 500]))
                         for i in range(0, len(uniq), 500)]).flatten(1)
    mem = list(shapes.MEMORISED_PROMPTS)
    prompts = (mem + NORMAL_PROMPTS) * len(seeds)
    lat = torch.cat([diffusion.sample(pipe, mem + NORMAL_PROMPTS, num_steps=steps, guidance_scale=scale,
                                      generator=torch.Generator().manual_seed(s)).latents for s in seeds])
    d = torch.cdist(lat.flatten(1), ref) / ref.shape[1] ** 0.5
    v, i = d.topk(2, largest=False)
    is_mem = np.array([p in mem for p in prompts])
    want = np.array([mem.index(p) if p in mem else -1 for p in prompts])
    got = uniq.meta["memorised_id"].to_numpy()[i[:, 0].numpy()]
    return dict(is_mem=is_mem, want=want, got=got, d1=v[:, 0].numpy(), ratio=(v[:, 0] / v[:, 1]).numpy())


@needs_ckpt
@pytest.mark.slow
def test_memorised_prompts_reproduce_their_image(tiny):
    """Memorised prompts: the sample's nearest training latent is the prompt's own memorised image, and it is
    much closer to it than to any other training image; normal prompts: samples sit between training images
    (nearest ~ second nearest) and never next to a memorised image (Humayun et al. Sec. 3.3.4 ground truth)."""
    r = memorisation_check(tiny)
    m, n = r["is_mem"], ~r["is_mem"]
    hit = (r["got"][m] == r["want"][m]).mean()
    assert hit >= HIT_MIN, r
    assert (r["got"][n] == -1).all(), r
    assert np.median(r["ratio"][n]) > 0.9, r  # normal samples: no training image stands out as their source
    assert np.median(r["ratio"][m]) < RATIO_GAP * np.median(r["ratio"][n]), r
    # control: without guidance (scale 0 = the prompt is ignored) the memorised image is not reproduced
    r0 = memorisation_check(tiny, seeds=(0,), scale=0.0)
    assert (r0["got"][r0["is_mem"]] == r0["want"][r0["is_mem"]]).mean() <= 0.25, r0
    # (the absolute distance d1 does not separate them: samples on plain backgrounds are close to many images)


def test_train_cli_interrupt_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C during training ends with one line naming the kept checkpoint and how to resume, exit code 130."""
    from geom.models import tiny_ldm

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(tiny_ldm, "train", interrupted)
    with pytest.raises(SystemExit) as e:
        tiny_ldm.main(["train", "--out", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 130 and len(err) == 1 and "run the same command again to resume" in err[0].lower()
