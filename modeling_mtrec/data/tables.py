"""The package's neutral news and impression tables, and its own two-table file format.

Every corpus reader (`mind`, `ebnerd`, `xmind`, `adressa`, and `read_tables` below) ends in the same two tables, the
ones `read_news` and `read_behaviors` produce for MIND, so the loaders downstream read every corpus unchanged:

* **news**: the 8 `NEWS_COLUMNS`, all strings: ``news_id``, ``category``, ``subcategory``, ``title``, ``abstract``,
  ``url``, ``title_entities`` and ``abstract_entities`` (MIND's JSON: a list of objects with ``Label``, ``Type``,
  ``WikidataId``, ``Confidence``, ``OccurrenceOffsets`` (code-point offsets into the title) and ``SurfaceForms``;
  ``"[]"`` when there is none), then the optional `EXTRA_NEWS_COLUMNS` a corpus has (``sentiment``: a label string
  such as ``"Positive"``, ``""`` when a news has none).
* **behaviors**: ``impression_id``, ``user_id``, ``time`` (strings), ``history`` (list of news ids, oldest first),
  ``candidates`` (list of news ids) and ``clicks`` (list of int8 aligned with ``candidates``: 1 clicked, 0 not,
  -1 for every candidate of an unlabelled impression).

The own format (`read_tables`, `write_tables`) is those two tables on disk, one folder per split:

* ``news.parquet`` or ``news.jsonl``: ``news_id`` and ``title`` required; ``category``, ``subcategory``,
  ``abstract``, ``url``, ``title_entities``, ``abstract_entities``, ``sentiment`` optional (``""`` / ``"[]"`` when
  absent or null). Entities are MIND's JSON string, or (convenient in JSON Lines) the same list of objects itself.
  Ids may be strings or integers (an integer id becomes its decimal string).
* ``behaviors.parquet`` or ``behaviors.jsonl``: ``impression_id``, ``user_id``, ``history``, ``candidates``
  required; ``time`` optional (``""``); ``clicks`` optional: a list of 0/1 aligned with ``candidates``, or absent /
  null / all -1 for an unlabelled impression (every click -1).

The rules are the MIND reader's: bad input raises `MINDFormatError` naming the file and the 1-based row (the line
of a JSON Lines file, the row of a Parquet file: ``f"{path}:{row}: ..."``), or under ``lenient=True`` the row is
skipped and counted in the `LoadStats`; a file-wide problem (missing file or column, a column of the wrong type, no
usable row) always raises. A repeated news id keeps its first row (``"duplicate_news_ids"``); a repeated impression id
is a bad row (``"duplicate_impression_ids"``). Nothing is dropped without a count. Columns (keys) the format does not
know are not read (a Parquet file's are logged once).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, Features, Value
from datasets.fingerprint import Hasher, generate_random_fingerprint
from datasets.table import InMemoryTable

from .lines import json_objects
from .mind import BEHAVIORS_FEATURES, NEWS_COLUMNS, MINDFormatError, id_problem, require_rows
from .stats import BadRows, LoadStats

logger = logging.getLogger(__name__)

__all__ = [
    "BehaviorsBuilder",
    "EXTRA_NEWS_COLUMNS",
    "behaviors_dataset",
    "NewsBuilder",
    "read_behaviors_table",
    "read_news_table",
    "read_parquet",
    "read_rows",
    "read_tables",
    "table_files",
    "write_tables",
]

EXTRA_NEWS_COLUMNS: tuple[str, ...] = ("sentiment",)
"""Optional news columns beyond MIND's 8, in this order when a corpus has them."""

_TEXT_DEFAULTS = {"category": "", "subcategory": "", "abstract": "", "url": "", "title_entities": "[]",
                  "abstract_entities": "[]", "sentiment": ""}  # fmt: skip
_NEWS_REQUIRED = ("news_id", "title")
_BEHAVIORS_REQUIRED = ("impression_id", "user_id", "history", "candidates")
_BEHAVIORS_OPTIONAL = ("time", "clicks")


