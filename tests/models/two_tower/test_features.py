"""Item features of the two-tower retriever: hashed keys, mutual information, static log p_j."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset

from modeling_mtrec.data.samples import stable_key
from modeling_mtrec.models.two_tower.features import (
    build_item_features,
    feature_mutual_information,
    static_log_q,
)


def test_item_features_and_mutual_information():
    news = Dataset.from_dict({
        "news_id": ["N1", "N2", "N3", "N4"],
        "category": ["a", "a", "b", "b"],
        "subcategory": ["a1", "a2", "b1", "b1"],
        "title": ["Big news today", "Big", "Small thing", "small"],
        "title_entities": ['[{"WikidataId": "Q1"}, {"WikidataId": "Q2"}]', "[]", "not json", ""],
    })
    items = build_item_features(news, max_entities=2, max_title_words=2)
    assert items.entity_keys[0].tolist() == [stable_key("Q1"), stable_key("Q2")]
    assert (items.entity_keys[1:] == -1).all()
    assert items.word_keys[2].tolist() == [stable_key("small"), stable_key("thing")]
    assert items.word_keys[3].tolist() == [stable_key("small"), -1]
    mi = np.array(feature_mutual_information(items))
    assert np.allclose(mi, mi.T)
    assert mi[0, 1] == pytest.approx(math.log(2))  # item id determines the category: MI = H(category)
    assert mi[1, 2] == pytest.approx(math.log(2))

def test_static_log_q_is_probability_of_appearing_in_a_batch():
    log_q = static_log_q(np.array([3, 1, 0]), batch_size=2)
    np.testing.assert_allclose(np.exp(log_q), [1 - 0.25**2, 1 - 0.75**2, 1 - 0.75**2], rtol=1e-6)
