"""The news-vector cache: batching, save/load, staleness."""

from __future__ import annotations

import logging

import pytest
import torch

from modeling_mtrec import MTRecModel
from modeling_mtrec.data import (
    synthetic_tokenizer,
)
from modeling_mtrec.evaluation.impressions import fast_evaluate, impression_scores, news_vector_cache
from modeling_mtrec.serving.retrieval import export_item_vectors
from modeling_mtrec.vectors import NewsVectorCache, StaleCacheError, encoder_fingerprint
from tests.testing_utils import make_two_tower, synthetic_model, tiny_config, tiny_items

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cache_sorted_batches_match_one_by_one_encoding(setup):
    _, _, corpus, model = setup
    cache = news_vector_cache(model, corpus.news, batch_size=32)
    assert cache.vectors.shape == (len(corpus.news), 32) and cache.news_ids == corpus.news["news_id"]
    with torch.no_grad():
        # Padding is masked, so length-sorted batches change the vectors by float32 rounding only (~2e-6 at
        # this scale: other matrix shapes, other summation order).
        for row in (0, 7, len(corpus.news) - 1):  # unpadded, one title at a time
            ids = torch.tensor([corpus.news[row]["input_ids"]])
            torch.testing.assert_close(cache.vectors[row], model.encode_items(ids)[0], atol=1e-5, rtol=0)

def test_cache_round_trip_and_staleness(setup, tmp_path):
    _, _, corpus, model = setup
    cache = news_vector_cache(model, corpus.news)
    path = tmp_path / "news_vectors.safetensors"
    cache.save(path)
    loaded = NewsVectorCache.load(path, model)
    assert loaded.news_ids == cache.news_ids and loaded.fingerprint == cache.fingerprint
    assert torch.equal(loaded.vectors, cache.vectors)
    assert fast_evaluate(model, corpus.news, corpus.eval, cache=loaded) == fast_evaluate(
        model, corpus.news, corpus.eval, cache=cache
    )
    # A cache in another row order is matched to the table by news_id.
    shuffled = NewsVectorCache(cache.news_ids[::-1], cache.vectors.flip(0), fingerprint=cache.fingerprint)
    assert torch.equal(shuffled.aligned_to(corpus.news), cache.vectors)

    changed = synthetic_model(synthetic_tokenizer(), corpus.category2id)
    with torch.no_grad():
        changed.user_encoder.query.add_(1.0)  # the user encoder does not change news vectors: still valid
    NewsVectorCache.load(path, changed)
    with torch.no_grad():
        changed.news_encoder.embeddings.word_embeddings.weight[5, 0] += 1e-3  # as after a training step
    with pytest.raises(StaleCacheError, match="fingerprint"):
        NewsVectorCache.load(path, changed)
    with pytest.raises(ValueError, match="not a news vector cache"):
        from safetensors.torch import save_file

        save_file({"vectors": cache.vectors}, str(tmp_path / "other.safetensors"))
        NewsVectorCache.load(tmp_path / "other.safetensors")

def test_stale_cache_warns_when_not_strict(setup, tmp_path, caplog):
    _, _, corpus, model = setup
    cache = NewsVectorCache(["a"], torch.zeros(1, 32), fingerprint="0" * 16)
    cache.save(tmp_path / "c.safetensors")
    with caplog.at_level(logging.WARNING, logger="modeling_mtrec.vectors"):
        NewsVectorCache.load(tmp_path / "c.safetensors", model, strict=False)
    assert "Rebuild it" in caplog.text


def test_fingerprint_of_caches_saved_before_the_layout_change():
    """`news_vectors.safetensors` files written by earlier versions still pass `check`: the fingerprint of a news
    encoder is computed as before (value written down from the code before the layout change, commit 0e3da6e)."""
    model = MTRecModel(tiny_config())
    with torch.no_grad():
        for _, tensor in sorted(model.state_dict().items()):
            if tensor.is_floating_point():
                tensor.copy_(torch.linspace(-1, 1, tensor.numel()).view_as(tensor))
    assert encoder_fingerprint(model.get_item_encoder()) == "b2f9038bbd5abaeb"


def test_item_vector_cache_of_the_two_tower_model(tmp_path):
    model = make_two_tower()
    items = tiny_items()
    cache = news_vector_cache(model, items, batch_size=5, news_ids=[f"N{i}" for i in range(len(items))])
    assert cache.vectors.shape == (len(items), model.vector_size) and cache.max_title_length is None
    torch.testing.assert_close(cache.lookup(["N3"]), torch.from_numpy(export_item_vectors(model, items))[3:4])
    cache.save(tmp_path / "items.safetensors")
    NewsVectorCache.load(tmp_path / "items.safetensors", model)  # checked against the item tower
    with torch.no_grad():
        model.item_tower.mlp[0].weight[0, 0] += 1e-3
    with pytest.raises(StaleCacheError):
        NewsVectorCache.load(tmp_path / "items.safetensors", model)
    with torch.no_grad():
        model.user_tower.mlp[0].weight[0, 0] += 1.0  # the user tower does not change item vectors
    NewsVectorCache.load(tmp_path / "items.safetensors", model, strict=False)


def test_fast_evaluate_scores_the_two_tower_model_through_the_same_interface():
    from datasets import Dataset

    model = make_two_tower()
    items = tiny_items()
    impressions = Dataset.from_dict({
        "history": [[0, 1], [], [5, 6, 7]], "candidates": [[2, 3, 4], [8, 9], [10, 11, 1]],
        "labels": [[1, 0, 0], [0, 1], [0, 0, 1]], "user_key": [7, 8, 9],
    })
    scores = impression_scores(model, items, impressions, user_columns=("user_key",))
    vectors = torch.from_numpy(export_item_vectors(model, items))
    with torch.no_grad():
        user = model.encode_users(vectors[[5, 6, 7]][None], user_key=torch.tensor([9]))
        expected = model.score(user, vectors[[10, 11, 1]])[0]
    torch.testing.assert_close(torch.from_numpy(scores[2]), expected, rtol=1e-5, atol=1e-5)
    metrics = fast_evaluate(model, items, impressions, user_columns=("user_key",))
    assert metrics["num_impressions"] == 3 and 0.0 <= metrics["auc"] <= 1.0
