"""Item features of the two-tower retriever: hashed keys of every news, click counts, static log p_j, feature MI.

Every categorical value (news id, category, subcategory, title-entity WikidataId, lower-cased title word, user id)
becomes a stable non-negative 62-bit key (`stable_key`); the model hashes keys into its own bucket counts, so the
features do not depend on the model's sizes and unseen (cold) news get features like any other. Multi-valued
features are padded with -1.

`modeling_mtrec.models.two_tower.corpus.load_retrieval_corpus` reads a MIND-format corpus into these features and the
retrieval samples (`modeling_mtrec.data.samples.build_retrieval_samples`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset

from ...data.mind import EntityAnnotationError, count_titles_without_text, title_entity_ids
from ...data.padding import pad_right
from ...data.samples import stable_key
from ...data.stats import LoadStats

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_ENTITIES",
    "MAX_TITLE_WORDS",
    "ItemFeatures",
    "build_item_features",
    "click_counts",
    "feature_mutual_information",
    "static_log_q",
    "title_words",
]

_WORD = re.compile(r"[\w']+")
# Default widths of the padded multi-valued features (longer lists are cut).
MAX_ENTITIES = 8
MAX_TITLE_WORDS = 24


def title_words(title: str) -> list[str]:
    """Lower-cased words of a title (letters, digits, apostrophes), in order, repeats removed."""
    return list(dict.fromkeys(_WORD.findall(title.lower())))


def _entity_ids(title_entities: str, stats: LoadStats) -> list[str]:
    try:
        return title_entity_ids(title_entities)
    except EntityAnnotationError as error:
        stats[error.reason] += 1
        return []


@dataclass
class ItemFeatures:
    """Features of every news of a corpus, row-aligned with its news table.

    Attributes:
        item_key, category_key, subcategory_key (`torch.LongTensor` of shape `(num_items,)`): stable keys.
        entity_keys (`torch.LongTensor` of shape `(num_items, max_entities)`): WikidataId keys, -1 = padding.
        word_keys (`torch.LongTensor` of shape `(num_items, max_title_words)`): title-word keys, -1 = padding.
        text_embeds (`torch.FloatTensor` of shape `(num_items, text_dim)`, *optional*): frozen title vectors.
    """

    item_key: torch.Tensor
    category_key: torch.Tensor
    subcategory_key: torch.Tensor
    entity_keys: torch.Tensor
    word_keys: torch.Tensor
    text_embeds: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.item_key)

    def rows(self, index: torch.Tensor | Sequence[int], prefix: str = "") -> dict[str, torch.Tensor]:
        """The features of rows `index` as model inputs (keys prefixed with `prefix`, e.g. ``"ssl_"``)."""
        index = torch.as_tensor(index, dtype=torch.long)
        out = {
            f"{prefix}item_key": self.item_key[index],
            f"{prefix}category_key": self.category_key[index],
            f"{prefix}subcategory_key": self.subcategory_key[index],
            f"{prefix}entity_keys": self.entity_keys[index],
            f"{prefix}word_keys": self.word_keys[index],
        }
        if self.text_embeds is not None:
            out[f"{prefix}text_embeds"] = self.text_embeds[index]
        return out

    def batches(self, batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """`TwoTowerModel.encode_items` inputs of every row, in order: ``(rows, features)`` per `batch_size` rows."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            rows = list(range(start, min(start + batch_size, len(self))))
            yield rows, self.rows(rows)


def build_item_features(
    news: Dataset,
    *,
    max_entities: int = MAX_ENTITIES,
    max_title_words: int = MAX_TITLE_WORDS,
    text_embeds: torch.Tensor | np.ndarray | None = None,
    stats: LoadStats | None = None,
) -> ItemFeatures:
    """Hashed features of every row of a `read_news` table (``news_id``, ``category``, ``subcategory``,
    ``title``, ``title_entities``). Broken entity JSON is counted under ``broken_entity_json`` (no entities), news
    without a category under ``empty_category`` (they share the key of the empty string), titles without a word
    under ``empty_title`` / ``title_without_words`` (no word keys).

    Args:
        max_entities, max_title_words: widths of the padded multi-valued features (longer lists are cut).
        text_embeds: (num_news, text_dim) precomputed title vectors of a frozen text encoder, row-aligned.
    """
    missing = [c for c in ("news_id", "category", "subcategory", "title", "title_entities") if c not in news.column_names]
    if missing:
        raise ValueError(f"the news table lacks column(s) {missing}; it has {news.column_names}")
    if max_entities < 1 or max_title_words < 1:
        raise ValueError(f"max_entities and max_title_words must be >= 1, got {max_entities}, {max_title_words}")
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    # to_dict (not .data) honours an indices mapping, e.g. the non-contiguous rows read_news_union keeps.
    columns = news.select_columns(["news_id", "category", "subcategory", "title", "title_entities"]).to_dict()
    entity_rows = [[stable_key(e) for e in _entity_ids(t or "", stats)] for t in columns["title_entities"]]
    empty_categories = sum(not (c or "").strip() for c in columns["category"])
    if empty_categories:  # hashed like any value (one shared key), but counted: it is no real category
        stats["empty_category"] += empty_categories
    count_titles_without_text(columns["title"], stats)  # such news get no word keys (nor a useful text vector)
    word_rows = [[stable_key(w) for w in title_words(t or "")] for t in columns["title"]]
    if text_embeds is not None:
        text_embeds = torch.as_tensor(text_embeds, dtype=torch.float32)
        if text_embeds.ndim != 2 or len(text_embeds) != len(news):
            raise ValueError(f"text_embeds must be (num_news={len(news)}, dim), got {tuple(text_embeds.shape)}")
    if own_stats:
        stats.log(logger, "build_item_features")

    def keys(values: list[str | None]) -> torch.Tensor:
        return torch.tensor([stable_key(v or "") for v in values], dtype=torch.long)

    return ItemFeatures(
        item_key=keys(columns["news_id"]),
        category_key=keys(columns["category"]),
        subcategory_key=keys(columns["subcategory"]),
        # (num_items, width) keys, longer lists cut, -1 = padding
        entity_keys=pad_right([row[:max_entities] for row in entity_rows], -1, width=max_entities)[0],
        word_keys=pad_right([row[:max_title_words] for row in word_rows], -1, width=max_title_words)[0],
        text_embeds=text_embeds,
    )


