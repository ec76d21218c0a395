"""Serving a multi-field MTRec (`config.use_multi_field`): the recommender and the pipeline encode a news from its
title, category and title entities, as training and the fast evaluation do, and refuse a news without them."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset

from modeling_mtrec import MTRecRecommender, NewsTitle
from modeling_mtrec.data import synthetic_tokenizer
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.evaluation.impressions import news_vector_cache
from modeling_mtrec.models.mtrec.processing_mtrec import entity_field_ids, tokenize_news
from modeling_mtrec.serving import pipeline as pipeline_module
from modeling_mtrec.serving.pipeline import NewsRecommendationPipeline
from tests.testing_utils import TITLE_LENGTH, synthetic_model

pytestmark = pytest.mark.usefixtures("one_thread")

BUCKETS = 50
CATEGORIES = {"news": 0, "sports": 1, "finance": 2}


def _entities(title: str, *surfaces: str, wikidata: bool = True) -> list[dict]:
    """MIND's title_entities of `title`, one entity per surface form (EB-NeRD's have no WikidataId: their label)."""
    return [{"Label": s.title(), "Type": "O", "WikidataId": f"Q{len(s)}{i}" if wikidata else "", "Confidence": 1.0,
             "OccurrenceOffsets": [title.index(s)], "SurfaceForms": [s]} for i, s in enumerate(surfaces)]


# (id, title, category, title_entities as news.tsv holds them): an unknown category, an empty one, no entities.
NEWS = [
    ("N1", "champion defends title in final", "sports", ["champion"]),
    ("N2", "chef opens coffee festival", "news", ["coffee festival"]),
    ("N3", "drought faces farmers early", "finance", []),
    ("N4", "coach charged after dunk contest", "weather", ["coach", "dunk contest"]),
    ("N5", "earnings beat as diesel engine sales climb", "", ["diesel engine"]),
    ("N6", "cruise flights cancelled", "sports", None),
]
IDS = [n[0] for n in NEWS]
TITLES = [n[1] for n in NEWS]
CATEGORY_NAMES = [n[2] for n in NEWS]
ENTITIES = [json.dumps(_entities(t, *s, wikidata=i != 1), ensure_ascii=False) if s is not None else ""
            for i, (_, t, _, s) in enumerate(NEWS)]


@pytest.fixture(scope="module")
def tokenizer():
    return synthetic_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return synthetic_model(tokenizer, CATEGORIES, use_multi_field=True, num_entity_buckets=BUCKETS)


@pytest.fixture(scope="module")
def fast_cache(model, tokenizer):
    """The fast evaluation's vectors of NEWS: news.tsv's columns through `tokenize_news`, as training reads them."""
    table = Dataset.from_dict({"news_id": IDS, "title": TITLES, "category": CATEGORY_NAMES, "title_entities": ENTITIES})
    stats = LoadStats()
    tokenized = tokenize_news(table, tokenizer, TITLE_LENGTH, category2id=model.config.category2id, stats=stats)
    assert stats["unknown_category"] == 1 and stats["empty_category"] == 1
    return news_vector_cache(model, tokenized)


def _titles(categories=CATEGORY_NAMES, entities=ENTITIES) -> list[NewsTitle]:
    return [NewsTitle(t, category=c, title_entities=e) for t, c, e in zip(TITLES, categories, entities, strict=True)]


# ---------------------------------------------------------------------------------------------- the recommender


def test_recommender_vectors_equal_the_fast_evaluation(model, tokenizer, fast_cache, caplog):
    recommender = MTRecRecommender(model, tokenizer)
    # Entities as the JSON string of news.tsv or as the list it holds; "" and [] both mean none.
    entities = [json.loads(e or "[]") if i % 2 else e for i, e in enumerate(ENTITIES)]
    with caplog.at_level(logging.WARNING):
        recommender.add_news(IDS, TITLES, categories=CATEGORY_NAMES, title_entities=entities)
    assert "1 of 6 news" in caplog.text and "'weather'" in caplog.text  # the unknown category, not dropped silently
    torch.testing.assert_close(recommender.cache.lookup(IDS), fast_cache.lookup(IDS), atol=1e-6, rtol=1e-5)
    # NewsTitle candidates with their fields give the same vectors, so the same scores as the ids.
    by_id = recommender.recommend(IDS[:2], IDS[2:])
    by_title = recommender.recommend(_titles()[:2], _titles()[2:])
    np.testing.assert_allclose(by_title.scores, by_id.scores, atol=1e-5)
    # The fields count: another category or no entities give another vector; an unknown category is no category.
    other = recommender.encode_titles(TITLES[:1], categories=["finance"], title_entities=[ENTITIES[0]])
    bare = recommender.encode_titles(TITLES[:1], categories=["sports"], title_entities=["[]"])
    assert not torch.allclose(other, fast_cache.lookup(IDS[:1])) and not torch.allclose(bare, other)
    unknown = recommender.encode_titles(TITLES[3:4], categories=[""], title_entities=[ENTITIES[3]])
    torch.testing.assert_close(unknown, fast_cache.lookup(IDS[3:4]), atol=1e-6, rtol=1e-5)


def test_multi_field_recommender_needs_the_category_and_the_entities(model, tokenizer, fast_cache):
    recommender = MTRecRecommender(model, tokenizer, fast_cache)  # a cache written by train_mtrec.py --news_cache
    assert recommender.recommend(IDS[:2], IDS[2:]).scores.shape == (4,)  # ids need nothing more
    for fields in ({}, {"categories": CATEGORY_NAMES}, {"title_entities": ENTITIES}):
        with pytest.raises(ValueError, match="multi-field MTRec .* categories=.* title_entities="):
            recommender.add_news(["X1"] * 6, TITLES, **fields)
    assert "X1" not in recommender.cache
    with pytest.raises(ValueError, match="multi-field MTRec .* categories=.* title_entities="):
        recommender.encode_titles(TITLES)
    # A NewsTitle without its fields names itself and says what to do.
    with pytest.raises(ValueError, match="NewsTitle 'drought faces farmers early' .* category=.*add_news"):
        recommender.recommend(IDS[:1], [IDS[1], NewsTitle(TITLES[2])])
    with pytest.raises(ValueError, match="NewsTitle 'drought faces farmers early'"):
        recommender.recommend(IDS[:1], [NewsTitle(TITLES[2], category="finance")])


def test_multi_field_bad_fields_are_named(model, tokenizer):
    recommender = MTRecRecommender(model, tokenizer)

    def add(categories=CATEGORY_NAMES[:2], entities=ENTITIES[:2]):
        recommender.add_news(IDS[:2], TITLES[:2], categories=categories, title_entities=entities)

    with pytest.raises(ValueError, match="got 2 titles but 1 categories"):
        add(categories=["sports"])
    with pytest.raises(ValueError, match="got 2 titles but 3 title_entities"):
        add(entities=ENTITIES[:3])
    with pytest.raises(TypeError, match="category 1 must be a string, got int: 5"):
        add(categories=["sports", 5])
    with pytest.raises(ValueError, match="title_entities 1: .*not valid JSON"):
        add(entities=["[]", "{broken"])
    with pytest.raises(ValueError, match="title_entities 0: .*not a JSON list"):
        add(entities=['{"Label": "USA"}', "[]"])
    with pytest.raises(ValueError, match="title_entities 1: entity 0 is not a JSON object"):
        add(entities=["[]", ["USA"]])
    with pytest.raises(TypeError, match="title_entities 0 must be MIND's title_entities JSON .* got int"):
        add(entities=[3, "[]"])
    with pytest.raises(TypeError, match="must be a list of strings, got the string"):
        add(categories="sports")
    with pytest.raises(ValueError, match=r"the NewsTitle NewsTitle\('chef opens coffee festival', category='news', "
                                         r"title_entities='\{broken'\): title_entities 0: .*not valid JSON"):
        recommender.recommend([], [NewsTitle(TITLES[1], category="news", title_entities="{broken")])
    assert len(recommender.cache) == 0  # all or nothing


def test_single_field_recommender_reads_the_title_alone(tokenizer):
    model = synthetic_model(tokenizer, CATEGORIES)
    recommender = MTRecRecommender(model, tokenizer)
    recommender.add_news(IDS, TITLES, categories=CATEGORY_NAMES, title_entities=ENTITIES)
    torch.testing.assert_close(recommender.cache.lookup(IDS), recommender.encode_titles(TITLES))
    scores = recommender.recommend(IDS[:2], _titles()[2:]).scores
    np.testing.assert_array_equal(scores, recommender.recommend(IDS[:2], IDS[2:]).scores)


# ---------------------------------------------------------------------------------------------- the pipeline


def _entries(categories=CATEGORY_NAMES, entities=ENTITIES) -> list[dict]:
    return [{"title": t, "category": c, "title_entities": e}
            for t, c, e in zip(TITLES, categories, entities, strict=True)]


def test_multi_field_pipeline_equals_the_recommender(model, tokenizer, caplog):
    recommender = MTRecRecommender(model, tokenizer)
    pipe = NewsRecommendationPipeline(model=model, tokenizer=tokenizer, device="cpu")
    entries = _entries()
    # Duplicates and a candidate also in the history are encoded once.
    for history, candidates in ((entries[:3], entries[3:]), ([entries[0], entries[5], entries[0]], entries[:4])):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            out = pipe({"history": history, "candidates": candidates})
        assert "1 news have a category the model was not trained on (first: 'weather')" in caplog.text
        expected = recommender.recommend(
            [NewsTitle(e["title"], category=e["category"], title_entities=e["title_entities"]) for e in history],
            [NewsTitle(e["title"], category=e["category"], title_entities=e["title_entities"]) for e in candidates],
        )
        assert [r["position"] for r in out["ranking"]] == expected.ranking.tolist()
        assert [r["candidate"] for r in out["ranking"]] == [candidates[i] for i in expected.ranking]
        np.testing.assert_array_equal(np.array([r["score"] for r in out["ranking"]], np.float32),
                                      expected.scores[expected.ranking])
        assert [h["item"] for h in out["history"]] == history


def test_multi_field_pipeline_needs_the_fields(model, tokenizer, fast_cache, tmp_path):
    pipe = NewsRecommendationPipeline(model=model, tokenizer=tokenizer, device="cpu")
    with pytest.raises(ValueError, match="multi-field MTRec .*\"category\".*\"title_entities\".*news_ids=True"):
        pipe({"history": TITLES[:2], "candidates": TITLES[2:]})
    with pytest.raises(ValueError, match="multi-field MTRec"):
        pipe({"history": [{"title": TITLES[0], "category": "sports"}], "candidates": _entries()[2:]})
    with pytest.raises(ValueError, match="unknown key.*'categroy'"):
        pipe({"history": [{"title": TITLES[0], "categroy": "x"}], "candidates": _entries()[2:]})
    with pytest.raises(ValueError, match="'candidates' entry 1: title_entities .*not valid JSON"):
        pipe({"history": [], "candidates": _entries(entities=["[]", "{broken", *ENTITIES[2:]])})
    with pytest.raises(ValueError, match="'history' entry 0 has no string \"title\""):
        pipe({"history": [{"category": "sports", "title_entities": ""}], "candidates": _entries()})
    # News ids: the folder's vectors (train_mtrec.py --news_cache) already hold the fields.
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    fast_cache.save(tmp_path / "news_vectors.safetensors")
    by_id = NewsRecommendationPipeline(model=type(model).from_pretrained(tmp_path), tokenizer=tokenizer, device="cpu")
    out = by_id({"history": IDS[:2], "candidates": IDS[2:]}, news_ids=True)
    expected = MTRecRecommender(model, tokenizer, fast_cache).recommend(IDS[:2], IDS[2:])
    np.testing.assert_allclose([r["score"] for r in out["ranking"]], expected.scores[expected.ranking], atol=1e-6)
    with pytest.raises(ValueError, match="news ids are strings"):
        by_id({"history": IDS[:2], "candidates": _entries()}, news_ids=True)


def test_single_field_pipeline_takes_entries_as_dicts(tokenizer):
    pipe = NewsRecommendationPipeline(model=synthetic_model(tokenizer, CATEGORIES), tokenizer=tokenizer, device="cpu")
    by_dict = pipe({"history": _entries()[:2], "candidates": _entries()[2:]})
    by_title = pipe({"history": TITLES[:2], "candidates": TITLES[2:]})
    assert [r["score"] for r in by_dict["ranking"]] == [r["score"] for r in by_title["ranking"]]


def test_pipeline_entity_ids_equal_the_packages(model):
    """The pipeline's own copy (it runs as remote code without the package) of `entity_field_ids`."""
    values = [*ENTITIES, "", "[]", "  ", json.dumps([{"WikidataId": "Q30", "Label": "USA"}, {"Label": "Aarhus"},
                                                     {"WikidataId": "Q30"}, {"Label": ""}, {}])]
    for value in values:
        assert pipeline_module._entity_field_ids(value, BUCKETS) == entity_field_ids(value, BUCKETS), value
        parsed = json.loads(value) if value.strip() else []
        assert pipeline_module._entity_field_ids(parsed, BUCKETS) == entity_field_ids(value, BUCKETS), value
