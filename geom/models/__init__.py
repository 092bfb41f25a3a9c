"""Models: toy models (``toy``, ``ddpm``, ``vae``), the embedded latent diffusion model ``tiny_ldm`` and
``load_pipeline`` (tiny-ldm or a local Stable Diffusion folder, see ``geom.models.pipeline``), the pretrained
``dcgan-faces`` GAN (``geom.models.dcgan``), the pretrained class-conditional ``omniart-eyes:<eye colour>`` GAN
(``geom.models.omniart``), the one generator type ``Generator`` (``geom.models.base``, with ``find_module``,
``check_generator``, ``module_digest``), and ``load_generator``: the one door to the named generators
(``geom.models.generators``). ``load_model`` / ``LoadedModel`` are deprecated aliases."""
from .base import Generator, ModuleGenerator
from .generators import LoadedModel, load_generator, load_model, register_model
from .pipeline import LatentDiffusion, load_pipeline

__all__ = ["Generator", "LatentDiffusion", "LoadedModel", "ModuleGenerator", "load_generator", "load_model",
           "load_pipeline", "register_model"]
