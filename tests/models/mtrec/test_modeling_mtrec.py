from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoConfig, AutoModel, BertConfig, BertModel

from modeling_mtrec import MTRecConfig, MTRecModel
from modeling_mtrec.models.mtrec.modeling_mtrec import click_loss
from tests.testing_utils import random_batch, tiny_config
from tests.models.test_modeling_common import ScoringModelTesterMixin


def make_model(config=None, seed=0) -> MTRecModel:
    torch.manual_seed(seed)
    return MTRecModel(config or tiny_config()).eval()


def test_output_shapes_and_finite_losses(config, batch):
    out = make_model(config)(**batch)
    B, C = batch["candidate_index"].shape
    assert out.logits.shape == (B, C)
    assert out.news_embeds.shape == (batch["news_input_ids"].shape[0], 32)
    assert out.user_embeds.shape == (B, 32)
    for name in ("loss", "main_loss", "category_loss", "ner_loss"):
        assert getattr(out, name).shape == () and torch.isfinite(getattr(out, name)), name
    torch.testing.assert_close(out.loss, out.main_loss + out.category_loss + out.ner_loss)


def test_logits_are_dot_products_of_cls_and_attention_pooled_user(config, batch):
    model = make_model(config)
    out = model(**batch)
    cls = model.news_encoder(
        input_ids=batch["news_input_ids"], attention_mask=batch["news_attention_mask"]
    ).last_hidden_state[:, 0]
    hist = cls[batch["history_index"]]  # (B, H, D)
    att = model.user_encoder
    weights = torch.softmax(torch.tanh(att.proj(hist)) @ att.query, dim=-1)  # (B, H)
    user = (weights[..., None] * hist).sum(1)
    expected = (cls[batch["candidate_index"]] * user[:, None]).sum(-1)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)


def test_click_loss_is_papers_softmax_loss():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = torch.tensor([[1, 0, 0], [1, 0, -100]])  # second row: one padded candidate
    row0 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.5) + math.exp(-1.0)))
    row1 = -math.log(math.exp(0.0) / (math.exp(0.0) + math.exp(1.0)))
    assert click_loss(logits, labels).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_click_loss_with_two_clicks_scores_each_against_negatives():
    logits = torch.tensor([[1.0, 2.0, 0.0]])
    labels = torch.tensor([[1, 1, 0]])
    expected = (math.log(1 + math.exp(0 - 1.0)) + math.log(1 + math.exp(0 - 2.0))) / 2
    assert click_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_aux_losses_none_when_labels_absent_or_task_off(batch):
    out = make_model()(**{k: v for k, v in batch.items() if k not in ("category_labels", "ner_labels")})
    assert out.category_loss is None and out.ner_loss is None
    torch.testing.assert_close(out.loss, out.main_loss)
    off = make_model(tiny_config(use_category_task=False, use_ner_task=False))
    assert off.category_head is None and off.ner_head is None
    out = off(**batch)
    assert out.category_loss is None and out.ner_loss is None


def test_gradients_reach_every_trainable_parameter(config, batch):
    model = make_model(config).train()
    model(**batch).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_padding_a_history_does_not_change_the_user_vector(config, batch):
    model = make_model(config)
    out = model(**batch)
    padded = dict(batch)
    B, H = batch["history_index"].shape
    # Append 3 padded slots pointing at arbitrary news.
    padded["history_index"] = torch.cat([batch["history_index"], torch.full((B, 3), 5)], dim=1)
    padded["history_mask"] = torch.cat([batch["history_mask"], torch.zeros(B, 3, dtype=torch.bool)], dim=1)
    out_padded = model(**padded)
    torch.testing.assert_close(out_padded.user_embeds, out.user_embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(out_padded.logits, out.logits, rtol=0, atol=1e-5)


def test_empty_history_gives_zero_user_and_uniform_scores(config, batch):
    batch = dict(batch)
    batch["history_mask"] = batch["history_mask"].clone()
    batch["history_mask"][1] = False
    out = make_model(config)(**batch)
    assert torch.all(out.user_embeds[1] == 0) and torch.all(out.logits[1] == 0)
    assert torch.all(out.user_embeds[0] != 0)
    assert torch.isfinite(out.loss)  # log(1 + K) for that row, no NaN


def test_padding_title_tokens_does_not_change_news_vectors(config, batch):
    model = make_model(config)
    ids, mask = batch["news_input_ids"], batch["news_attention_mask"]
    longer_ids = torch.cat([ids, torch.zeros(ids.shape[0], 4, dtype=torch.long)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(mask.shape[0], 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model.encode_items(longer_ids, longer_mask), model.encode_items(ids, mask), atol=1e-5, rtol=1e-5)


def test_save_and_auto_model_load_give_identical_outputs(tmp_path, config, batch):
    model = make_model(config)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "mtrec" and saved["auto_map"]["AutoModel"].endswith("MTRecModel")
    assert (tmp_path / "modeling_mtrec.py").is_file() and (tmp_path / "configuration_mtrec.py").is_file()
    assert not (tmp_path / "README.md").exists()  # save_pretrained writes what transformers writes
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MTRecConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MTRecModel)
    assert loaded.config.id2category == config.id2category
    a, b = model(**batch), loaded(**batch)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)


def test_from_pretrained_encoder_loads_bert_weights(tmp_path):
    torch.manual_seed(1)
    bert = BertModel(tiny_config().encoder_config, add_pooling_layer=True)
    bert.save_pretrained(tmp_path / "bert")
    model = MTRecModel.from_pretrained_encoder(str(tmp_path / "bert"), id2category={0: "a", 1: "b"})
    for name, tensor in bert.state_dict().items():
        if not name.startswith("pooler"):
            torch.testing.assert_close(model.news_encoder.state_dict()[name], tensor, rtol=0, atol=0)
    assert model.config.encoder_name_or_path is None  # a local folder is no Hub id: not recorded (issue 10, item 5)
    assert model.config.num_categories == 2 and model.category_head.out_features == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_negatives=0), "num_negatives"),
        (dict(max_title_length=2), "max_title_length"),
        (dict(id2category={1: "a"}), "id2category"),
        (dict(ner_labels=["O"]), "ner_labels"),
        (dict(max_title_length=600), "max_position_embeddings"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**kwargs)


