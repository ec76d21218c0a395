"""Two-tower training: `TwoTowerTrainingArguments` and a `TwoTowerTrainer` that feeds the frequency estimator its step.

The model owns its losses (L_main + α L_self), so the Trainer only has to supply the streaming frequency estimator's
step t and log the two losses. t counts micro-batches, consistently with the global step:

    t = base + global_step * gradient_accumulation_steps + (micro-batch index within the step) + 1

With no gradient accumulation t = global_step + 1 (+ base). Counting micro-batches (not optimizer steps) is what
keeps p_j "the probability that item j is in one in-batch softmax": the negatives of the loss come from one
micro-batch. `base` is the estimator's step when this Trainer first trains minus what the formula gives then:
0 for a fresh model and when resuming from a checkpoint saved by this Trainer (the estimator's buffers are in
the checkpoint), the old t when fine-tuning an already trained model, so t never goes backwards.
Under DDP each process sees its own micro-batches; DDP broadcasts buffers from rank 0 before each forward, so
every process uses rank 0's estimate (an estimate from the same item distribution).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .base import BaseTrainer


@dataclass
class TwoTowerTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults the two-tower batches need."""

    # The collator reads the dataset columns (user_key, history, positive); Trainer must not drop them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns for the collator."})
    # Evaluation through the Trainer reports the loss only; Recall@K is `modeling_mtrec.serving.retrieval.evaluate_retrieval`.
    prediction_loss_only: bool = field(default=True, metadata={"help": "Only the eval loss in Trainer.evaluate."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["positive_index"], metadata={"help": "The batch key that acts as the label."}
    )


class TwoTowerTrainer(BaseTrainer):
    """`BaseTrainer` for `TwoTowerModel`; see the module docstring. One loss, one backward: no per-task step.

    Overrides, and why:
    - `__init__`: the frequency estimator's step bookkeeping.
    - `compute_loss`: passes the estimator's step t (`frequency_step`) in training, records L_main and L_self.
    - `train`: resets the step bookkeeping at the start of every run.
    """

    args_class = TwoTowerTrainingArguments
    loss_names = ("main_loss", "ssl_loss")

    def __init__(self, model=None, args: TrainingArguments | None = None, *more, **kwargs):
        super().__init__(model, args, *more, **kwargs)
        self._micro = 0
        self._micro_of_step = -1
        self._base: int | None = None

    def train(self, *args, **kwargs):
        # Each run (fresh, resumed, or a second run on a trained model) re-derives `base` from the estimator.
        self._base, self._micro_of_step = None, -1
        return super().train(*args, **kwargs)

    def _frequency_step(self) -> int:
        if self.state.global_step != self._micro_of_step:
            self._micro_of_step, self._micro = self.state.global_step, 0
        counted = self.state.global_step * self.args.gradient_accumulation_steps + self._micro
        if self._base is None:
            self._base = max(0, int(self.model.frequency_estimator.step) - counted)
        self._micro += 1
        return self._base + counted + 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            inputs = {**inputs, "frequency_step": self._frequency_step()}
        outputs = model(**inputs)
        if outputs.loss is None:
            raise ValueError("TwoTowerTrainer needs `positive_index` (clicks) or SSL items in every batch")
        if model.training:
            self.record_losses(outputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


__all__ = ["TwoTowerTrainer", "TwoTowerTrainingArguments"]
