"""MTRecTrainer: the training step equals the surgery formula, logging, arguments."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from tests.testing_utils import random_batch, tiny_config
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


# ------------------------------------------------------------------------------------------ head_learning_rate


def optimizer_groups(optimizer) -> dict[int, tuple[float, float]]:
    """``{id(parameter): (lr, weight_decay)}``; fails if a parameter is in two groups."""
    groups = [(id(p), (g["lr"], g["weight_decay"])) for g in optimizer.param_groups for p in g["params"]]
    assert len(groups) == len(dict(groups))
    return dict(groups)


def test_head_learning_rate_gives_the_new_parameters_their_own_learning_rate(tmp_path):
    model = MTRecModel(tiny_config())
    trainer = make_trainer(
        tmp_path, "mtrec", model=model, learning_rate=2e-5, head_learning_rate=1e-3, weight_decay=0.01, max_steps=2,
        warmup_steps=0, lr_scheduler_type="linear",
    )
    optimizer = trainer.create_optimizer()
    groups = optimizer_groups(optimizer)
    assert len(groups) == sum(1 for _ in model.parameters())  # every parameter, once
    encoder = {id(p) for p in model.news_encoder.parameters()}
    decay = set(trainer.get_decay_parameter_names(model))
    assert any(n not in decay for n, _ in model.news_encoder.named_parameters(prefix="news_encoder"))
    for name, p in model.named_parameters():
        assert groups[id(p)] == (2e-5 if id(p) in encoder else 1e-3, 0.01 if name in decay else 0.0), name
    assert {n.split(".")[0] for n, p in model.named_parameters() if id(p) not in encoder} == {
        "user_encoder", "category_head", "ner_head"
    }
    # The scheduler scales both learning rates alike: after step 1 of 2 (linear, no warm-up) both are halved.
    trainer.create_scheduler(num_training_steps=2, optimizer=optimizer)
    optimizer.step()  # no gradients: changes nothing, keeps torch's "scheduler before optimizer" check quiet
    trainer.lr_scheduler.step()
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([1e-5, 5e-4])


def test_head_learning_rate_keeps_a_given_optimizer_class_and_its_options(tmp_path):
    model = MTRecModel(tiny_config())
    args = MTRecTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, head_learning_rate=1e-2)
    trainer = MTRecTrainer(model=model, args=args, train_dataset=ListDataset([]), data_collator=first,
                           optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}))
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD) and {g["momentum"] for g in optimizer.param_groups} == {0.9}
    assert {g["lr"] for g in optimizer.param_groups} == {0.1, 1e-2}  # the given lr stays the encoder's


def test_without_head_learning_rate_the_trainer_builds_its_own_optimizer(tmp_path):
    model = MTRecModel(tiny_config())
    trainer = make_trainer(tmp_path, "mtrec", model=model, learning_rate=3e-4, weight_decay=0.01)
    groups = trainer.create_optimizer().param_groups
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(3e-4, 0.01), (3e-4, 0.0)]  # Trainer's two groups


@pytest.mark.parametrize("value", [0.0, -1e-3, float("inf"), float("nan")])
def test_head_learning_rate_must_be_finite_and_positive(value):
    with pytest.raises(ValueError, match="head_learning_rate"):
        MTRecTrainingArguments(output_dir="x", head_learning_rate=value)


def test_head_learning_rate_refuses_what_would_ignore_it(tmp_path):
    model = MTRecModel(tiny_config())
    args = MTRecTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, head_learning_rate=1e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with pytest.raises(ValueError, match="head_learning_rate is set but an optimizer was passed"):
        MTRecTrainer(model=model, args=args, train_dataset=ListDataset([]), data_collator=first,
                     optimizers=(optimizer, None))
    # An optimizer option that chooses its own parameters (as GaLore or LOMO do) cannot take the two groups.
    trainer = MTRecTrainer(model=model, args=args, train_dataset=ListDataset([]), data_collator=first,
                           optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.1, "params": list(model.parameters())}))
    with pytest.raises(ValueError, match="head_learning_rate needs an optimizer built over parameter groups"):
        trainer.create_optimizer()
