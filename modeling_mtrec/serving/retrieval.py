"""Serving and evaluating the two-tower retriever: item-vector export, faiss indexes, Recall@K, retrieve-then-rank.

Nearest-neighbour search is faiss's (exact `IndexFlatIP`, or approximate IVF / HNSW); the vectors are L2-normalised,
so inner product = cosine and the ranking is the model's (the temperature does not change the order).

Recall@K slices (by training clicks of the held-out clicked item): among the items clicked at least once in
training, `head` = the top `head_share` (20%) of them by click count (ties at the boundary included) and `tail` =
the rest; `cold` = items never clicked in training (e.g. news first seen in the eval split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import torch

from ..evaluation.metrics import recall_at_k
from ..models.two_tower.features import ItemFeatures

__all__ = [
    "RankedNews",
    "approximate_recall",
    "build_index",
    "encode_user_vectors",
    "evaluate_retrieval",
    "export_item_vectors",
    "item_slices",
    "retrieve_then_rank",
    "search",
]

INDEX_KINDS = ("flat", "ivf", "hnsw")


@torch.no_grad()
def export_item_vectors(model, items: ItemFeatures, batch_size: int = 4096) -> np.ndarray:
    """L2-normalised item vectors of every row of `items`, in eval mode. -> (num_items, output_dim) float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(items), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(items)))
        features = {k: v.to(device) for k, v in items.rows(rows).items()}
        chunks.append(model.encode_items(**features).float().cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float32)


def build_index(
    vectors: np.ndarray, kind: str = "flat", *, nlist: int | None = None, nprobe: int = 8,
    hnsw_m: int = 32, ef_search: int = 64, seed: int = 0,
) -> faiss.Index:
    """A faiss inner-product index over `vectors` (N, D).

    kind: "flat" (exact `IndexFlatIP`), "ivf" (`IndexIVFFlat`, `nlist` cells, default ~4 sqrt(N), `nprobe` probed)
    or "hnsw" (`IndexHNSWFlat` with `hnsw_m` links per node and `ef_search`).
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"vectors must be a non-empty (N, D) array, got shape {vectors.shape}")
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or max(1, min(len(vectors) // 39, int(4 * np.sqrt(len(vectors)))))  # faiss wants >= 39 per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = min(nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    index.add(vectors)
    return index


def search(
    index: faiss.Index, queries: np.ndarray, k: int, exclude: Sequence[Sequence[int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) per query (Q, k), skipping each query's `exclude` rows (e.g. its history).

    faiss is asked for k + the longest exclusion list, so k rows remain after filtering (-1 / -inf pad when the
    index holds fewer).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
    fetch = min(k + extra, index.ntotal)
    scores, rows = index.search(queries, fetch)  # (Q, fetch)
    if not extra:
        return _pad(scores, rows, k)
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_rows = np.full((len(queries), k), -1, dtype=np.int64)
    for q, banned in enumerate(exclude):
        keep = ~np.isin(rows[q], np.asarray(banned, dtype=np.int64)) & (rows[q] >= 0)
        kept_rows, kept_scores = rows[q][keep][:k], scores[q][keep][:k]
        out_rows[q, : len(kept_rows)], out_scores[q, : len(kept_rows)] = kept_rows, kept_scores
    return out_scores, out_rows


def _pad(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if rows.shape[1] >= k:
        return scores[:, :k], rows[:, :k]
    pad = k - rows.shape[1]
    return (np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf), np.pad(rows, ((0, 0), (0, pad)), constant_values=-1))


@torch.no_grad()
def encode_user_vectors(
    model, item_vectors: np.ndarray, user_keys: Sequence[int], histories: Sequence[Sequence[int]]
) -> np.ndarray:
    """User vectors from user keys and clicked rows, pooling the exported `item_vectors`. -> (B, D) float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    width = max(1, max((len(h) for h in histories), default=0))
    index = torch.zeros(len(histories), width, dtype=torch.long)
    mask = torch.zeros(len(histories), width, dtype=torch.bool)
    for i, h in enumerate(histories):
        index[i, : len(h)], mask[i, : len(h)] = torch.as_tensor(list(h), dtype=torch.long), True
    history = torch.from_numpy(item_vectors)[index].to(device)  # (B, H, D)
    users = model.encode_users(torch.as_tensor(list(user_keys), dtype=torch.long, device=device), history, mask.to(device))
    model.train(was_training)
    return users.float().cpu().numpy()


