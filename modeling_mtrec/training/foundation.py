"""Training the foundation model with the `Trainer`: arguments, the loss parts in the logs, per-(domain, task) AUC,
and an optional gradient surgery between the CTR and the relevance gradients.

The model owns its loss (L_ctr + L_relevance + L_reg), so the Trainer subclass records the parts and evaluates
with `evaluate_foundation` (AUC per (domain, task), their mean, grouped AUC for CTR) instead of the Trainer's
prediction loop. Batches are gathered by `FoundationCollator` from precomputed features, so DDP works as for any
Trainer: each process holds the features and reads its shard of rows.

`gradient_surgery` (`none` by default; `mtrec`, `pcgrad`): the package's `GradientSurgery` with CTR as the main
task and relevance as the auxiliary one, over the parameters both reach: g = g_ctr + g_rel (projected when they
conflict) + g_reg (the regulariser's gradient, never projected). The step is `training.multitask.MultiTaskTrainer`'s,
as MTRec's: the per-task gradients of a whole optimizer step are summed over gradient-accumulation micro-batches
and averaged by hand over processes before the one projection, so the surgery is the same under DDP and
accumulation. It costs three backward passes through the model instead of one; whether it helps is measured
(`benchmarks/foundation.py`), not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..evaluation.foundation import evaluate_foundation, flat_metrics
from ..models.foundation.data import FeatureRows, FoundationCollator, FoundationFeatures
from .multitask import MultiTaskTrainer, TaskLosses
from .surgery import SURGERY_MODES


@dataclass
class FoundationTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults the foundation batches need."""

    remove_unused_columns: bool = field(default=False, metadata={"help": "Batches come from FoundationCollator."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["click_labels", "relevance_labels"], metadata={"help": "The batch keys that are labels."}
    )
    eval_batch_size: int = field(default=2048, metadata={"help": "Rows per forward pass in evaluate()."})
    gradient_surgery: str = field(
        default="none", metadata={"help": f"Between the CTR (main) and relevance gradients: one of {SURGERY_MODES}."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.gradient_surgery not in SURGERY_MODES:
            raise ValueError(f"gradient_surgery must be one of {SURGERY_MODES}, got {self.gradient_surgery!r}")


class FoundationDataset(FeatureRows):
    """`FeatureRows` that keeps its `FoundationFeatures` (what `FoundationTrainer.evaluate` scores)."""

    def __init__(self, features: FoundationFeatures) -> None:
        super().__init__(features)
        self.features = features


class FoundationTrainer(MultiTaskTrainer):
    """`MultiTaskTrainer` for `FoundationModel`: CTR is the main task, relevance the auxiliary one, the regulariser
    an unprojected extra.

    Overrides, and why:
    - `__init__`: the model's forward takes no loss kwargs (its losses are means over its own rows), so the
      Trainer must scale the loss for gradient accumulation itself; the collator defaults to `FoundationCollator`.
    - `task_losses`: declares the tasks, each weighted as the model weighs it in its loss; the objective is the
      model's own loss (L_ctr + L_relevance + L_reg).
    - `fast_eval_dataset` / `fast_eval_metrics`: AUC per (domain, task) on the features of a `FoundationDataset`
      (`evaluation.foundation.evaluate_foundation`), not the prediction loop.
    """

    args_class = FoundationTrainingArguments
    loss_names = ("ctr_loss", "relevance_loss", "regularizer_loss")

    def __init__(self, *args, **kwargs):
        train_dataset = kwargs.get("train_dataset")
        if kwargs.get("data_collator") is None and isinstance(train_dataset, FoundationDataset):
            kwargs["data_collator"] = FoundationCollator(train_dataset.features)
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False

    def task_losses(self, model, outputs) -> TaskLosses:
        if outputs.loss is None:
            raise ValueError("FoundationTrainer needs click_labels or relevance_labels in every batch")
        if model.training:
            self.record_losses(outputs)
        config = self.accelerator.unwrap_model(model).config

        def weighted(weight: float, loss):  # a task the model does not weigh (weight 0) gets no gradient pass
            return weight * loss if loss is not None and weight > 0 else None

        return TaskLosses(
            loss=outputs.loss,
            main=weighted(config.ctr_loss_weight, outputs.ctr_loss),
            auxiliary=weighted(config.relevance_loss_weight, outputs.relevance_loss),
            extra=weighted(config.regularizer_weight, outputs.regularizer_loss),
        )

    def fast_eval_dataset(self, eval_dataset):
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        return dataset if isinstance(dataset, FoundationDataset) else None

    def fast_eval_metrics(self, dataset) -> dict[str, float]:
        report = evaluate_foundation(self.model, dataset.features, batch_size=self.args.eval_batch_size)
        return {k: float(v) for k, v in flat_metrics(report, prefix="").items()}


__all__ = ["FoundationDataset", "FoundationTrainer", "FoundationTrainingArguments"]
