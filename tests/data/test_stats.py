"""LoadStats and BadRows: the one rule of every reader for a bad row (an error naming file:line, or a counted skip)."""

from __future__ import annotations

import doctest
import logging

import pytest

from modeling_mtrec.data import stats as stats_module
from modeling_mtrec.data.mind import MINDFormatError
from modeling_mtrec.data.stats import MAX_ROW_WARNINGS, BadRows, LoadStats


def test_docstring_examples() -> None:
    assert doctest.testmod(stats_module).failed == 0


@pytest.mark.parametrize("error", [MINDFormatError, ValueError])
def test_bad_rows_raise_the_readers_error_naming_file_and_row(error) -> None:
    bad_row = BadRows("rows.jsonl", lenient=False, stats=LoadStats(), error=error)
    with pytest.raises(error, match=r"^rows.jsonl:7: no label$"):
        bad_row(7, "no label")
    with pytest.raises(error, match=r"^rows.jsonl:row 2: no label$"):
        bad_row("row 2", "no label")
    assert bad_row.stats == {} and bad_row.skipped == 0


def test_lenient_bad_rows_are_counted_under_their_reason_and_logged_a_few_times(caplog) -> None:
    stats = LoadStats()
    bad_row = BadRows("news.tsv", lenient=True, stats=stats, error=MINDFormatError, logger=logging.getLogger("x"))
    with caplog.at_level(logging.WARNING, logger="x"):
        for lineno in range(1, MAX_ROW_WARNINGS + 6):
            bad_row(lineno, "empty news id")
        bad_row(99, "repeated", reason="duplicate_impression_ids")
    assert stats == {"malformed_rows_skipped": MAX_ROW_WARNINGS + 5, "duplicate_impression_ids": 1}
    assert bad_row.skipped == MAX_ROW_WARNINGS + 6
    assert [record.name for record in caplog.records] == ["x"] * (MAX_ROW_WARNINGS + 1)
    assert "news.tsv:1: empty news id" in caplog.text and "news.tsv:11:" not in caplog.text
    assert "further malformed rows are skipped and counted, but not logged" in caplog.text
