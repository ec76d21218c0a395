"""Ranking metrics for news recommendation, with the MIND benchmark's official definitions.

MIND (Wu et al., ACL 2020) scores a model per *impression* (one page of candidate news shown to a user,
each clicked or not) and reports the mean over impressions of AUC, MRR, nDCG@5 and nDCG@10. The functions
below follow the official ``evaluate.py`` of the MIND leaderboard:

* ``auc_score``: ROC AUC of one impression (the leaderboard calls ``sklearn.metrics.roc_auc_score``; here it
  is the Mann-Whitney rank statistic, the same number).
* ``mrr_score``: ``sum(y_true_sorted / rank) / sum(y_true)``, i.e. the mean reciprocal rank over all
  clicked news of the impression (not only the first click).
* ``dcg_score`` / ``ndcg_score``: gains ``2**y - 1``, discounts ``log2(rank + 1)``, cut at ``k``.

The leaderboard does not score the model's scores: it scores ``prediction.txt``, one rank per candidate, with
``y_score = 1 / rank``. Every metric here is therefore computed on the ranking that file holds (see
`modeling_mtrec.evaluation.leaderboard`), so the numbers the package reports are the numbers MIND's scorer gives
its prediction file (``tests/evaluation/test_scorer_agreement.py`` checks it against a re-implementation of the
official ``evaluate.py``). Where the two could part, the choices are:

NOTE (ties): candidates rank by descending score, equal scores in impression order (a *stable* sort on
``-y_score``), for all four metrics: ``prediction.txt`` cannot express a tie, so the ranking written there breaks
ties this way and the official AUC on it counts a tied click/non-click pair as won or lost by input order. A tied
pair therefore does NOT get half credit in the reported AUC (``ties="input_order"``, the default); sklearn's
tie-averaged AUC on the raw scores is ``auc_score(..., ties="average")`` /
``impression_metrics(..., ties="average")``. They differ only on impressions where a click and a non-click have
exactly the same score, e.g. every impression of a user without a known clicked news (r_u = 0, all scores 0).

NOTE (all-clicked impressions): an impression with no non-clicked candidate (or no clicked one) is left out of all
four metrics and counted (``num_skipped_impressions``; `load_mind` already leaves them out of its eval split and
counts them). MIND's scorer keeps it for MRR and nDCG, but its AUC is undefined there: ``roc_auc_score`` raises
(older scikit-learn) or returns NaN (scikit-learn 1.9 did), which makes the scorer's mean AUC NaN, so a dev set
holding one has no official AUC at all. Keeping the four metrics over one set of impressions keeps them comparable.

NOTE (what the metrics see): the candidates the loader knows (a candidate id missing from news.tsv is dropped and
counted, while ``prediction.txt`` ranks it last; MIND's own dev and test files have none), and the model's history
rule (`MTRecModel.encode_users` keeps the most recent ``config.max_history_length`` clicks, in training, evaluation
and prediction alike).

Everything here is plain numpy so it can run inside ``Trainer.compute_metrics``, in a notebook, or behind
the ``evaluate`` module in ``modeling_mtrec/evaluation/mind_metric`` (see :func:`load_mind_metric`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # evaluate is imported lazily: the metrics themselves only need numpy.
    import evaluate

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label value of padded candidate slots (the collator's and the Trainer's padding value); such entries
are dropped before scoring."""

MIND_METRIC_DIR = Path(__file__).resolve().parent / "mind_metric"
"""Folder of the ``evaluate`` module wrapping :func:`impression_metrics`."""

__all__ = [
    "IGNORE_INDEX",
    "MIND_METRIC_DIR",
    "TIE_POLICIES",
    "auc_score",
    "compute_mind_metrics",
    "dcg_score",
    "impression_metrics",
    "load_mind_metric",
    "mrr_score",
    "ndcg_score",
    "padded_impression_metrics",
    "recall_at_k",
]


def _check_pair(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y_true, y_score)`` as 1-D float arrays of equal, non-zero length; raise otherwise.

    Non-finite scores are rejected (as sklearn does): a NaN score is a model bug, and ranking it would
    silently depend on the sort's NaN placement.
    """
    t = np.asarray(y_true)
    s = np.asarray(y_score)
    if t.ndim != 1 or s.ndim != 1:
        raise ValueError(
            f"y_true and y_score must be 1-D (one impression), got shapes {t.shape} and {s.shape}"
        )
    if t.shape != s.shape:
        raise ValueError(f"y_true and y_score differ in length: {t.shape[0]} != {s.shape[0]}")
    if t.size == 0:
        raise ValueError("empty impression: y_true and y_score have no entries")
    t = t.astype(np.float64)
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("y_score contains NaN or inf")
    return t, s


TIE_POLICIES = ("input_order", "average")
"""How `auc_score` / `impression_metrics` rank equal scores: as ``prediction.txt`` does (the default), or sklearn's
average ranks (a tied click/non-click pair counts one half)."""


def _ranking(y_score: np.ndarray) -> np.ndarray:
    """Indices that sort ``y_score`` descending; ties keep their input order (stable sort on ``-score``)."""
    return np.argsort(-y_score, kind="stable")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ascending ranks of ``x``; tied values share the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    is_new = np.r_[True, xs[1:] != xs[:-1]]  # first element of each group of equal values
    starts = np.flatnonzero(is_new)  # 0-based start of each group
    ends = np.r_[starts[1:], xs.size]  # 0-based exclusive end
    group_rank = (starts + 1 + ends) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = group_rank[np.cumsum(is_new) - 1]
    return ranks


def auc_score(y_true: Any, y_score: Any, *, ties: str = "input_order") -> float:
    """ROC AUC of one impression: the share of (clicked, non-clicked) pairs whose click ranks first.

    Computed as the Mann-Whitney U statistic ``(R_pos - P (P + 1) / 2) / (P N)``, with ``R_pos`` the sum of the
    ascending ranks of the ``P`` positives among all ``P + N`` candidates.

    Args:
        y_true: labels of the impression's candidates, each 0 (not clicked) or 1 (clicked).
        y_score: the model's scores, same length; higher means more likely clicked.
        ties: ``"input_order"`` (default): equal scores rank in input order, as in ``prediction.txt``, so the value
            is MIND's scorer's on that file (``roc_auc_score(y_true, 1 / rank)``); ``"average"``: tied candidates
            share their mean rank, so the value is ``sklearn.metrics.roc_auc_score(y_true, y_score)`` (a tied
            click/non-click pair counts one half). See the module's NOTE (ties).

    Raises:
        ValueError: if a label is not 0/1, or if there is no positive or no negative (AUC is undefined).
    """
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    t, s = _check_pair(y_true, y_score)
    if not np.all((t == 0) | (t == 1)):
        raise ValueError(
            f"auc_score needs labels in {{0, 1}}, got values {sorted(set(np.unique(t).tolist()))}"
        )
    pos = t == 1
    num_pos = int(pos.sum())
    num_neg = t.size - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"AUC is undefined for an impression with {num_pos} positive(s) and {num_neg} negative(s); "
            "it needs at least one of each"
        )
    if ties == "average":
        ranks = _average_ranks(s)
    else:  # the ranking of prediction.txt: the best candidate gets rank n, ties broken by input order
        ranks = np.empty(t.size, dtype=np.float64)
        ranks[_ranking(s)] = np.arange(t.size, 0, -1, dtype=np.float64)
    rank_sum = float(ranks[pos].sum())
    return (rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg)


def mrr_score(y_true: Any, y_score: Any) -> float:
    """MIND's mean reciprocal rank of one impression: ``sum(y_true_sorted / rank) / sum(y_true)``.

    Candidates are ranked by descending score (stable on ties, see the module docstring); the reciprocal
    ranks of all clicked news are averaged, so two clicks at ranks 1 and 3 give (1 + 1/3) / 2.

    Raises:
        ValueError: if the impression has no clicked news (``sum(y_true) == 0``).
    """
    t, s = _check_pair(y_true, y_score)
    total = t.sum()
    if total <= 0:
        raise ValueError("MRR is undefined for an impression without a clicked news (sum(y_true) == 0)")
    t_sorted = t[_ranking(s)]
    ranks = np.arange(1, t.size + 1, dtype=np.float64)
    return float(np.sum(t_sorted / ranks) / total)


def dcg_score(y_true: Any, y_score: Any, k: int) -> float:
    """Discounted cumulative gain of the top ``k`` candidates by score.

    ``sum_{r=1..min(k, n)} (2**y_r - 1) / log2(r + 1)`` with ``y_r`` the label at rank ``r`` (descending
    score, stable on ties).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    t, s = _check_pair(y_true, y_score)
    top = t[_ranking(s)[:k]]
    gains = np.power(2.0, top) - 1.0
    discounts = np.log2(np.arange(top.size, dtype=np.float64) + 2.0)  # rank r -> log2(r + 1)
    return float(np.sum(gains / discounts))


