"""The common model tests (`tests/models/test_modeling_common.py`) for the foundation model.

Only the model-agnostic mixin: the foundation model has no scoring interface (`encode_items` / `encode_users` /
`score`), since its score is a network over user, query and item together, and its output has no `user_embeds`.
"""

from __future__ import annotations

import torch
from transformers import BertConfig

from modeling_mtrec import FoundationModel
from tests.models.foundation.foundation_helpers import TEXT_DIM, random_batch, tiny_config
from tests.models.test_modeling_common import ModelTesterMixin

# `sorted(FoundationModel(tiny_config()).state_dict())`. The foundation model is new in this version, so "the
# weight names of earlier versions" are this version's, written down here: a later change that renames a weight
# breaks the folders saved now, and this list says so.
FOUNDATION_STATE_DICT_KEYS = frozenset(
    {
        "domain_adaptive.domain_embeddings.weight",
        "domain_adaptive.projection.bias",
        "domain_adaptive.projection.weight",
        "embeddings.item_id.weight",
        "embeddings.item_sparse.weight",
        "embeddings.query_id.weight",
        "embeddings.query_sparse.weight",
        "embeddings.user_id.weight",
        "embeddings.user_sparse.weight",
        "encoders.item_id_projection.bias",
        "encoders.item_id_projection.weight",
        "encoders.item_sparse_mlp.0.bias",
        "encoders.item_sparse_mlp.0.weight",
        "encoders.item_sparse_mlp.2.bias",
        "encoders.item_sparse_mlp.2.weight",
        "encoders.query_id_projection.bias",
        "encoders.query_id_projection.weight",
        "encoders.query_sparse_mlp.0.bias",
        "encoders.query_sparse_mlp.0.weight",
        "encoders.query_sparse_mlp.2.bias",
        "encoders.query_sparse_mlp.2.weight",
        "encoders.text_projection.bias",
        "encoders.text_projection.weight",
        "encoders.user_encoder.layers.0.linear1.bias",
        "encoders.user_encoder.layers.0.linear1.weight",
        "encoders.user_encoder.layers.0.linear2.bias",
        "encoders.user_encoder.layers.0.linear2.weight",
        "encoders.user_encoder.layers.0.norm1.bias",
        "encoders.user_encoder.layers.0.norm1.weight",
        "encoders.user_encoder.layers.0.norm2.bias",
        "encoders.user_encoder.layers.0.norm2.weight",
        "encoders.user_encoder.layers.0.self_attn.in_proj_bias",
        "encoders.user_encoder.layers.0.self_attn.in_proj_weight",
        "encoders.user_encoder.layers.0.self_attn.out_proj.bias",
        "encoders.user_encoder.layers.0.self_attn.out_proj.weight",
        "encoders.user_id_projection.bias",
        "encoders.user_id_projection.weight",
        "encoders.user_sparse_mlp.0.bias",
        "encoders.user_sparse_mlp.0.weight",
        "encoders.user_sparse_mlp.2.bias",
        "encoders.user_sparse_mlp.2.weight",
        "fusion.empty_query",
        "fusion.item_gating.domain_embeddings.weight",
        "fusion.query_gating.domain_embeddings.weight",
        "heads.ctr.0.0.bias",
        "heads.ctr.0.0.weight",
        "heads.ctr.1.bias",
        "heads.ctr.1.weight",
        "heads.relevance.0.0.bias",
        "heads.relevance.0.0.weight",
        "heads.relevance.1.bias",
        "heads.relevance.1.weight",
        "multi_task.experts.0.0.bias",
        "multi_task.experts.0.0.weight",
        "multi_task.experts.1.0.bias",
        "multi_task.experts.1.0.weight",
        "multi_task.experts.2.0.bias",
        "multi_task.experts.2.0.weight",
        "multi_task.gates.0.bias",
        "multi_task.gates.0.weight",
        "multi_task.gates.1.bias",
        "multi_task.gates.1.weight",
    }
)


