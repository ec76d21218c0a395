"""Corpora (MIND, or any format of `modeling_mtrec.data.formats`) for the two-tower retriever: the news of every split as hashed item features, and the clicks.

The splits are read the model-agnostic way (`modeling_mtrec.data.formats.read_corpus_splits`, then each split's behaviours
into `build_retrieval_samples` rows, `load_split_samples`), with rows ordered as `load_mind` orders them; what the
retriever makes of the news is its own: hashed item features (`build_item_features`) and click counts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Dataset

from ...data.formats import read_corpus_splits
from ...data.mind import load_split_samples
from ...data.samples import build_retrieval_samples
from ...data.stats import LoadStats
from .features import MAX_ENTITIES, MAX_TITLE_WORDS, ItemFeatures, build_item_features, click_counts

logger = logging.getLogger(__name__)

__all__ = ["RetrievalCorpus", "load_retrieval_corpus"]


@dataclass
class RetrievalCorpus:
    """News of every split (train news first, then eval-only news, as `load_mind` orders them) and the clicks.

    Attributes:
        news (`Dataset`): raw news table (`read_news` columns).
        news_index (`dict[str, int]`): news id -> row.
        items (`ItemFeatures`): hashed features of every row.
        train, eval (`Dataset` or `None`): `build_retrieval_samples` rows of each split.
        train_counts (`np.ndarray`): training clicks per row (0 for cold news).
        stats (`LoadStats`): everything skipped while loading.
        data_format (`str`): the corpus format; labels (`dict[str, str]`): its `label_report`.
    """

    news: Dataset
    news_index: dict[str, int]
    items: ItemFeatures
    train: Dataset | None
    eval: Dataset | None
    train_counts: np.ndarray
    stats: LoadStats = field(default_factory=LoadStats)
    data_format: str = "mind"
    labels: dict[str, str] = field(default_factory=dict)


def load_retrieval_corpus(
    *,
    train_dir: str | os.PathLike | None = None,
    eval_dir: str | os.PathLike | None = None,
    max_history_length: int = 50,
    max_entities: int = MAX_ENTITIES,
    max_title_words: int = MAX_TITLE_WORDS,
    lenient: bool = False,
    data_format: str | None = None,
    **format_options: Any,
) -> RetrievalCorpus:
    """Reads train and/or eval folders of a corpus (MIND by default) into a `RetrievalCorpus` (rows as in `load_mind`).

    Args:
        train_dir, eval_dir: MIND split folders; at least one is needed.
        max_history_length: most recent clicks kept per user (50, as MTRec and NRMS keep).
        max_entities, max_title_words: widths of the padded multi-valued item features (`build_item_features`).
        lenient: skip and count malformed rows instead of raising `MINDFormatError`.
        data_format, format_options: the corpus format (recognised from the files when None) and its reader's
            options, as `load_mind` takes them.
    """
    stats = LoadStats()
    corpus = read_corpus_splits(
        train_dir, eval_dir, "load_retrieval_corpus", data_format=data_format, lenient=lenient, stats=stats,
        **format_options,
    )
    news, news_index, splits = corpus.news, corpus.news_index, corpus.splits
    items = build_item_features(news, max_entities=max_entities, max_title_words=max_title_words, stats=stats)
    builders = {"train": (build_retrieval_samples, "clicks"), "eval": (build_retrieval_samples, "clicks")}
    samples = load_split_samples(splits, builders, news_index, max_history_length, lenient, stats)
    counts = click_counts(samples["train"], len(news)) if samples["train"] is not None else np.zeros(len(news), int)
    stats.log(logger, f"{corpus.data_format} retrieval corpus (train={train_dir}, eval={eval_dir})")
    return RetrievalCorpus(
        news, news_index, items, samples["train"], samples["eval"], counts, stats, corpus.data_format, corpus.labels
    )