def click_counts(samples: Dataset, num_items: int) -> np.ndarray:
    """How often each news row is the clicked item of `samples` (num_items,)."""
    positives = np.asarray(samples.select_columns(["positive"]).to_dict()["positive"], dtype=np.int64)
    return np.bincount(positives, minlength=num_items)


def static_log_q(counts: np.ndarray, batch_size: int) -> np.ndarray:
    """log p_j of a static frequency table: p_j = 1 - (1 - f_j)^B, the probability that item j (click share f_j)
    is among B clicks drawn independently. Never-clicked items get the probability of a single click (they never
    appear as a training column, so only a finite value is needed)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = max(counts.sum(), 1.0)
    share = np.maximum(counts, 1.0) / total
    return np.log(-np.expm1(batch_size * np.log1p(-np.minimum(share, 1 - 1e-12)))).astype(np.float32)


def _feature_values(items: ItemFeatures, text_bits: int, seed: int) -> list[list[np.ndarray]]:
    """Per feature, per item, the array of values (keys); absent multi-valued features give [-1]."""
    n = len(items)
    single = [items.item_key, items.category_key, items.subcategory_key]
    values: list[list[np.ndarray]] = [[np.array([v]) for v in t.tolist()] for t in single]
    for multi in (items.entity_keys, items.word_keys):
        rows = multi.numpy()
        values.append([r[r >= 0] if (r >= 0).any() else np.array([-1]) for r in rows])
    if items.text_embeds is not None:
        # A continuous vector becomes a discrete value by random-hyperplane hashing (text_bits signs).
        g = torch.Generator().manual_seed(seed)
        planes = torch.randn(items.text_embeds.shape[1], text_bits, generator=g)
        codes = ((items.text_embeds @ planes > 0).long() * (1 << torch.arange(text_bits))).sum(1)
        values.append([np.array([c]) for c in codes.tolist()])
    assert all(len(v) == n for v in values)
    return values


def _mutual_information(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """MI of two (possibly multi-valued) features: each item spreads weight 1 evenly over its value pairs."""
    left, right, weight = [], [], []
    for x, y in zip(a, b):
        left.append(np.repeat(x, len(y)))
        right.append(np.tile(y, len(x)))
        weight.append(np.full(len(x) * len(y), 1.0 / (len(x) * len(y))))
    left_codes = np.unique(np.concatenate(left), return_inverse=True)[1]
    right_codes = np.unique(np.concatenate(right), return_inverse=True)[1]
    weight = np.concatenate(weight)
    pair = left_codes.astype(np.int64) * (right_codes.max() + 1) + right_codes
    pair_codes, pair_index = np.unique(pair, return_inverse=True)
    joint = np.bincount(pair_index, weights=weight) / weight.sum()  # p(x, y)
    p_x = np.bincount(left_codes, weights=weight) / weight.sum()
    p_y = np.bincount(right_codes, weights=weight) / weight.sum()
    x_of, y_of = pair_codes // (right_codes.max() + 1), pair_codes % (right_codes.max() + 1)
    return float(np.sum(joint * np.log(joint / (p_x[x_of] * p_y[y_of]))))


def feature_mutual_information(
    items: ItemFeatures, *, max_items: int = 20_000, text_bits: int = 8, seed: int = 0
) -> list[list[float]]:
    """(F, F) mutual information (nats) between the item features, computed offline from the item corpus, for
    correlated feature masking (Yao et al. Sec. 3.2). Feature order: `TwoTowerConfig.feature_names`.

    Multi-valued features contribute every value pair of an item, weighted so each item counts once. At most
    `max_items` items (a seeded uniform subset) are used, which bounds the cost on MIND-large.
    """
    values = _feature_values(items, text_bits, seed)
    if len(items) > max_items:
        keep = np.random.default_rng(seed).choice(len(items), max_items, replace=False)
        values = [[v[i] for i in keep] for v in values]
    f = len(values)
    mi = np.zeros((f, f))
    for i in range(f):
        for j in range(i, f):
            mi[i, j] = mi[j, i] = _mutual_information(values[i], values[j])
    return mi.round(6).tolist()

