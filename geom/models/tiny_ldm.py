"""``tiny-ldm``: a small latent diffusion model with the structure of Stable Diffusion, trained by the
repository on ``geom.shapes`` (Humayun et al. Sec. 3.3 use Stable Diffusion v1.4; this is its CPU-sized
stand-in).

Parts (all diffusers/torch modules):

- ``vae``: ``diffusers.AutoencoderKL``, RGB ``(B, 3, 32, 32)`` in ``[-1, 1]`` <-> latent ``(B, 4, 8, 8)``
  (1/4 resolution); latents are multiplied by ``vae.config.scaling_factor`` (``1 / std`` of the training
  latents, as SD's 0.18215) before diffusion.
- ``text_encoder``: ``PromptEncoder``, a word-level prompt encoder defined here (vocabulary of
  ``geom.shapes.vocabulary()``, embeddings + learned positions + a 2-layer pre-norm transformer);
  ``(B, L=8) token ids -> (B, 8, 64)`` embeddings. The empty prompt ``""`` is the unconditional branch.
- ``unet``: ``diffusers.UNet2DConditionModel`` with cross-attention to the prompt embeddings, predicting
  the noise (epsilon) of the DDPM forward process (Ho et al. 2020) with SD's ``scaled_linear`` betas.
- ``scheduler``: ``diffusers.DDIMScheduler`` configuration (SD v1 settings) used for sampling.

Training (``python -m geom.models.tiny_ldm train``): stage 1 trains the VAE (L1 + MSE reconstruction +
small KL), stage 2 encodes the data set once and trains UNet + prompt encoder with the DDPM epsilon loss,
prompt dropout ``p_uncond`` (classifier-free guidance, Ho & Salimans 2022) and an EMA of the weights.
Checkpoints for resuming go to ``OUT/runs/`` (git-ignored); the final folder ``OUT/`` holds ``vae/``,
``unet/``, ``text_encoder/`` (config.json + safetensors), ``scheduler/scheduler_config.json``,
``training_config.json`` (arguments, losses, timings) and ``SHA256SUMS``.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from .. import shapes
from ..paths import CHECKPOINTS, atomic_write, file_sha256, resolve

DEFAULT_DIR = CHECKPOINTS / "tiny-ldm"
PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"


# --------------------------------------------------------------------------------------------- prompt encoder
class PromptEncoder(ModelMixin, ConfigMixin):
    """Word-level prompt encoder: ``tokenize(list[str]) -> (B, max_length)`` ids, ``forward(ids) ->
    (B, max_length, hidden_size)``. Token 0 is padding, 1 a begin token (always first, so the empty
    prompt is ``[BOS, PAD, ...]``), 2 the unknown word; words are lower-cased and split on whitespace
    (punctuation removed). Like CLIP in SD, no attention mask: padding positions carry embeddings too."""

    @register_to_config
    def __init__(self, vocab: list[str] = (), max_length: int = 8, hidden_size: int = 64, num_layers: int = 2,
                 num_heads: int = 4, ff_size: int = 128):
        super().__init__()
        self.tokens = [PAD, BOS, UNK, *vocab]
        self.index = {w: i for i, w in enumerate(self.tokens)}
        self.embed = nn.Embedding(len(self.tokens), hidden_size)
        self.pos = nn.Parameter(torch.randn(max_length, hidden_size) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, ff_size, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)

    def words(self, prompt: str) -> list[str]:
        return re.sub(r"[^\w\s]", " ", prompt.lower()).split()

    def tokenize(self, prompts: list[str]) -> Tensor:
        """``(B, max_length)`` int64 ids; too long a prompt raises. Words outside the vocabulary map to
        ``<unk>`` (an embedding the model never saw in training) with a warning naming them."""
        if isinstance(prompts, str):
            raise TypeError("tokenize takes a list of prompts, got a single string")
        L = self.config.max_length
        ids = torch.zeros(len(prompts), L, dtype=torch.long)
        unknown = []
        for i, p in enumerate(prompts):
            w = self.words(p)
            if len(w) > L - 1:
                raise ValueError(f"prompt {p!r} has {len(w)} words; tiny-ldm takes at most {L - 1}")
            unknown += [x for x in w if x not in self.index]
            ids[i, 0] = self.index[BOS]
            ids[i, 1:1 + len(w)] = torch.tensor([self.index.get(x, self.index[UNK]) for x in w], dtype=torch.long)
        if unknown:
            warnings.warn(f"words not in the tiny-ldm vocabulary map to <unk>: {sorted(set(unknown))} "
                          f"(known words: geom.shapes.vocabulary())", UserWarning, stacklevel=2)
        return ids

    def forward(self, input_ids: Tensor) -> Tensor:
        h = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        return self.norm(self.layers(h))


# --------------------------------------------------------------------------------------------- builders
@dataclass
class TrainConfig:
    """All settings of one training run (written to ``training_config.json``)."""
    seed: int = 0
    size: int = 32
    n_per_combo: int = 30
    copies: int = 100
    vae_channels: tuple[int, ...] = (16, 32, 32)
    vae_steps: int = 700
    vae_batch: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6
    unet_channels: tuple[int, ...] = (32, 64)
    text_hidden: int = 64
    unet_steps: int = 1400
    unet_batch: int = 64
    unet_lr: float = 1e-3
    p_uncond: float = 0.1
    ema_decay: float = 0.995
    threads: int = 2
    checkpoint_every: int = 100


def build_vae(cfg: TrainConfig) -> AutoencoderKL:
    n = len(cfg.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.vae_channels),
                         layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=cfg.size,
                         scaling_factor=1.0)


def build_unet(cfg: TrainConfig, latent_size: int) -> UNet2DConditionModel:
    n = len(cfg.unet_channels)
    return UNet2DConditionModel(sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=tuple(cfg.unet_channels),
                                down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
                                cross_attention_dim=cfg.text_hidden, attention_head_dim=8, norm_num_groups=16)


def build_scheduler() -> DDIMScheduler:
    """SD v1's noise schedule (1000 steps, scaled_linear 0.00085..0.012, epsilon prediction)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


