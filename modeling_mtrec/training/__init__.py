"""What every model's Trainer shares: gradient surgery as a plain object, logged running means, callbacks."""

from .callbacks import CollatorEpochCallback
from .logging import RunningMeans
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
