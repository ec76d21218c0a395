"""The foundation model's multi-domain impression format: reader, encoded features, collator.

One row per impression: a user was shown one item in one domain, after a query (search) or not
(recommendation). Files are JSON Lines (one JSON object per line) or Parquet (one row per impression), read into a
`datasets.Dataset` by `read_impressions`. Columns:

| column | type | required | meaning |
|---|---|---|---|
| `domain` | string | yes | the domain (a search or recommendation surface) |
| `scenario` | `"search"` or `"recommendation"` | yes | search rows have a query, recommendation rows none |
| `user_id` | string | no (`""`) | the user |
| `user_sparse` | list of strings | no (`[]`) | the user's categorical features, e.g. `"age=25-34"` |
| `history` | list of strings | no (`[]`) | ids of items the user interacted with, oldest first |
| `history_text` | list of strings | no (`[]`) | their texts, same length as `history` (`""` for none); when empty, a history item gets the text of that item id in the rows loaded |
| `query_id` | string | search: `query_id` or `query_text` | the query; `""` on recommendation rows |
| `query_text` | string | (see above) | the query's text |
| `query_sparse` | list of strings | no (`[]`) | the query's categorical features |
| `item_id` | string | `item_id` or `item_text` | the item |
| `item_text` | string | (see above) | the item's text (a title) |
| `item_sparse` | list of strings | no (`[]`) | the item's categorical features, e.g. `"brand=acme"` |
| `click` | 0, 1 or -100 | `click` or `relevance` | clicked; -100 = no label |
| `relevance` | 0, 1 or -100 | (see above) | the item matches the query; -100 = no label (always on recommendation rows) |

A row that breaks these rules (bad JSON, a wrong type, an unknown scenario, a label outside {0, 1, -100}, a
search row without a query, a recommendation row with one or with a relevance label, no label at all, no item)
raises `FoundationFormatError` naming ``file:line`` (JSONL) or ``file:row`` (Parquet, 1-based), or with
``lenient=True`` is skipped and counted under ``malformed_rows_skipped``, as MIND rows are; so is a JSONL line that
is not UTF-8 or holds JSON nested too deeply to parse. Columns not in the table are ignored, logged, and counted
under ``ignored_columns`` (one per column name and file); blank JSONL lines are not rows. As for MIND files, a file
without a usable row (empty, blank, 0 rows, or every row skipped), a compressed file and an unreadable Parquet file
raise `FoundationFormatError` naming the file, lenient or not.

NOTE: JSON Lines are parsed here line by line (`modeling_mtrec.data.lines.iter_lines`: bytes split on ``\\n``, each
line decoded on its own), not by `datasets`' JSON builder: that builder infers one schema for the whole file and
fails on the first row that does not fit it without saying which line it was. Parquet files are
read with `datasets.Dataset.from_parquet`.

`build_features` turns rows into model inputs once: ids and sparse values are hashed into the config's buckets
(0 = missing / padding), the domain is looked up in `config.domains`, history items get the text of that item
id wherever it appears as an item in the rows given (`item_texts`), and every distinct text gets one row of a
text table (`text_embeds` from a `TextFeatureCache`, or token ids for an LM fine-tuned end to end).
`FoundationCollator` gathers a batch of rows and only the texts the batch uses.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.parquet
import torch
from datasets import Dataset, Features, List, Value

from modeling_mtrec.data.lines import cr_only_hint, iter_lines
from modeling_mtrec.data.padding import pad_right
from modeling_mtrec.data.samples import stable_key
from modeling_mtrec.data.stats import BadRows, LoadStats

from .configuration_foundation import FoundationConfig

logger = logging.getLogger(__name__)

SCENARIOS = ("search", "recommendation")
LABEL_VALUES = (0, 1, -100)
STRING_COLUMNS = ("domain", "scenario", "user_id", "query_id", "query_text", "item_id", "item_text")
LIST_COLUMNS = ("user_sparse", "history", "history_text", "query_sparse", "item_sparse")
LABEL_COLUMNS = ("click", "relevance")
COLUMNS = STRING_COLUMNS + LIST_COLUMNS + LABEL_COLUMNS
REQUIRED_COLUMNS = ("domain", "scenario")
IMPRESSION_FEATURES = Features(
    {
        **{name: Value("string") for name in STRING_COLUMNS},
        **{name: List(Value("string")) for name in LIST_COLUMNS},
        **{name: Value("int32") for name in LABEL_COLUMNS},
    }
)


class FoundationFormatError(ValueError):
    """A row that breaks the impression format; the message starts with ``f"{path}:{line or row}: "``."""


def check_row(row: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the row with defaults filled in, None) or (None, what is wrong with it)."""
    if not isinstance(row, dict):
        return None, f"a row must be a JSON object, got {type(row).__name__}"
    out: dict[str, Any] = {}
    for name in STRING_COLUMNS:
        value = row.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            return None, f"`{name}` must be a string, got {value!r}"
        out[name] = value
    for name in LIST_COLUMNS:
        value = row.get(name)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"`{name}` must be a list of strings, got {value!r}"
        out[name] = list(value)
    for name in LABEL_COLUMNS:
        value = row.get(name)
        if value is None:
            value = -100
        if isinstance(value, bool) or not isinstance(value, int) or value not in LABEL_VALUES:
            return None, f"`{name}` must be 0, 1 or -100 (no label), got {value!r}"
        out[name] = value
    if not out["domain"]:
        return None, "`domain` is missing or empty"
    if out["history_text"] and len(out["history_text"]) != len(out["history"]):
        return None, (
            f"`history_text` must be empty or as long as `history` ({len(out['history'])}), "
            f"got {len(out['history_text'])} texts"
        )
    if out["scenario"] not in SCENARIOS:
        return None, f"`scenario` must be one of {SCENARIOS}, got {out['scenario']!r}"
    has_query = bool(out["query_id"] or out["query_text"] or out["query_sparse"])
    if out["scenario"] == "search" and not (out["query_id"] or out["query_text"]):
        return None, "a search row needs `query_id` or `query_text`"
    if out["scenario"] == "recommendation" and has_query:
        return None, "a recommendation row has no query (`query_id`, `query_text`, `query_sparse` must be empty)"
    if out["scenario"] == "recommendation" and out["relevance"] != -100:
        return None, "a recommendation row has no query, so no `relevance` label (use -100)"
    if not (out["item_id"] or out["item_text"]):
        return None, "the row needs `item_id` or `item_text`"
    if out["click"] == -100 and out["relevance"] == -100:
        return None, "the row has no label (`click` and `relevance` are both -100 or missing)"
    return out, None


