"""TwoTowerTrainer: the streaming estimator's step counts micro-batches."""

from __future__ import annotations

import torch
from datasets import Dataset

from modeling_mtrec import (
    TwoTowerTrainer,
    TwoTowerTrainingArguments,
)
from modeling_mtrec.models.two_tower.collator import TwoTowerCollator
from tests.testing_utils import NUM_ITEMS, make_two_tower, tiny_items


def test_trainer_estimator_step_counts_micro_batches_under_gradient_accumulation(tmp_path):
    items = tiny_items()
    rows = [{"user_key": u, "history": [u % NUM_ITEMS], "positive": (3 * u) % NUM_ITEMS} for u in range(16)]
    args = TwoTowerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2,
        learning_rate=1e-2, report_to="none", save_strategy="no", logging_steps=1, use_cpu=True,
    )
    model = make_two_tower().train()
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
