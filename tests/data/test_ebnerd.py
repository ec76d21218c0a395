"""EB-NeRD reader: Parquet files written by the tests, ner_clusters located in multilingual titles, hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modeling_mtrec.data.ebnerd import locate_entities, read_ebnerd, read_ebnerd_with_beyond_accuracy
from modeling_mtrec.data.mind import MINDFormatError
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.models.mtrec.processing_mtrec import title_entity_spans
from tests.data.corpus_files import (
    IDS,
    ebnerd_articles,
    ebnerd_behaviors,
    ebnerd_corpus,
    ebnerd_history,
    ebnerd_test_behaviors,
)


def test_read_ebnerd_split(tmp_path: Path) -> None:
    stats = LoadStats()
    news, impressions = read_ebnerd(ebnerd_corpus(tmp_path), stats=stats)
    assert news.column_names == ["news_id", "category", "subcategory", "title", "abstract", "url", "title_entities",
                                 "abstract_entities", "sentiment"]  # fmt: skip
    assert news["news_id"][:] == ["1", "2", "3"]
    assert news["category"][:] == ["nyheder", "vejr", "kultur"] and news["subcategory"][:] == ["11", "", ""]
    assert news["abstract"][:] == ["Statsministeren taler", "", "En roman"]
    assert news["sentiment"][:] == ["Negative", "Neutral", ""]
    assert news["abstract_entities"][:] == ["[]", "[]", "[]"]
    assert json.loads(news[1]["title_entities"]) == [
        {"Label": "Aarhus", "Type": "LOC", "WikidataId": "", "Confidence": 1.0, "OccurrenceOffsets": [10],
         "SurfaceForms": ["Aarhus"]}
    ]  # fmt: skip
    assert impressions[:] == {
        "impression_id": ["10", "11", "12"],
        "user_id": ["100", "200", "100"],
        "time": ["2023-05-18T07:00:01", "2023-05-18T08:00:00", "2023-05-19T00:00:00"],
        "history": [["3", "1"], [], ["3", "1"]],  # user 200 has no history row
        "candidates": [["1", "2", "3"], ["2", "3"], ["3", "1"]],
        "clicks": [[0, 1, 0], [0, 1], [0, 1]],
    }
    # Danish title: the longest cluster first, "Løkke" inside it, "Dan" not inside "Danmark", "EU" only in the body
    assert stats == {"users_without_history": 1, "clicks_not_in_view": 1, "ner_mentions_inside_longer": 1,
                     "ner_clusters_not_in_title": 2}  # fmt: skip


def test_test_set_has_no_clicks_and_beyond_accuracy_rows_are_counted(tmp_path: Path) -> None:
    table = ebnerd_behaviors(is_beyond_accuracy=[False, False, True]).drop_columns(["article_ids_clicked"])
    table = table.set_column(0, "impression_id", pa.array([10, 11, 0], pa.uint32()))
    stats = LoadStats()
    _, impressions = read_ebnerd(ebnerd_corpus(tmp_path, "test", behaviors_table=table), stats=stats)
    assert impressions["impression_id"][:] == ["10", "11"]
    assert impressions["clicks"][:] == [[-1, -1, -1], [-1, -1]]
    assert stats["beyond_accuracy_impressions"] == 1


def test_beyond_accuracy_rows_are_read_for_the_prediction_file(tmp_path: Path) -> None:
    """The test set's is_beyond_accuracy rows stay out of the behaviors table and come as a table of their own, in file
    order, each with its impression id 0 (the challenge's prediction file ranks them after the other impressions)."""
    folder = ebnerd_corpus(tmp_path, "test", behaviors_table=ebnerd_test_behaviors())
    stats = LoadStats()
    news, impressions, beyond = read_ebnerd_with_beyond_accuracy(folder, stats=stats)
    assert impressions["impression_id"][:] == ["10", "11"] and len(news) == 3
    assert beyond[:] == {
        "impression_id": ["0", "0"],
        "user_id": ["200", "100"],
        "time": ["2023-06-01T08:00:00", "2023-06-01T10:00:00"],
        "history": [[], ["3", "1"]],
        "candidates": [["3", "1", "2"], ["3", "1", "2"]],
        "clicks": [[-1, -1, -1], [-1, -1, -1]],
    }
    assert stats["beyond_accuracy_impressions"] == 2 and stats["users_without_history"] == 1  # user 200's row
    # A split without such rows (train, validation) has no third table; read_ebnerd reads the same two.
    assert read_ebnerd_with_beyond_accuracy(ebnerd_corpus(tmp_path / "train"))[2] is None
    assert read_ebnerd(folder)[1][:] == impressions[:]


def test_a_bad_beyond_accuracy_row_is_named(tmp_path: Path) -> None:
    table = ebnerd_test_behaviors(article_ids_inview=pa.array([[1, 2, 3], [3, 1, 2], [2, 3], []], IDS))
    folder = ebnerd_corpus(tmp_path, "test", behaviors_table=table)
    assert read_ebnerd(folder)[1]["impression_id"][:] == ["10", "11"]  # not read unless asked for
    with pytest.raises(MINDFormatError, match=r"behaviors.parquet:4: empty candidates list"):
        read_ebnerd_with_beyond_accuracy(folder)
    stats = LoadStats()
    _, _, beyond = read_ebnerd_with_beyond_accuracy(folder, lenient=True, stats=stats)
    assert beyond["candidates"][:] == [["3", "1", "2"]] and stats["malformed_rows_skipped"] == 1


def test_articles_parquet_in_the_split_folder_is_used_first(tmp_path: Path) -> None:
    folder = ebnerd_corpus(tmp_path)
    pq.write_table(ebnerd_articles(title=["A", "B", "C"], ner_clusters=[[], [], []]), folder / "articles.parquet")
    news, _ = read_ebnerd(folder)
    assert news["title"][:] == ["A", "B", "C"]


# ------------------------------------------------------------------------------------------- entity location

MULTILINGUAL = [
    # (title, clusters, {cluster: offsets}) -- offsets in code points, as MIND's OccurrenceOffsets
    ("Mette Frederiksen besøger Aalborg og Aalborgs havn", ["Mette Frederiksen", "Aalborg"],
     {"Mette Frederiksen": [0], "Aalborg": [26]}),  # "Aalborgs": the genitive continues the word (not a match)
    ("東京で山田太郎が勝利、東京は祝う", ["東京", "山田太郎"], {"東京": [0, 11], "山田太郎": [3]}),
    ("นายกฯ ประยุทธ์เยือนกรุงเทพวันนี้", ["ประยุทธ์", "กรุงเทพ"], {"ประยุทธ์": [6], "กรุงเทพ": [19]}),
    ("زار محمد بن سلمان الرياض اليوم", ["محمد بن سلمان", "الرياض", "محمد"], {"محمد بن سلمان": [4], "الرياض": [18]}),
    ("🎉 Danmark vinder over Sverige", ["Danmark", "Sverige"], {"Danmark": [2], "Sverige": [22]}),
]  # fmt: skip


@pytest.mark.parametrize(("title", "clusters", "expected"), MULTILINGUAL)
def test_locate_entities_in_multilingual_titles(title: str, clusters: list[str], expected: dict) -> None:
    entities = locate_entities(title, clusters)
    assert {e["Label"]: e["OccurrenceOffsets"] for e in entities} == expected
    for entity in entities:
        for offset, surface in zip(entity["OccurrenceOffsets"], entity["SurfaceForms"], strict=True):
            assert title[offset : offset + len(surface)] == surface
    # The annotations are MIND's: MTRec's BIO tagging reads them without an offset mismatch.
    spans = title_entity_spans(title, json.dumps(entities, ensure_ascii=False))
    assert sorted(spans) == sorted((o, o + len(c)) for c, offsets in expected.items() for o in offsets)


def test_locate_entities_edge_cases() -> None:
    stats = LoadStats()
    assert locate_entities("Ingen enheder", None) == [] == locate_entities("Ingen enheder", [])
    assert locate_entities("Aarhus og Aarhus", ["Aarhus", "Aarhus", "", None], stats=stats)[0]["OccurrenceOffsets"] == [0, 10]
    assert stats.as_dict() == {}  # a repeated cluster is one entity, blank / null clusters are no entity
    assert locate_entities("Aarhus", ["Aarhus"])[0]["Type"] == ""  # no entity_groups: no type


# ----------------------------------------------------------------------------------------------- hostile input


def test_missing_files_are_named(tmp_path: Path) -> None:
    folder = ebnerd_corpus(tmp_path)
    (tmp_path / "articles.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="no articles.parquet in the folder or its parent"):
        read_ebnerd(folder)
    (folder / "history.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="history.parquet: not found"):
        read_ebnerd(folder)


def test_missing_column_and_wrong_type(tmp_path: Path) -> None:
    folder = ebnerd_corpus(tmp_path, behaviors_table=ebnerd_behaviors().drop_columns(["article_ids_inview"]))
    with pytest.raises(MINDFormatError, match=r"behaviors.parquet: missing column\(s\) \['article_ids_inview'\]"):
        read_ebnerd(folder)
    folder = ebnerd_corpus(tmp_path, behaviors_table=ebnerd_behaviors(article_ids_inview=["1 2 3", "2 3", "3 1"]))
    with pytest.raises(MINDFormatError, match="column 'article_ids_inview' is string, not a list"):
        read_ebnerd(folder)
    folder = ebnerd_corpus(tmp_path, articles_table=ebnerd_articles().drop_columns(["title"]), behaviors_table=ebnerd_behaviors())
    with pytest.raises(MINDFormatError, match=r"articles.parquet: missing column\(s\) \['title'\]"):
        read_ebnerd(folder)


@pytest.mark.parametrize(
    ("overrides", "problem", "reason"),
    [
        ({"impression_id": pa.array([10, None, 12], pa.uint32())}, "null impression id", "malformed_rows_skipped"),
        ({"user_id": pa.array([100, None, 100], pa.uint32())}, "null user id", "malformed_rows_skipped"),
        ({"article_ids_inview": pa.array([[1, 2, 3], [], [3, 1]], IDS)}, "empty candidates list", "malformed_rows_skipped"),
        ({"article_ids_inview": pa.array([[1, 2, 3], [2, None], [3, 1]], IDS)}, "null news id in candidates",
         "malformed_rows_skipped"),
        ({"article_ids_clicked": pa.array([[2], None, [1]], IDS)}, "article_ids_clicked is not a list",
         "malformed_rows_skipped"),
        ({"impression_id": pa.array([10, 10, 12], pa.uint32())}, "impression id '10' repeats row 1's",
         "duplicate_impression_ids"),
    ],
)  # fmt: skip
def test_bad_impression_rows_strict_and_lenient(tmp_path: Path, overrides: dict, problem: str, reason: str) -> None:
    folder = ebnerd_corpus(tmp_path, behaviors_table=ebnerd_behaviors(**overrides))
    with pytest.raises(MINDFormatError, match=rf"^{folder / 'behaviors.parquet'}:2: {problem}"):
        read_ebnerd(folder)
    stats = LoadStats()
    _, impressions = read_ebnerd(folder, lenient=True, stats=stats)
    assert impressions["impression_id"][:] == ["10", "12"]
    assert stats[reason] == 1


def test_bad_article_rows(tmp_path: Path) -> None:
    folder = ebnerd_corpus(tmp_path, articles_table=ebnerd_articles(article_id=pa.array([1, None, 1], pa.int32())))
    with pytest.raises(MINDFormatError, match=rf"^{tmp_path / 'articles.parquet'}:2: null news id"):
        read_ebnerd(folder)
    stats = LoadStats()
    news, _ = read_ebnerd(folder, lenient=True, stats=stats)
    assert news["news_id"][:] == ["1"]  # row 2 skipped, row 3 repeats article 1 (the first is kept)
    assert stats["malformed_rows_skipped"] == 1 and stats["duplicate_news_ids"] == 1


def test_history_rows(tmp_path: Path) -> None:
    table = ebnerd_history(user_id=pa.array([100, 100], pa.uint32()), impression_time_fixed=[[], []],
                    article_id_fixed=pa.array([[3, 1], [2]], IDS))  # fmt: skip
    folder = ebnerd_corpus(tmp_path, history_table=table)
    with pytest.raises(MINDFormatError, match=rf"^{folder / 'history.parquet'}:2: user_id 100 has a second history row"):
        read_ebnerd(folder)
    stats = LoadStats()
    _, impressions = read_ebnerd(folder, lenient=True, stats=stats)
    assert impressions["history"][0] == ["3", "1"] and stats["duplicate_history_users"] == 1


def test_empty_behaviors_file_raises(tmp_path: Path) -> None:
    folder = ebnerd_corpus(tmp_path, behaviors_table=ebnerd_behaviors().slice(0, 0))
    with pytest.raises(MINDFormatError, match=r"behaviors.parquet: no usable behaviors row \(the file holds no row\)"):
        read_ebnerd(folder)