def _fingerprint(names: Sequence[str], source: str | os.PathLike | None) -> str:
    """A fingerprint from the source file (path, size, modification time), as `read_news` derives one; random when
    the table was built from several files or in memory."""
    if source is None or not os.path.isfile(source):
        return generate_random_fingerprint()
    status = os.stat(source)
    return Hasher.hash([list(names), os.path.abspath(source), status.st_size, status.st_mtime_ns])


class NewsBuilder:
    """Collects news rows into the neutral news table; checks ids and keeps the first row of a repeated id.

    Args:
        bad_row: the `BadRows` of the file being read (raises, or counts a skip under ``lenient``).
        extra_columns: which of `EXTRA_NEWS_COLUMNS` this corpus has (e.g. ``("sentiment",)``).
    """

    def __init__(self, bad_row: BadRows, extra_columns: Sequence[str] = ()) -> None:
        unknown = [c for c in extra_columns if c not in EXTRA_NEWS_COLUMNS]
        if unknown:
            raise ValueError(f"unknown extra news columns {unknown}; known: {EXTRA_NEWS_COLUMNS}")
        self.bad_row = bad_row
        self.columns = tuple(NEWS_COLUMNS) + tuple(c for c in EXTRA_NEWS_COLUMNS if c in extra_columns)
        self.rows: dict[str, list[str]] = {name: [] for name in self.columns}
        self.seen: set[str] = set()
        self.counted_before = bad_row.stats.copy()  # so that an error lists this file's problems only

    def add(self, row: int, news_id: Any, title: Any, **fields: Any) -> bool:
        """Add one news (`fields`: any other column; missing or null ones get their default). Returns whether the row
        was kept (False: a bad row skipped under ``lenient``, or a repeated id, counted)."""
        news_id, problem = _id_or_problem(news_id, "news id")
        if problem:
            self.bad_row(row, problem)
            return False
        if not isinstance(title, str):
            self.bad_row(row, "null title" if title is None else f"title is not a string: {title!r}")
            return False
        values = {"news_id": news_id, "title": title}
        for name in self.columns:
            if name in values:
                continue
            value = fields.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                value = _TEXT_DEFAULTS[name]
            elif name.endswith("_entities") and isinstance(value, list):
                value = json.dumps(value, ensure_ascii=False)
            elif not isinstance(value, str):
                self.bad_row(row, f"{name} is not a string: {value!r}")
                return False
            values[name] = value
        if values["news_id"] in self.seen:
            self.bad_row.stats["duplicate_news_ids"] += 1
            return False
        self.seen.add(values["news_id"])
        for name in self.columns:
            self.rows[name].append(values[name])
        return True

    def dataset(self, path: str | os.PathLike, source: str | os.PathLike | None = None) -> Dataset:
        """The news `Dataset`; `MINDFormatError` naming `path` when no row is usable."""
        features = Features({name: Value("string") for name in self.columns})
        table = pa.Table.from_arrays(
            [pa.array(self.rows[name], type=pa.string()) for name in self.columns], schema=features.arrow_schema
        )
        news = Dataset(InMemoryTable(table), fingerprint=_fingerprint(self.columns, source))
        return require_rows(news, path, "news", dict(sorted((self.bad_row.stats - self.counted_before).items())))


