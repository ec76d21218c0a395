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
beyond-accuracy leaderboard, all with impression id 0; they are not in the behaviors table, which evaluation and
training read, but `read_ebnerd_with_beyond_accuracy` returns them for the prediction file). Bad rows follow the
MIND reader's rules (`modeling_mtrec.data.tables`): `MINDFormatError` naming the file and the 1-based row, or a
counted skip under ``lenient``; a missing file or column always raises.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .mind import MINDFormatError
from .stats import BadRows, LoadStats
from .tables import (
    NewsBuilder,
    behaviors_dataset,
    duplicate_problems,
    ids_problems,
    iso_times,
    list_problems,
    read_parquet,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ebnerd_files",
    "locate_entities",
    "read_ebnerd",
    "read_ebnerd_articles",
    "read_ebnerd_behaviors",
    "read_ebnerd_with_beyond_accuracy",
]

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
    bad_row = BadRows(os.fspath(path), lenient, stats, error=MINDFormatError, logger=logger)
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


def _history_lists(history_path: str | os.PathLike, lenient: bool, stats: LoadStats) -> tuple[dict[Any, int], pa.ListArray]:
    """``({user_id: row}, histories)``: each usable row of ``history.parquet`` and its ``article_id_fixed`` as a list of
    string ids; the last list is empty (where users without a history row point)."""
    table = read_parquet(history_path, _HISTORY_COLUMNS, (), "EB-NeRD history.parquet")
    bad_row = BadRows(os.fspath(history_path), lenient, stats, error=MINDFormatError, logger=logger)
    articles = table.column("article_id_fixed").combine_chunks()
    if not (pa.types.is_list(articles.type) or pa.types.is_large_list(articles.type)):
        raise MINDFormatError(f"{os.fspath(history_path)}: column 'article_id_fixed' is {articles.type}, not a list")
    null_ids = np.zeros(len(articles), dtype=bool)
    flat = pc.list_flatten(articles)
    null_ids[pc.list_parent_indices(articles).to_numpy()[pc.is_null(flat).to_numpy(zero_copy_only=False)]] = True
    rows: dict[Any, int] = {}
    keep = []
    for row, (user_id, is_null, has_null_id) in enumerate(
        zip(table.column("user_id").to_pylist(), pc.is_null(articles).to_numpy(zero_copy_only=False), null_ids)
    ):
        if user_id is None:
            bad_row(row + 1, "null user_id")
        elif is_null:
            bad_row(row + 1, "article_id_fixed is null")
        elif has_null_id:
            bad_row(row + 1, "null news id in article_id_fixed")
        elif user_id in rows:
            bad_row(row + 1, f"user_id {user_id!r} has a second history row", "duplicate_history_users")
        else:
            rows[user_id] = len(keep)
            keep.append(row)
    histories = pc.cast(articles.take(pa.array(keep, pa.int64())), pa.list_(pa.string()))
    empty = pa.array([[]], pa.list_(pa.string()))
    return rows, pa.concat_arrays([histories, empty])


def read_ebnerd_behaviors(
    behaviors_path: str | os.PathLike,
    history_path: str | os.PathLike,
    *,
    lenient: bool = False,
    stats: LoadStats | None = None,
) -> Dataset:
    """The behaviors table of an EB-NeRD split: ``behaviors.parquet`` joined with ``history.parquet`` on ``user_id``.

    The test set's ``is_beyond_accuracy`` rows are counted and not in it (`read_ebnerd_with_beyond_accuracy` reads
    them). The work runs on Arrow columns (EB-NeRD-large holds 12M impressions); python only visits the bad rows and
    the user ids.
    """
    return _read_behaviors(behaviors_path, history_path, lenient, LoadStats() if stats is None else stats, False)[0]


