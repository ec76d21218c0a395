"""The package's own two-table format (news + behaviors, Parquet or JSON Lines): reading, writing, hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modeling_mtrec.data.mind import MINDFormatError, read_behaviors, read_news
from modeling_mtrec.data.samples import build_eval_impressions, build_train_samples
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.data.tables import read_tables, write_tables
from tests.data.corpus_files import TABLE_BEHAVIORS, TABLE_ENTITY, TABLE_NEWS, tables_split, write_jsonl


def test_read_jsonl_tables(tmp_path: Path) -> None:
    news, behaviors = read_tables(tables_split(tmp_path))
    assert news.column_names == ["news_id", "category", "subcategory", "title", "abstract", "url", "title_entities",
                                 "abstract_entities", "sentiment"]  # fmt: skip
    assert news["news_id"][:] == ["N1", "2", "N3"]  # an integer id becomes its decimal string
    assert json.loads(news[0]["title_entities"]) == [TABLE_ENTITY]  # a list of objects becomes MIND's JSON string
    assert news["title_entities"][1:] == ["[]", "[]"] and news["sentiment"][:] == ["Positive", "", ""]
    assert news[2]["subcategory"] == "bøger" and news[2]["abstract"] == "En roman." and news[0]["url"] == ""
    assert behaviors[:] == {
        "impression_id": ["1", "2", "3"],
        "user_id": ["U1", "7", "U1"],
        "time": ["2023-05-01T10:00:00", "", ""],
        "history": [["N1"], [], ["N1", "2"]],
        "candidates": [["2", "N3"], ["N1", "N3"], ["N3"]],
        "clicks": [[1, 0], [0, 1], [-1]],
    }


def test_tables_have_the_mind_readers_features(tmp_path: Path) -> None:
    (tmp_path / "mind").mkdir()
    (tmp_path / "mind" / "news.tsv").write_text("N1\tsport\tsub\tAarhus vinder\t\t\t[]\t[]\n")
    (tmp_path / "mind" / "behaviors.tsv").write_text("1\tU1\ttime\tN1\tN1-1 N2-0\n")
    (tmp_path / "own").mkdir()
    news, behaviors = read_tables(tables_split(tmp_path / "own", news=[{"news_id": "N1", "title": "x"}]))
    assert news.features == read_news(tmp_path / "mind" / "news.tsv").features
    assert behaviors.features == read_behaviors(tmp_path / "mind" / "behaviors.tsv").features


@pytest.mark.parametrize("file_format", ["parquet", "jsonl"])
def test_write_then_read_gives_the_same_tables(tmp_path: Path, file_format: str) -> None:
    (tmp_path / "in").mkdir()
    news, behaviors = read_tables(tables_split(tmp_path / "in"))
    paths = write_tables(news, behaviors, tmp_path / "out", file_format=file_format)
    assert [p.name for p in paths] == [f"news.{file_format}", f"behaviors.{file_format}"]
    news_again, behaviors_again = read_tables(tmp_path / "out")
    assert news_again[:] == news[:] and news_again.features == news.features
    assert behaviors_again[:] == behaviors[:] and behaviors_again.features == behaviors.features


def test_tables_feed_the_sample_builders(tmp_path: Path) -> None:
    news, behaviors = read_tables(tables_split(tmp_path))
    news_index = {news_id: row for row, news_id in enumerate(news["news_id"])}
    stats = LoadStats()
    train = build_train_samples(behaviors, news_index, max_history_length=5, stats=stats)
    assert train[:] == {"history": [[0], []], "positive": [1, 2], "negatives": [[2], [0]]}
    dev = build_eval_impressions(behaviors, news_index, max_history_length=5, stats=stats)
    assert dev["impression_id"][:2] == ["1", "2"]


def test_missing_files_are_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "news.jsonl", TABLE_NEWS)
    with pytest.raises(FileNotFoundError, match="no behaviors.parquet or behaviors.jsonl"):
        read_tables(tmp_path)
    pq.write_table(pa.table({"news_id": ["N1"], "title": ["t"]}), tmp_path / "news.parquet")
    write_jsonl(tmp_path / "behaviors.jsonl", TABLE_BEHAVIORS)
    with pytest.raises(ValueError, match="both news.parquet and news.jsonl"):
        read_tables(tmp_path)


def test_parquet_missing_column_and_unreadable_file(tmp_path: Path) -> None:
    pq.write_table(pa.table({"news_id": ["N1"], "headline": ["t"]}), tmp_path / "news.parquet")
    write_jsonl(tmp_path / "behaviors.jsonl", TABLE_BEHAVIORS)
    with pytest.raises(MINDFormatError, match=r"news.parquet: missing column\(s\) \['title'\]"):
        read_tables(tmp_path)
    (tmp_path / "news.parquet").write_text("not parquet")
    with pytest.raises(MINDFormatError, match="news.parquet: not a readable Parquet file"):
        read_tables(tmp_path)


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        ({"impression_id": None, "user_id": "U1", "history": [], "candidates": ["N1"]}, "null impression id"),
        ({"impression_id": 9, "user_id": "U 1", "history": [], "candidates": ["N1"]}, "user id 'U 1' contains whitespace"),
        ({"impression_id": 9, "user_id": "U1", "history": "N1 N2", "candidates": ["N1"]}, "history is not a list"),
        ({"impression_id": 9, "user_id": "U1", "history": [None], "candidates": ["N1"]}, "null news id in history"),
        ({"impression_id": 9, "user_id": "U1", "history": [], "candidates": []}, "empty candidates list"),
        ({"impression_id": 9, "user_id": "U1", "history": [], "candidates": ["N1"], "clicks": [1, 0]}, "2 clicks for 1 candidates"),
        ({"impression_id": 9, "user_id": "U1", "history": [], "candidates": ["N1", "N3"], "clicks": [1, 2]}, "click label 2"),
        ({"impression_id": 9, "user_id": "U1", "history": [], "candidates": ["N1", "N3"], "clicks": [1, -1]}, "click label -1"),
        ({"impression_id": 9, "user_id": "U1", "history": []}, r"missing field\(s\) \['candidates'\]"),
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ({"impression_id": 1, "user_id": "U1", "history": [], "candidates": ["N1"]}, "impression id '1' repeats row 1's"),
    ],
)  # fmt: skip
def test_bad_behaviors_row_strict_and_lenient(tmp_path: Path, bad_row, problem: str) -> None:
    folder = tables_split(tmp_path, behaviors=[TABLE_BEHAVIORS[0], bad_row, TABLE_BEHAVIORS[1]])
    path = folder / "behaviors.jsonl"
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: .*{problem}"):
        read_tables(folder)
    stats = LoadStats()
    _, behaviors = read_tables(folder, lenient=True, stats=stats)
    assert behaviors["impression_id"][:] == ["1", "2"]
    reason = "duplicate_impression_ids" if "repeats" in problem else "malformed_rows_skipped"
    assert stats == {reason: 1}


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        ({"news_id": None, "title": "t"}, "null news id"),
        ({"news_id": "", "title": "t"}, "empty news id"),
        ({"news_id": "N 9", "title": "t"}, "contains whitespace"),
        ({"news_id": 1.5, "title": "t"}, "neither a string nor an integer"),
        ({"news_id": "N9", "title": None}, "null title"),
        ({"news_id": "N9", "title": 3}, "title is not a string"),
        ({"news_id": "N9", "title": "t", "category": ["a"]}, "category is not a string"),
    ],
)
def test_bad_news_row_strict_and_lenient(tmp_path: Path, bad_row, problem: str) -> None:
    folder = tables_split(tmp_path, news=[TABLE_NEWS[0], bad_row, *TABLE_NEWS[1:]])
    with pytest.raises(MINDFormatError, match=rf"^{folder / 'news.jsonl'}:2: .*{problem}"):
        read_tables(folder)
    stats = LoadStats()
    news, _ = read_tables(folder, lenient=True, stats=stats)
    assert news["news_id"][:] == ["N1", "2", "N3"] and stats == {"malformed_rows_skipped": 1}


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    pq.write_table(pa.table({"news_id": ["N1", None], "title": ["a", "b"]}), tmp_path / "news.parquet")
    write_jsonl(tmp_path / "behaviors.jsonl", TABLE_BEHAVIORS)
    with pytest.raises(MINDFormatError, match=rf"^{tmp_path / 'news.parquet'}:2: null news id"):
        read_tables(tmp_path)


def test_duplicate_news_id_keeps_the_first(tmp_path: Path) -> None:
    stats = LoadStats()
    news, _ = read_tables(tables_split(tmp_path, news=[*TABLE_NEWS, {"news_id": "N1", "title": "again"}]), stats=stats)
    assert news["news_id"][:] == ["N1", "2", "N3"] and news[0]["title"] == "Aarhus vinder"
    assert stats == {"duplicate_news_ids": 1}


def test_empty_file_and_every_row_skipped_raise(tmp_path: Path) -> None:
    folder = tables_split(tmp_path)
    (folder / "news.jsonl").write_text("\n\n")
    with pytest.raises(MINDFormatError, match=r"news.jsonl: no usable news row \(the file holds no row\)"):
        read_tables(folder)
    write_jsonl(folder / "news.jsonl", TABLE_NEWS)
    write_jsonl(folder / "behaviors.jsonl", ["{broken", {"impression_id": 1}])
    with pytest.raises(MINDFormatError, match=r"behaviors.jsonl: no usable behaviors row \(every row was skipped"):
        read_tables(folder, lenient=True)


GOOD = {"impression_id": "1", "user_id": "U1", "time": "t", "history": ["N1"], "candidates": ["N2", "N3"], "clicks": [1, 0]}


@pytest.mark.parametrize(
    ("bad", "problem", "reason"),
    [
        ({"impression_id": None}, "null impression id", "malformed_rows_skipped"),
        ({"user_id": "U 1"}, "user id 'U 1' contains whitespace", "malformed_rows_skipped"),
        ({"history": ["N1", None]}, "null news id in history", "malformed_rows_skipped"),
        ({"history": ["N1", ""]}, "empty news id in history", "malformed_rows_skipped"),
        ({"candidates": []}, "empty candidates list", "malformed_rows_skipped"),
        ({"candidates": None}, "candidates is not a list", "malformed_rows_skipped"),
        ({"clicks": [1]}, "1 clicks for 2 candidates", "malformed_rows_skipped"),
        ({"clicks": [1, 2]}, "click label 2", "malformed_rows_skipped"),
        ({"clicks": [1, -1]}, "click label 1 is not 0 or 1", "malformed_rows_skipped"),
        ({"impression_id": "1"}, "impression id '1' repeats row 1's", "duplicate_impression_ids"),
    ],
)  # fmt: skip
def test_bad_parquet_behaviors_row_strict_and_lenient(tmp_path: Path, bad: dict, problem: str, reason: str) -> None:
    # Parquet behaviors are checked on whole Arrow columns: the same rows and messages as JSON Lines.
    rows = [GOOD, {**GOOD, "impression_id": "2", **bad}, {**GOOD, "impression_id": "3", "clicks": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "behaviors.parquet")
    write_jsonl(tmp_path / "news.jsonl", TABLE_NEWS)
    with pytest.raises(MINDFormatError, match=rf"^{tmp_path / 'behaviors.parquet'}:2: .*{problem}"):
        read_tables(tmp_path)
    stats = LoadStats()
    _, behaviors = read_tables(tmp_path, lenient=True, stats=stats)
    assert behaviors["impression_id"][:] == ["1", "3"] and stats == {reason: 1}
    assert behaviors["clicks"][:] == [[1, 0], [-1, -1]] and behaviors["history"][:] == [["N1"], ["N1"]]


def test_parquet_behaviors_with_integer_ids_and_a_list_of_the_wrong_type(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "news.jsonl", TABLE_NEWS)
    table = pa.table({"impression_id": pa.array([5, 6], pa.uint32()), "user_id": pa.array([7, 7], pa.int64()),
                      "history": pa.array([[1], []], pa.list_(pa.int32())),
                      "candidates": pa.array([[2, 3], [3]], pa.list_(pa.int32())),
                      "clicks": pa.array([[0, 1], [-1]], pa.list_(pa.int8()))})  # fmt: skip
    pq.write_table(table, tmp_path / "behaviors.parquet")
    _, behaviors = read_tables(tmp_path)
    assert behaviors[:] == {"impression_id": ["5", "6"], "user_id": ["7", "7"], "time": ["", ""],
                            "history": [["1"], []], "candidates": [["2", "3"], ["3"]], "clicks": [[0, 1], [-1]]}  # fmt: skip
    pq.write_table(table.set_column(2, "history", pa.array(["1", ""])), tmp_path / "behaviors.parquet")
    with pytest.raises(MINDFormatError, match="column 'history' is string, not a list"):
        read_tables(tmp_path)
