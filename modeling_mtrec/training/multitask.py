"""`MultiTaskTrainer`: the per-task-gradient step with gradient surgery, and the fast evaluate, written once.

A subclass declares its task losses (`task_losses`): the main one, the auxiliary one (projected against the main
gradient by `training.surgery.GradientSurgery` when they conflict) and an unprojected extra one (e.g. the foundation
model's regulariser). With `args.gradient_surgery` = 'none' the step is `Trainer.training_step` on their total.
Otherwise the surgery needs the per-task gradients of the whole optimizer step, and stays exact beyond one process
and one micro-batch:

- The per-task gradients come from `torch.autograd.grad`, never from a second `backward` through the (possibly
  DDP-wrapped) model, and the forward runs under `no_sync`, so the DDP reducer is never triggered; the per-task
  gradients are all-reduced by hand, one flat buffer per task, so the projection sees the gradients averaged over
  all processes.
- Per-task gradients are accumulated over the micro-batches of a step; the surgery runs once, on the totals, at
  the micro-batch where accelerate syncs gradients.
- Under fp16 every task loss is multiplied by the GradScaler's scale. The projection is invariant to a common
  scale (the sign of the dot product and the coefficient (s·a·s·m)/(s²‖m‖²)·s·m = s·proj), so it runs on the
  scaled gradients and the scaler then unscales (or skips an inf/NaN step) as usual.
- With equal-sized micro-batches (the same number of labels per task in each micro-batch, as with fixed batch
  shapes) the averaged per-task gradients are exactly those of one process on the concatenated batch; otherwise,
  as in any DDP or accumulation run with mean losses, each micro-batch weighs equally.

The cosine between the main and auxiliary gradients and the share of conflicting steps go into the training logs
(running means, `grad_cosine` and `conflict_rate`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from transformers.trainer_utils import speed_metrics

from .base import BaseTrainer
from .surgery import GradientSurgery, accumulate, all_reduce_mean, check_surgery_supported

__all__ = ["MultiTaskTrainer", "TaskLosses"]

TASKS = ("main", "auxiliary", "extra")


@dataclass
class TaskLosses:
    """One batch's losses, as a `MultiTaskTrainer` combines them.

    Attributes:
        loss: the training objective, what `Trainer.training_step` backpropagates when there is no surgery.
        main: the main task's loss (`None` when the batch has none).
        auxiliary: the auxiliary loss, projected off the main gradient when they conflict (`None`: none).
        extra: a loss whose gradient is added unprojected (`None`: none).
        auxiliary_weight: multiplies `auxiliary` (folded into the micro-batch factor, as MTRec's λ).

    With `main`, `auxiliary` and `extra`, `loss` = main + auxiliary_weight * auxiliary + extra.
    """

    loss: torch.Tensor
    main: torch.Tensor | None
    auxiliary: torch.Tensor | None = None
    extra: torch.Tensor | None = None
    auxiliary_weight: float = 1.0


class MultiTaskTrainer(BaseTrainer):
    """`BaseTrainer` whose step can apply gradient surgery between a main and an auxiliary task; see the module
    docstring. Its arguments need a `gradient_surgery` field (one of `training.surgery.SURGERY_MODES`).

    A subclass implements `task_losses`, and may override `forward` (how a batch reaches the model) and the fast
    evaluation hooks `fast_eval_dataset` / `fast_eval_metrics`.

    Overrides, and why:
    - `compute_loss`: the objective is `task_losses(...).loss`, which the subclass declares.
    - `training_step`: the surgery modes need the per-task gradients separately.
    - `evaluate`: where the subclass has a fast evaluation (`fast_eval_dataset` returns a dataset), it replaces the
      Trainer's prediction loop, with the same logging and callbacks.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.surgery = GradientSurgery(getattr(self.args, "gradient_surgery", "none"))
        check_surgery_supported(self.accelerator.distributed_type, self.surgery.mode)
        # Per-task, per-parameter gradients summed over the micro-batches of the current optimizer step.
        self._step_grads: dict[str, list[torch.Tensor | None] | None] = dict.fromkeys(TASKS)

    # ---------------------------------------------------------------------------------- what subclasses declare

    def task_losses(self, model: nn.Module, outputs) -> TaskLosses:
        """The batch's task losses from the model's `outputs`; records them (`record_losses`) when training."""
        raise NotImplementedError

    def forward(self, model: nn.Module, inputs: dict):
        """`model(**inputs)`; a subclass may feed the model more (e.g. cached vectors)."""
        return model(**inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = self.forward(model, inputs)
        loss = self.task_losses(model, outputs).loss
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------------------------- gradient surgery

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
        if self.surgery.mode == "none":
            return super().training_step(model, inputs, num_items_in_batch)

        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()  # as Trainer.training_step (schedule-free optimizers)
        inputs = self._prepare_inputs(inputs)
        # no_sync: the DDP reducer must not fire; the per-task gradients are averaged by hand in _apply_surgery.
        with self.accelerator.no_sync(model), self.compute_loss_context_manager():
            outputs = self.forward(model, inputs)
        losses = self.task_losses(model, outputs)

        # Same normalisation as Trainer.training_step: each micro-batch loss is a mean, so divide by the number
        # of micro-batches in the step; under fp16 multiply by the GradScaler's scale (see module docstring).
        scale = 1.0 / self.current_gradient_accumulation_steps
        objectives = {
            "main": None if losses.main is None else losses.main * scale,
            "auxiliary": None if losses.auxiliary is None else losses.auxiliary * (losses.auxiliary_weight * scale),
            "extra": None if losses.extra is None else losses.extra * scale,
        }
        objectives = {task: objective for task, objective in objectives.items() if objective is not None}
        if not objectives:
            raise ValueError(f"{type(self).__name__}: the batch has no task loss to train on")
        scaler = self.accelerator.scaler
        params = [p for p in model.parameters() if p.requires_grad]
        tasks = list(objectives)
        for i, task in enumerate(tasks):
            objective = scaler.scale(objectives[task]) if scaler is not None else objectives[task]
            grads = torch.autograd.grad(objective, params, retain_graph=i < len(tasks) - 1, allow_unused=True)
            self._step_grads[task] = accumulate(self._step_grads[task], grads)
        if self.accelerator.sync_gradients:
            self._apply_surgery(params)
        # As Trainer.training_step, the objective whose gradients were taken (already divided by the micro-batches).
        total = objectives[tasks[0]]
        for task in tasks[1:]:
            total = total + objectives[task]
        return total.detach()

    def _apply_surgery(self, params: list[torch.Tensor]) -> None:
        """Once per optimizer step: average the step's per-task gradients over processes, project the auxiliary
        gradient against the main one, add the extra gradient, set `.grad`."""
        grads = {task: g if g is not None else [None] * len(params) for task, g in self._step_grads.items()}
        self._step_grads = dict.fromkeys(TASKS)
        if self.accelerator.num_processes > 1:
            world = self.accelerator.num_processes
            grads = {task: all_reduce_mean(g, params, world) for task, g in grads.items()}
        update, stats = self.surgery.combine(grads["main"], grads["auxiliary"])
        if stats is not None:
            self._means.add("grad_cosine", stats.cosine)
            self._means.add("conflict_rate", float(stats.conflict))
        for param, grad, extra in zip(params, update, grads["extra"]):
            total = grad if extra is None else (extra if grad is None else grad + extra)
            if total is not None:
                param.grad = total if param.grad is None else param.grad + total

    # ------------------------------------------------------------------------------------ fast evaluation

    def fast_eval_dataset(self, eval_dataset):
        """The dataset to evaluate with `fast_eval_metrics`, or None when `Trainer.evaluate` must run."""
        return None

    def fast_eval_metrics(self, dataset) -> dict[str, float]:
        """The metrics of `dataset` (without prefix), computed without the Trainer's prediction loop."""
        raise NotImplementedError

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """`fast_eval_metrics` where `fast_eval_dataset` applies, else `Trainer.evaluate`.

        The fast path returns the metrics under `metric_key_prefix` with the Trainer's speed metrics, logs them
        and calls the callbacks' `on_evaluate`, as `Trainer.evaluate` does.
        """
        if isinstance(eval_dataset if eval_dataset is not None else self.eval_dataset, dict):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)  # recurses per dataset
        dataset = self.fast_eval_dataset(eval_dataset)
        if dataset is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

        self._memory_tracker.start()
        start_time = time.time()
        results = self.fast_eval_metrics(dataset)
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in results.items()}
        metrics.update(
            speed_metrics(
                metric_key_prefix,
                start_time,
                num_samples=len(dataset),
                num_steps=math.ceil(len(dataset) / self.args.eval_batch_size),
            )
        )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics
