"""Impression scores and fast evaluation: AUC / MRR / nDCG@5 / nDCG@10 over MIND impressions from item vectors
encoded once.

The Trainer's default prediction loop ("the slow path") re-encodes, batch after batch, every distinct news of the
batch's impressions with BERT; on MIND a news is mentioned by hundreds of impressions, so nearly all of that work
is repeated. `fast_evaluate` encodes each news once (`encode_item_table`, kept in a `modeling_mtrec.vectors.
NewsVectorCache` by `news_vector_cache`), then each impression costs
one user-encoder pass and a dot product (`modeling_mtrec.scoring.score_impressions`). The metric definitions are
those of `modeling_mtrec.evaluation.metrics` (the slow path's), so both paths give the same numbers.

It is written against the scoring interface (`modeling_mtrec.scoring`), so it evaluates any model of the package:
MTRec over a tokenised news table, the two-tower retriever over `ItemFeatures` (with ``user_columns=("user_key",)``
when the impressions carry the users' keys).

NOTE: the fast path runs the model in eval mode (no dropout), as the slow path does; the user vector and scores
are the model's own `encode_users` and `score`, so the fast path adds no model code of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from ..models.mtrec.processing_mtrec import (
    entity_field_ids,
    multi_field_batch,
    title_batches,
    title_pad_token_id,
)
from ..models.two_tower.features import ItemFeatures
from ..scoring import ScoringModel, encode_item_batches, score_impressions
from ..vectors import NewsVectorCache
from .beyond_accuracy import beyond_accuracy_metrics
from .metrics import impression_metrics

__all__ = ["encode_item_table", "fast_evaluate", "impression_scores", "news_vector_cache"]


def _item_batches(
    model: ScoringModel, items: Dataset | ItemFeatures, batch_size: int, sort_by_length: bool
) -> Iterator[tuple[list[int], Mapping[str, torch.Tensor]]]:
    """`encode_items` inputs for a table of items: the two-tower's `ItemFeatures`, or MTRec's tokenised titles."""
    if isinstance(items, ItemFeatures):
        return items.batches(batch_size)
    if "input_ids" not in items.column_names:
        raise ValueError(f"the news table lacks input_ids (has {items.column_names}); build it with tokenize_news")
    token_lists = items.select_columns(["input_ids"]).with_format(None)[:]["input_ids"]
    batches = title_batches(token_lists, title_pad_token_id(model.config), batch_size, sort_by_length=sort_by_length)
    if not getattr(model.config, "use_multi_field", False):
        return batches
    # MTRec's multi-field variant also reads each news' category and entities.
    fields = items.select_columns(["category_label", "title_entities"]).with_format(None)[:]
    entities = [entity_field_ids(value, model.config.num_entity_buckets) for value in fields["title_entities"]]
    return ((rows, {**inputs, **multi_field_batch(fields["category_label"], entities, rows)}) for rows, inputs in batches)


def encode_item_table(
    model: ScoringModel,
    items: Dataset | ItemFeatures,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    sort_by_length: bool = True,
) -> torch.Tensor:
    """The vectors (N, D), float32 on CPU, of every row of an item table: MTRec's tokenised news table
    (`tokenize_news` / `MINDCorpus.news`; `sort_by_length` as in `processing_mtrec.title_batches`) or the
    two-tower's `ItemFeatures`."""
    return encode_item_batches(model, _item_batches(model, items, batch_size, sort_by_length), len(items), device=device)


def news_vector_cache(
    model: ScoringModel,
    news: Dataset | ItemFeatures,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    sort_by_length: bool = True,
    news_ids: Sequence[str] | None = None,
) -> NewsVectorCache:
    """A `NewsVectorCache` of every row of an item table, each encoded once: MTRec's tokenised news table
    (`tokenize_news` / `MINDCorpus.news`) or the two-tower's `ItemFeatures`.

    Row i of the cache is row i of `news`. The ids come from `news_ids`, else from the table's ``news_id`` column;
    a table without one (e.g. built by hand, or `ItemFeatures`) gets the row numbers as ids (``"0"``, ``"1"``, ...).
    For titles, `sort_by_length` (default) batches titles of similar length, about twice as fast; ``False`` pads
    every title to the longest one, which reproduces the Trainer's evaluation loop's float rounding exactly (see
    `processing_mtrec.title_batches`).
    """
    if news_ids is None:
        if "news_id" in (getattr(news, "column_names", None) or []):
            news_ids = news.select_columns(["news_id"]).with_format(None)[:]["news_id"]
        else:
            news_ids = [str(row) for row in range(len(news))]
    vectors = encode_item_table(model, news, batch_size=batch_size, device=device, sort_by_length=sort_by_length)
    return NewsVectorCache.for_model(model, news_ids, vectors)


