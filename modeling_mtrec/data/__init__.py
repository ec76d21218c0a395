"""MIND-format data for MTRec: readers, BIO tagging, samples, the de-duplicating collator, a synthetic corpus."""

from .collator import MTRecCollator
from .corpus import MINDCorpus, load_mind
from .mind import (
    MINDFormatError,
    MINDSplit,
    build_eval_impressions,
    build_train_samples,
    load_mind_split,
    read_behaviors,
    read_news,
)
from .stats import LoadStats
from .synthetic import generate_synthetic_mind, synthetic_tokenizer
from .tokenization import NER_LABELS, bio_tags, title_entity_spans, tokenize_news

__all__ = [
    "LoadStats",
    "MINDCorpus",
    "MINDFormatError",
    "MINDSplit",
    "MTRecCollator",
    "NER_LABELS",
    "bio_tags",
    "build_eval_impressions",
    "build_train_samples",
    "generate_synthetic_mind",
    "load_mind",
    "load_mind_split",
    "read_behaviors",
    "read_news",
    "synthetic_tokenizer",
    "title_entity_spans",
    "tokenize_news",
]
