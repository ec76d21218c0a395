"""MIND-format data: readers (`mind`) -> sample builders (`samples`) -> corpus loading (`corpus`), load
statistics, and a synthetic MIND-format corpus."""

from ..models.mtrec.collator import MTRecCollator
from ..models.mtrec.processing_mtrec import NER_LABELS, bio_tags, title_entity_spans, tokenize_news
from .corpus import MINDCorpus, MINDSplit, load_mind, load_mind_split
from .mind import MINDFormatError, read_behaviors, read_news
from .samples import build_eval_impressions, build_train_samples
from .stats import LoadStats
from .synthetic import generate_synthetic_mind, synthetic_tokenizer

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
