from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from datasets import Dataset
from transformers import AutoModel

from modeling_mtrec import (
    MTRecModel,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerTrainer,
    TwoTowerTrainingArguments,
)
from modeling_mtrec.data.mind import read_behaviors
from modeling_mtrec.data.samples import build_retrieval_samples, stable_key
from modeling_mtrec.evaluation.metrics import recall_at_k
from modeling_mtrec.evaluation.retrieval import approximate_recall, evaluate_retrieval, item_slices
from modeling_mtrec.models.two_tower.collator import TwoTowerCollator
from modeling_mtrec.models.two_tower.features import (
    ItemFeatures,
    build_item_features,
    feature_mutual_information,
    load_retrieval_corpus,
    static_log_q,
)
from modeling_mtrec.models.two_tower.modeling_two_tower import (
    StreamingFrequencyEstimator,
    complementary_masks,
    correlated_feature_masks,
    dropout_multi_valued,
    in_batch_logits,
    random_feature_masks,
)
from modeling_mtrec.serving.retrieval import build_index, export_item_vectors, retrieve_then_rank, search

NUM_ITEMS = 12


def tiny_tt_config(**overrides) -> TwoTowerConfig:
    kwargs = dict(
        embedding_dim=8, item_id_buckets=97, user_id_buckets=97, category_buckets=13, entity_buckets=97,
        word_buckets=97, tower_hidden_sizes=[16], output_dim=8, frequency_hash_buckets=64,
        ssl_augmentations=["complementary", "dropout"],
    )
    kwargs.update(overrides)
    return TwoTowerConfig(**kwargs)


def tiny_items(n: int = NUM_ITEMS, seed: int = 0) -> ItemFeatures:
    g = torch.Generator().manual_seed(seed)
    entities = torch.randint(0, 50, (n, 3), generator=g)
    entities[::3, 1:] = -1  # some items with fewer (or no) entities
    entities[::4] = -1
    words = torch.randint(0, 80, (n, 5), generator=g)
    words[1::2, 3:] = -1
    return ItemFeatures(
        item_key=torch.arange(n) + 1000, category_key=torch.arange(n) % 3, subcategory_key=torch.arange(n) % 5,
        entity_keys=entities, word_keys=words,
    )