def impression_scores(
    model: ScoringModel,
    news: Dataset | ItemFeatures | None,
    impressions: Dataset,
    *,
    batch_size: int = 256,
    cache: NewsVectorCache | None = None,
    device: str | torch.device | None = None,
    user_columns: Sequence[str] = (),
) -> list[np.ndarray]:
    """Click scores of every impression's candidates (one float32 array per impression, candidate order), from
    news vectors encoded once; `fast_evaluate` ranks them.

    NOTE: the cache's length-sorted batches pad titles to other widths than the slow path's batches, which
    changes scores by float32 rounding (~1e-7 relative). Two candidates whose scores are closer than that (an
    untrained model can score many candidates within 1e-5 of each other) may then swap ranks, moving a metric
    in its 5th decimal; build the cache with ``news_vector_cache(..., sort_by_length=False)`` to
    reproduce the slow path bit for bit (about 2.5x slower to build; see benchmarks/results/eval_speed.md).

    Args:
        model: a model of the scoring interface (`MTRecModel`, `TwoTowerModel`); put in eval mode for the call,
            its previous mode restored afterwards.
        news: the item table the impressions' rows point into: MTRec's tokenised news table (`MINDCorpus.news`)
            or the two-tower's `ItemFeatures`. May be ``None`` when `cache` was built from that same table.
        impressions: rows with ``history`` and ``candidates`` (rows of `news`), and the `user_columns`.
        batch_size: impressions per user-encoder pass (and items per encoder pass when building the vectors).
        cache: news vectors to use instead of encoding `news`; matched to `news` by ``news_id``. Its
            fingerprint is NOT checked here (that costs a hash of the encoder weights); use
            `NewsVectorCache.load(path, model)` or `cache.check(model)`.
        device: where to run; defaults to the model's device.
        user_columns: impression columns passed by name to the model's `encode_users` (e.g. ``("user_key",)``
            for the two-tower retriever); none for MTRec.
    """
    vectors = _item_vectors(model, news, cache, batch_size, device)
    return _scores_from_vectors(model, vectors, impressions, batch_size, device, user_columns)


def _item_vectors(model, news, cache, batch_size, device) -> torch.Tensor:
    """The vectors of every row of `news` (`impression_scores`' rule): encoded once, or read from `cache`."""
    if cache is None:
        if news is None:
            raise ValueError("impression_scores needs the news table or a cache")
        # Vectors only: a throw-away cache would also hash every encoder weight for its fingerprint.
        return encode_item_table(model, news, batch_size=batch_size, device=device)
    return cache.vectors if news is None else cache.aligned_to(news)


def _scores_from_vectors(model, vectors, impressions, batch_size, device, user_columns) -> list[np.ndarray]:
    table = impressions.select_columns(["history", "candidates", *user_columns]).with_format(None)[:]
    num_news = vectors.shape[0]
    for column in ("history", "candidates"):
        top = max((max(r) for r in table[column] if r), default=-1)
        if top >= num_news:
            raise ValueError(f"impression {column} row {top} is out of range for {num_news} news vectors")
    return score_impressions(
        model, vectors, table["history"], table["candidates"],
        user_inputs={name: table[name] for name in user_columns}, batch_size=batch_size, device=device,
    )


def fast_evaluate(
    model: ScoringModel,
    news,
    impressions: Dataset,
    *,
    beyond_accuracy_k: int | None = None,
    popularity: np.ndarray | None = None,
    **options: Any,
) -> dict[str, float]:
    """MIND metrics of `model` over `build_eval_impressions` rows, from news vectors encoded once.

    Same numbers as the slow path (`MTRecTrainer` with ``fast_eval=False``): the same impressions, the same
    scores up to float32 rounding (see `impression_scores`' NOTE), and the same metric functions
    (`impression_metrics`); impressions without a click or a non-click are skipped and counted alike.

    Args:
        model, news, options: as `impression_scores` (``batch_size``, ``cache``, ``device``, ``user_columns``).
        impressions: its rows, with ``labels`` (1/0) as well.
        beyond_accuracy_k: also the beyond-accuracy metrics of every impression's top-k
            (`modeling_mtrec.evaluation.beyond_accuracy.beyond_accuracy_metrics`, over all impressions, the
            skipped ones included): intra-list diversity, novelty and coverage over the news vectors the scores
            come from, and over categories when `news` is a table with a ``category`` column. None (default): none.
        popularity: ``(num_news,)`` click share of each news row in (0, 1], for the popularity novelty (with
            `beyond_accuracy_k`).

    Returns:
        ``{"auc", "mrr", "ndcg@5", "ndcg@10", "num_impressions", "num_skipped_impressions"}``, as
        `impression_metrics` (no loss: the auxiliary losses need per-token states that the cache does not keep),
        plus the beyond-accuracy metrics (``ild_vector@k``, ``novelty_category@k``, ``coverage_items@k``, ...) with
        `beyond_accuracy_k`.
    """
    labels = impressions.select_columns(["labels"]).with_format(None)[:]["labels"]
    if beyond_accuracy_k is None:
        return impression_metrics(labels, impression_scores(model, news, impressions, **options))
    if beyond_accuracy_k < 1:
        raise ValueError(f"beyond_accuracy_k must be >= 1, got {beyond_accuracy_k}")
    batch_size, device = options.get("batch_size", 256), options.get("device")
    vectors = _item_vectors(model, news, options.get("cache"), batch_size, device)
    scores = _scores_from_vectors(model, vectors, impressions, batch_size, device, options.get("user_columns", ()))
    metrics = impression_metrics(labels, scores)
    rows = impressions.select_columns(["history", "candidates"]).with_format(None)[:]
    categories = None
    if isinstance(news, Dataset) and "category" in news.column_names:
        categories = news.select_columns(["category"]).with_format(None)[:]["category"]
    metrics.update(beyond_accuracy_metrics(
        rows["candidates"], scores, beyond_accuracy_k, histories=rows["history"], categories=categories,
        vectors=vectors.float().cpu().numpy(), popularity=popularity,
    ))
    return metrics
