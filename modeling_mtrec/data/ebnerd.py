"""Reader for EB-NeRD, the Ekstra Bladet News Recommendation Dataset (Kruse et al., RecSys Challenge 2024).

EB-NeRD ships Parquet files (``ebnerd_{demo,small,large}``; the test set ``ebnerd_testset``)::

    ebnerd_small/articles.parquet
    ebnerd_small/train/behaviors.parquet, history.parquet
    ebnerd_small/validation/behaviors.parquet, history.parquet
    ebnerd_testset/articles.parquet, test/behaviors.parquet, test/history.parquet   (no clicks)

`read_ebnerd` reads one split folder (``train``, ``validation`` or ``test``; ``articles.parquet`` is looked up in the
folder, then in its parent) into the package's neutral tables (`modeling_mtrec.data.tables`):

* news, one row per article: ``news_id`` = ``article_id``; ``category`` = ``category_str``; ``subcategory`` = the
  first id of ``subcategory`` as a string (EB-NeRD gives subcategory ids without names; ``""`` when none);
  ``title``; ``abstract`` = ``subtitle``; ``url``; ``title_entities`` = the ``ner_clusters`` found in the title
  (below); ``abstract_entities`` = ``"[]"``; ``sentiment`` = ``sentiment_label`` (``Positive`` / ``Neutral`` /
  ``Negative``; ``""`` when null).
* behaviors, one row per impression: ``impression_id``; ``user_id``; ``time`` = ``impression_time`` in ISO format;
  ``history`` = the user's ``article_id_fixed`` from ``history.parquet`` (joined on ``user_id``, oldest first);
  ``candidates`` = ``article_ids_inview``; ``clicks`` = 1 for a candidate in ``article_ids_clicked``, else 0; -1
  for every candidate of the test set, which has no ``article_ids_clicked`` column.

Entities: EB-NeRD's ``ner_clusters`` are entity strings found anywhere in the article (title, subtitle, body), with
``entity_groups`` (PER, ORG, LOC, ...) aligned. MTRec locates entities in the title by exact match (Bi et al., 2022,
Sec. 4.1), so each cluster is looked for verbatim in the title: every occurrence becomes an ``OccurrenceOffsets``
entry (code-point offsets, as MIND's), longest clusters first, and an occurrence inside one already located is not
a second mention. In scripts that separate words with spaces (Danish, Arabic, ...) a match must not continue a word
on either side ("Dan" is not found in "Danmark"); in scripts written without spaces (Japanese, Chinese, Thai, ...)
there are no word boundaries to check. ``WikidataId`` is ``""`` (EB-NeRD links no knowledge base).
NOTE: exact match finds no inflected or clitic-attached mention (Danish "Aalborgs", Arabic "بالرياض" for "الرياض");
the paper's exact-match rule misses them too. Counted:
``"ner_clusters_not_in_title"`` (clusters of the body or subtitle only: not an error, most clusters are) and
``"ner_mentions_inside_longer"``.

Also counted: ``"users_without_history"`` (an impression whose user has no history row: empty history),
``"clicks_not_in_view"`` (a clicked id missing from ``article_ids_inview``: it cannot be a candidate),
``"beyond_accuracy_impressions"`` (the test set's ``is_beyond_accuracy`` rows: one shared candidate list for the
beyond-accuracy leaderboard, all with impression id 0; they are left out of the behaviors table). Bad rows follow the
MIND reader's rules (`modeling_mtrec.data.tables`): `MINDFormatError` naming the file and the 1-based row, or a
counted skip under ``lenient``; a missing file or column always raises.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset

from .mind import MINDFormatError, _BadRows
from .stats import LoadStats
from .tables import BehaviorsBuilder, NewsBuilder, read_parquet

logger = logging.getLogger(__name__)

__all__ = ["ebnerd_files", "locate_entities", "read_ebnerd", "read_ebnerd_articles", "read_ebnerd_behaviors"]

_ARTICLE_COLUMNS = ("article_id", "title")
_ARTICLE_OPTIONAL = ("category_str", "subcategory", "subtitle", "url", "ner_clusters", "entity_groups", "sentiment_label")
_BEHAVIOR_COLUMNS = ("impression_id", "user_id", "impression_time", "article_ids_inview")
_BEHAVIOR_OPTIONAL = ("article_ids_clicked", "is_beyond_accuracy")
_HISTORY_COLUMNS = ("user_id", "article_id_fixed")

# Scripts written without spaces between words: an entity found inside a run of their letters is still a mention.
_UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN", "IDEOGRAPHIC")


def ebnerd_files(folder: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(articles.parquet, behaviors.parquet, history.parquet)`` of an EB-NeRD split folder; ``articles.parquet`` is
    looked up in the folder, then in its parent (EB-NeRD's layout). `FileNotFoundError` naming the missing file."""
    folder = Path(folder)
    behaviors, history = folder / "behaviors.parquet", folder / "history.parquet"
    for path in (behaviors, history):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (an EB-NeRD split folder holds behaviors.parquet and history.parquet)")
    for articles in (folder / "articles.parquet", folder.parent / "articles.parquet"):
        if articles.is_file():
            return articles, behaviors, history
    raise FileNotFoundError(f"{folder}: no articles.parquet in the folder or its parent (EB-NeRD keeps it at the root)")


