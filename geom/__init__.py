"""geom: local geometry of generative models.

Descriptors (Humayun et al., "Understanding the Local Geometry of Generative Model Manifolds"):
``random_projection``, ``jacobian``, ``singular_values``, ``local_scaling`` (psi), ``local_rank`` (nu),
``local_complexity`` (delta) and ``describe`` (all three as a DataFrame); the checks and pieces they share:
``check_generator`` / ``find_module`` (``geom.models.base``, beside the generator type), ``call_generator``,
the errors ``NonFiniteError``, ``ForwardModeError``, ``CheckpointingError``, ``jacobian_plan`` (the mode and chunk
size a call used) and ``memory_budget_bytes`` (``geom.jacobian``), ``zero_threshold``
(``geom.descriptors``), ``polytope_basis``, ``joints``, ``smallest_radius`` (``geom.complexity``).
Generators come from the model layer, ``geom.models.load_generator`` (not re-exported here).
``geom.report`` (``geom.detectors.report``): every signal of each sample, descriptors beside the baselines, in one
call (imported on first use).
"""
from .complexity import (activation_modules, cross_polytope, joints, local_complexity, polytope_basis,
                         smallest_radius, with_module)
from .descriptors import (Spectrum, default_rtol, describe, local_rank, local_scaling, singular_values, spectrum,
                          zero_threshold)
from .jacobian import (CheckpointingError, ForwardModeError, NonFiniteError, call_generator, jacobian, jacobian_plan,
                       memory_budget_bytes, random_projection)
from .models.base import check_generator, find_module

__all__ = [
    "random_projection", "jacobian", "singular_values", "local_scaling", "local_rank", "local_complexity",
    "describe", "default_rtol", "activation_modules", "cross_polytope", "with_module",
    "check_generator", "find_module", "call_generator", "zero_threshold", "polytope_basis", "joints",
    "smallest_radius", "spectrum", "Spectrum", "NonFiniteError", "ForwardModeError", "CheckpointingError",
    "jacobian_plan", "memory_budget_bytes",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "report":  # analysis layer: imported on first use so that `import geom` stays light
        from .detectors import report
        return report
    raise AttributeError(f"module 'geom' has no attribute {name!r}")
