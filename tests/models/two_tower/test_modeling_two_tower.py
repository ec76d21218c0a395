"""TwoTowerModel: in-batch softmax with logQ correction, streaming estimator, SSL augmentations, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from modeling_mtrec import (
    TwoTowerModel,
)
from modeling_mtrec.data.samples import stable_key
from modeling_mtrec.evaluation.metrics import recall_at_k
from modeling_mtrec.models.two_tower.collator import TwoTowerCollator
from modeling_mtrec.models.two_tower.features import (
    feature_mutual_information,
)
from modeling_mtrec.models.two_tower.modeling_two_tower import (
    StreamingFrequencyEstimator,
    complementary_masks,
    correlated_feature_masks,
    dropout_multi_valued,
    in_batch_logits,
    random_feature_masks,
)
from modeling_mtrec.serving.retrieval import export_item_vectors, retrieve_then_rank
from modeling_mtrec.vectors import build_index
from tests.testing_utils import NUM_ITEMS, make_two_tower, tiny_batch, tiny_items, tiny_tt_config
from tests.models.test_modeling_common import ScoringModelTesterMixin


def test_forward_shapes_duplicates_share_a_column_and_losses_are_finite():
    items = tiny_items()
    batch = tiny_batch(items, ssl=6)
    out = make_two_tower().train()(**batch)
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
    corrected = make_two_tower(tiny_tt_config(logq_mode="static"))(**batch)
    plain = make_two_tower(tiny_tt_config(logq_mode="off"))(**batch)  # same seed: same weights
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
    model = make_two_tower(tiny_tt_config(logq_mode="streaming"))
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
    model = make_two_tower(tiny_tt_config(ssl_augmentations=["dropout"]))
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
    _, mask_1, _, mask_2 = make_two_tower(config).augment(tiny_items(100).rows(torch.arange(100)), torch.Generator().manual_seed(1))
    assert torch.equal(mask_2, ~mask_1)  # both schemes give complementary views

def test_masked_feature_gets_the_learned_default_embedding():
    model = make_two_tower()
    features = tiny_items().rows(torch.arange(4))
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[:, 1] = True  # category masked: changing it must not change the vector
    changed = dict(features, category_key=features["category_key"] + 1)
    torch.testing.assert_close(model.encode_items(mask, **features), model.encode_items(mask, **changed))
    assert not torch.allclose(model.encode_items(**features), model.encode_items(**changed))

def test_ssl_positives_are_the_two_views_of_the_same_item():
    # No augmentation: both views are the item itself, so each row's positive (the diagonal) is its maximum.
    model = make_two_tower(tiny_tt_config(ssl_augmentations=[], ssl_weight=1.0))
    batch = tiny_batch(tiny_items(), ssl=8)
    out = model(**batch)
    torch.testing.assert_close(out.ssl_logits.diagonal(), torch.full((8,), 1 / model.config.ssl_temperature))
    assert torch.equal(out.ssl_logits.argmax(1), torch.arange(8))
    torch.testing.assert_close(out.ssl_loss, F.cross_entropy(out.ssl_logits, torch.arange(8)))

def test_gradients_reach_every_parameter():
    mi = torch.rand(5, 5)
    config = tiny_tt_config(ssl_augmentations=["correlated", "dropout"], feature_mutual_information=(mi + mi.T).tolist())
    model = make_two_tower(config).train()
    model(**tiny_batch(tiny_items(), ssl=6)).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing

def test_save_load_gives_identical_vectors_and_estimator_state(tmp_path):
    import modeling_mtrec  # noqa: F401  (registers the Auto classes)

    model = make_two_tower().train()
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
    assert not (tmp_path / "README.md").exists()  # save_pretrained writes what transformers writes
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)

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
        make_two_tower(tiny_tt_config(logq_mode="static"))(**batch)
    with pytest.raises(ValueError, match="feature_mutual_information"):
        make_two_tower(tiny_tt_config(ssl_augmentations=["correlated"]))(**tiny_batch(items, ssl=4))
    with pytest.raises(ValueError, match="user_key"):
        make_two_tower()(**{k: v for k, v in batch.items() if k != "user_key"})
    with pytest.raises(ValueError, match="exceeds"):
        TwoTowerCollator(items, ssl_batch_size=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="index kind"):
        build_index(np.zeros((3, 2), dtype=np.float32), "lsh")
    with pytest.raises(ValueError, match="rows disagree"):
        retrieve_then_rank(1, [0], make_two_tower(), build_index(np.zeros((3, 8), dtype=np.float32)), items, None, [[1]] * 3)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k([[1]], [1], 0)

def test_text_feature_is_a_sixth_maskable_feature(tmp_path):
    from transformers import BertConfig, BertModel

    from modeling_mtrec.data import synthetic_tokenizer
    from modeling_mtrec.vectors import mean_pooled_lm_vectors

    tokenizer = synthetic_tokenizer(str(tmp_path / "enc"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "enc")
    text = mean_pooled_lm_vectors(["stocks rally", "stocks rally today", ""], str(tmp_path / "enc"))
    assert text.shape == (3, 8) and torch.isfinite(text).all()
    items = tiny_items()
    items.text_embeds = torch.randn(NUM_ITEMS, 8)
    config = tiny_tt_config(text_embed_dim=8, ssl_augmentations=["correlated"],
                            feature_mutual_information=feature_mutual_information(items))
    assert config.feature_names[-1] == "text" and len(config.feature_mutual_information) == 6
    out = make_two_tower(config)(**tiny_batch(items, ssl=4))
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="text_embeds"):
        make_two_tower(config)(**tiny_batch(tiny_items()))


# ------------------------------------------------------------------------------------------- common tests


class TestTwoTowerModel(ScoringModelTesterMixin):
    model_class = TwoTowerModel
    loss_names = ("loss", "main_loss", "ssl_loss")
    legacy_model_type = "two_tower_ssl"
    # `sorted(TwoTowerModel(tiny_tt_config()).state_dict())` of the code before the layout change (commit 0e3da6e).
    legacy_state_dict_keys = frozenset(
        {
            "frequency_estimator.hash_a",
            "frequency_estimator.hash_b",
            "frequency_estimator.interval",
            "frequency_estimator.last_seen",
            "frequency_estimator.step",
            "item_tower.category.weight",
            "item_tower.default_embeddings",
            "item_tower.entities.weight",
            "item_tower.item_id.weight",
            "item_tower.mlp.0.bias",
            "item_tower.mlp.0.weight",
            "item_tower.mlp.2.bias",
            "item_tower.mlp.2.weight",
            "item_tower.subcategory.weight",
            "item_tower.words.weight",
            "user_tower.mlp.0.bias",
            "user_tower.mlp.0.weight",
            "user_tower.mlp.2.bias",
            "user_tower.mlp.2.weight",
            "user_tower.user_id.weight",
        }
    )

    def get_config(self):
        # Correlated masking and dropout: every feature's learned default embedding is reached.
        mi = torch.rand(5, 5, generator=torch.Generator().manual_seed(0))
        return tiny_tt_config(ssl_augmentations=["correlated", "dropout"], feature_mutual_information=(mi + mi.T).tolist())

    def get_inputs(self, config):
        return tiny_batch(tiny_items(), ssl=6)

    def get_item_inputs(self, config, num_items):
        return tiny_items(num_items, seed=1).rows(torch.arange(num_items))

    def get_user_inputs(self, batch_size):
        return {"user_key": torch.arange(batch_size) + 7}