def test_config_defaults_follow_the_paper():
    config = MTRecConfig()
    assert (config.max_title_length, config.max_history_length, config.num_negatives) == (30, 50, 4)
    assert config.ner_labels == ["O", "B", "I"]
    assert isinstance(config.encoder_config, BertConfig) and config.encoder_config.hidden_size == 768


def test_bf16_autocast_forward_is_finite(config):
    model = make_model(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**random_batch(seed=3))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_saved_folder_loads_as_remote_code_without_the_package(tmp_path, config, batch):
    """What a Hub user gets with trust_remote_code=True: the folder's own code, modeling_mtrec never imported."""
    import subprocess
    import sys

    model = make_model(config)
    model.save_pretrained(tmp_path / "model")
    torch.save({k: v for k, v in batch.items()}, tmp_path / "batch.pt")
    expected = model(**batch).logits
    script = f"""
import sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
assert "modeling_mtrec" not in sys.modules, "the package was imported"
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
torch.save(model(**torch.load({str(tmp_path / "batch.pt")!r})).logits, {str(tmp_path / "logits.pt")!r})
"""
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env, timeout=300)
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------- common tests


class TestMTRecModel(ScoringModelTesterMixin):
    model_class = MTRecModel
    loss_names = ("loss", "main_loss", "category_loss", "ner_loss")
    legacy_model_type = "mtrec"
    # `sorted(MTRecModel(tiny_config()).state_dict())` of the code before the layout change (commit 0e3da6e).
    legacy_state_dict_keys = frozenset(
        {
            "category_head.bias",
            "category_head.weight",
            "ner_head.bias",
            "ner_head.weight",
            "news_encoder.embeddings.LayerNorm.bias",
            "news_encoder.embeddings.LayerNorm.weight",
            "news_encoder.embeddings.position_embeddings.weight",
            "news_encoder.embeddings.token_type_embeddings.weight",
            "news_encoder.embeddings.word_embeddings.weight",
            "news_encoder.encoder.layer.0.attention.output.LayerNorm.bias",
            "news_encoder.encoder.layer.0.attention.output.LayerNorm.weight",
            "news_encoder.encoder.layer.0.attention.output.dense.bias",
            "news_encoder.encoder.layer.0.attention.output.dense.weight",
            "news_encoder.encoder.layer.0.attention.self.key.bias",
            "news_encoder.encoder.layer.0.attention.self.key.weight",
            "news_encoder.encoder.layer.0.attention.self.query.bias",
            "news_encoder.encoder.layer.0.attention.self.query.weight",
            "news_encoder.encoder.layer.0.attention.self.value.bias",
            "news_encoder.encoder.layer.0.attention.self.value.weight",
            "news_encoder.encoder.layer.0.intermediate.dense.bias",
            "news_encoder.encoder.layer.0.intermediate.dense.weight",
            "news_encoder.encoder.layer.0.output.LayerNorm.bias",
            "news_encoder.encoder.layer.0.output.LayerNorm.weight",
            "news_encoder.encoder.layer.0.output.dense.bias",
            "news_encoder.encoder.layer.0.output.dense.weight",
            "news_encoder.encoder.layer.1.attention.output.LayerNorm.bias",
            "news_encoder.encoder.layer.1.attention.output.LayerNorm.weight",
            "news_encoder.encoder.layer.1.attention.output.dense.bias",
            "news_encoder.encoder.layer.1.attention.output.dense.weight",
            "news_encoder.encoder.layer.1.attention.self.key.bias",
            "news_encoder.encoder.layer.1.attention.self.key.weight",
            "news_encoder.encoder.layer.1.attention.self.query.bias",
            "news_encoder.encoder.layer.1.attention.self.query.weight",
            "news_encoder.encoder.layer.1.attention.self.value.bias",
            "news_encoder.encoder.layer.1.attention.self.value.weight",
            "news_encoder.encoder.layer.1.intermediate.dense.bias",
            "news_encoder.encoder.layer.1.intermediate.dense.weight",
            "news_encoder.encoder.layer.1.output.LayerNorm.bias",
            "news_encoder.encoder.layer.1.output.LayerNorm.weight",
            "news_encoder.encoder.layer.1.output.dense.bias",
            "news_encoder.encoder.layer.1.output.dense.weight",
            "user_encoder.proj.bias",
            "user_encoder.proj.weight",
            "user_encoder.query",
        }
    )

    def get_config(self):
        return tiny_config()

    def get_inputs(self, config):
        return random_batch(seed=0)

    def get_item_inputs(self, config, num_items):
        ids = torch.randint(5, config.encoder_config.vocab_size, (num_items, 6), generator=torch.Generator().manual_seed(1))
        ids[:, 0] = 2  # [CLS]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
