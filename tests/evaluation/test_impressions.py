"""Fast evaluation: equal to the Trainer's loop, used by MTRecTrainer.evaluate, restores the model's mode."""

from __future__ import annotations

import pytest

from modeling_mtrec import MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.evaluation.impressions import fast_evaluate
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from tests.testing_utils import synthetic_model

pytestmark = pytest.mark.usefixtures("one_thread")


METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10", "num_impressions", "num_skipped_impressions")

def trainer_for(model, corpus, tokenizer, tmp_path, fast: bool) -> MTRecTrainer:
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=16, fast_eval=fast,
        disable_tqdm=True,
    )
    collator = MTRecCollator(corpus.news, pad_token_id=tokenizer.pad_token_id)
    return MTRecTrainer(model=model, args=args, eval_dataset=corpus.eval, data_collator=collator)

def test_fast_evaluate_equals_slow_path(setup, tmp_path):
    _, tokenizer, corpus, model = setup
    slow = trainer_for(model, corpus, tokenizer, tmp_path, fast=False).evaluate()
    trainer = trainer_for(model, corpus, tokenizer, tmp_path, fast=True)
    seen = []
    trainer.callback_handler.on_evaluate = lambda args, state, control, metrics: seen.append(metrics) or control
    fast = trainer.evaluate()
    assert slow["eval_num_impressions"] == fast["eval_num_impressions"] == len(corpus.eval)
    for name in METRICS:
        assert fast[f"eval_{name}"] == pytest.approx(slow[f"eval_{name}"], abs=1e-6), name
    # Same keys as the slow path, except the loss, which needs per-token states the cache does not keep.
    assert set(slow) - set(fast) <= {"eval_loss", "eval_model_preparation_time"}
    assert seen and seen[0] is fast  # callbacks' on_evaluate got the metrics, as with Trainer.evaluate
    assert any("eval_auc" in entry for entry in trainer.state.log_history)
    direct = fast_evaluate(model, corpus.news, corpus.eval, batch_size=7)  # other batching, same numbers
    for name in METRICS:
        assert direct[name] == pytest.approx(slow[f"eval_{name}"], abs=1e-6), name

def test_trainer_falls_back_to_slow_path_when_a_loss_is_needed(setup, tmp_path):
    _, tokenizer, corpus, model = setup
    few = corpus.eval.select(range(4))
    trainer = trainer_for(model, corpus, tokenizer, tmp_path, fast=True)
    assert "eval_loss" not in trainer.evaluate(few)
    trainer.args.metric_for_best_model = "loss"  # the fast path has no eval_loss to select a checkpoint by
    assert "eval_loss" in trainer.evaluate(few)
    trainer.args.metric_for_best_model = None
    trainer.compute_metrics = lambda eval_pred: {"custom": 1.0}  # only the slow path can call it
    assert trainer.evaluate(few)["eval_custom"] == 1.0

def test_fast_evaluation_during_training(setup, tmp_path):
    """eval_strategy="steps" goes through the fast path and hands the model back in training mode."""
    _, tokenizer, corpus, _ = setup
    model = synthetic_model(tokenizer, corpus.category2id)
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=4, max_steps=2,
        eval_strategy="steps", eval_steps=1, save_strategy="no", disable_tqdm=True,
    )
    collator = MTRecCollator(corpus.news, num_negatives=2, pad_token_id=tokenizer.pad_token_id)
    trainer = MTRecTrainer(
        model=model, args=args, train_dataset=corpus.train, eval_dataset=corpus.eval.select(range(8)),
        data_collator=collator,
    )
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_auc" in entry]
    assert len(evaluations) == 2 and all("eval_loss" not in entry for entry in evaluations)
    assert model.training

def test_fast_evaluate_restores_training_mode(setup):
    _, _, corpus, model = setup
    model.train()
    try:
        fast_evaluate(model, corpus.news, corpus.eval.select(range(4)), batch_size=4)
        assert model.training
    finally:
        model.eval()
