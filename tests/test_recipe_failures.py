"""A run never loses its model or its counts, and refuses bad arguments before training.

- Unlabelled dev rows (MIND's test format, ``N1`` without ``-0``/``-1``) are decided about at load time: left out of
  the metrics and counted, or, when no labelled row is left, an error before any training.
- The model is saved before anything that can fail after training (evaluation, metric files, predictions).
- The load report is written beside the metrics (``load_report.json``), as soon as the data is loaded.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import TrainingArguments

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments, TwoTowerTrainer
from modeling_mtrec.data import build_eval_impressions, generate_synthetic_mind, read_behaviors
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.two_tower.collator import TwoTowerCollator
from tests.testing_utils import REPO_ROOT, make_two_tower, tiny_config, tiny_items, tiny_tt_config


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return generate_synthetic_mind(
        str(tmp_path_factory.mktemp("synthetic")), seed=0, num_news=80, num_users=12, num_dev_news=20, num_dev_users=12
    )


def unlabelled_copy(dev: str, target: Path, every: int) -> tuple[Path, int]:
    """A copy of a dev folder whose every `every`-th behaviors row is in MIND's test format; returns it and how many
    rows were made unlabelled."""
    shutil.copytree(dev, target)
    lines = (target / "behaviors.tsv").read_text().splitlines()
    changed = 0
    for i in range(0, len(lines), every):
        fields = lines[i].split("\t")
        fields[4] = re.sub(r"-[01]\b", "", fields[4])
        lines[i] = "\t".join(fields)
        changed += 1
    (target / "behaviors.tsv").write_text("\n".join(lines) + "\n")
    return target, changed


def run_recipe(monkeypatch, out: Path, encoder: str, *args: str, title_length: str | None = "24") -> None:
    sys.path.insert(0, str(REPO_ROOT))
    import train_mtrec

    monkeypatch.setattr(
        sys, "argv",
        ["train_mtrec.py", "--output_dir", str(out), "--encoder", encoder, "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--use_cpu", "--disable_tqdm", "true", "--seed", "0",
         *(["--max_title_length", title_length] if title_length else []), *args],
    )
    train_mtrec.main()


def test_mixed_dev_split_is_evaluated_on_its_labelled_rows_and_counted(folders, tiny_encoder, tmp_path, monkeypatch):
    dev, unlabelled = unlabelled_copy(folders["dev"], tmp_path / "dev", every=3)
    out = tmp_path / "run"
    run_recipe(monkeypatch, out, tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir", str(dev))
    assert (out / "model.safetensors").is_file()
    report = json.loads((out / "load_report.json").read_text())["corpus"]
    metrics = json.loads((out / "dev_metrics.json").read_text())
    assert report["problems"]["unlabelled_impressions"] == unlabelled > 0
    assert report["dev_dir"] == str(dev) and report["train_rows"] > 0
    # Every dev row is accounted for: evaluated, unlabelled, or left out for a counted reason.
    total = len(read_behaviors(dev / "behaviors.tsv"))
    left_out = sum(report["problems"].get(k, 0) for k in ("impressions_without_click", "impressions_without_non_click"))
    assert metrics["num_impressions"] == report["eval_rows"] == total - unlabelled - left_out


def test_unlabelled_dev_split_fails_before_training(folders, tiny_encoder, tmp_path, monkeypatch):
    dev, _ = unlabelled_copy(folders["dev"], tmp_path / "dev", every=1)

    def no_training(*args, **kwargs):
        raise AssertionError("training started on a run that cannot be evaluated")

    monkeypatch.setattr(MTRecTrainer, "train", no_training)
    with pytest.raises(ValueError, match="(?s)no labelled impressions left.*unlabelled_impressions.*write_mind_predictions"):
        run_recipe(monkeypatch, tmp_path / "run", tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir", str(dev))


def test_model_and_load_report_survive_a_failure_after_training(folders, tiny_encoder, tmp_path, monkeypatch):
    evaluate = MTRecTrainer.evaluate

    def broken_evaluation(self, *args, **kwargs):
        if self.state.global_step == 0:  # the evaluation before training (--dev_comparison) still works
            return evaluate(self, *args, **kwargs)
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(MTRecTrainer, "evaluate", broken_evaluation)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation broke"):
        run_recipe(monkeypatch, out, tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir", folders["dev"])
    model = MTRecModel.from_pretrained(out)  # the trained model was saved before evaluation
    assert model.config.max_title_length == 24
    assert (out / "tokenizer.json").is_file()
    report = json.loads((out / "load_report.json").read_text())["corpus"]
    assert report["train_dir"] == folders["train"] and report["eval_rows"] > 0


def test_predictions_add_their_load_report(folders, tiny_encoder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_recipe(
        monkeypatch, out, tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir", folders["dev"],
        "--do_predict", "--test_dir", folders["dev"],
    )
    report = json.loads((out / "load_report.json").read_text())
    assert set(report) == {"corpus", "predictions"}
    assert report["predictions"]["folder"] == folders["dev"]


def test_trainer_refuses_unlabelled_eval_rows_before_training(setup, tmp_path):
    """An API user who builds eval rows with the unlabelled ones kept learns it at construction, not after training."""
    dirs, tokenizer, corpus, model = setup
    behaviors = read_behaviors(unlabelled_copy(dirs["dev"], tmp_path / "dev", every=2)[0] / "behaviors.tsv")
    impressions = build_eval_impressions(behaviors, corpus.news_index, max_history_length=50, keep_unlabelled=True)
    args = MTRecTrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="eval_dataset holds .* unlabelled"):
        MTRecTrainer(model=model, args=args, eval_dataset=impressions, data_collator=MTRecCollator(corpus.news))


# ------------------------------------------------------------------------------------------ item 2: bad arguments


def test_recipe_refuses_a_folder_without_its_tokenizer_before_training(setup, tiny_encoder, tmp_path, monkeypatch):
    dirs, tokenizer, _, model = setup
    model.save_pretrained(tmp_path / "init")
    tokenizer.save_pretrained(tmp_path / "init")
    (tmp_path / "init" / "tokenizer.json").unlink()
    monkeypatch.setattr(MTRecTrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError, match="the tokenizer has 5 tokens"):
        run_recipe(monkeypatch, tmp_path / "run", tiny_encoder[0], "--init_from", str(tmp_path / "init"),
                   "--train_dir", dirs["train"], "--dev_dir", dirs["dev"])


def test_recipe_checks_the_prediction_folder_before_training(folders, tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(MTRecTrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(FileNotFoundError, match="nowhere: not a folder"):
        run_recipe(monkeypatch, tmp_path / "run", tiny_encoder[0], "--train_dir", folders["train"], "--dev_dir",
                   folders["dev"], "--do_predict", "--test_dir", str(tmp_path / "nowhere"))


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0])
def test_non_finite_or_negative_weights_are_refused(tmp_path, value):
    with pytest.raises(ValueError, match="aux_weight"):
        MTRecTrainingArguments(output_dir=str(tmp_path), aux_weight=value)
    for name in ("temperature", "ssl_temperature", "ssl_weight", "initializer_range"):
        with pytest.raises(ValueError, match=name):
            tiny_tt_config(**{name: value})
    with pytest.raises(ValueError, match="initializer_range"):
        tiny_config(initializer_range=value)


def test_trainers_take_plain_training_arguments(setup, tmp_path):
    """Plain `TrainingArguments` train and evaluate (they trained, then failed in evaluation)."""
    _, tokenizer, corpus, model = setup
    args = TrainingArguments(output_dir=str(tmp_path / "mtrec"), max_steps=1, report_to=[], use_cpu=True,
                             per_device_train_batch_size=4, disable_tqdm=True)
    trainer = MTRecTrainer(model=copy.deepcopy(model), args=args, train_dataset=corpus.train, eval_dataset=corpus.eval,
                           data_collator=MTRecCollator(corpus.news, num_negatives=model.config.num_negatives))
    assert isinstance(trainer.args, MTRecTrainingArguments) and trainer.args.max_steps == 1
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_num_impressions"] == len(corpus.eval) and 0 <= metrics["eval_auc"] <= 1

    items = tiny_items()
    samples = Dataset.from_list([{"user_key": 7, "history": [0, 1], "positive": 2}, {"user_key": 8, "history": [3], "positive": 4}])
    args = TrainingArguments(output_dir=str(tmp_path / "tt"), max_steps=1, report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = TwoTowerTrainer(model=make_two_tower(), args=args, train_dataset=samples, eval_dataset=samples,
                              data_collator=TwoTowerCollator(items))
    trainer.train()
    assert "eval_loss" in trainer.evaluate()


# ------------------------------------------------------------------------------------------ item 3: one source of truth


@pytest.mark.parametrize(("flags", "expected"), [((), (16, 5)), (("--max_history_length", "3"), (16, 3))])
def test_recipe_lengths_come_from_the_model_and_the_metrics_match_the_prediction_file(
    setup, tiny_encoder, tmp_path, monkeypatch, flags, expected
):
    """With --init_from, the loader uses the model's title and history lengths (or the flags', which then replace the
    model's): dev_metrics.json and MIND's scorer on the prediction.txt of the same run give the same numbers."""
    from tests.evaluation.test_scorer_agreement import official_scores, truth_lines

    dirs, tokenizer, _, model = setup
    assert (model.config.max_title_length, model.config.max_history_length) == (16, 5)
    model.save_pretrained(tmp_path / "init")
    tokenizer.save_pretrained(tmp_path / "init")
    out = tmp_path / "run"
    run_recipe(
        monkeypatch, out, tiny_encoder[0], "--init_from", str(tmp_path / "init"), "--train_dir", dirs["train"],
        "--dev_dir", dirs["dev"], "--do_predict", "--learning_rate", "1e-9", *flags, title_length=None,
    )
    saved = MTRecModel.from_pretrained(out).config
    assert (saved.max_title_length, saved.max_history_length) == expected
    reported = json.loads((out / "dev_metrics.json").read_text())
    official = official_scores(truth_lines(Path(dirs["dev"]) / "behaviors.tsv"), (out / "prediction.txt").read_text().splitlines())
    for name in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert reported[name] == pytest.approx(official[name], abs=1e-6), name


# ------------------------------------------------------------------------------------------ item 5: remote code

REMOTE_LOAD = """
import importlib.abc, logging, sys, warnings

