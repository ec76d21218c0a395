"""Counts of the problems met while loading data, so that nothing is dropped silently, and `BadRows`, the one rule
for a bad row of any reader: an error naming ``file:line``, or (lenient) a counted, logged skip.

Real MIND files are mostly clean, but behaviours reference news that are missing from the split's news file,
impressions lose their only click when that news is unknown, and entity offsets sometimes do not match the
title. Every reader, sample builder and tokeniser takes a `LoadStats` and counts what it skipped or repaired
under one of the `KNOWN_REASONS`; `load_mind` logs the totals once, so a user sees e.g.
"12 unknown_candidate_ids" instead of quietly training on less data than they think.
"""

from __future__ import annotations

import collections
import logging

__all__ = ["KNOWN_REASONS", "MAX_ROW_WARNINGS", "BadRows", "LoadStats"]

_logger = logging.getLogger(__name__)
MAX_ROW_WARNINGS = 10  # skipped rows logged per file: enough to diagnose, few enough not to flood the log

# The exact keys the data pipeline counts under (one place, so a typo in a reader shows up in review).
KNOWN_REASONS: tuple[str, ...] = (
    "malformed_rows_skipped",  # a row with the wrong column count / bad token, skipped with lenient=True
    "header_rows",  # a header row (news_id, category, ... / impression_id, user_id, ...): skipped
    "duplicate_news_ids",  # a news id seen again in news.tsv; the first occurrence is kept
    "duplicate_impression_ids",  # an impression id seen again in behaviors.tsv: skipped with lenient=True
    "unknown_history_ids",  # a history id missing from the news table (counted per id)
    "unknown_candidate_ids",  # an impression candidate missing from the news table (counted per id)
    "duplicate_candidates",  # a candidate repeating a news of the same impression (kept)
    "empty_history",  # an impression whose history is empty after dropping unknown ids (kept: r_u = 0)
    "impressions_without_click",  # skipped: nothing to learn from / AUC undefined
    "impressions_without_non_click",  # skipped: no negative to sample / AUC undefined
    "unlabelled_impressions",  # an impression in MIND's test format (no -0/-1 labels), left out of metrics
    "broken_entity_json",  # title_entities that is not valid JSON in the expected shape
    "entity_offset_mismatch",  # an entity's surface form not found at its OccurrenceOffsets
    "unknown_category",  # a category missing from category2id (category_label = -100)
    "empty_category",  # a news without a category: no category label (-100), never a class of its own
    "empty_title",  # a news whose title is empty or blank: kept, but a text encoder gets no word from it
    "title_without_words",  # a title without a letter or digit (e.g. emoji only): kept, counted as above
    "overlapping_entity_spans",  # two entity mentions of a title overlap: merged into one span
    "title_truncated_entities",  # an entity cut off by max_title_length
    "impressions_without_known_candidate",  # prediction file: ranks 1..n in input order (inference.predict_ranks)
    # the readers of other corpora (data/ebnerd.py, xmind.py, adressa.py, tables.py)
    "ner_clusters_not_in_title",  # EB-NeRD: an ner_clusters entry not found in the title (no NER tag for it)
    "ner_mentions_inside_longer",  # EB-NeRD: a mention inside a longer one already placed (the longer one wins)
    "users_without_history",  # EB-NeRD: a behaviors user missing from history.parquet (empty history)
    "clicks_not_in_view",  # EB-NeRD: a clicked article not among the impression's inview articles
    "beyond_accuracy_impressions",  # EB-NeRD test set: is_beyond_accuracy rows, not evaluated; predicted last
    "duplicate_history_users",  # EB-NeRD: a user with several history rows; the first is kept
    "entity_annotations_dropped",  # xMIND: MIND's entity offsets do not carry over to a translation
    "untranslated_news",  # xMIND: a MIND news without a translation: left out (its ids then count as unknown)
    "translations_without_mind_news",  # xMIND: a translation of a news missing from MIND's news.tsv
    "non_article_events",  # Adressa: an event without an article id (a front page): skipped
    "repeated_clicks",  # Adressa: a user's second click on the same article: skipped
    "impressions_without_negatives",  # Adressa: no unread article of the day to sample as a negative
    "news_without_title",  # Adressa: an article id never seen with a title
)


class LoadStats(collections.Counter):
    """A `collections.Counter` of loading problems keyed by snake_case reason (see `KNOWN_REASONS`).

    It is a plain Counter (``stats["empty_history"] += 1``, ``stats.update(other)``, ``stats + other``), so
    stats from several readers merge for free; unknown keys are allowed so that a new reader does not have
    to edit this file first, but the pipeline itself only uses `KNOWN_REASONS`.

    Example:
        >>> stats = LoadStats()
        >>> stats["unknown_history_ids"] += 3
        >>> stats.as_dict()
        {'unknown_history_ids': 3}
    """

    def as_dict(self) -> dict[str, int]:
        """Non-zero counts as a plain ``dict`` (sorted by reason), e.g. for `Trainer.log` or a JSON report."""
        return {reason: int(count) for reason, count in sorted(self.items()) if count}

    def log(self, logger: logging.Logger, what: str) -> None:
        """Log one WARNING line listing every non-zero count, or one INFO line saying there were no problems.

        One line per load (not one per row) keeps the log readable on MIND-large, where unknown ids number
        in the thousands.
        """
        counts = self.as_dict()
        if not counts:
            logger.info("%s: no problems", what)
            return
        listing = ", ".join(f"{count} {reason}" for reason, count in counts.items())
        logger.warning("%s: %s", what, listing)


class BadRows:
    """The rule of every reader for a bad row: raise `error` naming the file and the row, or with ``lenient=True``
    count it in `stats`, warn (the first `MAX_ROW_WARNINGS` of the file) and let the caller skip it.

    Args:
        path: the file, as the messages name it.
        lenient: count and skip instead of raising.
        stats: where skipped rows are counted.
        error: the reader's error class (e.g. `MINDFormatError`); its message starts with ``f"{path}:{where}: "``.
        logger: where the warnings go (the reader's logger).

    Example:
        >>> bad_row = BadRows("news.tsv", lenient=True, stats=LoadStats(), error=ValueError)
        >>> bad_row(3, "empty news id")  # logs "skipping malformed row: news.tsv:3: empty news id"
        >>> bad_row.stats.as_dict(), bad_row.skipped
        ({'malformed_rows_skipped': 1}, 1)
    """

    def __init__(
        self,
        path: str,
        lenient: bool,
        stats: LoadStats,
        *,
        error: type[Exception],
        logger: logging.Logger | None = None,
    ) -> None:
        self.path = path
        self.lenient = lenient
        self.stats = stats
        self.error = error
        self.logger = _logger if logger is None else logger
        self.skipped = 0

    def __call__(self, where: int | str, problem: str, reason: str = "malformed_rows_skipped") -> None:
        """A bad row at `where` (a 1-based line, or e.g. ``"row 3"``); counted under `reason` when lenient."""
        message = f"{self.path}:{where}: {problem}"
        if not self.lenient:
            raise self.error(message)
        self.stats[reason] += 1
        self.skipped += 1
        if self.skipped <= MAX_ROW_WARNINGS:
            self.logger.warning("skipping malformed row: %s", message)
        if self.skipped == MAX_ROW_WARNINGS:
            self.logger.warning("%s: further malformed rows are skipped and counted, but not logged", self.path)
