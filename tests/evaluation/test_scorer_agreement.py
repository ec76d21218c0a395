"""The package's metrics agree with MIND's official scorer on the package's own ``prediction.txt``.

`official_scores` re-implements the semantics of the leaderboard's ``evaluate.py`` (https://msnews.github.io): it
reads ``truth.txt`` and ``prediction.txt`` line by line (``<impression id> <JSON list>``, split on whitespace), skips
truth lines with an empty label list, requires the same impression id on both lines, turns each rank into
``y_score = 1 / rank`` and computes per impression ``sklearn.metrics.roc_auc_score``, MRR (``y_true`` ordered by
``np.argsort(y_score)[::-1]``, reciprocal ranks summed over the clicks, divided by the number of clicks) and nDCG@5 /
nDCG@10 (gains ``2**y - 1``, discounts ``log2(rank + 1)``, normalised by the ideal ordering), then the plain means.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from modeling_mtrec.evaluation.impressions import fast_evaluate, impression_scores, news_vector_cache
from modeling_mtrec.evaluation.leaderboard import (
    ImpressionPrediction,
    ranks_from_scores,
    write_mind_predictions,
)
from modeling_mtrec.evaluation.metrics import impression_metrics

roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def _official_dcg(y_true: np.ndarray, y_score: np.ndarray, k: int) -> float:
    top = np.take(y_true, np.argsort(y_score)[::-1][:k])
    return float(np.sum((2**top - 1) / np.log2(np.arange(len(top)) + 2)))


def _official_line(line: str) -> tuple[str, list]:
    impression_id, values = line.strip("\n").split()  # exactly two fields, or the scorer fails
    return impression_id, json.loads(values)


def official_scores(truth_lines: list[str], prediction_lines: list[str]) -> dict[str, float]:
    """MIND's ``evaluate.py`` semantics (see the module docstring): the four means over the truth's impressions."""
    per_metric: dict[str, list[float]] = {name: [] for name in METRICS}
    predictions = iter(prediction_lines)
    for truth in truth_lines:
        submitted = next(predictions, "")  # one prediction line per truth line, masked ones included
        impression_id, labels = _official_line(truth)
        if labels == []:
            continue  # a masked impression
        submitted_id, ranks = _official_line(submitted) if submitted else (impression_id, [1] * len(labels))
        if submitted_id != impression_id:
            raise ValueError(f"inconsistent impression id {submitted_id} and {impression_id}")
        y_true = np.array(labels, dtype="float32")
        y_score = np.array([1.0 / rank for rank in ranks])
        if np.any((y_score < 0) | (y_score > 1)):
            raise ValueError("ranks must be positive integers")
        order = np.argsort(y_score)[::-1]
        per_metric["auc"].append(roc_auc_score(y_true, y_score))
        per_metric["mrr"].append(float(np.sum(np.take(y_true, order) / (np.arange(len(y_true)) + 1)) / np.sum(y_true)))
        for k in (5, 10):
            per_metric[f"ndcg@{k}"].append(_official_dcg(y_true, y_score, k) / _official_dcg(y_true, y_true, k))
    return {name: float(np.mean(values)) for name, values in per_metric.items()}


def truth_lines(behaviors_tsv: Path) -> list[str]:
    """``truth.txt`` of a labelled ``behaviors.tsv``: ``<impression id> [labels]`` per line, in file order."""
    lines = []
    for row in behaviors_tsv.read_text().splitlines():
        fields = row.split("\t")
        labels = [int(token.rsplit("-", 1)[1]) for token in fields[4].split()]
        lines.append(f"{fields[0]} {json.dumps(labels, separators=(',', ':'))}")
    return lines


def has_tied_pair(labels: list[int], scores: np.ndarray) -> bool:
    labels = np.asarray(labels)
    return bool(set(scores[labels == 1].tolist()) & set(scores[labels == 0].tolist()))


# ------------------------------------------------------------------------------------------ metric level


def test_metrics_equal_the_official_scorer_on_the_ranks_written_for_the_same_scores() -> None:
    """Random impressions with many ties (scores rounded to one decimal): `impression_metrics` on the scores equals
    the official scorer on the ranks `ranks_from_scores` writes."""
    rng = np.random.default_rng(0)
    labels, scores, truth, predictions = [], [], [], []
    while len(labels) < 300:
        n = int(rng.integers(2, 30))
        row_labels = (rng.random(n) < 0.25).astype(int)
        if row_labels.min() == row_labels.max():
            continue
        row_scores = np.round(rng.normal(size=n), 1)
        labels.append(row_labels.tolist())
        scores.append(row_scores)
        truth.append(f"{len(labels)} {json.dumps(row_labels.tolist(), separators=(',', ':'))}")
        predictions.append(ImpressionPrediction(str(len(labels)), ranks_from_scores(row_scores)).line())
    assert sum(has_tied_pair(row_labels, row_scores) for row_labels, row_scores in zip(labels, scores)) > 50
    ours = impression_metrics(labels, scores)
    official = official_scores(truth, predictions)
    for name in METRICS:
        assert ours[name] == pytest.approx(official[name], abs=1e-12), name
    # Half credit for ties (sklearn on the raw scores) is another number: the tie policy is what makes them agree.
    assert abs(impression_metrics(labels, scores, ties="average")["auc"] - official["auc"]) > 1e-6


def test_all_clicked_impressions_have_no_official_auc_and_are_left_out() -> None:
    """MIND's scorer has no AUC for an impression without a non-click (NaN, or an error in older scikit-learn):
    the package leaves such impressions out of all four metrics and counts them."""
    truth, predictions = ["1 [1,0,0]", "2 [1,1]"], ["1 [1,3,2]", "2 [2,1]"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            official_auc = official_scores(truth, predictions)["auc"]
        except ValueError:
            official_auc = math.nan
    assert math.isnan(official_auc)
    ours = impression_metrics([[1, 0, 0], [1, 1]], [[0.9, 0.1, 0.5], [0.2, 0.8]])
    assert (ours["num_impressions"], ours["num_skipped_impressions"]) == (1, 1)
    assert ours["auc"] == official_scores(truth[:1], predictions[:1])["auc"] == 1.0


# ------------------------------------------------------------------------------------------ the package end to end


def test_prediction_file_scored_like_mind_gives_the_reported_metrics(setup, tmp_path) -> None:
    """`write_mind_predictions` -> prediction.txt -> the official semantics == `fast_evaluate` on the same vectors.

    The dev split holds what made them part: users without a known click (all scores tie) and histories longer than
    the model's ``max_history_length`` (5) while the loader kept 50.
    """
    dirs, tokenizer, corpus, model = setup
    # The same impressions on both sides: none left out at loading (else the comparison would be over other sets).
    assert not {"impressions_without_click", "impressions_without_non_click", "unknown_candidate_ids"} & set(corpus.stats)
    assert corpus.stats["empty_history"] > 0
    assert max(len(h) for h in corpus.eval["history"]) > model.config.max_history_length

    cache = news_vector_cache(model, corpus.news)
    path, _ = write_mind_predictions(model, tokenizer, dirs["dev"], tmp_path, zip_file=False, cache=cache)
    official = official_scores(truth_lines(Path(dirs["dev"]) / "behaviors.tsv"), path.read_text().splitlines())
    reported = fast_evaluate(model, corpus.news, corpus.eval, cache=cache)
    assert reported["num_impressions"] == len(corpus.eval)
    for name in METRICS:
        assert reported[name] == pytest.approx(official[name], abs=1e-12), name

    # What each rule is worth here, so that this test fails without it: half credit for ties, and the loader's 50
    # clicks instead of the model's 5, give other numbers.
    scores = impression_scores(model, corpus.news, corpus.eval, cache=cache)
    averaged = impression_metrics(corpus.eval["labels"], scores, ties="average")
    assert abs(averaged["auc"] - official["auc"]) > 1e-4
    longer = copy.deepcopy(model)
    longer.config.max_history_length = 50
    assert abs(fast_evaluate(longer, corpus.news, corpus.eval, cache=cache)["auc"] - official["auc"]) > 1e-4
