"""MTRec's corpus loading (`models/mtrec/corpus.py`): one tokenised news table for both splits."""

from __future__ import annotations

from pathlib import Path

import pytest

import modeling_mtrec  # noqa: F401  (registers AutoModel)
from modeling_mtrec.models.mtrec.corpus import MINDSplit, load_mind, load_mind_split
from tests.testing_utils import behavior_line, news_line, write


def tiny_bert_tokenizer(tmp_path: Path):
    from transformers import BertTokenizerFast

    vocab = "[PAD] [UNK] [CLS] [SEP] [MASK] team wins the cup rain stops play".split()
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 takes the file as `vocab=`; the old `vocab_file=` keyword is silently ignored.
    return BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=True)

def test_load_mind_split_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("modeling_mtrec.models.mtrec.processing_mtrec")
    folder = tmp_path / "split"
    folder.mkdir()
    write(
        folder / "news.tsv",
        [news_line("N1", "sports"), news_line("N2", "weather", "Rain stops play"), news_line("N3", "sports")],
    )
    write(
        folder / "behaviors.tsv",
        [behavior_line("1", "N1 X1", "N2-1 N3-0"), behavior_line("2", "", "N1-0 N3-0")],
    )
    tokenizer = tiny_bert_tokenizer(tmp_path)

    split = load_mind_split(folder, tokenizer)
    assert isinstance(split, MINDSplit)
    assert split.news_index == {"N1": 0, "N2": 1, "N3": 2}
    assert split.category2id == {"sports": 0, "weather": 1}
    # [CLS] rain stops play [SEP]
    assert split.news["input_ids"][1] == tokenizer("Rain stops play")["input_ids"] == [2, 9, 10, 11, 3]
    assert split.news["category_label"][:] == [0, 1, 0]
    assert split.samples[:] == {"history": [[0]], "positive": [1], "negatives": [[2]]}
    assert split.stats == {"unknown_history_ids": 1, "impressions_without_click": 1}

    dev = load_mind_split(folder, tokenizer, train=False, category2id={"weather": 0})
    assert dev.news["category_label"][:] == [-100, 0, -100]
    assert dev.samples["impression_id"][:] == ["1"]
    assert dev.stats["unknown_category"] == 2

    with pytest.raises(FileNotFoundError, match="behaviors.tsv"):
        load_mind_split(tmp_path, tokenizer)

def test_load_mind_shares_one_news_table(corpus_dirs, tiny_encoder):
    _, tokenizer = tiny_encoder
    corpus = load_mind(tokenizer, train_dir=corpus_dirs["train"], eval_dir=corpus_dirs["dev"], max_title_length=24)
    # Dev news.tsv repeats the train news plus fresh ones: each news id is tokenised once.
    assert len(corpus.news_index) == len(corpus.news)
    assert len(set(corpus.news["news_id"])) == len(corpus.news)
    top = len(corpus.news)
    for column in ("history", "candidates"):
        assert max(max(row, default=0) for row in corpus.eval[column]) < top
    assert max(corpus.train["positive"]) < top
    assert corpus.stats["empty_history"] > 0  # the generator plants cold-start users; they are counted
    assert set(corpus.category2id) == set(corpus.news["category"])

def test_load_mind_missing_file_names_it(tmp_path, tiny_encoder):
    (tmp_path / "news.tsv").write_text("")
    with pytest.raises(FileNotFoundError, match="behaviors.tsv"):
        load_mind(tiny_encoder[1], train_dir=tmp_path)
