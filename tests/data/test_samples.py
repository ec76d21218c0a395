"""Sample builders: training rows, evaluation impressions, retrieval rows; the history rule."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from modeling_mtrec.data import mind, samples
from modeling_mtrec.data.mind import read_behaviors
from modeling_mtrec.data.samples import (
    build_eval_impressions,
    build_retrieval_samples,
    build_train_samples,
    recent_history,
    stable_key,
)
from modeling_mtrec.data.stats import LoadStats
from tests.testing_utils import behavior_line, write

NEWS_INDEX = {"N1": 0, "N2": 1, "N3": 2, "N4": 3, "N5": 4, "N6": 5}

def behaviors_from(tmp_path: Path, lines: list[str]):
    return read_behaviors(write(tmp_path / "behaviors.tsv", lines))

def test_build_train_samples_one_row_per_click(tmp_path: Path) -> None:
    behaviors = behaviors_from(tmp_path, [behavior_line("1", "N1 N2", "N3-1 N4-0 N5-1 N6-0")])
    samples = build_train_samples(behaviors, NEWS_INDEX, max_history_length=50)
    assert samples.column_names == ["history", "positive", "negatives"]
    assert samples[:] == {"history": [[0, 1], [0, 1]], "positive": [2, 4], "negatives": [[3, 5], [3, 5]]}

def test_build_train_samples_drops_and_counts_unknown_ids(tmp_path: Path) -> None:
    behaviors = behaviors_from(
        tmp_path,
        [
            behavior_line("1", "X1 N1 X2 N2", "N3-1 X3-0 N4-0"),  # 2 unknown history ids, 1 unknown candidate
            behavior_line("2", "N1", "X4-1 X5-1 N4-0"),  # both clicks unknown: no click left -> skipped
            behavior_line("3", "N1", "N3-1 X6-0"),  # only non-click unknown -> no negatives -> skipped
            behavior_line("4", "X7", "N3-1 N4-0"),  # history empty after dropping: kept, counted
            behavior_line("5", "N1", "N3-0 N4-0"),  # no click at all -> skipped
        ],
    )
    stats = LoadStats()
    samples = build_train_samples(behaviors, NEWS_INDEX, max_history_length=50, stats=stats)
    assert samples[:] == {"history": [[0, 1], []], "positive": [2, 2], "negatives": [[3], [3]]}
    assert stats == {
        "unknown_history_ids": 3,
        "unknown_candidate_ids": 4,
        "impressions_without_click": 2,
        "impressions_without_non_click": 1,
        "empty_history": 1,
    }

def test_history_truncation_keeps_most_recent_known(tmp_path: Path) -> None:
    behaviors = behaviors_from(tmp_path, [behavior_line("1", "N1 N2 X1 N3 N4 X2", "N5-1 N6-0")])
    assert build_train_samples(behaviors, NEWS_INDEX, max_history_length=3)["history"][:] == [[1, 2, 3]]
    assert build_train_samples(behaviors, NEWS_INDEX, max_history_length=0)["history"][:] == [[]]
    with pytest.raises(ValueError, match="max_history_length"):
        build_train_samples(behaviors, NEWS_INDEX, max_history_length=-1)

def test_build_eval_impressions(tmp_path: Path) -> None:
    behaviors = behaviors_from(
        tmp_path,
        [
            behavior_line("1", "N1 X1", "N3-0 X2-1 N4-1 N5-0"),
            behavior_line("2", "N1", "N3-1 N4-1"),  # no non-click: AUC undefined -> left out
            behavior_line("3", "", "X3-1 N4-0"),  # the click was unknown -> left out
        ],
    )
    stats = LoadStats()
    impressions = build_eval_impressions(behaviors, NEWS_INDEX, max_history_length=50, stats=stats)
    assert impressions.column_names == ["impression_id", "history", "candidates", "labels"]
    assert impressions[:] == {
        "impression_id": ["1"],
        "history": [[0]],
        "candidates": [[2, 3, 4]],
        "labels": [[0, 1, 0]],
    }
    assert stats == {
        "unknown_history_ids": 1,
        "unknown_candidate_ids": 2,
        "impressions_without_click": 1,
        "impressions_without_non_click": 1,
    }

def test_build_eval_impressions_keeps_unlabelled_test_split(tmp_path: Path) -> None:
    behaviors = behaviors_from(tmp_path, [behavior_line("7", "", "N2 X1 N3"), behavior_line("8", "N1", "X2")])
    stats = LoadStats()
    impressions = build_eval_impressions(behaviors, NEWS_INDEX, max_history_length=50, stats=stats)
    assert impressions[:] == {
        "impression_id": ["7"],
        "history": [[]],
        "candidates": [[1, 2]],
        "labels": [[-1, -1]],
    }
    assert stats == {
        "unknown_candidate_ids": 2,
        "impressions_without_click": 1,
        "empty_history": 1,
    }
    # No click to learn from: the training builder skips all of them.
    assert len(build_train_samples(behaviors, NEWS_INDEX, max_history_length=50, stats=LoadStats())) == 0

def reference_build(behaviors, news_index: dict[str, int], max_history_length: int):
    """The builders' documented rules as a plain loop: (train rows, eval rows, train stats, eval stats)."""
    train, evaluation = [], []
    train_stats, eval_stats = LoadStats(), LoadStats()
    for impression in behaviors:
        history = [news_index[n] for n in impression["history"] if n in news_index]
        if len(history) > max_history_length:
            history = history[len(history) - max_history_length :]
        pairs = zip(impression["candidates"], impression["clicks"], strict=True)
        known = [(news_index[n], click) for n, click in pairs if n in news_index]
        candidates, clicks = [row for row, _ in known], [click for _, click in known]
        positives = [row for row, click in known if click == 1]
        negatives = [row for row, click in known if click == 0]
        unknown_history = len(impression["history"]) - sum(n in news_index for n in impression["history"])
        unknown_candidates = len(impression["candidates"]) - len(known)
        for stats in (train_stats, eval_stats):
            stats["unknown_history_ids"] += unknown_history
            stats["unknown_candidate_ids"] += unknown_candidates
            stats["duplicate_candidates"] += len(candidates) - len(set(candidates))  # a news listed twice (kept)

        if not positives:
            train_stats["impressions_without_click"] += 1
        elif not negatives:
            train_stats["impressions_without_non_click"] += 1
        else:
            train_stats["empty_history"] += not history
            train += [{"history": history, "positive": p, "negatives": negatives} for p in positives]

        if -1 in impression["clicks"]:  # unlabelled: kept when a candidate is known
            problem = None if candidates else "impressions_without_click"
        elif not positives:
            problem = "impressions_without_click"
        elif not negatives:
            problem = "impressions_without_non_click"
        else:
            problem = None
        if problem:
            eval_stats[problem] += 1
        else:
            eval_stats["empty_history"] += not history
            evaluation.append(
                {"impression_id": impression["impression_id"], "history": history, "candidates": candidates,
                 "labels": clicks}
            )  # fmt: skip
    return train, evaluation, +train_stats, +eval_stats  # unary + drops zero counts

