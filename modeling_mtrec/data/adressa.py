"""Reader for Adressa, the Adresseavisen click logs (Gulla et al., WI 2017), with impressions built by a stated rule.

Adressa (https://reclab.idi.ntnu.no/dataset/; releases ``one_week`` and ``three_month``) is a folder of files, one per
day (``20170101``, ...), each holding JSON lines, one page-view event each. The fields read here: ``userId``,
``time`` (Unix seconds), ``id`` (the article; absent on front pages and other non-article pages), ``title``,
``category1`` (``"category|subcategory"``) and ``canonicalUrl`` (else ``url``).

Adressa has no impressions (no list of what a user saw and did not click). `read_adressa` builds them with this rule,
the one NewsRecLib follows (history from the first days, impressions from the later ones, negatives among the
articles read that day):

1. The click events (events with an ``id``) are put in time order (ties in file order). A user reading an article
   again is one click, the first (the others are counted under ``"repeated_clicks"``).
2. The days (UTC dates) are numbered; clicks of the first `history_days` days only build histories.
3. Every later click is one impression: its ``history`` is the user's earlier clicks (oldest first, every day), its
   candidates the clicked article plus `num_negatives` negatives drawn without replacement (numpy's
   ``default_rng(seed)``, impressions in time order) from the articles anyone read that day that this user had not
   clicked by the end of that day; the candidates are shuffled with the same generator so the click's position tells
   nothing. An impression with no such article is left out (``"impressions_without_negatives"``).
4. The last `dev_days` days are the ``"dev"`` split, the days between the history days and them the ``"train"``
   split (``"all"``: both). Impression ids are numbers in time order over both, so the splits never share one.

The news table holds every article of every event (first seen first): ``news_id`` = ``id``; ``category`` and
``subcategory`` = ``category1`` split at the first ``|`` (``""`` when absent); ``title`` = the first non-empty title
seen (``""`` and counted under ``"news_without_title"`` if none); ``url`` = ``canonicalUrl`` (else ``url``);
no abstract and no entities (Adressa gives no offsets: NER is off). Also counted: ``"non_article_events"`` (events
without an article id). A line that is not a JSON object, or a click event without a usable ``userId``, ``time`` or
``id``, raises `MINDFormatError` naming the file and line, or is skipped and counted under ``lenient``.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .lines import json_objects
from .mind import MINDFormatError, id_problem
from .stats import BadRows, LoadStats
from .tables import BehaviorsBuilder, NewsBuilder

logger = logging.getLogger(__name__)

__all__ = ["adressa_files", "read_adressa", "read_adressa_events"]

_DAY_FILE = re.compile(r"^\d{8}$")
SPLITS = ("train", "dev", "all")


def adressa_files(folder: str | os.PathLike) -> list[Path]:
    """The event files of an Adressa folder: files named by their day (``20170101``) or ending in ``.json`` /
    ``.jsonl``, in name order. `FileNotFoundError` when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    files = sorted(
        path for path in folder.iterdir()
        if path.is_file() and (_DAY_FILE.match(path.name) or path.suffix in (".json", ".jsonl"))
    )  # fmt: skip
    if not files:
        raise FileNotFoundError(f"{folder}: no Adressa event file (one per day, e.g. 20170101, or *.json / *.jsonl)")
    return files


def read_adressa_events(
    files: list[Path], *, lenient: bool = False, stats: LoadStats | None = None
) -> tuple[list[tuple[float, int, str, str]], dict[str, dict[str, str]]]:
    """``(clicks, articles)``: every click event as ``(time, order, user_id, news_id)`` in time order, and the news
    fields of every article (``{news_id: {"title", "category", "subcategory", "url"}}``, first seen first)."""
    stats = LoadStats() if stats is None else stats
    clicks: list[tuple[float, int, str, str]] = []
    articles: dict[str, dict[str, str]] = {}
    for path in files:
        bad_row = BadRows(os.fspath(path), lenient, stats, error=MINDFormatError, logger=logger)
        for lineno, event in json_objects(path):
            if isinstance(event, str):  # not UTF-8 or not a JSON object
                bad_row(lineno, event)
                continue
            if event.get("id") in (None, ""):
                stats["non_article_events"] += 1
                continue
            problem = _event_problem(event)
            if problem:
                bad_row(lineno, problem)
                continue
            news_id, user_id = str(event["id"]), str(event["userId"])
            clicks.append((float(event["time"]), len(clicks), user_id, news_id))
            _add_article(articles, news_id, event)
    clicks.sort()
    return clicks, articles


def _event_problem(event: dict[str, Any]) -> str | None:
    for key, what in (("id", "article id"), ("userId", "user id")):
        value = event.get(key)
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return f"{key} is neither a string nor an integer: {value!r}"
        problem = id_problem(str(value), what)
        if problem:
            return problem
    time = event.get("time")
    if not isinstance(time, (int, float)) or isinstance(time, bool) or not np.isfinite(time):
        return f"time is not a number of Unix seconds: {time!r}"
    return None