def _jsonl_rows(path: str, bad_row: BadRows, stats: LoadStats) -> Iterator[dict[str, Any]]:
    ignored: set[str] = set()
    for lineno, line in iter_lines(path, bad_row):  # bytes decoded line by line: invalid UTF-8 names its line
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            hint = cr_only_hint(line, _is_json)
            bad_row(lineno, f"not valid JSON ({error.msg} at column {error.colno}){hint}")
            continue
        except RecursionError:  # e.g. "[[[[...]]]]" nested deeper than the interpreter's recursion limit
            bad_row(lineno, "JSON nested too deeply (deeper than Python's recursion limit)")
            continue
        row, problem = check_row(raw)
        if problem is not None:
            bad_row(lineno, problem)
            continue
        ignored.update(k for k in raw if k not in COLUMNS)
        yield row
    _count_ignored(path, ignored, stats)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def _parquet_rows(path: str, bad_row: BadRows, stats: LoadStats) -> Iterator[dict[str, Any]]:
    try:  # the footer: a file that is no Parquet (or a truncated one) fails here, before `datasets` sees it
        num_rows = pyarrow.parquet.read_metadata(path).num_rows
    except (OSError, pyarrow.ArrowException) as error:
        raise FoundationFormatError(f"{path}: not a readable Parquet file ({error})") from None
    if num_rows == 0:  # `datasets` cannot build a table of 0 rows from Parquet
        return
    try:
        table = Dataset.from_parquet(path, keep_in_memory=True)
    except Exception as error:  # a corrupt page: `datasets` wraps Arrow's error without naming the file
        cause = error.__cause__ or error
        raise FoundationFormatError(f"{path}: not a readable Parquet file ({type(cause).__name__}: {cause})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise FoundationFormatError(f"{path}: missing column(s) {missing}; it has {table.column_names}")
    for number, raw in enumerate(table, start=1):
        row, problem = check_row(raw)
        if problem is not None:
            bad_row(f"row {number}", problem)
            continue
        yield row
    _count_ignored(path, {c for c in table.column_names if c not in COLUMNS}, stats)


def _count_ignored(path: str, ignored: set[str], stats: LoadStats) -> None:
    if ignored:
        stats["ignored_columns"] += len(ignored)
        logger.warning("%s: ignored column(s) not in the impression format: %s", path, sorted(ignored))


def read_impressions(
    paths: str | os.PathLike | Sequence[str | os.PathLike], *, lenient: bool = False, stats: LoadStats | None = None
) -> Dataset:
    """Read impression files (`.jsonl` / `.json` lines, or `.parquet`) into one `Dataset` with `IMPRESSION_FEATURES`.

    Missing optional columns get their defaults ("" / [] / -100). See the module docstring for the format and
    what happens to bad rows.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for path in map(str, paths):
        bad_row = BadRows(path, lenient, stats, error=FoundationFormatError, logger=logger)
        suffix = Path(path).suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            rows = _jsonl_rows(path, bad_row, stats)
        elif suffix == ".parquet":
            rows = _parquet_rows(path, bad_row, stats)
        else:
            raise ValueError(f"{path}: unknown file type {suffix!r}; use .jsonl or .parquet")
        kept = 0
        for row in rows:
            kept += 1
            for name in COLUMNS:
                columns[name].append(row[name])
        if kept == 0:  # an empty file, or one whose every row was skipped, is no data: say so (MIND's rule)
            raise FoundationFormatError(
                f"{path}: no usable impression row"
                + (f" (every row was skipped: {bad_row.skipped} malformed)" if bad_row.skipped else " (the file holds no row)")
            )
    if own_stats:
        stats.log(logger, f"read_impressions({', '.join(map(str, paths))})")
    return Dataset.from_dict(columns, features=IMPRESSION_FEATURES)


def write_impressions(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write rows as JSON Lines (or Parquet when `path` ends in `.parquet`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        checked = []
        for number, row in enumerate(rows, start=1):
            full, problem = check_row(row)
            if problem is not None:
                raise FoundationFormatError(f"{path}:row {number}: {problem}")
            checked.append(full)
        rows = checked
        Dataset.from_list(rows, features=IMPRESSION_FEATURES).to_parquet(str(path))
        return path
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- encoded features


def bucket(value: str, buckets: int) -> int:
    """Hash bucket of a categorical value: 0 for "" (missing), else 1 + stable_key(value) mod (buckets - 1)."""
    return 0 if not value else 1 + stable_key(value) % (buckets - 1)


def suggest_buckets(*row_sets: Dataset) -> dict[str, int]:
    """Config bucket counts for the ids and sparse values of these rows: 2x the distinct values (few collisions;
    dense embedding gradients make oversized tables slow on CPU), at least 1009. History ids count as item ids."""

    def size(values: set[str]) -> int:
        return max(1009, 2 * len(values) + 1)

    items = {i for rows in row_sets for i in rows["item_id"]} | {h for rows in row_sets for hs in rows["history"] for h in hs}
    sparse = {v for rows in row_sets for column in ("user_sparse", "query_sparse", "item_sparse") for vs in rows[column] for v in vs}
    return {
        "user_id_buckets": size({u for rows in row_sets for u in rows["user_id"]}),
        "item_id_buckets": size(items),
        "query_id_buckets": size({q for rows in row_sets for q in rows["query_id"]}),
        "sparse_buckets": size(sparse),
    }


def item_text_table(*row_sets: Dataset) -> dict[str, str]:
    """item id -> its text (the first non-empty one met) over the rows given: the texts of history items."""
    table: dict[str, str] = {}
    for rows in row_sets:
        for item_id, text in zip(rows["item_id"], rows["item_text"], strict=True):
            if item_id and text and item_id not in table:
                table[item_id] = text
    return table


@dataclass
class FoundationFeatures:
    """Encoded rows: model inputs and labels as tensors (first dim = row), plus the text table they index.

    Attributes:
        columns: `domain_ids (N,)`, `user_ids (N,)`, `user_sparse_ids (N, Su)`, `history_item_ids (N, H)`,
            `history_text_index (N, H)`, `history_mask (N, H)`, `query_ids (N,)`, `query_sparse_ids (N, Sq)`,
            `query_text_index (N,)`, `item_ids (N,)`, `item_sparse_ids (N, Si)`, `item_text_index (N,)`,
            `click_labels (N,)`, `relevance_labels (N,)`; text indices are rows of `texts` (-1: none).
        user_keys: the user id of each row (grouped AUC).
        domain_names: the domain of each row.
        texts: the text table.
        text_embeds: `(T, H)` frozen-LM vectors of `texts`, or None.
        text_input_ids: token ids of `texts` (end-to-end LM), or None.
    """

    columns: dict[str, torch.Tensor]
    user_keys: list[str]
    domain_names: list[str]
    texts: list[str]
    text_embeds: torch.Tensor | None = None
    text_input_ids: list[list[int]] | None = None
    stats: LoadStats = field(default_factory=LoadStats)

    def __len__(self) -> int:
        return int(self.columns["domain_ids"].shape[0])

    def select(self, indices: Sequence[int] | torch.Tensor) -> FoundationFeatures:
        """The given rows (same text table)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        picked = index.tolist()
        return FoundationFeatures(
            {name: t[index] for name, t in self.columns.items()},
            [self.user_keys[i] for i in picked],
            [self.domain_names[i] for i in picked],
            self.texts,
            self.text_embeds,
            self.text_input_ids,
            self.stats,
        )


def build_features(
    rows: Dataset,
    config: FoundationConfig,
    *,
    text_cache=None,
    tokenizer=None,
    item_texts: dict[str, str] | None = None,
    max_history_length: int = 20,
    max_sparse_features: int = 16,
    max_text_length: int = 32,
    stats: LoadStats | None = None,
) -> FoundationFeatures:
    """Encode impression rows for `config`'s model. Texts: `text_cache` (a `TextFeatureCache`, frozen LM),
    `tokenizer` (LM inside the model, end to end) or neither (no text aspect).

    The most recent `max_history_length` history items are kept. Counted in `stats`: `history_truncated`
    (rows), `history_items_without_text` (history items with no `history_text` and no text in `item_texts`: ID
    aspect only),
    `sparse_features_truncated` (rows with more than `max_sparse_features` values on one side, cut).

    Raises:
        ValueError: a row's domain is not in `config.domains` (add it with `FoundationModel.add_domain`).
    """
    stats = LoadStats() if stats is None else stats
    if item_texts is None:
        item_texts = item_text_table(rows)
    domain2id = config.domain2id
    data = rows.with_format(None)[:]
    unknown = sorted(set(data["domain"]) - set(domain2id))
    if unknown:
        raise ValueError(f"domain(s) {unknown} are not in the model's domains {config.domains}; add them with add_domain")
    use_text = "text" in config.aspects and (text_cache is not None or tokenizer is not None)
    texts: dict[str, int] = {}

    def text_row(text: str) -> int:
        if not use_text or not text:
            return -1
        return texts.setdefault(text, len(texts))

    def sparse(values: list[str]) -> list[int]:
        if len(values) > max_sparse_features:
            stats["sparse_features_truncated"] += 1
            values = values[:max_sparse_features]
        return [bucket(v, config.sparse_buckets) for v in values if v]

    history_ids, history_text, user_sparse, query_sparse, item_sparse = [], [], [], [], []
    query_text_index, item_text_index = [], []
    for i in range(len(rows)):
        history = data["history"][i]
        own_texts = data["history_text"][i] or [item_texts.get(h, "") for h in history]
        if len(history) > max_history_length:
            stats["history_truncated"] += 1
            history, own_texts = history[-max_history_length:], own_texts[-max_history_length:]
        history_ids.append([bucket(h, config.item_id_buckets) for h in history])
        missing = sum(not t for t in own_texts)
        if missing:
            stats["history_items_without_text"] += missing
        history_text.append([text_row(t) for t in own_texts])
        user_sparse.append(sparse(data["user_sparse"][i]))
        query_sparse.append(sparse(data["query_sparse"][i]))
        item_sparse.append(sparse(data["item_sparse"][i]))
        query_text_index.append(text_row(data["query_text"][i]))
        item_text_index.append(text_row(data["item_text"][i]))

    # Each list column is padded to its longest list, at least one column (an all-empty column still indexes).
    history_item_ids = pad_right(history_ids, 0, min_width=1)[0]  # (N, H), H = the longest kept history
    columns = {
        "domain_ids": torch.as_tensor([domain2id[d] for d in data["domain"]], dtype=torch.long),
        "user_ids": torch.as_tensor([bucket(u, config.user_id_buckets) for u in data["user_id"]], dtype=torch.long),
        "user_sparse_ids": pad_right(user_sparse, 0, min_width=1)[0],  # (N, Su)
        "history_item_ids": history_item_ids,
        "history_text_index": pad_right(history_text, -1, width=history_item_ids.shape[1])[0],  # (N, H)
        "history_mask": history_item_ids != 0,
        "query_ids": torch.as_tensor([bucket(q, config.query_id_buckets) for q in data["query_id"]], dtype=torch.long),
        "query_sparse_ids": pad_right(query_sparse, 0, min_width=1)[0],  # (N, Sq)
        "query_text_index": torch.as_tensor(query_text_index, dtype=torch.long),
        "item_ids": torch.as_tensor([bucket(v, config.item_id_buckets) for v in data["item_id"]], dtype=torch.long),
        "item_sparse_ids": pad_right(item_sparse, 0, min_width=1)[0],  # (N, Si)
        "item_text_index": torch.as_tensor(item_text_index, dtype=torch.long),
        "click_labels": torch.as_tensor(data["click"], dtype=torch.long),
        "relevance_labels": torch.as_tensor(data["relevance"], dtype=torch.long),
    }
    table = list(texts)
    text_embeds = text_input_ids = None
    if use_text and text_cache is not None:
        text_embeds = text_cache.encode(table) if table else None
    elif use_text:
        text_input_ids = tokenizer(table, truncation=True, max_length=max_text_length)["input_ids"] if table else []
    return FoundationFeatures(
        columns, list(data["user_id"]), list(data["domain"]), table, text_embeds, text_input_ids, stats
    )


class FeatureRows(torch.utils.data.Dataset):
    """The rows of a `FoundationFeatures` as `{"row": i}` items (what `FoundationCollator` gathers)."""

    def __init__(self, features: FoundationFeatures) -> None:
        self.size = len(features)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, int]:
        return {"row": index}


