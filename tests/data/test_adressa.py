"""Adressa reader: click events -> impressions by the stated, seeded rule; hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling_mtrec.data.adressa import read_adressa
from modeling_mtrec.data.formats import detect_format
from modeling_mtrec.data.mind import MINDFormatError
from modeling_mtrec.data.stats import LoadStats
from tests.data.corpus_files import DAY, T0, adressa_event, adressa_one_week, write_day_files


def test_impressions_follow_the_rule(tmp_path: Path) -> None:
    stats = LoadStats()
    news, train = read_adressa(adressa_one_week(tmp_path), split="train", history_days=1, num_negatives=2, seed=0, stats=stats)
    assert news["news_id"][:] == ["a1", "a2", "a3", "a4", "a5", "a6", "a7"]  # every article, train's or not
    assert news[0]["category"] == "nyheter" and news[0]["subcategory"] == "trondheim"
    assert news[0]["title"] == "Tittel a1" and news[0]["url"] == "http://adressa.no/a1"  # the first title seen
    assert news["title_entities"][:] == ["[]"] * 7
    # Day 1: u1 a3, u2 a4, u3 a5, (u1 a1: a repeated click), u2 a3 -> 4 impressions in time order.
    assert train["impression_id"][:] == ["1", "2", "3", "4"]
    assert train["user_id"][:] == ["u1", "u2", "u3", "u2"]
    assert train["time"][0] == "2017-01-02T00:00:10+00:00"
    assert train["history"][:] == [["a1"], ["a2"], [], ["a2", "a4"]]
    day_one = {"a3", "a4", "a5"}  # read on day 1 (first clicks)
    clicked_by_day_end = {"u1": {"a1", "a3"}, "u2": {"a2", "a4", "a3"}, "u3": {"a5"}}
    for user, candidates, clicks in zip(train["user_id"], train["candidates"], train["clicks"]):
        positive = [c for c, y in zip(candidates, clicks) if y == 1]
        negatives = [c for c, y in zip(candidates, clicks) if y == 0]
        assert len(positive) == 1 and 1 <= len(negatives) <= 2
        assert set(negatives) <= day_one - clicked_by_day_end[user]
    assert stats == {"non_article_events": 1, "repeated_clicks": 1}


def test_dev_split_and_seed(tmp_path: Path) -> None:
    folder = adressa_one_week(tmp_path)
    _, dev = read_adressa(folder, split="dev", history_days=1, num_negatives=1, seed=0)
    assert dev["impression_id"][:] == ["5", "6", "7"]  # ids continue after train's; u4 read all of day 2
    assert dev["user_id"][:] == ["u1", "u2", "u3"] and dev["history"][1] == ["a2", "a4", "a3"]
    assert all(sorted(c) == ["a6", "a7"] for c in dev["candidates"])
    assert [dict(zip(c, y)) for c, y in zip(dev["candidates"], dev["clicks"])] == [
        {"a6": 1, "a7": 0}, {"a6": 0, "a7": 1}, {"a6": 1, "a7": 0}]  # fmt: skip
    first = read_adressa(folder, split="all", history_days=1, num_negatives=2, seed=3)[1]
    again = read_adressa(folder, split="all", history_days=1, num_negatives=2, seed=3)[1]
    assert first[:] == again[:]
    stats = LoadStats()
    read_adressa(folder, split="dev", history_days=1, num_negatives=1, stats=stats)
    assert stats["impressions_without_negatives"] == 2  # u4's a6 and a7: no article of the day left


def test_detected_from_the_files(tmp_path: Path) -> None:
    assert detect_format(adressa_one_week(tmp_path)) == "adressa"


def test_too_few_days_and_bad_options(tmp_path: Path) -> None:
    folder = adressa_one_week(tmp_path)
    with pytest.raises(ValueError, match="3 days of clicks"):
        read_adressa(folder)  # 5 history days + a train day + a dev day
    with pytest.raises(ValueError, match="split must be one of"):
        read_adressa(folder, split="test", history_days=1)
    with pytest.raises(FileNotFoundError, match="no Adressa event file"):
        read_adressa(write_day_files(tmp_path / "empty", {"notes.txt": ["x"]}))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{broken", "not a JSON object"),
        ('"a string"', "not a JSON object"),
        (json.dumps({"userId": "u 1", "time": T0 + DAY, "id": "a9"}), "user id 'u 1' contains whitespace"),
        (json.dumps({"userId": None, "time": T0 + DAY, "id": "a9"}), "userId is neither a string nor an integer"),
        (json.dumps({"userId": "u1", "time": "yesterday", "id": "a9"}), "time is not a number of Unix seconds"),
        (json.dumps({"userId": "u1", "time": T0 + DAY, "id": ["a9"]}), "id is neither a string nor an integer"),
    ],
)
def test_bad_events_strict_and_lenient(tmp_path: Path, line: str, problem: str) -> None:
    folder = adressa_one_week(tmp_path)
    path = folder / "20170102"
    path.write_text(json.dumps(adressa_event("u1", 1, 10, "a3")) + "\n" + line + "\n" + path.read_text())
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: .*{problem}"):
        read_adressa(folder, history_days=1)
    stats = LoadStats()
    read_adressa(folder, history_days=1, lenient=True, stats=stats)
    assert stats["malformed_rows_skipped"] == 1


def test_no_click_event_raises(tmp_path: Path) -> None:
    folder = write_day_files(tmp_path / "w", {"20170101": [adressa_event("u1", 0, 1, None)], "20170102": [""]})
    with pytest.raises(MINDFormatError, match="no usable click event"):
        read_adressa(folder, history_days=1)
