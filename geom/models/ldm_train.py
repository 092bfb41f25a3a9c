"""The training of the repository's small latent diffusion models (``tiny-ldm``, ``fashion-ldm``), in short units
that both use (Rombach et al. 2022's two stages on a CPU budget):

- ``LDMConfig``: the settings both models share (each model's config adds its data settings);
- ``LDMData``: a training set, ``images(idx) -> (B, 3, S, S)`` in ``[-1, 1]`` and one prompt per image;
- ``RunState``: the resumable state ``OUT/runs/state.pt`` (stage, step, weights, optimiser, RNG, losses), saved
  every ``checkpoint_every`` steps and every ``checkpoint_minutes``; a killed run resumes at its last save and
  continues exactly as an uninterrupted run (same batches, same weights);
- stage 1, ``train_vae_stage``: the ``AutoencoderKL`` with L1 + MSE reconstruction + ``kl_weight`` x KL;
  ``finish_vae_stage``: the latent scaling factor ``1 / std`` of the posterior means (SD's 0.18215);
- stage 2, ``train_unet_stage``: UNet + prompt encoder with the DDPM epsilon loss (Ho et al. 2020, Eq. 14),
  prompt dropout ``p_uncond`` (classifier-free guidance, Ho & Salimans 2022) and an EMA of the weights
  (``ema_update``);
- ``write_folder``: the diffusers-style checkpoint folder (EMA weights), ``training_config.json`` and
  ``SHA256SUMS``; ``train_ldm`` runs them all.

The draws of a run: every batch, noise, time step and prompt dropout from one ``torch.Generator`` seeded with
``seed``; initial weights, with ``init_seed``, from a forked global RNG seeded from it (the caller's RNG is left as
it was) or, with ``init_seed=None`` (tiny-ldm's published weights were made so), from torch's global RNG as it is.
Torch seeds that at random per process, so an ``init_seed=None`` run is reproducible only when its caller seeds
the global RNG (``torch.manual_seed``) before ``train``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import seeds
from ..deprecation import renamed_fields, renamed_kwargs
from ..paths import atomic_write, file_sha256, resolve


# --------------------------------------------------------------------------------------------- settings, data
# renamed fields (the size names of CONTRIBUTING.md); checkpoints written before the rename record the old names
OLD_FIELDS = {"vae_batch": "vae_batch_size", "unet_batch": "unet_batch_size"}


@renamed_fields(**OLD_FIELDS)
@dataclass
class LDMConfig:
    """The settings of one run that both models share (written to ``training_config.json``)."""
    seed: int = 0
    size: int = 32
    vae_channels: tuple[int, ...] = (16, 32, 32)
    vae_steps: int = 700
    vae_batch_size: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6
    unet_channels: tuple[int, ...] = (32, 64)
    text_hidden: int = 64
    prompt_length: int = 8
    unet_steps: int = 1400
    unet_batch_size: int = 64
    unet_lr: float = 1e-3
    p_uncond: float = 0.1
    ema_decay: float = 0.995
    threads: int = 2
    checkpoint_every: int = 100
    checkpoint_minutes: float = 0.0
    init_seed: int | None = None


@dataclass
class LDMData:
    """A training set of ``n`` images with one prompt each: ``images(idx)`` maps int64 indices ``(B,)`` to
    images ``(B, 3, size, size)`` float32 in ``[-1, 1]``; ``vocab`` the prompt words; ``info`` what
    ``training_config.json`` records about it (counts, memorised prompts)."""
    n: int
    images: Callable[[Tensor], Tensor]
    prompts: list[str]
    vocab: list[str]
    info: dict

    @classmethod
    def from_tensor(cls, x: Tensor, prompts: list[str], vocab: list[str], info: dict) -> "LDMData":
        """A set held in memory: ``x`` ``(N, 3, S, S)`` in ``[-1, 1]``."""
        return cls(len(x), lambda idx: x[idx], list(prompts), list(vocab), dict(info))


# --------------------------------------------------------------------------------------------- builders
def build_vae(cfg: LDMConfig) -> AutoencoderKL:
    """``AutoencoderKL`` RGB ``(B, 3, size, size)`` <-> latents ``(B, 4, size / 2^(n-1), ...)``."""
    n = len(cfg.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.vae_channels),
                         layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=cfg.size,
                         scaling_factor=1.0)


def build_unet(cfg: LDMConfig, latent_size: int) -> UNet2DConditionModel:
    """``UNet2DConditionModel`` with cross-attention (dimension ``text_hidden``) on all but the lowest level."""
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


@contextlib.contextmanager
def init_rng(init_seed: int | None, stage: str):
    """Context for building a stage's modules (``stage``: ``"vae"`` or ``"unet"``): ``init_seed=None`` draws their
    initial weights from torch's global RNG as it is (tiny-ldm's published weights); an int from a forked global
    RNG seeded with ``geom.seeds.spawn(init_seed, "ldm_init." + stage)`` (the caller's RNG is restored after)."""
    if init_seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(int(seeds.spawn(int(init_seed), "ldm_init." + stage).generate_state(1)[0]))
        yield


# --------------------------------------------------------------------------------------------- logging, state
class Logger:
    """Time-stamped lines to ``OUT/runs/train.log`` and, with ``progress``, to the console (above tqdm bars)."""

    def __init__(self, path: Path, progress: bool = True):
        self.fh, self.progress = open(path, "a"), progress

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        if self.progress:
            tqdm.write(line)
        self.fh.write(line + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def rate_eta(t0: float, step0: int, step: int, total: int) -> str:
    """``"<s/step> s/step eta <min> min"`` after finishing 0-based ``step`` of ``total`` (resumed at ``step0``)."""
    rate = (time.time() - t0) / (step + 1 - step0)
    return f"{rate:.2f} s/step eta {rate * (total - step - 1) / 60:.1f} min"


def steps(name: str, start: int, total: int, progress: bool):
    """``range(start, total)`` with a tqdm bar (resumed runs start the bar at ``start``)."""
    return tqdm(range(start, total), desc=name, initial=start, total=total, disable=not progress, mininterval=5)


class RunState:
    """The resumable state of a run in ``runs/state.pt``: a dict with ``stage`` (``"vae"``, ``"unet"``,
    ``"done"``), ``step`` (steps finished in that stage), weights, optimiser and RNG states and ``log`` (loss
    histories). ``save(**kw)`` writes it atomically; ``due(step)`` says whether step ``step`` (0-based, just
    finished) ends a checkpoint interval (``checkpoint_every`` steps or ``checkpoint_minutes`` since the last save)."""

    def __init__(self, runs: Path, cfg: LDMConfig):
        self.path, self.cfg, self.t_start = runs / "state.pt", cfg, time.time()
        self.st = (torch.load(self.path, weights_only=False) if self.path.exists()
                   else {"stage": "vae", "step": 0, "log": {}})
        self.hist = self.st["log"]
        self.elapsed0 = self.st.get("elapsed", 0.0)
        self.last_save = time.time()
        if self.st["stage"] == "done" and cfg.unet_steps > self.st["step"]:  # train longer than a finished run
            self.st["stage"] = "unet"
        if self.st["stage"] == "unet" and self.st["step"] < cfg.unet_steps:  # record each segment's lr schedule
            segs = self.st.setdefault("segments", [])
            if not segs or segs[-1]["unet_steps"] != cfg.unet_steps:
                segs.append({"from_step": self.st["step"], "unet_steps": cfg.unet_steps})

    def save(self, **kw) -> None:
        self.st.update(kw, elapsed=self.elapsed0 + time.time() - self.t_start, log=self.hist)
        atomic_write(self.path, lambda tmp: torch.save(self.st, tmp))
        self.last_save = time.time()

    def due(self, step: int) -> bool:
        minutes = self.cfg.checkpoint_minutes
        return ((step + 1) % self.cfg.checkpoint_every == 0
                or (minutes > 0 and time.time() - self.last_save > 60 * minutes))

    def record(self, key: str, value: float) -> None:
        self.hist.setdefault(key, []).append(value)


# --------------------------------------------------------------------------------------------- stage 1: VAE
@renamed_kwargs(batch="batch_size")
def encode_means(vae: AutoencoderKL, data: LDMData, batch_size: int = 256) -> Tensor:
    """Posterior means ``(N, 4, h, w)`` of the VAE encoder for every image of ``data``, ``batch_size`` at a time."""
    with torch.no_grad():
        return torch.cat([vae.encode(data.images(torch.arange(i, min(i + batch_size, data.n)))).latent_dist.mean
                          for i in range(0, data.n, batch_size)])


def vae_lr(cfg: LDMConfig, step: int) -> float:
    """Linear warm-up over 50 steps, then cosine decay to 0 at ``vae_steps``."""
    return cfg.vae_lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps))


