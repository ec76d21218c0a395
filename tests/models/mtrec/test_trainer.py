"""MTRecTrainer: the training step equals the surgery formula, logging, arguments."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from tests.conftest import random_batch, tiny_config
from tests.models.mtrec.exactness_run import ListDataset, first

LAMBDA = 0.3

def deterministic_config():
    # No dropout: the trainer's forward and the reference forward must see the same function.
    return tiny_config(
        encoder_config=BertConfig(
            vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        ),
        head_dropout=0.0,
    )

def make_trainer(tmp_path, mode: str, model=None, **kwargs) -> MTRecTrainer:
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), gradient_surgery=mode, aux_weight=LAMBDA, report_to=[], use_cpu=True,
        per_device_train_batch_size=1, logging_steps=1, save_strategy="no", **kwargs,
    )
    trainer = MTRecTrainer(model=model, args=args, train_dataset=ListDataset([]), data_collator=first)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; we call training_step directly
    return trainer

def reference_grads(model, batch, mode):
    """The surgery formula, computed independently of the trainer with torch.autograd.grad."""
    out = model(**batch)
    params = [p for p in model.parameters() if p.requires_grad]
    g_main = torch.autograd.grad(out.main_loss, params, retain_graph=True, allow_unused=True)
    g_aux = torch.autograd.grad(LAMBDA * (out.category_loss + out.ner_loss), params, allow_unused=True)
    shared = [i for i in range(len(params)) if g_main[i] is not None and g_aux[i] is not None]
    m = torch.cat([g_main[i].flatten() for i in shared])
    a = torch.cat([g_aux[i].flatten() for i in shared])
    dot = m @ a
    if mode in ("mtrec", "pcgrad") and dot < 0:
        new_a = a - dot / (m @ m) * m
        new_m = m - dot / (a @ a) * a if mode == "pcgrad" else m
        m, a = new_m, new_a
    combined = iter((m + a).split([params[i].numel() for i in shared]))
    expected = []
    for i, p in enumerate(params):
        if i in shared:
            expected.append(next(combined).view_as(p))
        else:
            expected.append(g_main[i] if g_main[i] is not None else g_aux[i])
    return params, expected, dot.item()

def find_batch(conflicting: bool):
    """First seed whose batch gives g_main . g_aux < 0 (or > 0), so each case is really exercised."""
    for seed in range(60):
        torch.manual_seed(seed)
        model = MTRecModel(deterministic_config()).train()
        batch = random_batch(seed=seed)
        _, _, dot = reference_grads(model, batch, "none")
        if (dot < 0) == conflicting:
            return seed, batch
    raise AssertionError("no batch with the wanted conflict sign")

@pytest.mark.parametrize("mode", ["mtrec", "pcgrad", "none"])
@pytest.mark.parametrize("conflicting", [True, False])
def test_training_step_grad_equals_surgery_formula(tmp_path, mode, conflicting):
    seed, batch = find_batch(conflicting)
    torch.manual_seed(seed)
    model = MTRecModel(deterministic_config()).train()
    params, expected, dot = reference_grads(model, batch, mode)
    assert (dot < 0) == conflicting
    trainer = make_trainer(tmp_path, mode, model=model)
    loss = trainer.training_step(model, dict(batch))
    assert torch.isfinite(loss)
    for p, e in zip(params, expected):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)

def test_surgery_changes_the_update_only_when_conflicting(tmp_path):
    seed, batch = find_batch(conflicting=True)
    grads = {}
    for mode in ("none", "mtrec"):
        torch.manual_seed(seed)
        model = MTRecModel(deterministic_config()).train()
        make_trainer(tmp_path, mode, model=model).training_step(model, dict(batch))
        grads[mode] = torch.cat([p.grad.flatten() for p in model.news_encoder.parameters()])
        user = torch.cat([p.grad.flatten() for p in model.user_encoder.parameters()])
        heads = torch.cat([p.grad.flatten() for p in model.ner_head.parameters()])
        grads[mode + "_user"], grads[mode + "_heads"] = user, heads
    assert not torch.allclose(grads["none"], grads["mtrec"])
    # Parameters outside the shared encoder keep their own side's gradient in every mode.
    torch.testing.assert_close(grads["none_user"], grads["mtrec_user"])
    torch.testing.assert_close(grads["none_heads"], grads["mtrec_heads"])

def test_none_mode_grad_is_gradient_of_weighted_sum(tmp_path):
    torch.manual_seed(0)
    model = MTRecModel(deterministic_config()).train()
    batch = random_batch(seed=5)
    out = model(**batch)
    params = [p for p in model.parameters() if p.requires_grad]
    expected = torch.autograd.grad(out.main_loss + LAMBDA * (out.category_loss + out.ner_loss), params)
    make_trainer(tmp_path, "none", model=model).training_step(model, dict(batch))
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)

def test_batch_without_aux_labels_trains_on_main_only(tmp_path):
    torch.manual_seed(0)
    model = MTRecModel(deterministic_config()).train()
    batch = random_batch(seed=1)
    batch["category_labels"] = torch.full_like(batch["category_labels"], -100)
    batch["ner_labels"] = torch.full_like(batch["ner_labels"], -100)
    out = model(**batch)
    params = [p for p in model.parameters() if p.requires_grad]
    expected = torch.autograd.grad(out.main_loss, params, allow_unused=True)
    make_trainer(tmp_path, "mtrec", model=model).training_step(model, dict(batch))
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e if e is not None else torch.zeros_like(p), rtol=1e-4, atol=1e-6)

def test_training_logs_task_losses_cosine_and_conflicts_and_updates_every_parameter(tmp_path):
    torch.manual_seed(0)
    model = MTRecModel(tiny_config())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batches = [random_batch(seed=s) for s in range(4)]
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=1, logging_steps=2,
        save_strategy="no", learning_rate=1e-2, max_steps=4, gradient_surgery="mtrec",
    )
    trainer = MTRecTrainer(model=model, args=args, train_dataset=ListDataset(batches), data_collator=first)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        for key in ("main_loss", "category_loss", "ner_loss", "grad_cosine", "conflict_rate"):
            assert key in entry, key
        assert -1.0 <= entry["grad_cosine"] <= 1.0 and entry["conflict_rate"] in (0.0, 0.5, 1.0)
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []

def test_training_arguments_validate():
    with pytest.raises(ValueError, match="gradient_surgery"):
        MTRecTrainingArguments(output_dir="x", gradient_surgery="cagrad")
    with pytest.raises(ValueError, match="aux_weight"):
        MTRecTrainingArguments(output_dir="x", aux_weight=-1.0)
    args = MTRecTrainingArguments(output_dir="x")
    assert (args.aux_weight, args.gradient_surgery, args.remove_unused_columns) == (0.3, "mtrec", False)