def tiny_batch(items: ItemFeatures, ssl: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    samples = [
        {"user_key": 7, "history": [0, 1], "positive": 2},
        {"user_key": 8, "history": [3], "positive": 4},
        {"user_key": 9, "history": [], "positive": 2},  # a duplicate positive: one column
        {"user_key": 7, "history": [5, 6, 1], "positive": 7},
    ]
    return TwoTowerCollator(items, ssl_batch_size=ssl, seed=seed)(samples)


def make_model(config=None, seed=0) -> TwoTowerModel:
    torch.manual_seed(seed)
    return TwoTowerModel(config or tiny_tt_config()).eval()


# ------------------------------------------------------------------------------------------------ main loss


def test_forward_shapes_duplicates_share_a_column_and_losses_are_finite():
    items = tiny_items()
    batch = tiny_batch(items, ssl=6)
    out = make_model().train()(**batch)
    assert out.logits.shape == (4, 3)  # rows 2, 4, 7: the duplicate click of row 2 is one column
    assert out.labels[0] == out.labels[2]
    assert out.user_embeds.shape == (4, 8) and out.ssl_logits.shape == (6, 6)
    torch.testing.assert_close(out.user_embeds.norm(dim=-1), torch.ones(4))
    for name in ("loss", "main_loss", "ssl_loss"):
        assert torch.isfinite(getattr(out, name)), name
    torch.testing.assert_close(out.loss, out.main_loss + 0.3 * out.ssl_loss)


def test_logq_correction_shifts_each_logit_by_minus_log_p():
    items = tiny_items()
    batch = tiny_batch(items)
    log_p = torch.log(torch.linspace(0.05, 0.9, NUM_ITEMS))
    batch["item_log_q"] = log_p[: len(batch["item_key"])]
    corrected = make_model(tiny_tt_config(logq_mode="static"))(**batch)
    plain = make_model(tiny_tt_config(logq_mode="off"))(**batch)  # same seed: same weights
    columns = torch.unique(batch["positive_index"])
    torch.testing.assert_close(corrected.logits - plain.logits, -batch["item_log_q"][columns].expand(4, -1))
    torch.testing.assert_close(corrected.main_loss, F.cross_entropy(corrected.logits, corrected.labels))
    u, v = F.normalize(torch.randn(2, 4), dim=-1), F.normalize(torch.randn(3, 4), dim=-1)
    torch.testing.assert_close(in_batch_logits(u, v, 0.5, torch.tensor([0.0, -1.0, -2.0])), u @ v.T / 0.5 + torch.tensor([0.0, 1.0, 2.0]))


def test_streaming_estimator_converges_to_known_frequencies():
    # Item j appears in each batch independently with probability p_j; the estimator should recover p_j.
    p = torch.tensor([0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9])
    estimator = StreamingFrequencyEstimator(num_buckets=1024, num_hashes=2, learning_rate=0.01, seed=0)
    g = torch.Generator().manual_seed(0)
    keys = torch.tensor([stable_key(f"N{j}") for j in range(len(p))])
    for t in range(1, 5001):
        present = torch.rand(len(p), generator=g) < p
        if present.any():
            estimator.update(keys[present], t)
    estimate = estimator.log_probability(keys).exp()
    relative = (estimate - p).abs() / p
    assert relative.max() < 0.25 and relative.mean() < 0.1, (estimate, p)  # stated tolerance: 25% max, 10% mean
    assert int(estimator.step) == 5000


def test_streaming_estimator_update_rule_and_multi_hash_takes_largest_interval():
    estimator = StreamingFrequencyEstimator(num_buckets=8, num_hashes=2, learning_rate=0.5, seed=0)
    key = torch.tensor([123])
    estimator.update(key, 4)  # first sighting: B = 4 - 0 = 4
    estimator.update(key, 6)  # B = 0.5 * 4 + 0.5 * (6 - 4) = 3
    estimator.update(key, 12)  # B = 0.5 * 3 + 0.5 * (12 - 6) = 4.5
    assert estimator.log_probability(key).item() == pytest.approx(-math.log(4.5))
    rows = estimator.buckets(key)[:, 0]
    estimator.interval[0, rows[0]] = 1.5  # a collision in hash 0 shortened its interval: hash 1's 4.5 wins
    assert estimator.log_probability(key).item() == pytest.approx(-math.log(4.5))
    with pytest.raises(ValueError, match="must increase"):
        estimator.update(key, 12)


def test_streaming_mode_updates_once_per_distinct_item_only_in_training():
    model = make_model(tiny_tt_config(logq_mode="streaming"))
    batch = tiny_batch(tiny_items())
    model.eval()(**batch)
    assert int(model.frequency_estimator.step) == 0
    model.train()(**batch, frequency_step=3)
    assert int(model.frequency_estimator.step) == 3
    row = batch["positive_index"][0]
    bucket = model.frequency_estimator.buckets(batch["item_key"][row][None])[:, 0]
    # Item clicked twice in the batch: one update, the first sighting's B = 3 - 0; then one at t = 5.
    torch.testing.assert_close(model.frequency_estimator.interval[[0, 1], bucket], torch.tensor([3.0, 3.0]))
    model(**batch, frequency_step=5)
    torch.testing.assert_close(model.frequency_estimator.interval[[0, 1], bucket], torch.tensor([2.99, 2.99]))


# --------------------------------------------------------------------------------------------- augmentations


def test_complementary_views_are_disjoint_and_cover_all_features():
    first, second = complementary_masks(200, 5, torch.Generator().manual_seed(0))
    assert not (first & second).any() and (first | second).all()
    assert set(first.sum(1).tolist()) == {2, 3}


def test_random_masks_are_independent_per_view_at_the_rate():
    first, second = random_feature_masks(2000, 6, 0.3, torch.Generator().manual_seed(0))
    assert first.float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert (first != second).any()


def test_correlated_masking_takes_the_seed_and_its_top_mi_features():
    mi = torch.tensor(
        [[9, 5, 1, 4, 2, 3], [5, 9, 6, 1, 2, 0], [1, 6, 9, 7, 3, 2], [4, 1, 7, 9, 8, 0], [2, 2, 3, 8, 9, 1], [3, 0, 2, 0, 1, 9]],
        dtype=torch.float,
    )
    first, second = correlated_feature_masks(300, mi, 0.5, torch.Generator().manual_seed(0))
    assert (first.sum(1) == 3).all() and torch.equal(second, ~first)
    expected = set()
    for seed in range(6):
        others = [j for j in mi[seed].argsort(descending=True).tolist() if j != seed][:2]
        expected.add(frozenset([seed, *others]))
    seen = {frozenset(torch.nonzero(row).flatten().tolist()) for row in first}
    assert seen <= expected and len(seen) >= 5  # every mask is some seed plus its top-2 MI features


def test_dropout_touches_only_multi_valued_features():
    model = make_model(tiny_tt_config(ssl_augmentations=["dropout"]))
    features = tiny_items(200).rows(torch.arange(200))
    view_1, mask_1, view_2, mask_2 = model.augment(features, torch.Generator().manual_seed(0))
    assert not mask_1.any() and not mask_2.any()
    for key in ("item_key", "category_key", "subcategory_key"):
        assert torch.equal(view_1[key], features[key]) and torch.equal(view_2[key], features[key])
    for key in ("entity_keys", "word_keys"):
        valid = features[key] >= 0
        dropped = (view_1[key] == -1) & valid
        assert dropped.sum() / valid.sum() == pytest.approx(0.5, abs=0.05)
        assert torch.equal(view_1[key][~dropped], features[key][~dropped])
    assert (dropout_multi_valued(torch.tensor([[1, 2, -1]]), 0.0) == torch.tensor([[1, 2, -1]])).all()


def test_several_masking_schemes_each_item_uses_one():
    mi = torch.rand(5, 5)
    config = tiny_tt_config(ssl_augmentations=["complementary", "correlated"], feature_mutual_information=(mi + mi.T).tolist())
    _, mask_1, _, mask_2 = make_model(config).augment(tiny_items(100).rows(torch.arange(100)), torch.Generator().manual_seed(1))
    assert torch.equal(mask_2, ~mask_1)  # both schemes give complementary views


def test_masked_feature_gets_the_learned_default_embedding():
    model = make_model()
    features = tiny_items().rows(torch.arange(4))
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[:, 1] = True  # category masked: changing it must not change the vector
    changed = dict(features, category_key=features["category_key"] + 1)
    torch.testing.assert_close(model.encode_items(mask, **features), model.encode_items(mask, **changed))
    assert not torch.allclose(model.encode_items(**features), model.encode_items(**changed))


def test_ssl_positives_are_the_two_views_of_the_same_item():
    # No augmentation: both views are the item itself, so each row's positive (the diagonal) is its maximum.
    model = make_model(tiny_tt_config(ssl_augmentations=[], ssl_weight=1.0))
    batch = tiny_batch(tiny_items(), ssl=8)
    out = model(**batch)
    torch.testing.assert_close(out.ssl_logits.diagonal(), torch.full((8,), 1 / model.config.ssl_temperature))
    assert torch.equal(out.ssl_logits.argmax(1), torch.arange(8))
    torch.testing.assert_close(out.ssl_loss, F.cross_entropy(out.ssl_logits, torch.arange(8)))


def test_gradients_reach_every_parameter():
    mi = torch.rand(5, 5)
    config = tiny_tt_config(ssl_augmentations=["correlated", "dropout"], feature_mutual_information=(mi + mi.T).tolist())
    model = make_model(config).train()
    model(**tiny_batch(tiny_items(), ssl=6)).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


# ------------------------------------------------------------------------------------------ save / load


def test_save_load_gives_identical_vectors_and_estimator_state(tmp_path):
    import modeling_mtrec  # noqa: F401  (registers the Auto classes)

    model = make_model().train()
    batch = tiny_batch(tiny_items())
    for t in (1, 2, 5):
        model(**batch, frequency_step=t)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, TwoTowerModel)
    model.eval()
    torch.testing.assert_close(export_item_vectors(loaded, tiny_items()), export_item_vectors(model, tiny_items()))
    for name, buffer in model.frequency_estimator.named_buffers():
        assert torch.equal(getattr(loaded.frequency_estimator, name), buffer), name
    assert int(loaded.frequency_estimator.step) == 5
    card = (tmp_path / "README.md").read_text()  # the Hub card travels with the weights
    assert "# Two-tower news retriever" in card
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)


