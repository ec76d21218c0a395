"""Reader for xMIND, MIND's news machine-translated into 14 languages (Iana et al., SIGIR 2024).

xMIND (https://github.com/andreeaiana/xMIND) gives, per language (``fin``, ``grn``, ``hat``, ``ind``, ``jpn``, ``kat``,
``ron``, ``som``, ``swh``, ``tam``, ``tha``, ``tur``, ``vie``, ``cmn``) and split, a ``news.tsv`` of 3 tab-separated
columns without a header: ``nid``, ``title``, ``abstract`` (the translation of MIND's news with that id). Behaviors,
categories and entities stay MIND's: `read_xmind` joins the translation with MIND's own split folder::

    xMIND/fin/xMINDsmall_train/news.tsv        the translation (read here)
    MINDsmall_train/news.tsv, behaviors.tsv    MIND's split (``mind_dir``; by default ``<folder>/mind``, e.g. a link)

Each news of MIND's news.tsv becomes one row of the neutral news table (`modeling_mtrec.data.tables`), in MIND's
order, with MIND's ``category``, ``subcategory`` and ``url`` and the translated ``title`` and ``abstract``. The behaviors
table is MIND's ``behaviors.tsv`` as `read_behaviors` reads it.

NOTE: entity offsets do not carry over to a translation (the words move, and the surface forms are English), so
``title_entities`` and ``abstract_entities`` are ``"[]"``: an xMIND corpus has no NER labels, and MTRec's NER task
is off on it. Counted: ``"entity_annotations_dropped"`` (MIND news whose title entities are left out, so the load
report says why NER is off), ``"untranslated_news"`` (a MIND news without a translation: left out, so behaviors that
name it count it under ``unknown_*_ids``), ``"translations_without_mind_news"`` (a translated id MIND's news.tsv
lacks: left out), ``"duplicate_news_ids"`` (a repeated translated id: the first is kept), ``"header_rows"``.
Bad rows of the translation (not 3 columns, invalid UTF-8, an empty id or one holding whitespace) raise
`MINDFormatError` naming the file and line, or are skipped and counted under ``lenient``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from datasets import Dataset

from .mind import (
    MINDFormatError,
    id_problem,
    parse_title_entities,
    read_behaviors,
    read_news,
    require_rows,
    split_files,
)
from .stats import BadRows, LoadStats
from .tables import NewsBuilder

logger = logging.getLogger(__name__)

__all__ = ["XMIND_LANGUAGES", "read_translations", "read_xmind", "xmind_files"]

XMIND_LANGUAGES: tuple[str, ...] = (
    "fin", "grn", "hat", "ind", "jpn", "kat", "ron", "som", "swh", "tam", "tha", "tur", "vie", "cmn",
)  # fmt: skip
_HEADER = {"nid", "newsid", "news_id", "id"}


def xmind_files(folder: str | os.PathLike, mind_dir: str | os.PathLike | None = None) -> tuple[Path, Path, Path]:
    """``(translated news.tsv, MIND news.tsv, MIND behaviors.tsv)``; `mind_dir` defaults to ``<folder>/mind``.
    `FileNotFoundError` naming what is missing."""
    folder = Path(folder)
    translation = folder / "news.tsv"
    if not translation.is_file():
        raise FileNotFoundError(f"{translation}: not found (an xMIND split folder holds the translated news.tsv)")
    mind_dir = folder / "mind" if mind_dir is None else Path(mind_dir)
    if not mind_dir.is_dir():
        raise FileNotFoundError(
            f"{mind_dir}: MIND's split folder not found: xMIND translates MIND's news only; pass mind_dir= (or link "
            f"MIND's split folder as {folder / 'mind'})"
        )
    mind_news, mind_behaviors = split_files(mind_dir)
    return translation, mind_news, mind_behaviors


def read_translations(
    path: str | os.PathLike, *, lenient: bool = False, stats: LoadStats | None = None
) -> dict[str, tuple[str, str]]:
    """``{nid: (title, abstract)}`` of an xMIND ``news.tsv`` (3 tab-separated columns), in file order."""
    path = os.fspath(path)
    stats = LoadStats() if stats is None else stats
    bad_row = BadRows(path, lenient, stats, error=MINDFormatError, logger=logger)
    translations: dict[str, tuple[str, str]] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").removeprefix("\ufeff")
            except UnicodeDecodeError as err:
                bad_row(lineno, f"not valid UTF-8 ({err.reason} at byte {err.start})")
                continue
            line = line.removesuffix("\n").removesuffix("\r")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                bad_row(lineno, f"expected 3 tab-separated columns (xMIND news.tsv: nid, title, abstract), found {len(fields)}")
                continue
            news_id, title, abstract = fields
            if news_id.strip().lower() in _HEADER and title.strip().lower() == "title":
                stats["header_rows"] += 1
                continue
            problem = id_problem(news_id, "news id")
            if problem:
                bad_row(lineno, problem)
                continue
            if news_id in translations:
                stats["duplicate_news_ids"] += 1
                continue
            translations[news_id] = (title, abstract)
    if not translations:
        raise MINDFormatError(
            f"{path}: no usable translated news row" + (f" (every row was skipped: {stats.as_dict()})" if stats else "")
        )
    return translations


def read_xmind(
    folder: str | os.PathLike,
    mind_dir: str | os.PathLike | None = None,
    *,
    lenient: bool = False,
    stats: LoadStats | None = None,
) -> tuple[Dataset, Dataset]:
    """Read an xMIND split (the translation in `folder`, MIND's split in `mind_dir`) into ``(news, behaviors)``.

    Args:
        folder: the xMIND split folder holding the translated ``news.tsv``, e.g. ``xMIND/fin/xMINDsmall_train``.
        mind_dir: MIND's split folder of the same split (``news.tsv``, ``behaviors.tsv``); by default
            ``<folder>/mind``.
        lenient: skip and count bad rows instead of raising `MINDFormatError`.
        stats: where to count problems; when None a local `LoadStats` is logged at the end.
    """
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    translation_path, mind_news_path, behaviors_path = xmind_files(folder, mind_dir)
    translations = read_translations(translation_path, lenient=lenient, stats=stats)
    before = stats.copy()
    mind_news = read_news(mind_news_path, lenient=lenient, stats=stats)
    require_rows(mind_news, mind_news_path, "news", dict(stats - before))
    builder = NewsBuilder(BadRows(os.fspath(mind_news_path), lenient, stats, error=MINDFormatError, logger=logger))  # MIND's rows, checked by read_news
    columns = mind_news.data.table.select(["news_id", "category", "subcategory", "url", "title_entities"]).to_pydict()
    for i, news_id in enumerate(columns["news_id"]):
        translated = translations.get(news_id)
        if translated is None:
            stats["untranslated_news"] += 1
            continue
        try:
            has_entities = bool(parse_title_entities(columns["title_entities"][i]))
        except ValueError:  # broken JSON: dropped all the same
            has_entities = True
        if has_entities:
            stats["entity_annotations_dropped"] += 1
        builder.add(i + 1, news_id, translated[0], abstract=translated[1], category=columns["category"][i],
                    subcategory=columns["subcategory"][i], url=columns["url"][i])  # fmt: skip
    unknown = len(set(translations) - set(columns["news_id"]))
    if unknown:
        stats["translations_without_mind_news"] += unknown
    news = builder.dataset(translation_path)
    logger.info("%s: xMIND titles are translations, MIND's entity offsets do not carry over: no NER labels", folder)
    behaviors = read_behaviors(behaviors_path, lenient=lenient, stats=stats)
    require_rows(behaviors, behaviors_path, "behaviors", stats.as_dict())
    if own_stats:
        stats.log(logger, f"read_xmind({folder})")
    return news, behaviors
