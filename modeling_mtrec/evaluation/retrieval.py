"""Recall@K of the two-tower retriever against the whole item corpus, overall and per slice, and the recall of an
approximate faiss index against the exact one.

Recall@K slices (by training clicks of the held-out clicked item): among the items clicked at least once in
training, `head` = the top `head_share` (20%) of them by click count (ties at the boundary included) and `tail` =
the rest; `cold` = items never clicked in training (e.g. news first seen in the eval split).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..models.two_tower.features import ItemFeatures
from ..scoring import encode_item_batches, encode_users_from_vectors
from ..vectors import build_index, search
from .metrics import recall_at_k

if TYPE_CHECKING:
    import faiss

__all__ = ["approximate_recall", "evaluate_retrieval", "item_slices"]


def item_slices(train_counts: np.ndarray, head_share: float = 0.2) -> dict[str, np.ndarray]:
    """Boolean (num_items,) masks "head", "tail", "cold" (see module docstring)."""
    if not 0 < head_share < 1:
        raise ValueError(f"head_share must be in (0, 1), got {head_share}")
    counts = np.asarray(train_counts)
    clicked = counts > 0
    if not clicked.any():
        return {"head": np.zeros_like(clicked), "tail": np.zeros_like(clicked), "cold": ~clicked}
    ordered = np.sort(counts[clicked])[::-1]
    threshold = ordered[max(0, int(np.ceil(head_share * len(ordered))) - 1)]
    head = counts >= threshold
    return {"head": head & clicked, "tail": clicked & ~head, "cold": ~clicked}


def evaluate_retrieval(
    model,
    items: ItemFeatures,
    samples,
    train_counts: np.ndarray,
    *,
    ks: Sequence[int] = (10, 50, 100),
    index: faiss.Index | None = None,
    item_vectors: np.ndarray | None = None,
    head_share: float = 0.2,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Recall@K of held-out clicks against the whole item corpus, overall and per slice (head / tail / cold).

    `samples` are `build_retrieval_samples` rows (one query per click; the user's history is excluded from the
    results, as a retriever would not re-recommend read news). Returns ``recall@k``, ``{slice}_recall@k``,
    ``random_recall@k`` (expected recall of a uniformly random ranking), and ``num_queries`` / ``num_{slice}``.
    """
    if item_vectors is None:  # the item tower's L2-normalised vectors, every row once
        item_vectors = encode_item_batches(model, items.batches(4096), len(items)).numpy()
    table = torch.from_numpy(np.ascontiguousarray(item_vectors))
    if index is None:
        index = build_index(item_vectors, "flat")
    if hasattr(samples, "select_columns"):  # a Dataset: to_dict honours any select / shuffle indices
        samples = samples.select_columns(["user_key", "history", "positive"]).to_dict()
    user_keys, histories = samples["user_key"], samples["history"]
    positives = np.asarray(samples["positive"], dtype=np.int64)
    if len(positives) == 0:
        raise ValueError("evaluate_retrieval needs at least one held-out click")
    top = max(ks)
    ranked = []
    for start in range(0, len(positives), batch_size):
        stop = start + batch_size
        users = encode_users_from_vectors(
            model, table, histories[start:stop], user_inputs={"user_key": list(user_keys[start:stop])},
            batch_size=max(1, len(histories[start:stop])),
        ).numpy()
        ranked.append(search(index, users, top, exclude=histories[start:stop])[1])
    ranked = np.concatenate(ranked) if ranked else np.zeros((0, top), dtype=np.int64)
    slices = item_slices(train_counts, head_share)
    metrics: dict[str, float] = {"num_queries": float(len(positives))}
    for k in ks:
        metrics[f"recall@{k}"] = recall_at_k(ranked, positives, k)
        metrics[f"random_recall@{k}"] = float(np.mean([min(1.0, k / max(1, len(items) - len(h))) for h in histories]))
    for name, mask in slices.items():
        chosen = mask[positives]
        metrics[f"num_{name}"] = float(chosen.sum())
        for k in ks:
            metrics[f"{name}_recall@{k}"] = recall_at_k(ranked[chosen], positives[chosen], k) if chosen.any() else float("nan")
    return metrics




def approximate_recall(exact: faiss.Index, approximate: faiss.Index, queries: np.ndarray, k: int) -> float:
    """Share of the exact top-k that the approximate index also returns in its top-k (mean over queries)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = exact.search(queries, k)
    _, found = approximate.search(queries, k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth.tolist(), found.tolist())]))