def ndcg_score(y_true: Any, y_score: Any, k: int) -> float:
    """Normalised DCG@k: ``dcg_score(y_true, y_score, k) / dcg_score(y_true, y_true, k)`` (MIND's nDCG@k).

    Raises:
        ValueError: if the ideal DCG is zero (no clicked news), where nDCG is undefined.
    """
    ideal = dcg_score(y_true, y_true, k)
    if ideal <= 0:
        raise ValueError("nDCG is undefined for an impression without a clicked news (ideal DCG is 0)")
    return dcg_score(y_true, y_score, k) / ideal


def impression_metrics(
    labels: Sequence[Any], scores: Sequence[Any], *, ties: str = "input_order"
) -> dict[str, float]:
    """Mean AUC, MRR, nDCG@5 and nDCG@10 over impressions, as MIND's scorer computes them on the ``prediction.txt``
    of the same scores (see the module's NOTEs on ties and on all-clicked impressions).

    Args:
        labels: one 1-D array per impression with 1 (clicked), 0 (not clicked) or ``IGNORE_INDEX`` (-100, a
            padded slot). Entries labelled -100 are dropped together with their score before scoring, so
            padded rows from a collator or from ``Trainer``'s cross-batch padding can be passed as they are.
        scores: one 1-D array of model scores per impression, same lengths as ``labels``.
        ties: how AUC ranks equal scores, as in `auc_score` (MRR and nDCG always rank them in input order).

    Returns:
        ``{"auc", "mrr", "ndcg@5", "ndcg@10"}``: means over the scored impressions (NaN if none could be
        scored); ``"num_impressions"``: how many were scored; ``"num_skipped_impressions"``: how many were
        left out because, after dropping padding, they had no clicked or no non-clicked news (AUC is
        undefined there and MIND's leaderboard cannot score them either).

    Raises:
        ValueError: on mismatched lengths, non-finite scores, or a label other than 0, 1 or -100 (for
            example MIND's unlabelled test impressions, label -1), naming the impression's 0-based index.
    """
    if len(labels) != len(scores):
        raise ValueError(f"got {len(labels)} label rows but {len(scores)} score rows")
    aucs: list[float] = []
    mrrs: list[float] = []
    ndcg5s: list[float] = []
    ndcg10s: list[float] = []
    skipped = 0
    for i, (row_labels, row_scores) in enumerate(zip(labels, scores, strict=True)):
        t = np.asarray(row_labels)
        s = np.asarray(row_scores)
        if t.ndim != 1 or t.shape != s.shape:
            raise ValueError(
                f"impression {i}: labels and scores must be 1-D of equal length, got {t.shape} and {s.shape}"
            )
        keep = t != IGNORE_INDEX
        t, s = t[keep], s[keep]
        bad = ~((t == 0) | (t == 1))
        if bad.any():
            raise ValueError(
                f"impression {i}: labels must be 0, 1 or {IGNORE_INDEX} (padding), got {t[bad][0]!r}"
            )
        if not np.all(np.isfinite(s.astype(np.float64))):
            raise ValueError(f"impression {i}: scores contain NaN or inf")
        num_pos = int((t == 1).sum())
        if num_pos == 0 or num_pos == t.size:
            skipped += 1
            continue
        aucs.append(auc_score(t, s, ties=ties))
        mrrs.append(mrr_score(t, s))
        ndcg5s.append(ndcg_score(t, s, 5))
        ndcg10s.append(ndcg_score(t, s, 10))

    if skipped:
        logger.info(
            "impression_metrics: skipped %d impression(s) without a click or without a non-click", skipped
        )
    if not aucs:
        logger.warning(
            "impression_metrics: none of %d impression(s) has both a click and a non-click; metrics are NaN",
            len(labels),
        )

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else math.nan

    return {
        "auc": mean(aucs),
        "mrr": mean(mrrs),
        "ndcg@5": mean(ndcg5s),
        "ndcg@10": mean(ndcg10s),
        "num_impressions": len(aucs),
        "num_skipped_impressions": skipped,
    }


