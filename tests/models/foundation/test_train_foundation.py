from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModel

import modeling_mtrec  # noqa: F401  (registers the Auto classes)
from tests.models.foundation.foundation_helpers import save_tiny_lm

REPO = Path(__file__).resolve().parents[3]


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, str(REPO / "train_foundation.py"), *args], check=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_recipe_pretrains_finetunes_and_writes_metrics(tmp_path):
    lm = save_tiny_lm(tmp_path / "lm", hidden=16)
    out = tmp_path / "out"
    common = ["--corpus_size", "tiny", "--news_tsv", "synthetic", "--text_encoder", lm, "--num_train_epochs", "1",
              "--target_epochs", "1", "--disable_tqdm", "true", "--embedding_dim", "16"]
    _run(["--output_dir", str(out), "--freeze_split", "L0", "--max_target_train_rows", "100", *common], tmp_path)
    metrics = json.loads((out / "foundation_metrics.json").read_text())
    assert metrics["freeze_split"] == "L0" and metrics["target_domain"] == "target"
    assert set(metrics["source_after_pretraining"]) >= {"source_mean_auc", "source_text/ctr_auc", "source_id/relevance_auc",
                                                        "source_sparse/ctr_gauc"}
    for key in ("target_before_finetuning", "target_after_finetuning"):
        assert 0.0 <= metrics[key]["target_target/ctr_auc"] <= 1.0
    assert metrics["timings"]["finetune"]["train_rows"] == 100
    assert metrics["timings"]["pretrain"]["rows_per_second"] > 0
    model = AutoModel.from_pretrained(out)
    assert model.config.domains == ["id", "sparse", "text", "target"]
    assert "roc_auc" in (out / "README.md").read_text()
    assert list((out / "text_cache").glob("text-features-*.safetensors"))
    # Re-run from the pretrained folder: the text cache is reused, pretraining skipped.
    _run(["--output_dir", str(out), "--init_from", str(out / "pretrained"), "--max_target_train_rows", "100", *common], tmp_path)
    again = json.loads((out / "foundation_metrics.json").read_text())
    assert again["timings"]["texts_encoded_by_lm"] == 0 and "source_after_pretraining" not in again


@pytest.mark.slow
def test_recipe_target_domain_alone(tmp_path):
    lm = save_tiny_lm(tmp_path / "lm", hidden=16)
    out = tmp_path / "alone"
    _run(["--output_dir", str(out), "--corpus_size", "tiny", "--news_tsv", "synthetic", "--text_encoder", lm,
          "--pretrain", "false", "--target_epochs", "1", "--disable_tqdm", "true"], tmp_path)
    metrics = json.loads((out / "foundation_metrics.json").read_text())
    assert "source_after_pretraining" not in metrics and "target_before_finetuning" not in metrics
    assert AutoModel.from_pretrained(out).config.domains == ["target"]


@pytest.mark.slow
def test_recipe_under_two_processes(tmp_path):
    """torchrun with 2 CPU processes: one gloo process group (each process trains on its share of the rows)."""
    lm = save_tiny_lm(tmp_path / "lm", hidden=16)
    out = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "train_foundation.py"), "--output_dir", str(out), "--corpus_size", "tiny", "--news_tsv",
               "synthetic", "--text_encoder", lm, "--num_train_epochs", "1", "--target_epochs", "1", "--disable_tqdm", "true"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "foundation_metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert 0.0 <= metrics["target_after_finetuning"]["target_target/ctr_auc"] <= 1.0
