"""MTRecCollator on a hand-written tokenised news table (independent of the tokeniser)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from datasets import Dataset

import modeling_mtrec.models.mtrec.collator as collator_module
from modeling_mtrec.models.mtrec.collator import MTRecCollator

CLS, SEP = 101, 102
# Row r has title [CLS, 10 * r + 1, ..., SEP], lengths 3..6 and, for row 6, 9 tokens; category r % 3, -100 for
# row 5; NER tags 1 on the first word, 2 on the rest, -100 on special tokens.
TITLE_WORDS = [1, 2, 3, 1, 2, 3, 7]


def make_news() -> Dataset:
    input_ids, ner_labels = [], []
    for row, num_words in enumerate(TITLE_WORDS):
        input_ids.append([CLS, *[10 * row + i + 1 for i in range(num_words)], SEP])
        ner_labels.append([-100, 1, *[2] * (num_words - 1), -100])
    category_label = [row % 3 if row != 5 else -100 for row in range(len(TITLE_WORDS))]
    return Dataset.from_dict(
        {"input_ids": input_ids, "category_label": category_label, "ner_labels": ner_labels}
    )


NEWS = make_news()
TITLES = NEWS["input_ids"][:]


def test_docstring_example_is_exact() -> None:
    results = doctest.testmod(collator_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0


def test_train_batch_deduplicates_and_indexes_titles() -> None:
    features = [
        {"history": [0, 1, 2], "positive": 3, "negatives": [4, 1]},
        {"history": [2], "positive": 1, "negatives": [0, 3, 4, 5]},
        {"history": [], "positive": 4, "negatives": [5]},
    ]
    batch = MTRecCollator(NEWS, num_negatives=2)(features)
    n = batch["news_input_ids"].shape[0]

    # Every distinct news of the batch appears exactly once (row 6, the long title, is not in the batch).
    titles = [
        tuple(t[m].tolist())
        for t, m in zip(batch["news_input_ids"], batch["news_attention_mask"].bool(), strict=True)
    ]
    assert sorted(titles) == sorted(tuple(TITLES[row]) for row in range(6))
    assert n == 6
    # L is the longest title *in the batch* (4 + 2 special tokens), not in the table (9).
    assert batch["news_input_ids"].shape == (6, 5)
    assert (batch["news_input_ids"][~batch["news_attention_mask"].bool()] == 0).all()  # pad_token_id

    def title_at(position: int) -> list[int]:
        mask = batch["news_attention_mask"][position].bool()
        return batch["news_input_ids"][position][mask].tolist()

    # H = 3, C = 1 + K = 3; indices point at the right titles, masks mark the real entries.
    assert batch["history_index"].shape == batch["history_mask"].shape == (3, 3)
    assert batch["history_mask"].tolist() == [[True, True, True], [True, False, False], [False, False, False]]
    for b, feature in enumerate(features):
        for h, row in enumerate(feature["history"]):
            assert title_at(batch["history_index"][b, h].item()) == TITLES[row]
        assert title_at(batch["candidate_index"][b, 0].item()) == TITLES[feature["positive"]]
        negatives = [TITLES[row] for row in feature["negatives"]]
        drawn = [title_at(p) for p in batch["candidate_index"][b, 1:].tolist()]
        assert all(title in negatives for title in drawn)
    assert (batch["history_index"][~batch["history_mask"]] == 0).all()
    assert batch["candidate_mask"].all()
    assert batch["labels"].tolist() == [[1, 0, 0]] * 3
    # Pools of >= K news are drawn without replacement; the pool of 1 news is drawn with replacement.
    assert len(set(batch["candidate_index"][0, 1:].tolist())) == 2
    assert len(set(batch["candidate_index"][1, 1:].tolist())) == 2
    assert title_at(batch["candidate_index"][2, 1].item()) == title_at(batch["candidate_index"][2, 2].item())
    assert title_at(batch["candidate_index"][2, 1].item()) == TITLES[5]

    # Auxiliary labels follow the news rows.
    for position in range(n):
        row = TITLES.index(title_at(position))
        assert batch["category_labels"][position].item() == (row % 3 if row != 5 else -100)
        length = len(TITLES[row])
        assert batch["ner_labels"][position, :length].tolist() == NEWS[row]["ner_labels"]
        assert (batch["ner_labels"][position, length:] == -100).all()
    assert batch["news_input_ids"].dtype == torch.long and batch["history_mask"].dtype == torch.bool


def test_first_appearance_order_and_exact_padding() -> None:
    batch = MTRecCollator(NEWS, num_negatives=1)(
        [
            {"history": [2, 0], "positive": 1, "negatives": [0]},
            {"history": [1], "positive": 3, "negatives": [2]},
        ]
    )
    # Distinct rows in order of first appearance: 2, 0, 1, 3.
    assert batch["news_input_ids"].tolist() == [
        [CLS, 21, 22, 23, SEP],
        [CLS, 1, SEP, 0, 0],
        [CLS, 11, 12, SEP, 0],
        [CLS, 31, SEP, 0, 0],
    ]
    assert batch["news_attention_mask"].tolist() == [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0],
    ]
    assert batch["ner_labels"].tolist()[1] == [-100, 1, -100, -100, -100]
    assert batch["history_index"].tolist() == [[0, 1], [2, 0]]
    assert batch["candidate_index"].tolist() == [[2, 1], [3, 0]]
    assert batch["category_labels"].tolist() == [2, 0, 1, 0]


def test_eval_batch_pads_candidates_and_drops_impression_id() -> None:
    features = [
        {"impression_id": "11", "history": [0], "candidates": [1, 2, 3, 4], "labels": [0, 1, 0, 0]},
        {"impression_id": "12", "history": [0, 5], "candidates": [2, 5], "labels": [1, 0]},
    ]
    batch = MTRecCollator(NEWS, with_aux_labels=False)(features)
    assert set(batch) == {
        "news_input_ids", "news_attention_mask", "history_index", "history_mask",
        "candidate_index", "candidate_mask", "labels",
    }  # fmt: skip
    assert all(isinstance(value, torch.Tensor) for value in batch.values())
    # Distinct rows in order: 0, 1, 2, 3, 4, 5.
    assert batch["candidate_index"].tolist() == [[1, 2, 3, 4], [2, 5, 0, 0]]
    assert batch["candidate_mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert batch["labels"].tolist() == [[0, 1, 0, 0], [1, 0, -100, -100]]
    assert batch["history_index"].tolist() == [[0, 0], [0, 5]]
    assert batch["history_mask"].tolist() == [[True, False], [True, True]]


def test_empty_histories_give_one_masked_column() -> None:
    batch = MTRecCollator(NEWS)([{"history": [], "candidates": [0, 1], "labels": [-1, -1]}])
    assert batch["history_index"].tolist() == [[0]]
    assert batch["history_mask"].tolist() == [[False]]
    assert batch["labels"].tolist() == [[-1, -1]]  # the unlabelled test split passes through


def test_negative_sampling_is_reproducible() -> None:
    features = [{"history": [0], "positive": 1, "negatives": [2, 3, 4, 5, 6]}] * 4

    def draws(collator: MTRecCollator) -> list[list[int]]:
        return [collator(features)["candidate_index"].tolist() for _ in range(3)]

    assert draws(MTRecCollator(NEWS, seed=3)) == draws(MTRecCollator(NEWS, seed=3))
    assert draws(MTRecCollator(NEWS, generator=np.random.default_rng(3))) == draws(
        MTRecCollator(NEWS, generator=np.random.default_rng(3))
    )


def test_negatives_depend_on_sample_seed_and_epoch_only() -> None:
    """A resumed run never collates the batches it skips, so a sample's draw must not depend on them."""
    samples = [{"history": [0, 6 - h], "positive": 1, "negatives": [2, 3, 4, 5, 6]} for h in range(5)]

    def negative_rows(batch) -> list[list[int]]:
        # Row r's title is [CLS, 10 r + 1, ...]: read the news rows back from the candidates' titles.
        titles = batch["news_input_ids"][batch["candidate_index"][:, 1:]]  # (B, K, L)
        return ((titles[..., 1] - 1) // 10).tolist()

    one_by_one = [negative_rows(MTRecCollator(NEWS, seed=3)([s]))[0] for s in samples]
    collator = MTRecCollator(NEWS, seed=3)
    collator(samples[:2])  # earlier batches change nothing
    assert negative_rows(collator(samples)) == one_by_one
    assert negative_rows(collator(samples[::-1])) == one_by_one[::-1]
    assert len({tuple(rows) for rows in one_by_one}) > 1  # different samples do draw differently
    assert negative_rows(MTRecCollator(NEWS, seed=4)(samples)) != one_by_one
    collator.set_epoch(1)
    assert negative_rows(collator(samples)) != one_by_one  # fresh negatives every epoch
    collator.set_epoch(0)
    assert negative_rows(collator(samples)) == one_by_one


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="num_negatives"):
        MTRecCollator(NEWS, num_negatives=0)
    with pytest.raises(ValueError, match="ner_labels"):
        MTRecCollator(NEWS.remove_columns("ner_labels"))
    collator = MTRecCollator(NEWS)
    with pytest.raises(ValueError, match="only training samples or only evaluation impressions"):
        collator(
            [
                {"history": [], "positive": 0, "negatives": [1]},
                {"history": [], "candidates": [0], "labels": [1]},
            ]
        )
    with pytest.raises(ValueError, match="out of range"):
        collator([{"history": [7], "candidates": [0], "labels": [1]}])
    with pytest.raises(ValueError, match="empty negatives pool"):
        collator([{"history": [], "positive": 0, "negatives": []}])
