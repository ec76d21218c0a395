"""Corpora for MTRec (MIND, or any format of `modeling_mtrec.data.formats`): the train and eval splits over ONE
tokenised news table.

The splits are read the model-agnostic way (`modeling_mtrec.data.formats.read_corpus_splits`, then each split's
behaviours into samples, `load_split_samples`); what MTRec makes of the news is its own: tokenised titles with the category and
BIO labels of its two auxiliary tasks (`tokenize_news`).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from ...data.formats import read_corpus_splits
from ...data.mind import load_split_samples
from ...data.samples import build_eval_impressions, build_train_samples
from ...data.stats import LoadStats
from .configuration_mtrec import MTRecConfig
from .processing_mtrec import sentiment_vocabulary, tokenize_news

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

__all__ = ["MINDCorpus", "MINDSplit", "load_mind", "load_mind_split"]

# Where predictions for an unlabelled eval split (MIND's test format) come from.
_UNLABELLED_HINT = ": write their predictions with write_mind_predictions (train_mtrec.py --do_predict --test_dir)."


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
        data_format (`str`): the corpus format (`modeling_mtrec.data.formats.DATA_FORMATS`).
        sentiment2id (`dict[str, int]`): sentiment -> label of the sentiment task; empty when the corpus has no
            sentiment labels.
        labels (`dict[str, str]`): per auxiliary task (category, ner, sentiment), ``"on"`` or why the corpus lacks its
            labels (`label_report`), for the load report. Where NER is off (no title of the corpus is annotated),
            ``news["ner_labels"]`` are all -100 (ignored), not O.
    """

    news: Dataset
    news_index: dict[str, int]
    category2id: dict[str, int]
    train: Dataset | None
    eval: Dataset | None
    stats: LoadStats
    data_format: str = "mind"
    labels: dict[str, str] = field(default_factory=dict)
    sentiment2id: dict[str, int] = field(default_factory=dict)


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
    data_format: str | None = None,
    sentiment2id: dict[str, int] | None = None,
    **format_options: Any,
) -> MINDCorpus:
    """Reads train and/or eval folders of a corpus (MIND by default) into one `MINDCorpus`.

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
        data_format: the folders' corpus format (``"mind"``, ``"xmind"``, ``"ebnerd"``, ``"adressa"``, ``"tables"``);
            recognised from the files when None (`modeling_mtrec.data.formats.detect_format`).
        sentiment2id: sentiment vocabulary (a trained model's `config.sentiment2id`); `None` builds it from the news'
            sentiment labels (sorted), where the corpus has them (EB-NeRD).
        **format_options: the format's reader options (`read_split`: xMIND's ``mind_dir``, Adressa's
            ``history_days``, ...).
    """
    stats = LoadStats()
    corpus = read_corpus_splits(
        train_dir, eval_dir, "load_mind", data_format=data_format, lenient=lenient, stats=stats, **format_options
    )
    news, news_index, first_categories, splits = corpus.news, corpus.news_index, corpus.categories, corpus.splits
    if category2id is None:
        category2id = {category: i for i, category in enumerate(first_categories)}
    news = tokenize_news(
        news, tokenizer, max_title_length, category2id=category2id, stats=stats, cache_dir=cache_dir,
        sentiment2id=sentiment2id or None,
        # NER off (no title of the corpus is annotated): ignored tags, so the NER loss trains nothing, as reported.
        ner_labels=corpus.labels.get("ner", "on") == "on",
    )
    if "sentiment_label" in news.column_names and not sentiment2id:  # the vocabulary tokenize_news built, sorted
        sentiment2id = sentiment_vocabulary(corpus.news["sentiment"])

    builders = {
        "train": (build_train_samples, "training samples"),
        "eval": (functools.partial(build_eval_impressions, keep_unlabelled=False), "labelled impressions"),
    }
    samples = load_split_samples(
        splits, builders, news_index, max_history_length, lenient, stats, unlabelled_hint=_UNLABELLED_HINT
    )
    stats.log(logger, f"{corpus.data_format} corpus (train={train_dir}, eval={eval_dir})")
    logger.info(
        "MIND corpus: %d news, %s train samples, %s eval impressions, %d categories",
        len(news),
        len(samples["train"]) if samples["train"] is not None else 0,
        len(samples["eval"]) if samples["eval"] is not None else 0,
        len(category2id),
    )
    logger.info("Auxiliary tasks: %s", corpus.labels)
    return MINDCorpus(
        news, news_index, category2id, samples["train"], samples["eval"], stats, corpus.data_format, corpus.labels,
        sentiment2id or {},
    )


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
