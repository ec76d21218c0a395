"""`BaseTrainer`: what every Trainer of the package shares (TRL's `base_trainer.py`).

- Plain `TrainingArguments` become the Trainer's own arguments class (`upgrade_arguments`), so a Trainer built
  with them fails nowhere later.
- Each training loss the model returns (`loss_names`) is checked and recorded: the run stops at the first
  non-finite one with an error naming the step and the loss (transformers' `logging_nan_inf_filter` would log a
  made-up value instead, and the diverged model would be saved), and their running means go into the training logs.
- Weights holding NaN or inf are refused when saved as a model (`save_model`, checkpoints).
- Resuming from a checkpoint without its RNG file warns, naming the file: the run goes on, but is not exact.
- `create_model_card` writes the package's card of the model (`training.model_card`), with the evaluation results
  of the logs.

NOTE: the loss check is per process. Under DDP a loss that is non-finite on one process only stops that process;
the others then wait for it in the next all-reduce until the launcher's timeout ends the run. Checking across
processes would cost one more collective per micro-batch.
"""

from __future__ import annotations

import logging
import math
import os

import torch
from transformers import Trainer, TrainingArguments

from .arguments import upgrade_arguments
from .model_card import write_model_card
from .running_means import RunningMeans

logger = logging.getLogger(__name__)

__all__ = ["BaseTrainer", "TrainingDivergedError"]


class TrainingDivergedError(RuntimeError):
    """A training loss is NaN or infinite: the run diverged (or a batch is broken), and training stops there."""


class BaseTrainer(Trainer):
    """`Trainer` plus what every Trainer of the package shares; see the module docstring.

    A subclass sets `args_class` (its `TrainingArguments` subclass) and `loss_names` (the loss attributes of its
    model's output that are logged), and calls `record_losses(outputs)` where its model computed them.

    Overrides, and why:
    - `__init__`: plain `TrainingArguments` become `args_class` (the collators' columns kept, the label keys).
    - `log`: adds the running means of the recorded losses (and whatever a subclass records) to the training logs.
    - `_save`: refuses to save non-finite weights as a model.
    - `_load_rng_state`: warns when the checkpoint has no RNG file (transformers only logs it at info level).
    - `create_model_card`: writes the package's card of the model instead of the generic Trainer card.
    """

    args_class: type[TrainingArguments] = TrainingArguments
    loss_names: tuple[str, ...] = ()

    def __init__(self, model=None, args: TrainingArguments | None = None, *more, **kwargs):
        args = upgrade_arguments(args if args is not None else TrainingArguments(output_dir="tmp_trainer"), self.args_class)
        super().__init__(model, args, *more, **kwargs)
        self._means = RunningMeans()

    # --------------------------------------------------------------------------------------------- losses

    def record_losses(self, outputs) -> None:
        """Checks each of `outputs`' losses in `loss_names` (skipping absent ones) and records it for the logs.

        Raises `TrainingDivergedError` at the first non-finite loss, naming the optimizer step being computed.
        """
        values = {}
        for name in self.loss_names:
            loss = getattr(outputs, name, None)
            if loss is not None:
                values[name] = loss.item()
        self.check_finite_losses(values)
        for name, value in values.items():
            self._means.add(name, value)

    def check_finite_losses(self, values: dict[str, float]) -> None:
        """Raises `TrainingDivergedError` when one of the named loss values is NaN or infinite."""
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            parts = ", ".join(f"{name}={value:.6g}" for name, value in values.items())
            raise TrainingDivergedError(
                f"training stopped at step {self.state.global_step + 1} (epoch {self.state.epoch or 0.0:.2f}): the "
                f"training loss {', '.join(bad)} is not finite ({parts}). The run diverged (try a lower learning "
                "rate, gradient clipping or another seed) or the batch is broken; this step was not applied and "
                "nothing was saved after it."
            )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self._means.flush_into(logs)
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------------- saving

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # A model with NaN or inf weights computes NaN scores everywhere; saving it under the model's name (or as a
        # checkpoint to resume from) would hand garbage on as a model.
        tensors = state_dict if state_dict is not None else self.accelerator.unwrap_model(self.model).state_dict()
        for name, tensor in tensors.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.device.type == "meta":
                continue
            if not torch.isfinite(tensor).all():
                raise TrainingDivergedError(
                    f"refusing to save the model to {output_dir or self.args.output_dir}: its weight {name!r} holds "
                    "NaN or inf (a diverged run); such a model scores NaN everywhere"
                )
        super()._save(output_dir, state_dict)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        # Without the RNG state, dropout and the data order after the resume differ from the uninterrupted run's:
        # the resumed weights are not the ones an uninterrupted run ends with. transformers says so at info level.
        if checkpoint is not None:
            name = f"rng_state_{self.args.process_index}.pth" if self.args.world_size > 1 else "rng_state.pth"
            path = os.path.join(checkpoint, name)
            if not os.path.isfile(path):
                logger.warning(
                    "%s is missing: the run resumes with fresh random number generators, so it is not exact (dropout "
                    "and data order differ from the uninterrupted run's)", path
                )
        super()._load_rng_state(checkpoint)

    def create_model_card(self, *args, **kwargs) -> None:
        """Writes the package's card of the model (README.md in `args.output_dir`) with the evaluation results of
        the logs; `dataset` (a name) goes into the card. The other arguments of `Trainer.create_model_card` are
        not used."""
        if not self.is_world_process_zero():
            return
        metrics = {}
        for entry in self.state.log_history:
            metrics.update({k[len("eval_"):]: v for k, v in entry.items() if k.startswith("eval_")})
        dataset = kwargs.get("dataset")
        write_model_card(
            self.args.output_dir,
            self.accelerator.unwrap_model(self.model).config,
            metrics=metrics or None,
            dataset_name=dataset if isinstance(dataset, str) else None,
        )
