"""MTRec's multi-field variant (`config.use_multi_field`): r̃ = Σ_i w_i r_i over the title, category and entity
vectors, w_i = softmax_i(q · tanh(W r_i)); the common model tests (save/load, Auto round trip, remote code,
gradients), the pooling by hand, the collator's category/entity ids, and the fast evaluation's item vectors."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

import tests.models.mtrec.test_modeling_mtrec as common
from modeling_mtrec import MTRecModel
from modeling_mtrec.evaluation.impressions import encode_item_table
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.processing_mtrec import entity_field_ids
from tests.testing_utils import random_batch, tiny_config

BUCKETS = 50


def multi_field_config(**overrides):
    return tiny_config(use_multi_field=True, num_entity_buckets=BUCKETS, **overrides)


def field_inputs(num_news: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    categories = torch.randint(0, 3, (num_news,), generator=g)
    categories[0] = -100  # no category: the shared "unknown" row
    entities = torch.randint(1, BUCKETS + 1, (num_news, 3), generator=g)
    entities[:, 2] = 0  # padding
    entities[1] = 0  # a title without entities: its entity field is left out
    return {"category_ids": categories, "entity_ids": entities}


class TestMTRecModelMultiField(common.TestMTRecModel):
    def get_config(self):
        return multi_field_config()

    def get_inputs(self, config):
        batch = random_batch(seed=0)
        fields = field_inputs(batch["news_input_ids"].shape[0])
        return {**batch, "news_category_ids": fields["category_ids"], "news_entity_ids": fields["entity_ids"]}

    def get_item_inputs(self, config, num_items):
        return {**super().get_item_inputs(config, num_items), **field_inputs(num_items, seed=1)}

    def test_folders_saved_by_earlier_versions_still_load(self):  # earlier versions had no multi-field weights
        added = {"category_embeddings.weight", "entity_embeddings.weight", "field_attention.proj.weight",
                 "field_attention.proj.bias", "field_attention.query"}
        assert set(self.make_model().state_dict()) == set(self.legacy_state_dict_keys) | added


def test_off_by_default():
    model = MTRecModel(tiny_config())
    assert not model.config.use_multi_field and not hasattr(model, "field_attention")


def test_pool_fields_by_hand():
    torch.manual_seed(0)
    model = MTRecModel(multi_field_config()).eval()
    title = torch.randn(4, 32)
    fields = field_inputs(4)
    pooled = model.pool_fields(title, fields["category_ids"], fields["entity_ids"])
    att = model.field_attention
    for n in range(4):
        category = model.category_embeddings.weight[3 if n == 0 else fields["category_ids"][n]]  # row 3: unknown
        ids = [i for i in fields["entity_ids"][n].tolist() if i]
        vectors = [title[n], category] + ([model.entity_embeddings.weight[ids].mean(0)] if ids else [])
        scores = torch.stack([torch.tanh(att.proj(v)) @ att.query for v in vectors])
        weights = torch.softmax(scores, 0)
        torch.testing.assert_close(pooled[n], sum(w * v for w, v in zip(weights, vectors)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="category_ids and entity_ids"):
        model.encode_items(torch.tensor([[2, 7, 3]]))


def news_table() -> Dataset:
    q30 = json.dumps([{"WikidataId": "Q30", "Label": "USA", "OccurrenceOffsets": [0], "SurfaceForms": ["USA"]}])
    both = json.dumps([{"WikidataId": "Q30", "Label": "USA"}, {"WikidataId": "", "Label": "Aarhus"}])
    return Dataset.from_dict({
        "news_id": ["N1", "N2", "N3"], "title_entities": [q30, "[]", both], "category_label": [0, -100, 2],
        "input_ids": [[2, 7, 3], [2, 8, 9, 3], [2, 10, 3]], "ner_labels": [[-100, 1, -100], [-100, 0, 0, -100],
                                                                      [-100, 0, -100]],
    })  # fmt: skip


def test_collator_supplies_category_and_entity_ids():
    collator = MTRecCollator(news_table(), entity_buckets=BUCKETS)
    batch = collator([{"history": [0], "candidates": [1, 2], "labels": [1, 0]}])
    q30, aarhus = entity_field_ids(news_table()["title_entities"][0], BUCKETS)[0], entity_field_ids(
        json.dumps([{"Label": "Aarhus"}]), BUCKETS)[0]  # EB-NeRD's entities have no WikidataId: their label
    torch.testing.assert_close(batch["news_category_ids"], torch.tensor([0, -100, 2]))
    torch.testing.assert_close(batch["news_entity_ids"], torch.tensor([[q30, 0], [0, 0], [q30, aarhus]]))
    assert "news_entity_ids" not in MTRecCollator(news_table())([{"history": [0], "candidates": [1], "labels": [1]}])


def test_fast_evaluation_encodes_the_fields_too():
    torch.manual_seed(0)
    model = MTRecModel(multi_field_config()).eval()
    news = news_table()
    batch = MTRecCollator(news, entity_buckets=BUCKETS)([{"history": [0], "candidates": [1, 2], "labels": [1, 0]}])
    with torch.no_grad():
        out = model(**batch)
    table = encode_item_table(model, news, batch_size=2)
    torch.testing.assert_close(table, out.news_embeds, rtol=1e-5, atol=1e-6)  # rows 0, 1, 2 in both
