"""MIND readers and sample builders on tiny hand-written files (no MIND data: its license forbids copying)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from modeling_mtrec.data import mind, samples
from modeling_mtrec.data.corpus import MINDSplit, load_mind_split
from modeling_mtrec.data.mind import MINDFormatError, read_behaviors, read_news
from modeling_mtrec.data.samples import build_eval_impressions, build_train_samples
from modeling_mtrec.data.stats import LoadStats


def news_line(news_id: str, category: str = "sports", title: str = "Team wins the cup") -> str:
    """One 8-column news.tsv row (entities empty)."""
    return "\t".join([news_id, category, "sub", title, "An abstract.", "https://example.com", "[]", "[]"])


def write(path: Path, lines: list[str], ending: str = "\n") -> Path:
    path.write_bytes("".join(line + ending for line in lines).encode("utf-8"))
    return path


def behavior_line(impression_id: str, history: str, impressions: str, user: str = "U1") -> str:
    return "\t".join([impression_id, user, "11/15/2019 8:55:22 AM", history, impressions])


# ---------------------------------------------------------------------------------------------- read_news


def test_read_news_keeps_text_verbatim(tmp_path: Path) -> None:
    # An unbalanced quote would make the csv module swallow the next row; CRLF endings are stripped.
    path = write(
        tmp_path / "news.tsv", [news_line("N1", title='He said "no'), news_line("N2", "news")], ending="\r\n"
    )
    news = read_news(path)
    assert news.column_names == [
        "news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities",
    ]  # fmt: skip
    assert news["news_id"][:] == ["N1", "N2"]
    assert news["title"][:] == ['He said "no', "Team wins the cup"]
    assert news["category"][:] == ["sports", "news"]
    assert news[1]["abstract_entities"] == "[]"


def test_read_news_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "news.tsv", [news_line("N1"), "", "N2\tsports\tsub\ttitle"])
    with pytest.raises(MINDFormatError) as error:
        read_news(path)
    assert str(error.value) == f"{path}:3: expected 8 tab-separated columns (MIND news.tsv), found 4"
    assert isinstance(error.value, ValueError)


def test_read_news_lenient_skips_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "news.tsv", [news_line("N1"), "broken row", news_line("N2") + "\textra"])
    stats = LoadStats()
    with caplog.at_level(logging.WARNING):
        news = read_news(path, lenient=True, stats=stats)
    assert news["news_id"][:] == ["N1"]
    assert stats == {"malformed_rows_skipped": 2}
    assert f"{path}:2:" in caplog.text and f"{path}:3:" in caplog.text


def test_read_news_skips_empty_lines_silently(tmp_path: Path) -> None:
    path = write(tmp_path / "news.tsv", ["", news_line("N1"), "", "", news_line("N2"), ""])
    stats = LoadStats()
    assert read_news(path, stats=stats)["news_id"][:] == ["N1", "N2"]
    assert stats.as_dict() == {}


def test_read_news_duplicate_id_keeps_first(tmp_path: Path) -> None:
    lines = [news_line("N1", title="first"), news_line("N2"), news_line("N1", title="second")]
    stats = LoadStats()
    news = read_news(write(tmp_path / "news.tsv", lines), stats=stats)
    assert news["news_id"][:] == ["N1", "N2"]
    assert news[0]["title"] == "first"
    assert stats == {"duplicate_news_ids": 1}


def test_read_news_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "news.tsv"
    path.write_bytes(
        news_line("N1").encode() + b"\n" + news_line("N2", title="caf\xe9").encode("latin-1") + b"\n"
    )
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: not valid UTF-8"):
        read_news(path)


# ----------------------------------------------------------------------------------------- read_behaviors


def test_read_behaviors_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1 N2 N3", "N4-1 N5-0 N6-0"), behavior_line("2", "", "N5-0 N4-1", user="U2")],
    )
    behaviors = read_behaviors(path)
    assert behaviors.column_names == ["impression_id", "user_id", "time", "history", "candidates", "clicks"]
    first, second = behaviors[0], behaviors[1]
    assert first == {
        "impression_id": "1",
        "user_id": "U1",
        "time": "11/15/2019 8:55:22 AM",
        "history": ["N1", "N2", "N3"],
        "candidates": ["N4", "N5", "N6"],
        "clicks": [1, 0, 0],
    }
    assert second["history"] == [] and second["user_id"] == "U2"
    assert second["candidates"] == ["N5", "N4"] and second["clicks"] == [0, 1]


def test_read_behaviors_unlabelled_test_split(tmp_path: Path) -> None:
    behaviors = read_behaviors(write(tmp_path / "behaviors.tsv", [behavior_line("9", "N1", "N4 N5")]))
    assert behaviors[0]["candidates"] == ["N4", "N5"]
    assert behaviors[0]["clicks"] == [-1, -1]


def test_read_behaviors_wrong_column_count(tmp_path: Path) -> None:
    path = write(tmp_path / "behaviors.tsv", [behavior_line("1", "N1", "N2-1"), "2\tU1\tN1\tN2-1"])
    with pytest.raises(MINDFormatError) as error:
        read_behaviors(path)
    assert str(error.value) == f"{path}:2: expected 5 tab-separated columns (MIND behaviors.tsv), found 4"


@pytest.mark.parametrize("impressions", ["N2-1 N1-x", "N2-1 -1", "N2-1 N3", ""])
def test_read_behaviors_malformed_impressions_names_line(tmp_path: Path, impressions: str) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1", "N2-1 N3-0"), behavior_line("2", "", impressions)],
    )
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: "):
        read_behaviors(path)


def test_read_behaviors_reports_the_first_bad_line(tmp_path: Path) -> None:
    # Impression tokens are checked per chunk, column counts per line: the earlier line must still win.
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1", "N2-1 N3-0"), behavior_line("2", "N1", "N2-1 N1-x"), "3\tU1\tN1\tN2-1"],
    )
    with pytest.raises(MINDFormatError, match=rf"^{path}:2: malformed impression token 'N1-x'"):
        read_behaviors(path)


def test_read_behaviors_whitespace_like_str_split(tmp_path: Path) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", " N1  N2 ", " N3-1  N4-0 "), behavior_line("2", " ", "N3")],
    )
    behaviors = read_behaviors(path)
    assert behaviors["history"][:] == [["N1", "N2"], []]
    assert behaviors["candidates"][:] == [["N3", "N4"], ["N3"]]
    assert behaviors["clicks"][:] == [[1, 0], [-1]]


def test_read_behaviors_lenient_skips_bad_token(tmp_path: Path) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1", "N2-1 N1-x"), behavior_line("2", "N1", "N2-1 N3-0"), "too\tfew"],
    )
    stats = LoadStats()
    behaviors = read_behaviors(path, lenient=True, stats=stats)
    assert behaviors["impression_id"][:] == ["2"]
    assert stats == {"malformed_rows_skipped": 2}


# ------------------------------------------------------------------------------------ sample builders

NEWS_INDEX = {"N1": 0, "N2": 1, "N3": 2, "N4": 3, "N5": 4, "N6": 5}


def behaviors_from(tmp_path: Path, lines: list[str]):
    return read_behaviors(write(tmp_path / "behaviors.tsv", lines))


def test_build_train_samples_one_row_per_click(tmp_path: Path) -> None:
    behaviors = behaviors_from(tmp_path, [behavior_line("1", "N1 N2", "N3-1 N4-0 N5-1 N6-0")])
    samples = build_train_samples(behaviors, NEWS_INDEX)
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
    samples = build_train_samples(behaviors, NEWS_INDEX, stats=stats)
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
    impressions = build_eval_impressions(behaviors, NEWS_INDEX, stats=stats)
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
    impressions = build_eval_impressions(behaviors, NEWS_INDEX, stats=stats)
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
    assert len(build_train_samples(behaviors, NEWS_INDEX, stats=LoadStats())) == 0


# ------------------------------------------------------------------------------------------ LoadStats


def test_load_stats_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_load_stats")
    stats = LoadStats()
    with caplog.at_level(logging.INFO, logger="test_load_stats"):
        stats.log(logger, "dev split")
        stats["unknown_history_ids"] += 2
        stats["empty_history"] += 1
        stats.log(logger, "dev split")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "dev split: no problems"),
        ("WARNING", "dev split: 1 empty_history, 2 unknown_history_ids"),
    ]
    assert stats.as_dict() == {"empty_history": 1, "unknown_history_ids": 2}


# ------------------------------------------------------------------------------------ load_mind_split


def tiny_bert_tokenizer(tmp_path: Path):
    from transformers import BertTokenizerFast

    vocab = "[PAD] [UNK] [CLS] [SEP] [MASK] team wins the cup rain stops play".split()
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 takes the file as `vocab=`; the old `vocab_file=` keyword is silently ignored.
    return BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=True)


def test_load_mind_split_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("modeling_mtrec.models.mtrec.processing_mtrec")
    folder = tmp_path / "split"
    folder.mkdir()
    write(
        folder / "news.tsv",
        [news_line("N1", "sports"), news_line("N2", "weather", "Rain stops play"), news_line("N3", "sports")],
    )
    write(
        folder / "behaviors.tsv",
        [behavior_line("1", "N1 X1", "N2-1 N3-0"), behavior_line("2", "", "N1-0 N3-0")],
    )
    tokenizer = tiny_bert_tokenizer(tmp_path)

    split = load_mind_split(folder, tokenizer)
    assert isinstance(split, MINDSplit)
    assert split.news_index == {"N1": 0, "N2": 1, "N3": 2}
    assert split.category2id == {"sports": 0, "weather": 1}
    # [CLS] rain stops play [SEP]
    assert split.news["input_ids"][1] == tokenizer("Rain stops play")["input_ids"] == [2, 9, 10, 11, 3]
    assert split.news["category_label"][:] == [0, 1, 0]
    assert split.samples[:] == {"history": [[0]], "positive": [1], "negatives": [[2]]}
    assert split.stats == {"unknown_history_ids": 1, "impressions_without_click": 1}

    dev = load_mind_split(folder, tokenizer, train=False, category2id={"weather": 0})
    assert dev.news["category_label"][:] == [-100, 0, -100]
    assert dev.samples["impression_id"][:] == ["1"]
    assert dev.stats["unknown_category"] == 2

    with pytest.raises(FileNotFoundError, match="behaviors.tsv"):
        load_mind_split(tmp_path, tokenizer)


# ------------------------------------------------------------------------- against a plain-python reference


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