class TestFoundationModel(ModelTesterMixin):
    """The default set-up: the language model stays outside the model (frozen), its vectors come as `text_embeds`."""

    model_class = FoundationModel
    loss_names = ("loss", "ctr_loss", "relevance_loss", "regularizer_loss")
    logit_names = ("ctr_logits", "relevance_logits")
    legacy_model_type = "mtrec_foundation"
    legacy_state_dict_keys = FOUNDATION_STATE_DICT_KEYS

    def get_config(self):
        # Dropout on: the train-mode tests run the dropout layers, the eval-mode ones (save / load) prove they are
        # off, and the weight names are the list above, written down from a model without dropout.
        return tiny_config(dropout=0.1)

    def get_inputs(self, config):
        # Search and recommendation rows of every domain with click and relevance labels (regulariser on).
        return random_batch(seed=0)

    def test_gradients_reach_every_trainable_parameter_under_the_cold_start_freeze(self):
        """The cold-start recipe freezes L0 + L1: the frozen weights get no gradient, all the others one."""
        model = self.make_model().train()
        frozen = set(model.freeze("L0+L1"))
        assert frozen and len(frozen) < len(list(model.parameters()))
        self.forward(model, self.get_inputs(model.config)).loss.backward()
        for name, p in model.named_parameters():
            if name in frozen:
                assert p.grad is None, name
            else:
                assert p.grad is not None and p.grad.abs().sum() > 0, name

    def test_weight_names_do_not_depend_on_dropout(self, tmp_path):
        """Fine-tuning a saved model with another dropout loads every weight (none re-initialised)."""
        config = self.get_config()
        config.dropout, config.expert_hidden_sizes, config.tower_hidden_sizes = 0.0, [16, 8], [8, 4]  # 2-layer MLPs
        self.model_class(config).save_pretrained(tmp_path)
        loaded, info = self.model_class.from_pretrained(tmp_path, dropout=0.1, output_loading_info=True)
        assert loaded.config.dropout == 0.1
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        assert any(isinstance(m, torch.nn.Dropout) for m in loaded.modules())


class TestFoundationModelWithLanguageModel(TestFoundationModel):
    """The language model inside the model, fine-tuned end to end (a tiny random BERT): the batch holds the texts'
    tokens (`text_input_ids`) instead of their vectors, and the folder holds the LM's weights."""

    legacy_state_dict_keys = FOUNDATION_STATE_DICT_KEYS | {
        "embeddings.text_model.embeddings.LayerNorm.bias",
        "embeddings.text_model.embeddings.LayerNorm.weight",
        "embeddings.text_model.embeddings.position_embeddings.weight",
        "embeddings.text_model.embeddings.token_type_embeddings.weight",
        "embeddings.text_model.embeddings.word_embeddings.weight",
        "embeddings.text_model.encoder.layer.0.attention.output.LayerNorm.bias",
        "embeddings.text_model.encoder.layer.0.attention.output.LayerNorm.weight",
        "embeddings.text_model.encoder.layer.0.attention.output.dense.bias",
        "embeddings.text_model.encoder.layer.0.attention.output.dense.weight",
        "embeddings.text_model.encoder.layer.0.attention.self.key.bias",
        "embeddings.text_model.encoder.layer.0.attention.self.key.weight",
        "embeddings.text_model.encoder.layer.0.attention.self.query.bias",
        "embeddings.text_model.encoder.layer.0.attention.self.query.weight",
        "embeddings.text_model.encoder.layer.0.attention.self.value.bias",
        "embeddings.text_model.encoder.layer.0.attention.self.value.weight",
        "embeddings.text_model.encoder.layer.0.intermediate.dense.bias",
        "embeddings.text_model.encoder.layer.0.intermediate.dense.weight",
        "embeddings.text_model.encoder.layer.0.output.LayerNorm.bias",
        "embeddings.text_model.encoder.layer.0.output.LayerNorm.weight",
        "embeddings.text_model.encoder.layer.0.output.dense.bias",
        "embeddings.text_model.encoder.layer.0.output.dense.weight",
    }

    def get_config(self):
        config = super().get_config()
        config.text_encoder_config = BertConfig(
            vocab_size=99, hidden_size=TEXT_DIM, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=32,
        )
        return config

    def get_inputs(self, config):
        inputs = random_batch(seed=0)
        num_texts = inputs.pop("text_embeds").shape[0]
        ids = torch.randint(5, 99, (num_texts, 6), generator=torch.Generator().manual_seed(1))
        ids[:, 0] = 2  # [CLS]
        mask = torch.ones_like(ids)
        mask[0, 4:] = 0  # one shorter text
        return {**inputs, "text_input_ids": ids * mask, "text_attention_mask": mask}
