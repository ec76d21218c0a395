"""Beyond-accuracy metrics of the top-k: intra-list diversity, novelty and coverage, over categories and news vectors.

EB-NeRD's benchmark (Kruse et al., RecSys Challenge 2024, the ``ebrec`` package) and NewsRecLib (Iana et al., SIGIR
2023) report such metrics beside AUC, MRR and nDCG; the definitions follow Kaminskas & Bridge, "Diversity,
Serendipity, Novelty, and Coverage: A Survey and Empirical Analysis of Beyond-Accuracy Objectives in Recommender
Systems", ACM TiiS 7(1), 2016. With ``R`` a recommended list of ``k`` news, ``H`` the user's history and ``d`` a
distance between two news:

* **intra-list diversity**: ``ILD(R) = 2 / (k (k - 1)) * sum_{i < j} d(r_i, r_j)``, the mean distance over the pairs
  of the list (undefined for k < 2: such lists are left out of means).
* **novelty** (distance-based): ``nov(R, H) = 1 / k * sum_{r in R} 1 / |H| * sum_{h in H} d(r, h)``, how far the
  recommendations lie from what the user read (undefined for an empty history: left out of means);
  **popularity novelty**: ``1 / k * sum_{r in R} -log2 p(r)``, the mean self-information of the recommended news,
  ``p(r)`` the share of users (or impressions) that clicked ``r`` (EB-NeRD's and NewsRecLib's novelty).
* **coverage**: ``|union of the top-k lists| / |catalog|`` over news, and the same over categories: the share of
  the catalog some user is recommended.

Two distances: over categories ``d(a, b) = 1`` when the categories differ, else 0; over news vectors the cosine
distance ``d(a, b) = 1 - cos(v_a, v_b)`` (a zero vector has cosine 0 with everything). The top-k of an impression
ranks its candidates by descending score, equal scores in impression order, as the accuracy metrics do
(`modeling_mtrec.evaluation.metrics`). Everything is plain numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "beyond_accuracy_metrics",
    "category_coverage",
    "category_intra_list_diversity",
    "category_novelty",
    "item_coverage",
    "popularity_novelty",
    "top_k",
    "vector_intra_list_diversity",
    "vector_novelty",
]


def top_k(scores: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` highest scores, best first; equal scores keep their order (a stable sort on
    ``-score``, the accuracy metrics' tie rule). Fewer than `k` scores give them all."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-scores, kind="stable")[:k]


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"news vectors must be a (n, dim) array, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def category_intra_list_diversity(categories: Sequence[Any]) -> float:
    """ILD with the category distance: the share of pairs of the list whose categories differ; NaN when k < 2.

    Example: ``["sports", "sports", "news"]``: pairs (s, s), (s, n), (s, n) -> 2 / 3.
    """
    values = list(categories)
    k = len(values)
    if k < 2:
        return float("nan")
    different = sum(values[i] != values[j] for i in range(k) for j in range(i + 1, k))
    return different / (k * (k - 1) / 2)


def vector_intra_list_diversity(vectors: np.ndarray) -> float:
    """ILD with the cosine distance: the mean ``1 - cos`` over the pairs of the list's vectors ``(k, dim)``; NaN when
    k < 2."""
    unit = _unit(vectors)
    k = len(unit)
    if k < 2:
        return float("nan")
    similarity = unit @ unit.T  # (k, dim) @ (dim, k) -> (k, k)
    upper = np.triu_indices(k, 1)
    return float(np.mean(1.0 - similarity[upper]))


def category_novelty(categories: Sequence[Any], history_categories: Sequence[Any]) -> float:
    """Distance-based novelty with the category distance: for each recommended news, the share of the history in
    another category, averaged over the list; NaN for an empty list or history.

    Example: list ``["sports", "news"]``, history ``["sports", "sports", "finance"]``: 1/3 and 3/3 -> 2/3.
    """
    values, history = list(categories), list(history_categories)
    if not values or not history:
        return float("nan")
    return float(np.mean([sum(c != h for h in history) / len(history) for c in values]))


def vector_novelty(vectors: np.ndarray, history_vectors: np.ndarray) -> float:
    """Distance-based novelty with the cosine distance: the mean ``1 - cos`` between the list's vectors ``(k, dim)``
    and the history's ``(h, dim)``; NaN for an empty list or history."""
    if len(vectors) == 0 or len(history_vectors) == 0:
        return float("nan")
    similarity = _unit(vectors) @ _unit(history_vectors).T  # (k, dim) @ (dim, h) -> (k, h)
    return float(np.mean(1.0 - similarity))