def vae_step(vae: AutoencoderKL, opt, x: Tensor, g: torch.Generator, kl_weight: float) -> tuple[Tensor, Tensor]:
    """One Adam step on images ``x`` ``(B, 3, S, S)``: L1 + MSE of the reconstruction of a posterior sample +
    ``kl_weight`` x KL to N(0, I) (Kingma & Welling 2014). Returns (reconstruction loss, mean KL)."""
    post = vae.encode(x).latent_dist
    z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
    y = vae.decode(z).sample
    rec = F.l1_loss(y, x) + F.mse_loss(y, x)
    kl = post.kl().mean()
    opt.zero_grad(set_to_none=True)
    (rec + kl_weight * kl).backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    opt.step()
    return rec, kl


def train_vae_stage(vae: AutoencoderKL, data: LDMData, cfg: LDMConfig, g: torch.Generator, run: RunState,
                    log: Logger, progress: bool) -> None:
    """Train the VAE from ``run``'s step to ``cfg.vae_steps`` (stage ``"vae"``), checkpointing as ``run.due``."""
    st = run.st
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    if "vae_opt" in st:
        opt.load_state_dict(st["vae_opt"])
    if "rng" in st:
        g.set_state(st["rng"])
    vae.train()
    t0, step0 = time.time(), st["step"]
    for step in steps("vae", st["step"], cfg.vae_steps, progress):
        for pg in opt.param_groups:
            pg["lr"] = vae_lr(cfg, step)
        idx = torch.randint(0, data.n, (cfg.vae_batch_size,), generator=g)
        rec, kl = vae_step(vae, opt, data.images(idx), g, cfg.kl_weight)
        run.record("vae_rec", rec.item())
        if (step + 1) % 10 == 0 or step == 0:
            log(f"vae step {step + 1}/{cfg.vae_steps} rec {np.mean(run.hist['vae_rec'][-10:]):.4f} "
                f"kl {kl.item():.1f} {rate_eta(t0, step0, step, cfg.vae_steps)}")
        if run.due(step):
            run.save(stage="vae", step=step + 1, vae=vae.state_dict(), vae_opt=opt.state_dict(), rng=g.get_state())
    vae.eval()


