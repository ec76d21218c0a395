"""MIND leaderboard predictions: ranks, every impression in order, unlabelled test split."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_mtrec import MTRecModel
from modeling_mtrec.data import (
    LoadStats,
    read_behaviors,
    synthetic_tokenizer,
)
from modeling_mtrec.data.ebnerd import read_ebnerd_with_beyond_accuracy
from modeling_mtrec.evaluation.impressions import news_vector_cache
from modeling_mtrec.evaluation.leaderboard import (
    ImpressionPrediction,
    predict_ranks,
    ranks_from_scores,
    write_mind_predictions,
    write_prediction_file,
)
from modeling_mtrec.vectors import NewsVectorCache
from tests.data.corpus_files import ebnerd_corpus, ebnerd_test_behaviors
from tests.testing_utils import synthetic_model, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ranks_from_scores_by_hand():
    assert ranks_from_scores([0.1, 0.9, 0.5]) == [3, 1, 2]  # MIND's example line "1 [3,1,2]"
    assert ranks_from_scores([0.5, 0.5, 0.7]) == [2, 3, 1]  # tie: input order
    # Unknown candidates rank after every known one (whatever their placeholder score), in input order.
    assert ranks_from_scores([9.0, 0.2, 9.0, 0.4], known=[False, True, False, True]) == [3, 2, 4, 1]
    assert ranks_from_scores([0.0, 0.0, 0.0], known=[False] * 3) == [1, 2, 3]

def hand_cache(model) -> NewsVectorCache:
    g = torch.Generator().manual_seed(1)
    return NewsVectorCache([f"N{i}" for i in range(1, 7)], torch.randn(6, model.config.hidden_size, generator=g))

def expected_scores(model, cache, history: list[str], candidates: list[str]) -> np.ndarray:
    with torch.no_grad():
        user = model.encode_users(cache.lookup(history)[None])  # (1, H, D) -> (1, D)
        return model.score(user, cache.lookup(candidates)[None])[0].numpy()  # (1, C, D).(1, D) -> (C,)

BEHAVIORS = (
    "11\tU1\t11/15/2019 9:00:00 AM\tN1 N2\tN3-1 N4-0 N5-0\n"
    "12\tU2\t11/15/2019 9:01:00 AM\tN2 N99\tN6-0 N77-1 N3-0\n"  # one unknown history id, one unknown candidate
    "13\tU3\t11/15/2019 9:02:00 AM\tN1\tN88-0 N89-1\n"  # no known candidate
    "14\tU4\t11/15/2019 9:03:00 AM\t\tN4-0 N5-1 N6-0\n"  # empty history
)

def test_prediction_file_every_impression_in_order(tmp_path):
    model = MTRecModel(tiny_config()).eval()
    cache = hand_cache(model)
    (tmp_path / "behaviors.tsv").write_text(BEHAVIORS)
    stats = LoadStats()
    predictions = predict_ranks(model, cache, read_behaviors(tmp_path / "behaviors.tsv"), stats=stats)
    path = write_prediction_file(tmp_path / "out" / "prediction.txt", predictions, zip_file=True)
    lines = (tmp_path / "out" / "prediction.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["11", "12", "13", "14"]
    assert all(re.fullmatch(r"\d+ \[\d+(,\d+)*\]", line) for line in lines)
    ranks = [[int(r) for r in line.split()[1][1:-1].split(",")] for line in lines]
    assert all(sorted(r) == list(range(1, len(r) + 1)) for r in ranks)
    # Impression 11: ranks are the argsort of the model's own scores.
    scores = expected_scores(model, cache, ["N1", "N2"], ["N3", "N4", "N5"])
    assert ranks[0] == (np.argsort(np.argsort(-scores, kind="stable"), kind="stable") + 1).tolist()
    # Impression 12: N77 unknown -> last; the known ones ranked by score with the unknown history id dropped.
    known = expected_scores(model, cache, ["N2"], ["N6", "N3"])
    assert ranks[1][1] == 3 and ranks[1][0] == (1 if known[0] >= known[1] else 2)
    assert ranks[2] == [1, 2]  # nothing known: input order
    assert ranks[3] == [1, 2, 3]  # empty history: r_u = 0, all scores 0, input order
    assert stats == {
        "unknown_history_ids": 1, "unknown_candidate_ids": 3, "impressions_without_known_candidate": 1,
        "empty_history": 1,
    }
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["prediction.txt"]
        assert archive.read("prediction.txt").decode().splitlines() == lines

def test_prediction_on_unlabelled_test_split(tmp_path):
    model = MTRecModel(tiny_config()).eval()
    cache = hand_cache(model)
    unlabelled = re.sub(r"-[01]\b", "", BEHAVIORS)
    (tmp_path / "behaviors.tsv").write_text(unlabelled)
    behaviors = read_behaviors(tmp_path / "behaviors.tsv")
    assert behaviors[0]["clicks"] == [-1, -1, -1]
    labelled_dir = tmp_path / "labelled"
    labelled_dir.mkdir()
    (labelled_dir / "behaviors.tsv").write_text(BEHAVIORS)
    test = [p.line() for p in predict_ranks(model, cache, behaviors)]
    dev = [p.line() for p in predict_ranks(model, cache, read_behaviors(labelled_dir / "behaviors.tsv"))]
    assert test == dev  # labels are never read

def test_write_mind_predictions_from_folder(setup, tmp_path):
    dirs, tokenizer, corpus, model = setup
    path, cache = write_mind_predictions(model, tokenizer, dirs["dev"], tmp_path)
    assert path.name == "prediction.zip" and (tmp_path / "prediction.txt").is_file()
    lines = (tmp_path / "prediction.txt").read_text().splitlines()
    behaviors = read_behaviors(Path(dirs["dev"]) / "behaviors.tsv")
    assert [line.split()[0] for line in lines] == behaviors["impression_id"]
    # MIND's unlabelled test split: same folder without the -1/-0 suffixes, same predictions.
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    (test_dir / "news.tsv").write_bytes((Path(dirs["dev"]) / "news.tsv").read_bytes())
    labelled = (Path(dirs["dev"]) / "behaviors.tsv").read_text()
    (test_dir / "behaviors.tsv").write_text(re.sub(r"-[01]\b", "", labelled))
    write_mind_predictions(model, tokenizer, test_dir, test_dir, zip_file=False, cache=cache)
    assert (test_dir / "prediction.txt").read_text().splitlines() == lines
    # Encoding raw titles gives the tokenised table's vectors: the cache agrees with news_vector_cache.
    table_cache = news_vector_cache(model, corpus.news)
    torch.testing.assert_close(cache.lookup(cache.news_ids), table_cache.lookup(cache.news_ids), atol=1e-5, rtol=0)


def test_prediction_history_rule_is_the_training_rule(tmp_path):
    """A history shorter than max_history_length is kept whole (the slice used to start at len - max, a negative
    index that dropped clicks when len < max < 2 len)."""
    model = MTRecModel(tiny_config(max_history_length=3)).eval()  # the one source of the length: the model's config
    cache = hand_cache(model)
    (tmp_path / "behaviors.tsv").write_text("1\tU1\t11/15/2019 9:00:00 AM\tN1 N2\tN3-1 N4-0 N5-0 N6-0\n")
    [prediction] = predict_ranks(model, cache, read_behaviors(tmp_path / "behaviors.tsv"))

    def ranks(history):
        scores = expected_scores(model, cache, history, ["N3", "N4", "N5", "N6"])
        return (np.argsort(np.argsort(-scores, kind="stable"), kind="stable") + 1).tolist()

    assert ranks(["N1", "N2"]) != ranks(["N2"])  # the two rules rank these candidates differently
    assert prediction.ranks == ranks(["N1", "N2"])


def test_ebnerd_test_set_predictions_end_with_the_beyond_accuracy_rows(tmp_path):
    """RecSys Challenge 2024's file (ebrec's write_submission_file, as its scripts call it): every ordinary impression
    in file order, then every is_beyond_accuracy row in file order, each as "0 [ranks of its candidates]"."""
    tokenizer = synthetic_tokenizer()
    model = synthetic_model(tokenizer, {"nyheder": 0, "vejr": 1, "kultur": 2})
    folder = ebnerd_corpus(tmp_path / "ebnerd", "test", behaviors_table=ebnerd_test_behaviors())
    stats = LoadStats()
    path, cache = write_mind_predictions(model, tokenizer, folder, tmp_path / "out", stats=stats)
    lines = (tmp_path / "out" / "prediction.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["10", "11", "0", "0"]  # the test file holds 10, 0, 11, 0
    ranks = [json.loads(line.split()[1]) for line in lines]
    assert [sorted(r) for r in ranks] == [[1, 2, 3], [1, 2], [1, 2, 3], [1, 2, 3]]  # permutations of 1..n
    # Each beyond-accuracy line ranks the shared candidates for its own user (user 200 has no history: input order).
    _, behaviors, beyond = read_ebnerd_with_beyond_accuracy(folder)
    assert ranks[2:] == [p.ranks for p in predict_ranks(model, cache, beyond)] and ranks[2] == [1, 2, 3]
    assert ranks[:2] == [p.ranks for p in predict_ranks(model, cache, behaviors)]
    assert stats["beyond_accuracy_impressions"] == 2  # still counted in the load report
    with zipfile.ZipFile(path) as archive:
        assert archive.read("prediction.txt").decode().splitlines() == lines


def test_only_beyond_accuracy_lines_may_share_an_impression_id(tmp_path):
    line = ImpressionPrediction("0", [2, 1])
    write_prediction_file(tmp_path / "prediction.txt", [ImpressionPrediction("7", [1])], beyond_accuracy=[line, line])
    assert (tmp_path / "prediction.txt").read_text() == "7 [1]\n0 [2,1]\n0 [2,1]\n"
    with pytest.raises(ValueError, match="impression '0' is predicted twice"):
        write_prediction_file(tmp_path / "prediction.txt", [line, line])