def random_behaviors(tmp_path: Path, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for i in range(40):
        history = " ".join(f"N{rng.randrange(12)}" for _ in range(rng.randrange(8)))
        tokens = [f"N{rng.randrange(12)}" for _ in range(rng.randrange(1, 7))]
        if rng.random() < 0.8:  # labelled
            tokens = [f"{token}-{int(rng.random() < 0.3)}" for token in tokens]
        lines.append(behavior_line(str(i), history, " ".join(tokens)))
    return write(tmp_path / "behaviors.tsv", lines)

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_history_length", [0, 3, 50])
def test_builders_match_plain_python_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, max_history_length: int
) -> None:
    monkeypatch.setattr(mind, "_CHUNK_ROWS", 7)  # several Arrow batches, and a short last one
    monkeypatch.setattr(samples, "_CHUNK_ROWS", 7)
    news_index = {f"N{i}": 8 - i for i in range(9)}  # N9, N10, N11 unknown; rows not in id order
    behaviors = read_behaviors(random_behaviors(tmp_path, seed))
    assert len(behaviors) == 40
    expected_train, expected_eval, expected_train_stats, expected_eval_stats = reference_build(
        behaviors, news_index, max_history_length
    )
    train_stats, eval_stats = LoadStats(), LoadStats()
    train = build_train_samples(behaviors, news_index, max_history_length, train_stats)
    evaluation = build_eval_impressions(behaviors, news_index, max_history_length, eval_stats)
    assert train.to_list() == expected_train
    assert evaluation.to_list() == expected_eval
    assert train_stats == expected_train_stats
    assert eval_stats == expected_eval_stats

def test_build_retrieval_samples_one_row_per_click(tmp_path):
    path = tmp_path / "behaviors.tsv"
    path.write_text("1\tU1\t11/11/2019 9:00:00 AM\tN1 N2 NX\tN3-1 N4-0 N5-1\n2\tU2\t11/11/2019 9:00:00 AM\t\tN4-1\n")
    news_index = {f"N{i}": i - 1 for i in range(1, 6)}
    samples = build_retrieval_samples(read_behaviors(path), news_index, max_history_length=1)
    assert samples.to_dict() == {
        "user_key": [stable_key("U1"), stable_key("U1"), stable_key("U2")],
        "history": [[1], [1], []],  # NX unknown; truncated to the most recent known click
        "positive": [2, 4, 3],  # the impression without a non-click is kept
    }


@pytest.mark.parametrize("max_history_length", [0, 1, 3, 50])
def test_recent_history_is_the_builders_rule(tmp_path: Path, max_history_length: int) -> None:
    """Prediction and serving truncate one history at a time with `recent_history`; the builders do it on whole
    Arrow columns. Both keep the most recent known clicks."""
    behaviors = read_behaviors(random_behaviors(tmp_path, seed=3))
    news_index = {f"N{i}": i for i in range(9)}  # N9, N10, N11 unknown
    built = build_eval_impressions(behaviors, news_index, max_history_length, LoadStats())
    rows = {row["impression_id"]: row["history"] for row in built.to_list()}
    for impression_id, history in zip(behaviors["impression_id"], behaviors["history"]):
        if impression_id in rows:
            known = [news_index[i] for i in history if i in news_index]
            assert rows[impression_id] == recent_history(known, max_history_length)
    assert recent_history([1, 2, 3], 2) == [2, 3] and recent_history([1, 2, 3], 0) == []
    with pytest.raises(ValueError, match="max_history_length"):
        recent_history([1], -1)
