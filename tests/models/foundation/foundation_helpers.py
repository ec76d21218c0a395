"""Tiny configs, random batches and a tiny offline LM for the foundation model's tests (no network)."""

from __future__ import annotations

import os

import torch
from transformers import BertConfig, BertModel

from modeling_mtrec import FoundationConfig, FoundationModel

TEXT_DIM = 12
DOMAINS = ["alpha", "beta", "gamma"]


def tiny_config(**overrides) -> FoundationConfig:
    kwargs = dict(
        domains=list(DOMAINS), embedding_dim=16, id_embedding_dim=8, user_id_buckets=50, item_id_buckets=60,
        query_id_buckets=40, sparse_buckets=30, sparse_hidden_sizes=[16], text_embed_dim=TEXT_DIM,
        domain_embedding_dim=4, domain_adaptive_dim=24, num_experts=3, expert_hidden_sizes=[16], tower_hidden_sizes=[8],
        ple_num_task_experts=1, ple_num_shared_experts=2, ple_num_levels=2,
    )
    kwargs.update(overrides)
    return FoundationConfig(**kwargs)


def make_model(seed: int = 0, **overrides) -> FoundationModel:
    torch.manual_seed(seed)
    return FoundationModel(tiny_config(**overrides))


def random_batch(seed: int = 0, batch: int = 8, history: int = 4, num_texts: int = 7, labels: bool = True) -> dict:
    """A collator-shaped batch: every aspect present on some rows, every domain, search and recommendation rows.

    Rows 0, 2, 4, ... are search rows (query id, text and sparse values); the others are recommendation rows (no
    query, no relevance label). Item ids, texts and sparse values are all present, except row 1's item id.
    """
    g = torch.Generator().manual_seed(seed)
    search = torch.arange(batch) % 2 == 0
    out = {
        "domain_ids": torch.arange(batch) % len(DOMAINS),
        "user_ids": torch.randint(1, 50, (batch,), generator=g),
        "user_sparse_ids": torch.randint(0, 30, (batch, 3), generator=g),
        "history_item_ids": torch.randint(1, 60, (batch, history), generator=g),
        "history_text_index": torch.randint(-1, num_texts, (batch, history), generator=g),
        "history_mask": torch.ones(batch, history, dtype=torch.bool),
        "query_ids": torch.randint(1, 40, (batch,), generator=g) * search,
        "query_sparse_ids": torch.randint(1, 30, (batch, 2), generator=g) * search[:, None],
        "query_text_index": torch.where(search, torch.randint(0, num_texts, (batch,), generator=g), -1),
        "item_ids": torch.randint(1, 60, (batch,), generator=g),
        "item_sparse_ids": torch.randint(1, 30, (batch, 2), generator=g),
        "item_text_index": torch.randint(0, num_texts, (batch,), generator=g),
        "text_embeds": torch.randn(num_texts, TEXT_DIM, generator=g),
    }
    out["history_mask"][-1, 2:] = False  # one shorter history
    out["item_ids"][1] = 0  # one item without an id (cold)
    if labels:
        out["click_labels"] = torch.randint(0, 2, (batch,), generator=g)
        out["relevance_labels"] = torch.where(search, torch.randint(0, 2, (batch,), generator=g), -100)
    return out


def save_tiny_lm(folder: str | os.PathLike, seed: int = 0, hidden: int = TEXT_DIM) -> str:
    """A tiny random BERT with the package's synthetic tokenizer, saved as a folder an LM path can point to."""
    from modeling_mtrec.data import synthetic_tokenizer

    tokenizer = synthetic_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
