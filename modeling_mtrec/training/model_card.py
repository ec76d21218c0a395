"""Writes a model's Hub card (README.md) into a saved folder: one writer for every model, keyed by `model_type`.

Each model has a card template in `model_cards/<name>.md` (shipped inside the wheel as
`modeling_mtrec/model_cards/`), all with one layout, in this order:

    # <model name>            what it is, in a paragraph or two
    ## How to use             loading and scoring code
    ## Training               data and procedure
    ## Evaluation             how it is evaluated; reference figures, dated
    ## Intended use and limits
    ## Citation

and one `CardSpec` below (template, task, which metrics go into the `model-index`). A third model adds a template
and an entry in `CARDS`. The template's YAML `model-index` may hold the figures of a reference run; a card
written for another model replaces them with that model's own metrics, or drops them when there are none, so
that a card never shows numbers its model did not obtain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard

from ..models.mtrec.configuration_mtrec import encoder_hub_id

__all__ = ["CARDS", "CARD_SECTIONS", "CardSpec", "card_template_path", "render_model_card", "write_model_card"]

CARD_SECTIONS = ("How to use", "Training", "Evaluation", "Intended use and limits", "Citation")


@dataclass(frozen=True)
class CardSpec:
    """What differs between two models' cards.

    Attributes:
        template: file name in `model_cards/`.
        model_name: `model-index` name.
        task_type, task_name: `model-index` task.
        metrics: (key in the evaluation results, `model-index` metric type, display name) of each reported metric.
    """

    template: str
    model_name: str
    task_type: str
    task_name: str
    metrics: tuple[tuple[str, str, str], ...]


CARDS: dict[str, CardSpec] = {
    "mtrec": CardSpec(
        template="mtrec.md",
        model_name="MTRec",
        task_type="text-ranking",
        task_name="News recommendation",
        # keys of `impression_metrics` / MTRecTrainer.evaluate
        metrics=(("auc", "roc_auc", "AUC"), ("mrr", "mrr", "MRR"), ("ndcg@5", "ndcg@5", "nDCG@5"),
                 ("ndcg@10", "ndcg@10", "nDCG@10")),
    ),
    "two_tower_ssl": CardSpec(
        template="two_tower.md",
        model_name="Two-tower retriever",
        task_type="text-retrieval",
        task_name="News retrieval",
        # keys of `evaluate_retrieval`
        metrics=tuple(
            (f"{prefix}recall@{k}", f"{prefix}recall@{k}", f"{label}Recall@{k}")
            for prefix, label in (("", ""), ("tail_", "tail "), ("cold_", "cold "))
            for k in (10, 50, 100)
        ),
    ),
    "mtrec_foundation": CardSpec(
        template="foundation.md",
        model_name="S&R multi-domain foundation model",
        task_type="tabular-classification",
        task_name="Click-through and query-item relevance",
        # keys of `evaluate_foundation`: means over the (domain, task) pairs of the evaluated rows
        metrics=(("mean_auc", "roc_auc", "mean AUC"), ("mean_ctr_auc", "roc_auc", "CTR AUC"),
                 ("mean_relevance_auc", "roc_auc", "relevance AUC"), ("mean_ctr_gauc", "gauc", "CTR grouped AUC")),
    ),
}


def card_template_path(name: str) -> Path:
    """The packaged card in a wheel install, else the repository's `model_cards/` (editable install)."""
    package = Path(__file__).resolve().parent.parent  # this file is modeling_mtrec/training/model_card.py
    packaged = package / "model_cards" / name
    if packaged.is_file():
        return packaged
    return package.parent / "model_cards" / name


def _base_model(config) -> str | None:
    """The Hub id of the checkpoint the model was initialised from (`encoder_name_or_path`), if it has one."""
    return encoder_hub_id(getattr(config, "encoder_name_or_path", None))


def render_model_card(config, metrics: dict[str, float] | None = None, dataset_name: str | None = None) -> ModelCard:
    """The card of `config.model_type` with `base_model` from the config and `model-index` from `metrics` (or none).

    NaN metrics (e.g. an empty slice) are left out.
    """
    spec = CARDS.get(config.model_type)
    if spec is None:
        raise ValueError(f"no model card for model_type {config.model_type!r}; known: {sorted(CARDS)}")
    card = ModelCard(card_template_path(spec.template).read_text(encoding="utf-8"))
    card.data.base_model = _base_model(config)
    if dataset_name:
        card.data.datasets = [dataset_name]
    card.data.eval_results = None
    if metrics:
        card.data.model_name = card.data.model_name or spec.model_name
        card.data.eval_results = [
            EvalResult(
                task_type=spec.task_type,
                task_name=spec.task_name,
                dataset_type=dataset_name or "custom",
                dataset_name=dataset_name or "custom MIND-format dev split",
                dataset_split="dev",
                metric_type=metric_type,
                metric_name=display,
                metric_value=round(float(metrics[key]), 4),
            )
            for key, metric_type, display in spec.metrics
            if key in metrics and metrics[key] == metrics[key]
        ]
    return card


def write_model_card(
    output_dir: str | os.PathLike, config, metrics: dict[str, float] | None = None, dataset_name: str | None = None
) -> Path:
    """Writes README.md into `output_dir` and returns its path."""
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    render_model_card(config, metrics=metrics, dataset_name=dataset_name).save(path)
    return path