def padded_impression_metrics(
    labels_2d: np.ndarray, scores_2d: np.ndarray, *, ties: str = "input_order"
) -> dict[str, float]:
    """:func:`impression_metrics` for ``Trainer``-style padded arrays, one impression per row.

    Args:
        labels_2d: ``(num_impressions, C)`` labels, -100 where a row is shorter than ``C``.
        scores_2d: ``(num_impressions, C)`` scores; values at -100-labelled positions are ignored (they may
            be anything finite or not, e.g. the Trainer's -100 padding or a masked ``-inf`` logit).
    """
    labels_2d = np.asarray(labels_2d)
    scores_2d = np.asarray(scores_2d)
    if labels_2d.ndim != 2 or labels_2d.shape != scores_2d.shape:
        raise ValueError(
            f"labels_2d and scores_2d must be 2-D of the same shape (num_impressions, C), "
            f"got {labels_2d.shape} and {scores_2d.shape}"
        )
    return impression_metrics(list(labels_2d), list(scores_2d), ties=ties)


def load_mind_metric(**kwargs: Any) -> evaluate.EvaluationModule:
    """``evaluate.load`` the MIND metric shipped in this package (offline: a local path, never the Hub).

    Keyword arguments go to ``evaluate.load`` (e.g. ``experiment_id``, ``keep_in_memory``). The module
    imports ``modeling_mtrec.evaluation.metrics`` absolutely, because evaluate copies the script into its cache before
    importing it, so ``modeling_mtrec`` must be importable (installed, or on ``sys.path``).
    """
    import evaluate

    return evaluate.load(str(MIND_METRIC_DIR), **kwargs)


_MIND_METRIC = None


def compute_mind_metrics(eval_pred) -> dict[str, float]:
    """`Trainer`'s `compute_metrics` for whole-impression evaluation through the packaged `evaluate` MIND metric.

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


def recall_at_k(ranked: Sequence[Sequence[int]], relevant: Sequence[Any], k: int) -> float:
    """Mean over queries of |top-k of `ranked[i]` ∩ `relevant[i]`| / |`relevant[i]`|.

    `ranked[i]` is query i's retrieved items, best first; `relevant[i]` its relevant items (an int or a
    collection). With one relevant item per query (a held-out click) this is the hit rate at k.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} ranked lists for {len(relevant)} relevant sets")
    if len(ranked) == 0:
        raise ValueError("recall_at_k needs at least one query")
    total = 0.0
    for items, wanted in zip(ranked, relevant):
        wanted = {int(wanted)} if np.isscalar(wanted) else {int(w) for w in wanted}
        if not wanted:
            raise ValueError("every query needs at least one relevant item")
        total += len(wanted.intersection(int(i) for i in list(items)[:k])) / len(wanted)
    return total / len(ranked)
