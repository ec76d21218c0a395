"""faiss search and retrieve-then-rank."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modeling_mtrec import (
    MTRecModel,
)
from modeling_mtrec.evaluation.retrieval import approximate_recall
from modeling_mtrec.serving.retrieval import export_item_vectors, retrieve_then_rank
from modeling_mtrec.vectors import build_index, search
from tests.testing_utils import NUM_ITEMS, make_two_tower, tiny_config, tiny_items


def test_search_matches_brute_force_and_excludes_history():
    vectors = F.normalize(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)), dim=-1).numpy()
    queries = vectors[:3]
    _, rows = search(build_index(vectors, "flat"), queries, 5, exclude=[[0], [], [2, 7]])
    brute = torch.from_numpy(queries) @ torch.from_numpy(vectors).T
    brute[0, 0] = brute[2, 2] = brute[2, 7] = -10
    assert rows.tolist() == brute.topk(5).indices.tolist()
    for kind in ("ivf", "hnsw"):
        approx = build_index(vectors, kind, nprobe=64)
        assert approximate_recall(build_index(vectors), approx, queries, 5) == pytest.approx(1.0)

def test_retrieve_then_rank_with_tiny_models():
    items = tiny_items()
    two_tower = make_two_tower()
    vectors = export_item_vectors(two_tower, items)
    index = build_index(vectors, "flat")
    torch.manual_seed(0)
    mtrec = MTRecModel(tiny_config()).eval()
    g = torch.Generator().manual_seed(1)
    titles = [[2, *torch.randint(5, 99, (int(n),), generator=g).tolist(), 3] for n in torch.randint(2, 6, (NUM_ITEMS,), generator=g)]
    history = [0, 5]
    ranked = retrieve_then_rank(7, history, two_tower, index, items, mtrec, titles, k=4, top_n=None)
    # Retrieval: the two-tower's exact top 4 outside the history.
    user = two_tower.encode_users(torch.from_numpy(vectors[history])[None], user_key=torch.tensor([7]))
    scores = (user @ torch.from_numpy(vectors).T)[0]
    scores[history] = -10
    assert {r.row for r in ranked} == set(scores.topk(4).indices.tolist())
    # Ranking: MTRec's dot product, best first.
    rank_scores = [r.rank_score for r in ranked]
    assert rank_scores == sorted(rank_scores, reverse=True)
    one = torch.tensor([titles[ranked[0].row]])
    hist_ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(titles[h]) for h in history], batch_first=True)
    news = mtrec.encode_items(one)
    user_vector = mtrec.encode_users(mtrec.encode_items(hist_ids, (hist_ids != 0).long())[None])
    assert (news @ user_vector.T).item() == pytest.approx(ranked[0].rank_score, rel=1e-4, abs=1e-5)
    assert len(retrieve_then_rank(7, history, two_tower, index, items, mtrec, titles, k=4, top_n=2)) == 2


def test_retrieve_then_rank_with_a_multi_field_mtrec():
    items = tiny_items()
    two_tower = make_two_tower()
    index = build_index(export_item_vectors(two_tower, items), "flat")
    torch.manual_seed(0)
    mtrec = MTRecModel(tiny_config(use_multi_field=True, num_entity_buckets=20)).eval()
    g = torch.Generator().manual_seed(1)
    titles = [[2, *torch.randint(5, 99, (3,), generator=g).tolist(), 3] for _ in range(NUM_ITEMS)]
    labels = [row % 4 - 1 for row in range(NUM_ITEMS)]  # -1: no category
    entities = [[row % 20 + 1] if row % 3 else [] for row in range(NUM_ITEMS)]
    history = [0, 5]
    with pytest.raises(ValueError, match="multi-field MTRec .*news_fields="):
        retrieve_then_rank(7, history, two_tower, index, items, mtrec, titles, k=4)
    with pytest.raises(ValueError, match="news_fields holds 2 category labels"):
        retrieve_then_rank(7, history, two_tower, index, items, mtrec, titles, k=4, news_fields=(labels[:2], entities))
    ranked = retrieve_then_rank(7, history, two_tower, index, items, mtrec, titles, k=4, news_fields=(labels, entities))
    rows = [ranked[0].row, *history]
    ids = torch.tensor([titles[r] for r in rows])
    fields = {"category_ids": torch.tensor([labels[r] for r in rows]),
              "entity_ids": torch.tensor([entities[r] or [0] for r in rows])}
    news = mtrec.encode_items(ids, torch.ones_like(ids), **fields)  # (3, D): the top candidate, then the history
    user = mtrec.encode_users(news[None, 1:])
    assert (news[0] @ user[0]).item() == pytest.approx(ranked[0].rank_score, rel=1e-4, abs=1e-5)
