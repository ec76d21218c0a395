"""Training the foundation model with the `Trainer`: arguments, the loss parts in the logs, per-(domain, task) AUC.

The model owns its loss (L_ctr + L_relevance + L_reg), so the Trainer subclass only records the parts and
evaluates with `evaluate_foundation` (AUC per (domain, task), their mean, grouped AUC for CTR) instead of the
Trainer's prediction loop. Batches are gathered by `FoundationCollator` from precomputed features, so
`accelerate launch` (DDP) works as for any Trainer: each process holds the features and reads its shard of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import Trainer, TrainingArguments

from modeling_mtrec.training import RunningMeans

from .data import FeatureRows, FoundationCollator, FoundationFeatures
from .evaluation import evaluate_foundation, flat_metrics


@dataclass
class FoundationTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults the foundation batches need."""

    remove_unused_columns: bool = field(default=False, metadata={"help": "Batches come from FoundationCollator."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["click_labels", "relevance_labels"], metadata={"help": "The batch keys that are labels."}
    )
    eval_batch_size: int = field(default=2048, metadata={"help": "Rows per forward pass in evaluate()."})


class FoundationDataset(FeatureRows):
    """`FeatureRows` that keeps its `FoundationFeatures` (what `FoundationTrainer.evaluate` scores)."""

    def __init__(self, features: FoundationFeatures) -> None:
        super().__init__(features)
        self.features = features


class FoundationTrainer(Trainer):
    """`Trainer` for `FoundationModel`.

    Overrides, and why:
    - `__init__`: the model's forward takes no loss kwargs (its losses are means over its own rows), so the
      Trainer must scale the loss for gradient accumulation itself; the collator defaults to `FoundationCollator`.
    - `compute_loss`: records L_ctr, L_relevance and L_reg for the logs.
    - `log`: adds their running means to the training logs.
    - `evaluate`: AUC per (domain, task) on the features of a `FoundationDataset`, not the prediction loop.
    """

    def __init__(self, *args, **kwargs):
        train_dataset = kwargs.get("train_dataset")
        if kwargs.get("data_collator") is None and isinstance(train_dataset, FoundationDataset):
            kwargs["data_collator"] = FoundationCollator(train_dataset.features)
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self._means = RunningMeans()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if outputs.loss is None:
            raise ValueError("FoundationTrainer needs click_labels or relevance_labels in every batch")
        if model.training:
            for name in ("ctr_loss", "relevance_loss", "regularizer_loss"):
                value = getattr(outputs, name)
                if value is not None:
                    self._means.add(name, value.item())
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self._means.flush_into(logs)
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not isinstance(dataset, FoundationDataset):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        report = evaluate_foundation(self.model, dataset.features, batch_size=self.args.eval_batch_size)
        metrics = {k: float(v) for k, v in flat_metrics(report, prefix=f"{metric_key_prefix}_").items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = ["FoundationDataset", "FoundationTrainer", "FoundationTrainingArguments"]
