"""Model-agnostic data: MIND-format readers (`mind`) -> neutral news and impression tables -> samples (`samples`),
imported in that one direction; problem counting (`stats`), the one right-padding (`padding`), and a synthetic
MIND-format corpus (`synthetic`).

This package knows no model: each model folder turns these tables into its own inputs (`models.mtrec.corpus.
load_mind` tokenises titles, `models.two_tower.corpus.load_retrieval_corpus` hashes item features).
"""

from .adressa import read_adressa
from .ebnerd import read_ebnerd, read_ebnerd_with_beyond_accuracy
from .formats import DATA_FORMATS, detect_format, label_report, read_split
from .mind import MINDFormatError, read_behaviors, read_news, read_news_union
from .padding import IGNORE_INDEX, pad_right
from .samples import build_eval_impressions, build_retrieval_samples, build_train_samples, stable_key
from .stats import BadRows, LoadStats
from .synthetic import generate_synthetic_mind, simulate_mind_behaviors
from .synthetic_vocab import synthetic_tokenizer
from .tables import read_tables, write_tables
from .xmind import read_xmind

__all__ = [
    "IGNORE_INDEX",
    "BadRows",
    "LoadStats",
    "MINDFormatError",
    "build_eval_impressions",
    "build_retrieval_samples",
    "build_train_samples",
    "generate_synthetic_mind",
    "pad_right",
    "read_behaviors",
    "read_news",
    "read_news_union",
    "simulate_mind_behaviors",
    "stable_key",
    "synthetic_tokenizer",
    "DATA_FORMATS",
    "detect_format",
    "label_report",
    "read_adressa",
    "read_ebnerd",
    "read_ebnerd_with_beyond_accuracy",
    "read_split",
    "read_tables",
    "read_xmind",
    "write_tables",
]