class BehaviorsBuilder:
    """Collects impressions into the neutral behaviors table with the MIND reader's checks (ids without whitespace,
    a non-empty candidate list, clicks 0/1 aligned with the candidates or all unlabelled, a unique impression id)."""

    def __init__(self, bad_row: BadRows) -> None:
        self.bad_row = bad_row
        self.columns: dict[str, list[Any]] = {name: [] for name in BEHAVIORS_FEATURES}
        self.seen: dict[str, int] = {}  # impression id -> its row
        self.counted_before = bad_row.stats.copy()  # so that an error lists this file's problems only

    def add(
        self,
        row: int,
        impression_id: Any,
        user_id: Any,
        time: Any,
        history: Any,
        candidates: Any,
        clicks: Sequence[int] | None,
    ) -> bool:
        """Add one impression; `clicks` None marks it unlabelled (-1 for every candidate). Returns whether it was
        kept (False: a bad row, skipped and counted under ``lenient``)."""
        problem = self._problem(impression_id, user_id, time, history, candidates, clicks)
        if problem:
            self.bad_row(row, *problem)
            return False
        impression_id, user_id = str(impression_id), str(user_id)
        self.seen[impression_id] = row
        self.columns["impression_id"].append(impression_id)
        self.columns["user_id"].append(user_id)
        self.columns["time"].append("" if time is None else str(time))
        self.columns["history"].append([str(i) for i in history])
        self.columns["candidates"].append([str(i) for i in candidates])
        self.columns["clicks"].append([-1] * len(candidates) if clicks is None else [int(c) for c in clicks])
        return True

    def _problem(self, impression_id, user_id, time, history, candidates, clicks) -> tuple[str, str] | None:
        for value, what in ((impression_id, "impression id"), (user_id, "user id")):
            problem = _id_or_problem(value, what)[1]
            if problem:
                return problem, "malformed_rows_skipped"
        if time is not None and not isinstance(time, str):
            return f"time is not a string: {time!r}", "malformed_rows_skipped"
        for values, what in ((history, "history"), (candidates, "candidates")):
            if not isinstance(values, (list, tuple, np.ndarray)):
                return f"{what} is not a list: {values!r}", "malformed_rows_skipped"
            for value in values:
                problem = _id_or_problem(value, f"news id in {what}")[1]
                if problem:
                    return problem, "malformed_rows_skipped"
        if len(candidates) == 0:
            return "empty candidates list", "malformed_rows_skipped"
        if clicks is not None:
            if not isinstance(clicks, (list, tuple, np.ndarray)):
                return f"clicks is not a list: {clicks!r}", "malformed_rows_skipped"
            if len(clicks) != len(candidates):
                return (f"{len(clicks)} clicks for {len(candidates)} candidates", "malformed_rows_skipped")
            labels = set(clicks)
            if any(isinstance(c, bool) for c in clicks) or not (labels <= {0, 1} or labels == {-1}):
                bad = next(c for c in clicks if isinstance(c, bool) or c not in (0, 1))
                return (f"click label {bad!r} is not 0 or 1 (or -1 for every candidate of an unlabelled impression)",
                        "malformed_rows_skipped")
        first = self.seen.get(str(impression_id))
        if first is not None:
            return (
                f"impression id {str(impression_id)!r} repeats row {first}'s (each impression is evaluated and "
                "predicted once)",
                "duplicate_impression_ids",
            )
        return None

    def dataset(self, path: str | os.PathLike, source: str | os.PathLike | None = None) -> Dataset:
        """The behaviors `Dataset`; `MINDFormatError` naming `path` when no row is usable."""
        schema = BEHAVIORS_FEATURES.arrow_schema
        arrays = [pa.array(self.columns[field.name], type=field.type) for field in schema]
        behaviors = Dataset(
            InMemoryTable(pa.Table.from_arrays(arrays, schema=schema)),
            fingerprint=_fingerprint(list(BEHAVIORS_FEATURES), source),
        )
        problems = dict(sorted((self.bad_row.stats - self.counted_before).items()))
        return require_rows(behaviors, path, "behaviors", problems)


def behaviors_dataset(columns: dict[str, pa.Array], path: str | os.PathLike, problems: dict[str, int]) -> Dataset:
    """The behaviors `Dataset` of Arrow `columns` (named and typed as `BEHAVIORS_FEATURES`) built by a reader that
    checks whole columns; `MINDFormatError` naming `path` (and the `problems` counted in it) when no row is usable."""
    schema = BEHAVIORS_FEATURES.arrow_schema
    table = pa.Table.from_arrays([columns[field.name].cast(field.type) for field in schema], schema=schema)
    behaviors = Dataset(InMemoryTable(table), fingerprint=_fingerprint(list(BEHAVIORS_FEATURES), path))
    return require_rows(behaviors, path, "behaviors", problems)


