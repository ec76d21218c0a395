"""read_split over every format, format recognition, and the converter to the package's Parquet tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling_mtrec.data.convert import convert, main
from modeling_mtrec.data.formats import DATA_FORMATS, detect_format, label_report, read_split
from modeling_mtrec.data.mind import MINDFormatError, read_behaviors, read_news
from modeling_mtrec.data.stats import LoadStats
from tests.data.corpus_files import TRANSLATIONS, adressa_one_week, ebnerd_corpus, tables_split, xmind_split


def mind_split(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "news.tsv").write_text("N1\tnews\tsub\tA title\tabs\turl\t[]\t[]\nN2\tsports\tsub\tB\t\t\t[]\t[]\n")
    (folder / "behaviors.tsv").write_text("1\tU1\t11/15/2019 8:55:22 AM\tN1\tN2-1 N1-0\n")
    return folder


def all_formats(tmp_path: Path) -> dict[str, Path]:
    xmind = xmind_split(tmp_path / "x", TRANSLATIONS)
    (xmind / "mind").symlink_to(tmp_path / "x" / "MINDsmall_train", target_is_directory=True)
    (tmp_path / "tables").mkdir()
    return {
        "mind": mind_split(tmp_path / "mind"),
        "xmind": xmind,
        "ebnerd": ebnerd_corpus(tmp_path / "ebnerd_small"),
        "adressa": adressa_one_week(tmp_path),
        "tables": tables_split(tmp_path / "tables"),
    }


def test_every_format_is_recognised_and_read(tmp_path: Path) -> None:
    folders = all_formats(tmp_path)
    assert set(folders) == set(DATA_FORMATS)
    expected = read_behaviors(folders["mind"] / "behaviors.tsv").features
    for data_format, folder in folders.items():
        assert detect_format(folder) == data_format
        options = {"history_days": 1} if data_format == "adressa" else {}
        stats = LoadStats()
        news, behaviors = read_split(folder, lenient=False, stats=stats, **options)
        assert news.column_names[:8] == read_news(folders["mind"] / "news.tsv").column_names, data_format
        assert behaviors.features == expected, data_format
        assert len(news) and len(behaviors)


def test_read_split_mind_is_the_mind_readers(tmp_path: Path) -> None:
    folder = mind_split(tmp_path / "mind")
    news, behaviors = read_split(folder, "mind")
    assert news[:] == read_news(folder / "news.tsv")[:] and behaviors[:] == read_behaviors(folder / "behaviors.tsv")[:]
    (folder / "news.tsv").write_text("")
    with pytest.raises(MINDFormatError, match="news.tsv: no usable news row"):
        read_split(folder)


def test_read_split_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_split(tmp_path / "missing")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="no known corpus format"):
        read_split(tmp_path / "odd")
    with pytest.raises(ValueError, match="unknown data_format 'pens'"):
        read_split(tmp_path / "odd", "pens")
    with pytest.raises(TypeError, match=r"takes no option\(s\) \['split'\]"):
        read_split(mind_split(tmp_path / "mind"), "mind", split="train")


def test_label_report(tmp_path: Path) -> None:
    folders = all_formats(tmp_path)
    reports = {f: label_report(read_split(folder, f, **({"history_days": 1} if f == "adressa" else {}))[0], f)
               for f, folder in folders.items()}  # fmt: skip
    assert reports["ebnerd"] == {"category": "on", "ner": "on", "sentiment": "on"}
    assert reports["xmind"]["ner"].startswith("off: xMIND") and reports["adressa"]["ner"].startswith("off: Adressa")
    assert reports["mind"]["sentiment"] == "off: the corpus has no sentiment labels"
    assert reports["tables"] == {"category": "on", "ner": "on", "sentiment": "on"}


def test_convert_ebnerd_folder_of_splits_to_parquet(tmp_path: Path) -> None:
    ebnerd_corpus(tmp_path / "ebnerd_small", "train")
    ebnerd_corpus(tmp_path / "ebnerd_small", "validation")
    report = main(["--data_format", "ebnerd", "--input", str(tmp_path / "ebnerd_small"), "--output", str(tmp_path / "out")])
    assert sorted(report["splits"]) == ["train", "validation"]
    for split in ("train", "validation"):
        assert sorted(p.name for p in (tmp_path / "out" / split).iterdir()) == ["behaviors.parquet", "news.parquet"]
        assert detect_format(tmp_path / "out" / split) == "tables"
        original = read_split(tmp_path / "ebnerd_small" / split)
        converted = read_split(tmp_path / "out" / split)
        assert converted[0][:] == original[0][:] and converted[1][:] == original[1][:]
        assert converted[0].features == original[0].features and converted[1].features == original[1].features
    written = json.loads((tmp_path / "out" / "conversion_report.json").read_text())
    assert written["splits"]["train"]["impressions"] == 3 and written["splits"]["train"]["problems"]["clicks_not_in_view"] == 1
    assert written["splits"]["train"]["labels"]["sentiment"] == "on"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "- config_name: news" in card and "path: validation/behaviors.parquet" in card


def test_convert_adressa_writes_train_and_dev(tmp_path: Path) -> None:
    report = convert(adressa_one_week(tmp_path), tmp_path / "out", "adressa", options={"history_days": 1, "num_negatives": 2})
    assert report["splits"]["train"]["impressions"] == 4 and report["splits"]["dev"]["impressions"] == 3
    _, train = read_split(tmp_path / "out" / "train")
    _, dev = read_split(tmp_path / "out" / "dev")
    assert not set(train["impression_id"]) & set(dev["impression_id"])


def test_convert_xmind_and_mind_single_split_as_jsonl(tmp_path: Path) -> None:
    folder = xmind_split(tmp_path, TRANSLATIONS)
    report = main(["--data_format", "xmind", "--input", str(folder), "--mind_dir", str(tmp_path / "MINDsmall_train"),
                   "--output", str(tmp_path / "fin"), "--file_format", "jsonl"])  # fmt: skip
    assert list(report["splits"]) == ["."] and report["splits"]["."]["problems"] == {"entity_annotations_dropped": 1}
    news, _ = read_split(tmp_path / "fin", "tables")
    assert news["title"][:2] == ["フォートローダーデールに事務所が開設", "東京で勝利"]
    report = convert(mind_split(tmp_path / "mind"), tmp_path / "mind_tables")  # format recognised
    assert report["data_format"] == "mind"


def test_convert_lenient_counts_and_strict_raises(tmp_path: Path) -> None:
    folder = mind_split(tmp_path / "mind")
    with open(folder / "behaviors.tsv", "a") as f:
        f.write("2\tU1\ttime\tN1\tN2-x\n")
    with pytest.raises(MINDFormatError, match="behaviors.tsv:2: malformed impression token"):
        convert(folder, tmp_path / "out")
    report = convert(folder, tmp_path / "out", lenient=True)
    assert report["splits"]["."]["problems"] == {"malformed_rows_skipped": 1}