def _add_article(articles: dict[str, dict[str, str]], news_id: str, event: dict[str, Any]) -> None:
    fields = articles.get(news_id)
    if fields is None:
        category = event.get("category1") if isinstance(event.get("category1"), str) else ""
        main, _, sub = category.partition("|")
        url = event.get("canonicalUrl") or event.get("url") or ""
        fields = articles[news_id] = {"title": "", "category": main, "subcategory": sub,
                                      "url": url if isinstance(url, str) else ""}  # fmt: skip
    title = event.get("title")
    if not fields["title"] and isinstance(title, str) and title.strip():
        fields["title"] = title


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).date().isoformat()


def read_adressa(
    folder: str | os.PathLike,
    *,
    split: str = "train",
    history_days: int = 5,
    dev_days: int = 1,
    num_negatives: int = 4,
    seed: int = 0,
    lenient: bool = False,
    stats: LoadStats | None = None,
) -> tuple[Dataset, Dataset]:
    """Read an Adressa folder into ``(news, behaviors)`` with impressions built by the module docstring's rule.

    Args:
        folder: the folder of day files (e.g. ``one_week``).
        split: ``"train"``, ``"dev"`` or ``"all"`` (which impression days).
        history_days: first days whose clicks only build histories (one_week: 5 of 7, so day 6 is train, day 7 dev).
        dev_days: last days that make the dev split.
        num_negatives: negatives per impression (NewsRecLib's ``neg_num``: 4).
        seed: seeds the negative sampling and the candidate order.
        lenient: skip and count bad rows instead of raising `MINDFormatError`.
        stats: where to count problems; when None a local `LoadStats` is logged at the end.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if history_days < 1 or dev_days < 1 or num_negatives < 1:
        raise ValueError(f"history_days, dev_days and num_negatives must be >= 1, got {history_days}, {dev_days}, {num_negatives}")
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    files = adressa_files(folder)
    clicks, articles = read_adressa_events(files, lenient=lenient, stats=stats)
    if not clicks:
        raise MINDFormatError(f"{os.fspath(folder)}: no usable click event ({stats.as_dict()})")
    days = sorted({_day(time) for time, *_ in clicks})
    if len(days) < history_days + dev_days + (split != "dev"):
        raise ValueError(
            f"{os.fspath(folder)}: {len(days)} days of clicks ({days[0]} .. {days[-1]}): too few for {history_days} "
            f"history day(s), a train day and {dev_days} dev day(s); lower history_days or dev_days"
        )
    first_impression_day, first_dev_day = days[history_days], days[len(days) - dev_days]

    news = NewsBuilder(BadRows(os.fspath(files[0]), lenient, stats, error=MINDFormatError, logger=logger))
    for i, (news_id, fields) in enumerate(articles.items()):
        if not fields["title"]:
            stats["news_without_title"] += 1
        news.add(i + 1, news_id, fields["title"], category=fields["category"], subcategory=fields["subcategory"],
                 url=fields["url"])  # fmt: skip

    # First clicks only, then per day: which articles were read, and each user's clicks up to the day's end.
    first_clicks, seen_pairs = [], set()
    for time, _, user_id, news_id in clicks:
        if (user_id, news_id) in seen_pairs:
            stats["repeated_clicks"] += 1
            continue
        seen_pairs.add((user_id, news_id))
        first_clicks.append((time, _day(time), user_id, news_id))
    read_on: dict[str, dict[str, None]] = {}  # day -> the articles read that day (an ordered set)
    first_day: dict[str, dict[str, str]] = {}  # user -> article -> the day the user first clicked it
    for _, day, user_id, news_id in first_clicks:
        read_on.setdefault(day, {})[news_id] = None
        first_day.setdefault(user_id, {})[news_id] = day
    rng = np.random.default_rng(seed)
    behaviors = BehaviorsBuilder(BadRows(os.fspath(folder), lenient, stats, error=MINDFormatError, logger=logger))
    impression_number = 0
    histories: dict[str, list[str]] = {}
    for time, day, user_id, news_id in first_clicks:
        history = histories.setdefault(user_id, [])
        if day >= first_impression_day:
            clicked = first_day[user_id]  # not clicked by the end of the day: never, or first on a later day
            pool = [n for n in read_on[day] if clicked.get(n, "9999") > day]
            in_split = split == "all" or (split == "dev") == (day >= first_dev_day)
            if not pool:
                if in_split:
                    stats["impressions_without_negatives"] += 1
            else:  # drawn for every impression day, so a split's impressions do not depend on `split`
                negatives = rng.choice(len(pool), size=min(num_negatives, len(pool)), replace=False)
                candidates = [news_id, *(pool[i] for i in negatives)]
                order = rng.permutation(len(candidates))
                impression_number += 1
                if in_split:
                    timestamp = datetime.fromtimestamp(time, tz=timezone.utc).isoformat()
                    behaviors.add(impression_number, str(impression_number), user_id, timestamp, list(history),
                                  [candidates[i] for i in order], [int(i == 0) for i in order])  # fmt: skip
        history.append(news_id)
    news_table = news.dataset(folder)
    behaviors_table = behaviors.dataset(folder)
    if own_stats:
        stats.log(logger, f"read_adressa({folder}, split={split!r})")
    return news_table, behaviors_table
