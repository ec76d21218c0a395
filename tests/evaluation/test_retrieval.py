"""Recall@K of the retriever: by hand, slices, a planted model."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_mtrec.evaluation.metrics import recall_at_k
from modeling_mtrec.evaluation.retrieval import evaluate_retrieval, item_slices
from tests.testing_utils import NUM_ITEMS, make_two_tower, tiny_items


def test_recall_at_k_by_hand():
    ranked = [[5, 1, 2, 3], [4, 3, 2, 1], [9, 8, 7, 6]]
    relevant = [1, {2, 9}, [6]]
    assert recall_at_k(ranked, relevant, 1) == pytest.approx(0.0)
    assert recall_at_k(ranked, relevant, 2) == pytest.approx((1 + 0 + 0) / 3)
    assert recall_at_k(ranked, relevant, 3) == pytest.approx((1 + 0.5 + 0) / 3)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx((1 + 0.5 + 1) / 3)

def test_item_slices_and_evaluate_retrieval_on_a_planted_model():
    slices = item_slices(np.array([10, 5, 5, 1, 0, 1, 0, 2, 3, 4]), head_share=0.2)
    assert np.flatnonzero(slices["head"]).tolist() == [0, 1, 2]  # top 20% of 8 clicked = 2 items, tie included
    assert np.flatnonzero(slices["cold"]).tolist() == [4, 6]
    model = make_two_tower()
    items = tiny_items()
    samples = {"user_key": [1, 2], "history": [[0], [1, 2]], "positive": [3, 4]}
    metrics = evaluate_retrieval(model, items, samples, np.arange(NUM_ITEMS), ks=(1, NUM_ITEMS))
    assert metrics[f"recall@{NUM_ITEMS}"] == 1.0  # everything but the history is retrieved
    assert metrics[f"random_recall@{NUM_ITEMS}"] == 1.0 and metrics["num_queries"] == 2
