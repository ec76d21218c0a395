"""Fixtures shared by every test; the helpers they use are in `testing_utils.py` (which also keeps the tests offline)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from modeling_mtrec import MTRecConfig
from modeling_mtrec.data import generate_synthetic_mind, synthetic_tokenizer
from modeling_mtrec.models.mtrec.corpus import load_mind
from tests.testing_utils import TITLE_LENGTH, random_batch, synthetic_model, tiny_config


@pytest.fixture
def config() -> MTRecConfig:
    return tiny_config()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return random_batch()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine two spinning threads made a
    50 ms test take 11 s; the previous setting is restored for the other test modules."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Small synthetic corpus (40 dev impressions, 180 news, some empty histories) and a tiny model."""
    folder = tmp_path_factory.mktemp("synthetic")
    dirs = generate_synthetic_mind(str(folder), seed=0, num_news=150, num_users=20, num_dev_news=30, num_dev_users=40)
    tokenizer = synthetic_tokenizer()
    corpus = load_mind(tokenizer, train_dir=dirs["train"], eval_dir=dirs["dev"], max_title_length=TITLE_LENGTH)
    return dirs, tokenizer, corpus, synthetic_model(tokenizer, corpus.category2id)


@pytest.fixture(scope="module")
def corpus_dirs(tmp_path_factory):
    return generate_synthetic_mind(str(tmp_path_factory.mktemp("synthetic")), seed=0, num_users=150, num_dev_users=100)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A tiny random BERT saved as a checkpoint folder, with the synthetic corpus' tokenizer beside it."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = synthetic_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), tokenizer