def _read_behaviors(
    behaviors_path: str | os.PathLike,
    history_path: str | os.PathLike,
    lenient: bool,
    stats: LoadStats,
    with_beyond_accuracy: bool,
) -> tuple[Dataset, Dataset | None]:
    """(behaviors table, beyond-accuracy table or None): `read_ebnerd_behaviors`'s table and, with
    `with_beyond_accuracy` and where the file has such rows, the ``is_beyond_accuracy`` rows as a table of the same
    columns, in file order (each with its impression id, 0 in the challenge's file)."""
    history_rows, histories = _history_lists(history_path, lenient, stats)
    path = os.fspath(behaviors_path)
    table = read_parquet(behaviors_path, _BEHAVIOR_COLUMNS, _BEHAVIOR_OPTIONAL, "EB-NeRD behaviors.parquet")
    for name in ("article_ids_inview", "article_ids_clicked"):
        if name in table.column_names and not (pa.types.is_list(table.schema.field(name).type)
                                               or pa.types.is_large_list(table.schema.field(name).type)):  # fmt: skip
            raise MINDFormatError(f"{path}: column {name!r} is {table.schema.field(name).type}, not a list")
    labelled = "article_ids_clicked" in table.column_names
    if not labelled:
        logger.info("%s: no article_ids_clicked column (EB-NeRD's test set): every candidate is unlabelled", path)
    bad_row = BadRows(path, lenient, stats, error=MINDFormatError, logger=logger)
    counted_before = stats.copy()
    n = table.num_rows
    impression_ids = table.column("impression_id").combine_chunks()
    user_ids = table.column("user_id").combine_chunks()
    inview = table.column("article_ids_inview").combine_chunks()
    clicked = table.column("article_ids_clicked").combine_chunks() if labelled else None
    beyond = np.zeros(n, dtype=bool)
    if "is_beyond_accuracy" in table.column_names:
        beyond = pc.fill_null(table.column("is_beyond_accuracy"), False).to_numpy()
    if beyond.any():
        stats["beyond_accuracy_impressions"] += int(beyond.sum())
    read_beyond = with_beyond_accuracy and bool(beyond.any())
    # The rows checked: the ordinary ones, and the beyond-accuracy ones only when they are read.
    checked = ~beyond | read_beyond

    # The first problem of each row, found column by column, reported in row order (a strict read names the first).
    problems: dict[int, tuple[str, str]] = {}
    found = [
        ids_problems(impression_ids, "impression id"),
        ids_problems(user_ids, "user id"),
        list_problems(inview, "article_ids_inview", "candidates", allow_empty=False),
    ]
    if labelled:
        found.append(list_problems(clicked, "article_ids_clicked", "clicks", allow_empty=True))
    for rows in found:
        for row, problem in rows.items():
            if checked[row]:
                problems.setdefault(row, (problem, "malformed_rows_skipped"))
    # A repeated impression id among the other rows: the first row keeps it. The beyond-accuracy rows share theirs.
    rest = np.flatnonzero(~beyond & ~np.isin(np.arange(n), list(problems)))
    problems.update(duplicate_problems(impression_ids, rest))
    for row in sorted(problems):
        bad_row(row + 1, *problems[row])
    usable = np.ones(n, dtype=bool)
    usable[list(problems)] = False

    def behaviors_table(keep_mask: np.ndarray) -> Dataset:
        keep = pa.array(keep_mask)
        kept_users = user_ids.filter(keep)
        empty_row = len(histories) - 1
        history_index = [history_rows.get(user, empty_row) for user in kept_users.to_pylist()]
        without_history = sum(index == empty_row for index in history_index)
        if without_history:
            stats["users_without_history"] += without_history
        candidates = inview.filter(keep)
        flat = pc.list_flatten(candidates)
        counts = pc.list_value_length(candidates).to_numpy()
        if labelled:
            kept_clicks = clicked.filter(keep)
            # Membership of each candidate in its row's clicked list, on (row, id) keys: ids coded against one value set.
            clicked_flat = pc.list_flatten(kept_clicks)
            values = pc.unique(pa.concat_arrays([flat.cast(pa.string()), clicked_flat.cast(pa.string())]))
            view_keys = pc.list_parent_indices(candidates).to_numpy().astype(np.int64) << 32 | pc.index_in(
                flat.cast(pa.string()), value_set=values).to_numpy().astype(np.int64)  # fmt: skip
            click_keys = np.unique(pc.list_parent_indices(kept_clicks).to_numpy().astype(np.int64) << 32 | pc.index_in(
                clicked_flat.cast(pa.string()), value_set=values).to_numpy().astype(np.int64))  # fmt: skip
            clicks = np.isin(view_keys, click_keys).astype(np.int8)
            not_in_view = int((~np.isin(click_keys, view_keys)).sum())
            if not_in_view:
                stats["clicks_not_in_view"] += not_in_view
        else:
            clicks = np.full(len(flat), -1, dtype=np.int8)
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        columns = {
            "impression_id": pc.cast(impression_ids.filter(keep), pa.string()),
            "user_id": pc.cast(kept_users, pa.string()),
            "time": iso_times(table.column("impression_time")).filter(keep),
            "history": histories.take(pa.array(history_index, pa.int64())),
            "candidates": pa.ListArray.from_arrays(pa.array(offsets), flat.cast(pa.string())),
            "clicks": pa.ListArray.from_arrays(pa.array(offsets), pa.array(clicks, pa.int8())),
        }
        problems_here = dict(sorted((stats - counted_before).items()))
        return behaviors_dataset(columns, behaviors_path, problems_here)

    behaviors = behaviors_table(usable & ~beyond)
    return behaviors, (behaviors_table(usable & beyond) if read_beyond else None)


def read_ebnerd(
    folder: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None
) -> tuple[Dataset, Dataset]:
    """Read an EB-NeRD split folder (``train``, ``validation`` or ``test``) into ``(news, behaviors)``.

    Args:
        folder: holds ``behaviors.parquet`` and ``history.parquet``; ``articles.parquet`` is in it or its parent.
        lenient: skip and count bad rows instead of raising `MINDFormatError`.
        stats: where to count problems; when None a local `LoadStats` is logged at the end.
    """
    return _read_split(folder, lenient, stats, False)[:2]


def read_ebnerd_with_beyond_accuracy(
    folder: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None
) -> tuple[Dataset, Dataset, Dataset | None]:
    """`read_ebnerd`, plus the test set's ``is_beyond_accuracy`` rows as a third table: the behaviors columns, one row
    per such row in file order, each with its impression id (0 in the challenge's file); None when the split has
    none. RecSys Challenge 2024's prediction file ranks them after the other impressions
    (`modeling_mtrec.evaluation.leaderboard.write_mind_predictions`). They are checked as the other rows are (a bad
    one raises naming its row, or is skipped and counted under `lenient`), except that they share one id.
    """
    return _read_split(folder, lenient, stats, True)


def _read_split(
    folder: str | os.PathLike, lenient: bool, stats: LoadStats | None, with_beyond_accuracy: bool
) -> tuple[Dataset, Dataset, Dataset | None]:
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    articles, behaviors_path, history_path = ebnerd_files(folder)
    news = read_ebnerd_articles(articles, lenient=lenient, stats=stats)
    behaviors, beyond = _read_behaviors(behaviors_path, history_path, lenient, stats, with_beyond_accuracy)
    if own_stats:
        stats.log(logger, f"read_ebnerd({folder})")
    return news, behaviors, beyond
