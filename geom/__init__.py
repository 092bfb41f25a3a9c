"""geom: local geometry of generative models.

Descriptors (Humayun et al., "Understanding the Local Geometry of Generative Model Manifolds"):
``random_projection``, ``jacobian``, ``singular_values``, ``local_scaling`` (psi), ``local_rank`` (nu),
``local_complexity`` (delta) and ``describe`` (all three as a DataFrame).
"""
from .complexity import activation_modules, cross_polytope, local_complexity, with_module
from .descriptors import default_rtol, describe, local_rank, local_scaling, singular_values
from .jacobian import jacobian, random_projection

__all__ = [
    "random_projection", "jacobian", "singular_values", "local_scaling", "local_rank", "local_complexity",
    "describe", "default_rtol", "activation_modules", "cross_polytope", "with_module",
]
__version__ = "0.1.0"
