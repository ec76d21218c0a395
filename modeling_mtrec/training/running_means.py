"""Values recorded between two training logs (task losses, gradient cosines), averaged into the next log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

__all__ = ["RunningMeans"]


class RunningMeans:
    """Values recorded between two training logs, averaged into the next one.

    Added to the log that carries "loss", so they reach every `report_to` integration (TensorBoard, W&B)
    through the Trainer's own callbacks. A Trainer calls `add` (or `add_losses`) while training and
    `flush_into(logs)` from its `log` override.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, value: float) -> None:
        self.sums[name] += value
        self.counts[name] += 1

    def add_losses(self, outputs, names: Iterable[str]) -> None:
        """Records each of the model output's losses `names` that is not `None` (a task absent from the batch)."""
        for name in names:
            value = getattr(outputs, name, None)
            if value is not None:
                self.add(name, value.item())

    def flush_into(self, logs: dict[str, float]) -> None:
        if "loss" in logs and self.counts:
            logs.update({name: round(total / self.counts[name], 6) for name, total in self.sums.items()})
            self.sums.clear()
            self.counts.clear()
