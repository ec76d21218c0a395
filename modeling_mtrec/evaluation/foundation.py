"""Per-(domain, task) AUC, their mean, and per-user grouped AUC for CTR, through the package's metric code.

`auc_score` is the package's Mann-Whitney AUC (ties count one half, equal to scikit-learn's). Grouped AUC is the
row-weighted mean of the per-user AUCs over the users whose rows hold both a click and a non-click (the usual
GAUC of industrial CTR papers): users with one class only have no AUC and are left out (their number is
reported).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from modeling_mtrec.evaluation.metrics import auc_score

from ..models.foundation.data import FoundationCollator, FoundationFeatures

TASK_LABELS = {"ctr": "click_labels", "relevance": "relevance_labels"}


def defined_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """`auc_score`, or NaN when the labels hold one class only (AUC undefined)."""
    if labels.size == 0 or labels.min() == labels.max():
        return math.nan
    return auc_score(labels, scores)


def grouped_auc(labels: Sequence[int], scores: Sequence[float], groups: Sequence[str]) -> tuple[float, int]:
    """(row-weighted mean of the per-group AUCs over groups with both classes, number of such groups).

    NaN when no group has both classes.
    """
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        by_group[group].append(i)
    labels, scores = np.asarray(labels), np.asarray(scores)
    total, weight, counted = 0.0, 0, 0
    for rows in by_group.values():
        y = labels[rows]
        if y.min() == y.max():
            continue
        total += len(rows) * auc_score(y, scores[rows])
        weight += len(rows)
        counted += 1
    return (total / weight if weight else math.nan), counted


@torch.no_grad()
def predict(model, features: FoundationFeatures, batch_size: int = 2048) -> dict[str, np.ndarray]:
    """Click and relevance probabilities of every row, in eval mode. -> {"ctr": (N,), "relevance": (N,)}."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = 0
    lm = getattr(model.embeddings, "text_model", None)
    if lm is not None and lm.config.pad_token_id is not None:
        pad = lm.config.pad_token_id
    collate = FoundationCollator(features, pad_token_id=pad)
    out: dict[str, list[torch.Tensor]] = {"ctr": [], "relevance": []}
    try:
        for start in range(0, len(features), batch_size):
            batch = collate(list(range(start, min(start + batch_size, len(features)))))
            batch = {k: v.to(device) for k, v in batch.items() if k not in ("click_labels", "relevance_labels")}
            output = model(**batch)
            out["ctr"].append(output.ctr_logits.sigmoid().float().cpu())
            out["relevance"].append(output.relevance_logits.sigmoid().float().cpu())
    finally:
        model.train(was_training)
    return {task: torch.cat(parts).numpy() if parts else np.zeros(0) for task, parts in out.items()}


def evaluate_foundation(model, features: FoundationFeatures, batch_size: int = 2048) -> dict:
    """Metrics of `model` on `features`:

    ``{"domains": {domain: {"ctr_auc", "ctr_gauc", "ctr_gauc_users", "relevance_auc", "ctr_rows",
    "relevance_rows"}}, "mean_auc": mean over the defined (domain, task) AUCs, "mean_ctr_auc",
    "mean_relevance_auc", "mean_ctr_gauc"}``. An AUC that is undefined (one class only) is NaN and left out of
    the means.
    """
    scores = predict(model, features, batch_size)
    domains = np.asarray(features.domain_names)
    users = np.asarray(features.user_keys)
    report: dict[str, dict[str, float]] = {}
    for domain in dict.fromkeys(features.domain_names):
        in_domain = domains == domain
        entry: dict[str, float] = {}
        for task, column in TASK_LABELS.items():
            labels = features.columns[column].numpy()
            rows = in_domain & (labels != -100)
            entry[f"{task}_rows"] = int(rows.sum())
            entry[f"{task}_auc"] = defined_auc(labels[rows], scores[task][rows])
            if task == "ctr":
                gauc, counted = grouped_auc(labels[rows], scores[task][rows], users[rows])
                entry["ctr_gauc"], entry["ctr_gauc_users"] = gauc, counted
        report[domain] = entry

    def mean(values: list[float]) -> float:
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    return {
        "domains": report,
        "mean_auc": mean([e[f"{t}_auc"] for e in report.values() for t in TASK_LABELS]),
        "mean_ctr_auc": mean([e["ctr_auc"] for e in report.values()]),
        "mean_relevance_auc": mean([e["relevance_auc"] for e in report.values()]),
        "mean_ctr_gauc": mean([e["ctr_gauc"] for e in report.values()]),
    }


def flat_metrics(report: dict, prefix: str = "") -> dict[str, float]:
    """`evaluate_foundation`'s report as flat ``{"<domain>/ctr_auc": ..., "mean_auc": ...}`` (for logs)."""
    flat = {f"{prefix}{k}": v for k, v in report.items() if k != "domains"}
    for domain, entry in report["domains"].items():
        flat.update({f"{prefix}{domain}/{k}": v for k, v in entry.items()})
    return flat


__all__ = ["defined_auc", "evaluate_foundation", "flat_metrics", "grouped_auc", "predict"]
