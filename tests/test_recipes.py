"""The recipes (`train_<model>.py`) train whenever a Trainer script would, name a bad folder before any work, check
their arguments before any work, and leave an output folder holding one run's outputs only."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from modeling_mtrec import MTRecTrainer, TwoTowerTrainer
from modeling_mtrec.data import generate_synthetic_mind
from tests.testing_utils import REPO_ROOT, make_two_tower


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return generate_synthetic_mind(
        str(tmp_path_factory.mktemp("synthetic")), seed=0, num_news=80, num_users=12, num_dev_news=20, num_dev_users=12
    )


def run_mtrec(monkeypatch, out: Path, encoder: str, *args: str) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    import train_mtrec

    monkeypatch.setattr(
        sys, "argv",
        ["train_mtrec.py", "--output_dir", str(out), "--encoder", encoder, "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--use_cpu", "--disable_tqdm", "true", "--seed", "0",
         "--max_title_length", "24", *args],
    )
    train_mtrec.main()


def run_two_tower(monkeypatch, out: Path, *args: str) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    import train_two_tower

    monkeypatch.setattr(
        sys, "argv",
        ["train_two_tower.py", "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "8",
         "--use_cpu", "--disable_tqdm", "true", "--embedding_dim", "8", "--output_dim", "8", *args],
    )
    train_two_tower.main()


def no_training(*args, **kwargs):
    raise AssertionError("training started")


# ---------------------------------------------------------------------------------- a run that trains says so


def test_evaluating_during_training_still_trains(folders, tiny_encoder, tmp_path, monkeypatch):
    """`--eval_strategy steps` turns transformers' `do_eval` on: the recipe must train all the same."""
    steps = []
    train = MTRecTrainer.train
    monkeypatch.setattr(MTRecTrainer, "train", lambda self, *a, **k: steps.append(1) or train(self, *a, **k))
    out = tmp_path / "run"
    run_mtrec(monkeypatch, out, tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir", folders["dev"],
              "--eval_strategy", "steps", "--eval_steps", "1")
    assert steps == [1]
    comparison = json.loads((out / "dev_comparison.json").read_text())  # before / after: there was training
    assert comparison["untrained"]["auc"] != comparison["trained"]["auc"]