def test_trainer_estimator_step_counts_micro_batches_under_gradient_accumulation(tmp_path):
    items = tiny_items()
    rows = [{"user_key": u, "history": [u % NUM_ITEMS], "positive": (3 * u) % NUM_ITEMS} for u in range(16)]
    args = TwoTowerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2,
        learning_rate=1e-2, report_to="none", save_strategy="no", logging_steps=1, use_cpu=True,
    )
    model = make_model().train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = TwoTowerTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows),
        data_collator=TwoTowerCollator(items, ssl_batch_size=4),
    )
    trainer.train()
    assert int(model.frequency_estimator.step) == 4  # 2 optimizer steps x 2 micro-batches
    assert any("main_loss" in entry and "ssl_loss" in entry for entry in trainer.state.log_history)
    trainer.train()  # a second run on the trained model continues t instead of restarting it
    assert int(model.frequency_estimator.step) == 8
    # Every parameter that a batch reaches moved (hashed buckets of unseen ids cannot).
    assert not torch.equal(before["item_tower.mlp.0.weight"], model.item_tower.mlp[0].weight)
    assert not torch.equal(before["item_tower.default_embeddings"], model.item_tower.default_embeddings)


# ------------------------------------------------------------------------------------------ data


def test_build_retrieval_samples_one_row_per_click(tmp_path):
    path = tmp_path / "behaviors.tsv"
    path.write_text("1\tU1\t11/11/2019 9:00:00 AM\tN1 N2 NX\tN3-1 N4-0 N5-1\n2\tU2\t11/11/2019 9:00:00 AM\t\tN4-1\n")
    news_index = {f"N{i}": i - 1 for i in range(1, 6)}
    samples = build_retrieval_samples(read_behaviors(path), news_index, max_history_length=1)
    assert samples.to_dict() == {
        "user_key": [stable_key("U1"), stable_key("U1"), stable_key("U2")],
        "history": [[1], [1], []],  # NX unknown; truncated to the most recent known click
        "positive": [2, 4, 3],  # the impression without a non-click is kept
    }


