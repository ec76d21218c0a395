"""MTRecRecommender: ids and raw titles, unknown ids, empty histories, from_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_mtrec.evaluation.impressions import encode_item_table, news_vector_cache
from modeling_mtrec.serving.recommender import MTRecRecommender, NewsTitle

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recommender_ids_and_titles_agree(setup):
    _, tokenizer, corpus, model = setup
    recommender = MTRecRecommender(model, tokenizer)
    rows = corpus.news.select(range(6))
    recommender.add_news(rows["news_id"], rows["title"])
    ids, titles = rows["news_id"], [NewsTitle(t) for t in rows["title"]]
    by_id = recommender.recommend(ids[:3], ids[3:])
    by_title = recommender.recommend(titles[:3], titles[3:])
    mixed = recommender.recommend([ids[0], titles[1], ids[2]], [titles[3], ids[4], titles[5]])
    np.testing.assert_allclose(by_title.scores, by_id.scores, atol=1e-5)
    np.testing.assert_allclose(mixed.scores, by_id.scores, atol=1e-5)
    scores, ranking = by_id
    assert ranking.tolist() == np.argsort(-scores, kind="stable").tolist()
    # The cache agrees with the tokenised table, and the batched call with single calls.
    torch.testing.assert_close(
        recommender.cache.lookup(ids), encode_item_table(model, rows), atol=1e-6, rtol=0
    )
    batch = recommender.recommend_batch([ids[:3], ids[:1]], [ids[3:], ids[1:4]])
    np.testing.assert_allclose(batch[0].scores, by_id.scores, atol=1e-6)
    np.testing.assert_allclose(batch[1].scores, recommender.recommend(ids[:1], ids[1:4]).scores, atol=1e-6)

def test_recommender_unknown_id_and_empty_history(setup):
    _, tokenizer, corpus, model = setup
    recommender = MTRecRecommender(model, tokenizer)
    recommender.add_news(["A", "B", "C"], corpus.news["title"][:3])
    with pytest.raises(KeyError, match="'Nope'"):
        recommender.recommend(["A"], ["B", "Nope"])
    scores, ranking = recommender.recommend([], ["C", "A", "B"])
    assert scores.tolist() == [0.0, 0.0, 0.0] and ranking.tolist() == [0, 1, 2]

def test_recommender_from_pretrained(setup, tmp_path):
    _, tokenizer, corpus, model = setup
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cache = news_vector_cache(model, corpus.news)
    cache.save(tmp_path / "news_vectors.safetensors")
    recommender = MTRecRecommender.from_pretrained(tmp_path)
    assert recommender.cache.news_ids == cache.news_ids
    ids = cache.news_ids
    expected = MTRecRecommender(model, tokenizer, cache).recommend(ids[:4], ids[4:9]).scores
    np.testing.assert_allclose(recommender.recommend(ids[:4], ids[4:9]).scores, expected, atol=1e-6)
