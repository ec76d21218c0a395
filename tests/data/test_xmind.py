"""xMIND reader: translated news joined with MIND's split; entity offsets do not carry over."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeling_mtrec.data.formats import label_report
from modeling_mtrec.data.mind import MINDFormatError
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.data.xmind import read_xmind
from tests.data.corpus_files import TRANSLATIONS, write_lines, xmind_split


def test_read_xmind_joins_the_translation_with_mind(tmp_path: Path) -> None:
    stats = LoadStats()
    news, behaviors = read_xmind(xmind_split(tmp_path, TRANSLATIONS), tmp_path / "MINDsmall_train", stats=stats)
    assert news["news_id"][:] == ["N1", "N2", "N3"]
    assert news["title"][:] == ["フォートローダーデールに事務所が開設", "東京で勝利", "タイトル"]
    assert news["abstract"][:] == ["要約。", "", "要約"]
    assert news["category"][:] == ["news", "sports", "news"] and news[0]["url"] == "https://example.com/N1"
    # Entity offsets point into the English title: they do not carry over, and the counts say so.
    assert news["title_entities"][:] == ["[]", "[]", "[]"]
    assert stats == {"entity_annotations_dropped": 1}
    assert label_report(news, "xmind")["ner"].startswith("off: xMIND titles are machine translations")
    assert behaviors["candidates"][:] == [["N2", "N3"], ["N1", "N2"]] and behaviors["clicks"][:] == [[1, 0], [0, 1]]


def test_mind_dir_defaults_to_a_mind_folder_inside(tmp_path: Path) -> None:
    folder = write_lines(tmp_path / "xMINDsmall_dev" / "news.tsv", TRANSLATIONS).parent
    xmind_split(tmp_path, TRANSLATIONS, mind=folder / "mind")
    news, _ = read_xmind(folder)
    assert len(news) == 3
    (folder / "mind" / "behaviors.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="behaviors.tsv: not found"):
        read_xmind(folder)


def test_missing_mind_folder_is_named(tmp_path: Path) -> None:
    folder = write_lines(tmp_path / "x" / "news.tsv", TRANSLATIONS).parent
    with pytest.raises(FileNotFoundError, match="MIND's split folder not found"):
        read_xmind(folder)
    with pytest.raises(FileNotFoundError, match="translated news.tsv"):
        read_xmind(tmp_path, tmp_path)


def test_untranslated_and_unknown_news_are_counted(tmp_path: Path) -> None:
    stats = LoadStats()
    folder = xmind_split(tmp_path, ["nid\ttitle\tabstract", "N1\tyksi\t", "N9\tyhdeksän\t", "N1\tagain\t"])
    news, _ = read_xmind(folder, tmp_path / "MINDsmall_train", stats=stats)
    assert news["news_id"][:] == ["N1"] and news["title"][:] == ["yksi"]
    assert stats == {"header_rows": 1, "untranslated_news": 2, "translations_without_mind_news": 1,
                     "duplicate_news_ids": 1, "entity_annotations_dropped": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "problem"),
    [("N2\tonly two", "expected 3 tab-separated columns"), ("\ttitle\tabstract", "empty news id"),
     ("N 2\ttitle\tabstract", "contains whitespace")],
)  # fmt: skip
def test_bad_translation_rows_strict_and_lenient(tmp_path: Path, line: str, problem: str) -> None:
    folder = xmind_split(tmp_path, [TRANSLATIONS[0], line, TRANSLATIONS[2]])
    with pytest.raises(MINDFormatError, match=rf"^{folder / 'news.tsv'}:2: .*{problem}"):
        read_xmind(folder, tmp_path / "MINDsmall_train")
    stats = LoadStats()
    news, _ = read_xmind(folder, tmp_path / "MINDsmall_train", lenient=True, stats=stats)
    assert news["news_id"][:] == ["N1", "N3"]
    assert stats["malformed_rows_skipped"] == 1 and stats["untranslated_news"] == 1


def test_invalid_utf8_and_empty_translation(tmp_path: Path) -> None:
    folder = xmind_split(tmp_path, TRANSLATIONS)
    (folder / "news.tsv").write_bytes(b"N1\tyksi\t\n" + "N2\tcaf\xe9\t\n".encode("latin-1"))
    with pytest.raises(MINDFormatError, match=rf"^{folder / 'news.tsv'}:2: not valid UTF-8"):
        read_xmind(folder, tmp_path / "MINDsmall_train")
    (folder / "news.tsv").write_text("\n")
    with pytest.raises(MINDFormatError, match="news.tsv: no usable translated news row"):
        read_xmind(folder, tmp_path / "MINDsmall_train")