def _unspaced(char: str) -> bool:
    return unicodedata.name(char, "").startswith(_UNSPACED_SCRIPTS)


def _is_word_char(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char).startswith("M")  # a combining mark continues its word


def _at_boundary(title: str, start: int, end: int) -> bool:
    """Whether ``title[start:end]`` neither continues nor is continued by a word (in spaced scripts)."""
    if start > 0:
        before, first = title[start - 1], title[start]
        if _is_word_char(before) and _is_word_char(first) and not (_unspaced(before) or _unspaced(first)):
            return False
    if end < len(title):
        last, after = title[end - 1], title[end]
        if _is_word_char(last) and _is_word_char(after) and not (_unspaced(last) or _unspaced(after)):
            return False
    return True


def locate_entities(
    title: str, clusters: list[str] | None, groups: list[str] | None = None, stats: LoadStats | None = None
) -> list[dict[str, Any]]:
    """MIND-style entity annotations of `title`: each of `clusters` located by exact match (see the module docstring).

    Args:
        title: the article title.
        clusters: EB-NeRD's ``ner_clusters`` (entity strings); ``None`` or empty means none.
        groups: EB-NeRD's ``entity_groups``, aligned with `clusters` (the ``Type`` of each entity; ``""`` if absent).
        stats: where to count ``"ner_clusters_not_in_title"`` and ``"ner_mentions_inside_longer"``.

    Returns:
        One dict per cluster found (``Label``, ``Type``, ``WikidataId``: ``""``, ``Confidence``: 1.0,
        ``OccurrenceOffsets``, ``SurfaceForms``: the cluster once per offset), in order of first occurrence.

    Example:
        >>> [e["OccurrenceOffsets"] for e in locate_entities("Løkke møder Løkke i Danmark", ["Løkke", "Dan"])]
        [[0, 12]]
    """
    stats = LoadStats() if stats is None else stats
    if not clusters:
        return []
    types = {}
    for i, cluster in enumerate(clusters):
        if isinstance(cluster, str) and cluster.strip() and cluster not in types:
            types[cluster] = groups[i] if groups is not None and i < len(groups) and isinstance(groups[i], str) else ""
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, dict[str, Any]]] = []
    for cluster in sorted(types, key=lambda c: (-len(c), c)):  # longest first: "Lars Løkke" before "Løkke"
        offsets, inside = [], 0
        start = title.find(cluster)
        while start != -1:
            end = start + len(cluster)
            if _at_boundary(title, start, end):
                if any(s < end and start < e for s, e in taken):
                    inside += 1
                else:
                    offsets.append(start)
                    taken.append((start, end))
            start = title.find(cluster, start + 1)
        stats["ner_mentions_inside_longer"] += inside
        if not offsets:
            if not inside:
                stats["ner_clusters_not_in_title"] += 1
            continue
        entity = {"Label": cluster, "Type": types[cluster], "WikidataId": "", "Confidence": 1.0,
                  "OccurrenceOffsets": offsets, "SurfaceForms": [cluster] * len(offsets)}  # fmt: skip
        found.append((offsets[0], entity))
    return [entity for _, entity in sorted(found, key=lambda item: item[0])]


