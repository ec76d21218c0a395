"""The recommender and the news vector cache never answer garbage: non-finite vectors, one-shot iterables, strings
where a list belongs, None and non-string titles get a clear error (or are read once, as a list)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from modeling_mtrec import MTRecRecommender, NewsTitle, NewsVectorCache

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def recommender(setup):
    _, tokenizer, corpus, model = setup
    recommender = MTRecRecommender(model, tokenizer)
    recommender.add_news(["A", "B", "C", "D"], corpus.news["title"][:4])
    return recommender


def diverged(model, module_name: str):
    """A copy of `model` whose `module_name` weights hold NaN (a diverged run, saved as such)."""
    broken = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in broken.get_submodule(module_name).parameters():
            parameter.fill_(float("nan"))
    return broken


# ---------------------------------------------------------------------------------------- non-finite vectors


def test_cache_refuses_non_finite_vectors_naming_the_news():
    vectors = torch.zeros(3, 4)
    vectors[1, 2] = float("nan")
    with pytest.raises(ValueError, match="'N2'.*NaN or inf"):
        NewsVectorCache(["N1", "N2", "N3"], vectors)
    cache = NewsVectorCache(["N1"], torch.zeros(1, 4))
    bad = torch.ones(2, 4)
    bad[1, 0] = float("inf")
    with pytest.raises(ValueError, match="'N3'.*NaN or inf"):
        cache.add(["N2", "N3"], bad)
    assert cache.news_ids == ["N1"]  # nothing stored


def test_add_news_with_a_diverged_news_encoder_names_the_news(setup):
    _, tokenizer, corpus, model = setup
    recommender = MTRecRecommender(diverged(model, "news_encoder"), tokenizer)
    with pytest.raises(ValueError, match="'X1'.*NaN or inf"):
        recommender.add_news(["X1", "X2"], corpus.news["title"][:2])
    assert len(recommender.cache) == 0


def test_recommend_with_a_diverged_model_raises(setup, recommender):
    _, tokenizer, corpus, model = setup
    # News vectors of a diverged news encoder, given as raw titles: the title is named.
    broken_news = MTRecRecommender(diverged(model, "news_encoder"), tokenizer, recommender.cache)
    with pytest.raises(ValueError, match="Cup final.*NaN or inf"):
        broken_news.recommend(["A"], ["B", NewsTitle("Cup final")])
    # A diverged user encoder: the news vectors are fine, the scores are not; the model is named.
    broken_user = MTRecRecommender(diverged(model, "user_encoder"), tokenizer, recommender.cache)
    with pytest.raises(ValueError, match="model.*NaN or inf"):
        broken_user.recommend(["A"], ["B", "C"])


# ------------------------------------------------------------------------------------------- one-shot iterables


def test_history_and_candidates_given_as_generators_are_read_once(recommender):
    expected = recommender.recommend(["A", "B"], ["C", "D"]).scores
    assert np.any(expected != 0)
    by_generator = recommender.recommend((i for i in ["A", "B"]), (i for i in ["C", "D"]))
    np.testing.assert_array_equal(by_generator.scores, expected)
    batch = recommender.recommend_batch(iter([iter(["A", "B"])]), iter([iter(["C", "D"])]))
    np.testing.assert_array_equal(batch[0].scores, expected)


def test_add_news_reads_iterators_once(setup, recommender):
    _, _, corpus, _ = setup
    titles = corpus.news["title"][4:6]
    recommender.add_news(iter(["E", "F"]), iter(titles))
    assert recommender.cache.news_ids[-2:] == ["E", "F"]
    torch.testing.assert_close(recommender.cache.lookup(["E", "F"]), recommender.encode_titles(titles))


# --------------------------------------------------------------------------------------- wrong types, clearly


def test_add_news_refuses_a_string_where_a_list_belongs(recommender):
    with pytest.raises(TypeError, match="news ids must be a list.*string 'AB'"):
        recommender.add_news("AB", ["one title", "another title"])
    with pytest.raises(TypeError, match="titles must be a list.*string 'ab'"):
        recommender.add_news(["X", "Y"], "ab")
    assert "A" in recommender.cache and "X" not in recommender.cache and len(recommender.cache) == 4


@pytest.mark.parametrize("title", [None, 3, b"bytes"])
def test_a_title_that_is_not_a_string_is_refused(recommender, title):
    with pytest.raises(TypeError, match=r"title 1 .*must be a string"):
        recommender.add_news(["X", "Y"], ["fine", title])
    with pytest.raises(TypeError, match="must be a string"):
        recommender.encode_titles([title])
    assert "X" not in recommender.cache


@pytest.mark.parametrize("history", [None, 5])
def test_recommend_refuses_a_history_that_is_not_a_list(recommender, history):
    with pytest.raises(TypeError, match="a history must be a list of news ids, got"):
        recommender.recommend(history, ["A"])
    with pytest.raises(TypeError, match="a candidate list must be a list of news ids, got"):
        recommender.recommend(["A"], history)
    with pytest.raises(TypeError, match="histories must be a list"):
        recommender.recommend_batch(history, [["A"]])