def _id_or_problem(value: Any, what: str) -> tuple[str, str | None]:
    """``(id as a string, None)`` or ``("", why it cannot be used)``: an id is a string or an integer (`as_id`'s
    rule), not empty, without whitespace."""
    if value is None:
        return "", f"null {what}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value)), None
    if not isinstance(value, str):
        return "", f"{what} is neither a string nor an integer: {value!r}"
    problem = id_problem(value, what)
    return (str(value), None) if problem is None else ("", problem)


# ---------------------------------------------------------------------------------------------- column checks


def ids_problems(ids: pa.Array, what: str) -> dict[int, str]:
    """Rows whose id cannot be used: null, or (string ids) empty or holding whitespace."""
    problems = {int(i): f"null {what}" for i in np.flatnonzero(pc.is_null(ids).to_numpy(zero_copy_only=False))}
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        for i, value in enumerate(ids.to_pylist()):
            problem = None if value is None else id_problem(value, what)
            if problem:
                problems[i] = problem
    return problems


def list_problems(lists: pa.Array, column: str, what: str, allow_empty: bool) -> dict[int, str]:
    """Rows whose list is null, empty (unless `allow_empty`) or holds a null id."""
    problems: dict[int, str] = {}
    lengths = pc.list_value_length(lists)
    for i in np.flatnonzero(pc.is_null(lists).to_numpy(zero_copy_only=False)):
        problems[int(i)] = f"{column} is not a list: None"
    if not allow_empty:
        for i in np.flatnonzero(pc.equal(lengths, 0).fill_null(False).to_numpy(zero_copy_only=False)):
            problems.setdefault(int(i), f"empty {what} list")
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    for i in np.unique(parents[pc.is_null(flat).to_numpy(zero_copy_only=False)]):
        problems.setdefault(int(i), f"null news id in {what}")
    if pa.types.is_string(flat.type) or pa.types.is_large_string(flat.type):  # "" or whitespace inside an id
        odd = pc.invert(pc.fill_null(pc.utf8_is_alnum(flat), True)).to_numpy(zero_copy_only=False)
        values = flat.to_pylist()
        for position in np.flatnonzero(odd):
            problem = id_problem(values[position], f"news id in {what}")
            if problem:
                problems.setdefault(int(parents[position]), problem)
    return problems


def iso_times(column: pa.ChunkedArray) -> pa.Array:
    """``impression_time`` as ISO 8601 strings (to the second; ``""`` when null)."""
    column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        seconds = pc.cast(column, pa.timestamp("s", tz=column.type.tz), safe=False)
        column = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S" + ("%z" if column.type.tz else ""))
    return pc.fill_null(pc.cast(column, pa.string()), "")


def duplicate_problems(ids: pa.Array, rows: np.ndarray) -> dict[int, tuple[str, str]]:
    """Among `rows` (row indices into `ids`), those repeating an earlier row's id: ``{row: (problem, reason)}``."""
    values = ids.take(pa.array(rows, pa.int64())).to_numpy(zero_copy_only=False)
    problems: dict[int, tuple[str, str]] = {}
    if len(values):
        _, first, inverse = np.unique(values if values.dtype.kind in "iu" else values.astype(str), return_index=True,
                                      return_inverse=True)  # fmt: skip
        for position in np.flatnonzero(first[inverse] != np.arange(len(values))):
            row, first_row = rows[position], rows[first[inverse[position]]]
            problems[int(row)] = (
                f"impression id {str(values[position])!r} repeats row {first_row + 1}'s (each impression is evaluated "
                "and predicted once)",
                "duplicate_impression_ids",
            )
    return problems


