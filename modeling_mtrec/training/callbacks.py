"""Trainer callbacks shared by the models' Trainers."""

from __future__ import annotations

import math

from transformers import TrainerCallback

__all__ = ["CollatorEpochCallback"]


class CollatorEpochCallback(TrainerCallback):
    """Tells the collator the epoch (`collator.set_epoch`), so its random draws (e.g. MTRec's negatives) are fresh
    each epoch yet independent of batch order, and a resumed run draws what the uninterrupted run drew."""

    def __init__(self, collator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is fractional on a mid-epoch resume (e.g. 0.5): the epoch being trained is its floor.
        self.collator.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))
