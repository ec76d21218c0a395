"""The surgery stays exact in every set-up: accumulation and two-process DDP equal one big batch, bf16 and
fp16 steps project as the formula says, a resumed run ends like an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig

from modeling_mtrec import MTRecConfig, MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import generate_synthetic_mind, synthetic_tokenizer
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.training.surgery import (
    GradientSurgery,
    accumulate,
    project_conflicting,
)
from tests.testing_utils import random_batch
from tests.models.mtrec.exactness_run import build_model, micro_batches, train

HERE = Path(__file__).resolve().parent

LAMBDA = 0.3

def final_params(output_dir) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(output_dir, "final.safetensors"))

def assert_same_params(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, f"largest parameter difference {worst:.3g} > {atol}"

def conflicts_seen(output_dir) -> float:
    with open(os.path.join(output_dir, "log_history.json")) as f:
        return sum(entry.get("conflict_rate", 0.0) for entry in json.load(f))

@pytest.fixture(scope="module")
def concatenated_run(tmp_path_factory):
    """The reference: one process, accumulation 1, each step on two micro-batches glued together."""
    out = tmp_path_factory.mktemp("concat")
    train(str(out), "mtrec", concatenate=2)
    return out

def test_reference_run_trains_and_projects(concatenated_run):
    params = final_params(concatenated_run)
    initial = {n: p.detach() for n, p in build_model().named_parameters()}
    assert all(not torch.equal(params[n], initial[n]) for n in initial)
    assert conflicts_seen(concatenated_run) > 0  # some steps really were projected

def test_gradient_accumulation_equals_one_big_batch(tmp_path, concatenated_run):
    train(str(tmp_path), "mtrec", gradient_accumulation_steps=2)
    assert_same_params(final_params(tmp_path), final_params(concatenated_run))

@pytest.mark.slow
def test_two_process_ddp_equals_one_process_on_concatenated_batches(tmp_path, concatenated_run):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(HERE / "exactness_run.py"), "--output_dir", str(tmp_path), "--mode", "mtrec",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(tmp_path / "setup.json") as f:
        assert json.load(f) == {"distributed_type": "MULTI_CPU", "num_processes": 2}
    assert_same_params(final_params(tmp_path), final_params(concatenated_run))

def test_accumulated_surgery_is_not_per_micro_batch():
    """Guard for the tests above: projecting each micro-batch on its own gives a different update than projecting
    their sum once, so equality with the concatenated batch really checks that the surgery waits for the step."""
    model = build_model().train()
    params = [p for p in model.parameters() if p.requires_grad]
    surgery = GradientSurgery("mtrec")
    per_micro, total_main, total_aux = [], None, None
    for batch in micro_batches()[:2]:
        out = model(**batch)
        g_main = torch.autograd.grad(out.main_loss, params, retain_graph=True, allow_unused=True)
        g_aux = torch.autograd.grad(LAMBDA * (out.category_loss + out.ner_loss), params, allow_unused=True)
        per_micro.append(surgery.combine(g_main, g_aux))
        total_main, total_aux = accumulate(total_main, g_main), accumulate(total_aux, g_aux)
    once, stats = surgery.combine(total_main, total_aux)
    assert any(s.conflict for _, s in per_micro) or stats.conflict  # a projection happened somewhere
    separately = [a + b for a, b in zip(per_micro[0][0], per_micro[1][0])]
    gap = max((x - y).abs().max().item() for x, y in zip(once, separately))
    assert gap > 1e-6

def _reference(model, batch, mode="mtrec", bf16=False):
    """Parameter-level surgery computed independently of the trainer (forward under bf16 autocast if asked)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(**batch)
    params = [p for p in model.parameters() if p.requires_grad]
    g_main = torch.autograd.grad(out.main_loss, params, retain_graph=True, allow_unused=True)
    g_aux = torch.autograd.grad(LAMBDA * (out.category_loss + out.ner_loss), params, allow_unused=True)
    shared = [i for i in range(len(params)) if g_main[i] is not None and g_aux[i] is not None]
    m = torch.cat([g_main[i].flatten().float() for i in shared])
    a = torch.cat([g_aux[i].flatten().float() for i in shared])
    m, a, dot, _ = project_conflicting(m, a, mode)
    combined = iter((m + a).split([params[i].numel() for i in shared]))
    expected = [
        next(combined).view_as(p) if i in shared else (g_main[i] if g_main[i] is not None else g_aux[i])
        for i, p in enumerate(params)
    ]
    return params, expected, dot.item()

