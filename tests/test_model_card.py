"""One model-card writer for every model, one card layout; cards are written by the trainers and recipes, never by
`save_pretrained`."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard
from transformers import TrainingArguments

import modeling_mtrec
from modeling_mtrec import FoundationTrainer, MTRecModel, MTRecTrainer, TwoTowerModel, TwoTowerTrainer
from modeling_mtrec.training.model_card import (
    CARD_SECTIONS,
    CARDS,
    card_template_path,
    render_model_card,
    write_model_card,
)
from tests.testing_utils import tiny_config, tiny_tt_config
from tests.models.foundation import foundation_helpers


def test_every_model_has_a_card_and_every_card_the_shared_layout():
    assert {config_class.model_type for config_class, _ in modeling_mtrec.MODELS} == set(CARDS)
    for spec in CARDS.values():
        text = card_template_path(spec.template).read_text(encoding="utf-8")
        assert len(re.findall(r"^# ", text, re.M)) == 1, spec.template
        assert tuple(re.findall(r"^## (.+)$", text, re.M)) == CARD_SECTIONS, spec.template


@pytest.mark.parametrize(
    "config, metrics, names",
    [
        (tiny_config(encoder_name_or_path="bert-base-uncased"), {"auc": 0.61234, "mrr": 0.3, "ndcg@5": float("nan")},
         ["AUC", "MRR"]),
        (tiny_tt_config(), {"recall@50": 0.2, "tail_recall@50": 0.1, "cold_recall@10": float("nan")},
         ["Recall@50", "tail Recall@50"]),
    ],
)
def test_card_holds_this_models_metrics_only(tmp_path, config, metrics, names):
    card = ModelCard.load(write_model_card(tmp_path, config, metrics=metrics, dataset_name="my-split"))
    results = card.data.eval_results
    assert [r.metric_name for r in results] == names  # NaN left out, the reference run's figures dropped
    assert results[0].metric_value == round(next(iter(metrics.values())), 4) and results[0].dataset_name == "my-split"
    assert card.data.base_model == getattr(config, "encoder_name_or_path", None)
    assert ModelCard.load(write_model_card(tmp_path / "bare", config)).data.eval_results is None


def test_unknown_model_type_has_no_card(tmp_path):
    with pytest.raises(ValueError, match="no model card for model_type 'foundation'"):
        write_model_card(tmp_path, SimpleNamespace(model_type="foundation"))


@pytest.mark.parametrize(
    "make, trainer_class, metrics, names",
    [
        (lambda: MTRecModel(tiny_config()), MTRecTrainer, {"eval_auc": 0.61234, "eval_mrr": 0.3}, ["AUC", "MRR"]),
        (lambda: TwoTowerModel(tiny_tt_config()), TwoTowerTrainer, {"eval_recall@50": 0.2}, ["Recall@50"]),
        (foundation_helpers.make_model, FoundationTrainer, {"eval_mean_auc": 0.7}, ["mean AUC"]),
    ],
)
def test_every_trainer_writes_its_models_card_and_save_pretrained_none(tmp_path, make, trainer_class, metrics, names):
    model = make()
    model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "README.md").exists()  # a model file has no side effect
    trainer = trainer_class(model=model, args=TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[]))
    trainer.state.log_history.append({**metrics, "epoch": 1.0})
    trainer.create_model_card(dataset="my-split")
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.content == render_model_card(model.config, {k[5:]: v for k, v in metrics.items()}, "my-split").content
    assert [r.metric_name for r in card.data.eval_results] == names
