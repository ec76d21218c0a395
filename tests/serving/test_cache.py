"""The news-vector cache: batching, save/load, staleness."""

from __future__ import annotations

import logging

import pytest
import torch

from modeling_mtrec.data import (
    synthetic_tokenizer,
)
from modeling_mtrec.evaluation.fast import fast_evaluate
from modeling_mtrec.serving.cache import NewsVectorCache, StaleCacheError
from tests.conftest import synthetic_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cache_sorted_batches_match_one_by_one_encoding(setup):
    _, _, corpus, model = setup
    cache = NewsVectorCache.from_model(model, corpus.news, batch_size=32)
    assert cache.vectors.shape == (len(corpus.news), 32) and cache.news_ids == corpus.news["news_id"]
    with torch.no_grad():
        # Padding is masked, so length-sorted batches change the vectors by float32 rounding only (~2e-6 at
        # this scale: other matrix shapes, other summation order).
        for row in (0, 7, len(corpus.news) - 1):  # unpadded, one title at a time
            ids = torch.tensor([corpus.news[row]["input_ids"]])
            torch.testing.assert_close(cache.vectors[row], model.encode_news(ids)[0], atol=1e-5, rtol=0)

def test_cache_round_trip_and_staleness(setup, tmp_path):
    _, _, corpus, model = setup
    cache = NewsVectorCache.from_model(model, corpus.news)
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
    with caplog.at_level(logging.WARNING, logger="modeling_mtrec.serving.cache"):
        NewsVectorCache.load(tmp_path / "c.safetensors", model, strict=False)
    assert "Rebuild it" in caplog.text