def item_slices(train_counts: np.ndarray, head_share: float = 0.2) -> dict[str, np.ndarray]:
    """Boolean (num_items,) masks "head", "tail", "cold" (see module docstring)."""
    if not 0 < head_share < 1:
        raise ValueError(f"head_share must be in (0, 1), got {head_share}")
    counts = np.asarray(train_counts)
    clicked = counts > 0
    if not clicked.any():
        return {"head": np.zeros_like(clicked), "tail": np.zeros_like(clicked), "cold": ~clicked}
    ordered = np.sort(counts[clicked])[::-1]
    threshold = ordered[max(0, int(np.ceil(head_share * len(ordered))) - 1)]
    head = counts >= threshold
    return {"head": head & clicked, "tail": clicked & ~head, "cold": ~clicked}


def evaluate_retrieval(
    model,
    items: ItemFeatures,
    samples,
    train_counts: np.ndarray,
    *,
    ks: Sequence[int] = (10, 50, 100),
    index: faiss.Index | None = None,
    item_vectors: np.ndarray | None = None,
    head_share: float = 0.2,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Recall@K of held-out clicks against the whole item corpus, overall and per slice (head / tail / cold).

    `samples` are `build_retrieval_samples` rows (one query per click; the user's history is excluded from the
    results, as a retriever would not re-recommend read news). Returns ``recall@k``, ``{slice}_recall@k``,
    ``random_recall@k`` (expected recall of a uniformly random ranking), and ``num_queries`` / ``num_{slice}``.
    """
    if item_vectors is None:
        item_vectors = export_item_vectors(model, items)
    if index is None:
        index = build_index(item_vectors, "flat")
    if hasattr(samples, "select_columns"):  # a Dataset: to_dict honours any select / shuffle indices
        samples = samples.select_columns(["user_key", "history", "positive"]).to_dict()
    user_keys, histories = samples["user_key"], samples["history"]
    positives = np.asarray(samples["positive"], dtype=np.int64)
    if len(positives) == 0:
        raise ValueError("evaluate_retrieval needs at least one held-out click")
    top = max(ks)
    ranked = []
    for start in range(0, len(positives), batch_size):
        stop = start + batch_size
        users = encode_user_vectors(model, item_vectors, user_keys[start:stop], histories[start:stop])
        ranked.append(search(index, users, top, exclude=histories[start:stop])[1])
    ranked = np.concatenate(ranked) if ranked else np.zeros((0, top), dtype=np.int64)
    slices = item_slices(train_counts, head_share)
    metrics: dict[str, float] = {"num_queries": float(len(positives))}
    for k in ks:
        metrics[f"recall@{k}"] = recall_at_k(ranked, positives, k)
        metrics[f"random_recall@{k}"] = float(np.mean([min(1.0, k / max(1, len(items) - len(h))) for h in histories]))
    for name, mask in slices.items():
        chosen = mask[positives]
        metrics[f"num_{name}"] = float(chosen.sum())
        for k in ks:
            metrics[f"{name}_recall@{k}"] = recall_at_k(ranked[chosen], positives[chosen], k) if chosen.any() else float("nan")
    return metrics


def approximate_recall(exact: faiss.Index, approximate: faiss.Index, queries: np.ndarray, k: int) -> float:
    """Share of the exact top-k that the approximate index also returns in its top-k (mean over queries)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = exact.search(queries, k)
    _, found = approximate.search(queries, k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth.tolist(), found.tolist())]))


