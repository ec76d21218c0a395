"""One entry to every corpus format: recognise a split folder's format from its files, and read it into the neutral
news and behaviors tables (`modeling_mtrec.data.tables`) that the loaders consume.

=========== ======================================================================= ===============================
format      a split folder holds                                                    reader
=========== ======================================================================= ===============================
``mind``    ``news.tsv`` (8 columns) and ``behaviors.tsv``                           `read_news`, `read_behaviors`
``xmind``   ``news.tsv`` (3 columns: the translation) and MIND's split as ``mind/``  `read_xmind`
            (or ``mind_dir=``)
``ebnerd``  ``behaviors.parquet`` and ``history.parquet`` (``articles.parquet`` in   `read_ebnerd`
            the folder or its parent)
``adressa`` day files of JSON events (``20170101``, ...; or ``*.json[l]``)           `read_adressa` (``split=``, ...)
``tables``  ``news.{parquet,jsonl}`` and ``behaviors.{parquet,jsonl}``               `read_tables`
=========== ======================================================================= ===============================

Which auxiliary labels a corpus can give (`label_report`): category wherever news have one; NER where titles carry
entity offsets (MIND, EB-NeRD's located ``ner_clusters``, own tables that give them; never xMIND nor Adressa);
sentiment where the news table has a ``sentiment`` column (EB-NeRD, own tables).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from .adressa import adressa_files, read_adressa
from .ebnerd import read_ebnerd
from .mind import (
    read_behaviors,
    read_news,
    read_news_union,
    require_rows,
    split_files,
    split_folders,
    union_news,
)
from .stats import LoadStats
from .tables import read_tables
from .xmind import read_xmind

logger = logging.getLogger(__name__)

__all__ = ["DATA_FORMATS", "CorpusSplits", "detect_format", "label_report", "read_corpus_splits", "read_split"]

DATA_FORMATS: tuple[str, ...] = ("mind", "xmind", "ebnerd", "adressa", "tables")


def _tsv_columns(path: Path) -> int:
    """The number of tab-separated columns of the first non-empty line of `path` (0 when none)."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n")
            if line:
                return len(line.split("\t"))
    return 0


def _is_adressa(folder: Path) -> bool:
    try:
        files = adressa_files(folder)
    except FileNotFoundError:
        return False
    with open(files[0], "rb") as f:
        for raw in f:
            line = raw.strip()
            if line:
                try:
                    event = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return False
                return isinstance(event, dict) and "userId" in event
    return False