def popularity_novelty(popularity: Sequence[float] | np.ndarray) -> float:
    """Mean self-information ``-log2 p`` of the recommended news, given each one's popularity ``p`` in (0, 1] (the
    share of users or impressions that clicked it; smooth it for news nobody clicked). NaN for an empty list.

    Example: popularities ``[0.5, 0.25]`` -> (1 + 2) / 2 = 1.5 bits.
    """
    p = np.asarray(popularity, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    if np.any(p <= 0) or np.any(p > 1):
        raise ValueError("popularity must lie in (0, 1]: smooth the popularity of news nobody clicked")
    return float(np.mean(-np.log2(p)))


def item_coverage(top_k_lists: Iterable[Sequence[Any]], num_items: int) -> float:
    """The share of a catalog of `num_items` news that appears in at least one top-k list."""
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    return len({item for items in top_k_lists for item in items}) / num_items


def category_coverage(top_k_categories: Iterable[Sequence[Any]], num_categories: int) -> float:
    """The share of `num_categories` categories that appears in at least one top-k list (given as categories)."""
    if num_categories < 1:
        raise ValueError(f"num_categories must be >= 1, got {num_categories}")
    return len({category for categories in top_k_categories for category in categories}) / num_categories


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def beyond_accuracy_metrics(
    candidates: Sequence[Sequence[int]],
    scores: Sequence[Sequence[float]],
    k: int,
    *,
    histories: Sequence[Sequence[int]] | None = None,
    categories: Sequence[Any] | None = None,
    vectors: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    num_items: int | None = None,
) -> dict[str, float]:
    """The beyond-accuracy metrics of the top-`k` of every impression, averaged over impressions (an impression whose
    value is undefined, e.g. ILD of a single candidate or novelty without history, is left out of that mean).

    Args:
        candidates: per impression, the candidates' rows in the news table.
        scores: per impression, the model's scores aligned with `candidates`.
        k: the cut-off.
        histories: per impression, the history's rows (for the distance-based novelty).
        categories: category of each news row (for the category metrics).
        vectors: ``(num_news, dim)`` news vectors (for the vector metrics).
        popularity: ``(num_news,)`` click share of each news in (0, 1] (for the popularity novelty).
        num_items: catalog size for the item coverage (default: the news rows any impression offers). The
            category coverage is over the categories any impression offers.

    Returns:
        ``{f"ild_category@{k}", f"ild_vector@{k}", f"novelty_category@{k}", f"novelty_vector@{k}",
        f"novelty_popularity@{k}", f"coverage_items@{k}", f"coverage_categories@{k}"}``, those the inputs allow.
    """
    if len(candidates) != len(scores):
        raise ValueError(f"{len(candidates)} candidate lists for {len(scores)} score lists")
    if histories is not None and len(histories) != len(candidates):
        raise ValueError(f"{len(histories)} histories for {len(candidates)} impressions")
    lists = []
    for rows, values in zip(candidates, scores):
        rows = np.asarray(rows)
        if len(rows) != len(values):
            raise ValueError(f"{len(rows)} candidates for {len(values)} scores")
        lists.append(rows[top_k(values, k)] if len(rows) else rows)
    results: dict[str, float] = {}
    if categories is not None:
        categories = np.asarray(categories, dtype=object)
        results[f"ild_category@{k}"] = _nanmean([category_intra_list_diversity(categories[r]) for r in lists])
        if histories is not None:
            results[f"novelty_category@{k}"] = _nanmean(
                [category_novelty(categories[r], categories[np.asarray(h, dtype=int)]) for r, h in zip(lists, histories)]
            )
        offered = {c for rows in candidates for c in categories[np.asarray(rows, dtype=int)]}
        results[f"coverage_categories@{k}"] = category_coverage([categories[r] for r in lists], max(len(offered), 1))
    if vectors is not None:
        vectors = np.asarray(vectors)
        results[f"ild_vector@{k}"] = _nanmean([vector_intra_list_diversity(vectors[r]) for r in lists])
        if histories is not None:
            results[f"novelty_vector@{k}"] = _nanmean(
                [vector_novelty(vectors[r], vectors[np.asarray(h, dtype=int)]) for r, h in zip(lists, histories)]
            )
    if popularity is not None:
        popularity = np.asarray(popularity, dtype=np.float64)
        results[f"novelty_popularity@{k}"] = _nanmean([popularity_novelty(popularity[r]) for r in lists])
    catalog = num_items if num_items is not None else len({int(c) for rows in candidates for c in rows})
    results[f"coverage_items@{k}"] = item_coverage([r.tolist() for r in lists], max(catalog, 1))
    return results
