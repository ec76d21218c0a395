"""The recipes take any corpus format (`--data_format`, or recognised from the files), write which auxiliary tasks its
labels allow into `load_report.json`, and `--do_predict` writes the corpus' prediction file (EB-NeRD's leaderboard
takes MIND's `impression_id [r1,...]` lines, zipped, its test set's beyond-accuracy rows last)."""

from __future__ import annotations

import json
import zipfile

from tests.data.corpus_files import ebnerd_corpus, ebnerd_test_behaviors
from tests.test_recipes import run_mtrec, run_two_tower


def test_train_mtrec_on_ebnerd_writes_its_predictions(tiny_encoder, tmp_path, monkeypatch):
    train, dev = ebnerd_corpus(tmp_path / "ebnerd", "train"), ebnerd_corpus(tmp_path / "ebnerd", "validation")
    test = ebnerd_corpus(tmp_path / "ebnerd", "test", behaviors_table=ebnerd_test_behaviors())
    out = tmp_path / "run"
    run_mtrec(monkeypatch, out, tiny_encoder[0], "--train_dir", str(train), "--dev_dir", str(dev), "--do_predict",
              "--test_dir", str(test), "--dev_comparison", "false")
    report = json.loads((out / "load_report.json").read_text())
    assert report["corpus"]["data_format"] == "ebnerd"
    assert report["corpus"]["auxiliary_tasks"] == {"category": "on", "ner": "on", "sentiment": "on"}
    config = json.loads((out / "config.json").read_text())  # the corpus labels sentiment: the third task is on
    assert config["use_sentiment_task"] and config["id2sentiment"] == {"0": "Negative", "1": "Neutral"}
    lines = (out / "prediction.txt").read_text().splitlines()
    # impression_id [ranks of article_ids_inview]; the test file holds 10, 0, 11, 0, its is_beyond_accuracy rows being
    # the 0s: they come last, in file order, as the RecSys Challenge 2024's code writes them
    assert [line.split()[0] for line in lines] == ["10", "11", "0", "0"]
    assert [sorted(json.loads(line.split()[1])) for line in lines] == [[1, 2, 3], [1, 2], [1, 2, 3], [1, 2, 3]]
    assert report["predictions"]["problems"]["beyond_accuracy_impressions"] == 2
    with zipfile.ZipFile(out / "prediction.zip") as archive:
        assert archive.read("prediction.txt").decode().splitlines() == lines


def test_train_two_tower_takes_a_data_format(tmp_path, monkeypatch):
    train, dev = ebnerd_corpus(tmp_path / "ebnerd", "train"), ebnerd_corpus(tmp_path / "ebnerd", "validation")
    out = tmp_path / "run"
    run_two_tower(monkeypatch, out, "--train_dir", str(train), "--dev_dir", str(dev), "--data_format", "ebnerd",
                  "--eval_ks", "1,2")
    report = json.loads((out / "load_report.json").read_text())
    assert report["corpus"]["data_format"] == "ebnerd" and report["corpus"]["auxiliary_tasks"]["sentiment"] == "on"
    assert (out / "retrieval_metrics.json").is_file()


def test_a_task_switched_off_is_reported(tiny_encoder, tmp_path, monkeypatch):
    train = ebnerd_corpus(tmp_path / "ebnerd", "train")
    out = tmp_path / "run"
    run_mtrec(monkeypatch, out, tiny_encoder[0], "--train_dir", str(train), "--use_sentiment_task", "false",
              "--dev_comparison", "false")
    report = json.loads((out / "load_report.json").read_text())
    assert report["corpus"]["auxiliary_tasks"]["sentiment"] == "off: --use_sentiment_task false"
    assert not json.loads((out / "config.json").read_text())["use_sentiment_task"]


def test_train_mtrec_multi_field_evaluates_and_predicts(tiny_encoder, tmp_path, monkeypatch):
    train, dev = ebnerd_corpus(tmp_path / "ebnerd", "train"), ebnerd_corpus(tmp_path / "ebnerd", "validation")
    out = tmp_path / "run"
    run_mtrec(monkeypatch, out, tiny_encoder[0], "--train_dir", str(train), "--dev_dir", str(dev), "--do_predict",
              "--use_multi_field", "--dev_comparison", "false")
    assert json.loads((out / "config.json").read_text())["use_multi_field"]
    assert "auc" in json.loads((out / "dev_metrics.json").read_text())
    assert [line.split()[0] for line in (out / "prediction.txt").read_text().splitlines()] == ["10", "11", "12"]


def test_a_corpus_without_entity_annotations_trains_no_ner(tiny_encoder, tmp_path, monkeypatch):
    """xMIND, Adressa and own tables without `title_entities` report NER off: a fresh model gets no NER head, and an
    --init_from model's head is not trained on the unannotated titles' all-O tags (it was, before: ner_loss fell to
    0.06 on xMIND while the load report said "off")."""
    from safetensors.torch import load_file

    from tests.data.corpus_files import TABLE_BEHAVIORS, TABLE_NEWS, tables_split

    plain = [{key: value for key, value in row.items() if key != "title_entities"} for row in TABLE_NEWS]
    (tmp_path / "plain").mkdir()
    split = tables_split(tmp_path / "plain", news=plain, behaviors=TABLE_BEHAVIORS)
    fresh = tmp_path / "fresh"
    run_mtrec(monkeypatch, fresh, tiny_encoder[0], "--train_dir", str(split), "--dev_comparison", "false")
    report = json.loads((fresh / "load_report.json").read_text())
    assert report["corpus"]["auxiliary_tasks"]["ner"] == "off: no title has entity annotations"
    assert not json.loads((fresh / "config.json").read_text())["use_ner_task"]
    assert not any(name.startswith("ner_head") for name in load_file(fresh / "model.safetensors"))

    annotated = tmp_path / "annotated"  # EB-NeRD's titles carry entities: a model with a NER head
    run_mtrec(monkeypatch, annotated, tiny_encoder[0], "--train_dir", str(ebnerd_corpus(tmp_path / "ebnerd", "train")),
              "--dev_comparison", "false")
    tuned = tmp_path / "tuned"
    run_mtrec(monkeypatch, tuned, tiny_encoder[0], "--init_from", str(annotated), "--train_dir", str(split),
              "--dev_comparison", "false")
    before, after = load_file(annotated / "model.safetensors"), load_file(tuned / "model.safetensors")
    assert json.loads((tuned / "config.json").read_text())["use_ner_task"]  # the head is kept ...
    for name in ("ner_head.weight", "ner_head.bias"):
        assert after[name].equal(before[name])  # ... and untouched: no NER label to learn from
    assert not after["category_head.weight"].equal(before["category_head.weight"])  # while the run did train