class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "modeling_mtrec" or name.startswith("modeling_mtrec."):
            raise ImportError(name + " is blocked: the folder must load without the package")
        return None

sys.meta_path.insert(0, BlockPackage())
warnings.simplefilter("always")
logging.basicConfig(level=logging.INFO)
import transformers
transformers.logging.set_verbosity_warning()
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertTokenizerFast

folder = sys.argv[1]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
plain = BertTokenizerFast.from_pretrained(folder)  # the tokenizer needs no code of its own
assert "modeling_mtrec" not in sys.modules
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert type(tokenizer).__module__.startswith("transformers.models.bert"), type(tokenizer)
assert tokenizer("stocks rally")["input_ids"] == plain("stocks rally")["input_ids"]
print("LOADED", len(tokenizer), config.encoder_name_or_path)
"""


def test_saved_folder_loads_as_remote_code_without_prompt_warning_or_local_path(tiny_encoder, tmp_path, monkeypatch):
    """The folder of a run on a local encoder folder, loaded as a Hub user would: the package blocked, stdin closed
    (a prompt would fail), every warning and log line captured."""
    import os
    import subprocess

    out = tmp_path / "run"
    run_recipe(monkeypatch, out, tiny_encoder[0], "--synthetic_preset", "tiny", "--max_steps", "1")
    text = (out / "config.json").read_text()
    assert '"_name_or_path"' not in text and str(tmp_path) not in text and tiny_encoder[0] not in text
    assert json.loads(text)["encoder_name_or_path"] is None
    assert "auto_map" not in json.loads((out / "tokenizer_config.json").read_text())  # a standard BertTokenizer

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(out)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"LOADED {len(tiny_encoder[1])} None"
    logged = [line for line in result.stderr.splitlines() if "Loading weights" not in line and line.strip()]
    assert logged == [], logged  # no prompt, no "model of type mtrec to instantiate a model of type ''", nothing


def test_encoder_hub_id_never_records_a_local_path(tmp_path):
    from modeling_mtrec.default_encoder import DEFAULT_ENCODER_HUB_ID, default_encoder_path
    from modeling_mtrec.models.mtrec.configuration_mtrec import encoder_hub_id

    assert encoder_hub_id(default_encoder_path()) == DEFAULT_ENCODER_HUB_ID  # the offline default's Hub id
    assert encoder_hub_id("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    assert encoder_hub_id(tmp_path) is None and encoder_hub_id("/home/someone/bert") is None
    assert tiny_config(encoder_name_or_path=str(tmp_path)).encoder_name_or_path is None
