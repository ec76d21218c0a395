"""The model loaders read every corpus format (`read_corpus_splits`): MIND exactly as before, the others through
`read_split`, on small corpora the tests write (`tests/data/corpus_files.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeling_mtrec.data import synthetic_tokenizer
from modeling_mtrec.data.formats import read_corpus_splits
from modeling_mtrec.data.mind import read_news_union, split_folders
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.models.two_tower.corpus import load_retrieval_corpus
from tests.data.corpus_files import (
    TRANSLATIONS,
    adressa_one_week,
    ebnerd_corpus,
    tables_split,
    xmind_split,
)


def ebnerd_small(tmp_path: Path) -> tuple[Path, Path]:
    return ebnerd_corpus(tmp_path / "ebnerd", "train"), ebnerd_corpus(tmp_path / "ebnerd", "validation")


def test_mind_goes_the_way_it_went(corpus_dirs):
    """MIND: the same news table, index and categories as `read_news_union`, and the behaviours left as paths for
    `load_split_samples` to read as before (bit-identical loading)."""
    splits = read_corpus_splits(corpus_dirs["train"], corpus_dirs["dev"], "test")
    expected = split_folders(corpus_dirs["train"], corpus_dirs["dev"], "test")
    news, index, categories = read_news_union([news for news, _ in expected.values()])
    assert splits.data_format == "mind" and splits.splits == expected
    assert splits.news.data.table.equals(news.data.table) and splits.news_index == index
    assert splits.categories == categories
    assert splits.labels == {"category": "on", "ner": "on", "sentiment": "off: the corpus has no sentiment labels"}


def test_load_mind_reads_ebnerd(tmp_path):
    train, dev = ebnerd_small(tmp_path)
    corpus = load_mind(synthetic_tokenizer(), train_dir=train, eval_dir=dev, max_title_length=16)
    assert corpus.data_format == "ebnerd"
    assert corpus.labels == {"category": "on", "ner": "on", "sentiment": "on"}
    assert corpus.news_index == {"1": 0, "2": 1, "3": 2}  # the validation split's articles are the same: read once
    assert corpus.category2id == {"kultur": 0, "nyheder": 1, "vejr": 2}
    assert corpus.news["sentiment"][:] == ["Negative", "Neutral", ""]
    assert len(corpus.train) > 0 and corpus.eval["impression_id"][:] == ["10", "11", "12"]
    (tmp_path / "t").mkdir()
    with pytest.raises(ValueError, match="different formats"):
        load_mind(synthetic_tokenizer(), train_dir=train, eval_dir=tables_split(tmp_path / "t"))


def test_load_mind_reads_xmind_tables_and_adressa(tmp_path):
    tokenizer = synthetic_tokenizer()
    xmind = xmind_split(tmp_path / "x", TRANSLATIONS)
    corpus = load_mind(tokenizer, train_dir=xmind, eval_dir=xmind, mind_dir=tmp_path / "x" / "MINDsmall_train")
    assert corpus.data_format == "xmind" and corpus.news["title"][0] == "フォートローダーデールに事務所が開設"
    assert corpus.labels["ner"].startswith("off: xMIND")
    (tmp_path / "t").mkdir()
    corpus = load_mind(tokenizer, eval_dir=tables_split(tmp_path / "t"))
    assert corpus.data_format == "tables" and corpus.labels["sentiment"] == "on"
    assert corpus.eval["impression_id"][:] == ["1", "2"]  # the unlabelled impression is left out, as MIND's
    # Adressa: one folder for both splits; the train split is built from day 1, the dev split from day 2.
    folder = adressa_one_week(tmp_path)
    corpus = load_mind(tokenizer, train_dir=folder, eval_dir=folder, history_days=1, dev_days=1)
    assert corpus.data_format == "adressa" and corpus.labels["ner"] == "off: Adressa gives no entity offsets"
    assert len(corpus.train) > 0 and len(corpus.eval) > 0


def test_ner_tags_are_ignored_where_no_title_is_annotated(tmp_path):
    """Unannotated titles (xMIND, Adressa) are not entity-free: their tags are ignored (-100), never all O, so the NER
    head learns nothing from them (the load report's "off"); EB-NeRD's located entities keep B/I/O tags."""
    tokenizer = synthetic_tokenizer()
    xmind = xmind_split(tmp_path / "x", TRANSLATIONS)
    corpora = {
        "xmind": load_mind(tokenizer, train_dir=xmind, mind_dir=tmp_path / "x" / "MINDsmall_train"),
        "adressa": load_mind(tokenizer, train_dir=adressa_one_week(tmp_path), history_days=1, dev_days=1),
    }
    for name, corpus in corpora.items():
        assert corpus.labels["ner"].startswith("off"), name
        assert {tag for tags in corpus.news["ner_labels"] for tag in tags} == {-100}, name
    train, dev = ebnerd_small(tmp_path)
    tags = {tag for tags in load_mind(tokenizer, train_dir=train, eval_dir=dev).news["ner_labels"] for tag in tags}
    assert {0, 1} <= tags  # O and B: the tags stay where the corpus has entities


def test_load_retrieval_corpus_reads_ebnerd(tmp_path):
    train, dev = ebnerd_small(tmp_path)
    corpus = load_retrieval_corpus(train_dir=train, eval_dir=dev, data_format="ebnerd")
    assert corpus.data_format == "ebnerd" and corpus.labels["sentiment"] == "on"
    assert len(corpus.items) == len(corpus.news) == 3
    assert corpus.train_counts.sum() == len(corpus.train) > 0


def test_missing_folder_of_no_format_names_the_mind_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="news.tsv.*no known corpus format"):
        load_mind(synthetic_tokenizer(), train_dir=tmp_path)
