"""The two-tower's corpus loading (`models/two_tower/corpus.py`): the rows `load_mind` gives, hashed item features."""

from __future__ import annotations

from modeling_mtrec.data.samples import stable_key
from modeling_mtrec.models.two_tower.corpus import load_retrieval_corpus


def test_retrieval_corpus_rows_align_across_splits(tmp_path):
    def news_row(i):
        return f"N{i}\tcat{i % 2}\tsub{i}\tTitle number {i}\t\t\t[]\t[]\n"

    for split, ids, behaviors in (
        ("train", [1, 2, 3], "1\tU1\t11/11/2019 9:00:00 AM\tN1\tN2-1 N3-0\n"),
        ("dev", [4, 2, 5], "1\tU2\t11/12/2019 9:00:00 AM\tN2\tN5-1 N4-0\n"),  # N2 repeated in the middle
    ):
        (tmp_path / split).mkdir()
        (tmp_path / split / "news.tsv").write_text("".join(news_row(i) for i in ids))
        (tmp_path / split / "behaviors.tsv").write_text(behaviors)
    corpus = load_retrieval_corpus(train_dir=tmp_path / "train", eval_dir=tmp_path / "dev")
    assert list(corpus.news_index) == ["N1", "N2", "N3", "N4", "N5"]
    assert corpus.items.item_key.tolist() == [stable_key(f"N{i}") for i in range(1, 6)]
    assert corpus.items.word_keys[4, 2].item() == stable_key("5")
    assert corpus.train_counts.tolist() == [0, 1, 0, 0, 0]
    assert corpus.eval.to_dict() == {"user_key": [stable_key("U2")], "history": [[1]], "positive": [4]}