# --------------------------------------------------------------------------------------------- training
def _log(msg: str, fh, progress: bool = True) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    if progress:
        print(line, flush=True)
    if fh is not None:
        fh.write(line + "\n")
        fh.flush()


def _rate_eta(t0: float, step0: int, step: int, total: int) -> str:
    """``"<s/step> s/step eta <min> min"`` after finishing 0-based ``step`` of ``total`` (resumed at ``step0``)."""
    rate = (time.time() - t0) / (step + 1 - step0)
    return f"{rate:.2f} s/step eta {rate * (total - step - 1) / 60:.1f} min"


def _encode_means(vae: AutoencoderKL, x: Tensor) -> Tensor:
    """Posterior means of the VAE encoder for images ``x`` ``(N, 3, H, W)``, in batches of 256."""
    with torch.no_grad():
        return torch.cat([vae.encode(x[i:i + 256]).latent_dist.mean for i in range(0, len(x), 256)])


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1 - decay)


def write_sha256sums(folder: Path) -> Path:
    """``SHA256SUMS`` (``sha256sum`` format) of every file in ``folder`` except ``runs/`` and itself."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "runs" not in p.relative_to(folder).parts
                   and p.name != "SHA256SUMS")
    out = folder / "SHA256SUMS"
    out.write_text("".join(f"{file_sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in files))
    return out


def verify_sha256sums(folder: Path) -> None:
    """Raise ``ValueError`` naming the first file whose SHA-256 differs from ``SHA256SUMS``."""
    folder = Path(folder)
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        raise FileNotFoundError(f"{sums} is missing")
    for line in sums.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        p = folder / name.strip()
        if not p.exists():
            raise FileNotFoundError(f"{p} (listed in SHA256SUMS) is missing")
        if file_sha256(p) != digest:
            raise ValueError(f"{p} does not match its SHA-256 in SHA256SUMS (corrupted or modified checkpoint)")


def train(out: str | Path = DEFAULT_DIR, cfg: TrainConfig | None = None, progress: bool = True) -> Path:
    """Train ``tiny-ldm`` and write the checkpoint folder ``out`` (see module docs). Resumes from
    ``out/runs/state.pt`` when present. Returns ``out``."""
    cfg = cfg or TrainConfig()
    out = resolve(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    fh = open(runs / "train.log", "a")
    state_path = runs / "state.pt"
    t_start = time.time()

    data = shapes.make_dataset(n_per_combo=cfg.n_per_combo, size=cfg.size, seed=cfg.seed, copies=cfg.copies)
    x_all = shapes.to_model_range(data.images)
    N = len(x_all)
    _log(f"data: {N} images {tuple(x_all.shape[1:])}, {int(data.memorised.sum())} memorised copies", fh, progress)

    g = torch.Generator().manual_seed(cfg.seed)
    vae = build_vae(cfg)
    st = torch.load(state_path, weights_only=False) if state_path.exists() else {"stage": "vae", "step": 0, "log": {}}
    if st.get("vae") is not None:
        vae.load_state_dict(st["vae"])
    hist = st["log"]
    if st["stage"] == "done" and cfg.unet_steps > st["step"]:  # train longer than a finished run
        st["stage"] = "unet"
    if st["stage"] == "unet" and st["step"] < cfg.unet_steps:  # record the lr schedule each segment used
        segs = st.setdefault("segments", [])
        if not segs or segs[-1]["unet_steps"] != cfg.unet_steps:
            segs.append({"from_step": st["step"], "unet_steps": cfg.unet_steps})
    elapsed0 = st.get("elapsed", 0.0)

    def save(**kw):
        st.update(kw, elapsed=elapsed0 + time.time() - t_start, log=hist)
        atomic_write(state_path, lambda tmp: torch.save(st, tmp))

    # ---------------- stage 1: VAE
    if st["stage"] == "vae":
        opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
        if "vae_opt" in st:
            opt.load_state_dict(st["vae_opt"])
        if "rng" in st:
            g.set_state(st["rng"])
        vae.train()
        t0, step0 = time.time(), st["step"]
        for step in range(st["step"], cfg.vae_steps):
            lr = cfg.vae_lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps))
            for pg in opt.param_groups:
                pg["lr"] = lr
            idx = torch.randint(0, N, (cfg.vae_batch,), generator=g)
            x = x_all[idx]
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
            y = vae.decode(z).sample
            rec = F.l1_loss(y, x) + F.mse_loss(y, x)
            kl = post.kl().mean()
            loss = rec + cfg.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            hist.setdefault("vae_rec", []).append(rec.item())
            if (step + 1) % 10 == 0 or step == 0:
                _log(f"vae step {step + 1}/{cfg.vae_steps} rec {np.mean(hist['vae_rec'][-10:]):.4f} "
                     f"kl {kl.item():.1f} {_rate_eta(t0, step0, step, cfg.vae_steps)}", fh, progress)
            if (step + 1) % cfg.checkpoint_every == 0:
                save(stage="vae", step=step + 1, vae=vae.state_dict(), vae_opt=opt.state_dict(), rng=g.get_state())
        vae.eval()
        mu = _encode_means(vae, x_all)
        scale = float(1.0 / mu.std())
        st.pop("vae_opt", None)
        save(stage="unet", step=0, vae=vae.state_dict(), scale=scale, rng=g.get_state())
        _log(f"vae done; latent std {mu.std():.4f} -> scaling_factor {scale:.4f}", fh, progress)
    else:
        mu = None
    vae.eval()
    scale = st["scale"]
    vae.register_to_config(scaling_factor=scale)
    lat = (mu if mu is not None else _encode_means(vae, x_all)) * scale  # encode once per run
    latent_size = lat.shape[-1]

    # ---------------- stage 2: UNet + prompt encoder
    te = PromptEncoder(vocab=shapes.vocabulary(), hidden_size=cfg.text_hidden)
    unet = build_unet(cfg, latent_size)
    sched = build_scheduler()
    acp = sched.alphas_cumprod.float()
    ema_te, ema_unet = PromptEncoder.from_config(te.config), build_unet(cfg, latent_size)
    ema_te.load_state_dict(te.state_dict())
    ema_unet.load_state_dict(unet.state_dict())
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.0)
    if st["stage"] == "unet" and "unet" in st:
        unet.load_state_dict(st["unet"]); te.load_state_dict(st["te"])
        ema_unet.load_state_dict(st["ema_unet"]); ema_te.load_state_dict(st["ema_te"])
        opt.load_state_dict(st["unet_opt"])
    if "rng" in st:
        g.set_state(st["rng"])
    ids_all = te.tokenize(data.prompts)
    ids_empty = te.tokenize([""])[0]

    def unet_state() -> dict:
        return dict(unet=unet.state_dict(), te=te.state_dict(), ema_unet=ema_unet.state_dict(),
                    ema_te=ema_te.state_dict(), unet_opt=opt.state_dict(), rng=g.get_state())

    if st["stage"] == "unet":
        unet.train(); te.train()
        t0, step0 = time.time(), st["step"]
        for step in range(st["step"], cfg.unet_steps):
            lr = cfg.unet_lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.unet_steps)))
            for pg in opt.param_groups:
                pg["lr"] = lr
            idx = torch.randint(0, N, (cfg.unet_batch,), generator=g)
            z0 = lat[idx]
            ids = ids_all[idx].clone()
            drop = torch.rand(cfg.unet_batch, generator=g) < cfg.p_uncond
            ids[drop] = ids_empty
            t = torch.randint(0, sched.config.num_train_timesteps, (cfg.unet_batch,), generator=g)
            eps = torch.randn(z0.shape, generator=g)
            a = acp[t].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
            pred = unet(zt, t, encoder_hidden_states=te(ids)).sample
            loss = F.mse_loss(pred, eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            _ema_update(ema_unet, unet, d)
            _ema_update(ema_te, te, d)
            hist.setdefault("unet_loss", []).append(loss.item())
            if (step + 1) % 10 == 0 or step == 0:
                _log(f"unet step {step + 1}/{cfg.unet_steps} loss {np.mean(hist['unet_loss'][-10:]):.4f} "
                     f"{_rate_eta(t0, step0, step, cfg.unet_steps)}", fh, progress)
            if (step + 1) % cfg.checkpoint_every == 0:
                save(stage="unet", step=step + 1, **unet_state())
        save(stage="done", step=cfg.unet_steps, **unet_state())
    else:
        ema_unet.load_state_dict(st["ema_unet"]); ema_te.load_state_dict(st["ema_te"])

    # ---------------- write the diffusers-style folder (EMA weights)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    ema_unet.save_pretrained(out / "unet", safe_serialization=True)
    ema_te.save_pretrained(out / "text_encoder", safe_serialization=True)
    sched.save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "TinyLDM", "vae": ["diffusers", "AutoencoderKL"], "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["geom.models.tiny_ldm", "PromptEncoder"], "scheduler": ["diffusers", "DDIMScheduler"]}, indent=2))
    h = st["log"]
    info = {"config": asdict(cfg), "n_images": N, "n_memorised_copies": int(data.memorised.sum()),
            "memorised_prompts": list(shapes.MEMORISED_PROMPTS),
            "params": {"vae": sum(p.numel() for p in vae.parameters()),
                       "vae_decoder": sum(p.numel() for p in vae.decoder.parameters()) + sum(p.numel() for p in vae.post_quant_conv.parameters()),
                       "unet": sum(p.numel() for p in unet.parameters()),
                       "text_encoder": sum(p.numel() for p in te.parameters())},
            "final_vae_rec_loss_last100": float(np.mean(h.get("vae_rec", [np.nan])[-100:])),
            "final_unet_loss_last100": float(np.mean(h.get("unet_loss", [np.nan])[-100:])),
            "unet_schedule_segments": st.get("segments", []),
            "scaling_factor": scale, "train_seconds": round(st.get("elapsed", 0.0), 1),
            "torch": torch.__version__, "command": "python -m geom.models.tiny_ldm train"}
    (out / "training_config.json").write_text(json.dumps(info, indent=2))
    (runs / "loss_history.json").write_text(json.dumps(h))
    write_sha256sums(out)
    _log(f"wrote {out} ({info['train_seconds']:.0f} s of training)", fh, progress)
    fh.close()
    return out


TRAIN_HELP = {  # one line per TrainConfig field that the CLI exposes
    "seed": "seed of the data set, the initialisation and the training batches",
    "size": "image side in pixels (the latent is size / 4)",
    "n_per_combo": "training images per (shape, colour, background) prompt",
    "copies": "copies of each memorised prompt's single image in the training set",
    "vae_steps": "Adam steps of the VAE stage",
    "vae_batch": "images per VAE batch",
    "vae_lr": "VAE learning rate",
    "kl_weight": "weight of the VAE's KL term",
    "text_hidden": "width of the prompt encoder (the UNet's cross-attention dimension)",
    "unet_steps": "Adam steps of the UNet (denoiser) stage",
    "unet_batch": "latents per UNet batch",
    "unet_lr": "UNet learning rate",
    "p_uncond": "probability of dropping the prompt (classifier-free guidance training)",
    "ema_decay": "decay of the UNet's exponential moving average",
    "threads": "torch CPU threads",
    "checkpoint_every": "steps between resumable checkpoints (OUT/runs/state.pt)",
}


def main(argv: list[str] | None = None) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="python -m geom.models.tiny_ldm", description=__doc__.splitlines()[0],
                                formatter_class=fmt)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train tiny-ldm (resumes from OUT/runs/state.pt)", formatter_class=fmt)
    t.add_argument("--out", default=str(DEFAULT_DIR), help="checkpoint folder (relative: to the repository root)")
    for f in TrainConfig.__dataclass_fields__.values():
        if f.type in ("int", "float"):
            t.add_argument("--" + f.name.replace("_", "-"), type=int if f.type == "int" else float, default=f.default,
                           help=TRAIN_HELP[f.name])
    v = sub.add_parser("verify", help="check a checkpoint folder against its SHA256SUMS", formatter_class=fmt)
    v.add_argument("--out", default=str(DEFAULT_DIR), help="checkpoint folder (relative: to the repository root)")
    a = p.parse_args(argv)
    if a.cmd == "train":
        kw = {k: getattr(a, k) for k in TrainConfig.__dataclass_fields__ if hasattr(a, k)}
        try:
            train(a.out, TrainConfig(**kw))
        except KeyboardInterrupt:
            print(f"tiny_ldm train: interrupted; the last checkpoint (every {a.checkpoint_every} steps) is kept in "
                  f"{resolve(a.out) / 'runs'}. Run the same command again to resume.", file=sys.stderr, flush=True)
            sys.exit(130)
    else:
        verify_sha256sums(resolve(a.out))
        print(f"{a.out}: all files match SHA256SUMS")


if __name__ == "__main__":
    main()
