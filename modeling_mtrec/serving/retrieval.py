"""Serving the two-tower retriever: item-vector export and retrieve-then-rank with MTRec.

Nearest-neighbour search is faiss's, through `modeling_mtrec.vectors.build_index` / `search` (exact `IndexFlatIP`,
or approximate IVF / HNSW); the vectors are L2-normalised, so inner product = cosine and the ranking is the model's
(the temperature does not change the order). Recall@K of the retriever is `modeling_mtrec.evaluation.retrieval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..models.mtrec.processing_mtrec import MULTI_FIELD_NEEDS, multi_field_batch, title_batches
from ..models.two_tower.features import ItemFeatures
from ..scoring import encode_item_batches, encode_users_from_vectors, score_impressions
from ..vectors import search

if TYPE_CHECKING:
    import faiss

__all__ = [
    "RankedNews",
    "encode_user_vectors",
    "export_item_vectors",
    "retrieve_then_rank",
]


def export_item_vectors(model, items: ItemFeatures, batch_size: int = 4096) -> np.ndarray:
    """L2-normalised item vectors of every row of `items`, in eval mode. -> (num_items, output_dim) float32."""
    return encode_item_batches(model, items.batches(batch_size), len(items)).numpy()


def encode_user_vectors(
    model, item_vectors: np.ndarray, user_keys: Sequence[int], histories: Sequence[Sequence[int]]
) -> np.ndarray:
    """User vectors from user keys and clicked rows, pooling the exported `item_vectors`. -> (B, D) float32."""
    vectors = torch.from_numpy(np.ascontiguousarray(item_vectors))
    users = encode_users_from_vectors(
        model, vectors, histories, user_inputs={"user_key": list(user_keys)}, batch_size=max(1, len(histories))
    )
    return users.numpy()


@dataclass
class RankedNews:
    """One recommended news: its row, the two-tower (retrieval) score and the MTRec (ranking) score."""

    row: int
    retrieval_score: float
    rank_score: float


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
    news_fields: tuple[Sequence[int], Sequence[Sequence[int]]] | None = None,
) -> list[RankedNews]:
    """Retrieves the top `k` news for one user with the two-tower model and re-ranks them with MTRec.

    Both models go through the scoring interface (`modeling_mtrec.scoring`), in eval mode (their previous modes
    are restored afterwards).

    Args:
        user_key: `stable_key` of the user id.
        history: the user's clicked news rows, oldest first (excluded from the results).
        two_tower: a `TwoTowerModel`; index: a faiss index over its exported item vectors (rows = news rows).
        items: the `ItemFeatures` of those rows (the history goes through the item tower).
        mtrec_model: a trained `MTRecModel`; news_input_ids: tokenised titles per news row (`tokenize_news`'s
            ``input_ids`` column, same rows), padded here with `pad_token_id`.
        k: how many news to retrieve; top_n: how many re-ranked news to return (None: all k).
        news_fields: for a multi-field MTRec (`config.use_multi_field`), which needs them: (category labels, entity
            ids) per news row, same rows: `tokenize_news`'s ``category_label`` column and `entity_field_ids` of each
            ``title_entities`` with ``config.num_entity_buckets``, as the collator and the fast evaluation read them.

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
    own_rows = list(range(len(history)))  # the history's rows in its own small vector table
    # 1. Retrieve: the user vector pools the history's item-tower vectors, then faiss finds the top k.
    history_vectors = encode_item_batches(two_tower, [(own_rows, items.rows(history))], len(history))  # (H, D)
    user = encode_users_from_vectors(two_tower, history_vectors, [own_rows], user_inputs={"user_key": [user_key]})
    scores, rows = search(index, user.numpy(), k, exclude=[history])
    keep = rows[0] >= 0
    candidates, retrieval_scores = rows[0][keep].tolist(), scores[0][keep].tolist()
    if not candidates:
        return []
    # 2. Rank: MTRec encodes the candidates' and the history's titles, pools the history, scores by dot product.
    titles = [news_input_ids[r] for r in candidates + history]
    batches = title_batches(titles, pad_token_id, batch_size=len(titles), sort_by_length=False)
    if getattr(mtrec_model.config, "use_multi_field", False):
        if news_fields is None:
            raise ValueError(f"{MULTI_FIELD_NEEDS}: pass news_fields=(category labels, entity ids) per news row")
        labels, entities = news_fields
        if len(labels) != len(items) or len(entities) != len(items):
            raise ValueError(f"news_fields holds {len(labels)} category labels and {len(entities)} entity lists "
                             f"for {len(items)} news rows")
        news_rows = candidates + history
        batches = ((b, {**inputs, **multi_field_batch(labels, entities, [news_rows[i] for i in b])})
                   for b, inputs in batches)
    news = encode_item_batches(mtrec_model, batches, len(titles))  # (K + H, D)
    rank_scores = score_impressions(
        mtrec_model, news, [[len(candidates) + i for i in own_rows]], [list(range(len(candidates)))]
    )[0]  # (K,); r_u = 0 for an empty history
    order = np.argsort(-rank_scores, kind="stable").tolist()
    ranked = [RankedNews(candidates[i], float(retrieval_scores[i]), float(rank_scores[i])) for i in order]
    return ranked if top_n is None else ranked[:top_n]