def test_item_features_and_mutual_information():
    news = Dataset.from_dict({
        "news_id": ["N1", "N2", "N3", "N4"],
        "category": ["a", "a", "b", "b"],
        "subcategory": ["a1", "a2", "b1", "b1"],
        "title": ["Big news today", "Big", "Small thing", "small"],
        "title_entities": ['[{"WikidataId": "Q1"}, {"WikidataId": "Q2"}]', "[]", "not json", ""],
    })
    items = build_item_features(news, max_entities=2, max_title_words=2)
    assert items.entity_keys[0].tolist() == [stable_key("Q1"), stable_key("Q2")]
    assert (items.entity_keys[1:] == -1).all()
    assert items.word_keys[2].tolist() == [stable_key("small"), stable_key("thing")]
    assert items.word_keys[3].tolist() == [stable_key("small"), -1]
    mi = np.array(feature_mutual_information(items))
    assert np.allclose(mi, mi.T)
    assert mi[0, 1] == pytest.approx(math.log(2))  # item id determines the category: MI = H(category)
    assert mi[1, 2] == pytest.approx(math.log(2))


def test_retrieval_corpus_rows_align_across_splits(tmp_path):
    def news_row(i):
        return f"N{i}\tcat{i % 2}\tsub{i}\tTitle number {i}\t\t\t[]\t[]\n"

    for split, ids, behaviors in (
        ("train", [1, 2, 3], "1\tU1\t11/11/2019 9:00:00 AM\tN1\tN2-1 N3-0\n"),
        ("dev", [4, 2, 5], "1\tU2\t11/12/2019 9:00:00 AM\tN2\tN5-1 N4-0\n"),  # N2 repeated in the middle
    ):
        (tmp_path / split).mkdir()
        (tmp_path / split / "news.tsv").write_text("".join(news_row(i) for i in ids))
        (tmp_path / split / "behaviors.tsv").write_text(behaviors)
    corpus = load_retrieval_corpus(train_dir=tmp_path / "train", eval_dir=tmp_path / "dev")
    assert list(corpus.news_index) == ["N1", "N2", "N3", "N4", "N5"]
    assert corpus.items.item_key.tolist() == [stable_key(f"N{i}") for i in range(1, 6)]
    assert corpus.items.word_keys[4, 2].item() == stable_key("5")
    assert corpus.train_counts.tolist() == [0, 1, 0, 0, 0]
    assert corpus.eval.to_dict() == {"user_key": [stable_key("U2")], "history": [[1]], "positive": [4]}


def test_static_log_q_is_probability_of_appearing_in_a_batch():
    log_q = static_log_q(np.array([3, 1, 0]), batch_size=2)
    np.testing.assert_allclose(np.exp(log_q), [1 - 0.25**2, 1 - 0.75**2, 1 - 0.75**2], rtol=1e-6)


# ------------------------------------------------------------------------------------------ metrics / retrieval