# ---------------------------------------------------------------------------------------------- file reading


def read_rows(
    path: str | os.PathLike, required: Sequence[str], optional: Sequence[str], what: str
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any] | str]]]:
    """``(columns present, rows)`` of a Parquet or JSON Lines table; each row is ``(row number, {column: value})``,
    or ``(row number, problem)`` for a JSON line that cannot be parsed (the caller hands it to its `BadRows`).

    Raises `MINDFormatError` naming `path` when the file cannot be read as its format, or lacks a `required` column
    (in Parquet; in JSON Lines a row without one is a bad row). `what` names the table in messages.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        table = read_parquet(path, required, optional, what)
        return table.column_names, _parquet_rows(table)
    return [*required, *optional], _jsonl_rows(path, required)


def read_parquet(path: str | os.PathLike, required: Sequence[str], optional: Sequence[str], what: str) -> pa.Table:
    """The `required` and present `optional` columns of a Parquet file; `MINDFormatError` naming the file when it
    is not Parquet or lacks a required column. Columns neither required nor optional are logged once and left out."""
    path = os.fspath(path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise MINDFormatError(f"{path}: not a readable Parquet file ({error})") from None
    missing = [name for name in required if name not in schema.names]
    if missing:
        raise MINDFormatError(f"{path}: missing column(s) {missing} ({what} needs {list(required)}; found {schema.names})")
    ignored = [name for name in schema.names if name not in required and name not in optional]
    if ignored:
        logger.info("%s: columns %s are not read", path, ignored)
    columns = [name for name in schema.names if name in required or name in optional]
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as error:
        raise MINDFormatError(f"{path}: not a readable Parquet file ({error})") from None


def _parquet_rows(table: pa.Table) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a Parquet table as dicts, numbered from 1 (the file's row order)."""
    number = 0
    for batch in table.to_batches(max_chunksize=65_536):
        columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        for i in range(batch.num_rows):
            number += 1
            yield number, {name: values[i] for name, values in columns.items()}


