"""Readers for the MIND news-recommendation format.

MIND (Wu et al., ACL 2020) ships each split as a folder with two tab-separated files without a header:

* ``news.tsv`` (8 columns): news_id, category, subcategory, title, abstract, url, title_entities,
  abstract_entities;
* ``behaviors.tsv`` (5 columns): impression_id, user_id, time, history (space-separated news ids, oldest
  first, may be empty), impressions (space-separated ``N123-1`` / ``N456-0``; the test split has no label).

The files are parsed with plain ``str.split("\\t")``, not the `csv` module: MIND titles contain unbalanced
double quotes that a CSV reader would treat as quoting and silently merge rows.

Bad input raises `MINDFormatError` naming the file and the 1-based line; with ``lenient=True`` the row is
skipped instead, counted in the `LoadStats` and logged. Bad input is: a wrong column count (with a hint when the
line is several records joined by CR-only line endings), invalid UTF-8, an empty id, an id holding whitespace (ids
are separated by whitespace in behaviors.tsv and prediction.txt) or a control or invisible character, a news id
holding ``-`` (it labels a candidate: ``N123-1``), a malformed impression token, whitespace other than ASCII's inside
the id lists, a repeated impression id (counted under ``"duplicate_impression_ids"`` when lenient). A compressed
file (e.g. gzip named ``news.tsv``) is refused as a whole, lenient or not. A header row (``news_id  category ...``, ``impression_id
user_id ...``) is skipped and counted under ``"header_rows"``, an empty line or a byte-order mark carries no
data; nothing else is dropped: every non-empty line is a row, an error, or a count. Problems that are part of
real MIND (history ids missing from the split's news file, impressions that lose their only click) are never
errors: they are dropped and counted by the sample builders (`modeling_mtrec.data.samples`), and `load_mind`
logs the totals once.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value, concatenate_datasets
from datasets.fingerprint import Hasher, generate_random_fingerprint
from datasets.table import InMemoryTable

from .lines import cr_only_hint, iter_lines
from .stats import BadRows, LoadStats

logger = logging.getLogger(__name__)

__all__ = [
    "BEHAVIORS_FEATURES",
    "BEHAVIORS_COLUMNS",
    "EntityAnnotationError",
    "MINDFormatError",
    "NEWS_COLUMNS",
    "as_id",
    "count_titles_without_text",
    "id_problem",
    "parse_title_entities",
    "load_split_samples",
    "read_behaviors",
    "read_news",
    "read_news_union",
    "require_rows",
    "union_news",
    "split_files",
    "split_folders",
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
# The columns of every behaviors table, whatever the corpus format (data/tables.py and the other readers use it).
BEHAVIORS_FEATURES = Features(
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


class MINDFormatError(ValueError):
    """A MIND file that does not follow the format; the message starts with ``f"{path}:{lineno}: "`` (or with
    ``f"{path}: "`` for a problem of the whole file, e.g. no usable row)."""


# Python's str.split() and str.isspace() know more whitespace than ASCII's (which separates MIND's ids): the
# information separators \x1c-\x1f, NEL, NO-BREAK SPACE, and Unicode's spaces and line separators. An id list that
# holds one of them was written by something else than MIND (often a copy through a word processor).
_OTHER_WHITESPACE = "\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_ASCII_WHITESPACE = "\t\n\v\f\r "


def as_id(value: Any, what: str = "news id") -> str:
    """The one normalisation of ids given to the package: a string as it is, an integer (``123``, numpy's too) as
    its decimal string; anything else is a `TypeError` naming it. Ids are compared as strings everywhere, so an
    integer stored as such could never be found again."""
    if isinstance(value, str):
        return str(value)  # a str subclass (e.g. numpy.str_) becomes a plain str
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    raise TypeError(f"a {what} must be a string (or an integer), got {type(value).__name__}: {value!r}")


def id_problem(value: str, what: str, *, allow_hyphen: bool = True) -> str | None:
    """Why an id cannot be used, or None: it is empty, holds whitespace (ids are separated by whitespace in
    behaviors.tsv and prediction.txt), a control or invisible character (an id is printed, typed and compared: one
    holding a NUL or a zero-width space could never be asked for), or, unless `allow_hyphen`, a ``-`` (news ids:
    behaviors.tsv labels a candidate ``NEWSID-1``, so a news id holding one could never be a candidate). `what` names
    the id in the message, e.g. ``"impression id"``."""
    if value.isalnum():  # MIND's ids (N123, 4567): settled without looking at each character
        return None
    if not value:
        return f"empty {what}"
    bad = next((char for char in value if char.isspace()), None)
    if bad is not None:
        return f"{what} {value!r} contains whitespace ({_describe(bad)}): ids are separated by whitespace"
    problem = _invisible_problem(value, what)
    if problem is None and not allow_hyphen and "-" in value:
        problem = (
            f"{what} {value!r} contains '-': behaviors.tsv labels a candidate NEWSID-1 / NEWSID-0, so a news id "
            "never holds one"
        )
    return problem


def _invisible_problem(value: str, what: str) -> str | None:
    """Why `value` cannot be an id because of a control character (Unicode Cc) or an invisible format character (Cf,
    e.g. a zero-width space), or None."""
    bad = next((char for char in value if unicodedata.category(char) in ("Cc", "Cf")), None)
    if bad is None:
        return None
    name = unicodedata.name(bad, "")
    kind = "a control character" if unicodedata.category(bad) == "Cc" else "an invisible format character"
    return (
        f"{what} {value!r} contains U+{ord(bad):04X}{' ' + name if name else ''} ({kind}): an id is printed, typed "
        "and compared, so it holds none"
    )


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, 'control character')}"


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
    except RecursionError:  # e.g. "[[[[...]]]]" nested deeper than the interpreter's recursion limit
        raise EntityAnnotationError("broken_entity_json", "title_entities is nested too deeply") from None
    if not isinstance(entities, list):
        raise EntityAnnotationError("broken_entity_json", "title_entities is not a JSON list")
    return entities


_WORD_CHARACTER = re.compile(r"[^\W_]")  # a letter or a digit, in any script


def count_titles_without_text(titles: list[str | None], stats: LoadStats) -> None:
    """Counts the titles a text encoder gets no word from: ``"empty_title"`` (empty, blank or missing) and
    ``"title_without_words"`` (no letter or digit in any script, e.g. emoji or punctuation only). Such news are kept
    (they keep their id, category and entities); the count says how many rank on those alone."""
    empty = without_words = 0
    for title in titles:
        if not title or title.isspace():
            empty += 1
        elif _WORD_CHARACTER.search(title) is None:
            without_words += 1
    if empty:
        stats["empty_title"] += empty
    if without_words:
        stats["title_without_words"] += without_words


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


# A header row, recognised by its first two columns (lower-cased, letters and digits only): the names MIND's
# documentation, Microsoft recommenders and pandas exports use. Real MIND ids (N123, 1, U456) never match.
_HEADERS = {
    "news.tsv": ({"newsid", "nid", "itemid", "id"}, {"category", "vert", "cat"}),
    "behaviors.tsv": ({"impressionid", "impid", "id"}, {"userid", "uid", "user"}),
}


def _is_header(fields: list[str], file_kind: str) -> bool:
    """Whether a row is a header (`_iter_fields` asks only when its first field does not end with a digit, as every
    real MIND id does)."""
    first, second = _HEADERS[file_kind]
    names = ["".join(char for char in field.lower() if char.isalnum()) for field in fields[:2]]
    return names[0] in first and names[1] in second


def _iter_fields(
    path: str, num_columns: int, file_kind: str, bad_row: BadRows
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(lineno, fields)`` for every row of a tab-separated file with `num_columns` columns.

    The lines are read by `iter_lines` (bytes split on ``\\n``, decoded one by one; a compressed file is refused); a
    header row is skipped and counted under ``"header_rows"``; anything else that does not split into `num_columns`
    fields goes to `bad_row` (with a hint when it is several records joined by CR-only line endings).
    """
    for lineno, line in iter_lines(path, bad_row):
        fields = line.split("\t")
        if not fields[0][-1:].isdigit() and len(fields) >= 2 and _is_header(fields, file_kind):
            bad_row.stats["header_rows"] += 1
            logger.info("%s:%d: skipping a header row", path, lineno)
            continue
        if len(fields) != num_columns:
            hint = cr_only_hint(line, lambda piece: len(piece.split("\t")) == num_columns)
            bad_row(
                lineno,
                f"expected {num_columns} tab-separated columns (MIND {file_kind}), found {len(fields)}{hint}",
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
            empty news id or one holding whitespace, a control or invisible character or ``-``, or are not UTF-8,
            instead of raising `MINDFormatError`.
        stats: where to count problems; when ``None`` a local `LoadStats` is used and logged at the end.
    """
    path = os.fspath(path)
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    bad_row = BadRows(path, lenient, stats, error=MINDFormatError, logger=logger)
    rows: list[list[str]] = []
    seen: set[str] = set()
    with _gc_paused():
        for lineno, fields in _iter_fields(path, len(NEWS_COLUMNS), "news.tsv", bad_row):
            news_id = fields[0]
            problem = id_problem(news_id, "news id", allow_hyphen=False)
            if problem:
                bad_row(lineno, problem)
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
# `pyarrow.compute.ascii_split_whitespace`, which splits them; an id holds no '-' (it labels a candidate), no control
# character (Unicode Cc, which includes ASCII whitespace) and no invisible format character (Cf).
_WS = r"[\t\n\v\f\r ]"
_ID = r"[^\p{Cc}\p{Cf} -]+"
# What an ASCII history column may not hold besides its separators: control characters and '-' (non-ASCII columns are
# checked in python, `_history_problem`).
_ODD_ASCII_HISTORY = r"[\x00-\x08\x0e-\x1f\x7f-]"
_LABELLED_IMPRESSIONS = rf"^{_WS}*{_ID}-[01](?:{_WS}+{_ID}-[01])*{_WS}*$"
_UNLABELLED_IMPRESSIONS = rf"^{_WS}*{_ID}(?:{_WS}+{_ID})*{_WS}*$"


def _other_whitespace_problem(field: str, column: str) -> str | None:
    """Why an id list holds whitespace that is not ASCII's (which alone separates MIND's ids), or None."""
    bad = next((char for char in field if char in _OTHER_WHITESPACE), None)
    if bad is None:
        return None
    return f"{column} column contains {_describe(bad)}: MIND separates ids with ASCII spaces"


def _impressions_problem(field: str) -> str:
    """Describe why an impressions column matches neither accepted form (only called for bad rows)."""
    other = _other_whitespace_problem(field, "impressions")
    if other:
        return other
    tokens = re.split(f"[{_ASCII_WHITESPACE}]+", field.strip(_ASCII_WHITESPACE))
    tokens = [token for token in tokens if token]
    if not tokens:
        return "empty impressions column"
    for token in tokens:
        news_id = token[:-2] if token.endswith(("-0", "-1")) else token
        if not news_id or "-" in news_id:
            return (
                f"malformed impression token {token!r} (expected NEWSID-1, NEWSID-0, or a bare NEWSID in "
                "MIND's unlabelled test split)"
            )
        problem = _invisible_problem(news_id, "candidate news id")
        if problem:
            return problem
    return "impressions column mixes labelled (NEWSID-0/1) and unlabelled (NEWSID) candidates"


def _history_problem(field: str) -> str | None:
    """Why a history column cannot be read (other whitespace than ASCII's, or an id that no news can have), or None."""
    other = _other_whitespace_problem(field, "history")
    if other:
        return other
    for token in re.split(f"[{_ASCII_WHITESPACE}]+", field):
        problem = token and id_problem(token, "history id", allow_hyphen=False)
        if problem:
            return problem
    return None


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


def _behaviors_table(
    raw: list[tuple[int, str, str, str, str, str]], bad_row: BadRows, seen_ids: dict[str, int]
) -> pa.Table:
    """Turn raw ``(lineno, impression_id, user_id, time, history, impressions)`` rows into behaviour columns.

    The per-token work (splitting, checking and stripping ``-0`` / ``-1``) runs in Arrow: MIND-large's
    behaviors.tsv has ~80M impression tokens, too many for a python loop. `seen_ids` maps the impression ids of the
    earlier chunks to their line, so a repeated id is found across chunks.
    """
    linenos, impression_ids, user_ids, times, histories, impressions = (
        list(column) for column in (zip(*raw, strict=True) if raw else [()] * 6)
    )
    impressions_array, id_array, user_array, history_array = (
        pa.array(column, type=pa.string()) for column in (impressions, impression_ids, user_ids, histories)
    )
    labelled = pc.match_substring_regex(impressions_array, _LABELLED_IMPRESSIONS).to_numpy(
        zero_copy_only=False
    )
    unlabelled = pc.match_substring_regex(impressions_array, _UNLABELLED_IMPRESSIONS).to_numpy(
        zero_copy_only=False
    )
    # The first problem of each bad row, in line order, so that a strict read reports the earliest line. Each check
    # is one Arrow pass, then python on the (rare) rows it flags: MIND's ids are alphanumeric and its lists ASCII.
    problems: dict[int, tuple[str, str]] = {}
    for i in np.flatnonzero(~(labelled | unlabelled)):
        problems[i] = (_impressions_problem(impressions[i]), "malformed_rows_skipped")
    odd_history = pc.or_(
        pc.invert(pc.string_is_ascii(history_array)), pc.match_substring_regex(history_array, _ODD_ASCII_HISTORY)
    ).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(odd_history):
        problem = _history_problem(histories[i])
        if problem:
            problems.setdefault(i, (problem, "malformed_rows_skipped"))
    odd_ids = pc.invert(pc.utf8_is_alnum(id_array)).to_numpy(zero_copy_only=False)
    odd_users = pc.invert(pc.utf8_is_alnum(user_array)).to_numpy(zero_copy_only=False)  # "" is not alphanumeric
    for i in np.flatnonzero(odd_ids | odd_users):
        user = user_ids[i]
        problem = id_problem(impression_ids[i], "impression id") or (
            "empty user id" if not user else _invisible_problem(user, "user id")
        )
        if problem:
            problems.setdefault(i, (problem, "malformed_rows_skipped"))
    fresh = [i for i in range(len(raw)) if i not in problems] if problems else range(len(raw))
    ids = [impression_ids[i] for i in fresh] if problems else impression_ids
    if len(set(ids)) < len(ids) or not seen_ids.keys().isdisjoint(ids):  # a repeated id: find it row by row
        for i in fresh:
            first = seen_ids.setdefault(impression_ids[i], linenos[i])
            if first != linenos[i]:
                problems[i] = (
                    f"impression id {impression_ids[i]!r} repeats line {first}'s (each impression is evaluated and "
                    "predicted once)",
                    "duplicate_impression_ids",
                )
    else:
        seen_ids.update(zip(ids, [linenos[i] for i in fresh] if problems else linenos))
    for i in sorted(problems):  # raises on the first bad row unless lenient
        bad_row(linenos[i], *problems[i])
    valid = np.ones(len(raw), dtype=bool)
    valid[list(problems)] = False
    keep = pa.array(valid)

    tokens = _split_ids(impressions_array.filter(keep))
    flat = pc.list_flatten(tokens)
    token_labelled = labelled[valid][pc.list_parent_indices(tokens).to_numpy()]  # (num_tokens,)
    ends_with_one = pc.ends_with(flat, "-1").to_numpy(zero_copy_only=False)
    clicks = np.where(token_labelled, ends_with_one, -1).astype(np.int8)  # 1 / 0, -1 when unlabelled
    candidates = pc.if_else(pa.array(token_labelled), pc.utf8_slice_codeunits(flat, 0, -2), flat)
    counts = pc.list_value_length(tokens).to_numpy()
    columns = [
        id_array.filter(keep),
        user_array.filter(keep),
        pa.array(times, type=pa.string()).filter(keep),
        _split_ids(history_array.filter(keep)),
        _list_array(counts, candidates),
        _list_array(counts, clicks),
    ]
    return pa.Table.from_arrays(columns, schema=BEHAVIORS_FEATURES.arrow_schema)


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
        lenient: skip (and count under ``"malformed_rows_skipped"``) rows with the wrong column count, an
            empty impression or user id, an impression id holding whitespace, an id holding a control or invisible
            character, a history id holding ``-``, a malformed impression token (e.g.
            ``"N1-x"``), an empty impressions column, labelled and unlabelled candidates mixed, or whitespace other
            than ASCII's in the id lists; and (under ``"duplicate_impression_ids"``) a row repeating an earlier
            row's impression id; instead of raising `MINDFormatError`.
        stats: where to count problems; when ``None`` a local `LoadStats` is used and logged at the end.
    """
    path = os.fspath(path)
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    bad_row = BadRows(path, lenient, stats, error=MINDFormatError, logger=logger)
    raw: list[tuple[int, str, str, str, str, str]] = []
    tables: list[pa.Table] = []
    seen_ids: dict[str, int] = {}  # impression id -> its line
    with _gc_paused():
        try:
            for lineno, fields in _iter_fields(path, len(BEHAVIORS_COLUMNS), "behaviors.tsv", bad_row):
                raw.append((lineno, *fields))
                if len(raw) == _CHUNK_ROWS:  # chunks bound the python objects alive at once
                    tables.append(_behaviors_table(raw, bad_row, seen_ids))
                    raw = []
        except MINDFormatError:
            _behaviors_table(raw, bad_row, seen_ids)  # report a bad impression on an earlier line first
            raise
        tables.append(_behaviors_table(raw, bad_row, seen_ids))
    if own_stats:
        stats.log(logger, f"read_behaviors({path})")
    return _dataset(tables, source=path)


def require_rows(table: Dataset, path: str | os.PathLike[str], what: str, problems: dict[str, int]) -> Dataset:
    """`table` when it holds a row, else `MINDFormatError` naming `path`: an empty file, or one whose every row was
    skipped (`problems`: what was counted while reading it), would otherwise fail far away with a column error."""
    if len(table) == 0:
        raise MINDFormatError(
            f"{os.fspath(path)}: no usable {what} row"
            + (f" (every row was skipped: {problems})" if problems else " (the file holds no row)")
        )
    return table


def split_files(folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(news.tsv, behaviors.tsv)`` of a MIND split folder; `FileNotFoundError` naming the missing one."""
    folder = Path(folder)
    news_path, behaviors_path = folder / "news.tsv", folder / "behaviors.tsv"
    for path in (news_path, behaviors_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (a MIND split folder holds news.tsv and behaviors.tsv)")
    return news_path, behaviors_path


def read_news_union(
    news_paths: list[str | os.PathLike], *, lenient: bool = False, stats: LoadStats | None = None
) -> tuple[Dataset, dict[str, int], list[str]]:
    """Reads several ``news.tsv`` into one table: the first file's news first, then each later file's new ones.

    MIND ships a news.tsv per split and most dev news also appear in train. One table lets a single collator serve
    the training and evaluation loops (both index the same rows), and processes each news once even when several
    splits mention it. A news id present in several files keeps its first row (MIND repeats the same news across
    splits; this is expected, so it is logged as information, not counted as a problem). A file without any usable
    row (empty, or every row skipped under `lenient`) raises `MINDFormatError` naming it.

    Returns:
        ``(news, news_index, categories)``: the raw news table (`read_news` columns), news id -> row, and the
        sorted categories of the first file.
    """
    stats = LoadStats() if stats is None else stats
    tables = []
    for news_path in news_paths:
        before = stats.copy()
        table = read_news(news_path, lenient=lenient, stats=stats)
        tables.append((require_rows(table, news_path, "news", dict(sorted((stats - before).items()))), news_path))
    if not tables:
        raise ValueError("read_news_union needs at least one news.tsv")
    return union_news(tables)


def union_news(tables: list[tuple[Dataset, str | os.PathLike]]) -> tuple[Dataset, dict[str, int], list[str]]:
    """One news table from several already read ones (``(table, where it was read)``, in order): the first table's
    news first, then each later table's new ones; a repeated news id keeps its first row (`read_news_union`).

    Returns:
        ``(news, news_index, categories)``: the news table, news id -> row, and the sorted categories of the first
        table.
    """
    kept, news_index, categories = [], {}, None
    for table, source in tables:
        ids = table.data.column("news_id").to_pylist()  # Arrow directly: datasets' Column iterates slowly
        fresh = [row for row, news_id in enumerate(ids) if news_id not in news_index]
        if len(fresh) < len(ids):
            logger.info(
                "%s: %d of %d news already read from an earlier split",
                source,
                len(ids) - len(fresh),
                len(ids),
            )
            table = table.select(fresh)
        for row in fresh:
            news_index[ids[row]] = len(news_index)
        kept.append(table)
        if categories is None:  # no category is no class: an empty one is counted by the news processing
            categories = sorted(category for category in table.unique("category") if category.strip())
    if not kept:
        raise ValueError("union_news needs at least one news table")
    news = kept[0] if len(kept) == 1 else concatenate_datasets(kept)
    return news, news_index, categories


def split_folders(
    train_dir: str | os.PathLike | None, eval_dir: str | os.PathLike | None, caller: str
) -> dict[str, tuple[Path, Path]]:
    """``{"train" | "eval": (news.tsv, behaviors.tsv)}`` of the given split folders (at least one; `caller` names
    the function asking, for the error)."""
    if train_dir is None and eval_dir is None:
        raise ValueError(f"{caller} needs a train_dir, an eval_dir or both")
    return {name: split_files(folder) for name, folder in (("train", train_dir), ("eval", eval_dir)) if folder}


SampleBuilder = Callable[..., Dataset]


def load_split_samples(
    splits: dict[str, tuple[Path, Path | Dataset]],
    builders: dict[str, tuple[SampleBuilder, str]],
    news_index: dict[str, int],
    max_history_length: int,
    lenient: bool,
    stats: LoadStats,
    *,
    unlabelled_hint: str = ".",
) -> dict[str, Dataset | None]:
    """Each split's behaviours turned into samples by ``builders[split] = (builder, what its rows are)`` (a
    `modeling_mtrec.data.samples` builder); ``splits[split]`` is ``(news.tsv, behaviors.tsv)`` (`split_folders`), or
    ``(folder, behaviors table)`` for a split another format's reader has read (`read_corpus_splits`). A split left
    without any sample raises, naming its file (or folder) and the problems counted so far. `unlabelled_hint` ends the message of an eval split whose impressions are all unlabelled (MIND's
    test format), e.g. ``": write their predictions with ..."``: where the caller's predictions come from."""
    samples: dict[str, Dataset | None] = {"train": None, "eval": None}
    for name, (source, behaviors_path) in splits.items():
        if isinstance(behaviors_path, Dataset):  # already read by another corpus format's reader (`read_split`)
            behaviors, behaviors_path = behaviors_path, source
        else:
            behaviors = read_behaviors(behaviors_path, lenient=lenient, stats=stats)
        build, what = builders[name]
        samples[name] = build(behaviors, news_index, max_history_length=max_history_length, stats=stats)
        if len(samples[name]) == 0:
            unlabelled = name == "eval" and stats["unlabelled_impressions"] > 0
            raise ValueError(
                f"{behaviors_path}: no {what} left after loading ({len(behaviors)} impressions read; problems: "
                f"{stats.as_dict()})"
                + (". MIND's test split is unlabelled: pass it as an eval split." if name == "train" else "")
                + (". Unlabelled impressions (MIND's test format) cannot be evaluated" + unlabelled_hint
                   if unlabelled else "")
            )
    return samples
