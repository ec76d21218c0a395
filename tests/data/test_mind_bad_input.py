"""Bad input to the MIND readers and loaders gets a clear error or a count, never garbage.

Every reader path that can see an empty, malformed, duplicate or header row either raises `MINDFormatError` naming
file and line, or (with ``lenient=True``) counts it; the property tests feed the readers arbitrary bytes.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeling_mtrec.data import LoadStats, read_behaviors, read_news, synthetic_tokenizer
from modeling_mtrec.data.lines import compression
from modeling_mtrec.data.mind import MINDFormatError
from modeling_mtrec.data.samples import build_eval_impressions, build_retrieval_samples
from modeling_mtrec.evaluation.leaderboard import write_mind_predictions
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.models.mtrec.processing_mtrec import tokenize_news
from modeling_mtrec.models.two_tower.corpus import load_retrieval_corpus
from modeling_mtrec.models.two_tower.features import build_item_features
from tests.testing_utils import behavior_line, news_line, write

NEWS_HEADER = "news_id\tcategory\tsubcategory\ttitle\tabstract\turl\ttitle_entities\tabstract_entities"
BEHAVIORS_HEADER = "impression_id\tuser_id\ttime\thistory\timpressions"


def split(folder: Path, news: list[str], behaviors: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "news.tsv", news)
    write(folder / "behaviors.tsv", behaviors)
    return folder


NEWS = [news_line("N1", "news"), news_line("N2", "sports"), news_line("N3", "news")]
BEHAVIORS = [behavior_line("1", "N1", "N2-1 N3-0"), behavior_line("2", "N2", "N1-0 N3-1")]

# ------------------------------------------------------------------------------------------ property tests


def data_rows(data: bytes) -> int:
    """Lines that carry data, as the readers split them: on b"\\n", minus the line ending and a byte-order mark."""
    rows = 0
    for line in data.split(b"\n"):
        line = line.removesuffix(b"\r").removeprefix(b"\xef\xbb\xbf")
        rows += bool(line)
    return rows


def check_error(error: MINDFormatError, path: Path, data: bytes) -> None:
    match = re.match(rf"{re.escape(str(path))}:(\d+): \S", str(error))
    assert match, f"the error names no file and line: {error}"
    assert 1 <= int(match.group(1)) <= data.count(b"\n") + 1


def printable(value: str) -> bool:
    """No whitespace, no control character, no invisible format character: an id that can be asked for."""
    return not any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in value)


TOKENS = ["N1", "N2", "N10", "", " ", "N 1", "N1\u00a0N2", "\u3000", "x", "news", "id", "-", "N1-1", "N2-0", "N3-x", "N\x004",
          "N\x1c5", "N\u200b6", "N-7"]
field = st.one_of(st.sampled_from(TOKENS), st.text(max_size=6))
endings = st.sampled_from([b"\n", b"\r\n", b"\r", b""])


def lines_strategy(columns: int, header: str, extra: list[str]):
    """Lines near the format (the right column count most of the time, odd ids, headers) or anything at all."""
    near = st.lists(field, min_size=columns - 1, max_size=columns + 1).map("\t".join)
    line = st.one_of(near, st.sampled_from([header, *extra, ""]), st.text(max_size=20))
    encoded = st.one_of(
        line.map(lambda text: text.encode("utf-8")),
        st.binary(max_size=12),  # invalid UTF-8 too
        line.map(lambda text: b"\xef\xbb\xbf" + text.encode("utf-8")),  # a byte-order mark, on any line
    )
    return st.lists(st.tuples(encoded, endings), max_size=8).map(lambda rows: b"".join(a + b for a, b in rows))


news_bytes = st.one_of(st.binary(max_size=200), lines_strategy(8, NEWS_HEADER, NEWS))
behaviors_bytes = st.one_of(
    st.binary(max_size=200),
    lines_strategy(5, BEHAVIORS_HEADER, [*BEHAVIORS, behavior_line("1", "", "N1"), behavior_line("3", "N1 N2", "N3 N1")]),
)
PROPERTY = settings(
    max_examples=120, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(data=news_bytes)
def test_any_bytes_as_news_tsv_give_an_error_with_its_line_or_counted_rows(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "news.tsv"
    path.write_bytes(data)
    if compression(str(path)):  # no file of rows: refused as a whole, lenient or not
        with pytest.raises(MINDFormatError, match=re.escape(f"{path}: the file is")):
            read_news(path, lenient=True)
        return
    stats = LoadStats()
    news = read_news(path, lenient=True, stats=stats)
    counted = stats["malformed_rows_skipped"] + stats["duplicate_news_ids"] + stats["header_rows"]
    assert len(news) + counted == data_rows(data), (stats, len(news))
    assert all(news_id and "-" not in news_id and printable(news_id) for news_id in news["news_id"])
    try:
        strict = read_news(path, stats=LoadStats())
    except MINDFormatError as error:
        check_error(error, path, data)
        assert stats["malformed_rows_skipped"] > 0  # strict fails exactly where lenient skips
    else:
        assert stats["malformed_rows_skipped"] == 0 and strict["news_id"] == news["news_id"]


@PROPERTY
@given(data=behaviors_bytes)
def test_any_bytes_as_behaviors_tsv_give_an_error_with_its_line_or_counted_rows(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "behaviors.tsv"
    path.write_bytes(data)
    if compression(str(path)):  # no file of rows: refused as a whole, lenient or not
        with pytest.raises(MINDFormatError, match=re.escape(f"{path}: the file is")):
            read_behaviors(path, lenient=True)
        return
    stats = LoadStats()
    behaviors = read_behaviors(path, lenient=True, stats=stats)
    counted = stats["malformed_rows_skipped"] + stats["duplicate_impression_ids"] + stats["header_rows"]
    assert len(behaviors) + counted == data_rows(data), (stats, len(behaviors))
    ids = behaviors["impression_id"]
    assert len(set(ids)) == len(ids) and all(i and printable(i) for i in ids)
    assert all(printable(i) and "-" not in i for ids in [*behaviors["history"], *behaviors["candidates"]] for i in ids)
    for candidates, clicks in zip(behaviors["candidates"], behaviors["clicks"], strict=True):
        assert candidates and len(candidates) == len(clicks) and len(set(clicks) - {0, 1}) == 0 or set(clicks) == {-1}
    try:
        strict = read_behaviors(path, stats=LoadStats())
    except MINDFormatError as error:
        check_error(error, path, data)
        assert stats["malformed_rows_skipped"] + stats["duplicate_impression_ids"] > 0
    else:
        assert stats["malformed_rows_skipped"] + stats["duplicate_impression_ids"] == 0 and strict["impression_id"] == ids


# ------------------------------------------------------------------------------------------ rows the readers refuse


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (behavior_line("", "N1", "N2-1 N3-0"), "empty impression id"),
        (behavior_line("1 2", "N1", "N2-1 N3-0"), "impression id '1 2' contains whitespace (U+0020 SPACE)"),
        (behavior_line("7", "N1", "N2-1 N3-0", user=""), "empty user id"),
        (behavior_line("7", "N1", "N2-1\u00a0N3-0"), "impressions column contains U+00A0 NO-BREAK SPACE"),
        (behavior_line("7", "N1\u00a0N2", "N2-1 N3-0"), "history column contains U+00A0 NO-BREAK SPACE"),
        (behavior_line("1", "N1", "N3-1"), "impression id '1' repeats line 1's"),
    ],
)
def test_bad_impression_rows_name_their_line_or_are_counted(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path / "behaviors.tsv", [BEHAVIORS[0], line, BEHAVIORS[1]])
    with pytest.raises(MINDFormatError, match=re.escape(f"{path}:2: {problem}")):
        read_behaviors(path)
    stats = LoadStats()
    assert read_behaviors(path, lenient=True, stats=stats)["impression_id"] == ["1", "2"]
    reason = "duplicate_impression_ids" if "repeats" in problem else "malformed_rows_skipped"
    assert stats == {reason: 1}


def test_news_id_with_whitespace_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "news.tsv", [NEWS[0], news_line("N 9")])
    with pytest.raises(MINDFormatError, match=re.escape(f"{path}:2: news id 'N 9' contains whitespace")):
        read_news(path)


def test_header_rows_are_skipped_and_counted_never_a_news_or_a_category(tmp_path: Path) -> None:
    folder = split(tmp_path / "train", [NEWS_HEADER, *NEWS, NEWS_HEADER], [BEHAVIORS_HEADER, *BEHAVIORS])
    corpus = load_mind(synthetic_tokenizer(), train_dir=folder)
    assert corpus.news["news_id"] == ["N1", "N2", "N3"]
    assert corpus.category2id == {"news": 0, "sports": 1}
    assert corpus.stats == {"header_rows": 3}


def test_byte_order_mark_is_removed_on_every_line(tmp_path: Path) -> None:
    # `cat a/news.tsv b/news.tsv` carries one byte-order mark per file.
    path = write(tmp_path / "news.tsv", ["\ufeff" + NEWS[0], "\ufeff" + NEWS[1]])
    assert read_news(path)["news_id"] == ["N1", "N2"]


def test_empty_category_is_no_class_and_is_counted(tmp_path: Path) -> None:
    folder = split(tmp_path / "train", [*NEWS, news_line("N4", ""), news_line("N5", "  ")], BEHAVIORS)
    corpus = load_mind(synthetic_tokenizer(), train_dir=folder)
    assert corpus.category2id == {"news": 0, "sports": 1}
    assert corpus.news["category_label"] == [0, 1, 0, -100, -100]
    assert corpus.stats == {"empty_category": 2}
    # Even a category2id that holds "" gives no label to a news without a category.
    stats = LoadStats()
    tokenized = tokenize_news(read_news(folder / "news.tsv"), synthetic_tokenizer(), category2id={"": 0}, stats=stats)
    assert tokenized["category_label"][3:] == [-100, -100] and stats["empty_category"] == 2
    # The two-tower's hashed features count them too.
    stats = LoadStats()
    build_item_features(read_news(folder / "news.tsv"), stats=stats)
    assert stats == {"empty_category": 2}


def test_overlapping_and_deeply_nested_entities_are_counted(tmp_path: Path) -> None:
    overlapping = (
        '[{"OccurrenceOffsets": [0], "SurfaceForms": ["Team wins"]}, {"OccurrenceOffsets": [5], "SurfaceForms": '
        '["wins the cup"]}]'
    )
    rows = [news_line("N1"), news_line("N2"), news_line("N3")]
    rows[0] = rows[0].rsplit("\t", 2)[0] + f"\t{overlapping}\t[]"
    rows[1] = rows[1].rsplit("\t", 2)[0] + "\t" + "[" * 100_000 + "]" * 100_000 + "\t[]"
    stats = LoadStats()
    tokenized = tokenize_news(read_news(write(tmp_path / "news.tsv", rows)), synthetic_tokenizer(), stats=stats)
    assert stats == {"overlapping_entity_spans": 1, "broken_entity_json": 1}
    assert tokenized["ner_labels"][1][1:-1] == [0] * (len(tokenized["ner_labels"][1]) - 2)  # no tags from broken JSON


@pytest.mark.parametrize("news", [[], ["", ""], ["a broken row"]], ids=["empty", "blank-lines", "all-skipped"])
def test_a_news_file_without_usable_rows_is_named(tmp_path: Path, news: list[str]) -> None:
    folder = split(tmp_path / "train", news, BEHAVIORS)
    message = f"{folder / 'news.tsv'}: no usable news row"
    with pytest.raises(MINDFormatError, match=re.escape(message)):
        load_mind(synthetic_tokenizer(), train_dir=folder, lenient=True)
    with pytest.raises(MINDFormatError, match=re.escape(message)):
        load_retrieval_corpus(train_dir=folder, lenient=True)


def test_predictions_of_a_folder_without_usable_rows_are_refused(tmp_path: Path, setup) -> None:
    _, tokenizer, _, model = setup
    folder = split(tmp_path / "test", NEWS, ["", "broken"])
    with pytest.raises(MINDFormatError, match=re.escape(f"{folder / 'behaviors.tsv'}: no usable impression row")):
        write_mind_predictions(model, tokenizer, folder, tmp_path / "out", lenient=True)


def test_tokenize_news_of_an_empty_table_adds_its_columns(tmp_path: Path) -> None:
    empty = read_news(write(tmp_path / "news.tsv", []))
    tokenized = tokenize_news(empty, synthetic_tokenizer())
    assert len(tokenized) == 0 and {"input_ids", "category_label", "ner_labels"} <= set(tokenized.column_names)


def test_retrieval_samples_count_the_impressions_that_give_no_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "behaviors.tsv",
        [behavior_line("1", "N1", "N2-1 N3-0"), behavior_line("2", "N1", "N2 N3"), behavior_line("3", "N1", "N2-0")],
    )
    stats = LoadStats()
    samples = build_retrieval_samples(read_behaviors(path), {"N1": 0, "N2": 1, "N3": 2}, max_history_length=50, stats=stats)
    assert len(samples) == 1
    assert stats == {"unlabelled_impressions": 1, "impressions_without_click": 1}


def test_a_news_listed_twice_in_one_impression_is_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "behaviors.tsv", [behavior_line("1", "N1", "N2-1 N2-0 N3-0"), behavior_line("2", "", "N3-1 N2-0")])
    stats = LoadStats()
    impressions = build_eval_impressions(read_behaviors(path), {"N1": 0, "N2": 1, "N3": 2}, max_history_length=50, stats=stats)
    assert impressions["candidates"] == [[1, 1, 2], [2, 1]]  # kept, as MIND's scorer keeps them
    assert stats == {"duplicate_candidates": 1, "empty_history": 1}


# ------------------------------------------------------------------------------------------ ids, encodings, line endings


@pytest.mark.parametrize(
    ("news_id", "problem"),
    [
        ("N\x009", "news id 'N\\x009' contains U+0000 (a control character)"),
        ("N9\x01", "news id 'N9\\x01' contains U+0001 (a control character)"),
        ("N\x7f9", "news id 'N\\x7f9' contains U+007F (a control character)"),
        ("N\u200b9", "news id 'N\\u200b9' contains U+200B ZERO WIDTH SPACE (an invisible format character)"),
        ("N-9", "news id 'N-9' contains '-'"),
    ],
)
def test_news_ids_with_control_characters_or_a_hyphen_are_refused(tmp_path: Path, news_id: str, problem: str) -> None:
    """Such an id could never be reached: behaviors.tsv labels a candidate NEWSID-1, and nobody types a NUL."""
    path = write(tmp_path / "news.tsv", [NEWS[0], news_line(news_id), NEWS[1]])
    with pytest.raises(MINDFormatError, match=re.escape(f"{path}:2: {problem}")):
        read_news(path)
    stats = LoadStats()
    assert read_news(path, lenient=True, stats=stats)["news_id"] == ["N1", "N2"]
    assert stats == {"malformed_rows_skipped": 1}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (behavior_line("7\x00", "N1", "N2-1 N3-0"), "impression id '7\\x00' contains U+0000 (a control character)"),
        (behavior_line("7", "N1", "N2-1 N3-0", user="U\x01"), "user id 'U\\x01' contains U+0001 (a control character)"),
        (behavior_line("7", "N1\x00 N2", "N2-1 N3-0"), "history id 'N1\\x00' contains U+0000 (a control character)"),
        (behavior_line("7", "N1 N-2", "N2-1 N3-0"), "history id 'N-2' contains '-'"),
        (behavior_line("7", "N1", "N2\x00-1 N3-0"), "candidate news id 'N2\\x00' contains U+0000 (a control character)"),
        (behavior_line("7", "N1\x1cN2", "N2-1 N3-0"), "history column contains U+001C control character"),
    ],
)
def test_impression_ids_with_control_characters_are_refused(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path / "behaviors.tsv", [BEHAVIORS[0], line, BEHAVIORS[1]])
    with pytest.raises(MINDFormatError, match=re.escape(f"{path}:2: {problem}")):
        read_behaviors(path)
    stats = LoadStats()
    assert read_behaviors(path, lenient=True, stats=stats)["impression_id"] == ["1", "2"]
    assert stats == {"malformed_rows_skipped": 1}


@pytest.mark.parametrize("file_name", ["news.tsv", "behaviors.tsv"])
@pytest.mark.parametrize("compression", ["gzip", "zip", "bzip2"])
def test_a_compressed_file_says_so(tmp_path: Path, file_name: str, compression: str) -> None:
    import bz2
    import gzip
    import io
    import zipfile

    text = "\n".join(NEWS if file_name == "news.tsv" else BEHAVIORS).encode()
    if compression == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(file_name, text)
        data = buffer.getvalue()
    else:
        data = gzip.compress(text) if compression == "gzip" else bz2.compress(text)
    path = tmp_path / file_name
    path.write_bytes(data)
    reader = read_news if file_name == "news.tsv" else read_behaviors
    for lenient in (False, True):  # a compressed file is no file of rows: lenient does not skip it line by line
        with pytest.raises(MINDFormatError, match=re.escape(f"{path}: the file is {compression}-compressed")):
            reader(path, lenient=lenient)


@pytest.mark.parametrize("file_name", ["news.tsv", "behaviors.tsv"])
def test_cr_only_line_endings_are_reported_not_merged_silently(
    tmp_path: Path, file_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows = NEWS if file_name == "news.tsv" else BEHAVIORS
    path = write(tmp_path / file_name, rows, ending="\r")
    reader = read_news if file_name == "news.tsv" else read_behaviors
    hint = f"the line holds {len(rows)} records separated by carriage returns (CR-only line endings)"
    with pytest.raises(MINDFormatError, match=re.escape(f"{path}:1: ") + ".*" + re.escape(hint)):
        reader(path)
    stats = LoadStats()
    with caplog.at_level("WARNING"):
        assert len(reader(path, lenient=True, stats=stats)) == 0
    assert stats == {"malformed_rows_skipped": 1} and hint in caplog.text


def test_the_retriever_counts_titles_without_text_too(tmp_path: Path) -> None:
    path = write(tmp_path / "news.tsv", [NEWS[0], news_line("N2", title=""), news_line("N3", title="\U0001F600")])
    stats = LoadStats()
    items = build_item_features(read_news(path), stats=stats)
    assert stats == {"empty_title": 1, "title_without_words": 1}
    assert (items.word_keys[1:] == -1).all()
