"""Beyond-accuracy metrics on examples worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modeling_mtrec.evaluation.beyond_accuracy import (
    beyond_accuracy_metrics,
    category_coverage,
    category_intra_list_diversity,
    category_novelty,
    item_coverage,
    popularity_novelty,
    top_k,
    vector_intra_list_diversity,
    vector_novelty,
)

# Three unit vectors: a and b orthogonal (distance 1), c opposite to a (distance 2), b and c orthogonal (1).
A, B, C = [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]


def test_top_k_is_stable_on_ties() -> None:
    assert top_k([0.1, 0.9, 0.5, 0.9], 3).tolist() == [1, 3, 2]
    assert top_k([0.3], 5).tolist() == [0]
    with pytest.raises(ValueError):
        top_k([0.1], 0)


def test_category_intra_list_diversity() -> None:
    # pairs (s, s) 0, (s, n) 1, (s, n) 1 -> 2 / 3
    assert category_intra_list_diversity(["sports", "sports", "news"]) == pytest.approx(2 / 3)
    assert category_intra_list_diversity(["a", "b", "c", "d"]) == 1.0
    assert category_intra_list_diversity(["a", "a"]) == 0.0
    assert math.isnan(category_intra_list_diversity(["a"]))


def test_vector_intra_list_diversity() -> None:
    # pairs: d(A, B) = 1, d(A, C) = 2, d(B, C) = 1 -> 4 / 3; scale does not matter (cosine)
    assert vector_intra_list_diversity(np.array([A, B, C])) == pytest.approx(4 / 3)
    assert vector_intra_list_diversity(np.array([[2.0, 0.0], [5.0, 0.0]])) == pytest.approx(0.0)
    assert vector_intra_list_diversity(np.array([[0.0, 0.0], A])) == pytest.approx(1.0)  # zero vector: cos 0
    assert math.isnan(vector_intra_list_diversity(np.array([A])))


def test_novelty_against_the_history() -> None:
    # "sports" differs from 1 of 3 history news, "news" from 3 of 3 -> (1/3 + 1) / 2
    assert category_novelty(["sports", "news"], ["sports", "sports", "finance"]) == pytest.approx(2 / 3)
    assert math.isnan(category_novelty(["sports"], []))
    # A vs history {A, B}: (0 + 1) / 2; C vs {A, B}: (2 + 1) / 2 -> mean 1.0
    assert vector_novelty(np.array([A, C]), np.array([A, B])) == pytest.approx(1.0)
    assert math.isnan(vector_novelty(np.array([A]), np.zeros((0, 2))))


def test_popularity_novelty() -> None:
    assert popularity_novelty([0.5, 0.25]) == pytest.approx(1.5)  # (1 + 2) / 2 bits
    assert popularity_novelty([1.0]) == 0.0
    with pytest.raises(ValueError, match="smooth"):
        popularity_novelty([0.0, 0.5])


def test_coverage() -> None:
    assert item_coverage([[1, 2], [2, 3]], 6) == pytest.approx(0.5)
    assert category_coverage([["a", "b"], ["a"]], 4) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        item_coverage([[1]], 0)


def test_beyond_accuracy_metrics_on_two_impressions() -> None:
    categories = ["sports", "sports", "news", "finance", "news"]  # rows 0..4
    vectors = np.array([A, A, B, C, B])
    popularity = np.array([0.5, 0.25, 0.5, 0.125, 1.0])
    metrics = beyond_accuracy_metrics(
        candidates=[[0, 1, 2], [3, 4]],
        scores=[[0.9, 0.8, 0.1], [0.2, 0.2]],  # top-2: rows 0, 1 | rows 3, 4 (a tie keeps the order)
        k=2,
        histories=[[2], []],
        categories=categories,
        vectors=vectors,
        popularity=popularity,
        num_items=10,
    )
    assert metrics == pytest.approx(
        {
            "ild_category@2": (0.0 + 1.0) / 2,  # (sports, sports), (finance, news)
            "ild_vector@2": (0.0 + 1.0) / 2,  # d(A, A) = 0, d(C, B) = 1
            "novelty_category@2": 1.0,  # sports vs news twice; impression 2 has no history (left out)
            "novelty_vector@2": 1.0,  # d(A, B) = 1 twice
            "novelty_popularity@2": ((1 + 2) / 2 + (3 + 0) / 2) / 2,
            "coverage_items@2": 4 / 10,  # rows 0, 1, 3, 4
            "coverage_categories@2": 3 / 3,  # sports, finance, news of the 3 offered
        }
    )


def test_beyond_accuracy_metrics_checks_lengths() -> None:
    with pytest.raises(ValueError, match="candidates for"):
        beyond_accuracy_metrics([[0, 1]], [[0.5]], k=1)
    assert beyond_accuracy_metrics([[0, 1]], [[0.5, 0.1]], k=1) == {"coverage_items@1": 0.5}
