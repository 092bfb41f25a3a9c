"""Models: toy models (``toy``, ``ddpm``, ``vae``), the embedded latent diffusion model ``tiny_ldm`` and
``load_pipeline`` (tiny-ldm or a local Stable Diffusion folder, see ``geom.models.pipeline``)."""
from .pipeline import LatentDiffusion, load_pipeline

__all__ = ["LatentDiffusion", "load_pipeline"]
