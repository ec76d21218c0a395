"""What every Trainer of the package shares (`training.base.BaseTrainer`): a diverged run stops at its first
non-finite loss, non-finite weights are not saved as a model, and a resume without the RNG state says it is not
exact."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from modeling_mtrec import (
    FoundationTrainer,
    FoundationTrainingArguments,
    MTRecTrainer,
    MTRecTrainingArguments,
    TwoTowerTrainer,
    TwoTowerTrainingArguments,
)
from modeling_mtrec.models.two_tower.collator import TwoTowerCollator
from tests.testing_utils import NUM_ITEMS, make_two_tower, tiny_items
from tests.models.foundation import foundation_helpers
from tests.models.mtrec.exactness_run import ListDataset, build_model, first, micro_batches, train


class PoisonAfterStep(TrainerCallback):
    """Fills one weight with NaN once `step` optimizer steps are done, as a diverging update would."""

    def __init__(self, parameter: torch.nn.Parameter, step: int) -> None:
        self.parameter, self.step = parameter, step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                self.parameter.fill_(float("nan"))


@pytest.mark.parametrize("mode", ["mtrec", "none"])
def test_mtrec_run_stops_at_the_first_non_finite_loss(tmp_path, mode):
    model = build_model()
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), gradient_surgery=mode, per_device_train_batch_size=1, max_steps=4,
        learning_rate=0.1, optim="sgd", train_sampling_strategy="sequential", logging_steps=1, report_to=[],
        use_cpu=True, save_strategy="no",
    )
    trainer = MTRecTrainer(
        model=model, args=args, train_dataset=ListDataset(micro_batches()), data_collator=first,
        callbacks=[PoisonAfterStep(model.user_encoder.parameters().__next__(), 2)],
    )
    with pytest.raises(RuntimeError, match=r"step 3 .*main_loss.* not finite") as error:
        trainer.train()
    assert "nan" in str(error.value)
    assert trainer.state.global_step == 2  # the NaN step was not applied
    assert not any(entry.get("loss") == 0 for entry in trainer.state.log_history)  # nor logged as 'loss': 0


def test_two_tower_run_stops_at_the_first_non_finite_loss(tmp_path):
    items = tiny_items()
    rows = [{"user_key": u, "history": [u % NUM_ITEMS], "positive": (3 * u) % NUM_ITEMS} for u in range(16)]
    args = TwoTowerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, learning_rate=1e-2,
        report_to="none", save_strategy="no", logging_steps=1, use_cpu=True,
    )
    model = make_two_tower().train()
    trainer = TwoTowerTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows),
        data_collator=TwoTowerCollator(items, ssl_batch_size=4),
        callbacks=[PoisonAfterStep(model.item_tower.mlp[0].weight, 1)],
    )
    with pytest.raises(RuntimeError, match=r"step 2 .*main_loss.* not finite"):
        trainer.train()


@pytest.mark.parametrize("mode", ["none", "mtrec"])
def test_foundation_step_refuses_a_non_finite_loss(tmp_path, mode):
    model = foundation_helpers.make_model()
    args = FoundationTrainingArguments(output_dir=str(tmp_path), gradient_surgery=mode, report_to="none", use_cpu=True)
    trainer = FoundationTrainer(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(RuntimeError, match=r"step 1 .*ctr_loss.* not finite"):
        trainer.training_step(model, foundation_helpers.random_batch(seed=3))


def test_non_finite_weights_are_not_saved_as_a_model(tmp_path):
    model = build_model()
    # An output_dir of the test's own: without args the Trainer would create `tmp_trainer/` in the working directory.
    args = MTRecTrainingArguments(output_dir=str(tmp_path / "run"), report_to="none", use_cpu=True)
    trainer = MTRecTrainer(model=model, args=args)
    with torch.no_grad():
        model.news_encoder.embeddings.word_embeddings.weight[3, 0] = float("inf")
    with pytest.raises(RuntimeError, match=r"word_embeddings\.weight.* NaN or inf"):
        trainer.save_model(str(tmp_path / "model"))
    assert not (tmp_path / "model" / "model.safetensors").exists()
    with torch.no_grad():
        model.news_encoder.embeddings.word_embeddings.weight[3, 0] = 0.0
    trainer.save_model(str(tmp_path / "model"))  # finite weights save as usual
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_resume_without_rng_state_warns_naming_the_file(tmp_path, caplog):
    train(str(tmp_path / "full"), "mtrec", max_steps=2, save_steps=1)
    checkpoint = tmp_path / "full" / "checkpoint-1"
    os.remove(checkpoint / "rng_state.pth")
    with caplog.at_level(logging.WARNING):
        train(str(tmp_path / "resumed"), "mtrec", max_steps=2, resume_from_checkpoint=str(checkpoint))
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(str(checkpoint / "rng_state.pth") in message and "not exact" in message for message in warned), warned


def test_every_trainer_upgrades_plain_training_arguments(tmp_path):
    from transformers import TrainingArguments

    plain = TrainingArguments(output_dir=str(tmp_path), report_to=[], learning_rate=3e-4)
    for trainer_class, model, args_class in (
        (MTRecTrainer, build_model(), MTRecTrainingArguments),
        (TwoTowerTrainer, make_two_tower(), TwoTowerTrainingArguments),
        (FoundationTrainer, foundation_helpers.make_model(), FoundationTrainingArguments),
    ):
        args = trainer_class(model=model, args=plain).args
        assert type(args) is args_class and args.learning_rate == 3e-4  # what was given is kept
        assert args.remove_unused_columns is False  # the collators' columns are kept