def test_a_run_without_training_needs_a_trained_model(folders, tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(MTRecTrainer, "train", no_training)
    with pytest.raises(ValueError, match="--do_train false without --init_from would evaluate and save an untrained"):
        run_mtrec(monkeypatch, tmp_path / "run", tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir",
                  folders["dev"], "--do_eval", "--do_train", "false")
    assert not (tmp_path / "run" / "dev_metrics.json").exists()


def test_a_run_of_zero_steps_saves_nothing_as_trained(folders, tiny_encoder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="training ran 0 steps"):
        run_mtrec(monkeypatch, out, tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir", folders["dev"],
                  "--max_steps", "-1", "--num_train_epochs", "0")
    assert not (out / "dev_metrics.json").exists() and not (out / "model.safetensors").exists()


# ------------------------------------------------------------------------------- a bad folder, named, before any work


def test_init_from_a_folder_without_tokenizer_files_is_named(setup, tiny_encoder, tmp_path, monkeypatch):
    dirs, tokenizer, _, model = setup
    init = tmp_path / "init"
    model.save_pretrained(init)  # the weights and config alone
    monkeypatch.setattr(MTRecTrainer, "train", no_training)
    with pytest.raises(ValueError, match=f"--init_from {re.escape(str(init))}: the folder holds no tokenizer"):
        run_mtrec(monkeypatch, tmp_path / "run", tiny_encoder[0], "--init_from", str(init),
                  "--train_dir", dirs["train"], "--dev_dir", dirs["dev"])


def test_init_from_a_folder_of_another_model_is_named(setup, tiny_encoder, tmp_path, monkeypatch):
    dirs, tokenizer, _, _ = setup
    init = tmp_path / "two_tower"
    make_two_tower().save_pretrained(init)
    tokenizer.save_pretrained(init)
    monkeypatch.setattr(MTRecTrainer, "train", no_training)
    with pytest.raises(ValueError, match=f"--init_from {re.escape(str(init))}: a model of type 'two_tower_ssl', but "
                                         "--init_from takes a model of type 'mtrec'"):
        run_mtrec(monkeypatch, tmp_path / "run", tiny_encoder[0], "--init_from", str(init),
                  "--train_dir", dirs["train"], "--dev_dir", dirs["dev"])


def test_two_tower_text_encoder_folder_is_checked_before_any_work(setup, tiny_encoder, folders, tmp_path, monkeypatch):
    _, tokenizer, _, model = setup
    monkeypatch.setattr(TwoTowerTrainer, "train", no_training)
    bare = tmp_path / "bare"
    shutil.copytree(tiny_encoder[0], bare)
    for name in bare.iterdir():
        if name.name != "config.json" and not name.name.endswith(".safetensors"):
            name.unlink()
    with pytest.raises(ValueError, match=f"--text_encoder {re.escape(str(bare))}: the folder holds no tokenizer"):
        run_two_tower(monkeypatch, tmp_path / "run", "--train_dir", folders["train"], "--text_encoder", str(bare))
    recommender = tmp_path / "mtrec"
    model.save_pretrained(recommender)
    tokenizer.save_pretrained(recommender)
    with pytest.raises(ValueError, match=f"--text_encoder {re.escape(str(recommender))}: a model of type 'mtrec'"):
        run_two_tower(monkeypatch, tmp_path / "run", "--train_dir", folders["train"], "--text_encoder", str(recommender))


# ------------------------------------------------------------------------------------- arguments, before any work


@pytest.mark.parametrize("ks", ["10,abc", "0,10", ""])
def test_two_tower_refuses_bad_eval_ks_before_any_work(folders, tmp_path, monkeypatch, ks):
    monkeypatch.setattr(TwoTowerTrainer, "train", no_training)
    with pytest.raises(ValueError, match="--eval_ks must be"):
        run_two_tower(monkeypatch, tmp_path / "run", "--train_dir", folders["train"], "--dev_dir", folders["dev"],
                      "--eval_ks", ks)
    assert not (tmp_path / "run").exists()


def test_two_tower_hint_for_an_unlabelled_dev_split_names_its_own_recipe(folders, tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    shutil.copytree(folders["dev"], dev)
    lines = (dev / "behaviors.tsv").read_text().splitlines()
    (dev / "behaviors.tsv").write_text("".join(re.sub(r"-[01]\b", "", line) + "\n" for line in lines))
    monkeypatch.setattr(TwoTowerTrainer, "train", no_training)
    with pytest.raises(ValueError, match="no labelled impression") as error:
        run_two_tower(monkeypatch, tmp_path / "run", "--train_dir", folders["train"], "--dev_dir", str(dev))
    assert "train_two_tower.py" in str(error.value) and "train_mtrec" not in str(error.value)


# --------------------------------------------------------------------------- a folder holds one run's outputs


def test_reused_output_folder_keeps_no_previous_predictions(folders, tiny_encoder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    data = ("--train_dir", folders["train"], "--dev_dir", folders["dev"])
    run_mtrec(monkeypatch, out, tiny_encoder[0], *data, "--do_predict", "--news_cache")
    assert (out / "prediction.txt").is_file() and (out / "prediction.zip").is_file()
    run_mtrec(monkeypatch, out, tiny_encoder[0], *data, "--seed", "1")
    assert not (out / "prediction.txt").exists() and not (out / "prediction.zip").exists()
    assert not (out / "news_vectors.safetensors").exists()
    assert set(json.loads((out / "load_report.json").read_text())) == {"corpus"}  # no previous "predictions" entry
    assert (out / "dev_metrics.json").is_file() and (out / "model.safetensors").is_file()
