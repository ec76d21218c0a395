"""MTRec training: `MTRecTrainingArguments` and `MTRecTrainer` with MTRec's gradient surgery.

The surgery itself (Bi et al., Findings of ACL 2022: project the auxiliary gradient off the main one when they
conflict) is `modeling_mtrec.training.surgery.GradientSurgery`; this Trainer feeds it the two per-task gradients
of the whole optimizer step. How it stays exact beyond one process and one micro-batch:

- The two per-task gradients come from `torch.autograd.grad`, never from a second `backward` through the
  (possibly DDP-wrapped) model, and the forward runs under `no_sync`, so the DDP reducer is never triggered;
  the per-task gradients are all-reduced by hand, one flat buffer per task, so the projection sees the
  gradients averaged over all processes.
- Per-task gradients are accumulated over the micro-batches of a step; the surgery runs once, on the totals, at
  the micro-batch where accelerate syncs gradients.
- Under fp16 both losses are multiplied by the GradScaler's scale. The projection is invariant to a common
  scale (the sign of the dot product and the coefficient (s·a·s·m)/(s²‖m‖²)·s·m = s·proj), so it runs on the
  scaled gradients and the scaler then unscales (or skips an inf/NaN step) as usual.
- With equal-sized micro-batches (the same number of clicks, category labels and NER tokens per micro-batch, as
  with fixed batch shapes) the averaged per-task gradients are exactly those of one process on the concatenated
  batch; otherwise, as in any DDP or accumulation run with mean losses, each micro-batch weighs equally.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_optimizer import is_optimizer_factory
from transformers.trainer_utils import speed_metrics

from ...evaluation.impressions import fast_evaluate
from ...evaluation.metrics import compute_mind_metrics
from ...model_card import write_model_card
from ...training.arguments import upgrade_arguments
from ...training.callbacks import CollatorEpochCallback
from ...training.logging import RunningMeans
from ...training.surgery import (
    SURGERY_MODES,
    GradientSurgery,
    accumulate,
    all_reduce_mean,
    check_surgery_supported,
    supports_whole_gradients,
)
from ...vectors import HistoryVectorCache

TASK_LOSSES = ("main_loss", "category_loss", "ner_loss")


@dataclass
class MTRecTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus MTRec's multi-task knobs."""

    aux_weight: float = field(
        default=0.3,
        metadata={"help": "λ: weight of the merged auxiliary (category + NER) gradient (MTRec; default 0.3)."},
    )
    gradient_surgery: str = field(
        default="mtrec",
        metadata={
            "help": "How the main and auxiliary gradients are combined: 'mtrec' (project the auxiliary gradient "
            "off the main one when they conflict), 'pcgrad' (project both), 'none' (plain sum).",
            "choices": list(SURGERY_MODES),
        },
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of every parameter outside the pretrained news encoder (user encoder, category "
            "and NER heads), which start from random weights; `learning_rate` stays the news encoder's. None: "
            "`learning_rate` for all, as in the paper."
        },
    )
    # The batches carry index tensors and labels the model reads by name; the columns of the sample datasets
    # (history, positive, negatives) are consumed by the collator, so Trainer must not drop them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns for the collator."})
    # Only the click labels are gathered at evaluation: metrics are computed per impression from them.
    label_names: list[str] | None = field(default_factory=lambda: ["labels"], metadata={"help": "Label keys."})
    fast_eval: bool = field(
        default=True,
        metadata={
            "help": "Evaluate MIND impressions from news vectors encoded once (modeling_mtrec.evaluation."
            "fast_evaluate) instead of re-encoding every news of every batch; same metrics, no eval_loss."
        },
    )

    history_cache_steps: int = field(
        default=0,
        metadata={
            "help": "T > 0 reuses, without gradient, the vectors of history news encoded in the last T optimizer "
            "steps instead of encoding them again (SpeedyFeed's cache; candidates are always encoded). 0: every "
            "news of every batch is encoded, the paper's exact training."
        },
    )

    def __post_init__(self):
        if not isinstance(self.history_cache_steps, int) or self.history_cache_steps < 0:
            raise ValueError(f"`history_cache_steps` must be an integer >= 0, got {self.history_cache_steps!r}")
        if self.gradient_surgery not in SURGERY_MODES:
            raise ValueError(f"`gradient_surgery` must be one of {SURGERY_MODES}, got {self.gradient_surgery!r}")
        if not (self.aux_weight >= 0 and math.isfinite(self.aux_weight)):
            raise ValueError(f"`aux_weight` (λ) must be finite and >= 0, got {self.aux_weight}")
        head_lr = self.head_learning_rate
        if head_lr is not None and not (head_lr > 0 and math.isfinite(head_lr)):
            raise ValueError(f"`head_learning_rate` must be finite and > 0, or None, got {self.head_learning_rate}")
        super().__post_init__()


