"""The routines evaluation and serving share, written once against the scoring interface."""

from __future__ import annotations

import pytest
import torch

from modeling_mtrec.scoring import (
    encode_item_batches,
    encode_users_from_vectors,
    eval_mode,
    score_impressions,
)
from tests.testing_utils import make_two_tower, tiny_items


def test_eval_mode_restores_each_models_mode_even_on_an_error():
    training, evaluating = torch.nn.Linear(2, 2).train(), torch.nn.Linear(2, 2).eval()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(training, evaluating):
        assert not training.training and not evaluating.training
        raise RuntimeError("boom")
    assert training.training and not evaluating.training


def test_item_batches_fill_their_rows_in_any_order():
    model = make_two_tower()
    items = tiny_items()
    in_order = encode_item_batches(model, items.batches(5), len(items))
    shuffled = [([7, 2], items.rows([7, 2])), ([0, 1, 3, 4, 5, 6, 8, 9, 10, 11], items.rows([0, 1, 3, 4, 5, 6, 8, 9, 10, 11]))]
    torch.testing.assert_close(encode_item_batches(model, shuffled, len(items)), in_order, rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(in_order, model.encode_items(**items.rows(range(len(items)))), rtol=0, atol=1e-6)


def test_user_vectors_from_an_empty_table_and_empty_histories():
    model = make_two_tower()
    empty = torch.zeros(0, model.vector_size)
    users = encode_users_from_vectors(model, empty, [[], []], user_inputs={"user_key": [1, 2]})
    with torch.no_grad():
        expected = model.encode_users(torch.zeros(2, 1, model.vector_size), torch.zeros(2, 1, dtype=torch.bool),
                                      user_key=torch.tensor([1, 2]))
    torch.testing.assert_close(users, expected)
    with pytest.raises(ValueError, match="candidate lists"):
        score_impressions(model, empty, [[]], [], user_inputs={"user_key": [1]})
