"""MTRec's gradient surgery under real CUDA mixed precision, and the main job on a GPU.

Marked `gpu`: skipped where CUDA is absent (CI, the 2-core development machines); run on a GPU machine with

    python -m pytest -m gpu tests/test_gpu.py

- bf16: the training-step gradients under accelerate's CUDA autocast equal the surgery formula computed under the
  same autocast, and differ from the unprojected sum by far more than the tolerance (so the test sees the
  projection);
- fp16: accelerate's real CUDA GradScaler; the surgery runs on scaled gradients, so grad / scale equals the
  unscaled surgery; an overflowing step is skipped by the scaler and leaves the weights finite and unchanged;
- short training runs in bf16 and fp16 change every parameter and stay finite;
- `train_mtrec.py` runs a few steps with `--bf16` and with `--fp16` on the GPU and writes finite dev metrics;
- the cheaper fine-tuning (frozen layers, LoRA) on the GPU: the bf16 surgery is exact under LoRA and under frozen layers; the
  cached frozen states give the uncached forward; the recipe runs with `--freeze_encoder_layers
  --cache_frozen_states` and with `--lora_r` (then merged), under `--bf16`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from tests.testing_utils import REPO_ROOT, random_batch, tiny_config
from tests.models.mtrec.exactness_run import ListDataset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

REPO = REPO_ROOT
LAMBDA = 0.3


def build_model(freeze: int = 0, lora_r: int = 0) -> MTRecModel:
    torch.manual_seed(0)
    config = tiny_config(
        freeze_encoder_layers=freeze,
        encoder_config=BertConfig(
            vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # two forwards must compute the same function
        ),
        head_dropout=0.0,
    )
    model = MTRecModel(config)
    if lora_r:
        from modeling_mtrec.training.lora import apply_lora

        model = apply_lora(model, r=lora_r, alpha=2 * lora_r, dropout=0.0)
        with torch.no_grad():  # LoRA's B starts at 0: move it, so the main loss reaches A too
            for name, p in model.named_parameters():
                if ".lora_B." in name:
                    p.normal_(std=0.05)
    return model.cuda().train()


def cuda_batch(seed: int) -> dict[str, torch.Tensor]:
    return {key: value.cuda() for key, value in random_batch(seed=seed).items()}


def surgery_reference(model, batch, dtype: torch.dtype, mode: str = "mtrec"):
    """MTRec's parameter-level surgery written out independently of the trainer, forward under CUDA autocast.

    Returns (params, projected, unprojected, dot): per-parameter update g_main + g_aux' and the plain sum.
    """
    with torch.autocast("cuda", dtype=dtype):
        out = model(**batch)
    params = [p for p in model.parameters() if p.requires_grad]
    g_main = torch.autograd.grad(out.main_loss, params, retain_graph=True, allow_unused=True)
    g_aux = torch.autograd.grad(LAMBDA * (out.category_loss + out.ner_loss), params, allow_unused=True)
    shared = [i for i in range(len(params)) if g_main[i] is not None and g_aux[i] is not None]
    m = torch.cat([g_main[i].flatten().float() for i in shared])
    a = torch.cat([g_aux[i].flatten().float() for i in shared])
    dot = torch.dot(m, a)
    a_proj = a - dot / torch.dot(m, m) * m if dot < 0 else a
    if mode == "pcgrad" and dot < 0:
        m = m - dot / torch.dot(a, a) * a
    sizes = [params[i].numel() for i in shared]
    projected, plain = iter((m + a_proj).split(sizes)), iter((m + a).split(sizes))
    out_projected, out_plain = [], []
    for i, p in enumerate(params):
        if i in shared:
            out_projected.append(next(projected).view_as(p))
            out_plain.append(next(plain).view_as(p))
        else:
            only = g_main[i] if g_main[i] is not None else g_aux[i]
            out_projected.append(only)
            out_plain.append(only)
    return params, out_projected, out_plain, dot.item()


def conflicting_batch(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    for seed in range(80):
        batch = cuda_batch(seed)
        *_, dot = surgery_reference(build_model(), batch, dtype)
        if dot < 0:
            return batch
    raise AssertionError("no conflicting batch found")


def make_trainer(tmp_path, model, **kwargs) -> MTRecTrainer:
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), aux_weight=LAMBDA, report_to=[], save_strategy="no", **kwargs
    )
    trainer = MTRecTrainer(model=model, args=args, data_collator=lambda f: f[0])
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; training_step is called directly
    return trainer


def max_diff(xs, ys) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(xs, ys))


@pytest.mark.parametrize("mode", ["mtrec", "pcgrad"])
def test_cuda_bf16_step_matches_surgery_under_the_same_autocast(tmp_path, mode):
    batch = conflicting_batch(torch.bfloat16)
    model = build_model()
    params, expected, plain, dot = surgery_reference(model, batch, torch.bfloat16, mode)
    assert dot < 0
    trainer = make_trainer(tmp_path, model, bf16=True, gradient_surgery=mode)
    assert trainer.args.device.type == "cuda"
    prepared = trainer.accelerator.prepare_model(model)  # accelerate's autocast wraps the forward, as in train()
    loss = trainer.training_step(prepared, dict(batch))
    assert torch.isfinite(loss)
    grads = [p.grad for p in params]
    error = max_diff(grads, expected)
    projection = max_diff(expected, plain)
    # The projection must be visible well above the bf16 agreement between the trainer and the reference.
    size = max(e.float().abs().max().item() for e in expected)
    assert error <= 1e-3 * size and projection > 20 * error, (error, projection, size)


def test_cuda_fp16_gradscaler_surgery_runs_on_scaled_gradients(tmp_path):
    batch = conflicting_batch(torch.float16)
    model = build_model()
    params, expected, plain, dot = surgery_reference(model, batch, torch.float16)
    trainer = make_trainer(tmp_path, model, fp16=True)
    scaler = trainer.accelerator.scaler
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()  # accelerate's real CUDA scaler
    prepared = trainer.accelerator.prepare_model(model)
    trainer.training_step(prepared, dict(batch))
    scale = scaler.get_scale()
    assert scale > 1
    unscaled = [p.grad / scale for p in params]
    error, projection = max_diff(unscaled, expected), max_diff(expected, plain)
    size = max(e.float().abs().max().item() for e in expected)
    assert error <= 1e-3 * size and projection > 20 * error, (error, projection, size)


def test_cuda_fp16_overflowing_step_is_skipped_without_nan(tmp_path):
    batch = conflicting_batch(torch.float16)
    model = build_model()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(tmp_path, model, fp16=True)
    scaler = torch.amp.GradScaler("cuda", init_scale=float("inf"))  # every scaled gradient overflows
    trainer.accelerator.scaler = scaler
    prepared = trainer.accelerator.prepare_model(model)
    trainer.training_step(prepared, dict(batch))  # no crash on inf/NaN gradients
    assert any(not torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler.step(optimizer)  # the scaler sees the inf and skips the step
    scaler.update()
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)
    assert scaler.get_scale() < float("inf")  # and backs off


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("mode", ["mtrec", "none"])
def test_cuda_mixed_precision_training_changes_every_parameter(tmp_path, precision, mode):
    model = build_model()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), gradient_surgery=mode, aux_weight=LAMBDA, per_device_train_batch_size=1,
        max_steps=6, learning_rate=1e-2, logging_steps=1, report_to=[], save_strategy="no",
        dataloader_num_workers=0, **{precision: True},
    )
    batches = [random_batch(seed=200 + i) for i in range(6)]
    trainer = MTRecTrainer(model=model, args=args, train_dataset=ListDataset(batches), data_collator=lambda f: f[0])
    trainer.train()
    assert next(trainer.model.parameters()).device.type == "cuda"
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    for name, p in trainer.model.named_parameters():
        assert torch.isfinite(p).all(), name
        assert not torch.equal(p.detach(), initial[name]), f"{name} did not train"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["--bf16", "--fp16"])
def test_train_mtrec_script_runs_on_gpu(tmp_path, precision):
    out = tmp_path / "run"
    cmd = [
        sys.executable, str(REPO / "train_mtrec.py"), "--output_dir", str(out), precision, "--max_steps", "5",
        "--synthetic_preset", "tiny", "--per_device_train_batch_size", "8", "--logging_steps", "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "dev_metrics.json").read_text())
    assert 0.0 <= metrics["auc"] <= 1.0
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("variant", [{"lora_r": 4}, {"freeze": 1}], ids=["lora", "frozen"])
def test_cuda_bf16_surgery_exact_under_lora_and_frozen_layers(tmp_path, variant):
    for seed in range(80):
        batch = cuda_batch(seed)
        *_, dot = surgery_reference(build_model(**variant), batch, torch.bfloat16)
        if dot < 0:
            break
    else:
        raise AssertionError("no conflicting batch found")
    model = build_model(**variant)
    params, expected, plain, dot = surgery_reference(model, batch, torch.bfloat16)
    trainer = make_trainer(tmp_path, model, bf16=True)
    prepared = trainer.accelerator.prepare_model(model)
    trainer.training_step(prepared, dict(batch))
    error, projection = max_diff([p.grad for p in params], expected), max_diff(expected, plain)
    size = max(e.float().abs().max().item() for e in expected)
    assert error <= 1e-3 * size and projection > 20 * error, (error, projection, size)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_cuda_cached_frozen_states_give_the_uncached_forward():
    model = build_model(freeze=1).eval()
    batch = cuda_batch(0)
    states = model.frozen_hidden_states(batch["news_input_ids"], batch["news_attention_mask"])
    with torch.no_grad():
        expected, got = model(**batch), model(**batch, news_hidden_states=states)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--freeze_encoder_layers", "4", "--cache_frozen_states"], ["--lora_r", "8"]],
                         ids=["frozen", "lora"])
def test_train_mtrec_script_fine_tunes_for_less_on_gpu(tmp_path, flags):
    out = tmp_path / "run"
    cmd = [
        sys.executable, str(REPO / "train_mtrec.py"), "--output_dir", str(out), "--bf16", "--max_steps", "5",
        "--synthetic_users", "30", "--per_device_train_batch_size", "8", "--logging_steps", "1", *flags,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert 0.0 <= json.loads((out / "dev_metrics.json").read_text())["auc"] <= 1.0
    if "--lora_r" in flags:
        from modeling_mtrec.training.lora import merge_lora

        merge_lora(out, tmp_path / "merged")
        assert (tmp_path / "merged" / "model.safetensors").is_file()
