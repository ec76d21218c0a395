"""Evaluation: MIND's impression metrics (plain functions and an `evaluate` module), fast evaluation from news
vectors encoded once, the MIND leaderboard's prediction file, and a non-neural baseline to compare models with."""

from . import beyond_accuracy
from .baselines import category_share_metrics, category_share_scores
from .beyond_accuracy import *  # noqa: F403 (the names of its __all__, which joins this package's below)
from .impressions import encode_item_table, fast_evaluate, impression_scores, news_vector_cache
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
    "category_share_metrics",
    "category_share_scores",
    "dcg_score",
    "encode_item_table",
    "fast_evaluate",
    "impression_metrics",
    "impression_scores",
    "load_mind_metric",
    "mrr_score",
    "ndcg_score",
    "news_vector_cache",
    "padded_impression_metrics",
    "predict_ranks",
    "ranks_from_scores",
    "recall_at_k",
    "write_mind_predictions",
    "write_prediction_file",
]
__all__ += beyond_accuracy.__all__