def _named_datasets(datasets) -> list[tuple[str, object]]:
    """``[(name, dataset)]`` of a Trainer's eval dataset (one, none, or a dict of named ones)."""
    if datasets is None:
        return []
    return list(datasets.items()) if isinstance(datasets, dict) else [("eval_dataset", datasets)]


def _check_labelled(dataset, name: str) -> None:
    """Raises before any training when an eval set holds unlabelled impressions (labels -1, MIND's test format):
    metrics cannot be computed on them, and finding out in the evaluation after training would cost the run."""
    if "labels" not in (getattr(dataset, "column_names", None) or []):
        return
    labels = dataset.select_columns(["labels"]).with_format("arrow")[:]["labels"]
    if not pa.types.is_list(labels.type):
        return
    rows = pc.list_flatten(labels)
    unlabelled = pc.sum(pc.equal(rows, -1)).as_py() or 0
    if unlabelled:
        raise ValueError(
            f"{name} holds {unlabelled} unlabelled candidate(s) (label -1, MIND's test format): AUC/MRR/nDCG cannot be "
            "computed on them. load_mind leaves unlabelled impressions out of its eval split (and counts them); "
            "write predictions for an unlabelled split with write_mind_predictions."
        )


class MTRecTrainer(Trainer):
    """`Trainer` whose update follows MTRec's gradient surgery; see the module docstring.

    Overrides, and why:
    - `__init__`: plain `TrainingArguments` become `MTRecTrainingArguments` (`training.arguments.upgrade_arguments`):
      the collator's columns must be kept and only the click labels gathered, or the run fails after training.
    - `compute_loss`: the model returns each task's loss; the objective is L_main + λ(L_category + L_ner), and the
      task losses are kept for logging.
    - `training_step`: the surgery modes need the two per-task gradients separately.
    - `log`: adds the task losses, the g_main/g_aux cosine and the share of conflicting steps to the training logs.
    - `create_optimizer`: with `args.head_learning_rate`, the parameters outside the pretrained news encoder get
      their own learning rate.
    - `create_model_card`: writes MTRec's model card instead of the generic Trainer card.
    - `evaluate`: scores MIND impressions from news vectors encoded once (`evaluation.fast_evaluate`) instead of
      re-encoding every news of every batch; falls back to `Trainer.evaluate` where that cannot apply.
    """

    def __init__(self, model=None, args: TrainingArguments | None = None, *more, **kwargs):
        # Plain `TrainingArguments` become `MTRecTrainingArguments` (MTRec's surgery and λ, the collator's columns kept,
        # the click labels gathered), so they fail nowhere later.
        args = upgrade_arguments(args if args is not None else TrainingArguments(output_dir="tmp_trainer"), MTRecTrainingArguments)
        super().__init__(model, args, *more, **kwargs)
        if self.compute_metrics is None:
            # Evaluation is over whole impressions: AUC, MRR, nDCG@5/10 as in MIND's official scorer.
            self.compute_metrics = compute_mind_metrics
        self.surgery = GradientSurgery(getattr(self.args, "gradient_surgery", "none"))
        self.aux_weight = float(getattr(self.args, "aux_weight", MTRecTrainingArguments.aux_weight))
        check_surgery_supported(self.accelerator.distributed_type, self.surgery.mode)
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(CollatorEpochCallback(self.data_collator))
        self._means = RunningMeans()
        if getattr(self.args, "head_learning_rate", None) is not None and self.optimizer is not None:
            raise ValueError(
                "head_learning_rate is set but an optimizer was passed in `optimizers`: its parameter groups and "
                "learning rates are used as given. Set the learning rates in that optimizer, or leave "
                "head_learning_rate unset."
            )
        for name, dataset in _named_datasets(self.eval_dataset):
            _check_labelled(dataset, name)
        self.history_cache = None
        if getattr(self.args, "history_cache_steps", 0) > 0:
            if not hasattr(self.data_collator, "return_news_rows"):
                raise ValueError(
                    "history_cache_steps > 0 needs a collator that reports the news-table row of every batch news "
                    f"(MTRecCollator); got {type(self.data_collator).__name__}"
                )
            # The cache is keyed by news-table row, which the batches then carry as `news_rows`.
            self.data_collator.return_news_rows = True
            self.history_cache = HistoryVectorCache(self.args.history_cache_steps)
        # Per-task, per-parameter gradients summed over the micro-batches of the current optimizer step.
        self._step_grads: dict[str, list[torch.Tensor | None] | None] = {"main": None, "aux": None}

    # ----------------------------------------------------------------------------------------------- losses

    def _split_losses(self, outputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        if outputs.main_loss is None:
            raise ValueError("MTRecTrainer needs click `labels` in every training batch (the main task).")
        if self.model.training:
            self._means.add_losses(outputs, TASK_LOSSES)
        aux = [loss for loss in (outputs.category_loss, outputs.ner_loss) if loss is not None]
        return outputs.main_loss, (torch.stack(aux).sum() if aux else None)

    def _forward(self, model, inputs: dict):
        """`model(**inputs)`, reusing cached history vectors when `history_cache_steps` > 0 and training.

        A news is taken from the cache when its vector was produced in the last T optimizer steps and it is not a
        candidate anywhere in the batch (candidates always get a fresh vector and a gradient). The vectors
        encoded now are stored, tagged with the current optimizer step. The auxiliary losses, and so the gradient
        surgery, see only the freshly encoded news: a cached vector has no gradient to project.
        """
        rows = inputs.pop("news_rows", None)  # news-table rows of the batch's news, for the cache only
        if self.history_cache is None or not model.training or rows is None:
            return model(**inputs)
        step = self.state.global_step
        cached, hit = self.history_cache.lookup(rows, step)
        is_candidate = torch.zeros_like(hit)
        is_candidate[inputs["candidate_index"][inputs["candidate_mask"].bool()]] = True
        reuse = hit & ~is_candidate  # (N,)
        outputs = model(**inputs, cached_news_embeds=cached, cached_news_mask=reuse)
        fresh = ~reuse
        self.history_cache.update(rows[fresh], outputs.news_embeds[fresh], step)
        self._means.add("history_cache_reuse", reuse.float().mean().item())
        return outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = self._forward(model, inputs)
        main_loss, aux_loss = self._split_losses(outputs)
        loss = main_loss if aux_loss is None else main_loss + self.aux_weight * aux_loss
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------------------------------ optimizer

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """`Trainer.create_optimizer`, with `args.head_learning_rate` for the parameters outside the news encoder.

        Why: the user encoder and the category/NER heads start from random weights while the news encoder is a
        pretrained BERT. One learning rate must be small enough not to wreck BERT (MTRec fine-tunes it at 2e-5)
        and then barely moves the new weights in a short run (README, "Known limits"). Each of the two learning rates is split
        by weight decay as the Trainer does (four groups at most); the scheduler scales every group alike.
        """
        head_lr = getattr(self.args, "head_learning_rate", None)
        if self.optimizer is not None or head_lr is None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        if is_optimizer_factory(optimizer_cls) or {"params", "model", "optimizer_dict"} & set(optimizer_kwargs):
            raise ValueError(
                "head_learning_rate needs an optimizer built over parameter groups, but this one (optim="
                f"{self.args.optim!r}, or optimizer_cls_and_kwargs) chooses its own parameters; leave "
                "head_learning_rate unset with it."
            )
        encoder = {id(p) for p in self.accelerator.unwrap_model(opt_model).news_encoder.parameters()}
        decay = set(self.get_decay_parameter_names(opt_model))
        groups = []
        # The encoder's groups take the optimizer's own lr (`learning_rate`, or the lr of `optimizer_cls_and_kwargs`).
        for in_encoder, lr in ((True, {}), (False, {"lr": head_lr})):
            for decays, weight_decay in ((True, self.args.weight_decay), (False, 0.0)):
                params = [
                    p for n, p in opt_model.named_parameters()
                    if p.requires_grad and (id(p) in encoder) == in_encoder and (n in decay) == decays
                ]
                if params:
                    groups.append({"params": params, "weight_decay": weight_decay, **lr})
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        # The optimizer now exists, so the Trainer's method only applies what it adds around it (SageMaker MP).
        return super().create_optimizer(model)

    # ------------------------------------------------------------------------------------- gradient surgery

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
        if self.surgery.mode == "none":
            return super().training_step(model, inputs, num_items_in_batch)

        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        # no_sync: the DDP reducer must not fire; the per-task gradients are averaged by hand below.
        with self.accelerator.no_sync(model), self.compute_loss_context_manager():
            outputs = self._forward(model, inputs)
        main_loss, aux_loss = self._split_losses(outputs)

        # Same normalisation as Trainer.training_step: each micro-batch loss is a mean, so divide by the number
        # of micro-batches in the step; under fp16 multiply by the GradScaler's scale (see module docstring).
        scale = 1.0 / self.current_gradient_accumulation_steps
        main_obj = main_loss * scale
        aux_obj = None if aux_loss is None else aux_loss * (self.aux_weight * scale)
        scaler = self.accelerator.scaler
        params = [p for p in model.parameters() if p.requires_grad]
        scaled_main = scaler.scale(main_obj) if scaler is not None else main_obj
        g_main = torch.autograd.grad(scaled_main, params, retain_graph=aux_obj is not None, allow_unused=True)
        if aux_obj is not None:
            g_aux = torch.autograd.grad(scaler.scale(aux_obj) if scaler is not None else aux_obj, params, allow_unused=True)
        else:
            g_aux = (None,) * len(params)
        self._step_grads = {"main": accumulate(self._step_grads["main"], g_main),
                            "aux": accumulate(self._step_grads["aux"], g_aux)}
        if self.accelerator.sync_gradients:
            self._apply_surgery(params)

        objective = main_obj if aux_obj is None else main_obj + aux_obj
        return objective.detach()

    def _apply_surgery(self, params: list[torch.Tensor]) -> None:
        """Once per optimizer step: average the step's per-task gradients over processes, project, set `.grad`."""
        g_main, g_aux = self._step_grads["main"], self._step_grads["aux"]
        self._step_grads = {"main": None, "aux": None}
        if self.accelerator.num_processes > 1:
            world = self.accelerator.num_processes
            g_main, g_aux = all_reduce_mean(g_main, params, world), all_reduce_mean(g_aux, params, world)
        update, stats = self.surgery.combine(g_main, g_aux)
        if stats is not None:
            self._means.add("grad_cosine", stats.cosine)
            self._means.add("conflict_rate", float(stats.conflict))
        for param, grad in zip(params, update):
            if grad is not None:
                param.grad = grad if param.grad is None else param.grad + grad

    # ------------------------------------------------------------------------------------- checkpointing

    def _history_cache_file(self, folder: str) -> str:
        return os.path.join(folder, f"history_cache_rank{self.args.process_index}.safetensors")

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        # The history cache is training state like the optimizer's: a resumed run must reuse what the
        # uninterrupted run would have reused. One file per process (each keeps its own cache).
        super()._save_optimizer_and_scheduler(output_dir)
        if self.history_cache is not None:
            save_file(self.history_cache.state_dict(), self._history_cache_file(output_dir))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.history_cache is not None and checkpoint is not None:
            path = self._history_cache_file(checkpoint)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} is missing: resuming with history_cache_steps > 0 needs the cache saved with the "
                    "checkpoint (a run without the cache cannot be resumed with it exactly)"
                )
            self.history_cache.load_state_dict(load_file(path), device=self.args.device)

    # -------------------------------------------------------------------------------------------- logging

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self._means.flush_into(logs)
        super().log(logs, start_time)

    def create_model_card(self, *args, **kwargs) -> None:
        if not self.is_world_process_zero():
            return
        metrics = {}
        for entry in self.state.log_history:
            metrics.update({k[len("eval_"):]: v for k, v in entry.items() if k.startswith("eval_")})
        write_model_card(
            self.args.output_dir,
            self.model.config,
            metrics=metrics or None,
            dataset_name=kwargs.get("dataset") if isinstance(kwargs.get("dataset"), str) else None,
        )

    # ------------------------------------------------------------------------------------ fast evaluation

    def _fast_eval_dataset(self, eval_dataset) -> object | None:
        """The impressions to evaluate through `fast_evaluate`, or None when the slow path must run.

        The fast path needs MIND impressions (history/candidates/labels rows) and the collator's news table, and
        computes only the MIND metrics: a custom `compute_metrics`, a loss-based best-model metric (it returns
        no eval_loss) or sharded parameters (FSDP/DeepSpeed: the model cannot run outside its wrapper) fall back.
        """
        if not getattr(self.args, "fast_eval", False) or self.compute_metrics is not compute_mind_metrics:
            return None
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(dataset, str):  # Trainer.evaluate names one of several eval datasets
            dataset = self.eval_dataset[dataset]
        columns = getattr(dataset, "column_names", None) or []
        if not {"history", "candidates", "labels"} <= set(columns):
            return None
        if getattr(getattr(self, "data_collator", None), "news", None) is None:
            return None
        best = self.args.metric_for_best_model
        if best in ("loss", "eval_loss") or (best is None and self.args.load_best_model_at_end):
            return None
        if not supports_whole_gradients(self.accelerator.distributed_type):
            return None
        return dataset

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Fast path when `args.fast_eval` applies (see `_fast_eval_dataset`), else `Trainer.evaluate`.

        Fast path: `fast_evaluate` encodes every news of the collator's table once and scores each impression
        from those vectors; it returns the slow path's metric keys (``eval_auc``, ``eval_mrr``,
        ``eval_ndcg@5``, ``eval_ndcg@10``, ``eval_num_impressions``, ``eval_num_skipped_impressions``, speed
        metrics) except ``eval_loss``, logs them and calls the callbacks' `on_evaluate` as `Trainer.evaluate`.
        Under several processes (DDP) every process evaluates all impressions with its own replica of the
        model: the results are identical everywhere without any gather, at the price of repeated work.
        """
        if isinstance(eval_dataset if eval_dataset is not None else self.eval_dataset, dict):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)  # recurses per dataset
        dataset = self._fast_eval_dataset(eval_dataset)
        if dataset is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

        self._memory_tracker.start()
        start_time = time.time()
        results = fast_evaluate(
            self.model, self.data_collator.news, dataset, batch_size=self.args.eval_batch_size, device=self.args.device
        )
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


__all__ = ["MTRecTrainer", "MTRecTrainingArguments"]