def _jsonl_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Rows of a JSON Lines file: an object per non-empty line (`lines.json_objects`) holding the `required` fields."""
    for lineno, value in json_objects(path):
        if isinstance(value, dict):
            missing = [name for name in required if name not in value]
            if missing:
                value = f"missing field(s) {missing}"
        yield lineno, value


def table_files(folder: str | os.PathLike) -> tuple[Path, Path]:
    """``(news file, behaviors file)`` of an own-format split folder: ``news.parquet`` or ``news.jsonl`` and
    ``behaviors.parquet`` or ``behaviors.jsonl``. `FileNotFoundError` naming what is missing."""
    folder = Path(folder)
    found = []
    for name in ("news", "behaviors"):
        candidates = [folder / f"{name}.parquet", folder / f"{name}.jsonl"]
        present = [path for path in candidates if path.is_file()]
        if not present:
            raise FileNotFoundError(f"{folder}: no {name}.parquet or {name}.jsonl (the package's own table format)")
        if len(present) > 1:
            raise ValueError(f"{folder}: both {present[0].name} and {present[1].name}; keep one")
        found.append(present[0])
    return found[0], found[1]


def read_tables(
    folder: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None
) -> tuple[Dataset, Dataset]:
    """Read an own-format split folder (see the module docstring) into ``(news, behaviors)``.

    Args:
        folder: holds ``news.{parquet,jsonl}`` and ``behaviors.{parquet,jsonl}``.
        lenient: skip and count bad rows instead of raising `MINDFormatError`.
        stats: where to count problems; when None a local `LoadStats` is logged at the end.
    """
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    news_path, behaviors_path = table_files(folder)
    news = read_news_table(news_path, lenient=lenient, stats=stats)
    behaviors = read_behaviors_table(behaviors_path, lenient=lenient, stats=stats)
    if own_stats:
        stats.log(logger, f"read_tables({folder})")
    return news, behaviors


def read_news_table(path: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None) -> Dataset:
    """The news table of an own-format ``news.parquet`` / ``news.jsonl`` file."""
    stats = LoadStats() if stats is None else stats
    bad_row = BadRows(os.fspath(path), lenient, stats, error=MINDFormatError, logger=logger)
    optional = [name for name in (*NEWS_COLUMNS, *EXTRA_NEWS_COLUMNS) if name not in _NEWS_REQUIRED]
    columns, rows = read_rows(path, _NEWS_REQUIRED, optional, "news")
    rows = list(rows)
    if not str(path).endswith(".parquet"):  # JSON Lines: the extra columns are those some row has
        columns = {name for _, value in rows if isinstance(value, dict) for name in value}
    builder = NewsBuilder(bad_row, [name for name in EXTRA_NEWS_COLUMNS if name in columns])
    for row, value in rows:
        if isinstance(value, str):
            bad_row(row, value)
            continue
        builder.add(row, **{name: v for name, v in value.items() if name in builder.columns})
    return builder.dataset(path, source=path)


def read_behaviors_table(
    path: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None
) -> Dataset:
    """The behaviors table of an own-format ``behaviors.parquet`` / ``behaviors.jsonl`` file."""
    stats = LoadStats() if stats is None else stats
    if str(path).endswith(".parquet"):
        return _read_behaviors_parquet(path, lenient, stats)
    bad_row = BadRows(os.fspath(path), lenient, stats, error=MINDFormatError, logger=logger)
    _, rows = read_rows(path, _BEHAVIORS_REQUIRED, _BEHAVIORS_OPTIONAL, "behaviors")
    builder = BehaviorsBuilder(bad_row)
    for row, value in rows:
        if isinstance(value, str):
            bad_row(row, value)
            continue
        builder.add(
            row,
            value["impression_id"],
            value["user_id"],
            value.get("time"),
            value["history"],
            value["candidates"],
            value.get("clicks"),
        )
    return builder.dataset(path, source=path)


def _read_behaviors_parquet(path: str | os.PathLike, lenient: bool, stats: LoadStats) -> Dataset:
    """`read_behaviors_table` of a Parquet file, checked and built on Arrow columns (a converted EB-NeRD-large holds
    12M impressions); the checks and messages are `BehaviorsBuilder`'s."""
    table = read_parquet(path, _BEHAVIORS_REQUIRED, _BEHAVIORS_OPTIONAL, "behaviors")
    for name in ("history", "candidates", "clicks"):
        if name in table.column_names:
            kind = table.schema.field(name).type
            if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and not pa.types.is_null(kind):
                raise MINDFormatError(f"{os.fspath(path)}: column {name!r} is {kind}, not a list")
    bad_row = BadRows(os.fspath(path), lenient, stats, error=MINDFormatError, logger=logger)
    counted_before = stats.copy()
    n = table.num_rows
    impression_ids = table.column("impression_id").combine_chunks()
    user_ids = table.column("user_id").combine_chunks()
    history = table.column("history").combine_chunks()
    candidates = table.column("candidates").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(candidates), 0).to_numpy()
    problems: dict[int, tuple[str, str]] = {}
    found = [
        ids_problems(impression_ids, "impression id"),
        ids_problems(user_ids, "user id"),
        list_problems(history, "history", "history", allow_empty=True),
        list_problems(candidates, "candidates", "candidates", allow_empty=False),
    ]
    has_clicks = "clicks" in table.column_names and not pa.types.is_null(table.schema.field("clicks").type)
    if has_clicks:
        clicks = table.column("clicks").combine_chunks()
        labelled = pc.invert(pc.is_null(clicks)).to_numpy(zero_copy_only=False)
        click_lengths = pc.fill_null(pc.list_value_length(clicks), 0).to_numpy()
        flat = pc.list_flatten(clicks)
        parents = pc.list_parent_indices(clicks).to_numpy()
        values = pc.fill_null(flat, 99).to_numpy(zero_copy_only=False).astype(np.int64)  # null: not a label
        negative = np.bincount(parents, weights=values == -1, minlength=n)
        click_problems: dict[int, str] = {}
        for row in np.flatnonzero(labelled & (click_lengths != lengths)):
            click_problems[int(row)] = f"{click_lengths[row]} clicks for {lengths[row]} candidates"
        mixed = (negative > 0) & (negative < click_lengths)
        bad_value = ~np.isin(values, (0, 1, -1)) | mixed[parents]
        for position in np.flatnonzero(bad_value):
            row = int(parents[position])
            label = None if values[position] == 99 else int(values[position])
            click_problems.setdefault(
                row, f"click label {label!r} is not 0 or 1 (or -1 for every candidate of an unlabelled impression)"
            )
        found.append(click_problems)
    for rows in found:
        for row, problem in rows.items():
            problems.setdefault(row, (problem, "malformed_rows_skipped"))
    problems.update(duplicate_problems(impression_ids, np.flatnonzero(~np.isin(np.arange(n), list(problems)))))
    for row in sorted(problems):
        bad_row(row + 1, *problems[row])
    keep_mask = np.ones(n, dtype=bool)
    keep_mask[list(problems)] = False
    keep = pa.array(keep_mask)

    kept_candidates = candidates.filter(keep)
    counts = lengths[keep_mask]
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    labels = np.full(int(offsets[-1]), -1, dtype=np.int8)  # (num_candidates,): -1 unless the row has clicks
    if has_clicks:
        row_of = np.repeat(np.arange(len(counts)), counts)
        given = labelled[keep_mask][row_of]
        labels[given] = values[keep_mask[parents]].astype(np.int8)
    times = (iso_times(table.column("time")) if "time" in table.column_names
             else pa.array([""] * n, pa.string()))  # fmt: skip
    columns = {
        "impression_id": pc.cast(impression_ids.filter(keep), pa.string()),
        "user_id": pc.cast(user_ids.filter(keep), pa.string()),
        "time": times.filter(keep),
        "history": history.filter(keep).cast(pa.list_(pa.string())),
        "candidates": pa.ListArray.from_arrays(pa.array(offsets), pc.list_flatten(kept_candidates).cast(pa.string())),
        "clicks": pa.ListArray.from_arrays(pa.array(offsets), pa.array(labels, pa.int8())),
    }
    return behaviors_dataset(columns, path, dict(sorted((stats - counted_before).items())))


