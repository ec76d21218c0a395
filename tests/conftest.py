from __future__ import annotations

import os

import pytest
import torch

# Tests never touch the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import BertConfig  # noqa: E402

from modeling_mtrec import MTRecConfig  # noqa: E402

VOCAB = 99


def tiny_config(**overrides) -> MTRecConfig:
    kwargs = dict(
        encoder_config=BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
        ),
        id2category={0: "news", 1: "sports", 2: "finance"},
        max_title_length=12,
        max_history_length=5,
        num_negatives=2,
        user_attention_dim=16,
    )
    kwargs.update(overrides)
    return MTRecConfig(**kwargs)


def random_batch(
    seed: int = 0,
    num_news: int = 9,
    length: int = 8,
    batch: int = 3,
    history: int = 4,
    candidates: int = 3,
    equal_lengths: bool = False,
):
    """A collator-shaped batch: distinct news once, index tensors into them, BIO and category labels.

    With `equal_lengths` every title has `length` tokens, so batches of the same shape carry the same number of
    labelled items per task (clicks, categories, NER tokens): their per-batch mean losses then average to the
    mean over the concatenated batch, which is what the DDP and accumulation exactness tests compare against.
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, length + 1, (num_news,), generator=g)
    if equal_lengths:
        lengths = torch.full((num_news,), length)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()  # (N, L)
    ids = torch.randint(5, VOCAB, (num_news, length), generator=g) * mask
    ids[:, 0] = 2  # [CLS]
    ner = torch.randint(0, 3, (num_news, length), generator=g).masked_fill(mask == 0, -100)
    ner[:, 0] = -100
    labels = torch.zeros(batch, candidates, dtype=torch.long)
    labels[:, 0] = 1
    return {
        "news_input_ids": ids,
        "news_attention_mask": mask,
        "history_index": torch.randint(0, num_news, (batch, history), generator=g),
        "history_mask": torch.ones(batch, history, dtype=torch.bool),
        "candidate_index": torch.randint(0, num_news, (batch, candidates), generator=g),
        "candidate_mask": torch.ones(batch, candidates, dtype=torch.bool),
        "labels": labels,
        "category_labels": torch.randint(0, 3, (num_news,), generator=g),
        "ner_labels": ner,
    }


def concat_batches(*batches: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One batch holding the given batches side by side (news rows stacked, indices shifted; no de-duplication)."""
    length = max(b["news_input_ids"].shape[1] for b in batches)
    width = {key: max(b[key].shape[1] for b in batches) for key in ("history_index", "candidate_index")}

    def pad(t: torch.Tensor, size: int, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, size - t.shape[1]), value=value)

    out: dict[str, list[torch.Tensor]] = {key: [] for key in batches[0]}
    offset = 0
    for b in batches:
        out["news_input_ids"].append(pad(b["news_input_ids"], length, 0))
        out["news_attention_mask"].append(pad(b["news_attention_mask"], length, 0))
        out["ner_labels"].append(pad(b["ner_labels"], length, -100))
        out["category_labels"].append(b["category_labels"])
        for kind in ("history", "candidate"):
            out[f"{kind}_index"].append(pad(b[f"{kind}_index"] + offset, width[f"{kind}_index"], 0))
            out[f"{kind}_mask"].append(pad(b[f"{kind}_mask"], width[f"{kind}_index"], False))
        out["labels"].append(pad(b["labels"], width["candidate_index"], -100))
        offset += b["news_input_ids"].shape[0]
    return {key: torch.cat(parts) for key, parts in out.items()}


@pytest.fixture
def config() -> MTRecConfig:
    return tiny_config()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return random_batch()