@dataclass
class RankedNews:
    """One recommended news: its row, the two-tower (retrieval) score and the MTRec (ranking) score."""

    row: int
    retrieval_score: float
    rank_score: float


def _pad_titles(titles: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(t) for t in titles)
    ids = torch.full((len(titles), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(titles), width, dtype=torch.long)
    for i, t in enumerate(titles):
        ids[i, : len(t)], mask[i, : len(t)] = torch.as_tensor(list(t), dtype=torch.long), 1
    return ids, mask  # (N, L) each


@torch.no_grad()
def retrieve_then_rank(
    user_key: int,
    history: Sequence[int],
    two_tower,
    index: faiss.Index,
    items: ItemFeatures,
    mtrec_model,
    news_input_ids: Sequence[Sequence[int]],
    *,
    k: int = 100,
    top_n: int | None = 10,
    pad_token_id: int = 0,
) -> list[RankedNews]:
    """Retrieves the top `k` news for one user with the two-tower model and re-ranks them with MTRec.

    Args:
        user_key: `stable_key` of the user id.
        history: the user's clicked news rows, oldest first (excluded from the results).
        two_tower: a `TwoTowerModel`; index: a faiss index over its exported item vectors (rows = news rows).
        items: the `ItemFeatures` of those rows (the history goes through the item tower).
        mtrec_model: a trained `MTRecModel`; news_input_ids: tokenised titles per news row (`tokenize_news`'s
            ``input_ids`` column, same rows), padded here with `pad_token_id`.
        k: how many news to retrieve; top_n: how many re-ranked news to return (None: all k).

    Returns:
        `RankedNews` sorted by MTRec's score, best first.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(news_input_ids) != len(items) or index.ntotal != len(items):
        raise ValueError(
            f"rows disagree: {len(items)} item features, {len(news_input_ids)} tokenised titles, "
            f"{index.ntotal} index vectors"
        )
    history = [int(h) for h in history]
    device = next(two_tower.parameters()).device
    two_tower.eval()
    mtrec_model.eval()
    # 1. Retrieve: the user vector pools the history's item-tower vectors, then faiss finds the top k.
    history_vectors = two_tower.encode_items(**{n: v.to(device) for n, v in items.rows(history).items()})  # (H, D)
    user = two_tower.encode_users(
        torch.tensor([user_key], dtype=torch.long, device=device), history_vectors[None],
        torch.ones(1, len(history), dtype=torch.bool, device=device),
    )  # (1, D)
    scores, rows = search(index, user.float().cpu().numpy(), k, exclude=[history])
    keep = rows[0] >= 0
    candidates, retrieval_scores = rows[0][keep].tolist(), scores[0][keep].tolist()
    if not candidates:
        return []
    # 2. Rank: MTRec encodes the candidates' and the history's titles, pools the history, scores by dot product.
    mtrec_device = next(mtrec_model.parameters()).device
    ids, mask = _pad_titles([news_input_ids[r] for r in candidates + history], pad_token_id)
    news = mtrec_model.encode_news(ids.to(mtrec_device), mask.to(mtrec_device))  # (K + H, D)
    candidate_vectors, history_news = news[: len(candidates)], news[len(candidates):]
    user_vector = mtrec_model.encode_user(
        history_news[None], torch.ones(1, len(history), dtype=torch.bool, device=mtrec_device)
    )  # (1, D); r_u = 0 for an empty history
    rank_scores = mtrec_model.score(user_vector, candidate_vectors[None])[0].float().cpu()  # (K,)
    order = torch.argsort(rank_scores, descending=True, stable=True).tolist()
    ranked = [RankedNews(candidates[i], float(retrieval_scores[i]), float(rank_scores[i])) for i in order]
    return ranked if top_n is None else ranked[:top_n]
