"""Adressa reader: click events -> impressions by the stated, seeded rule; hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling_mtrec.data.adressa import read_adressa
from modeling_mtrec.data.formats import detect_format
from modeling_mtrec.data.mind import MINDFormatError
from modeling_mtrec.data.stats import LoadStats

DAY = 86_400
T0 = 1_483_228_800  # 2017-01-01T00:00:00Z


def event(user: str, day: int, second: int, article: str | None, **extra) -> dict:
    row = {"userId": user, "time": T0 + day * DAY + second, "eventId": 1, "city": "trondheim"}
    if article is not None:
        row.update(id=article, title=f"Tittel {article}", category1="nyheter|trondheim",
                   canonicalUrl=f"http://adressa.no/{article}")  # fmt: skip
    row.update(extra)
    return row


def write_days(folder: Path, days: dict[str, list]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in days.items():
        (folder / name).write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return folder


def one_week(tmp_path: Path) -> Path:
    """3 days: day 0 builds histories, day 1 is train, day 2 dev (history_days=1, dev_days=1)."""
    return write_days(tmp_path / "one_week", {
        "20170101": [event("u1", 0, 10, "a1"), event("u2", 0, 20, "a2"), event("u1", 0, 30, None)],
        "20170102": [event("u1", 1, 10, "a3"), event("u2", 1, 20, "a4"), event("u3", 1, 30, "a5"),
                     event("u1", 1, 40, "a1", title="Ny tittel"), event("u2", 1, 50, "a3", category1="sport")],
        "20170103": [event("u1", 2, 10, "a6"), event("u2", 2, 20, "a7"), event("u3", 2, 30, "a6"),
                     event("u4", 2, 40, "a6"), event("u4", 2, 50, "a7")],
    })  # fmt: skip


def test_impressions_follow_the_rule(tmp_path: Path) -> None:
    stats = LoadStats()
    news, train = read_adressa(one_week(tmp_path), split="train", history_days=1, num_negatives=2, seed=0, stats=stats)
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
    folder = one_week(tmp_path)
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
    assert detect_format(one_week(tmp_path)) == "adressa"


def test_too_few_days_and_bad_options(tmp_path: Path) -> None:
    folder = one_week(tmp_path)
    with pytest.raises(ValueError, match="3 days of clicks"):
        read_adressa(folder)  # 5 history days + a train day + a dev day
    with pytest.raises(ValueError, match="split must be one of"):
        read_adressa(folder, split="test", history_days=1)
    with pytest.raises(FileNotFoundError, match="no Adressa event file"):
        read_adressa(write_days(tmp_path / "empty", {"notes.txt": ["x"]}))


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
    folder = one_week(tmp_path)
    path = folder / "20170102"
    path.write_text(json.dumps(event("u1", 1, 10, "a3")) + "\n" + line + "\n" + path.read_text())
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: .*{problem}"):
        read_adressa(folder, history_days=1)
    stats = LoadStats()
    read_adressa(folder, history_days=1, lenient=True, stats=stats)
    assert stats["malformed_rows_skipped"] == 1


def test_no_click_event_raises(tmp_path: Path) -> None:
    folder = write_days(tmp_path / "w", {"20170101": [event("u1", 0, 1, None)], "20170102": [""]})
    with pytest.raises(MINDFormatError, match="no usable click event"):
        read_adressa(folder, history_days=1)
