"""The rows the models train and evaluate on, built from `read_behaviors` tables.

* `build_train_samples`: MTRec's training rows, one per click, with the impression's non-clicked news as the
  negatives pool;
* `build_eval_impressions`: one row per impression, scored as a ranking of its candidates;
* `build_retrieval_samples`: the two-tower retriever's rows, one per click (no negatives needed).

News ids become rows of the news table (`news_index`); unknown ids are dropped and counted in `LoadStats`.

NOTE: MTRec (Bi et al., Findings of ACL 2022, Sec. 3) samples K negatives per clicked news from the same
impression, as NRMS does; `build_train_samples` therefore emits one row per click with the impression's
whole non-clicked list as the pool, and `MTRecCollator` draws the K negatives at batch time, so each epoch
sees fresh negatives.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value

from .mind import _CHUNK_ROWS, _dataset, _list_array, _table, as_id
from .stats import LoadStats

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "build_eval_impressions",
    "build_retrieval_samples",
    "build_train_samples",
    "recent_history",
    "stable_key",
]

# Row indices into the news table fit in int32 and clicks in int8; on MIND-large (2.2M impressions, ~3.4M
# clicks with up to 50 history ids each) this halves the Arrow memory of the train samples.
_ROW = Value("int32")
_TRAIN_FEATURES = Features({"history": List(_ROW), "positive": _ROW, "negatives": List(_ROW)})
_EVAL_FEATURES = Features(
    {
        "impression_id": Value("string"),
        "history": List(_ROW),
        "candidates": List(_ROW),
        "labels": List(Value("int8")),
    }
)

_RETRIEVAL_FEATURES = Features({"user_key": Value("int64"), "history": List(Value("int32")), "positive": Value("int32")})
_KEY_MASK = (1 << 62) - 1


def stable_key(value: str) -> int:
    """A non-negative 62-bit key of `value`, the same in every process and run (unlike `hash`). An integer is keyed as
    its decimal string (`as_id`), so ``123`` and ``"123"`` are the same id."""
    if not isinstance(value, str):
        value = as_id(value, "key")
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little") & _KEY_MASK


def _check_max_history_length(max_history_length: int) -> None:
    if max_history_length < 0:
        raise ValueError(f"max_history_length must be >= 0, got {max_history_length}")


def recent_history(history: Sequence[T], max_history_length: int) -> list[T]:
    """The history rule of every model here: the most recent `max_history_length` clicks, oldest first.

    Unknown news ids are dropped before (so a user keeps `max_history_length` known clicks whenever they have
    that many); 0 keeps nothing. The sample builders apply the same rule to whole Arrow columns at once
    (`_history_lists`); prediction and serving apply it to one history at a time with this function.
    """
    _check_max_history_length(max_history_length)
    return list(history[max(0, len(history) - max_history_length) :])


class _RowLookup:
    """Maps the news ids of list columns to rows of the news table, vectorised with Arrow's hash lookup."""

    def __init__(self, news_index: dict[str, int]) -> None:
        self.keys = pa.array([as_id(news_id) for news_id in news_index], type=pa.string())  # 123 -> "123"
        self.rows = np.fromiter(news_index.values(), dtype=np.int64, count=len(news_index))

    def __call__(self, lists: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
        """For every element of `lists`: the index of its list, and its news row (-1 when the id is unknown)."""
        parents = pc.list_parent_indices(lists).to_numpy()  # (num_elements,)
        ids = pc.list_flatten(lists).cast(pa.string())  # a no-op unless built by hand as large_string
        position = pc.index_in(ids, value_set=self.keys)  # null when unknown
        rows = np.full(len(position), -1, dtype=np.int64)
        rows[position.is_valid().to_numpy(zero_copy_only=False)] = self.rows[
            pc.drop_null(position).to_numpy()
        ]
        return parents, rows


def _history_lists(
    history: pa.ListArray, lookup: _RowLookup, max_history_length: int, stats: LoadStats
) -> tuple[pa.ListArray, np.ndarray]:
    """Known history ids as news rows, oldest first, keeping the most recent `max_history_length` per list.

    Returns the lists and their lengths. Unknown ids are dropped first, then the lists truncated, so a user
    keeps `max_history_length` known clicks whenever they have that many.
    """
    parents, rows = lookup(history)
    known = rows >= 0
    if not known.all():
        stats["unknown_history_ids"] += int((~known).sum())
        parents, rows = parents[known], rows[known]
    counts = np.bincount(parents, minlength=len(history))  # known ids per list
    from_end = np.cumsum(counts)[parents] - np.arange(len(rows)) - 1  # 0 for the most recent id of its list
    keep = from_end < max_history_length
    lengths = np.minimum(counts, max_history_length)
    return _list_array(lengths, rows[keep].astype(np.int32)), lengths


def _iter_behaviors(behaviors: Dataset, columns: list[str]) -> Iterator[pa.Table]:
    """Arrow batches of `behaviors` (whatever its format; select/shuffle indices are applied)."""
    yield from behaviors.select_columns(columns).with_format("arrow").iter(batch_size=_CHUNK_ROWS)


def _candidate_clicks(
    batch: pa.Table, lookup: _RowLookup, stats: LoadStats
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(parents, rows, clicks)`` for every candidate of the batch; counts the unknown ones, and the candidates that
    repeat a news already listed in their impression (``"duplicate_candidates"``: kept, as MIND's scorer keeps them,
    but a news both clicked and not clicked in one impression is contradictory data worth knowing about)."""
    candidates = batch.column("candidates").combine_chunks()
    clicks_column = batch.column("clicks").combine_chunks()
    lengths_differ = pc.not_equal(pc.list_value_length(candidates), pc.list_value_length(clicks_column))
    if pc.any(lengths_differ).as_py():
        raise ValueError("behaviors: an impression has a different number of candidates and clicks")
    parents, rows = lookup(candidates)
    clicks = pc.list_flatten(clicks_column).to_numpy(zero_copy_only=False)
    unknown = int((rows < 0).sum())
    if unknown:
        stats["unknown_candidate_ids"] += unknown
    known = rows >= 0
    pairs = np.stack([parents[known], rows[known]], axis=1)  # (num_known, 2): (impression, news row)
    repeated = len(pairs) - len(np.unique(pairs, axis=0)) if len(pairs) else 0
    if repeated:
        stats["duplicate_candidates"] += repeated
    return parents, rows, clicks


@dataclass
class _ImpressionBatch:
    """One Arrow batch of impressions with its news ids resolved to rows (unknown ids: history dropped, -1)."""

    table: pa.Table  # the `read_behaviors` columns asked for
    history: pa.ListArray  # per impression: known history rows, the most recent `max_history_length`
    history_lengths: np.ndarray  # (num_impressions,)
    parents: np.ndarray  # (num_candidates,): each candidate's impression
    rows: np.ndarray  # (num_candidates,): news row, -1 when unknown
    clicks: np.ndarray  # (num_candidates,): 1 / 0, -1 in the unlabelled test split

    @property
    def num_impressions(self) -> int:
        return self.table.num_rows

    def count(
        self, stats: LoadStats, without_click: np.ndarray, without_non_click: np.ndarray,
        unlabelled: np.ndarray | None = None,
    ) -> np.ndarray:
        """Counts the impressions left out (each under one reason) and the kept ones with an empty history; returns
        the kept mask. `unlabelled` marks impressions left out for having no labels (MIND's test format)."""
        unlabelled = np.zeros_like(without_click) if unlabelled is None else unlabelled
        kept = ~without_click & ~without_non_click & ~unlabelled
        for reason, mask in (
            ("impressions_without_click", without_click),
            ("impressions_without_non_click", without_non_click),
            ("unlabelled_impressions", unlabelled),
            ("empty_history", kept & (self.history_lengths == 0)),
        ):
            if mask.any():
                stats[reason] += int(mask.sum())
        return kept


def _build(
    behaviors: Dataset,
    news_index: dict[str, int],
    max_history_length: int,
    stats: LoadStats | None,
    columns: list[str],
    features: Features,
    make_table: Callable[[_ImpressionBatch, LoadStats], pa.Table],
    name: str,
) -> Dataset:
    """The loop every builder shares: Arrow batches of `behaviors`, ids resolved, rows made by `make_table`."""
    _check_max_history_length(max_history_length)
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    lookup = _RowLookup(news_index)
    tables: list[pa.Table] = []
    for batch in _iter_behaviors(behaviors, ["history", "candidates", "clicks", *columns]):
        history, history_lengths = _history_lists(
            batch.column("history").combine_chunks(), lookup, max_history_length, stats
        )
        parents, rows, clicks = _candidate_clicks(batch, lookup, stats)  # (num_candidates,) each
        tables.append(make_table(_ImpressionBatch(batch, history, history_lengths, parents, rows, clicks), stats))
    if own_stats:
        stats.log(logger, name)
    return _dataset(tables or [_table(features, [[] for _ in features])])


def build_train_samples(
    behaviors: Dataset, news_index: dict[str, int], max_history_length: int,
    stats: LoadStats | None = None,
) -> Dataset:
    """Turn impressions into training rows: one row per clicked candidate.

    Each row has ``history`` (list[int]: rows of the news table, oldest first, the most recent
    `max_history_length` known ids), ``positive`` (int: the clicked news) and ``negatives`` (list[int]: every
    known non-clicked candidate of the same impression, the pool `MTRecCollator` samples K negatives from).
    Rows come in impression order, then candidate order.

    Unknown history and candidate ids are dropped and counted per id (``"unknown_history_ids"``,
    ``"unknown_candidate_ids"``). An impression left with no click (including one whose clicked candidates
    were all unknown, and every impression of the unlabelled test split) is skipped and counted under
    ``"impressions_without_click"``; one left with no non-click under ``"impressions_without_non_click"``. An
    impression whose history is empty after dropping unknown ids is kept (the model uses r_u = 0) and counted
    once under ``"empty_history"``.

    Args:
        behaviors: the output of `read_behaviors` (``history``, ``candidates`` and ``clicks`` are used).
        news_index: news id -> row of the news table.
        max_history_length: most recent clicks kept per user (the model's own, e.g. MTRec follows NRMS: 50).
        stats: where to count problems; when ``None`` a local `LoadStats` is used and logged at the end.
    """

    def make_table(b: _ImpressionBatch, stats: LoadStats) -> pa.Table:
        positive = (b.rows >= 0) & (b.clicks == 1)
        negative = (b.rows >= 0) & (b.clicks == 0)
        num_positives = np.bincount(b.parents[positive], minlength=b.num_impressions)  # (num_impressions,)
        num_negatives = np.bincount(b.parents[negative], minlength=b.num_impressions)
        without_click = num_positives == 0
        kept = b.count(stats, without_click, ~without_click & (num_negatives == 0))
        negatives = _list_array(num_negatives, b.rows[negative].astype(np.int32))  # one pool per impression
        chosen = positive & kept[b.parents]  # the clicks that become rows
        impression = pa.array(b.parents[chosen])  # (num_rows,): each row's impression in the batch
        columns = [b.history.take(impression), pa.array(b.rows[chosen].astype(np.int32)), negatives.take(impression)]
        return pa.Table.from_arrays(columns, schema=_TRAIN_FEATURES.arrow_schema)

    return _build(
        behaviors, news_index, max_history_length, stats, [], _TRAIN_FEATURES, make_table, "build_train_samples"
    )


def build_eval_impressions(
    behaviors: Dataset, news_index: dict[str, int], max_history_length: int,
    stats: LoadStats | None = None, *, keep_unlabelled: bool = True,
) -> Dataset:
    """Turn impressions into evaluation rows: one row per impression, scored as a ranking of its candidates.

    Each row has ``impression_id`` (str), ``history`` (list[int], as in `build_train_samples`),
    ``candidates`` (list[int]: the known candidates in impression order) and ``labels`` (list[int] aligned
    with ``candidates``: 1 / 0, or -1 throughout for MIND's unlabelled test split).

    Unknown ids are dropped and counted as in `build_train_samples`. A labelled impression left with no click
    or no non-click is left out (AUC is undefined for it) and counted under ``"impressions_without_click"`` /
    ``"impressions_without_non_click"``. An unlabelled impression (test split) is kept as long as one of its
    candidates is known, so that predictions can be written for it; one with no known candidate is counted
    under ``"impressions_without_click"``. With ``keep_unlabelled=False`` (what `load_mind` asks for: its eval
    rows are for metrics) every unlabelled impression is left out and counted under ``"unlabelled_impressions"``
    instead. Empty histories are kept and counted under ``"empty_history"``.

    Args:
        behaviors: the output of `read_behaviors` (``impression_id``, ``history``, ``candidates`` and
            ``clicks`` are used).
        news_index: news id -> row of the news table.
        max_history_length: most recent clicks kept per user (the model's own, e.g. MTRec follows NRMS: 50).
        stats: where to count problems; when ``None`` a local `LoadStats` is used and logged at the end.
    """

    def make_table(b: _ImpressionBatch, stats: LoadStats) -> pa.Table:
        known = b.rows >= 0
        unlabelled = np.zeros(b.num_impressions, dtype=bool)  # read_behaviors never mixes -1 with 0 / 1
        unlabelled[b.parents[b.clicks == -1]] = True
        num_known = np.bincount(b.parents[known], minlength=b.num_impressions)  # (num_impressions,)
        num_positives = np.bincount(b.parents[known & (b.clicks == 1)], minlength=b.num_impressions)
        num_negatives = np.bincount(b.parents[known & (b.clicks == 0)], minlength=b.num_impressions)
        left_unlabelled = unlabelled & (not keep_unlabelled)
        without_click = np.where(unlabelled, num_known == 0, num_positives == 0) & ~left_unlabelled
        kept = b.count(stats, without_click, ~unlabelled & ~without_click & (num_negatives == 0), left_unlabelled)
        columns = [
            b.table.column("impression_id").combine_chunks(),
            b.history,
            _list_array(num_known, b.rows[known].astype(np.int32)),
            _list_array(num_known, b.clicks[known].astype(np.int8)),
        ]
        return pa.Table.from_arrays(columns, schema=_EVAL_FEATURES.arrow_schema).filter(pa.array(kept))

    return _build(
        behaviors, news_index, max_history_length, stats, ["impression_id"], _EVAL_FEATURES, make_table,
        "build_eval_impressions",
    )


def build_retrieval_samples(
    behaviors: Dataset, news_index: dict[str, int], max_history_length: int,
    stats: LoadStats | None = None,
) -> Dataset:
    """One row per click: ``user_key`` (int64, `stable_key` of the user id), ``history`` (list[int]: news rows,
    oldest first, the most recent `max_history_length` known ones) and ``positive`` (int: the clicked news row).

    Unlike `build_train_samples`, impressions without a non-click are kept (a retriever needs no impression
    negatives). Unknown history / candidate ids are dropped and counted as in the MIND builders. An impression
    that yields no row is counted: under ``"unlabelled_impressions"`` (MIND's test split) or
    ``"impressions_without_click"`` (no known clicked candidate).
    """

    def make_table(b: _ImpressionBatch, stats: LoadStats) -> pa.Table:
        users = np.array([stable_key(u) for u in b.table.column("user_id").to_pylist()], dtype=np.int64)
        chosen = (b.rows >= 0) & (b.clicks == 1)
        unlabelled = np.zeros(b.num_impressions, dtype=bool)
        unlabelled[b.parents[b.clicks == -1]] = True
        without_click = ~unlabelled & (np.bincount(b.parents[chosen], minlength=b.num_impressions) == 0)
        b.count(stats, without_click, np.zeros_like(without_click), unlabelled)
        impression = b.parents[chosen]  # (num_rows,): each click's impression in the batch
        columns = [
            pa.array(users[impression]), b.history.take(pa.array(impression)), pa.array(b.rows[chosen].astype(np.int32))
        ]
        return pa.Table.from_arrays(columns, schema=_RETRIEVAL_FEATURES.arrow_schema)

    return _build(
        behaviors, news_index, max_history_length, stats, ["user_id"], _RETRIEVAL_FEATURES, make_table,
        "build_retrieval_samples",
    )
