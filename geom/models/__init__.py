"""Models: toy models (``toy``, ``ddpm``, ``vae``), the embedded latent diffusion model ``tiny_ldm`` and
``load_pipeline`` (tiny-ldm or a local Stable Diffusion folder, see ``geom.models.pipeline``), the pretrained
``dcgan-faces`` GAN (``geom.models.dcgan``), the pretrained class-conditional ``omniart-eyes:<eye colour>`` GAN
(``geom.models.omniart``), and ``load_generator``: one registry of generators for the descriptors
(``geom.models.generators``)."""
from .generators import Generator, LoadedModel, load_generator, load_model, register_model
from .pipeline import LatentDiffusion, load_pipeline

__all__ = ["Generator", "LatentDiffusion", "LoadedModel", "load_generator", "load_model", "load_pipeline",
           "register_model"]
