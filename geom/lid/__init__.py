"""Local intrinsic dimension (LID): FLIPD from a diffusion model's noise predictor (``score``; Kamkari et al., NeurIPS
2024), the numerical rank of a generator's Jacobian and the classical kNN estimators (MLE, TwoNN) of
``scikit-dimension`` (``baselines``), and manifolds of known dimension to check them on (``manifolds``). Every
public name is re-exported here: ``from geom import lid; lid.flipd(...)``.
"""
from __future__ import annotations

from .baselines import KNN_METHODS, generator_lid, jacobian_rank, knn_lid
from .manifolds import MANIFOLDS, log_sigma_schedule, manifold_sample, train_manifold_ddpm
from .score import NOISE, PREDICTION_TYPES, EpsModel, FlipdResult, NoiseLevel, as_eps_model, flipd, flipd_curve

__all__ = [
    "PREDICTION_TYPES", "NOISE", "NoiseLevel", "EpsModel", "as_eps_model", "FlipdResult", "flipd", "flipd_curve",
    "jacobian_rank", "generator_lid", "KNN_METHODS", "knn_lid", "MANIFOLDS", "manifold_sample",
    "log_sigma_schedule", "train_manifold_ddpm",
]
