"""MIND ranking metrics: hand-worked values, sklearn agreement, skipping/padding rules, the evaluate module."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modeling_mtrec.evaluation.metrics import (
    MIND_METRIC_DIR,
    auc_score,
    dcg_score,
    impression_metrics,
    load_mind_metric,
    mrr_score,
    ndcg_score,
    padded_impression_metrics,
)

LOG2_3 = math.log2(3)  # 1.5849625007211562: the discount at rank 2

# Impression A: ranked by score the candidates are idx0 (0.9, clicked), idx1 (0.8), idx3 (0.5, clicked),
# idx2 (0.3), idx4 (0.1), so the labels in rank order are [1, 0, 1, 0, 0].
A_LABELS = np.array([1, 0, 0, 1, 0])
A_SCORES = np.array([0.9, 0.8, 0.3, 0.5, 0.1])
# AUC: 2 x 3 = 6 positive/negative pairs; 0.9 beats all 3 negatives, 0.5 beats 0.3 and 0.1 -> 5/6.
A_AUC = 5 / 6
# MRR: clicks at ranks 1 and 3 -> (1/1 + 1/3) / 2 = 2/3.
A_MRR = 2 / 3
# DCG: gains 2**1 - 1 = 1 at ranks 1 and 3 -> 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5.
# Ideal DCG: clicks at ranks 1 and 2 -> 1 + 1/log2(3). Only 5 candidates, so @5 and @10 agree.
A_NDCG = 1.5 / (1 + 1 / LOG2_3)  # 0.9197207891481876

# Impression B, with a tie: the clicked idx1 and the non-clicked idx0 both score 0.5.
B_LABELS = np.array([0, 1, 0])
B_SCORES = np.array([0.5, 0.5, 0.2])
# AUC: the tied pair counts 1/2, the win over 0.2 counts 1 -> (0.5 + 1) / 2 = 0.75 with ties="average"; with
# ties in input order (the default, as prediction.txt ranks them) idx0 ranks first, the pair is lost -> 1/2.
B_AUC = 0.75
B_AUC_INPUT_ORDER = 0.5
# Stable sort on -score keeps idx0 before idx1, so the click is at rank 2: MRR = 1/2, nDCG = (1/log2(3)) / 1.
B_MRR = 0.5
B_NDCG = 1 / LOG2_3  # 0.6309297535714575


def test_single_impression_metrics_match_hand_computed_values() -> None:
    assert auc_score(A_LABELS, A_SCORES) == pytest.approx(A_AUC)
    assert mrr_score(A_LABELS, A_SCORES) == pytest.approx(A_MRR)
    assert dcg_score(A_LABELS, A_SCORES, 5) == pytest.approx(1.5)
    assert ndcg_score(A_LABELS, A_SCORES, 5) == pytest.approx(A_NDCG)
    assert ndcg_score(A_LABELS, A_SCORES, 10) == pytest.approx(A_NDCG)
    # @2: labels at ranks 1..2 are [1, 0] -> DCG 1; ideal [1, 1] -> 1 + 1/log2(3).
    assert ndcg_score(A_LABELS, A_SCORES, 2) == pytest.approx(1 / (1 + 1 / LOG2_3))
    # A perfect ranking scores 1 everywhere.
    assert auc_score(A_LABELS, A_LABELS) == 1.0
    assert mrr_score(A_LABELS, A_LABELS) == pytest.approx(0.75)  # clicks at ranks 1, 2: (1 + 1/2) / 2


def test_ties_use_average_rank_for_auc_and_input_order_for_ranking() -> None:
    assert auc_score(B_LABELS, B_SCORES, ties="average") == pytest.approx(B_AUC)
    assert auc_score(B_LABELS, B_SCORES) == pytest.approx(B_AUC_INPUT_ORDER)
    assert mrr_score(B_LABELS, B_SCORES) == pytest.approx(B_MRR)
    assert ndcg_score(B_LABELS, B_SCORES, 5) == pytest.approx(B_NDCG)
    # Swapping the tied candidates puts the click first: the ranking follows input order on ties.
    assert mrr_score(B_LABELS[[1, 0, 2]], B_SCORES[[1, 0, 2]]) == 1.0
    # All scores equal: every positive/negative pair is a tie -> AUC 1/2.
    assert auc_score([1, 0, 1, 0], [3.0, 3.0, 3.0, 3.0], ties="average") == 0.5


def test_dcg_uses_exponential_gains_and_cuts_at_k() -> None:
    # Graded labels [2, 0, 1], ranked idx1 (0), idx2 (1), idx0 (2): gains 0, 2**1 - 1 = 1, 2**2 - 1 = 3.
    labels, scores = [2, 0, 1], [0.1, 0.9, 0.5]
    assert dcg_score(labels, scores, 3) == pytest.approx(0 + 1 / LOG2_3 + 3 / 2)  # log2(4) = 2
    assert dcg_score(labels, scores, 2) == pytest.approx(1 / LOG2_3)
    assert dcg_score(labels, scores, 1) == 0.0
    with pytest.raises(ValueError, match="positive integer"):
        dcg_score(labels, scores, 0)


def test_auc_matches_sklearn_on_random_impressions_with_ties() -> None:
    roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(80):
        n = int(rng.integers(2, 40))
        labels = rng.integers(0, 2, size=n)
        if labels.min() == labels.max():
            continue
        # Rounding to one decimal makes many ties, some across a click and a non-click.
        scores = np.round(rng.normal(size=n), 1)
        assert auc_score(labels, scores, ties="average") == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        checked += 1
    assert checked > 50


def test_undefined_metrics_raise() -> None:
    with pytest.raises(ValueError, match="AUC is undefined"):
        auc_score([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="AUC is undefined"):
        auc_score([0, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="labels in"):
        auc_score([1, -1], [0.2, 0.3])
    with pytest.raises(ValueError, match="MRR is undefined"):
        mrr_score([0, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="nDCG is undefined"):
        ndcg_score([0, 0], [0.2, 0.3], 5)
    with pytest.raises(ValueError, match="differ in length"):
        auc_score([1, 0], [0.2])
    with pytest.raises(ValueError, match="NaN"):
        auc_score([1, 0], [0.2, float("nan")])


def test_impression_metrics_averages_and_counts_skipped_impressions() -> None:
    labels = [A_LABELS, np.array([0, 0, 0]), B_LABELS, np.array([1, 1])]
    scores = [A_SCORES, np.array([0.1, 0.2, 0.3]), B_SCORES, np.array([0.4, 0.5])]
    result = impression_metrics(labels, scores)
    # Only A and B have both a click and a non-click; the other two are skipped and counted.
    assert result["num_impressions"] == 2
    assert result["num_skipped_impressions"] == 2
    assert result["auc"] == pytest.approx((A_AUC + B_AUC_INPUT_ORDER) / 2)  # (5/6 + 1/2) / 2 = 2/3
    assert result["mrr"] == pytest.approx((A_MRR + B_MRR) / 2)  # (2/3 + 1/2) / 2 = 7/12
    assert result["ndcg@5"] == pytest.approx((A_NDCG + B_NDCG) / 2)
    assert result["ndcg@10"] == pytest.approx((A_NDCG + B_NDCG) / 2)
    assert set(result) == {"auc", "mrr", "ndcg@5", "ndcg@10", "num_impressions", "num_skipped_impressions"}


def test_impression_metrics_with_nothing_scorable_returns_nan_and_counts() -> None:
    result = impression_metrics([np.array([0, 0])], [np.array([0.1, 0.2])])
    assert result["num_impressions"] == 0 and result["num_skipped_impressions"] == 1
    assert math.isnan(result["auc"]) and math.isnan(result["ndcg@10"])


def test_padding_is_dropped_with_its_score() -> None:
    # After dropping the -100 slots: labels [1, 0], scores [0.2, 0.7] -> AUC 0, MRR 1/2, nDCG 1/log2(3).
    # The padded scores (99, nan) would change every metric if they were kept.
    padded = impression_metrics([np.array([1, -100, 0, -100])], [np.array([0.2, 99.0, 0.7, np.nan])])
    assert padded["auc"] == 0.0
    assert padded["mrr"] == pytest.approx(0.5)
    assert padded["ndcg@5"] == pytest.approx(1 / LOG2_3)
    # A row that is all padding, or only a click once padding is dropped, is skipped like any other.
    skipped = impression_metrics([np.array([-100, -100]), np.array([1, -100])], [np.zeros(2), np.zeros(2)])
    assert skipped["num_impressions"] == 0 and skipped["num_skipped_impressions"] == 2


def test_padded_impression_metrics_equals_ragged_version() -> None:
    labels_2d = np.full((3, 5), -100)
    scores_2d = np.full((3, 5), -100.0)  # the Trainer pads predictions with -100 too
    labels_2d[0, :5], scores_2d[0, :5] = A_LABELS, A_SCORES
    labels_2d[1, :3], scores_2d[1, :3] = B_LABELS, B_SCORES
    labels_2d[2, :2], scores_2d[2, :2] = [0, 0], [0.3, 0.1]  # no click: skipped
    scores_2d[1, 3:] = -np.inf  # a masked logit at a padded slot is ignored as well
    expected = impression_metrics(
        [A_LABELS, B_LABELS, np.array([0, 0])], [A_SCORES, B_SCORES, np.array([0.3, 0.1])]
    )
    assert padded_impression_metrics(labels_2d, scores_2d) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same shape"):
        padded_impression_metrics(labels_2d, scores_2d[:, :4])


def test_unlabelled_impressions_are_rejected_with_their_index() -> None:
    # MIND's test split has no labels (-1): scoring it must fail loudly, not be skipped.
    with pytest.raises(ValueError, match="impression 1: labels must be 0, 1 or -100"):
        impression_metrics([A_LABELS, np.array([-1, -1])], [A_SCORES, np.array([0.1, 0.2])])
    with pytest.raises(ValueError, match="2 label rows but 1 score rows"):
        impression_metrics([A_LABELS, B_LABELS], [A_SCORES])


def test_evaluate_module_returns_impression_metrics(tmp_path) -> None:
    pytest.importorskip("evaluate")
    predictions = [A_SCORES.tolist(), B_SCORES.tolist(), [0.2, 0.7, 0.0], [0.1, 0.2]]
    references = [A_LABELS.tolist(), B_LABELS.tolist(), [1, 0, -100], [0, 0]]
    expected = impression_metrics([np.array(r) for r in references], [np.array(p) for p in predictions])
    mind = load_mind_metric(cache_dir=str(tmp_path), keep_in_memory=True)
    assert mind.compute(predictions=predictions, references=references) == pytest.approx(expected)
    # Loading the script file directly gives the same module; batches accumulate like any evaluate metric.
    import evaluate

    mind_py = evaluate.load(
        str(MIND_METRIC_DIR / "mind_metric.py"), cache_dir=str(tmp_path), keep_in_memory=True
    )
    mind_py.add_batch(predictions=predictions[:2], references=references[:2])
    mind_py.add_batch(predictions=predictions[2:], references=references[2:])
    assert mind_py.compute() == pytest.approx(expected)