def read_ebnerd_articles(
    path: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None
) -> Dataset:
    """The news table of an EB-NeRD ``articles.parquet`` (columns in the module docstring)."""
    stats = LoadStats() if stats is None else stats
    bad_row = _BadRows(os.fspath(path), lenient, stats)
    table = read_parquet(path, _ARTICLE_COLUMNS, _ARTICLE_OPTIONAL, "EB-NeRD articles.parquet")
    has_sentiment = "sentiment_label" in table.column_names
    builder = NewsBuilder(bad_row, ("sentiment",) if has_sentiment else ())
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    empty = [None] * table.num_rows
    for i in range(table.num_rows):
        title = columns["title"][i]
        subcategories = columns.get("subcategory", empty)[i]
        clusters = columns.get("ner_clusters", empty)[i]
        if clusters is not None and not isinstance(clusters, list):
            bad_row(i + 1, f"ner_clusters is not a list: {clusters!r}")
            continue
        entities = locate_entities(title, clusters, columns.get("entity_groups", empty)[i], stats) if isinstance(title, str) else []
        builder.add(
            i + 1,
            columns["article_id"][i],
            title,
            category=columns.get("category_str", empty)[i],
            subcategory=str(subcategories[0]) if subcategories else "",
            abstract=columns.get("subtitle", empty)[i],
            url=columns.get("url", empty)[i],
            title_entities=json.dumps(entities, ensure_ascii=False),
            sentiment=columns.get("sentiment_label", empty)[i],
        )
    return builder.dataset(path, source=path)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def read_ebnerd_behaviors(
    behaviors_path: str | os.PathLike,
    history_path: str | os.PathLike,
    *,
    lenient: bool = False,
    stats: LoadStats | None = None,
) -> Dataset:
    """The behaviors table of an EB-NeRD split: ``behaviors.parquet`` joined with ``history.parquet`` on ``user_id``."""
    stats = LoadStats() if stats is None else stats
    history_table = read_parquet(history_path, _HISTORY_COLUMNS, (), "EB-NeRD history.parquet")
    history_bad = _BadRows(os.fspath(history_path), lenient, stats)
    histories: dict[Any, list[Any]] = {}
    for row, (user_id, articles) in enumerate(
        zip(history_table.column("user_id").to_pylist(), history_table.column("article_id_fixed").to_pylist()), start=1
    ):
        if user_id is None:
            history_bad(row, "null user_id")
        elif not isinstance(articles, list):
            history_bad(row, f"article_id_fixed is not a list: {articles!r}")
        elif user_id in histories:
            history_bad(row, f"user_id {user_id!r} has a second history row", "duplicate_history_users")
        else:
            histories[user_id] = articles

    table = read_parquet(behaviors_path, _BEHAVIOR_COLUMNS, _BEHAVIOR_OPTIONAL, "EB-NeRD behaviors.parquet")
    for name in ("article_ids_inview", "article_ids_clicked"):
        if name in table.column_names and not pa.types.is_list(table.schema.field(name).type) and not pa.types.is_large_list(table.schema.field(name).type):
            raise MINDFormatError(f"{os.fspath(behaviors_path)}: column {name!r} is {table.schema.field(name).type}, not a list")
    labelled = "article_ids_clicked" in table.column_names
    if not labelled:
        logger.info("%s: no article_ids_clicked column (EB-NeRD's test set): every candidate is unlabelled", behaviors_path)
    bad_row = _BadRows(os.fspath(behaviors_path), lenient, stats)
    builder = BehaviorsBuilder(bad_row)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for i in range(table.num_rows):
        if columns.get("is_beyond_accuracy", [False] * table.num_rows)[i]:
            stats["beyond_accuracy_impressions"] += 1
            continue
        user_id, inview = columns["user_id"][i], columns["article_ids_inview"][i]
        clicks = None
        if labelled:
            clicked = columns["article_ids_clicked"][i]
            if not isinstance(clicked, list) or not isinstance(inview, list):
                bad_row(i + 1, f"article_ids_clicked is not a list: {clicked!r}" if not isinstance(clicked, list)
                        else f"article_ids_inview is not a list: {inview!r}")  # fmt: skip
                continue
            clicked_set = set(clicked)
            clicks = [int(candidate in clicked_set) for candidate in inview]
            missing = len(clicked_set - set(inview))
        history = histories.get(user_id)
        if builder.add(i + 1, columns["impression_id"][i], user_id, _iso(columns["impression_time"][i]),
                       [] if history is None else history, inview, clicks):  # fmt: skip
            if history is None:
                stats["users_without_history"] += 1
            if labelled and missing:
                stats["clicks_not_in_view"] += missing
    return builder.dataset(behaviors_path, source=behaviors_path)


def read_ebnerd(
    folder: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None
) -> tuple[Dataset, Dataset]:
    """Read an EB-NeRD split folder (``train``, ``validation`` or ``test``) into ``(news, behaviors)``.

    Args:
        folder: holds ``behaviors.parquet`` and ``history.parquet``; ``articles.parquet`` is in it or its parent.
        lenient: skip and count bad rows instead of raising `MINDFormatError`.
        stats: where to count problems; when None a local `LoadStats` is logged at the end.
    """
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    articles, behaviors_path, history_path = ebnerd_files(folder)
    news = read_ebnerd_articles(articles, lenient=lenient, stats=stats)
    behaviors = read_ebnerd_behaviors(behaviors_path, history_path, lenient=lenient, stats=stats)
    if own_stats:
        stats.log(logger, f"read_ebnerd({folder})")
    return news, behaviors