# ---------------------------------------------------------------------------------------------- file writing


def write_tables(
    news: Dataset, behaviors: Dataset, folder: str | os.PathLike, file_format: str = "parquet"
) -> tuple[Path, Path]:
    """Write a split's neutral tables as ``news.<ext>`` and ``behaviors.<ext>`` in `folder` (created), in the own
    format, so `read_tables` reads back the same tables. An unlabelled impression (every click -1) is written with
    null ``clicks``. Returns the two paths.

    Args:
        file_format: ``"parquet"`` (for a Hub dataset repository) or ``"jsonl"``.
    """
    if file_format not in ("parquet", "jsonl"):
        raise ValueError(f"file_format must be 'parquet' or 'jsonl', got {file_format!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    news_table = news.data.table
    behaviors_table = behaviors.data.table
    clicks = behaviors_table.column("clicks").to_pylist()
    clicks = [None if values and all(c == -1 for c in values) else values for values in clicks]
    behaviors_table = behaviors_table.set_column(
        behaviors_table.schema.get_field_index("clicks"), "clicks", pa.array(clicks, type=pa.list_(pa.int8()))
    )
    paths = folder / f"news.{file_format}", folder / f"behaviors.{file_format}"
    for table, path in zip((news_table, behaviors_table), paths):
        table = table.replace_schema_metadata(None)
        if file_format == "parquet":
            pq.write_table(table, path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                for row in table.to_pylist():
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths
