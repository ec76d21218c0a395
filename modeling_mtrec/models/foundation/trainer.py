"""Training the foundation model with the `Trainer`: arguments, the loss parts in the logs, per-(domain, task) AUC,
and an optional gradient surgery between the CTR and the relevance gradients.

The model owns its loss (L_ctr + L_relevance + L_reg), so the Trainer subclass records the parts and evaluates
with `evaluate_foundation` (AUC per (domain, task), their mean, grouped AUC for CTR) instead of the Trainer's
prediction loop. Batches are gathered by `FoundationCollator` from precomputed features, so DDP works as for any
Trainer: each process holds the features and reads its shard of rows.

`gradient_surgery` (`none` by default; `mtrec`, `pcgrad`): the package's `GradientSurgery` with CTR as the main
task and relevance as the auxiliary one, over the parameters both reach: g = g_ctr + g_rel (projected when they
conflict) + g_reg (the regulariser's gradient, never projected). As in `MTRecTrainer`, the per-task gradients of a
whole optimizer step are summed over gradient-accumulation micro-batches and averaged by hand over processes
before the one projection, so the surgery is the same under DDP and accumulation. It costs three backward passes
through the model instead of one; whether it helps is measured (`benchmarks/foundation.py`), not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from modeling_mtrec.training import SURGERY_MODES, GradientSurgery, RunningMeans, check_surgery_supported
from modeling_mtrec.training.surgery import accumulate, all_reduce_mean

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


class FoundationTrainer(Trainer):
    """`Trainer` for `FoundationModel`.

    Overrides, and why:
    - `__init__`: the model's forward takes no loss kwargs (its losses are means over its own rows), so the
      Trainer must scale the loss for gradient accumulation itself; the collator defaults to `FoundationCollator`.
    - `compute_loss`: records L_ctr, L_relevance and L_reg for the logs.
    - `log`: adds their running means to the training logs.
    - `evaluate`: AUC per (domain, task) on the features of a `FoundationDataset`, not the prediction loop.
    - `training_step`: the gradient surgery, when `args.gradient_surgery` is not `none` (module docstring).
    """

    def __init__(self, *args, **kwargs):
        train_dataset = kwargs.get("train_dataset")
        if kwargs.get("data_collator") is None and isinstance(train_dataset, FoundationDataset):
            kwargs["data_collator"] = FoundationCollator(train_dataset.features)
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self._means = RunningMeans()
        self.surgery = GradientSurgery(getattr(self.args, "gradient_surgery", "none"))
        check_surgery_supported(self.accelerator.distributed_type, self.surgery.mode)
        self._step_grads: dict[str, list | None] = {"ctr": None, "relevance": None, "regularizer": None}

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

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
        if self.surgery.mode == "none":
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        # no_sync: the DDP reducer must not fire; the per-task gradients are averaged by hand in _apply_surgery.
        with self.accelerator.no_sync(model), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        config = self.accelerator.unwrap_model(model).config
        scale = 1.0 / self.current_gradient_accumulation_steps  # each micro-batch loss is a mean, as in Trainer
        parts = {
            "ctr": (config.ctr_loss_weight, outputs.ctr_loss),
            "relevance": (config.relevance_loss_weight, outputs.relevance_loss),
            "regularizer": (config.regularizer_weight, outputs.regularizer_loss),
        }
        objectives = {name: w * part * scale for name, (w, part) in parts.items() if part is not None and w > 0}
        scaler = self.accelerator.scaler
        params = [p for p in model.parameters() if p.requires_grad]
        names = list(objectives)
        for i, name in enumerate(names):
            objective = scaler.scale(objectives[name]) if scaler is not None else objectives[name]
            grads = torch.autograd.grad(objective, params, retain_graph=i < len(names) - 1, allow_unused=True)
            self._step_grads[name] = accumulate(self._step_grads[name], grads)
        if self.accelerator.sync_gradients:
            self._apply_surgery(params)
        return loss.detach() * scale

    def _apply_surgery(self, params: list[torch.Tensor]) -> None:
        """Once per optimizer step: average the per-task gradients over processes, project CTR vs relevance, add
        the regulariser's gradient, set `.grad`."""
        grads = {name: g if g is not None else [None] * len(params) for name, g in self._step_grads.items()}
        self._step_grads = {name: None for name in self._step_grads}
        if self.accelerator.num_processes > 1:
            world = self.accelerator.num_processes
            grads = {name: all_reduce_mean(g, params, world) for name, g in grads.items()}
        update, stats = self.surgery.combine(grads["ctr"], grads["relevance"])
        if stats is not None:
            self._means.add("grad_cosine", stats.cosine)
            self._means.add("conflict_rate", float(stats.conflict))
        for param, grad, reg in zip(params, update, grads["regularizer"]):
            total = grad if reg is None else (reg if grad is None else grad + reg)
            if total is not None:
                param.grad = total if param.grad is None else param.grad + total

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