def detect_format(folder: str | os.PathLike) -> str:
    """The format of a split folder (one of `DATA_FORMATS`), recognised from its files as the module docstring's
    table says. `FileNotFoundError` when the folder is missing; `ValueError` naming what was looked for when no format
    fits."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    names = {path.name for path in folder.iterdir()}
    if {"behaviors.parquet", "history.parquet"} <= names:
        return "ebnerd"
    if names & {"news.parquet", "news.jsonl"} and names & {"behaviors.parquet", "behaviors.jsonl"}:
        return "tables"
    if "news.tsv" in names:
        columns = _tsv_columns(folder / "news.tsv")
        if columns == 3:
            return "xmind"
        if "behaviors.tsv" in names:
            return "mind"
    if _is_adressa(folder):
        return "adressa"
    raise ValueError(
        f"{folder}: no known corpus format (found {sorted(names)[:10]}). Expected MIND (news.tsv, behaviors.tsv), "
        "xMIND (a 3-column news.tsv), EB-NeRD (behaviors.parquet, history.parquet), Adressa (day files of JSON "
        "events) or the package's tables (news.parquet|jsonl, behaviors.parquet|jsonl); or pass data_format="
    )


def read_split(
    folder: str | os.PathLike,
    data_format: str | None = None,
    lenient: bool = False,
    stats: LoadStats | None = None,
    **options: Any,
) -> tuple[Dataset, Dataset]:
    """Read one split folder of any supported corpus into ``(news, behaviors)``: the tables `read_news` and
    `read_behaviors` produce for MIND (plus a ``sentiment`` news column where the corpus has one).

    Args:
        folder: the split folder (see the module docstring's table).
        data_format: one of `DATA_FORMATS`; recognised from the files when None (`detect_format`).
        lenient: skip and count bad rows in `stats` instead of raising `MINDFormatError` (naming file and row).
        stats: where to count problems; when None a local `LoadStats` is logged at the end.
        **options: format-specific options: ``mind_dir`` (xmind); ``split``, ``history_days``, ``dev_days``,
            ``num_negatives``, ``seed`` (adressa). Any other raises `TypeError`.

    Raises:
        MINDFormatError: a bad row (not lenient), a missing column, or a file without a usable row.
        FileNotFoundError: a file the format needs is missing.
        ValueError: an unknown `data_format`, or a folder whose format is not recognised.
    """
    data_format = detect_format(folder) if data_format is None else data_format
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown data_format {data_format!r}; known: {DATA_FORMATS}")
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    allowed = {"xmind": {"mind_dir"}, "adressa": {"split", "history_days", "dev_days", "num_negatives", "seed"}}
    unknown = set(options) - allowed.get(data_format, set())
    if unknown:
        raise TypeError(f"read_split({data_format!r}) takes no option(s) {sorted(unknown)}")
    if data_format == "mind":
        news_path, behaviors_path = split_files(folder)
        before = stats.copy()
        news = require_rows(read_news(news_path, lenient=lenient, stats=stats), news_path, "news", dict(stats - before))
        before = stats.copy()
        behaviors = read_behaviors(behaviors_path, lenient=lenient, stats=stats)
        behaviors = require_rows(behaviors, behaviors_path, "behaviors", dict(stats - before))
    elif data_format == "xmind":
        news, behaviors = read_xmind(folder, lenient=lenient, stats=stats, **options)
    elif data_format == "ebnerd":
        news, behaviors = read_ebnerd(folder, lenient=lenient, stats=stats)
    elif data_format == "adressa":
        news, behaviors = read_adressa(folder, lenient=lenient, stats=stats, **options)
    else:
        news, behaviors = read_tables(folder, lenient=lenient, stats=stats)
    if own_stats:
        stats.log(logger, f"read_split({folder}, {data_format!r})")
    return news, behaviors


def label_report(news: Dataset, data_format: str | None = None) -> dict[str, str]:
    """For each auxiliary task (``category``, ``ner``, ``sentiment``): ``"on"``, or why its labels are absent, for the
    load report. Decided from the news table (a task is on when some news carries its label); `data_format` only
    sharpens the reason.

    Example: an xMIND table gives ``{"category": "on", "ner": "off: xMIND titles are machine translations; MIND's
    entity offsets do not carry over", "sentiment": "off: the corpus has no sentiment labels"}``.
    """
    report = {}
    categories = news.data.table.column("category").to_pylist() if "category" in news.column_names else []
    report["category"] = "on" if any(c and c.strip() for c in categories) else "off: no news has a category"
    entities = news.data.table.column("title_entities").to_pylist() if "title_entities" in news.column_names else []
    if any(e and e.strip() not in ("", "[]") for e in entities):
        report["ner"] = "on"
    else:
        report["ner"] = {
            "xmind": "off: xMIND titles are machine translations; MIND's entity offsets do not carry over",
            "adressa": "off: Adressa gives no entity offsets",
            "ebnerd": "off: no ner_cluster was found in any title",
        }.get(data_format or "", "off: no title has entity annotations")
    sentiment = news.data.table.column("sentiment").to_pylist() if "sentiment" in news.column_names else []
    report["sentiment"] = "on" if any(sentiment) else "off: the corpus has no sentiment labels"
    return report


def _loader_format(folder: str | os.PathLike) -> str:
    """`detect_format`, whose error for a folder of no known format also names the MIND file missing (the loaders read
    MIND by default: its users see the file they forgot)."""
    try:
        return detect_format(folder)
    except ValueError as error:
        try:
            split_files(folder)
        except FileNotFoundError as missing:
            raise FileNotFoundError(f"{missing}. {error}") from None
        raise


@dataclass
class CorpusSplits:
    """The train and/or eval split folders of one corpus, read for a model's loader.

    Attributes:
        news (`Dataset`): the news of every split in one table (`union_news`): train news first, then eval-only news.
        news_index (`dict[str, int]`): news id -> row of `news`.
        categories (`list[str]`): the sorted categories of the first split's news.
        splits (`dict`): ``{"train" | "eval": (source, behaviors)}`` for `load_split_samples`: MIND's
            ``(news.tsv, behaviors.tsv)`` paths (read there, as before), any other format's ``(folder, table)``.
        data_format (`str`): the corpus format (`DATA_FORMATS`).
        labels (`dict[str, str]`): `label_report` of `news`: which auxiliary tasks the corpus can train, and why not.
    """

    news: Dataset
    news_index: dict[str, int]
    categories: list[str]
    splits: dict[str, tuple[Path, Any]]
    data_format: str
    labels: dict[str, str]


def read_corpus_splits(
    train_dir: str | os.PathLike | None,
    eval_dir: str | os.PathLike | None,
    caller: str,
    *,
    data_format: str | None = None,
    lenient: bool = False,
    stats: LoadStats | None = None,
    **options: Any,
) -> CorpusSplits:
    """Read a corpus' train and/or eval folders (at least one; `caller` names the loader, for the error) for a model's
    loader. MIND goes the way it always went (`read_news_union`, behaviours read later by `load_split_samples`), so
    its tables are bit-identical; every other format is read by `read_split`. Both folders must be of one format.

    Args:
        data_format: one of `DATA_FORMATS`; recognised from each folder's files when None.
        options: `read_split`'s format options. Adressa's ``split`` defaults to ``"train"`` for `train_dir` and
            ``"dev"`` for `eval_dir` (the same folder can be given for both).
    """
    if train_dir is None and eval_dir is None:
        raise ValueError(f"{caller} needs a train_dir, an eval_dir or both")
    stats = LoadStats() if stats is None else stats
    folders = {name: folder for name, folder in (("train", train_dir), ("eval", eval_dir)) if folder}
    formats = {name: data_format or _loader_format(folder) for name, folder in folders.items()}
    if len(set(formats.values())) > 1:
        raise ValueError(f"{caller}: the split folders are of different formats: "
                         + ", ".join(f"{folders[name]} is {fmt}" for name, fmt in formats.items()))
    data_format = next(iter(formats.values()))
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown data_format {data_format!r}; known: {DATA_FORMATS}")
    if data_format == "mind":
        if options:
            raise TypeError(f"{caller}: the MIND format takes no option(s) {sorted(options)}")
        splits = split_folders(train_dir, eval_dir, caller)
        news, news_index, categories = read_news_union(
            [news_path for news_path, _ in splits.values()], lenient=lenient, stats=stats
        )
    else:
        tables, splits = [], {}
        for name, folder in folders.items():
            split_options = dict(options)
            if data_format == "adressa":
                split_options.setdefault("split", "train" if name == "train" else "dev")
            news, behaviors = read_split(folder, data_format, lenient=lenient, stats=stats, **split_options)
            tables.append((news, folder))
            splits[name] = (Path(folder), behaviors)
        news, news_index, categories = union_news(tables)
    return CorpusSplits(news, news_index, categories, splits, data_format, label_report(news, data_format))
