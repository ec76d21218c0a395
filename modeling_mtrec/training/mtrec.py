"""MTRec training: `MTRecTrainingArguments` and `MTRecTrainer` with MTRec's gradient surgery.

The surgery (Bi et al., Findings of ACL 2022: project the auxiliary gradient off the main one when they conflict)
is `training.surgery.GradientSurgery`; the per-task-gradient step that feeds it the two per-task gradients of the
whole optimizer step, exact under gradient accumulation, DDP and fp16, is `training.multitask.MultiTaskTrainer`.
MTRec declares its tasks: the click loss is the main one, the category and NER losses (and the sentiment loss when the
model has that head; summed, weighted by λ) the auxiliary one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainingArguments
from transformers.trainer_optimizer import is_optimizer_factory

from ..evaluation.impressions import fast_evaluate
from ..evaluation.metrics import compute_mind_metrics
from ..vectors import HistoryVectorCache
from .callbacks import CollatorEpochCallback
from .multitask import MultiTaskTrainer, TaskLosses
from .surgery import SURGERY_MODES, supports_whole_gradients

TASK_LOSSES = ("main_loss", "category_loss", "ner_loss", "sentiment_loss")


@dataclass
class MTRecTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus MTRec's multi-task knobs."""

    aux_weight: float = field(
        default=0.3,
        metadata={"help": "λ: weight of the merged auxiliary (category + NER [+ sentiment]) gradient (MTRec; default 0.3)."},
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
    beyond_accuracy_k: int | None = field(
        default=None,
        metadata={
            "help": "With fast_eval: also the beyond-accuracy metrics of each impression's top-k (intra-list "
            "diversity, novelty, coverage; modeling_mtrec.evaluation.beyond_accuracy). None: the MIND metrics only."
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
        if self.beyond_accuracy_k is not None and self.beyond_accuracy_k < 1:
            raise ValueError(f"`beyond_accuracy_k` must be >= 1 or None, got {self.beyond_accuracy_k}")
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


class MTRecTrainer(MultiTaskTrainer):
    """`MultiTaskTrainer` for `MTRecModel`: the click loss is the main task, the category and NER losses (weighted
    by λ, `args.aux_weight`) the auxiliary one, combined by `args.gradient_surgery`; see the module docstring.

    Overrides, and why:
    - `__init__`: MIND metrics by default, the collator's epoch callback, the history cache, and an early check
      that the eval sets are labelled (finding out after training would cost the run).
    - `task_losses`: declares MTRec's tasks (the objective L_main + λ(L_category + L_ner [+ L_sentiment])).
    - `forward`: reuses cached history vectors when `args.history_cache_steps` > 0.
    - `create_optimizer`: with `args.head_learning_rate`, the parameters outside the pretrained news encoder get
      their own learning rate.
    - `_save_optimizer_and_scheduler` / `_load_optimizer_and_scheduler`: the history cache is training state.
    - `fast_eval_dataset` / `fast_eval_metrics`: MIND impressions are scored from news vectors encoded once
      (`evaluation.fast_evaluate`) instead of re-encoding every news of every batch.
    """

    args_class = MTRecTrainingArguments
    loss_names = TASK_LOSSES

    def __init__(self, model=None, args: TrainingArguments | None = None, *more, **kwargs):
        super().__init__(model, args, *more, **kwargs)
        if self.compute_metrics is None:
            # Evaluation is over whole impressions: AUC, MRR, nDCG@5/10 as in MIND's official scorer.
            self.compute_metrics = compute_mind_metrics
        self.aux_weight = float(getattr(self.args, "aux_weight", MTRecTrainingArguments.aux_weight))
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(CollatorEpochCallback(self.data_collator))
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

    # ----------------------------------------------------------------------------------------------- losses

    def task_losses(self, model, outputs) -> TaskLosses:
        if outputs.main_loss is None:
            raise ValueError("MTRecTrainer needs click `labels` in every training batch (the main task).")
        if model.training:
            self.record_losses(outputs)
        # λ(L_category + L_ner + L_sentiment): one auxiliary task, so its gradient is λ(g_category + g_ner +
        # g_sentiment) before the surgery projects it.
        aux = [loss for loss in (outputs.category_loss, outputs.ner_loss, getattr(outputs, "sentiment_loss", None))
               if loss is not None]
        aux_loss = torch.stack(aux).sum() if aux else None
        loss = outputs.main_loss if aux_loss is None else outputs.main_loss + self.aux_weight * aux_loss
        return TaskLosses(loss=loss, main=outputs.main_loss, auxiliary=aux_loss, auxiliary_weight=self.aux_weight)

    def forward(self, model, inputs: dict):
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

    # ------------------------------------------------------------------------------------ fast evaluation

    def fast_eval_dataset(self, eval_dataset) -> object | None:
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

    def fast_eval_metrics(self, dataset) -> dict[str, float]:
        """`fast_evaluate`: every news of the collator's table encoded once, each impression scored from those
        vectors; the slow path's metrics (``auc``, ``mrr``, ``ndcg@5``, ``ndcg@10``, ``num_impressions``,
        ``num_skipped_impressions``) except the loss. Under several processes (DDP) every process evaluates all
        impressions with its own replica of the model: the results are identical everywhere without any gather,
        at the price of repeated work."""
        return fast_evaluate(
            self.model, self.data_collator.news, dataset, batch_size=self.args.eval_batch_size, device=self.args.device,
            beyond_accuracy_k=getattr(self.args, "beyond_accuracy_k", None),
        )


__all__ = ["MTRecTrainer", "MTRecTrainingArguments"]
