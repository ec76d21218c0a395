"""Evaluation: MIND's impression metrics (plain functions and an `evaluate` module), fast evaluation from news
vectors encoded once, and the MIND leaderboard's prediction file."""

from .fast import fast_evaluate, impression_scores
from .leaderboard import (
    ImpressionPrediction,
    predict_ranks,
    ranks_from_scores,
    write_mind_predictions,
    write_prediction_file,
)
from .metrics import (
    auc_score,
    dcg_score,
    impression_metrics,
    load_mind_metric,
    mrr_score,
    ndcg_score,
    padded_impression_metrics,
    recall_at_k,
)

__all__ = [
    "ImpressionPrediction",
    "auc_score",
    "dcg_score",
    "fast_evaluate",
    "impression_metrics",
    "impression_scores",
    "load_mind_metric",
    "mrr_score",
    "ndcg_score",
    "padded_impression_metrics",
    "predict_ranks",
    "ranks_from_scores",
    "recall_at_k",
    "write_mind_predictions",
    "write_prediction_file",
]