def finish_vae_stage(vae: AutoencoderKL, data: LDMData, g: torch.Generator, run: RunState, runs: Path,
                     log: Logger) -> Tensor:
    """After stage 1: the scaled latents ``(N, 4, h, w)`` of the training set (posterior means times
    ``scaling_factor = 1 / std``), cached in ``runs/latents.pt``; a run that ends stage 1 here records the
    factor and moves to stage ``"unet"``. Registers the factor in ``vae.config``."""
    vae.eval()
    cache = runs / "latents.pt"
    if run.st["stage"] == "vae":
        mu = encode_means(vae, data)
        scale = float(1.0 / mu.std())
        run.st.pop("vae_opt", None)
        run.save(stage="unet", step=0, vae=vae.state_dict(), scale=scale, rng=g.get_state())
        atomic_write(cache, lambda tmp: torch.save(mu, tmp))
        log(f"vae done; latent std {mu.std():.4f} -> scaling_factor {scale:.4f}")
    else:
        mu = torch.load(cache, weights_only=True) if cache.exists() else encode_means(vae, data)
    vae.register_to_config(scaling_factor=run.st["scale"])
    return mu * run.st["scale"]


# --------------------------------------------------------------------------------------------- stage 2: UNet
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model``, parameter by parameter."""
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1 - decay)


def ema_decay(cfg: LDMConfig, step: int) -> float:
    """The EMA decay at 0-based ``step``: ``min(ema_decay, (1 + step) / (10 + step))`` (a short warm-up)."""
    return min(cfg.ema_decay, (1 + step) / (10 + step))


def unet_lr(cfg: LDMConfig, step: int) -> float:
    """Linear warm-up over 100 steps, then cosine decay to 0.1 x ``unet_lr`` at ``unet_steps``."""
    return cfg.unet_lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.unet_steps)))


class Denoiser:
    """Stage 2's modules: prompt encoder ``te``, ``unet``, their EMA copies, the optimiser of both and the
    noise schedule. Built in a fixed order (the initial weights come from the global RNG in that order)."""

    def __init__(self, cfg: LDMConfig, vocab: list[str], latent_size: int, encoder_class):
        self.te = encoder_class(vocab=list(vocab), hidden_size=cfg.text_hidden, **self._length(cfg))
        self.unet = build_unet(cfg, latent_size)
        self.sched = build_scheduler()
        self.acp = self.sched.alphas_cumprod.float()
        self.ema_te, self.ema_unet = encoder_class.from_config(self.te.config), build_unet(cfg, latent_size)
        self.ema_te.load_state_dict(self.te.state_dict())
        self.ema_unet.load_state_dict(self.unet.state_dict())
        self.params = list(self.unet.parameters()) + list(self.te.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.unet_lr, weight_decay=0.0)

    @staticmethod
    def _length(cfg: LDMConfig) -> dict:  # the default (8) is not passed: tiny-ldm's config.json stays as it was
        return {} if cfg.prompt_length == 8 else {"max_length": cfg.prompt_length}

    def state(self, g: torch.Generator) -> dict:
        return dict(unet=self.unet.state_dict(), te=self.te.state_dict(), ema_unet=self.ema_unet.state_dict(),
                    ema_te=self.ema_te.state_dict(), unet_opt=self.opt.state_dict(), rng=g.get_state())

    def load(self, st: dict) -> None:
        """Weights from a run state: all of them in stage ``"unet"``, the EMA weights of a finished run."""
        if st["stage"] == "unet" and "unet" in st:
            self.unet.load_state_dict(st["unet"]); self.te.load_state_dict(st["te"])
            self.opt.load_state_dict(st["unet_opt"])
        if "ema_unet" in st:
            self.ema_unet.load_state_dict(st["ema_unet"]); self.ema_te.load_state_dict(st["ema_te"])


def unet_step(d: Denoiser, z0: Tensor, ids: Tensor, g: torch.Generator) -> Tensor:
    """One Adam step of the DDPM epsilon loss ``|eps - eps_theta(sqrt(a_t) z0 + sqrt(1 - a_t) eps, t, c)|^2``
    (Ho et al. 2020, Eq. 14) on scaled latents ``z0`` ``(B, 4, h, w)`` with token ids ``ids`` ``(B, L)``;
    ``t ~ U{0..999}``, ``eps ~ N(0, I)`` drawn from ``g``. Returns the loss."""
    t = torch.randint(0, d.sched.config.num_train_timesteps, (len(z0),), generator=g)
    eps = torch.randn(z0.shape, generator=g)
    a = d.acp[t].view(-1, 1, 1, 1)
    zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
    loss = F.mse_loss(d.unet(zt, t, encoder_hidden_states=d.te(ids)).sample, eps)
    d.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(d.params, 1.0)
    d.opt.step()
    return loss


def train_unet_stage(d: Denoiser, lat: Tensor, ids_all: Tensor, cfg: LDMConfig, g: torch.Generator, run: RunState,
                     log: Logger, progress: bool) -> None:
    """Train UNet + prompt encoder from ``run``'s step to ``cfg.unet_steps`` on scaled latents ``lat`` ``(N, 4,
    h, w)`` with token ids ``ids_all`` ``(N, L)``; a fraction ``p_uncond`` of each batch gets the empty prompt."""
    ids_empty = d.te.tokenize([""])[0]
    d.unet.train(); d.te.train()
    t0, step0 = time.time(), run.st["step"]
    for step in steps("unet", run.st["step"], cfg.unet_steps, progress):
        for pg in d.opt.param_groups:
            pg["lr"] = unet_lr(cfg, step)
        idx = torch.randint(0, len(lat), (cfg.unet_batch_size,), generator=g)
        ids = ids_all[idx].clone()
        ids[torch.rand(cfg.unet_batch_size, generator=g) < cfg.p_uncond] = ids_empty
        loss = unet_step(d, lat[idx], ids, g)
        ema_update(d.ema_unet, d.unet, ema_decay(cfg, step))
        ema_update(d.ema_te, d.te, ema_decay(cfg, step))
        run.record("unet_loss", loss.item())
        if (step + 1) % 10 == 0 or step == 0:
            log(f"unet step {step + 1}/{cfg.unet_steps} loss {np.mean(run.hist['unet_loss'][-10:]):.4f} "
                f"{rate_eta(t0, step0, step, cfg.unet_steps)}")
        if run.due(step):
            run.save(stage="unet", step=step + 1, **d.state(g))
    run.save(stage="done", step=cfg.unet_steps, **d.state(g))


# --------------------------------------------------------------------------------------------- the folder
def write_sha256sums(folder: Path) -> Path:
    """``SHA256SUMS`` (``sha256sum`` format) of every file in ``folder`` except ``runs/`` and itself."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "runs" not in p.relative_to(folder).parts
                   and p.name != "SHA256SUMS")
    out = folder / "SHA256SUMS"
    out.write_text("".join(f"{file_sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in files))
    return out


def verify_sha256sums(folder: Path) -> None:
    """Raise ``ValueError`` naming the first file whose SHA-256 differs from ``SHA256SUMS``, ``FileNotFoundError``
    when ``SHA256SUMS`` or a file it lists is missing."""
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
            raise ValueError(f"{p} does not match its SHA-256 in SHA256SUMS (corrupted or modified checkpoint: "
                             f"restore it with `git checkout -- {folder}` or retrain it)")


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def write_folder(out: Path, vae: AutoencoderKL, d: Denoiser, run: RunState, cfg: LDMConfig, data: LDMData,
                 class_name: str, encoder_module: str, command: str) -> dict:
    """The diffusers-style folder ``out`` (``vae/``, ``unet/`` and ``text_encoder/`` with the EMA weights,
    ``scheduler/``, ``model_index.json``), ``training_config.json`` and ``SHA256SUMS``. Returns the info dict."""
    vae.save_pretrained(out / "vae", safe_serialization=True)
    d.ema_unet.save_pretrained(out / "unet", safe_serialization=True)
    d.ema_te.save_pretrained(out / "text_encoder", safe_serialization=True)
    d.sched.save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": class_name, "vae": ["diffusers", "AutoencoderKL"], "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": [encoder_module, "PromptEncoder"], "scheduler": ["diffusers", "DDIMScheduler"]}, indent=2))
    h, st = run.hist, run.st
    info = {"config": asdict(cfg), **data.info,
            "params": {"vae": n_params(vae), "vae_decoder": n_params(vae.decoder) + n_params(vae.post_quant_conv),
                       "unet": n_params(d.unet), "text_encoder": n_params(d.te)},
            "final_vae_rec_loss_last100": float(np.mean(h.get("vae_rec", [np.nan])[-100:])),
            "final_unet_loss_last100": float(np.mean(h.get("unet_loss", [np.nan])[-100:])),
            "unet_schedule_segments": st.get("segments", []),
            "scaling_factor": st["scale"], "train_seconds": round(st.get("elapsed", 0.0), 1),
            "torch": torch.__version__, "command": command}
    (out / "training_config.json").write_text(json.dumps(info, indent=2))
    (out / "runs" / "loss_history.json").write_text(json.dumps(h))
    write_sha256sums(out)
    return info


def train_ldm(out: str | Path, cfg: LDMConfig, data: LDMData, encoder_class, class_name: str, command: str,
              progress: bool = True) -> Path:
    """Train a latent diffusion model on ``data`` and write its checkpoint folder ``out`` (see the module docs);
    resumes from ``out/runs/state.pt`` when present. ``encoder_class``: the prompt encoder (``PromptEncoder``).
    Returns ``out``."""
    out = resolve(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    log = Logger(runs / "train.log", progress)
    log(f"data: {data.n} images, " + ", ".join(f"{k} {v}" for k, v in data.info.items() if isinstance(v, int)))
    g = torch.Generator().manual_seed(cfg.seed)
    with init_rng(cfg.init_seed, "vae"):
        vae = build_vae(cfg)
    run = RunState(runs, cfg)
    if run.st.get("vae") is not None:
        vae.load_state_dict(run.st["vae"])
    if run.st["stage"] == "vae":
        train_vae_stage(vae, data, cfg, g, run, log, progress)
    lat = finish_vae_stage(vae, data, g, run, runs, log)
    with init_rng(cfg.init_seed, "unet"):
        d = Denoiser(cfg, data.vocab, lat.shape[-1], encoder_class)
    d.load(run.st)
    if "rng" in run.st:
        g.set_state(run.st["rng"])
    if run.st["stage"] == "unet":
        train_unet_stage(d, lat, d.te.tokenize(data.prompts), cfg, g, run, log, progress)
    info = write_folder(out, vae, d, run, cfg, data, class_name, encoder_class.__module__, command)
    log(f"wrote {out} ({info['train_seconds']:.0f} s of training)")
    log.close()
    return out


# --------------------------------------------------------------------------------------------- command line
COMMON_HELP = {  # the CLI's help of the LDMConfig fields (a model's TRAIN_HELP adds and overrides)
    "seed": "seed of the training batches, noise, time steps and prompt dropout",
    "size": "image side in pixels (the latent is size / 4)",
    "vae_steps": "Adam steps of the VAE stage",
    "vae_batch_size": "images per VAE batch",
    "vae_lr": "VAE learning rate",
    "kl_weight": "weight of the VAE's KL term",
    "text_hidden": "width of the prompt encoder (the UNet's cross-attention dimension)",
    "prompt_length": "prompt encoder positions: the begin token + at most this - 1 words",
    "unet_steps": "Adam steps of the UNet (denoiser) stage",
    "unet_batch_size": "latents per UNet batch",
    "unet_lr": "UNet learning rate",
    "p_uncond": "probability of dropping the prompt (classifier-free guidance training)",
    "ema_decay": "decay of the UNet's exponential moving average",
    "threads": "torch CPU threads",
    "checkpoint_every": "steps between resumable checkpoints (OUT/runs/state.pt)",
    "checkpoint_minutes": "also checkpoint when this many minutes passed since the last one (0: off)",
}


def train_cli(prog: str, description: str, model: str, cfg_class, help: dict, default_dir: Path,
              train: Callable[[str, LDMConfig], Path], argv: list[str] | None = None) -> None:
    """``PROG train [--out OUT] [--<field> VALUE ...]`` (every int/float field of ``cfg_class`` with its
    ``help``) and ``PROG verify [--out OUT]`` (``verify_sha256sums``). Ctrl-C ends training with one line
    naming the kept checkpoint and how to resume (exit code 130)."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=fmt)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help=f"train {model} (resumes from OUT/runs/state.pt)", formatter_class=fmt)
    t.add_argument("--out", default=str(default_dir), help="checkpoint folder (relative: to the repository root)")
    for f in cfg_class.__dataclass_fields__.values():
        if f.type in ("int", "float"):
            t.add_argument("--" + f.name.replace("_", "-"), type=int if f.type == "int" else float, default=f.default,
                           help=help[f.name])
    v = sub.add_parser("verify", help="check a checkpoint folder against its SHA256SUMS", formatter_class=fmt)
    v.add_argument("--out", default=str(default_dir), help="checkpoint folder (relative: to the repository root)")
    a = p.parse_args(argv)
    if a.cmd == "verify":
        verify_sha256sums(resolve(a.out))
        print(f"{a.out}: all files match SHA256SUMS")
        return
    kw = {k: getattr(a, k) for k in cfg_class.__dataclass_fields__ if hasattr(a, k)}
    try:
        train(a.out, cfg_class(**kw))
    except KeyboardInterrupt:
        print(f"{prog.split()[-1].rsplit('.', 1)[-1]} train: interrupted; the last checkpoint (every "
              f"{a.checkpoint_every} steps) is kept in {resolve(a.out) / 'runs'}. Run the same command again to "
              f"resume.", file=sys.stderr, flush=True)
        sys.exit(130)
