"""A non-neural baseline for MIND impressions: the share of the user's history in the candidate's category.

A model that reads titles should beat it: it is what a category-level click model (users who read sports click
sports) leaves in the behaviours, with no text, no entities and no training. `train_mtrec.py` reports it beside the
untrained and the trained MTRec, on the same dev impressions (``dev_comparison.json``).

NOTE (ties): the shares are coarse, so candidates of one category, and every candidate of a user without history,
tie. They are ranked as every metric of the package ranks ties (`evaluation.metrics`, ``ties="input_order"``: the
order of the impression, as in ``prediction.txt``), so the baseline's numbers are what MIND's scorer would give its
prediction file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..data.samples import recent_history
from .metrics import impression_metrics

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["category_share_metrics", "category_share_scores"]


def category_share_scores(
    history_categories: Sequence[Hashable], candidate_categories: Sequence[Hashable]
) -> np.ndarray:
    """Score of each candidate: the share of the user's history in the candidate's category.

    E.g. a history of categories ``[sports, sports, finance, health]`` scores a sports candidate 0.5, a finance
    one 0.25 and a travel one 0. An empty history scores every candidate 0 (no preference, as MTRec's zero user
    vector).

    Returns:
        ``(len(candidate_categories),)`` float64 scores in [0, 1].
    """
    counts = Counter(history_categories)
    total = max(len(history_categories), 1)
    return np.array([counts[c] / total for c in candidate_categories], dtype=np.float64)


def category_share_metrics(
    news: Dataset, impressions: Dataset, *, max_history_length: int | None = None
) -> dict[str, float]:
    """MIND metrics (`impression_metrics`) of `category_share_scores` over `build_eval_impressions` rows.

    It takes the rows `fast_evaluate` (and so `MTRecTrainer.evaluate`) takes and scores them with the same metric
    function, so both count the same impressions (those without a click or a non-click are skipped and counted in
    ``num_skipped_impressions`` alike).

    Args:
        news: the news table the rows point into (`MINDCorpus.news`); its ``category`` column is read.
        impressions: rows with ``history`` and ``candidates`` (rows of `news`) and ``labels`` (1/0).
        max_history_length: keep only each user's most recent clicks, as the model does with its
            ``config.max_history_length``; None: the rows' histories as they are (the loader's length).

    Returns:
        ``{"auc", "mrr", "ndcg@5", "ndcg@10", "num_impressions", "num_skipped_impressions"}``.
    """
    missing = {"history", "candidates", "labels"} - set(impressions.column_names)
    if missing or "category" not in news.column_names:
        raise ValueError(
            "category_share_metrics needs impressions with history/candidates/labels and news with a category "
            f"column; missing {sorted(missing) or ['category']}"
        )
    categories = news.select_columns(["category"]).with_format(None)[:]["category"]
    rows = impressions.select_columns(["history", "candidates", "labels"]).with_format(None)[:]
    for column in ("history", "candidates"):
        top = max((max(r) for r in rows[column] if r), default=-1)
        if top >= len(categories):
            raise ValueError(f"impression {column} row {top} is out of range for {len(categories)} news")
    scores = []
    for history, candidates in zip(rows["history"], rows["candidates"], strict=True):
        if max_history_length is not None:
            history = recent_history(history, max_history_length)
        scores.append(category_share_scores([categories[i] for i in history], [categories[i] for i in candidates]))
    return impression_metrics(rows["labels"], scores)
