"""The vector layer: one file format and one encoder fingerprint for every vector table."""

from __future__ import annotations

import copy

import pytest
import torch

from modeling_mtrec.vectors import (
    FORMAT,
    NewsVectorCache,
    TextFeatureCache,
    encoder_fingerprint,
    load_vectors,
    save_vectors,
)


def test_one_file_format_for_every_table(tmp_path):
    news = NewsVectorCache(["N1", 2], torch.arange(6.0).view(2, 3), fingerprint="f" * 16, max_title_length=20)
    news.save(tmp_path / "news.safetensors")
    keys, vectors, metadata = load_vectors(tmp_path / "news.safetensors", "news")
    assert keys == ["N1", "2"] and torch.equal(vectors, news.vectors)
    assert metadata["format"] == FORMAT and metadata["kind"] == "news" and metadata["fingerprint"] == "f" * 16
    assert metadata["max_title_length"] == "20"
    # A table of one kind is never read as another.
    with pytest.raises(ValueError, match="not a text vector cache .*kind 'news'"):
        TextFeatureCache.load(tmp_path / "news.safetensors", "unused-lm", fingerprint="f" * 16)
    save_vectors(tmp_path / "text.safetensors", "text", ["a title"], torch.ones(1, 3), "f" * 16, lm="x", max_length="8")
    with pytest.raises(ValueError, match="not a news vector cache .*kind 'text'"):
        NewsVectorCache.load(tmp_path / "text.safetensors")
    text = TextFeatureCache.load(tmp_path / "text.safetensors", "x", max_length=8, fingerprint="f" * 16)
    assert text.texts == ["a title"] and torch.equal(text.encode(["a title"]), torch.ones(1, 3))
    assert not (tmp_path / "text.safetensors.tmp").exists()  # written atomically


def test_encoder_fingerprint_hashes_config_weights_and_settings():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=9, max_position_embeddings=16), add_pooling_layer=False)
    fingerprint = encoder_fingerprint(encoder)
    twin = copy.deepcopy(encoder)
    twin.config.transformers_version = "0.0.0"  # bookkeeping: no effect on the vectors
    twin.config._name_or_path = "elsewhere"
    assert encoder_fingerprint(twin) == fingerprint
    assert encoder_fingerprint(encoder, max_length=16) != fingerprint != encoder_fingerprint(encoder, max_length=8)
    with torch.no_grad():
        twin.embeddings.word_embeddings.weight[3, 0] += 1e-4
    assert encoder_fingerprint(twin) != fingerprint
    assert encoder_fingerprint(twin, skip=["embeddings.word_embeddings.weight"]) == encoder_fingerprint(
        encoder, skip=["embeddings.word_embeddings.weight"]
    )
    twin = copy.deepcopy(encoder)
    twin.config.hidden_dropout_prob = 0.5  # a config entry the encoder reads
    assert encoder_fingerprint(twin) != fingerprint
