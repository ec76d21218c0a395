"""A MIND-format corpus for one training run: the train and eval splits over ONE news table, per model.

MIND ships a news.tsv per split and most dev news also appear in train. Sharing one table lets a single collator
serve `Trainer`'s training and evaluation loops (both index the same rows), and processes each news once even
when several splits mention it. Both models read the splits the same way (`read_news_union`, then each split's
behaviours into samples, `_load_split_samples`); they differ in what they make of the news:

* `load_mind` -> `MINDCorpus`: MTRec's tokenised titles with category and BIO labels (`tokenize_news`);
* `load_retrieval_corpus` -> `RetrievalCorpus`: the two-tower's hashed item features (`build_item_features`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset, concatenate_datasets

from ..models.mtrec.configuration_mtrec import MTRecConfig
from ..models.mtrec.processing_mtrec import tokenize_news
from ..models.two_tower.features import (
    MAX_ENTITIES,
    MAX_TITLE_WORDS,
    ItemFeatures,
    build_item_features,
    click_counts,
)
from .mind import read_behaviors, read_news, require_rows, split_files
from .samples import build_eval_impressions, build_retrieval_samples, build_train_samples
from .stats import LoadStats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

__all__ = [
    "MINDCorpus",
    "MINDSplit",
    "RetrievalCorpus",
    "load_mind",
    "load_mind_split",
    "load_retrieval_corpus",
    "read_news_union",
]


@dataclass
class MINDSplit:
    """One loaded MIND split, ready for `MTRecCollator`.

    Attributes:
        news (`Dataset`): the tokenised news table (`tokenize_news`), one row per news, in file order.
        news_index (`dict[str, int]`): news id -> row of `news`; the ints in `samples` are such rows.
        category2id (`dict[str, int]`): category -> label of the category-classification task. Pass the train
            split's mapping when loading dev/test so that the labels agree.
        samples (`Dataset`): `build_train_samples` rows when loaded with ``train=True``, else
            `build_eval_impressions` rows.
        stats (`LoadStats`): everything skipped or repaired while loading (already logged once).
    """

    news: Dataset
    news_index: dict[str, int]
    category2id: dict[str, int]
    samples: Dataset
    stats: LoadStats


@dataclass
class MINDCorpus:
    """Tokenised news of every split, plus the samples that point into it.

    Attributes:
        news (`Dataset`): tokenised news table (`tokenize_news`): train news first, then eval-only news.
        news_index (`dict[str, int]`): news id -> row of `news`.
        category2id (`dict[str, int]`): category -> label of the category task.
        train (`Dataset` or `None`): `build_train_samples` rows of the train split.
        eval (`Dataset` or `None`): `build_eval_impressions` rows of the eval split.
        stats (`LoadStats`): everything skipped or repaired while loading (logged once).
    """

    news: Dataset
    news_index: dict[str, int]
    category2id: dict[str, int]
    train: Dataset | None
    eval: Dataset | None
    stats: LoadStats


def read_news_union(
    news_paths: list[str | os.PathLike], *, lenient: bool = False, stats: LoadStats | None = None
) -> tuple[Dataset, dict[str, int], list[str]]:
    """Reads several ``news.tsv`` into one table: the first file's news first, then each later file's new ones.

    A news id present in several files keeps its first row (MIND repeats the same news across splits; this is
    expected, so it is logged as information, not counted as a problem). A file without any usable row (empty, or
    every row skipped under `lenient`) raises `MINDFormatError` naming it.

    Returns:
        ``(news, news_index, categories)``: the raw news table (`read_news` columns), news id -> row, and the
        sorted categories of the first file.
    """
    stats = LoadStats() if stats is None else stats
    tables, news_index, categories = [], {}, None
    for news_path in news_paths:
        before = stats.copy()
        table = read_news(news_path, lenient=lenient, stats=stats)
        require_rows(table, news_path, "news", dict(sorted((stats - before).items())))
        ids = table.data.column("news_id").to_pylist()  # Arrow directly: datasets' Column iterates slowly
        fresh = [row for row, news_id in enumerate(ids) if news_id not in news_index]
        if len(fresh) < len(ids):
            logger.info(
                "%s: %d of %d news already read from an earlier split",
                news_path,
                len(ids) - len(fresh),
                len(ids),
            )
            table = table.select(fresh)
        for row in fresh:
            news_index[ids[row]] = len(news_index)
        tables.append(table)
        if categories is None:  # no category is no class: an empty one is counted by the news processing
            categories = sorted(category for category in table.unique("category") if category.strip())
    if not tables:
        raise ValueError("read_news_union needs at least one news.tsv")
    news = tables[0] if len(tables) == 1 else concatenate_datasets(tables)
    return news, news_index, categories


def _split_folders(
    train_dir: str | os.PathLike | None, eval_dir: str | os.PathLike | None, caller: str
) -> dict[str, tuple[Path, Path]]:
    """``{"train" | "eval": (news.tsv, behaviors.tsv)}`` of the given split folders (at least one)."""
    if train_dir is None and eval_dir is None:
        raise ValueError(f"{caller} needs a train_dir, an eval_dir or both")
    return {name: split_files(folder) for name, folder in (("train", train_dir), ("eval", eval_dir)) if folder}


SampleBuilder = Callable[..., Dataset]


def _load_split_samples(
    splits: dict[str, tuple[Path, Path]],
    builders: dict[str, tuple[SampleBuilder, str]],
    news_index: dict[str, int],
    max_history_length: int,
    lenient: bool,
    stats: LoadStats,
) -> dict[str, Dataset | None]:
    """Each split's behaviours turned into samples by ``builders[split] = (builder, what its rows are)``; a split
    left without any sample raises, naming its file and the problems counted so far."""
    samples: dict[str, Dataset | None] = {"train": None, "eval": None}
    for name, (_, behaviors_path) in splits.items():
        behaviors = read_behaviors(behaviors_path, lenient=lenient, stats=stats)
        build, what = builders[name]
        samples[name] = build(behaviors, news_index, max_history_length=max_history_length, stats=stats)
        if len(samples[name]) == 0:
            unlabelled = name == "eval" and stats["unlabelled_impressions"] > 0
            raise ValueError(
                f"{behaviors_path}: no {what} left after loading ({len(behaviors)} impressions read; problems: "
                f"{stats.as_dict()})"
                + (". MIND's test split is unlabelled: pass it as an eval split." if name == "train" else "")
                + (". Unlabelled impressions (MIND's test format) cannot be evaluated: write their predictions with "
                   "write_mind_predictions (train_mtrec.py --do_predict --test_dir)." if unlabelled else "")
            )
    return samples


def load_mind(
    tokenizer,
    *,
    train_dir: str | os.PathLike | None = None,
    eval_dir: str | os.PathLike | None = None,
    max_title_length: int = MTRecConfig.max_title_length,
    max_history_length: int = MTRecConfig.max_history_length,
    category2id: dict[str, int] | None = None,
    lenient: bool = False,
    cache_dir: str | None = None,
) -> MINDCorpus:
    """Reads MIND-format train and/or eval folders into one `MINDCorpus`.

    A news id present in both splits' news.tsv keeps the train row (MIND repeats the same news across splits;
    this is expected, so it is logged as information, not counted as a problem).

    Args:
        tokenizer: a fast tokenizer (offsets place the NER tags on word pieces).
        train_dir, eval_dir: MIND split folders; at least one is needed. The eval split is for metrics: its
            unlabelled impressions (MIND's test format, ``N123`` without ``-0``/``-1``) are left out and counted under
            ``"unlabelled_impressions"``, and an eval split with no labelled impression raises here, before any
            training. Predictions for MIND's unlabelled test split come from `write_mind_predictions`.
        max_title_length: title tokens, [CLS]/[SEP] included (MTRec: 30).
        max_history_length: most recent clicks kept per user (MTRec: 50). The model applies its own
            ``config.max_history_length`` (`MTRecModel.encode_users`); pass that value, so that evaluation sees the
            clicks the prediction file and the recommender use (a smaller value here would hide some).
        category2id: category vocabulary, e.g. a trained model's `config.category2id` when fine-tuning;
            `None` builds it from the train split's categories (sorted), or the eval split's without one.
            News of other categories get no category label (counted as "unknown_category").
        lenient: skip and count malformed rows instead of raising `MINDFormatError`.
        cache_dir: where `tokenize_news` caches the tokenised table.
    """
    splits = _split_folders(train_dir, eval_dir, "load_mind")
    stats = LoadStats()
    news, news_index, first_categories = read_news_union(
        [news_path for news_path, _ in splits.values()], lenient=lenient, stats=stats
    )
    if category2id is None:
        category2id = {category: i for i, category in enumerate(first_categories)}
    news = tokenize_news(
        news, tokenizer, max_title_length, category2id=category2id, stats=stats, cache_dir=cache_dir
    )

    builders = {
        "train": (build_train_samples, "training samples"),
        "eval": (functools.partial(build_eval_impressions, keep_unlabelled=False), "labelled impressions"),
    }
    samples = _load_split_samples(splits, builders, news_index, max_history_length, lenient, stats)
    stats.log(logger, f"MIND corpus (train={train_dir}, eval={eval_dir})")
    logger.info(
        "MIND corpus: %d news, %s train samples, %s eval impressions, %d categories",
        len(news),
        len(samples["train"]) if samples["train"] is not None else 0,
        len(samples["eval"]) if samples["eval"] is not None else 0,
        len(category2id),
    )
    return MINDCorpus(news, news_index, category2id, samples["train"], samples["eval"], stats)


def load_mind_split(
    folder: str | os.PathLike[str],
    tokenizer: PreTrainedTokenizerFast,
    *,
    max_title_length: int = MTRecConfig.max_title_length,
    max_history_length: int = MTRecConfig.max_history_length,
    category2id: dict[str, int] | None = None,
    train: bool = True,
    lenient: bool = False,
    cache_dir: str | None = None,
) -> MINDSplit:
    """Read, tokenise and turn into samples one MIND split folder (``news.tsv`` + ``behaviors.tsv``).

    Args:
        folder: e.g. ``MINDsmall_train/``.
        tokenizer: a fast tokenizer (offsets are needed to place entity tags on word pieces).
        max_title_length: title length in tokens, [CLS] and [SEP] included (MTRec, Sec. 4.1: 30).
        max_history_length: most recent clicks kept per user (50, as in NRMS).
        category2id: category -> label; ``None`` builds it from this split's categories, sorted. Pass the
            train split's mapping for dev/test so the category labels agree (unseen ones become -100).
        train: build `build_train_samples` rows (``True``) or `build_eval_impressions` rows (``False``).
        lenient: skip and count malformed rows instead of raising `MINDFormatError`.
        cache_dir: forwarded to `tokenize_news`.

    Raises:
        FileNotFoundError: a file of the split is missing.
        ValueError: no sample survived (e.g. MIND's unlabelled test split: it has no labelled impression).
    """
    folders = {"train_dir": folder} if train else {"eval_dir": folder}
    corpus = load_mind(
        tokenizer,
        **folders,
        max_title_length=max_title_length,
        max_history_length=max_history_length,
        category2id=category2id,
        lenient=lenient,
        cache_dir=cache_dir,
    )
    return MINDSplit(
        news=corpus.news,
        news_index=corpus.news_index,
        category2id=corpus.category2id,
        samples=corpus.train if train else corpus.eval,
        stats=corpus.stats,
    )


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
    """

    news: Dataset
    news_index: dict[str, int]
    items: ItemFeatures
    train: Dataset | None
    eval: Dataset | None
    train_counts: np.ndarray
    stats: LoadStats = field(default_factory=LoadStats)


def load_retrieval_corpus(
    *,
    train_dir: str | os.PathLike | None = None,
    eval_dir: str | os.PathLike | None = None,
    max_history_length: int = MTRecConfig.max_history_length,
    max_entities: int = MAX_ENTITIES,
    max_title_words: int = MAX_TITLE_WORDS,
    lenient: bool = False,
) -> RetrievalCorpus:
    """Reads MIND-format train and/or eval folders into a `RetrievalCorpus` (rows as in `load_mind`)."""
    splits = _split_folders(train_dir, eval_dir, "load_retrieval_corpus")
    stats = LoadStats()
    news, news_index, _ = read_news_union([news_path for news_path, _ in splits.values()], lenient=lenient, stats=stats)
    items = build_item_features(news, max_entities=max_entities, max_title_words=max_title_words, stats=stats)
    builders = {"train": (build_retrieval_samples, "clicks"), "eval": (build_retrieval_samples, "clicks")}
    samples = _load_split_samples(splits, builders, news_index, max_history_length, lenient, stats)
    counts = click_counts(samples["train"], len(news)) if samples["train"] is not None else np.zeros(len(news), int)
    stats.log(logger, f"retrieval corpus (train={train_dir}, eval={eval_dir})")
    return RetrievalCorpus(news, news_index, items, samples["train"], samples["eval"], counts, stats)