def _trainer(tmp_path, model, **kwargs) -> MTRecTrainer:
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), aux_weight=LAMBDA, report_to=[], use_cpu=True, save_strategy="no", **kwargs
    )
    trainer = MTRecTrainer(model=model, args=args, data_collator=lambda f: f[0])
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; training_step is called directly
    return trainer

def _conflicting_batch():
    for seed in range(60):
        batch = random_batch(seed=seed)
        _, _, dot = _reference(build_model().train(), batch)
        if dot < 0:
            return batch
    raise AssertionError("no conflicting batch found")

def test_bf16_autocast_step_matches_surgery_under_the_same_autocast(tmp_path):
    batch = _conflicting_batch()
    model = build_model().train()
    params, expected, dot = _reference(model, batch, bf16=True)
    assert dot < 0
    trainer = _trainer(tmp_path, model, bf16=True)
    # Under transformers 5 autocast comes from accelerate wrapping the model's forward, as `train()` does.
    prepared = trainer.accelerator.prepare_model(model)
    loss = trainer.training_step(prepared, dict(batch))
    assert torch.isfinite(loss)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e.to(p.grad.dtype), rtol=1e-3, atol=1e-5)

def test_bf16_training_run_stays_finite(tmp_path):
    trainer = train(str(tmp_path), "mtrec", bf16=True)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)

def test_fp16_scaled_gradients_project_like_unscaled_ones(tmp_path):
    """Under fp16 the surgery runs on GradScaler-scaled gradients: the result is the scaled surgery."""
    batch = _conflicting_batch()
    model = build_model().train()
    params, expected, _ = _reference(model, batch)
    trainer = _trainer(tmp_path, model)
    scale = 2.0**12
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    trainer.training_step(model, dict(batch))
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad / scale, e, rtol=1e-4, atol=1e-6)

def test_fp16_overflowing_step_is_skipped_without_nan(tmp_path):
    batch = _conflicting_batch()
    model = build_model().train()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(tmp_path, model)
    scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))  # every scaled gradient overflows
    trainer.accelerator.scaler = scaler
    trainer.training_step(model, dict(batch))  # no crash on inf/NaN gradients
    assert any(not torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler.step(optimizer)  # the scaler sees the inf and skips the step
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)

def test_resumed_run_ends_like_uninterrupted_run(tmp_path):
    """Real data path: synthetic corpus, MTRecCollator negatives, dropout, AdamW, random order, 2 epochs."""
    dirs = generate_synthetic_mind(str(tmp_path / "data"), seed=0, num_users=20, num_dev_users=5)
    tokenizer = synthetic_tokenizer()
    corpus = load_mind(tokenizer, train_dir=dirs["train"], max_title_length=16, max_history_length=10)
    train_set = corpus.train.select(range(24))  # 3 steps of 8 per epoch

    def run(output_dir, resume=None):
        torch.manual_seed(0)
        config = dict(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=32,
        )
        model = MTRecModel(
            MTRecConfig(
                encoder_config=BertConfig(**config), id2category={i: c for c, i in corpus.category2id.items()},
                max_title_length=16, max_history_length=10, user_attention_dim=16,
            )
        )
        args = MTRecTrainingArguments(
            output_dir=str(output_dir), per_device_train_batch_size=8, num_train_epochs=2, learning_rate=1e-3,
            save_strategy="steps", save_steps=4, report_to=[], use_cpu=True, seed=0, logging_steps=1,
            disable_tqdm=True,
        )
        collator = MTRecCollator(corpus.news, num_negatives=2, pad_token_id=tokenizer.pad_token_id, seed=0)
        trainer = MTRecTrainer(model=model, args=args, train_dataset=train_set, data_collator=collator)
        trainer.train(resume_from_checkpoint=resume)
        return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}

    uninterrupted = run(tmp_path / "full")
    resumed = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-4"))
    assert_same_params(uninterrupted, resumed, atol=1e-6)

def test_micro_batches_are_balanced():
    """The premise of the equalities above: every micro-batch has the same label counts per task."""
    counts = {
        (int((b["labels"] == 1).sum()), int((b["category_labels"] != -100).sum()), int((b["ner_labels"] != -100).sum()))
        for b in micro_batches()
    }
    assert len(counts) == 1
