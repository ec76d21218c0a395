"""Helpers tests import: tiny configurations, random batches, small corpora and models.

Tests never touch the Hub, build models from tiny configurations, and generate their own data. The fixtures are in
`conftest.py`; what a test imports lives here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Tests never touch the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import BertConfig  # noqa: E402

from modeling_mtrec import MTRecConfig, MTRecModel, TwoTowerConfig, TwoTowerModel  # noqa: E402
from modeling_mtrec.models.two_tower.collator import TwoTowerCollator  # noqa: E402
from modeling_mtrec.models.two_tower.features import ItemFeatures  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

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

NUM_ITEMS = 12

def tiny_tt_config(**overrides) -> TwoTowerConfig:
    kwargs = dict(
        embedding_dim=8, item_id_buckets=97, user_id_buckets=97, category_buckets=13, entity_buckets=97,
        word_buckets=97, tower_hidden_sizes=[16], output_dim=8, frequency_hash_buckets=64,
        ssl_augmentations=["complementary", "dropout"],
    )
    kwargs.update(overrides)
    return TwoTowerConfig(**kwargs)

def tiny_items(n: int = NUM_ITEMS, seed: int = 0) -> ItemFeatures:
    g = torch.Generator().manual_seed(seed)
    entities = torch.randint(0, 50, (n, 3), generator=g)
    entities[::3, 1:] = -1  # some items with fewer (or no) entities
    entities[::4] = -1
    words = torch.randint(0, 80, (n, 5), generator=g)
    words[1::2, 3:] = -1
    return ItemFeatures(
        item_key=torch.arange(n) + 1000, category_key=torch.arange(n) % 3, subcategory_key=torch.arange(n) % 5,
        entity_keys=entities, word_keys=words,
    )

def tiny_batch(items: ItemFeatures, ssl: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    samples = [
        {"user_key": 7, "history": [0, 1], "positive": 2},
        {"user_key": 8, "history": [3], "positive": 4},
        {"user_key": 9, "history": [], "positive": 2},  # a duplicate positive: one column
        {"user_key": 7, "history": [5, 6, 1], "positive": 7},
    ]
    return TwoTowerCollator(items, ssl_batch_size=ssl, seed=seed)(samples)

def make_two_tower(config=None, seed=0) -> TwoTowerModel:
    torch.manual_seed(seed)
    return TwoTowerModel(config or tiny_tt_config()).eval()

def news_line(news_id: str, category: str = "sports", title: str = "Team wins the cup") -> str:
    """One 8-column news.tsv row (entities empty)."""
    return "\t".join([news_id, category, "sub", title, "An abstract.", "https://example.com", "[]", "[]"])

def write(path: Path, lines: list[str], ending: str = "\n") -> Path:
    path.write_bytes("".join(line + ending for line in lines).encode("utf-8"))
    return path

def behavior_line(impression_id: str, history: str, impressions: str, user: str = "U1") -> str:
    return "\t".join([impression_id, user, "11/15/2019 8:55:22 AM", history, impressions])

TITLE_LENGTH = 16

def synthetic_model(tokenizer, category2id: dict[str, int], **overrides) -> MTRecModel:
    """A tiny random MTRec over the synthetic tokenizer.

    initializer_range 0.3 instead of BERT's 0.02: at 0.02 a random BERT maps every title to nearly the same [CLS]
    vector, scores then differ by ~1e-5 and both paths' rankings are decided by float rounding, which is no test
    of either. `overrides` go to the config (e.g. ``use_multi_field=True``).
    """
    torch.manual_seed(0)
    encoder = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=32, initializer_range=0.3,
    )
    config = tiny_config(
        encoder_config=encoder, id2category={i: c for c, i in category2id.items()}, max_title_length=TITLE_LENGTH,
        initializer_range=0.3, **overrides,
    )
    return MTRecModel(config).eval()


# The start of a script for a fresh interpreter where importing modeling_mtrec fails: modeling_mtrec is installed
# (editable) and on PYTHONPATH, so only a blocker on the import system proves that a saved folder's own files are enough.
BLOCK_PACKAGE_SCRIPT = """
import sys

class BlockPackage:
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_mtrec" or name.startswith("modeling_mtrec."):
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, BlockPackage())
"""