@dataclass
class FoundationCollator:
    """Gathers rows of `features` into a model batch, with only the texts the batch uses.

    Given ``[{"row": 4}, {"row": 9}]`` it returns every tensor of `features.columns` at rows (4, 9) and the
    batch's text table: ``text_embeds (T_b, H)`` (frozen LM) or ``text_input_ids`` / ``text_attention_mask``
    ``(T_b, L)`` padded with `pad_token_id` (end to end), ``T_b`` = the distinct texts of those rows' queries,
    items and history items; every ``*_text_index`` is re-numbered into that table (-1 stays -1).
    """

    features: FoundationFeatures
    pad_token_id: int = 0

    def __call__(self, items: list[dict[str, int]] | list[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor([item["row"] if isinstance(item, dict) else int(item) for item in items], dtype=torch.long)
        batch = {name: t[rows] for name, t in self.features.columns.items()}
        keys = ("query_text_index", "item_text_index", "history_text_index")
        used = torch.cat([batch[k].reshape(-1) for k in keys])
        used = torch.unique(used[used >= 0])  # (T_b,) sorted
        if used.numel() == 0:
            return batch
        lookup = torch.full((len(self.features.texts),), -1, dtype=torch.long)
        lookup[used] = torch.arange(used.numel())
        for key in keys:
            index = batch[key]
            batch[key] = torch.where(index >= 0, lookup[index.clamp(min=0)], index)
        if self.features.text_embeds is not None:
            batch["text_embeds"] = self.features.text_embeds[used]
        elif self.features.text_input_ids is not None:
            token_lists = [self.features.text_input_ids[i] for i in used.tolist()]
            ids, mask = pad_right(token_lists, self.pad_token_id)  # (T_b, L)
            batch["text_input_ids"], batch["text_attention_mask"] = ids, mask.long()
        return batch


__all__ = [
    "COLUMNS",
    "FeatureRows",
    "FoundationCollator",
    "FoundationFeatures",
    "FoundationFormatError",
    "IMPRESSION_FEATURES",
    "SCENARIOS",
    "bucket",
    "build_features",
    "check_row",
    "item_text_table",
    "read_impressions",
    "suggest_buckets",
    "write_impressions",
]
