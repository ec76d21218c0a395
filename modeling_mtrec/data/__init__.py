"""MIND-format data: readers (`mind`) -> sample builders (`samples`) -> corpus loading (`corpus`), imported in
that one direction; load statistics, the one right-padding (`padding`), and a synthetic MIND-format corpus.

`MTRecCollator` and MTRec's title processing live with the model (`modeling_mtrec.models.mtrec`); they are
re-exported here, where the README has always imported them from.
"""

from ..models.mtrec.collator import MTRecCollator
from ..models.mtrec.processing_mtrec import NER_LABELS, bio_tags, title_entity_spans, tokenize_news
from .corpus import MINDCorpus, MINDSplit, RetrievalCorpus, load_mind, load_mind_split, load_retrieval_corpus
from .mind import MINDFormatError, read_behaviors, read_news
from .samples import build_eval_impressions, build_retrieval_samples, build_train_samples, stable_key
from .stats import LoadStats
from .synthetic import generate_synthetic_mind, simulate_mind_behaviors
from .synthetic_vocab import synthetic_tokenizer
from .adressa import read_adressa
from .ebnerd import read_ebnerd
from .formats import DATA_FORMATS, detect_format, label_report, read_split
from .tables import read_tables, write_tables
from .xmind import read_xmind

__all__ = [
    "LoadStats",
    "MINDCorpus",
    "MINDFormatError",
    "MINDSplit",
    "MTRecCollator",
    "NER_LABELS",
    "RetrievalCorpus",
    "bio_tags",
    "build_eval_impressions",
    "build_retrieval_samples",
    "build_train_samples",
    "generate_synthetic_mind",
    "load_mind",
    "load_mind_split",
    "load_retrieval_corpus",
    "read_behaviors",
    "read_news",
    "simulate_mind_behaviors",
    "stable_key",
    "synthetic_tokenizer",
    "title_entity_spans",
    "tokenize_news",
    "DATA_FORMATS",
    "detect_format",
    "label_report",
    "read_adressa",
    "read_ebnerd",
    "read_split",
    "read_tables",
    "read_xmind",
    "write_tables",
]
