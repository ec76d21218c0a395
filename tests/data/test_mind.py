"""MIND readers: read_news, read_behaviors, errors naming file and line, LoadStats."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modeling_mtrec.data.mind import (
    EntityAnnotationError,
    MINDFormatError,
    parse_title_entities,
    read_behaviors,
    read_news,
    title_entity_ids,
)
from modeling_mtrec.data.stats import LoadStats
from tests.testing_utils import behavior_line, news_line, write


def test_read_news_keeps_text_verbatim(tmp_path: Path) -> None:
    # An unbalanced quote would make the csv module swallow the next row; CRLF endings are stripped.
    path = write(
        tmp_path / "news.tsv", [news_line("N1", title='He said "no'), news_line("N2", "news")], ending="\r\n"
    )
    news = read_news(path)
    assert news.column_names == [
        "news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities",
    ]  # fmt: skip
    assert news["news_id"][:] == ["N1", "N2"]
    assert news["title"][:] == ['He said "no', "Team wins the cup"]
    assert news["category"][:] == ["sports", "news"]
    assert news[1]["abstract_entities"] == "[]"

def test_read_news_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "news.tsv", [news_line("N1"), "", "N2\tsports\tsub\ttitle"])
    with pytest.raises(MINDFormatError) as error:
        read_news(path)
    assert str(error.value) == f"{path}:3: expected 8 tab-separated columns (MIND news.tsv), found 4"
    assert isinstance(error.value, ValueError)

def test_read_news_lenient_skips_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "news.tsv", [news_line("N1"), "broken row", news_line("N2") + "\textra"])
    stats = LoadStats()
    with caplog.at_level(logging.WARNING):
        news = read_news(path, lenient=True, stats=stats)
    assert news["news_id"][:] == ["N1"]
    assert stats == {"malformed_rows_skipped": 2}
    assert f"{path}:2:" in caplog.text and f"{path}:3:" in caplog.text

def test_read_news_skips_empty_lines_silently(tmp_path: Path) -> None:
    path = write(tmp_path / "news.tsv", ["", news_line("N1"), "", "", news_line("N2"), ""])
    stats = LoadStats()
    assert read_news(path, stats=stats)["news_id"][:] == ["N1", "N2"]
    assert stats.as_dict() == {}

def test_read_news_duplicate_id_keeps_first(tmp_path: Path) -> None:
    lines = [news_line("N1", title="first"), news_line("N2"), news_line("N1", title="second")]
    stats = LoadStats()
    news = read_news(write(tmp_path / "news.tsv", lines), stats=stats)
    assert news["news_id"][:] == ["N1", "N2"]
    assert news[0]["title"] == "first"
    assert stats == {"duplicate_news_ids": 1}

def test_read_news_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "news.tsv"
    path.write_bytes(
        news_line("N1").encode() + b"\n" + news_line("N2", title="caf\xe9").encode("latin-1") + b"\n"
    )
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: not valid UTF-8"):
        read_news(path)

def test_read_behaviors_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1 N2 N3", "N4-1 N5-0 N6-0"), behavior_line("2", "", "N5-0 N4-1", user="U2")],
    )
    behaviors = read_behaviors(path)
    assert behaviors.column_names == ["impression_id", "user_id", "time", "history", "candidates", "clicks"]
    first, second = behaviors[0], behaviors[1]
    assert first == {
        "impression_id": "1",
        "user_id": "U1",
        "time": "11/15/2019 8:55:22 AM",
        "history": ["N1", "N2", "N3"],
        "candidates": ["N4", "N5", "N6"],
        "clicks": [1, 0, 0],
    }
    assert second["history"] == [] and second["user_id"] == "U2"
    assert second["candidates"] == ["N5", "N4"] and second["clicks"] == [0, 1]

def test_read_behaviors_unlabelled_test_split(tmp_path: Path) -> None:
    behaviors = read_behaviors(write(tmp_path / "behaviors.tsv", [behavior_line("9", "N1", "N4 N5")]))
    assert behaviors[0]["candidates"] == ["N4", "N5"]
    assert behaviors[0]["clicks"] == [-1, -1]

def test_read_behaviors_wrong_column_count(tmp_path: Path) -> None:
    path = write(tmp_path / "behaviors.tsv", [behavior_line("1", "N1", "N2-1"), "2\tU1\tN1\tN2-1"])
    with pytest.raises(MINDFormatError) as error:
        read_behaviors(path)
    assert str(error.value) == f"{path}:2: expected 5 tab-separated columns (MIND behaviors.tsv), found 4"

@pytest.mark.parametrize("impressions", ["N2-1 N1-x", "N2-1 -1", "N2-1 N3", ""])
def test_read_behaviors_malformed_impressions_names_line(tmp_path: Path, impressions: str) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1", "N2-1 N3-0"), behavior_line("2", "", impressions)],
    )
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: "):
        read_behaviors(path)

def test_read_behaviors_reports_the_first_bad_line(tmp_path: Path) -> None:
    # Impression tokens are checked per chunk, column counts per line: the earlier line must still win.
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1", "N2-1 N3-0"), behavior_line("2", "N1", "N2-1 N1-x"), "3\tU1\tN1\tN2-1"],
    )
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: malformed impression token 'N1-x'"):
        read_behaviors(path)

def test_read_behaviors_whitespace_like_str_split(tmp_path: Path) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", " N1  N2 ", " N3-1  N4-0 "), behavior_line("2", " ", "N3")],
    )
    behaviors = read_behaviors(path)
    assert behaviors["history"][:] == [["N1", "N2"], []]
    assert behaviors["candidates"][:] == [["N3", "N4"], ["N3"]]
    assert behaviors["clicks"][:] == [[1, 0], [-1]]

def test_read_behaviors_lenient_skips_bad_token(tmp_path: Path) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1", "N2-1 N1-x"), behavior_line("2", "N1", "N2-1 N3-0"), "too\tfew"],
    )
    stats = LoadStats()
    behaviors = read_behaviors(path, lenient=True, stats=stats)
    assert behaviors["impression_id"][:] == ["2"]
    assert stats == {"malformed_rows_skipped": 2}

def test_load_stats_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_load_stats")
    stats = LoadStats()
    with caplog.at_level(logging.INFO, logger="test_load_stats"):
        stats.log(logger, "dev split")
        stats["unknown_history_ids"] += 2
        stats["empty_history"] += 1
        stats.log(logger, "dev split")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "dev split: no problems"),
        ("WARNING", "dev split: 1 empty_history, 2 unknown_history_ids"),
    ]
    assert stats.as_dict() == {"empty_history": 1, "unknown_history_ids": 2}


# -------------------------------------------------------------------------------------------- title_entities


def test_title_entities_are_parsed_in_one_place():
    column = '[{"WikidataId": "Q1", "OccurrenceOffsets": [0]}, {"WikidataId": "Q2"}, "junk", {"WikidataId": "Q1"}]'
    assert len(parse_title_entities(column)) == 4
    assert title_entity_ids(column) == ["Q1", "Q2"]  # distinct, in order; entries that are not objects skipped
    assert parse_title_entities("") == parse_title_entities("   ") == title_entity_ids("[]") == []
    for broken in ('[{"WikidataId": "Q1"', '{"WikidataId": "Q1"}'):  # cut JSON; not a list
        with pytest.raises(EntityAnnotationError) as error:
            title_entity_ids(broken)
        assert error.value.reason == "broken_entity_json"