def test_recall_at_k_by_hand():
    ranked = [[5, 1, 2, 3], [4, 3, 2, 1], [9, 8, 7, 6]]
    relevant = [1, {2, 9}, [6]]
    assert recall_at_k(ranked, relevant, 1) == pytest.approx(0.0)
    assert recall_at_k(ranked, relevant, 2) == pytest.approx((1 + 0 + 0) / 3)
    assert recall_at_k(ranked, relevant, 3) == pytest.approx((1 + 0.5 + 0) / 3)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx((1 + 0.5 + 1) / 3)


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


def test_item_slices_and_evaluate_retrieval_on_a_planted_model():
    slices = item_slices(np.array([10, 5, 5, 1, 0, 1, 0, 2, 3, 4]), head_share=0.2)
    assert np.flatnonzero(slices["head"]).tolist() == [0, 1, 2]  # top 20% of 8 clicked = 2 items, tie included
    assert np.flatnonzero(slices["cold"]).tolist() == [4, 6]
    model = make_model()
    items = tiny_items()
    samples = {"user_key": [1, 2], "history": [[0], [1, 2]], "positive": [3, 4]}
    metrics = evaluate_retrieval(model, items, samples, np.arange(NUM_ITEMS), ks=(1, NUM_ITEMS))
    assert metrics[f"recall@{NUM_ITEMS}"] == 1.0  # everything but the history is retrieved
    assert metrics[f"random_recall@{NUM_ITEMS}"] == 1.0 and metrics["num_queries"] == 2


def test_retrieve_then_rank_with_tiny_models():
    items = tiny_items()
    two_tower = make_model()
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
    news = mtrec.encode_news(one)
    user_vector = mtrec.encode_user(mtrec.encode_news(hist_ids, (hist_ids != 0).long())[None])
    assert (news @ user_vector.T).item() == pytest.approx(ranked[0].rank_score, rel=1e-4, abs=1e-5)
    assert len(retrieve_then_rank(7, history, two_tower, index, items, mtrec, titles, k=4, top_n=2)) == 2


# ------------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"logq_mode": "sometimes"}, "logq_mode"),
        ({"temperature": 0.0}, "temperature"),
        ({"ssl_augmentations": ["rotate"]}, "ssl_augmentations"),
        ({"mask_rate": 1.0}, "mask_rate"),
        ({"feature_mutual_information": [[0.0] * 4] * 4}, "5x5"),
        ({"embedding_dim": 0}, "embedding_dim"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_tt_config(**kwargs)


def test_bad_inputs_raise_clear_errors():
    items = tiny_items()
    batch = tiny_batch(items)
    with pytest.raises(ValueError, match="item_log_q"):
        make_model(tiny_tt_config(logq_mode="static"))(**batch)
    with pytest.raises(ValueError, match="feature_mutual_information"):
        make_model(tiny_tt_config(ssl_augmentations=["correlated"]))(**tiny_batch(items, ssl=4))
    with pytest.raises(ValueError, match="user_key"):
        make_model()(**{k: v for k, v in batch.items() if k != "user_key"})
    with pytest.raises(ValueError, match="exceeds"):
        TwoTowerCollator(items, ssl_batch_size=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="index kind"):
        build_index(np.zeros((3, 2), dtype=np.float32), "lsh")
    with pytest.raises(ValueError, match="rows disagree"):
        retrieve_then_rank(1, [0], make_model(), build_index(np.zeros((3, 8), dtype=np.float32)), items, None, [[1]] * 3)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k([[1]], [1], 0)


def test_text_feature_is_a_sixth_maskable_feature(tmp_path):
    from transformers import BertConfig, BertModel

    from modeling_mtrec.data import synthetic_tokenizer
    from modeling_mtrec.models.two_tower.features import encode_titles

    tokenizer = synthetic_tokenizer(str(tmp_path / "enc"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "enc")
    text = encode_titles(["stocks rally", "stocks rally today", ""], str(tmp_path / "enc"))
    assert text.shape == (3, 8) and torch.isfinite(text).all()
    items = tiny_items()
    items.text_embeds = torch.randn(NUM_ITEMS, 8)
    config = tiny_tt_config(text_embed_dim=8, ssl_augmentations=["correlated"],
                            feature_mutual_information=feature_mutual_information(items))
    assert config.feature_names[-1] == "text" and len(config.feature_mutual_information) == 6
    out = make_model(config)(**tiny_batch(items, ssl=4))
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="text_embeds"):
        make_model(config)(**tiny_batch(tiny_items()))
