"""Counts of the problems met while loading MIND, so that nothing is dropped silently.

Real MIND files are mostly clean, but behaviours reference news that are missing from the split's news file,
impressions lose their only click when that news is unknown, and entity offsets sometimes do not match the
title. Every reader, sample builder and tokeniser takes a `LoadStats` and counts what it skipped or repaired
under one of the `KNOWN_REASONS`; `load_mind` logs the totals once, so a user sees e.g.
"12 unknown_candidate_ids" instead of quietly training on less data than they think.
"""

from __future__ import annotations

import collections
import logging

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
    "overlapping_entity_spans",  # two entity mentions of a title overlap: merged into one span
    "title_truncated_entities",  # an entity cut off by max_title_length
    "impressions_without_known_candidate",  # prediction file: ranks 1..n in input order (inference.predict_ranks)
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
