"""Writes the foundation model's Hub card (README.md) into a saved folder: `model_cards/foundation.md` with its
`model-index` replaced by the figures of the model being saved (or none), never numbers it did not obtain."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import ModelCard

from modeling_mtrec.model_card import _eval_results, card_template_path
from modeling_mtrec.offline import DEFAULT_ENCODER_HUB_ID

CARD_NAME = "foundation.md"


def write_foundation_model_card(
    output_dir: str | os.PathLike, config, metrics: dict[str, float] | None = None, dataset_name: str | None = None
) -> Path:
    """README.md in `output_dir`; `metrics` are flat `evaluate_foundation` keys (e.g. ``"target/ctr_auc"``,
    ``"mean_auc"``), each written as one `model-index` entry."""
    card = ModelCard(card_template_path(CARD_NAME).read_text(encoding="utf-8"))
    lm = getattr(config, "text_encoder_name_or_path", None)
    card.data.base_model = DEFAULT_ENCODER_HUB_ID if lm and "all_minilm_l6_v2" in lm.replace("-", "_").lower() else None
    if dataset_name:
        card.data.datasets = [dataset_name]
    card.data.eval_results = None
    if metrics:
        card.data.model_name = card.data.model_name or "S&R multi-domain foundation model"
        spec = [(key, "roc_auc", f"AUC {key}") for key in metrics if key.endswith("auc") and "gauc" not in key]
        spec += [(key, "gauc", f"grouped AUC {key}") for key in metrics if key.endswith("gauc")]
        card.data.eval_results = _eval_results(metrics, spec, "tabular-classification", "Click-through and relevance", dataset_name)
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


__all__ = ["CARD_NAME", "write_foundation_model_card"]
