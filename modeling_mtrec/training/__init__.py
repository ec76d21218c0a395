"""Training: each model's Trainer (`mtrec`, `two_tower`, `foundation`) on one base (`base`, `multitask`: the
per-task-gradient step written once), the gradient surgery as a plain object, logged running means, callbacks,
and the model-card writer. Each Trainer is imported from its module (or the package top level)."""

from .callbacks import CollatorEpochCallback
from .running_means import RunningMeans
from .surgery import (
    SURGERY_MODES,
    GradientSurgery,
    SurgeryStats,
    check_surgery_supported,
    project_conflicting,
)

__all__ = [
    "SURGERY_MODES",
    "CollatorEpochCallback",
    "GradientSurgery",
    "RunningMeans",
    "SurgeryStats",
    "check_surgery_supported",
    "project_conflicting",
]
