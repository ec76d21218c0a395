"""Readers for the MIND news-recommendation format.

MIND (Wu et al., ACL 2020) ships each split as a folder with two tab-separated files without a header:

* ``news.tsv`` (8 columns): news_id, category, subcategory, title, abstract, url, title_entities,
  abstract_entities;
* ``behaviors.tsv`` (5 columns): impression_id, user_id, time, history (space-separated news ids, oldest
  first, may be empty), impressions (space-separated ``N123-1`` / ``N456-0``; the test split has no label).

The files are parsed with plain ``str.split("\\t")``, not the `csv` module: MIND titles contain unbalanced
double quotes that a CSV reader would treat as quoting and silently merge rows.

Bad input raises `MINDFormatError` naming the file and the 1-based line; with ``lenient=True`` the row is
skipped instead, counted in the `LoadStats` and logged. Problems that are part of real MIND (history ids
missing from the split's news file, impressions that lose their only click) are never errors: they are
dropped and counted by the sample builders (`modeling_mtrec.data.samples`), and `load_mind` logs the totals once.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value
from datasets.fingerprint import Hasher, generate_random_fingerprint
from datasets.table import InMemoryTable

from .stats import LoadStats

logger = logging.getLogger(__name__)

__all__ = [
    "BEHAVIORS_COLUMNS",
    "EntityAnnotationError",
    "MINDFormatError",
    "NEWS_COLUMNS",
    "parse_title_entities",
    "read_behaviors",
    "read_news",
    "split_files",
    "title_entity_ids",
]

NEWS_COLUMNS: tuple[str, ...] = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
BEHAVIORS_COLUMNS: tuple[str, ...] = ("impression_id", "user_id", "time", "history", "impressions")
_NEWS_FEATURES = Features({name: Value("string") for name in NEWS_COLUMNS})
_BEHAVIORS_FEATURES = Features(
    {
        "impression_id": Value("string"),
        "user_id": Value("string"),
        "time": Value("string"),
        "history": List(Value("string")),
        "candidates": List(Value("string")),
        "clicks": List(Value("int8")),
    }
)

_CHUNK_ROWS = 100_000  # behaviour lines held as python strings, or impressions per Arrow batch
_MAX_ROW_WARNINGS = 10  # per file: enough to diagnose, few enough not to flood the log


class MINDFormatError(ValueError):
    """A MIND file that does not follow the format; the message starts with ``f"{path}:{lineno}: "``."""


class EntityAnnotationError(ValueError):
    """A ``title_entities`` annotation that cannot be used; ``reason`` is the `LoadStats` key to count it under.

    ``reason`` is ``"broken_entity_json"`` (not JSON, or not a list of entity dicts with integer
    ``OccurrenceOffsets`` and string ``SurfaceForms``) or ``"entity_offset_mismatch"`` (an offset at which none
    of the entity's surface forms sits in the title).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_title_entities(title_entities: str) -> list[Any]:
    """The annotations of a ``title_entities`` (or ``abstract_entities``) column: a JSON list, one entry per
    entity (``Label``, ``Type``, ``WikidataId``, ``Confidence``, ``OccurrenceOffsets``, ``SurfaceForms``).

    An empty or blank column means no entity. The entries are not checked here: each user checks what it reads.

    Raises:
        EntityAnnotationError: ``reason="broken_entity_json"`` when the column is not JSON or not a JSON list.
    """
    if not title_entities or not title_entities.strip():
        return []
    try:
        entities = json.loads(title_entities)
    except (json.JSONDecodeError, TypeError) as error:
        raise EntityAnnotationError("broken_entity_json", f"title_entities is not valid JSON: {error}") from None
    if not isinstance(entities, list):
        raise EntityAnnotationError("broken_entity_json", "title_entities is not a JSON list")
    return entities


def title_entity_ids(title_entities: str) -> list[str]:
    """The distinct WikidataIds of a ``title_entities`` column, in order; entries that are not objects or have no
    id are skipped. Raises `EntityAnnotationError` as `parse_title_entities`."""
    ids = [entity.get("WikidataId") for entity in parse_title_entities(title_entities) if isinstance(entity, dict)]
    return list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while parsing.

    Parsing allocates millions of small lists and tuples of strings, which cannot form reference cycles; with
    the collector on, its generational scans walk them again and again, which doubled the loading time of a
    MIND-large-sized file. The previous state is restored afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _BadRows:
    """Raises on a bad row, or with ``lenient=True`` counts it, warns (the first few) and lets the caller skip."""

    def __init__(self, path: str, lenient: bool, stats: LoadStats) -> None:
        self.path = path
        self.lenient = lenient
        self.stats = stats
        self.skipped = 0

    def __call__(self, lineno: int, problem: str) -> None:
        message = f"{self.path}:{lineno}: {problem}"
        if not self.lenient:
            raise MINDFormatError(message)
        self.stats["malformed_rows_skipped"] += 1
        self.skipped += 1
        if self.skipped <= _MAX_ROW_WARNINGS:
            logger.warning("skipping malformed row: %s", message)
        if self.skipped == _MAX_ROW_WARNINGS:
            logger.warning("%s: further malformed rows are skipped and counted, but not logged", self.path)


def _table(features: Features, columns: list[Any]) -> pa.Table:
    """An Arrow table with `features` (kept in the schema's metadata, so `Dataset` restores them)."""
    schema = features.arrow_schema
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _dataset(tables: list[pa.Table], source: str | None = None) -> Dataset:
    """A `Dataset` over `tables`, built from Arrow directly.

    `Dataset.from_dict(..., features=...)` encodes every value in python, which took longer than parsing the
    file, and hashing the table for a fingerprint took a tenth as long again; the fingerprint is therefore
    derived from the `source` file (path, size, modification time) or, for derived tables, random.
    """
    if source is None:
        fingerprint = generate_random_fingerprint()
    else:
        status = os.stat(source)
        identity = [tables[0].schema.names, os.path.abspath(source), status.st_size, status.st_mtime_ns]
        fingerprint = Hasher.hash(identity)
    return Dataset(InMemoryTable(pa.concat_tables(tables)), fingerprint=fingerprint)


def _iter_fields(
    path: str, num_columns: int, file_kind: str, bad_row: _BadRows
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(lineno, fields)`` for every row of a tab-separated file with `num_columns` columns.

    The file is read as bytes and split on ``\\n`` only (a stray ``\\r`` inside a title stays part of it;
    text mode would split there), then only the line ending (``\\n`` or ``\\r\\n``) is removed. Fully empty
    lines carry no data and are skipped silently; anything else that does not split into `num_columns` fields
    goes to `bad_row`.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad_row(lineno, f"not valid UTF-8 ({err.reason} at byte {err.start})")
                continue
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]  # a BOM written by some editors
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != num_columns:
                bad_row(
                    lineno,
                    f"expected {num_columns} tab-separated columns (MIND {file_kind}), found {len(fields)}",
                )
                continue
            yield lineno, fields


def read_news(
    path: str | os.PathLike[str], *, lenient: bool = False, stats: LoadStats | None = None
) -> Dataset:
    """Read a MIND ``news.tsv`` into a `Dataset` with the 8 `NEWS_COLUMNS`, all strings, in file order.

    A duplicate news id keeps its first occurrence and is counted under ``"duplicate_news_ids"``: MIND's own
    train/dev news files repeat no id, but the same news appears in several splits, so files concatenated
    across splits do; the first row wins so that row numbers of earlier news never move.

    Args:
        path: the ``news.tsv`` file.
        lenient: skip (and count under ``"malformed_rows_skipped"``) rows that do not have 8 columns, have an
            empty news id or are not UTF-8, instead of raising `MINDFormatError`.
        stats: where to count problems; when ``None`` a local `LoadStats` is used and logged at the end.
    """
    path = os.fspath(path)
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    bad_row = _BadRows(path, lenient, stats)
    rows: list[list[str]] = []
    seen: set[str] = set()
    with _gc_paused():
        for lineno, fields in _iter_fields(path, len(NEWS_COLUMNS), "news.tsv", bad_row):
            news_id = fields[0]
            if not news_id:
                bad_row(lineno, "empty news id")
                continue
            if news_id in seen:
                stats["duplicate_news_ids"] += 1
                continue
            seen.add(news_id)
            rows.append(fields)
        columns = list(zip(*rows, strict=True)) or [[] for _ in NEWS_COLUMNS]
        news = _dataset([_table(_NEWS_FEATURES, columns)], source=path)
    if own_stats:
        stats.log(logger, f"read_news({path})")
    return news


# Impression columns are validated with RE2 in Arrow, one call per chunk. Whitespace is ASCII whitespace, as in
# `pyarrow.compute.ascii_split_whitespace`, which splits them.
_WS = r"[\t\n\v\f\r ]"
_ID = r"[^\t\n\v\f\r -]+"
_LABELLED_IMPRESSIONS = rf"^{_WS}*{_ID}-[01](?:{_WS}+{_ID}-[01])*{_WS}*$"
_UNLABELLED_IMPRESSIONS = rf"^{_WS}*{_ID}(?:{_WS}+{_ID})*{_WS}*$"


def _impressions_problem(field: str) -> str:
    """Describe why an impressions column matches neither accepted form (only called for bad rows)."""
    tokens = field.split()
    if not tokens:
        return "empty impressions column"
    for token in tokens:
        news_id = token[:-2] if token.endswith(("-0", "-1")) else token
        if not news_id or "-" in news_id:
            return (
                f"malformed impression token {token!r} (expected NEWSID-1, NEWSID-0, or a bare NEWSID in "
                "MIND's unlabelled test split)"
            )
    return "impressions column mixes labelled (NEWSID-0/1) and unlabelled (NEWSID) candidates"


def _list_array(counts: np.ndarray, values: pa.Array | np.ndarray) -> pa.ListArray:
    """A list array whose i-th list holds the next ``counts[i]`` of `values`."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets), values if isinstance(values, pa.Array) else pa.array(values)
    )


def _split_ids(strings: pa.Array) -> pa.ListArray:
    """Ids separated by runs of ASCII whitespace, like ``str.split()``: no empty ids, ``""`` gives ``[]``."""
    split = pc.ascii_split_whitespace(strings)
    tokens = pc.list_flatten(split)
    parents = pc.list_parent_indices(split).to_numpy()
    nonempty = pc.not_equal(tokens, "")  # Arrow keeps "" for leading / trailing whitespace and empty strings
    counts = np.bincount(parents[nonempty.to_numpy(zero_copy_only=False)], minlength=len(strings))
    return _list_array(counts, tokens.filter(nonempty))


def _behaviors_table(raw: list[tuple[int, str, str, str, str, str]], bad_row: _BadRows) -> pa.Table:
    """Turn raw ``(lineno, impression_id, user_id, time, history, impressions)`` rows into behaviour columns.

    The per-token work (splitting, checking and stripping ``-0`` / ``-1``) runs in Arrow: MIND-large's
    behaviors.tsv has ~80M impression tokens, too many for a python loop.
    """
    linenos, impression_ids, user_ids, times, histories, impressions = (
        list(column) for column in (zip(*raw, strict=True) if raw else [()] * 6)
    )
    impressions_array = pa.array(impressions, type=pa.string())
    labelled = pc.match_substring_regex(impressions_array, _LABELLED_IMPRESSIONS).to_numpy(
        zero_copy_only=False
    )
    unlabelled = pc.match_substring_regex(impressions_array, _UNLABELLED_IMPRESSIONS).to_numpy(
        zero_copy_only=False
    )
    valid = labelled | unlabelled
    for i in np.flatnonzero(~valid):  # raises on the first bad row unless lenient
        bad_row(linenos[i], _impressions_problem(impressions[i]))
    keep = pa.array(valid)

    tokens = _split_ids(impressions_array.filter(keep))
    flat = pc.list_flatten(tokens)
    token_labelled = labelled[valid][pc.list_parent_indices(tokens).to_numpy()]  # (num_tokens,)
    ends_with_one = pc.ends_with(flat, "-1").to_numpy(zero_copy_only=False)
    clicks = np.where(token_labelled, ends_with_one, -1).astype(np.int8)  # 1 / 0, -1 when unlabelled
    candidates = pc.if_else(pa.array(token_labelled), pc.utf8_slice_codeunits(flat, 0, -2), flat)
    counts = pc.list_value_length(tokens).to_numpy()
    columns = [
        pa.array(impression_ids, type=pa.string()).filter(keep),
        pa.array(user_ids, type=pa.string()).filter(keep),
        pa.array(times, type=pa.string()).filter(keep),
        _split_ids(pa.array(histories, type=pa.string()).filter(keep)),
        _list_array(counts, candidates),
        _list_array(counts, clicks),
    ]
    return pa.Table.from_arrays(columns, schema=_BEHAVIORS_FEATURES.arrow_schema)


def read_behaviors(
    path: str | os.PathLike[str], *, lenient: bool = False, stats: LoadStats | None = None
) -> Dataset:
    """Read a MIND ``behaviors.tsv`` into a `Dataset`, one row per impression, in file order.

    Columns: ``impression_id`` (str), ``user_id`` (str), ``time`` (str, as in the file), ``history``
    (list[str], oldest first, may be empty), ``candidates`` (list[str]) and ``clicks`` (list[int], aligned
    with ``candidates``: 1 clicked, 0 not clicked, -1 for every candidate of MIND's unlabelled test split).
    News ids are not checked against any news table here; `build_train_samples` / `build_eval_impressions`
    drop and count the unknown ones.

    Args:
        path: the ``behaviors.tsv`` file.
        lenient: skip (and count under ``"malformed_rows_skipped"``) rows with the wrong column count, a
            malformed impression token (e.g. ``"N1-x"``), an empty impressions column, or labelled and
            unlabelled candidates mixed, instead of raising `MINDFormatError`.
        stats: where to count problems; when ``None`` a local `LoadStats` is used and logged at the end.
    """
    path = os.fspath(path)
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    bad_row = _BadRows(path, lenient, stats)
    raw: list[tuple[int, str, str, str, str, str]] = []
    tables: list[pa.Table] = []
    with _gc_paused():
        try:
            for lineno, fields in _iter_fields(path, len(BEHAVIORS_COLUMNS), "behaviors.tsv", bad_row):
                raw.append((lineno, *fields))
                if len(raw) == _CHUNK_ROWS:  # chunks bound the python objects alive at once
                    tables.append(_behaviors_table(raw, bad_row))
                    raw = []
        except MINDFormatError:
            _behaviors_table(raw, bad_row)  # report a bad impression on an earlier line first
            raise
        tables.append(_behaviors_table(raw, bad_row))
    if own_stats:
        stats.log(logger, f"read_behaviors({path})")
    return _dataset(tables, source=path)


def split_files(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(news.tsv, behaviors.tsv)`` of a MIND split folder; `FileNotFoundError` naming the missing one."""
    folder = Path(folder)
    news_path, behaviors_path = folder / "news.tsv", folder / "behaviors.tsv"
    for path in (news_path, behaviors_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (a MIND split folder holds news.tsv and behaviors.tsv)")
    return news_path, behaviors_path
