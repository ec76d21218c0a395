"""MTRec training: `MTRecTrainingArguments` and `MTRecTrainer` with MTRec's gradient surgery.

Gradient surgery (Bi et al., Findings of ACL 2022). Over the parameters that the main and the
auxiliary losses share (the BERT news encoder), flattened together:

    g_main = ∇L_main,   g_aux = λ ∇(L_category + L_ner)
    if g_aux · g_main < 0:   g_aux ← g_aux − (g_aux · g_main / ‖g_main‖²) g_main
    update = g_main + g_aux

The auxiliary tasks serve the main one, so only the auxiliary gradient is projected; the main gradient is never
modified. Parameters reached by one side only take that side's gradient (user encoder: g_main; category and NER
heads: the λ-scaled g_aux). Modes: `mtrec` (above), `pcgrad` (symmetric PCGrad, Yu et al. 2020: each of g_main and
g_aux projected off the other when they conflict), `none` (plain g_main + g_aux in one backward, the ablation).

How it stays exact beyond one process and one micro-batch:
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

`surgery_level="representations"` is the cheaper mode: the same rule is applied to the gradients of the two
losses with respect to the encoder's output H (N, L, D), which only cost a backward pass through the heads and
the user encoder; the encoder then runs ONE backward pass with the combined gradient. Representations are
per-sample, so that projection is per process and per micro-batch (the parameter gradients it produces are then
averaged and accumulated exactly); it is a cheaper approximation of the parameter-level rule, not equal to it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from accelerate.utils import DistributedType
from torch import nn
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import speed_metrics

from ...evaluation.fast import fast_evaluate
from ...evaluation.metrics import load_mind_metric
from ...model_card import write_model_card

SURGERY_MODES = ("mtrec", "pcgrad", "none")
SURGERY_LEVELS = ("parameters", "representations")
# Set-ups where the per-task gradients are full, replicated tensors that the hand-written all-reduce can average.
_SUPPORTED_DISTRIBUTED = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


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
    surgery_level: str = field(
        default="parameters",
        metadata={
            "help": "Where the surgery applies: 'parameters' (the paper: gradients of the shared encoder "
            "weights, two encoder backward passes) or 'representations' (gradients of the encoder output, one "
            "encoder backward pass; cheaper, approximate).",
            "choices": list(SURGERY_LEVELS),
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

    def __post_init__(self):
        if self.gradient_surgery not in SURGERY_MODES:
            raise ValueError(f"`gradient_surgery` must be one of {SURGERY_MODES}, got {self.gradient_surgery!r}")
        if self.surgery_level not in SURGERY_LEVELS:
            raise ValueError(f"`surgery_level` must be one of {SURGERY_LEVELS}, got {self.surgery_level!r}")
        if not self.aux_weight >= 0:
            raise ValueError(f"`aux_weight` (λ) must be >= 0, got {self.aux_weight}")
        super().__post_init__()


def compute_mind_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for whole-impression evaluation through the packaged `evaluate` MIND metric.

    `eval_pred.predictions` and `eval_pred.label_ids` are (num_impressions, C) click scores and 1/0 labels,
    padded with -100 by the collator and by the Trainer's cross-batch concatenation; the metric drops the
    -100 slots, so every impression is scored on exactly its own candidates.
    """
    global _MIND_METRIC
    if _MIND_METRIC is None:
        _MIND_METRIC = load_mind_metric(keep_in_memory=True)
    scores, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(scores, tuple):
        scores = scores[0]
    return _MIND_METRIC.compute(predictions=list(scores), references=list(labels))


_MIND_METRIC = None


def project_conflicting(
    g_main: torch.Tensor, g_aux: torch.Tensor, mode: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Applies the surgery to two flat gradients of the shared parameters.

    Returns (g_main', g_aux', dot, cosine) where dot and cosine are taken before any projection. A zero or
    non-finite gradient leaves both untouched (nothing to project onto, or a step the scaler will skip).
    """
    dot = torch.dot(g_main, g_aux)
    main_sq, aux_sq = torch.dot(g_main, g_main), torch.dot(g_aux, g_aux)
    cosine = dot / (main_sq.sqrt() * aux_sq.sqrt()).clamp(min=torch.finfo(dot.dtype).tiny)
    conflict = bool(dot < 0) and bool(torch.isfinite(dot))
    if mode == "none" or not conflict:
        return g_main, g_aux, dot, cosine
    new_aux = g_aux - (dot / main_sq) * g_main if main_sq > 0 else g_aux
    if mode == "mtrec":
        return g_main, new_aux, dot, cosine
    new_main = g_main - (dot / aux_sq) * g_aux if aux_sq > 0 else g_main  # pcgrad: symmetric
    return new_main, new_aux, dot, cosine


class RunningMeans:
    """Values recorded between two training logs (task losses, gradient cosines), averaged into the next log.

    Added to the log that carries "loss", so they reach every `report_to` integration (TensorBoard, W&B)
    through the Trainer's own callbacks.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, value: float) -> None:
        self.sums[name] += value
        self.counts[name] += 1

    def flush_into(self, logs: dict[str, float]) -> None:
        if "loss" in logs and self.counts:
            logs.update({name: round(total / self.counts[name], 6) for name, total in self.sums.items()})
            self.sums.clear()
            self.counts.clear()


def check_surgery_supported(distributed_type: DistributedType, mode: str) -> None:
    """Refuses set-ups where the hand-written all-reduce would not see whole gradients (never a silent wrong step)."""
    if mode != "none" and distributed_type not in _SUPPORTED_DISTRIBUTED:
        raise ValueError(
            f"gradient_surgery={mode!r} supports {[t.value for t in _SUPPORTED_DISTRIBUTED]} (single process and "
            f"DDP on CPU or GPU), not {distributed_type.value}: FSDP and DeepSpeed shard the gradients, so the "
            "projection would use per-shard dot products. Use DDP, or gradient_surgery='none'."
        )


class _CollatorEpoch(TrainerCallback):
    """Tells the collator the epoch, so its negatives are fresh each epoch yet independent of batch order."""

    def __init__(self, collator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is fractional on a mid-epoch resume (e.g. 0.5): the epoch being trained is its floor.
        self.collator.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))


class MTRecTrainer(Trainer):
    """`Trainer` whose update follows MTRec's gradient surgery; see the module docstring.

    Overrides, and why:
    - `compute_loss`: the model returns each task's loss; the objective is L_main + λ(L_category + L_ner), and the
      task losses are kept for logging.
    - `training_step`: the surgery modes need the two per-task gradients separately.
    - `log`: adds the task losses, the g_main/g_aux cosine and the share of conflicting steps to the training logs.
    - `create_model_card`: writes MTRec's model card instead of the generic Trainer card.
    - `evaluate`: scores MIND impressions from news vectors encoded once (`inference.fast_evaluate`) instead of
      re-encoding every news of every batch; falls back to `Trainer.evaluate` where that cannot apply.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.compute_metrics is None:
            # Evaluation is over whole impressions: AUC, MRR, nDCG@5/10 as in MIND's official scorer.
            self.compute_metrics = compute_mind_metrics
        check_surgery_supported(self.accelerator.distributed_type, getattr(self.args, "gradient_surgery", "none"))
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(_CollatorEpoch(self.data_collator))
        self._means = RunningMeans()
        self._grad_acc: dict[str, list[torch.Tensor | None]] | None = None

    # ----------------------------------------------------------------------------------------------- losses

    @property
    def _aux_weight(self) -> float:
        return float(getattr(self.args, "aux_weight", 0.3))

    def _record(self, name: str, value: float) -> None:
        self._means.add(name, value)

    def _project(self, flat_main: torch.Tensor, flat_aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`project_conflicting` in the configured mode, recording the cosine and whether the two conflicted."""
        new_main, new_aux, dot, cosine = project_conflicting(flat_main, flat_aux, self.args.gradient_surgery)
        if torch.isfinite(dot):
            self._record("grad_cosine", cosine.item())
            self._record("conflict_rate", float(dot < 0))
        return new_main, new_aux

    def _split_losses(self, outputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        if outputs.main_loss is None:
            raise ValueError("MTRecTrainer needs click `labels` in every training batch (the main task).")
        aux = [loss for loss in (outputs.category_loss, outputs.ner_loss) if loss is not None]
        if self.model.training:
            self._record("main_loss", outputs.main_loss.item())
            for name in ("category_loss", "ner_loss"):
                if getattr(outputs, name) is not None:
                    self._record(name, getattr(outputs, name).item())
        return outputs.main_loss, (torch.stack(aux).sum() if aux else None)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        main_loss, aux_loss = self._split_losses(outputs)
        loss = main_loss if aux_loss is None else main_loss + self._aux_weight * aux_loss
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------------------------- gradient surgery

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
        if self.args.gradient_surgery == "none":
            return super().training_step(model, inputs, num_items_in_batch)

        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        captured: dict[str, torch.Tensor] = {}
        hook = None
        if self.args.surgery_level == "representations":
            def keep_hidden(module, args, output) -> None:  # returns None: the output itself is not replaced
                captured["hidden"] = output.last_hidden_state

            hook = self.accelerator.unwrap_model(model).news_encoder.register_forward_hook(keep_hidden)
        try:
            # no_sync: the DDP reducer must not fire; the per-task gradients are averaged by hand below.
            with self.accelerator.no_sync(model), self.compute_loss_context_manager():
                outputs = model(**inputs)
        finally:
            if hook is not None:
                hook.remove()
        main_loss, aux_loss = self._split_losses(outputs)

        # Same normalisation as Trainer.training_step: each micro-batch loss is a mean, so divide by the number
        # of micro-batches in the step; under fp16 multiply by the GradScaler's scale (see module docstring).
        scale = 1.0 / self.current_gradient_accumulation_steps
        main_obj = main_loss * scale
        aux_obj = None if aux_loss is None else aux_loss * (self._aux_weight * scale)
        scaler = self.accelerator.scaler
        params = [p for p in model.parameters() if p.requires_grad]
        scaled_main = scaler.scale(main_obj) if scaler is not None else main_obj
        scaled_aux = None if aux_obj is None else (scaler.scale(aux_obj) if scaler is not None else aux_obj)
        if "hidden" in captured:
            g_main, g_aux = self._representation_surgery(captured["hidden"], scaled_main, scaled_aux, params, model)
        else:
            g_main = torch.autograd.grad(scaled_main, params, retain_graph=aux_obj is not None, allow_unused=True)
            if scaled_aux is not None:
                g_aux = torch.autograd.grad(scaled_aux, params, allow_unused=True)
            else:
                g_aux = (None,) * len(params)
        self._accumulate(g_main, g_aux)
        if self.accelerator.sync_gradients:
            self._apply_surgery(params)

        objective = main_obj if aux_obj is None else main_obj + aux_obj
        return objective.detach()

    def _representation_surgery(
        self, hidden: torch.Tensor, main_obj: torch.Tensor, aux_obj: torch.Tensor | None, params: list, model
    ) -> tuple[list, list]:
        """`surgery_level="representations"`: project at the encoder output, then one encoder backward pass.

        Returns per-parameter gradients in the layout `_accumulate` takes: the encoder's combined gradient and
        the user encoder's main gradient on the main side, the heads' gradients on the auxiliary side.
        """
        encoder_ids = {id(p) for p in self.accelerator.unwrap_model(model).news_encoder.parameters()}
        encoder_idx = [i for i, p in enumerate(params) if id(p) in encoder_ids]
        other_idx = [i for i, p in enumerate(params) if id(p) not in encoder_ids]
        others = [params[i] for i in other_idx]
        # Backward through the heads and the user encoder only: d/dH and d/d(their weights).
        main_grads = torch.autograd.grad(main_obj, [hidden, *others], retain_graph=True, allow_unused=True)
        aux_grads = (
            torch.autograd.grad(aux_obj, [hidden, *others], retain_graph=True, allow_unused=True)
            if aux_obj is not None
            else (None,) * (1 + len(others))
        )
        h_main, h_aux = main_grads[0], aux_grads[0]  # (N, L, D) each; the main one is 0 off the [CLS] rows
        if h_main is None:
            h_main = torch.zeros_like(hidden)
        grad_hidden = h_main
        if h_aux is not None:
            new_main, new_aux = self._project(h_main.reshape(-1).float(), h_aux.reshape(-1).float())
            grad_hidden = (new_main + new_aux).view_as(hidden).to(hidden.dtype)
        encoder_grads = torch.autograd.grad(
            hidden, [params[i] for i in encoder_idx], grad_outputs=grad_hidden, allow_unused=True
        )  # the one encoder backward pass
        g_main: list[torch.Tensor | None] = [None] * len(params)
        g_aux: list[torch.Tensor | None] = [None] * len(params)
        for i, g in zip(encoder_idx, encoder_grads):
            g_main[i] = g  # already combined: nothing shared is left for `_apply_surgery` to project
        for j, i in enumerate(other_idx):
            g_main[i], g_aux[i] = main_grads[1 + j], aux_grads[1 + j]
        return g_main, g_aux

    def _accumulate(self, g_main: tuple, g_aux: tuple) -> None:
        if self._grad_acc is None:
            self._grad_acc = {"main": [None] * len(g_main), "aux": [None] * len(g_aux)}
        for side, grads in (("main", g_main), ("aux", g_aux)):
            acc = self._grad_acc[side]
            for i, g in enumerate(grads):
                if g is not None:
                    acc[i] = g if acc[i] is None else acc[i] + g

    def _apply_surgery(self, params: list[torch.Tensor]) -> None:
        acc, self._grad_acc = self._grad_acc, None
        g_main, g_aux = acc["main"], acc["aux"]
        if self.accelerator.num_processes > 1:
            g_main, g_aux = self._all_reduce_mean(g_main, params), self._all_reduce_mean(g_aux, params)
        shared = [i for i in range(len(params)) if g_main[i] is not None and g_aux[i] is not None]
        if shared:
            flat_main = torch.cat([g_main[i].reshape(-1) for i in shared]).float()
            flat_aux = torch.cat([g_aux[i].reshape(-1) for i in shared]).float()
            new_main, new_aux = self._project(flat_main, flat_aux)
            combined = (new_main + new_aux).split([g_main[i].numel() for i in shared])
            for i, flat in zip(shared, combined):
                g_main[i], g_aux[i] = flat.view_as(params[i]).to(params[i].dtype), None
        for i, param in enumerate(params):
            grad = g_main[i] if g_aux[i] is None else (g_aux[i] if g_main[i] is None else g_main[i] + g_aux[i])
            if grad is None:
                continue
            param.grad = grad if param.grad is None else param.grad + grad

    def _all_reduce_mean(self, grads: list[torch.Tensor | None], params: list[torch.Tensor]) -> list:
        """Averages one task's gradients over processes in one flat buffer (a missing gradient counts as 0)."""
        present = torch.tensor([g is not None for g in grads], device=params[0].device, dtype=torch.int32)
        torch.distributed.all_reduce(present)  # a parameter one process did not reach may be reached by another
        flat = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                for g, p, n in zip(grads, params, present.tolist())
                if n > 0
            ]
        ) if bool(present.any()) else None
        if flat is None:
            return [None] * len(grads)
        torch.distributed.all_reduce(flat)
        flat /= self.accelerator.num_processes
        kept = [i for i, n in enumerate(present.tolist()) if n > 0]
        out: list[torch.Tensor | None] = [None] * len(grads)
        for i, chunk in zip(kept, flat.split([params[i].numel() for i in kept])):
            out[i] = chunk.view_as(params[i]).to(params[i].dtype)
        return out

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
        if self.accelerator.distributed_type not in _SUPPORTED_DISTRIBUTED:
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


__all__ = [
    "MTRecTrainer",
    "MTRecTrainingArguments",
    "RunningMeans",
    "SURGERY_LEVELS",
    "SURGERY_MODES",
    "check_surgery_supported",
    "compute_mind_metrics",
    "project_conflicting",
]
